#if canImport(Glibc)
import Glibc
#endif
import SwiftPar

let poolScenarios: [String: @Sendable (Communicator) throws -> String] = [
    "pool-map": poolMap,
    "pool-stream": poolStream,
    "pool-errors": poolErrors,
    "pool-worker-dies": poolWorkerDies,
    "pool-worker-dies-retry": poolWorkerDiesRetry,
    "pool-reduce-into": poolReduceInto,
    "pool-item-uncaught": poolItemUncaught,
    "pool-rank-zero-fails": poolRankZeroFails,
    "pool-core-share": poolCoreShare,
]

/// Encodes as an Int; decoding 7 fails.
struct Fragile: Codable, Equatable {
    var value: Int
    init(value: Int) { self.value = value }
    init(from decoder: any Decoder) throws {
        value = try decoder.singleValueContainer().decode(Int.self)
        if value == 7 { throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "fragile 7")) }
    }
    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(value)
    }
}

/// A value whose encoding takes `milliseconds`.
struct SlowToSend: Codable, Equatable {
    var value: Int
    var milliseconds: Int
    func encode(to encoder: any Encoder) throws {
        usleep(UInt32(milliseconds * 1000))
        var container = encoder.unkeyedContainer()
        try container.encode(value)
        try container.encode(milliseconds)
    }
    init(value: Int, milliseconds: Int) {
        self.value = value
        self.milliseconds = milliseconds
    }
    init(from decoder: any Decoder) throws {
        var container = try decoder.unkeyedContainer()
        value = try container.decode(Int.self)
        milliseconds = try container.decode(Int.self)
    }
}

/// Decodes as an Int; encoding 7 fails.
struct Unsendable: Codable, Equatable {
    var value: Int
    init(value: Int) { self.value = value }
    init(from decoder: any Decoder) throws { value = try decoder.singleValueContainer().decode(Int.self) }
    func encode(to encoder: any Encoder) throws {
        if value == 7 { throw EncodingError.invalidValue(value, .init(codingPath: [], debugDescription: "unsendable 7")) }
        var container = encoder.singleValueContainer()
        try container.encode(value)
    }
}

