#if canImport(Glibc)
import Glibc
#endif
import CSwiftParLinux
import SwiftPar

/// Prime counting and listing with a segmented sieve of Eratosthenes on a mod-30 wheel.
///
/// Only numbers coprime to 30 are stored, eight to a byte: bit k of byte i stands for
/// `base + 30·i + wheel[k]`, with `wheel = [1, 7, 11, 13, 17, 19, 23, 29]`. A block of the range
/// is sieved in segments of 2 MiB:
///
/// - each segment starts as the AND of four periodic patterns that already lack the multiples
///   of every prime from 7 to 53;
/// - primes up to a few thousand cross it in L1-sized slices, and primes up to a few segments'
///   length cross the whole segment; both walk one turn of the wheel (8 multiples, p bytes) at
///   a time with the eight byte offsets and bit masks of the prime's class known in advance,
///   in groups of the same class and the same place in the turn (`GroupedPrimes`);
/// - larger primes wait in buckets, one per 256 KiB of the block (L2-sized, so their scattered
///   writes stay in the cache): a prime is touched only where its multiples fall, then moves on
///   to the bucket of its next one;
/// - the segment's primes are counted 64 bits at a time.
///
/// Memory per rank stays within a budget however large the range (`defaultMemory`, or what the
/// caller gives): when every large prime of a range fits in the buckets, the range is one
/// block and each large prime is placed once; when they do not, the range is cut into as few
/// blocks as the budget allows (`wholeBlockBytes(forMemory:)`), of even size, each kept whole while its
/// large primes, made again for each block, cross it in batches as large as what the block
/// leaves of the budget (`batchPrimes(blockBytes:memory:)`).
public enum PrimeSieve {
    /// The residues coprime to 30, one per bit.
    static let residues: [UInt64] = [1, 7, 11, 13, 17, 19, 23, 29]
    /// log2 of the bytes per segment.
    static let segmentShift = 21
    /// Bytes per segment: large, since every small and medium prime visits every segment.
    static let segmentBytes = 1 << segmentShift
    /// Bytes per slice of a segment that the smallest primes cross while it is in L1.
    static let sliceBytes = 1 << 15
    /// Primes up to this cross slice by slice.
    static let smallLimit: UInt64 = 6_000
    /// Primes up to this keep their place from segment to segment (and are made once per rank);
    /// larger ones go through the buckets.
    static let mediumLimit: UInt64 = 2 * UInt64(segmentBytes)
    /// The memory a rank's sieve stays within unless told otherwise: 100 MB.
    public static let defaultMemory = 100_000_000
    /// The most large primes in buckets at once within the default memory (8 bytes each), when
    /// all of a range's large primes fit and nothing is kept whole.
    static let defaultBucketPrimes = 2_000_000
    /// The fewest large primes per batch when a block is kept whole. A batch takes what the
    /// block leaves of the memory: each batch reads and writes the whole block once, so the
    /// fewer the batches, the less traffic to memory.
    static let fewestBatchPrimes = 250_000
    /// What a rank holds besides a block kept whole and one batch of large primes in buckets:
    /// the Swift runtime and libraries, the small and medium sieving primes and their groups,
    /// the segment the large primes are made in, the buckets' partly filled chunks, and the
    /// heap's slack.
    static let memoryBesidesBatch = 33_000_000
    /// Large primes per batch over a block of `blockBytes` kept whole, for a rank within `memory`
    /// bytes.
    static func batchPrimes(blockBytes: Int, memory: Int) -> Int {
        Swift.max(fewestBatchPrimes, (memory - memoryBesidesBatch - blockBytes) / bytesPerBucketEntry)
    }
    /// What a rank holds besides a block kept whole: the Swift runtime and libraries, the small
    /// and medium sieving primes and their groups, the segment the large primes are made in,
    /// a batch of them in buckets at least `fewestBatchPrimes` large, and the heap's slack.
    static let memoryBesidesBlock = 36_000_000
    /// Memory a sieve takes besides its buckets when nothing is kept whole: the segment, the
    /// sieving primes, the pre-sieve patterns, the stretches' cursors, the heap's slack.
    static let bucketlessMemory = 40_000_000
    /// Bytes per large prime in the buckets: an 8-byte entry, in chunks partly filled.
    static let bytesPerBucketEntry = 10
    /// The most numbers one block may cover (its buckets keep a cursor per 256 KiB stretch).
    static let largestBlockNumbers: UInt64 = 30 << (Buckets.shift + 20)
    /// Bytes of a block kept whole when its large primes cross it in batches, for a rank within
    /// `memory` bytes: what is left besides, in whole segments. Every block makes and places its
    /// large primes again, so the larger the block, the fewer times that is done (60 MiB at the
    /// default 100 MB: a range near 10^18 places its 50 million large primes once per 1.9·10^9
    /// numbers).
    static func wholeBlockBytes(forMemory memory: Int) -> Int {
        let segments = Swift.max((memory - memoryBesidesBlock) / segmentBytes, 2)
        return Swift.min(segments * segmentBytes, Int(largestBlockNumbers / 30))
    }
    /// The largest prime the pre-sieve patterns clear; sieving starts above it.
    static let largestPresieved: UInt64 = 53

    /// Whether the large sieving primes up to `root` all fit in buckets of `bucketLimit`
    /// entries, so a range ending at or below `root`² can be one block with each placed once.
    static func largePrimesFit(upTo root: UInt64, bucketLimit: Int) -> Bool {
        root <= mediumLimit || estimatedPrimeCount((mediumLimit + 1)...root) <= bucketLimit
    }

    /// An overestimate of the number of primes in `range`.
    static func estimatedPrimeCount(_ range: ClosedRange<UInt64>) -> Int {
        func pi(_ x: UInt64) -> Double { x < 17 ? 7 : 1.26 * Double(x) / log(Double(x)) }
        return Int(pi(range.upperBound) - Double(range.lowerBound) / log(Double(max(range.lowerBound, 3))))
    }

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

    /// How many primes lie in `range`, using about `memory` bytes at most (sieving primes that
    /// were made for another memory size bring theirs); `afterEachSegment` runs after every
    /// segment is counted (tens of milliseconds apart, for `Communicator.noteProgress()`).
    public static func count(in range: ClosedRange<UInt64>, sievingPrimes: SievingPrimes? = nil, memory: Int = defaultMemory,
                             afterEachSegment: () -> Void = {}) -> Int {
        var total = 0
        sieve(range, sievingPrimes: sievingPrimes ?? SievingPrimes(upTo: integerSquareRoot(range.upperBound), memory: memory),
              small: { _ in total += 1 }) { words, _ in
            total += countBits(words)
            afterEachSegment()
        }
        return total
    }

