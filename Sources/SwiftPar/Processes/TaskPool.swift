import Atomics
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
/// process, one at a time; one may submit more tasks (they wait in this process while the
/// queue is full). Make the pool before starting threads of your own.
///
/// An input, and a result, must encode to less than the queues' size (`queueCapacity`, 1 MiB
/// unless given); larger ones fail with `SharedMemoryError.tooLarge`. `close()` waits for every
/// task; `terminate()` does not.
public final class TaskPool<Input: Codable, Output: Codable & Sendable>: @unchecked Sendable {
    // Sendable: `table` is guarded by its lock; `tasks` and `results` by their process-shared
    // mutexes; `workers` is touched by the result thread alone after init; `closed` and
    // `broken` are read and written holding `closing`.
    /// A task as it travels: its input encoded apart, so one that does not decode in the worker
    /// fails alone.
    struct Task: Codable {
        var id: Int
        var input: [UInt8]
    }

    private let tasks: SharedQueue<Task>
    private let state: TaskPoolResults<Output>
    private var table: HandleTable<Output> { state.table }
    /// The result thread, which `close` or `terminate` joins once (holding `joining`).
    private let resultThread: pthread_t
    private let joining = InProcessLock()
    private var joined = false
    /// Whether the caller is a callback, on the result thread: it must never wait for results.
    private var onResultThread: Bool { pthread_equal(resultThread, pthread_self()) != 0 }

    /// Starts `workers` processes (default: one per core) that will run `function`, with task
    /// and result queues of `queueCapacity` bytes each (1 MiB by default): an input or a result
    /// must encode to less than that. Throws `SwiftParUsageError` when `workers` is below 1 or
    /// `queueCapacity` below 64 bytes.
    public init(workers: Int = SwiftPar.availableCores, queueCapacity: Int = 1 << 20,
                _ function: @escaping (Input) throws -> Output) throws {
        guard workers >= 1 else { throw SwiftParUsageError("a TaskPool needs at least one worker, not \(workers)") }
        guard queueCapacity >= 64 else { throw SwiftParUsageError("a TaskPool needs queues of at least 64 bytes, not \(queueCapacity)") }
        // The pool's own queues are its business, not shared objects of the program's.
        tasks = try SharedQueue(capacity: queueCapacity, producers: 1, counted: false)
        // The pool alone decides when results end: a worker that dies says nothing.
        let results = try SharedQueue<TaskOutcome>(capacity: queueCapacity, producers: 1, counted: false)
        let running = try SharedMapping(byteCount: 8 * workers, counted: false)
        for index in 0..<workers { runningTask(running, index).store(-1, ordering: .relaxed) }
        let tasks = self.tasks
        var children: [ChildProcess] = []
        for index in 0..<workers {
            let worker = ChildProcess {
                let slot = runningTask(running, index)
                while let task = try tasks.get(timeout: nil, taking: { slot.store($0.id, ordering: .releasing) }) {
                    var outcome = TaskOutcome(id: task.id, output: nil, error: nil, process: getpid())
                    do {
                        let input: Input
                        do {
                            input = try BinaryDecoder().decode(Input.self, from: task.input)
                        } catch {
                            throw TaskPoolProblem("its input cannot be decoded: \(describeDecodingError(error))")
                        }
                        let output = try function(input)
                        do {
                            outcome.output = try BinaryEncoder().encode(output)
                        } catch {
                            throw TaskPoolProblem("its result cannot be encoded: \(describeDecodingError(error))")
                        }
                    } catch {
                        outcome.error = errorText(error)
                    }
                    do {
                        try results.put(outcome)
                    } catch {
                        try results.put(TaskOutcome(id: task.id, output: nil, error: "its result cannot be sent back: \(error)", process: getpid()))
                    }
                    slot.store(-1, ordering: .releasing)
                }
            }
            try worker.start()
            children.append(worker)
        }
        let state = TaskPoolResults<Output>(results: results, workers: children, running: running, abandonTasks: { tasks.finish() })
        self.state = state
        resultThread = try startJoinableThread { state.collect() }
    }

