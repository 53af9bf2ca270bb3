/// How a `Pool` hands out items.
public struct MapOptions {
    /// How many items travel to a rank at once.
    public enum ChunkSize: Equatable, Sendable {
        /// Adapts to how long items take: small chunks at first, then chunks of a few
        /// milliseconds of work each, shrinking towards the end so every rank finishes together.
        case automatic
        /// Exactly this many items per chunk (1 = one round trip per item).
        case fixed(Int)
    }

    /// When items are handed out.
    public enum Schedule: Equatable, Sendable {
        /// Chunks on demand: a rank that finishes early gets more (load balancing).
        case dynamic
        /// One contiguous block per rank, sent once; for items that all take about as long.
        /// The input is read into memory first to count it.
        case staticBlocks
    }

    /// Chunk size; automatic by default.
    public var chunkSize: ChunkSize = .automatic
    /// Dynamic by default.
    public var schedule: Schedule = .dynamic
    /// When a worker dies mid-chunk, hand its unfinished items to the surviving ranks instead of
    /// failing (local backend; under MPI a dead rank ends the whole job).
    public var retryLostItems = false
    /// Called on rank 0 as results arrive, with the items done and the total when known.
    public var progress: ((_ done: Int, _ total: Int?) -> Void)?
    /// Whether rank 0 works on items too, between serving the others (the default). When
    /// false it only hands out items and collects results, unless it is the only rank.
    public var rankZeroWorks = true

    /// Options with the defaults: automatic chunks, dynamic schedule, no retries, no progress.
    public init(chunkSize: ChunkSize = .automatic, schedule: Schedule = .dynamic, retryLostItems: Bool = false,
                progress: ((_ done: Int, _ total: Int?) -> Void)? = nil) {
        self.chunkSize = chunkSize
        self.schedule = schedule
        self.retryLostItems = retryLostItems
        self.progress = progress
    }
}

/// Why a map failed.
public enum PoolError: Error, CustomStringConvertible, Sendable {
    /// The transform threw for the item at `index` on `rank`; `message` is the original error.
    case itemFailed(index: Int, rank: Int, message: String)
    /// `rank` died while it held `lostItems` (index ranges), and retries were not asked for.
    case workerDied(rank: Int, lostItems: [Range<Int>], reason: String)
    /// Every worker died and rank 0 could not finish alone (it never stops working, so this
    /// only happens when rank 0 itself cannot go on).
    case invalidOptions(String)

    /// One line naming the item or rank.
    public var description: String {
        switch self {
        case let .itemFailed(index, rank, message):
            return "item \(index) failed on rank \(rank): \(message)"
        case let .workerDied(rank, lost, reason):
            let items = lost.map { $0.count == 1 ? "\($0.lowerBound)" : "\($0.lowerBound)..<\($0.upperBound)" }.joined(separator: ", ")
            return "rank \(rank) \(reason) while it held items \(items); those items were not processed (retryLostItems would redo them)"
        case let .invalidOptions(text):
            return text
        }
    }
}

/// The failure of one item, in the per-item results of `Pool.mapResults`.
public struct PoolItemError: Error, CustomStringConvertible, Sendable, Codable, Equatable {
    /// Index of the item in the input.
    public let index: Int
    /// Rank that ran it.
    public let rank: Int
    /// The original error's description.
    public let message: String

    /// Describes the failure of item `index` on `rank`.
    public init(index: Int, rank: Int, message: String) {
        self.index = index
        self.rank = rank
        self.message = message
    }

    /// "item 3 failed on rank 1: ...".
    public var description: String { "item \(index) failed on rank \(rank): \(message)" }
}

// MARK: Messages between rank 0 and the workers (on the communicator's collective channel)

@usableFromInline
enum PoolTag: Int {
    case chunk = 100, result, stop
}

@usableFromInline
struct PoolChunk<Item: Codable>: Codable {
    @usableFromInline var start: Int
    @usableFromInline var items: [Item]

    @inlinable
    init(start: Int, items: [Item]) {
        self.start = start
        self.items = items
    }
}

@usableFromInline
struct PoolItemFailure: Codable {
    @usableFromInline var offset: Int
    @usableFromInline var message: String

    @inlinable
    init(offset: Int, message: String) {
        self.offset = offset
        self.message = message
    }
}

@usableFromInline
struct PoolChunkResult<R: Codable>: Codable {
    @usableFromInline var start: Int
    @usableFromInline var count: Int
    /// The results of the items that succeeded, in order (or one combined value).
    @usableFromInline var results: [R]
    @usableFromInline var failures: [PoolItemFailure]
    @usableFromInline var seconds: Double

    @inlinable
    init(start: Int, count: Int, results: [R], failures: [PoolItemFailure], seconds: Double) {
        self.start = start
        self.count = count
        self.results = results
        self.failures = failures
        self.seconds = seconds
    }
}

@usableFromInline
struct PoolStop: Codable {
    @usableFromInline var failure: PoolFailureRecord?
    @usableFromInline var payload: [UInt8]?
}

/// A `PoolError` as it travels to the workers.
@usableFromInline
struct PoolFailureRecord: Codable {
    var index: Int?
    var rank: Int
    var message: String
    var lost: [[Int]]?

    init(_ error: PoolError) {
        switch error {
        case let .itemFailed(index, rank, message):
            self.index = index
            self.rank = rank
            self.message = message
        case let .workerDied(rank, lost, reason):
            self.rank = rank
            self.message = reason
            self.lost = lost.map { [$0.lowerBound, $0.upperBound] }
        case let .invalidOptions(text):
            self.rank = 0
            self.message = text
        }
    }

    @usableFromInline
    var error: PoolError {
        if let index { return .itemFailed(index: index, rank: rank, message: message) }
        if let lost { return .workerDied(rank: rank, lostItems: lost.map { $0[0]..<$0[1] }, reason: message) }
        return .invalidOptions(message)
    }
}
