#if canImport(Glibc)
import Glibc
#endif

/// Rank 0's side of a map: reads the items, keeps every worker supplied with chunks (up to two
/// in flight each while enough is left, so a worker seldom waits for rank 0 between chunks),
/// works on chunks itself between serving the others, and hands finished chunks to `deliver`.
@usableFromInline
struct PoolMaster<S: Sequence, R: Codable> where S.Element: Codable {
    @usableFromInline typealias Item = S.Element

    @usableFromInline
    struct SentChunk {
        @usableFromInline let start: Int
        @usableFromInline let count: Int
        /// Kept only when lost items may have to be redone.
        @usableFromInline let items: [Item]?

        @inlinable
        init(start: Int, count: Int, items: [Item]?) {
            self.start = start
            self.count = count
            self.items = items
        }
    }

    @usableFromInline let pool: Pool
    @usableFromInline let options: MapOptions
    @usableFromInline let worker: ChunkWorker<Item, R>
    @usableFromInline let deliver: (Pool.Outcome<R>) throws -> Void
    @usableFromInline let channel: any Transport
    @usableFromInline let size: Int
    @usableFromInline var iterator: S.Iterator
    /// An item read ahead of its chunk: where the count says the input is at its end, the next
    /// item is read at once, so that the end is known when the last chunk goes out.
    @usableFromInline var lookahead: Item?
    @usableFromInline var staticItems: [Item]?
    /// The number of items, from a collection's count; nil for other sequences, and from the
    /// moment a collection turns out to hold more than its `underestimatedCount` said.
    @usableFromInline var total: Int?
    @usableFromInline var nextIndex = 0
    @usableFromInline var exhausted = false
    @usableFromInline var outstanding: [[SentChunk]]
    @usableFromInline var retryQueue: [(start: Int, items: [Item])] = []
    @usableFromInline var live: [Int]
    @usableFromInline var secondsPerItem: Double?
    @usableFromInline var done = 0
    @usableFromInline var failure: PoolError?
    /// Rank 0's own error that stopped the map (its `deliver` threw, a result did not decode):
    /// thrown here once the workers are stopped, where they get `failure`.
    @usableFromInline var rankZeroError: (any Error)?
    @usableFromInline var sends: [SendRequest] = []
    /// Whether new chunks go to fewer ranks than there are (see `MapOptions.limitsBusyRanksToCores`).
    @usableFromInline var coreShare: CoreShare?

    @inlinable
    init(pool: Pool, items: S, options: MapOptions, worker: ChunkWorker<Item, R>, deliver: @escaping (Pool.Outcome<R>) throws -> Void) {
        self.pool = pool
        self.options = options
        self.worker = worker
        self.deliver = deliver
        channel = pool.communicator.transport.collectiveChannel
        size = pool.communicator.size
        iterator = items.makeIterator()
        if options.schedule == .staticBlocks {
            let all = Array(items)
            staticItems = all
            total = all.count
        } else {
            total = S.self is any Collection.Type ? items.underestimatedCount : nil
        }
        outstanding = Array(repeating: [], count: pool.communicator.size)
        let dead = pool.deadWorkers
        live = (1..<max(pool.communicator.size, 1)).filter { !dead.contains($0) }
        coreShare = pool.coresToShare(options).map { CoreShare(cores: $0, rankZeroWorks: options.rankZeroWorks) }
    }

    /// Whether `rank` may be given a chunk now: every live worker, unless the ranks wait for
    /// cores, and then the first ones, as many as the cores leave room for; never one whose
    /// answer to an ask for its partial is still to come.
    @inlinable
    func mayWork(_ rank: Int) -> Bool {
        if let partials, partials.workersAsked.contains(rank), !partials.workersIn.contains(rank) { return false }
        return !idledByCoreLimit(rank)
    }

