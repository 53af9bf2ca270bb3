/// What went wrong in a communicator operation, where, and on which rank.
///
/// Every case carries the rank that saw the error and the operation it was running, so a message
/// printed by any process of a job says which process it came from. The same mistake produces
/// the same case and the same words on every backend.
public enum CommunicatorError: Error, CustomStringConvertible, Sendable {
    /// Open MPI returned an error code from `operation`; `message` is `MPI_Error_string`'s text.
    case mpi(operation: String, code: Int32, message: String, rank: Int)
    /// A rank outside `0..<size` was named as a destination, source or root.
    case invalidRank(Int, operation: String, size: Int, rank: Int)
    /// A tag outside `0...Communicator.maximumTag` was used.
    case invalidTag(Int, operation: String, maximum: Int, rank: Int)
    /// A received message's bytes do not decode as the type asked for.
    case decodingFailed(type: String, source: Int, tag: Int, byteCount: Int, reason: String, rank: Int)
    /// What `source` contributed to the collective `operation` does not decode as the type asked for.
    case collectiveDecodingFailed(operation: String, type: String, source: Int, byteCount: Int, reason: String, rank: Int)
    /// A value could not be encoded for sending.
    case encodingFailed(type: String, reason: String, rank: Int)
    /// The arguments of a call do not fit together (for example, a scatter with the wrong count).
    case invalidArgument(operation: String, reason: String, rank: Int)
    /// The ranks entered a collective operation that does not match: another operation, another
    /// root, another element type or, where they must agree, another count. `reason` lists what
    /// each rank called; every rank throws the same words.
    case mismatch(operation: String, reason: String, rank: Int)
    /// The operation would wait forever: nothing can ever send the message it waits for.
    case wouldWaitForever(operation: String, reason: String, rank: Int)
    /// Another rank of the job failed or disappeared while this rank depended on it. `peer` is
    /// its rank in this communicator, or -1 when it is not a member of it (a communicator split
    /// from the world): `reason` then names it by its world rank.
    case peerFailed(peer: Int, reason: String, operation: String, rank: Int)
    /// The operation waited longer than the stall timeout with no sign of progress from the
    /// other ranks (an operation of theirs that ended, or `Communicator.noteProgress()`);
    /// `silentRanks` are those that were not waiting in swiftpar either. A stall is the whole
    /// job's: `silentRanks` and `rank` are world ranks, whatever communicator waited.
    case stalled(operation: String, seconds: Double, silentRanks: [Int], timeout: Double, rank: Int)
    /// `operation` was called while another swiftpar operation of this process was still
    /// running on another thread: a rank makes one operation at a time.
    case concurrentUse(operation: String, rank: Int)

    /// The rank that raised the error.
    public var rank: Int {
        switch self {
        case .mpi(_, _, _, let rank), .invalidRank(_, _, _, let rank), .invalidTag(_, _, _, let rank),
             .decodingFailed(_, _, _, _, _, let rank), .collectiveDecodingFailed(_, _, _, _, _, let rank),
             .encodingFailed(_, _, let rank), .invalidArgument(_, _, let rank), .mismatch(_, _, let rank),
             .wouldWaitForever(_, _, let rank), .peerFailed(_, _, _, let rank), .stalled(_, _, _, _, let rank),
             .concurrentUse(_, let rank):
            return rank
        }
    }

    /// What messages name as the operation that waited or failed because of another rank,
    /// when a command line tool's users never called that operation themselves: `swiftpar
    /// hash` says "hash has waited", not "Pool.forEachResult has waited".
    nonisolated(unsafe) package static var commandName: String?

    /// The operation as messages name it: the command's name when one is set.
    private static func named(_ operation: String) -> String { commandName ?? operation }

    /// A one-line explanation that starts with the rank.
    public var description: String {
        switch self {
        case let .mpi(operation, code, message, rank):
            return "rank \(rank): \(operation) failed with MPI error \(code): \(message)"
        case let .invalidRank(bad, operation, size, rank):
            return "rank \(rank): \(operation) names rank \(bad), but the communicator has ranks 0..<\(size)"
        case let .invalidTag(bad, operation, maximum, rank):
            return "rank \(rank): \(operation) uses tag \(bad); tags must be in 0...\(maximum)"
        case let .decodingFailed(type, source, tag, byteCount, reason, rank):
            return "rank \(rank): a message of \(byteCount) bytes from rank \(source) with tag \(tag) does not decode as \(type): \(reason)"
        case let .collectiveDecodingFailed(operation, type, source, byteCount, reason, rank):
            return "rank \(rank): \(operation): the \(byteCount) bytes from rank \(source) do not decode as \(type): \(reason)"
        case let .encodingFailed(type, reason, rank):
            return "rank \(rank): cannot encode a value of type \(type): \(reason)"
        case let .invalidArgument(operation, reason, rank):
            return "rank \(rank): \(operation): \(reason)"
        case let .mismatch(operation, reason, rank):
            return "rank \(rank): \(operation): the ranks called different collectives: \(reason)"
        case let .wouldWaitForever(operation, reason, rank):
            return "rank \(rank): \(Self.named(operation)) would wait forever: \(reason)"
        case let .peerFailed(peer, reason, operation, rank):
            return "rank \(rank): \(Self.named(operation)) failed because \(peer < 0 ? "" : "rank \(peer) ")\(reason)"
        case let .stalled(operation, seconds, silent, timeout, rank):
            let who: String
            if silent.isEmpty {
                who = "every other rank is waiting too"
            } else {
                who = "\(describeRanks(silent)) made no progress in swiftpar (stopped, or busy outside swiftpar)"
            }
            return "rank \(rank): \(Self.named(operation)) has waited \(formatWaited(seconds)) s with no progress from the other ranks, longer than the stall timeout of \(formatSeconds(timeout)) s: \(who)"
        case let .concurrentUse(operation, rank):
            return "rank \(rank): \(operation) was called while another swiftpar operation of this rank is running on another thread; a rank's communicators, pools and requests take one operation at a time (await one before starting the next)"
        }
    }
}

/// Seconds waited: tenths below 10 s ("1.2"), whole seconds above ("75").
func formatWaited(_ seconds: Double) -> String {
    let tenths = Int((seconds * 10).rounded())
    return tenths < 100 ? "\(tenths / 10).\(tenths % 10)" : String(Int(seconds.rounded()))
}

/// Seconds as a short number: "60", "0.5".
func formatSeconds(_ value: Double) -> String {
    value == value.rounded() ? String(Int(value)) : String(value)
}
