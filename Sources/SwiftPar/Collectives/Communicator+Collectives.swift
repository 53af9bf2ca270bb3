// Collective operations. Every rank of the communicator must call the same collective in the
// same order. Each one first agrees on a signature (see CollectiveSignature.swift), then moves
// the data: plain numbers with the backend's native collectives (Open MPI's under MPI),
// `Codable` values encoded, as bytes, through the same collectives.

extension Communicator {
    /// Runs `body` as the collective `name`: a wait inside it that can never end says that a
    /// rank "has finished without calling it".
    func collective<R>(_ name: String, _ body: () throws -> R) throws -> R {
        try exclusive(name) {
            let channel = transport.collectiveChannel
            let outer = (transport.activity, channel.activity)
            transport.activity = outer.0 ?? name
            channel.activity = outer.1 ?? name
            defer {
                transport.activity = outer.0
                channel.activity = outer.1
            }
            return try body()
        }
    }

    /// The next signature of this communicator.
    func signature(_ operation: CollectiveOperation, _ payload: PayloadKind, root: Int = -1, count: Int = 0,
                   reduction: ReductionOperation? = nil) -> CollectiveSignature {
        CollectiveSignature(sequence: collectiveCount, operation: operation, payload: payload, root: root, count: count, reduction: reduction)
    }

    /// Blocks until every rank has reached the barrier (`MPI_Barrier`).
    public func barrier() throws {
        try collective("barrier") {
            _ = try agree(on: signature(.barrier, .none), "barrier")
        }
    }

    // MARK: Broadcast

    /// Sends `value` from `root` to every rank and returns it on all (`MPI_Bcast`).
    ///
    /// Only the root's argument is used; other ranks pass nil.
    public func broadcast<T: Codable>(_ value: T?, root: Int = 0) throws -> T {
        try validate(destination: root, "broadcast")
        return try collective("broadcast") {
            var bytes: [UInt8]? = nil
            if rank == root {
                guard let value else {
                    throw CommunicatorError.invalidArgument(operation: "broadcast", reason: "the root passed no value", rank: rank)
                }
                bytes = try encode(value)
            }
            let all = try agree(on: signature(.broadcast, .encoded, root: root, count: bytes?.count ?? 0), "broadcast")
            let received = try transport.broadcast(bytes, count: all[root].count, root: root)
            if rank == root, let value { return value }
            return try decodeContribution(T.self, from: received, source: root, "broadcast")
        }
    }

    /// Broadcasts an array of plain numbers from `root` with the native collective (`MPI_Bcast`).
    public func broadcast<T: PlainNumber>(_ values: [T]?, root: Int = 0) throws -> [T] {
        try validate(destination: root, "broadcast")
        return try collective("broadcast") {
            if rank == root && values == nil {
                throw CommunicatorError.invalidArgument(operation: "broadcast", reason: "the root passed no values", rank: rank)
            }
            let all = try agree(on: signature(.broadcast, .plain(T.plainNumberKind), root: root, count: values?.count ?? 0), "broadcast")
            return try transport.broadcast(rank == root ? values : nil, count: all[root].count, root: root)
        }
    }

    /// Broadcasts one plain number from `root` (`MPI_Bcast`).
    public func broadcast<T: PlainNumber>(_ value: T?, root: Int = 0) throws -> T {
        let result = try broadcast(value.map { [$0] }, root: root)
        guard let first = result.first else {
            throw CommunicatorError.invalidArgument(operation: "broadcast", reason: "the root sent no value", rank: rank)
        }
        return first
    }

    // MARK: Gather

    /// Collects one value from every rank on `root`, in rank order (`MPI_Gatherv`).
    ///
    /// Returns the values on the root and nil elsewhere.
    public func gather<T: Codable>(_ value: T, root: Int = 0) throws -> [T]? {
        try validate(destination: root, "gather")
        return try collective("gather") {
            guard let pieces = try gatherEncoded(try encode(value), root: root, .gather) else { return nil }
            return try pieces.enumerated().map { try decodeContribution(T.self, from: $1, source: $0, "gather") }
        }
    }

    /// Gathers encoded contributions on `root` under a signature of `operation`.
    func gatherEncoded(_ bytes: [UInt8], root: Int, _ operation: CollectiveOperation, reduction: ReductionOperation? = nil) throws -> [[UInt8]]? {
        let all = try agree(on: signature(operation, .encoded, root: root, count: bytes.count), operation.name)
        let counts = all.map(\.count)
        return try transport.gather(bytes, counts: counts, root: root).map { splitPieces($0, counts: counts) }
    }

    /// Collects an array of plain numbers from every rank on `root`; counts may differ
    /// (`MPI_Gatherv`). Returns one array per rank on the root, nil elsewhere.
    public func gather<T: PlainNumber>(_ values: [T], root: Int = 0) throws -> [[T]]? {
        try validate(destination: root, "gather")
        return try collective("gather") {
            let all = try agree(on: signature(.gather, .plain(T.plainNumberKind), root: root, count: values.count), "gather")
            let counts = all.map(\.count)
            return try transport.gather(values, counts: counts, root: root).map { splitPieces($0, counts: counts) }
        }
    }

