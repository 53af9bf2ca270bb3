#if canImport(Glibc)
import Glibc
#endif
import SwiftPar

/// Every scenario by name. Each returns a one-word summary of what this rank verified.
let scenarios: [String: @Sendable (Communicator) throws -> String] = [
    "ring": ring,
    "any-source": anySource,
    "probe": probe,
    "send-receive": sendReceive,
    "nonblocking": nonblocking,
    "started-receives": startedReceives,
    "broadcast": broadcast,
    "gather-scatter": gatherScatter,
    "all-to-all": allToAll,
    "reduce": reduce,
    "plain-arrays-as-values": plainArraysAsValues,
    "split": split,
    "large-messages": largeMessages,
    "huge-message": hugeMessage,
    "bad-input": badInput,
    "rank-one-throws": rankOneThrows,
    "receive-into": receiveInto,
    "rank-one-crashes": rankOneCrashes,
    "rank-one-segfaults": rankOneSegfaults,
    "rank-zero-crashes": rankZeroCrashes,
    "rank-zero-crashes-term-taken": rankZeroCrashesTermTaken,
    "ranks-trap-together": ranksTrapTogether,
    "wait-forever": waitForever,
    "receive-from-finished": receiveFromFinished,
    "encoded-sizes": encodedSizes,
    "send-to-self": sendToSelf,
    "codable-edges": codableEdges,
    "killed-beside-values": killedBesideValues,
]

/// Found by a helper trying Codable values as users write them, between ranks 0 and 1: arrays
/// of plain numbers of 64 KiB or more (sent apart) read by a value's own code or as another
/// element type; numbers that do not fit the type asked for; values nested deeper than a
/// receiver decodes; and a started receive polled with test() after its sender has finished.
func codableEdges(_ world: Communicator) throws -> String {
    guard world.size >= 2, world.rank < 2 else { return "\(soloPrefix)idle" }
    /// Reads its array element by element, as hand-written Codable often does.
    struct Vector: Codable, Equatable {
        var xs: [Double]
        enum Keys: String, CodingKey { case xs }
        init(xs: [Double]) { self.xs = xs }
        init(from decoder: any Decoder) throws {
            var list = try decoder.container(keyedBy: Keys.self).nestedUnkeyedContainer(forKey: .xs)
            var xs: [Double] = []
            while !list.isAtEnd { xs.append(try list.decode(Double.self)) }
            self.xs = xs
        }
    }
    /// Reads the same large array twice: counted through a container, then whole.
    struct ReadTwice: Decodable {
        var count: Int
        var xs: [Double]
        init(from decoder: any Decoder) throws {
            let keyed = try decoder.container(keyedBy: Vector.Keys.self)
            count = try keyed.nestedUnkeyedContainer(forKey: .xs).count ?? -1
            xs = try keyed.decode([Double].self, forKey: .xs)
        }
    }
    struct Numbers: Codable { var values: [Int] }
    struct NumberSet: Codable { var values: Set<Int> }
    struct Wide: Codable { var v: Double }
    struct Narrow: Codable { var v: Float }
    struct Doubles: Codable { var v: [Double] }
    struct Floats: Codable { var v: [Float] }
    struct Int32s: Codable { var v: [Int32] }
    struct Ints: Codable { var v: [Int] }
    indirect enum Chain: Codable { case end, link(Chain) }
    func chain(_ depth: Int) -> Chain { (0..<depth).reduce(Chain.end) { next, _ in .link(next) } }

    let large = (0..<10_000).map { Double($0) / 4 }
    if world.rank == 0 {
        try world.send(Vector(xs: large), to: 1, tag: 1)
        try world.send(Vector(xs: large), to: 1, tag: 9)
        try world.send(Numbers(values: Array(0..<10_000)), to: 1, tag: 2)
        // (Plain-number arrays sent alone are raw MPI messages, with no type: inside values.)
        try world.send(Int32s(v: (0..<20_000).map { Int32($0) - 10_000 }), to: 1, tag: 3)
        try world.send(Wide(v: 1e300), to: 1, tag: 4)
        try world.send(Doubles(v: [1e300, 0.5]), to: 1, tag: 5)
        try world.send(Doubles(v: large + [1e300]), to: 1, tag: 6)
        try world.send(UInt64.max, to: 1, tag: 7)
        // Deeper than a receiver decodes: refused by the sender (10,000 crashed its stack).
        var refused: [String] = []
        for depth in [600, 10_000] {
            do {
                try world.send(chain(depth), to: 1, tag: 8)
                refused.append("sent")
            } catch let error as CommunicatorError {
                refused.append("\(error)".contains("nested more than 512 deep") ? "refused" : "\(error)")
            }
        }
        try world.send(chain(200), to: 1, tag: 8)
        return "\(soloPrefix)deep=\(refused.joined(separator: ","))"
    }
    try expectEqual(try world.receive(Vector.self, from: 0, tag: 1).xs, large, world, "a Vector of 10,000 read element by element")
    let twice = try world.receive(ReadTwice.self, from: 0, tag: 9)
    try expectEqual(twice.count, large.count, world, "a large array counted through a container")
    try expectEqual(twice.xs, large, world, "the same array then read whole")
    try expectEqual(try world.receive(NumberSet.self, from: 0, tag: 2).values, Set(0..<10_000), world, "10,000 Ints received as a Set")
    try expectEqual(try world.receive(Ints.self, from: 0, tag: 3).v, (0..<20_000).map { $0 - 10_000 }, world, "20,000 Int32s received as [Int]")
    var refusals: [String] = []
    func refusal(_ what: String, _ body: () throws -> Void) throws {
        do {
            try body()
            refusals.append("\(what) accepted")
        } catch let error as CommunicatorError {
            refusals.append("\(error)".contains("does not fit in Float") ? what : "\(what): \(error)")
        }
    }
    try refusal("1e300") { _ = try world.receive(Narrow.self, from: 0, tag: 4) }
    try refusal("small") { _ = try world.receive(Floats.self, from: 0, tag: 5) }
    try refusal("large") { _ = try world.receive(Floats.self, from: 0, tag: 6) }
    try expectEqual(refusals, ["1e300", "small", "large"], world, "Doubles beyond Float's range received as Float")
    try expectEqual(try world.receive(Double.self, from: 0, tag: 7), 18446744073709551615.0, world, "UInt64.max received as a Double")
    var depth = 0
    var next = try world.receive(Chain.self, from: 0, tag: 8)
    while case .link(let inner) = next { depth += 1; next = inner }
    try expectEqual(depth, 200, world, "a chain 200 deep")
    // Rank 0 has nothing more to send, and finishes: test() must not say false for ever.
    let pending = try world.startReceive(Int.self, from: .rank(0), tag: 99)
    let deadline = monotonicNow() + 30
    var outcome = "still false after 30 s"
    while monotonicNow() < deadline {
        do {
            if try pending.test() { outcome = "completed"; break }
        } catch let error as CommunicatorError {
            outcome = "\(error)".contains("would wait forever") ? "would wait forever" : "\(error)"
            break
        }
        usleep(1_000)
    }
    try expectEqual(outcome, "would wait forever", world, "test() of a receive whose sender finished")
    return "\(soloPrefix)checked"
}

