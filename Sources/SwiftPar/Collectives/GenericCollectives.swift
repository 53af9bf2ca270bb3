// Collectives written once over point-to-point messages.
//
// The local and single-rank backends use these as they are; the MPI backend uses Open MPI's
// native collectives and falls back to these only for data too large for MPI's 32-bit counts.
// All messages travel on `collectiveChannel`, and every receive names its source, so these
// never match a user's messages and consecutive collectives never mix. Counts are known on
// every rank before data moves (the communicator layer agreed on them), so every receive
// checks that the size is the one expected.

/// Tags on the collective channel, one per algorithm.
enum CollectiveTag: Int {
    case allgather = 1, broadcast, gather, scatter, allToAll
}

extension Transport {
    func allgatherFixed<T: PlainNumber>(_ values: [T], operation: String) throws -> [T] {
        try genericAllgather(values, counts: Array(repeating: values.count, count: size))
    }
    func broadcast<T: PlainNumber>(_ values: [T]?, count: Int, root: Int) throws -> [T] {
        try genericBroadcast(values, count: count, root: root)
    }
    func gather<T: PlainNumber>(_ values: [T], counts: [Int], root: Int) throws -> [T]? {
        try genericGather(values, counts: counts, root: root)
    }
    func allgather<T: PlainNumber>(_ values: [T], counts: [Int]) throws -> [T] {
        try genericAllgather(values, counts: counts)
    }
    func scatter<T: PlainNumber>(_ flat: [T]?, counts: [Int]?, myCount: Int, total: Int, root: Int) throws -> [T] {
        try genericScatter(flat, counts: counts, myCount: myCount, root: root)
    }
    func allToAll<T: PlainNumber>(_ flat: [T], sendCounts: [Int], receiveCounts: [Int], total: Int) throws -> [T] {
        try genericAllToAll(flat, sendCounts: sendCounts, receiveCounts: receiveCounts)
    }
    func reduce<T: PlainNumber>(_ values: [T], operation: ReductionOperation, root: Int) throws -> [T]? {
        try genericReduce(values, operation: operation, root: root)
    }
    func allreduce<T: PlainNumber>(_ values: [T], operation: ReductionOperation) throws -> [T] {
        try genericAllreduce(values, operation: operation)
    }

    /// Receives `count` elements from `source` on the collective channel.
    private func receiveCollective<T: PlainNumber>(_ type: T.Type, count: Int, from source: Int, tag: CollectiveTag) throws -> [T] {
        let (values, info) = try collectiveChannel.receiveArray(T.self, from: source, tag: tag.rawValue)
        guard values.count == count else {
            throw CommunicatorError.invalidArgument(
                operation: "collective", reason: "rank \(info.source) sent \(values.count) elements where \(count) were agreed", rank: rank)
        }
        return values
    }

    /// Binomial-tree broadcast from `root`.
    func genericBroadcast<T: PlainNumber>(_ values: [T]?, count: Int, root: Int) throws -> [T] {
        let channel = collectiveChannel
        let relative = (rank - root + size) % size
        var data: [T]
        if relative == 0 {
            data = values ?? []
        } else {
            // The parent is this rank with its lowest set bit cleared.
            let parent = (relative & (relative - 1) + root) % size
            data = try receiveCollective(T.self, count: count, from: parent, tag: .broadcast)
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

    func genericGather<T: PlainNumber>(_ values: [T], counts: [Int], root: Int) throws -> [T]? {
        guard rank == root else {
            try collectiveChannel.sendArray(values, to: root, tag: CollectiveTag.gather.rawValue)
            return nil
        }
        var parts: [ArraySlice<T>] = []
        for source in 0..<size {
            if source == rank {
                parts.append(values[...])
            } else {
                parts.append(try receiveCollective(T.self, count: counts[source], from: source, tag: .gather)[...])
            }
        }
        return [T](joiningAtFullSpeed: parts)
    }

    func genericAllgather<T: PlainNumber>(_ values: [T], counts: [Int]) throws -> [T] {
        let gathered = try genericGather(values, counts: counts, root: 0)
        return try genericBroadcast(gathered, count: counts.reduce(0, +), root: 0)
    }

    func genericScatter<T: PlainNumber>(_ flat: [T]?, counts: [Int]?, myCount: Int, root: Int) throws -> [T] {
        guard rank == root, let flat, let counts else {
            return try receiveCollective(T.self, count: myCount, from: root, tag: .scatter)
        }
        var start = 0
        var mine: [T] = []
        for destination in 0..<size {
            let piece = [T](joiningAtFullSpeed: [flat[start..<start + counts[destination]]])
            start += counts[destination]
            if destination == rank {
                mine = piece
            } else {
                try collectiveChannel.sendArray(piece, to: destination, tag: CollectiveTag.scatter.rawValue)
            }
        }
        return mine
    }

    /// Pairwise exchange: in round k every rank sends to rank+k and receives from rank−k.
    func genericAllToAll<T: PlainNumber>(_ flat: [T], sendCounts: [Int], receiveCounts: [Int]) throws -> [T] {
        let channel = collectiveChannel
        var sendStarts = [Int](repeating: 0, count: size)
        for r in 1..<max(size, 1) { sendStarts[r] = sendStarts[r - 1] + sendCounts[r - 1] }
        var pieces = [[T]](repeating: [], count: size)
        pieces[rank] = [T](joiningAtFullSpeed: [flat[sendStarts[rank]..<sendStarts[rank] + sendCounts[rank]]])
        for offset in 1..<max(size, 1) {
            let destination = (rank + offset) % size
            let source = (rank - offset + size) % size
            let outgoing = [T](joiningAtFullSpeed: [flat[sendStarts[destination]..<sendStarts[destination] + sendCounts[destination]]])
            let request = try channel.startSend(OutgoingBytes(outgoing), to: destination, tag: CollectiveTag.allToAll.rawValue)
            pieces[source] = try receiveCollective(T.self, count: receiveCounts[source], from: source, tag: .allToAll)
            try request.wait()
        }
        return [T](joiningAtFullSpeed: pieces.map { $0[...] })
    }

    /// Combines contributions in rank order, so results are the same on every run.
    func genericReduce<T: PlainNumber>(_ values: [T], operation: ReductionOperation, root: Int) throws -> [T]? {
        let count = values.count
        guard rank == root else {
            try collectiveChannel.sendArray(values, to: root, tag: CollectiveTag.gather.rawValue)
            return nil
        }
        var result: [T] = []
        for source in 0..<size {
            let contribution = source == rank ? values : try receiveCollective(T.self, count: count, from: source, tag: .gather)
            if source == 0 {
                result = contribution
            } else {
                combine(into: &result, contribution, operation)
            }
        }
        return result
    }

    func genericAllreduce<T: PlainNumber>(_ values: [T], operation: ReductionOperation) throws -> [T] {
        try genericBroadcast(try genericReduce(values, operation: operation, root: 0), count: values.count, root: 0)
    }
}

/// Splits `flat` into consecutive pieces of `counts` elements.
func splitPieces<T>(_ flat: [T], counts: [Int]) -> [[T]] {
    var result: [[T]] = []
    result.reserveCapacity(counts.count)
    var start = 0
    for count in counts {
        result.append(Array(flat[start..<start + count]))
        start += count
    }
    return result
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
