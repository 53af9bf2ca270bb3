#if canImport(Glibc)
import Glibc
#endif

/// A pool of workers over a communicator: `map` a closure over `Codable` items across all ranks.
///
/// Every rank calls the same method with the same closure; rank 0 reads the items (lazily, so a
/// sequence of millions is never held in memory), hands them out in chunks on demand, works on
/// them itself, and collects the results. Because every rank runs the same program, the
/// closure is already everywhere: only items and results travel. This works unchanged on the
/// MPI and local backends.
///
/// ```swift
/// SwiftPar.run { world in
///     let pool = Pool(world)
///     if let squares = try pool.map(1...1000, { $0 * $0 }) {   // non-nil on rank 0
///         print(squares.last!)
///     }
/// }
/// ```
///
/// A pool is `Sendable`: like its communicator, it may be used from any task, one operation at
/// a time (see ``CommunicatorError/concurrentUse(operation:rank:)``).
//
// `@unchecked Sendable`: it has no state of its own; what a map leaves for the next (the
// workers that died, whether a map is running) is kept by the communicator, touched only
// inside operations, which run one at a time in the process.
public final class Pool: @unchecked Sendable {
    /// The ranks that do the work.
    public let communicator: Communicator

    /// Set by the async forms on the thread that runs the engine: whether the calling task was
    /// cancelled. Rank 0 then hands out no more chunks (see `PoolMaster.run`).
    @usableFromInline var stopRequested: (@Sendable () -> Bool)?

    /// A pool over every rank of `communicator`.
    public init(_ communicator: Communicator) {
        self.communicator = communicator
    }

    // MARK: The forms users call

    /// Applies `transform` to every item; returns the results in input order on rank 0 and nil
    /// on the other ranks. Throws `PoolError.itemFailed` on every rank if an item throws. If a
    /// worker dies (without `retryLostItems`), rank 0 throws `PoolError.workerDied` naming the
    /// items it held, and the job ends.
    @inlinable
    public func map<S: Sequence, R: Codable>(
        _ items: S, options: MapOptions = MapOptions(), _ transform: (S.Element) throws -> R
    ) throws -> [R]? where S.Element: Codable {
        try running("Pool.map") {
            var results = OrderedResults<R>()
            let _: [UInt8]? = try execute(items, name: "Pool.map", options: options, transform: transform, keepGoing: false) { outcome in
                results.insert(outcome.results, at: outcome.start)
            }
            guard communicator.rank == 0 else { return nil }
            try stopWorkers(payload: nil)
            return results.values
        }
    }

    /// Like `map`, but every rank gets the results.
    @inlinable
    public func mapToAll<S: Sequence, R: Codable>(
        _ items: S, options: MapOptions = MapOptions(), _ transform: (S.Element) throws -> R
    ) throws -> [R] where S.Element: Codable {
        try running("Pool.mapToAll") {
            var results = OrderedResults<R>()
            let payload = try execute(items, name: "Pool.mapToAll", options: options, transform: transform,
                                      workersGetValue: true, keepGoing: false) { outcome in
                results.insert(outcome.results, at: outcome.start)
            }
            if communicator.rank == 0 {
                let values = results.values
                try stopWorkers(payload: try finishingOnRankZero { try communicator.encode(values) })
                return values
            }
            return try communicator.decode([R].self, from: payload ?? [], source: 0, tag: PoolTag.stop.rawValue)
        }
    }