/// Rank 0's own code stops a map: a `forEachResult` body or a `combine` that throws there, a
/// result it cannot decode. Rank 0 throws its own error; the workers return (forms that give
/// them nothing) or throw `stoppedOnRankZero` (forms that give them a value). An item rank 0
/// cannot send or a result a worker cannot send fails like a throwing item, on every rank. A
/// pool call inside a transform fails its item. After each, the pool gives the right results.
func poolRankZeroFails(_ world: Communicator) throws -> String {
    struct Stop: Error {}
    let pool = Pool(world)
    let one = MapOptions(chunkSize: .fixed(1))
    var checks = 0
    var workersFold = MapOptions(chunkSize: .fixed(1))
    workersFold.rankZeroWorks = false
    func poolStillWorks(_ after: String) throws {
        try expectEqual(try pool.mapToAll(0..<50, options: one) { $0 * 100 }, (0..<50).map { $0 * 100 }, world, "mapToAll after \(after)")
        // A reduction that takes in the workers' partials: one left over from the map before
        // would be taken for this one's.
        let total = try pool.mapReduce(0..<50, into: 0, options: workersFold, { $0 }) { $0 += $1 }
        if world.rank == 0 { try expectEqual(total, 1225, world, "mapReduce(into:) after \(after)") }
        checks += 1
    }
    // A forEachResult body that throws on rank 0, caught there: the workers return.
    do {
        try pool.forEachResult(0..<1000, ordered: true, options: one, { $0 }) { index, _ in
            if index == 10 { throw Stop() }
        }
        try expect(world.rank != 0, world, "rank 0's body threw, yet forEachResult returned there")
    } catch is Stop {
        try expect(world.rank == 0, world, "rank 0's error reached a worker")
    }
    try poolStillWorks("a forEachResult stopped by its body")
    // A pool call inside a transform fails its item, on every rank.
    do {
        _ = try pool.map(0..<8, options: one) { item in try pool.mapToAll(0..<3) { $0 + item }.count }
        throw CheckFailed(description: "rank \(world.rank): a nested pool call did not fail")
    } catch let PoolError.itemFailed(_, _, message) {
        try expect(message == "Pool.mapToAll was called inside the transform of Pool.map on the same communicator; pool calls do not nest",
                   world, "nested call: \(message)")
    }
    try poolStillWorks("a nested pool call")
    guard world.size > 1 else { return "checks=\(checks)" }
    // The rest needs workers: with rankZeroWorks off, every item goes to one.
    var workersOnly = MapOptions(chunkSize: .fixed(1))
    workersOnly.rankZeroWorks = false
    // A result rank 0 cannot decode: rank 0 throws the decoding error, the workers return.
    do {
        let results = try pool.map(0..<20, options: workersOnly) { Fragile(value: $0) }
        try expect(world.rank != 0 && results == nil, world, "a result that does not decode: map returned \(String(describing: results))")
    } catch let error as CommunicatorError {
        guard case let .collectiveDecodingFailed(operation, type, source, _, reason, rank) = error else { throw error }
        try expect(world.rank == 0 && rank == 0 && operation == "Pool.map" && type == "results of type Fragile" && source != 0 && reason == "fragile 7",
                   world, "a result that does not decode: \(error)")
    }
    try poolStillWorks("a result that did not decode")
    // The same in mapToAll: the workers, which get the results too, throw stoppedOnRankZero.
    do {
        _ = try pool.mapToAll(0..<20, options: workersOnly) { Fragile(value: $0) }
        throw CheckFailed(description: "rank \(world.rank): mapToAll with a result that does not decode returned")
    } catch let CommunicatorError.collectiveDecodingFailed(_, _, _, _, reason, _) where world.rank == 0 {
        try expectEqual(reason, "fragile 7", world, "decoding error")
    } catch let PoolError.stoppedOnRankZero(message) where world.rank != 0 {
        try expect(message.hasPrefix("Pool.mapToAll: the ") && message.hasSuffix(" do not decode as results of type Fragile: fragile 7"),
                   world, "stopped: \(message)")
    }
    try poolStillWorks("mapToAll stopped on rank 0")
    // A combine that throws on rank 0 as it folds the workers' partials, with the total for
    // every rank: rank 0 throws it, the workers throw stoppedOnRankZero.
    do {
        _ = try pool.mapReduce(0..<20, into: 0, everyRank: true, options: workersOnly, { $0 }) { total, part in
            if world.rank == 0 { throw Stop() }
            total += part
        }
        throw CheckFailed(description: "rank \(world.rank): a combine that threw on rank 0 did not stop mapReduce")
    } catch is Stop where world.rank == 0 {
    } catch let PoolError.stoppedOnRankZero(message) where world.rank != 0 {
        try expectEqual(message, "Stop()", world, "stopped by rank 0's combine")
    }
    try poolStillWorks("a combine that threw on rank 0")
    // The same while a slow last item still runs: rank 0 folds the partial of a worker done
    // while another still works.
    do {
        _ = try pool.mapReduce(0..<20, into: 0, everyRank: true, options: workersOnly, { item -> Int in
            if item == 19 { usleep(300_000) }
            return item
        }) { total, part in
            if world.rank == 0 { throw Stop() }
            total += part
        }
        throw CheckFailed(description: "rank \(world.rank): a combine that threw on rank 0 before the end did not stop mapReduce")
    } catch is Stop where world.rank == 0 {
    } catch let PoolError.stoppedOnRankZero(message) where world.rank != 0 {
        try expectEqual(message, "Stop()", world, "stopped by rank 0's combine before the end")
    }
    try poolStillWorks("a combine that threw on rank 0 before the end")
    // An item that fails (after 100 ms) while the other worker, asked for its partial, is
    // still encoding it (300 ms): that partial is taken in and dropped, and the next reduction
    // does not take it for its own.
    do {
        _ = try pool.mapReduce(0..<20, into: SlowToSend(value: 0, milliseconds: 0), options: workersOnly, { item -> SlowToSend in
            if item == 19 {
                usleep(100_000)
                throw Stop()
            }
            return SlowToSend(value: item, milliseconds: 300)
        }) { total, part in
            total = SlowToSend(value: total.value + part.value, milliseconds: max(total.milliseconds, part.milliseconds))
        }
        throw CheckFailed(description: "rank \(world.rank): an item that failed with a partial on its way did not fail mapReduce")
    } catch let PoolError.itemFailed(index, rank, message) {
        try expect(index == 19 && rank != 0 && message == "Stop()", world, "item that failed with a partial on its way: \(index) on \(rank): \(message)")
    }
    try poolStillWorks("an item that failed with a partial on its way")
    // A combine that throws on a worker as it folds an item's result there: that item fails,
    // named as combine's failure, not its transform's, on every rank. (A rank's first result
    // starts its partial without combine: with chunks of one, item 7 is no worker's first on
    // the at most 3 ranks these checks run on.)
    do {
        _ = try pool.mapReduce(0..<20, into: 0, options: workersOnly, { $0 }) { total, part in
            if part == 7 { throw Stop() }
            total += part
        }
        throw CheckFailed(description: "rank \(world.rank): a combine that threw on a worker did not fail mapReduce")
    } catch let PoolError.itemFailed(index, rank, message) {
        try expect(index == 7 && rank != 0 && message == "combine threw on its result: Stop()",
                   world, "combine that threw on a worker: \(index) on \(rank): \(message)")
    }
    try poolStillWorks("a combine that threw on a worker")
    // An item rank 0 cannot send fails as a throwing item, on every rank.
    do {
        _ = try pool.map((0..<20).map(Unsendable.init), options: workersOnly) { $0.value }
        throw CheckFailed(description: "rank \(world.rank): an item that cannot be sent did not fail")
    } catch let PoolError.itemFailed(index, rank, message) {
        try expect(index == 7 && rank == 0 && message.hasPrefix("it cannot be sent to rank ") && message.hasSuffix(": unsendable 7"),
                   world, "item that cannot be sent: \(index) on \(rank): \(message)")
    }
    try poolStillWorks("an item that could not be sent")
    // A result a worker cannot send fails its item, naming the worker, on every rank.
    do {
        _ = try pool.map(0..<20, options: workersOnly) { Unsendable(value: $0) }
        throw CheckFailed(description: "rank \(world.rank): a result that cannot be sent did not fail")
    } catch let PoolError.itemFailed(index, rank, message) {
        try expect(index == 7 && rank != 0 && message == "its result cannot be sent to rank 0: unsendable 7",
                   world, "result that cannot be sent: \(index) on \(rank): \(message)")
    }
    // Per-item results: only that item fails.
    let results = try pool.mapResults(0..<20, options: workersOnly) { Unsendable(value: $0) }
    if world.rank == 0, let results {
        let failed = results.enumerated().filter { if case .failure = $0.element { return true } else { return false } }.map(\.offset)
        try expectEqual(failed, [7], world, "per-item results with a result that cannot be sent")
        try expectEqual(results.compactMap { try? $0.get().value }, (0..<20).filter { $0 != 7 }, world, "the other results")
    }
    try poolStillWorks("a result that could not be sent")
    // An item a worker cannot decode fails, naming the worker; per-item results, only it.
    do {
        _ = try pool.map((0..<20).map(Fragile.init), options: workersOnly) { $0.value }
        throw CheckFailed(description: "rank \(world.rank): an item that cannot be decoded did not fail")
    } catch let PoolError.itemFailed(index, rank, message) {
        try expect(index == 7 && rank != 0 && message == "it cannot be decoded on rank \(rank): fragile 7",
                   world, "item that cannot be decoded: \(index) on \(rank): \(message)")
    }
    let decoded = try pool.mapResults((0..<20).map(Fragile.init), options: workersOnly) { $0.value * 2 }
    if world.rank == 0, let decoded {
        try expectEqual(decoded.map { (try? $0.get()) ?? -1 }, (0..<20).map { $0 == 7 ? -1 : $0 * 2 }, world, "per-item results, item 7 undecodable")
    }
    try poolStillWorks("an item that could not be decoded")
    // A partial total a worker cannot encode ends the map on every rank: rank 0 says which.
    do {
        let total = try pool.mapReduce([7], into: Unsendable(value: 0), options: workersOnly, { Unsendable(value: $0) }) { total, part in
            total.value += part.value
        }
        try expect(world.rank != 0 && total == nil, world, "a partial total that cannot be sent: mapReduce returned \(String(describing: total))")
    } catch let CommunicatorError.encodingFailed(type, reason, rank) {
        try expect(world.rank == 0 && type == "Unsendable" && rank != 0 && reason == "its partial total cannot be sent to rank 0: unsendable 7",
                   world, "partial total that cannot be sent: \(type) on \(rank): \(reason)")
    }
    try poolStillWorks("a partial total that could not be sent")
    return "checks=\(checks)"
}

