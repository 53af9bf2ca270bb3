import Atomics
import CSwiftParLinux
#if canImport(Glibc)
import Glibc
#endif

/// One process's end of a local job: it writes to the rings towards every other rank, reads the
/// rings from them, and keeps messages that arrived before anyone asked for them.
///
/// Matching follows MPI: a message is identified by source, context (which communicator) and
/// tag, and messages from one source that match the same receive arrive in the order sent.
/// Every wait spins (for about 2 ms when each rank has a core, briefly otherwise), then yields,
/// then sleeps on the rank's doorbell (a futex word in the shared region); while it waits it
/// keeps the sends in flight moving, notices failed or finished ranks, and, when a send is stuck
/// on a full ring, moves incoming messages aside so two ranks sending large messages to each
/// other never deadlock.
///
/// Used by the rank's own thread only.
final class LocalEngine {
    let region: SharedRegion
    let me: Int
    let size: Int
    @exclusivity(unchecked) private var pending: [[PendingMessage]]
    @exclusivity(unchecked) private var outgoing: [[OutgoingSend]]
    @exclusivity(unchecked) private var outgoingCount = 0
    /// Producer-side positions: bytes written to each destination's ring.
    @exclusivity(unchecked) private var written: [Int]
    /// Consumer-side positions: bytes read from each source's ring.
    @exclusivity(unchecked) private var read: [Int]
    /// The failure that cut short the payload being read from each source, if one did: that
    /// ring is read no further, since its position is inside a message, where no header is
    /// (a later read, such as the rest of a value's arrays, would take payload for a header).
    @exclusivity(unchecked) private var cutShort: [(any Error)?]
    /// Destinations this rank has marked its ring to as used, and sources whose ring to this
    /// rank was seen marked (see `SharedRegion.ringUsed`).
    @exclusivity(unchecked) private var marked: [Bool]
    @exclusivity(unchecked) private var seenUsed: [Bool]
    @exclusivity(unchecked) private var sendRings: [Ring?]
    @exclusivity(unchecked) private var receiveRings: [Ring?]
    /// Seconds a wait spins, after its first 256 tries, before it yields (0: those tries only).
    private let spinSeconds: Double
    private let yieldLimit: Int
    let stallTimeout: Double?
    /// Rank 0's process, the parent of every other rank (0 on rank 0 itself).
    private let launcher: pid_t
    /// Whether rank 0's process is gone: set by a wait that slept, thrown by `checkFailure`.
    @exclusivity(unchecked) private var launcherGone = false
    /// The next free communicator context on this process (0 and 1 are the world's).
    @exclusivity(unchecked) var nextContext = 2

    init(region: SharedRegion, rank: Int, settings: JobSettings) {
        self.region = region
        self.me = rank
        self.size = region.size
        self.stallTimeout = settings.stallTimeout
        // Started by rank 0 (forked or spawned), which the start checked was still there.
        launcher = rank == 0 ? 0 : getppid()
        settings.shareCores(ranksOnHost: region.size)
        pending = Array(repeating: [], count: region.size)
        outgoing = Array(repeating: [], count: region.size)
        written = Array(repeating: 0, count: region.size)
        read = Array(repeating: 0, count: region.size)
        cutShort = Array(repeating: nil, count: region.size)
        marked = Array(repeating: false, count: region.size)
        seenUsed = Array(repeating: false, count: region.size)
        sendRings = Array(repeating: nil, count: region.size)
        receiveRings = Array(repeating: nil, count: region.size)
        // With more ranks than cores a spinning rank takes the core another rank needs. With a
        // core each, a wait spins for a while: waking a rank that sleeps on its doorbell took
        // 200-300 µs on a 2-core VM, against well under a microsecond for one that spins, so a
        // wait that ends within the spin saves that much. 2 ms covers the answer to a message
        // of a few hundred KB (a [String: Int] of 10,000 entries is answered in 0.6-1 ms);
        // Open MPI's shared-memory transport spins without a limit.
        let cores = SwiftPar.availableCores
        spinSeconds = region.size <= cores ? 0.002 : 0
        yieldLimit = region.size <= cores ? 200 : 0
    }

    @inline(__always)
    private func sendRing(_ destination: Int) -> Ring {
        if let ring = sendRings[destination] { return ring }
        let ring = region.ring(from: me, to: destination)
        sendRings[destination] = ring
        return ring
    }