    /// Collects one plain number from every rank on `root` (`MPI_Gather`).
    public func gather<T: PlainNumber>(_ value: T, root: Int = 0) throws -> [T]? {
        try gather([value], root: root).map { $0.map { $0[0] } }
    }

    /// Collects one value from every rank on every rank, in rank order (`MPI_Allgatherv`).
    public func allgather<T: Codable>(_ value: T) throws -> [T] {
        try collective("allgather") {
            let bytes = try encode(value)
            let all = try agree(on: signature(.allgather, .encoded, count: bytes.count), "allgather")
            let counts = all.map(\.count)
            let pieces = splitPieces(try transport.allgather(bytes, counts: counts), counts: counts)
            return try pieces.enumerated().map { try decodeContribution(T.self, from: $1, source: $0, "allgather") }
        }
    }

    /// Collects an array of plain numbers from every rank on every rank; counts may differ
    /// (`MPI_Allgatherv`).
    public func allgather<T: PlainNumber>(_ values: [T]) throws -> [[T]] {
        try collective("allgather") {
            let all = try agree(on: signature(.allgather, .plain(T.plainNumberKind), count: values.count), "allgather")
            let counts = all.map(\.count)
            return splitPieces(try transport.allgather(values, counts: counts), counts: counts)
        }
    }

    /// Collects one plain number from every rank on every rank (`MPI_Allgather`).
    public func allgather<T: PlainNumber>(_ value: T) throws -> [T] {
        try allgather([value]).map { $0[0] }
    }

    // MARK: Scatter

    /// Sends `values[i]` from `root` to rank `i` and returns this rank's value (`MPI_Scatterv`).
    ///
    /// The root passes exactly `size` values; other ranks pass nil.
    public func scatter<T: Codable>(_ values: [T]?, root: Int = 0) throws -> T {
        try validate(destination: root, "scatter")
        return try collective("scatter") {
            var pieces: [[UInt8]]? = nil
            if rank == root {
                pieces = try checkedCount(values, "scatter").map { try encode($0) }
            }
            let bytes = try scatterPieces(pieces, root: root, payload: .encoded)
            return try decodeContribution(T.self, from: bytes, source: root, "scatter")
        }
    }

    /// Sends `pieces[i]` from `root` to rank `i`; counts may differ (`MPI_Scatterv`).
    public func scatter<T: PlainNumber>(_ pieces: [[T]]?, root: Int = 0) throws -> [T] {
        try validate(destination: root, "scatter")
        return try collective("scatter") {
            let checked = rank == root ? try checkedCount(pieces, "scatter") : nil
            return try scatterPieces(checked, root: root, payload: .plain(T.plainNumberKind))
        }
    }

    /// Agrees on a scatter, sends each rank its count, then the data.
    private func scatterPieces<T: PlainNumber>(_ pieces: [[T]]?, root: Int, payload: PayloadKind) throws -> [T] {
        let counts = pieces?.map(\.count)
        let total = counts?.reduce(0, +) ?? 0
        let all = try agree(on: signature(.scatter, payload, root: root, count: total), "scatter")
        let myCount = try transport.scatter(counts?.map { Int64($0) }, counts: counts.map { _ in Array(repeating: 1, count: size) },
                                            myCount: 1, total: size, root: root)[0]
        return try transport.scatter(pieces?.flatMap { $0 }, counts: counts, myCount: Int(myCount), total: all[root].count, root: root)
    }

    /// Sends `values[i]` from `root` to rank `i`, one plain number each (`MPI_Scatter`).
    public func scatter<T: PlainNumber>(_ values: [T]?, root: Int = 0) throws -> T {
        let piece = try scatter(values.map { $0.map { [$0] } }, root: root)
        guard let first = piece.first else {
            throw CommunicatorError.invalidArgument(operation: "scatter", reason: "the root sent no value", rank: rank)
        }
        return first
    }

    // MARK: All to all

    /// Sends `values[i]` to rank `i` and returns what every rank sent to this one, in rank order
    /// (`MPI_Alltoallv`).
    public func allToAll<T: Codable>(_ values: [T]) throws -> [T] {
        try collective("allToAll") {
            let pieces = try checkedCount(values, "allToAll").map { try encode($0) }
            let received = try exchangePieces(pieces, payload: .encoded)
            return try received.enumerated().map { try decodeContribution(T.self, from: $1, source: $0, "allToAll") }
        }
    }

    /// Sends `pieces[i]` to rank `i`; counts may differ (`MPI_Alltoallv`).
    public func allToAll<T: PlainNumber>(_ pieces: [[T]]) throws -> [[T]] {
        try collective("allToAll") {
            try exchangePieces(try checkedCount(pieces, "allToAll"), payload: .plain(T.plainNumberKind))
        }
    }

