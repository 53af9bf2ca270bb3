import CSwiftParLinux
#if canImport(Glibc)
import Glibc
#endif

// Async forms of the pool, for transforms that `await` (network calls, async file APIs, actors).
//
// The pool's engine is synchronous: rank 0 serves and works, the workers wait for chunks. An
// async form runs that engine on a thread of its own, so the calling task is suspended rather
// than blocking its executor, and runs each item's transform as a task on the global executor,
// which that thread waits for. Items are still handed out in chunks and run one at a time per
// rank, in input order within a chunk; results arrive exactly as with the synchronous forms.
//
// Cancelling the calling task cancels the item running on this rank and every later one of its
// items (each sees `Task.isCancelled`, and `Task.sleep` throws `CancellationError`): an item
// that then throws fails the map on every rank, as any throwing item does. On the rank that was
// cancelled the call throws `CancellationError`, as Swift's own async functions do; the other
// ranks see the item that stopped as failed. On rank 0, which hands out the work, cancelling
// also stops the handing out, even where items ignore cancellation or rank 0 works on none
// (`rankZeroWorks` false): the call throws `CancellationError` there once the chunks already
// out are back, and the other ranks end as from a finished call.

extension Pool {
    /// Applies the asynchronous `transform` to every item; returns the results in input order
    /// on rank 0 and nil on the other ranks. As `map(_:options:_:)`, for a transform that awaits.
    /// Cancelling the calling task cancels this rank's items, the one running and those after it;
    /// if one of them then throws, the call stops on every rank and throws `CancellationError`
    /// here (`PoolError.itemFailed` on the ranks that were not cancelled). On rank 0 it also
    /// stops handing out items: the call throws `CancellationError` there once the chunks
    /// already out are back, and the other ranks end as from a finished call.
    ///
    /// ```swift
    /// await SwiftPar.run { world in
    ///     let pool = Pool(world)
    ///     let sizes = try await pool.map(["a", "bb", "ccc"]) { name async throws in
    ///         try await Task.sleep(for: .milliseconds(1))
    ///         return name.count
    ///     }
    ///     if let sizes { print(sizes) }   // [1, 2, 3] on rank 0
    /// }
    /// ```
    public func map<S: Sequence & Sendable, R: Codable & Sendable>(
        _ items: S, options: MapOptions = MapOptions(), _ transform: @escaping @Sendable (S.Element) async throws -> R
    ) async throws -> [R]? where S.Element: Codable & Sendable {
        try PoolItemScope.refuseNested("Pool.map", on: communicator)
        let cancellation = ItemCancellation()
        return try await onOwnThread(cancellation) {
            try self.stopping(when: cancellation) {
                try self.map(items, options: options.forAsyncItems) { item in
                    try waitForTask(answering: self.communicator, cancellation) { try await transform(item) }
                }
            }
        }
    }

    /// Applies the asynchronous `transform` to every item and folds each result into a running
    /// total with `combine`, in place, as `mapReduce(_:into:everyRank:options:_:combine:)` does.
    ///
    /// Cancelling the calling task cancels this rank's items, the one running and those after it;
    /// if one of them then throws, the call stops on every rank and throws `CancellationError`
    /// here (`PoolError.itemFailed` on the ranks that were not cancelled). On rank 0 it also
    /// stops handing out items, as for `map`.
    ///
    /// - Returns: the total on rank 0, nil on the other ranks; on every rank when `everyRank`
    ///   is set.
    public func mapReduce<S: Sequence & Sendable, R: Codable & Sendable>(
        _ items: S, into initial: R, everyRank: Bool = false, options: MapOptions = MapOptions(),
        _ transform: @escaping @Sendable (S.Element) async throws -> R, combine: @escaping @Sendable (inout R, R) throws -> Void
    ) async throws -> R? where S.Element: Codable & Sendable {
        try PoolItemScope.refuseNested("Pool.mapReduce", on: communicator)
        let cancellation = ItemCancellation()
        return try await onOwnThread(cancellation) {
            try self.stopping(when: cancellation) {
                try self.mapReduce(items, into: initial, everyRank: everyRank, options: options.forAsyncItems,
                                   { item in try waitForTask(answering: self.communicator, cancellation) { try await transform(item) } },
                                   combine: combine)
            }
        }
    }
}

extension MapOptions {
    /// The options for the synchronous map that runs async items: the engine's thread waits for
    /// each item's task, which runs on other threads, so its own time says nothing of whether
    /// the ranks take turns on the cores, and the number of busy ranks is not limited.
    var forAsyncItems: MapOptions {
        var options = self
        options.limitsBusyRanksToCores = false
        return options
    }
}

