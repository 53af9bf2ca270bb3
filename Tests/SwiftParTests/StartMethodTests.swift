import Foundation
import Testing

/// How local ranks start (fork, or spawn: the program started again), async programs, and
/// local work on a machine without Open MPI.
@Suite("Start methods, async programs, and running without Open MPI")
struct StartMethodTests {
    /// Each rank's "ran-main-itself" report, by rank.
    func ranMainItself(_ result: JobResult, _ scenario: String) -> [Int: String] {
        result.okLines(for: scenario).mapValues { String($0.split(separator: "=").last ?? "") }
    }

    @Test("A single-threaded program forks its ranks; with a thread running, or when asked, it spawns them")
    func startMethodFollowsThreads() throws {
        let forked = try Jobs.run("swiftpar-checks", ["start-method"], launch: .local(3), timeout: 30)
        expectEveryRankOK(forked, scenario: "start-method", ranks: 3)
        #expect(ranMainItself(forked, "start-method") == [0: "true", 1: "false", 2: "false"], "\(forked.report)")

        let asked = try Jobs.run("swiftpar-checks", ["start-method"], launch: .spawned(3), timeout: 30)
        expectEveryRankOK(asked, scenario: "start-method", ranks: 3)
        #expect(ranMainItself(asked, "start-method") == [0: "true", 1: "true", 2: "true"], "\(asked.report)")

        let threaded = try Jobs.run("swiftpar-checks", ["threads-before-run"], launch: .local(3), timeout: 30)
        expectEveryRankOK(threaded, scenario: "threads-before-run", ranks: 3)
        #expect(ranMainItself(threaded, "threads-before-run") == [0: "true", 1: "true", 2: "true"], "\(threaded.report)")

        // The thread children are forked from does not count: a child started before run
        // leaves the ranks forked, so what was made before run is shared with them.
        let child = try Jobs.run("swiftpar-checks", ["child-before-run"], launch: .local(3), timeout: 30)
        expectEveryRankOK(child, scenario: "child-before-run", ranks: 3)
        #expect(ranMainItself(child, "child-before-run") == [0: "true", 1: "false", 2: "false"], "\(child.report)")
    }

    @Test("Forking with threads running, or an unknown start method, is refused before anything starts")
    func refusedStartMethods() throws {
        let fork = try Jobs.run("swiftpar-checks", ["threads-before-run"], launch: .local(3), environment: ["SWIFTPAR_START": "fork"], timeout: 30)
        #expect(fork.status == 2, "\(fork.report)")
        #expect(fork.errors.contains("SWIFTPAR_START=fork cannot be used here: this process already runs 2 threads"), "\(fork.report)")
        #expect(fork.output.isEmpty, "\(fork.report)")

        let unknown = try Jobs.run("swiftpar-checks", ["start-method"], launch: .local(2), environment: ["SWIFTPAR_START": "clone"], timeout: 30)
        #expect(unknown.status == 2, "\(unknown.report)")
        #expect(unknown.errors.contains("SWIFTPAR_START=clone is not one of auto, fork, spawn"), "\(unknown.report)")
    }

    @Test("A spawned rank that ends before it reaches SwiftPar.run ends the job, saying so")
    func spawnedRankEndsEarly() throws {
        let result = try Jobs.run("swiftpar-checks", ["exit-before-run"], launch: .spawned(3), timeout: 30)
        #expect(result.status == 1, "\(result.report)")
        #expect(result.errors.contains("exited with status 3 before it reached SwiftPar.run"), "\(result.report)")
        #expect(result.seconds < 5, "\(result.report)")
        #expect(!result.output.contains("ok exit-before-run"), "\(result.report)")
        #expect(Jobs.waitForNoSurvivors(named: "swiftpar-checks exit-before-run").isEmpty)
    }

    /// What swiftpar-async-checks prints on `ranks` ranks.
    static func asyncOutput(ranks: Int) -> String {
        let sum = ranks * (ranks + 1) / 2
        return "ranks \(ranks): sum of squares 20540, mapReduce total 5050\n"
            + (0..<ranks).map { "rank \($0): ledger 1 entry, child task saw \(sum)\n" }.joined()
    }

    @Test("An async main that awaits before and inside run prints the same on every backend",
          arguments: [(Launch.serial, "await-first"), (.local(3), "await-first"), (.spawned(3), "await-first"),
                      (.mpirun(3), "await-first"), (.local(3), "run-first"), (.mpirun(3), "run-first")])
    func asyncProgram(_ launch: Launch, _ mode: String) throws {
        let result = try Jobs.run("swiftpar-async-checks", [mode], launch: launch, timeout: 60)
        #expect(result.status == 0, "\(result.report)")
        #expect(result.output == Self.asyncOutput(ranks: launch.ranks), "\(result.report)")
    }