/// Every rank sends to itself, as loops over all ranks do: blocking sends far above Open MPI's
/// eager limit (plain numbers, a value with arrays sent apart, an announced value), sends with
/// several tags received in another order, a nonblocking send waited for before its receive,
/// and receives from any source and probes that must find the rank's own messages. A send
/// that waited for its own receive would never return.
func sendToSelf(_ world: Communicator) throws -> String {
    let me = world.rank
    let numbers = (0..<(1 << 20)).map { Double($0) + Double(me) }
    try world.send(numbers, to: me, tag: 1)
    let received = try world.receive([Double].self, from: .rank(me), tag: 1)
    try expect(received == numbers, world, "8 MiB of plain numbers sent to itself")
    let record = Record.made(by: me, size: 40_000)
    try world.send(record, to: me, tag: 2)
    try expectEqual(try world.receive(Record.self, from: .rank(me), tag: 2), record, world, "a value with its arrays sent apart, sent to itself")
    let text = String(repeating: "swiftpar \(me) ", count: 200_000)
    try world.send(text, to: me, tag: 3)
    let receivedText = try world.receive(String.self, from: .rank(me), tag: 3)
    try expect(receivedText == text, world, "a 2 MiB string sent to itself")
    // Several at once, taken by tag in another order; the same tag keeps its order.
    try world.send(numbers, to: me, tag: 10)
    try world.send("small", to: me, tag: 11)
    try world.send(record, to: me, tag: 12)
    try world.send([Double](repeating: 1, count: 3), to: me, tag: 10)
    try expectEqual(try world.receive(Record.self, from: .rank(me), tag: 12), record, world, "tag 12 taken first")
    let firstOfTen = try world.receive([Double].self, from: .rank(me), tag: 10)
    try expect(firstOfTen == numbers, world, "first of tag 10")
    try expectEqual(try world.receive(String.self, from: .rank(me), tag: 11), "small", world, "tag 11")
    try expectEqual(try world.receive([Double].self, from: .rank(me), tag: 10), [1, 1, 1], world, "second of tag 10")
    // A nonblocking send waited for before anything receives it.
    let request = try world.startSend(numbers, to: me, tag: 20)
    try request.wait()
    let info = try world.probe(from: .rank(me), tag: 20)
    try expectEqual(info.byteCount, numbers.count * 8, world, "probed size of its own message")
    let message = try world.receiveMessage([Double].self, from: .any, tag: 20)
    try expect(message.source == me && message.value == numbers, world, "its own message received from any source")
    // A value sent to itself and a neighbour's, told apart by source.
    if world.size > 1 {
        let next = (me + 1) % world.size, previous = (me + world.size - 1) % world.size
        let toNext = try world.startSend(Record.made(by: me, size: 40_000), to: next, tag: 30)
        try world.send(record, to: me, tag: 30)
        try expectEqual(try world.receive(Record.self, from: .rank(previous), tag: 30), Record.made(by: previous, size: 40_000), world, "neighbour's value")
        try expectEqual(try world.receive(Record.self, from: .rank(me), tag: 30), record, world, "own value beside a neighbour's")
        try toNext.wait()
    }
    return "self"
}