/// mapReduce(into:): word counts merged in place, the total on rank 0 or on every rank, the
/// initial value used once, nothing for no items.
func poolReduceInto(_ world: Communicator) throws -> String {
    let pool = Pool(world)
    let lines = (0..<2000).map { i in (0..<(i % 7 + 1)).map { "w\(($0 * 31 + i) % 50)" }.joined(separator: " ") }
    var expected: [String: Int] = [:]
    for line in lines { for word in line.split(separator: " ") { expected[String(word), default: 0] += 1 } }
    let counts = try pool.mapReduce(lines, into: [String: Int](), { line -> [String: Int] in
        var counts: [String: Int] = [:]
        for word in line.split(separator: " ") { counts[String(word), default: 0] += 1 }
        return counts
    }) { total, part in total.merge(part, uniquingKeysWith: +) }
    if world.rank == 0 {
        try expectEqual(counts, expected, world, "word counts on rank 0")
    } else {
        try expect(counts == nil, world, "a worker got the total without asking")
    }
    // The initial value is used once, and every rank gets the total when asked.
    let sum = try pool.mapReduce(1...1000, into: 1_000_000, everyRank: true, { $0 }) { $0 += $1 }
    try expectEqual(sum, 1_000_000 + 500_500, world, "sum with an initial value, on every rank")
    let nothing = try pool.mapReduce([Int](), into: 7, everyRank: true, { $0 }) { $0 += $1 }
    // A total that is an array of plain numbers, on every rank.
    let histogram = try pool.mapReduce(0..<1000, into: [Int](repeating: 0, count: 10), everyRank: true, { item -> [Int] in
        var one = [Int](repeating: 0, count: 10)
        one[item % 10] = 1
        return one
    }) { total, part in for i in total.indices { total[i] += part[i] } }
    try expectEqual(histogram, [Int](repeating: 100, count: 10), world, "a histogram on every rank")
    try expectEqual(nothing, 7, world, "no items")
    // Partials per chunk (with retries) give the same total.
    let retried = try pool.mapReduce(lines, into: [String: Int](), options: MapOptions(retryLostItems: true), { line -> [String: Int] in
        Dictionary(line.split(separator: " ").map { (String($0), 1) }, uniquingKeysWith: +)
    }) { total, part in total.merge(part, uniquingKeysWith: +) }
    if world.rank == 0 { try expectEqual(retried, expected, world, "word counts with per-chunk partials") }
    // One slow last item: the other workers are asked for their partials once every item is
    // out, and theirs are folded in while it runs. Rank 0 working or not. A lazily filtered
    // collection counts itself as empty; its items are all counted, once.
    for rankZeroWorks in [true, false] {
        var options = MapOptions(chunkSize: .fixed(1))
        options.rankZeroWorks = rankZeroWorks
        let slow = try pool.mapReduce(0..<40, into: 0, options: options, { item -> Int in
            if item == 39 { usleep(200_000) }
            return item
        }) { $0 += $1 }
        if world.rank == 0 { try expectEqual(slow, 780, world, "a total with one slow last item, rank 0 working: \(rankZeroWorks)") }
    }
    let evens = try pool.mapReduce((0..<300).lazy.filter { $0 % 2 == 0 }, into: 0, { $0 }) { $0 += $1 }
    if world.rank == 0 { try expectEqual(evens, 22350, world, "a total over a lazily filtered collection") }
    // A collection that undercounts itself (as `underestimatedCount` may): the count it gives
    // is not taken for its end, and no item is lost or counted twice.
    let undercounted = Undercounted(base: Array(0..<300))
    for rankZeroWorks in [true, false] {
        var options = MapOptions()
        options.rankZeroWorks = rankZeroWorks
        let total = try pool.mapReduce(undercounted, into: [Int](), options: options, { [$0] }) { $0 += $1 }
        if world.rank == 0 { try expectEqual(total?.sorted(), Array(0..<300), world, "items of an undercounted collection, rank 0 working: \(rankZeroWorks)") }
        let squares = try pool.map(undercounted, options: options) { $0 * $0 }
        if world.rank == 0 { try expectEqual(squares, (0..<300).map { $0 * $0 }, world, "map of an undercounted collection, rank 0 working: \(rankZeroWorks)") }
    }
    return "words=\(expected.count)"
}

