#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import SwiftPar

struct PoolBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pool",
        abstract: "Throughput of Pool.map: trivial tasks chunked and one by one, and speedup on CPU-heavy tasks.",
        discussion: """
            Measures, in tasks per second: 1,000,000 trivial tasks (square an Int) with automatic chunks, and 20,000 with chunk size 1 (one round trip to a worker per task, rank 0 only serving, as in Python's Pool); and the speedup over one rank of a CPU-heavy map (trial-division prime counts, the workload of the article our users start from). Works on the local backend and under mpirun.

            Examples:
              swiftpar -n 2 bench pool
              mpirun -n 2 swiftpar bench pool --json
            """
    )

    @OptionGroup var options: GlobalOptions

    @Option(parsing: .unconditional, help: "Trivial tasks with automatic chunks.")
    var tasks = 1_000_000

    @Option(parsing: .unconditional, help: "Trivial tasks with chunk size 1.")
    var roundTrips = 20_000

    @Option(parsing: .unconditional, help: "CPU-heavy tasks (each counts primes below --limit by trial division).")
    var heavyTasks = 16

    @Option(parsing: .unconditional, help: "Upper bound of each CPU-heavy task.")
    var limit = 1_000_000

    struct Report: Codable {
        var backend: String
        var ranks: Int
        var trivialAutomaticTasksPerSecond: Double
        var trivialChunkOneTasksPerSecond: Double
        var heavySerialSeconds: Double
        var heavyParallelSeconds: Double
        var heavySpeedup: Double
        var heavyTasks: Int
        var heavyLimit: Int
    }

    func validate() throws {
        // Rank 0 keeps every result of the trivial maps (8 bytes each): 800 MB at most.
        let bounds: [(String, Int, ClosedRange<Int>, String)] = [
            ("--tasks", tasks, 1...100_000_000, "1 to 10^8"), ("--round-trips", roundTrips, 1...100_000_000, "1 to 10^8"),
            ("--heavy-tasks", heavyTasks, 1...1_000_000, "1 to 10^6"), ("--limit", limit, 2...1_000_000_000_000, "2 to 10^12"),
        ]
        for (name, value, range, words) in bounds where !range.contains(value) {
            throw ValidationError("\(name) must be a whole number from \(words), not \(value)")
        }
    }

    func run() throws {
        let json = options.json
        let (tasks, roundTrips, heavyTasks, limit) = (self.tasks, self.roundTrips, self.heavyTasks, self.limit)
        options.run(Self.self) { world in
            let pool = Pool(world)
            try world.barrier()
            let bar = ProgressBar("squaring \(tasks) integers", enabled: world.rank == 0 && isatty(2) != 0)
            var start = monotonicNow()
            let squares = try pool.map(0..<tasks, options: MapOptions(progress: bar.update)) { $0 &* $0 }
            let automatic = Double(tasks) / (monotonicNow() - start)
            bar.finish()
            if let squares, squares.count != tasks || squares.last != (tasks - 1) &* (tasks - 1) {
                throw SwiftParUsageError("bench pool: wrong results from the chunked map")
            }

            try world.barrier()
            start = monotonicNow()
            // Rank 0 only serves here, so every task is a round trip to a worker, as in Python's Pool.
            var oneByOne = MapOptions(chunkSize: .fixed(1))
            oneByOne.rankZeroWorks = false
            let one = try pool.map(0..<roundTrips, options: oneByOne) { $0 &* $0 }
            let chunkOne = Double(roundTrips) / (monotonicNow() - start)
            if let one, one.count != roundTrips { throw SwiftParUsageError("bench pool: wrong results from the chunk-size-1 map") }

            // Serial reference: rank 0 alone, the others waiting at the barrier.
            try world.barrier()
            var serialCounts: [Int] = []
            var serial = 0.0
            if world.rank == 0 {
                start = monotonicNow()
                serialCounts = (0..<heavyTasks).map { trialDivisionPrimeCount(below: limit + $0) }
                serial = monotonicNow() - start
            }
            try world.barrier()
            let heavyBar = ProgressBar("prime counts", enabled: world.rank == 0 && isatty(2) != 0)
            start = monotonicNow()
            let counts = try pool.map(0..<heavyTasks, options: MapOptions(chunkSize: .fixed(1), progress: heavyBar.update)) {
                trialDivisionPrimeCount(below: limit + $0)
            }
            let parallel = monotonicNow() - start
            heavyBar.finish()
            guard world.rank == 0 else { return }
            if counts != serialCounts { throw SwiftParUsageError("bench pool: the parallel prime counts differ from the serial ones") }

            let report = Report(backend: world.backend.rawValue, ranks: world.size,
                                trivialAutomaticTasksPerSecond: automatic, trivialChunkOneTasksPerSecond: chunkOne,
                                heavySerialSeconds: serial, heavyParallelSeconds: parallel, heavySpeedup: serial / parallel,
                                heavyTasks: heavyTasks, heavyLimit: limit)
            if json {
                try printChecked(try jsonText(report))
            } else {
                try printChecked("Pool.map on \(world.size) ranks (\(world.backend) backend)")
                try printChecked("  \(tasks) trivial tasks, automatic chunks: \(format(automatic / 1e6, 2)) M tasks/s")
                try printChecked("  \(roundTrips) trivial tasks, chunk size 1:   \(format(chunkOne / 1e3, 1)) k tasks/s")
                try printChecked("  \(heavyTasks) prime counts below \(limit) by trial division: serial \(format(serial, 3)) s, "
                      + "parallel \(format(parallel, 3)) s, speedup \(format(serial / parallel, 2))×")
            }
        }
    }
}

/// The article's CPU-bound task: how many numbers in 2..<n have no divisor up to their square root.
func trialDivisionPrimeCount(below n: Int) -> Int {
    var count = 0
    var i = 2
    while i < n {
        var prime = true
        var j = 2
        while j * j <= i {
            if i % j == 0 {
                prime = false
                break
            }
            j += 1
        }
        if prime { count += 1 }
        i += 1
    }
    return count
}