    /// Whether `rank` may hold a second chunk (see `run`): not while the timings have yet to
    /// show whether the ranks take turns on the cores, if `rank` is one the core limit would
    /// leave without work. Should the limit come, such a rank holds one chunk's work, whose
    /// results then travel in its partial, rather than two.
    @inlinable
    func mayHoldSecondChunk(_ rank: Int) -> Bool {
        guard let coreShare, !coreShare.limited, !coreShare.ended else { return true }
        return !beyondCores(rank)
    }

    /// Whether the core limit leaves `rank` without new chunks: it holds, and `rank` is beyond
    /// the cores.
    @inlinable
    func idledByCoreLimit(_ rank: Int) -> Bool {
        coreShare?.busyWorkers != nil && beyondCores(rank)
    }

    /// Whether `rank` is not among the first live workers, as many as the core limit lets
    /// work when it holds.
    @inlinable
    func beyondCores(_ rank: Int) -> Bool {
        guard let coreShare else { return false }
        return !live.prefix(coreShare.workersWhileLimited).contains(rank)
    }

    /// For a reduction with one total per rank: rank 0's total, which the workers' partials
    /// fold into.
    @inlinable
    var partials: PartialTotal<R>? { worker.perRank ? worker.accumulator : nil }

    /// Whether every item has been handed out and none waits to be redone: a worker that holds
    /// no chunk then gets no more.
    @inlinable
    var handedOutAll: Bool {
        retryQueue.isEmpty && (staticItems.map { nextIndex >= $0.count } ?? exhausted)
    }

    /// In a reduction with one total per rank, asks every worker that holds no chunk and will
    /// get none for now for its partial, rather than at the end: its answer crosses, and is
    /// folded in here, while the others still work. Those are the workers left without chunks
    /// once every item is handed out, and those the core limit leaves without work as soon as
    /// it does: the latter otherwise sit on their partials for the rest of the map and, under
    /// MPI, sleep between polls by then. A worker that answered starts a new partial; should
    /// the limit end, it takes chunks again (see `send`) and is asked again at the end.
    @inlinable
    mutating func askForFinishedPartials() throws {
        guard failure == nil, let partials else { return }
        let all = handedOutAll
        for rank in live where outstanding[rank].isEmpty && !partials.workersAsked.contains(rank) && (all || idledByCoreLimit(rank)) {
            try pool.askForPartial(from: rank)
            partials.workersAsked.insert(rank)
        }
    }

    /// The workers asked for their partial whose answers are not in yet.
    @inlinable
    var awaitedPartials: [Int] {
        guard let partials, partials.workersAsked.count > partials.workersIn.count else { return [] }
        return partials.workersAsked.subtracting(partials.workersIn).sorted()
    }

    /// Whether `rank` was asked for its partial: it holds no chunk, and its death is reported
    /// as the failure to receive its partial, not as items lost.
    @inlinable
    func wasAsked(_ rank: Int) -> Bool {
        partials?.workersAsked.contains(rank) ?? false
    }

    /// Takes in a worker's answer with its partial and folds it in (drops it once the map has
    /// failed). One that says the partial could not be encoded stops the map with that error.
    @inlinable
    mutating func takePartial(_ bytes: [UInt8], from rank: Int, tag: Int) {
        guard let partials else { return }
        partials.workersIn.insert(rank)
        guard failure == nil else { return }
        do {
            if let value = try pool.decodePartial(R.self, from: rank, bytes: bytes, tag: tag) { try partials.fold(value) }
        } catch {
            stop(with: error)
        }
    }

