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
}