    /// The primes in `range`, in order.
    public static func primes(in range: ClosedRange<UInt64>, sievingPrimes: SievingPrimes? = nil) -> [UInt64] {
        var result: [UInt64] = []
        sieve(range, sievingPrimes: sievingPrimes, small: { result.append($0) }) { words, base in
            forEachPrime(in: words, base: base) { result.append($0) }
        }
        return result
    }

    /// The primes in `range`, which must span at most 2^32 numbers, as offsets from its first
    /// number, in order.
    static func primeOffsets(in range: ClosedRange<UInt64>, sievingPrimes: SievingPrimes? = nil, afterEachSegment: () -> Void = {}) -> [UInt32] {
        precondition(range.upperBound - range.lowerBound <= UInt64(UInt32.max), "a range of more than 2^32 numbers")
        var result: [UInt32] = []
        let low = range.lowerBound
        // About 1/ln(n) of the numbers near n are prime; a little more room than that.
        result.reserveCapacity(Int(1.3 * Double(range.upperBound - low) / log(Double(max(low, 1 << 20)))) + 64)
        sieve(range, sievingPrimes: sievingPrimes, small: { result.append(UInt32($0 - low)) }) { words, base in
            forEachPrime(in: words, base: base) { result.append(UInt32($0 - low)) }
            afterEachSegment()
        }
        return result
    }

    /// The number of set bits in `words`.
    @inline(__always)
    static func countBits(_ words: UnsafeBufferPointer<UInt64>) -> Int {
        var sum = 0
        for word in words { sum &+= word.nonzeroBitCount }
        return sum
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

    /// Sieves `range`: `small` gets the primes up to 53 in it, in order; then `visit` gets the
    /// bits of each stretch of the range as 64-bit words (1 = prime, numbers outside the range
    /// already 0) and the number its first byte starts at, in order.
    static func sieve(_ range: ClosedRange<UInt64>, sievingPrimes: SievingPrimes?,
                      small: (UInt64) -> Void, _ visit: (UnsafeBufferPointer<UInt64>, UInt64) -> Void) {
        for p in presievedPrimes where range.contains(p) { small(p) }
        let start = max(range.lowerBound, largestPresieved + 1)
        let high = range.upperBound
        guard start <= high else { return }
        let root = integerSquareRoot(high)
        let primes = sievingPrimes ?? SievingPrimes(upTo: root)
        precondition(primes.root >= min(root, mediumLimit), "sieving primes up to \(primes.root) cannot sieve up to \(high)")
        // One block when the large primes all fit in the buckets (each is placed once); else
        // blocks kept whole within the memory budget.
        let blockNumbers = largePrimesFit(upTo: root, bucketLimit: primes.bucketLimit) ? largestBlockNumbers
            : evenBlockNumbers(high - start + 1, largest: 30 * UInt64(primes.blockBytes))
        var low = start
        while true {
            let (sum, overflow) = (low / 30 * 30).addingReportingOverflow(blockNumbers - 1)
            let blockHigh = overflow ? high : min(sum, high)
            var block = BlockSieve(start: low, high: blockHigh, root: integerSquareRoot(blockHigh), primes: primes)
            block.run(visit)
            if blockHigh == high { break }
            low = blockHigh + 1
        }
    }

    /// Numbers per block for a range of `span` numbers cut into blocks of at most `largest`: as
    /// few blocks as that allows, of even size in whole segments. Each block makes and places
    /// all its large primes, whatever its size, so a short last block would cost as much as a
    /// full one; and a smaller block leaves more of the memory to each batch of large primes,
    /// so fewer batches pass over it.
    static func evenBlockNumbers(_ span: UInt64, largest: UInt64) -> UInt64 {
        let segmentNumbers = 30 * UInt64(segmentBytes)
        // (Rounded up without adding first: a span may reach 2^64 − 54.)
        let blocks = span / largest + (span % largest == 0 ? 0 : 1)
        let numbers = span / blocks + (span % blocks == 0 ? 0 : 1)
        return min(largest, (numbers + segmentNumbers - 1) / segmentNumbers * segmentNumbers)
    }

    /// The primes 2 to 53, which the pre-sieve patterns take care of.
    static let presievedPrimes: [UInt64] = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53]

    /// The bit of residue `n` (mod 30) in a byte, for residues coprime to 30; folds to a
    /// constant when `n` is one.
    @inline(__always)
    static func bit(ofResidue n: Int) -> Int {
        switch n {
        case 1: 0
        case 7: 1
        case 11: 2
        case 13: 3
        case 17: 4
        case 19: 5
        case 23: 6
        default: 7
        }
    }

    /// The multipliers of one wheel turn. For a prime p = 30a + r, the multiple p·(30c + wheel[j])
    /// is in byte `c·p + a·wheel[j] + ⌊r·wheel[j]/30⌋` (a turn is p bytes), bit of r·wheel[j] mod 30.
    static let wheel: [Int] = [1, 7, 11, 13, 17, 19, 23, 29]
    /// For each class index (0..<8, residue `wheel[i]`) and wheel position j, the step in bytes
    /// to the next multiple is `a·gap[j] + carry[8·class + j]`, and the bit to clear is
    /// `masks[8·class + j]`.
    static let gap: [Int] = [6, 4, 2, 4, 2, 4, 6, 2]
    static let carry: [Int] = (0..<64).map { index in
        let r = wheel[index >> 3], j = index & 7
        let next = j == 7 ? 31 : wheel[j + 1]
        return r * next / 30 - r * wheel[j] / 30
    }
    /// For each class index and wheel position j, ⌊r·wheel[j]/30⌋: the part of the j-th
    /// multiple's offset in a turn that does not grow with a.
    static let turnOffsets: [Int] = (0..<64).map { index in wheel[index >> 3] * wheel[index & 7] / 30 }
    static let masks: [UInt8] = (0..<64).map { index in
        ~UInt8(1 << bit(ofResidue: wheel[index >> 3] * wheel[index & 7] % 30))
    }
    /// For each n in 0..<30, the first wheel position whose residue is at least n.
    static let wheelPositionAtOrAfter: [Int] = (0..<30).map { n in wheel.firstIndex { $0 >= n }! }
    /// The class index of each residue coprime to 30.
    static let classOfResidue: [Int] = (0..<30).map { n in wheel.firstIndex(of: n) ?? -1 }

    /// Where the first multiple p·m ≥ max(p², low) with m coprime to 30 falls: the byte index of
    /// its wheel turn (m's multiple of 30 times p, relative to byte `baseByte`) and its position
    /// in the turn.
    @inline(__always)
    static func firstMultiple(of p: UInt64, atOrAfter low: UInt64, baseByte: UInt64) -> (turn: Int, position: Int) {
        let q = Swift.max(p, low / p + (low % p == 0 ? 0 : 1))
        let position = wheelPositionAtOrAfter[Int(q % 30)]
        return (Int(bitPattern: UInt(q / 30 * p) &- UInt(baseByte)), position)
    }
}

