import CMPI
#if canImport(Glibc)
import Glibc
#endif

/// Start-up and shut-down of Open MPI for the whole process.
enum MPIEnvironment {
    /// True between a successful `MPI_Init_thread` and `MPI_Finalize`.
    nonisolated(unsafe) private(set) static var isActive = false

    /// The thread support levels of `MPI_Init_thread`, by the names `SWIFTPAR_MPI_THREAD_LEVEL` takes.
    static let threadLevels: [(name: String, level: Int32)] = [
        ("single", Int32(MPI_THREAD_SINGLE)), ("funneled", Int32(MPI_THREAD_FUNNELED)),
        ("serialized", Int32(MPI_THREAD_SERIALIZED)), ("multiple", Int32(MPI_THREAD_MULTIPLE)),
    ]

    /// Initialises MPI with `MPI_Init_thread` and fails if the library provides less thread
    /// support than requested.
    ///
    /// The default request is `MPI_THREAD_SINGLE`, what `MPI_Init` asks for: a communicator is
    /// used by the thread that called `SwiftPar.run`. Open MPI 4.1 takes its thread-safe, slower
    /// paths (about 0.05 µs more per message here) for any higher level, so ask for one only
    /// when needed: `SWIFTPAR_MPI_THREAD_LEVEL=serialized` (any thread, one at a time) or `multiple`.
    static func initialize() throws -> MPITransport {
        let requestedName = getenvString("SWIFTPAR_MPI_THREAD_LEVEL")?.lowercased() ?? "single"
        guard let requested = threadLevels.first(where: { $0.name == requestedName })?.level else {
            throw SwiftParUsageError(
                "SWIFTPAR_MPI_THREAD_LEVEL=\(requestedName) is not one of \(threadLevels.map(\.name).joined(separator: ", "))")
        }
        var provided: Int32 = 0
        let code = MPI_Init_thread(nil, nil, requested, &provided)
        guard code == MPI_SUCCESS else {
            throw CommunicatorError.mpi(operation: "MPI_Init_thread", code: code, message: mpiErrorString(code), rank: 0)
        }
        isActive = true
        let world = MPITransport(comm: swiftpar_comm_world(), owns: false)
        guard provided >= requested else {
            let name = threadLevels.first(where: { $0.level == provided })?.name ?? "\(provided)"
            throw CommunicatorError.mpi(
                operation: "MPI_Init_thread", code: 0,
                message: "asked for thread level \(requestedName), but the MPI library provides only \(name)", rank: world.rank)
        }
        return world
    }

    static func finalize() {
        guard isActive else { return }
        isActive = false
        MPI_Finalize()
    }

    /// Ends every process of the job with `code` (`MPI_Abort`). Never returns.
    static func abort(code: Int32) -> Never {
        MPI_Abort(swiftpar_comm_world(), code)
        exit(code)
    }

    static var processorName: String {
        var buffer = [CChar](repeating: 0, count: Int(swiftpar_max_processor_name()) + 1)
        var length: Int32 = 0
        MPI_Get_processor_name(&buffer, &length)
        return String(cString: buffer)
    }

    static var libraryVersion: String {
        var buffer = [CChar](repeating: 0, count: Int(swiftpar_max_library_version_string()) + 1)
        var length: Int32 = 0
        MPI_Get_library_version(&buffer, &length)
        let text = String(cString: buffer)
        return text.split(separator: ",").first.map(String.init) ?? text
    }
}

func getenvString(_ name: String) -> String? {
    guard let value = getenv(name) else { return nil }
    return String(cString: value)
}
