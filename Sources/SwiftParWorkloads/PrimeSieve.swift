#if canImport(Glibc)
import Glibc
#endif

/// Prime counting and listing with a segmented sieve of Eratosthenes on a mod-30 wheel.
///
/// Only numbers coprime to 30 are stored, eight to a byte: bit k of byte i stands for
/// `base + 30·i + residues[k]`. A block of the range is sieved in segments that fit the L2
/// cache. Each segment starts as a copy of a pattern with the multiples of 7, 11, 13 and 17
/// already cleared. For a sieving prime p, its multiples p·q with q coprime to 30 fall into 8
/// residue classes; within a class consecutive multiples are 30p apart, which is exactly p
/// bytes, always the same bit: each prime clears 8 arithmetic progressions.
///
/// Memory stays bounded whatever the range: sieving primes up to `stateLimit` keep their place
/// from segment to segment; larger ones (needed only above about 1.8·10^13) are generated again
/// for each block, in batches, and cross the block directly.
public enum PrimeSieve {
    /// The residues coprime to 30, one per bit.
    static let residues: [UInt64] = [1, 7, 11, 13, 17, 19, 23, 29]
    /// For each n in 0..<30, the bit of n in the wheel, or -1.
    static let bitOfResidue: [Int] = (0..<30).map { n in residues.firstIndex(of: UInt64(n)) ?? -1 }
    /// Bytes per segment: the L2 cache's share of one core.
    static let segmentBytes = 1 << 18
    /// Bytes per segment when large sieving primes are generated for each segment: the larger,
    /// the fewer times they are generated (16 MiB covers about 5·10^8 numbers).
    static let largeSegmentBytes = 1 << 24
    /// Sieving primes up to this keep crossing state between segments.
    static let stateLimit: UInt64 = 1 << 22
    /// The primes the pre-sieve pattern clears.
    static let presievedPrimes: [UInt64] = [7, 11, 13, 17]
    /// One period of the pre-sieve pattern in bytes (7·11·13·17), stored twice so any phase is
    /// one contiguous copy.
    static let patternPeriod = 7 * 11 * 13 * 17
    static let pattern: [UInt8] = {
        var bytes = [UInt8](repeating: 0xFF, count: 2 * patternPeriod)
        for i in 0..<bytes.count {
            for bit in 0..<8 {
                let n = 30 * UInt64(i) + residues[bit]
                if presievedPrimes.contains(where: { n % $0 == 0 }) { bytes[i] &= ~UInt8(1 << bit) }
            }
        }
        return bytes
    }()

    /// The primes up to `limit` (inclusive), by a simple sieve; for limits up to a few million.
    public static func smallPrimes(upTo limit: UInt64) -> [UInt64] {
        guard limit >= 2 else { return [] }
        let n = Int(limit)
        var composite = [Bool](repeating: false, count: n + 1)
        var result: [UInt64] = []
        var i = 2
        while i <= n {
            if !composite[i] {
                result.append(UInt64(i))
                var j = i * i
                while j <= n {
                    composite[j] = true
                    j += i
                }
            }
            i += 1
        }
        return result
    }

    /// ⌊√n⌋ exactly.
    public static func integerSquareRoot(_ n: UInt64) -> UInt64 {
        var r = UInt64(Double(n).squareRoot())
        while r > 0 && (r.multipliedReportingOverflow(by: r).overflow || r * r > n) { r -= 1 }
        while !(r + 1).multipliedReportingOverflow(by: r + 1).overflow && (r + 1) * (r + 1) <= n { r += 1 }
        return r
    }

    /// How many primes lie in `range`.
    public static func count(in range: ClosedRange<UInt64>, sievingPrimes: SievingPrimes? = nil) -> Int {
        var total = 0
        sieve(range, sievingPrimes: sievingPrimes, small: { _ in total += 1 }) { words, _, _ in
            var sum = 0
            for word in words { sum &+= word.nonzeroBitCount }
            total += sum
        }
        return total
    }

    /// The primes in `range`, in order.
    public static func primes(in range: ClosedRange<UInt64>, sievingPrimes: SievingPrimes? = nil) -> [UInt64] {
        var result: [UInt64] = []
        sieve(range, sievingPrimes: sievingPrimes, small: { result.append($0) }) { words, base, _ in
            appendPrimes(of: words, base: base, to: &result)
        }
        return result
    }

