import CSwiftParMPI

/// The MPI backend: one communicator of Open MPI, reached through the loaded library.
///
/// Point-to-point messages are bytes (`MPI_BYTE`); plain-number collectives use the native MPI
/// collective with the element's datatype. Every call is nonblocking and waited for in
/// `MPIJob.wait`, so a wait that can never end turns into an error. Open MPI 4.1 counts are
/// 32-bit, so any message of `messageLimit` bytes or more is sent as consecutive chunks of
/// exactly `messageLimit` bytes and a final shorter chunk (possibly empty): a message of exactly
/// that size therefore always means "more follows". The limit defaults to 1 GiB and can be
/// lowered with `SWIFTPAR_MPI_MESSAGE_LIMIT` (bytes) to test the chunked path with small messages.
final class MPITransport: Transport {
    let comm: MPI_Comm
    let rank: Int
    let size: Int
    let maximumTag: Int
    /// World ranks of the members, in this communicator's rank order.
    let members: [Int]
    let job: MPIJob
    let messageLimit: Int
    /// The collective or pool call running on this communicator, for the words of its errors.
    @exclusivity(unchecked) var activity: String?
    private let ownsComm: Bool
    @exclusivity(unchecked) private var stash: [(info: MessageInfo, chunks: [[UInt8]])] = []
    @exclusivity(unchecked) private var channel: MPITransport?

    /// A transport for `comm`. With `channel`, also duplicates `comm` for the collectives and
    /// the pool, now, while every rank is here (`MPI_Comm_dup` blocks until all ranks call it).
    init(comm: MPI_Comm, owns: Bool, members: [Int], job: MPIJob, messageLimit: Int, channel: Bool = true) throws {
        self.comm = comm
        self.ownsComm = owns
        self.members = members
        self.job = job
        self.messageLimit = messageLimit
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
        try forEachChunk(of: bytes.count) { chunk in
            var request: MPI_Request? = swiftpar_request_null()
            let pointer = bytes.baseAddress.map { $0 + chunk.lowerBound }
            try check(MPI_Isend(pointer, Int32(chunk.count), swiftpar_type_byte(), Int32(destination), Int32(tag), comm, &request),
                      "MPI_Isend to rank \(destination)")
            try complete(&request, "send", .receiver(members[destination]))
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

    func probe(source: Int?, tag: Int?, wait: Bool) throws -> MessageInfo? {
        if let index = stash.firstIndex(where: { Self.matches($0.info, source: source, tag: tag) }) {
            return stash[index].info
        }
        guard let info = try probeOneMessage(source: source, tag: tag, wait: wait) else { return nil }
        if info.byteCount < messageLimit { return info }
        return try collectChunks(startingWith: info)
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
            try job.wait(context("receive", .anySenderOf(sources.map { members[$0] })), arrived)
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
            try job.wait(context("receive", source.map { .sender(members[$0]) } ?? .anySender), arrived)
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

    /// Receives exactly `count` bytes of the next message from `source` with `tag` into `buffer`.
    private func receiveExactly(_ buffer: UnsafeMutableRawPointer?, count: Int, from source: Int, tag: Int) throws {
        var request: MPI_Request? = swiftpar_request_null()
        try check(MPI_Irecv(buffer, Int32(count), swiftpar_type_byte(), Int32(source), Int32(tag), comm, &request),
                  "MPI_Irecv from rank \(source)")
        try complete(&request, "receive", .sender(members[source]))
    }

    /// Receives every chunk of a large message into the stash and describes the whole of it.
    private func collectChunks(startingWith first: MessageInfo) throws -> MessageInfo {
        var chunks: [[UInt8]] = []
        var total = 0
        var chunkSize = first.byteCount
        while true {
            var failure: (any Error)?
            let size = chunkSize
            chunks.append([UInt8](unsafeUninitializedCapacity: size) { buffer, initialized in
                do {
                    try receiveExactly(buffer.baseAddress, count: size, from: first.source, tag: first.tag)
                } catch { failure = error }
                initialized = size
            })
            if let failure { throw failure }
            total += size
            if size < messageLimit { break }
            guard let next = try probeOneMessage(source: first.source, tag: first.tag, wait: true) else { break }
            chunkSize = next.byteCount
        }
        let info = MessageInfo(source: first.source, tag: first.tag, byteCount: total)
        stash.append((info, chunks))
        return info
    }

    /// Receives the next matching message straight into `buffer` when it fits one call.
    func receiveDirectly(from source: Int?, tag: Int?, into buffer: UnsafeMutableRawBufferPointer) throws -> MessageInfo? {
        guard buffer.count < messageLimit,
              !stash.contains(where: { Self.matches($0.info, source: source, tag: tag) }) else { return nil }
        var status = MPI_Status()
        var request: MPI_Request? = swiftpar_request_null()
        try check(MPI_Irecv(buffer.baseAddress, Int32(buffer.count), swiftpar_type_byte(),
                            Int32(source ?? Int(MPI_ANY_SOURCE)), Int32(tag ?? Int(MPI_ANY_TAG)), comm, &request), "MPI_Irecv")
        try job.wait(context("receive", source.map { .sender(members[$0]) } ?? .anySender)) {
            var flag: Int32 = 0
            let code = MPI_Test(&request, &flag, &status)
            if code == MPI_ERR_TRUNCATE || (flag != 0 && status.MPI_ERROR == MPI_ERR_TRUNCATE) {
                throw CommunicatorError.invalidArgument(
                    operation: "receive(into:)",
                    reason: "the message from rank \(status.MPI_SOURCE) with tag \(status.MPI_TAG) is larger than the \(buffer.count)-byte buffer (MPI_ERR_TRUNCATE); receive messages of unknown size with receive(_:from:tag:)",
                    rank: rank)
            }
            try check(code, "MPI_Test")
            return flag != 0
        }
        return MessageInfo(source: Int(status.MPI_SOURCE), tag: Int(status.MPI_TAG), byteCount: try byteCount(of: &status))
    }

    func receive(_ info: MessageInfo, into buffer: UnsafeMutableRawBufferPointer) throws {
        if let index = stash.firstIndex(where: { Self.matches($0.info, source: info.source, tag: info.tag) }) {
            var offset = 0
            for chunk in stash.remove(at: index).chunks {
                chunk.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: buffer[offset...]).copyMemory(from: $0) }
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
        var flag: Int32 = 0
        try transport.check(MPI_Testall(Int32(handles.count), &handles, &flag, swiftpar_statuses_ignore()), "MPI_Testall")
        if flag != 0 { handles = [] }
        return flag != 0
    }

    deinit {
        // A request dropped before it completed must not free the bytes MPI still reads: finish
        // it, and if that fails (the receiver is gone), keep the bytes for the life of the process.
        guard !handles.isEmpty, MPIEnvironment.isActive else { return }
        do {
            try wait()
        } catch {
            abandonedSendBuffers.append(message)
        }
    }
}

/// Bytes of sends that could not complete, never freed: MPI may still read them.
nonisolated(unsafe) var abandonedSendBuffers: [OutgoingBytes] = []

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
