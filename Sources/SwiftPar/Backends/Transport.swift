/// What a backend provides: ranks, point-to-point byte messages, and collectives on arrays of
/// plain numbers whose counts every rank already knows. Everything public is written once on
/// top of this.
///
/// The collectives have default implementations over point to point (`GenericCollectives.swift`),
/// run on `collectiveChannel` so they never match a user's messages. The MPI backend replaces
/// them with Open MPI's native (nonblocking) collectives. Before any collective moves data, the
/// communicator layer has already checked, with `allgatherFixed`, that every rank called the
/// same collective with agreeing types and counts; so the transports take counts as given.
@usableFromInline
protocol Transport: AnyObject {
    /// This process's rank in the group.
    var rank: Int { get }
    /// Number of ranks in the group.
    var size: Int { get }
    /// Largest tag a user may use.
    var maximumTag: Int { get }
    /// The same group with a separate message space, for collectives and the pool.
    var collectiveChannel: any Transport { get }
    /// The collective or pool call running on this transport, if any: a wait that can never end
    /// then says that a rank "has finished without calling it".
    var activity: String? { get set }

    /// Sends `bytes` to `destination`; returns once the buffer may be reused.
    func send(_ bytes: UnsafeRawBufferPointer, to destination: Int, tag: Int) throws
    /// Starts sending `message`, which the request keeps alive until it completes.
    func startSend(_ message: OutgoingBytes, to destination: Int, tag: Int) throws -> any TransportRequest
    /// Finds the next message matching `source` and `tag` (nil: any). When `wait` is false, returns
    /// nil at once if none has arrived.
    func probe(source: Int?, tag: Int?, wait: Bool) throws -> MessageInfo?
    /// Like `probe`, for a message from any of `sources` only.
    func probe(anyOf sources: [Int], tag: Int?, wait: Bool) throws -> MessageInfo?
    /// Whether every rank that could send a message from `source` (nil: any other member) has
    /// finished or failed, so that a receive that found none may wait for good: a nonblocking
    /// test then takes the blocking path, which reports it.
    func sendersFinished(source: Int?) throws -> Bool
    /// Receives the message that `probe` described into `buffer`, of exactly `info.byteCount` bytes.
    func receive(_ info: MessageInfo, into buffer: UnsafeMutableRawBufferPointer) throws
    /// Receives the next matching message into `buffer` if the backend can do so in one step;
    /// nil when it cannot, and the caller probes.
    func receiveDirectly(from source: Int?, tag: Int?, into buffer: UnsafeMutableRawBufferPointer) throws -> DirectReceipt?
    /// Sends the bytes of an encoded value (which start with swiftpar's header), then the arrays
    /// it sends apart (`attachments`), each as a message of its own. A backend may send the value
    /// in a way of its own that `receiveEncoded` undoes; every other receive still sees the bytes
    /// as one message. A backend whose sends can wait for their receiver starts every part
    /// before it waits, so a receiver that takes the value whole never waits for a part that
    /// was not sent.
    func sendEncoded(_ bytes: UnsafeRawBufferPointer, followedBy attachments: [UnsafeRawBufferPointer], to destination: Int, tag: Int) throws
    /// Starts sending an encoded value, as `sendEncoded` would send it.
    func startSendEncoded(_ message: OutgoingBytes, to destination: Int, tag: Int) throws -> [any TransportRequest]
    /// Receives the next matching message, expected to hold an encoded value, and calls `body`
    /// with its bytes — where they lie, if the backend can lend them; valid only during the
    /// call — and its envelope. Waits for one to arrive.
    func receiveEncoded<R>(from source: Int?, tag: Int?, _ body: (UnsafeRawBufferPointer, MessageInfo) throws -> R) throws -> R