    @inline(__always)
    private func receiveRing(_ source: Int) -> Ring {
        if let ring = receiveRings[source] { return ring }
        let ring = region.ring(from: source, to: me)
        receiveRings[source] = ring
        return ring
    }

    // MARK: Sending

    /// Sends `bytes`; returns when they are all in the ring (or, to itself, queued).
    func send(_ bytes: UnsafeRawBufferPointer, to destination: Int, tag: Int, context: Int, waiter: LocalTransport) throws {
        let header = FrameHeader(length: bytes.count, tag: tag, context: context)
        if destination == me {
            pending[me].append(PendingMessage(header: header, bytes: [UInt8](copyingAtFullSpeed: bytes)))
            return
        }
        if outgoing[destination].isEmpty && tryWriteWhole(header, bytes, to: destination) { return }
        let operation = OutgoingSend(header: header, borrowed: bytes)
        enqueue(operation, to: destination)
        do {
            try waitUntil(sendingTo: destination, waiter: waiter) { operation.isComplete }
        } catch {
            // The caller's bytes are only valid during this call: never touch them again.
            if let index = outgoing[destination].firstIndex(where: { $0 === operation }) {
                outgoing[destination].remove(at: index)
                outgoingCount -= 1
            }
            throw error
        }
    }

    /// Starts sending `message`, which the returned request keeps alive until it is in the ring.
    func startSend(_ message: OutgoingBytes, to destination: Int, tag: Int, context: Int, waiter: LocalTransport) throws -> any TransportRequest {
        let header = FrameHeader(length: message.byteCount, tag: tag, context: context)
        if destination == me {
            message.withBytes { pending[me].append(PendingMessage(header: header, bytes: [UInt8](copyingAtFullSpeed: $0))) }
            return CompletedRequest()
        }
        if outgoing[destination].isEmpty, message.withBytes({ tryWriteWhole(header, $0, to: destination) }) {
            return CompletedRequest()
        }
        let operation = OutgoingSend(header: header, owner: message)
        enqueue(operation, to: destination)
        return LocalSendRequest(engine: self, operation: operation, destination: destination, waiter: waiter)
    }

    private func enqueue(_ operation: OutgoingSend, to destination: Int) {
        outgoing[destination].append(operation)
        outgoingCount += 1
    }

    /// Free bytes in the ring towards `destination`.
    @inline(__always)
    private func freeSpace(to destination: Int, ring: Ring) -> Int {
        ring.capacity - (written[destination] - ring.tail.load(ordering: .acquiring))
    }

    /// Writes a whole message at once if the ring has room for it.
    private func tryWriteWhole(_ header: FrameHeader, _ bytes: UnsafeRawBufferPointer, to destination: Int) -> Bool {
        let ring = sendRing(destination)
        let needed = FrameHeader.size + bytes.count
        guard needed <= freeSpace(to: destination, ring: ring) else { return false }
        var position = written[destination]
        header.write(into: ring, at: position)
        position += FrameHeader.size
        if bytes.count > 0 { ring.copyIn(bytes.baseAddress!, count: bytes.count, at: position) }
        // Published whole: a receiver never sees part of a message that fits, so it reads it
        // where it lies, and a sender that dies while copying it leaves nothing behind.
        publish(position + bytes.count, to: destination, ring: ring)
        return true
    }

    /// The most bytes copied into or out of a ring between two publications of its head or
    /// tail, for a message larger than the room in the ring (which is published as it is
    /// written). It then goes across in pieces that the receiver copies out while the sender
    /// copies in the next, instead of one side waiting for the other's copy of a whole ring
    /// (`swiftpar -n 2 bench pingpong --case numbers_4MiB` on 2 cores: 600 µs one way with
    /// whole-ring copies, about 365 µs with 16 KiB pieces; 8 to 64 KiB measured alike).
    static let piece = 16 << 10

    @inline(__always)
    private func publish(_ position: Int, to destination: Int, ring: Ring) {
        if !marked[destination] {
            // Before the first head is published, and in the same total order as the head and
            // the receiver's sleeping flag: a receiver that goes to sleep sees the ring marked,
            // or this rank sees it asleep and wakes it.
            region.ringUsed(from: me, to: destination).store(1, ordering: .sequentiallyConsistent)
            marked[destination] = true
        }
        written[destination] = position
        ring.head.store(position, ordering: .sequentiallyConsistent)
        wakeIfSleeping(destination)
    }

