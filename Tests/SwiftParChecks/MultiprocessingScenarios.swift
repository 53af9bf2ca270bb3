#if canImport(Glibc)
import Glibc
#endif
import SwiftPar

// The examples of the article our users start from (shared/reference), in Swift. Each runs in
// one process that starts its own children, and checks the article's exact results.

let multiprocessingScenarios: [String: @Sendable (Communicator) throws -> String] = [
    "mp-process": articleProcess,
    "mp-apply-async": articleApplyAsync,
    "mp-queue": articleQueue,
    "mp-shared-values": articleSharedValues,
    "mp-manager": articleManager,
    "mp-faults": multiprocessingFaults,
    "mp-pool-stuck": taskPoolStuck,
]

/// Two children print their pid and parent pid; both exit 0; a throwing child exits 1.
func articleProcess(_ world: Communicator) throws -> String {
    let me = getpid()
    let lines = try SharedQueue<String>(producers: 2)
    let workers = ["A", "B"].map { name in
        ChildProcess {
            defer { lines.finish() }
            try lines.put("Worker \(name): PID=\(getpid()), Parent PID=\(getppid())")
        }
    }
    for worker in workers { try worker.start() }
    for worker in workers { try worker.join() }
    let printed = Array(lines)
    try expectEqual(workers.map(\.exitCode), [0, 0], world, "exit codes")
    try expectEqual(printed.count, 2, world, "lines from the workers")
    for (line, worker) in zip(printed.sorted(), workers) {
        try expect(line.hasSuffix("Parent PID=\(me)") && line.contains("PID=\(worker.pid!)"), world, "line \(line)")
    }
    let failing = ChildProcess { throw ItemError(item: 1) }
    try failing.start()
    try expectEqual(try failing.join(), 1, world, "exit code of a child that throws")
    let killed = ChildProcess { raise(SIGKILL) }
    try killed.start()
    try expectEqual(try killed.join(), -SIGKILL, world, "exit code of a killed child")
    return "exit=0,0"
}

/// apply_async with callbacks and error callbacks, then the same results by await.
func articleApplyAsync(_ world: Communicator) throws -> String {
    let pool = try TaskPool(workers: 4) { (path: String) -> [String] in
        if path.hasPrefix("missing") { throw ItemError(item: Int(path.dropFirst(7))!) }
        return [path, String(path.count * 31)]
    }
    let results = try SharedValueBox<[String: String]>([:])
    let errors = try SharedValueBox<[String]>([])
    let paths = (0..<20).map { $0 % 5 == 0 ? "missing\($0)" : "file\($0).txt" }
    let handles = try paths.map { path in
        try pool.submit(path, onSuccess: { pair in results.update { $0[pair[0]] = pair[1] } },
                        onError: { error in errors.update { $0.append(error.message) } })
    }
    for handle in handles { _ = try? handle.wait() }
    // The callbacks ran before wait returned.
    try expectEqual(results.value, Dictionary(uniqueKeysWithValues: paths.filter { !$0.hasPrefix("missing") }.map { ($0, String($0.count * 31)) }),
                    world, "results from callbacks")
    try expectEqual(errors.value.sorted(), (0..<20).filter { $0 % 5 == 0 }.map { "item \($0) is not allowed" }.sorted(), world, "errors")
    // Await the same kind of results from an async context.
    let awaited = try blockOn {
        var values: [String] = []
        for path in ["a", "bb", "ccc"] { values.append(try await pool.submit(path).value[1]) }
        return values
    }
    try expectEqual(awaited, ["31", "62", "93"], world, "awaited results")
    try pool.close()
    return "results=\(results.value.count),errors=\(errors.value.count)"
}