/// Encoded values just below, at and above the size that one receive takes under MPI (1 MiB,
/// or less than SWIFTPAR_MPI_MESSAGE_LIMIT when that is set lower), received every way: by
/// receive, after a probe, as raw bytes, after a nonblocking send, and into a plain-number
/// buffer (which fails and leaves the next message intact). Then a plain message longer than
/// that, received as a value: it fails the same way, and the next value arrives intact.
func encodedSizes(_ world: Communicator) throws -> String {
    guard world.size > 1, world.rank < 2 else { return "\(soloPrefix)idle" }
    let peer = 1 - world.rank
    let limit = Int(currentEnvironment()["SWIFTPAR_MPI_MESSAGE_LIMIT"] ?? "") ?? 0
    let eager = limit > 0 ? min(1 << 20, limit - 1) : 1 << 20
    // A String of n bytes (64 or more) encodes as the 8-byte header, a tag byte, the varint of
    // n and the bytes: pick n so the whole value is `size` bytes.
    func text(encodingTo size: Int, seed: Int) throws -> String {
        var n = size - 10
        while 9 + varintLength(n) + n > size { n -= 1 }
        while 9 + varintLength(n) + n < size { n += 1 }
        let value = String(decoding: (0..<n).map { UInt8(97 + ($0 &* 7 &+ seed) % 26) }, as: UTF8.self)
        try expectEqual(try BinaryEncoder().encode(value).count, size, world, "encoded size of the \(n)-byte text")
        return value
    }
    func varintLength(_ n: Int) -> Int { n < 128 ? 1 : n < 1 << 14 ? 2 : n < 1 << 21 ? 3 : 4 }
    var checks = 0
    for (index, size) in [eager - 1, eager, eager + 1, 3 * eager + 5].enumerated() {
        let mine = try text(encodingTo: size, seed: world.rank * 10 + index)
        let theirs = try text(encodingTo: size, seed: peer * 10 + index)
        let base = 100 * (index + 1)
        // Both ranks send first (nonblocking), then receive: no order can deadlock.
        let sends = try [
            world.startSend(mine, to: peer, tag: base),
            world.startSend(mine, to: peer, tag: base + 1),
            world.startSend(mine, to: peer, tag: base + 2),
            world.startSend(mine, to: peer, tag: base + 3),
            world.startSend(Int64(size), to: peer, tag: base + 4),
        ]
        try expectEqual(try world.receive(String.self, from: .rank(peer), tag: .tag(base)), theirs, world, "\(size)-byte value received")
        let info = try world.probe(from: .rank(peer), tag: .tag(base + 1))
        try expectEqual(info.byteCount, size, world, "probed size of a \(size)-byte value")
        try expectEqual(try world.receive(String.self, from: .rank(peer), tag: .tag(base + 1)), theirs, world, "\(size)-byte value after a probe")
        let raw = try world.receiveBytes(from: .rank(peer), tag: .tag(base + 2))
        try expectEqual(try BinaryDecoder().decode(String.self, from: raw.value), theirs, world, "\(size)-byte value as raw bytes")
        var numbers = [Double](repeating: 0, count: 1 << 19)
        _ = try expectError(world, "a \(size)-byte value into a [Double] buffer", {
            if case .decodingFailed(_, _, _, _, let reason, _) = $0 { return reason.contains("encoded value") }
            if case .invalidArgument(_, let reason, _) = $0 { return reason.contains("larger than") || reason.contains("more than") }
            return false
        }) { try world.receive(into: &numbers, from: .rank(peer), tag: .tag(base + 3)) }
        try expectEqual(try world.receive(Int64.self, from: .rank(peer), tag: .tag(base + 4)), Int64(size), world,
                        "the message after a \(size)-byte value that failed to decode")
        try waitAll(sends)
        checks += 5
    }
    // Plain bytes longer than one receive takes, received as a value.
    let plain = [UInt8](repeating: 7, count: eager + 100)
    let sends = try [world.startSend(plain, to: peer, tag: 900), world.startSend("after", to: peer, tag: 901)]
    _ = try expectError(world, "plain bytes received as a value", {
        if case .decodingFailed(_, _, _, _, let reason, _) = $0 { return reason.contains("without swiftpar's header") }
        return false
    }) { _ = try world.receive(String.self, from: .rank(peer), tag: 900) }
    try expectEqual(try world.receive(String.self, from: .rank(peer), tag: 901), "after", world, "the value after the plain bytes")
    try waitAll(sends)
    // A value whose large arrays travel apart, received as raw bytes: they come too, put back
    // in place, and the message after it is the next value (found by a user: the arrays stayed
    // queued, and the next receive got them).
    struct Samples: Codable, Equatable {
        var name: String
        var values: [Double]
        var more: [[Int32]]
        init(_ rank: Int) {
            name = "rank \(rank)"
            values = (0..<300_000).map { Double($0) + Double(rank) / 4 }
            more = [[1, 2], [Int32](repeating: Int32(rank), count: 40_000), (0..<20_000).map { Int32($0) }]
        }
    }
    let rawSends = try [world.startSend(Samples(world.rank), to: peer, tag: 950), world.startSend("next", to: peer, tag: 951)]
    let whole = try world.receiveBytes(from: .rank(peer), tag: .tag(950))
    try expectEqual(try BinaryDecoder().decode(Samples.self, from: whole.value) == Samples(peer), true, world,
                    "a value with arrays sent apart, as raw bytes (\(whole.value.count) bytes)")
    try expectEqual(whole.byteCount, whole.value.count, world, "byte count of the raw bytes of a value with arrays sent apart")
    try expectEqual(try world.receive(String.self, from: .rank(peer), tag: 951), "next", world, "the message after a value received as raw bytes")
    try waitAll(rawSends)
    return "\(soloPrefix)checks=\(checks + 5)"
}

/// Rank 0 waits for a message from rank 1, which finishes without sending it: the receive
/// throws instead of waiting forever (on the local backend, which can see that rank 1 ended).
func receiveFromFinished(_ world: Communicator) throws -> String {
    // Each rank reports alone: the others must really finish, not wait in a gather.
    guard world.rank == 0, world.size > 1 else { return "\(soloPrefix)finished" }
    let start = monotonicNow()
    do {
        _ = try world.receive(Int.self, from: .rank(1), tag: 5)
    } catch let error as CommunicatorError {
        guard case .wouldWaitForever = error else { throw error }
        return "\(soloPrefix)threw-after-ms=\(Int((monotonicNow() - start) * 1000))"
    }
    throw CheckFailed(description: "rank 0 received a message rank 1 never sent")
}

/// Ranks 0 and 1 pass a value holding a 4 MiB array (sent apart) back and forth while rank 2,
/// which takes no part, is killed. Found by a helper: a rank that noticed the failure halfway
/// through an array then read the rest of the value from the middle of the array, took eight
/// doubles for a message header and died allocating exabytes (in about one job in two),
/// where the job should end naming rank 2.
func killedBesideValues(_ world: Communicator) throws -> String {
    struct Carrier: Codable {
        var label: String
        var values: [Double]
    }
    guard world.size >= 3 else { return "\(soloPrefix)idle" }
    if world.rank == 2 {
        usleep(300_000)
        kill(getpid(), SIGKILL)
    }
    guard world.rank < 2 else { return "\(soloPrefix)idle" }
    let value = Carrier(label: "ones", values: Array(repeating: 1.5, count: 1 << 19))
    let peer = 1 - world.rank
    for round in 0..<100_000 {
        if (round + world.rank) % 2 == 0 {
            try world.send(value, to: peer, tag: 5)
        } else {
            _ = try world.receive(Carrier.self, from: .rank(peer), tag: 5)
        }
    }
    throw CheckFailed(description: "100000 values passed while rank 2 was killed")
}

/// Rank 1 stops with fatalError while the others wait for it; each other rank reports the
/// error it gets and how long after the crash it came.
func rankOneCrashes(_ world: Communicator) throws -> String {
    try crashRankOne(world) { fatalError("the checks asked rank 1 to crash") }
}

/// Rank 1 writes through a null pointer (SIGSEGV) while the others wait for it.
func rankOneSegfaults(_ world: Communicator) throws -> String {
    try crashRankOne(world) {
        let pointer = UnsafeMutablePointer<Int>(bitPattern: 8)!  // an unmapped page
        pointer.pointee = 42
    }
}

/// Every rank but 0 traps at once, as they do when a bug sits in code every worker runs; rank 0
/// waits for a message that never comes.
func ranksTrapTogether(_ world: Communicator) throws -> String {
    try world.barrier()
    if world.rank > 0 {
        let bounds = [world.rank]
        print("rank \(world.rank): reading item \(bounds[world.rank])")  // out of range: a trap
    }
    _ = try world.receive(Int.self, from: .any, tag: 1)
    return "received"
}