/// The primes that sieve a range, from 59 up to its square root or to `PrimeSieve.mediumLimit`,
/// whichever is smaller; larger ones are made for each block. Made once per rank and shared by
/// every block it sieves.
public struct SievingPrimes: Sendable {
    /// Primes from 59 up to the medium limit (or the root, if smaller).
    let primes: [UInt32]
    /// How many of them cross slice by slice.
    let smallCount: Int
    /// The largest number whose square root these primes cover.
    public let root: UInt64
    /// The most large primes a block keeps in its buckets at once, from the memory given.
    let bucketLimit: Int
    /// Bytes of a block kept whole, from the memory given.
    let blockBytes: Int
    /// The memory given; what a block kept whole leaves of it goes to batches of large primes.
    let memory: Int

    /// The sieving primes for ranges ending at or below `root`², for sieves that stay within
    /// about `memory` bytes (at least `PrimeSieve.defaultMemory`).
    public init(upTo root: UInt64, memory: Int = PrimeSieve.defaultMemory) {
        self.root = root
        bucketLimit = Self.bucketLimit(for: memory)
        blockBytes = PrimeSieve.wholeBlockBytes(forMemory: memory)
        self.memory = max(memory, PrimeSieve.defaultMemory)
        primes = PrimeSieve.smallPrimes(upTo: min(root, PrimeSieve.mediumLimit))
            .filter { $0 > PrimeSieve.largestPresieved }.map { UInt32($0) }
        smallCount = primes.firstIndex { UInt64($0) > PrimeSieve.smallLimit } ?? primes.count
    }

    /// The most large primes in buckets at once for a sieve within `memory` bytes: those of the
    /// default memory, or all that the memory beyond what a sieve needs besides them holds.
    static func bucketLimit(for memory: Int) -> Int {
        memory <= PrimeSieve.defaultMemory ? PrimeSieve.defaultBucketPrimes
            : (memory - PrimeSieve.bucketlessMemory) / PrimeSieve.bytesPerBucketEntry
    }
}

/// The pre-sieve: four periodic patterns whose AND lacks the multiples of 7…53.
enum Presieve {
    /// The primes of each pattern; a pattern repeats every product-of-its-primes bytes.
    static let groups: [[UInt64]] = [[7, 11, 13, 17], [19, 23, 29], [31, 37, 41], [43, 47, 53]]
    /// Bytes copied per step: each pattern is stored with this many bytes of its start repeated
    /// after its end, so every step reads one contiguous run of each.
    static let run = 4096
    static let periods: [Int] = groups.map { Int($0.reduce(1, *)) }
    nonisolated(unsafe) static let patterns: [UnsafeMutablePointer<UInt8>] = groups.map { group in
        let period = Int(group.reduce(1, *))
        let bytes = UnsafeMutablePointer<UInt8>.allocate(capacity: period + run)
        for i in 0..<(period + run) {
            var byte: UInt8 = 0xFF
            for bit in 0..<8 {
                let n = 30 * UInt64(i % period) + PrimeSieve.residues[bit]
                if group.contains(where: { n % $0 == 0 }) { byte &= ~UInt8(1 << bit) }
            }
            bytes[i] = byte
        }
        return bytes
    }

    /// Fills `count` bytes at `bytes` with the pattern for the bytes starting at wheel byte
    /// `firstByte` (the number 30·firstByte).
    static func fill(_ bytes: UnsafeMutablePointer<UInt8>, count: Int, firstByte: UInt64) {
        let p0 = patterns[0], p1 = patterns[1], p2 = patterns[2], p3 = patterns[3]
        let n0 = periods[0], n1 = periods[1], n2 = periods[2], n3 = periods[3]
        var f0 = Int(firstByte % UInt64(n0)), f1 = Int(firstByte % UInt64(n1))
        var f2 = Int(firstByte % UInt64(n2)), f3 = Int(firstByte % UInt64(n3))
        var done = 0
        while done < count {
            let n = min(run, count - done)
            let out = UnsafeMutableRawPointer(bytes + done)
            let a = UnsafeRawPointer(p0 + f0), b = UnsafeRawPointer(p1 + f1)
            let c = UnsafeRawPointer(p2 + f2), d = UnsafeRawPointer(p3 + f3)
            var i = 0
            while i &+ 8 <= n {
                let word = a.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                    & b.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                    & c.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                    & d.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                out.storeBytes(of: word, toByteOffset: i, as: UInt64.self)
                i &+= 8
            }
            while i < n {
                out.storeBytes(of: a.load(fromByteOffset: i, as: UInt8.self) & b.load(fromByteOffset: i, as: UInt8.self)
                               & c.load(fromByteOffset: i, as: UInt8.self) & d.load(fromByteOffset: i, as: UInt8.self),
                               toByteOffset: i, as: UInt8.self)
                i &+= 1
            }
            done &+= n
            f0 &+= n; if f0 >= n0 { f0 &-= n0 }
            f1 &+= n; if f1 >= n1 { f1 &-= n1 }
            f2 &+= n; if f2 >= n2 { f2 &-= n2 }
            f3 &+= n; if f3 >= n3 { f3 &-= n3 }
        }
    }
}

/// Uses `value`, so the loads that made it are not left out.
@_optimize(none) func keep(_ value: UInt64) {}

/// A residue class of primes mod 30, as a type, so the crossing code is made once per class
/// with its constants folded in.
protocol WheelResidue { static var value: Int { get } }
enum Residue1: WheelResidue { static var value: Int { 1 } }
enum Residue7: WheelResidue { static var value: Int { 7 } }
enum Residue11: WheelResidue { static var value: Int { 11 } }
enum Residue13: WheelResidue { static var value: Int { 13 } }
enum Residue17: WheelResidue { static var value: Int { 17 } }
enum Residue19: WheelResidue { static var value: Int { 19 } }
enum Residue23: WheelResidue { static var value: Int { 23 } }
enum Residue29: WheelResidue { static var value: Int { 29 } }

/// One block of a range being sieved: `[start, high]`, in segments.
struct BlockSieve {
    let start: UInt64
    let high: UInt64
    /// The number byte 0 stands for (a multiple of 30).
    let base: UInt64
    let totalBytes: Int
    let root: UInt64
    let primes: SievingPrimes
    /// How many sieving primes (small and medium) are at most the root.
    let primeCount: Int

