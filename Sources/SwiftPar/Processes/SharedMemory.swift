#if canImport(Glibc)
import Glibc
#endif

/// An anonymous shared mapping: visible to every process forked after it is made, and to no
/// other (it has no name). The memory stays mapped for the life of the process.
@usableFromInline
final class SharedMapping {
    let base: UnsafeMutableRawPointer
    let byteCount: Int

    init(byteCount: Int) throws {
        let size = max(byteCount, 1)
        guard let mapped = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0), mapped != MAP_FAILED else {
            throw SharedMemoryError.cannotMap(bytes: size, reason: String(cString: strerror(errno)))
        }
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

/// A condition variable across processes, used with a `ProcessLock`.
final class ProcessCondition {
    let condition: UnsafeMutablePointer<pthread_cond_t>

    init(mapping: SharedMapping, at offset: Int) throws {
        condition = (mapping.base + offset).bindMemory(to: pthread_cond_t.self, capacity: 1)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        defer { pthread_condattr_destroy(&attributes) }
        pthread_condattr_setpshared(&attributes, Int32(PTHREAD_PROCESS_SHARED))
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        let code = pthread_cond_init(condition, &attributes)
        guard code == 0 else { throw SharedMemoryError.lockFailed(operation: "pthread_cond_init", code: code) }
    }

    /// Waits (holding `lock`) until signalled or `deadline` (monotonic seconds) passes.
    /// Returns false on timeout.
    func wait(_ lock: ProcessLock, until deadline: Double?) -> Bool {
        guard let deadline else {
            let code = pthread_cond_wait(condition, lock.mutex)
            if code == EOWNERDEAD { pthread_mutex_consistent(lock.mutex) }
            return true
        }
        var time = timespec(tv_sec: Int(deadline), tv_nsec: Int((deadline - Double(Int(deadline))) * 1e9))
        let code = pthread_cond_timedwait(condition, lock.mutex, &time)
        if code == EOWNERDEAD { pthread_mutex_consistent(lock.mutex) }
        return code != ETIMEDOUT
    }

    func broadcast() { pthread_cond_broadcast(condition) }
}

/// Rounds up to a multiple of 64, so objects in one mapping do not share cache lines.
func alignedSize(_ bytes: Int) -> Int { (bytes + 63) & ~63 }
