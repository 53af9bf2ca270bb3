#if canImport(Glibc)
import Glibc
#endif
import Atomics
import CSwiftParLinux

/// How the ranks of a job are started and talk to each other.
public enum Backend: String, Sendable, CaseIterable, Codable, CustomStringConvertible {
    /// Open MPI: the process was started by `mpirun`, `mpiexec` or `srun --mpi=pmix`.
    case mpi
    /// Ranks forked on this machine by swiftpar itself, no MPI needed.
    case local
    /// A single rank in this process.
    case serial

    /// The backend's name as the command line spells it.
    public var description: String { rawValue }
}

/// A launcher that started this process as one rank of a job, read from its environment.
public struct LaunchEnvironment: Sendable, Equatable {
    /// The launcher that set the variables, for messages ("mpirun", "srun").
    public let launcher: String
    /// The environment variable that revealed it.
    public let variable: String
    /// This process's rank in the launcher's job, when the launcher says it
    /// (`OMPI_COMM_WORLD_RANK`, `PMIX_RANK`, `PMI_RANK` or `SLURM_PROCID`).
    public let rank: Int?
    /// The number of ranks the launcher started, when it says it (`OMPI_COMM_WORLD_SIZE`,
    /// `PMI_SIZE` or `SLURM_STEP_NUM_TASKS`).
    public let size: Int?

    /// Detects a launcher from the environment; nil when the process was started by hand.
    ///
    /// Open MPI's own variables are checked first: `mpirun` inside a Slurm job leaves the job's
    /// `SLURM_*` variables in its children's environment.
    public static func detect(_ environment: [String: String] = currentEnvironment()) -> LaunchEnvironment? {
        let checks: [(String, String)] = [
            ("OMPI_COMM_WORLD_SIZE", "mpirun"),
            ("PMIX_RANK", "a PMIx launcher (srun --mpi=pmix or mpirun)"),
            ("PMI_SIZE", "a PMI launcher"),
            ("PMI_RANK", "a PMI launcher"),
            ("SLURM_STEP_NUM_TASKS", "srun"),
        ]
        for (variable, launcher) in checks {
            guard let value = environment[variable], !value.isEmpty else { continue }
            // A Slurm step of one task without PMI is an ordinary process, and so is a task of
            // `swiftpar run` (SWIFTPAR_TASK), which inherits its rank's Slurm variables.
            if variable == "SLURM_STEP_NUM_TASKS", value == "1" || environment["SWIFTPAR_TASK"] != nil { continue }
            let rank = ["OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"].lazy
                .compactMap { environment[$0].flatMap { Int($0) } }.first
            let size = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"].lazy
                .compactMap { environment[$0].flatMap { Int($0) } }.first
            return LaunchEnvironment(launcher: launcher, variable: variable, rank: rank, size: size)
        }
        return nil
    }
}

extension LaunchEnvironment {
    /// Whether a launcher started this process as a rank other than 0; false outside a
    /// launcher, and when the launcher does not say which rank this is.
    public static func isOtherThanFirstRank(_ environment: [String: String] = currentEnvironment()) -> Bool {
        guard let rank = detect(environment)?.rank else { return false }
        return rank != 0
    }

    /// Makes this rank of a launcher's job end with SIGTERM when the process that started it
    /// (mpirun, its daemon on a remote host, or slurmstepd) ends. After Ctrl-C, mpirun exits
    /// before its ranks, each in a process group of its own, are gone: a `swiftpar run` rank
    /// went on starting tasks for up to a second, and a `--resume` run at once ran some of them
    /// twice; with mpirun killed outright, the ranks ran on for more than a second.
    static func endWithLauncher() {
        let parent = getppid()
        guard parent > 1 else { return }
        _ = swiftpar_set_parent_death_signal(SIGTERM)
        // The launcher may have ended before the signal was asked for.
        if getppid() != parent { raise(SIGTERM) }
    }

