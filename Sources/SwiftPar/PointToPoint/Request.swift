// Nonblocking operations: requests that complete later (`MPI_Isend`, `MPI_Irecv`, `MPI_Wait`...).

/// A nonblocking operation that can be waited on or tested, whatever its result type.
public protocol Request: AnyObject {
    /// Blocks until the operation is complete (`MPI_Wait`).
    func wait() throws
    /// Returns whether the operation is complete, without blocking (`MPI_Test`).
    func test() throws -> Bool
}

/// Waits until every request in `requests` is complete (`MPI_Waitall`).
public func waitAll(_ requests: [any Request]) throws {
    for request in requests { try request.wait() }
}

/// Several requests that complete together: a value and the arrays sent apart after it.
final class CompositeRequest: TransportRequest {
    let parts: [any TransportRequest]
    init(_ parts: [any TransportRequest]) { self.parts = parts }
    func wait() throws { for part in parts { try part.wait() } }
    func test() throws -> Bool { try parts.allSatisfy { try $0.test() } }
}

/// A nonblocking send in flight (`MPI_Isend`). It owns the value's bytes until it completes.
/// A request dropped before it completed leaves its send going on in the background, as after
/// `MPI_Request_free`, with its bytes kept; the rank finishes it before it finishes itself (a
/// send whose receiver finished without taking it then fails the rank).
///
/// `@unchecked Sendable`: its state is touched only inside `wait()` and `test()`, which run one
/// at a time in the process (see `CommunicatorError.concurrentUse`).
public final class SendRequest: Request, @unchecked Sendable {
    let inner: any TransportRequest
    let rank: Int
    private var finished = false

    @usableFromInline
    init(_ inner: any TransportRequest, rank: Int) {
        self.inner = inner
        self.rank = rank
    }

    /// Blocks until the send buffer may be reused (`MPI_Wait`).
    public func wait() throws {
        try OneOperationAtATime.run("wait", rank: rank) {
            guard !finished else { return }
            try inner.wait()
            finished = true
        }
    }

    /// Returns whether the send has completed (`MPI_Test`).
    public func test() throws -> Bool {
        try OneOperationAtATime.run("test", rank: rank) {
            if finished { return true }
            finished = try inner.test()
            return finished
        }
    }
}

/// A nonblocking receive. As with `MPI_Irecv`, a sender blocked until its message is received
/// can finish while this rank waits in any other operation (a blocking `send` included): the
/// message is taken off the queue then (with the messages its sender sent before it, which wait
/// in memory for their own receives). It is decoded when `wait()` or `test()` runs, and
/// `message` is then available. Unlike MPI, messages go to receives in the order the receives
/// complete, not the order they were started: two started receives that could take the same
/// message, or a started receive and a later blocking one, get them in the order they are
/// waited for.
///
/// `Sendable` when its value is: its state is touched only inside `wait()` and `test()`, which
/// run one at a time in the process.
public final class ReceiveRequest<Value: Decodable>: Request {
    let communicator: Communicator
    let source: Source
    let tag: TagSelector
    private var result: ReceivedMessage<Value>?
    /// The backend's number for this receive while it is started and not yet waited for.
    private var token: Int?

    init(communicator: Communicator, source: Source, tag: TagSelector) {
        self.communicator = communicator
        self.source = source
        self.tag = tag
        token = communicator.transport.beginReceive(source: source.rankValue, tag: tag.tagValue)
    }

    deinit {
        // Dropped without a wait: the backend stops keeping a message for it (a message it took
        // already stays for later receives).
        if let token { communicator.transport.dropReceive(token) }
    }

    /// Blocks until the message has arrived and returns it (`MPI_Wait`).
    @discardableResult
    public func waitForMessage() throws -> ReceivedMessage<Value> {
        try communicator.exclusive("wait") {
            if let result { return result }
            if let token {
                self.token = nil
                try communicator.transport.endReceive(token)
            }
            let message = try communicator.receiveMessage(Value.self, from: source, tag: tag)
            result = message
            return message
        }
    }

    /// Blocks until the message has arrived.
    public func wait() throws { try waitForMessage() }

    /// Completes the receive if a matching message has arrived (`MPI_Test`).
    public func test() throws -> Bool {
        try communicator.exclusive("test") {
            if result != nil { return true }
            if let token {
                do {
                    try communicator.transport.checkReceive(token)
                } catch {
                    self.token = nil
                    throw error
                }
            }
            guard let info = try communicator.transport.probe(source: source.rankValue, tag: tag.tagValue, wait: false) else {
                // Every rank that could send it has finished: the wait settles it at once, with
                // a message that came in meanwhile or the error wait() gives (a loop on test()
                // spun for good).
                if try communicator.transport.sendersFinished(source: source.rankValue) {
                    try waitForMessage()
                    return true
                }
                return false
            }
            if let token {
                self.token = nil
                try communicator.transport.endReceive(token)
            }
            let value = try communicator.decodeMessage(Value.self, info)
            result = ReceivedMessage(value: value, source: info.source, tag: info.tag, byteCount: info.byteCount)
            return true
        }
    }

    /// The received message, once `wait()` or a successful `test()` has completed the request.
    public var message: ReceivedMessage<Value>? { result }
}

extension ReceiveRequest: @unchecked Sendable where Value: Sendable {}

extension Communicator {
    /// Starts sending `value` and returns at once (`MPI_Isend`). The request keeps the bytes
    /// alive; plain-number arrays are sent from their own storage.
    public func startSend<T: Encodable>(_ value: T, to destination: Int, tag: Int = 0) throws -> SendRequest {
        try exclusive("startSend") {
            try validate(destination: destination, "startSend")
            try validate(tag: tag, "startSend")
            let messages = try outgoingMessages(value)
            // An encoded value goes as the backend sends encoded values; plain numbers and the
            // arrays sent apart after a value, as they are.
            let encoded = plainArrayType(T.self) == nil
            var requests: [any TransportRequest] = []
            for (index, message) in messages.enumerated() {
                if index == 0 && encoded {
                    requests += try transport.startSendEncoded(message, to: destination, tag: tag)
                } else {
                    requests.append(try transport.startSend(message, to: destination, tag: tag))
                }
            }
            return SendRequest(requests.count == 1 ? requests[0] : CompositeRequest(requests), rank: rank)
        }
    }

    /// Starts a receive of a value of `type` and returns at once (`MPI_Irecv`); the value is
    /// decoded when the request's `wait()` or `test()` runs (see `ReceiveRequest`).
    public func startReceive<T: Decodable>(_ type: T.Type = T.self, from source: Source = .any, tag: TagSelector = .any) throws -> ReceiveRequest<T> {
        try exclusive("startReceive") {
            try validate(source: source, tag: tag, "startReceive")
            return ReceiveRequest(communicator: self, source: source, tag: tag)
        }
    }
}
