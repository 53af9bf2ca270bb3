import CSwiftParMPI
#if canImport(Glibc)
import Glibc
#endif

/// The MPI backend: one communicator of Open MPI, reached through the loaded library.
///
/// Point-to-point messages are bytes (`MPI_BYTE`); plain-number collectives use the native MPI
/// collective with the element's datatype. Every call is nonblocking and waited for in
/// `MPIJob.wait`, so a wait that can never end turns into an error. Open MPI 4.1 counts are
/// 32-bit, so any message of `messageLimit` bytes or more is sent as consecutive chunks of
/// exactly `messageLimit` bytes and a final shorter chunk (possibly empty): a message of exactly
/// that size therefore always means "more follows". The limit defaults to 1 GiB and can be
/// lowered with `SWIFTPAR_MPI_MESSAGE_LIMIT` (bytes) to test the chunked path with small messages.
///
/// A receive of a `Codable` value posts one `MPI_Irecv` into a buffer of `eagerBytes` kept by
/// the transport (the landing buffer) and decodes the value where it landed: no probe, no
/// allocation. Encoded values longer than that are announced (see `Announcement`) and then
/// received whole into their own buffer; probes and receives into a buffer take announcements
/// off the queue, so every other receive sees one message.
///
/// A receive posted for fewer bytes than the message that matches it is never given memory of
/// the user's: Open MPI 4.1's single-copy path (CMA) writes the whole message, past the end of
/// the receive. Only the landing buffer, which an inaccessible guard region follows, takes
/// receives of unknown size; there the overlong message ends in `MPI_ERR_TRUNCATE` with its
/// real size, and nothing else is touched. Receives into a user's buffer of more than
/// `smallReceiveBytes` probe for the size first.
final class MPITransport: Transport {
    let comm: MPI_Comm
    let rank: Int
    let size: Int
    let maximumTag: Int
    /// World ranks of the members, in this communicator's rank order.
    let members: [Int]
    let job: MPIJob
    let messageLimit: Int
    /// The longest encoded value sent point to point as a single message: 1 MiB, or less than
    /// the message limit when that is lower.
    let eagerBytes: Int
    /// The collective or pool call running on this communicator, for the words of its errors.
    @exclusivity(unchecked) var activity: String?
    private let ownsComm: Bool
    @exclusivity(unchecked) private var stash: [(info: MessageInfo, chunks: [[UInt8]])] = []
    @exclusivity(unchecked) private var channel: MPITransport?
    /// Where receives of unknown size land (mapped when first needed, with a guard region
    /// after it), and whether a decode is reading it now.
    @exclusivity(unchecked) private var landing: UnsafeMutableRawPointer?
    @exclusivity(unchecked) private var landingBusy = false
    /// Receives started (`Communicator.startReceive`) and not yet waited for, in the order they
    /// were started; an error met while taking a message for one, thrown by its wait; and the
    /// receives dropped unwaited on any thread, forgotten at this transport's next operation.
    @exclusivity(unchecked) private var startedReceives: [(token: Int, source: Int?, tag: Int?)] = []
    @exclusivity(unchecked) private var lastReceiveToken = 0
    @exclusivity(unchecked) private var startedReceiveFailures: [Int: any Error] = [:]
    private let droppedLock = InProcessLock()
    @exclusivity(unchecked) private var droppedReceives: [Int] = []
    /// Inside a message of several parts (chunks, an announcement and its value, a stash
    /// refill): no other receive may take messages off the queue meanwhile.
    @exclusivity(unchecked) private var partsInProgress = 0
    /// The largest user buffer received into by way of the landing buffer (and a copy).
    static let smallReceiveBytes = 4096
    static let guardBytes = 64 << 10

    /// A transport for `comm`. With `channel`, also duplicates `comm` for the collectives and
    /// the pool, now, while every rank is here (`MPI_Comm_dup` blocks until all ranks call it).
    init(comm: MPI_Comm, owns: Bool, members: [Int], job: MPIJob, messageLimit: Int, channel: Bool = true) throws {
        self.comm = comm
        self.ownsComm = owns
        self.members = members
        self.job = job
        self.messageLimit = messageLimit
        eagerBytes = min(1 << 20, messageLimit - 1)
        MPI_Comm_set_errhandler(comm, swiftpar_errors_return())
        var r: Int32 = 0
        var s: Int32 = 0
        MPI_Comm_rank(comm, &r)
        MPI_Comm_size(comm, &s)
        rank = Int(r)
        size = Int(s)
        var attribute: UnsafeMutableRawPointer?
        var found: Int32 = 0
        MPI_Comm_get_attr(comm, Int32(MPI_TAG_UB), &attribute, &found)
        maximumTag = found != 0 && attribute != nil ? Int(attribute!.load(as: Int32.self)) : 32767
        if channel {
            var dup: MPI_Comm? = nil
            let code = MPI_Comm_dup(comm, &dup)
            guard code == MPI_SUCCESS, let dup else {
                throw CommunicatorError.mpi(operation: "MPI_Comm_dup", code: code, message: mpiErrorString(code), rank: rank)
            }
            self.channel = try MPITransport(comm: dup, owns: true, members: members, job: job, messageLimit: messageLimit, channel: false)
        }
    }

    var collectiveChannel: any Transport { channel ?? self }

    /// The machine's cores: mpirun may bind each rank to fewer, so a rank's own CPU set does
    /// not tell what the job shares.
    var sharedMachineCores: Int? { job.allOnThisMachine ? SwiftPar.onlineCores : nil }

    var hasStallTimeout: Bool { job.stallTimeout != nil }