    init(start: UInt64, high: UInt64, root: UInt64, primes: SievingPrimes) {
        self.start = start
        self.high = high
        self.root = root
        self.primes = primes
        base = start / 30 * 30
        totalBytes = Int((high - base) / 30) + 1
        primeCount = primes.primes.firstIndex { UInt64($0) > root } ?? primes.primes.count
    }

    mutating func run(_ visit: (UnsafeBufferPointer<UInt64>, UInt64) -> Void) {
        let segmentBytes = PrimeSieve.segmentBytes
        let segments = (totalBytes + segmentBytes - 1) >> PrimeSieve.segmentShift
        // Large primes (above the medium limit, up to the root).
        let largeLow = PrimeSieve.mediumLimit + 1
        let hasLarge = root >= largeLow
        let largeCount = hasLarge ? PrimeSieve.estimatedPrimeCount(largeLow...root) : 0
        let batched = largeCount > primes.bucketLimit
        // Batched blocks are kept whole; otherwise one segment's buffer is reused.
        let bufferBytes = batched ? segments * segmentBytes : hasLarge ? segmentBytes : min(segmentBytes, (totalBytes + 7) & ~7)
        let words = UnsafeMutablePointer<UInt64>.allocate(capacity: bufferBytes / 8 + 1)
        defer { words.deallocate() }
        let buffer = UnsafeMutableRawPointer(words).assumingMemoryBound(to: UInt8.self)
        let bucketSegments = (totalBytes + Buckets.mask) >> Buckets.shift
        let batchLimit = batched ? PrimeSieve.batchPrimes(blockBytes: bufferBytes, memory: primes.memory) : primes.bucketLimit
        var buckets = hasLarge ? Buckets(segments: bucketSegments, entries: min(largeCount, batchLimit * 5 / 4)) : nil
        defer { buckets?.release() }

        func segmentPointer(_ index: Int) -> UnsafeMutablePointer<UInt8> {
            batched ? buffer + index * segmentBytes : buffer
        }
        func length(_ index: Int) -> Int { min(segmentBytes, totalBytes - index * segmentBytes) }
        func finish(_ index: Int) {
            let bytes = segmentPointer(index)
            let count = length(index)
            let segmentBase = base + 30 * UInt64(index * segmentBytes)
            // Bits of numbers below `start` or above `high`.
            // (Compared as differences, so nothing overflows at the top of UInt64.)
            if index == 0 {
                for bit in 0..<8 where PrimeSieve.residues[bit] < start - base { bytes[0] &= ~UInt8(1 << bit) }
            }
            if index == segments - 1 {
                let lastByte = segmentBase + 30 * UInt64(count - 1)
                for bit in 0..<8 where PrimeSieve.residues[bit] > high - lastByte {
                    bytes[count - 1] &= ~UInt8(1 << bit)
                }
            }
            let wordCount = (count + 7) / 8
            for pad in count..<(wordCount * 8) { bytes[pad] = 0 }
            visit(UnsafeBufferPointer(start: UnsafeRawPointer(bytes).assumingMemoryBound(to: UInt64.self), count: wordCount), segmentBase)
        }

        // The large primes go to the buckets in batches as they are generated.
        var largeLowNext = largeLow
        let placer = LargePrimePlacer(start: start, baseByte: base / 30, bucketSegments: bucketSegments)
        defer { placer.release() }
        func fillBuckets() {
            guard hasLarge, largeLowNext <= root else { return }
            var stop = root
            // About `batchLimit` primes per batch (primes thin out as they grow).
            if batched {
                let span = UInt64(Double(batchLimit) * log(Double(largeLowNext)))
                stop = min(root, largeLowNext &+ span)
            }
            placer.place(largeLowNext...stop, sievingPrimes: primes, into: &buckets!)
            largeLowNext = stop + 1
        }

        let small = GroupedPrimes(primes.primes[0..<min(primes.smallCount, primeCount)], start: start, baseByte: base / 30)
        defer { small.release() }
        let medium = GroupedPrimes(primes.primes[min(primes.smallCount, primeCount)..<primeCount], start: start, baseByte: base / 30)
        defer { medium.release() }
        fillBuckets()
        for index in 0..<segments {
            let bytes = segmentPointer(index)
            let count = length(index)
            let segmentStart = index * segmentBytes
            Presieve.fill(bytes, count: count, firstByte: base / 30 + UInt64(segmentStart))
            let origin = bytes - segmentStart
            // Small primes, slice by slice while it is in L1.
            var sliceStart = segmentStart
            while sliceStart < segmentStart + count {
                let sliceEnd = min(sliceStart + PrimeSieve.sliceBytes, segmentStart + count)
                small.cross(origin, stretchStart: sliceStart, end: sliceEnd)
                sliceStart = sliceEnd
            }
            // Medium primes over the whole segment, a group of the same class and wheel position
            // at a time.
            medium.cross(origin, stretchStart: segmentStart, end: segmentStart + count)
            if buckets != nil {
                let end = min((segmentStart + count + Buckets.mask) >> Buckets.shift, bucketSegments)
                for sub in (segmentStart >> Buckets.shift)..<end { buckets!.warmAndCross(segment: sub, origin + sub << Buckets.shift) }
            }
            if !batched { finish(index) }
        }
        if batched {
            while largeLowNext <= root {
                fillBuckets()
                for sub in 0..<bucketSegments { buckets!.warmAndCross(segment: sub, buffer + sub << Buckets.shift) }
            }
            for index in 0..<segments { finish(index) }
        }
    }

