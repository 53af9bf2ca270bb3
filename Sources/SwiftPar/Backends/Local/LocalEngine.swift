import Atomics
#if canImport(Glibc)
import Glibc
#endif

/// One process's end of a local job: it writes to the rings towards every other rank, reads the
/// rings from them, and keeps messages that arrived before anyone asked for them.
///
/// Matching follows MPI: a message is identified by source, context (which communicator) and
/// tag, and messages from one source that match the same receive arrive in the order sent.
/// Every wait spins briefly, then yields, then sleeps on the rank's doorbell (an eventfd made
/// before the fork); while it waits it keeps the sends in flight moving, notices failed or
/// finished ranks, and, when a send is stuck on a full ring, moves incoming messages aside so
/// two ranks sending large messages to each other never deadlock.
final class LocalEngine {
    let region: SharedRegion
    let me: Int
    let size: Int
    private let doorbells: [Int32]
    private var pending: [[PendingMessage]]
    private var outgoing: [[OutgoingSend]]
    private var outgoingCount = 0
    /// Producer-side positions: bytes written to each destination's ring.
    private var written: [Int]
    /// Consumer-side positions: bytes read from each source's ring.
    private var read: [Int]
    private let sendRings: [Ring?]
    private let receiveRings: [Ring?]
    private let spinLimit: Int
    private let yieldLimit: Int
    /// The next free communicator context on this process (0 and 1 are the world's).
    var nextContext = 2

