import Atomics
import CSwiftParLinux
#if canImport(Glibc)
import Glibc
#endif

/// Starts and ends a local job: starts the ranks, watches them, and makes sure that however
/// the job ends (success, an error, a crash, Ctrl-C, SIGTERM, or the launcher being killed)
/// every rank is gone and the exit status says what happened.
///
/// The starting process becomes rank 0 and forks ranks 1…N−1 before any thread exists. Each
/// child asks the kernel for a signal when its parent dies (`PR_SET_PDEATHSIG`: SIGTERM, which
/// writes what the rank printed before it ends it, or SIGKILL where the program handles
/// SIGTERM itself), so a killed or crashed launcher leaves no orphans; a rank whose program
/// took SIGTERM over later finds its parent gone at its next wait. After the forks, rank 0
/// starts one monitor thread that reaps the children and handles SIGINT, SIGTERM, SIGHUP and
/// SIGQUIT (Ctrl-\) through a signalfd: a dead rank is recorded in the shared job block, every
/// rank is woken and those waiting on it throw at once, and if the job has not ended a second
/// later the monitor ends it.
enum LocalJob {
    /// Rank 0's monitor; set once, before the monitor thread starts, by the main thread.
    nonisolated(unsafe) static var monitor: LocalMonitor?

    /// Checks a number of local ranks before anything is allocated for them.
    static func checkRankCount(_ size: Int) throws {
        guard size >= 1 else { throw SwiftParUsageError("the number of local ranks must be at least 1, not \(size)") }
        guard size <= SharedRegion.maximumRanks else {
            throw SwiftParUsageError(
                "\(size) local ranks is more than the \(SharedRegion.maximumRanks) one machine can run; one rank per core is usually fastest (this machine has \(SwiftPar.onlineCores)); for more ranks, use several hosts with mpirun or srun")
        }
    }

    /// Starts ranks 1…`size`−1 and returns, in each forked process, its world communicator's
    /// transport. Forks while this process runs one thread (or with `SWIFTPAR_START=fork`);
    /// spawns new processes of the program otherwise (or with `SWIFTPAR_START=spawn`).
    static func start(size: Int, settings: JobSettings) throws -> LocalTransport {
        try checkRankCount(size)
        let threads = threadCount()
        switch settings.start {
        case .fork?:
            guard threads <= 1 else {
                throw SwiftParUsageError(
                    "SWIFTPAR_START=fork cannot be used here: this process already runs \(threads) threads, and a fork would copy only the calling one; use SWIFTPAR_START=spawn or auto")
            }
            return try startByForking(size: size, settings: settings)
        case .spawn?:
            return try startBySpawning(size: size, settings: settings)
        case nil:
            return threads <= 1 ? try startByForking(size: size, settings: settings) : try startBySpawning(size: size, settings: settings)
        }
    }

    /// The start method a job of this process would use now, for `info` and the tests.
    static func startMethod(settings: JobSettings) -> StartMethod {
        settings.start ?? (threadCount() <= 1 ? .fork : .spawn)
    }

    /// Ctrl-\ (SIGQUIT) reaches every rank of the terminal's job: a rank other than 0 ends as
    /// the signal's default action ends it, and rank 0 reports the interruption, rather than
    /// each rank printing the Swift runtime's crash report first.
    static func quitQuietly() {
        swiftpar_default_action_unless_ignored(SIGQUIT)
    }

    private static func startByForking(size: Int, settings: JobSettings) throws -> LocalTransport {
        let region = try SharedRegion(size: size)
        let launcher = getpid()
        region.pid(of: 0).store(Int(launcher), ordering: .relaxed)
        swiftpar_flush_all_streams()
        var children: [pid_t] = []
        for rank in 1..<max(size, 1) {
            let pid = fork()
            if pid == 0 {
                // In the child: die with the launcher, even if it is already gone.
                _ = swiftpar_set_parent_death_signal(SIGKILL)
                if getppid() != launcher { _exit(1) }
                quitQuietly()
                // Rank 0 ends a failed job's other ranks with SIGTERM, as mpirun does: what this
                // rank printed and still holds in its buffer is written first.
                diesWritingOutput(launcher: launcher)
                region.joined(rank).store(1, ordering: .releasing)
                return LocalTransport(engine: LocalEngine(region: region, rank: rank, settings: settings),
                                      members: Array(0..<size), context: 0)
            }
            try record(pid, rank: rank, in: region, children: &children, failure: "fork of rank \(rank) of \(size)")
        }
        let engine = LocalEngine(region: region, rank: 0, settings: settings)
        if size > 1 {
            let monitor = try LocalMonitor(region: region, engine: engine, children: children, spawned: false)
            self.monitor = monitor
            try startThread { monitor.watch() }
        } else {
            // A job of one rank ends on Ctrl-\ as a job of several does (exit 131); the Swift
            // runtime's handler printed a crash report and let the program run on.
            quitQuietly()
        }
        return LocalTransport(engine: engine, members: Array(0..<size), context: 0)
    }