/// Every rank prints a line, which stays in its buffer (standard output being a file), then
/// rank 0 crashes while rank 1 computes outside swiftpar and the others wait for rank 0: the
/// lines of ranks 1 and up must still come out, as they do when mpirun ends the job.
func rankZeroCrashes(_ world: Communicator) throws -> String {
    print("rank \(world.rank): printed before rank 0 crashed")
    try world.barrier()
    if world.rank == 0 {
        usleep(200_000)
        fatalError("the checks asked rank 0 to crash")
    }
    if world.rank == 1 {
        while true { usleep(10_000) }
    }
    _ = try world.receive(Int.self, from: .rank(0), tag: 1)
    return "unreachable"
}

/// Rank 0 crashes after the other ranks took SIGTERM over (ignored, as a program that reads it
/// from a dispatch source does): the signal its death sends them does nothing, and they must
/// still not wait for it for good.
func rankZeroCrashesTermTaken(_ world: Communicator) throws -> String {
    if world.rank != 0 { signal(SIGTERM, SIG_IGN) }
    try world.barrier()
    if world.rank == 0 {
        usleep(200_000)
        fatalError("the checks asked rank 0 to crash")
    }
    _ = try world.receive(Int.self, from: .rank(0), tag: 1)
    return "unreachable"
}

func crashRankOne(_ world: Communicator, _ crash: () -> Void) throws -> String {
    try world.barrier()
    if world.rank == 1 {
        usleep(200_000)
        crash()
    }
    let start = monotonicNow()
    do {
        _ = try world.receive(Int.self, from: .rank(1), tag: 1)
    } catch {
        writeError("rank \(world.rank) observed after \(Int((monotonicNow() - start) * 1000)) ms: \(error)\n")
        // Give the other ranks time to report too before this one ends the job.
        usleep(300_000)
        throw error
    }
    return "unreachable"
}

/// Every rank prints its pid to standard error, then waits for a message that never comes.
func waitForever(_ world: Communicator) throws -> String {
    writeError("pid \(world.rank) \(getpid())\n")
    _ = try world.receive(Int.self, from: .rank((world.rank + 1) % world.size), tag: 999)
    return "unreachable"
}


/// Receiving into an existing array: same size, shorter (the array shrinks), longer (an error).
func receiveInto(_ world: Communicator) throws -> String {
    guard world.rank < 2 else { return "idle" }
    let peer = world.size > 1 ? 1 - world.rank : 0
    var buffer = [Double](repeating: -1, count: 8)
    let a = try world.startSend((0..<8).map { Double($0) + Double(world.rank) }, to: peer, tag: 1)
    let info = try world.receive(into: &buffer, from: .rank(peer), tag: 1)
    try a.wait()
    try expectEqual(buffer, (0..<8).map { Double($0) + Double(peer) }, world, "same-size message")
    try expectEqual(info.byteCount, 64, world, "byte count")
    let b = try world.startSend([Double](repeating: 2, count: 3), to: peer, tag: 2)
    try world.receive(into: &buffer, from: .rank(peer), tag: 2)
    try b.wait()
    try expectEqual(buffer, [2, 2, 2], world, "shorter message shrinks the array")
    let c = try world.startSend([Double](repeating: 3, count: 5), to: peer, tag: 3)
    let text = try expectError(world, "a message longer than the buffer", {
        if case .invalidArgument(_, let reason, _) = $0 { return reason.contains("larger than") || reason.contains("more than") }
        return false
    }) { try world.receive(into: &buffer, from: .rank(peer), tag: 3) }
    try c.wait()
    return "error=\(text.prefix(20))"
}

/// Each rank sends a `Record` to the next and receives from the previous.
func ring(_ world: Communicator) throws -> String {
    let next = (world.rank + 1) % world.size
    let previous = (world.rank - 1 + world.size) % world.size
    let request = try world.startSend(Record.made(by: world.rank), to: next, tag: 3)
    let message = try world.receiveMessage(Record.self, from: .rank(previous), tag: 3)
    try request.wait()
    try expectEqual(message.value, Record.made(by: previous), world, "record from rank \(previous)")
    try expectEqual(message.source, previous, world, "source")
    try expectEqual(message.tag, 3, world, "tag")
    // Plain numbers the same way, sent from their storage.
    let numbers = (0..<1000).map { Int64($0 * (world.rank + 1)) }
    let numberRequest = try world.startSend(numbers, to: next, tag: 4)
    let got = try world.receive([Int64].self, from: .rank(previous), tag: 4)
    try numberRequest.wait()
    try expectEqual(got, (0..<1000).map { Int64($0 * (previous + 1)) }, world, "numbers from rank \(previous)")
    return "from=\(previous)"
}

/// Every rank but 0 sends to 0 with its rank as tag; rank 0 takes them in any order.
func anySource(_ world: Communicator) throws -> String {
    if world.rank != 0 {
        try world.send("hello from \(world.rank)", to: 0, tag: world.rank)
        return "sent"
    }
    var seen: Set<Int> = []
    for _ in 1..<world.size {
        let message = try world.receiveMessage(String.self, from: .any, tag: .any)
        try expectEqual(message.value, "hello from \(message.source)", world, "payload")
        try expectEqual(message.tag, message.source, world, "tag of rank \(message.source)")
        try expect(seen.insert(message.source).inserted, world, "rank \(message.source) arrived twice")
    }
    try expectEqual(seen, Set(1..<world.size), world, "sources")
    return "sources=\(seen.count)"
}

/// Probe reports source, tag and size before the receive; probeNow returns nil for nothing.
func probe(_ world: Communicator) throws -> String {
    let peer = world.size > 1 ? (world.rank == 0 ? 1 : 0) : 0
    guard world.rank < 2 else { return "idle" }
    let nothing = try world.probeNow(from: .any, tag: 99)
    try expect(nothing == nil, world, "probeNow found a message that was never sent")
    let values = (0..<100).map { Double($0) * 0.5 + Double(world.rank) }
    let request = try world.startSend(values, to: peer, tag: 7)
    let info = try world.probe(from: .any, tag: 7)
    try expectEqual(info, MessageInfo(source: peer, tag: 7, byteCount: 800), world, "probed envelope")
    // Probing again sees the same message: probe does not consume it.
    try expectEqual(try world.probe(from: .rank(peer), tag: .any), info, world, "second probe")
    let got = try world.receive([Double].self, from: .rank(peer), tag: 7)
    try request.wait()
    try expectEqual(got, (0..<100).map { Double($0) * 0.5 + Double(peer) }, world, "values from rank \(peer)")
    return "bytes=\(info.byteCount)"
}

