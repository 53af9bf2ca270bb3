import ArgumentParser
import SwiftPar

struct CollectivesBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "collectives",
        abstract: "Allreduce (sum) and broadcast of 1,000,000 doubles through the Swift API.",
        discussion: """
            Each figure is the median of --repetitions timed calls. Compare with Benchmarks/collectives.c under the same mpirun.

            Examples:
              mpirun -n 4 swiftpar bench collectives
              swiftpar -n 2 bench collectives --json
            """
    )

    @OptionGroup var options: GlobalOptions

    @Option(parsing: .unconditional, help: "Timed calls of each collective; the median is reported.")
    var repetitions = 20

    @Option(parsing: .unconditional, help: "Doubles per call.")
    var count = 1_000_000

    func validate() throws {
        guard repetitions >= 1 else { throw ValidationError("--repetitions must be at least 1, not \(repetitions)") }
        // Every rank holds the doubles twice (sent and received): 2 GiB of them at most.
        guard (1...(1 << 28)).contains(count) else {
            throw ValidationError("--count must be a whole number from 1 to 268435456 (2 GiB of doubles), not \(count)")
        }
    }

    struct Report: Codable {
        var backend: String
        var ranks: Int
        var count: Int
        var allreduceSeconds: Double
        var broadcastSeconds: Double
    }

    func run() throws {
        let (repetitions, count, json) = (self.repetitions, self.count, options.json)
        options.run(Self.self) { world in
            let values = (0..<count).map { Double($0) * 0.5 + Double(world.rank) }
            func median(_ body: () throws -> Void) throws -> Double {
                var times: [Double] = []
                for round in 0..<(repetitions + 2) {
                    try world.barrier()
                    let start = monotonicNow()
                    try body()
                    if round >= 2 { times.append(monotonicNow() - start) }
                }
                return sampleMedian(times)
            }
            var check: [Double] = []
            let allreduce = try median { check = try world.allreduce(values, .sum) }
            // Each rank gives i·0.5 + its rank at index i: the sum at the last index.
            let n = Double(world.size), last = count - 1
            guard check.count == count, check[last] == n * 0.5 * Double(last) + n * (n - 1) / 2 else {
                throw SwiftParUsageError("bench collectives: wrong allreduce result")
            }
            var received: [Double] = []
            let broadcast = try median { received = try world.broadcast(world.rank == 0 ? values : nil) }
            guard received.count == count, received[last] == 0.5 * Double(last) else { throw SwiftParUsageError("bench collectives: wrong broadcast result") }
            guard world.rank == 0 else { return }
            let report = Report(backend: world.backend.rawValue, ranks: world.size, count: count,
                                allreduceSeconds: allreduce, broadcastSeconds: broadcast)
            if json { try printChecked(try jsonText(report)) } else {
                try printChecked("\(count) doubles on \(world.size) ranks (\(world.backend)): allreduce \(format(allreduce * 1e3, 3)) ms, broadcast \(format(broadcast * 1e3, 3)) ms")
            }
        }
    }
}