    @inlinable
    mutating func run() throws {
        // With retries, a dying worker is this map's business, not the end of the job.
        if options.retryLostItems { pool.tolerateWorkerFailures(true) }
        defer { if options.retryLostItems { pool.tolerateWorkerFailures(false) } }
        let inFlight = options.schedule == .staticBlocks ? 1 : 2
        for round in 0..<inFlight {
            // A second chunk each only when there is enough for every rank, rank 0 included.
            if round > 0, let total, total - nextIndex < size { break }
            for rank in live where mayWork(rank) && (round == 0 || mayHoldSecondChunk(rank)) {
                if let chunk = nextChunk() { try send(chunk, to: rank) }
            }
        }
        while true {
            // An async call whose task was cancelled on rank 0, which hands out the work:
            // nothing more is handed out, and the call throws once the chunks out are back.
            if failure == nil, let stopRequested = pool.stopRequested, stopRequested() { stop(with: CancellationError()) }
            try serveResults(wait: false)
            try askForFinishedPartials()
            // A live worker with nothing to do gets the next chunk: items a dead worker left
            // must not wait for rank 0 (which may not work) or be dropped. Then one that holds
            // a single chunk gets a second while enough is left: rank 0 may now work on a chunk
            // of its own, and a worker that finishes meanwhile must not wait for it.
            if failure == nil {
                for rank in live where outstanding[rank].isEmpty && mayWork(rank) {
                    guard let chunk = nextChunk() else { break }
                    try send(chunk, to: rank)
                }
                for rank in live where outstanding[rank].count < inFlight && mayWork(rank) && mayQueueSecondChunk() && mayHoldSecondChunk(rank) {
                    guard let chunk = nextChunk() else { break }
                    try send(chunk, to: rank)
                }
            }
            if failure == nil, options.rankZeroWorks || live.isEmpty, let chunk = nextChunk() {
                try askForFinishedPartials()
                try runOwn(chunk)
                continue
            }
            if outstanding.allSatisfy(\.isEmpty) { break }
            try serveResults(wait: true)
        }
        for request in sends { try finish(request) }
        if let failure {
            if let partials { try pool.discardPartials(of: partials) }
            try pool.stopWorkers(payload: nil, failure: failure)
            throw rankZeroError ?? failure
        }
    }

    /// Waits for a chunk's send; one to a worker that died (with retries) has its items redone.
    @inlinable
    func finish(_ request: SendRequest) throws {
        do {
            try request.wait()
        } catch let CommunicatorError.peerFailed(peer, _, _, _) where pool.deadWorkers.contains(peer) {
        }
    }

    /// Rank 0 itself failed: no more chunks go out, the ones out are waited for, and the
    /// workers are told before `error` is thrown.
    @inlinable
    mutating func stop(with error: any Error) {
        guard failure == nil else { return }
        failure = .stopped(by: error)
        rankZeroError = error
    }

    /// The next chunk to hand out: lost items first, then fresh ones from the input.
    @inlinable
    mutating func nextChunk() -> (start: Int, items: [Item])? {
        guard failure == nil else { return nil }
        if !retryQueue.isEmpty { return retryQueue.removeFirst() }
        if let all = staticItems {
            // One contiguous block per rank, rank 0's first.
            guard nextIndex < all.count else { return nil }
            let block = (all.count + size - 1) / size
            let start = nextIndex
            nextIndex = min(all.count, start + max(block, 1))
            return (start, Array(all[start..<nextIndex]))
        }
        guard !exhausted else { return nil }
        let wanted = chunkSize()
        var iterator = self.iterator
        var ahead = lookahead
        lookahead = nil
        let items = [Item](unsafeUninitializedCapacity: wanted) { buffer, initialized in
            var count = 0
            if let item = ahead {
                buffer.baseAddress!.initialize(to: item)
                ahead = nil
                count = 1
            }
            while count < wanted, let item = iterator.next() {
                (buffer.baseAddress! + count).initialize(to: item)
                count += 1
            }
            initialized = count
        }
        if items.count < wanted {
            exhausted = true
        } else if let total, nextIndex + items.count >= total {
            if let item = iterator.next() {
                lookahead = item
                // The count was short of the end: from now on the number of items is unknown.
                self.total = nil
            } else {
                exhausted = true
            }
        }
        self.iterator = iterator
        guard !items.isEmpty else { return nil }
        let start = nextIndex
        nextIndex += items.count
        return (start, items)
    }