    /// Applies `transform` to every item and folds each result into a running total with
    /// `combine`, in place, as the standard library's `reduce(into:_:)` does:
    ///
    /// ```swift
    /// let counts = try pool.mapReduce(paths, into: [String: Int](), { countWords(in: $0) }) { total, part in
    ///     total.merge(part, uniquingKeysWith: +)
    /// }
    /// ```
    ///
    /// Each rank folds the results of the items it ran into a partial total of its own; once a
    /// rank has no more items to run, its partial travels to rank 0, which folds the partials
    /// into `initial` there (between its own items, or at the end). A rank that the core limit
    /// (`MapOptions.limitsBusyRanksToCores`) leaves idle sends its partial then, and a second
    /// one at the end should the limit end and give it items again. So
    /// `combine` must be associative and commutative (the order items finish in varies), and
    /// `initial` is used once. With `retryLostItems`, partials travel per chunk instead, so a
    /// worker that dies loses nothing already finished.
    ///
    /// - Returns: the total on rank 0 (`initial` when there were no items), nil on the other
    ///   ranks; on every rank when `everyRank` is set.
    @inlinable
    public func mapReduce<S: Sequence, R: Codable>(
        _ items: S, into initial: R, everyRank: Bool = false, options: MapOptions = MapOptions(),
        _ transform: (S.Element) throws -> R, combine: (inout R, R) throws -> Void
    ) throws -> R? where S.Element: Codable {
        try running("Pool.mapReduce") {
            try withoutActuallyEscaping(combine) { combine in
                var total = initial
                let perRank = !options.retryLostItems
                let accumulator = PartialTotal<R>(combine: combine)
                if communicator.rank == 0 { accumulator.value = initial }
                let payload = try execute(items, name: "Pool.mapReduce", options: options, transform: transform,
                                          accumulator: accumulator, perRank: perRank, workersGetValue: everyRank, keepGoing: false) { outcome in
                    for value in outcome.results { try combine(&accumulator.value!, value) }
                }
                guard communicator.rank == 0 else {
                    guard everyRank else { return nil }
                    return try communicator.decode(R.self, from: payload ?? [], source: 0, tag: PoolTag.stop.rawValue)
                }
                let stopPayload = try finishingOnRankZero { () -> [UInt8]? in
                    // The partials of workers not yet in (see `PoolMaster.askForFinishedPartials`).
                    if perRank { try collectPartials(into: accumulator) }
                    total = accumulator.value!
                    return everyRank ? try communicator.encode(total) : nil
                }
                try stopWorkers(payload: stopPayload)
                return total
            }
        }
    }

    /// Applies `transform` to every item and combines the results with `combine` (which must
    /// be associative and commutative: results are combined in the order they finish, first on
    /// the rank that ran them). Every rank gets the combined value; nil when there were no items.
    @inlinable
    public func mapReduce<S: Sequence, R: Codable>(
        _ items: S, options: MapOptions = MapOptions(), _ transform: (S.Element) throws -> R, combine: (R, R) throws -> R
    ) throws -> R? where S.Element: Codable {
        try withoutActuallyEscaping(combine) { combine in
            let total = try mapReduce(items, into: nil as R?, everyRank: true, options: options, { Optional(try transform($0)) }) { total, part in
                guard let part else { return }
                total = try total.map { try combine($0, part) } ?? part
            }
            return total ?? nil
        }
    }

    /// Streams results to `body` on rank 0 as they finish: in input order when `ordered` is set
    /// (results that finish early wait for those before them), otherwise as they come, with
    /// their index. Other ranks work and return.
    @inlinable
    public func forEachResult<S: Sequence, R: Codable>(
        _ items: S, ordered: Bool, options: MapOptions = MapOptions(), _ transform: (S.Element) throws -> R,
        _ body: (_ index: Int, _ result: R) throws -> Void
    ) throws where S.Element: Codable {
        try running("Pool.forEachResult") {
            var waiting: [Int: R] = [:]
            var next = 0
            let _: [UInt8]? = try execute(items, name: "Pool.forEachResult", options: options, transform: transform, keepGoing: false) { outcome in
                guard ordered else {
                    for (offset, value) in outcome.results.enumerated() { try body(outcome.start + offset, value) }
                    return
                }
                for (offset, value) in outcome.results.enumerated() { waiting[outcome.start + offset] = value }
                while let value = waiting.removeValue(forKey: next) {
                    try body(next, value)
                    next += 1
                }
            }
            if communicator.rank == 0 { try stopWorkers(payload: nil) }
        }
    }

