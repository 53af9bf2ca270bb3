import CMPI

/// The MPI backend: one communicator of Open MPI, reached through the C shim.
///
/// Point-to-point messages are bytes (`MPI_BYTE`); plain-number collectives use the native MPI
/// collective with the element's datatype. Open MPI 4.1 counts are 32-bit, so any message of
/// `messageLimit` bytes or more is sent as consecutive chunks of exactly `messageLimit` bytes and
/// a final shorter chunk (possibly empty): a message of exactly that size therefore always
/// means "more follows". The limit defaults to 1 GiB and can be lowered with
/// `SWIFTPAR_MPI_MESSAGE_LIMIT` (bytes) to test the chunked path with small messages.
final class MPITransport: Transport {
    let comm: MPI_Comm
    let rank: Int
    let size: Int
    let maximumTag: Int
    private let ownsComm: Bool
    private var stash: [(info: MessageInfo, chunks: [[UInt8]])] = []
    private lazy var channel: MPITransport = {
        var dup: MPI_Comm? = nil
        // A failed dup leaves the collectives on this communicator; MPI errors surface there.
        guard MPI_Comm_dup(comm, &dup) == MPI_SUCCESS, let dup else { return self }
        return MPITransport(comm: dup, owns: true)
    }()

    static let messageLimit: Int = {
        let fallback = 1 << 30
        guard let text = getenvString("SWIFTPAR_MPI_MESSAGE_LIMIT"), let value = Int(text), value >= 16 else { return fallback }
        return min(value, Int(Int32.max))
    }()

    init(comm: MPI_Comm, owns: Bool) {
        self.comm = comm
        self.ownsComm = owns
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
        let upperBound = found != 0 ? Int(attribute!.load(as: Int32.self)) : 32767
        maximumTag = upperBound
    }

    var collectiveChannel: any Transport { channel }

    func check(_ code: Int32, _ operation: @autoclosure () -> String) throws {
        guard code != MPI_SUCCESS else { return }
        throw CommunicatorError.mpi(operation: operation(), code: code, message: mpiErrorString(code), rank: rank)
    }

    // MARK: Point to point

    func send(_ bytes: UnsafeRawBufferPointer, to destination: Int, tag: Int) throws {
        try Self.forEachChunk(of: bytes.count) { chunk in
            let pointer = bytes.baseAddress.map { $0 + chunk.lowerBound }
            try check(MPI_Send(pointer, Int32(chunk.count), swiftpar_type_byte(), Int32(destination), Int32(tag), comm),
                      "MPI_Send to rank \(destination)")
        }
    }