    /// Whether a worker that still holds a chunk may be given another: only while what is left
    /// would still give every rank that shares it a chunk of the current size. Near the end the
    /// last chunks go to whichever rank is free first, rank 0 included, rather than queue behind
    /// a busy one.
    /// (Items waiting to be retried are not counted, which only holds second chunks back.)
    @inlinable
    func mayQueueSecondChunk() -> Bool {
        guard let total else { return true }
        return total - nextIndex >= sharingRanks * chunkSize()
    }

    /// How many ranks the items left are shared among: every rank, or while the core limit
    /// holds, those it leaves working (rank 0 among them when it works).
    @inlinable
    var sharingRanks: Int {
        let working = live.count + (options.rankZeroWorks || live.isEmpty ? 1 : 0)
        guard let workers = coreShare?.busyWorkers else { return max(1, working) }
        return min(working, max(1, workers + (options.rankZeroWorks ? 1 : 0)))
    }

    /// Automatic chunks carry about 2 ms of work (4 items before the first timing, 1 where ranks
    /// may take turns on the cores), and no more than half of a fair share of what is left, so
    /// the last chunks are small and every rank finishes at about the same time.
    @inlinable
    func chunkSize() -> Int {
        if case .fixed(let n) = options.chunkSize { return n }
        // Before any timing, a few items; never more than a fair share, so that a handful of
        // heavy items is spread over the ranks rather than handed to the first one.
        // Where ranks may have to take turns on the cores, one item: until timings show whether
        // they do, the ranks that would then be left without work must not hold much of it.
        var n = secondsPerItem.map { Int(min(0.002 / max($0, 1e-9), Double(1 << 16))) } ?? (coreShare == nil ? 4 : 1)
        if let total { n = min(n, max(1, (total - nextIndex) / (2 * sharingRanks))) }
        return max(n, 1)
    }

    @inlinable
    mutating func send(_ chunk: (start: Int, items: [Item]), to rank: Int) throws {
        let bytes: [UInt8]
        do {
            bytes = try PoolChunk(start: chunk.start, items: chunk.items).framed()
        } catch {
            try unsendable(chunk, to: rank, error)
            return
        }
        sends.append(SendRequest(try channel.startSend(OutgoingBytes(bytes), to: rank, tag: PoolTag.chunk.rawValue), rank: 0))
        if sends.count > 64 {
            sends = try sends.filter { request in
                do {
                    return try !request.test()
                } catch let CommunicatorError.peerFailed(peer, _, _, _) where pool.deadWorkers.contains(peer) {
                    return false
                }
            }
        }
        // A worker whose partial is in (asked while the core limit left it idle) starts a new
        // one with this chunk: that one is asked for in its turn.
        if let partials, partials.workersIn.contains(rank) {
            partials.workersIn.remove(rank)
            partials.workersAsked.remove(rank)
        }
        outstanding[rank].append(SentChunk(start: chunk.start, count: chunk.items.count,
                                           items: options.retryLostItems ? chunk.items : nil))
    }

    /// A chunk whose items cannot all be encoded: each that cannot fails, as one whose transform
    /// throws. Without `keepGoing` the map fails at the first; with it, the others go out again
    /// in stretches around them.
    @inlinable
    mutating func unsendable(_ chunk: (start: Int, items: [Item]), to rank: Int, _ error: any Error) throws {
        var bad: [(offset: Int, message: String)] = []
        for (offset, item) in chunk.items.enumerated() {
            do {
                _ = try BinaryEncoder().encode([item])
            } catch {
                bad.append((offset, "it cannot be sent to rank \(rank): \(describeDecodingError(error, inArray: true))"))
                if !worker.keepGoing { break }
            }
        }
        // Should every item encode alone, the chunk as a whole still did not: its first item.
        if bad.isEmpty { bad = [(0, "it cannot be sent to rank \(rank): \(describeDecodingError(error, inArray: true))")] }
        guard worker.keepGoing else {
            failure = failure ?? .itemFailed(index: chunk.start + bad[0].offset, rank: 0, message: bad[0].message)
            return
        }
        var from = 0
        for offset in bad.map(\.offset) + [chunk.items.count] {
            if offset > from { retryQueue.append((chunk.start + from, Array(chunk.items[from..<offset]))) }
            from = offset + 1
        }
        for (offset, message) in bad {
            try handle(PoolChunkResult(start: chunk.start + offset, count: 1, results: [],
                                       failures: [PoolItemFailure(offset: 0, message: message)], seconds: 0), from: 0)
        }
    }