    /// Applies `transform` to every item and returns, on rank 0, one `Result` per item in
    /// input order: a throwing item becomes a failure naming its index and rank, and the
    /// other items still run. Nil on the other ranks.
    @inlinable
    public func mapResults<S: Sequence, R: Codable>(
        _ items: S, options: MapOptions = MapOptions(), _ transform: (S.Element) throws -> R
    ) throws -> [Result<R, PoolItemError>]? where S.Element: Codable {
        try running("Pool.mapResults") {
            var results = OrderedResults<Result<R, PoolItemError>>()
            let _: [UInt8]? = try execute(items, name: "Pool.mapResults", options: options, transform: transform, keepGoing: true) { outcome in
                var merged: [Result<R, PoolItemError>] = []
                merged.reserveCapacity(outcome.count)
                var values = outcome.results.makeIterator()
                var failures = outcome.failures.makeIterator()
                var nextFailure = failures.next()
                for offset in 0..<outcome.count {
                    if let failure = nextFailure, failure.offset == offset {
                        merged.append(.failure(PoolItemError(index: outcome.start + offset, rank: outcome.rank, message: failure.message)))
                        nextFailure = failures.next()
                    } else if let value = values.next() {
                        merged.append(.success(value))
                    }
                }
                results.insert(merged, at: outcome.start)
            }
            guard communicator.rank == 0 else { return nil }
            try stopWorkers(payload: nil)
            return results.values
        }
    }

    // MARK: The engine

    /// A finished chunk as rank 0 sees it.
    @usableFromInline
    struct Outcome<R> {
        @usableFromInline let start: Int
        @usableFromInline let count: Int
        @usableFromInline let rank: Int
        @usableFromInline let results: [R]
        @usableFromInline let failures: [PoolItemFailure]

        @inlinable
        init(start: Int, count: Int, rank: Int, results: [R], failures: [PoolItemFailure]) {
            self.start = start
            self.count = count
            self.rank = rank
            self.results = results
            self.failures = failures
        }
    }

    @usableFromInline
    var channel: any Transport { communicator.transport.collectiveChannel }

    /// Runs a pool call as one operation of the communicator. Pool calls do not nest: every rank
    /// is inside the outer one until its end (rank 0 folding partials too), serving or running
    /// its items, so none could take part in another, and their messages would mix.
    @inlinable
    func running<T>(_ name: String, _ body: () throws -> T) throws -> T {
        try PoolItemScope.refuseNested(name, on: communicator)
        return try communicator.exclusive(name) {
            if let outer = communicator.runningPool { throw PoolError.nested(operation: name, outer: outer) }
            communicator.runningPool = name
            defer { communicator.runningPool = nil }
            do {
                return try body()
            } catch let error as PoolError {
                SwiftPar.notePoolFailure(poolRank: communicator.rank)
                throw error
            }
        }
    }

    /// Runs the items across the ranks. On rank 0, calls `deliver` with every finished chunk and
    /// returns when all are in (the caller then stops the workers); on the others, works until
    /// rank 0 says stop and returns the stop message's payload.
    ///
    /// The engine is inlinable so that it is specialised for the caller's item and result types:
    /// unspecialised, every item costs several type-metadata lookups.
    @inlinable
    func execute<S: Sequence, R: Codable>(
        _ items: S, name: String, options: MapOptions, transform: (S.Element) throws -> R,
        accumulator: PartialTotal<R>? = nil, perRank: Bool = false, workersGetValue: Bool = false,
        keepGoing: Bool, deliver: (Outcome<R>) throws -> Void
    ) throws -> [UInt8]? where S.Element: Codable {
        if case .fixed(let n) = options.chunkSize, n < 1 {
            throw PoolError.invalidOptions("chunk size must be at least 1, not \(n)")
        }
        // A rank that never joins the map is reported in these words, on every backend.
        let channel = self.channel
        let outer = channel.activity
        channel.activity = outer ?? name
        defer { channel.activity = outer }
        // Every rank says which call it is in before any item moves: ranks in another pool call
        // or another collective all throw `mismatch` at once, instead of each waiting for the
        // others for good.
        try agreeOnCall(name)
        // The closures live only for this call: the worker and master structs never outlive it.
        return try withoutActuallyEscaping(transform) { transform in
            try withoutActuallyEscaping(deliver) { deliver in
                let worker = ChunkWorker<S.Element, R>(rank: communicator.rank, transform: transform, accumulator: accumulator,
                                                       perRank: perRank, keepGoing: keepGoing,
                                                       measuresUse: coresToShare(options) != nil)
                guard communicator.rank == 0 else {
                    return try work(worker, getsValue: workersGetValue)
                }
                var master = PoolMaster(pool: self, items: items, options: options, worker: worker, deliver: deliver)
                try master.run()
                return nil
            }
        }
    }

