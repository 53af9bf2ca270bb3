import ArgumentParser
import SwiftPar
import SwiftParWorkloads
#if canImport(Glibc)
import Glibc
#endif

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure swiftpar on this machine; with no subcommand, the article's experiment.",
        discussion: """
            `swiftpar bench` runs the CPU-bound experiment of the article "Python multiprocessing: True Parallelism" (the article that compares Python's sequential code, threads and processes) honestly for Swift: the same trial-division prime counts serially, with threads in one process, and with processes (the local backend, or MPI ranks under mpirun). In Swift threads run in parallel too, so the table shows what processes cost and what they buy.

            Examples:
              swiftpar -n 2 bench
              mpirun -n 2 swiftpar bench --json
              swiftpar -n 2 bench primes 10000000000
              swiftpar -n 2 bench hash /data
            """,
        subcommands: [Experiment.self, PingPong.self, CodecBench.self, WordCountBench.self, CollectivesBench.self, PoolBench.self, PrimesBench.self, HashBench.self],
        defaultSubcommand: Experiment.self
    )
}

/// The article's experiment: serial, threads, processes.
struct Experiment: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "experiment",
        abstract: "The article's experiment: the same prime counts serially, with threads, and with processes.",
        discussion: """
            Examples:
              swiftpar -n 2 bench experiment --tasks 4 --limit 50000
              mpirun -n 2 swiftpar bench experiment --json
            """
    )

    @OptionGroup var options: GlobalOptions

    @Option(parsing: .unconditional, help: "Number of tasks (the article uses 4).")
    var tasks = 8

    @Option(parsing: .unconditional, help: "Each task counts the primes below this bound by trial division (the article uses 50000).")
    var limit = 1_000_000

    func validate() throws {
        // One thread per task in the threads row; a bound past 10^12 would take days.
        guard (1...1000).contains(tasks) else { throw ValidationError("--tasks must be a whole number from 1 to 1000, not \(tasks)") }
        guard (2...1_000_000_000_000).contains(limit) else {
            throw ValidationError("--limit must be a whole number from 2 to 10^12, not \(limit)")
        }
    }

    struct Row: Codable {
        var approach: String
        var seconds: Double
        var speedup: Double
    }

    func run() throws {
        let (tasks, limit, json) = (self.tasks, self.limit, options.json)
        options.run(Self.self) { world in
            let pool = Pool(world)
            var rows: [Row] = []
            let bar = ProgressBar("experiment", enabled: world.rank == 0 && isTerminal(2))
            bar.update(done: 0, total: 3)
            var serial = 0.0
            var expected: [Int] = []
            try world.barrier()
            if world.rank == 0 {
                var start = monotonicNow()
                expected = (0..<tasks).map { trialDivisionPrimeCount(below: limit + $0) }
                serial = monotonicNow() - start
                rows.append(Row(approach: "serial (one process, one thread)", seconds: serial, speedup: 1))
                bar.update(done: 1, total: 3)
                start = monotonicNow()
                let threaded = try runOnThreads(tasks) { trialDivisionPrimeCount(below: limit + $0) }
                let seconds = monotonicNow() - start
                guard threaded == expected else { throw SwiftParUsageError("bench: threads counted differently") }
                rows.append(Row(approach: "\(tasks) threads in one process", seconds: seconds, speedup: serial / seconds))
            }
            try world.barrier()
            bar.update(done: 2, total: 3)
            let start = monotonicNow()
            let counts = try pool.map(0..<tasks, options: MapOptions(chunkSize: .fixed(1))) { trialDivisionPrimeCount(below: limit + $0) }
            let seconds = monotonicNow() - start
            bar.finish()
            guard world.rank == 0 else { return }
            guard counts == expected else { throw SwiftParUsageError("bench: processes counted differently") }
            let processes = world.backend == .mpi ? "\(world.size) MPI ranks (Pool.map)" : "\(world.size) processes, \(world.backend) backend (Pool.map)"
            rows.append(Row(approach: processes, seconds: seconds, speedup: serial / seconds))
            if json {
                try printChecked(try jsonText(rows))
            } else {
                try printChecked("\(tasks) tasks, each counting the primes below \(limit) by trial division (about \(expected.first ?? 0) each), on \(coreCount()) cores")
                try printChecked(pad("approach", 44) + pad("seconds", 10, right: true) + pad("speedup", 10, right: true))
                for row in rows {
                    try printChecked(pad(row.approach, 44) + pad(format(row.seconds, 3), 10, right: true) + pad(format(row.speedup, 2) + "×", 10, right: true))
                }
                if world.backend == .mpi {
                    try printChecked("(mpirun binds each rank to a core by default, so rank 0's threads share one core; --bind-to none frees them)")
                }
            }
        }
    }
}