    /// Moves queued sends forward as far as the rings allow, without waiting. Returns whether
    /// any bytes moved.
    @discardableResult
    func progressSends() -> Bool {
        guard outgoingCount > 0 else { return false }
        var moved = false
        for destination in 0..<size where !outgoing[destination].isEmpty {
            while let operation = outgoing[destination].first {
                moved = write(operation, to: destination) || moved
                guard operation.isComplete else { break }
                outgoing[destination].removeFirst()
                outgoingCount -= 1
            }
        }
        return moved
    }

    /// Writes as much of `operation` as fits now.
    private func write(_ operation: OutgoingSend, to destination: Int) -> Bool {
        let ring = sendRing(destination)
        var free = freeSpace(to: destination, ring: ring)
        var position = written[destination]
        let start = position
        if !operation.headerWritten {
            guard free >= FrameHeader.size else { return false }
            operation.header.write(into: ring, at: position)
            position += FrameHeader.size
            free -= FrameHeader.size
            operation.headerWritten = true
        }
        var n = min(free, operation.header.length - operation.offset, Self.piece)
        while n > 0 {
            operation.withBytes { ring.copyIn($0.baseAddress! + operation.offset, count: n, at: position) }
            position += n
            operation.offset += n
            publish(position, to: destination, ring: ring)
            // The receiver may have freed room meanwhile: go on while there is some.
            free = freeSpace(to: destination, ring: ring)
            n = min(free, operation.header.length - operation.offset, Self.piece)
        }
        guard position != start else { return false }
        if written[destination] != position { publish(position, to: destination, ring: ring) }
        return true
    }

    // MARK: Receiving

    /// Finds the first message from one of `sources` (world ranks) in `context` with `tag`
    /// (nil: any), without receiving it. Waits for one when `wait` is set.
    func probe(sources: [Int], anySource: Bool, tag: Int?, context: Int, wait: Bool,
               waiter: LocalTransport) throws -> (source: Int, tag: Int, length: Int)? {
        var found: (source: Int, tag: Int, length: Int)?
        let check = { () throws -> Bool in
            for source in sources {
                if let header = try self.firstMatch(from: source, tag: tag, context: context, waiter: waiter) {
                    found = (source, header.tag, header.length)
                    return true
                }
            }
            return false
        }
        if try check() { return found }
        guard wait else {
            progressSends()
            return nil
        }
        try waitUntil(receivingFrom: sources, anySource: anySource, waiter: waiter, check)
        return found
    }

    /// The first matching message from `source`: among those set aside, else at the head of
    /// its ring. Messages at the ring head that do not match are set aside to look past them.
    private func firstMatch(from source: Int, tag: Int?, context: Int, waiter: LocalTransport) throws -> FrameHeader? {
        if let match = pending[source].first(where: { $0.header.matches(tag: tag, context: context) }) {
            return match.header
        }
        guard source != me else { return nil }
        if let failure = cutShort[source] { throw failure }
        while let header = peek(source) {
            if header.matches(tag: tag, context: context) { return header }
            try setAside(from: source, header, waiter: waiter)
        }
        return nil
    }

    /// The header at the head of `source`'s ring, if one has arrived.
    @inline(__always)
    private func peek(_ source: Int) -> FrameHeader? {
        guard cutShort[source] == nil else { return nil }
        if !seenUsed[source] {
            guard region.ringUsed(from: source, to: me).load(ordering: .sequentiallyConsistent) != 0 else { return nil }
            seenUsed[source] = true
        }
        let ring = receiveRing(source)
        let available = ring.head.load(ordering: .acquiring) - read[source]
        guard available >= FrameHeader.size else { return nil }
        return FrameHeader.read(from: ring, at: read[source])
    }

    /// Reads the message at the head of `source`'s ring into the set-aside queue.
    private func setAside(from source: Int, _ header: FrameHeader, waiter: LocalTransport) throws {
        read[source] += FrameHeader.size
        var failure: (any Error)?
        let bytes = [UInt8](unsafeUninitializedCapacity: header.length) { buffer, initialized in
            do { try readPayload(from: source, into: UnsafeMutableRawBufferPointer(buffer), waiter: waiter) } catch { failure = error }
            initialized = header.length
        }
        if let failure { throw failure }
        pending[source].append(PendingMessage(header: header, bytes: bytes))
    }

