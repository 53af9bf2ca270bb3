import SwiftPar

/// Prime counting and listing spread over the ranks of a communicator.
public enum PrimeCounting {
    /// How the primes are found.
    public enum Method: String, CaseIterable, Sendable {
        /// Segmented sieve of Eratosthenes (fast).
        case sieve
        /// Trial division of every number by every integer up to its square root, as the
        /// article's Python task does (slow; for comparing with it).
        case trial
    }

    /// Odd numbers per block handed to a rank: a few segments, so blocks balance well.
    public static let blockSpan: UInt64 = 1 << 24

    /// Splits `range` into blocks for the pool.
    public static func blocks(of range: ClosedRange<UInt64>, span: UInt64 = blockSpan * 2) -> [ClosedRange<UInt64>] {
        var result: [ClosedRange<UInt64>] = []
        var low = range.lowerBound
        while true {
            let (sum, overflow) = low.addingReportingOverflow(span - 1)
            let high = overflow ? range.upperBound : min(sum, range.upperBound)
            result.append(low...high)
            if high == range.upperBound { break }
            low = high + 1
        }
        return result
    }

    /// The number of primes in `range`, counted by all ranks of `pool`; every rank gets it.
    public static func count(in range: ClosedRange<UInt64>, method: Method, pool: Pool,
                             progress: ((Int, Int?) -> Void)? = nil) throws -> Int {
        let root = PrimeSieve.integerSquareRoot(range.upperBound)
        var sievingPrimes: [UInt64]?
        let work = method == .sieve ? blocks(of: range) : blocks(of: range, span: 1 << 16)
        let total = try pool.mapReduce(work.map { [$0.lowerBound, $0.upperBound] }, options: MapOptions(progress: progress), { bounds -> Int in
            let block = bounds[0]...bounds[1]
            switch method {
            case .sieve:
                if sievingPrimes == nil { sievingPrimes = PrimeSieve.smallPrimes(upTo: root) }
                return PrimeSieve.count(in: block, sievingPrimes: sievingPrimes)
            case .trial:
                return TrialDivision.count(in: block)
            }
        }, combine: +)
        return total ?? 0
    }

    /// Calls `body` on rank 0 with the primes of `range` in order, block by block, as the
    /// ranks find them (never holding more than a few blocks).
    public static func list(in range: ClosedRange<UInt64>, pool: Pool, _ body: ([UInt64]) throws -> Void) throws {
        let root = PrimeSieve.integerSquareRoot(range.upperBound)
        var sievingPrimes: [UInt64]?
        let work = blocks(of: range, span: 1 << 21).map { [$0.lowerBound, $0.upperBound] }
        try pool.forEachResult(work, ordered: true, { bounds -> [UInt64] in
            if sievingPrimes == nil { sievingPrimes = PrimeSieve.smallPrimes(upTo: root) }
            return PrimeSieve.primes(in: bounds[0]...bounds[1], sievingPrimes: sievingPrimes)
        }) { _, primes in try body(primes) }
    }
}

/// The article's CPU-bound test: a number is prime when no integer from 2 to its square root
/// divides it.
public enum TrialDivision {
    /// Whether `n` is prime, by trial division.
    public static func isPrime(_ n: UInt64) -> Bool {
        guard n >= 2 else { return false }
        var j: UInt64 = 2
        while j * j <= n {
            if n % j == 0 { return false }
            j += 1
        }
        return true
    }

    /// How many primes lie in `range`, testing each number.
    public static func count(in range: ClosedRange<UInt64>) -> Int {
        var count = 0
        for n in range where isPrime(n) { count += 1 }
        return count
    }
}