    /// Every rank's `values` (each rank passes the same count), concatenated in rank order.
    func allgatherFixed<T: PlainNumber>(_ values: [T], operation: String) throws -> [T]
    /// `values` of `root` (of `count` elements) on every rank.
    func broadcast<T: PlainNumber>(_ values: [T]?, count: Int, root: Int) throws -> [T]
    /// Every rank's values concatenated in rank order on `root` (rank r sends `counts[r]`).
    func gather<T: PlainNumber>(_ values: [T], counts: [Int], root: Int) throws -> [T]?
    /// Every rank's values concatenated in rank order on every rank.
    func allgather<T: PlainNumber>(_ values: [T], counts: [Int]) throws -> [T]
    /// `counts[r]` elements of root's `flat` to rank r; `counts` is known on the root only,
    /// `total` (their sum) on every rank.
    func scatter<T: PlainNumber>(_ flat: [T]?, counts: [Int]?, myCount: Int, total: Int, root: Int) throws -> [T]
    /// `sendCounts[d]` elements to each rank d; returns what each rank sent here, concatenated.
    /// `total` is the number of elements all ranks send together, the same on every rank.
    func allToAll<T: PlainNumber>(_ flat: [T], sendCounts: [Int], receiveCounts: [Int], total: Int) throws -> [T]
    /// Element-wise combination of every rank's values (all of one count), on `root`.
    func reduce<T: PlainNumber>(_ values: [T], operation: ReductionOperation, root: Int) throws -> [T]?
    /// Element-wise combination of every rank's values, on every rank.
    func allreduce<T: PlainNumber>(_ values: [T], operation: ReductionOperation) throws -> [T]
    /// Splits the group; nil when `color` is nil (this rank joins no new group).
    func split(color: Int?, key: Int) throws -> (any Transport)?

    /// This rank's sign of life while it computes, for the stall timeout (see
    /// `Communicator.noteProgress()`); any thread may call it.
    func noteProgress()
    /// Makes progress noted on another thread known to ranks that ask (MPI: reads the control
    /// channel); called by the thread that owns this rank's operations while it waits for work.
    func answerWhileComputing()

    /// While `tolerate` is set, a dead rank of this job is this rank's business (a pool redoing
    /// its items) instead of the end of the job; backends that cannot survive a dead rank ignore it.
    func tolerateFailures(_ tolerate: Bool)
    /// Drops the sends still queued for `rank`, which died while failures were tolerated: they
    /// can never complete, and this rank's end must not wait for them.
    func abandonSends(to rank: Int)
    /// Which of `ranks` have died (while failures are tolerated); backends that end the job
    /// when a rank dies report none.
    func failedRanks(among ranks: [Int]) -> [Int]
    /// The cores that every rank of the job shares, on the one machine they all run on; nil
    /// when the ranks may be spread over several machines, or where that is not known.
    var sharedMachineCores: Int? { get }
    /// Whether a stall timeout is set for the job.
    var hasStallTimeout: Bool { get }

    /// A receive from `source` with `tag` (nil: any) was started and will be waited for later:
    /// until `endReceive` or `dropReceive` with the number returned, a backend whose senders
    /// can block until their message is received takes such a message off the queue while this
    /// rank waits for anything, as a posted `MPI_Irecv` would. Nil when the backend needs
    /// nothing of the kind.
    func beginReceive(source: Int?, tag: Int?) -> Int?
    /// The receive `beginReceive` numbered `token` is being waited for now; throws an error met
    /// while its message was being taken.
    func endReceive(_ token: Int) throws
    /// Throws the error met while taking the message of the receive numbered `token`, if any
    /// (it then ends), for a test that would otherwise find no message.
    func checkReceive(_ token: Int) throws
    /// The receive numbered `token` was dropped without a wait; any thread may call this.
    func dropReceive(_ token: Int)
}

extension Transport {
    /// Backends whose sends never wait for the receiver need no note of started receives.
    func beginReceive(source: Int?, tag: Int?) -> Int? { nil }
    func endReceive(_ token: Int) throws {}
    func checkReceive(_ token: Int) throws {}
    func dropReceive(_ token: Int) {}
}

/// An operation in flight: a nonblocking send, or a receive that completes when waited on.
@usableFromInline
protocol TransportRequest: AnyObject {
    /// Blocks until the operation is complete.
    func wait() throws
    /// Returns whether the operation is complete, without blocking.
    func test() throws -> Bool
}

/// Bytes owned by a nonblocking send until it completes: an array's storage, never copied.
@usableFromInline
struct OutgoingBytes {
    let owner: any PlainNumberArray
    var byteCount: Int { owner.count * type(of: owner).elementKind.byteWidth }

    @usableFromInline
    init<T: PlainNumber>(_ values: [T]) { owner = values }
    init(owner: any PlainNumberArray) { self.owner = owner }

    func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try owner.withUnsafeBytes(body)
    }
}

