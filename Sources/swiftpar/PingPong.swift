import ArgumentParser
import SwiftPar

struct PingPong: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pingpong",
        abstract: "One-way latency and bandwidth between ranks 0 and 1, like OSU's latency and bandwidth tests.",
        discussion: """
            Plain-number arrays ([Double], sent from their storage) and Codable values (a struct
            holding a [Double], encoded) at 8 B, 64 KiB and 4 MiB. Each figure is the median of
            several repetitions. Needs at least 2 ranks; other ranks wait.

            Examples:
              mpirun -n 2 swiftpar bench pingpong
              mpirun -n 2 swiftpar bench pingpong --json
            """
    )

    @OptionGroup var options: GlobalOptions

    @Option(help: "Repetitions of each measurement; the median is reported.")
    var repetitions = 5

    func validate() throws {
        guard repetitions >= 1 else { throw ValidationError("--repetitions must be at least 1") }
    }

    /// The payload of the Codable path: what a user would send as a message type.
    struct Samples: Codable {
        var values: [Double]
    }

    struct Case {
        let label: String
        let elements: Int
        let iterations: Int
        var bytes: Int { elements * 8 }
    }

    static let cases = [
        Case(label: "8B", elements: 1, iterations: 20_000),
        Case(label: "64KiB", elements: 8192, iterations: 2_000),
        Case(label: "4MiB", elements: 524_288, iterations: 200),
    ]

    struct Report: Codable {
        var backend: String
        var results: [String: Result]
    }

    struct Result: Codable {
        var path: String
        var size: String
        var bytes: Int
        var oneWayMicroseconds: Double
        var bandwidthGBps: Double
        var spreadPercent: Double
    }

    func run() throws {
        let json = options.json
        let repetitions = self.repetitions
        options.run { world in
            guard world.size >= 2 else {
                throw SwiftParUsageError("bench pingpong needs at least 2 ranks, for example: mpirun -n 2 swiftpar bench pingpong")
            }
            var results: [Result] = []
            let bar = ProgressBar("ping-pong", enabled: world.rank == 0 && isTerminal(2))
            var measured = 0
            for path in ["numbers", "codable"] {
                for c in Self.cases {
                    var samples: [Double] = []
                    for _ in 0..<repetitions {
                        bar.update(done: measured, total: 2 * Self.cases.count * repetitions)
                        measured += 1
                        try world.barrier()
                        let seconds = try Self.measure(world, path: path, c)
                        samples.append(seconds / Double(2 * c.iterations))
                    }
                    samples.sort()
                    let median = samples[samples.count / 2]
                    let spread = (samples.last! - samples.first!) / median * 100
                    results.append(Result(path: path, size: c.label, bytes: c.bytes, oneWayMicroseconds: median * 1e6,
                                          bandwidthGBps: Double(c.bytes) / median / 1e9, spreadPercent: spread))
                }
            }
            try world.barrier()
            bar.finish()
            guard world.rank == 0 else { return }
            if json {
                var keyed: [String: Result] = [:]
                for r in results { keyed["\(r.path)_\(r.size)"] = r }
                try printChecked(try jsonText(Report(backend: world.backend.rawValue, results: keyed)))
            } else {
                try printChecked("ping-pong between ranks 0 and 1 (\(world.backend) backend), median of \(repetitions)")
                try printChecked(pad("path", 9) + pad("size", 7) + pad("one-way µs", 12, right: true) + pad("GB/s", 9, right: true) + pad("spread", 9, right: true))
                for r in results {
                    try printChecked(pad(r.path, 9) + pad(r.size, 7) + pad(format(r.oneWayMicroseconds, 3), 12, right: true)
                          + pad(format(r.bandwidthGBps, 3), 9, right: true) + pad(format(r.spreadPercent, 1) + "%", 9, right: true))
                }
            }
        }
    }

    /// Seconds for `iterations` round trips of one case.
    static func measure(_ world: Communicator, path: String, _ c: Case) throws -> Double {
        guard world.rank < 2 else { return 1 }
        let peer = 1 - world.rank
        var buffer = [Double](repeating: 1.5, count: c.elements)
        let samples = Samples(values: buffer)
        let warmup = max(c.iterations / 10, 2)
        var start = 0.0
        for i in 0..<(warmup + c.iterations) {
            if i == warmup { start = monotonicSeconds() }
            if path == "numbers" {
                if world.rank == 0 {
                    try world.send(buffer, to: peer)
                    try world.receive(into: &buffer, from: .rank(peer))
                } else {
                    try world.receive(into: &buffer, from: .rank(peer))
                    try world.send(buffer, to: peer)
                }
            } else {
                if world.rank == 0 {
                    try world.send(samples, to: peer)
                    _ = try world.receive(Samples.self, from: .rank(peer))
                } else {
                    let got = try world.receive(Samples.self, from: .rank(peer))
                    try world.send(got, to: peer)
                }
            }
        }
        return monotonicSeconds() - start
    }
}