    /// Seconds a rank other than 0 waits before it reports a problem every rank usually meets
    /// alike: Open MPI's launcher sends SIGTERM about a second after a rank fails, so by then
    /// it has ended this rank when rank 0 reported the problem itself.
    public static let sharedProblemPause: Double = 3

    /// Writes `message` (and a newline) to standard error for a problem that every rank of a
    /// launcher's job usually meets alike, such as a bad command line or setting, so that it
    /// appears once rather than once per rank, interleaved.
    ///
    /// Rank 0, and a process no launcher started, write it at once. Another rank first waits
    /// `pause` seconds: when rank 0 failed alike, the launcher ends the job meanwhile (mpirun
    /// does so when a rank exits with an error), and the message is rank 0's alone. Should
    /// this rank still run, it writes the message, starting with its rank, if it may have met
    /// the problem alone; under srun, which does not end a step when one task fails, only the
    /// first rank of each host other than rank 0's writes it (see `speaksForItsHost`), rather
    /// than every rank.
    public static func reportSharedProblem(_ message: String, pause: Double = sharedProblemPause,
                                           environment: [String: String] = currentEnvironment()) {
        guard let rank = detect(environment)?.rank, rank != 0 else {
            writeStandardError(message + "\n")
            return
        }
        waitForRankZero(pause)
        guard speaksForItsHost(environment) else { return }
        writeStandardError("rank \(rank): " + message + "\n")
    }

    /// Whether this rank (not rank 0), still running after the pause, should say the problem.
    /// Under mpirun, always: mpirun ends the job when rank 0 fails, so a rank still here met
    /// the problem alone (another host, or another command line given after `:`). Under srun,
    /// which does not end a step when a task fails, only the first rank of a host other than
    /// rank 0's (`SLURM_LOCALID` 0, `SLURM_NODEID` not 0): the others see the same files and
    /// settings as that one.
    static func speaksForItsHost(_ environment: [String: String]) -> Bool {
        guard environment["OMPI_COMM_WORLD_SIZE"] == nil else { return true }
        if let localRank = environment["SLURM_LOCALID"].flatMap({ Int($0) }), localRank != 0 { return false }
        if let node = environment["SLURM_NODEID"].flatMap({ Int($0) }), node == 0 { return false }
        return true
    }

    /// Sleeps `pause` seconds (`sharedProblemPause` unless told), giving rank 0 the time to
    /// report a problem it shares with this rank and the launcher the time to end the job.
    static func waitForRankZero(_ pause: Double = sharedProblemPause) {
        usleep(UInt32(max(pause, 0) * 1e6))
    }
}

/// An error as messages show it: its description, and for an enum without one, its type too
/// (`TrialError.boom(code: 42)` rather than `boom(code: 42)`).
@usableFromInline
func errorText(_ error: any Error) -> String {
    let text = "\(error)"
    // Errors that describe themselves, also through debugDescription (DecodingError does).
    guard !(error is CustomStringConvertible || error is CustomDebugStringConvertible || error is TextOutputStreamable),
          Mirror(reflecting: error).displayStyle == .enum else { return text }
    let name = "\(type(of: error))"
    return text.hasPrefix(name + ".") ? text : name + "." + text
}

/// The process environment as a dictionary.
public func currentEnvironment() -> [String: String] {
    var result: [String: String] = [:]
    var pointer = environ
    while let entry = pointer.pointee {
        let text = String(cString: entry)
        if let equals = text.firstIndex(of: "=") {
            result[String(text[..<equals])] = String(text[text.index(after: equals)...])
        }
        pointer += 1
    }
    return result
}

/// swiftpar's entry point: starts the job's ranks and runs your code on each.
public enum SwiftPar {
    /// The number of cores this process may run on: those of its CPU affinity, as `taskset`,
    /// Slurm and cgroup cpusets restrict it (what `nproc` prints), or every online core when
    /// that cannot be read. The default number of local ranks and of `TaskPool` workers.
    public static var availableCores: Int { Int(swiftpar_available_cpus()) }