    /// Receives the first message from `source` matching `tag` and `context` into `buffer`,
    /// which holds exactly its length (as a probe just reported).
    func receive(from source: Int, tag: Int, context: Int, into buffer: UnsafeMutableRawBufferPointer, waiter: LocalTransport) throws {
        if let index = pending[source].firstIndex(where: { $0.header.matches(tag: tag, context: context) }) {
            let message = pending[source].remove(at: index)
            message.bytes.withUnsafeBytes { buffer.copyMemoryAtFullSpeed(from: $0) }
            countProgress()
            return
        }
        if let failure = cutShort[source] { throw failure }
        guard source != me, let header = peek(source), header.matches(tag: tag, context: context),
              header.length == buffer.count else {
            throw CommunicatorError.invalidArgument(
                operation: "receive", reason: "no message from rank \(source) with tag \(tag) of \(buffer.count) bytes was probed", rank: me)
        }
        read[source] += FrameHeader.size
        try readPayload(from: source, into: buffer, waiter: waiter)
        countProgress()
    }

    /// Receives the first message from one of `sources` in `context` with `tag` (nil: any),
    /// waiting for one, and calls `body` with its bytes and envelope. A message that has arrived
    /// whole in one stretch of its ring, with nothing sent apart after it, is read where it lies
    /// and freed after `body`; others are copied out first.
    func receiveEncoded<R>(sources: [Int], anySource: Bool, tag: Int?, context: Int, waiter: LocalTransport,
                           _ body: (UnsafeRawBufferPointer, _ source: Int, _ tag: Int) throws -> R) throws -> R {
        guard let found = try probe(sources: sources, anySource: anySource, tag: tag, context: context, wait: true, waiter: waiter) else {
            throw CommunicatorError.wouldWaitForever(operation: "receive", reason: "no message can arrive", rank: waiter.rank)
        }
        let source = found.source
        if let index = pending[source].firstIndex(where: { $0.header.matches(tag: found.tag, context: context) }) {
            let message = pending[source].remove(at: index)
            countProgress()
            return try message.bytes.withUnsafeBytes { try body($0, source, found.tag) }
        }
        let ring = receiveRing(source)
        let start = read[source] + FrameHeader.size
        if ring.head.load(ordering: .acquiring) - start >= found.length,
           let bytes = ring.contiguousBytes(at: start, count: found.length), WireHeader.attachmentCount(in: bytes) == 0 {
            defer {
                read[source] = start + found.length
                ring.tail.store(read[source], ordering: .sequentiallyConsistent)
                wakeIfSleeping(source)
                countProgress()
            }
            return try body(bytes, source, found.tag)
        }
        let bytes = try [UInt8].received(count: found.length) {
            try receive(from: source, tag: found.tag, context: context, into: $0, waiter: waiter)
        }
        return try bytes.withUnsafeBytes { try body($0, source, found.tag) }
    }

    /// Copies the next `buffer.count` payload bytes out of `source`'s ring as they arrive,
    /// freeing space for the sender after every piece.
    private func readPayload(from source: Int, into buffer: UnsafeMutableRawBufferPointer, waiter: LocalTransport) throws {
        let ring = receiveRing(source)
        var copied = 0
        while true {
            let available = ring.head.load(ordering: .acquiring) - read[source]
            let n = min(available, buffer.count - copied, Self.piece)
            if n > 0 {
                ring.copyOut(buffer.baseAddress! + copied, count: n, at: read[source])
                copied += n
            }
            // Publishing the tail even for an empty payload frees the header's bytes.
            read[source] += n
            ring.tail.store(read[source], ordering: .sequentiallyConsistent)
            wakeIfSleeping(source)
            if copied == buffer.count { return }
            if ring.head.load(ordering: .acquiring) > read[source] { continue }
            do {
                try waitForBytes(from: source, waiter: waiter)
            } catch {
                cutShort[source] = error
                throw error
            }
        }
    }

