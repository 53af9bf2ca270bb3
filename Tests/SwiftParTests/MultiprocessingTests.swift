import SwiftPar
import Testing

/// The article's multiprocessing examples (shared/reference), each run and checked for its
/// exact result: Process, apply_async, Queue, Value/Array/Lock, Manager.
@Suite("multiprocessing parity", .serialized)
struct MultiprocessingTests {
    func check(_ scenario: String) throws {
        let result = try Jobs.run("swiftpar-checks", [scenario], launch: .serial, timeout: 60)
        expectEveryRankOK(result, scenario: scenario, ranks: 1)
        #expect(Jobs.waitForNoSurvivors(named: "swiftpar-checks \(scenario)").isEmpty)
    }

    @Test("Process: start two children, join them, exit codes 0 and 0; a throwing child exits 1, a killed one -9")
    func process() throws { try check("mp-process") }

    @Test("apply_async: callbacks and error callbacks for every task, and results by await")
    func applyAsync() throws { try check("mp-apply-async") }

    @Test("Queue: one producer, three consumers, ten items each processed once, clean end of stream")
    func queue() throws { try check("mp-queue") }

    @Test("Value, Array and Lock: the race example fixed gives exactly 40000; the array doubles to [16, 32, 48]")
    func sharedValues() throws { try check("mp-shared-values") }

    @Test("Manager: four processes fill a shared dictionary and list")
    func manager() throws { try check("mp-manager") }

    @Test("Faults end in errors, not hangs: a consumer killed in get(), a pool worker that crashes or exits, results and inputs that do not decode, a nil result, a child started by a thread that ends, a manager request too large")
    func faults() throws { try check("mp-faults") }

    @Test("A TaskPool never hangs: callbacks that submit more than the queue holds, a task that never ends (wait with a timeout, terminate)")
    func taskPoolStuck() throws { try check("mp-pool-stuck") }

    @Test("Arguments that cannot work are errors that say so, not traps or hangs: a queue under 64 bytes, too large or with no producer, an array of a negative or impossible count, a manager with no slot, a task pool with no worker")
    func badArguments() throws {
        func message(_ body: () throws -> Void) -> String? {
            do { try body() } catch { return "\(error)" }
            return nil
        }
        #expect(message { _ = try SharedQueue<Int>(capacity: 63) } == "a SharedQueue needs a capacity of at least 64 bytes, not 63")
        #expect(message { _ = try SharedQueue<Int>(producers: 0) } == "a SharedQueue needs at least one producer, not 0")
        #expect(message { _ = try SharedQueue<Int>(capacity: 64, producers: 1) } == nil)
        #expect(message { _ = try Manager(slots: 0) } == "a Manager needs at least one slot, not 0")
        #expect(message { _ = try Manager(slots: Int.max / 2) } == "a Manager cannot hold \(Int.max / 2) answers of 262144 bytes")
        #expect(message { _ = try Manager(answerCapacity: -1) } == "a Manager's answer capacity must be at least 256 bytes (room for an error), not -1")
        // An answer too large is replaced by an error, which must fit (with none, it overran the mailbox).
        #expect(message { _ = try Manager(answerCapacity: 0) } == "a Manager's answer capacity must be at least 256 bytes (room for an error), not 0")
        #expect(message { _ = try TaskPool<Int, Int>(workers: 0) { $0 } } == "a TaskPool needs at least one worker, not 0")
        #expect(message { _ = try TaskPool<Int, Int>(workers: 1, queueCapacity: 10) { $0 } } == "a TaskPool needs queues of at least 64 bytes, not 10")
        // These trapped before.
        #expect(message { _ = try SharedQueue<Int>(capacity: Int.max) } == "a SharedQueue cannot hold \(Int.max) bytes")
        #expect(message { _ = try SharedArray<Int>(repeating: 0, count: -1) } == "a SharedArray cannot hold -1 elements")
        #expect(message { _ = try SharedArray<Double>(repeating: 0, count: 1 << 60) }?.hasPrefix("cannot map ") == true)
        let array = try SharedArray<Int>(repeating: 7, count: 3)
        #expect(Array(array) == [7, 7, 7])
    }
}