    /// Calls `body` with each number whose bit is set, in order.
    @inline(__always)
    static func forEachPrime(in words: UnsafeBufferPointer<UInt64>, base: UInt64, _ body: (UInt64) -> Void) {
        for (w, word) in words.enumerated() {
            var bits = word
            let wordBase = base + 240 * UInt64(w)
            while bits != 0 {
                let b = bits.trailingZeroBitCount
                bits &= bits &- 1
                body(wordBase + 30 * UInt64(b >> 3) + residues[b & 7])
            }
        }
    }

    /// The numbers whose bits are set, in order.
    static func appendPrimes(of words: UnsafeBufferPointer<UInt64>, base: UInt64, to result: inout [UInt64]) {
        forEachPrime(in: words, base: base) { result.append($0) }
    }

    /// Sieves `range`: `small` gets the primes below 19 in it, in order; then `visit` gets each
    /// segment's bits as 64-bit words (1 = prime, numbers outside the range already 0), the
    /// number its first byte starts at, and its byte count, in order.
    static func sieve(_ range: ClosedRange<UInt64>, sievingPrimes: SievingPrimes?,
                      small: (UInt64) -> Void, _ visit: (UnsafeBufferPointer<UInt64>, UInt64, Int) -> Void) {
        for p: UInt64 in [2, 3, 5, 7, 11, 13, 17] where range.contains(p) { small(p) }
        let start = max(range.lowerBound, 19)
        let high = range.upperBound
        guard start <= high else { return }
        let base = start / 30 * 30
        let totalBytes = Int((high - base) / 30) + 1
        let root = integerSquareRoot(high)
        let primes = sievingPrimes ?? SievingPrimes(upTo: root)
        var crossing = CrossingState(primes: primes.statePrimes, upTo: min(root, stateLimit), base: base)
        let streaming = root > stateLimit
        let segmentCapacity = min(streaming ? largeSegmentBytes : segmentBytes, (totalBytes + 7) & ~7)
        let words = UnsafeMutablePointer<UInt64>.allocate(capacity: segmentCapacity / 8 + 1)
        defer { words.deallocate() }
        let bytes = UnsafeMutableRawPointer(words).assumingMemoryBound(to: UInt8.self)
        var offset = 0
        let streamed: LargePrimeStream? = streaming ? LargePrimeStream(from: stateLimit + 1, through: root, small: primes) : nil
        while offset < totalBytes {
            let length = min(segmentCapacity, totalBytes - offset)
            let segmentBase = base + 30 * UInt64(offset)
            fillPattern(bytes, count: length, firstByte: segmentBase / 30)
            crossing.cross(bytes, from: offset, count: length)
            streamed?.cross(bytes, count: length, segmentBase: segmentBase)
            // Bits of numbers below `start` or above `high`.
            if offset == 0 {
                for bit in 0..<8 where base + residues[bit] < start { bytes[0] &= ~UInt8(1 << bit) }
            }
            if offset + length == totalBytes {
                for bit in 0..<8 where segmentBase + 30 * UInt64(length - 1) + residues[bit] > high {
                    bytes[length - 1] &= ~UInt8(1 << bit)
                }
            }
            // Whole words: zero the padding of the last one.
            let wordCount = (length + 7) / 8
            for pad in length..<(wordCount * 8) { bytes[pad] = 0 }
            visit(UnsafeBufferPointer(start: words, count: wordCount), segmentBase, length)
            offset += length
        }
    }

    /// Copies the pre-sieve pattern for the bytes starting at wheel number `firstByte`.
    @inline(__always)
    static func fillPattern(_ bytes: UnsafeMutablePointer<UInt8>, count: Int, firstByte: UInt64) {
        pattern.withUnsafeBufferPointer { pattern in
            var phase = Int(firstByte % UInt64(patternPeriod))
            var filled = 0
            while filled < count {
                let n = min(patternPeriod, count - filled)
                (bytes + filled).update(from: pattern.baseAddress! + phase, count: n)
                filled += n
                phase = (phase + n) % patternPeriod
            }
        }
    }

    /// The bit cleared by the multiples p·q of progression `j` (q ≡ residues[j] mod 30).
    @inline(__always)
    static func mask(prime p: UInt64, progression j: Int) -> UInt8 {
        ~UInt8(1 << bitOfResidue[Int((p % 30) * residues[j] % 30)])
    }
}