    /// The cores that this map's ranks take turns on: those of the one machine they all run
    /// on, when they outnumber them, the schedule is dynamic and the limit is not turned off.
    /// Not with a stall timeout: a rank left without work would wait through the rest of the
    /// map, and with items that compute for a second or more without `noteProgress()` it would
    /// see no progress and report a stall.
    @usableFromInline
    func coresToShare(_ options: MapOptions) -> Int? {
        let transport = communicator.transport
        guard options.limitsBusyRanksToCores, options.schedule == .dynamic, !transport.hasStallTimeout,
              let cores = transport.sharedMachineCores, communicator.size > cores else { return nil }
        return cores
    }

    /// Exchanges with every rank which call each is in (see `Communicator.agree`).
    @usableFromInline
    func agreeOnCall(_ name: String) throws {
        // After a worker died in a map with `retryLostItems`, the pool goes on without it, and
        // a dead rank can take part in no exchange. Every rank sees the death here alike: rank
        // 0 learned of it from the same shared record, before it ended that map.
        guard let operation = CollectiveOperation(poolCall: name),
              communicator.transport.failedRanks(among: Array(0..<communicator.size)).isEmpty else { return }
        _ = try communicator.agree(on: communicator.signature(operation, .none), name)
    }

    /// A worker's loop: take chunks from rank 0 until told to stop. When rank 0 stopped the map
    /// with an error of its own, a worker that `getsValue` throws `stoppedOnRankZero`; the
    /// others return as from a map that ended.
    @inlinable
    func work<Item: Codable, R: Codable>(_ worker: ChunkWorker<Item, R>, getsValue: Bool) throws -> [UInt8]? {
        let channel = self.channel
        while true {
            guard let info = try channel.probe(source: 0, tag: nil, wait: true) else { continue }
            let bytes = try channel.receiveArray(UInt8.self, matching: info)
            switch PoolTag(rawValue: info.tag) {
            case .chunk?:
                let result: PoolChunkResult<R>
                do {
                    result = worker.run(try PoolChunk<Item>.unframed(bytes))
                } catch {
                    // Items that do not decode here fail, as items whose transform throws; rank 0
                    // knows how many the chunk held.
                    result = worker.undecodable(bytes, error)
                }
                let framed: [UInt8]
                do {
                    framed = try result.framed()
                } catch {
                    // A result that cannot be encoded fails its item, as a throwing transform does.
                    let failed = worker.unsendable(result, error)
                    framed = try (try? failed.framed()) ?? worker.unsendableWhole(result, error).framed()
                }
                try channel.sendArray(framed, to: 0, tag: PoolTag.result.rawValue)
            case .stop?:
                let stop = try communicator.decode(PoolStop.self, from: bytes, source: 0, tag: info.tag)
                if let failure = stop.failure {
                    if failure.stopped == true && !getsValue { return nil }
                    throw failure.error
                }
                if stop.collect {
                    // Rank 0 asks for this rank's partial total; the result (if any) follows. One
                    // that cannot be encoded is reported to rank 0, which fails the map. Chunks
                    // that come after (the core limit ended) fold into a new partial.
                    do {
                        try channel.sendArray(try BinaryEncoder().encode(worker.accumulator?.value), to: 0, tag: PoolTag.partial.rawValue)
                    } catch {
                        try channel.sendArray(try BinaryEncoder().encode(describeDecodingError(error)), to: 0, tag: PoolTag.partialFailed.rawValue)
                    }
                    worker.accumulator?.value = nil
                    continue
                }
                return stop.payload
            default:
                throw CommunicatorError.invalidArgument(
                    operation: "Pool", reason: "unexpected message with tag \(info.tag) from rank 0 during a map", rank: communicator.rank)
            }
        }
    }

    /// Runs the decoding of a pool message of `byteCount` bytes from `source`, reporting a
    /// failure as a `CommunicatorError` that names the pool call and what `type` the bytes held.
    @inlinable
    func poolMessage<T>(from source: Int, byteCount: Int, as type: String, inArray: Bool = false, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch {
            throw CommunicatorError.collectiveDecodingFailed(operation: channel.activity ?? "Pool", type: type, source: source,
                                                             byteCount: byteCount, reason: describeDecodingError(error, inArray: inArray), rank: communicator.rank)
        }
    }