func coreCount() -> Int { SwiftPar.onlineCores }

/// Runs `count` tasks on as many threads, returning their results in order.
func runOnThreads(_ count: Int, _ task: @escaping @Sendable (Int) -> Int) throws -> [Int] {
    /// One thread's result: written by that thread before it ends, read after `pthread_join`.
    final class Slot: @unchecked Sendable {
        var result = 0
    }
    let slots = (0..<count).map { _ in Slot() }
    let threads = try slots.enumerated().map { index, slot in try startJoinableThread { slot.result = task(index) } }
    for thread in threads { pthread_join(thread, nil) }
    return slots.map(\.result)
}

struct PrimesBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "primes",
        abstract: "Time the sieve on π(N) (Benchmarks/primes.sh compares with primesieve).",
        discussion: """
            Examples:
              swiftpar -n 2 bench primes 1e10
              mpirun -n 4 swiftpar bench primes 1e9 --json
            """
    )

    @OptionGroup var options: GlobalOptions

    @Argument(help: "N (default 10^10).")
    var limit: String = "10000000000"

    @Option(parsing: .unconditional, help: "Repetitions; the median is reported.")
    var repetitions = 3

    func validate() throws {
        guard Primes.parse(limit) != nil else { throw ValidationError("N must be a whole number up to 10^18, not '\(limit)'") }
        guard repetitions >= 1 else { throw ValidationError("--repetitions must be at least 1, not \(repetitions)") }
    }

    struct Report: Codable {
        var n: UInt64
        var count: Int
        var medianSeconds: Double
        var ranks: Int
        var backend: String
    }

    func run() throws {
        let n = Primes.parse(limit)!
        let (repetitions, json) = (self.repetitions, options.json)
        options.run(Self.self) { world in
            let pool = Pool(world)
            var times: [Double] = []
            var count = 0
            for _ in 0..<repetitions {
                try world.barrier()
                let start = monotonicNow()
                count = try PrimeCounting.count(in: 0...n, method: .sieve, pool: pool)
                times.append(monotonicNow() - start)
            }
            guard world.rank == 0 else { return }
            let median = sampleMedian(times)
            let report = Report(n: n, count: count, medianSeconds: median, ranks: world.size, backend: world.backend.rawValue)
            if json { try printChecked(try jsonText(report)) } else {
                try printChecked("π(\(n)) = \(count) in \(format(median, 3)) s (median of \(repetitions)) on \(world.size) ranks, \(world.backend) backend")
            }
        }
    }
}

struct HashBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hash",
        abstract: "Time hashing PATH… (Benchmarks/run compares with sha256sum through xargs -P).",
        discussion: """
            Examples:
              swiftpar -n 2 bench hash /data
              mpirun -n 4 swiftpar bench hash /shared/dataset --json
            """
    )

    @OptionGroup var options: GlobalOptions

    @Argument(help: "Files and directories to hash.")
    var paths: [String]

    func run() throws {
        let (paths, json) = (self.paths.map { PathBytes(RawArguments.bytes(of: $0)) }, options.json)
        options.run(Self.self) { world in
            let pool = Pool(world)
            var files: [FileHashing.File] = []
            if world.rank == 0 { files = FileHashing.walk(paths, followSymlinks: false).files }
            try world.barrier()
            // Timed as `swiftpar hash` works: the ranks walk subtrees and hash, rank 0 gathers lines.
            let start = monotonicNow()
            var failed = 0
            try FileHashing.hashTrees(paths, followSymlinks: false, keepEntries: false, pool: pool) { unit in
                // Said as `swiftpar hash` says them; the job then ends with 1, as it does.
                for problem in unit.problems { writeStandardError("swiftpar: \(problem.path): \(problem.reason)\n") }
                failed += unit.problems.count
            }
            let seconds = monotonicNow() - start
            guard world.rank == 0 else { return }
            let bytes = files.reduce(0) { $0 + Int($1.size) }
            struct Report: Codable { var files: Int; var bytes: Int; var seconds: Double; var gigabytesPerSecond: Double; var failed: Int }
            let report = Report(files: files.count, bytes: bytes, seconds: seconds, gigabytesPerSecond: Double(bytes) / seconds / 1e9, failed: failed)
            if json { try printChecked(try jsonText(report)) } else {
                try printChecked("\(files.count) files, \(bytes) bytes in \(format(seconds, 3)) s: \(format(report.gigabytesPerSecond, 2)) GB/s on \(world.size) ranks")
            }
            if failed > 0 { world.exitStatus = 1 }
        }
    }
}