    func check(_ code: Int32, _ operation: @autoclosure () -> String) throws {
        guard code != MPI_SUCCESS else { return }
        throw CommunicatorError.mpi(operation: operation(), code: code, message: mpiErrorString(code), rank: rank)
    }

    private func context(_ operation: String, _ peers: MPIWaitContext.Peers) -> MPIWaitContext {
        MPIWaitContext(operation: operation, peers: peers, members: members, rank: rank, activity: activity)
    }

    /// Waits for `request` to complete.
    @inline(__always)
    func complete(_ request: inout MPI_Request?, _ operation: @autoclosure () -> String, _ peers: MPIWaitContext.Peers,
                  status: UnsafeMutablePointer<MPI_Status>? = nil) throws {
        try job.wait(context(operation(), peers)) {
            var flag: Int32 = 0
            try check(MPI_Test(&request, &flag, status ?? swiftpar_status_ignore()), "MPI_Test")
            return flag != 0
        }
    }

    // MARK: Point to point

    func send(_ bytes: UnsafeRawBufferPointer, to destination: Int, tag: Int) throws {
        guard bytes.count < messageLimit else { return try sendParts([bytes], to: destination, tag: tag) }
        var request: MPI_Request? = swiftpar_request_null()
        try check(MPI_Isend(bytes.baseAddress, Int32(bytes.count), swiftpar_type_byte(), Int32(destination), Int32(tag), comm, &request),
                  "MPI_Isend to rank \(destination)")
        try job.wait(context("send", .receiver(members[destination]))) {
            var flag: Int32 = 0
            try check(MPI_Test(&request, &flag, swiftpar_status_ignore()), "MPI_Test")
            if flag == 0, destination == rank { try takeOwnMessages() }
            return flag != 0
        }
    }

    /// Sends `parts` as consecutive messages (each in chunks when it is long): every chunk is
    /// started before any is waited for, so that a receiver taking the whole never waits for a
    /// chunk this rank has not sent yet (see "Receives started before they are waited for").
    private func sendParts(_ parts: [UnsafeRawBufferPointer], to destination: Int, tag: Int) throws {
        let limit = messageLimit
        let count = parts.reduce(0) { $0 + $1.count / limit + 1 }
        try withUnsafeTemporaryAllocation(of: MPI_Request?.self, capacity: count) { requests in
            var started = 0
            defer { requests.baseAddress!.deinitialize(count: started) }
            for part in parts {
                try forEachChunk(of: part.count) { chunk in
                    (requests.baseAddress! + started).initialize(to: swiftpar_request_null())
                    started += 1
                    try check(MPI_Isend(part.baseAddress.map { $0 + chunk.lowerBound }, Int32(chunk.count), swiftpar_type_byte(),
                                        Int32(destination), Int32(tag), comm, &requests[started - 1]), "MPI_Isend to rank \(destination)")
                }
            }
            try job.wait(context("send", .receiver(members[destination]))) {
                var flag: Int32 = 0
                try check(MPI_Testall(Int32(started), requests.baseAddress, &flag, swiftpar_statuses_ignore()), "MPI_Testall")
                if flag == 0, destination == rank { try takeOwnMessages() }
                return flag != 0
            }
        }
    }

    /// Calls `body` with each chunk a message of `byteCount` bytes travels as: the whole message
    /// if it is under the limit, else chunks of exactly the limit and a shorter last one.
    @inline(__always)
    func forEachChunk(of byteCount: Int, _ body: (Range<Int>) throws -> Void) rethrows {
        let limit = messageLimit
        if byteCount < limit { return try body(0..<byteCount) }
        var start = 0
        while byteCount - start >= limit {
            try body(start..<start + limit)
            start += limit
        }
        try body(start..<byteCount)
    }

    func startSend(_ message: OutgoingBytes, to destination: Int, tag: Int) throws -> any TransportRequest {
        let request = MPISendRequest(message: message, transport: self, destination: destination)
        try message.withBytes { bytes in
            try forEachChunk(of: bytes.count) { chunk in
                var handle: MPI_Request? = swiftpar_request_null()
                let pointer = bytes.baseAddress.map { $0 + chunk.lowerBound }
                try check(MPI_Isend(pointer, Int32(chunk.count), swiftpar_type_byte(), Int32(destination), Int32(tag), comm, &handle),
                          "MPI_Isend to rank \(destination)")
                request.handles.append(handle)
            }
        }
        return request
    }

    func sendEncoded(_ bytes: UnsafeRawBufferPointer, followedBy attachments: [UnsafeRawBufferPointer], to destination: Int, tag: Int) throws {
        guard bytes.count > eagerBytes || !attachments.isEmpty else { return try send(bytes, to: destination, tag: tag) }
        guard bytes.count > eagerBytes else { return try sendParts([bytes] + attachments, to: destination, tag: tag) }
        try Announcement.bytes(announcing: bytes, length: bytes.count).withUnsafeBytes { announcement in
            try sendParts([announcement, bytes] + attachments, to: destination, tag: tag)
        }
    }

    func startSendEncoded(_ message: OutgoingBytes, to destination: Int, tag: Int) throws -> [any TransportRequest] {
        guard message.byteCount > eagerBytes else { return [try startSend(message, to: destination, tag: tag)] }
        let announcement = message.withBytes { Announcement.bytes(announcing: $0, length: $0.count) }
        return [try startSend(OutgoingBytes(announcement), to: destination, tag: tag), try startSend(message, to: destination, tag: tag)]
    }