/// A collection whose `underestimatedCount` is a third of its count.
struct Undercounted: Collection {
    let base: [Int]
    var startIndex: Int { base.startIndex }
    var endIndex: Int { base.endIndex }
    var underestimatedCount: Int { base.count / 3 }
    subscript(position: Int) -> Int { base[position] }
    func index(after position: Int) -> Int { position + 1 }
}

/// Busy work whose length depends on the item, so items are irregular.
func spin(_ units: Int) -> Int {
    var x = units
    for i in 0..<(units * 2000) { x = x &* 31 &+ i }
    return x
}

func poolMap(_ world: Communicator) throws -> String {
    let pool = Pool(world)
    let n = 10_000
    // Ordered results on rank 0, automatic chunks.
    let squares = try pool.map(0..<n) { $0 * $0 }
    if world.rank == 0 {
        try expectEqual(squares, (0..<n).map { $0 * $0 }, world, "squares")
    } else {
        try expect(squares == nil, world, "a worker got map results")
    }
    // Results on every rank; Codable items and results.
    let words = try pool.mapToAll((0..<500).map { "w\($0)" }) { Record.made(by: Int($0.dropFirst())!, size: 1) }
    try expectEqual(words, (0..<500).map { Record.made(by: $0, size: 1) }, world, "records on every rank")
    // Results that are plain numbers: on every rank they travel as an array of plain numbers.
    let lengths = try pool.mapToAll(["a", "bb", "ccc"]) { $0.count }
    try expectEqual(lengths, [1, 2, 3], world, "Int results on every rank")
    // Map and combine: every rank gets the sum.
    let sum = try pool.mapReduce(1...20_000 as ClosedRange<Int>, { Int64($0) }, combine: +)
    try expectEqual(sum, 20_000 * 20_001 / 2, world, "sum of 1...20000")
    let none = try pool.mapReduce([Int](), { $0 }, combine: +)
    try expect(none == nil, world, "mapReduce of nothing is nil")
    // Chunk size 1 and static blocks give the same answers.
    let one = try pool.map(0..<300, options: MapOptions(chunkSize: .fixed(1))) { $0 &* 7 }
    if world.rank == 0 { try expectEqual(one, (0..<300).map { $0 &* 7 }, world, "chunk size 1") }
    let blocks = try pool.map(0..<301, options: MapOptions(schedule: .staticBlocks)) { -$0 }
    if world.rank == 0 { try expectEqual(blocks, (0..<301).map { -$0 }, world, "static blocks") }
    // Irregular items: every rank takes part in the work.
    let ranks = try pool.map(0..<(40 * world.size)) { item -> Int in
        _ = spin(item % 7 == 0 ? 40 : 2)
        return world.rank
    }
    if let ranks, world.size > 1 {
        try expectEqual(Set(ranks), Set(0..<world.size), world, "ranks that did work")
    }
    // As many long items as ranks: one each, not a first chunk of several to one rank. (Each
    // takes 0.3 s, far longer than handing out the others, and sleeps, so it needs no core.)
    let heavy = try pool.map(0..<world.size) { item -> Int in
        usleep(300_000)
        return world.rank
    }
    if let heavy {
        try expectEqual(Set(heavy), Set(0..<world.size), world, "ranks that ran one heavy item each")
    }
    // Rank 0 does not start a chunk of its own while a worker has only one left: the worker
    // gets its next first. Chunks of one: rank 1 holds items 0 (short) and 1 (long) and rank 0
    // runs item 2; when that ends, rank 1 has item 1 left, so item 3 must go to rank 1, not
    // wait behind rank 0's next item. (Sleeps, so no core is needed.)
    if world.size == 2 {
        let pauses: [UInt32] = [300_000, 2_400_000, 1_200_000, 0, 0, 0]
        let taken = try pool.map(0..<6, options: MapOptions(chunkSize: .fixed(1))) { item -> Int in
            usleep(pauses[item])
            return world.rank
        }
        if let taken {
            try expectEqual(Array(taken[0...3]), [1, 1, 0, 1], world, "ranks of items 0...3 (item 3 must be queued for rank 1)")
        }
    }
    // Rank 0 only serving: every item runs on another rank (unless rank 0 is alone).
    var serving = MapOptions(chunkSize: .fixed(3))
    serving.rankZeroWorks = false
    let workers = try pool.map(0..<90, options: serving) { _ in world.rank }
    if let workers {
        try expectEqual(workers.count, 90, world, "results with rank 0 serving")
        if world.size > 1 { try expect(!workers.contains(0), world, "rank 0 worked although rankZeroWorks is false") }
    }
    return "items=\(n)"
}