/// What a receive straight into a buffer got: the envelope, with the message's real size (it
/// may be longer than the buffer: it is off the queue all the same), how many of its bytes are
/// in the buffer, and how many messages follow it (the arrays an encoded value sent apart).
@usableFromInline
struct DirectReceipt {
    let info: MessageInfo
    let written: Int
    let following: Int
}

/// A receive for an encoded value matched a message longer than it takes (under MPI, one
/// that was not sent as an encoded value): the message is taken off the queue unread, and the
/// receive reports it.
struct MessageLongerThanReceive: Error {
    let source: Int
    let tag: Int
    let byteCount: Int
    let limit: Int
}

/// A message that has arrived and can be received: who sent it, with which tag, and how large.
public struct MessageInfo: Sendable, Equatable {
    /// The rank that sent the message.
    public let source: Int
    /// The tag it was sent with.
    public let tag: Int
    /// Its size in bytes as it travels (for plain-number arrays, count × element width).
    public let byteCount: Int

    /// Creates a description of a message.
    public init(source: Int, tag: Int, byteCount: Int) {
        self.source = source
        self.tag = tag
        self.byteCount = byteCount
    }
}

extension Transport {
    /// Any source will do where ranks never disappear (MPI, a single rank).
    @usableFromInline
    func probe(anyOf sources: [Int], tag: Int?, wait: Bool) throws -> MessageInfo? {
        try probe(source: sources.count == 1 ? sources[0] : nil, tag: tag, wait: wait)
    }

    func receiveDirectly(from source: Int?, tag: Int?, into buffer: UnsafeMutableRawBufferPointer) throws -> DirectReceipt? {
        nil
    }

    func sendEncoded(_ bytes: UnsafeRawBufferPointer, followedBy attachments: [UnsafeRawBufferPointer], to destination: Int, tag: Int) throws {
        try send(bytes, to: destination, tag: tag)
        for part in attachments { try send(part, to: destination, tag: tag) }
    }

    func startSendEncoded(_ message: OutgoingBytes, to destination: Int, tag: Int) throws -> [any TransportRequest] {
        [try startSend(message, to: destination, tag: tag)]
    }

    /// Probes, then receives the whole message into an array.
    func receiveEncoded<R>(from source: Int?, tag: Int?, _ body: (UnsafeRawBufferPointer, MessageInfo) throws -> R) throws -> R {
        guard let info = try probe(source: source, tag: tag, wait: true) else {
            throw CommunicatorError.wouldWaitForever(operation: "receive", reason: "no message can arrive", rank: rank)
        }
        return try receiveArray(UInt8.self, matching: info).withUnsafeBytes { try body($0, info) }
    }

    func tolerateFailures(_ tolerate: Bool) {}

    func abandonSends(to rank: Int) {}

    func noteProgress() {}

    func answerWhileComputing() {}

    func failedRanks(among ranks: [Int]) -> [Int] { [] }

    var sharedMachineCores: Int? { nil }

    var hasStallTimeout: Bool { false }

    /// Sends a plain-number array from its own storage.
    @usableFromInline
    func sendArray<T: PlainNumber>(_ values: [T], to destination: Int, tag: Int) throws {
        try values.withUnsafeBytes { try send($0, to: destination, tag: tag) }
    }

    /// Receives a message as an array of `T`, allocated once at its final size.
    @usableFromInline
    func receiveArray<T: PlainNumber>(_ type: T.Type = T.self, matching info: MessageInfo) throws -> [T] {
        let stride = MemoryLayout<T>.stride
        guard info.byteCount % stride == 0 else {
            throw CommunicatorError.decodingFailed(
                type: "[\(T.self)]", source: info.source, tag: info.tag, byteCount: info.byteCount,
                reason: "\(info.byteCount) bytes is not a whole number of \(stride)-byte elements", rank: rank)
        }
        return try [T].received(count: info.byteCount / stride) { try receive(info, into: $0) }
    }

    /// Probes for, then receives, the next matching message as an array of `T`.
    func receiveArray<T: PlainNumber>(_ type: T.Type = T.self, from source: Int?, tag: Int?) throws -> ([T], MessageInfo) {
        guard let info = try probe(source: source, tag: tag, wait: true) else {
            throw CommunicatorError.wouldWaitForever(operation: "receive", reason: "no message can arrive", rank: rank)
        }
        return (try receiveArray(T.self, matching: info), info)
    }
}
