/// Prime counting and listing with a segmented sieve of Eratosthenes on a mod-30 wheel.
///
/// Only numbers coprime to 30 are stored (8 of every 30, one byte each: 1 = still a
/// candidate), in segments that fit the L2 cache. Each segment starts as a copy of a pattern
/// with the multiples of 7, 11 and 13 already crossed out. For a sieving prime p, its multiples
/// p·q with q coprime to 30 fall into 8 residue classes, and within a class consecutive
/// multiples are 30p apart, which is exactly 8p candidates: so each prime crosses out 8 plain
/// arithmetic progressions, and remembers where each stopped for the next segment.
public enum PrimeSieve {
    /// The residues coprime to 30, in order: candidate k of a wheel is 30·(k / 8) + residues[k % 8].
    static let residues: [UInt64] = [1, 7, 11, 13, 17, 19, 23, 29]
    /// For each n in 0..<30, the index of n in `residues`, or -1.
    static let position: [Int] = (0..<30).map { n in residues.firstIndex(of: UInt64(n)) ?? -1 }
    /// Candidates per segment (512 KiB), a multiple of 8 so segments start on a wheel.
    static let segmentLength = 1 << 19
    /// Wheels in one period of the 7·11·13 pattern.
    static let patternWheels = 7 * 11 * 13
    /// Two periods of the pre-sieve pattern, so any phase can be copied with one memcpy per period.
    static let pattern: [UInt8] = (0..<(2 * 8 * patternWheels)).map { c in
        let n = 30 * UInt64(c / 8) + residues[c % 8]
        return n % 7 == 0 || n % 11 == 0 || n % 13 == 0 ? 0 : 1
    }

    /// The primes up to `limit` (inclusive), by a simple sieve: the sieving primes.
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
    public static func count(in range: ClosedRange<UInt64>, sievingPrimes: [UInt64]? = nil) -> Int {
        var total = 0
        sieve(range, sievingPrimes: sievingPrimes, small: { _ in total += 1 }) { segment, _ in
            var sum = 0
            for byte in segment { sum &+= Int(byte) }
            total += sum
        }
        return total
    }

    /// The primes in `range`, in order.
    public static func primes(in range: ClosedRange<UInt64>, sievingPrimes: [UInt64]? = nil) -> [UInt64] {
        var result: [UInt64] = []
        sieve(range, sievingPrimes: sievingPrimes, small: { result.append($0) }) { segment, base in
            for k in 0..<segment.count where segment[k] != 0 {
                result.append(base + 30 * UInt64(k / 8) + residues[k % 8])
            }
        }
        return result
    }

    /// Sieves `range`: `small` gets the primes below 17 in it, in order; then `visit` gets each
    /// segment (1 = prime) with the number its first wheel starts at, in order. Candidates
    /// outside the range are already 0.
    static func sieve(_ range: ClosedRange<UInt64>, sievingPrimes: [UInt64]?,
                      small: (UInt64) -> Void, _ visit: (UnsafeBufferPointer<UInt8>, UInt64) -> Void) {
        let low = range.lowerBound, high = range.upperBound
        for p: UInt64 in [2, 3, 5, 7, 11, 13] where range.contains(p) { small(p) }
        let start = max(low, 17)
        guard start <= high else { return }
        let base = start / 30 * 30
        // Candidates from `base` up to `high`.
        let wheels = (high - base) / 30
        let tail = high - base - 30 * wheels
        let total = Int(wheels) * 8 + residues.filter { $0 <= tail }.count
        let root = integerSquareRoot(high)
        let primes = (sievingPrimes ?? smallPrimes(upTo: root)).filter { $0 >= 17 && $0 <= root }
        // The next candidate index of each of the 8 progressions of each prime.
        var next = [Int](repeating: 0, count: primes.count * 8)
        for (k, p) in primes.enumerated() {
            let qMin = max(p, (base + p - 1) / p)
            for i in 0..<8 {
                let q = qMin + (residues[i] + 30 - qMin % 30) % 30
                let m = p * q
                next[k * 8 + i] = Int((m - base) / 30) * 8 + position[Int(m % 30)]
            }
        }
        // Candidates before `start` (numbers below 17, or below the range) are not in it.
        let firstInRange = (0..<8).first { base + residues[$0] >= start } ?? 8
        var segment = [UInt8](repeating: 0, count: segmentLength)
        pattern.withUnsafeBufferPointer { pattern in
            segment.withUnsafeMutableBufferPointer { segment in
                primes.withUnsafeBufferPointer { primes in
                    next.withUnsafeMutableBufferPointer { next in
                        let bytes = segment.baseAddress!
                        var offset = 0
                        while offset < total {
                            let length = min(segmentLength, total - offset)
                            let firstWheel = base / 30 + UInt64(offset / 8)
                            var phase = Int(firstWheel % UInt64(patternWheels)) * 8
                            var filled = 0
                            while filled < length {
                                let n = min(8 * patternWheels, length - filled)
                                (bytes + filled).update(from: pattern.baseAddress! + phase, count: n)
                                filled += n
                                phase = (phase + n) % (8 * patternWheels)
                            }
                            let end = offset + length
                            for k in 0..<primes.count {
                                let stride = 8 * Int(primes[k])
                                for j in (k * 8)..<(k * 8 + 8) {
                                    var c = next[j]
                                    while c < end {
                                        bytes[c - offset] = 0
                                        c += stride
                                    }
                                    next[j] = c
                                }
                            }
                            if offset == 0 {
                                for c in 0..<min(firstInRange, length) { bytes[c] = 0 }
                            }
                            visit(UnsafeBufferPointer(start: bytes, count: length), base + 30 * UInt64(offset / 8))
                            offset = end
                        }
                    }
                }
            }
        }
    }
}
