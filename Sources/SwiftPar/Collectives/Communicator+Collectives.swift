// Collective operations. Every rank of the communicator must call the same collective in the
// same order. Plain numbers use the backend's native collectives (Open MPI's under MPI);
// `Codable` values are encoded and travel as bytes through the same collectives.

extension Communicator {
    /// Blocks until every rank has reached the barrier (`MPI_Barrier`).
    public func barrier() throws {
        try transport.barrier()
    }

    // MARK: Broadcast

    /// Sends `value` from `root` to every rank and returns it on all (`MPI_Bcast`).
    ///
    /// Only the root's argument is used; other ranks pass nil.
    public func broadcast<T: Codable>(_ value: T?, root: Int = 0) throws -> T {
        try validate(destination: root, "broadcast")
        var bytes: [UInt8]? = nil
        if rank == root {
            guard let value else {
                throw CommunicatorError.invalidArgument(operation: "broadcast", reason: "the root passed no value", rank: rank)
            }
            bytes = try encode(value)
        }
        let received = try transport.broadcast(bytes, root: root)
        if rank == root, let value { return value }
        return try decode(T.self, from: received, source: root, tag: -1)
    }

    /// Broadcasts an array of plain numbers from `root` with the native collective (`MPI_Bcast`).
    public func broadcast<T: PlainNumber>(_ values: [T]?, root: Int = 0) throws -> [T] {
        try validate(destination: root, "broadcast")
        if rank == root && values == nil {
            throw CommunicatorError.invalidArgument(operation: "broadcast", reason: "the root passed no values", rank: rank)
        }
        return try transport.broadcast(values, root: root)
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
        guard let pieces = try transport.gather(try encode(value), root: root) else { return nil }
        return try pieces.enumerated().map { try decode(T.self, from: $1, source: $0, tag: -1) }
    }

    /// Collects an array of plain numbers from every rank on `root`; counts may differ
    /// (`MPI_Gatherv`). Returns one array per rank on the root, nil elsewhere.
    public func gather<T: PlainNumber>(_ values: [T], root: Int = 0) throws -> [[T]]? {
        try validate(destination: root, "gather")
        return try transport.gather(values, root: root)
    }

    /// Collects one plain number from every rank on `root` (`MPI_Gather`).
    public func gather<T: PlainNumber>(_ value: T, root: Int = 0) throws -> [T]? {
        try gather([value], root: root).map { $0.map { $0[0] } }
    }

    /// Collects one value from every rank on every rank, in rank order (`MPI_Allgatherv`).
    public func allgather<T: Codable>(_ value: T) throws -> [T] {
        try transport.allgather(try encode(value)).enumerated().map { try decode(T.self, from: $1, source: $0, tag: -1) }
    }

    /// Collects an array of plain numbers from every rank on every rank; counts may differ
    /// (`MPI_Allgatherv`).
    public func allgather<T: PlainNumber>(_ values: [T]) throws -> [[T]] {
        try transport.allgather(values)
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
        var pieces: [[UInt8]]? = nil
        if rank == root {
            pieces = try checkedCount(values, "scatter").map { try encode($0) }
        }
        return try decode(T.self, from: try transport.scatter(pieces, root: root), source: root, tag: -1)
    }

    /// Sends `pieces[i]` from `root` to rank `i`; counts may differ (`MPI_Scatterv`).
    public func scatter<T: PlainNumber>(_ pieces: [[T]]?, root: Int = 0) throws -> [T] {
        try validate(destination: root, "scatter")
        let checked = rank == root ? try checkedCount(pieces, "scatter") : nil
        return try transport.scatter(checked, root: root)
    }

    /// Sends `values[i]` from `root` to rank `i`, one plain number each (`MPI_Scatter`).
    public func scatter<T: PlainNumber>(_ values: [T]?, root: Int = 0) throws -> T {
        let piece = try scatter(values.map { $0.map { [$0] } }, root: root)
        return piece[0]
    }

    // MARK: All to all

    /// Sends `values[i]` to rank `i` and returns what every rank sent to this one, in rank order
    /// (`MPI_Alltoallv`).
    public func allToAll<T: Codable>(_ values: [T]) throws -> [T] {
        let pieces = try checkedCount(values, "allToAll").map { try encode($0) }
        return try transport.allToAll(pieces).enumerated().map { try decode(T.self, from: $1, source: $0, tag: -1) }
    }

    /// Sends `pieces[i]` to rank `i`; counts may differ (`MPI_Alltoallv`).
    public func allToAll<T: PlainNumber>(_ pieces: [[T]]) throws -> [[T]] {
        try transport.allToAll(try checkedCount(pieces, "allToAll"))
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
        return try transport.reduce(values, operation: operation, root: root)
    }

    /// Combines one number from every rank; the result on `root`, nil elsewhere (`MPI_Reduce`).
    public func reduce<T: PlainNumber>(_ value: T, _ operation: ReductionOperation, root: Int = 0) throws -> T? {
        try reduce([value], operation, root: root)?[0]
    }

    /// Combines arrays element by element across ranks, result on every rank (`MPI_Allreduce`).
    public func allreduce<T: PlainNumber>(_ values: [T], _ operation: ReductionOperation) throws -> [T] {
        try transport.allreduce(values, operation: operation)
    }

    /// Combines one number from every rank, result on every rank (`MPI_Allreduce`).
    public func allreduce<T: PlainNumber>(_ value: T, _ operation: ReductionOperation) throws -> T {
        try allreduce([value], operation)[0]
    }

    /// Combines one `Codable` value from every rank with `combine`, applied in rank order; the
    /// result on `root`, nil elsewhere (`MPI_Reduce` with a user operation).
    public func reduce<T: Codable>(_ value: T, root: Int = 0, _ combine: (T, T) throws -> T) throws -> T? {
        guard let all = try gather(value, root: root) else { return nil }
        return try all.dropFirst().reduce(all[0], combine)
    }

    /// Combines one `Codable` value from every rank with `combine`, result on every rank
    /// (`MPI_Allreduce` with a user operation).
    public func allreduce<T: Codable>(_ value: T, _ combine: (T, T) throws -> T) throws -> T {
        try broadcast(try reduce(value, root: 0, combine), root: 0)
    }
}
