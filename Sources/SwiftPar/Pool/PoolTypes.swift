/// How a `Pool` hands out items.
public struct MapOptions: Sendable {
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
    /// failing (local backend; under MPI a dead rank ends the whole job). A pool call after a
    /// worker died does not first check that every rank is in the same pool call, as other pool
    /// calls do (a dead rank cannot answer): there, ranks in different calls wait.
    public var retryLostItems = false
    /// Called on rank 0 as results arrive, with the items done and the total when known.
    public var progress: (@Sendable (_ done: Int, _ total: Int?) -> Void)?
    /// Whether rank 0 works on items too, between serving the others (the default). When
    /// false it only hands out items and collects results, unless it is the only rank.
    public var rankZeroWorks = true
    /// Whether, when the ranks outnumber the cores of the one machine they all run on and they
    /// take turns on them, only as many ranks as there are cores work at a time (the default).
    /// Two ranks on one core evict each other's data from its caches, so they finish later
    /// than one rank doing the work of both.
    ///
    /// Every rank works at first (those beyond the cores on one chunk at a time, until the
    /// timings are in). Once the chunks of 30 ms or so show the ranks waiting for a core more
    /// than 15% of the time while they seldom sleep, rank 0 gives new chunks only to as many
    /// ranks as there are cores (itself included when `rankZeroWorks`); the others finish the
    /// chunks they hold and wait, idle, until the map ends (in `mapReduce(_:into:)`, their
    /// partials travel to rank 0 as soon as they are idle). Items that sleep (a read from
    /// disk, the network, a sleep) for a tenth of their time or more keep or put every rank
    /// back to work, for the rest of the map: one rank's sleep leaves its core to another. A
    /// rank that dies is replaced by one that waited.
    ///
    /// It never applies with `.staticBlocks`, to the `async` forms, with a stall timeout (a
    /// rank left without work would wait through the whole map), or when the ranks may run on
    /// several machines (MPI across hosts, `srun`). The local backend counts the cores its
    /// processes may run on (`taskset`, a container's or Slurm's CPU set); MPI counts the
    /// machine's.
    public var limitsBusyRanksToCores = true

    /// Options with the defaults: automatic chunks, dynamic schedule, no retries, no progress.
    public init(chunkSize: ChunkSize = .automatic, schedule: Schedule = .dynamic, retryLostItems: Bool = false,
                progress: (@Sendable (_ done: Int, _ total: Int?) -> Void)? = nil) {
        self.chunkSize = chunkSize
        self.schedule = schedule
        self.retryLostItems = retryLostItems
        self.progress = progress
    }
}

/// Why a map failed.
public enum PoolError: Error, CustomStringConvertible, Sendable {
    /// The transform threw for the item at `index` on `rank`; `message` describes the original
    /// error (an enum error without a description of its own with its type's name).
    case itemFailed(index: Int, rank: Int, message: String)
    /// `rank` died while it held `lostItems` (index ranges), and retries were not asked for.
    case workerDied(rank: Int, lostItems: [Range<Int>], reason: String)
    /// The map's options cannot be used (for example a fixed chunk size below 1); the text
    /// says which and why.
    case invalidOptions(String)
    /// Rank 0 stopped the map with an error of its own, which it throws there: its
    /// `forEachResult` body or a `combine` threw, or a result could not be decoded. The workers
    /// of a form that gives them nothing (`map`, `mapResults`, `forEachResult`, `mapReduce`
    /// without `everyRank`) return as usual; those of a form that gives them a value throw this,
    /// with rank 0's error as `message`.
    case stoppedOnRankZero(message: String)
    /// `operation` was called inside the transform of `outer` on the same communicator: every
    /// rank is inside the outer call, so none can take part in another; pool calls do not nest.
    case nested(operation: String, outer: String)