    func sendersFinished(source: Int?) throws -> Bool {
        try job.pollNotices()
        let me = members[rank]
        let senders = source.map { [members[$0]] } ?? members.filter { $0 != me }
        return !senders.isEmpty && senders.allSatisfy { $0 != me && job.finished[$0] }
    }

    func probe(source: Int?, tag: Int?, wait: Bool) throws -> MessageInfo? {
        if !wait { try job.serveStartedReceives() }
        if let index = stash.firstIndex(where: { Self.matches($0.info, source: source, tag: tag) }) {
            return stash[index].info
        }
        let found: MessageInfo?
        if wait && !startedReceives.isEmpty {
            // While this waits, started receives may move the message it waits for to the stash.
            var seen: MessageInfo?
            var stashed = false
            try job.wait(context("receive", source.map { .sender(members[$0]) } ?? .anySender)) {
                if let entry = stash.first(where: { Self.matches($0.info, source: source, tag: tag) }) {
                    (seen, stashed) = (entry.info, true)
                    return true
                }
                seen = try probeOneMessage(source: source, tag: tag, wait: false)
                return seen != nil
            }
            if stashed { return seen }
            found = seen
        } else {
            found = try probeOneMessage(source: source, tag: tag, wait: wait)
        }
        guard let info = found else { return nil }
        // A chunk of a large message, or 16 bytes that may announce a value (only its bytes
        // tell): received whole into the stash. An announced value follows its announcement at
        // once, so even a probe that does not wait waits for it.
        if info.byteCount >= messageLimit || info.byteCount == Announcement.size {
            return try stashFirst(from: info.source, tag: info.tag)
        }
        return info
    }

    // MARK: The stash
    //
    // A message received before its turn — to read what it is, or to join its chunks — waits
    // in the stash, and every earlier message from the same rank goes there before it, so that
    // none is overtaken: a later receive from that rank with any tag finds them in order.

    /// Takes the first pending message from `source` with `tag` off the queue, whole (an
    /// announcement with its value, chunks joined), after every earlier message from `source`;
    /// all go to the stash, in order. Returns the envelope of the one asked for.
    private func stashFirst(from source: Int, tag: Int) throws -> MessageInfo {
        partsInProgress += 1
        defer { partsInProgress -= 1 }
        while true {
            guard let next = try probeOneMessage(source: source, tag: nil, wait: true) else {
                throw CommunicatorError.wouldWaitForever(operation: "receive", reason: "no message can arrive", rank: rank)
            }
            let entry = try receiveWhole(next)
            stash.append(entry)
            if next.tag == tag { return entry.info }
        }
    }

    /// Takes this rank's messages to itself off the queue into the stash, oldest first. A send
    /// to this rank waits for a receive that only this thread could post, and this thread is
    /// in the send (Open MPI sends anything over its eager limit only once it is received): so
    /// while such a send waits, its message and any before it are received here, where later
    /// receives find them. A send to itself then never waits for good, as on the local backend.
    func takeOwnMessages() throws {
        guard partsInProgress == 0 else { return }
        while let info = try probeOneMessage(source: rank, tag: nil, wait: false) {
            _ = try stashFirst(from: rank, tag: info.tag)
        }
    }

    // MARK: Receives started before they are waited for
    //
    // `startReceive` posts nothing: the value's size and kind are known only once its message
    // is probed. But a sender may wait until its message is received (Open MPI sends anything
    // over its eager limit, 4 KiB in shared memory, only once the receiver asks for it), and a
    // program that starts a receive, sends, then waits — the usual exchange with a neighbour —
    // expects the started receive to take its message meanwhile, as a posted `MPI_Irecv` does.
    // So while this rank waits for anything, each started receive takes one value off the
    // queue into the stash (with the arrays it sent apart), where its own wait finds it.

    func beginReceive(source: Int?, tag: Int?) -> Int? {
        forgetDroppedReceives()
        lastReceiveToken += 1
        startedReceives.append((lastReceiveToken, source, tag))
        if startedReceives.count == 1 {
            job.setWorkWhileWaiting(for: ObjectIdentifier(self)) { [weak self] in
                guard let self else { return false }
                try self.takeMessagesForStartedReceives()
                return true
            }
        }
        return lastReceiveToken
    }

    func endReceive(_ token: Int) throws {
        forgetDroppedReceives()
        startedReceives.removeAll { $0.token == token }
        if startedReceives.isEmpty { job.setWorkWhileWaiting(for: ObjectIdentifier(self), nil) }
        if let failure = startedReceiveFailures.removeValue(forKey: token) { throw failure }
    }

    func checkReceive(_ token: Int) throws {
        guard startedReceiveFailures[token] != nil else { return }
        try endReceive(token)
    }

    func dropReceive(_ token: Int) {
        droppedLock.withLock { droppedReceives.append(token) }
    }

    private func forgetDroppedReceives() {
        let dropped = droppedLock.withLock { () -> [Int] in
            defer { droppedReceives.removeAll() }
            return droppedReceives
        }
        guard !dropped.isEmpty else { return }
        startedReceives.removeAll { dropped.contains($0.token) }
        for token in dropped { startedReceiveFailures[token] = nil }
        if startedReceives.isEmpty { job.setWorkWhileWaiting(for: ObjectIdentifier(self), nil) }
    }