/// Every rank shifts a value around the ring in one call; nobody deadlocks.
func sendReceive(_ world: Communicator) throws -> String {
    let next = (world.rank + 1) % world.size
    let previous = (world.rank - 1 + world.size) % world.size
    let message = try world.sendReceive(["rank": world.rank], to: next, sendTag: 1,
                                        receiving: [String: Int].self, from: .rank(previous), receiveTag: 1)
    try expectEqual(message.value, ["rank": previous], world, "shifted value")
    return "from=\(message.source)"
}

/// Nonblocking sends to and receives from every rank, completed with waitAll and test.
func nonblocking(_ world: Communicator) throws -> String {
    var sends: [any Request] = []
    var receives: [ReceiveRequest<[Int32]>] = []
    for peer in 0..<world.size {
        sends.append(try world.startSend((0..<(peer + 1) * 10).map { Int32($0 + world.rank * 1000) }, to: peer, tag: 20))
        receives.append(try world.startReceive([Int32].self, from: .rank(peer), tag: 20))
    }
    // Test one receive until it completes, then wait for all the rest.
    var polls = 0
    while try !receives[world.size - 1].test() {
        polls += 1
        try expect(polls < 50_000_000, world, "receive from the last rank never completed")
    }
    try waitAll(receives)
    try waitAll(sends)
    for (peer, request) in receives.enumerated() {
        try expectEqual(request.message?.value, (0..<(world.rank + 1) * 10).map { Int32($0 + peer * 1000) }, world, "array from rank \(peer)")
        try expectEqual(request.message?.source, peer, world, "source")
    }
    return "peers=\(world.size)"
}

/// The exchange with neighbours as mpi4py programs write it: start the receives, send with the
/// blocking `send`, then wait. Every rank does the same at once, so under MPI each send of more
/// than Open MPI's eager limit (4 KiB in shared memory) waits until its receiver takes the
/// message: the started receives must take it while their rank is blocked in its own send.
/// Plain arrays from below that limit to 4.8 MB, a value with an array sent apart, a value
/// announced for its size, two receives started at once and waited for in the other order, and
/// a started receive dropped unwaited, whose message the next receive gets, one completed by
/// `test()`, sends polled with `test()` or dropped at once, two started for one sender and tag,
/// and a blocking receive of another tag while a receive is started. A single rank exchanges with itself.
func startedReceives(_ world: Communicator) throws -> String {
    let right = (world.rank + 1) % world.size
    let left = (world.rank - 1 + world.size) % world.size
    for (round, count) in [100, 1_000, 600_000].enumerated() {
        let request = try world.startReceive([Double].self, from: .rank(left), tag: .tag(round))
        try world.send((0..<count).map { Double($0 + 10 * world.rank) }, to: right, tag: round)
        let got = try request.waitForMessage()
        try expectEqual(got.value.count, count, world, "\(count) doubles from rank \(left): count")
        try expect(got.value.enumerated().allSatisfy { $0.element == Double($0.offset + 10 * left) }, world,
                   "\(count) doubles from rank \(left): values")
    }
    // A value whose 200,000 samples are sent apart, and a text announced for its 2 MB.
    let record = try world.startReceive(Record.self, from: .rank(left), tag: 10)
    try world.send(Record.made(by: world.rank, size: 20_000), to: right, tag: 10)
    try expectEqual(try record.waitForMessage().value, Record.made(by: left, size: 20_000), world, "record from rank \(left)")
    let text = try world.startReceive(String.self, from: .any, tag: 11)
    try world.send(String(repeating: "rank \(world.rank) ", count: 300_000), to: right, tag: 11)
    let received = try text.waitForMessage()
    try expectEqual(received.source, left, world, "sender of the text")
    try expectEqual(received.value, String(repeating: "rank \(left) ", count: 300_000), world, "text from rank \(left)")
    // Both neighbours at once, waited for in the other order (with 2 ranks they are one rank,
    // told apart by tag).
    let fromLeft = try world.startReceive([Int64].self, from: .rank(left), tag: 12)
    let fromRight = try world.startReceive([Int64].self, from: .rank(right), tag: 13)
    try world.send([Int64](repeating: Int64(world.rank), count: 100_000), to: right, tag: 12)
    try world.send([Int64](repeating: Int64(-world.rank), count: 100_000), to: left, tag: 13)
    try expectEqual(try fromRight.waitForMessage().value, [Int64](repeating: Int64(-right), count: 100_000), world, "array from the right")
    try expectEqual(try fromLeft.waitForMessage().value, [Int64](repeating: Int64(left), count: 100_000), world, "array from the left")
    // A started receive dropped without a wait keeps nothing from the receives after it.
    do { _ = try world.startReceive([Double].self, from: .rank(left), tag: 14) }
    let kept = try world.startReceive([Double].self, from: .rank(left), tag: 14)
    try world.send([Double](repeating: 1, count: 50_000), to: right, tag: 14)
    let second = try world.startSend([Double](repeating: 2, count: 50_000), to: right, tag: 14)
    try expectEqual(try kept.waitForMessage().value, [Double](repeating: 1, count: 50_000), world, "first array after a dropped receive")
    try expectEqual(try world.receive([Double].self, from: .rank(left), tag: 14), [Double](repeating: 2, count: 50_000), world,
                    "second array after a dropped receive")
    try second.wait()
    // Test-polled to completion.
    let polled = try world.startReceive([Double].self, from: .rank(left), tag: 15)
    try world.send([Double](repeating: 3, count: 100_000), to: right, tag: 15)
    var polls = 0
    while try !polled.test() {
        polls += 1
        try expect(polls < 50_000_000, world, "a tested receive from rank \(left) never completed")
    }
    try expectEqual(polled.message?.value, [Double](repeating: 3, count: 100_000), world, "tested array from rank \(left)")
    // A send polled with test() until it completes, and a send request dropped at once (its
    // deinitializer waits for it): the started receives are served meanwhile, as MPI_Test and
    // MPI_Wait move posted receives along.
    let polledSend = try world.startReceive([Double].self, from: .rank(left), tag: 19)
    let sending = try world.startSend([Double](repeating: 4, count: 100_000), to: right, tag: 19)
    polls = 0
    while try !sending.test() {
        polls += 1
        try expect(polls < 50_000_000, world, "a polled send to rank \(right) never completed")
    }
    try expectEqual(try polledSend.waitForMessage().value, [Double](repeating: 4, count: 100_000), world, "array after a polled send")
    let afterDrop = try world.startReceive([Double].self, from: .rank(left), tag: 20)
    do { _ = try world.startSend([Double](repeating: 5, count: 100_000), to: right, tag: 20) }
    try expectEqual(try afterDrop.waitForMessage().value, [Double](repeating: 5, count: 100_000), world, "array after a dropped send")
    for round in 0..<4 {
        // Two values from one sender with one tag, each announced for its size, taken by two
        // started receives and waited for in order.
        let one = try world.startReceive(String.self, from: .rank(left), tag: 16)
        let two = try world.startReceive(String.self, from: .rank(left), tag: 16)
        try world.send(String(repeating: "a\(world.rank)", count: 700_000 + round), to: right, tag: 16)
        try world.send(String(repeating: "b\(world.rank)", count: 700_000 + round), to: right, tag: 16)
        try expectEqual(try one.waitForMessage().value, String(repeating: "a\(left)", count: 700_000 + round), world, "first text, round \(round)")
        try expectEqual(try two.waitForMessage().value, String(repeating: "b\(left)", count: 700_000 + round), world, "second text, round \(round)")
        // A blocking receive of another tag while a receive is started: a value with an array
        // sent apart, then an announced text, both from nonblocking sends.
        let pending = try world.startReceive(Record.self, from: .rank(left), tag: 17)
        let outgoing = try [world.startSend(Record.made(by: world.rank, size: 20_000 + round), to: right, tag: 17),
                            world.startSend(String(repeating: "c\(world.rank)", count: 700_000 + round), to: right, tag: 18)]
        try expectEqual(try world.receive(String.self, from: .rank(left), tag: 18), String(repeating: "c\(left)", count: 700_000 + round),
                        world, "text received while a receive was started, round \(round)")
        try expectEqual(try pending.waitForMessage().value, Record.made(by: left, size: 20_000 + round), world, "started record, round \(round)")
        try waitAll(outgoing)
    }
    return "rounds=20"
}

