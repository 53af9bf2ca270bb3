// Point-to-point messages: send, receive, probe, send-receive.

extension Communicator {
    // MARK: Sending

    /// Sends any `Codable` value to `destination` (`MPI_Send`).
    ///
    /// The value is encoded in swiftpar's compact binary format. Arrays of plain numbers are sent
    /// from their storage without encoding, exactly as `send(_:to:tag:)` for `[PlainNumber]`.
    public func send<T: Encodable>(_ value: T, to destination: Int, tag: Int = 0) throws {
        try exclusive("send") {
            try validate(destination: destination, "send")
            try validate(tag: tag, "send")
            // The thread's codec state, fetched once for the type check and the encoding.
            let scratch = CodecScratch.current
            if case .plainArray = scratch.kind(of: T.self) {
                try (value as! any PlainNumberArray).withUnsafeBytes { try transport.send($0, to: destination, tag: tag) }
                return
            }
            do {
                try BinaryEncoder().withEncoded(value, attaching: true, scratch: scratch) { body, attachments in
                    // Large arrays follow as messages of their own, from their storage.
                    try withBytes(of: attachments) { parts in
                        try transport.sendEncoded(body, followedBy: parts, to: destination, tag: tag)
                    }
                }
            } catch let error as CommunicatorError {
                throw error
            } catch {
                throw CommunicatorError.encodingFailed(type: String(describing: T.self), reason: "\(error)", rank: rank)
            }
        }
    }

    /// Calls `body` with the bytes of every array of `arrays`, all valid during the call.
    private func withBytes<R>(of arrays: [any PlainNumberArray], _ body: ([UnsafeRawBufferPointer]) throws -> R) throws -> R {
        if arrays.isEmpty { return try body([]) }
        var parts: [UnsafeRawBufferPointer] = []
        parts.reserveCapacity(arrays.count)
        func collect(from index: Int) throws -> R {
            guard index < arrays.count else { return try body(parts) }
            return try arrays[index].withUnsafeBytes { bytes in
                parts.append(bytes)
                return try collect(from: index + 1)
            }
        }
        return try collect(from: 0)
    }

    /// Sends an array of plain numbers straight from its storage, with no copy (`MPI_Send`).
    ///
    /// The message is exactly the numbers: a C or Fortran rank of the same job receives it as
    /// it would from any MPI program.
    @inlinable
    public func send<T: PlainNumber>(_ values: [T], to destination: Int, tag: Int = 0) throws {
        try exclusive("send") {
            try validate(destination: destination, "send")
            try validate(tag: tag, "send")
            try values.withUnsafeBytes { try transport.send($0, to: destination, tag: tag) }
        }
    }

    /// Sends raw bytes (`MPI_Send` of `MPI_BYTE`). Receive them with `receiveBytes`.
    public func send(bytes: UnsafeRawBufferPointer, to destination: Int, tag: Int = 0) throws {
        try exclusive("send") {
            try validate(destination: destination, "send")
            try validate(tag: tag, "send")
            try transport.send(bytes, to: destination, tag: tag)
        }
    }

    // MARK: Receiving

    /// Receives a value of `type` from `source` with `tag` (`MPI_Probe` + `MPI_Recv`).
    ///
    /// Throws `CommunicatorError.decodingFailed` if the message does not decode as `type`: an
    /// encoded value received as plain numbers, plain numbers received as a `Codable` type, or
    /// an encoded value of another shape.
    public func receive<T: Decodable>(_ type: T.Type = T.self, from source: Source = .any, tag: TagSelector = .any) throws -> T {
        var envelope = MessageInfo(source: 0, tag: 0, byteCount: 0)
        return try receiveValue(type, from: source, tag: tag, envelope: &envelope)
    }

    /// Receives a value with its envelope: the sender, the tag and the size.
    public func receiveMessage<T: Decodable>(
        _ type: T.Type = T.self, from source: Source = .any, tag: TagSelector = .any
    ) throws -> ReceivedMessage<T> {
        var envelope = MessageInfo(source: 0, tag: 0, byteCount: 0)
        let value = try receiveValue(type, from: source, tag: tag, envelope: &envelope)
        return ReceivedMessage(value: value, source: envelope.source, tag: envelope.tag, byteCount: envelope.byteCount)
    }