    /// Gives each started receive a value: one already in the stash (in the order they were
    /// started, each value once, the arrays a value sent apart not counted as values), or else
    /// the next matching value that has arrived, taken off the queue into the stash whole, with
    /// its arrays. An error doing so is kept for that receive's wait, not thrown into the
    /// operation this rank is waiting in.
    private func takeMessagesForStartedReceives() throws {
        forgetDroppedReceives()
        guard partsInProgress == 0, !startedReceives.isEmpty else { return }
        struct Sender: Hashable { let source: Int, tag: Int }
        /// The number of arrays the value a stash entry starts sent apart after it.
        func arraysSentApart(_ entry: (info: MessageInfo, chunks: [[UInt8]])) -> Int {
            entry.chunks.first?.withUnsafeBytes { WireHeader.attachmentCount(in: $0) } ?? 0
        }
        var values: [(info: MessageInfo, given: Bool)] = []
        var arraysToSkip: [Sender: Int] = [:]
        for entry in stash {
            let sender = Sender(source: entry.info.source, tag: entry.info.tag)
            if let left = arraysToSkip[sender], left > 0 {
                arraysToSkip[sender] = left - 1
                continue
            }
            values.append((entry.info, false))
            let arrays = arraysSentApart(entry)
            if arrays > 0 { arraysToSkip[sender] = arrays }
        }
        for wanted in startedReceives where startedReceiveFailures[wanted.token] == nil {
            if let index = values.firstIndex(where: { !$0.given && Self.matches($0.info, source: wanted.source, tag: wanted.tag) }) {
                values[index].given = true
                continue
            }
            do {
                guard let info = try probeOneMessage(source: wanted.source, tag: wanted.tag, wait: false) else { continue }
                // stashFirst returns once the entry it appended last is the one asked for.
                _ = try stashFirst(from: info.source, tag: info.tag)
                for _ in 0..<arraysSentApart(stash[stash.count - 1]) { _ = try stashFirst(from: info.source, tag: info.tag) }
            } catch let error as CommunicatorError {
                // The watchdog's verdict ends the job, whichever wait it comes from.
                if case .stalled = error { throw error }
                startedReceiveFailures[wanted.token] = error
            } catch {
                startedReceiveFailures[wanted.token] = error
            }
        }
    }

    /// Receives the message whose first part `first` describes (the next one from its source
    /// with its tag): all its chunks, or for an announcement, the value announced.
    private func receiveWhole(_ first: MessageInfo) throws -> (info: MessageInfo, chunks: [[UInt8]]) {
        if first.byteCount >= messageLimit {
            return try receiveChunks(startingWith: first)
        }
        let bytes = try [UInt8].received(count: first.byteCount) {
            try receiveExactly($0.baseAddress, count: first.byteCount, from: first.source, tag: first.tag)
        }
        guard let length = bytes.withUnsafeBytes({ Announcement.length(in: $0) }) else { return (first, [bytes]) }
        guard let value = try probeOneMessage(source: first.source, tag: first.tag, wait: true) else {
            throw CommunicatorError.wouldWaitForever(operation: "receive", reason: "no message can arrive", rank: rank)
        }
        let whole = try receiveWhole(value)
        guard whole.info.byteCount == length else { throw announcedValueMissing(length, from: first.source, tag: first.tag) }
        return whole
    }

    /// Receives every chunk of a large message, the first described by `first`.
    private func receiveChunks(startingWith first: MessageInfo) throws -> (info: MessageInfo, chunks: [[UInt8]]) {
        partsInProgress += 1
        defer { partsInProgress -= 1 }
        var chunks: [[UInt8]] = []
        var total = 0
        var chunkSize = first.byteCount
        while true {
            let size = chunkSize
            chunks.append(try [UInt8].received(count: size) {
                try receiveExactly($0.baseAddress, count: size, from: first.source, tag: first.tag)
            })
            total += size
            if size < messageLimit { break }
            guard let next = try probeOneMessage(source: first.source, tag: first.tag, wait: true) else { break }
            chunkSize = next.byteCount
        }
        return (MessageInfo(source: first.source, tag: first.tag, byteCount: total), chunks)
    }

    private func announcedValueMissing(_ length: Int, from source: Int, tag: Int) -> CommunicatorError {
        .invalidArgument(operation: "receive", reason: "the value rank \(source) announced with tag \(tag) (\(length) bytes) did not follow", rank: rank)
    }

    /// Receives the value an announcement of `length` bytes from `source` with `tag` announced:
    /// the next message from there, straight into its buffer (the sender's own two sends are
    /// in order, so nothing else from it with this tag comes between).
    private func receiveAnnounced(_ length: Int, from source: Int, tag: Int) throws -> [UInt8] {
        partsInProgress += 1
        defer { partsInProgress -= 1 }
        guard length < messageLimit else {
            guard let first = try probeOneMessage(source: source, tag: tag, wait: true) else {
                throw announcedValueMissing(length, from: source, tag: tag)
            }
            let whole = try receiveChunks(startingWith: first)
            guard whole.info.byteCount == length else { throw announcedValueMissing(length, from: source, tag: tag) }
            return whole.chunks.count == 1 ? whole.chunks[0] : Array(whole.chunks.joined())
        }
        var status = MPI_Status()
        let value = try [UInt8].received(count: length) { buffer in
            var request: MPI_Request? = swiftpar_request_null()
            try check(MPI_Irecv(buffer.baseAddress, Int32(length), swiftpar_type_byte(), Int32(source), Int32(tag), comm, &request),
                      "MPI_Irecv from rank \(source)")
            // A receive of exactly the announced size is never shorter than a value sent as announced.
            if try completeReceive(&request, status: &status, source: source) { throw announcedValueMissing(length, from: source, tag: tag) }
        }
        guard try byteCount(of: &status) == length else { throw announcedValueMissing(length, from: source, tag: tag) }
        return value
    }

    // MARK: Receiving encoded values