    /// Crosses the multiples of one prime p = 30a + r before byte `end`, a whole wheel turn (8
    /// multiples, p bytes) at a time; the function is specialized for each residue r, so the
    /// offsets' extra parts and the masks are constants.
    @inline(__always)
    static func cross<R: WheelResidue>(_: R.Type, a: Int, p: Int, _ origin: UnsafeMutablePointer<UInt8>,
                                       _ turn: inout Int, _ position: inout Int, end: Int) {
        let r = R.value
        let d0 = a &+ r / 30, d1 = a &* 7 &+ r &* 7 / 30, d2 = a &* 11 &+ r &* 11 / 30
        let d3 = a &* 13 &+ r &* 13 / 30, d4 = a &* 17 &+ r &* 17 / 30, d5 = a &* 19 &+ r &* 19 / 30
        let d6 = a &* 23 &+ r &* 23 / 30, d7 = a &* 29 &+ r &* 29 / 30
        let m0 = ~UInt8(1 << PrimeSieve.bit(ofResidue: r % 30)), m1 = ~UInt8(1 << PrimeSieve.bit(ofResidue: r * 7 % 30))
        let m2 = ~UInt8(1 << PrimeSieve.bit(ofResidue: r * 11 % 30)), m3 = ~UInt8(1 << PrimeSieve.bit(ofResidue: r * 13 % 30))
        let m4 = ~UInt8(1 << PrimeSieve.bit(ofResidue: r * 17 % 30)), m5 = ~UInt8(1 << PrimeSieve.bit(ofResidue: r * 19 % 30))
        let m6 = ~UInt8(1 << PrimeSieve.bit(ofResidue: r * 23 % 30)), m7 = ~UInt8(1 << PrimeSieve.bit(ofResidue: r * 29 % 30))
        var t = turn
        var j = position
        // The rest of the turn in progress.
        if j != 0 {
            stopped: do {
                switch j {
                case 1:
                    if t &+ d1 >= end { break stopped }
                    origin[t &+ d1] &= m1; j = 2; fallthrough
                case 2:
                    if t &+ d2 >= end { break stopped }
                    origin[t &+ d2] &= m2; j = 3; fallthrough
                case 3:
                    if t &+ d3 >= end { break stopped }
                    origin[t &+ d3] &= m3; j = 4; fallthrough
                case 4:
                    if t &+ d4 >= end { break stopped }
                    origin[t &+ d4] &= m4; j = 5; fallthrough
                case 5:
                    if t &+ d5 >= end { break stopped }
                    origin[t &+ d5] &= m5; j = 6; fallthrough
                case 6:
                    if t &+ d6 >= end { break stopped }
                    origin[t &+ d6] &= m6; j = 7; fallthrough
                default:
                    if t &+ d7 >= end { break stopped }
                    origin[t &+ d7] &= m7
                }
                t &+= p
                j = 0
            }
            if j != 0 {
                turn = t
                position = j
                return
            }
        }
        // Whole turns.
        let limit = end &- d7
        while t < limit {
            let q = origin + t
            q[d0] &= m0
            q[d1] &= m1
            q[d2] &= m2
            q[d3] &= m3
            q[d4] &= m4
            q[d5] &= m5
            q[d6] &= m6
            q[d7] &= m7
            t &+= p
        }
        // The start of the last turn (its last multiple is past the end).
        stopped: do {
            if t &+ d0 >= end { break stopped }
            origin[t &+ d0] &= m0; j = 1
            if t &+ d1 >= end { break stopped }
            origin[t &+ d1] &= m1; j = 2
            if t &+ d2 >= end { break stopped }
            origin[t &+ d2] &= m2; j = 3
            if t &+ d3 >= end { break stopped }
            origin[t &+ d3] &= m3; j = 4
            if t &+ d4 >= end { break stopped }
            origin[t &+ d4] &= m4; j = 5
            if t &+ d5 >= end { break stopped }
            origin[t &+ d5] &= m5; j = 6
            if t &+ d6 >= end { break stopped }
            origin[t &+ d6] &= m6; j = 7
        }
        turn = t
        position = j
    }

}

/// The small or the medium primes of a block, each in the group of its class and of the wheel
/// position of its next multiple: 64 groups, crossed one after another over each stretch (an
/// L1-sized slice for the small primes, a segment for the medium ones). A prime visits every
/// stretch for a few turns of the wheel or fewer multiples, starting and stopping anywhere in
/// a turn. Crossed in the order of the primes, the switches that pick a prime's class and the
/// multiple to start at went the wrong way for most primes; in groups they go the same way for
/// a whole group.
///
/// An entry is one UInt64: a = p/30 from bit 40 up, and below it the place of the prime's
/// current wheel turn relative to the start of the stretch to be crossed next, plus p (so never
/// negative: a turn in progress started less than p bytes before). While a class's 8 groups
/// are crossed, its primes move into 8 spare groups, which then trade places with the emptied
/// ones. Each group starts with room for what it holds at the block's start or, if more, for
/// its share once the primes have moved (a prime stops before a position in proportion to the
/// gap before it, so positions 1 and 7 hold a fifth of a class each): about 1.2 words per
/// prime in all.
struct GroupedPrimes {
    struct Group {
        var entries: UnsafeMutablePointer<UInt64>
        var count: Int
        var capacity: Int
    }

    static let placeBits: UInt64 = 40
    static let placeMask: UInt64 = (1 << placeBits) - 1

    /// The groups, by class and wheel position (64).
    var groups: UnsafeMutablePointer<Group>
    /// The groups one class's primes move to while its groups are crossed (8).
    var spare: UnsafeMutablePointer<Group>
    let isEmpty: Bool

    /// The groups of `primes`, for a block that starts at number `start` and byte `baseByte`.
    init(_ primes: ArraySlice<UInt32>, start: UInt64, baseByte: UInt64) {
        isEmpty = primes.isEmpty
        func group(of p: Int) -> (w: Int, entry: UInt64) {
            let first = PrimeSieve.firstMultiple(of: UInt64(p), atOrAfter: start, baseByte: baseByte)
            return (PrimeSieve.classOfResidue[p % 30] << 3 | first.position, UInt64(p / 30) << Self.placeBits | UInt64(first.turn + p))
        }
        var counts = [Int](repeating: 0, count: 64)
        for p in primes { counts[group(of: Int(p)).w] += 1 }
        // A group's share once the primes have moved: its position's gap in 30, a class being an
        // eighth of the primes; a twentieth more, for the groups that come out larger (by about
        // the square root of their size: 1% for the medium primes). One that outgrows it doubles.
        func share(_ position: Int) -> Int {
            // The gap before `position` is the step after the position before it.
            let gap = PrimeSieve.gap[(position + 7) & 7]
            return 16 + primes.count * gap * 21 / (8 * 30 * 20)
        }
        groups = .allocate(capacity: 64)
        spare = .allocate(capacity: 8)
        for w in 0..<64 {
            let capacity = max(counts[w], share(w & 7))
            groups[w] = Group(entries: .allocate(capacity: capacity), count: 0, capacity: capacity)
        }
        for k in 0..<8 { spare[k] = Group(entries: .allocate(capacity: share(k)), count: 0, capacity: share(k)) }
        for p in primes {
            let (w, entry) = group(of: Int(p))
            Self.append(entry, to: groups + w)
        }
    }

    func release() {
        for w in 0..<64 { groups[w].entries.deallocate() }
        for w in 0..<8 { spare[w].entries.deallocate() }
        groups.deallocate()
        spare.deallocate()
    }

    @inline(__always)
    static func append(_ entry: UInt64, to group: UnsafeMutablePointer<Group>) {
        if group.pointee.count == group.pointee.capacity { grow(group) }
        group.pointee.entries[group.pointee.count] = entry
        group.pointee.count &+= 1
    }

    @inline(never)
    static func grow(_ group: UnsafeMutablePointer<Group>) {
        let larger = UnsafeMutablePointer<UInt64>.allocate(capacity: group.pointee.capacity * 2)
        larger.moveInitialize(from: group.pointee.entries, count: group.pointee.count)
        group.pointee.entries.deallocate()
        group.pointee.entries = larger
        group.pointee.capacity *= 2
    }