    /// Works on a chunk here on rank 0.
    @inlinable
    mutating func runOwn(_ chunk: (start: Int, items: [Item])) throws {
        let result = worker.run(PoolChunk(start: chunk.start, items: chunk.items))
        try handle(result, from: 0)
    }

    /// Handles results that have arrived; with `wait`, waits for at least one.
    @inlinable
    mutating func serveResults(wait: Bool) throws {
        var shouldWait = wait
        // At most one round of results per call, so rank 0 gets to its own chunks between rounds
        // even when the workers answer as fast as it serves them.
        var handled = 0
        while handled <= live.count {
            let info: MessageInfo?
            do {
                info = try probeWorkers(wait: shouldWait)
            } catch let CommunicatorError.peerFailed(peer, reason, _, _) where peer != 0 && live.contains(peer) && !wasAsked(peer) {
                try workerDied(peer, reason: reason)
                if outstanding.allSatisfy(\.isEmpty) { return }
                continue
            }
            guard let info else { return }
            shouldWait = false
            let bytes: [UInt8]
            do {
                bytes = try channel.receiveArray(UInt8.self, matching: info)
            } catch let CommunicatorError.peerFailed(peer, reason, _, _) where peer == info.source && peer != 0 && live.contains(peer) && !wasAsked(peer) {
                // The worker died while its answer was still crossing (one larger than the room
                // in its ring goes across as it is written): the answer is lost with its chunks.
                try workerDied(peer, reason: reason)
                if outstanding.allSatisfy(\.isEmpty) { return }
                continue
            }
            if info.tag != PoolTag.result.rawValue {
                // The answer of a worker asked for its partial (the only other message a worker
                // sends during a map).
                takePartial(bytes, from: info.source, tag: info.tag)
                handled += 1
                continue
            }
            let result: PoolChunkResult<R>
            do {
                result = try pool.poolMessage(from: info.source, byteCount: bytes.count, as: "results of type \(R.self)", inArray: true) { try PoolChunkResult<R>.unframed(bytes) }
            } catch {
                // The answer is for the worker's oldest chunk: each runs its chunks in order.
                if !outstanding[info.source].isEmpty { outstanding[info.source].removeFirst() }
                stop(with: error)
                handled += 1
                continue
            }
            try handle(result, from: info.source)
            if failure == nil, mayWork(info.source), outstanding[info.source].isEmpty || (mayQueueSecondChunk() && mayHoldSecondChunk(info.source)),
               let chunk = nextChunk() {
                try send(chunk, to: info.source)
            }
            handled += 1
        }
    }

    @inlinable
    func probeWorkers(wait: Bool) throws -> MessageInfo? {
        // Only workers that hold chunks can answer: a finished one among them is an error. So
        // can workers asked for their partial, with a partial or the reason there is none.
        let busy = live.filter { !outstanding[$0].isEmpty }
        let answering = awaitedPartials
        if answering.isEmpty {
            if busy.isEmpty { return nil }
            return try channel.probe(anyOf: busy, tag: PoolTag.result.rawValue, wait: wait)
        }
        return try channel.probe(anyOf: (busy + answering).sorted(), tag: nil, wait: wait)
    }