    init(region: SharedRegion, rank: Int, doorbells: [Int32]) {
        self.region = region
        self.me = rank
        self.size = region.size
        self.doorbells = doorbells
        pending = Array(repeating: [], count: region.size)
        outgoing = Array(repeating: [], count: region.size)
        written = Array(repeating: 0, count: region.size)
        read = Array(repeating: 0, count: region.size)
        sendRings = (0..<region.size).map { $0 == rank ? nil : region.ring(from: rank, to: $0) }
        receiveRings = (0..<region.size).map { $0 == rank ? nil : region.ring(from: $0, to: rank) }
        // With more ranks than cores a spinning rank takes the core another rank needs.
        let cores = max(Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), 1)
        spinLimit = region.size <= cores ? 20_000 : 200
        yieldLimit = 200
    }

    // MARK: Sending

    /// Sends `bytes`; returns when they are all in the ring (or, to itself, queued).
    func send(_ bytes: UnsafeRawBufferPointer, to destination: Int, tag: Int, context: Int) throws {
        let header = FrameHeader(length: bytes.count, tag: tag, context: context)
        if destination == me {
            pending[me].append(PendingMessage(header: header, bytes: [UInt8](bytes)))
            return
        }
        if outgoing[destination].isEmpty && tryWriteWhole(header, bytes, to: destination) { return }
        let operation = OutgoingSend(header: header, bytes: bytes, owner: nil)
        enqueue(operation, to: destination)
        try waitUntil(sendingTo: destination) { operation.isComplete }
    }

    /// Starts sending `message`, which the returned request keeps alive until it is in the ring.
    func startSend(_ message: OutgoingBytes, to destination: Int, tag: Int, context: Int) throws -> any TransportRequest {
        let header = FrameHeader(length: message.byteCount, tag: tag, context: context)
        if destination == me {
            message.withBytes { pending[me].append(PendingMessage(header: header, bytes: [UInt8]($0))) }
            return CompletedRequest()
        }
        let bytes = message.withBytes { $0 } // Array storage: stable while `owner` holds it unchanged.
        if outgoing[destination].isEmpty && tryWriteWhole(header, bytes, to: destination) { return CompletedRequest() }
        let operation = OutgoingSend(header: header, bytes: bytes, owner: message)
        enqueue(operation, to: destination)
        return LocalSendRequest(engine: self, operation: operation, destination: destination)
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
        let ring = sendRings[destination]!
        let needed = FrameHeader.size + bytes.count
        guard needed <= freeSpace(to: destination, ring: ring) else { return false }
        var position = written[destination]
        header.write(into: ring, at: position)
        position += FrameHeader.size
        if bytes.count > 0 { ring.copyIn(bytes.baseAddress!, count: bytes.count, at: position) }
        publish(position + bytes.count, to: destination, ring: ring)
        return true
    }

    @inline(__always)
    private func publish(_ position: Int, to destination: Int, ring: Ring) {
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
        let ring = sendRings[destination]!
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
        let n = min(free, operation.bytes.count - operation.offset)
        if n > 0 {
            ring.copyIn(operation.bytes.baseAddress! + operation.offset, count: n, at: position)
            position += n
            operation.offset += n
        }
        guard position != start else { return false }
        publish(position, to: destination, ring: ring)
        return true
    }

    // MARK: Receiving

    /// Finds the first message from one of `sources` (world ranks) in `context` with `tag`
    /// (nil: any), without receiving it. Waits for one when `wait` is set.
    func probe(sources: [Int], tag: Int?, context: Int, wait: Bool) throws -> (source: Int, tag: Int, length: Int)? {
        var found: (source: Int, tag: Int, length: Int)?
        let check = { [unowned self] () throws -> Bool in
            for source in sources {
                if let header = try self.firstMatch(from: source, tag: tag, context: context) {
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
        try waitUntil(receivingFrom: sources, check)
        return found
    }

    /// The first matching message from `source`: among those set aside, else at the head of
    /// its ring. Messages at the ring head that do not match are set aside to look past them.
    private func firstMatch(from source: Int, tag: Int?, context: Int) throws -> FrameHeader? {
        if let match = pending[source].first(where: { $0.header.matches(tag: tag, context: context) }) {
            return match.header
        }
        guard source != me else { return nil }
        while let header = peek(source) {
            if header.matches(tag: tag, context: context) { return header }
            try setAside(from: source, header)
        }
        return nil
    }

    /// The header at the head of `source`'s ring, if one has arrived.
    @inline(__always)
    private func peek(_ source: Int) -> FrameHeader? {
        let ring = receiveRings[source]!
        let available = ring.head.load(ordering: .acquiring) - read[source]
        guard available >= FrameHeader.size else { return nil }
        return FrameHeader.read(from: ring, at: read[source])
    }

    /// Reads the message at the head of `source`'s ring into the set-aside queue.
    private func setAside(from source: Int, _ header: FrameHeader) throws {
        read[source] += FrameHeader.size
        var failure: (any Error)?
        let bytes = [UInt8](unsafeUninitializedCapacity: header.length) { buffer, initialized in
            do { try readPayload(from: source, into: UnsafeMutableRawBufferPointer(buffer)) } catch { failure = error }
            initialized = header.length
        }
        if let failure { throw failure }
        pending[source].append(PendingMessage(header: header, bytes: bytes))
    }

    /// Receives the first message from `source` matching `tag` and `context` into `buffer`,
    /// which holds exactly its length (as a probe just reported).
    func receive(from source: Int, tag: Int, context: Int, into buffer: UnsafeMutableRawBufferPointer) throws {
        if let index = pending[source].firstIndex(where: { $0.header.matches(tag: tag, context: context) }) {
            let message = pending[source].remove(at: index)
            message.bytes.withUnsafeBytes { buffer.copyMemory(from: $0) }
            return
        }
        guard source != me, let header = peek(source), header.matches(tag: tag, context: context),
              header.length == buffer.count else {
            throw CommunicatorError.invalidArgument(
                operation: "receive", reason: "no message from rank \(source) with tag \(tag) of \(buffer.count) bytes was probed", rank: me)
        }
        read[source] += FrameHeader.size
        try readPayload(from: source, into: buffer)
    }

    /// Copies the next `buffer.count` payload bytes out of `source`'s ring as they arrive,
    /// freeing space for the sender after every piece.
    private func readPayload(from source: Int, into buffer: UnsafeMutableRawBufferPointer) throws {
        let ring = receiveRings[source]!
        var copied = 0
        while true {
            let available = ring.head.load(ordering: .acquiring) - read[source]
            let n = min(available, buffer.count - copied)
            if n > 0 {
                ring.copyOut(buffer.baseAddress! + copied, count: n, at: read[source])
                copied += n
            }
            // Publishing the tail even for an empty payload frees the header's bytes.
            read[source] += n
            ring.tail.store(read[source], ordering: .sequentiallyConsistent)
            wakeIfSleeping(source)
            if copied == buffer.count { return }
            try waitUntil(receivingFrom: [source]) { ring.head.load(ordering: .acquiring) > self.read[source] }
        }
    }

    // MARK: Waiting

    /// Waits for `done` while receiving from `sources`; throws when a rank has failed, or when
    /// every source has finished and `done` still does not hold.
    func waitUntil(receivingFrom sources: [Int], _ done: () throws -> Bool) throws {
        try wait(done) {
            try self.checkFailure("receive")
            for source in sources where source != self.me
                && self.region.state(of: source).load(ordering: .acquiring) == RankState.failed.rawValue {
                if try done() { return }
                throw CommunicatorError.peerFailed(peer: source, reason: self.region.rankFailureDescription(source),
                                                   operation: "receive", rank: self.me)
            }
            var anyRunning = false
            for source in sources where source != self.me {
                if self.region.state(of: source).load(ordering: .acquiring) == RankState.running.rawValue {
                    anyRunning = true
                    break
                }
            }
            // Ranks that finished may have left messages in their rings: look once more.
            if !anyRunning, try !done() {
                let names = sources.count == 1 ? "rank \(sources[0]) has" : "every rank it could come from has"
                throw CommunicatorError.wouldWaitForever(
                    operation: "receive", reason: "\(names) finished without sending a matching message", rank: self.me)
            }
        }
    }

    /// Waits for `done` while a send to `destination` is stuck on a full ring.
    func waitUntil(sendingTo destination: Int, _ done: () throws -> Bool) throws {
        try wait({ () throws -> Bool in
            if try done() { return true }
            // Make room on our side so the receiver, which may be sending to us, can go on.
            try self.setAsideEverythingArrived()
            return try done()
        }) {
            try self.checkFailure("send")
            let state = self.region.state(of: destination).load(ordering: .acquiring)
            if state == RankState.failed.rawValue {
                throw CommunicatorError.peerFailed(peer: destination, reason: self.region.rankFailureDescription(destination),
                                                   operation: "send", rank: self.me)
            }
            if state != RankState.running.rawValue, try !done() {
                throw CommunicatorError.peerFailed(peer: destination, reason: "has finished and will not receive any more messages",
                                                   operation: "send", rank: self.me)
            }
        }
    }

    private func setAsideEverythingArrived() throws {
        for source in 0..<size where source != me {
            while let header = peek(source) { try setAside(from: source, header) }
        }
    }

    /// Spins, yields, then sleeps on the doorbell until `done` holds; `check` runs between tries.
    private func wait(_ done: () throws -> Bool, check: () throws -> Void) throws {
        var tries = 0
        while true {
            progressSends()
            if try done() { return }
            tries += 1
            if tries & 63 == 0 { try check() }
            if tries < spinLimit { continue }
            if tries < spinLimit + yieldLimit {
                sched_yield()
                continue
            }
            let flag = region.sleeping(me)
            flag.store(1, ordering: .sequentiallyConsistent)
            progressSends()
            if try done() {
                flag.store(0, ordering: .relaxed)
                return
            }
            var descriptor = pollfd(fd: doorbells[me], events: Int16(POLLIN), revents: 0)
            _ = poll(&descriptor, 1, 50)
            var count: UInt64 = 0
            _ = Glibc.read(doorbells[me], &count, 8)
            flag.store(0, ordering: .relaxed)
            try check()
        }
    }

    @inline(__always)
    private func wakeIfSleeping(_ rank: Int) {
        if region.sleeping(rank).load(ordering: .sequentiallyConsistent) != 0 { ring(rank) }
    }

    /// Rings `rank`'s doorbell.
    func ring(_ rank: Int) {
        var one: UInt64 = 1
        _ = Glibc.write(doorbells[rank], &one, 8)
    }

    /// Wakes every rank, so each notices a change of the job's state at once.
    func wakeEveryone() {
        for rank in 0..<size where rank != me { ring(rank) }
    }

    /// Throws if any rank of the job has failed.
    func checkFailure(_ operation: String) throws {
        guard let failure = region.failureDescription() else { return }
        throw CommunicatorError.peerFailed(peer: failure.rank, reason: failure.text, operation: operation, rank: me)
    }

    /// Pushes every queued send into the rings before this rank finishes.
    func flushSends() throws {
        for destination in 0..<size where !outgoing[destination].isEmpty {
            let last = outgoing[destination].last!
            try waitUntil(sendingTo: destination) { last.isComplete }
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
    let bytes: UnsafeRawBufferPointer
    /// Keeps the bytes of a nonblocking send alive; nil for a blocking send, whose caller does.
    let owner: OutgoingBytes?
    var headerWritten = false
    var offset = 0
    var isComplete: Bool { headerWritten && offset == bytes.count }

    init(header: FrameHeader, bytes: UnsafeRawBufferPointer, owner: OutgoingBytes?) {
        self.header = header
        self.bytes = bytes
        self.owner = owner
    }
}

final class LocalSendRequest: TransportRequest {
    let engine: LocalEngine
    let operation: OutgoingSend
    let destination: Int

    init(engine: LocalEngine, operation: OutgoingSend, destination: Int) {
        self.engine = engine
        self.operation = operation
        self.destination = destination
    }

    func wait() throws {
        try engine.waitUntil(sendingTo: destination) { operation.isComplete }
    }

    func test() throws -> Bool {
        engine.progressSends()
        try engine.checkFailure("test")
        return operation.isComplete
    }
}
