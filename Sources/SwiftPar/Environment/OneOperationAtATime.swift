import Atomics
#if canImport(Glibc)
import Glibc
#endif

/// The rule that makes communicators safe to share between tasks: a process runs one swiftpar
/// operation at a time.
///
/// Every public operation of `Communicator`, `Pool` and the requests enters here first. The
/// thread that runs an operation owns the process's swiftpar state until the operation returns
/// (operations that call others on the same thread nest). Another thread that starts an
/// operation meanwhile gets `CommunicatorError.concurrentUse` instead of a data race. Taking and
/// releasing ownership are an acquiring and a releasing atomic operation, so an operation on
/// one thread sees everything the previous one did on another: what `MPI_THREAD_SERIALIZED`
/// asks of a program, and what the local backend's engine needs.
@usableFromInline
enum OneOperationAtATime {
    /// The owning thread (`pthread_self`), or 0.
    @usableFromInline static let owner = UnsafeAtomic<UInt>.create(0)

    /// Whether the calling thread is inside an operation now.
    static var isHeldByThisThread: Bool { owner.load(ordering: .relaxed) == UInt(pthread_self()) }

    /// Whether another thread is inside an operation now (not just holding the state for a
    /// moment).
    static var isHeldByAnotherThread: Bool {
        let current = owner.load(ordering: .acquiring)
        return current != 0 && current & briefly == 0 && current != UInt(pthread_self())
    }

    /// Runs `body` as `operation` of `rank`, or throws if another thread is inside an operation.
    @inlinable @inline(__always)
    static func run<R>(_ operation: @autoclosure () -> String, rank: @autoclosure () -> Int, _ body: () throws -> R) throws -> R {
        let me = UInt(pthread_self())
        // Already the owner: an operation inside another one.
        if owner.load(ordering: .relaxed) == me { return try body() }
        while !owner.compareExchange(expected: 0, desired: me, ordering: .acquiring).exchanged {
            // A moment's hold by `ifFree` is not another operation: wait for it to end.
            let current = owner.load(ordering: .relaxed)
            guard current & briefly != 0 else {
                throw CommunicatorError.concurrentUse(operation: operation(), rank: rank())
            }
            precondition(current != me | briefly, "a swiftpar operation started inside noteProgress()")
            sched_yield()
        }
        defer { owner.store(0, ordering: .releasing) }
        return try body()
    }

    /// Marks an owner that holds the state for a moment only (thread ids are aligned addresses,
    /// so their lowest bit is free).
    @usableFromInline static let briefly: UInt = 1

    /// Takes the state for this thread and never gives it back: the rank is finishing, and no
    /// other thread may talk to the other ranks any more.
    static func holdForGood() {
        let me = UInt(pthread_self())
        while true {
            let current = owner.load(ordering: .relaxed)
            if current == me { return }
            if current == 0 {
                if owner.compareExchange(expected: 0, desired: me, ordering: .acquiring).exchanged { return }
            } else if current & briefly == 0 {
                // Another thread's operation outlived the rank's closure: not this one's to wait for.
                return
            }
            sched_yield()
        }
    }

    /// Runs `body` if this thread owns the state (inside an operation) or no thread does (then
    /// holding it for the moment `body` takes, during which an operation another thread starts
    /// waits instead of throwing); otherwise does nothing. `body` must be short and not throw.
    static func ifFree(_ body: () -> Void) {
        let me = UInt(pthread_self())
        let current = owner.load(ordering: .relaxed)
        if current == me { return body() }
        guard current == 0, owner.compareExchange(expected: 0, desired: me | briefly, ordering: .acquiring).exchanged else { return }
        defer { owner.store(0, ordering: .releasing) }
        body()
    }
}