    /// Crosses every prime's multiples in bytes `stretchStart..<end` of the block (`origin` is
    /// where its byte 0 would be), leaving each prime in its group for the next stretch, which
    /// starts at `end`.
    func cross(_ origin: UnsafeMutablePointer<UInt8>, stretchStart: Int, end: Int) {
        guard !isEmpty else { return }
        for c in 0..<8 {
            switch c {
            case 0: crossClass(Residue1.self, c, origin, stretchStart: stretchStart, end: end)
            case 1: crossClass(Residue7.self, c, origin, stretchStart: stretchStart, end: end)
            case 2: crossClass(Residue11.self, c, origin, stretchStart: stretchStart, end: end)
            case 3: crossClass(Residue13.self, c, origin, stretchStart: stretchStart, end: end)
            case 4: crossClass(Residue17.self, c, origin, stretchStart: stretchStart, end: end)
            case 5: crossClass(Residue19.self, c, origin, stretchStart: stretchStart, end: end)
            case 6: crossClass(Residue23.self, c, origin, stretchStart: stretchStart, end: end)
            default: crossClass(Residue29.self, c, origin, stretchStart: stretchStart, end: end)
            }
            // The class's primes are in the spare groups now, and its own groups are empty.
            for k in 0..<8 { swap(&groups[c << 3 | k], &spare[k]) }
        }
    }

    private func crossClass<R: WheelResidue>(_ residue: R.Type, _ c: Int, _ origin: UnsafeMutablePointer<UInt8>, stretchStart: Int, end: Int) {
        let r = R.value
        let targets = spare
        for position in 0..<8 {
            let group = groups + (c << 3 | position)
            let entries = group.pointee.entries
            for i in 0..<group.pointee.count {
                let entry = entries[i]
                let a = Int(truncatingIfNeeded: entry >> Self.placeBits)
                let p = 30 &* a &+ r
                var turn = stretchStart &+ Int(truncatingIfNeeded: entry & Self.placeMask) &- p
                var j = position
                BlockSieve.cross(R.self, a: a, p: p, origin, &turn, &j, end: end)
                Self.append(UInt64(truncatingIfNeeded: a) << Self.placeBits | UInt64(truncatingIfNeeded: turn &- end &+ p), to: targets + j)
            }
            group.pointee.count = 0
        }
    }
}

/// Makes the large primes of a range and files each in the bucket of the stretch its first
/// multiple in a block falls in (or nowhere, when it has none there).
struct LargePrimePlacer {
    let start: UInt64
    let baseByte: UInt64
    let bucketSegments: Int
    /// Primes are gathered a word group at a time (in C, with AVX-512 VBMI2 a word at a time:
    /// `swiftpar_gather_primes`), placed together (eight at a time with AVX-512:
    /// `swiftpar_place_large_primes`), the ones that hit the block kept at the front without a
    /// branch, then filed.
    static let groupWords = 64
    let found: UnsafeMutablePointer<UInt64>
    let places: UnsafeMutablePointer<Int>

    init(start: UInt64, baseByte: UInt64, bucketSegments: Int) {
        self.start = start
        self.baseByte = baseByte
        self.bucketSegments = bucketSegments
        // (Gathering may store seven past the last prime.)
        found = .allocate(capacity: 64 * Self.groupWords + 8)
        places = .allocate(capacity: 64 * Self.groupWords)
    }

    func release() {
        found.deallocate()
        places.deallocate()
    }

    /// Sieves `range` (of large primes) and files each prime in `buckets`.
    func place(_ range: ClosedRange<UInt64>, sievingPrimes: SievingPrimes, into buckets: inout Buckets) {
        PrimeSieve.sieve(range, sievingPrimes: sievingPrimes, small: { _ in }) { words, wordsBase in
            var w = 0
            while w < words.count {
                let end = Swift.min(w + Self.groupWords, words.count)
                place(words.baseAddress! + w, count: end - w, base: wordsBase + 240 * UInt64(w), into: &buckets)
                w = end
            }
        }
    }

    @inline(__always)
    func place(_ words: UnsafePointer<UInt64>, count wordCount: Int, base: UInt64, into buckets: inout Buckets) {
        // Each prime p = 30a + residues[class], gathered as a·8 + class straight from its bit
        // (no division by 30 to take it apart again), in C: one compress per word where the
        // processor allows.
        let count = swiftpar_gather_primes(words, wordCount, base / 30, found)
        guard count > 0 else { return }
        let residues = Self.residues
        let atOrAfter = Self.wheelPositionAtOrAfter
        let turnStart = Self.turnStart
        let wheel = Self.wheel
        let baseByte = Int(truncatingIfNeeded: self.baseByte)
        let start = self.start
        // The first multiplier q ≥ p with q·p ≥ start; below start = p², q = p.
        let largest = 30 &* (found[count &- 1] >> 3) &+ residues[Int(truncatingIfNeeded: found[count &- 1] & 7)]
        let clamped = largest.multipliedReportingOverflow(by: largest).overflow || largest &* largest > start
        // The primes whose multiple falls in the block are kept, at the front, without a branch:
        // near 10^18 those close to 10^9 miss a block of 50 to 60 MiB about half the time, at random
        // (a fifth of all its large primes miss it).
        let limit = UInt64(bucketSegments) << Buckets.shift
        var hits = 0
        if start < 1 << 62 {
            // In C, eight primes at a time where the processor allows (the same arithmetic as
            // `placeOne` below, with the quotient found in floating point and made exact).
            hits = places.withMemoryRebound(to: Int64.self, capacity: count) { places in
                swiftpar_place_large_primes(found, places, found, count, Int64(bitPattern: start), Int64(baseByte), clamped ? 1 : 0, limit)
            }
        } else {
            for i in 0..<count {
                let packed = found[i]
                let a = Int64(bitPattern: packed >> 3)
                let residueClass = Int(truncatingIfNeeded: packed & 7)
                let p = UInt64(bitPattern: 30 &* a) &+ residues[residueClass]
                let q = Swift.max(start / p + (start % p == 0 ? 0 : 1), p)
                placeOne(hits, a: a, residueClass: residueClass, p: Int64(bitPattern: p), q: q)
            }
        }
        // Where the first multiple of p·q's wheel turn falls, and what the bucket entry holds;
        // kept (at `slot`) when it falls in the block.
        @inline(__always)
        func placeOne(_ slot: Int, a: Int64, residueClass: Int, p: Int64, q: UInt64) {
            let c = q / 30
            let j = atOrAfter[Int(truncatingIfNeeded: q &- 30 &* c)]
            let kind = residueClass &<< 3 | j
            let place = (Int(truncatingIfNeeded: c) &* Int(truncatingIfNeeded: p) &- baseByte)
                &+ Int(truncatingIfNeeded: a) &* wheel[j] &+ turnStart[kind]
            places[slot] = place
            found[slot] = UInt64(bitPattern: a) &<< 6 | UInt64(kind)
            hits &+= UInt64(UInt(bitPattern: place)) < limit ? 1 : 0
        }
        for i in 0..<hits {
            let position = places[i]
            let entry = found[i]
            buckets.add(a: UInt32(truncatingIfNeeded: entry >> 6), classPosition: Int(truncatingIfNeeded: entry & 63),
                        offset: position & Buckets.mask, segment: position >> Buckets.shift)
        }
    }