/// A sequence that counts how many of its items have been read.
final class CountingSequence: Sequence {
    let count: Int
    var pulled = 0
    init(_ count: Int) { self.count = count }
    func makeIterator() -> AnyIterator<Int> {
        var next = 0
        return AnyIterator { [self] in
            guard next < count else { return nil }
            defer { next += 1; pulled += 1 }
            return next
        }
    }
}

func poolStream(_ world: Communicator) throws -> String {
    let pool = Pool(world)
    let total = 2_000_000
    // Unordered streaming from a lazy input: every index exactly once, and the input is read
    // only a little ahead of the results.
    let input = CountingSequence(total)
    var seen = [Bool](repeating: false, count: world.rank == 0 ? total : 0)
    var delivered = 0
    var widestGap = 0
    // The progress closure runs on rank 0's own thread, during the map; a lock-free box is enough.
    final class Calls: @unchecked Sendable { var count = 0, lastDone = 0 }
    let calls = Calls()
    let options = MapOptions(progress: { done, _ in
        calls.count += 1
        calls.lastDone = done
    })
    try pool.forEachResult(input, ordered: false, options: options, { $0 &* 3 }) { index, value in
        guard value == index &* 3, !seen[index] else {
            throw CheckFailed(description: "rank 0 got result \(value) for index \(index) (seen before: \(seen[index]))")
        }
        seen[index] = true
        delivered += 1
        widestGap = max(widestGap, input.pulled - delivered)
    }
    if world.rank == 0 {
        try expectEqual(delivered, total, world, "results delivered")
        // Two chunks in flight per worker plus rank 0's own, each at most 65536 items.
        try expect(widestGap <= (2 * world.size + 1) * 65_536, world, "read \(widestGap) items ahead of the results")
        try expectEqual(calls.lastDone, total, world, "last progress report")
        try expect(calls.count > 1, world, "progress called \(calls.count) times")
    }
    // Ordered streaming: indices arrive 0, 1, 2, ...
    var next = 0
    try pool.forEachResult(0..<5000, ordered: true, options: MapOptions(chunkSize: .fixed(7)), { item -> Int in
        _ = spin(item % 13 == 0 ? 5 : 0)
        return item + 1
    }) { index, value in
        guard index == next, value == index + 1 else {
            throw CheckFailed(description: "rank 0 got index \(index) (value \(value)) when \(next) was due")
        }
        next += 1
    }
    if world.rank == 0 { try expectEqual(next, 5000, world, "ordered results") }
    return "gap=\(widestGap)"
}

