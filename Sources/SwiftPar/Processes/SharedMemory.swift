import Atomics
import CSwiftParLinux
#if canImport(Glibc)
import Glibc
#endif

/// An anonymous shared mapping: visible to every process forked after it is made, and to no
/// other (it has no name). The memory stays mapped for the life of the process.
@usableFromInline
final class SharedMapping {
    let base: UnsafeMutableRawPointer
    let byteCount: Int

    /// Mappings made so far for a program's own shared objects (a `TaskPool`'s are not
    /// counted), so that `SwiftPar.run` can say when its ranks will not share them.
    static let made = ManagedAtomic<Int>(0)

    /// Maps `byteCount` bytes; `counted` unless swiftpar makes it for its own use.
    init(byteCount: Int, counted: Bool = true) throws {
        let size = max(byteCount, 1)
        guard let mapped = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0), mapped != MAP_FAILED else {
            throw SharedMemoryError.cannotMap(bytes: size, reason: String(cString: strerror(errno)))
        }
        if counted { Self.made.wrappingIncrement(ordering: .relaxed) }
        base = mapped
        self.byteCount = size
    }

    deinit {
        munmap(base, byteCount)
    }
}

/// Why a shared object could not be made or used.
public enum SharedMemoryError: Error, CustomStringConvertible, Sendable {
    /// The kernel refused the shared mapping.
    case cannotMap(bytes: Int, reason: String)
    /// A pthread call on a process-shared lock or condition failed.
    case lockFailed(operation: String, code: Int32)
    /// A value is larger than the queue can ever hold.
    case tooLarge(bytes: Int, capacity: Int)
    /// Waiting ended after the timeout.
    case timedOut(seconds: Double)
    /// The queue was finished by all its producers; nothing more can be put.
    case finished
    /// A `Manager`'s server process is gone, so its objects cannot be reached.
    case managerExited
    /// A `Manager`'s server could not carry out a request; `reason` says why.
    case managerFailed(reason: String)

    /// One line saying what happened.
    public var description: String {
        switch self {
        case let .cannotMap(bytes, reason): return "cannot map \(bytes) bytes of shared memory: \(reason)"
        case let .lockFailed(operation, code): return "\(operation) failed: \(String(cString: strerror(code)))"
        case let .tooLarge(bytes, capacity): return "a value of \(bytes) encoded bytes does not fit in a queue of \(capacity) bytes"
        case let .timedOut(seconds): return "timed out after \(seconds) s"
        case .finished: return "the queue is finished: every producer called finish()"
        case .managerExited: return "the manager's server process has exited"
        case let .managerFailed(reason): return "the manager's server failed: \(reason)"
        }
    }
}

/// A mutex that works across processes (`PTHREAD_PROCESS_SHARED`) and survives its holder
/// dying (`PTHREAD_MUTEX_ROBUST`: the next locker takes it over instead of waiting forever).
///
/// Make it before forking (before `SwiftPar.run` or `ChildProcess.start`); every process that
/// inherits it locks the same mutex. The article's `Lock`.
public final class ProcessLock: @unchecked Sendable {
    // Sendable: it is a lock; its mutex lives in shared memory and is only used through pthread calls.
    let mapping: SharedMapping
    let mutex: UnsafeMutablePointer<pthread_mutex_t>

    /// Makes a lock in fresh shared memory.
    public convenience init() throws {
        let mapping = try SharedMapping(byteCount: MemoryLayout<pthread_mutex_t>.stride)
        try self.init(mapping: mapping, at: 0)
    }

    init(mapping: SharedMapping, at offset: Int) throws {
        self.mapping = mapping
        mutex = (mapping.base + offset).bindMemory(to: pthread_mutex_t.self, capacity: 1)
        var attributes = pthread_mutexattr_t()
        pthread_mutexattr_init(&attributes)
        defer { pthread_mutexattr_destroy(&attributes) }
        pthread_mutexattr_setpshared(&attributes, Int32(PTHREAD_PROCESS_SHARED))
        pthread_mutexattr_setrobust(&attributes, Int32(PTHREAD_MUTEX_ROBUST))
        let code = pthread_mutex_init(mutex, &attributes)
        guard code == 0 else { throw SharedMemoryError.lockFailed(operation: "pthread_mutex_init", code: code) }
    }

    /// Waits for the lock. If a process died holding it, this one takes it over.
    public func lock() {
        let code = pthread_mutex_lock(mutex)
        if code == EOWNERDEAD { pthread_mutex_consistent(mutex) }
    }

    /// Releases the lock.
    public func unlock() {
        pthread_mutex_unlock(mutex)
    }

    /// Runs `body` holding the lock.
    public func withLock<R>(_ body: () throws -> R) rethrows -> R {
        lock()
        defer { unlock() }
        return try body()
    }
}

/// A condition variable across processes, used with a `ProcessLock`: a sequence word in shared
/// memory that `broadcast` increments and waiters sleep on with a futex.
///
/// Not glibc's process-shared `pthread_cond_t`: its waiters take part in its bookkeeping, so a
/// process killed while waiting could leave `broadcast` stuck for good, holding the lock, and
/// every other process with it. A futex waiter leaves nothing behind when it dies.
final class ProcessCondition {
    let word: UnsafeMutablePointer<UInt32>
    private var sequence: UnsafeAtomic<UInt32> {
        UnsafeAtomic(at: UnsafeMutableRawPointer(word).assumingMemoryBound(to: UnsafeAtomic<UInt32>.Storage.self))
    }

    /// Uses the (zeroed) shared memory at `offset` of `mapping`: at least 4 bytes.
    init(mapping: SharedMapping, at offset: Int) throws {
        word = (mapping.base + offset).bindMemory(to: UInt32.self, capacity: 1)
        word.pointee = 0
    }

    /// Waits (holding `lock`) until a broadcast or `deadline` (monotonic seconds); may return
    /// early, as condition variables do (callers check their condition again). Returns false
    /// when the deadline has passed.
    func wait(_ lock: ProcessLock, until deadline: Double?) -> Bool {
        // Read while holding the lock: a broadcast made after it, under the lock, changes the
        // word, so the futex does not sleep through it.
        let seen = sequence.load(ordering: .acquiring)
        lock.unlock()
        var timeout: Int64 = -1
        if let deadline {
            let left = deadline - monotonicNow()
            timeout = !(left > 0) ? 0 : left >= 1e9 ? Int64(1e18) : Int64(left * 1e9)
        }
        if timeout != 0 { _ = swiftpar_futex_wait(word, seen, timeout) }
        lock.lock()
        guard let deadline else { return true }
        return monotonicNow() < deadline || sequence.load(ordering: .acquiring) != seen
    }

    func broadcast() {
        sequence.wrappingIncrement(ordering: .releasing)
        _ = swiftpar_futex_wake(word)
    }
}

/// Rounds up to a multiple of 64, so objects in one mapping do not share cache lines.
func alignedSize(_ bytes: Int) -> Int { (bytes + 63) & ~63 }
