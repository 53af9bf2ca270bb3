// A large `[String: Value]` arrives in the order of the sender's hash table, which has nothing
// to do with the order of the table the receiver builds: every insertion then lands on a random
// line of a table larger than the cache, and decoding a dictionary of a few hundred thousand
// entries waits on memory for most of its time. Inserted in the order of the receiver's own
// table, the same entries walk that table front to back: a `[String: Int]` of 233,017 entries
// went from 45-55 ms to 22-24 ms one way under mpirun, and from 31-35 ms to 22-24 ms on the
// local backend (`swiftpar bench pingpong --case dictionary_4MiB`, 2 cores).
//
// The order is a prediction from how the standard library lays out a native dictionary: a table
// of a power-of-two number of buckets, filled to at most three quarters, each key's first
// bucket being `key._rawHashValue(seed:)` masked, with the seed taken from the storage's
// address. Only the speed rests on it: the entries go in through the public subscript either
// way, and `TableOrder.isPredictable` checks the prediction once per process before it is used.

/// Gathers the entries of a large `[String: Value]` being decoded, then inserts them into the
/// dictionary in the order of its own hash table.
final class TableOrderedEntries<Value> {
    /// Below this many entries (a table of fewer than 2^17 buckets, about 3 MB for
    /// `[String: Int]`) the table stays in L2 on the machines measured, and the extra pass of
    /// hashing costs more than the order saves.
    static var threshold: Int { 48 * 1024 }

    private var entries: UnsafeMutablePointer<(String, Value)>
    private var capacity: Int
    private var count = 0

    /// Room for `expected` entries, at least one.
    init(expected: Int) {
        capacity = Swift.max(expected, 1)
        entries = .allocate(capacity: capacity)
    }

    deinit {
        entries.deinitialize(count: count)
        entries.deallocate()
    }

    /// Adds one entry; a later entry with the same key replaces an earlier one, as in the
    /// message's order.
    func append(_ key: String, _ value: Value) {
        if count == capacity {
            let larger = UnsafeMutablePointer<(String, Value)>.allocate(capacity: capacity * 2)
            larger.moveInitialize(from: entries, count: count)
            entries.deallocate()
            entries = larger
            capacity *= 2
        }
        (entries + count).initialize(to: (key, value))
        count += 1
    }

    /// The dictionary of the entries gathered (which are moved out).
    func makeDictionary() -> [String: Value] {
        var result: [String: Value] = [:]
        result.reserveCapacity(count)
        let total = count
        count = 0
        guard let order = TableOrder(of: &result) else {
            for i in 0..<total {
                let (key, value) = (entries + i).move()
                result[key] = value
            }
            return result
        }
        // A stable counting sort by group of neighbouring buckets: each group's entries land
        // together, so the scattered writes go to a few thousand places at a time, and the
        // insertions then stay within one group's lines while they last.
        let group = UnsafeMutablePointer<UInt16>.allocate(capacity: total)
        var starts = [Int](repeating: 0, count: order.groups + 1)
        for i in 0..<total {
            let g = order.group(of: entries[i].0)
            group[i] = UInt16(truncatingIfNeeded: g)
            starts[g + 1] += 1
        }
        for g in 0..<order.groups { starts[g + 1] += starts[g] }
        let sorted = UnsafeMutablePointer<(String, Value)>.allocate(capacity: total)
        for i in 0..<total {
            let g = Int(group[i])
            (sorted + starts[g]).moveInitialize(from: entries + i, count: 1)
            starts[g] += 1
        }
        // The gathered entries' memory goes before the table fills.
        group.deallocate()
        entries.deallocate()
        entries = sorted
        capacity = total
        for i in 0..<total {
            let (key, value) = (sorted + i).move()
            result[key] = value
        }
        return result
    }
}

/// Where an empty dictionary with its capacity reserved will put each `String` key: which group
/// of neighbouring buckets (at most 4,096 groups).
struct TableOrder {
    let seed: Int
    let mask: Int
    let shift: Int
    var groups: Int { (mask >> shift) + 1 }

    /// The order of `dictionary`'s table, or nil when it cannot be predicted.
    init?<Value>(of dictionary: inout [String: Value]) {
        guard Self.isPredictable, let seed = Self.seed(of: &dictionary) else { return nil }
        self.init(seed: seed, capacity: dictionary.capacity)
    }

    private init(seed: Int, capacity: Int) {
        self.seed = seed
        // The fewest buckets that hold `capacity` entries at three quarters full.
        var buckets = 1
        while buckets / 4 * 3 < capacity && buckets < 1 << 40 { buckets <<= 1 }
        mask = buckets - 1
        shift = Swift.max(0, buckets.trailingZeroBitCount - 12)
    }

    @inline(__always)
    func group(of key: String) -> Int {
        (key._rawHashValue(seed: seed) & mask) >> shift
    }

    /// The seed of a native dictionary's table: its storage's address.
    private static func seed<Value>(of dictionary: inout [String: Value]) -> Int? {
        guard MemoryLayout<[String: Value]>.size == MemoryLayout<Int>.size else { return nil }
        return withUnsafeBytes(of: &dictionary) { $0.load(as: Int.self) }
    }

    /// Whether this process's dictionaries are laid out as predicted: 32 keys in a roomy table
    /// come out, in the table's order, in the order of the buckets predicted for them (two steps
    /// back allowed for collisions; keys in a random order would show about 15). Deterministic
    /// hashing, or another layout in a later standard library, fails this, and dictionaries are
    /// then filled in the message's order.
    static let isPredictable: Bool = {
        var probe: [String: Int] = [:]
        probe.reserveCapacity(6000)
        guard let seed = seed(of: &probe) else { return false }
        let order = TableOrder(seed: seed, capacity: probe.capacity)
        for i in 0..<32 { probe["swiftpar-order-\(i)"] = i }
        guard seed == Self.seed(of: &probe) else { return false }
        let buckets = probe.keys.map { $0._rawHashValue(seed: seed) & order.mask }
        let descents = zip(buckets, buckets.dropFirst()).filter { $0 > $1 }.count
        return descents <= 2
    }()
}
