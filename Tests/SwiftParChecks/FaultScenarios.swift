#if canImport(Glibc)
import Glibc
#endif
import SwiftPar

/// Mistakes in user code that must end in the same error on every backend: waits that can never
/// end, collectives that do not match, messages received as the wrong type. Scenarios that
/// catch the error report it; those whose error ends the job are checked by the job's output.
let faultScenarios: [String: @Sendable (Communicator) throws -> String] = [
    "barrier-skipped": barrierSkipped,
    "broadcast-skipped": broadcastSkipped,
    "pool-alone": poolAlone,
    "collective-mismatch": collectiveMismatch,
    "pool-mismatch": poolMismatch,
    "exit-status": exitStatus,
    "exit-inside": exitInside,
    "dropped-send": droppedSend,
    "split-errors": splitErrors,
    "broadcast-type-mismatch": broadcastTypeMismatch,
    "message-type-mismatch": messageTypeMismatch,
    "split-bad-color": splitBadColor,
    "stall": stall,
    "stall-at-end": stallAtEnd,
    "stall-in-wait": stallInWait,
    "stall-mid-message": stallMidMessage,
    "busy-noting-progress": busyNotingProgress,
    "hostile-decode": hostileDecode,
    "large-arrays-apart": largeArraysApart,
    "late-failure": lateFailure,
    "failure-while-printing": failureWhilePrinting,
    "plain-enum-error": plainEnumError,
]

/// Rank 1 throws an enum error with no description of its own; a pool item throws another.
func plainEnumError(_ world: Communicator) throws -> String {
    enum TrialError: Error { case boom(code: Int) }
    if arguments.contains("pool") {
        _ = try Pool(world).map([1, 2, 3]) { item -> Int in
            if item == 2 { throw TrialError.boom(code: 7) }
            return item
        }
    }
    if world.rank == 1 { throw TrialError.boom(code: 42) }
    return "\(soloPrefix)rank 1 did not throw"
}

/// Rank 0 prints lines (held in its output buffer: standard output is a pipe) and goes on
/// computing; rank 1 fails meanwhile. The lines rank 0 printed must still come out.
func failureWhilePrinting(_ world: Communicator) throws -> String {
    // Rank 1 fails while rank 0 is busy; with "rank0", rank 0 fails while the others are (found
    // by a user: on the local backend their lines were lost, under mpirun they came out).
    let failing = arguments.contains("rank0") ? 0 : 1
    if world.rank != failing {
        for line in 1...5 { print("rank \(world.rank) printed line \(line)") }
        // Busy, outside any swiftpar call, until the job is ended from outside.
        let start = monotonicSeconds()
        var spin: UInt64 = 0
        while monotonicSeconds() - start < 20 { spin &+= 1 }
        return "\(soloPrefix)never ended \(spin)"
    }
    usleep(500_000)
    struct Failed: Error, CustomStringConvertible {
        let rank: Int
        var description: String { rank == 0 ? "rank 0 failed while the others were busy" : "rank \(rank) failed while rank 0 was busy" }
    }
    throw Failed(rank: failing)
}

func monotonicSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

/// Rank 0 returns at once; rank 1 fails half a second later, while rank 0 is finishing.
func lateFailure(_ world: Communicator) throws -> String {
    if world.rank == 1 {
        usleep(500_000)
        struct Late: Error, CustomStringConvertible { var description: String { "rank 1 failed after rank 0 had finished" } }
        throw Late()
    }
    return "\(soloPrefix)returned"
}

