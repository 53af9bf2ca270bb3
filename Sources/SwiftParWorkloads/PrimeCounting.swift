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

    /// The blocks of a range as the pool hands them out: computed when asked for, never
    /// stored, so a range up to 10^18 costs nothing before work starts.
    public struct Blocks: RandomAccessCollection, Sendable {
        public let range: ClosedRange<UInt64>
        public let span: UInt64
        public let count: Int

        public init(_ range: ClosedRange<UInt64>, span: UInt64) {
            self.range = range
            self.span = span
            let (width, overflow) = (range.upperBound - range.lowerBound).addingReportingOverflow(1)
            count = overflow ? Int((UInt64.max / span) + 1) : Int((width + span - 1) / span)
        }

        public var startIndex: Int { 0 }
        public var endIndex: Int { count }

        public subscript(index: Int) -> ClosedRange<UInt64> {
            let low = range.lowerBound + UInt64(index) * span
            let (sum, overflow) = low.addingReportingOverflow(span - 1)
            return low...(overflow ? range.upperBound : Swift.min(sum, range.upperBound))
        }
    }

    /// Numbers per block when counting: about 64 blocks per rank for balance, each a whole
    /// number of segments and at least 1024 times the range's square root (a block makes its
    /// large sieving primes again, which costs about one step per prime up to the root, so no
    /// more blocks than ranks when that is most of the work), and, where the large primes do
    /// not all fit in `memory`, at most one block kept whole. Blocks kept whole are made as few
    /// as that allows, and as many as a whole number of rounds of the ranks: every rank then
    /// sieves as many of them, of about the same size (but none spanning less than a quarter of
    /// the root, unless the memory needs it).
    ///
    /// A pool block is always one block of the sieve: the sieve starts its blocks at a multiple
    /// of 30, up to 29 numbers before the pool block, so pool blocks stay 30 numbers short of
    /// the sieve's largest (a remainder of a few numbers would be a block of its own, and make
    /// and place every large prime again).
    public static func countingSpan(for range: ClosedRange<UInt64>, ranks: Int, memory: Int = PrimeSieve.defaultMemory) -> UInt64 {
        let segmentNumbers = 30 * UInt64(PrimeSieve.segmentBytes)
        let width = range.upperBound - range.lowerBound
        let root = PrimeSieve.integerSquareRoot(range.upperBound)
        if PrimeSieve.largePrimesFit(upTo: root, bucketLimit: SievingPrimes.bucketLimit(for: memory)) {
            let share = width / UInt64(max(ranks, 1)) + 1
            let wanted = max(width / UInt64(64 * max(ranks, 1)) + 1, min(1024 * root, share))
            let segments = max((wanted + segmentNumbers - 1) / segmentNumbers, 1)
            return min(segments * segmentNumbers, PrimeSieve.largestBlockNumbers - 30)
        }
        let largest = 30 * UInt64(PrimeSieve.wholeBlockBytes(forMemory: memory)) - 30
        let ranks = UInt64(max(ranks, 1))
        // Whole rounds of the ranks, enough that no block is larger than the memory allows,
        // each a whole number of wheel turns (30 numbers). Blocks beyond those the memory needs
        // are made only while each spans more than a quarter of the root: making and placing
        // the large primes again costs about what sieving that many numbers does, so a small
        // window near 10^18 on many ranks is not cut into blocks that mostly make primes (found
        // by a user: 10^8 numbers below 10^18 took 6 s on 16 ranks, 60 s on 200).
        let fewest = width / largest + 1
        let worthwhile = max(fewest, width / max(root / 4, 1))
        let blocks = min((fewest + ranks - 1) / ranks * ranks, worthwhile)
        let even = (width / blocks + 1 + 29) / 30 * 30
        return min(even, largest)
    }

    /// The number of primes in `range`, counted by all ranks of `pool`, each within about
    /// `memory` bytes (at least `PrimeSieve.defaultMemory`); every rank gets it.
    public static func count(in range: ClosedRange<UInt64>, method: Method, pool: Pool, memory: Int = PrimeSieve.defaultMemory,
                             progress: (@Sendable (Int, Int?) -> Void)? = nil) throws -> Int {
        let root = PrimeSieve.integerSquareRoot(range.upperBound)
        var sievingPrimes: SievingPrimes?
        let span = method == .sieve ? countingSpan(for: range, ranks: pool.communicator.size, memory: memory) : 1 << 16
        let total = try pool.mapReduce(Blocks(range, span: span), options: MapOptions(progress: progress), { block -> Int in
            switch method {
            case .sieve:
                if sievingPrimes == nil { sievingPrimes = SievingPrimes(upTo: root, memory: memory) }
                // Blocks near 10^18 take seconds: a sign of life for the stall timeout meanwhile.
                return PrimeSieve.count(in: block, sievingPrimes: sievingPrimes) { pool.communicator.noteProgress() }
            case .trial:
                // A single number near 10^18 takes seconds to test.
                return TrialDivision.count(in: block) { pool.communicator.noteProgress() }
            }
        }, combine: +)
        return total ?? 0
    }

    /// Numbers per block when listing: at least 2^21 and 64 times the range's square root (a
    /// block makes its large sieving primes again, about one step per prime up to the root:
    /// with blocks of 2^21 near 10^18 that was nearly all the work), at most 2^26 (a block's
    /// primes, as 4-byte offsets, stay a few MB: about 1.6 million near 10^18). Fewer blocks
    /// than ranks near 10^18 cost less than blocks that mostly make sieving primes.
    static func listingSpan(for range: ClosedRange<UInt64>) -> UInt64 {
        let root = PrimeSieve.integerSquareRoot(range.upperBound)
        let (smallest, largest): (UInt64, UInt64) = (1 << 21, 1 << 26)
        return min(max(smallest, 64 * root), largest)
    }

    /// Calls `body` on rank 0 with the primes of `range` in order, block by block, as the
    /// ranks find them (never holding more than a few blocks): each block's primes as offsets
    /// from its first number, `base`.
    public static func list(in range: ClosedRange<UInt64>, pool: Pool, _ body: (_ base: UInt64, _ offsets: [UInt32]) throws -> Void) throws {
        let root = PrimeSieve.integerSquareRoot(range.upperBound)
        var sievingPrimes: SievingPrimes?
        let blocks = Blocks(range, span: listingSpan(for: range))
        try pool.forEachResult(blocks, ordered: true, { block -> [UInt32] in
            if sievingPrimes == nil { sievingPrimes = SievingPrimes(upTo: root) }
            return PrimeSieve.primeOffsets(in: block, sievingPrimes: sievingPrimes) { pool.communicator.noteProgress() }
        }) { index, offsets in try body(blocks[index].lowerBound, offsets) }
    }
}

/// The article's CPU-bound test: a number is prime when no integer from 2 to its square root
/// divides it.
public enum TrialDivision {
    /// Whether `n` is prime, by trial division.
    public static func isPrime(_ n: UInt64) -> Bool {
        var tried: UInt64 = 0
        return isPrime(n, tried: &tried, progress: nil)
    }

    /// Whether `n` is prime, adding the divisions tried to `tried` and calling `progress` at
    /// every 2^22nd of them.
    static func isPrime(_ n: UInt64, tried: inout UInt64, progress: (() -> Void)?) -> Bool {
        guard n >= 2 else { return false }
        var j: UInt64 = 2
        while j * j <= n {
            if n % j == 0 { return false }
            j += 1
            tried &+= 1
            if tried & 0x3F_FFFF == 0 { progress?() }
        }
        return true
    }

    /// How many primes lie in `range`, testing each number; `progress` is called every 2^22
    /// divisions, however they fall on the numbers (a sign of life for the stall timeout).
    public static func count(in range: ClosedRange<UInt64>, progress: (() -> Void)? = nil) -> Int {
        var count = 0
        var tried: UInt64 = 0
        for n in range where isPrime(n, tried: &tried, progress: progress) { count += 1 }
        return count
    }
}
