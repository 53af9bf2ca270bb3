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

    /// Runs `body` as `operation` of `rank`, or throws if another thread is inside an operation.
    @inlinable @inline(__always)
    static func run<R>(_ operation: @autoclosure () -> String, rank: @autoclosure () -> Int, _ body: () throws -> R) throws -> R {
        let me = UInt(pthread_self())
        // Already the owner: an operation inside another one.
        if owner.load(ordering: .relaxed) == me { return try body() }
        guard owner.compareExchange(expected: 0, desired: me, ordering: .acquiring).exchanged else {
            throw CommunicatorError.concurrentUse(operation: operation(), rank: rank())
        }
        defer { owner.store(0, ordering: .releasing) }
        return try body()
    }
}