/// A value holding large arrays: they travel apart and arrive straight in the new arrays. Read
/// in order, out of order (a hand-written decoder), nonblocking, and received as the wrong
/// type (the arrays are drained, and the next message is the next value).
func largeArraysApart(_ world: Communicator) throws -> String {
    struct Big: Codable, Equatable {
        var first: [Double]
        var label: String
        var second: [Int32]
    }
    struct Backwards: Codable {
        var second: [Int32]
        var first: [Double]
        enum CodingKeys: String, CodingKey { case first, second }
        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            second = try container.decode([Int32].self, forKey: .second)
            first = try container.decode([Double].self, forKey: .first)
        }
    }
    guard world.size > 1, world.rank < 2 else { return "\(soloPrefix)idle" }
    let peer = 1 - world.rank
    let big = Big(first: (0..<100_000).map { Double($0) / 4 }, label: "two arrays", second: (0..<50_000).map { Int32($0) * -3 })
    if world.rank == 0 {
        try world.send(big, to: peer, tag: 1)
        try world.send(big, to: peer, tag: 1)
        let request = try world.startSend(big, to: peer, tag: 2)
        try world.send(big, to: peer, tag: 3)
        try world.send("after", to: peer, tag: 3)
        try request.wait()
        return "\(soloPrefix)sent"
    }
    try expectEqual(try world.receive(Big.self, from: 0, tag: 1), big, world, "in order")
    let backwards = try world.receive(Backwards.self, from: 0, tag: 1)
    try expectEqual(backwards.first, big.first, world, "first array read second")
    try expectEqual(backwards.second, big.second, world, "second array read first")
    try expectEqual(try world.receive(Big.self, from: 0, tag: 2), big, world, "nonblocking send")
    do {
        _ = try world.receive([Double].self, from: 0, tag: 3)
        throw CheckFailed(description: "rank 1: a value with arrays apart was received as [Double]")
    } catch CommunicatorError.decodingFailed {}
    try expectEqual(try world.receive(String.self, from: 0, tag: 3), "after", world, "the message after a rejected one")
    return "\(soloPrefix)arrays=\(big.first.count + big.second.count)"
}

/// Rank 0 waits in a barrier the others never call: they return instead.
func barrierSkipped(_ world: Communicator) throws -> String {
    if world.rank == 0 { try world.barrier() }
    return "\(soloPrefix)returned"
}

/// The root broadcasts; the others never call broadcast.
func broadcastSkipped(_ world: Communicator) throws -> String {
    if world.rank == 0 { _ = try world.broadcast([1.5, 2.5] as [Double]?) }
    return "\(soloPrefix)returned"
}

/// Rank 0 maps alone; the others never call the pool.
func poolAlone(_ world: Communicator) throws -> String {
    if world.rank == 0 { _ = try Pool(world).map(0..<1000) { $0 * 2 } }
    return "\(soloPrefix)returned"
}

/// Rank 0 calls a barrier while the others broadcast.
func collectiveMismatch(_ world: Communicator) throws -> String {
    if world.rank == 0 {
        try world.barrier()
    } else {
        _ = try world.broadcast(nil as [Double]?)
    }
    return "\(soloPrefix)returned"
}

/// Ranks 0 and 2 call Pool.map, rank 1 a barrier (found by a user: each side waited for the
/// other for good).
func poolMismatch(_ world: Communicator) throws -> String {
    if world.rank == 1 {
        try world.barrier()
    } else {
        _ = try Pool(world).map(0..<10) { $0 * 2 }
    }
    return "\(soloPrefix)returned"
}

/// Rank 0 (or with "rank1", rank 1) returns with an exit status of its own: 3 (or 5).
func exitStatus(_ world: Communicator) throws -> String {
    let quitting = arguments.contains("rank1") ? 1 : 0
    // Set on a communicator split from the world: the status is the process's (it was ignored).
    let setter = arguments.contains("split") ? try world.split(color: 0, key: world.rank) ?? world : world
    if world.rank == quitting { setter.exitStatus = quitting == 0 ? 3 : 5 }
    return "\(soloPrefix)status \(world.exitStatus)"
}