/// One producer, three consumers, a results queue: every item processed exactly once, and the
/// end of the stream reaches every consumer without a sentinel value.
func articleQueue(_ world: Communicator) throws -> String {
    struct WorkItem: Codable { var id: Int; var data: Int }
    struct Processed: Codable, Hashable { var id: Int; var result: Int; var consumer: Int }
    let work = try SharedQueue<WorkItem>(producers: 1)
    let results = try SharedQueue<Processed>(producers: 3)
    let data = (0..<10).map { ($0 * 37 + 11) % 100 + 1 }
    let producer = ChildProcess {
        defer { work.finish() }
        for i in 0..<10 {
            try work.put(WorkItem(id: i, data: data[i]))
            usleep(10_000)
        }
    }
    let consumers = (0..<3).map { name in
        ChildProcess {
            defer { results.finish() }
            for item in work {
                try results.put(Processed(id: item.id, result: item.data * item.data, consumer: name))
            }
        }
    }
    try producer.start()
    for consumer in consumers { try consumer.start() }
    let collected = Array(results)
    try producer.join()
    for consumer in consumers { try consumer.join() }
    try expectEqual(collected.count, 10, world, "results collected")
    try expectEqual(collected.map(\.id).sorted(), Array(0..<10), world, "ids")
    for item in collected { try expectEqual(item.result, data[item.id] * data[item.id], world, "result of \(item.id)") }
    try expectEqual(consumers.map(\.exitCode), [0, 0, 0], world, "consumers ended cleanly")
    try expect(work.isFinished && work.count == 0, world, "work queue finished and empty")
    return "collected=\(collected.count)"
}

/// The race example, fixed: 4 processes × 10,000 locked increments give exactly 40,000; so do
/// atomic adds; the shared array doubled under its lock by 4 processes is [16, 32, 48].
func articleSharedValues(_ world: Communicator) throws -> String {
    let counter = try SharedValue<Int32>(0)
    let lock = try ProcessLock()
    let iterations = 10_000
    let incrementers = (0..<4).map { _ in
        ChildProcess { for _ in 0..<iterations { lock.withLock { counter.value += 1 } } }
    }
    for p in incrementers { try p.start() }
    for p in incrementers { try p.join() }
    try expectEqual(counter.value, 40_000, world, "locked counter")

    let atomicCounter = try SharedValue<Int>(0)
    let adders = (0..<4).map { _ in ChildProcess { for _ in 0..<iterations { atomicCounter.add(1) } } }
    for p in adders { try p.start() }
    for p in adders { try p.join() }
    try expectEqual(atomicCounter.value, 40_000, world, "atomic counter")

    let array = try SharedArray<Double>([1.0, 2.0, 3.0])
    let doublers = (0..<4).map { _ in
        ChildProcess { array.withLock { values in for i in values.indices { values[i] *= 2 } } }
    }
    for p in doublers { try p.start() }
    for p in doublers { try p.join() }
    try expectEqual(Array(array), [16.0, 32.0, 48.0], world, "shared array")
    return "counter=\(counter.value)"
}

/// Four processes write to a managed dictionary and list.
func articleManager(_ world: Communicator) throws -> String {
    let manager = try Manager()
    let shared = manager.dictionary("shared", of: Int.self)
    let list = manager.list("list", of: Int.self)
    let workers = (0..<4).map { id in
        ChildProcess {
            try shared.set(id * 10, for: "worker_\(id)")
            try list.append(id)
        }
    }
    for w in workers { try w.start() }
    for w in workers { try w.join() }
    try expectEqual(workers.map(\.exitCode), [0, 0, 0, 0], world, "worker exit codes")
    try expectEqual(try shared.snapshot(), ["worker_0": 0, "worker_1": 10, "worker_2": 20, "worker_3": 30], world, "dict")
    try expectEqual(try list.snapshot().sorted(), [0, 1, 2, 3], world, "list")
    try expectEqual(try shared.value(for: "worker_2"), 20, world, "one value")
    try shared.set(nil, for: "worker_2")
    try expectEqual(try shared.value(for: "worker_2"), nil, world, "removed value")
    try manager.shutdown()
    return "dict=4,list=4"
}

/// A value guarded by a lock, for callbacks that run on another thread.
final class SharedValueBox<T>: @unchecked Sendable {
    private var stored: T
    private let lock = try! ProcessLock()
    init(_ value: T) throws { stored = value }
    func update(_ body: (inout T) -> Void) { lock.withLock { body(&stored) } }
    var value: T { lock.withLock { stored } }
}

/// Runs an async closure to completion from synchronous code.
func blockOn<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
    let box = try SharedValueBox<Result<T, any Error>?>(nil)
    nonisolated(unsafe) let finished = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)
    sem_init(finished, 0, 0)
    defer { sem_destroy(finished); finished.deallocate() }
    Task {
        let result: Result<T, any Error>
        do { result = .success(try await body()) } catch { result = .failure(error) }
        box.update { $0 = result }
        sem_post(finished)
    }
    while sem_wait(finished) != 0 {}
    return try box.value!.get()
}