    /// Queues `input` for a worker and returns at once. `onSuccess` or `onError` runs when the
    /// result arrives. Throws `SwiftParUsageError` after `close()` or once every worker has
    /// ended, and the encoding or queueing error of an input that cannot be sent.
    @discardableResult
    public func submit(_ input: Input, onSuccess: (@Sendable (Output) -> Void)? = nil,
                       onError: (@Sendable (TaskFailure) -> Void)? = nil) throws -> TaskHandle<Output> {
        if let problem = refusal() { throw SwiftParUsageError("TaskPool: \(problem)") }
        let bytes = try BinaryEncoder().encode(input)
        let handle = table.add(onSuccess: onSuccess, onError: onError)
        do {
            let task = Task(id: handle.index, input: bytes)
            if onResultThread {
                // From a callback, on the result thread: waiting here for room in the queue
                // would stop the results that make room. The task waits in this process instead,
                // and the result thread queues it when there is room.
                let size = try BinaryEncoder().encode(task).count
                guard size + 8 <= tasks.capacity else { throw SharedMemoryError.tooLarge(bytes: size, capacity: tasks.capacity) }
                let tasks = self.tasks
                state.deferTask {
                    // Never waits: the result thread must not.
                    do {
                        try tasks.put(task, timeout: 0)
                        return true
                    } catch SharedMemoryError.timedOut {
                        return false
                    }
                }
            } else {
                try tasks.put(task)
            }
        } catch {
            _ = table.remove(handle.index)
            // A pool closed (by a callback) or broken while this task was being queued: that is
            // why the queue refused it.
            if let problem = refusal() { throw SwiftParUsageError("TaskPool: \(problem)") }
            throw error
        }
        return handle
    }

    /// Why `submit` is refused now, if it is: the pool is closed or terminated, or broken.
    private func refusal() -> String? {
        state.closing.withLock { state.closed ? "submit called after \(state.terminated ? "terminate()" : "close()")" : state.broken }
    }

    /// Finishes the task queue, waits for every submitted task and for the workers to exit.
    /// A task whose worker died fails, naming how it ended.
    public func close() throws {
        let first = state.closing.withLock { () -> Bool in
            defer { state.closed = true }
            return !state.closed
        }
        if onResultThread {
            // From a callback: the result thread cannot wait for itself. It finishes the queue
            // once the tasks callbacks submitted are in it; the results still arrive.
            if first { state.finishQueueWhenDeferredAreIn() }
            return
        }
        if first {
            // Tasks submitted by callbacks go to the queue before it is finished.
            state.waitForDeferredTasks()
            tasks.finish()
        }
        joinCollector()
        for handle in table.removeAll() {
            handle.complete(.failure(TaskFailure(index: handle.index, process: nil, message: "the worker running it exited without a result")))
        }
    }

    /// Stops the pool at once, as Python's `Pool.terminate()`: the workers are killed
    /// (SIGKILL), and every task that has not finished fails (its `onError` runs, `wait()`
    /// throws). For a pool whose tasks may never end, where `close()` would wait for them.
    public func terminate() {
        state.closing.withLock {
            state.closed = true
            state.terminated = true
        }
        state.dropDeferredTasks()
        tasks.finish()
        for worker in state.workers { worker.terminate(signal: SIGKILL) }
        // From a callback, the result thread fails what is left once it sees the workers gone.
        guard !onResultThread else { return }
        joinCollector()
        for handle in table.removeAll() {
            handle.complete(.failure(TaskFailure(index: handle.index, process: nil, message: TaskPoolResults<Output>.terminatedMessage)))
        }
    }

    /// Waits for the result thread to end (never from the result thread itself).
    private func joinCollector() {
        guard !onResultThread else { return }
        joining.withLock {
            guard !joined else { return }
            pthread_join(resultThread, nil)
            joined = true
        }
    }

    deinit { try? close() }
}

/// The running-task word of worker `index` in `mapping`.
func runningTask(_ mapping: SharedMapping, _ index: Int) -> UnsafeAtomic<Int> {
    UnsafeAtomic(at: (mapping.base + 8 * index).assumingMemoryBound(to: UnsafeAtomic<Int>.Storage.self))
}

