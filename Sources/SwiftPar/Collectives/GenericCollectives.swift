// Collectives written once over point-to-point messages.
//
// The local and single-rank backends use these as they are; the MPI backend uses Open MPI's
// native collectives and falls back to these only for data too large for MPI's 32-bit counts.
// All messages travel on `collectiveChannel`, and every receive names its source, so these
// never match a user's messages and consecutive collectives never mix.

/// Tags on the collective channel, one per algorithm.
enum CollectiveTag: Int {
    case barrier = 1, broadcast, gather, scatter, allToAll, reduce, split
}

extension Transport {
    func barrier() throws { try genericBarrier() }
    func broadcast<T: PlainNumber>(_ values: [T]?, root: Int) throws -> [T] { try genericBroadcast(values, root: root) }
    func gather<T: PlainNumber>(_ values: [T], root: Int) throws -> [[T]]? { try genericGather(values, root: root) }
    func allgather<T: PlainNumber>(_ values: [T]) throws -> [[T]] { try genericAllgather(values) }
    func scatter<T: PlainNumber>(_ pieces: [[T]]?, root: Int) throws -> [T] { try genericScatter(pieces, root: root) }
    func allToAll<T: PlainNumber>(_ pieces: [[T]]) throws -> [[T]] { try genericAllToAll(pieces) }
    func reduce<T: PlainNumber>(_ values: [T], operation: ReductionOperation, root: Int) throws -> [T]? {
        try genericReduce(values, operation: operation, root: root)
    }
    func allreduce<T: PlainNumber>(_ values: [T], operation: ReductionOperation) throws -> [T] {
        try genericAllreduce(values, operation: operation)
    }

    /// Dissemination barrier: ⌈log2 size⌉ rounds of one message each way.
    func genericBarrier() throws {
        let channel = collectiveChannel
        var distance = 1
        while distance < size {
            let request = try channel.startSend(OutgoingBytes([UInt8]()), to: (rank + distance) % size, tag: CollectiveTag.barrier.rawValue)
            _ = try channel.receiveArray(UInt8.self, from: (rank - distance + size) % size, tag: CollectiveTag.barrier.rawValue)
            try request.wait()
            distance *= 2
        }
    }

    /// Binomial-tree broadcast from `root`.
    func genericBroadcast<T: PlainNumber>(_ values: [T]?, root: Int) throws -> [T] {
        let channel = collectiveChannel
        let relative = (rank - root + size) % size
        var data: [T]
        if relative == 0 {
            data = values ?? []
        } else {
            // The parent is this rank with its lowest set bit cleared.
            let parent = (relative & (relative - 1) + root) % size
            data = try channel.receiveArray(T.self, from: parent, tag: CollectiveTag.broadcast.rawValue).0
        }
        var bit = 1
        while bit < size {
            if relative & bit != 0 { break }
            let child = relative | bit
            if child < size {
                try channel.sendArray(data, to: (child + root) % size, tag: CollectiveTag.broadcast.rawValue)
            }
            bit <<= 1
        }
        return data
    }

    func genericGather<T: PlainNumber>(_ values: [T], root: Int) throws -> [[T]]? {
        let channel = collectiveChannel
        guard rank == root else {
            try channel.sendArray(values, to: root, tag: CollectiveTag.gather.rawValue)
            return nil
        }
        var result: [[T]] = []
        result.reserveCapacity(size)
        for source in 0..<size {
            result.append(source == rank ? values
                : try channel.receiveArray(T.self, from: source, tag: CollectiveTag.gather.rawValue).0)
        }
        return result
    }

    func genericAllgather<T: PlainNumber>(_ values: [T]) throws -> [[T]] {
        let gathered = try genericGather(values, root: 0)
        let counts = try genericBroadcast(gathered?.map { Int64($0.count) }, root: 0)
        let flat = try genericBroadcast(gathered?.flatMap { $0 }, root: 0)
        return split(flat, counts: counts.map(Int.init))
    }

    func genericScatter<T: PlainNumber>(_ pieces: [[T]]?, root: Int) throws -> [T] {
        let channel = collectiveChannel
        guard rank == root else {
            return try channel.receiveArray(T.self, from: root, tag: CollectiveTag.scatter.rawValue).0
        }
        let pieces = pieces ?? []
        for destination in 0..<size where destination != rank {
            try channel.sendArray(pieces[destination], to: destination, tag: CollectiveTag.scatter.rawValue)
        }
        return pieces[rank]
    }