/// Errors on communicators split from the world, which number their ranks apart, on 4 ranks
/// split into {0, 1} and {2, 3}. With `outsider`: world rank 1 throws while world rank 2
/// waits on its half, whose rank 1 (world rank 3) is alive: the error it catches must not call
/// the one that failed "rank 1" (local backend; under mpirun the job is ended at once).
/// Otherwise world rank 3 sends to a rank its half does not have, uncaught: the job's message
/// says which communicator the numbers belong to.
func splitErrors(_ world: Communicator) throws -> String {
    guard world.size == 4 else { return "\(soloPrefix)needs 4 ranks" }
    guard let half = try world.split(color: world.rank / 2, key: world.rank) else { return "\(soloPrefix)no half" }
    if arguments.contains("outsider") {
        switch world.rank {
        case 1:
            usleep(300_000)
            throw CheckFailed(description: "boom")
        case 2:
            do {
                _ = try half.receive(Int.self, from: 1)
                return "\(soloPrefix)received"
            } catch {
                return "\(soloPrefix)\(error)"
            }
        default:
            // Rank 0 ends the job as soon as it meets the failure: not before rank 2 has printed.
            if world.rank == 0 { usleep(1_200_000) }
            try world.barrier()
            return "\(soloPrefix)passed the barrier"
        }
    }
    if arguments.contains("stall") {
        // World rank 3 stops; rank 2 waits for it on their half while ranks 0 and 1 are busy
        // outside swiftpar for longer (a rank that ends a wait of its own counts as progress).
        // Rank 2 catches its stall: the ranks it names are world ranks, and so is its own.
        if world.rank == 3 { raise(SIGSTOP) }
        guard world.rank == 2 else {
            usleep(6_000_000)
            return "\(soloPrefix)slept"
        }
        do {
            _ = try half.receive(Int.self, from: .rank(1), tag: 3)
            return "\(soloPrefix)received"
        } catch {
            return "\(soloPrefix)\(error)"
        }
    }
    if arguments.contains("pool") {
        // A pool over {2, 3} whose item throws: every rank of that pool throws the same error,
        // and its rank 0 (world rank 2) is the one to report it, once.
        if world.rank >= 2 {
            _ = try Pool(half).map(0..<100) { item -> Int in
                if item == 57 { throw CheckFailed(description: "item 57 is bad") }
                return item
            }
        }
        return "\(soloPrefix)returned"
    }
    if world.rank == 3 { try half.send(1, to: 5) }
    try world.barrier()
    return "\(soloPrefix)passed the barrier"
}

/// Rank 0 starts sends of 4 MB and drops their requests at once; rank 1 receives them only
/// after a barrier (under MPI the dropped request waited for its receive: a hang). With
/// `unreceived`, rank 1 never receives the second, larger than any buffer on the way: rank 0
/// cannot finish, and says why.
func droppedSend(_ world: Communicator) throws -> String {
    guard world.size >= 2, world.rank < 2 else { return "\(soloPrefix)idle" }
    let values = (0..<500_000).map(Double.init)
    if world.rank == 0 {
        _ = try world.startSend(values, to: 1, tag: 1)
        _ = try world.startSend(values.map { $0 * 2 }, to: 1, tag: 2)
    }
    try world.barrier()
    if world.rank == 1 {
        try expectEqual(try world.receive([Double].self, from: 0, tag: 1), values, world, "the first dropped send")
        if !arguments.contains("unreceived") {
            try expectEqual(try world.receive([Double].self, from: 0, tag: 2), values.map { $0 * 2 }, world, "the second dropped send")
        }
    }
    return "\(soloPrefix)returned"
}

/// A rank calls `exit(0)` inside the closure while the others wait for it in a barrier (rank 1,
/// or rank 0 with the argument `rank0`): an error of that rank on every backend. The local
/// backend took it for a rank that had finished.
func exitInside(_ world: Communicator) throws -> String {
    let quitting = arguments.contains("rank0") ? 0 : 1
    try world.barrier()
    if world.rank == quitting {
        print("rank \(world.rank): exiting")
        exit(0)
    }
    try world.barrier()
    return "\(soloPrefix)returned"
}

/// The root broadcasts a String; the others expect [Double].
func broadcastTypeMismatch(_ world: Communicator) throws -> String {
    if world.rank == 0 {
        _ = try world.broadcast("a string")
    } else {
        _ = try world.broadcast(nil as [Double]?)
    }
    return "\(soloPrefix)returned"
}