    /// One line naming the item or rank.
    public var description: String {
        switch self {
        case let .itemFailed(index, rank, message):
            return "item \(index) failed on rank \(rank): \(message)"
        case let .workerDied(rank, lost, reason):
            guard !lost.isEmpty else { return "rank \(rank) \(reason) while it held no items" }
            let items = lost.map { $0.count == 1 ? "\($0.lowerBound)" : "\($0.lowerBound)..<\($0.upperBound)" }.joined(separator: ", ")
            return "rank \(rank) \(reason) while it held items \(items); those items were not processed (retryLostItems would redo them)"
        case let .invalidOptions(text):
            return text
        case let .stoppedOnRankZero(message):
            return "rank 0 stopped the map: \(message)"
        case let .nested(operation, outer):
            return "\(operation) was called inside the transform of \(outer) on the same communicator; pool calls do not nest"
        }
    }
}

extension PoolError {
    /// Rank 0's own `error`, as the workers are told of it (without a leading "rank 0: ").
    @usableFromInline
    static func stopped(by error: any Error) -> PoolError {
        let text = errorText(error)
        return .stoppedOnRankZero(message: text.hasPrefix("rank 0: ") ? String(text.dropFirst(8)) : text)
    }
}

/// The failure of one item, in the per-item results of `Pool.mapResults`.
public struct PoolItemError: Error, CustomStringConvertible, Sendable, Codable, Equatable {
    /// Index of the item in the input.
    public let index: Int
    /// Rank that ran it.
    public let rank: Int
    /// The original error's description (for an enum error without one, its type and case:
    /// `LoadError.missing(path: "a")`).
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
    case chunk = 100, result, stop, partial
    /// A worker's partial total could not be encoded: the reason, as a String.
    case partialFailed
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

// Chunks and chunk results travel in a fixed layout around the encoded items and results:
// a round trip of a one-item chunk is then two small encodings instead of keyed containers.

/// Little-endian 64-bit words at the front of a message, then the rest.
@usableFromInline
struct PoolFrame {
    @usableFromInline var bytes: [UInt8] = []

    @inlinable
    init() {}

    @inlinable
    mutating func append(_ word: UInt64) {
        withUnsafeBytes(of: word.littleEndian) { bytes.append(contentsOf: $0) }
    }

    @inlinable
    static func word(_ bytes: UnsafeRawBufferPointer, _ index: Int) throws -> UInt64 {
        guard bytes.count >= 8 * (index + 1) else {
            throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "pool message of \(bytes.count) bytes is too short"))
        }
        return UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 8 * index, as: UInt64.self))
    }
}

extension PoolChunk {
    /// start, then the encoded items.
    @inlinable
    func framed() throws -> [UInt8] {
        var frame = PoolFrame()
        frame.append(UInt64(bitPattern: Int64(start)))
        frame.bytes.append(contentsOf: try BinaryEncoder().encode(items))
        return frame.bytes
    }

    @inlinable
    static func unframed(_ bytes: [UInt8]) throws -> PoolChunk {
        try bytes.withUnsafeBytes { raw in
            let start = Int(Int64(bitPattern: try PoolFrame.word(raw, 0)))
            return PoolChunk(start: start, items: try BinaryDecoder().decode([Item].self, from: UnsafeRawBufferPointer(rebasing: raw[8...])))
        }
    }
}

extension PoolChunkResult {
    /// start, count, seconds, seconds on a CPU (negative when not measured), seconds waiting
    /// for one, length of the encoded failures; the failures; the results.
    @inlinable
    func framed() throws -> [UInt8] {
        let encodedFailures = failures.isEmpty ? [] : try BinaryEncoder().encode(failures)
        var frame = PoolFrame()
        frame.append(UInt64(bitPattern: Int64(start)))
        frame.append(UInt64(bitPattern: Int64(count)))
        frame.append(seconds.bitPattern)
        frame.append((use?.cpuSeconds ?? -1).bitPattern)
        frame.append((use?.waitingForCPU ?? 0).bitPattern)
        frame.append(UInt64(encodedFailures.count))
        frame.bytes.append(contentsOf: encodedFailures)
        frame.bytes.append(contentsOf: try BinaryEncoder().encode(results))
        return frame.bytes
    }

