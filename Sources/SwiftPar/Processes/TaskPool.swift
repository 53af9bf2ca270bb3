#if canImport(Glibc)
import Glibc
#endif

/// Worker processes that run one function on tasks submitted one at a time: the article's
/// `Pool.apply_async`. Each task's result comes back through a `TaskHandle`, by waiting, by
/// `await`, or by callback.
///
/// ```swift
/// let hashes = try TaskPool(workers: 4) { (path: String) in try sha256(of: path) }
/// let handle = try hashes.submit("a.txt", onSuccess: { print($0) }, onError: { print($0) })
/// let digest = try await handle.value
/// try hashes.close()
/// ```
///
/// The workers are forked when the pool is made, so they already hold `function`; tasks and
/// results travel through `SharedQueue`s. Callbacks run on the pool's result thread in this
/// process, one at a time.
public final class TaskPool<Input: Codable, Output: Codable> {
    struct Task: Codable {
        var id: Int
        var input: Input
    }

    struct Outcome: Codable {
        var id: Int
        var output: Output?
        var error: String?
        var pid: Int32
    }

    private let tasks: SharedQueue<Task>
    private let results: SharedQueue<Outcome>
    private var workers: [ChildProcess] = []
    private let state = InProcessLock()
    private var handles: [Int: TaskHandle<Output>] = [:]
    private var nextID = 0
    private var collector: pthread_t?
    private var closed = false

    /// Starts `workers` processes (default: one per core) that will run `function`.
    public init(workers: Int = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), _ function: @escaping (Input) throws -> Output) throws {
        precondition(workers >= 1, "a TaskPool needs at least one worker")
        tasks = try SharedQueue(producers: 1)
        results = try SharedQueue(producers: workers)
        let (tasks, results) = (self.tasks, self.results)
        for _ in 0..<workers {
            let worker = ChildProcess {
                defer { results.finish() }
                while let task = try tasks.get() {
                    do {
                        let output = try function(task.input)
                        try results.put(Outcome(id: task.id, output: output, error: nil, pid: getpid()))
                    } catch {
                        try results.put(Outcome(id: task.id, output: nil, error: "\(error)", pid: getpid()))
                    }
                }
            }
            try worker.start()
            self.workers.append(worker)
        }
        try startCollector()
    }

    /// Queues `input` for a worker and returns at once. `onSuccess` or `onError` runs when the
    /// result arrives.
    @discardableResult
    public func submit(_ input: Input, onSuccess: ((Output) -> Void)? = nil,
                       onError: ((PoolItemError) -> Void)? = nil) throws -> TaskHandle<Output> {
        let handle: TaskHandle<Output> = state.withLock {
            let handle = TaskHandle<Output>(index: nextID, onSuccess: onSuccess, onError: onError)
            handles[nextID] = handle
            nextID += 1
            return handle
        }
        try tasks.put(Task(id: handle.index, input: input))
        return handle
    }

    /// Finishes the task queue, waits for every submitted task and for the workers to exit.
    public func close() throws {
        guard !closed else { return }
        closed = true
        tasks.finish()
        for worker in workers { try worker.join() }
        if let collector { pthread_join(collector, nil) }
        // A task whose worker died without answering fails instead of waiting forever.
        let orphans = state.withLock { () -> [TaskHandle<Output>] in
            let left = Array(handles.values)
            handles = [:]
            return left
        }
        for handle in orphans {
            handle.complete(.failure(PoolItemError(index: handle.index, rank: -1, message: "the worker running it exited without a result")))
        }
    }

    deinit { try? close() }

    private func startCollector() throws {
        collector = try startThread { [results, state] in
            while let outcome = try? results.get() {
                let handle = state.withLock { self.handles.removeValue(forKey: outcome.id) }
                if let output = outcome.output {
                    handle?.complete(.success(output))
                } else {
                    handle?.complete(.failure(PoolItemError(index: outcome.id, rank: Int(outcome.pid), message: outcome.error ?? "failed")))
                }
            }
        }
    }
}

/// Starts a thread running `body`.
func startThread(_ body: @escaping () -> Void) throws -> pthread_t {
    final class ThreadBody {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }
    var thread = pthread_t()
    let context = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    let code = pthread_create(&thread, nil, { context in
        Unmanaged<ThreadBody>.fromOpaque(context!).takeRetainedValue().body()
        return nil
    }, context)
    guard code == 0 else { throw SwiftParUsageError("cannot start a thread: \(String(cString: strerror(code)))") }
    return thread
}

/// The pending result of one task of a `TaskPool` (Python's `AsyncResult`).
public final class TaskHandle<Output>: @unchecked Sendable {
    /// The task's number, in submission order from 0.
    public let index: Int
    private let onSuccess: ((Output) -> Void)?
    private let onError: ((PoolItemError) -> Void)?
    private let lock = InProcessLock()
    private var result: Result<Output, PoolItemError>?
    private var continuations: [CheckedContinuation<Output, any Error>] = []

    init(index: Int, onSuccess: ((Output) -> Void)?, onError: ((PoolItemError) -> Void)?) {
        self.index = index
        self.onSuccess = onSuccess
        self.onError = onError
    }

    func complete(_ outcome: Result<Output, PoolItemError>) {
        switch outcome {
        case .success(let value): onSuccess?(value)
        case .failure(let error): onError?(error)
        }
        let waiting = lock.withLock { () -> [CheckedContinuation<Output, any Error>] in
            result = outcome
            lock.broadcast()
            defer { continuations = [] }
            return continuations
        }
        for continuation in waiting { continuation.resume(with: outcome.mapError { $0 as any Error }) }
    }

    /// Whether the result has arrived.
    public var isReady: Bool { lock.withLock { result != nil } }

    /// Blocks until the result arrives and returns it, or throws the task's `PoolItemError`.
    public func wait() throws -> Output {
        try lock.withLock {
            while result == nil { lock.wait() }
            return try result!.get()
        }
    }

    /// The result, awaited without blocking a thread.
    public var value: Output {
        get async throws {
            try await withCheckedThrowingContinuation { continuation in
                let ready: Result<Output, PoolItemError>? = lock.withLock {
                    if result == nil { continuations.append(continuation) }
                    return result
                }
                if let ready { continuation.resume(with: ready.mapError { $0 as any Error }) }
            }
        }
    }
}

/// A mutex and condition for threads of this process.
final class InProcessLock {
    private var mutex = pthread_mutex_t()
    private var condition = pthread_cond_t()

    init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&condition, nil)
    }

    deinit {
        pthread_cond_destroy(&condition)
        pthread_mutex_destroy(&mutex)
    }

    func withLock<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return try body()
    }

    /// Waits on the condition; call holding the lock.
    func wait() { pthread_cond_wait(&condition, &mutex) }
    func broadcast() { pthread_cond_broadcast(&condition) }
}
