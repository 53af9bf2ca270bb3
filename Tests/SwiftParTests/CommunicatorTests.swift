import Testing

/// Every Communicator operation, run as a real job on each backend: under Open MPI's mpirun
/// and on the local backend at 1, 2, 4 and 8 ranks (4 and 8 oversubscribe this 2-core machine),
/// and as a single rank. Each rank checks its own data in `swiftpar-checks`; a wrong value ends
/// the job naming the rank.
@Suite("Communicator operations on real jobs", .serialized)
struct CommunicatorTests {
    func check(_ scenario: String, _ launch: Launch, environment: [String: String] = [:], timeout: Double = 60) throws {
        let result = try Jobs.run("swiftpar-checks", [scenario], launch: launch, environment: environment, timeout: timeout)
        expectEveryRankOK(result, scenario: scenario, ranks: launch.ranks)
    }

    @Test("Codable and plain-number messages go around a ring", arguments: Launch.all)
    func ring(_ launch: Launch) throws { try check("ring", launch) }

    @Test("Receive from any source and any tag gets every message once", arguments: Launch.all)
    func anySource(_ launch: Launch) throws { try check("any-source", launch) }

    @Test("Probe reports source, tag and size without consuming", arguments: Launch.all)
    func probe(_ launch: Launch) throws { try check("probe", launch) }

    @Test("Receive into an existing array: same size, shorter, and too long", arguments: Launch.all)
    func receiveInto(_ launch: Launch) throws { try check("receive-into", launch) }

    @Test("Send-receive shifts values without deadlock", arguments: Launch.all)
    func sendReceive(_ launch: Launch) throws { try check("send-receive", launch) }

    @Test("Nonblocking sends and receives complete with test and waitAll", arguments: Launch.all)
    func nonblocking(_ launch: Launch) throws { try check("nonblocking", launch) }

    @Test("Started receives take their messages while every rank is blocked in its own send (the usual exchange with neighbours)", arguments: Launch.all)
    func startedReceives(_ launch: Launch) throws { try check("started-receives", launch) }

    @Test("Started receives take messages sent in chunks, announced, and with arrays sent apart (limit lowered to 4 KiB)",
          arguments: [Launch.mpirun(2), .mpirun(3)])
    func startedReceivesInChunks(_ launch: Launch) throws {
        try check("started-receives", launch, environment: ["SWIFTPAR_MPI_MESSAGE_LIMIT": "4096"], timeout: 120)
    }

    @Test("A rank's blocking sends to itself return, however large, and its receives find them", arguments: Launch.all)
    func sendToSelf(_ launch: Launch) throws { try check("send-to-self", launch, timeout: 120) }

    @Test("Sends to itself in chunks (limit lowered to 4 KiB)", arguments: [Launch.mpirun(2)])
    func sendToSelfInChunks(_ launch: Launch) throws {
        try check("send-to-self", launch, environment: ["SWIFTPAR_MPI_MESSAGE_LIMIT": "4096"], timeout: 120)
    }

    @Test("Barrier and broadcast of Codable values, arrays and scalars", arguments: Launch.all)
    func broadcast(_ launch: Launch) throws { try check("broadcast", launch) }

    @Test("Gather, allgather and scatter with equal and varying counts", arguments: Launch.all)
    func gatherScatter(_ launch: Launch) throws { try check("gather-scatter", launch) }

    @Test("All-to-all of Codable values and varying-count arrays", arguments: Launch.all)
    func allToAll(_ launch: Launch) throws { try check("all-to-all", launch) }

    @Test("Reduce and allreduce: sum, product, min, max, and Codable closures", arguments: Launch.all)
    func reduce(_ launch: Launch) throws { try check("reduce", launch) }

    @Test("Arrays of plain numbers in the closure reductions and the Codable forms of every collective", arguments: Launch.all)
    func plainArraysAsValues(_ launch: Launch) throws { try check("plain-arrays-as-values", launch) }

    @Test("Codable edges: large arrays read by a value's own code or as another type, numbers that do not fit, values too deep, test() after the sender finished",
          arguments: [Launch.local(2), .spawned(2), .mpirun(2)])
    func codableEdges(_ launch: Launch) throws {
        let result = try Jobs.run("swiftpar-checks", ["codable-edges"], launch: launch, timeout: 90)
        expectEveryRankOK(result, scenario: "codable-edges", ranks: 2)
        #expect(result.output.contains("rank 0: ok codable-edges deep=refused,refused"), "\(result.report)")
    }

    @Test("Split by colour and key gives working sub-communicators", arguments: Launch.all)
    func split(_ launch: Launch) throws { try check("split", launch) }

    @Test("Bad input throws clear errors instead of trapping", arguments: Launch.all)
    func badInput(_ launch: Launch) throws { try check("bad-input", launch) }

    @Test("Messages and collectives above the MPI count limit are split (limit lowered to 4 KiB)",
          arguments: [Launch.mpirun(2), .mpirun(3), .mpirun(4), .local(3)])
    func largeMessages(_ launch: Launch) throws {
        try check("large-messages", launch, environment: ["SWIFTPAR_MPI_MESSAGE_LIMIT": "4096"], timeout: 120)
    }

    @Test("Encoded values just below, at and above what one receive takes arrive every way, and mismatches leave the queue clean",
          arguments: [Launch.mpirun(2), .local(2)])
    func encodedSizes(_ launch: Launch) throws {
        try check("encoded-sizes", launch, timeout: 120)
        // With a low message limit the announced values also travel in chunks.
        try check("encoded-sizes", launch, environment: ["SWIFTPAR_MPI_MESSAGE_LIMIT": "4096"], timeout: 120)
    }