    func receiveEncoded<R>(from source: Int?, tag: Int?, _ body: (UnsafeRawBufferPointer, MessageInfo) throws -> R) throws -> R {
        // Messages already taken off the queue, and decodes that receive while one is running,
        // take the general path.
        if landingBusy || !startedReceives.isEmpty || stash.contains(where: { Self.matches($0.info, source: source, tag: tag) }) {
            guard let info = try probe(source: source, tag: tag, wait: true) else {
                throw CommunicatorError.wouldWaitForever(operation: "receive", reason: "no message can arrive", rank: rank)
            }
            return try receiveArray(UInt8.self, matching: info).withUnsafeBytes { try body($0, info) }
        }
        let buffer = try landingBuffer()
        landingBusy = true
        defer { landingBusy = false }
        let (info, truncated) = try receiveIntoLanding(buffer, from: source, tag: tag)
        if truncated { throw MessageLongerThanReceive(source: info.source, tag: info.tag, byteCount: info.byteCount, limit: eagerBytes) }
        let bytes = UnsafeRawBufferPointer(start: buffer, count: info.byteCount)
        if let length = Announcement.length(in: bytes) {
            let value = try receiveAnnounced(length, from: info.source, tag: info.tag)
            return try value.withUnsafeBytes { try body($0, MessageInfo(source: info.source, tag: info.tag, byteCount: length)) }
        }
        return try body(bytes, info)
    }

    /// The landing buffer's size: `eagerBytes`, rounded up to whole pages.
    private var landingBytes: Int {
        let page = max(Int(sysconf(Int32(_SC_PAGESIZE))), 4096)
        return (eagerBytes + page - 1) / page * page
    }

