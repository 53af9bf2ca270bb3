import Atomics
#if canImport(Glibc)
import Glibc
#endif

/// A group of ranked processes that exchange messages: swiftpar's equivalent of an MPI
/// communicator (`MPI_Comm`), the same on every backend.
///
/// Every process of a job runs the same program and gets a communicator from `SwiftPar.run`.
/// Values of any `Codable` type can be sent and received; arrays of plain numbers (`[Double]`,
/// `[Int]`, ...) travel as raw memory with no extra copy.
///
/// A communicator is `Sendable`: any task or thread of the rank may use it, one operation at a
/// time. An operation started while another one of the same process is still running on another
/// thread throws ``CommunicatorError/concurrentUse(operation:rank:)`` rather than racing; in
/// `async` code, `await` one operation before starting the next, as sequential code does.
///
/// ```swift
/// SwiftPar.run { world in
///     if world.rank == 0 { try world.send("hello", to: 1) }
///     if world.rank == 1 { print(try world.receive(String.self, from: 0)) }
/// }
/// ```
///
/// `@unchecked Sendable`: `transport` and the other stored properties are touched only inside
/// operations, which `OneOperationAtATime` runs one at a time with acquire/release ordering;
/// `exitStatus` is an atomic.
public final class Communicator: @unchecked Sendable {
    @usableFromInline let transport: any Transport

    /// The process's exit status, shared by all its communicators.
    private static let status = ManagedAtomic<Int32>(0)

    /// The pool call running on this communicator, if any (pool calls do not nest).
    @usableFromInline var runningPool: String?
    /// Workers that died during a pool's map with retries (rank 0 only); later maps skip them.
    @usableFromInline var deadPoolWorkers: Set<Int> = []

    /// The status this process exits with when the closure given to `SwiftPar.run` returns
    /// normally (0 by default): a way to fail without an error message, as a command that has
    /// already reported its problems does. The job ends with rank 0's status; a rank that
    /// returns with another non-zero status ends the job with it on every backend (mpirun
    /// reports that with a notice of its own, the local backend with one line). It belongs to the
    /// process: every communicator of it (the world and those split from it) reads and sets the
    /// same status.
    public var exitStatus: Int32 {
        get { Self.status.load(ordering: .acquiring) }
        set { Self.status.store(newValue, ordering: .releasing) }
    }

    /// The backend that carries this communicator's messages.
    public let backend: Backend

    /// The name of the host this rank runs on (`MPI_Get_processor_name` under MPI).
    public let hostName: String

    /// Collectives called so far on this communicator, which numbers the next one.
    var collectiveCount = 0

    init(transport: any Transport, backend: Backend, hostName: String) {
        self.transport = transport
        self.backend = backend
        self.hostName = hostName
    }

    /// This process's rank, from 0 to `size - 1` (`MPI_Comm_rank`).
    public var rank: Int { transport.rank }

    /// The number of ranks in the group (`MPI_Comm_size`).
    public var size: Int { transport.size }

    /// The largest tag a message may carry (`MPI_TAG_UB` under MPI).
    public var maximumTag: Int { transport.maximumTag }

    /// Tells the job that this rank is working, so that a stall timeout does not end it.
    ///
    /// With a stall timeout (`SwiftPar.run(stallTimeout:)`, `SWIFTPAR_STALL_TIMEOUT` or the
    /// command's `--stall-timeout`), a rank that has waited that long with no sign of progress
    /// from the other ranks ends the job, naming those that gave none. A rank that computes for
    /// longer than the timeout between two operations gives none unless it calls this now and
    /// then (once per item, per file, per megabyte): the ranks waiting for it then go on
    /// waiting. It costs a few nanoseconds; under MPI it also reads the job's control messages,
    /// at most every 10 ms. Any thread may call it, also inside a `Pool` closure; with no stall
    /// timeout it changes nothing.
    public func noteProgress() {
        transport.noteProgress()
    }