    /// Calls `body` with each chunk a message of `byteCount` bytes travels as: the whole message
    /// if it is under the limit, else chunks of exactly the limit and a shorter last one.
    @inline(__always)
    static func forEachChunk(of byteCount: Int, _ body: (Range<Int>) throws -> Void) rethrows {
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
        let request = MPISendRequest(message: message, transport: self)
        try message.withBytes { bytes in
            try Self.forEachChunk(of: bytes.count) { chunk in
                var handle = swiftpar_request_null()
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
        var status = MPI_Status()
        let mpiSource = Int32(source ?? Int(swiftpar_any_source()))
        let mpiTag = Int32(tag ?? Int(swiftpar_any_tag()))
        if wait {
            try check(MPI_Probe(mpiSource, mpiTag, comm, &status), "MPI_Probe")
        } else {
            var flag: Int32 = 0
            try check(MPI_Iprobe(mpiSource, mpiTag, comm, &flag, &status), "MPI_Iprobe")
            if flag == 0 { return nil }
        }
        let count = try byteCount(of: &status)
        let info = MessageInfo(source: Int(status.MPI_SOURCE), tag: Int(status.MPI_TAG), byteCount: count)
        if count < Self.messageLimit { return info }
        return try collectChunks(startingWith: info)
    }

    private static func matches(_ info: MessageInfo, source: Int?, tag: Int?) -> Bool {
        (source == nil || source == info.source) && (tag == nil || tag == info.tag)
    }

    private func byteCount(of status: inout MPI_Status) throws -> Int {
        var count: Int32 = 0
        try check(MPI_Get_count(&status, swiftpar_type_byte(), &count), "MPI_Get_count")
        return Int(count)
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
                    try check(MPI_Recv(buffer.baseAddress, Int32(size), swiftpar_type_byte(), Int32(first.source),
                                       Int32(first.tag), comm, swiftpar_status_ignore()), "MPI_Recv from rank \(first.source)")
                } catch { failure = error }
                initialized = size
            })
            if let failure { throw failure }
            total += size
            if size < Self.messageLimit { break }
            var status = MPI_Status()
            try check(MPI_Probe(Int32(first.source), Int32(first.tag), comm, &status), "MPI_Probe")
            chunkSize = try byteCount(of: &status)
        }
        let info = MessageInfo(source: first.source, tag: first.tag, byteCount: total)
        stash.append((info, chunks))
        return info
    }

    /// Receives the next matching message straight into `buffer` with one `MPI_Recv`, when it
    /// fits; nil when the buffer is too large for one call (the caller probes instead).
    func receiveDirectly(from source: Int?, tag: Int?, into buffer: UnsafeMutableRawBufferPointer) throws -> MessageInfo? {
        guard buffer.count < Self.messageLimit,
              !stash.contains(where: { Self.matches($0.info, source: source, tag: tag) }) else { return nil }
        var status = MPI_Status()
        let code = MPI_Recv(buffer.baseAddress, Int32(buffer.count), swiftpar_type_byte(),
                            Int32(source ?? Int(swiftpar_any_source())), Int32(tag ?? Int(swiftpar_any_tag())), comm, &status)
        if code == MPI_ERR_TRUNCATE {
            throw CommunicatorError.invalidArgument(
                operation: "receive(into:)",
                reason: "the message from rank \(status.MPI_SOURCE) with tag \(status.MPI_TAG) is larger than the \(buffer.count)-byte buffer (MPI_ERR_TRUNCATE); receive messages of unknown size with receive(_:from:tag:)",
                rank: rank)
        }
        try check(code, "MPI_Recv")
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
        try check(MPI_Recv(buffer.baseAddress, Int32(info.byteCount), swiftpar_type_byte(), Int32(info.source),
                           Int32(info.tag), comm, swiftpar_status_ignore()), "MPI_Recv from rank \(info.source)")
    }

    // MARK: Collectives

    func barrier() throws {
        try check(MPI_Barrier(comm), "MPI_Barrier")
    }

    /// Largest element count of `T` that fits one MPI call.
    private func elementLimit<T>(_ type: T.Type) -> Int { Self.messageLimit / MemoryLayout<T>.stride }

    func broadcast<T: PlainNumber>(_ values: [T]?, root: Int) throws -> [T] {
        var count = Int64(values?.count ?? 0)
        try check(MPI_Bcast(&count, 1, swiftpar_type_int64(), Int32(root), comm), "MPI_Bcast")
        let datatype = mpiDatatype(T.self)
        let step = elementLimit(T.self)
        func broadcastChunks(_ buffer: UnsafeMutableRawPointer?) throws {
            var start = 0
            while start < Int(count) {
                let n = min(step, Int(count) - start)
                try check(MPI_Bcast(buffer.map { $0 + start * MemoryLayout<T>.stride }, Int32(n), datatype, Int32(root), comm), "MPI_Bcast")
                start += n
            }
        }
        if rank == root, var data = values {
            try data.withUnsafeMutableBytes { try broadcastChunks($0.baseAddress) }
            return data
        }
        var failure: (any Error)?
        let data = [T](unsafeUninitializedCapacity: Int(count)) { buffer, initialized in
            do { try broadcastChunks(UnsafeMutableRawPointer(buffer.baseAddress)) } catch { failure = error }
            initialized = Int(count)
        }
        if let failure { throw failure }
        return data
    }

    /// Every rank's element count, so all ranks agree on native or fallback.
    private func allCounts(_ count: Int) throws -> [Int] {
        var mine = Int64(count)
        var all = [Int64](repeating: 0, count: size)
        try check(MPI_Allgather(&mine, 1, swiftpar_type_int64(), &all, 1, swiftpar_type_int64(), comm), "MPI_Allgather")
        return all.map(Int.init)
    }

    private func fitsOneCall<T>(_ counts: [Int], _ type: T.Type) -> Bool {
        counts.reduce(0, +) <= elementLimit(T.self)
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

    func gather<T: PlainNumber>(_ values: [T], root: Int) throws -> [[T]]? {
        let counts = try allCounts(values.count)
        guard fitsOneCall(counts, T.self) else { return try genericGather(values, root: root) }
        let datatype = mpiDatatype(T.self)
        let total = counts.reduce(0, +)
        let counts32 = counts.map { Int32($0) }
        let displs = Self.displacements(counts)
        if rank != root {
            try values.withUnsafeBytes { send in
                try check(MPI_Gatherv(send.baseAddress, Int32(values.count), datatype, nil, nil, nil, datatype, Int32(root), comm), "MPI_Gatherv")
            }
            return nil
        }
        let flat = try collect(T.self, total) { receive in
            try values.withUnsafeBytes { send in
                try check(MPI_Gatherv(send.baseAddress, Int32(values.count), datatype, receive, counts32, displs, datatype, Int32(root), comm), "MPI_Gatherv")
            }
        }
        return split(flat, counts: counts)
    }

    func allgather<T: PlainNumber>(_ values: [T]) throws -> [[T]] {
        let counts = try allCounts(values.count)
        guard fitsOneCall(counts, T.self) else { return try genericAllgather(values) }
        let datatype = mpiDatatype(T.self)
        let counts32 = counts.map { Int32($0) }
        let displs = Self.displacements(counts)
        let flat = try collect(T.self, counts.reduce(0, +)) { receive in
            try values.withUnsafeBytes { send in
                try check(MPI_Allgatherv(send.baseAddress, Int32(values.count), datatype, receive, counts32, displs, datatype, comm), "MPI_Allgatherv")
            }
        }
        return split(flat, counts: counts)
    }

    func scatter<T: PlainNumber>(_ pieces: [[T]]?, root: Int) throws -> [T] {
        let counts = try broadcast(pieces.map { $0.map { Int64($0.count) } }, root: root).map(Int.init)
        guard fitsOneCall(counts, T.self) else { return try genericScatter(pieces, root: root) }
        let datatype = mpiDatatype(T.self)
        let counts32 = counts.map { Int32($0) }
        let displs = Self.displacements(counts)
        let flat = rank == root ? (pieces ?? []).flatMap { $0 } : []
        return try collect(T.self, counts[rank]) { receive in
            try flat.withUnsafeBytes { send in
                try check(MPI_Scatterv(send.baseAddress, counts32, displs, datatype, receive, Int32(counts[rank]), datatype, Int32(root), comm), "MPI_Scatterv")
            }
        }
    }

    func allToAll<T: PlainNumber>(_ pieces: [[T]]) throws -> [[T]] {
        var sendCounts = pieces.map { Int64($0.count) }
        var receiveCounts = [Int64](repeating: 0, count: size)
        try check(MPI_Alltoall(&sendCounts, 1, swiftpar_type_int64(), &receiveCounts, 1, swiftpar_type_int64(), comm), "MPI_Alltoall")
        var largest = max(sendCounts.reduce(0, +), receiveCounts.reduce(0, +))
        var agreed: Int64 = 0
        try check(MPI_Allreduce(&largest, &agreed, 1, swiftpar_type_int64(), swiftpar_op_max(), comm), "MPI_Allreduce")
        guard agreed <= Int64(elementLimit(T.self)) else { return try genericAllToAll(pieces) }
        let datatype = mpiDatatype(T.self)
        let inCounts = receiveCounts.map { Int($0) }
        let flatOut = pieces.flatMap { $0 }
        let outCounts32 = sendCounts.map { Int32($0) }
        let outDispls = Self.displacements(sendCounts.map { Int($0) })
        let inCounts32 = inCounts.map { Int32($0) }
        let inDispls = Self.displacements(inCounts)
        let flatIn = try collect(T.self, inCounts.reduce(0, +)) { receive in
            try flatOut.withUnsafeBytes { send in
                try check(MPI_Alltoallv(send.baseAddress, outCounts32, outDispls, datatype, receive, inCounts32, inDispls, datatype, comm), "MPI_Alltoallv")
            }
        }
        return split(flatIn, counts: inCounts)
    }

    /// Checks that every rank contributes the same number of elements, as MPI requires.
    private func checkSameCount(_ count: Int, _ operation: String) throws {
        var bounds: [Int64] = [Int64(count), -Int64(count)]
        var agreed: [Int64] = [0, 0]
        try check(MPI_Allreduce(&bounds, &agreed, 2, swiftpar_type_int64(), swiftpar_op_max(), comm), "MPI_Allreduce")
        if agreed[0] != -agreed[1] {
            throw CommunicatorError.invalidArgument(
                operation: operation, reason: "ranks contributed arrays of different lengths (from \(-agreed[1]) to \(agreed[0]) elements)", rank: rank)
        }
    }

    func reduce<T: PlainNumber>(_ values: [T], operation: ReductionOperation, root: Int) throws -> [T]? {
        try checkSameCount(values.count, "reduce")
        let result = try reduceChunks(values, operation: operation) { send, receive, n, datatype, op in
            MPI_Reduce(send, receive, n, datatype, op, Int32(root), comm)
        }
        return rank == root ? result : nil
    }

    func allreduce<T: PlainNumber>(_ values: [T], operation: ReductionOperation) throws -> [T] {
        try checkSameCount(values.count, "allreduce")
        return try reduceChunks(values, operation: operation) { send, receive, n, datatype, op in
            MPI_Allreduce(send, receive, n, datatype, op, comm)
        }
    }

    private func reduceChunks<T: PlainNumber>(
        _ values: [T], operation: ReductionOperation,
        _ call: (UnsafeRawPointer?, UnsafeMutableRawPointer?, Int32, MPI_Datatype?, MPI_Op?) -> Int32
    ) throws -> [T] {
        let datatype = mpiDatatype(T.self)
        let op = mpiOperation(operation)
        let step = max(elementLimit(T.self), 1)
        return try collect(T.self, values.count) { receive in
            try values.withUnsafeBytes { send in
                var start = 0
                repeat {
                    let n = min(step, values.count - start)
                    let offset = start * MemoryLayout<T>.stride
                    try check(call(send.baseAddress.map { $0 + offset }, receive.map { $0 + offset }, Int32(n), datatype, op),
                              "reduction (\(operation.rawValue))")
                    start += n
                } while start < values.count
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
        var created: MPI_Comm? = nil
        try check(MPI_Comm_split(comm, Int32(color ?? Int(MPI_UNDEFINED)), Int32(key), &created), "MPI_Comm_split")
        guard let newComm = created, newComm != swiftpar_comm_null() else { return nil }
        return MPITransport(comm: newComm, owns: true)
    }

    deinit {
        guard ownsComm, MPIEnvironment.isActive else { return }
        var handle: MPI_Comm? = comm
        MPI_Comm_free(&handle)
    }
}

final class MPISendRequest: TransportRequest {
    let message: OutgoingBytes
    unowned let transport: MPITransport
    var handles: [MPI_Request?] = []

    init(message: OutgoingBytes, transport: MPITransport) {
        self.message = message
        self.transport = transport
    }

    func wait() throws {
        guard !handles.isEmpty else { return }
        try transport.check(MPI_Waitall(Int32(handles.count), &handles, swiftpar_statuses_ignore()), "MPI_Waitall")
    }

    func test() throws -> Bool {
        guard !handles.isEmpty else { return true }
        var flag: Int32 = 0
        try transport.check(MPI_Testall(Int32(handles.count), &handles, &flag, swiftpar_statuses_ignore()), "MPI_Testall")
        return flag != 0
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

func mpiErrorString(_ code: Int32) -> String {
    var buffer = [CChar](repeating: 0, count: Int(swiftpar_max_error_string()) + 1)
    var length: Int32 = 0
    MPI_Error_string(code, &buffer, &length)
    return String(cString: buffer)
}
