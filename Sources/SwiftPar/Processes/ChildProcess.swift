import CSwiftParLinux
#if canImport(Glibc)
import Glibc
#endif

/// A closure run in a child process: the article's `Process`, without pickling, since the
/// child is a fork of this process and already has the closure.
///
/// ```swift
/// let worker = ChildProcess { print("child \(getpid())") }
/// try worker.start()
/// let status = try worker.join()   // 0 on success
/// ```
///
/// The child exits 0 when the closure returns and 1 when it throws (printing the error). It
/// is killed if this process dies (`PR_SET_PDEATHSIG`), so none outlives its parent; and only
/// then, whatever thread started it (children are forked by one thread that lasts as long as
/// the process: Linux sends the signal when the forking thread ends).
public final class ChildProcess {
    private let body: () throws -> Void
    /// The child's process id once started, else nil.
    public private(set) var pid: pid_t?
    /// The exit code once joined: the child's exit status, or minus the signal that killed it
    /// (as Python's `exitcode`).
    public private(set) var exitCode: Int32?

    /// A child process that will run `body` when started.
    public init(_ body: @escaping () throws -> Void) {
        self.body = body
    }

    /// Forks the child and runs the closure in it; returns at once in this process. Throws
    /// `SwiftParUsageError` when the child was started already.
    public func start() throws {
        guard pid == nil else { throw SwiftParUsageError("start() called on a ChildProcess that was already started (process \(pid!))") }
        swiftpar_flush_all_streams()
        let parent = getpid()
        // The child runs with this thread's signal mask, not the forking thread's.
        var mask = sigset_t()
        pthread_sigmask(SIG_SETMASK, nil, &mask)
        let body = self.body
        let child = try ForkingThread.ofThisProcess().fork(UncheckedBox<() -> Never> { () -> Never in
            _ = swiftpar_set_parent_death_signal(SIGKILL)
            if getppid() != parent { _exit(1) }
            pthread_sigmask(SIG_SETMASK, &mask, nil)
            do {
                try body()
            } catch {
                swiftpar_flush_all_streams()
                writeStandardError("swiftpar: child process \(getpid()) failed: \(errorText(error))\n")
                exit(1)
            }
            exit(0)
        })
        pid = child
    }

    /// The exit code if the child has ended (reaping it), else nil; never waits.
    func exitCodeIfEnded() -> Int32? {
        if let exitCode { return exitCode }
        guard let pid else { return nil }
        var status: Int32 = 0
        let reaped = waitpid(pid, &status, WNOHANG)
        guard reaped == pid else { return nil }
        return ended(status)
    }

    /// Records and returns the exit code of a wait status.
    private func ended(_ status: Int32) -> Int32 {
        let code = status & 0x7F == 0 ? (status >> 8) & 0xFF : -(status & 0x7F)
        exitCode = code
        return code
    }

    /// Waits for the child to end and returns its exit code (see `exitCode`).
    @discardableResult
    public func join() throws -> Int32 {
        if let exitCode { return exitCode }
        guard let pid else { throw SwiftParUsageError("join() called on a ChildProcess that was never started") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else {
                throw SystemError.current("waitpid for child process \(pid)")
            }
        }
        return ended(status)
    }

    /// Whether the child has been started and has not ended yet.
    public var isAlive: Bool {
        guard let pid, exitCode == nil else { return false }
        return kill(pid, 0) == 0 && !Self.isZombie(pid)
    }

    /// Sends `signal` to the child (SIGTERM by default).
    public func terminate(signal: Int32 = SIGTERM) {
        if let pid, exitCode == nil { kill(pid, signal) }
    }

    /// How a child with exit code `code` ended, in words.
    static func describeEnd(_ code: Int32) -> String {
        code < 0 ? "was killed by signal \(-code) (\(signalName(-code)))" : "exited with status \(code)"
    }

    /// Whether `pid` is a zombie, or cannot be read at all.
    static func isZombie(_ pid: pid_t) -> Bool {
        guard let state = processState(Int(pid)) else { return true }
        return state == UInt8(ascii: "Z")
    }
}

/// The state letter of process `pid` in /proc (R, S, T, Z…), or nil when it cannot be read.
func processState(_ pid: Int) -> UInt8? {
    processStatusFields(pid)?.first?.first
}

/// The fields of /proc/PID/stat after the program's name (state, parent, …): the name, in
/// parentheses, may itself hold spaces and parentheses. Nil when they cannot be read.
func processStatusFields(_ pid: Int) -> [ArraySlice<UInt8>]? {
    guard pid > 0, let line = try? readWholeFile("/proc/\(pid)/stat"),
          let nameEnd = line.lastIndex(of: UInt8(ascii: ")")) else { return nil }
    return line[(nameEnd + 1)...].split(separator: UInt8(ascii: " "))
}

/// A value handed to another thread as it is. `@unchecked Sendable`: the forking thread only
/// passes it to the child process, which has no other thread.
struct UncheckedBox<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// The thread every `ChildProcess` is forked from: one that lasts as long as the process.
/// Linux sends a child its parent-death signal when the thread that forked it ends, and a
/// program's threads come and go (Swift concurrency retires idle ones), which used to kill
/// children of a parent that was alive.
final class ForkingThread: @unchecked Sendable {
    // Sendable: `request` and `reply` are read and written holding `lock`.
    private let lock = InProcessLock()
    private var request: UncheckedBox<() -> Never>?
    private var reply: pid_t?
    private var busy = false
    private var started = false
    /// The process whose thread this is: a fork (a child, a local rank) copies this object but
    /// not the thread, so a process makes its own.
    private let process = getpid()

    nonisolated(unsafe) private static var current: ForkingThread?
    private static let choosing = InProcessLock()

    /// Whether this process runs a forking thread (one that holds no lock while it waits, so
    /// forking the process meanwhile is safe: `SwiftPar.run` does not count it).
    static var runsInThisProcess: Bool {
        choosing.withLock { current.map { $0.process == getpid() && $0.started } ?? false }
    }

    /// The forking thread of this process, made when first needed.
    static func ofThisProcess() -> ForkingThread {
        choosing.withLock {
            if let current, current.process == getpid() { return current }
            let made = ForkingThread()
            current = made
            return made
        }
    }

    /// Forks a child that runs `child` (which must end the process), from the forking thread;
    /// returns the child's pid.
    func fork(_ child: UncheckedBox<() -> Never>) throws -> pid_t {
        let pid = try lock.withLock { () throws -> pid_t in
            if !started {
                try startThread { [self] in serve() }
                started = true
            }
            while busy { lock.wait() }
            busy = true
            request = child
            lock.broadcast()
            while reply == nil { lock.wait() }
            defer {
                reply = nil
                busy = false
                lock.broadcast()
            }
            return reply!
        }
        guard pid > 0 else {
            errno = -pid
            throw SystemError.current("fork of a child process")
        }
        return pid
    }

    private func serve() {
        // Process-directed signals are the program's other threads' business; a child gets the
        // mask of the thread that started it.
        var all = sigset_t()
        sigfillset(&all)
        pthread_sigmask(SIG_SETMASK, &all, nil)
        while true {
            let child = lock.withLock { () -> UncheckedBox<() -> Never> in
                while request == nil { lock.wait() }
                defer { request = nil }
                return request!
            }
            let pid = Glibc.fork()
            if pid == 0 { child.value() }
            let answer = pid < 0 ? -errno : pid
            lock.withLock {
                reply = answer
                lock.broadcast()
            }
        }
    }
}