/// Faults of the multiprocessing types, each of which used to hang the program or kill a
/// child: a consumer killed while it waits on a queue, a task pool worker that crashes or
/// exits, every worker gone, a result or an input that does not decode, a nil result, a child
/// started by a thread that then ends, a manager request too large for its queue.
func multiprocessingFaults(_ world: Communicator) throws -> String {
    // A consumer killed while it waits in get() leaves the queue usable.
    let queue = try SharedQueue<Int>(producers: 1)
    let total = try SharedValue(0)
    let consumers = (0..<2).map { _ in ChildProcess { while let item = try queue.get() { total.add(item) } } }
    for consumer in consumers { try consumer.start() }
    usleep(200_000)
    consumers[1].terminate(signal: SIGKILL)
    try expectEqual(try consumers[1].join(), -SIGKILL, world, "the killed consumer")
    for item in 1...1000 { try queue.put(item) }
    queue.finish()
    try expectEqual(try consumers[0].join(), 0, world, "the consumer left")
    try expectEqual(total.value, 500_500, world, "items taken by the consumer left")

    // A value whose init(from:) rejects it stops a `for … in queue` loudly: ending there would
    // pass for the end of the stream, with the values after it lost.
    let checked = try SharedQueue<NonNegative>(producers: 1)
    let iterated = try SharedValue(0)
    let iterating = ChildProcess {
        // The trap's message is expected: keep it out of the check's output.
        let null = open("/dev/null", O_WRONLY)
        if null >= 0 { dup2(null, 2) }
        for item in checked { iterated.add(item.value) }
    }
    try iterating.start()
    for value in [1, 2, -3, 4] { try checked.put(NonNegative(value: value)) }
    checked.finish()
    let status = try iterating.join()
    try expect(status < 0, world, "iterating over a value that does not decode ended with status \(status), not a signal")
    try expectEqual(iterated.value, 3, world, "values iterated over before the one that does not decode")
    try expectEqual(try checked.get(), NonNegative(value: 4), world, "the value after it, still in the queue")

    // A worker that dies fails its task, naming how it ended; the others go on.
    let crashing = try TaskPool(workers: 2) { (x: Int) -> Int in
        if x == 1 { kill(getpid(), SIGKILL) }
        return x * 10
    }
    let handles = try (0..<6).map { try crashing.submit($0) }
    for (index, handle) in handles.enumerated() {
        if index == 1 {
            do {
                _ = try handle.wait()
                throw CheckFailed(description: "the task whose worker died returned")
            } catch let failure as TaskFailure {
                try expect(failure.message.hasSuffix("was killed by signal 9 (SIGKILL) before it answered"), world, "task 1: \(failure)")
            }
        } else {
            try expectEqual(try handle.wait(), index * 10, world, "task \(index)")
        }
    }
    try crashing.close()
    try expectError(SwiftParUsageError.self, world, "submit after close") { _ = try crashing.submit(9) }

    // Every worker gone: its task and the queued ones fail, and submit says why.
    let exiting = try TaskPool(workers: 1) { (_: Int) -> Int in exit(7) }
    let doomed = try (0..<3).map { try exiting.submit($0) }
    var messages: [String] = []
    for handle in doomed {
        do { _ = try handle.wait() } catch let failure as TaskFailure { messages.append(failure.message) }
    }
    try expectEqual(messages, ["the worker process running it exited with status 7 before it answered",
                               "no worker process of the pool is left to run it", "no worker process of the pool is left to run it"],
                    world, "tasks of a pool whose only worker exited")
    try expectError(SwiftParUsageError.self, world, "submit with no worker left") { _ = try exiting.submit(1) }
    try exiting.close()
    // A submit waiting for room in a full queue when the last worker ends fails too.
    let dying = try TaskPool(workers: 1) { (_: String) -> Int in exit(7) }
    var refused = 0
    for index in 0..<40 {
        do {
            _ = try dying.submit(String(repeating: "x", count: 100_000) + "\(index)")
        } catch is SwiftParUsageError {
            refused += 1
        }
    }
    try expect(refused >= 20, world, "submits refused once no worker was left: \(refused) of 40")
    try dying.close()

    // A result that does not decode, an input that does not decode in the worker, a nil result:
    // each task on its own, the worker alive for the next.
    let fragileResults = try TaskPool(workers: 1) { (x: Int) -> Fragile in Fragile(value: x) }
    do {
        _ = try fragileResults.submit(7).wait()
        throw CheckFailed(description: "a result that does not decode arrived")
    } catch let failure as TaskFailure {
        try expectEqual(failure.message, "its result cannot be decoded: fragile 7", world, "undecodable result")
    }
    try expectEqual(try fragileResults.submit(8).wait(), Fragile(value: 8), world, "the result after it")
    try fragileResults.close()
    let fragileInputs = try TaskPool(workers: 1) { (x: Fragile) -> Int in x.value }
    do {
        _ = try fragileInputs.submit(Fragile(value: 7)).wait()
        throw CheckFailed(description: "an input that does not decode ran")
    } catch let failure as TaskFailure {
        try expectEqual(failure.message, "its input cannot be decoded: fragile 7", world, "undecodable input")
    }
    try expectEqual(try fragileInputs.submit(Fragile(value: 8)).wait(), 8, world, "the input after it")
    try fragileInputs.close()
    let optional = try TaskPool(workers: 1) { (x: Int) -> Int? in x == 0 ? nil : x }
    try expectEqual(try optional.submit(0).wait(), nil, world, "a nil result")
    try expectEqual(try optional.submit(5).wait(), 5, world, "a result after nil")
    try optional.close()

    // A child started by a thread that then ends lives on (it used to get its parent-death
    // signal when that thread ended).
    let fromThread = ChildProcess { usleep(300_000) }
    let started = try SharedValue(0)
    var thread = pthread_t()
    let box = Unmanaged.passRetained(ThreadWork { try? fromThread.start(); started.add(1) })
    try expectEqual(pthread_create(&thread, nil, { argument in
        let work = Unmanaged<ThreadWork>.fromOpaque(argument!).takeRetainedValue()
        work.body()
        return nil
    }, box.toOpaque()), 0, world, "pthread_create")
    pthread_join(thread, nil)
    try expectEqual(started.value, 1, world, "the thread started the child")
    try expectEqual(try fromThread.join(), 0, world, "a child whose starting thread ended")
    try expectError(SwiftParUsageError.self, world, "a second start") { try fromThread.start() }
    // A child that starts a child of its own, after this process has started children: the
    // forking thread is not copied by fork, so each process gets its own.
    let outer = ChildProcess {
        let inner = ChildProcess { exit(5) }
        try inner.start()
        exit(try inner.join() == 5 ? 0 : 1)
    }
    try outer.start()
    try expectEqual(try outer.join(), 0, world, "a child started inside a child")

    // Manager requests too large for its queue fail, and leave no mailbox taken.
    let manager = try Manager(slots: 2)
    let scores = manager.dictionary("scores", of: String.self)
    let huge = String(repeating: "z", count: 5_000_000)
    for _ in 0..<3 {
        do {
            try scores.set(huge, for: "k")
            throw CheckFailed(description: "a 5 MB request went through a 4 MiB queue")
        } catch let error as SharedMemoryError {
            // Not "the manager's server failed": the server never saw it (found by a user).
            guard case .tooLarge(let bytes, let capacity) = error else { throw CheckFailed(description: "too large: \(error)") }
            try expect(bytes > 5_000_000 && capacity == 4 << 20, world, "too large: \(error)")
        }
    }
    try scores.set("small", for: "k")
    try expectEqual(try scores.value(for: "k"), "small", world, "a request after three too large")
    try manager.shutdown()

    // Writes answer nothing: a value larger than the answers may be set and removed; only
    // reading it is refused (removing it threw, though it was removed).
    let narrow = try Manager(answerCapacity: 1024)
    let blobs = narrow.dictionary("blobs", of: [UInt8].self)
    try blobs.set([UInt8](repeating: 1, count: 4096), for: "big")
    do {
        _ = try blobs.value(for: "big")
        throw CheckFailed(description: "a 4 KiB answer came through a 1 KiB mailbox")
    } catch SharedMemoryError.managerFailed(let reason) {
        try expect(reason.contains("more than the manager's 1024-byte answer capacity"), world, "read too large: \(reason)")
    }
    try blobs.set(nil, for: "big")
    try expectEqual(try blobs.value(for: "big"), nil, world, "the removed value")
    try narrow.shutdown()

    // A manager whose server dies: every request throws, none waits for room in the queue
    // the server no longer empties (the fifth 1 MB write waited for good).
    let before = childProcesses()
    let orphaned = try Manager()
    let shared = orphaned.dictionary("shared", of: [UInt8].self)
    try shared.set([1], for: "a")
    let servers = childProcesses().subtracting(before)
    try expectEqual(servers.count, 1, world, "new child processes after Manager()")
    for pid in servers { kill(pid, SIGKILL) }
    let began = monotonicNow()
    for i in 0..<8 {
        do {
            try shared.set([UInt8](repeating: 1, count: 1_000_000), for: "k\(i)")
            throw CheckFailed(description: "write \(i) to a dead manager succeeded")
        } catch SharedMemoryError.managerExited {}
    }
    try expect(monotonicNow() - began < 20, world, "eight writes to a dead manager took \(monotonicNow() - began) s")
    try orphaned.shutdown()
    // After shutdown, whose server's pid another process may have taken by now.
    try expectError(SharedMemoryError.self, world, "a write after shutdown") { try shared.set([2], for: "b") }
    return "ok"
}

