import Atomics
import CMPI
#if canImport(Glibc)
import Glibc
#endif

/// Starts and ends a local job: forks the ranks, watches them, and makes sure that however
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
    nonisolated(unsafe) static var monitor: LocalMonitor?

    /// Forks `size` ranks and returns, in each process, its world communicator's transport.
    static func start(size: Int) throws -> LocalTransport {
        guard size >= 1 else { throw SwiftParUsageError("the number of workers must be at least 1, not \(size)") }
        let threads = threadCount()
        guard threads <= 1 else {
            throw SwiftParUsageError(
                "the local backend must fork its ranks before any thread starts, but this process already runs \(threads) threads; call SwiftPar.run at the start of main")
        }
        let region = try SharedRegion(size: size)
        var doorbells: [Int32] = []
        for _ in 0..<size {
            let fd = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
            guard fd >= 0 else { throw SwiftParUsageError("cannot create an eventfd: \(String(cString: strerror(errno)))") }
            doorbells.append(fd)
        }
        let launcher = getpid()
        region.pid(of: 0).store(Int(launcher), ordering: .relaxed)
        fflush(stdout)
        fflush(stderr)
        var children: [pid_t] = []
        for rank in 1..<max(size, 1) {
            let pid = fork()
            if pid == 0 {
                // In the child: die with the launcher, even if it is already gone.
                _ = swiftpar_set_parent_death_signal(SIGKILL)
                if getppid() != launcher { _exit(1) }
                return LocalTransport(engine: LocalEngine(region: region, rank: rank, doorbells: doorbells),
                                      members: Array(0..<size), context: 0)
            }
            if pid < 0 {
                let reason = String(cString: strerror(errno))
                for child in children { kill(child, SIGKILL); var status: Int32 = 0; waitpid(child, &status, 0) }
                throw SwiftParUsageError("cannot start rank \(rank) of \(size): fork failed: \(reason)")
            }
            children.append(pid)
            region.pid(of: rank).store(Int(pid), ordering: .relaxed)
        }
        let engine = LocalEngine(region: region, rank: 0, doorbells: doorbells)
        if size > 1 {
            monitor = try LocalMonitor(region: region, engine: engine, children: children)
        }
        return LocalTransport(engine: engine, members: Array(0..<size), context: 0)
    }

    /// Ends this rank after its closure returned normally. Rank 0 waits for every other rank.
    static func finish(_ transport: LocalTransport, status: Int32 = 0) -> Never {
        let engine = transport.engine
        do {
            try engine.flushSends()
        } catch {
            fail(error, transport)
        }
        flushOutput()
        engine.region.state(of: engine.me).store(RankState.finished.rawValue, ordering: .releasing)
        engine.wakeEveryone()
        guard engine.me == 0 else { exit(status) }
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
            flushOutput()
            exit(1)
        }
        if let monitor { monitor.endJob(exitCode: 1) }
        exit(1)
    }

    /// Threads of this process, from /proc/self/status.
    static func threadCount() -> Int {
        guard let file = fopen("/proc/self/status", "r") else { return 1 }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 256)
        while fgets(&line, Int32(line.count), file) != nil {
            let text = String(cString: line)
            if text.hasPrefix("Threads:") {
                return Int(text.dropFirst(8).trimmingCharacters(in: " \t\n")) ?? 1
            }
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
final class LocalMonitor {
    let region: SharedRegion
    let engine: LocalEngine
    let children: [pid_t]
    private let signals: Int32
    /// Children reaped so far; read by the main thread while it waits.
    private let reaped = UnsafeAtomic<Int>.create(0)
    private var isReaped: [Bool]
    /// Ranks that died while rank 0 handled failures itself; reported when the job ends.
    private var toleratedFailures: [Int] = []

    init(region: SharedRegion, engine: LocalEngine, children: [pid_t]) throws {
        self.region = region
        self.engine = engine
        self.children = children
        isReaped = Array(repeating: false, count: children.count)
        var mask = sigset_t()
        sigemptyset(&mask)
        for signal in [SIGCHLD, SIGINT, SIGTERM, SIGHUP] { sigaddset(&mask, signal) }
        // Blocked here, in the only thread, so every later thread inherits the mask and the
        // signals reach the signalfd instead.
        pthread_sigmask(SIG_BLOCK, &mask, nil)
        signals = signalfd(-1, &mask, Int32(SFD_CLOEXEC | SFD_NONBLOCK))
        guard signals >= 0 else { throw SwiftParUsageError("cannot create a signalfd: \(String(cString: strerror(errno)))") }
        var thread = pthread_t()
        let context = Unmanaged.passRetained(self).toOpaque()
        let created = pthread_create(&thread, nil, { context in
            Unmanaged<LocalMonitor>.fromOpaque(context!).takeUnretainedValue().watch()
            return nil
        }, context)
        guard created == 0 else { throw SwiftParUsageError("cannot start the local backend's monitor thread") }
        pthread_detach(thread)
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
        for (index, pid) in children.enumerated() where !isReaped[index] {
            var status: Int32 = 0
            guard waitpid(pid, &status, WNOHANG) == pid else { continue }
            isReaped[index] = true
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
                region.recordFailure(rank: rank, kind: .signal, value: Int(termination))
                region.state(of: rank).store(RankState.failed.rawValue, ordering: .releasing)
            }
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
    func endJob(exitCode: Int32) -> Never {
        guard region.ending.compareExchange(expected: 0, desired: 1, ordering: .acquiringAndReleasing).exchanged else {
            while true { pause() }
        }
        for pid in children { kill(pid, SIGKILL) }
        for (index, pid) in children.enumerated() where !isReaped[index] {
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        }
        flushOutput()
        if let failure = region.failureDescription() {
            if FailureKind(rawValue: region.failureKind.load(ordering: .relaxed)) == .interrupted {
                let signal = Int32(region.failureValue.load(ordering: .relaxed))
                writeStandardError("swiftpar: interrupted by \(signalName(signal)); stopped all \(children.count + 1) ranks\n")
            } else {
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