func broadcast(_ world: Communicator) throws -> String {
    try world.barrier()
    let root = world.size - 1
    let record = try world.broadcast(world.rank == root ? Record.made(by: root) : nil, root: root)
    try expectEqual(record, Record.made(by: root), world, "broadcast record")
    let numbers = try world.broadcast(world.rank == 0 ? (0..<5000).map { Double($0) / 3 } : nil)
    try expectEqual(numbers, (0..<5000).map { Double($0) / 3 }, world, "broadcast doubles")
    let one = try world.broadcast(world.rank == 0 ? Int32(-42) : nil)
    try expectEqual(one, -42, world, "broadcast scalar")
    let empty = try world.broadcast(world.rank == 0 ? [UInt8]() : nil)
    try expectEqual(empty, [], world, "broadcast empty array")
    try world.barrier()
    return "root=\(root)"
}

/// Gather and scatter with equal and varying counts, Codable and plain.
func gatherScatter(_ world: Communicator) throws -> String {
    let n = world.size
    let root = n > 1 ? 1 : 0
    // Codable gather and allgather.
    let gathered = try world.gather(Record.made(by: world.rank), root: root)
    if world.rank == root {
        try expectEqual(gathered, (0..<n).map { Record.made(by: $0) }, world, "gathered records")
    } else {
        try expect(gathered == nil, world, "non-root got a gather result")
    }
    try expectEqual(try world.allgather("r\(world.rank)"), (0..<n).map { "r\($0)" }, world, "allgathered strings")
    // Plain numbers, varying counts: rank r contributes r+1 elements.
    let mine = (0...world.rank).map { Int($0 * 10 + world.rank) }
    let expected = (0..<n).map { r in (0...r).map { Int($0 * 10 + r) } }
    let plain = try world.gather(mine, root: root)
    if world.rank == root { try expectEqual(plain, expected, world, "gathered varying arrays") }
    try expectEqual(try world.allgather(mine), expected, world, "allgathered varying arrays")
    // Equal counts: one scalar each.
    try expectEqual(try world.allgather(Float(world.rank) * 1.5), (0..<n).map { Float($0) * 1.5 }, world, "allgathered scalars")
    // Scatter: Codable, plain varying, plain scalar.
    let records = world.rank == root ? (0..<n).map { Record.made(by: $0 + 100) } : nil
    try expectEqual(try world.scatter(records, root: root), Record.made(by: world.rank + 100), world, "scattered record")
    let pieces = world.rank == root ? (0..<n).map { r in [UInt16](repeating: UInt16(r), count: r * 3) } : nil
    try expectEqual(try world.scatter(pieces, root: root), [UInt16](repeating: UInt16(world.rank), count: world.rank * 3), world, "scattered varying arrays")
    let scalars: [Double]? = world.rank == root ? (0..<n).map { Double($0) + 0.25 } : nil
    let scalar: Double = try world.scatter(scalars, root: root)
    try expectEqual(scalar, Double(world.rank) + 0.25, world, "scattered scalar")
    return "root=\(root)"
}

func allToAll(_ world: Communicator) throws -> String {
    let n = world.size
    let out = (0..<n).map { "\(world.rank)->\($0)" }
    try expectEqual(try world.allToAll(out), (0..<n).map { "\($0)->\(world.rank)" }, world, "all-to-all strings")
    // Varying counts: rank r sends d+r elements to rank d.
    let pieces = (0..<n).map { d in (0..<(d + world.rank)).map { Int32($0 + 100 * world.rank) } }
    let got = try world.allToAll(pieces)
    try expectEqual(got, (0..<n).map { s in (0..<(world.rank + s)).map { Int32($0 + 100 * s) } }, world, "all-to-all arrays")
    return "peers=\(n)"
}