    /// Every online core of the machine, whatever this process may run on: what a host offers
    /// its ranks (under mpirun each rank is usually bound to a core or a socket of its own).
    package static var onlineCores: Int { max(Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), 1) }

    /// Ends every rank of an MPI job at once with `status` (`MPI_Abort`), or this process when
    /// no MPI job runs. For an error of rank 0's found before its job could say so.
    package static func abortJob(status: Int32) -> Never {
        stopWatchingForExit()
        swiftpar_flush_all_streams()
        MPIEnvironment.abort(code: status)
    }

    /// Picks the backend a process would use, before anything is started.
    ///
    /// - A process started by a launcher uses MPI; asking for `.local` or `.serial` there, or
    ///   for a number of workers other than the launcher's, is an error.
    /// - Otherwise the default is the local backend with `workers` ranks (or `SWIFTPAR_WORKERS`,
    ///   or one per core); `.serial` runs one rank in this process, and `.mpi` runs as a one-rank
    ///   MPI job.
    /// - With no backend requested, `SWIFTPAR_BACKEND` (auto, mpi, local or serial) chooses.
    public static func chooseBackend(requested backend: Backend?, workers: Int?,
                                     environment: [String: String] = currentEnvironment()) throws -> Backend {
        var requested = backend
        if requested == nil, let text = environment["SWIFTPAR_BACKEND"], !text.isEmpty, text != "auto" {
            guard let named = Backend(rawValue: text) else {
                throw SwiftParUsageError("SWIFTPAR_BACKEND=\(text) is not one of auto, mpi, local, serial")
            }
            requested = named
        }
        let launched = LaunchEnvironment.detect(environment)
        if let launched {
            // Slurm's own variables alone: srun started the tasks without a PMI plugin
            // (`--mpi=none`, the default unless the site sets MpiDefault), so Open MPI could not
            // join them into one job.
            if launched.variable == "SLURM_STEP_NUM_TASKS" {
                throw SwiftParUsageError(
                    "srun started \(launched.size.map(String.init) ?? "several") tasks without an MPI plugin (no PMIx or PMI variables are set), so they cannot form one job: start them with srun --mpi=pmix (or have the site set MpiDefault=pmix in slurm.conf)")
            }
            if let requested, requested != .mpi {
                let named = backend != nil ? name(backend: requested) : "SWIFTPAR_BACKEND=\(requested)"
                let instead = settingsAreOptions ? "drop --backend or use --backend mpi" : "ask for no backend, or for .mpi"
                throw SwiftParUsageError(
                    "\(named) cannot be used here: this process was started by \(launched.launcher) (\(launched.variable) is set), which runs one rank per process; \(instead)")
            }
            // The same count as the launcher's is harmless (one command line for both ways).
            if let workers, workers != launched.size {
                let started = launched.size.map { ", which started \($0)" } ?? ""
                throw SwiftParUsageError(
                    "\(name(workers: workers)) cannot be used here: the number of ranks is set by \(launched.launcher)\(started) (\(launched.variable) is set)")
            }
            return .mpi
        }
        switch requested {
        case .mpi?:
            if let workers, workers != 1 {
                let named = backend == .mpi ? name(backend: .mpi) : "SWIFTPAR_BACKEND=mpi"
                throw SwiftParUsageError("\(named) runs one rank when started by hand; start \(workers) with mpirun -n \(workers)")
            }
            return .mpi
        case .serial?:
            if let workers, workers != 1 {
                let named = backend == .serial ? name(backend: .serial) : "SWIFTPAR_BACKEND=serial"
                throw SwiftParUsageError("\(named) runs exactly one rank, not \(workers); use \(name(backend: .local)) for more")
            }
            return .serial
        case .local?, nil:
            return .local
        }
    }

    /// Whether messages name the worker count and backend as the command line's options
    /// (`-n/--workers 4`, `--backend local`) rather than as `run`'s arguments (`workers: 4`,
    /// `backend: .local`). The command line sets it before anything starts.
    nonisolated(unsafe) package static var settingsAreOptions = false

    static func name(workers: Int) -> String { settingsAreOptions ? "-n/--workers \(workers)" : "workers: \(workers)" }
    static func name(backend: Backend) -> String { settingsAreOptions ? "--backend \(backend)" : "backend: .\(backend)" }

    /// Checks the settings `run(workers:backend:stallTimeout:_:)` would refuse before it starts
    /// anything: a backend or worker count that this process cannot use (`-n 4` under
    /// `mpirun -n 2`, `serial` with several ranks), more local ranks than one machine can run,
    /// and unreadable `SWIFTPAR_*` settings. A command-line tool calls it while it checks its
    /// options, so that these are usage errors like the others; `run` itself reports them as it
    /// starts. What only starting can tell is not checked: whether Open MPI's library loads,
    /// and whether the process may still fork its ranks (`SWIFTPAR_START`).
    ///
    /// - Parameters:
    ///   - workers: the number of local ranks asked for, as `run` takes it.
    ///   - backend: the backend asked for, as `run` takes it.
    ///   - stallTimeout: the stall timeout asked for, as `run` takes it.
    ///   - environment: the variables to read the launcher and `SWIFTPAR_*` settings from.
    /// - Throws: `SwiftParUsageError`, saying which setting is wrong and what would work.
    public static func checkSettings(workers: Int?, backend: Backend?, stallTimeout: Double? = nil,
                                     environment: [String: String] = currentEnvironment()) throws {
        _ = try settings(workers: workers, backend: backend, stallTimeout: stallTimeout, environment: environment)
    }

    /// The backend, local rank count and job settings that the arguments and environment ask
    /// for, checked.
    static func settings(workers: Int?, backend: Backend?, stallTimeout: Double?,
                         environment: [String: String] = currentEnvironment()) throws -> (backend: Backend, count: Int, settings: JobSettings) {
        let chosen = try chooseBackend(requested: backend, workers: workers, environment: environment)
        let count = chosen == .local ? try localWorkerCount(workers, environment: environment) : 1
        let settings = try JobSettings.fromEnvironment(environment, stallTimeout: stallTimeout)
        if chosen == .local { try LocalJob.checkRankCount(count) }
        return (chosen, count, settings)
    }

    /// The number of local ranks: `workers`, else `SWIFTPAR_WORKERS`, else the number of cores
    /// this process may run on (`availableCores`).
    public static func localWorkerCount(_ workers: Int?, environment: [String: String] = currentEnvironment()) throws -> Int {
        if let workers { return workers }
        if let text = environment["SWIFTPAR_WORKERS"], !text.isEmpty {
            guard let value = Int(text), value >= 1, value <= SharedRegion.maximumRanks else {
                throw SwiftParUsageError("SWIFTPAR_WORKERS=\(text) is not a whole number from 1 to \(SharedRegion.maximumRanks)")
            }
            return value
        }
        return availableCores
    }

    /// The status a job ends with when a rank fails: it throws, crashes, stalls past the stall
    /// timeout, or cannot write its output. 1 unless the program sets another on every rank
    /// before `run` (the command line's `run` uses 255, GNU parallel's status for an error
    /// other than failed tasks, so that it is never taken for a count of them); a program that
    /// sets one also gets it, rather than 2, when the job cannot start. An interrupt still ends
    /// the job by the signal itself, as its shell then reports (128 + the signal's number).
    nonisolated(unsafe) package static var jobFailureStatus: Int32 = 1

    /// Starts the job and runs `body` on every rank, then ends the process. Never returns.
    ///
    /// Under a launcher each process is one rank of the MPI world (`MPI_Init_thread`, by default
    /// at `MPI_THREAD_SERIALIZED`, see `SWIFTPAR_MPI_THREAD_LEVEL`; `MPI_Finalize` at the end).
    /// Otherwise this process becomes rank 0 of a local job and starts the other ranks: by
    /// `fork` while the process runs a single thread, so they are copies of it as it is now;
    /// otherwise by starting the program again, once per rank (`SWIFTPAR_START` chooses). A
    /// started rank runs `main` from the top until it reaches `run`, as every rank does under
    /// mpirun, so code before `run` must not depend on being the only copy. Everything after
    /// `run` in `main` is never reached: the process ends when the job does.
    ///
    /// An error thrown by `body` on any rank is printed to standard error with the rank and
    /// ends the whole job with a non-zero status; the other ranks never stay blocked. So does
    /// output that `print` could not write (a full disk, a closed standard output).
    ///
    /// - Parameters:
    ///   - workers: the number of local ranks when no launcher started the process; nil for
    ///     `SWIFTPAR_WORKERS` or one per core. Under a launcher it must be nil or the
    ///     launcher's own count, else the process prints why and exits with status 2.
    ///   - backend: force a backend; nil chooses from the environment.
    ///   - stallTimeout: seconds a rank may wait with no sign of progress from the other ranks
    ///     (see ``Communicator/noteProgress()``) before the job ends naming those that made
    ///     none; nil for `SWIFTPAR_STALL_TIMEOUT` (default: no limit).
    ///   - body: the program every rank runs, given the world communicator.
    public static func run(workers: Int? = nil, backend: Backend? = nil, stallTimeout: Double? = nil,
                           _ body: (Communicator) throws -> Void) -> Never {
        let (communicator, job) = begin(workers: workers, backend: backend, stallTimeout: stallTimeout)
        watchForExit(communicator, job)
        var failure: (any Error)?
        do {
            try body(communicator)
        } catch {
            failure = error
        }
        stopWatchingForExit()
        end(job, communicator, failure: failure)
    }

    /// Starts the job and runs the asynchronous `body` on every rank, then ends the process.
    /// Never returns. For `async` programs: `body` may `await`.
    ///
    /// ```swift
    /// @main struct App {
    ///     static func main() async {
    ///         await SwiftPar.run { world in
    ///             let total = try world.allreduce(world.rank, .sum)
    ///             try await Task.sleep(for: .milliseconds(10))
    ///             if world.rank == 0 { print(total) }
    ///         }
    ///     }
    /// }
    /// ```
    ///
    /// `body` runs in the caller's isolation (the main actor in an `async` `main`); its
    /// communicator may be used from whatever thread the code runs on after an `await`, one
    /// operation at a time (see ``Communicator``). A local job started from an `async` `main`
    /// spawns its ranks, since the Swift runtime's threads are already running: each rank runs
    /// `main` from the top until it reaches `run`. Everything else is as in the synchronous
    /// `run(workers:backend:stallTimeout:_:)`.
    public static func run(workers: Int? = nil, backend: Backend? = nil, stallTimeout: Double? = nil,
                           isolation: isolated (any Actor)? = #isolation,
                           _ body: (Communicator) async throws -> Void) async -> Never {
        let (communicator, job) = begin(workers: workers, backend: backend, stallTimeout: stallTimeout)
        watchForExit(communicator, job)
        var failure: (any Error)?
        do {
            try await body(communicator)
        } catch {
            failure = error
        }
        stopWatchingForExit()
        end(job, communicator, failure: failure)
    }

    // MARK: exit inside the closure
    //
    // `exit` called inside the closure ends this rank alone, in the middle of the job. Under
    // mpirun, Open MPI then ends the job as "exiting improperly"; the local backend took a rank
    // that exited with 0 for one that had finished, so the job went on and ended with 0, or
    // another rank waited on it and was told it had "finished without calling" what it was in.
    // An atexit handler makes it an error of this rank, in the same words on every backend.

    /// The process whose closure is running (0 outside it, -1 once `exit` has claimed it):
    /// whichever comes first, the closure's end or `exit` on any thread, claims it.
    private static let closureProcess = ManagedAtomic<Int32>(0)
    /// The job of the closure that runs, written before `closureProcess` is armed.
    nonisolated(unsafe) private static var closureJob: (communicator: Communicator, job: Role)?
    private static let exitHandlerInstalled: Bool = atexit { SwiftPar.exitCalledInsideClosure() } == 0

    private static func watchForExit(_ communicator: Communicator, _ job: Role) {
        _ = exitHandlerInstalled
        closureJob = (communicator, job)
        closureProcess.store(getpid(), ordering: .releasing)
    }

    /// The closure has returned or thrown, or the program ends the job on purpose. If `exit`
    /// was called meanwhile on another thread, that thread ends the job: this one waits for it.
    static func stopWatchingForExit() {
        let (exchanged, original) = closureProcess.compareExchange(expected: getpid(), desired: 0, ordering: .acquiringAndReleasing)
        if !exchanged && original == -1 {
            while true { pause() }
        }
    }

    private static func exitCalledInsideClosure() {
        // A child process forked inside the closure exits as it likes (it is another process).
        guard closureProcess.compareExchange(expected: getpid(), desired: -1, ordering: .acquiringAndReleasing).exchanged,
              let running = closureJob else { return }
        let error = SwiftParUsageError("exit was called inside the closure given to SwiftPar.run, which would end this rank alone in the middle of the job: "
                                       + "return from the closure instead (set exitStatus to choose the status the job ends with)")
        switch running.job {
        case .local(let transport) where transport.engine.size > 1:
            end(running.job, running.communicator, failure: error)
        case .mpi:
            end(running.job, running.communicator, failure: error)
        default:
            // Nothing to end but this process; `exit` must not be called again from here.
            report(error, rank: 0, size: 1)
            swiftpar_flush_all_streams()
            _exit(jobFailureStatus)
        }
    }

    /// How this process takes part in the job.
    private enum Role {
        case mpi(MPITransport)
        case local(LocalTransport)
        case serial
    }

    /// Joins or starts the job and returns this rank's world communicator; on any failure,
    /// prints it and ends the process.
    private static func begin(workers: Int?, backend: Backend?, stallTimeout: Double?) -> (Communicator, Role) {
        StandardStreams.ensureOpen()
        keepMessageBuffersMapped()
        // A rank spawned by a local job joins it, whatever this call asks for.
        do {
            if let spawned = try LocalJob.joinIfSpawned(settings: try JobSettings.fromEnvironment(stallTimeout: stallTimeout)) {
                return (Communicator(transport: spawned, backend: .local, hostName: currentHostName()), .local(spawned))
            }
        } catch {
            fail("swiftpar: cannot join the local job that started this process: \(error)")
        }
        let chosen: Backend
        let count: Int
        let settings: JobSettings
        do {
            (chosen, count, settings) = try Self.settings(workers: workers, backend: backend, stallTimeout: stallTimeout)
        } catch {
            // Every rank of a launcher's job usually reads the same settings: one of them says so.
            fail("swiftpar: \(error)", sharedByRanks: true)
        }
        switch chosen {
        case .mpi:
            do {
                // Asked before MPI_Init: a singleton's MPI_Init starts a daemon of its own and
                // sets PMIx's variables, and its parent is then whatever started the program.
                let launched = LaunchEnvironment.detect() != nil
                let world = try MPIEnvironment.initialize(settings: settings)
                // When another rank fails, mpirun ends this one with SIGTERM: what it printed
                // and still holds in its buffer is written first, as the local backend does.
                _ = swiftpar_write_output_on_termination()
                if launched { LaunchEnvironment.endWithLauncher() }
                if world.rank == 0 && world.size > 1 {
                    noteUnsharedObjects("every rank is a process of its own, started by \(LaunchEnvironment.detect()?.launcher ?? "the launcher")")
                }
                return (Communicator(transport: world, backend: .mpi, hostName: MPIEnvironment.processorName), .mpi(world))
            } catch {
                // Every rank usually meets it alike (a library that will not load): said once.
                fail("swiftpar: cannot start MPI: \(error)", sharedByRanks: true)
            }
        case .local:
            if count > 1 && LocalJob.startMethod(settings: settings) == .spawn {
                noteUnsharedObjects(settings.start == .spawn ? "the ranks are spawned (SWIFTPAR_START=spawn), not forked"
                                    : "the ranks are spawned, not forked, as this process already runs threads (see SWIFTPAR_START)")
            }
            do {
                let world = try LocalJob.start(size: count, settings: settings)
                return (Communicator(transport: world, backend: .local, hostName: currentHostName()), .local(world))
            } catch {
                fail("swiftpar: \(error)")
            }
        case .serial:
            LocalJob.quitQuietly()
            return (Communicator(transport: SerialTransport(), backend: .serial, hostName: currentHostName()), .serial)
        }
    }

    /// Says, once, that the shared objects the program made before `run` are not shared between
    /// its ranks, when it made any: `why` the ranks do not inherit them.
    private static func noteUnsharedObjects(_ why: String) {
        guard SharedMapping.made.load(ordering: .relaxed) > 0 else { return }
        writeStandardError("swiftpar: note: shared objects made before SwiftPar.run (SharedValue, SharedArray, SharedQueue, ProcessLock, Manager) are not shared between the ranks of this job: \(why), so each rank has its own; pass values between ranks in messages\n")
    }

    /// Ends this rank: after its body returned (`failure` nil) or threw.
    private static func end(_ role: Role, _ communicator: Communicator, failure: (any Error)?) -> Never {
        var failure = failure
        // A task the closure started and did not await, still inside an operation: the rank
        // cannot finish under it (MPI_Finalize beside a running MPI call crashed every rank;
        // the local backend ended the job with 0 and the task's work silently dropped).
        if failure == nil && OneOperationAtATime.isHeldByAnotherThread {
            failure = SwiftParUsageError("the closure given to SwiftPar.run returned while a swiftpar operation was still running on another thread "
                                         + "(a task it started and did not await): await every task that uses the communicator before returning")
        }
        switch role {
        case .mpi(let world):
            do {
                if let failure { throw failure }
                if let failure = StandardOutput.flushChecked() { throw failure }
                try MPIEnvironment.finish()
            } catch {
                // An error every rank throws alike (a pool item that failed, collectives that do
                // not match) is rank 0's to report: the others give it time, so that the job ends
                // with one message rather than one per rank, each rank aborting over the others.
                if leavesReportToAnotherRank(error, worldRank: world.rank) {
                    swiftpar_flush_all_streams()
                    LaunchEnvironment.waitForRankZero()
                }
                report(error, rank: world.rank, size: world.size)
                // MPI_Finalize may block like a barrier; abort ends every rank instead.
                MPIEnvironment.abort(code: jobFailureStatus)
            }
            exit(communicator.exitStatus)
        case .local(let world):
            if let failure { LocalJob.fail(failure, world) }
            LocalJob.finish(world, status: communicator.exitStatus)
        case .serial:
            do {
                if let failure { throw failure }
                if let failure = StandardOutput.flushChecked() { throw failure }
            } catch {
                report(error, rank: 0, size: 1)
                exit(jobFailureStatus)
            }
            exit(communicator.exitStatus)
        }
    }

    /// The Open MPI library version, loading the library if needed; nil where it is not installed.
    public static var mpiLibraryVersion: String? { MPIEnvironment.libraryVersion }

    static func report(_ error: any Error, rank: Int, size: Int) {
        swiftpar_flush_all_streams()
        let message = plainMessage(error, rank: rank)
        if size == 1 {
            writeStandardError("swiftpar: \(message)\n")
        } else {
            writeStandardError("swiftpar: rank \(rank): \(message) (rank \(rank) of \(size) failed; ending the job)\n")
        }
    }

    /// Whether `error` is one that every rank of its communicator throws alike, by design, and
    /// this rank is not the one to report it: `CommunicatorError.mismatch` on a communicator
    /// rank other than 0, `PoolError.itemFailed` or `.stoppedOnRankZero` on a rank other than 0
    /// of the pool that threw it (its communicator may be split from the world).
    static func leavesReportToAnotherRank(_ error: any Error, worldRank: Int) -> Bool {
        if case let CommunicatorError.mismatch(_, _, rank)? = error as? CommunicatorError { return rank != 0 }
        switch error as? PoolError {
        case .itemFailed?, .stoppedOnRankZero?:
            let poolRank = lastPoolFailureRank.load(ordering: .relaxed)
            return (poolRank >= 0 ? poolRank : worldRank) != 0
        default: return false
        }
    }

    /// This process's rank in the communicator of the last pool call that threw a `PoolError`.
    private static let lastPoolFailureRank = ManagedAtomic<Int>(-1)

    /// Notes that a pool call over a communicator where this process is `poolRank` threw.
    @usableFromInline static func notePoolFailure(poolRank: Int) {
        lastPoolFailureRank.store(poolRank, ordering: .relaxed)
    }

    /// The error's text without a leading "rank N: ". An error of a communicator split from the
    /// world, where this process has another number, says so: the ranks it names are that
    /// communicator's.
    static func plainMessage(_ error: any Error, rank: Int) -> String {
        let text = errorText(error)
        let prefix = "rank \(rank): "
        if let own = (error as? CommunicatorError)?.rank, own != rank, text.hasPrefix("rank \(own): ") {
            return "on a communicator split from the world, where it is rank \(own): " + text.dropFirst("rank \(own): ".count)
        }
        return text.hasPrefix(prefix) ? String(text.dropFirst(prefix.count)) : text
    }

    /// Prints `message` and ends the process with status 2 (or `jobFailureStatus`, when the
    /// program set one). A problem that every rank of a
    /// launcher's job usually meets alike (`sharedByRanks`) is said once, by rank 0, unless this
    /// rank alone has it (see `LaunchEnvironment.reportSharedProblem`).
    static func fail(_ message: String, sharedByRanks: Bool = false) -> Never {
        if sharedByRanks {
            LaunchEnvironment.reportSharedProblem(message)
        } else {
            writeStandardError(message + "\n")
        }
        // A program that chose its own failure status (`run`: 255) gets it here too.
        stopWatchingForExit()
        exit(jobFailureStatus == 1 ? 2 : jobFailureStatus)
    }
}

