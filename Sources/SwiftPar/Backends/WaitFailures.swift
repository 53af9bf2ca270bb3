// The words a rank uses when a wait can never end, shared by every backend so that the same
// mistake reads the same under mpirun and on the local backend.

extension CommunicatorError {
    /// A receive, probe or collective whose possible senders have all finished.
    ///
    /// - Parameters:
    ///   - peers: the finished ranks it waited for, in the communicator's numbering.
    ///   - anySource: whether the receive accepted a message from any rank.
    ///   - activity: the collective or pool call the wait belongs to, if any.
    static func sendersFinished(_ peers: [Int], anySource: Bool, activity: String?, rank: Int) -> CommunicatorError {
        if let activity {
            return .wouldWaitForever(operation: activity, reason: "\(describeRanks(peers)) finished without calling it", rank: rank)
        }
        if anySource {
            return .wouldWaitForever(operation: "receive", reason: "every rank it could come from has finished without sending a matching message", rank: rank)
        }
        return .wouldWaitForever(operation: "receive", reason: "rank \(peers.first ?? -1) has finished without sending a matching message", rank: rank)
    }

    /// A send (or the sending side of a collective) whose receiver has finished.
    static func receiverFinished(_ peer: Int, activity: String?, rank: Int) -> CommunicatorError {
        if let activity {
            return .wouldWaitForever(operation: activity, reason: "rank \(peer) has finished without calling it", rank: rank)
        }
        return .peerFailed(peer: peer, reason: "has finished and will not receive any more messages", operation: "send", rank: rank)
    }
}

/// "rank 2 has" or "ranks 1, 2 and 5 have".
func describeRanks(_ ranks: [Int]) -> String {
    let sorted = ranks.sorted()
    if sorted.count == 1 { return "rank \(sorted[0]) has" }
    let head = sorted.dropLast().map(String.init).joined(separator: ", ")
    return "ranks \(head) and \(sorted.last!) have"
}