    /// Starts the other ranks as new processes of this program, from a monitor thread that
    /// lives as long as the job (a child's parent-death signal follows the thread that started
    /// it), and waits until each has reached `SwiftPar.run` and joined.
    private static func startBySpawning(size: Int, settings: JobSettings) throws -> LocalTransport {
        let region = try SharedRegion(size: size, shareable: true)
        defer { close(region.descriptor) }
        region.pid(of: 0).store(Int(getpid()), ordering: .relaxed)
        region.joined(0).store(1, ordering: .relaxed)
        let engine = LocalEngine(region: region, rank: 0, settings: settings)
        guard size > 1 else {
            quitQuietly()
            return LocalTransport(engine: engine, members: [0], context: 0)
        }
        swiftpar_flush_all_streams()
        // A signal the process was started ignoring (nohup's SIGHUP) stays ignored.
        let caught: [Int32] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT].filter { swiftpar_ignored_at_start($0) == 0 }
        let signals = swiftpar_forward_signals_to_pipe(caught, Int32(caught.count))
        guard signals >= 0 else { throw SystemError.current("installing the local backend's signal handlers") }
        // The process may have started with these signals blocked (a parent's mask is
        // inherited): unblock them here and in the monitor thread, so the handlers run.
        unblock(caught)
        let handoff = SpawnHandoff()
        try startThread {
            unblock(caught)
            let spawned = Result { try spawnRanks(size: size, region: region) }
            handoff.deliver(spawned)
            guard case .success = spawned else { return }
            handoff.monitor().watch()
        }
        let children = try handoff.children()
        let monitor = try LocalMonitor(region: region, engine: engine, children: children, spawned: true, signals: signals)
        self.monitor = monitor
        handoff.start(monitor)
        // Every rank runs the program from the top; rank 0 waits until all have joined.
        while region.joinedRanks.load(ordering: .acquiring) < size - 1 {
            if region.failedRank.load(ordering: .acquiring) >= 0 { monitor.endJob(exitCode: SwiftPar.jobFailureStatus) }
            usleep(200)
        }
        return LocalTransport(engine: engine, members: Array(0..<size), context: 0)
    }

    /// Records a started rank's pid, or, when starting it failed (`pid` < 0), kills and reaps
    /// the ranks started so far and throws the failure with the current errno.
    private static func record(_ pid: pid_t, rank: Int, in region: SharedRegion, children: inout [pid_t], failure: String) throws {
        guard pid >= 0 else {
            let error = SystemError.current(failure)
            for child in children {
                kill(child, SIGKILL)
                var status: Int32 = 0
                waitpid(child, &status, 0)
            }
            throw error
        }
        children.append(pid)
        region.pid(of: rank).store(Int(pid), ordering: .relaxed)
    }

    /// Unblocks `signals` in the calling thread.
    private static func unblock(_ signals: [Int32]) {
        var mask = sigset_t()
        sigemptyset(&mask)
        for signal in signals { sigaddset(&mask, signal) }
        pthread_sigmask(SIG_UNBLOCK, &mask, nil)
    }

    /// Runs on the monitor thread: starts ranks 1…`size`−1 from `/proc/self/exe` with this
    /// program's arguments, its environment and the job's descriptor named in `SWIFTPAR_LOCAL_JOB`.
    private static func spawnRanks(size: Int, region: SharedRegion) throws -> [pid_t] {
        var environment: [String] = []
        var pointer = environ
        while let entry = pointer.pointee {
            let text = String(cString: entry)
            if !text.hasPrefix(SpawnedRank.variable + "=") { environment.append(text) }
            pointer += 1
        }
        var children: [pid_t] = []
        for rank in 1..<size {
            let job = SpawnedRank(rank: rank, size: size, descriptor: region.descriptor, launcher: getpid())
            let pid = withCStrings(environment + ["\(SpawnedRank.variable)=\(job.text)"]) { envp in
                swiftpar_spawn("/proc/self/exe", CommandLine.unsafeArgv, envp, region.descriptor)
            }
            try record(pid, rank: rank, in: region, children: &children, failure: "starting rank \(rank) of \(size) (posix_spawn of /proc/self/exe)")
        }
        return children
    }

    /// Makes SIGTERM, SIGINT and SIGHUP write what this rank printed and still holds before they end the rank, and
    /// the launcher's death (rank 0 crashing) end it that way too, as mpirun ends the others when
    /// one rank dies: their output so far is kept. A program with a SIGTERM handler of its own
    /// keeps dying by SIGKILL with the launcher, which no handler can keep alive.
    private static func diesWritingOutput(launcher: pid_t) {
        // Ctrl-C and a hang-up reach every rank of the process group at once, before rank 0
        // ends the others: what they printed is written then too, as under mpirun.
        _ = swiftpar_write_output_on_interruption()
        guard swiftpar_write_output_on_termination() != 0 else { return }
        _ = swiftpar_set_parent_death_signal(SIGTERM)
        if getppid() != launcher { _exit(1) }
    }

    /// Joins the job that spawned this process as the rank it names, or returns nil when this
    /// process was not spawned by a local job.
    static func joinIfSpawned(settings: @autoclosure () throws -> JobSettings) throws -> LocalTransport? {
        guard let job = try SpawnedRank.take() else { return nil }
        // Die with the thread that started this process; end at once if it is already gone.
        _ = swiftpar_set_parent_death_signal(SIGKILL)
        if getppid() != job.launcher { _exit(1) }
        quitQuietly()
        diesWritingOutput(launcher: job.launcher)
        let region = try SharedRegion(joining: job.descriptor, size: job.size)
        close(job.descriptor)
        region.pid(of: job.rank).store(Int(getpid()), ordering: .relaxed)
        let engine = LocalEngine(region: region, rank: job.rank, settings: try settings())
        region.joined(job.rank).store(1, ordering: .releasing)
        region.joinedRanks.wrappingIncrement(ordering: .releasing)
        return LocalTransport(engine: engine, members: Array(0..<job.size), context: 0)
    }

    /// Ends this rank after its closure returned normally. Rank 0 waits for every other rank.
    static func finish(_ transport: LocalTransport, status: Int32 = 0) -> Never {
        let engine = transport.engine
        do {
            try engine.flushSends(waiter: transport)
        } catch {
            fail(error, transport)
        }
        if let failure = StandardOutput.flushChecked() { fail(failure, transport) }
        engine.region.state(of: engine.me).store(RankState.finished.rawValue, ordering: .releasing)
        engine.wakeEveryone()
        guard engine.me == 0 else { _exit(status) }
        // Rank 0 waits for the others; with a stall timeout, not for ever for one that stopped.
        var quiet = QuietClock()
        monitor?.waitForChildren(status: status) {
            let seconds = quiet.seconds(at: monotonicNow(), engine)
            guard let timeout = engine.stallTimeout, seconds > timeout else { return }
            do {
                try engine.checkStall("finishing", quiet: seconds, rank: 0) { false }
            } catch {
                fail(error, transport)
            }
        }
        exit(status)
    }

    /// Ends this rank after its closure threw `error`; rank 0 ends the whole job.
    static func fail(_ error: any Error, _ transport: LocalTransport) -> Never {
        let engine = transport.engine
        let region = engine.region
        // An error caused by another rank's failure was already reported by that rank.
        var consequence: Bool
        if case CommunicatorError.peerFailed? = error as? CommunicatorError, region.failedRank.load(ordering: .acquiring) >= 0 {
            consequence = true
        } else {
            consequence = false
        }
        // An error every rank throws alike (a failed pool item) is rank 0's to report, as under
        // MPI: this rank gives it the time to, and stays quiet if it does.
        if !consequence && SwiftPar.leavesReportToAnotherRank(error, worldRank: engine.me) {
            let deadline = monotonicNow() + LaunchEnvironment.sharedProblemPause
            while region.failedRank.load(ordering: .acquiring) < 0 && monotonicNow() < deadline { usleep(1_000) }
            consequence = region.failedRank.load(ordering: .acquiring) >= 0
        }
        if !consequence {
            SwiftPar.report(error, rank: engine.me, size: engine.size)
            region.recordFailure(rank: engine.me, kind: .threw, message: SwiftPar.plainMessage(error, rank: engine.me))
        }
        region.state(of: engine.me).store(RankState.failed.rawValue, ordering: .releasing)
        engine.wakeEveryone()
        guard engine.me == 0 else {
            swiftpar_flush_all_streams()
            _exit(SwiftPar.jobFailureStatus)
        }
        if let monitor { monitor.endJob(exitCode: SwiftPar.jobFailureStatus) }
        exit(SwiftPar.jobFailureStatus)
    }

    /// Threads of this process, from /proc/self/status, leaving out the thread children are
    /// forked from (it waits holding no lock, so a fork meanwhile is safe, and it is not needed
    /// in the ranks: each process makes its own).
    static func threadCount() -> Int {
        guard let status = try? readWholeFile("/proc/self/status") else { return 1 }
        for line in String(decoding: status, as: UTF8.self).split(separator: "\n") where line.hasPrefix("Threads:") {
            let threads = Int(line.dropFirst(8).trimmingCharacters(in: " \t")) ?? 1
            return ForkingThread.runsInThisProcess ? max(threads - 1, 1) : threads
        }
        return 1
    }
}

