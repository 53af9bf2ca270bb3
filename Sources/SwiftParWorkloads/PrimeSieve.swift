/// Prime counting and listing with a segmented sieve of Eratosthenes.
///
/// Odd numbers only, one byte each, in segments that fit the L2 cache. Each segment starts as a
/// copy of a pre-sieved pattern with the multiples of 3, 5, 7, 11 and 13 already crossed out
/// (the pattern repeats every 15015 odd numbers), so only primes from 17 up cross out. Every
/// sieving prime remembers its next multiple from one segment to the next, so no division is
/// done per segment.
public enum PrimeSieve {
    /// Odd numbers per segment (256 KiB of bytes).
    static let segmentLength = 1 << 18
    static let presievePrimes: [UInt64] = [3, 5, 7, 11, 13]
    /// One period of the pre-sieve: byte i is 1 when 2i+1 has no factor among 3…13; twice the
    /// period long so any phase can be copied with one memcpy per period.
    static let pattern: [UInt8] = {
        let period = 3 * 5 * 7 * 11 * 13
        return (0..<(2 * period)).map { i in
            let n = UInt64(2 * i + 1)
            return presievePrimes.contains { n % $0 == 0 } ? 0 : 1
        }
    }()

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
        while r > 0 && r.multipliedReportingOverflow(by: r).partialValue > n || r.multipliedReportingOverflow(by: r).overflow { r -= 1 }
        while (r + 1).multipliedReportingOverflow(by: r + 1).overflow == false && (r + 1) * (r + 1) <= n { r += 1 }
        return r
    }

    /// How many primes lie in `range`.
    public static func count(in range: ClosedRange<UInt64>, sievingPrimes: [UInt64]? = nil) -> Int {
        var total = 0
        sieve(range, sievingPrimes: sievingPrimes) { segment, first in
            total += segment.reduce(0) { $0 + Int($1) }
            _ = first
        }
        return total
    }

    /// The primes in `range`, in order.
    public static func primes(in range: ClosedRange<UInt64>, sievingPrimes: [UInt64]? = nil) -> [UInt64] {
        var result: [UInt64] = []
        sieve(range, sievingPrimes: sievingPrimes) { segment, first in
            for (i, flag) in segment.enumerated() where flag != 0 { result.append(first + 2 * UInt64(i)) }
        }
        return result
    }

    /// Sieves `range`, calling `visit` with each segment's bytes (1 = prime) for the odd numbers
    /// `first`, `first + 2`, … in the range. The prime 2 and the primes 3…13 are counted by
    /// `visit` as a one-byte segment each when they fall in the range.
    static func sieve(_ range: ClosedRange<UInt64>, sievingPrimes: [UInt64]?, _ visit: (UnsafeBufferPointer<UInt8>, UInt64) -> Void) {
        let low = range.lowerBound, high = range.upperBound
        guard high >= 2 else { return }
        var one: UInt8 = 1
        // 2 and the pre-sieve primes are primes the pattern crosses out: report them directly.
        for small in [2] + presievePrimes where range.contains(small) {
            withUnsafePointer(to: &one) { visit(UnsafeBufferPointer(start: $0, count: 1), small) }
        }
        let root = integerSquareRoot(high)
        let base = (sievingPrimes ?? smallPrimes(upTo: root)).filter { $0 > 13 && $0 <= root }
        // Odd numbers from `start` (odd, at least 17 or the range's first odd number).
        var start = max(low, 17)
        if start % 2 == 0 { start += 1 }
        guard start <= high else { return }
        let period = 15015
        // For each sieving prime, the index (in odd numbers from `start`) of its next multiple
        // to cross out: its square, or the first odd multiple at or after `start`.
        var next = base.map { p -> UInt64 in
            let square = p * p
            var m: UInt64
            if square >= start {
                m = square
            } else {
                m = (start + p - 1) / p * p
                if m % 2 == 0 { m += p }
            }
            return (m - start) / 2
        }
        let total = (high - start) / 2 + 1
        var buffer = [UInt8](repeating: 0, count: segmentLength)
        pattern.withUnsafeBufferPointer { pattern in
            buffer.withUnsafeMutableBufferPointer { segment in
                base.withUnsafeBufferPointer { primes in
                    next.withUnsafeMutableBufferPointer { next in
                        var offset: UInt64 = 0
                        while offset < total {
                            let length = Int(min(UInt64(segmentLength), total - offset))
                            // Copy the pre-sieve pattern at this segment's phase.
                            let firstNumber = start + 2 * offset
                            var phase = Int(((firstNumber - 1) / 2) % UInt64(period))
                            var filled = 0
                            while filled < length {
                                let n = min(period, length - filled)
                                (segment.baseAddress! + filled).update(from: pattern.baseAddress! + phase, count: n)
                                filled += n
                                phase = (phase + n) % period
                            }
                            let end = offset + UInt64(length)
                            let bytes = segment.baseAddress!
                            for k in 0..<primes.count {
                                var m = next[k]
                                if m >= end { continue }
                                let p = Int(primes[k])
                                var i = Int(m - offset)
                                while i < length {
                                    bytes[i] = 0
                                    i += p
                                }
                                m = offset + UInt64(i)
                                next[k] = m
                            }
                            visit(UnsafeBufferPointer(start: bytes, count: length), firstNumber)
                            offset = end
                        }
                    }
                }
            }
        }
    }
}
