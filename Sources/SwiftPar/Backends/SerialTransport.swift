/// The single-rank backend: a group of one, with messages to itself kept in a queue.
///
/// Used by `--backend serial`. Every collective works (trivially); a receive with nothing
/// queued can never complete, so it throws instead of waiting forever.
final class SerialTransport: Transport {
    let rank = 0
    let size = 1
    let maximumTag = Int(Int32.max)
    var activity: String?
    private var queue: [(info: MessageInfo, bytes: [UInt8])] = []
    private var channelStorage: SerialTransport?

    var collectiveChannel: any Transport {
        if let channelStorage { return channelStorage }
        let channel = SerialTransport()
        channelStorage = channel
        return channel
    }

    func send(_ bytes: UnsafeRawBufferPointer, to destination: Int, tag: Int) throws {
        queue.append((MessageInfo(source: 0, tag: tag, byteCount: bytes.count), [UInt8](bytes)))
    }

    func startSend(_ message: OutgoingBytes, to destination: Int, tag: Int) throws -> any TransportRequest {
        try message.withBytes { try send($0, to: destination, tag: tag) }
        return CompletedRequest()
    }

    /// Only this rank sends to itself, and it is running (it may send later).
    func sendersFinished(source: Int?) throws -> Bool { false }

    func probe(source: Int?, tag: Int?, wait: Bool) throws -> MessageInfo? {
        if let entry = queue.first(where: { tag == nil || $0.info.tag == tag }) { return entry.info }
        if wait {
            if let activity {
                throw CommunicatorError.wouldWaitForever(operation: activity, reason: "this is the only rank and it has sent nothing for it", rank: 0)
            }
            throw CommunicatorError.wouldWaitForever(
                operation: "receive", reason: "this is the only rank and no message with tag \(tag.map(String.init) ?? "any") is queued", rank: 0)
        }
        return nil
    }

    func receive(_ info: MessageInfo, into buffer: UnsafeMutableRawBufferPointer) throws {
        guard let index = queue.firstIndex(where: { $0.info.tag == info.tag }) else {
            throw CommunicatorError.wouldWaitForever(operation: "receive", reason: "no message with tag \(info.tag) is queued", rank: 0)
        }
        let entry = queue.remove(at: index)
        entry.bytes.withUnsafeBytes { buffer.copyMemory(from: $0) }
    }

    func split(color: Int?, key: Int) throws -> (any Transport)? {
        color == nil ? nil : SerialTransport()
    }
}