/// The pids of this process's children, whichever thread started them.
func childProcesses() -> Set<pid_t> {
    var found = Set<pid_t>()
    guard let tasks = opendir("/proc/self/task") else { return found }
    defer { closedir(tasks) }
    while let entry = readdir(tasks) {
        let task = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        guard Int(task) != nil, let file = fopen("/proc/self/task/\(task)/children", "r") else { continue }
        defer { fclose(file) }
        var text = ""
        var buffer = [CChar](repeating: 0, count: 4096)
        while fgets(&buffer, Int32(buffer.count), file) != nil {
            text += String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        for word in text.split(separator: " ") { if let pid = pid_t(word) { found.insert(pid) } }
    }
    return found
}

/// A closure for a thread started with pthread_create.
final class ThreadWork {
    let body: () -> Void
    init(_ body: @escaping () -> Void) { self.body = body }
}

/// Runs `body`, which must throw an `E`.
func expectError<E: Error>(_ type: E.Type, _ world: Communicator, _ what: String, _ body: () throws -> Void) throws {
    do {
        try body()
    } catch is E {
        return
    }
    throw CheckFailed(description: "rank \(world.rank) check failed: \(what) did not throw \(E.self)")
}

/// Found by a user, both hung for good: callbacks that submit more tasks than the queue holds
/// (the result thread waited for room that only it could make), and a task that never ends
/// (`close()` waits for it; there was no way out). Now the callbacks' tasks wait in the process
/// and all run; a result is waited for with a timeout; `terminate()` kills the workers and
/// fails what had not finished.
func taskPoolStuck(_ world: Communicator) throws -> String {
    let start = monotonicSeconds()
    // The results are as large as the inputs: a worker waits for room to send one back.
    let echo = try TaskPool(workers: 1) { (bytes: [UInt8]) -> [UInt8] in bytes }
    let done = try SharedValue(0)
    let big = [UInt8](repeating: 1, count: 200_000)
    // 200 tasks of 200 KB, each of whose callbacks submits another: 70 MB through a 1 MiB queue.
    for _ in 0..<200 {
        try echo.submit(big, onSuccess: { echoed in
            done.add(1)
            guard echoed.count == big.count else { return }
            _ = try? echo.submit([UInt8](repeating: 2, count: 150_000), onSuccess: { _ in done.add(1) })
        })
    }
    // (As in Python, a callback's submit after close() is refused: wait for them all first.)
    while done.value < 400 && monotonicSeconds() - start < 30 { usleep(10_000) }
    try echo.close()
    try expectEqual(done.value, 400, world, "tasks run, those submitted by callbacks included")

    let stuck = try TaskPool(workers: 2) { (x: Int) -> Int in
        if x == 0 { while true { sleep(1) } }
        return x * 10
    }
    let forever = try stuck.submit(0)
    try expectEqual(try stuck.submit(1).wait(timeout: 10), 10, world, "a task beside one that never ends")
    try expectError(SharedMemoryError.self, world, "a wait with a timeout for a task that never ends") { _ = try forever.wait(timeout: 0.2) }
    // Awaiting it from a task that is then cancelled: the await ends (it waited for good), the
    // task goes on; cancelled before it awaits, it does not wait at all.
    let cancelled = try blockOn { () -> [String] in
        var outcomes: [String] = []
        for delay in [UInt64(200_000_000), 0] {
            let awaiting = Task { () -> String in
                if delay == 0 { withUnsafeCurrentTask { $0?.cancel() } }
                do {
                    _ = try await forever.value
                    return "returned"
                } catch is CancellationError {
                    return "cancelled"
                } catch {
                    return "\(error)"
                }
            }
            try await Task.sleep(nanoseconds: delay)
            awaiting.cancel()
            outcomes.append(await awaiting.value)
        }
        return outcomes
    }
    try expectEqual(cancelled, ["cancelled", "cancelled"], world, "awaiting a task that never ends, cancelled")
    try expect(!forever.isReady, world, "the never-ending task after its awaiting was cancelled")
    _ = try stuck.submit(2)
    stuck.terminate()
    do {
        _ = try forever.wait()
        throw CheckFailed(description: "rank \(world.rank): the task that never ends returned after terminate()")
    } catch let failure as TaskFailure {
        try expect(failure.message == "the pool was terminated before it finished", world, "the never-ending task: \(failure)")
    }
    do {
        _ = try stuck.submit(3)
        throw CheckFailed(description: "rank \(world.rank): submit after terminate() was taken")
    } catch let error as SwiftParUsageError {
        try expectEqual("\(error)", "TaskPool: submit called after terminate()", world, "submit after terminate()")
    }
    try stuck.close()

    // From a review: callbacks that end the pool themselves. One that terminates it while this
    // thread waits in close(); one that closes it (the results still arrive); and workers that
    // all die while tasks submitted by callbacks wait for room, during close().
    let halting = try TaskPool(workers: 1) { (x: Int) -> Int in
        if x == 3 { throw CheckFailed(description: "item 3") }
        return x
    }
    for x in 0..<10 { _ = try? halting.submit(x, onError: { _ in halting.terminate() }) }
    try halting.close()
    // (The callback closes the pool only once the other tasks are in: on a busy machine the
    // first result can come back before they are submitted, and a submit after close() is
    // refused.)
    let closing = try TaskPool(workers: 1) { (x: Int) -> Int in x * 2 }
    let restSubmitted = try SharedValue(0)
    let first = try closing.submit(0, onSuccess: { _ in
        let deadline = monotonicSeconds() + 10
        while restSubmitted.value == 0 && monotonicSeconds() < deadline { usleep(1000) }
        try? closing.close()
    })
    let rest = try (1..<5).map { try closing.submit($0) }
    restSubmitted.value = 1
    try expectEqual(try first.wait(timeout: 10), 0, world, "the task whose callback closed the pool")
    for (index, handle) in rest.enumerated() {
        try expectEqual(try handle.wait(timeout: 10), (index + 1) * 2, world, "a task submitted before a callback closed the pool")
    }
    try closing.close()
    let dying = try TaskPool(workers: 1) { (_: [UInt8]) -> Int in exit(3) }
    let large = [UInt8](repeating: 7, count: 600_000)
    for _ in 0..<3 {
        _ = try? dying.submit(large, onError: { _ in
            _ = try? dying.submit(large)
            _ = try? dying.submit(large)
        })
    }
    try dying.close()

    // Results larger than the default 1 MiB queue, with a larger one (found by a user: a 2 MB
    // result could not come back, and nothing could be changed).
    let small = try TaskPool(workers: 1) { (n: Int) -> [UInt8] in [UInt8](repeating: 1, count: n) }
    do {
        _ = try small.submit(2_000_000).wait(timeout: 10)
        throw CheckFailed(description: "rank \(world.rank): a 2 MB result came through a 1 MiB queue")
    } catch let failure as TaskFailure {
        try expect(failure.message.contains("does not fit in a queue of 1048576 bytes"), world, "a 2 MB result: \(failure)")
    }
    try small.close()
    let roomy = try TaskPool(workers: 1, queueCapacity: 8 << 20) { (n: Int) -> [UInt8] in [UInt8](repeating: 1, count: n) }
    try expectEqual(try roomy.submit(2_000_000).wait(timeout: 10).count, 2_000_000, world, "a 2 MB result through an 8 MiB queue")
    try roomy.close()
    let seconds = monotonicSeconds() - start
    try expect(seconds < 30, world, "took \(seconds) s")
    return "callbacks=400,terminated"
}

/// A value that refuses to be decoded when negative, as a user's validating `init(from:)` does.
struct NonNegative: Codable, Equatable {
    var value: Int
    init(value: Int) { self.value = value }
    init(from decoder: any Decoder) throws {
        value = try decoder.singleValueContainer().decode(Int.self)
        guard value >= 0 else {
            throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "\(value) is negative"))
        }
    }
    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(value)
    }
}