struct ItemError: Error, CustomStringConvertible {
    let item: Int
    var description: String { "item \(item) is not allowed" }
}

func poolErrors(_ world: Communicator) throws -> String {
    let pool = Pool(world)
    // A throwing item makes the map throw on every rank, naming the item, rank and error.
    do {
        _ = try pool.map(0..<1000, options: MapOptions(chunkSize: .fixed(10))) { item -> Int in
            if item == 737 { throw ItemError(item: item) }
            return item
        }
        throw CheckFailed(description: "rank \(world.rank): the map did not throw")
    } catch let PoolError.itemFailed(index, rank, message) {
        try expectEqual(index, 737, world, "failed index")
        try expect((0..<world.size).contains(rank), world, "failed rank \(rank)")
        try expectEqual(message, "item 737 is not allowed", world, "original error")
    }
    // The pool still works after a failed map.
    let after = try pool.mapReduce(0..<100, { $0 }, combine: +)
    try expectEqual(after, 4950, world, "sum after a failed map")
    // Per-item results: failures for multiples of 10, the rest succeed.
    let results = try pool.mapResults(0..<200) { item -> Int in
        if item % 10 == 0 { throw ItemError(item: item) }
        return item * 2
    }
    if world.rank == 0, let results {
        try expectEqual(results.count, 200, world, "per-item results")
        for (index, result) in results.enumerated() {
            switch result {
            case .success(let value):
                try expect(index % 10 != 0 && value == index * 2, world, "item \(index) succeeded with \(value)")
            case .failure(let error):
                try expect(index % 10 == 0 && error.index == index && error.message == "item \(index) is not allowed", world,
                           "item \(index) failed with \(error)")
            }
        }
    }
    return "ok"
}

/// Rank 1 dies (SIGKILL) in the middle of a map without retries: the map fails on rank 0 within
/// a second, naming rank 1 and the items it held.
func poolWorkerDies(_ world: Communicator) throws -> String {
    guard world.size > 2 else { return "skipped" }
    let pool = Pool(world)
    var diedAt = 0.0
    do {
        _ = try pool.map(0..<400, options: MapOptions(chunkSize: .fixed(5))) { item -> Int in
            if world.rank == 1 && item >= 100 { kill(getpid(), SIGKILL) }
            usleep(1000)
            diedAt = monotonicNow()
            return item
        }
    } catch let PoolError.workerDied(rank, lost, reason) {
        let ms = Int((monotonicNow() - diedAt) * 1000)
        writeError("rank \(world.rank) saw rank \(rank) die after \(ms) ms: lost \(lost), \(reason)\n")
        try expectEqual(rank, 1, world, "dead rank")
        try expect(!lost.isEmpty && lost.allSatisfy { $0.count == 5 }, world, "lost items \(lost)")
        throw PoolError.workerDied(rank: rank, lostItems: lost, reason: reason)
    }
    return "unreachable"
}