    /// Receives a value of `type`, and its envelope into `envelope`.
    func receiveValue<T: Decodable>(_ type: T.Type, from source: Source, tag: TagSelector, envelope: inout MessageInfo) throws -> T {
        try exclusive("receive") {
            try validate(source: source, tag: tag, "receive")
            guard plainArrayType(T.self) == nil else {
                envelope = try waitForMessage(from: source, tag: tag, "receive")
                return try decodeMessage(type, envelope)
            }
            // An encoded value: decoded where the backend lets it land, without a probe first.
            do {
                return try transport.receiveEncoded(from: source.rankValue, tag: tag.tagValue) { bytes, info in
                    envelope = info
                    return try decodeEncoded(type, bytes, info)
                }
            } catch let longer as MessageLongerThanReceive {
                // Encoded values that long are announced: this one was sent as something else.
                throw CommunicatorError.decodingFailed(
                    type: String(describing: T.self), source: longer.source, tag: longer.tag, byteCount: longer.byteCount,
                    reason: missingHeaderReason(longer.byteCount),
                    rank: rank)
            }
        }
    }

    /// Receives raw bytes with their envelope, whatever the message holds (no type check).
    ///
    /// A `Codable` value comes whole: its bytes decode with `BinaryDecoder`. (A value holding
    /// large arrays of plain numbers travels as several messages, its arrays sent apart from
    /// their storage; they are received too and put back in place, and `byteCount` is then the
    /// size of the whole. Bytes sent raw that happen to start with swiftpar's 8-byte header are
    /// taken for such a value.)
    public func receiveBytes(from source: Source = .any, tag: TagSelector = .any) throws -> ReceivedMessage<[UInt8]> {
        return try exclusive("receive") {
            try validate(source: source, tag: tag, "receive")
            let info = try waitForMessage(from: source, tag: tag, "receive")
            let bytes = try transport.receiveArray(UInt8.self, matching: info)
            let attached = bytes.withUnsafeBytes { WireHeader.attachmentCount(in: $0) }
            guard attached > 0 else { return ReceivedMessage(value: bytes, source: info.source, tag: info.tag, byteCount: info.byteCount) }
            // The arrays sent apart follow from the same rank with the same tag.
            var parts: [[UInt8]] = []
            for _ in 0..<attached { parts.append(try transport.receiveArray(UInt8.self, from: info.source, tag: info.tag).0) }
            do {
                let whole = try inliningAttachments(bytes, parts)
                return ReceivedMessage(value: whole, source: info.source, tag: info.tag, byteCount: whole.count)
            } catch {
                throw CommunicatorError.decodingFailed(type: "[UInt8]", source: info.source, tag: info.tag, byteCount: info.byteCount,
                                                       reason: "its arrays sent apart cannot be put back: \(describeDecodingError(error))", rank: rank)
            }
        }
    }

    /// Waits until a matching message has arrived and describes it, without receiving it (`MPI_Probe`).
    public func probe(from source: Source = .any, tag: TagSelector = .any) throws -> MessageInfo {
        return try exclusive("probe") {
            try validate(source: source, tag: tag, "probe")
            return try waitForMessage(from: source, tag: tag, "probe")
        }
    }

    /// Describes a matching message if one has arrived, or returns nil at once (`MPI_Iprobe`).
    public func probeNow(from source: Source = .any, tag: TagSelector = .any) throws -> MessageInfo? {
        return try exclusive("probe") {
            try validate(source: source, tag: tag, "probe")
            return try transport.probe(source: source.rankValue, tag: tag.tagValue, wait: false)
        }
    }

    /// Sends `value` to `destination` and receives a value from `source` in one step, without
    /// deadlock even when every rank does the same (`MPI_Sendrecv`).
    public func sendReceive<Outgoing: Encodable, Incoming: Decodable>(
        _ value: Outgoing, to destination: Int, sendTag: Int = 0,
        receiving type: Incoming.Type = Incoming.self, from source: Source = .any, receiveTag: TagSelector = .any
    ) throws -> ReceivedMessage<Incoming> {
        return try exclusive("sendReceive") {
            let request = try startSend(value, to: destination, tag: sendTag)
            let received = try receiveMessage(type, from: source, tag: receiveTag)
            try request.wait()
            return received
        }
    }

    // MARK: Shared by the receives

