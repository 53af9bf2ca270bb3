import CMPI
#if canImport(Glibc)
import Glibc
#endif

/// Start-up and shut-down of Open MPI for the whole process.
enum MPIEnvironment {
    /// True between a successful `MPI_Init_thread` and `MPI_Finalize`.
    nonisolated(unsafe) private(set) static var isActive = false

    /// Initialises MPI asking for `MPI_THREAD_SERIALIZED` (any thread may call MPI, one at a
    /// time) and fails if the library provides less.
    static func initialize() throws -> MPITransport {
        var provided: Int32 = 0
        let code = MPI_Init_thread(nil, nil, Int32(MPI_THREAD_SERIALIZED), &provided)
        guard code == MPI_SUCCESS else {
            throw CommunicatorError.mpi(operation: "MPI_Init_thread", code: code, message: mpiErrorString(code), rank: 0)
        }
        isActive = true
        let world = MPITransport(comm: swiftpar_comm_world(), owns: false)
        guard provided >= Int32(MPI_THREAD_SERIALIZED) else {
            throw CommunicatorError.mpi(
                operation: "MPI_Init_thread", code: 0,
                message: "the MPI library provides thread level \(provided), below MPI_THREAD_SERIALIZED", rank: world.rank)
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
