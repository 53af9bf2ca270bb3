// Before any data of a collective moves, every rank tells every other which collective it is
// in: the operation, its number on this communicator, the root, the payload's element type and
// counts. One small allgather does it. Ranks that disagree all throw the same
// `CommunicatorError.mismatch` at once, on every backend, instead of exchanging garbage or
// waiting forever; and a rank that finished without calling the collective is noticed while the
// others wait for its part.

/// The collective operations, as they are numbered in signatures.
enum CollectiveOperation: Int, CaseIterable {
    case barrier = 1, broadcast, gather, allgather, scatter, allToAll, reduce, allreduce, split
    // The pool's calls: collective too, every rank joining with its part.
    case poolMap, poolMapToAll, poolMapReduce, poolForEachResult, poolMapResults

    /// The pool call named `name` ("Pool.map"), if it is one.
    init?(poolCall name: String) {
        guard let found = Self.allCases.first(where: { $0.rawValue >= Self.poolMap.rawValue && $0.name == name }) else { return nil }
        self = found
    }

    var name: String {
        switch self {
        case .barrier: return "barrier"
        case .broadcast: return "broadcast"
        case .gather: return "gather"
        case .allgather: return "allgather"
        case .scatter: return "scatter"
        case .allToAll: return "allToAll"
        case .reduce: return "reduce"
        case .allreduce: return "allreduce"
        case .split: return "split"
        case .poolMap: return "Pool.map"
        case .poolMapToAll: return "Pool.mapToAll"
        case .poolMapReduce: return "Pool.mapReduce"
        case .poolForEachResult: return "Pool.forEachResult"
        case .poolMapResults: return "Pool.mapResults"
        }
    }

}

/// What travels in a collective: nothing, plain numbers of one kind, or encoded `Codable` values.
enum PayloadKind: Equatable {
    case none
    case plain(PlainNumberKind)
    case encoded

    var code: Int64 {
        switch self {
        case .none: return 0
        case .plain(let kind): return Int64(kind.rawValue)
        case .encoded: return 64
        }
    }

    init(code: Int64) {
        if code == 64 { self = .encoded } else if let kind = PlainNumberKind(rawValue: UInt8(clamping: code)), code > 0 {
            self = .plain(kind)
        } else {
            self = .none
        }
    }

    var name: String {
        switch self {
        case .none: return ""
        case .plain(let kind): return "[\(kind.typeName)]"
        case .encoded: return "Codable values"
        }
    }
}

/// One rank's description of the collective it is entering.
struct CollectiveSignature: Equatable {
    static let wordCount = 6

    var sequence: Int
    var operation: CollectiveOperation?
    var payload: PayloadKind
    var root: Int
    /// Elements this rank contributes (the root's total for broadcast and scatter).
    var count: Int
    var reduction: ReductionOperation?

    var words: [Int64] {
        [Int64(sequence), Int64(operation?.rawValue ?? 0), payload.code, Int64(root), Int64(count),
         Int64(reduction.map { ReductionOperation.allCases.firstIndex(of: $0)! + 1 } ?? 0)]
    }

    init(sequence: Int, operation: CollectiveOperation, payload: PayloadKind, root: Int = -1, count: Int = 0,
         reduction: ReductionOperation? = nil) {
        self.sequence = sequence
        self.operation = operation
        self.payload = payload
        self.root = root
        self.count = count
        self.reduction = reduction
    }

    init(words: ArraySlice<Int64>) {
        let w = Array(words)
        sequence = Int(w[0])
        operation = CollectiveOperation(rawValue: Int(w[1]))
        payload = PayloadKind(code: w[2])
        root = Int(w[3])
        count = Int(w[4])
        let index = Int(w[5]) - 1
        reduction = ReductionOperation.allCases.indices.contains(index) ? ReductionOperation.allCases[index] : nil
    }

    /// What must be equal on every rank, with counts left out where they may differ.
    func comparable(rank: Int) -> CollectiveSignature {
        var copy = self
        // Only reductions of plain numbers need the same count everywhere.
        if !(operation == .reduce || operation == .allreduce) || payload == .encoded { copy.count = 0 }
        return copy
    }

    /// "broadcast of [Double] from root 0 (collective #3)".
    var summary: String {
        var text = operation?.name ?? "an unknown collective"
        if payload != .none { text += " of \(payload.name)" }
        if let reduction { text += " (\(reduction.rawValue))" }
        if root >= 0 { text += " from root \(root)" }
        if let operation, operation == .reduce || operation == .allreduce, case .plain = payload { text += ", \(count) elements" }
        return text + " (collective #\(sequence + 1) of this communicator)"
    }
}

extension Communicator {
    /// Exchanges signatures and throws `mismatch` unless every rank called the same collective.
    /// Returns every rank's signature, in rank order.
    func agree(on mine: CollectiveSignature, _ name: String) throws -> [CollectiveSignature] {
        collectiveCount += 1
        let words = try transport.allgatherFixed(mine.words, operation: name)
        let all = (0..<size).map { r in
            CollectiveSignature(words: words[(r * CollectiveSignature.wordCount)..<((r + 1) * CollectiveSignature.wordCount)])
        }
        let reference = all[0].comparable(rank: 0)
        if all.indices.allSatisfy({ all[$0].comparable(rank: $0) == reference }) { return all }
        // Group ranks by what they called, in rank order, so every rank builds the same words.
        var groups: [(summary: String, ranks: [Int])] = []
        for (rank, signature) in all.enumerated() {
            let summary = signature.comparable(rank: rank).summary
            if let index = groups.firstIndex(where: { $0.summary == summary }) {
                groups[index].ranks.append(rank)
            } else {
                groups.append((summary, [rank]))
            }
        }
        let reason = groups.map { group in
            let who = group.ranks.count == 1 ? "rank \(group.ranks[0])" : "ranks " + group.ranks.map(String.init).joined(separator: ", ")
            return "\(who) called \(group.summary)"
        }.joined(separator: "; ")
        throw CommunicatorError.mismatch(operation: name, reason: reason, rank: rank)
    }
}