    /// Waits for more payload of a message that has started to arrive: its sender is writing it.
    /// A failure met meanwhile is given in the numbers of `waiter`, the communicator receiving.
    private func waitForBytes(from source: Int, waiter: LocalTransport) throws {
        let ring = receiveRing(source)
        let arrived = { ring.head.load(ordering: .acquiring) > self.read[source] }
        try wait(arrived) { waited in
            try self.checkFailure("receive", waiter: waiter)
            if self.region.state(of: source).load(ordering: .acquiring) == RankState.failed.rawValue {
                throw waiter.peerFailure(world: source, reason: self.region.rankFailureDescription(source), operation: "receive")
            }
            // A sender stopped partway through its message (SIGSTOP, a debugger) is a stall
            // like any other: without this the rest of the message was waited for for good.
            if let stallTimeout = self.stallTimeout, waited > stallTimeout {
                try self.checkStall(waiter.activity ?? "receive", quiet: waited, rank: self.me, done: arrived)
            }
        }
    }

    @inline(__always)
    private func countProgress() {
        region.progress(me).wrappingIncrement(ordering: .relaxed)
    }

    // MARK: Waiting

    /// Waits for `done` while receiving from `sources` (world ranks); throws when a rank has
    /// failed, or when the sources have finished and `done` still does not hold.
    func waitUntil(receivingFrom sources: [Int], anySource: Bool, waiter: LocalTransport, _ done: () throws -> Bool) throws {
        var finishedSince: Double?
        try wait(done) { waited in
            try self.checkFailure(waiter.activity ?? "receive", waiter: waiter)
            for source in sources where source != self.me
                && self.region.state(of: source).load(ordering: .acquiring) == RankState.failed.rawValue {
                if try done() { return }
                throw CommunicatorError.peerFailed(peer: waiter.groupRank(source), reason: self.region.rankFailureDescription(source),
                                                   operation: waiter.activity ?? "receive", rank: waiter.rank)
            }
            let others = sources.filter { $0 != self.me }
            let allFinished = !others.isEmpty && others.allSatisfy {
                self.region.state(of: $0).load(ordering: .acquiring) != RankState.running.rawValue
            }
            if allFinished {
                // Ranks that finished may have left messages in their rings, and others may be
                // finishing too: look again a little later, then report all that have.
                let now = monotonicNow()
                if let since = finishedSince, now - since > finishGrace, try !done() {
                    throw self.finishedError(waiter: waiter, sources: others, anySource: anySource)
                }
                if finishedSince == nil { finishedSince = now }
            }
            if let stallTimeout = self.stallTimeout, waited > stallTimeout {
                try self.checkStall(waiter.activity ?? "receive", quiet: waited, rank: self.me, done: done)
            }
        }
    }

    /// The error for a wait whose senders have finished: in a collective or pool call, every
    /// member that has finished; otherwise the senders.
    private func finishedError(waiter: LocalTransport, sources: [Int], anySource: Bool) -> CommunicatorError {
        let finished: [Int]
        if waiter.activity != nil {
            finished = waiter.members.filter { $0 != me && region.state(of: $0).load(ordering: .acquiring) != RankState.running.rawValue }
        } else {
            finished = sources
        }
        return .sendersFinished(finished.map(waiter.groupRank), anySource: anySource, activity: waiter.activity, rank: waiter.rank)
    }

    /// Waits for `done` while a send to `destination` (world rank) is stuck on a full ring.
    func waitUntil(sendingTo destination: Int, waiter: LocalTransport, _ done: () throws -> Bool) throws {
        try wait({ () throws -> Bool in
            if try done() { return true }
            // Make room on our side so the receiver, which may be sending to us, can go on.
            try self.setAsideEverythingArrived(waiter: waiter)
            return try done()
        }) { waited in
            try self.checkFailure(waiter.activity ?? "send", waiter: waiter)
            let state = self.region.state(of: destination).load(ordering: .acquiring)
            if state == RankState.failed.rawValue {
                throw CommunicatorError.peerFailed(peer: waiter.groupRank(destination), reason: self.region.rankFailureDescription(destination),
                                                   operation: waiter.activity ?? "send", rank: waiter.rank)
            }
            if state != RankState.running.rawValue, try !done() {
                if waiter.activity != nil { throw self.finishedError(waiter: waiter, sources: [destination], anySource: false) }
                throw CommunicatorError.receiverFinished(waiter.groupRank(destination), activity: nil, rank: waiter.rank)
            }
            if let stallTimeout = self.stallTimeout, waited > stallTimeout {
                try self.checkStall(waiter.activity ?? "send", quiet: waited, rank: self.me, done: done)
            }
        }
    }