    /// Asks `rank`, a worker that holds no chunk, for its partial total.
    @usableFromInline
    func askForPartial(from rank: Int) throws {
        let ask = try communicator.encode(PoolStop(failure: nil, payload: nil, collect: true))
        try channel.sendArray(ask, to: rank, tag: PoolTag.stop.rawValue)
    }

    /// The partial total in `bytes`, a worker's answer with `tag` to `askForPartial`: nil
    /// from a worker that ran nothing. A worker that could not encode its partial sent why.
    @usableFromInline
    func decodePartial<R: Codable>(_ type: R.Type, from rank: Int, bytes: [UInt8], tag: Int) throws -> R? {
        guard tag == PoolTag.partial.rawValue else {
            let reason = try poolMessage(from: rank, byteCount: bytes.count, as: "a report") { try BinaryDecoder().decode(String.self, from: bytes) }
            throw CommunicatorError.encodingFailed(type: "\(R.self)", reason: "its partial total cannot be sent to rank 0: \(reason)", rank: rank)
        }
        return try poolMessage(from: rank, byteCount: bytes.count, as: "a partial total of type \(R.self)") {
            try BinaryDecoder().decode(R?.self, from: bytes)
        }
    }

    /// Folds into `total` the partial of every live worker not yet in it: asks those not yet
    /// asked, and takes in every answer before decoding any, so that one that fails to decode
    /// leaves none waiting to be mistaken for a later map's. These are folded in rank order;
    /// those taken in during the map, in the order they came.
    @usableFromInline
    func collectPartials<R: Codable>(into total: PartialTotal<R>) throws {
        let workers = (1..<max(communicator.size, 1)).filter { !deadWorkers.contains($0) && !total.workersIn.contains($0) }
        for rank in workers where !total.workersAsked.contains(rank) {
            try askForPartial(from: rank)
            total.workersAsked.insert(rank)
        }
        var received: [(rank: Int, bytes: [UInt8], tag: Int)] = []
        for rank in workers {
            let (bytes, info) = try channel.receiveArray(UInt8.self, from: rank, tag: nil)
            received.append((rank, bytes, info.tag))
            total.workersIn.insert(rank)
        }
        let partials = try received.map { try decodePartial(R.self, from: $0.rank, bytes: $0.bytes, tag: $0.tag) }
        for case let partial? in partials { try total.fold(partial) }
    }

    /// Takes in, unread, the answers of workers asked for their partial whose answers are not
    /// yet in: a map that fails leaves none to be mistaken for a later map's.
    @usableFromInline
    func discardPartials<R>(of total: PartialTotal<R>) throws {
        for rank in total.workersAsked.subtracting(total.workersIn).sorted() where !deadWorkers.contains(rank) {
            _ = try channel.receiveArray(UInt8.self, from: rank, tag: nil)
            total.workersIn.insert(rank)
        }
    }

    /// Runs rank 0's last step of a map (folding partials, encoding what the workers get); if it
    /// throws, the workers, waiting for the stop, are told that rank 0 stopped the map, and the
    /// error goes on.
    @inlinable
    func finishingOnRankZero<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch {
            try stopWorkers(payload: nil, failure: .stopped(by: error))
            throw error
        }
    }

    /// Tells every live worker the map is over, with the payload for the all-ranks forms.
    @usableFromInline
    func stopWorkers(payload: [UInt8]?, failure: PoolError? = nil) throws {
        let bytes = try communicator.encode(PoolStop(failure: failure.map(PoolFailureRecord.init), payload: payload, collect: false))
        for rank in 1..<max(communicator.size, 1) where !deadWorkers.contains(rank) {
            try channel.sendArray(bytes, to: rank, tag: PoolTag.stop.rawValue)
        }
    }

    /// Workers that died during a map with retries (rank 0 only): later maps, of any pool over
    /// this communicator, go on without them.
    @usableFromInline
    var deadWorkers: Set<Int> {
        get { communicator.deadPoolWorkers }
        set { communicator.deadPoolWorkers = newValue }
    }

    /// While set, a dying worker is recorded for this rank's pool to handle, instead of ending
    /// the job (local backend; MPI has no such mode).
    @usableFromInline
    func tolerateWorkerFailures(_ on: Bool) {
        communicator.transport.tolerateFailures(on)
    }
}

