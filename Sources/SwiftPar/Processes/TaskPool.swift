#if canImport(Glibc)
import Glibc
#endif

/// Worker processes that run one function on tasks submitted one at a time: the article's
/// `Pool.apply_async`. Each task's result comes back through a `TaskHandle`, by waiting, by
/// `await`, or by callback.
///
/// ```swift
/// let lengths = try TaskPool(workers: 4) { (word: String) in word.count }
/// let handle = try lengths.submit("swiftpar", onSuccess: { print($0) }, onError: { print($0) })
/// print(try handle.wait())   // 8
/// try lengths.close()
/// ```
///
/// The workers are forked when the pool is made, so they already hold `function`; tasks and
/// results travel through `SharedQueue`s. Callbacks run on the pool's result thread in this
/// process, one at a time. Make the pool before starting threads of your own.
public final class TaskPool<Input: Codable, Output: Codable & Sendable>: @unchecked Sendable {
    // Sendable: `table` is guarded by its lock; `tasks` and `results` by their process-shared
    // mutexes; `workers`, `collector` and `closed` are set in init and changed by `close()`
    // only, which is itself serialized by `closing`.
    struct Task: Codable {
        var id: Int
        var input: Input
    }

    private let tasks: SharedQueue<Task>
    private let results: SharedQueue<TaskOutcome<Output>>
    private var workers: [ChildProcess] = []
    private let table = HandleTable<Output>()
    private var collector: pthread_t?
    private var closed = false
    private let closing = InProcessLock()

    /// Starts `workers` processes (default: one per core) that will run `function`. Throws
    /// `SwiftParUsageError` when `workers` is below 1.
    public init(workers: Int = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), _ function: @escaping (Input) throws -> Output) throws {
        guard workers >= 1 else { throw SwiftParUsageError("a TaskPool needs at least one worker, not \(workers)") }
        tasks = try SharedQueue(producers: 1)
        results = try SharedQueue(producers: workers)
        let (tasks, results) = (self.tasks, self.results)
        for _ in 0..<workers {
            let worker = ChildProcess {
                defer { results.finish() }
                while let task = try tasks.get() {
                    do {
                        let output = try function(task.input)
                        try results.put(TaskOutcome(id: task.id, output: output, error: nil, process: getpid()))
                    } catch {
                        try results.put(TaskOutcome(id: task.id, output: nil, error: errorText(error), process: getpid()))
                    }
                }
            }
            try worker.start()
            self.workers.append(worker)
        }
        let table = self.table
        collector = try startJoinableThread {
            while let outcome = try? results.get() {
                let handle = table.remove(outcome.id)
                if let output = outcome.output {
                    handle?.complete(.success(output))
                } else {
                    handle?.complete(.failure(TaskFailure(index: outcome.id, process: outcome.process, message: outcome.error ?? "failed")))
                }
            }
        }
    }

    /// Queues `input` for a worker and returns at once. `onSuccess` or `onError` runs when the
    /// result arrives.
    @discardableResult
    public func submit(_ input: Input, onSuccess: (@Sendable (Output) -> Void)? = nil,
                       onError: (@Sendable (TaskFailure) -> Void)? = nil) throws -> TaskHandle<Output> {
        let handle = table.add(onSuccess: onSuccess, onError: onError)
        try tasks.put(Task(id: handle.index, input: input))
        return handle
    }

    /// Finishes the task queue, waits for every submitted task and for the workers to exit.
    public func close() throws {
        try closing.withLock {
            guard !closed else { return }
            closed = true
            tasks.finish()
            for worker in workers { try worker.join() }
            if let collector { pthread_join(collector, nil) }
            // A task whose worker died without answering fails instead of waiting forever.
            for handle in table.removeAll() {
                handle.complete(.failure(TaskFailure(index: handle.index, process: nil, message: "the worker running it exited without a result")))
            }
        }
    }

    deinit { try? close() }
}

/// What a worker of a `TaskPool` sends back for one task.
struct TaskOutcome<Output: Codable>: Codable {
    var id: Int
    var output: Output?
    var error: String?
    var process: Int32
}

/// The handles of a `TaskPool`'s tasks that have not completed, by task number.
final class HandleTable<Output: Sendable>: @unchecked Sendable {
    // Sendable: every property is read and written holding `lock`.
    private let lock = InProcessLock()
    private var handles: [Int: TaskHandle<Output>] = [:]
    private var nextID = 0

    func add(onSuccess: (@Sendable (Output) -> Void)?, onError: (@Sendable (TaskFailure) -> Void)?) -> TaskHandle<Output> {
        lock.withLock {
            let handle = TaskHandle<Output>(index: nextID, onSuccess: onSuccess, onError: onError)
            handles[nextID] = handle
            nextID += 1
            return handle
        }
    }

    func remove(_ id: Int) -> TaskHandle<Output>? { lock.withLock { handles.removeValue(forKey: id) } }

    func removeAll() -> [TaskHandle<Output>] {
        lock.withLock {
            defer { handles = [:] }
            return Array(handles.values)
        }
    }
}

/// The failure of one task of a `TaskPool`.
public struct TaskFailure: Error, CustomStringConvertible, Sendable, Equatable {
    /// The task's number, in submission order from 0.
    public let index: Int
    /// The worker process that ran it, if it answered.
    public let process: Int32?
    /// The original error's description.
    public let message: String

    /// "task 3 failed in worker process 4711: ...".
    public var description: String {
        if let process { return "task \(index) failed in worker process \(process): \(message)" }
        return "task \(index) failed: \(message)"
    }
}

/// The pending result of one task of a `TaskPool` (Python's `AsyncResult`).
public final class TaskHandle<Output: Sendable>: @unchecked Sendable {
    // Sendable: `result` and `continuations` are read and written holding `lock`.
    /// The task's number, in submission order from 0.
    public let index: Int
    private let onSuccess: (@Sendable (Output) -> Void)?
    private let onError: (@Sendable (TaskFailure) -> Void)?
    private let lock = InProcessLock()
    private var result: Result<Output, TaskFailure>?
    private var continuations: [CheckedContinuation<Output, any Error>] = []

    init(index: Int, onSuccess: (@Sendable (Output) -> Void)?, onError: (@Sendable (TaskFailure) -> Void)?) {
        self.index = index
        self.onSuccess = onSuccess
        self.onError = onError
    }

    func complete(_ outcome: Result<Output, TaskFailure>) {
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

    /// Blocks until the result arrives and returns it, or throws the task's `TaskFailure`.
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
                let ready: Result<Output, TaskFailure>? = lock.withLock {
                    if result == nil { continuations.append(continuation) }
                    return result
                }
                if let ready { continuation.resume(with: ready.mapError { $0 as any Error }) }
            }
        }
    }
}

/// A mutex and condition for threads of this process.
final class InProcessLock: @unchecked Sendable {
    // Sendable: it is a lock; the pthread objects are only used through pthread calls.
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