    @inlinable
    static func unframed(_ bytes: [UInt8]) throws -> PoolChunkResult {
        try bytes.withUnsafeBytes { raw in
            let start = Int(Int64(bitPattern: try PoolFrame.word(raw, 0)))
            let count = Int(Int64(bitPattern: try PoolFrame.word(raw, 1)))
            let seconds = Double(bitPattern: try PoolFrame.word(raw, 2))
            let cpuSeconds = Double(bitPattern: try PoolFrame.word(raw, 3))
            let waitingForCPU = Double(bitPattern: try PoolFrame.word(raw, 4))
            let failureBytes = Int(try PoolFrame.word(raw, 5))
            guard failureBytes <= raw.count - 48 else {
                throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "pool result claims \(failureBytes) bytes of failures"))
            }
            let failures = failureBytes == 0 ? [] : try BinaryDecoder().decode(
                [PoolItemFailure].self, from: UnsafeRawBufferPointer(rebasing: raw[48..<(48 + failureBytes)]))
            let results = try BinaryDecoder().decode([R].self, from: UnsafeRawBufferPointer(rebasing: raw[(48 + failureBytes)...]))
            return PoolChunkResult(start: start, count: count, results: results, failures: failures, seconds: seconds,
                                   use: cpuSeconds >= 0 ? ChunkUse(cpuSeconds: cpuSeconds, waitingForCPU: waitingForCPU) : nil)
        }
    }
}

/// How the thread that ran a chunk spent its time: on a CPU, and ready to run but waiting for
/// one. The rest of the chunk's time it slept (a read from disk, the network, a sleep).
@usableFromInline
struct ChunkUse: Codable {
    @usableFromInline var cpuSeconds: Double
    @usableFromInline var waitingForCPU: Double

    @inlinable
    init(cpuSeconds: Double, waitingForCPU: Double) {
        self.cpuSeconds = cpuSeconds
        self.waitingForCPU = waitingForCPU
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
    /// How long the chunk took.
    @usableFromInline var seconds: Double
    /// What running it used, when measured.
    @usableFromInline var use: ChunkUse?

    @inlinable
    init(start: Int, count: Int, results: [R], failures: [PoolItemFailure], seconds: Double, use: ChunkUse? = nil) {
        self.start = start
        self.count = count
        self.results = results
        self.failures = failures
        self.seconds = seconds
        self.use = use
    }
}

@usableFromInline
struct PoolStop: Codable {
    @usableFromInline var failure: PoolFailureRecord?
    @usableFromInline var payload: [UInt8]?
    /// Rank 0 asks for the worker's partial total; another stop follows.
    @usableFromInline var collect: Bool

    @usableFromInline
    init(failure: PoolFailureRecord?, payload: [UInt8]?, collect: Bool) {
        self.failure = failure
        self.payload = payload
        self.collect = collect
    }
}

/// A `PoolError` as it travels to the workers.
@usableFromInline
struct PoolFailureRecord: Codable {
    var index: Int?
    var rank: Int
    var message: String
    var lost: [[Int]]?
    /// For `stoppedOnRankZero`.
    @usableFromInline var stopped: Bool?

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
        case let .stoppedOnRankZero(message):
            self.rank = 0
            self.message = message
            self.stopped = true
        case let .nested(operation, outer):
            // Thrown inside a transform, it travels as an item's failure, never as a record.
            self.rank = 0
            self.message = PoolError.nested(operation: operation, outer: outer).description
        }
    }

    @usableFromInline
    var error: PoolError {
        if let index { return .itemFailed(index: index, rank: rank, message: message) }
        if let lost { return .workerDied(rank: rank, lostItems: lost.map { $0[0]..<$0[1] }, reason: message) }
        if stopped == true { return .stoppedOnRankZero(message: message) }
        return .invalidOptions(message)
    }
}