/// A running total that a rank folds results into, in place.
@usableFromInline
final class PartialTotal<R> {
    @usableFromInline var value: R?
    @usableFromInline let combine: (inout R, R) throws -> Void
    /// On rank 0, for a total per rank: the workers asked for their partial, and those whose
    /// partial is folded in (or, in a map that failed, taken in and dropped).
    @usableFromInline var workersAsked: Set<Int> = []
    @usableFromInline var workersIn: Set<Int> = []

    @inlinable
    init(combine: @escaping (inout R, R) throws -> Void) {
        self.combine = combine
    }

    /// Folds `result` in; the first result of a rank starts its total.
    @inlinable
    func fold(_ result: R) throws {
        if value == nil {
            value = result
        } else {
            try combine(&value!, result)
        }
    }
}

/// Runs chunks of items through the user's closure and times them.
@usableFromInline
struct ChunkWorker<Item: Codable, R: Codable> {
    @usableFromInline let rank: Int
    @usableFromInline let transform: (Item) throws -> R
    /// For reductions: where this rank's results go.
    @usableFromInline let accumulator: PartialTotal<R>?
    /// Whether a reduction keeps one total per rank (sent at the end) rather than per chunk.
    @usableFromInline let perRank: Bool
    @usableFromInline let keepGoing: Bool
    /// Whether each chunk also reports the time its thread spent on a CPU and waiting for one:
    /// rank 0 then limits how many ranks work at once (see `MapOptions.limitsBusyRanksToCores`).
    @usableFromInline let measuresUse: Bool

    @inlinable
    init(rank: Int, transform: @escaping (Item) throws -> R, accumulator: PartialTotal<R>?, perRank: Bool, keepGoing: Bool,
         measuresUse: Bool = false) {
        self.rank = rank
        self.transform = transform
        self.accumulator = accumulator
        self.perRank = perRank
        self.keepGoing = keepGoing
        self.measuresUse = measuresUse
    }

    @inlinable
    func run(_ chunk: PoolChunk<Item>) -> PoolChunkResult<R> {
        // The thread's figures are read outside the chunk's time (before its start, after its
        // end): a wait for the CPU while they are read adds to the time waited and not to the
        // chunk's, so it can hide a little sleep but never show sleep that did not happen.
        let before = measuresUse ? threadSchedule() : nil
        let start = monotonicNow()
        var failures: [PoolItemFailure] = []
        let items = chunk.items
        let count = items.count
        // Written into preallocated storage with index loops: in this unspecialised generic code
        // every append or tuple-producing iterator costs a metadata lookup per item.
        var results = [R]()
        if let accumulator {
            // A total per rank: fold into it. A total per chunk: fold into a fresh one.
            let target = perRank ? accumulator : PartialTotal<R>(combine: accumulator.combine)
            for offset in 0..<count {
                let result: R
                do {
                    result = try transform(items[offset])
                } catch {
                    failures.append(PoolItemFailure(offset: offset, message: errorText(error)))
                    if !keepGoing { break }
                    continue
                }
                do {
                    try target.fold(result)
                } catch {
                    // The item ran; folding its result in did not.
                    failures.append(PoolItemFailure(offset: offset, message: "combine threw on its result: \(errorText(error))"))
                    if !keepGoing { break }
                }
            }
            if !perRank, let value = target.value { results = [value] }
        } else {
            var made = 0
            results = [R](unsafeUninitializedCapacity: count) { buffer, initialized in
                for offset in 0..<count {
                    do {
                        (buffer.baseAddress! + made).initialize(to: try transform(items[offset]))
                        made += 1
                    } catch {
                        failures.append(PoolItemFailure(offset: offset, message: errorText(error)))
                        if !keepGoing { break }
                    }
                }
                initialized = made
            }
        }
        let done = failures.isEmpty || keepGoing ? count : failures[0].offset + 1
        let seconds = monotonicNow() - start
        var use: ChunkUse?
        if let before, let after = threadSchedule() {
            use = ChunkUse(cpuSeconds: after.onCPU - before.onCPU, waitingForCPU: after.waitingForCPU - before.waitingForCPU)
        }
        return PoolChunkResult(start: chunk.start, count: done, results: results, failures: failures, seconds: seconds, use: use)
    }