extension StringProtocol {
    func trimmingCharacters(in set: String) -> String {
        var text = Substring(self)
        while let first = text.first, set.contains(first) { text = text.dropFirst() }
        while let last = text.last, set.contains(last) { text = text.dropLast() }
        return String(text)
    }
}

/// Rank 0's watcher of the other ranks (a thread of its own).
///
/// `@unchecked Sendable`, shared between the main thread and the monitor thread: `children`
/// and `region` never change; `reaped` and `ending` are atomics; `pidDescriptors` is touched
/// by the monitor thread only; `toleratedFailures` is written by the monitor thread only before
/// it counts the child as reaped, and read by the main thread only after every child is counted.
final class LocalMonitor: @unchecked Sendable {
    let region: SharedRegion
    let engine: LocalEngine
    let children: [pid_t]
    /// Whether the children were spawned (they must join before they end) rather than forked.
    let spawned: Bool
    /// A signalfd (forked ranks) or the reading end of the signal pipe (spawned ranks).
    private let signals: Int32
    /// Forked ranks: the reading end of the signal pipe as well, for signals that reach a
    /// thread which unblocked them (an `async` main's main thread, parked by the Swift runtime
    /// in a `sigsuspend` with nothing blocked, once its task awaits); -1 if it could not be made.
    private let forwarded: Int32
    /// A pidfd per child that is not reaped yet, -1 once reaped (spawned ranks; forked ones
    /// are noticed through SIGCHLD on the signalfd).
    private var pidDescriptors: [Int32]
    /// Children reaped so far.
    private let reaped = ManagedAtomic<Int>(0)
    /// Whether each child has been reaped.
    private let isReaped: [ManagedAtomic<Bool>]
    /// Ranks that died while rank 0 handled failures itself; reported when the job ends.
    private var toleratedFailures: [Int] = []