func reduce(_ world: Communicator) throws -> String {
    let n = world.size
    let r = world.rank
    // Integers: element i of rank r is i + r.
    let ints = (0..<10).map { $0 + r }
    try expectEqual(try world.allreduce(ints, .sum), (0..<10).map { $0 * n + n * (n - 1) / 2 }, world, "allreduce sum")
    try expectEqual(try world.allreduce(ints, .minimum), (0..<10).map { $0 }, world, "allreduce min")
    try expectEqual(try world.allreduce(ints, .maximum), (0..<10).map { $0 + n - 1 }, world, "allreduce max")
    try expectEqual(try world.allreduce(Int64(r + 1), .product), Int64((1...n).reduce(1, *)), world, "allreduce product")
    let doubles = [Double(r) + 0.5, -Double(r)]
    let sum = try world.reduce(doubles, .sum, root: n - 1)
    if r == n - 1 {
        try expectEqual(sum, [Double(n * (n - 1) / 2) + 0.5 * Double(n), -Double(n * (n - 1) / 2)], world, "reduce sum of doubles")
    } else {
        try expect(sum == nil, world, "non-root got a reduce result")
    }
    try expectEqual(try world.allreduce(UInt8(200), .sum), UInt8(truncatingIfNeeded: 200 * n), world, "wrapping UInt8 sum")
    // Codable reduction with a closure, applied in rank order.
    let joined = try world.allreduce("\(r)") { $0 + "," + $1 }
    try expectEqual(joined, (0..<n).map(String.init).joined(separator: ","), world, "Codable allreduce")
    let merged = try world.allreduce([String(r): r]) { $0.merging($1) { a, _ in a } }
    try expectEqual(merged, Dictionary(uniqueKeysWithValues: (0..<n).map { (String($0), $0) }), world, "merged dictionaries")
    let root = try world.reduce(Record.made(by: r), root: 0) { a, b in
        var c = a
        c.samples = zip(a.samples, b.samples).map(+)
        return c
    }
    if r == 0 {
        try expectEqual(root?.samples, (0..<30).map { i in (0..<n).map { Double(i) + Double($0) / 8 }.reduce(0, +) }, world, "Codable reduce")
    }
    return "sum=\(try world.allreduce(r, .sum))"
}

/// Arrays of plain numbers passed where any `Codable` value may go: to the closure reductions,
/// and to every collective through generic code, which picks the `Codable` forms. They travel
/// as plain numbers there too, and arrive intact, empty ones included.
func plainArraysAsValues(_ world: Communicator) throws -> String {
    let n = world.size
    let r = world.rank
    let concatenated = try world.allreduce([r, -r]) { $0 + $1 }
    try expectEqual(concatenated, (0..<n).flatMap { [$0, -$0] }, world, "allreduce of [Int] with a closure")
    let longest = try world.reduce([Double](repeating: Double(r), count: r), root: n - 1) { $0.count >= $1.count ? $0 : $1 }
    if r == n - 1 {
        try expectEqual(longest, [Double](repeating: Double(n - 1), count: n - 1), world, "reduce of [Double] with a closure")
    } else {
        try expect(longest == nil, world, "non-root got a reduce result")
    }
    /// The `Codable` collectives, whatever `T` is.
    func viaCodable<T: Codable & Equatable>(_ make: (Int) -> T, _ what: String) throws {
        try expectEqual(try world.broadcast(r == 0 ? make(0) : nil), make(0), world, "broadcast of \(what)")
        let gathered = try world.gather(make(r), root: 0)
        if r == 0 { try expectEqual(gathered, (0..<n).map(make), world, "gather of \(what)") }
        try expectEqual(try world.allgather(make(r)), (0..<n).map(make), world, "allgather of \(what)")
        try expectEqual(try world.scatter(r == 0 ? (0..<n).map(make) : nil), make(r), world, "scatter of \(what)")
        try expectEqual(try world.allToAll((0..<n).map { make(r * n + $0) }), (0..<n).map { make($0 * n + r) }, world, "allToAll of \(what)")
    }
    try viaCodable({ (0..<($0 % 4)).map { Double($0) + 0.25 } }, "[Double]")
    try viaCodable({ [Int32](repeating: Int32($0), count: $0 % 3) }, "[Int32]")
    try viaCodable({ [UInt8](repeating: UInt8(truncatingIfNeeded: $0), count: 70_000 + $0) }, "large [UInt8]")
    return "sum=\(try world.allreduce(r, .sum))"
}

/// Colour by parity, key reversing the order; the new groups work on their own.
func split(_ world: Communicator) throws -> String {
    let n = world.size
    let r = world.rank
    guard let half = try world.split(color: r % 2, key: -r) else {
        throw CheckFailed(description: "rank \(r) got no communicator from split")
    }
    let members = (0..<n).filter { $0 % 2 == r % 2 }
    try expectEqual(half.size, members.count, world, "size of colour \(r % 2)")
    try expectEqual(half.rank, members.reversed().firstIndex(of: r)!, world, "rank in colour \(r % 2)")
    try expectEqual(try half.allreduce(r, .sum), members.reduce(0, +), world, "sum within colour")
    try expectEqual(try half.allgather(r), members.reversed(), world, "members in key order")
    // A rank that passes no colour joins nothing; the rest still form a group.
    let withoutZero = try world.split(color: r == 0 ? nil : 7)
    if r == 0 {
        try expect(withoutZero == nil, world, "rank 0 passed no colour but got a communicator")
    } else {
        try expectEqual(withoutZero?.size, n - 1, world, "size without rank 0")
        try expectEqual(withoutZero?.rank, r - 1, world, "rank without rank 0")
    }
    // Messages on the new communicator do not mix with the world's.
    if half.size > 1 {
        let next = (half.rank + 1) % half.size
        let request = try half.startSend(r, to: next, tag: 1)
        let got = try half.receive(Int.self, from: .any, tag: 1)
        try request.wait()
        try expect(members.contains(got) && got != r, world, "split message from \(got), outside colour")
    }
    try world.barrier()
    return "colour=\(r % 2),rank=\(half.rank)"
}