    private func setAsideEverythingArrived(waiter: LocalTransport) throws {
        // A source cut short is skipped (nothing more is read from it): with failures
        // tolerated, a dead worker's ring must not fail the sends to the live ones.
        for source in 0..<size where source != me && cutShort[source] == nil {
            do {
                while let header = peek(source) { try setAside(from: source, header, waiter: waiter) }
            } catch where cutShort[source] != nil && region.state(of: source).load(ordering: .acquiring) == RankState.failed.rawValue {
                // That source died partway through a message: a receive from it is told so, and
                // the send waiting here goes on (or fails for a failure of its own).
                continue
            }
        }
    }

    /// Spins, yields, then sleeps on the doorbell until `done` holds; `check` runs between
    /// tries with the seconds waited so far or, with a stall timeout, the seconds since another
    /// rank last showed progress.
    private func wait(_ done: () throws -> Bool, check: (Double) throws -> Void) throws {
        var tries = 0
        var start = 0.0
        var quiet = QuietClock()
        var lastNow = 0.0
        func waited() -> Double {
            let now = monotonicNow()
            lastNow = now
            if start == 0 { start = now }
            return stallTimeout == nil ? now - start : quiet.seconds(at: now, self)
        }
        region.waiting(me).store(1, ordering: .relaxed)
        defer {
            region.waiting(me).store(0, ordering: .relaxed)
            countProgress()
        }
        // Spinning: 256 tries, then on until `spinSeconds` have passed since (the clock is read
        // every 64 tries, so a wait that ends at once never reads it for this). One reading
        // serves this and the checks.
        var spinning = true
        var spinStart = 0.0
        var yields = 0
        while true {
            progressSends()
            if try done() { return }
            tries += 1
            if tries & 63 == 0 {
                try check(waited())
                if spinning && tries >= 256 {
                    if spinStart == 0 { spinStart = lastNow }
                    spinning = lastNow - spinStart < spinSeconds
                }
            }
            if spinning {
                swiftpar_spin_pause()
                continue
            }
            if yields < yieldLimit {
                yields += 1
                sched_yield()
                continue
            }
            let flag = region.sleeping(me)
            let bell = region.doorbellAtomic(me).load(ordering: .sequentiallyConsistent)
            flag.store(1, ordering: .sequentiallyConsistent)
            progressSends()
            if try done() {
                flag.store(0, ordering: .relaxed)
                return
            }
            _ = swiftpar_futex_wait(region.doorbell(me), bell, 50_000_000)
            flag.store(0, ordering: .relaxed)
            // Rank 0 gone without a word (its monitor went with it): this rank normally ends by
            // the SIGTERM it asked for on its parent's death, but a program may have taken
            // SIGTERM over since. A rank that waits must not wait for good.
            if me != 0 && getppid() != launcher { launcherGone = true }
            try check(waited())
        }
    }

    /// No other rank has shown progress for longer than the stall timeout: watch them for a
    /// second more. Returns if one makes progress, finishes or fails (the wait's own checks then
    /// report it), or if `done` comes true meanwhile; otherwise names those that neither wait in
    /// swiftpar nor make progress, and fails.
    func checkStall(_ operation: String, quiet: Double, rank: Int, done: () throws -> Bool) throws {
        let before = (0..<size).map { region.progress($0).load(ordering: .relaxed) }
        let states = (0..<size).map { region.state(of: $0).load(ordering: .acquiring) }
        var seenWaiting = [Bool](repeating: false, count: size)
        let deadline = monotonicNow() + 1
        while monotonicNow() < deadline {
            progressSends()
            if try done() { return }
            for r in 0..<size where r != me {
                if region.progress(r).load(ordering: .relaxed) != before[r]
                    || region.state(of: r).load(ordering: .acquiring) != states[r] { return }
                if region.waiting(r).load(ordering: .relaxed) != 0 { seenWaiting[r] = true }
            }
            usleep(10_000)
        }
        // A rank stopped (SIGSTOP, a debugger) in a wait of its own still looks like a waiter:
        // its process's state tells.
        let silent = (0..<size).filter { r in
            r != me && region.state(of: r).load(ordering: .acquiring) == RankState.running.rawValue
                && (!seenWaiting[r] || Self.isStopped(pid: region.pid(of: r).load(ordering: .relaxed)))
        }
        throw CommunicatorError.stalled(operation: operation, seconds: quiet + 1, silentRanks: silent,
                                        timeout: stallTimeout ?? 0, rank: rank)
    }