    /// Splits the group into disjoint communicators, one per `color` (`MPI_Comm_split`).
    ///
    /// Every rank of this communicator must call `split`. Ranks with the same color form a new
    /// communicator, ordered by `key` and then by their rank here. A rank that passes a nil
    /// color joins none and gets nil. Colors and keys are MPI `int`s: from 0 (colors) or
    /// `Int32.min` (keys) to `Int32.max`.
    public func split(color: Int?, key: Int? = nil) throws -> Communicator? {
        if let color, color < 0 || color > Int(Int32.max) {
            throw CommunicatorError.invalidArgument(operation: "split", reason: "color \(color) is outside 0...\(Int32.max)", rank: rank)
        }
        let key = key ?? rank
        guard Int32(exactly: key) != nil else {
            throw CommunicatorError.invalidArgument(operation: "split", reason: "key \(key) is outside \(Int32.min)...\(Int32.max)", rank: rank)
        }
        let part = try collective("split") { () -> (any Transport)? in
            _ = try agree(on: signature(.split, .none), "split")
            return try transport.split(color: color, key: key)
        }
        guard let part else { return nil }
        return Communicator(transport: part, backend: backend, hostName: hostName)
    }

    /// Runs `body` as `operation`, one swiftpar operation at a time in this process
    /// (see `OneOperationAtATime`).
    @inlinable @inline(__always)
    func exclusive<R>(_ operation: @autoclosure () -> String, _ body: () throws -> R) throws -> R {
        try OneOperationAtATime.run(operation(), rank: rank, body)
    }

    // MARK: Argument checks shared by every operation

    @usableFromInline
    func validate(destination: Int, _ operation: String) throws {
        guard (0..<size).contains(destination) else {
            throw CommunicatorError.invalidRank(destination, operation: operation, size: size, rank: rank)
        }
    }

    @usableFromInline
    func validate(tag: Int, _ operation: String) throws {
        guard (0...maximumTag).contains(tag) else {
            throw CommunicatorError.invalidTag(tag, operation: operation, maximum: maximumTag, rank: rank)
        }
    }

    @usableFromInline
    func validate(source: Source, tag: TagSelector, _ operation: String) throws {
        if case .rank(let r) = source { try validate(destination: r, operation) }
        if case .tag(let t) = tag { try validate(tag: t, operation) }
    }

    // MARK: Encoding shared by point to point, collectives and the pool

    /// The message bytes of `value` as `decode` reads them back: an array of plain numbers as
    /// its raw elements (as `send` moves it), anything else encoded behind swiftpar's header.
    @usableFromInline
    func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        if plainArrayType(T.self) != nil {
            return (value as! any PlainNumberArray).withUnsafeBytes { [UInt8]($0) }
        }
        do {
            return try BinaryEncoder().encode(value)
        } catch {
            throw CommunicatorError.encodingFailed(type: String(describing: T.self), reason: describeDecodingError(error), rank: rank)
        }
    }

    /// Decodes bytes that `source` sent with `tag` as a `T`.
    @usableFromInline
    func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8], source: Int, tag: Int) throws -> T {
        do {
            return try decodeValue(type, from: bytes)
        } catch let failure as MessageDecodingFailure {
            throw CommunicatorError.decodingFailed(type: String(describing: T.self), source: source, tag: tag,
                                                   byteCount: bytes.count, reason: failure.reason, rank: rank)
        }
    }
}

/// Which sender a receive or probe accepts.
public enum Source: Hashable, Sendable, ExpressibleByIntegerLiteral {
    /// A message from any rank (`MPI_ANY_SOURCE`).
    case any
    /// A message from this rank only.
    case rank(Int)

    /// A specific rank, written as a number: `from: 3`.
    public init(integerLiteral value: Int) { self = .rank(value) }

    @usableFromInline
    var rankValue: Int? {
        if case .rank(let r) = self { return r }
        return nil
    }
}

/// Which tags a receive or probe accepts.
public enum TagSelector: Hashable, Sendable, ExpressibleByIntegerLiteral {
    /// A message with any tag (`MPI_ANY_TAG`).
    case any
    /// A message with this tag only.
    case tag(Int)

    /// A specific tag, written as a number: `tag: 7`.
    public init(integerLiteral value: Int) { self = .tag(value) }

    @usableFromInline
    var tagValue: Int? {
        if case .tag(let t) = self { return t }
        return nil
    }
}

/// A received value with the envelope it came in (the `MPI_Status` of the receive).
public struct ReceivedMessage<Value> {
    /// The decoded value.
    public let value: Value
    /// The rank that sent it.
    public let source: Int
    /// The tag it was sent with.
    public let tag: Int
    /// Its size in bytes on the wire.
    public let byteCount: Int
}

extension ReceivedMessage: Sendable where Value: Sendable {}

func currentHostName() -> String {
    var buffer = [CChar](repeating: 0, count: 256)
    gethostname(&buffer, buffer.count - 1)
    return stringFromCString(buffer)
}