    /// The landing buffer: `eagerBytes` of memory followed by a guard region no access can touch.
    private func landingBuffer() throws -> UnsafeMutableRawPointer {
        if let landing { return landing }
        let total = landingBytes + Self.guardBytes
        guard let mapped = mmap(nil, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
              mapped != MAP_FAILED else {
            throw SystemError.current("mmap of \(total) bytes for rank \(rank)'s receive buffer")
        }
        // The guard starts at the first page boundary after the buffer (a message that overruns
        // it writes into the rest of that page, which is ours, then stops).
        let guardRegion = mapped + landingBytes
        guard mprotect(guardRegion, Self.guardBytes, PROT_NONE) == 0 else {
            let failure = SystemError.current("mprotect of rank \(rank)'s receive buffer guard")
            munmap(mapped, total)
            throw failure
        }
        landing = mapped
        return mapped
    }

    /// Receives the next message matching `source` and `tag` into the landing buffer; reports
    /// its envelope and whether it was longer than the buffer. A longer one is off the queue,
    /// unread, with every chunk of it; the envelope gives its whole size.
    private func receiveIntoLanding(_ buffer: UnsafeMutableRawPointer, from source: Int?, tag: Int?) throws -> (MessageInfo, Bool) {
        var status = MPI_Status()
        var request: MPI_Request? = swiftpar_request_null()
        try check(MPI_Irecv(buffer, Int32(eagerBytes), swiftpar_type_byte(), Int32(source ?? Int(MPI_ANY_SOURCE)),
                            Int32(tag ?? Int(MPI_ANY_TAG)), comm, &request), "MPI_Irecv")
        let truncated = try completeReceive(&request, status: &status, source: source)
        var info = MessageInfo(source: Int(status.MPI_SOURCE), tag: Int(status.MPI_TAG), byteCount: try byteCount(of: &status))
        if truncated && info.byteCount >= messageLimit {
            partsInProgress += 1
            defer { partsInProgress -= 1 }
            // The first chunk of a large message: the rest go too.
            var total = info.byteCount
            var last = info.byteCount
            while last >= messageLimit, let next = try probeOneMessage(source: info.source, tag: info.tag, wait: true) {
                _ = try receiveArray(UInt8.self, matching: next)
                last = next.byteCount
                total += last
            }
            info = MessageInfo(source: info.source, tag: info.tag, byteCount: total)
        }
        return (info, truncated)
    }

    /// Waits for the receive `request` from `source` (nil: any) and reports whether the message
    /// was longer than the buffer (`MPI_ERR_TRUNCATE`). If the wait fails, the receive is
    /// cancelled first, so that it never writes into the buffer after this returns.
    private func completeReceive(_ request: inout MPI_Request?, status: inout MPI_Status, source: Int?) throws -> Bool {
        var truncated = false
        do {
            try job.wait(context("receive", source.map { .sender(members[$0]) } ?? .anySender)) {
                var flag: Int32 = 0
                let code = MPI_Test(&request, &flag, &status)
                if code == MPI_ERR_TRUNCATE || (flag != 0 && status.MPI_ERROR == MPI_ERR_TRUNCATE) {
                    truncated = true
                    return true
                }
                try check(code, "MPI_Test")
                return flag != 0
            }
        } catch {
            cancel(&request)
            throw error
        }
        return truncated
    }

    /// Cancels a receive that will not be waited for, and lets it complete. A receive already
    /// matched finishes its transfer first; one that cannot be cancelled in 10 s would write
    /// into memory that is gone, so the job ends instead.
    private func cancel(_ request: inout MPI_Request?) {
        guard request != swiftpar_request_null() else { return }
        _ = MPI_Cancel(&request)
        let deadline = monotonicNow() + 10
        var flag: Int32 = 0
        while flag == 0 {
            if MPI_Test(&request, &flag, swiftpar_status_ignore()) != MPI_SUCCESS { return }
            if monotonicNow() > deadline {
                writeStandardError("swiftpar: rank \(rank): a receive could not be cancelled after its wait failed; ending the job\n")
                MPI_Abort(swiftpar_comm_world(), SwiftPar.jobFailureStatus)
            }
        }
    }

    func probe(anyOf sources: [Int], tag: Int?, wait: Bool) throws -> MessageInfo? {
        if sources.count == 1 { return try probe(source: sources[0], tag: tag, wait: wait) }
        var found: MessageInfo?
        func arrived() throws -> Bool {
            for source in sources {
                if let info = try probe(source: source, tag: tag, wait: false) {
                    found = info
                    return true
                }
            }
            return false
        }
        if wait {
            try job.wait(context("receive", .anySenderOf(sources.map { members[$0] })), idle: true, arrived)
        } else {
            _ = try arrived()
        }
        return found
    }

    /// The envelope of the next matching MPI message (one chunk of a large one).
    private func probeOneMessage(source: Int?, tag: Int?, wait: Bool) throws -> MessageInfo? {
        var status = MPI_Status()
        let mpiSource = Int32(source ?? Int(MPI_ANY_SOURCE))
        let mpiTag = Int32(tag ?? Int(MPI_ANY_TAG))
        func arrived() throws -> Bool {
            var flag: Int32 = 0
            try check(MPI_Iprobe(mpiSource, mpiTag, comm, &flag, &status), "MPI_Iprobe")
            return flag != 0
        }
        if wait {
            try job.wait(context("receive", source.map { .sender(members[$0]) } ?? .anySender), idle: true, arrived)
        } else if try !arrived(), try !arrived() {
            // Open MPI's MPI_Iprobe looks for a match before it progresses the transports, so a
            // message that has arrived in shared memory is only seen by the next call. Without
            // the second look, a pool's rank 0 would miss results until after its own next chunk.
            return nil
        }
        return MessageInfo(source: Int(status.MPI_SOURCE), tag: Int(status.MPI_TAG), byteCount: try byteCount(of: &status))
    }

    private static func matches(_ info: MessageInfo, source: Int?, tag: Int?) -> Bool {
        (source == nil || source == info.source) && (tag == nil || tag == info.tag)
    }

    private func byteCount(of status: inout MPI_Status) throws -> Int {
        var count: Int32 = 0
        try check(MPI_Get_count(&status, swiftpar_type_byte(), &count), "MPI_Get_count")
        return Int(count)
    }

    /// Receives exactly `count` bytes of the next message from `source` with `tag` into `buffer`
    /// (a probe just reported that size, so the receive is never shorter than its message).
    private func receiveExactly(_ buffer: UnsafeMutableRawPointer?, count: Int, from source: Int, tag: Int) throws {
        var request: MPI_Request? = swiftpar_request_null()
        var status = MPI_Status()
        try check(MPI_Irecv(buffer, Int32(count), swiftpar_type_byte(), Int32(source), Int32(tag), comm, &request),
                  "MPI_Irecv from rank \(source)")
        if try completeReceive(&request, status: &status, source: source) {
            throw CommunicatorError.invalidArgument(operation: "receive", reason: "the message from rank \(source) with tag \(tag) is longer than the \(count) bytes probed", rank: rank)
        }
    }

    /// Receives the next matching message into `buffer` in one step when `buffer` is small
    /// (`smallReceiveBytes`): by way of the landing buffer, then a copy. Returns nil for larger
    /// buffers (the caller probes for the size, so no receive is ever shorter than its message),
    /// and when the message met is an announcement: the value it announces goes to the stash,
    /// where the caller's probe finds it. Otherwise returns the envelope with the message's
    /// real size (possibly more than `buffer` holds: the message is off the queue all the
    /// same), how many of its bytes are in `buffer`, and how many messages follow it (arrays
    /// sent apart after an encoded value), counted from its header.
    func receiveDirectly(from source: Int?, tag: Int?, into buffer: UnsafeMutableRawBufferPointer) throws -> DirectReceipt? {
        guard buffer.count <= Self.smallReceiveBytes, !landingBusy, startedReceives.isEmpty,
              !stash.contains(where: { Self.matches($0.info, source: source, tag: tag) }) else { return nil }
        let landed = try landingBuffer()
        let (info, truncated) = try receiveIntoLanding(landed, from: source, tag: tag)
        let bytes = UnsafeRawBufferPointer(start: landed, count: truncated ? 0 : info.byteCount)
        if Announcement.length(in: bytes) != nil {
            _ = try stashFirst(from: info.source, tag: info.tag)
            return nil
        }
        let fitting = min(bytes.count, buffer.count)
        if fitting > 0 { buffer.baseAddress!.copyMemoryAtFullSpeed(from: landed, byteCount: fitting) }
        return DirectReceipt(info: info, written: fitting, following: WireHeader.followingCount(in: bytes))
    }

    func receive(_ info: MessageInfo, into buffer: UnsafeMutableRawBufferPointer) throws {
        if let index = stash.firstIndex(where: { Self.matches($0.info, source: info.source, tag: info.tag) }) {
            var offset = 0
            for chunk in stash.remove(at: index).chunks {
                chunk.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: buffer[offset...]).copyMemoryAtFullSpeed(from: $0) }
                offset += chunk.count
            }
            return
        }
        try receiveExactly(buffer.baseAddress, count: info.byteCount, from: info.source, tag: info.tag)
    }

    // MARK: Collectives

    /// Largest element count of `T` that fits one MPI call.
    private func elementLimit<T>(_ type: T.Type) -> Int { max(messageLimit / MemoryLayout<T>.stride, 1) }

    /// Starts a native collective with `start` and waits for it as an operation of every member.
    private func collective(_ name: String, _ start: (inout MPI_Request?) -> Int32) throws {
        var request: MPI_Request? = swiftpar_request_null()
        try check(start(&request), name)
        try complete(&request, activity ?? name, .everyone)
    }

    func allgatherFixed<T: PlainNumber>(_ values: [T], operation: String) throws -> [T] {
        guard values.count * size <= elementLimit(T.self) else {
            return try genericAllgather(values, counts: Array(repeating: values.count, count: size))
        }
        let datatype = mpiDatatype(T.self)
        return try collect(T.self, values.count * size) { receive in
            try values.withUnsafeBytes { send in
                try collective(operation) {
                    MPI_Iallgather(send.baseAddress, Int32(values.count), datatype, receive, Int32(values.count), datatype, comm, &$0)
                }
            }
        }
    }

    func broadcast<T: PlainNumber>(_ values: [T]?, count: Int, root: Int) throws -> [T] {
        let datatype = mpiDatatype(T.self)
        let step = elementLimit(T.self)
        func broadcastChunks(_ buffer: UnsafeMutableRawPointer?) throws {
            var start = 0
            while start < count {
                let n = min(step, count - start)
                try collective("broadcast") {
                    MPI_Ibcast(buffer.map { $0 + start * MemoryLayout<T>.stride }, Int32(n), datatype, Int32(root), comm, &$0)
                }
                start += n
            }
        }
        if rank == root, var data = values {
            try data.withUnsafeMutableBytes { try broadcastChunks($0.baseAddress) }
            return data
        }
        return try collect(T.self, count) { try broadcastChunks($0) }
    }

    private static func displacements(_ counts: [Int]) -> [Int32] {
        var result: [Int32] = []
        var running = 0
        for c in counts {
            result.append(Int32(running))
            running += c
        }
        return result
    }

    func gather<T: PlainNumber>(_ values: [T], counts: [Int], root: Int) throws -> [T]? {
        guard counts.reduce(0, +) <= elementLimit(T.self) else { return try genericGather(values, counts: counts, root: root) }
        let datatype = mpiDatatype(T.self)
        let counts32 = counts.map { Int32($0) }
        let displs = Self.displacements(counts)
        if rank != root {
            try values.withUnsafeBytes { send in
                try collective("gather") {
                    MPI_Igatherv(send.baseAddress, Int32(values.count), datatype, nil, nil, nil, datatype, Int32(root), comm, &$0)
                }
            }
            return nil
        }
        return try collect(T.self, counts.reduce(0, +)) { receive in
            try values.withUnsafeBytes { send in
                try collective("gather") {
                    MPI_Igatherv(send.baseAddress, Int32(values.count), datatype, receive, counts32, displs, datatype, Int32(root), comm, &$0)
                }
            }
        }
    }

    func allgather<T: PlainNumber>(_ values: [T], counts: [Int]) throws -> [T] {
        guard counts.reduce(0, +) <= elementLimit(T.self) else { return try genericAllgather(values, counts: counts) }
        let datatype = mpiDatatype(T.self)
        let counts32 = counts.map { Int32($0) }
        let displs = Self.displacements(counts)
        return try collect(T.self, counts.reduce(0, +)) { receive in
            try values.withUnsafeBytes { send in
                try collective("allgather") {
                    MPI_Iallgatherv(send.baseAddress, Int32(values.count), datatype, receive, counts32, displs, datatype, comm, &$0)
                }
            }
        }
    }

    func scatter<T: PlainNumber>(_ flat: [T]?, counts: [Int]?, myCount: Int, total: Int, root: Int) throws -> [T] {
        guard total <= elementLimit(T.self) else { return try genericScatter(flat, counts: counts, myCount: myCount, root: root) }
        let datatype = mpiDatatype(T.self)
        let counts32 = (counts ?? []).map { Int32($0) }
        let displs = Self.displacements(counts ?? [])
        let source = flat ?? []
        return try collect(T.self, myCount) { receive in
            try source.withUnsafeBytes { send in
                try collective("scatter") {
                    MPI_Iscatterv(send.baseAddress, counts32, displs, datatype, receive, Int32(myCount), datatype, Int32(root), comm, &$0)
                }
            }
        }
    }

    func allToAll<T: PlainNumber>(_ flat: [T], sendCounts: [Int], receiveCounts: [Int], total: Int) throws -> [T] {
        guard total <= elementLimit(T.self) else {
            return try genericAllToAll(flat, sendCounts: sendCounts, receiveCounts: receiveCounts)
        }
        let datatype = mpiDatatype(T.self)
        let outCounts32 = sendCounts.map { Int32($0) }
        let outDispls = Self.displacements(sendCounts)
        let inCounts32 = receiveCounts.map { Int32($0) }
        let inDispls = Self.displacements(receiveCounts)
        return try collect(T.self, receiveCounts.reduce(0, +)) { receive in
            try flat.withUnsafeBytes { send in
                try collective("allToAll") {
                    MPI_Ialltoallv(send.baseAddress, outCounts32, outDispls, datatype, receive, inCounts32, inDispls, datatype, comm, &$0)
                }
            }
        }
    }

    func reduce<T: PlainNumber>(_ values: [T], operation: ReductionOperation, root: Int) throws -> [T]? {
        let result = try reduceChunks(values, operation: operation) { send, receive, n, datatype, op, request in
            MPI_Ireduce(send, receive, n, datatype, op, Int32(root), comm, request)
        }
        return rank == root ? result : nil
    }

    func allreduce<T: PlainNumber>(_ values: [T], operation: ReductionOperation) throws -> [T] {
        try reduceChunks(values, operation: operation) { send, receive, n, datatype, op, request in
            MPI_Iallreduce(send, receive, n, datatype, op, comm, request)
        }
    }

    private func reduceChunks<T: PlainNumber>(
        _ values: [T], operation: ReductionOperation,
        _ start: (UnsafeRawPointer?, UnsafeMutableRawPointer?, Int32, MPI_Datatype?, MPI_Op?, UnsafeMutablePointer<MPI_Request?>) -> Int32
    ) throws -> [T] {
        let datatype = mpiDatatype(T.self)
        let op = mpiOperation(operation)
        let step = elementLimit(T.self)
        return try collect(T.self, values.count) { receive in
            try values.withUnsafeBytes { send in
                var offsetElements = 0
                repeat {
                    let n = min(step, values.count - offsetElements)
                    let offset = offsetElements * MemoryLayout<T>.stride
                    try collective("reduction (\(operation.rawValue))") {
                        start(send.baseAddress.map { $0 + offset }, receive.map { $0 + offset }, Int32(n), datatype, op, &$0)
                    }
                    offsetElements += n
                } while offsetElements < values.count
            }
        }
    }

    /// Allocates an array of `count` elements and lets `fill` write it through a raw pointer.
    private func collect<T>(_ type: T.Type, _ count: Int, _ fill: (UnsafeMutableRawPointer?) throws -> Void) throws -> [T] {
        var failure: (any Error)?
        let result = [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            do { try fill(UnsafeMutableRawPointer(buffer.baseAddress)) } catch { failure = error }
            initialized = count
        }
        if let failure { throw failure }
        return result
    }

    func noteProgress() {
        job.noteProgress()
    }

    func answerWhileComputing() {
        if job.stallTimeout != nil { job.answerWhileComputing() }
    }

    func split(color: Int?, key: Int) throws -> (any Transport)? {
        // MPI_Comm_split is blocking: agree first, so a rank that never calls split is reported.
        let choices = try allgatherFixed([Int64(color ?? -1), Int64(key)], operation: "split")
        var created: MPI_Comm? = nil
        try check(MPI_Comm_split(comm, Int32(color ?? Int(MPI_UNDEFINED)), Int32(key), &created), "MPI_Comm_split")
        guard let newComm = created, newComm != swiftpar_comm_null(), let color else { return nil }
        let chosen = (0..<size).filter { choices[2 * $0] == Int64(color) }
            .sorted { (choices[2 * $0 + 1], $0) < (choices[2 * $1 + 1], $1) }
        return try MPITransport(comm: newComm, owns: true, members: chosen.map { members[$0] }, job: job, messageLimit: messageLimit)
    }

    deinit {
        if let landing { munmap(landing, landingBytes + Self.guardBytes) }
        guard ownsComm, MPIEnvironment.isActive else { return }
        var handle: MPI_Comm? = comm
        MPI_Comm_free(&handle)
    }
}