    @Test("An async pool item that computes longer than the stall timeout and notes its progress is waited for",
          arguments: [Launch.local(3), .mpirun(3)])
    func asyncLongItem(_ launch: Launch) throws {
        let result = try Jobs.run("swiftpar-async-checks", ["long-item"], launch: launch,
                                  environment: ["SWIFTPAR_STALL_TIMEOUT": "1"], timeout: 60)
        #expect(result.status == 0 && result.output == "long item: [0, 1, 2, 3]\n", "\(result.report)")
    }

    @Test("Cancelling the task of an async map stops it on every rank, which throws CancellationError",
          arguments: [Launch.serial, .local(3), .mpirun(3)])
    func asyncMapCancelled(_ launch: Launch) throws {
        let result = try Jobs.run("swiftpar-async-checks", ["cancel"], launch: launch, timeout: 60)
        let expected = (0..<launch.ranks).map { "rank \($0): CancellationError, early" }
        let lines = result.output.split(separator: "\n").map(String.init).sorted()
        #expect(result.status == 0 && lines == expected, "\(launch):\n\(result.report)")
    }

    @Test("A map cancelled on rank 0, which works on no item, stops handing out items there even where items ignore cancellation",
          arguments: [Launch.local(3), .mpirun(3)])
    func asyncMapCancelledWhereItIsServed(_ launch: Launch) throws {
        let result = try Jobs.run("swiftpar-async-checks", ["cancel-serving"], launch: launch, timeout: 60)
        let expected = ["rank 0: CancellationError, early"] + (1..<launch.ranks).map { "rank \($0): nil, stopped early" }
        let lines = result.output.split(separator: "\n").map(String.init).sorted()
        #expect(result.status == 0 && lines == expected, "\(launch):\n\(result.report)")
    }

    @Test("A map cancelled on one rank throws CancellationError there and names that rank's item on the others",
          arguments: [Launch.local(3), .mpirun(3)])
    func asyncMapCancelledOnOneRank(_ launch: Launch) throws {
        let result = try Jobs.run("swiftpar-async-checks", ["cancel-one"], launch: launch, timeout: 60)
        let last = launch.ranks - 1
        let expected = (0..<last).map { "rank \($0): an item failed on rank \(last): CancellationError(), early" }
            + ["rank \(last): CancellationError, early"]
        let lines = result.output.split(separator: "\n").map(String.init).sorted()
        #expect(result.status == 0 && lines == expected, "\(launch):\n\(result.report)")
    }

    @Test("A closure that returns while a task it did not await is inside a map ends the job with the same words on every backend",
          arguments: [Launch.serial, .local(3), .mpirun(3)])
    func asyncUnawaitedTask(_ launch: Launch) throws {
        let result = try Jobs.run("swiftpar-async-checks", ["unawaited"], launch: launch, timeout: 60)
        #expect(result.status != 0 && !result.timedOut, "\(launch):\n\(result.report)")
        #expect(result.errors.contains("the closure given to SwiftPar.run returned while a swiftpar operation was still running on another thread"), "\(launch):\n\(result.report)")
        #expect(!result.errors.contains("Bad pointer") && !result.errors.contains("Segmentation"), "\(launch):\n\(result.report)")
    }

    @Test("A pool call inside an async item is refused as nested, on every rank and backend",
          arguments: [Launch.serial, .local(3), .mpirun(3)])
    func asyncNestedPool(_ launch: Launch) throws {
        let result = try Jobs.run("swiftpar-async-checks", ["nested"], launch: launch, timeout: 60)
        let lines = result.output.split(separator: "\n").map(String.init).sorted()
        let expected = (0..<launch.ranks).flatMap { rank in
            ["async", "sync"].map { "rank \(rank): \($0) inner map: Pool.map was called inside the transform of Pool.map on the same communicator; pool calls do not nest" }
        }.sorted()
        #expect(result.status == 0 && lines == expected, "\(launch):\n\(result.report)")
    }

    @Test("An async main that calls run before any await may fork its ranks")
    func asyncProgramForks() throws {
        let result = try Jobs.run("swiftpar-async-checks", ["run-first"], launch: .local(3), environment: ["SWIFTPAR_START": "fork"], timeout: 60)
        #expect(result.status == 0, "\(result.report)")
        #expect(result.output == Self.asyncOutput(ranks: 3), "\(result.report)")
    }