/// A String received as [Double], [Double] received as a String, [Double] received into an
/// [Int64] buffer of another width, and an encoded value received into a buffer: each throws
/// `decodingFailed` on the receiver, on every backend.
func messageTypeMismatch(_ world: Communicator) throws -> String {
    guard world.size > 1, world.rank < 2 else { return "\(soloPrefix)idle" }
    let peer = 1 - world.rank
    var seen: [String] = []
    func expectDecodingFailure(_ what: String, _ body: () throws -> Void) throws {
        do {
            try body()
        } catch let error as CommunicatorError {
            guard case .decodingFailed(_, let source, _, _, let reason, _) = error, source == peer else {
                throw CheckFailed(description: "rank \(world.rank) \(what): unexpected error \(error)")
            }
            seen.append(reason)
            return
        }
        throw CheckFailed(description: "rank \(world.rank) \(what): no error")
    }
    try world.send("hello!", to: peer, tag: 1)
    try expectDecodingFailure("String as [Double]") { _ = try world.receive([Double].self, from: .rank(peer), tag: 1) }
    try world.send([1.5, 2.5] as [Double], to: peer, tag: 2)
    try expectDecodingFailure("[Double] as String") { _ = try world.receive(String.self, from: .rank(peer), tag: 2) }
    try world.send([1, 2, 3] as [Int16], to: peer, tag: 3)
    try expectDecodingFailure("[Int16] of 6 bytes as [Double]") { _ = try world.receive([Double].self, from: .rank(peer), tag: 3) }
    try world.send(["a": 1], to: peer, tag: 4)
    var buffer = [Double](repeating: 0, count: 64)
    try expectDecodingFailure("a dictionary into a [Double] buffer") { try world.receive(into: &buffer, from: .rank(peer), tag: 4) }
    guard seen[0].contains("holds a swiftpar-encoded value (a string)"), seen[1].contains("without swiftpar's header") else {
        throw CheckFailed(description: "rank \(world.rank): reasons do not say what the messages held: \(seen)")
    }
    return "\(soloPrefix)errors=\(seen.count)"
}

/// split with a color beyond MPI's int is a clear error, not a trap.
func splitBadColor(_ world: Communicator) throws -> String {
    do {
        _ = try world.split(color: 1 << 40)
    } catch CommunicatorError.invalidArgument(let operation, let reason, _) where operation == "split" {
        return "\(soloPrefix)\(reason)"
    }
    throw CheckFailed(description: "rank \(world.rank): split(color: 1 << 40) did not throw")
}

/// Rank 1 stops itself (SIGSTOP) while rank 0 waits for it: with a stall timeout the job ends
/// naming rank 1.
func stall(_ world: Communicator) throws -> String {
    if world.rank == 1 { raise(SIGSTOP) }
    _ = try world.receive(Int.self, from: .rank(1), tag: 3)
    return "\(soloPrefix)unreachable"
}

/// Rank 0 stops rank 1 (SIGSTOP) while rank 1 waits in a receive of its own, then waits for
/// it; the other ranks wait for rank 1 too. With a stall timeout the job ends naming rank 1
/// alone: the ranks waiting with it are not to blame, the one stopped in its wait is.
func stallInWait(_ world: Communicator) throws -> String {
    if world.rank == 1 {
        try world.send(Int(getpid()), to: 0, tag: 4)
        _ = try world.receive(Int.self, from: .rank(0), tag: 5)
    } else if world.rank == 0 {
        let pid = try world.receive(Int.self, from: .rank(1), tag: 4)
        usleep(300_000)
        kill(pid_t(pid), SIGSTOP)
        _ = try world.receive(Int.self, from: .rank(1), tag: 6)
    } else {
        _ = try world.receive(Int.self, from: .rank(1), tag: 6)
    }
    return "\(soloPrefix)unreachable"
}