/// What a `TaskPool`'s result thread works with, and the pool's state it shares with `submit`
/// and `close`.
///
/// `@unchecked Sendable`: `results` and `running` live in process-shared memory used through
/// their locks and atomics; `workers` is touched by the result thread alone; `table` has its
/// own lock; `closed` and `broken` are read and written holding `closing`.
final class TaskPoolResults<Output: Codable & Sendable>: @unchecked Sendable {
    let results: SharedQueue<TaskOutcome>
    let workers: [ChildProcess]
    /// Per worker, the task it is running (-1: none), so a worker that dies fails its task.
    let running: SharedMapping
    let table = HandleTable<Output>()
    let closing = InProcessLock()
    var closed = false
    /// Whether `terminate()` killed the workers (under `closing`).
    var terminated = false
    /// Why a task that `terminate()` ended failed, however it was found.
    static var terminatedMessage: String { "the pool was terminated before it finished" }
    /// Why no task can run any more (every worker died), once that is so.
    var broken: String?
    /// Ends the task queue: its puts throw from then on.
    let abandonTasks: () -> Void
    /// Tasks submitted from callbacks that waited for room in the queue, oldest first (held
    /// with `closing`): each puts its task in the queue if there is room now, and says whether
    /// it did.
    private var deferred: [() throws -> Bool] = []
    /// Set by `close()` from a callback: finish the task queue once `deferred` is empty.
    private var finishWhenDeferredAreIn = false
    /// Set when the result thread has ended (nothing will queue `deferred` any more).
    private var collectorEnded = false

    init(results: SharedQueue<TaskOutcome>, workers: [ChildProcess], running: SharedMapping, abandonTasks: @escaping () -> Void) {
        self.results = results
        self.workers = workers
        self.running = running
        self.abandonTasks = abandonTasks
    }

    /// Keeps a task for the result thread to queue (in order, behind any kept before).
    func deferTask(_ queue: @escaping () throws -> Bool) {
        closing.withLock { deferred.append(queue) }
        queueDeferredTasks()
    }

    /// Queues the kept tasks that fit now, oldest first (a queue finished meanwhile drops them:
    /// their handles fail with the others').
    func queueDeferredTasks() {
        closing.withLock {
            while let next = deferred.first {
                do {
                    guard try next() else { return }
                } catch {
                    deferred.removeAll()
                    break
                }
                deferred.removeFirst()
            }
            if finishWhenDeferredAreIn {
                finishWhenDeferredAreIn = false
                abandonTasks()
            }
        }
    }

    /// `close()` from a callback: the queue is finished once the kept tasks are in it.
    func finishQueueWhenDeferredAreIn() {
        closing.withLock { finishWhenDeferredAreIn = true }
        queueDeferredTasks()
    }

    /// Waits until every kept task is in the queue, or the result thread has ended.
    func waitForDeferredTasks() {
        while closing.withLock({ !deferred.isEmpty && !collectorEnded }) { usleep(1000) }
    }

    func dropDeferredTasks() {
        closing.withLock { deferred.removeAll() }
    }

    /// The result thread: hands each outcome to its handle; a worker that dies fails the task
    /// it was running; ends once every worker has ended.
    func collect() {
        defer {
            closing.withLock {
                collectorEnded = true
                deferred.removeAll()
            }
        }
        var ended = [Bool](repeating: false, count: workers.count)
        var lastLook = monotonicNow()
        while true {
            do {
                if let outcome = try results.get(timeout: 0.1) { deliver(outcome) } else { return }
            } catch {
                // Nothing came for a while.
            }
            queueDeferredTasks()
            // Ten times a second, also while results stream in: has a worker ended?
            guard monotonicNow() - lastLook >= 0.1 else { continue }
            lastLook = monotonicNow()
            var someEnded = false
            for (index, worker) in workers.enumerated() where !ended[index] {
                guard let code = worker.exitCodeIfEnded() else { continue }
                ended[index] = true
                someEnded = true
                // What it sent before it died comes first.
                while let outcome = try? results.get(timeout: 0) { deliver(outcome) }
                let task = runningTask(running, index).load(ordering: .acquiring)
                if task >= 0, let handle = table.remove(task) {
                    let killed = closing.withLock { terminated }
                    handle.complete(.failure(TaskFailure(index: task, process: killed ? nil : worker.pid,
                                                         message: killed ? Self.terminatedMessage
                                                            : "the worker process running it \(ChildProcess.describeEnd(code)) before it answered")))
                }
            }
            if someEnded && ended.allSatisfy({ $0 }) {
                while let outcome = try? results.get(timeout: 0) { deliver(outcome) }
                // No worker is left: what is queued can never run.
                let (closedNow, killed) = closing.withLock { () -> (Bool, Bool) in
                    if !closed { broken = "every worker process of the pool has ended" }
                    return (closed, terminated)
                }
                // A submit waiting for room in the queue, or one that comes later, fails.
                abandonTasks()
                for handle in table.removeAll() {
                    handle.complete(.failure(TaskFailure(index: handle.index, process: nil,
                                                         message: killed ? Self.terminatedMessage
                                                            : closedNow ? "the pool closed before it ran" : "no worker process of the pool is left to run it")))
                }
                return
            }
        }
    }