    /// The messages a value travels as: a plain-number array as itself; anything else encoded,
    /// followed by its large arrays sent apart.
    func outgoingMessages<T: Encodable>(_ value: T) throws -> [OutgoingBytes] {
        if plainArrayType(T.self) != nil { return [OutgoingBytes(owner: value as! any PlainNumberArray)] }
        do {
            return try BinaryEncoder().withEncoded(value, attaching: true) { body, attachments in
                [OutgoingBytes([UInt8](copyingAtFullSpeed: body))] + attachments.map { OutgoingBytes(owner: $0) }
            }
        } catch let error as CommunicatorError {
            throw error
        } catch {
            throw CommunicatorError.encodingFailed(type: String(describing: T.self), reason: "\(error)", rank: rank)
        }
    }

    /// Receives and drops the messages that follow one that was not decoded (arrays sent
    /// apart, or an announced value), so the next receive gets the next value.
    func drainAttachments(_ count: Int, source: Int, tag: Int) throws {
        for _ in 0..<count {
            _ = try transport.receiveArray(UInt8.self, from: source, tag: tag)
        }
    }

    @usableFromInline
    func waitForMessage(from source: Source, tag: TagSelector, _ operation: String) throws -> MessageInfo {
        guard let info = try transport.probe(source: source.rankValue, tag: tag.tagValue, wait: true) else {
            throw CommunicatorError.wouldWaitForever(operation: operation, reason: "no message can arrive", rank: rank)
        }
        return info
    }

    /// Receives the message `info` describes as a `T`.
    func decodeMessage<T: Decodable>(_ type: T.Type, _ info: MessageInfo) throws -> T {
        func failed(_ reason: String) -> CommunicatorError {
            .decodingFailed(type: String(describing: T.self), source: info.source, tag: info.tag,
                            byteCount: info.byteCount, reason: reason, rank: rank)
        }
        if let plainType = plainArrayType(T.self) {
            let width = plainType.elementKind.byteWidth
            guard info.byteCount % width == 0 else {
                // Take the message off the queue before reporting it.
                let bytes = try transport.receiveArray(UInt8.self, matching: info)
                if bytes.withUnsafeBytes({ WireHeader.isPresent(in: $0) }) {
                    try drainAttachments(bytes.withUnsafeBytes { WireHeader.attachmentCount(in: $0) }, source: info.source, tag: info.tag)
                    throw failed("the message holds \(bytes.withUnsafeBytes { describeEncoded($0) }), not plain numbers")
                }
                throw failed("\(info.byteCount) bytes is not a whole number of \(width)-byte elements")
            }
            let values = try plainType.receivedArray(through: transport, matching: info)
            if values.withUnsafeBytes({ WireHeader.isPresent(in: $0) }) {
                try drainAttachments(values.withUnsafeBytes { WireHeader.attachmentCount(in: $0) }, source: info.source, tag: info.tag)
                throw failed("the message holds \(values.withUnsafeBytes { describeEncoded($0) }), not plain numbers")
            }
            return values as! T
        }
        let bytes = try transport.receiveArray(UInt8.self, matching: info)
        return try bytes.withUnsafeBytes { try decodeEncoded(type, $0, info) }
    }

    /// Decodes the bytes of the message `info` describes, which should hold an encoded value,
    /// receiving the arrays sent apart after it.
    func decodeEncoded<T: Decodable>(_ type: T.Type, _ bytes: UnsafeRawBufferPointer, _ info: MessageInfo) throws -> T {
        func failed(_ reason: String) -> CommunicatorError {
            .decodingFailed(type: String(describing: T.self), source: info.source, tag: info.tag,
                            byteCount: info.byteCount, reason: reason, rank: rank)
        }
        let attached = WireHeader.attachmentCount(in: bytes)
        guard attached > 0 else {
            // Callers have ruled out plain-number arrays: only the encoded form is left.
            do {
                return try decodeEncodedValue(type, from: bytes)
            } catch let failure as MessageDecodingFailure {
                throw failed(failure.reason)
            }
        }
        // Arrays sent apart follow from the same rank with the same tag: receive each straight
        // into the array the value is built with.
        let transport = self.transport
        let reader = AttachmentReader(count: attached, receiveNext: { buffer in
            guard let next = try transport.probe(source: info.source, tag: info.tag, wait: true) else { return }
            guard next.byteCount == buffer.count else {
                _ = try transport.receiveArray(UInt8.self, matching: next)
                throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "an array sent apart has \(next.byteCount) bytes, the value says \(buffer.count)"))
            }
            try transport.receive(next, into: buffer)
        }, receiveWhole: {
            try transport.receiveArray(UInt8.self, from: info.source, tag: info.tag).0
        })
        defer { try? reader.drain() }
        do {
            return try BinaryDecoder().decode(type, from: bytes, attachments: reader)
        } catch let error as CommunicatorError {
            throw error
        } catch {
            throw failed(describeDecodingError(error))
        }
    }
}