    /// Pairwise exchange: in round k every rank sends to rank+k and receives from rank−k.
    func genericAllToAll<T: PlainNumber>(_ pieces: [[T]]) throws -> [[T]] {
        let channel = collectiveChannel
        var result = [[T]](repeating: [], count: size)
        result[rank] = pieces[rank]
        for offset in 1..<max(size, 1) {
            let destination = (rank + offset) % size
            let source = (rank - offset + size) % size
            let request = try channel.startSend(OutgoingBytes(pieces[destination]), to: destination, tag: CollectiveTag.allToAll.rawValue)
            result[source] = try channel.receiveArray(T.self, from: source, tag: CollectiveTag.allToAll.rawValue).0
            try request.wait()
        }
        return result
    }

    /// Combines contributions in rank order, so results are the same on every run.
    func genericReduce<T: PlainNumber>(_ values: [T], operation: ReductionOperation, root: Int) throws -> [T]? {
        guard var all = try genericGather(values, root: root) else { return nil }
        // Take rank 0's array out, so combining into it copies nothing while it is shared.
        var result = all[0]
        all[0] = []
        for contribution in all.dropFirst() {
            guard contribution.count == result.count else {
                throw CommunicatorError.invalidArgument(
                    operation: "reduce", reason: "ranks contributed arrays of different lengths (\(result.count) and \(contribution.count))", rank: rank)
            }
            combine(into: &result, contribution, operation)
        }
        return result
    }

    func genericAllreduce<T: PlainNumber>(_ values: [T], operation: ReductionOperation) throws -> [T] {
        try genericBroadcast(try genericReduce(values, operation: operation, root: 0), root: 0)
    }

    func split<T>(_ flat: [T], counts: [Int]) -> [[T]] {
        var result: [[T]] = []
        result.reserveCapacity(counts.count)
        var start = 0
        for count in counts {
            result.append(Array(flat[start..<start + count]))
            start += count
        }
        return result
    }
}

/// `accumulator[i] = accumulator[i] ⊕ contribution[i]` for every element, in a loop on the
/// concrete element type: called generically, every element would cost a witness call.
/// Integer sums and products wrap around, as MPI's do.
func combine<T: PlainNumber>(into accumulator: inout [T], _ contribution: [T], _ operation: ReductionOperation) {
    accumulator.withUnsafeMutableBytes { target in
        contribution.withUnsafeBytes { source in
            // The element kind names the concrete type; Int and UInt share their 64-bit kinds.
            switch T.plainNumberKind {
            case .int8: combineIntegers(target.bindMemory(to: Int8.self), source.bindMemory(to: Int8.self), operation)
            case .int16: combineIntegers(target.bindMemory(to: Int16.self), source.bindMemory(to: Int16.self), operation)
            case .int32: combineIntegers(target.bindMemory(to: Int32.self), source.bindMemory(to: Int32.self), operation)
            case .int64: combineIntegers(target.bindMemory(to: Int64.self), source.bindMemory(to: Int64.self), operation)
            case .uint8: combineIntegers(target.bindMemory(to: UInt8.self), source.bindMemory(to: UInt8.self), operation)
            case .uint16: combineIntegers(target.bindMemory(to: UInt16.self), source.bindMemory(to: UInt16.self), operation)
            case .uint32: combineIntegers(target.bindMemory(to: UInt32.self), source.bindMemory(to: UInt32.self), operation)
            case .uint64: combineIntegers(target.bindMemory(to: UInt64.self), source.bindMemory(to: UInt64.self), operation)
            case .float32: combineFloats(target.bindMemory(to: Float.self), source.bindMemory(to: Float.self), operation)
            case .float64: combineFloats(target.bindMemory(to: Double.self), source.bindMemory(to: Double.self), operation)
            }
        }
    }
}

@inline(__always)
func combineIntegers<C: FixedWidthInteger>(_ a: UnsafeMutableBufferPointer<C>, _ b: UnsafeBufferPointer<C>, _ operation: ReductionOperation) {
    switch operation {
    case .sum: for i in 0..<a.count { a[i] = a[i] &+ b[i] }
    case .product: for i in 0..<a.count { a[i] = a[i] &* b[i] }
    case .minimum: for i in 0..<a.count { a[i] = Swift.min(a[i], b[i]) }
    case .maximum: for i in 0..<a.count { a[i] = Swift.max(a[i], b[i]) }
    }
}

@inline(__always)
func combineFloats<C: BinaryFloatingPoint>(_ a: UnsafeMutableBufferPointer<C>, _ b: UnsafeBufferPointer<C>, _ operation: ReductionOperation) {
    switch operation {
    case .sum: for i in 0..<a.count { a[i] = a[i] + b[i] }
    case .product: for i in 0..<a.count { a[i] = a[i] * b[i] }
    case .minimum: for i in 0..<a.count { a[i] = Swift.min(a[i], b[i]) }
    case .maximum: for i in 0..<a.count { a[i] = Swift.max(a[i], b[i]) }
    }
}