    /// A monitor for `children`. Forked ranks: blocks SIGCHLD, SIGINT, SIGTERM, SIGHUP and SIGQUIT in
    /// the calling thread, the only one, so every later thread inherits the mask and the
    /// signals reach a signalfd; handlers that write the signal pipe catch them in a thread
    /// that unblocks them. Spawned ranks: `signals` is the pipe the signal handlers write.
    init(region: SharedRegion, engine: LocalEngine, children: [pid_t], spawned: Bool, signals: Int32 = -1) throws {
        self.region = region
        self.engine = engine
        self.children = children
        self.spawned = spawned
        isReaped = children.map { _ in ManagedAtomic(false) }
        if spawned {
            self.signals = signals
            forwarded = -1
            pidDescriptors = children.map { swiftpar_pidfd_open($0) }
            return
        }
        pidDescriptors = []
        var mask = sigset_t()
        sigemptyset(&mask)
        // A blocked signal is queued even when ignored: one the process was started ignoring
        // (nohup's SIGHUP) is left out, so it stays ignored.
        for signal in [SIGCHLD, SIGINT, SIGTERM, SIGHUP, SIGQUIT] where swiftpar_ignored_at_start(signal) == 0 { sigaddset(&mask, signal) }
        pthread_sigmask(SIG_BLOCK, &mask, nil)
        self.signals = signalfd(-1, &mask, Int32(SFD_CLOEXEC | SFD_NONBLOCK))
        guard self.signals >= 0 else { throw SystemError.current("signalfd for the local backend's monitor") }
        // A thread that unblocks them later gets them instead, where their default action would
        // end rank 0 without a word, its output and its children left behind (found by a
        // helper: Ctrl-C on an async main whose task awaited). Handlers pass them on here too.
        let caught: [Int32] = [SIGCHLD, SIGINT, SIGTERM, SIGHUP, SIGQUIT].filter { swiftpar_ignored_at_start($0) == 0 }
        forwarded = swiftpar_forward_signals_to_pipe(caught, Int32(caught.count))
    }

