/// A communicator of the local backend: a group of ranks of the job (all of them for the world)
/// and a context number that keeps its messages apart from every other communicator's.
final class LocalTransport: Transport {
    let engine: LocalEngine
    /// World ranks of the members, in this communicator's rank order.
    let members: [Int]
    let rank: Int
    let context: Int
    let maximumTag = Int(Int32.max)
    private let groupRank: [Int: Int]
    private var channel: LocalTransport?

    init(engine: LocalEngine, members: [Int], context: Int) {
        self.engine = engine
        self.members = members
        self.context = context
        groupRank = Dictionary(uniqueKeysWithValues: members.enumerated().map { ($1, $0) })
        rank = groupRank[engine.me]!
    }

    var size: Int { members.count }

    /// The same members with the next context: every communicator takes two.
    var collectiveChannel: any Transport {
        if let channel { return channel }
        let made = LocalTransport(engine: engine, members: members, context: context + 1)
        channel = made
        return made
    }

    func send(_ bytes: UnsafeRawBufferPointer, to destination: Int, tag: Int) throws {
        try engine.send(bytes, to: members[destination], tag: tag, context: context)
    }

    func startSend(_ message: OutgoingBytes, to destination: Int, tag: Int) throws -> any TransportRequest {
        try engine.startSend(message, to: members[destination], tag: tag, context: context)
    }

    func probe(source: Int?, tag: Int?, wait: Bool) throws -> MessageInfo? {
        let sources = source.map { [members[$0]] } ?? members
        guard let found = try engine.probe(sources: sources, tag: tag, context: context, wait: wait) else { return nil }
        return MessageInfo(source: groupRank[found.source]!, tag: found.tag, byteCount: found.length)
    }

    func probe(anyOf sources: [Int], tag: Int?, wait: Bool) throws -> MessageInfo? {
        guard let found = try engine.probe(sources: sources.map { members[$0] }, tag: tag, context: context, wait: wait) else { return nil }
        return MessageInfo(source: groupRank[found.source]!, tag: found.tag, byteCount: found.length)
    }

    func receive(_ info: MessageInfo, into buffer: UnsafeMutableRawBufferPointer) throws {
        try engine.receive(from: members[info.source], tag: info.tag, context: context, into: buffer)
    }

    /// Agrees on a fresh context with every member (the largest next-free number among them,
    /// so no process ever sees one context used for two communicators), then groups ranks by
    /// colour and orders each group by key and old rank.
    func split(color: Int?, key: Int) throws -> (any Transport)? {
        let proposal = try genericAllreduce([engine.nextContext], operation: .maximum)[0]
        engine.nextContext = proposal + 2
        let choices = try genericAllgather([color ?? -1, key])
        guard let color else { return nil }
        let chosen = (0..<size).filter { choices[$0][0] == color }
            .sorted { (choices[$0][1], $0) < (choices[$1][1], $1) }
        return LocalTransport(engine: engine, members: chosen.map { members[$0] }, context: proposal)
    }
}