    private func exchangePieces<T: PlainNumber>(_ pieces: [[T]], payload: PayloadKind) throws -> [[T]] {
        let sendCounts = pieces.map(\.count)
        let all = try agree(on: signature(.allToAll, payload, count: sendCounts.reduce(0, +)), "allToAll")
        let total = all.reduce(0) { $0 + $1.count }
        let ones = Array(repeating: 1, count: size)
        let receiveCounts = try transport.allToAll(sendCounts.map { Int64($0) }, sendCounts: ones, receiveCounts: ones, total: size * size)
            .map { Int($0) }
        let flat = try transport.allToAll(pieces.flatMap { $0 }, sendCounts: sendCounts, receiveCounts: receiveCounts, total: total)
        return splitPieces(flat, counts: receiveCounts)
    }

    private func checkedCount<C: Collection>(_ values: C?, _ operation: String) throws -> C {
        guard let values, values.count == size else {
            throw CommunicatorError.invalidArgument(
                operation: operation, reason: "needs exactly \(size) values, one per rank, but got \(values?.count ?? 0)", rank: rank)
        }
        return values
    }

    // MARK: Reduce

    /// Combines arrays element by element across ranks with a predefined operation; the result
    /// is returned on `root`, nil elsewhere (`MPI_Reduce`). All ranks pass the same count.
    public func reduce<T: PlainNumber>(_ values: [T], _ operation: ReductionOperation, root: Int = 0) throws -> [T]? {
        try validate(destination: root, "reduce")
        return try collective("reduce") {
            _ = try agree(on: signature(.reduce, .plain(T.plainNumberKind), root: root, count: values.count, reduction: operation), "reduce")
            return try transport.reduce(values, operation: operation, root: root)
        }
    }

    /// Combines one number from every rank; the result on `root`, nil elsewhere (`MPI_Reduce`).
    public func reduce<T: PlainNumber>(_ value: T, _ operation: ReductionOperation, root: Int = 0) throws -> T? {
        try reduce([value], operation, root: root)?[0]
    }

    /// Combines arrays element by element across ranks, result on every rank (`MPI_Allreduce`).
    public func allreduce<T: PlainNumber>(_ values: [T], _ operation: ReductionOperation) throws -> [T] {
        try collective("allreduce") {
            _ = try agree(on: signature(.allreduce, .plain(T.plainNumberKind), count: values.count, reduction: operation), "allreduce")
            return try transport.allreduce(values, operation: operation)
        }
    }

    /// Combines one number from every rank, result on every rank (`MPI_Allreduce`).
    public func allreduce<T: PlainNumber>(_ value: T, _ operation: ReductionOperation) throws -> T {
        try allreduce([value], operation)[0]
    }

    /// Combines one `Codable` value from every rank with `combine`, applied in rank order; the
    /// result on `root`, nil elsewhere (`MPI_Reduce` with a user operation).
    public func reduce<T: Codable>(_ value: T, root: Int = 0, _ combine: (T, T) throws -> T) throws -> T? {
        try validate(destination: root, "reduce")
        return try collective("reduce") {
            guard let pieces = try gatherEncoded(try encode(value), root: root, .reduce) else { return nil }
            let values = try pieces.enumerated().map { try decodeContribution(T.self, from: $1, source: $0, "reduce") }
            return try values.dropFirst().reduce(values[0], combine)
        }
    }

    /// Combines one `Codable` value from every rank with `combine`, result on every rank
    /// (`MPI_Allreduce` with a user operation).
    public func allreduce<T: Codable>(_ value: T, _ combine: (T, T) throws -> T) throws -> T {
        try collective("allreduce") {
            var result: [UInt8]? = nil
            if let pieces = try gatherEncoded(try encode(value), root: 0, .allreduce) {
                let values = try pieces.enumerated().map { try decodeContribution(T.self, from: $1, source: $0, "allreduce") }
                result = try encode(try values.dropFirst().reduce(values[0], combine))
            }
            let count = try transport.broadcast(result.map { [Int64($0.count)] }, count: 1, root: 0)[0]
            let bytes = try transport.broadcast(result, count: Int(count), root: 0)
            return try decodeContribution(T.self, from: bytes, source: 0, "allreduce")
        }
    }

    /// Decodes what `source` contributed to a collective.
    func decodeContribution<T: Decodable>(_ type: T.Type, from bytes: [UInt8], source: Int, _ operation: String) throws -> T {
        do {
            return try decodeValue(type, from: bytes)
        } catch let failure as MessageDecodingFailure {
            throw CommunicatorError.collectiveDecodingFailed(operation: operation, type: String(describing: T.self), source: source,
                                                             byteCount: bytes.count, reason: failure.reason, rank: rank)
        }
    }
}