    /// The monitor thread's loop: reaps children, handles signals, ends a failed job.
    func watch() -> Never {
        var deadline: Double?
        while true {
            var watched = [pollfd(fd: signals, events: Int16(POLLIN), revents: 0)]
            if forwarded >= 0 { watched.append(pollfd(fd: forwarded, events: Int16(POLLIN), revents: 0)) }
            for descriptor in pidDescriptors where descriptor >= 0 {
                watched.append(pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0))
            }
            _ = poll(&watched, nfds_t(watched.count), 100)
            for signal in caughtSignals() where signal != SIGCHLD {
                region.recordFailure(rank: 0, kind: .interrupted, value: Int(signal))
                endJob(exitCode: 128 + signal)
            }
            reapChildren()
            if region.failedRank.load(ordering: .acquiring) >= 0 {
                if deadline == nil {
                    engine.wakeEveryone()
                    deadline = monotonicNow() + 1.0
                } else if monotonicNow() >= deadline! {
                    endJob(exitCode: SwiftPar.jobFailureStatus)
                }
            }
        }
    }

    /// The signals that arrived since the last call.
    private func caughtSignals() -> [Int32] {
        var found: [Int32] = []
        func readPipe(_ descriptor: Int32) {
            var bytes = [UInt8](repeating: 0, count: 64)
            while true {
                let count = Glibc.read(descriptor, &bytes, bytes.count)
                guard count > 0 else { break }
                found += bytes[..<count].map { Int32($0) }
            }
        }
        if spawned {
            readPipe(signals)
        } else {
            var info = signalfd_siginfo()
            while Glibc.read(signals, &info, MemoryLayout<signalfd_siginfo>.size) == MemoryLayout<signalfd_siginfo>.size {
                found.append(Int32(info.ssi_signo))
            }
            if forwarded >= 0 { readPipe(forwarded) }
        }
        return found
    }

    /// Reaps every child that has ended and records how it ended.
    private func reapChildren() {
        // Once the job is ending, its ending reaps the children, after it has stopped signalling
        // them: reaped here meanwhile, a child's pid could be given to another process first.
        guard region.ending.load(ordering: .acquiring) == 0 else { return }
        for (index, pid) in children.enumerated() where !isReaped[index].load(ordering: .acquiring) {
            var status: Int32 = 0
            guard waitpid(pid, &status, WNOHANG) == pid else { continue }
            let rank = index + 1
            if index < pidDescriptors.count, pidDescriptors[index] >= 0 {
                close(pidDescriptors[index])
                pidDescriptors[index] = -1
            }
            let termination = status & 0x7F
            if [SIGINT, SIGTERM, SIGHUP, SIGQUIT].contains(termination) && region.failedRank.load(ordering: .acquiring) < 0 {
                // Ctrl-C signals the whole process group at once, and a rank may die of it
                // before this process's own signal has arrived: give it a moment, so the job
                // reports the interruption rather than the rank.
                usleep(20_000)
                if let signal = caughtSignals().first(where: { $0 != SIGCHLD }) {
                    region.recordFailure(rank: 0, kind: .interrupted, value: Int(signal))
                    endJob(exitCode: 128 + signal)
                }
            }
            let tolerated = region.toleratesFailures.load(ordering: .sequentiallyConsistent) != 0
            if region.joined(rank).load(ordering: .acquiring) == 0 && termination != 0x7F {
                // A spawned rank that ended before it reached SwiftPar.run.
                region.recordFailure(rank: rank, kind: .endedBeforeJoining, value: termination != 0 ? -Int(termination) : Int((status >> 8) & 0xFF))
                region.state(of: rank).store(RankState.failed.rawValue, ordering: .releasing)
            } else if tolerated && !(termination == 0 && (status >> 8) & 0xFF == 0) {
                let signaled = termination != 0
                region.recordRankFailure(rank: rank, kind: signaled ? .signal : .exitStatus,
                                         value: Int(signaled ? termination : (status >> 8) & 0xFF))
                toleratedFailures.append(rank)
            } else if termination == 0 {
                let code = Int((status >> 8) & 0xFF)
                if code == 0 {
                    _ = region.state(of: rank).compareExchange(
                        expected: RankState.running.rawValue, desired: RankState.finished.rawValue, ordering: .acquiringAndReleasing)
                } else {
                    region.recordFailure(rank: rank, kind: .exitStatus, value: code)
                    region.state(of: rank).store(RankState.failed.rawValue, ordering: .releasing)
                }
            } else if termination != 0x7F {
                if termination == SIGPIPE {
                    // A rank writing to a pipe whose reader left: end the job as quietly as the rank died.
                    endJob(exitCode: 128 + SIGPIPE, quiet: true)
                }
                region.recordFailure(rank: rank, kind: .signal, value: Int(termination))
                region.state(of: rank).store(RankState.failed.rawValue, ordering: .releasing)
            }
            isReaped[index].store(true, ordering: .releasing)
            reaped.wrappingIncrement(ordering: .releasing)
            engine.wakeEveryone()
        }
    }

    /// Rank 0's closure has returned: wait until every child has ended, then end the job.
    func waitForChildren(status: Int32, whileWaiting: () -> Void) -> Never {
        while reaped.load(ordering: .acquiring) < children.count {
            if region.failedRank.load(ordering: .acquiring) >= 0 { endJob(exitCode: SwiftPar.jobFailureStatus) }
            whileWaiting()
            usleep(2000)
        }
        if region.failedRank.load(ordering: .acquiring) >= 0 { endJob(exitCode: SwiftPar.jobFailureStatus) }
        for rank in toleratedFailures {
            writeStandardError("swiftpar: note: rank \(rank) \(region.rankFailureDescription(rank)) and the job went on without it; its unfinished work was redone by the other ranks\n")
        }
        exit(status)
    }

    /// Kills every rank still running, reports why the job ended, and exits. Only the first
    /// thread to get here does it; any other waits to be ended with the process.
    func endJob(exitCode: Int32, quiet: Bool = false) -> Never {
        guard region.ending.compareExchange(expected: 0, desired: 1, ordering: .acquiringAndReleasing).exchanged else {
            while true { pause() }
        }
        // With the processes they started (each asked with SIGTERM first, so that a rank writes
        // what it printed before it goes): a rank killed while it crashes leaves the Swift
        // runtime's backtracer waiting for good on a socket whose ends it holds both of, with
        // the job's standard output and error open, so a pipeline reading them never ends.
        let running = children.enumerated().filter { !isReaped[$0.offset].load(ordering: .acquiring) }.map(\.element)
        _ = running.withUnsafeBufferPointer { swiftpar_kill_with_descendants($0.baseAddress, Int32($0.count)) }
        for (index, pid) in children.enumerated() where !isReaped[index].load(ordering: .acquiring) {
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        }
        if quiet { _exit(exitCode) }
        swiftpar_flush_all_streams()
        var exitCode = exitCode
        if let failure = region.failureDescription() {
            switch FailureKind(rawValue: region.failureKind.load(ordering: .relaxed)) {
            case .interrupted?:
                let signal = Int32(region.failureValue.load(ordering: .relaxed))
                writeStandardError("swiftpar: interrupted by \(signalName(signal)); stopped all \(children.count + 1) ranks\n")
                // Ended by the signal itself, as a program without handlers would be.
                swiftpar_die_of_signal(signal)
            case .threw?:
                // The rank has printed its error itself.
                break
            case .exitStatus?:
                // A rank that returned with a status of its own (`exitStatus`, or `exit`) ends
                // the job with it, as under mpirun.
                writeStandardError("swiftpar: rank \(failure.rank) \(failure.text); ended the job\n")
                let status = region.failureValue.load(ordering: .relaxed)
                if (1...255).contains(status) { exitCode = Int32(status) }
            default:
                writeStandardError("swiftpar: rank \(failure.rank) \(failure.text); ended the job\n")
            }
        }
        _exit(exitCode)
    }
}