/// The primes that sieve a range, from 19 up to its square root: the smaller ones (up to
/// `PrimeSieve.stateLimit`) as a list, the rest generated when needed. Made once per rank and
/// shared by every block it sieves.
public struct SievingPrimes: Sendable {
    /// Primes from 19 up to the state limit (or the root, if smaller).
    let statePrimes: [UInt32]
    /// The largest number whose square root these primes cover.
    public let root: UInt64

    /// The sieving primes for ranges ending at or below `root`².
    public init(upTo root: UInt64) {
        self.root = root
        statePrimes = PrimeSieve.smallPrimes(upTo: min(root, PrimeSieve.stateLimit)).filter { $0 >= 19 }.map { UInt32($0) }
    }
}

/// Where each small sieving prime's 8 progressions stand, as byte offsets from the start of
/// the range being sieved.
struct CrossingState {
    var primes: [UInt64] = []
    var next: [Int] = []
    var masks: [UInt8] = []

    init(primes all: [UInt32], upTo limit: UInt64, base: UInt64) {
        for p32 in all {
            let p = UInt64(p32)
            guard p <= limit else { break }
            primes.append(p)
            // Crossing starts at p², or at the first multiple in the range.
            let qMin = max(p, (base + p - 1) / p)
            for j in 0..<8 {
                let q = qMin + (PrimeSieve.residues[j] + 30 - qMin % 30) % 30
                next.append(Int((p * q - base) / 30))
                masks.append(PrimeSieve.mask(prime: p, progression: j))
            }
        }
    }

    /// Clears the multiples that fall in the `count` bytes at `offset` of the range.
    mutating func cross(_ bytes: UnsafeMutablePointer<UInt8>, from offset: Int, count: Int) {
        let end = offset + count
        primes.withUnsafeBufferPointer { primes in
            next.withUnsafeMutableBufferPointer { next in
                masks.withUnsafeBufferPointer { masks in
                    for k in 0..<primes.count {
                        let stride = Int(primes[k])
                        for j in (k &* 8)..<(k &* 8 &+ 8) {
                            var c = next[j]
                            let mask = masks[j]
                            while c < end {
                                bytes[c &- offset] &= mask
                                c &+= stride
                            }
                            next[j] = c
                        }
                    }
                }
            }
        }
    }
}

/// The sieving primes above the state limit, generated again for every range that needs them
/// (a window of each batch at a time), so memory stays bounded however large the range.
struct LargePrimeStream {
    let low: UInt64
    let high: UInt64
    let small: SievingPrimes

    init(from low: UInt64, through high: UInt64, small: SievingPrimes) {
        self.low = low
        self.high = high
        self.small = small
    }

    /// Clears, in one segment of `count` bytes starting at number `segmentBase`, the multiples
    /// of every prime of the stream.
    func cross(_ bytes: UnsafeMutablePointer<UInt8>, count: Int, segmentBase: UInt64) {
        let segmentEnd = segmentBase + 30 * UInt64(count)
        // Only primes up to the root of this segment's end matter.
        let top = min(high, PrimeSieve.integerSquareRoot(segmentEnd))
        guard top >= low else { return }
        var windowLow = low
        let window: UInt64 = 30 << 20
        while windowLow <= top {
            let windowHigh = min(top, windowLow + window - 1)
            PrimeSieve.sieve(windowLow...windowHigh, sievingPrimes: small, small: { _ in }) { words, base, _ in
                PrimeSieve.forEachPrime(in: words, base: base) { p in
                    Self.crossOne(p, bytes, count: count, segmentBase: segmentBase)
                }
            }
            windowLow = windowHigh + 1
        }
    }

    @inline(__always)
    static func crossOne(_ p: UInt64, _ bytes: UnsafeMutablePointer<UInt8>, count: Int, segmentBase: UInt64) {
        let qMin = max(p, (segmentBase + p - 1) / p)
        let r = qMin % 30
        let stride = Int(p)
        for j in 0..<8 {
            let q = qMin + (PrimeSieve.residues[j] + 30 - r) % 30
            let (n, overflow) = p.multipliedReportingOverflow(by: q)
            guard !overflow else { continue }
            var c = Int((n - segmentBase) / 30)
            let mask = PrimeSieve.mask(prime: p, progression: j)
            while c < count {
                bytes[c] &= mask
                c &+= stride
            }
        }
    }
}
