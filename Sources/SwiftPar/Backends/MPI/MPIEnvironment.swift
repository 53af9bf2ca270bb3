import CSwiftParLinux
import CSwiftParMPI
#if canImport(Glibc)
import Glibc
#endif

/// Start-up and shut-down of Open MPI for the whole process.
enum MPIEnvironment {
    /// True between a successful `MPI_Init_thread` and `MPI_Finalize`. Set and read only on the
    /// thread that initialises MPI.
    nonisolated(unsafe) private(set) static var isActive = false

    /// The thread support levels of `MPI_Init_thread`, by the names `SWIFTPAR_MPI_THREAD_LEVEL` takes.
    static let threadLevels: [(name: String, level: Int32)] = [
        ("single", Int32(MPI_THREAD_SINGLE)), ("funneled", Int32(MPI_THREAD_FUNNELED)),
        ("serialized", Int32(MPI_THREAD_SERIALIZED)), ("multiple", Int32(MPI_THREAD_MULTIPLE)),
    ]

    /// Loads Open MPI's library (`libmpi.so.40`, or `SWIFTPAR_MPI_LIBRARY`) if it is not loaded yet.
    ///
    /// The library is loaded only here, when a launcher started the process or the MPI backend
    /// was asked for: local and serial jobs never touch it, and run where Open MPI is not installed.
    static func loadLibrary() throws {
        if swiftpar_mpi_is_loaded() != 0 { return }
        let path = getenvString("SWIFTPAR_MPI_LIBRARY")
        var reason = [CChar](repeating: 0, count: 1024)
        guard swiftpar_mpi_load(path, &reason, reason.count) == 0 else {
            throw MPIUnavailable(reason: stringFromCString(reason), path: path)
        }
    }

    /// Whether Open MPI's library can be loaded here, and if not, why.
    static var libraryProblem: String? {
        do {
            try loadLibrary()
            return nil
        } catch {
            return "\(error)"
        }
    }

    /// Initialises MPI with `MPI_Init_thread` and fails if the library provides less thread
    /// support than requested.
    ///
    /// The default request is `MPI_THREAD_SERIALIZED`: any thread may call MPI, one at a time.
    /// That is exactly what swiftpar guarantees (see `OneOperationAtATime`): communicators are
    /// `Sendable`, and async rank code resumes on whatever thread after an `await`. In this
    /// machine's measurements it costs no more per message than `MPI_THREAD_SINGLE` within the
    /// noise (0.43 against 0.40 µs one way for 8 bytes, alternating). `SWIFTPAR_MPI_THREAD_LEVEL`
    /// asks for another level (`multiple` for an MPI library used beside swiftpar by other threads).
    static func initialize(settings: JobSettings) throws -> MPITransport {
        let requestedName = settings.mpiThreadLevel
        guard let requested = threadLevels.first(where: { $0.name == requestedName })?.level else {
            throw SwiftParUsageError("thread level \(requestedName) is not one of \(threadLevels.map(\.name).joined(separator: ", "))")
        }
        try loadLibrary()
        var provided: Int32 = 0
        let code = MPI_Init_thread(nil, nil, requested, &provided)
        guard code == MPI_SUCCESS else {
            throw CommunicatorError.mpi(operation: "MPI_Init_thread", code: code, message: mpiErrorString(code), rank: 0)
        }
        isActive = true
        MPI_Comm_set_errhandler(swiftpar_comm_world(), swiftpar_errors_return())
        var rank: Int32 = 0
        var size: Int32 = 0
        MPI_Comm_rank(swiftpar_comm_world(), &rank)
        MPI_Comm_size(swiftpar_comm_world(), &size)
        guard provided >= requested else {
            let name = threadLevels.first(where: { $0.level == provided })?.name ?? "\(provided)"
            throw CommunicatorError.mpi(
                operation: "MPI_Init_thread", code: 0,
                message: "asked for thread level \(requestedName), but the MPI library provides only \(name)", rank: Int(rank))
        }
        let job = try MPIJob(world: swiftpar_comm_world(), rank: Int(rank), size: Int(size), settings: settings)
        MPIJob.current = job
        if rank == 0 { StandardStreams.adoptLauncherOutput() }
        return try MPITransport(comm: swiftpar_comm_world(), owns: false, members: Array(0..<Int(size)), job: job,
                            messageLimit: settings.mpiMessageLimit)
    }

    /// Announces that this rank has finished, waits until every rank has, then `MPI_Finalize`.
    static func finish() throws {
        guard isActive else { return }
        // From here on this thread holds the rank's operations for good: another thread's
        // `noteProgress()` no longer reads the control channel, before or after MPI_Finalize.
        OneOperationAtATime.holdForGood()
        try MPIJob.current?.finishDroppedSends()
        try MPIJob.current?.announceFinished()
        try MPIJob.current?.waitForEveryoneFinished()
        isActive = false
        MPI_Finalize()
    }

    /// Ends every process of the job with `code` (`MPI_Abort`). Never returns. Where MPI_Abort
    /// returns (MPI not running, or an abort already under way), the process ends by `_exit`:
    /// this may run inside an atexit handler, where `exit` must not be called again.
    static func abort(code: Int32) -> Never {
        if isActive { MPI_Abort(swiftpar_comm_world(), code) }
        swiftpar_flush_all_streams()
        _exit(code)
    }

    static var processorName: String {
        var buffer = [CChar](repeating: 0, count: Int(MPI_MAX_PROCESSOR_NAME) + 1)
        var length: Int32 = 0
        MPI_Get_processor_name(&buffer, &length)
        return stringFromCString(buffer)
    }

    /// The library's version line, loading the library if needed; nil where it cannot be loaded.
    static var libraryVersion: String? {
        guard libraryProblem == nil else { return nil }
        var buffer = [CChar](repeating: 0, count: Int(MPI_MAX_LIBRARY_VERSION_STRING) + 1)
        var length: Int32 = 0
        MPI_Get_library_version(&buffer, &length)
        let text = stringFromCString(buffer)
        return text.split(separator: ",").first.map(String.init) ?? text
    }
}

/// Open MPI's library could not be loaded.
struct MPIUnavailable: Error, CustomStringConvertible {
    let reason: String
    let path: String?

    var description: String {
        if let path {
            // The user's own setting is what failed: Open MPI may well be installed.
            return "cannot load SWIFTPAR_MPI_LIBRARY=\(path): \(reason); point SWIFTPAR_MPI_LIBRARY at Open MPI's libmpi.so, or unset it to use libmpi.so.40"
        }
        return "cannot load Open MPI's library (libmpi.so.40): \(reason); install Open MPI (Debian and Ubuntu: apt install libopenmpi3; clusters: module load openmpi) or set SWIFTPAR_MPI_LIBRARY to its libmpi.so"
    }
}

func getenvString(_ name: String) -> String? {
    guard let value = getenv(name) else { return nil }
    return String(cString: value)
}