    func deliver(_ outcome: TaskOutcome) {
        guard let handle = table.remove(outcome.id) else { return }
        guard let bytes = outcome.output else {
            handle.complete(.failure(TaskFailure(index: outcome.id, process: outcome.process, message: outcome.error ?? "failed")))
            return
        }
        do {
            handle.complete(.success(try BinaryDecoder().decode(Output.self, from: bytes)))
        } catch {
            handle.complete(.failure(TaskFailure(index: outcome.id, process: outcome.process,
                                                 message: "its result cannot be decoded: \(describeDecodingError(error))")))
        }
    }

}

/// Why a task of a `TaskPool` failed outside its function: its input or result could not pass.
struct TaskPoolProblem: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// What a worker of a `TaskPool` sends back for one task: the result encoded apart (so a nil
/// result is a result, and one that does not decode fails alone), or the error.
struct TaskOutcome: Codable {
    var id: Int
    var output: [UInt8]?
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
    /// The tasks awaiting `value`, by the number each was given.
    private var continuations: [Int: CheckedContinuation<Output, any Error>] = [:]
    private var lastWaiter = 0

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
            defer { continuations = [:] }
            return Array(continuations.values)
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

    /// Waits at most `timeout` seconds for the result (Python's `get(timeout=)`): throws
    /// `SharedMemoryError.timedOut` when it has not arrived by then (the task goes on), and the
    /// task's `TaskFailure` when it failed.
    public func wait(timeout: Double) throws -> Output {
        let deadline = monotonicNow() + max(timeout, 0)
        return try lock.withLock {
            while result == nil {
                let left = deadline - monotonicNow()
                guard left > 0 else { throw SharedMemoryError.timedOut(seconds: timeout) }
                lock.wait(seconds: left)
            }
            return try result!.get()
        }
    }

    /// The result, awaited without blocking a thread. Throws the task's `TaskFailure`, or
    /// `CancellationError` when the awaiting task is cancelled before the result arrives (the
    /// pool's task goes on, and its result can still be awaited).
    public var value: Output {
        get async throws {
            let waiter = lock.withLock { () -> Int in
                lastWaiter += 1
                return lastWaiter
            }
            return try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { continuation in
                    let ready: Result<Output, any Error>? = lock.withLock {
                        if let result { return result.mapError { $0 as any Error } }
                        // Cancelled before this point: the handler has found nothing to resume.
                        if Task.isCancelled { return .failure(CancellationError()) }
                        continuations[waiter] = continuation
                        return nil
                    }
                    if let ready { continuation.resume(with: ready) }
                }
            } onCancel: {
                let waiting = lock.withLock { continuations.removeValue(forKey: waiter) }
                waiting?.resume(throwing: CancellationError())
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

    /// Waits on the condition for at most `seconds`; call holding the lock.
    func wait(seconds: Double) {
        // (Callers wait again while their deadline has not passed.)
        let seconds = min(max(seconds, 0), 1e6)
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let whole = Int(seconds)
        var nanoseconds = now.tv_nsec + Int((seconds - Double(whole)) * 1e9)
        var until = timespec(tv_sec: now.tv_sec + whole + nanoseconds / 1_000_000_000, tv_nsec: 0)
        nanoseconds %= 1_000_000_000
        until.tv_nsec = nanoseconds
        pthread_cond_timedwait(&condition, &mutex, &until)
    }
    func broadcast() { pthread_cond_broadcast(&condition) }
}