    @inlinable
    mutating func handle(_ answer: PoolChunkResult<R>, from rank: Int) throws {
        var result = answer
        if rank != 0 {
            // A chunk this worker does not hold (it was handed to another rank after this one
            // was declared dead) must not be counted twice.
            guard let index = outstanding[rank].firstIndex(where: { $0.start == result.start }) else { return }
            let held = outstanding[rank].remove(at: index)
            result = worker.expanded(result, count: held.count)
        }
        if result.count > 0 {
            let perItem = result.seconds / Double(result.count)
            secondsPerItem = secondsPerItem.map { 0.7 * $0 + 0.3 * perItem } ?? perItem
        }
        if let use = result.use {
            let working = rank == 0 || mayWork(rank)
            coreShare?.note(use, seconds: result.seconds, working: working)
        }
        if let first = result.failures.first, !worker.keepGoing {
            if failure == nil {
                failure = .itemFailed(index: result.start + first.offset, rank: rank, message: first.message)
            }
            return
        }
        guard failure == nil else { return }
        do {
            try deliver(Pool.Outcome(start: result.start, count: result.count, rank: rank, results: result.results, failures: result.failures))
        } catch {
            stop(with: error)
            return
        }
        done += result.count
        options.progress?(done, total)
    }

    /// A worker died: redo its unfinished chunks elsewhere, or fail naming them.
    @inlinable
    mutating func workerDied(_ rank: Int, reason: String) throws {
        live.removeAll { $0 == rank }
        pool.deadWorkers.insert(rank)
        let lost = outstanding[rank]
        outstanding[rank] = []
        guard options.retryLostItems else {
            let error = PoolError.workerDied(rank: rank, lostItems: lost.map { $0.start..<($0.start + $0.count) }, reason: reason)
            // The job is failing: the other ranks learn of it from the backend itself.
            throw error
        }
        // Chunks on their way to it never arrive; its end must not wait for them.
        channel.abandonSends(to: rank)
        retryQueue.append(contentsOf: lost.compactMap { chunk in chunk.items.map { (chunk.start, $0) } })
    }
}

/// Rank 0's view of whether the ranks of a map wait for cores, from how their chunks spent
/// their time.
///
/// Chunk times are added up in windows of `window` seconds. A window whose chunks slept for
/// `sleeping` of their time or more ends the limit for good: items that sleep leave cores free
/// for the ranks that would otherwise be idle. Otherwise a window whose chunks waited for a CPU
/// for more than `contended` of their time shows ranks taking turns on the cores: from then on
/// only as many ranks as there are cores get new chunks.
@usableFromInline
struct CoreShare {
    @usableFromInline let cores: Int
    @usableFromInline let rankZeroWorks: Bool
    @usableFromInline var limited = false
    @usableFromInline var ended = false
    @usableFromInline var seconds = 0.0
    @usableFromInline var cpuSeconds = 0.0
    @usableFromInline var waitingForCPU = 0.0

    @usableFromInline static var window: Double { 0.03 }
    @usableFromInline static var contended: Double { 0.15 }
    @usableFromInline static var sleeping: Double { 0.1 }

    @inlinable
    init(cores: Int, rankZeroWorks: Bool) {
        self.cores = cores
        self.rankZeroWorks = rankZeroWorks
    }

    /// How many workers may hold chunks; nil while every one may. With one core and rank 0
    /// working, none: rank 0 runs every chunk.
    @inlinable
    var busyWorkers: Int? {
        guard limited, !ended else { return nil }
        return workersWhileLimited
    }

    /// How many workers keep getting chunks while the limit holds.
    @inlinable
    var workersWhileLimited: Int { rankZeroWorks ? cores - 1 : cores }

    /// Counts a finished chunk that took `seconds`. Once the limit holds, the chunks of ranks
    /// left without work (handed out before) say nothing of the ranks still `working`.
    @inlinable
    mutating func note(_ use: ChunkUse, seconds chunkSeconds: Double, working: Bool) {
        guard !ended, working else { return }
        seconds += chunkSeconds
        cpuSeconds += use.cpuSeconds
        waitingForCPU += use.waitingForCPU
        guard seconds >= Self.window else { return }
        if seconds - cpuSeconds - waitingForCPU >= Self.sleeping * seconds {
            ended = true
        } else if waitingForCPU > Self.contended * seconds {
            limited = true
        }
        (seconds, cpuSeconds, waitingForCPU) = (0, 0, 0)
    }
}