/// Rank 1 dies in the middle of a map with retries: its items are redone, every result is
/// there exactly once, and the other ranks finish normally.
func poolWorkerDiesRetry(_ world: Communicator) throws -> String {
    guard world.size > 2 else { return "skipped" }
    let pool = Pool(world)
    var calls = 0
    let results = try pool.map(0..<400, options: MapOptions(chunkSize: .fixed(5), retryLostItems: true)) { item -> Int in
        if world.rank == 1 && item >= 100 { kill(getpid(), SIGKILL) }
        calls += 1
        usleep(1000)
        return item * 3
    }
    if world.rank == 0 {
        try expectEqual(results, (0..<400).map { $0 * 3 }, world, "results after a retry")
    }
    // Later maps go on without rank 1: one without retries...
    let doubled = try pool.map(0..<100, options: MapOptions(chunkSize: .fixed(3))) { $0 * 2 }
    if world.rank == 0 { try expectEqual(doubled, (0..<100).map { $0 * 2 }, world, "a later map without retries") }
    // ...and one whose items are larger than a ring between two ranks, so rank 2 dies while a
    // send to it is still under way.
    let texts = (0..<12).map { String(repeating: "x", count: 1_500_000) + "\($0)" }
    let lengths = try pool.map(texts, options: MapOptions(chunkSize: .fixed(1), retryLostItems: true)) { text -> Int in
        if world.rank == 2 { kill(getpid(), SIGKILL) }
        usleep(20_000)
        return text.utf8.count
    }
    if world.rank == 0 { try expectEqual(lengths, texts.map(\.utf8.count), world, "large items after rank 2 died") }
    // ...and one whose answers are larger than a ring, so rank 3 dies while its answer is
    // still crossing (stopped for room: rank 0 is busy with an item of its own), and rank 0
    // then finds part of that answer.
    var slept = false
    let blocks = try pool.map(0..<4, options: MapOptions(chunkSize: .fixed(1), retryLostItems: true)) { item -> [UInt8] in
        if world.rank == 3 {
            signalSelf(SIGKILL, afterMicroseconds: 300_000)
        } else if world.rank == 0 && !slept {
            slept = true
            usleep(1_000_000)
        }
        return [UInt8](repeating: UInt8(item), count: 3_000_000)
    }
    if world.rank == 0 {
        try expectEqual(blocks?.map { $0.count == 3_000_000 ? Int($0[0]) : -1 }, [0, 1, 2, 3], world, "answers after rank 3 died sending one")
        try expect(blocks?.allSatisfy { block in block.allSatisfy { $0 == block[0] } } == true, world, "every byte of every answer")
    }
    // Ranks 1, 2 and 3 are gone, so the usual gather of summaries cannot include them.
    return "\(soloPrefix)complete=\(results?.count ?? 0),calls=\(calls),later=\(doubled?.count ?? 0)/\(lengths?.count ?? 0)/\(blocks?.count ?? 0)"
}

/// A summary starting with this is printed by each rank itself, without a gather.
let soloPrefix = "solo:"

/// A throwing item the program does not catch: the map throws on every rank, and the job ends
/// with one message.
func poolItemUncaught(_ world: Communicator) throws -> String {
    struct Broken: Error, CustomStringConvertible { var description: String { "item 5 is broken" } }
    _ = try Pool(world).map(Array(0..<40), options: MapOptions(chunkSize: .fixed(1))) { item -> Int in
        if item == 5 { throw Broken() }
        usleep(2_000)
        return item
    }
    return "\(soloPrefix)the map did not throw"
}

/// Keeps this thread on a CPU for `milliseconds` of its own CPU time.
func busy(milliseconds: Double) {
    var now = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now)
    let end = Double(now.tv_sec) + Double(now.tv_nsec) / 1e9 + milliseconds / 1000
    var x = 0
    repeat {
        for i in 0..<1000 { x = x &* 31 &+ i }
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now)
    } while Double(now.tv_sec) + Double(now.tv_nsec) / 1e9 < end && x != 1
}