extension Communicator {
    /// Receives an array of plain numbers into the storage of `values` (`MPI_Recv` into a
    /// buffer), for loops that receive messages of a known size again and again.
    ///
    /// As with `MPI_Recv`, the message may be shorter than the buffer but not longer: `values`
    /// is shortened to the elements received, and a longer message throws
    /// `CommunicatorError.invalidArgument` (MPI truncates it). Use `receive(_:from:tag:)` for
    /// messages of unknown size. Returns the envelope.
    @inlinable @discardableResult
    public func receive<T: PlainNumber>(into values: inout [T], from source: Source = .any, tag: TagSelector = .any) throws -> MessageInfo {
        return try exclusive("receive") {
            let stride = MemoryLayout<T>.stride
            let count = values.count
            let info = try values.withUnsafeMutableBytes {
                try receivePlain(into: $0, stride: stride, elementType: T.self, from: source, tag: tag)
            }
            if info.byteCount / stride < count { values.removeLast(count - info.byteCount / stride) }
            return info
        }
    }

    /// Receives plain numbers of `stride` bytes each into `buffer`, checking that the message
    /// fits and holds plain numbers; a message that does not is taken off the queue (with what
    /// follows it, if it holds an encoded value) and reported.
    @usableFromInline
    func receivePlain(into buffer: UnsafeMutableRawBufferPointer, stride: Int, elementType: Any.Type,
                      from source: Source, tag: TagSelector) throws -> MessageInfo {
        try validate(source: source, tag: tag, "receive")
        let info: MessageInfo
        var written = 0
        var following = 0
        if let direct = try transport.receiveDirectly(from: source.rankValue, tag: tag.tagValue, into: buffer) {
            (info, written, following) = (direct.info, direct.written, direct.following)
        } else {
            info = try waitForMessage(from: source, tag: tag, "receive")
            if info.byteCount > buffer.count {
                // Taken off the queue, as a receive into a short buffer is under MPI.
                following = try transport.receiveArray(UInt8.self, matching: info).withUnsafeBytes { WireHeader.followingCount(in: $0) }
            } else {
                try transport.receive(info, into: UnsafeMutableRawBufferPointer(rebasing: buffer[..<info.byteCount]))
                written = info.byteCount
                following = WireHeader.followingCount(in: UnsafeRawBufferPointer(rebasing: buffer[..<written]))
            }
        }
        func failed(_ reason: String) -> CommunicatorError {
            .decodingFailed(type: "[\(elementType)]", source: info.source, tag: info.tag, byteCount: info.byteCount, reason: reason, rank: rank)
        }
        let received = UnsafeRawBufferPointer(rebasing: buffer[..<written])
        let encoded = WireHeader.isPresent(in: received)
        // An encoded value is not decoded: what was sent apart after it, or the value an
        // announcement announced, goes too, so the next receive gets the next message.
        if following > 0 { try drainAttachments(following, source: info.source, tag: info.tag) }
        guard info.byteCount <= buffer.count else {
            throw CommunicatorError.invalidArgument(
                operation: "receive(into:)",
                reason: "the message from rank \(info.source) with tag \(info.tag) holds \((info.byteCount + stride - 1) / stride) elements, more than the buffer's \(buffer.count / stride); receive messages of unknown size with receive(_:from:tag:)",
                rank: rank)
        }
        if encoded { throw failed("the message holds \(describeEncoded(received)), not plain numbers") }
        guard info.byteCount % stride == 0 else {
            throw failed("\(info.byteCount) bytes is not a whole number of \(stride)-byte elements")
        }
        return info
    }
}