    @Test("Ctrl-C, SIGTERM and SIGHUP stop an async main whose forked ranks await, keeping what every rank printed and leaving no rank",
          arguments: [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM"), (SIGHUP, "SIGHUP")])
    func asyncProgramInterrupted(_ signal: Int32, _ name: String) throws {
        // Found by a helper: once the task awaited, the Swift runtime parked the main thread with
        // every signal unblocked, and the signal's default action ended rank 0 without a word,
        // its output lost and ranks 1 and 2 left unreaped.
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("swiftpar-async-signal-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let job = try BackgroundJob(command: [Jobs.product("swiftpar-async-checks"), "interruptible"],
                                    environment: ["SWIFTPAR_START": "fork", "SWIFTPAR_WORKERS": "3"], directory: folder)
        defer { job.cleanUp([]) }
        let deadline = Date().addingTimeInterval(20)
        while !job.errors.contains("waiting") && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        guard let leader = job.leader(), job.errors.contains("waiting") else {
            Issue.record("the job never started its map: \(job.errors)")
            return
        }
        let ranks = (try? String(contentsOfFile: "/proc/\(leader)/task/\(leader)/children", encoding: .utf8))?
            .split(separator: " ").compactMap { Int32($0) } ?? []
        #expect(ranks.count == 2, "rank 0 (\(leader)) should have 2 children, has \(ranks)")
        Thread.sleep(forTimeInterval: 0.2)
        kill(-leader, signal)
        let status = job.waitForExit(seconds: 5)
        #expect(status == 128 + signal, "status \(String(describing: status)):\n\(job.errors)")
        #expect(job.errors.contains("swiftpar: interrupted by \(name); stopped all 3 ranks"), "\(job.errors)")
        let output = (try? String(contentsOf: folder.appendingPathComponent("out"), encoding: .utf8)) ?? ""
        #expect((0..<3).allSatisfy { output.contains("rank \($0) started\n") }, "output: \(output)\nerrors: \(job.errors)")
        Thread.sleep(forTimeInterval: 0.3)
        #expect(([leader] + ranks).allSatisfy(isGone), "left: \(([leader] + ranks).filter { !isGone($0) })")
    }

    @Test("Without Open MPI's library (masked in a mount namespace), local and serial jobs run and MPI is refused clearly")
    func withoutOpenMPI() throws {
        guard getuid() == 0 else {
            Issue.record("masking libmpi needs a mount namespace, which needs root")
            return
        }
        let library = try Jobs.runShell("readlink -f \"$(ldconfig -p | awk '/libmpi.so.40 /{print $NF; exit}')\"", timeout: 10)
        let path = library.output.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(path.hasPrefix("/") && FileManager.default.fileExists(atPath: path), "libmpi.so.40 not found: \(library.report)")
        let swiftpar = shellQuoted(Jobs.product("swiftpar"))
        let script = """
            mount --bind /dev/null \(shellQuoted(path)) || exit 90
            ldd \(swiftpar) | grep -c libmpi
            echo "---"
            \(swiftpar) -n 2 primes 1000 && SWIFTPAR_START=spawn \(swiftpar) -n 3 primes 100 && \(swiftpar) --backend serial primes 10
            echo "---"
            \(swiftpar) --backend mpi info; echo "status $?"
            OMPI_COMM_WORLD_SIZE=2 OMPI_COMM_WORLD_RANK=1 \(swiftpar) info; echo "status $?"
            """
        let result = try Jobs.runCommand(["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script], timeout: 60)
        let parts = result.output.components(separatedBy: "---\n")
        #expect(parts.count == 3, "\(result.report)")
        guard parts.count == 3 else { return }
        #expect(parts[0] == "0\n", "the binary links libmpi:\n\(result.report)")
        #expect(parts[1] == "168\n25\n4\n", "\(result.report)")
        #expect(parts[2] == "status 2\nstatus 2\n", "\(result.report)")
        let refusal = "swiftpar: cannot start MPI: cannot load Open MPI's library (libmpi.so.40)"
        #expect(result.errors.components(separatedBy: refusal).count == 3, "\(result.report)")
        #expect(result.errors.contains("file too short; install Open MPI"), "\(result.report)")
    }

    @Test("Shared objects made before SwiftPar.run are shared by forked ranks; spawned ranks and mpirun's get a note that they are not",
          arguments: [Launch.local(2), .spawned(2), .mpirun(2)])
    func sharedBeforeRun(_ launch: Launch) throws {
        let result = try Jobs.run("swiftpar-checks", ["shared-before-run"], launch: launch, timeout: 60)
        let note = "are not shared between the ranks of this job"
        if case .local = launch {
            #expect(result.status == 0 && result.output.contains("rank 1: ok shared-before-run value=2") && !result.errors.contains(note), "\(result.report)")
        } else {
            #expect(result.status == 0 && result.output.contains("rank 1: ok shared-before-run value=1"), "\(result.report)")
            #expect(result.errors.components(separatedBy: note).count == 2, "\(launch): the note, once:\n\(result.report)")
        }
    }
}