    /// The tables `place` reads, as plain memory (no bounds or lazy-initialisation checks).
    nonisolated(unsafe) static let residues = table(PrimeSieve.residues)
    nonisolated(unsafe) static let wheelPositionAtOrAfter = table(PrimeSieve.wheelPositionAtOrAfter)
    nonisolated(unsafe) static let turnStart = table(PrimeSieve.turnOffsets)
    nonisolated(unsafe) static let wheel = table(PrimeSieve.wheel)

    static func table<T>(_ values: [T]) -> UnsafeMutablePointer<T> {
        let pointer = UnsafeMutablePointer<T>.allocate(capacity: values.count)
        pointer.initialize(from: values, count: values.count)
        return pointer
    }
}

/// The large primes of a block, each in the bucket of the next stretch one of its multiples
/// falls in. An entry is one UInt64: a = p/30 in the high 32 bits, the class and wheel position
/// in 6 bits, and the byte offset in its stretch below them.
///
/// A bucket is a chain of 8 KiB chunks, aligned to 8 KiB: 1023 entries and, in the last slot,
/// the address of the chunk below. Each bucket keeps only its write cursor; a chunk is full
/// when the cursor reaches its last slot, which the cursor's address alone tells.
struct Buckets {
    static let chunkBytes = 8192
    static let linkSlot = chunkBytes / 8 - 1
    /// log2 of the bytes a bucket covers: L2-sized, so the scattered writes stay in L2.
    static let shift = 18
    static let mask = (1 << shift) - 1
    let segments: Int
    /// Per stretch: where its next entry goes.
    var cursor: UnsafeMutablePointer<UnsafeMutablePointer<UInt64>>
    /// A chunk that is always full and links to nothing: the cursor of an empty bucket.
    let none: UnsafeMutablePointer<UInt64>
    var slabs: [UnsafeMutableRawPointer] = []
    var free: [UnsafeMutablePointer<UInt64>] = []
    let chunksPerSlab: Int

    /// Buckets for `segments` stretches, with a first slab for about `entries` entries.
    init(segments: Int, entries: Int) {
        precondition(2 * (PrimeSieve.mediumLimit / 30) > UInt64(Self.mask), "a large prime could hit a stretch twice")
        self.segments = segments
        let slab = UnsafeMutableRawPointer.allocate(byteCount: 2 * Self.chunkBytes, alignment: 16)
        slabs.append(slab)
        none = Self.aligned(slab).bindMemory(to: UInt64.self, capacity: Self.chunkBytes / 8)
        none[Self.linkSlot] = 0
        cursor = .allocate(capacity: segments)
        cursor.initialize(repeating: none + Self.linkSlot, count: segments)
        chunksPerSlab = max(64, entries / Self.linkSlot / 4)
        free.reserveCapacity(entries / Self.linkSlot + segments + 64)
    }