    /// `result` with the items whose results cannot be encoded (`error` is the chunk's encoding
    /// error) turned into failures, as if their transform had thrown: without `keepGoing` the
    /// chunk ends at the first of them. A combined result that cannot be encoded fails the
    /// chunk's first item.
    @inlinable
    func unsendable(_ result: PoolChunkResult<R>, _ error: any Error) -> PoolChunkResult<R> {
        func failure(_ offset: Int, _ error: any Error) -> PoolItemFailure {
            PoolItemFailure(offset: offset, message: "its result cannot be sent to rank 0: \(describeDecodingError(error, inArray: true))")
        }
        guard accumulator == nil else { return unsendableWhole(result, error) }
        // The offsets of the results: every item's but the failed ones'.
        let failed = Set(result.failures.map(\.offset))
        let offsets = (0..<result.count).filter { !failed.contains($0) }
        var kept: [R] = []
        var failures = result.failures
        for (index, value) in result.results.enumerated() {
            do {
                _ = try BinaryEncoder().encode([value])
                kept.append(value)
            } catch {
                failures.append(failure(offsets[index], error))
                if !keepGoing { break }
            }
        }
        failures.sort { $0.offset < $1.offset }
        // Should every result encode alone, the chunk as a whole still failed: its first item.
        if failures.count == result.failures.count { return unsendableWhole(result, error) }
        let count = keepGoing ? result.count : failures[0].offset + 1
        return PoolChunkResult(start: result.start, count: count, results: kept, failures: failures, seconds: result.seconds, use: result.use)
    }

    /// The answer to a chunk whose items do not decode here: a failure of the whole chunk, whose
    /// size only rank 0 knows (`count` -1; see `expanded(count:)`).
    @inlinable
    func undecodable(_ bytes: [UInt8], _ error: any Error) -> PoolChunkResult<R> {
        let start = bytes.withUnsafeBytes { raw in (try? PoolFrame.word(raw, 0)).map { Int(Int64(bitPattern: $0)) } } ?? -1
        return PoolChunkResult(start: start, count: -1, results: [],
                               failures: [PoolItemFailure(offset: 0, message: "it cannot be decoded on rank \(rank): \(describeDecodingError(error, inArray: true))")],
                               seconds: 0)
    }

    /// A whole-chunk failure (`count` -1) made the size of the chunk of `count` items it answers:
    /// every item failed (`keepGoing`), or its first.
    @inlinable
    func expanded(_ result: PoolChunkResult<R>, count: Int) -> PoolChunkResult<R> {
        guard result.count < 0 else { return result }
        let message = result.failures.first?.message ?? "it cannot be decoded"
        let failed = keepGoing ? count : 1
        return PoolChunkResult(start: result.start, count: failed, results: [],
                               failures: (0..<failed).map { PoolItemFailure(offset: $0, message: message) }, seconds: result.seconds, use: result.use)
    }

    /// The chunk with every item failed (`keepGoing`), or its first.
    @inlinable
    func unsendableWhole(_ result: PoolChunkResult<R>, _ error: any Error) -> PoolChunkResult<R> {
        let message = "its result cannot be sent to rank 0: \(describeDecodingError(error, inArray: true))"
        let count = keepGoing ? result.count : 1
        return PoolChunkResult(start: result.start, count: count, results: [],
                               failures: (0..<count).map { PoolItemFailure(offset: $0, message: message) }, seconds: result.seconds, use: result.use)
    }
}

/// Results that arrive in any order, kept in input order.
@usableFromInline
struct OrderedResults<R> {
    @usableFromInline var slots: [R?] = []

    @inlinable
    init() {}

    @inlinable
    mutating func insert(_ values: [R], at start: Int) {
        let end = start + values.count
        if slots.count < end {
            slots.append(contentsOf: repeatElement(nil, count: end - slots.count))
        }
        slots.withUnsafeMutableBufferPointer { buffer in
            values.withUnsafeBufferPointer { source in
                for offset in 0..<source.count { buffer[start + offset] = source[offset] }
            }
        }
    }

    @inlinable
    var values: [R] {
        slots.withUnsafeBufferPointer { buffer in
            [R](unsafeUninitializedCapacity: buffer.count) { target, initialized in
                for index in 0..<buffer.count { (target.baseAddress! + index).initialize(to: buffer[index]!) }
                initialized = buffer.count
            }
        }
    }
}