    @Test("A real message above 2 GiB arrives intact and comes back", arguments: [Launch.mpirun(2), .local(2)])
    func hugeMessage(_ launch: Launch) throws {
        try check("huge-message", launch, timeout: 240)
    }
}

/// Faults: an error escaping user code on one rank ends the whole job quickly, names the rank,
/// and leaves no process behind.
@Suite("Faults end the job", .serialized)
struct FaultTests {
    @Test("An uncaught error on rank 1 of 4 aborts the job within 10 s, naming rank 1")
    func uncaughtErrorAbortsJob() throws {
        let result = try Jobs.run("swiftpar-checks", ["rank-one-throws"], launch: .mpirun(4), timeout: 30)
        #expect(result.status != 0, "the job should fail:\n\(result.report)")
        #expect(!result.timedOut, "the other ranks stayed blocked:\n\(result.report)")
        #expect(result.seconds < 10, "took \(result.seconds) s:\n\(result.report)")
        #expect(result.errors.contains("rank 1: the checks asked rank 1 to fail"), "message does not name rank 1:\n\(result.report)")
        let left = Jobs.waitForNoSurvivors(named: "swiftpar-checks rank-one-throws")
        #expect(left.isEmpty, "processes left behind: \(left)")
    }

    @Test("When a rank fails, what rank 0 had printed still comes out, on every backend", arguments: [Launch.local(2), .mpirun(2)])
    func outputKeptWhenAnotherRankFails(_ launch: Launch) throws {
        // Standard output is a pipe here, so rank 0's lines wait in its buffer when rank 1 fails.
        let result = try Jobs.run("swiftpar-checks", ["failure-while-printing"], launch: launch, timeout: 30)
        #expect(result.status != 0 && !result.timedOut && result.seconds < 15, "\(launch):\n\(result.report)")
        #expect(result.errors.contains("rank 1 failed while rank 0 was busy"), "\(launch):\n\(result.report)")
        let lines = result.output.split(separator: "\n").filter { $0.hasPrefix("rank 0 printed line") }
        #expect(lines.count == 5, "\(launch): rank 0's printed lines were lost:\n\(result.report)")
        let left = Jobs.waitForNoSurvivors(named: "swiftpar-checks failure-while-printing")
        #expect(left.isEmpty, "processes left behind: \(left)")
    }

    @Test("When rank 0 fails, what the other ranks had printed still comes out, on every backend", arguments: [Launch.local(3), .spawned(3), .mpirun(3)])
    func outputKeptWhenRankZeroFails(_ launch: Launch) throws {
        let result = try Jobs.run("swiftpar-checks", ["failure-while-printing", "rank0"], launch: launch, timeout: 30)
        #expect(result.status != 0 && !result.timedOut && result.seconds < 15, "\(launch):\n\(result.report)")
        #expect(result.errors.contains("rank 0 failed while the others were busy"), "\(launch):\n\(result.report)")
        for rank in 1...2 {
            let lines = result.output.split(separator: "\n").filter { $0.hasPrefix("rank \(rank) printed line") }
            #expect(lines.count == 5, "\(launch): rank \(rank)'s printed lines were lost:\n\(result.report)")
        }
        let left = Jobs.waitForNoSurvivors(named: "swiftpar-checks failure-while-printing")
        #expect(left.isEmpty, "processes left behind: \(left)")
    }

    @Test("A pool item that throws, uncaught, ends the job with one message on every backend", arguments: [Launch.local(3), .mpirun(3)])
    func uncaughtPoolItem(_ launch: Launch) throws {
        let result = try Jobs.run("swiftpar-checks", ["pool-item-uncaught"], launch: launch, timeout: 30)
        #expect(result.status == 1 && !result.timedOut, "\(launch):\n\(result.report)")
        #expect(result.errors.components(separatedBy: "item 5 is broken").count == 2, "\(launch): not one message:\n\(result.report)")
        #expect(result.errors.contains("swiftpar: rank 0: item 5 failed on rank "), "\(launch):\n\(result.report)")
    }

    @Test("An enum error without a description is named with its type, by a rank and by a pool item", arguments: [Launch.local(2), .mpirun(2)])
    func plainEnumError(_ launch: Launch) throws {
        let rank = try Jobs.run("swiftpar-checks", ["plain-enum-error"], launch: launch, timeout: 30)
        #expect(rank.status == 1 && rank.errors.contains("swiftpar: rank 1: TrialError.boom(code: 42) (rank 1 of 2 failed; ending the job)"), "\(launch):\n\(rank.report)")
        let item = try Jobs.run("swiftpar-checks", ["plain-enum-error", "pool"], launch: launch, timeout: 30)
        #expect(item.status == 1 && item.errors.contains(": TrialError.boom(code: 7)"), "\(launch):\n\(item.report)")
    }

    @Test("An uncaught error on the only rank exits non-zero with the error")
    func uncaughtErrorSerial() throws {
        let result = try Jobs.run("swiftpar-checks", ["rank-one-throws"], launch: .serial, timeout: 30)
        // With one rank the receive from rank 1 is itself invalid.
        #expect(result.status != 0, "\(result.report)")
        #expect(result.errors.contains("swiftpar: receive would wait forever"), "\(result.report)")
    }

    @Test("An unknown scenario is a usage error, not a crash")
    func unknownScenario() throws {
        let result = try Jobs.run("swiftpar-checks", ["no-such-scenario"], launch: .serial, timeout: 30)
        #expect(result.status == 2, "\(result.report)")
        #expect(result.errors.contains("usage"), "\(result.report)")
    }
}
