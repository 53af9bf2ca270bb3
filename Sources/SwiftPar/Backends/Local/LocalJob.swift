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
/// child asks the kernel for SIGKILL when its parent dies (`PR_SET_PDEATHSIG`), so a killed
/// launcher leaves no orphans. After the forks, rank 0 starts one monitor thread that reaps the
/// children and handles SIGINT, SIGTERM and SIGHUP through a signalfd: a dead rank is recorded
/// in the shared job block, every rank is woken and those waiting on it throw at once, and if
/// the job has not ended a second later the monitor ends it.
enum LocalJob {
    /// Rank 0's monitor; set once, before the monitor thread starts, by the main thread.
    nonisolated(unsafe) static var monitor: LocalMonitor?

    /// Checks a number of local ranks before anything is allocated for them.
    static func checkRankCount(_ size: Int) throws {
        guard size >= 1 else { throw SwiftParUsageError("the number of local ranks must be at least 1, not \(size)") }
        guard size <= SharedRegion.maximumRanks else {
            throw SwiftParUsageError(
                "\(size) local ranks is more than the \(SharedRegion.maximumRanks) one machine can run; one rank per core is usually fastest (this machine has \(max(Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), 1))); for more ranks, use several hosts with mpirun or srun")
        }
    }

    /// Forks `size` ranks and returns, in each process, its world communicator's transport.
    static func start(size: Int, settings: JobSettings) throws -> LocalTransport {
        try checkRankCount(size)
        let threads = threadCount()
        guard threads <= 1 else {
            throw SwiftParUsageError(
                "the local backend must fork its ranks before any thread starts, but this process already runs \(threads) threads; call SwiftPar.run at the start of main")
        }
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
                return LocalTransport(engine: LocalEngine(region: region, rank: rank, stallTimeout: settings.stallTimeout),
                                      members: Array(0..<size), context: 0)
            }
            if pid < 0 {
                let failure = SystemError.current("fork of rank \(rank) of \(size)")
                for child in children { kill(child, SIGKILL); var status: Int32 = 0; waitpid(child, &status, 0) }
                throw failure
            }
            children.append(pid)
            region.pid(of: rank).store(Int(pid), ordering: .relaxed)
        }
        let engine = LocalEngine(region: region, rank: 0, stallTimeout: settings.stallTimeout)
        if size > 1 {
            monitor = try LocalMonitor(region: region, engine: engine, children: children)
        }
        return LocalTransport(engine: engine, members: Array(0..<size), context: 0)
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
        monitor?.waitForChildren(status: status)
        exit(status)
    }

    /// Ends this rank after its closure threw `error`; rank 0 ends the whole job.
    static func fail(_ error: any Error, _ transport: LocalTransport) -> Never {
        let engine = transport.engine
        let region = engine.region
        // An error caused by another rank's failure was already reported by that rank.
        let consequence: Bool
        if case CommunicatorError.peerFailed? = error as? CommunicatorError, region.failedRank.load(ordering: .acquiring) >= 0 {
            consequence = true
        } else {
            consequence = false
        }
        if !consequence {
            SwiftPar.report(error, rank: engine.me, size: engine.size)
            region.recordFailure(rank: engine.me, kind: .threw, message: SwiftPar.plainMessage(error, rank: engine.me))
        }
        region.state(of: engine.me).store(RankState.failed.rawValue, ordering: .releasing)
        engine.wakeEveryone()
        guard engine.me == 0 else {
            swiftpar_flush_all_streams()
            _exit(1)
        }
        if let monitor { monitor.endJob(exitCode: 1) }
        exit(1)
    }

    /// Threads of this process, from /proc/self/status.
    static func threadCount() -> Int {
        guard let status = try? readWholeFile("/proc/self/status") else { return 1 }
        for line in String(decoding: status, as: UTF8.self).split(separator: "\n") where line.hasPrefix("Threads:") {
            return Int(line.dropFirst(8).trimmingCharacters(in: " \t")) ?? 1
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

/// Rank 0's watcher of the other ranks (a thread started after the forks).
///
/// Shared between the main thread and the monitor thread: `children` and `region` never change;
/// `reaped` and `ending` are atomics; `toleratedFailures` is written by the monitor thread only
/// before it counts the child as reaped, and read by the main thread only after every child
/// is counted.
final class LocalMonitor: @unchecked Sendable {
    let region: SharedRegion
    let engine: LocalEngine
    let children: [pid_t]
    private let signals: Int32
    /// Children reaped so far.
    private let reaped = ManagedAtomic<Int>(0)
    /// Whether each child has been reaped.
    private let isReaped: [ManagedAtomic<Bool>]
    /// Ranks that died while rank 0 handled failures itself; reported when the job ends.
    private var toleratedFailures: [Int] = []

    init(region: SharedRegion, engine: LocalEngine, children: [pid_t]) throws {
        self.region = region
        self.engine = engine
        self.children = children
        isReaped = children.map { _ in ManagedAtomic(false) }
        var mask = sigset_t()
        sigemptyset(&mask)
        for signal in [SIGCHLD, SIGINT, SIGTERM, SIGHUP] { sigaddset(&mask, signal) }
        // Blocked here, in the only thread, so every later thread inherits the mask and the
        // signals reach the signalfd instead.
        pthread_sigmask(SIG_BLOCK, &mask, nil)
        signals = signalfd(-1, &mask, Int32(SFD_CLOEXEC | SFD_NONBLOCK))
        guard signals >= 0 else { throw SystemError.current("signalfd for the local backend's monitor") }
        try startThread { [self] in self.watch() }
    }

    private func watch() -> Never {
        var deadline: Double?
        while true {
            var descriptor = pollfd(fd: signals, events: Int16(POLLIN), revents: 0)
            _ = poll(&descriptor, 1, 100)
            var info = signalfd_siginfo()
            while Glibc.read(signals, &info, MemoryLayout<signalfd_siginfo>.size) == MemoryLayout<signalfd_siginfo>.size {
                let signal = Int32(info.ssi_signo)
                if signal != SIGCHLD {
                    region.recordFailure(rank: 0, kind: .interrupted, value: Int(signal))
                    endJob(exitCode: 128 + signal)
                }
            }
            reapChildren()
            if region.failedRank.load(ordering: .acquiring) >= 0 {
                if deadline == nil {
                    engine.wakeEveryone()
                    deadline = monotonicNow() + 1.0
                } else if monotonicNow() >= deadline! {
                    endJob(exitCode: 1)
                }
            }
        }
    }

    /// Reaps every child that has ended and records how it ended.
    private func reapChildren() {
        for (index, pid) in children.enumerated() where !isReaped[index].load(ordering: .acquiring) {
            var status: Int32 = 0
            guard waitpid(pid, &status, WNOHANG) == pid else { continue }
            let rank = index + 1
            let termination = status & 0x7F
            let tolerated = region.toleratesFailures.load(ordering: .sequentiallyConsistent) != 0
            if tolerated && !(termination == 0 && (status >> 8) & 0xFF == 0) {
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
    func waitForChildren(status: Int32) -> Never {
        while reaped.load(ordering: .acquiring) < children.count {
            if region.failedRank.load(ordering: .acquiring) >= 0 { endJob(exitCode: 1) }
            usleep(2000)
        }
        if region.failedRank.load(ordering: .acquiring) >= 0 { endJob(exitCode: 1) }
        for rank in toleratedFailures {
            writeStandardError("swiftpar: note: rank \(rank) \(region.rankFailureDescription(rank)) during a map with retries; its unfinished items were redone by the other ranks\n")
        }
        exit(status)
    }

    /// Kills every rank still running, reports why the job ended, and exits. Only the first
    /// thread to get here does it; any other waits to be ended with the process.
    func endJob(exitCode: Int32, quiet: Bool = false) -> Never {
        guard region.ending.compareExchange(expected: 0, desired: 1, ordering: .acquiringAndReleasing).exchanged else {
            while true { pause() }
        }
        for pid in children { kill(pid, SIGKILL) }
        for (index, pid) in children.enumerated() where !isReaped[index].load(ordering: .acquiring) {
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        }
        if quiet { _exit(exitCode) }
        swiftpar_flush_all_streams()
        if let failure = region.failureDescription() {
            switch FailureKind(rawValue: region.failureKind.load(ordering: .relaxed)) {
            case .interrupted?:
                let signal = Int32(region.failureValue.load(ordering: .relaxed))
                writeStandardError("swiftpar: interrupted by \(signalName(signal)); stopped all \(children.count + 1) ranks\n")
            case .threw?:
                // The rank has printed its error itself.
                break
            default:
                writeStandardError("swiftpar: rank \(failure.rank) \(failure.text); ended the job\n")
            }
        }
        _exit(exitCode)
    }
}

@usableFromInline
func monotonicNow() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

/// Starts a detached thread running `body`.
func startThread(_ body: @escaping @Sendable () -> Void) throws {
    _ = try startJoinableThread(body, detached: true)
}

/// Starts a thread running `body`; joinable unless `detached`.
@discardableResult
func startJoinableThread(_ body: @escaping @Sendable () -> Void, detached: Bool = false) throws -> pthread_t {
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
