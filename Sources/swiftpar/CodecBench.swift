import ArgumentParser
import Foundation
import SwiftPar

struct CodecBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "codec",
        abstract: "Encode and decode speed of swiftpar's binary format, against Foundation's JSON, for the shapes users send.",
        discussion: """
            Runs on rank 0 alone, on one core (other ranks only wait; -n 1 starts none): a small struct, a struct holding 512 Ki Doubles, a [String] of about 64 KiB, a [String: Int] of 10,000 entries and 1,000 small structs. Each figure is the median of several repetitions; Benchmarks/run puts Python's pickle beside it. The bytes are the whole encoded message, its header and field names included (bench pingpong counts a value's bytes as a user would: 21 for the small struct).

            Examples:
              swiftpar bench codec
              swiftpar bench codec --json
            """
    )

    @OptionGroup var options: GlobalOptions

    @Option(parsing: .unconditional, help: "Repetitions of each measurement; the median is reported.")
    var repetitions = 5

    @Option(name: .customLong("case"), help: "Measure only this shape (repeat for several): \(CodecBench.builders.map(\.name).joined(separator: ", ")); the default is every shape.")
    var only: [String] = []

    func validate() throws {
        guard repetitions >= 1 else { throw ValidationError("--repetitions must be at least 1, not \(repetitions)") }
        let known = Self.builders.map(\.name)
        for name in only where !known.contains(name) {
            throw ValidationError("no shape named '\(name)'; the shapes are \(known.joined(separator: ", "))")
        }
    }

    struct Shape {
        let name: String
        let iterations: Int
        let binary: () throws -> (encode: Double, decode: Double, bytes: Int)
        let json: () throws -> (encode: Double, decode: Double, bytes: Int)
    }

    /// Seconds per encode and per decode of `value`, with `encode` and `decode`.
    static func time<T: Codable>(_ value: T, iterations: Int, encode: (T) throws -> [UInt8], decode: ([UInt8]) throws -> T)
        throws -> (encode: Double, decode: Double, bytes: Int) {
        let bytes = try encode(value)
        var start = monotonicNow()
        for _ in 0..<iterations { _ = try encode(value) }
        let encoding = (monotonicNow() - start) / Double(iterations)
        start = monotonicNow()
        for _ in 0..<iterations { _ = try decode(bytes) }
        return (encoding, (monotonicNow() - start) / Double(iterations), bytes.count)
    }

    static func shape<T: Codable>(_ name: String, _ value: T, iterations: Int) -> Shape {
        let binaryEncoder = BinaryEncoder(), binaryDecoder = BinaryDecoder()
        let jsonEncoder = JSONEncoder(), jsonDecoder = JSONDecoder()
        return Shape(
            name: name, iterations: iterations,
            binary: { try time(value, iterations: iterations, encode: { try binaryEncoder.encode($0) },
                               decode: { try binaryDecoder.decode(T.self, from: $0) }) },
            json: { try time(value, iterations: max(iterations / 10, 1), encode: { [UInt8](try jsonEncoder.encode($0)) },
                             decode: { try jsonDecoder.decode(T.self, from: Data($0)) }) })
    }

    /// Every shape by name, made only when it is measured.
    static let builders: [(name: String, make: @Sendable () -> Shape)] = [
        ("small", { shape("small", MessageShapes.Small(id: 42, weight: 1.5, name: "hello"), iterations: 200_000) }),
        ("doubles_4MiB", { shape("doubles_4MiB", MessageShapes.Samples(values: [Double](repeating: 1.5, count: 524_288)), iterations: 100) }),
        ("strings_64KiB", { shape("strings_64KiB", MessageShapes.words(6_554), iterations: 2_000) }),
        ("dictionary_10000", { shape("dictionary_10000", MessageShapes.counts(10_000), iterations: 200) }),
        ("records_1000", { shape("records_1000", (0..<1000).map { MessageShapes.Small(id: $0, weight: Double($0), name: "n\($0)") }, iterations: 500) }),
    ]

    struct Row: Codable {
        var bytes: Int
        var encodeMicroseconds: Double
        var decodeMicroseconds: Double
        var jsonBytes: Int
        var jsonEncodeMicroseconds: Double
        var jsonDecodeMicroseconds: Double
    }

    func run() throws {
        let (json, repetitions, only) = (options.json, self.repetitions, self.only)
        options.run(Self.self) { world in
            guard world.rank == 0 else { return }
            var rows: [(String, Row)] = []
            for builder in Self.builders where only.isEmpty || only.contains(builder.name) {
                let shape = builder.make()
                var binary: [(encode: Double, decode: Double, bytes: Int)] = []
                var text: [(encode: Double, decode: Double, bytes: Int)] = []
                for _ in 0..<repetitions {
                    binary.append(try shape.binary())
                    text.append(try shape.json())
                }
                func median(_ values: [Double]) -> Double { sampleMedian(values) * 1e6 }
                rows.append((shape.name, Row(bytes: binary[0].bytes, encodeMicroseconds: median(binary.map(\.encode)),
                                             decodeMicroseconds: median(binary.map(\.decode)), jsonBytes: text[0].bytes,
                                             jsonEncodeMicroseconds: median(text.map(\.encode)), jsonDecodeMicroseconds: median(text.map(\.decode)))))
            }
            if json {
                try printChecked(try jsonText(Dictionary(uniqueKeysWithValues: rows)))
                return
            }
            try printChecked(pad("shape", 18) + pad("bytes", 9, right: true) + pad("encode µs", 12, right: true) + pad("decode µs", 12, right: true)
                             + pad("JSON bytes", 12, right: true) + pad("JSON enc µs", 13, right: true) + pad("JSON dec µs", 13, right: true))
            for (name, r) in rows {
                try printChecked(pad(name, 18) + pad(String(r.bytes), 9, right: true) + pad(format(r.encodeMicroseconds, 3), 12, right: true)
                                 + pad(format(r.decodeMicroseconds, 3), 12, right: true) + pad(String(r.jsonBytes), 12, right: true)
                                 + pad(format(r.jsonEncodeMicroseconds, 1), 13, right: true) + pad(format(r.jsonDecodeMicroseconds, 1), 13, right: true))
            }
        }
    }
}
