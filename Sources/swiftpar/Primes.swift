import ArgumentParser
import SwiftPar
import SwiftParWorkloads

struct Primes: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Count (or list) the primes up to N.",
        usage: "swiftpar primes [--from <A>] [--list] [--memory <size>] [--method <method>] [--workers <n>] [--backend <backend>] [--json] [--output <file>] [--stall-timeout <seconds>] <N>",
        discussion: """
            The range is split into blocks that every rank sieves (segmented sieve of Eratosthenes), or tests number by number (--method trial, the task of the article "Python multiprocessing: True Parallelism"). Rank 0 prints the result; with --list it prints the primes in order as they are found.

            Each rank's sieve stays within --memory (100M unless told otherwise). Near 10^18 the sieving primes go up to 10^9 and their places take more than that, so each block makes and places them again. With --memory 1G (about 8 bytes per sieving prime: 450 MB near 10^18) every rank places them once, and the count runs faster.

            Examples:
              swiftpar primes 1000000000
              swiftpar -n 8 primes 10000000000 --json
              mpirun -n 4 swiftpar primes --from 1000000000000 1000000001000 --list
              swiftpar -n 2 primes --from 999999990000000000 1e18 --memory 1G
              swiftpar primes 100000 --method trial
            """
    )

    @OptionGroup var options: GlobalOptions

    @Argument(parsing: .allUnrecognized, help: ArgumentHelp("Upper end of the range (inclusive), up to 10^18.", valueName: "N"))
    var arguments: [String] = []

    @Option(name: .customLong("from"), parsing: .unconditional, help: ArgumentHelp("Lower end of the range (inclusive).", valueName: "A"))
    var lowerBound: String = "0"

    @Option(help: "sieve or trial (trial counts only; --list needs sieve).")
    var method: String = "sieve"

    @Flag(help: "Print the primes themselves, one per line, in order (with --json: a JSON array).")
    var list = false

    @Option(parsing: .unconditional,
            help: ArgumentHelp("Memory each rank's sieve may use: bytes (or B), or with K, M, G, T or KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB, in any case; at least 100M. --list sieves in small blocks and does not use it (it is still checked).",
                               valueName: "size"))
    var memory: String = "100M"

    /// N, from the one positional argument (which may look like an option: `primes -5`).
    var limit: String { arguments.first ?? "" }

    mutating func validate() throws {
        // After `--` everything is positional, as for any command.
        let end = arguments.firstIndex(of: "--") ?? arguments.endIndex
        if let unknown = arguments[..<end].first(where: { $0.hasPrefix("-") && Self.parse($0.dropFirst()) == nil && $0 != "-" }) {
            throw ValidationError("Unknown option '\(unknown)'")
        }
        if end < arguments.endIndex { arguments.remove(at: end) }
        guard arguments.count <= 1 else {
            throw ValidationError("give one upper end N, not \(arguments.count) (\(arguments.joined(separator: " ")))")
        }
        guard !arguments.isEmpty else { throw ValidationError("give the upper end N of the range, for example: swiftpar primes 1e9") }
        guard let high = Self.parse(limit) else {
            throw ValidationError("N must be a whole number from 0 to 10^18, not '\(limit)'")
        }
        guard let low = Self.parse(lowerBound) else {
            throw ValidationError("--from must be a whole number from 0 to 10^18, not '\(lowerBound)'")
        }
        guard low <= high else { throw ValidationError("--from \(low) is larger than N = \(high)") }
        guard PrimeCounting.Method(rawValue: method) != nil else {
            throw ValidationError("--method must be sieve or trial, not '\(method)'")
        }
        if list && method == "trial" { throw ValidationError("--list works with --method sieve only") }
        guard let bytes = Self.parseSize(memory) else {
            if Self.parseSize(memory, limit: .infinity) != nil {
                throw ValidationError("--memory \(memory) is too large: give the memory each rank may use, such as 1G or 64G")
            }
            throw ValidationError("--memory must be a size such as 100M, 1G or 512MiB, not '\(memory)'")
        }
        guard bytes >= PrimeSieve.defaultMemory else {
            throw ValidationError("--memory must be at least 100M (\(PrimeSieve.defaultMemory) bytes), not '\(memory)'")
        }
    }

    /// A size in bytes: a whole or decimal number, with an optional unit after it, in any case:
    /// K, M, G, T or KB, MB, GB, TB (powers of 1000), KiB, MiB, GiB, TiB (powers of 1024), or B.
    static func parseSize(_ text: String, limit: Double = 1e18) -> Int? {
        let units: [(String, Double)] = [("kib", 1024), ("mib", 1024 * 1024), ("gib", 1024 * 1024 * 1024), ("tib", 1024 * 1024 * 1024 * 1024),
                                         ("kb", 1e3), ("mb", 1e6), ("gb", 1e9), ("tb", 1e12),
                                         ("k", 1e3), ("m", 1e6), ("g", 1e9), ("t", 1e12), ("b", 1), ("", 1)]
        // ASCII letters only: no other character may stand for a unit (the Kelvin sign is not K).
        let lowered = String(decoding: text.utf8.map { $0 >= 65 && $0 <= 90 ? $0 + 32 : $0 }, as: UTF8.self)
        for (suffix, factor) in units where lowered.hasSuffix(suffix) {
            let number = lowered.dropLast(suffix.count)
            guard !number.isEmpty, number.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
                  let value = Double(number), value.isFinite else { return nil }
            let bytes = value * factor
            return bytes < limit ? Int(min(bytes, 1e18)) : nil
        }
        return nil
    }

    /// A whole number written plainly or as a power of ten (1e9, 10^9).
    static func parse<S: StringProtocol>(_ text: S) -> UInt64? {
        let text = String(text)
        let maximum: UInt64 = 1_000_000_000_000_000_000
        if let value = UInt64(text) { return value <= maximum ? value : nil }
        for separator in ["e", "E", "^"] {
            let parts = text.split(separator: Character(separator), omittingEmptySubsequences: false)
            guard parts.count == 2, let mantissa = UInt64(parts[1] == "" ? "x" : String(parts[0])),
                  let exponent = Int(parts[1]), exponent >= 0, exponent <= 18 else { continue }
            if separator == "^" && mantissa != 10 { return nil }
            var value = separator == "^" ? 1 : mantissa
            for _ in 0..<exponent {
                let (product, overflow) = value.multipliedReportingOverflow(by: 10)
                if overflow { return nil }
                value = product
            }
            return value <= maximum ? value : nil
        }
        return nil
    }

    struct Report: Codable {
        var from: UInt64
        var to: UInt64
        var count: Int
        var method: String
        var ranks: Int
        var backend: String
        var seconds: Double
    }

    func run() throws {
        let range = Self.parse(lowerBound)!...Self.parse(limit)!
        let method = PrimeCounting.Method(rawValue: self.method)!
        let (json, list) = (options.json, self.list)
        let memory = Self.parseSize(self.memory)!
        options.run(Self.self) { world in
            let pool = Pool(world)
            if list {
                guard world.rank == 0 else { return try PrimeCounting.list(in: range, pool: pool) { _, _ in } }
                var output = CommandOutput()
                var first = true
                var blocks = 0
                if json { output.append("[") }
                try PrimeCounting.list(in: range, pool: pool) { base, offsets in
                    for offset in offsets {
                        if json { output.append(first ? "\n" : ",\n") }
                        output.append(decimal: base + UInt64(offset))
                        if !json { output.append(byte: 10) }
                        first = false
                        try output.flushIfLarge()
                    }
                    // The first primes appear at once; then output goes out in large pieces.
                    blocks += 1
                    if blocks == 1 { try output.flush() }
                }
                if json { output.append(first ? "]\n" : "\n]\n") }
                try output.flush()
                return
            }
            let bar = ProgressBar("sieving", enabled: world.rank == 0 && isTerminal(2))
            let start = monotonicNow()
            let count = try PrimeCounting.count(in: range, method: method, pool: pool, memory: memory, progress: bar.update)
            let seconds = monotonicNow() - start
            bar.finish()
            guard world.rank == 0 else { return }
            if json {
                try printChecked(try jsonText(Report(from: range.lowerBound, to: range.upperBound, count: count, method: method.rawValue,
                                                     ranks: world.size, backend: world.backend.rawValue, seconds: seconds)))
            } else {
                try printChecked(String(count))
            }
        }
    }
}

