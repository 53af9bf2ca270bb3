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
/// is killed if this process dies (`PR_SET_PDEATHSIG`), so none outlives its parent.
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

    /// Forks the child and runs the closure in it; returns at once in this process.
    public func start() throws {
        precondition(pid == nil, "a ChildProcess can be started only once")
        swiftpar_flush_all_streams()
        let parent = getpid()
        let child = fork()
        if child < 0 {
            throw SystemError.current("fork of a child process")
        }
        if child == 0 {
            _ = swiftpar_set_parent_death_signal(SIGKILL)
            if getppid() != parent { _exit(1) }
            do {
                try body()
            } catch {
                swiftpar_flush_all_streams()
                writeStandardError("swiftpar: child process \(getpid()) failed: \(errorText(error))\n")
                exit(1)
            }
            exit(0)
        }
        pid = child
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
        let code = status & 0x7F == 0 ? (status >> 8) & 0xFF : -(status & 0x7F)
        exitCode = code
        return code
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

    static func isZombie(_ pid: pid_t) -> Bool {
        guard let file = fopen("/proc/\(pid)/stat", "r") else { return true }
        defer { fclose(file) }
        var buffer = [CChar](repeating: 0, count: 512)
        guard fgets(&buffer, Int32(buffer.count), file) != nil else { return true }
        let text = stringFromCString(buffer)
        guard let close = text.lastIndex(of: ")") else { return false }
        return text[text.index(close, offsetBy: 2)...].first == "Z"
    }
}