/// Under a small SWIFTPAR_MPI_MESSAGE_LIMIT, messages around and far above the limit.
func largeMessages(_ world: Communicator) throws -> String {
    let limit = Int(currentEnvironment()["SWIFTPAR_MPI_MESSAGE_LIMIT"] ?? "") ?? 0
    let n = world.size
    let next = (world.rank + 1) % n
    let previous = (world.rank - 1 + n) % n
    let sizes = limit > 0 ? [limit - 1, limit, limit + 1, 2 * limit, 5 * limit + 3, 0] : [1 << 20]
    for (index, bytes) in sizes.enumerated() {
        let payload = (0..<bytes).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ world.rank) }
        let request = try world.startSend(payload, to: next, tag: index)
        let info = try world.probe(from: .any, tag: .tag(index))
        try expectEqual(info.byteCount, bytes, world, "probed size of \(bytes)-byte message")
        let got = try world.receive([UInt8].self, from: .rank(previous), tag: .tag(index))
        try request.wait()
        try expect(got == (0..<bytes).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ previous) }, world, "\(bytes)-byte message from rank \(previous) corrupted")
    }
    // A large Codable value and blocking sends around the ring (rank 0 sends last to avoid a cycle).
    let record = Record.made(by: world.rank, size: max(limit, 100))
    if world.rank == 0 {
        try world.send(record, to: next, tag: 50)
        try expectEqual(try world.receive(Record.self, from: .rank(previous), tag: 50), Record.made(by: previous, size: max(limit, 100)), world, "large record")
    } else {
        let got = try world.receive(Record.self, from: .rank(previous), tag: 50)
        try world.send(record, to: next, tag: 50)
        try expectEqual(got, Record.made(by: previous, size: max(limit, 100)), world, "large record")
    }
    // Collectives above the limit: the native calls are split or fall back to point to point.
    let count = max(limit, 64) * 3 / 8 + 5
    let big = try world.broadcast(world.rank == 0 ? (0..<count).map { Double($0) } : nil)
    try expectEqual(big, (0..<count).map { Double($0) }, world, "large broadcast")
    let sums = try world.allreduce((0..<count).map { Int64($0 + world.rank) }, .sum)
    try expectEqual(sums, (0..<count).map { Int64($0 * n + n * (n - 1) / 2) }, world, "large allreduce")
    let gathered = try world.allgather((0..<count).map { Int64($0 * world.rank) })
    try expectEqual(gathered, (0..<n).map { r in (0..<count).map { Int64($0 * r) } }, world, "large allgather")
    let exchanged = try world.allToAll((0..<n).map { d in [Int64](repeating: Int64(world.rank * 100 + d), count: count) })
    try expectEqual(exchanged, (0..<n).map { s in [Int64](repeating: Int64(s * 100 + world.rank), count: count) }, world, "large all-to-all")
    return "limit=\(limit)"
}

/// One real message above 2 GiB from rank 0 to rank 1 and back, checked byte for byte.
///
/// The bytes repeat a pattern of a prime length, so a chunk delivered out of order or shifted
/// shows up; the checks use memcmp so they stay quick in debug builds.
func hugeMessage(_ world: Communicator) throws -> String {
    guard world.size >= 2, world.rank < 2 else { return "idle" }
    let bytes = (1 << 31) + 4099
    let period = (0..<4099).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ $0 >> 3) }
    if world.rank == 0 {
        var payload = [UInt8](repeating: 0, count: bytes)
        payload.withUnsafeMutableBytes { p in
            period.withUnsafeBytes { p.copyMemory(from: $0) }
            var filled = period.count
            while filled < bytes {
                let n = min(filled, bytes - filled)
                (p.baseAddress! + filled).copyMemory(from: p.baseAddress!, byteCount: n)
                filled += n
            }
        }
        try world.send(payload, to: 1, tag: 5)
        let echo = try world.receiveMessage([UInt8].self, from: 1, tag: 6)
        try expectEqual(echo.byteCount, bytes, world, "size of the echo")
        let same = echo.value.withUnsafeBytes { a in payload.withUnsafeBytes { b in memcmp(a.baseAddress!, b.baseAddress!, bytes) == 0 } }
        try expect(same, world, "the echo of the 2 GiB message differs from what was sent")
    } else {
        let got = try world.receiveMessage([UInt8].self, from: 0, tag: 5)
        try expectEqual(got.byteCount, bytes, world, "size of the 2 GiB message")
        let wrong: Int? = got.value.withUnsafeBytes { p in
            period.withUnsafeBytes { q in
                var offset = 0
                while offset < bytes {
                    let n = min(q.count, bytes - offset)
                    if memcmp(p.baseAddress! + offset, q.baseAddress!, n) != 0 { return offset }
                    offset += n
                }
                return nil
            }
        }
        try expect(wrong == nil, world, "the 2 GiB message is wrong in the \(4099)-byte block at offset \(wrong ?? -1)")
        try world.send(got.value, to: 0, tag: 6)
    }
    return "bytes=\(bytes)"
}

/// Bad input throws a clear error instead of trapping.
func badInput(_ world: Communicator) throws -> String {
    struct Point: Codable { var x: Double; var y: Double }
    let peer = world.size > 1 ? 1 - min(world.rank, 1) : 0
    var messages: [String] = []
    if world.rank < 2 {
        try world.send("not a point", to: peer, tag: 9)
        messages.append(try expectError(world, "receiving a String as a Point", {
            if case .decodingFailed(let type, let source, 9, _, _, _) = $0 { return type.contains("Point") && source == peer }
            return false
        }) { _ = try world.receive(Point.self, from: .rank(peer), tag: 9) })
        try world.send([1, 2, 3] as [Int8], to: peer, tag: 10)
        messages.append(try expectError(world, "receiving 3 bytes as [Double]", {
            if case .decodingFailed = $0 { return true }
            return false
        }) { _ = try world.receive([Double].self, from: .rank(peer), tag: 10) })
    }
    messages.append(try expectError(world, "sending to a rank that does not exist", {
        if case .invalidRank(world.size + 3, _, world.size, world.rank) = $0 { return true }
        return false
    }) { try world.send(1, to: world.size + 3) })
    messages.append(try expectError(world, "receiving from rank -2", {
        if case .invalidRank(-2, _, _, _) = $0 { return true }
        return false
    }) { _ = try world.receive(Int.self, from: .rank(-2)) })
    messages.append(try expectError(world, "a negative tag", {
        if case .invalidTag(-1, _, _, _) = $0 { return true }
        return false
    }) { try world.send(1, to: 0, tag: -1) })
    messages.append(try expectError(world, "a scatter with the wrong count", {
        if case .invalidArgument = $0 { return true }
        return false
    }) { _ = try world.allToAll([1, 2, 3, 4, 5, 6, 7, 8, 9].prefix(world.size + 1).map { $0 }) })
    try world.barrier()
    return "errors=\(messages.count)"
}

/// Rank 1 throws while every other rank waits for a message from it that never comes.
func rankOneThrows(_ world: Communicator) throws -> String {
    if world.rank == 1 {
        struct Boom: Error, CustomStringConvertible { var description: String { "the checks asked rank 1 to fail" } }
        throw Boom()
    }
    _ = try world.receive(Int.self, from: .rank(world.size > 1 ? 1 : 0), tag: 77)
    return "unreachable"
}
