/// A communicator of the local backend: a group of ranks of the job (all of them for the world)
/// and a context number that keeps its messages apart from every other communicator's.
final class LocalTransport: Transport {
    let engine: LocalEngine
    /// World ranks of the members, in this communicator's rank order.
    let members: [Int]
    let rank: Int
    let context: Int
    let maximumTag = Int(Int32.max)
    @exclusivity(unchecked) var activity: String?
    private let groupRanks: [Int: Int]
    @exclusivity(unchecked) private var channel: LocalTransport?

    init(engine: LocalEngine, members: [Int], context: Int) {
        self.engine = engine
        self.members = members
        self.context = context
        groupRanks = Dictionary(uniqueKeysWithValues: members.enumerated().map { ($1, $0) })
        rank = groupRanks[engine.me]!
    }

    var size: Int { members.count }

    /// The rank in this communicator of world rank `world` (itself if not a member).
    func groupRank(_ world: Int) -> Int { groupRanks[world] ?? world }

    /// The error for world rank `world`'s failure (`reason`, "threw: ...") met while this
    /// communicator's rank waited in `operation`: a rank that is not a member is named by its
    /// world rank, and said to be outside (its world number would name another member).
    func peerFailure(world: Int, reason: String, operation: String) -> CommunicatorError {
        guard let peer = groupRanks[world] else {
            return .peerFailed(peer: -1, reason: "world rank \(world), which is not in this communicator, \(reason)", operation: operation, rank: rank)
        }
        return .peerFailed(peer: peer, reason: reason, operation: operation, rank: rank)
    }

    /// The same members with the next context: every communicator takes two.
    var collectiveChannel: any Transport {
        if let channel { return channel }
        let made = LocalTransport(engine: engine, members: members, context: context + 1)
        channel = made
        return made
    }

    func send(_ bytes: UnsafeRawBufferPointer, to destination: Int, tag: Int) throws {
        try engine.send(bytes, to: members[destination], tag: tag, context: context, waiter: self)
    }

    func startSend(_ message: OutgoingBytes, to destination: Int, tag: Int) throws -> any TransportRequest {
        try engine.startSend(message, to: members[destination], tag: tag, context: context, waiter: self)
    }

    func sendersFinished(source: Int?) throws -> Bool {
        let senders = source.map { [members[$0]] } ?? members.filter { $0 != engine.me }
        return !senders.isEmpty && senders.allSatisfy {
            $0 != engine.me && engine.region.state(of: $0).load(ordering: .acquiring) != RankState.running.rawValue
        }
    }

    func probe(source: Int?, tag: Int?, wait: Bool) throws -> MessageInfo? {
        let sources = source.map { [members[$0]] } ?? members
        guard let found = try engine.probe(sources: sources, anySource: source == nil, tag: tag, context: context,
                                           wait: wait, waiter: self) else { return nil }
        return MessageInfo(source: groupRank(found.source), tag: found.tag, byteCount: found.length)
    }

    func probe(anyOf sources: [Int], tag: Int?, wait: Bool) throws -> MessageInfo? {
        guard let found = try engine.probe(sources: sources.map { members[$0] }, anySource: sources.count > 1, tag: tag,
                                           context: context, wait: wait, waiter: self) else { return nil }
        return MessageInfo(source: groupRank(found.source), tag: found.tag, byteCount: found.length)
    }

    func receiveEncoded<R>(from source: Int?, tag: Int?, _ body: (UnsafeRawBufferPointer, MessageInfo) throws -> R) throws -> R {
        let sources = source.map { [members[$0]] } ?? members
        return try engine.receiveEncoded(sources: sources, anySource: source == nil, tag: tag, context: context, waiter: self) { bytes, world, tag in
            try body(bytes, MessageInfo(source: groupRank(world), tag: tag, byteCount: bytes.count))
        }
    }

    func receive(_ info: MessageInfo, into buffer: UnsafeMutableRawBufferPointer) throws {
        try engine.receive(from: members[info.source], tag: info.tag, context: context, into: buffer, waiter: self)
    }

    /// Agrees on a fresh context with every member (the largest next-free number among them,
    /// so no process ever sees one context used for two communicators), then groups ranks by
    /// colour and orders each group by key and old rank.
    func split(color: Int?, key: Int) throws -> (any Transport)? {
        let proposals = try allgatherFixed([Int64(engine.nextContext), Int64(color ?? -1), Int64(key)], operation: "split")
        let proposal = Int((0..<size).map { proposals[3 * $0] }.max() ?? 2)
        engine.nextContext = proposal + 2
        guard let color else { return nil }
        let chosen = (0..<size).filter { proposals[3 * $0 + 1] == Int64(color) }
            .sorted { (proposals[3 * $0 + 2], $0) < (proposals[3 * $1 + 2], $1) }
        return LocalTransport(engine: engine, members: chosen.map { members[$0] }, context: proposal)
    }

    func noteProgress() {
        engine.noteProgress()
    }

    func tolerateFailures(_ tolerate: Bool) {
        engine.region.toleratesFailures.store(tolerate ? 1 : 0, ordering: .sequentiallyConsistent)
    }

    func abandonSends(to rank: Int) {
        engine.abandonSends(to: members[rank])
    }

    /// Every rank of the local backend runs on this machine, on the cores the job was started
    /// with (its ranks inherit them, and none is bound to fewer).
    var sharedMachineCores: Int? { SwiftPar.availableCores }

    var hasStallTimeout: Bool { engine.stallTimeout != nil }

    func failedRanks(among ranks: [Int]) -> [Int] {
        ranks.filter { engine.region.state(of: members[$0]).load(ordering: .acquiring) == RankState.failed.rawValue }
    }
}