extension Pool {
    /// Runs `body`, a pool call on this thread, so that on rank 0 `cancellation` stops it: no
    /// chunk is handed out after the cancellation, and the call throws `CancellationError`
    /// once the chunks already out are back (the other ranks end as from a finished map).
    func stopping<T>(when cancellation: ItemCancellation, _ body: () throws -> T) rethrows -> T {
        let outer = stopRequested
        stopRequested = { cancellation.isCancelled }
        defer { stopRequested = outer }
        return try body()
    }
}

/// Runs `body` on a new thread and suspends the caller until it returns; the caller's
/// cancellation is passed on to `cancellation`. An item that failed after the caller was
/// cancelled makes this throw `CancellationError`.
func onOwnThread<T: Sendable>(_ cancellation: ItemCancellation, _ body: @escaping @Sendable () throws -> T) async throws -> T {
    do {
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
                do {
                    try startThread { continuation.resume(with: Result { try body() }) }
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        } onCancel: {
            cancellation.cancel()
        }
    } catch PoolError.itemFailed where cancellation.isCancelled {
        throw CancellationError()
    }
}

/// Passes the cancellation of the task that called an async pool form on to the tasks that run
/// its items on this rank: the one running when it comes, and every one started after.
///
/// `@unchecked Sendable`: `current` is read and written under `lock` only.
final class ItemCancellation: @unchecked Sendable {
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var cancelled = false
    private var current: Task<Void, Never>?

    init() { pthread_mutex_init(lock, nil) }

    deinit {
        pthread_mutex_destroy(lock)
        lock.deallocate()
    }

    private func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        return body()
    }

    /// Whether the calling task was cancelled.
    var isCancelled: Bool { locked { cancelled } }

    /// The calling task was cancelled.
    func cancel() {
        let running = locked { () -> Task<Void, Never>? in
            cancelled = true
            return current
        }
        running?.cancel()
    }

    /// `task` runs an item now (nil: none does); it is cancelled at once if the caller was.
    func running(_ task: Task<Void, Never>?) {
        let cancelNow = locked { () -> Bool in
            current = task
            return cancelled
        }
        if cancelNow { task?.cancel() }
    }
}

/// Runs `operation` as a task on the global executor and blocks this thread (never one of the
/// executor's) until it finishes, answering meanwhile for the progress the task notes with
/// `communicator.noteProgress()` (this thread is the one that may talk to the other ranks).
func waitForTask<T: Sendable>(answering communicator: Communicator, _ cancellation: ItemCancellation,
                               _ operation: @escaping @Sendable () async throws -> T) throws -> T {
    let done = TaskOutcomeBox<T>()
    let scope = communicator.runningPool.map { PoolItemScope(call: $0, communicator: ObjectIdentifier(communicator)) }
    cancellation.running(Task.detached {
        done.finish(await PoolItemScope.$current.withValue(scope) { await Result { try await operation() } })
    })
    defer { cancellation.running(nil) }
    return try done.wait { communicator.transport.answerWhileComputing() }
}

/// The pool call whose item the current task runs: an async transform runs as a task of its
/// own while the pool's thread holds the rank's operations, so a pool call it makes on the same
/// communicator is refused as nested (in the synchronous forms the same thread sees that).
@usableFromInline
struct PoolItemScope: Sendable {
    let call: String
    let communicator: ObjectIdentifier

    @TaskLocal static var current: PoolItemScope?

    /// Throws `PoolError.nested` when the current task runs an item of a pool call on
    /// `communicator`.
    @usableFromInline
    static func refuseNested(_ operation: String, on communicator: Communicator) throws {
        if let scope = current, scope.communicator == ObjectIdentifier(communicator) {
            throw PoolError.nested(operation: operation, outer: scope.call)
        }
    }
}

/// The outcome of one task, handed to the thread that waits for it.
///
/// `@unchecked Sendable`: `outcome` is written once before `sem_post` and read after `sem_wait`.
private final class TaskOutcomeBox<T: Sendable>: @unchecked Sendable {
    private var outcome: Result<T, any Error>?
    private let ready = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)

    init() { sem_init(ready, 0, 0) }

    deinit {
        sem_destroy(ready)
        ready.deallocate()
    }

    func finish(_ result: Result<T, any Error>) {
        outcome = result
        sem_post(ready)
    }

    /// Waits for the outcome, calling `meanwhile` every 10 ms.
    func wait(meanwhile: () -> Void) throws -> T {
        while swiftpar_semaphore_wait(ready, 10_000_000) != 0 {
            if errno == ETIMEDOUT { meanwhile() }
        }
        return try outcome!.get()
    }
}

extension Result where Failure == any Error {
    /// The result of the asynchronous `body`.
    init(catching body: () async throws -> Success) async {
        do {
            self = .success(try await body())
        } catch {
            self = .failure(error)
        }
    }
}