/// Seconds on the monotonic clock (for the whole package: the CLI and the test programs too).
@usableFromInline
package func monotonicNow() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

/// The calling thread's time so far: seconds on a CPU, and seconds it was ready to run but
/// waited for one (other threads had the cores). Nil where the kernel keeps no such figures.
@usableFromInline
package func threadSchedule() -> (onCPU: Double, waitingForCPU: Double)? {
    var onCPU: UInt64 = 0
    var waiting: UInt64 = 0
    guard swiftpar_thread_schedule(&onCPU, &waiting) == 0 else { return nil }
    return (Double(onCPU) / 1e9, Double(waiting) / 1e9)
}

/// Starts a detached thread running `body`.
func startThread(_ body: @escaping @Sendable () -> Void) throws {
    _ = try startJoinableThread(body, detached: true)
}

/// Starts a thread running `body`; joinable unless `detached`.
@discardableResult
package func startJoinableThread(_ body: @escaping @Sendable () -> Void, detached: Bool = false) throws -> pthread_t {
    final class ThreadBody {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    var thread = pthread_t()
    let context = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    let code = pthread_create(&thread, nil, { context in
        Unmanaged<ThreadBody>.fromOpaque(context!).takeRetainedValue().body()
        return nil
    }, context)
    guard code == 0 else { throw SystemError("pthread_create", code: code) }
    if detached { pthread_detach(thread) }
    return thread
}

/// What a spawned rank finds in `SWIFTPAR_LOCAL_JOB`: the job it was started for.
struct SpawnedRank: Equatable {
    static let variable = "SWIFTPAR_LOCAL_JOB"
    let rank: Int
    let size: Int
    /// The inherited memfd of the job's shared memory.
    let descriptor: Int32
    /// The pid of rank 0, this process's parent.
    let launcher: pid_t

    /// "RANK SIZE DESCRIPTOR LAUNCHER".
    var text: String { "\(rank) \(size) \(descriptor) \(launcher)" }

    /// Parses `text`; nil unless it names a rank of a job of a possible size.
    init?(text: String) {
        let fields = text.split(separator: " ").compactMap { Int($0) }
        guard fields.count == 4, fields[1] >= 2, fields[1] <= SharedRegion.maximumRanks, fields[0] >= 1, fields[0] < fields[1],
              let descriptor = Int32(exactly: fields[2]), descriptor >= 0, let launcher = pid_t(exactly: fields[3]), launcher > 0
        else { return nil }
        (rank, size, self.descriptor, self.launcher) = (fields[0], fields[1], descriptor, launcher)
    }

    init(rank: Int, size: Int, descriptor: Int32, launcher: pid_t) {
        (self.rank, self.size, self.descriptor, self.launcher) = (rank, size, descriptor, launcher)
    }

    /// The job named in this process's environment, removed from it so that the rank's own
    /// child processes do not see it; nil when there is none.
    static func take() throws -> SpawnedRank? {
        guard let text = getenvString(variable) else { return nil }
        unsetenv(variable)
        guard let job = SpawnedRank(text: text) else {
            throw SwiftParUsageError("\(variable)=\(text) is not a job this process can join (it is set by swiftpar's local backend for the ranks it starts; unset it)")
        }
        return job
    }
}

/// Passes the spawned children from the monitor thread to the starting thread, and the monitor
/// back. Each side waits on a semaphore for the other's value, written before the post.
private final class SpawnHandoff: @unchecked Sendable {
    private var spawned: Result<[pid_t], any Error>?
    private var started: LocalMonitor?
    private let childrenReady = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)
    private let monitorReady = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)

    init() {
        sem_init(childrenReady, 0, 0)
        sem_init(monitorReady, 0, 0)
    }

    func deliver(_ result: Result<[pid_t], any Error>) {
        spawned = result
        sem_post(childrenReady)
    }

    func children() throws -> [pid_t] {
        while sem_wait(childrenReady) != 0 {}
        return try spawned!.get()
    }

    func start(_ monitor: LocalMonitor) {
        started = monitor
        sem_post(monitorReady)
    }

    func monitor() -> LocalMonitor {
        while sem_wait(monitorReady) != 0 {}
        return started!
    }
}

/// Calls `body` with a NUL-terminated array of C strings made from `strings` (for the package).
package func withCStrings<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> R) -> R {
    let pointers = strings.map { strdup($0) } + [nil]
    defer { for pointer in pointers { free(pointer) } }
    return body(pointers)
}