/// Rank 1 is stopped (SIGSTOP) partway through a message larger than a ring, while rank 0
/// receives it: with a stall timeout the job ends naming rank 1 (the local backend waited for
/// the rest of the message for good). Under MPI rank 0 may get the whole message, read from
/// rank 1's memory, and then the job waits for rank 1 at the end.
func stallMidMessage(_ world: Communicator) throws -> String {
    if world.rank == 1 {
        signalSelf(SIGSTOP, afterMicroseconds: 200_000)
        try world.send([Double](repeating: 1.5, count: 1 << 20), to: 0, tag: 7)
    } else if world.rank == 0 {
        usleep(500_000)
        _ = try world.receive([Double].self, from: .rank(1), tag: 7)
    }
    return "\(soloPrefix)returned"
}

/// Rank 1 stops itself (SIGSTOP) while the others return: with a stall timeout the job ends,
/// naming rank 1, instead of waiting for it at the end for ever.
func stallAtEnd(_ world: Communicator) throws -> String {
    if world.rank == 1 { raise(SIGSTOP) }
    return "\(soloPrefix)returned"
}

/// Rank 1 computes for 3 s (longer than the tests' stall timeout of 1 s) before it sends; with
/// `noting`, it calls `noteProgress()` every millisecond meanwhile, and the others, waiting for
/// it in a receive and at the end, wait on; without (computing 15 s then, so that a slow start
/// cannot hide the stall), the job ends naming rank 1.
func busyNotingProgress(_ world: Communicator) throws -> String {
    let noting = arguments.contains("noting")
    if world.rank == 1 {
        let end = monotonicSeconds() + (noting ? 3 : 15)
        var spins = 0
        while monotonicSeconds() < end {
            for _ in 0..<10_000 { spins &+= 1 }
            if noting { world.noteProgress() }
            usleep(1000)
        }
        for peer in 0..<world.size where peer != 1 { try world.send(spins > 0 ? peer : -1, to: peer, tag: 4) }
        return "sent"
    }
    let got = try world.receive(Int.self, from: .rank(1), tag: 4)
    return "received=\(got)"
}

/// Peak resident memory of this process, from /proc/self/status (VmHWM), in bytes.
func peakMemory() -> Int {
    guard let file = fopen("/proc/self/status", "r") else { return 0 }
    defer { fclose(file) }
    var line = [CChar](repeating: 0, count: 256)
    while fgets(&line, Int32(line.count), file) != nil {
        let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if text.hasPrefix("VmHWM:") {
            return (Int(text.dropFirst(6).filter(\.isNumber)) ?? 0) * 1024
        }
    }
    return 0
}

/// A 16 MiB message received as types it is not: each receive throws at once, and the receiver
/// never holds much more than the message itself.
func hostileDecode(_ world: Communicator) throws -> String {
    guard world.size > 1, world.rank < 2 else { return "\(soloPrefix)idle" }
    let count = 1 << 20
    if world.rank == 0 {
        let words = (0..<count).map { "word " + String(1_000_000_000 + $0) }
        for tag in 1...3 { try world.send(words, to: 1, tag: tag) }
        return "\(soloPrefix)sent"
    }
    let before = peakMemory()
    var errors = 0
    for (tag, attempt) in [(1, "as [Record]"), (2, "as [[String: Int]]"), (3, "as [Double]")] {
        do {
            switch tag {
            case 1: _ = try world.receive([Record].self, from: 0, tag: .tag(tag))
            case 2: _ = try world.receive([[String: Int]].self, from: 0, tag: .tag(tag))
            default: _ = try world.receive([Double].self, from: 0, tag: .tag(tag))
            }
            throw CheckFailed(description: "rank 1: 16 MiB of strings decoded \(attempt)")
        } catch CommunicatorError.decodingFailed {
            errors += 1
        }
    }
    let grown = peakMemory() - before
    try expect(grown < 64 << 20, world, "peak memory grew by \(grown >> 20) MiB while rejecting 16 MiB messages")
    return "\(soloPrefix)rejected=\(errors),grown-MiB=\(grown >> 20)"
}