    /// The first chunk boundary at or after `pointer`.
    static func aligned(_ pointer: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer {
        UnsafeMutableRawPointer(bitPattern: (UInt(bitPattern: pointer) + UInt(chunkBytes - 1)) & ~UInt(chunkBytes - 1))!
    }

    /// Gives the memory back.
    func release() {
        for slab in slabs { slab.deallocate() }
        cursor.deallocate()
    }

    mutating func newChunk() -> UnsafeMutablePointer<UInt64> {
        if let chunk = free.popLast() { return chunk }
        // Plain allocations, aligned by hand (one chunk more than needed).
        let slab = UnsafeMutableRawPointer.allocate(byteCount: (chunksPerSlab + 1) * Self.chunkBytes, alignment: 16)
        slabs.append(slab)
        let first = Self.aligned(slab).bindMemory(to: UInt64.self, capacity: chunksPerSlab * Self.chunkBytes / 8)
        for k in stride(from: chunksPerSlab - 1, to: 0, by: -1) { free.append(first + k * (Self.chunkBytes / 8)) }
        return first
    }

    @inline(__always)
    mutating func add(a: UInt32, classPosition: Int, offset: Int, segment: Int) {
        var c = cursor[segment]
        // Full (or the empty bucket's marker): a fresh chunk on top, linked to this one.
        if UInt(bitPattern: c) & UInt(Self.chunkBytes - 1) == UInt(Self.linkSlot * 8) { c = startChunk(on: c) }
        c.pointee = UInt64(a) << 32 | UInt64(classPosition) << 26 | UInt64(offset)
        // The line this bucket's writes reach next: it is on its way before they get there.
        // (An address, not a pointer: at a chunk's end it may lie past the allocation.)
        swiftpar_prefetch_for_write(UnsafeRawPointer(bitPattern: UInt(bitPattern: c) &+ 64))
        cursor[segment] = c + 1
    }

    /// Brings the stretch of segment `segment` into the cache in order, then crosses its
    /// entries: scattered writes to memory outside the cache would each wait for a line. A
    /// bucket with too few entries to touch most of the stretch's lines is crossed at once.
    mutating func warmAndCross(segment: Int, _ bytes: UnsafeMutablePointer<UInt8>) {
        let top = cursor[segment]
        guard top != none + Self.linkSlot else { return }
        // A bucket of one partly filled chunk (a small batch over a block kept whole) touches
        // too few of the stretch's lines for reading them all first to pay.
        let chunk = UnsafeMutablePointer<UInt64>(bitPattern: UInt(bitPattern: top) & ~UInt(Self.chunkBytes - 1))!
        if chunk[Self.linkSlot] == 0 && top - chunk < Self.warmingEntries {
            return cross(segment: segment, bytes)
        }
        var sum: UInt64 = 0
        for line in stride(from: 0, to: 1 << Self.shift, by: 64) {
            sum &+= UnsafeRawPointer(bytes).load(fromByteOffset: line, as: UInt64.self)
        }
        keep(sum)
        cross(segment: segment, bytes)
    }

    /// Crosses stretch `segment`'s entries in `bytes` and moves each to the bucket of its next
    /// multiple (dropping it past the block).
    mutating func cross(segment: Int, _ bytes: UnsafeMutablePointer<UInt8>) {
        let shift = Self.shift
        let mask = Self.mask
        let empty = none + Self.linkSlot
        let segments = self.segments
        let cursor = self.cursor
        let steps = Self.steps
        var c = cursor[segment]
        cursor[segment] = empty
        while c != empty {
            let chunk = UnsafeMutablePointer<UInt64>(bitPattern: UInt(bitPattern: c) & ~UInt(Self.chunkBytes - 1))!
            let count = c - chunk
            var e = 0
            while e < count {
                // The byte an entry a few ahead clears: its line is on its way meanwhile.
                if e &+ Self.prefetchDistance < count {
                    swiftpar_prefetch_for_write(bytes + (Int(truncatingIfNeeded: chunk[e &+ Self.prefetchDistance]) & 0x3FF_FFFF))
                }
                let entry = chunk[e]
                let step = steps[Int(truncatingIfNeeded: entry >> 26) & 63]
                let offset = Int(truncatingIfNeeded: entry) & 0x3FF_FFFF
                // One multiple per stretch at most: a large prime's smallest step, 2·(p/30)
                // bytes, is longer than a stretch.
                bytes[offset] &= step.mask
                let moved = offset &+ Int(truncatingIfNeeded: entry >> 32) &* step.gap &+ step.carry
                let next = segment &+ (moved >> shift)
                if next < segments {
                    // The same prime, its next wheel position, its place in that stretch.
                    let newEntry = (entry & 0xFFFF_FFFF_0000_0000) | step.nextClassPosition | UInt64(truncatingIfNeeded: moved & mask)
                    var target = cursor[next]
                    if UInt(bitPattern: target) & UInt(Self.chunkBytes - 1) == UInt(Self.linkSlot * 8) {
                        target = startChunk(on: target)
                    }
                    target.pointee = newEntry
                    swiftpar_prefetch_for_write(UnsafeRawPointer(bitPattern: UInt(bitPattern: target) &+ 64))
                    cursor[next] = target + 1
                }
                e &+= 1
            }
            let below = chunk[Self.linkSlot]
            free.append(chunk)
            c = below == 0 ? empty : UnsafeMutablePointer<UInt64>(bitPattern: UInt(below))! + Self.linkSlot
        }
    }

    /// Fewer entries than this in a bucket's only chunk: cross without reading the stretch first.
    static let warmingEntries = 768

    /// How many entries ahead the crossing loop asks for the byte it will clear.
    static let prefetchDistance = 16

    /// A fresh chunk on top of the full one (or the empty bucket's marker) `full` ends.
    @inline(never)
    mutating func startChunk(on cursor: UnsafeMutablePointer<UInt64>) -> UnsafeMutablePointer<UInt64> {
        let fresh = newChunk()
        let full = cursor - Self.linkSlot
        fresh[Self.linkSlot] = full == none ? 0 : UInt64(UInt(bitPattern: full))
        return fresh
    }

    /// What crossing one multiple of a prime at each class and wheel position needs: the bit to
    /// clear, the step to the next multiple (a·gap + carry bytes, for p = 30a + r), and the
    /// next class position as it sits in an entry.
    struct Step {
        var mask: UInt8
        var gap: Int
        var carry: Int
        var nextClassPosition: UInt64
    }

    nonisolated(unsafe) static let steps: UnsafeMutablePointer<Step> = {
        let table = UnsafeMutablePointer<Step>.allocate(capacity: 64)
        for classPosition in 0..<64 {
            let next = (classPosition & 56) | ((classPosition + 1) & 7)
            table[classPosition] = Step(mask: PrimeSieve.masks[classPosition], gap: PrimeSieve.gap[classPosition & 7],
                                        carry: PrimeSieve.carry[classPosition], nextClassPosition: UInt64(next) << 26)
        }
        return table
    }()
}

extension PrimeSieve {
    /// Where the first multiples of large primes (`a << 3 | class` each, above 2^22) at or after
    /// `start` (< 2^62) fall, as (byte, entry) pairs, keeping those whose byte is below `limit`:
    /// by the code the sieve uses (eight at a time where the processor allows), by the same code
    /// one at a time, and by exact integer division. For tests: the three must agree.
    package static func placements(of packed: [UInt64], start: UInt64, baseByte: UInt64, clamped: Bool, limit: UInt64 = .max)
        -> (used: [[Int64]], oneAtATime: [[Int64]], exact: [[Int64]]) {
        func run(_ place: (UnsafePointer<UInt64>, UnsafeMutablePointer<Int64>, UnsafeMutablePointer<UInt64>, Int, Int64, Int64, Int32, UInt64) -> Int) -> [[Int64]] {
            var places = [Int64](repeating: 0, count: packed.count)
            var entries = [UInt64](repeating: 0, count: packed.count)
            let kept = place(packed, &places, &entries, packed.count, Int64(bitPattern: start), Int64(bitPattern: baseByte), clamped ? 1 : 0, limit)
            return zip(places, entries).prefix(kept).map { [$0, Int64(bitPattern: $1)] }
        }
        let exact = packed.map { word -> [Int64] in
            let a = word >> 3, residueClass = Int(word & 7)
            let p = 30 * a + PrimeSieve.residues[residueClass]
            var q = start / p + (start % p == 0 ? 0 : 1)
            if clamped { q = Swift.max(q, p) }
            let j = PrimeSieve.wheelPositionAtOrAfter[Int(q % 30)]
            let w = UInt64(PrimeSieve.wheel[j])
            let place = (q / 30) &* p &- baseByte &+ a &* w &+ PrimeSieve.residues[residueClass] * w / 30
            return [Int64(bitPattern: place), Int64(bitPattern: a << 6 | UInt64(residueClass << 3 | j))]
        }.filter { UInt64(bitPattern: $0[0]) < limit }
        return (run(swiftpar_place_large_primes), run(swiftpar_place_large_primes_one_at_a_time), exact)
    }

    /// The numbers of the set bits of `words` as `a << 3 | class` (bit b of word w: a = `baseA`
    /// + 8w + b / 8, class b % 8), by the code the sieve uses and one bit at a time. For tests.
    package static func gathered(_ words: [UInt64], baseA: UInt64) -> (used: [UInt64], oneAtATime: [UInt64]) {
        func run(_ gather: (UnsafePointer<UInt64>, Int, UInt64, UnsafeMutablePointer<UInt64>) -> Int) -> [UInt64] {
            var found = [UInt64](repeating: 0, count: 64 * words.count + 8)
            let count = gather(words, words.count, baseA, &found)
            return Array(found.prefix(count))
        }
        return (run(swiftpar_gather_primes), run(swiftpar_gather_primes_one_at_a_time))
    }
}