/// A nonblocking send in flight: the MPI requests of its chunks, and the bytes they read.
final class MPISendRequest: TransportRequest {
    let message: OutgoingBytes
    unowned let transport: MPITransport
    let destination: Int
    @exclusivity(unchecked) var handles: [MPI_Request?] = []

    init(message: OutgoingBytes, transport: MPITransport, destination: Int) {
        self.message = message
        self.transport = transport
        self.destination = destination
    }

    func wait() throws {
        guard !handles.isEmpty else { return }
        try transport.job.wait(MPIWaitContext(operation: "send", peers: .receiver(transport.members[destination]),
                                              members: transport.members, rank: transport.rank, activity: transport.activity)) {
            try test()
        }
    }

    func test() throws -> Bool {
        guard !handles.isEmpty else { return true }
        try transport.job.serveStartedReceives()
        var flag: Int32 = 0
        try transport.check(MPI_Testall(Int32(handles.count), &handles, &flag, swiftpar_statuses_ignore()), "MPI_Testall")
        if flag == 0, destination == transport.rank { try transport.takeOwnMessages() }
        if flag != 0 { handles = [] }
        return flag != 0
    }

    deinit {
        // A request dropped before it completed must not free the bytes MPI still reads. Waiting
        // for it here blocked the rank where the program went on (a barrier before the receive:
        // a hang the local backend does not have); it goes on in the background instead, as
        // after MPI_Request_free, and the rank finishes it before it finishes itself.
        guard !handles.isEmpty, MPIEnvironment.isActive else { return }
        let kept = MPISendRequest(message: message, transport: transport, destination: destination)
        kept.handles = handles
        handles = []
        transport.job.keepDroppedSend(kept, transport: transport)
    }
}

func mpiDatatype<T: PlainNumber>(_ type: T.Type) -> MPI_Datatype? {
    switch T.plainNumberKind {
    case .int8: return swiftpar_type_int8()
    case .int16: return swiftpar_type_int16()
    case .int32: return swiftpar_type_int32()
    case .int64: return swiftpar_type_int64()
    case .uint8: return swiftpar_type_uint8()
    case .uint16: return swiftpar_type_uint16()
    case .uint32: return swiftpar_type_uint32()
    case .uint64: return swiftpar_type_uint64()
    case .float32: return swiftpar_type_float()
    case .float64: return swiftpar_type_double()
    }
}

func mpiOperation(_ operation: ReductionOperation) -> MPI_Op? {
    switch operation {
    case .sum: return swiftpar_op_sum()
    case .product: return swiftpar_op_prod()
    case .minimum: return swiftpar_op_min()
    case .maximum: return swiftpar_op_max()
    }
}
