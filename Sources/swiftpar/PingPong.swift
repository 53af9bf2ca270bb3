import ArgumentParser
import SwiftPar

/// The message shapes the benchmarks send: what users' programs are made of.
enum MessageShapes {
    /// A small record: an Int, a Double and a short String.
    struct Small: Codable, Equatable {
        var id: Int
        var weight: Double
        var name: String
    }

    /// A struct holding an array of Doubles: numbers inside a user's type.
    struct Samples: Codable, Equatable {
        var values: [Double]
    }

    /// Distinct words of about 10 bytes each, `count` of them.
    static func words(_ count: Int) -> [String] {
        (0..<count).map { "word\(100_000 + $0)" }
    }

    /// A word-count dictionary of `count` entries.
    static func counts(_ count: Int) -> [String: Int] {
        Dictionary(uniqueKeysWithValues: (0..<count).map { ("word\(100_000 + $0)", $0 * 7 % 1000) })
    }
}

struct PingPong: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pingpong",
        abstract: "One-way latency and bandwidth between ranks 0 and 1, like OSU's latency and bandwidth tests.",
        discussion: """
            Plain-number arrays ([Double], sent from their storage) at 8 B, 64 KiB and 4 MiB, and Codable values of the shapes users send: a struct holding a [Double] at the same sizes, a small struct (Int, Double, String), a [String] of about 64 KiB and 4 MiB, and a [String: Int] of 10,000 entries and of about 4 MiB. Each figure is the median of several repetitions; the cases take turns, so a slow spell of the machine touches them alike. Needs at least 2 ranks; other ranks wait.

            Examples:
              mpirun -n 2 swiftpar bench pingpong
              mpirun -n 2 swiftpar bench pingpong --json
              swiftpar -n 2 bench pingpong --repetitions 3
              mpirun -n 2 swiftpar bench pingpong --case small --case numbers_8B
            """
    )

    @OptionGroup var options: GlobalOptions

    @Option(parsing: .unconditional, help: "Repetitions of each measurement; the median is reported.")
    var repetitions = 5

    @Option(name: .customLong("case"), help: "Measure only this case (repeat for several): \(PingPong.caseNames.joined(separator: ", ")); the default is every case.")
    var only: [String] = []

    func validate() throws {
        guard repetitions >= 1 else { throw ValidationError("--repetitions must be at least 1, not \(repetitions)") }
        let known = Self.caseNames
        for name in only where !known.contains(name) {
            throw ValidationError("no case named '\(name)'; the cases are \(known.joined(separator: ", "))")
        }
    }

    /// The cases' names, in the order they run.
    static let caseNames = ["numbers_8B", "numbers_64KiB", "numbers_4MiB", "codable_8B", "codable_64KiB", "codable_4MiB",
                            "small", "strings_64KiB", "strings_4MiB", "dictionary_10000", "dictionary_4MiB"]

    /// One measured case: its name in the report, its size in bytes as a user counts it, the
    /// round trips per repetition, and one round trip.
    struct Case {
        let key: String
        let bytes: Int
        let iterations: Int
        let roundTrip: (Communicator, Int) throws -> Void
    }

    /// Sends `value` to the peer and receives it back (rank 0), or the other way round.
    static func codable<T: Codable>(_ value: T) -> (Communicator, Int) throws -> Void {
        { world, peer in
            if world.rank == 0 {
                try world.send(value, to: peer)
                _ = try world.receive(T.self, from: .rank(peer))
            } else {
                let got = try world.receive(T.self, from: .rank(peer))
                try world.send(got, to: peer)
            }
        }
    }

    static func numbers(_ elements: Int) -> (Communicator, Int) throws -> Void {
        var buffer = [Double](repeating: 1.5, count: elements)
        return { world, peer in
            if world.rank == 0 {
                try world.send(buffer, to: peer)
                try world.receive(into: &buffer, from: .rank(peer))
            } else {
                try world.receive(into: &buffer, from: .rank(peer))
                try world.send(buffer, to: peer)
            }
        }
    }

    /// The cases named in `only` (every case when it is empty), in the order they run; the
    /// values of the others are not made.
    static func cases(_ only: [String]) -> [Case] {
        func wanted(_ key: String) -> Bool { only.isEmpty || only.contains(key) }
        var cases: [Case] = []
        for (label, elements, iterations) in [("8B", 1, 20_000), ("64KiB", 8192, 2_000), ("4MiB", 524_288, 200)] where wanted("numbers_\(label)") {
            cases.append(Case(key: "numbers_\(label)", bytes: elements * 8, iterations: iterations, roundTrip: numbers(elements)))
        }
        for (label, elements, iterations) in [("8B", 1, 20_000), ("64KiB", 8192, 2_000), ("4MiB", 524_288, 200)] where wanted("codable_\(label)") {
            let samples = MessageShapes.Samples(values: [Double](repeating: 1.5, count: elements))
            cases.append(Case(key: "codable_\(label)", bytes: elements * 8, iterations: iterations, roundTrip: codable(samples)))
        }
        if wanted("small") {
            cases.append(Case(key: "small", bytes: 8 + 8 + 5, iterations: 20_000,
                              roundTrip: codable(MessageShapes.Small(id: 42, weight: 1.5, name: "hello"))))
        }
        // A word is 10 bytes: 6,554 words make 64 KiB of text, 419,430 make 4 MiB.
        for (label, count, iterations) in [("64KiB", 6_554, 500), ("4MiB", 419_430, 10)] where wanted("strings_\(label)") {
            cases.append(Case(key: "strings_\(label)", bytes: count * 10, iterations: iterations,
                              roundTrip: codable(MessageShapes.words(count))))
        }
        // An entry is a 10-byte word and an Int: 10,000 entries, and about 4 MiB (233,017).
        for (label, count, iterations) in [("10000", 10_000, 200), ("4MiB", 233_017, 10)] where wanted("dictionary_\(label)") {
            cases.append(Case(key: "dictionary_\(label)", bytes: count * 18, iterations: iterations,
                              roundTrip: codable(MessageShapes.counts(count))))
        }
        assert(!only.isEmpty || cases.map(\.key) == caseNames, "caseNames lists every case in order")
        return cases
    }

    struct Result: Codable {
        var bytes: Int
        var oneWayMicroseconds: Double
        var bandwidthGBps: Double
        var spreadPercent: Double
    }

    struct Report: Codable {
        var backend: String
        var results: [String: Result]
    }

    func run() throws {
        let json = options.json
        let repetitions = self.repetitions
        options.run(Self.self) { world in
            guard world.size >= 2 else {
                let example = switch world.backend {
                case .mpi: LaunchEnvironment.detect()?.launcher == "srun" ? "srun --mpi=pmix -n 2 swiftpar bench pingpong" : "mpirun -n 2 swiftpar bench pingpong"
                case .serial: "swiftpar --backend local -n 2 bench pingpong"
                case .local: "swiftpar -n 2 bench pingpong"
                }
                throw SwiftParUsageError("bench pingpong needs at least 2 ranks, for example: \(example)")
            }
            let only = self.only
            let cases = Self.cases(only)
            var results: [(String, Result)] = []
            let bar = ProgressBar("ping-pong", enabled: world.rank == 0 && isTerminal(2))
            var measured = 0
            // The cases take turns, one repetition each per turn: the host's speed changes for
            // seconds at a time, and a slow spell then touches every case alike rather than the
            // few measured during it (the ratios between cases are what gets compared).
            var samplesOfCase = [[Double]](repeating: [], count: cases.count)
            for _ in 0..<repetitions {
                for (index, c) in cases.enumerated() {
                    bar.update(done: measured, total: cases.count * repetitions)
                    measured += 1
                    try world.barrier()
                    let seconds = try Self.measure(world, c)
                    samplesOfCase[index].append(seconds / Double(2 * c.iterations))
                }
            }
            for (c, unsorted) in zip(cases, samplesOfCase) {
                let samples = unsorted.sorted()
                let median = sampleMedian(samples)
                let spread = (samples.last! - samples.first!) / median * 100
                results.append((c.key, Result(bytes: c.bytes, oneWayMicroseconds: median * 1e6,
                                              bandwidthGBps: Double(c.bytes) / median / 1e9, spreadPercent: spread)))
            }
            try world.barrier()
            bar.finish()
            guard world.rank == 0 else { return }
            if json {
                try printChecked(try jsonText(Report(backend: world.backend.rawValue, results: Dictionary(uniqueKeysWithValues: results))))
            } else {
                try printChecked("ping-pong between ranks 0 and 1 (\(world.backend) backend), median of \(repetitions)")
                try printChecked(pad("case", 18) + pad("bytes", 10, right: true) + pad("one-way µs", 13, right: true)
                                 + pad("GB/s", 9, right: true) + pad("spread", 9, right: true))
                for (key, r) in results {
                    try printChecked(pad(key, 18) + pad(String(r.bytes), 10, right: true) + pad(format(r.oneWayMicroseconds, 3), 13, right: true)
                                     + pad(format(r.bandwidthGBps, 3), 9, right: true) + pad(format(r.spreadPercent, 1) + "%", 9, right: true))
                }
            }
        }
    }

    /// Seconds for `c.iterations` round trips of one case.
    static func measure(_ world: Communicator, _ c: Case) throws -> Double {
        guard world.rank < 2 else { return 1 }
        let peer = 1 - world.rank
        let warmup = max(c.iterations / 10, 2)
        var start = 0.0
        for i in 0..<(warmup + c.iterations) {
            if i == warmup { start = monotonicNow() }
            try c.roundTrip(world, peer)
        }
        return monotonicNow() - start
    }
}
