import Foundation
import Testing

/// Pool.map and its forms, as real jobs on both backends.
@Suite("Pool map on real jobs", .serialized)
struct PoolTests {
    static let launches: [Launch] = [.serial, .mpirun(1), .mpirun(2), .mpirun(4), .local(1), .local(2), .local(4), .local(8), .spawned(4)]

    func check(_ scenario: String, _ launch: Launch, timeout: Double = 120) throws {
        let result = try Jobs.run("swiftpar-checks", [scenario], launch: launch, timeout: timeout)
        expectEveryRankOK(result, scenario: scenario, ranks: launch.ranks)
    }

    @Test("map, mapToAll, mapReduce, chunk size 1, static blocks, irregular items", arguments: launches)
    func forms(_ launch: Launch) throws { try check("pool-map", launch) }

    @Test("mapReduce(into:): in-place totals per rank, on rank 0 or every rank, initial used once", arguments: launches)
    func reduceInto(_ launch: Launch) throws { try check("pool-reduce-into", launch) }

    @Test("Streaming results unordered and ordered from a lazy input, with progress", arguments: [Launch.serial, .mpirun(2), .mpirun(4), .local(2), .local(4)])
    func streaming(_ launch: Launch) throws { try check("pool-stream", launch, timeout: 240) }

    @Test("A throwing item fails the map on every rank naming it; per-item results keep going", arguments: launches)
    func errors(_ launch: Launch) throws { try check("pool-errors", launch) }

    @Test("Rank 0's own error stops a map and leaves every rank in step; items and results that cannot be sent fail; pool calls do not nest",
          arguments: [Launch.serial, .mpirun(1), .mpirun(3), .local(1), .local(3), .spawned(3)])
    func rankZeroFails(_ launch: Launch) throws { try check("pool-rank-zero-fails", launch) }

    static let onlineCores = max(Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), 1)

    /// The first two CPUs this process may run on (one where it may run on one only), from
    /// `Cpus_allowed_list` in /proc/self/status ("0-3,8").
    static func firstTwoCPUs() throws -> [Int] {
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("Cpus_allowed_list:") })
        var cpus: [Int] = []
        for part in line.dropFirst("Cpus_allowed_list:".count).trimmingCharacters(in: .whitespaces).split(separator: ",") {
            let bounds = part.split(separator: "-").compactMap { Int($0) }
            guard let first = bounds.first else { continue }
            cpus += Array(first...(bounds.last ?? first))
            if cpus.count >= 2 { break }
        }
        return Array(cpus.prefix(2))
    }

    @Test("More ranks than cores (local: 2 ranks more than 2 CPUs given with taskset): busy items go to as many ranks as cores; sleeping items, or the limit off, to every rank")
    func coreShareLocal() throws {
        let cpus = try Self.firstTwoCPUs()
        try #require(!cpus.isEmpty, "no CPU in this process's CPU set")
        let list = cpus.map(String.init).joined(separator: ",")
        let result = try Jobs.runCommand(["taskset", "-c", list, Jobs.product("swiftpar-checks"), "pool-core-share"],
                                         environment: ["SWIFTPAR_WORKERS": "\(cpus.count + 2)", "SWIFTPAR_CHECK_CORES": "\(cpus.count)"],
                                         timeout: 120)
        expectEveryRankOK(result, scenario: "pool-core-share", ranks: cpus.count + 2)
    }

    /// MPI counts the machine's cores, so the job has two ranks more than those: on a machine
    /// of more than 6, that many ranks wait for a core too little of the time to be limited.
    @Test("More ranks than cores (MPI: 2 more than the machine has): the same", .enabled(if: onlineCores <= 6))
    func coreShareMPI() throws {
        let result = try Jobs.run("swiftpar-checks", ["pool-core-share"], launch: .mpirun(Self.onlineCores + 2),
                                  environment: ["SWIFTPAR_CHECK_CORES": "\(Self.onlineCores)"], timeout: 120)
        expectEveryRankOK(result, scenario: "pool-core-share", ranks: Self.onlineCores + 2)
    }

    @Test("A worker killed mid-map: without retries the map fails within 1 s naming the lost items")
    func workerDies() throws {
        let result = try Jobs.run("swiftpar-checks", ["pool-worker-dies"], launch: .local(4), timeout: 60)
        #expect(result.status == 1, "\(result.report)")
        #expect(result.errors.contains("rank 0 saw rank 1 die after"), "\(result.report)")
        #expect(result.errors.contains("rank 1 was killed by signal 9 (SIGKILL) while it held items"), "\(result.report)")
        // 400 items of 1 ms over 4 ranks: well under a second of work, so a hang would show.
        #expect(result.seconds < 5, "\(result.report)")
        #expect(Jobs.waitForNoSurvivors(named: "swiftpar-checks pool-worker-dies").isEmpty)
    }

    @Test("A worker killed mid-map with retries (also while its answer is crossing): every result arrives exactly once, the job succeeds")
    func workerDiesRetry() throws {
        let result = try Jobs.run("swiftpar-checks", ["pool-worker-dies-retry"], launch: .local(4), timeout: 60)
        #expect(result.status == 0, "\(result.report)")
        #expect(result.output.contains("rank 0: ok pool-worker-dies-retry complete=400,"), "\(result.report)")
        #expect(result.output.contains(",later=100/12/4\n"), "later maps without the dead ranks:\n\(result.report)")
        #expect(result.errors.contains("note: rank 1 was killed by signal 9 (SIGKILL) and the job went on without it"), "\(result.report)")
        #expect(result.errors.contains("note: rank 2 was killed by signal 9 (SIGKILL) and the job went on without it"), "\(result.report)")
        #expect(result.errors.contains("note: rank 3 was killed by signal 9 (SIGKILL) and the job went on without it"), "\(result.report)")
        #expect(Jobs.waitForNoSurvivors(named: "swiftpar-checks pool-worker-dies-retry").isEmpty)
    }
}