    /// Whether process `pid` is stopped by a signal or a tracer (state T or t in /proc).
    static func isStopped(pid: Int) -> Bool {
        let state = processState(pid)
        return state == UInt8(ascii: "T") || state == UInt8(ascii: "t")
    }

    /// This rank's sign of life while it computes: counted as progress by ranks that wait.
    func noteProgress() {
        countProgress()
    }

    @inline(__always)
    private func wakeIfSleeping(_ rank: Int) {
        if region.sleeping(rank).load(ordering: .sequentiallyConsistent) != 0 { region.ring(rank) }
    }

    /// Wakes every rank, so each notices a change of the job's state at once.
    func wakeEveryone() {
        for rank in 0..<size where rank != me { region.ring(rank) }
    }

    /// Throws if any rank of the job has failed.
    func checkFailure(_ operation: String, waiter: LocalTransport? = nil) throws {
        let (failed, reason): (Int, String)
        if launcherGone {
            (failed, reason) = (0, "died (its process is gone)")
        } else {
            guard let failure = region.failureDescription() else { return }
            (failed, reason) = (failure.rank, failure.text)
        }
        guard let waiter else { throw CommunicatorError.peerFailed(peer: failed, reason: reason, operation: operation, rank: me) }
        throw waiter.peerFailure(world: failed, reason: reason, operation: operation)
    }

    /// Drops the sends queued for `destination` (a rank that died while failures were tolerated).
    func abandonSends(to destination: Int) {
        outgoingCount -= outgoing[destination].count
        outgoing[destination].removeAll()
    }

    /// Pushes every queued send into the rings before this rank finishes.
    func flushSends(waiter: LocalTransport) throws {
        for destination in 0..<size where !outgoing[destination].isEmpty {
            let last = outgoing[destination].last!
            try waitUntil(sendingTo: destination, waiter: waiter) { last.isComplete }
        }
    }
}

struct PendingMessage {
    let header: FrameHeader
    let bytes: [UInt8]
}

extension FrameHeader {
    @inline(__always)
    func matches(tag wanted: Int?, context wantedContext: Int) -> Bool {
        context == wantedContext && (wanted == nil || wanted == tag)
    }
}

/// A send that did not fit its ring at once; written piece by piece as space frees.
final class OutgoingSend {
    let header: FrameHeader
    /// The bytes of a blocking send, valid while its caller waits for it.
    @exclusivity(unchecked) var borrowed: UnsafeRawBufferPointer?
    /// The bytes of a nonblocking send, owned until it completes.
    let owner: OutgoingBytes?
    @exclusivity(unchecked) var headerWritten = false
    @exclusivity(unchecked) var offset = 0
    var isComplete: Bool { headerWritten && offset == header.length }

    init(header: FrameHeader, borrowed: UnsafeRawBufferPointer) {
        self.header = header
        self.borrowed = borrowed
        self.owner = nil
    }

    init(header: FrameHeader, owner: OutgoingBytes) {
        self.header = header
        self.borrowed = nil
        self.owner = owner
    }

    func withBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        if let owner { return owner.withBytes(body) }
        return body(borrowed!)
    }
}

final class LocalSendRequest: TransportRequest {
    let engine: LocalEngine
    let operation: OutgoingSend
    let destination: Int
    let waiter: LocalTransport

    init(engine: LocalEngine, operation: OutgoingSend, destination: Int, waiter: LocalTransport) {
        self.engine = engine
        self.operation = operation
        self.destination = destination
        self.waiter = waiter
    }

    func wait() throws {
        try engine.waitUntil(sendingTo: destination, waiter: waiter) { operation.isComplete }
    }

    func test() throws -> Bool {
        engine.progressSends()
        try engine.checkFailure("test", waiter: waiter)
        return operation.isComplete
    }
}

/// A request that was complete when it was made.
final class CompletedRequest: TransportRequest {
    func wait() throws {}
    func test() throws -> Bool { true }
}

/// Seconds since another rank of the job last showed progress (an operation that ended, or
/// `noteProgress()`): what the stall timeout measures.
struct QuietClock {
    private var total = 0
    private var since = 0.0

    mutating func seconds(at now: Double, _ engine: LocalEngine) -> Double {
        var sum = 0
        for rank in 0..<engine.size where rank != engine.me {
            sum &+= engine.region.progress(rank).load(ordering: .relaxed)
        }
        if since == 0 || sum != total {
            total = sum
            since = now
        }
        return now - since
    }
}