/// More ranks than cores (SWIFTPAR_CHECK_CORES, as swiftpar counts them for the job): items
/// that keep the CPU busy go to as many ranks as there are cores (rank 0 and the first
/// workers); items that sleep, and a map with the limit turned off, go to every rank. Each item
/// returns the rank that ran it; every item's result is checked.
func poolCoreShare(_ world: Communicator) throws -> String {
    let given = getenv("SWIFTPAR_CHECK_CORES").flatMap { Int(String(cString: $0)) }
    try expect(given != nil, world, "SWIFTPAR_CHECK_CORES must say how many cores the job has")
    let cores = given ?? 1
    try expect(world.size > cores, world, "this check needs more ranks than the \(cores) cores, not \(world.size)")
    let pool = Pool(world)
    let items = 0..<120
    /// The items each rank ran, checking every result.
    func share(_ ranks: [Int]?) throws -> [Int] {
        var counts = [Int](repeating: 0, count: world.size)
        guard let ranks else { return counts }
        try expect(ranks.count == items.count, world, "\(ranks.count) results for \(items.count) items")
        for rank in ranks {
            try expect((0..<world.size).contains(rank), world, "an item says it ran on rank \(rank)")
            counts[rank] += 1
        }
        return counts
    }
    /// What the ranks beyond the cores ran, together, and the least any one of them ran.
    func beyondCores(_ counts: [Int]) -> (total: Int, least: Int) {
        let idle = counts[cores...]
        return (idle.reduce(0, +), idle.min() ?? 0)
    }
    let busyRanks = try share(try pool.map(items) { _ -> Int in
        busy(milliseconds: 4)
        return world.rank
    })
    let sleepyRanks = try share(try pool.map(items) { _ -> Int in
        usleep(4000)
        return world.rank
    })
    // Few long sleeps (a network call, a child process) keep every rank at work too.
    let longSleeps = 0..<(8 * world.size)
    var longSleepRanks = [Int](repeating: 0, count: world.size)
    if let ranks = try pool.map(longSleeps, { _ -> Int in
        usleep(60_000)
        return world.rank
    }) {
        try expect(ranks.count == longSleeps.count, world, "\(ranks.count) results for \(longSleeps.count) items")
        for rank in ranks { longSleepRanks[rank] += 1 }
    }
    var everyRank = MapOptions()
    everyRank.limitsBusyRanksToCores = false
    let unlimitedRanks = try share(try pool.map(items, options: everyRank) { _ -> Int in
        busy(milliseconds: 4)
        return world.rank
    })
    // A reduction whose busy items make the limit leave ranks idle, which are asked for their
    // partials then; sleeping items after them end the limit, and those ranks work again into
    // new partials, asked for at the end. Every item is counted once, whichever rank ran it.
    let phases = 0..<240
    let byRank = try pool.mapReduce(phases, into: [Int: [Int]](), { item -> [Int: [Int]] in
        if item < 120 { busy(milliseconds: 4) } else { usleep(4000) }
        return [world.rank: [item]]
    }) { total, part in total.merge(part, uniquingKeysWith: +) }
    // The same on every rank, with the limit in force to the end: the total is exact.
    let busyTotal = try pool.mapReduce(items, into: [Int](), everyRank: true, { item -> [Int] in
        busy(milliseconds: 2)
        return [item]
    }) { total, part in total += part }
    try expectEqual(busyTotal?.sorted(), Array(items), world, "busy items in a reduction: the items in the total on every rank")
    guard world.rank == 0 else { return "worked" }
    let ranByRank = byRank ?? [:]
    try expectEqual(ranByRank.values.flatMap { $0 }.sorted(), Array(phases), world,
                    "busy then sleeping items in a reduction: the items in the total (by rank: \(ranByRank.mapValues(\.count)))")
    let lateBeyond = (cores..<world.size).map { rank in ranByRank[rank, default: []].filter { $0 >= 120 }.count }
    try expect(lateBeyond.allSatisfy { $0 >= 3 }, world,
               "busy then sleeping items in a reduction: the ranks beyond the cores ran \(lateBeyond) of the 120 sleeping items")
    let fairShare = items.count / world.size
    // Before the first 30 ms of timings show the ranks taking turns, each runs an item or three
    // (one chunk of one item at a time: one or two each, here); working, each runs about a fair
    // share (at least 9 here).
    let busyShare = beyondCores(busyRanks)
    try expect(busyShare.total <= 4 * (world.size - cores), world,
               "busy items: the \(world.size - cores) ranks beyond the cores ran \(busyShare.total) of \(items.count) (per rank: \(busyRanks))")
    let sleepy = beyondCores(sleepyRanks)
    try expect(sleepy.least >= fairShare / 5, world, "sleeping items: a rank beyond the cores ran \(sleepy.least) of \(items.count) (per rank: \(sleepyRanks))")
    let longSleepers = beyondCores(longSleepRanks)
    try expect(longSleepers.least >= 3, world, "long sleeps: a rank beyond the cores ran \(longSleepers.least) of \(longSleeps.count) (per rank: \(longSleepRanks))")
    let unlimited = beyondCores(unlimitedRanks)
    try expect(unlimited.least >= fairShare / 5, world,
               "busy items, limit off: a rank beyond the cores ran \(unlimited.least) of \(items.count) (per rank: \(unlimitedRanks))")
    return "beyond-cores busy=\(busyShare.total) sleepy=\(sleepy.total) long-sleeps=\(longSleepers.total) unlimited=\(unlimited.total)"
}