/// Message buffers of a few MiB are allocated and freed on every receive. By default glibc
/// serves them with fresh mmaps or trims them back to the system after each free, so every
/// message pays for zero-filling new pages; keeping them in the heap makes a 4 MiB `Codable`
/// round trip several times faster. Only sizes up to 32 MiB are affected.
func keepMessageBuffersMapped() {
    swiftpar_keep_large_buffers(32 << 20, 256 << 20)
}

/// A request the user made that cannot be carried out, explained in one line.
public struct SwiftParUsageError: Error, CustomStringConvertible, Sendable {
    /// The explanation.
    public let description: String
    /// Creates an error with an explanation.
    public init(_ description: String) { self.description = description }
}

/// Writes all of `text` to standard error, unbuffered (for the whole package).
package func writeStandardError(_ text: String) {
    var copy = text
    copy.withUTF8 { writeStandardError(bytes: UnsafeRawBufferPointer($0)) }
}

/// Writes all of `bytes` to standard error, unbuffered; a closed or failing standard error
/// ends the attempt quietly (there is nowhere left to say so).
package func writeStandardError(bytes: UnsafeRawBufferPointer) {
    var offset = 0
    while offset < bytes.count {
        let written = write(2, bytes.baseAddress! + offset, bytes.count - offset)
        if written < 0 && errno == EINTR { continue }
        if written <= 0 { break }
        offset += written
    }
}
