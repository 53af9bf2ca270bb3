/// Encodes `Encodable` values into swiftpar's binary message format (see WireFormat.swift).
///
/// This is what every `Codable` message, collective and pool item travels as. It is not JSON or
/// a property list: integers are varints, field names travel once per message, and arrays of
/// plain numbers (`[Double]`, `[Int32]`, ...) are copied as raw memory in one step. The bytes
/// start with a header that receivers check, so a value received as the wrong kind of message
/// throws instead of decoding garbage.
public struct BinaryEncoder: Sendable {
    /// Creates an encoder.
    public init() {}

    /// Returns the bytes of `value`, header included.
    public func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        try withEncoded(value) { [UInt8](copyingAtFullSpeed: $0) }
    }

    /// Calls `body` with the bytes of `value`, header included, without copying them into an array.
    func withEncoded<T: Encodable, R>(_ value: T, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        try withEncoded(value, attaching: false) { bytes, _ in try body(bytes) }
    }

    /// Calls `body` with the bytes of `value` and, when `attaching`, the large plain-number
    /// arrays sent apart (see WireFormat.swift), whose count the header's flags byte holds.
    func withEncoded<T: Encodable, R>(_ value: T, attaching: Bool, scratch: CodecScratch = .current,
                                      _ body: (UnsafeRawBufferPointer, [any PlainNumberArray]) throws -> R) throws -> R {
        let state = scratch.takeEncoder()
        defer { scratch.returnEncoder(state) }
        let context = state.context
        context.appendHeader()
        context.pointee.attaching = attaching
        do {
            try context.encode(value)
            try context.close(downTo: 0)
        } catch is ContainersOutOfOrder {
            // A hand-written encode(to:) went back to a container it had left: build it first.
            let fallback = EncodingState(scratch: scratch)
            fallback.context.appendHeader()
            try TreeEncoder.node(for: value).write(to: fallback.context)
            return try body(fallback.bytes, [])
        }
        if !state.attachments.isEmpty {
            context.pointee.base.storeBytes(of: UInt8(state.attachments.count), toByteOffset: 7, as: UInt8.self)
        }
        return try body(state.bytes, state.attachments)
    }
}

/// Decodes values from swiftpar's binary message format.
///
/// Malformed or mismatched bytes never trap: they throw a `DecodingError` that says where in the
/// value decoding stopped, and the decoder allocates no more than the bytes could hold.
public struct BinaryDecoder: Sendable {
    /// Creates a decoder.
    public init() {}

    /// Decodes a value of `type` from `bytes`, which must hold exactly one encoded value.
    public func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        try bytes.withUnsafeBytes { try decode(type, from: $0) }
    }

    /// Decodes a value of `type` from raw bytes, which must hold exactly one encoded value.
    public func decode<T: Decodable>(_ type: T.Type, from bytes: UnsafeRawBufferPointer) throws -> T {
        try decode(type, from: bytes, attachments: nil)
    }

    /// Decodes a value whose large plain-number arrays were sent apart; `attachments` receives
    /// attachment `n` of a given byte count into a buffer.
    func decode<T: Decodable>(_ type: T.Type, from bytes: UnsafeRawBufferPointer, attachments: AttachmentReader?) throws -> T {
        guard WireHeader.isPresent(in: bytes) else {
            throw DecodingError.dataCorrupted(.init(
                codingPath: [], debugDescription: bytes.count < WireHeader.size
                    ? "\(bytes.count) bytes is too short to hold an encoded value"
                    : "the bytes do not start with swiftpar's header: they are not an encoded value"))
        }
        let version = bytes[6]
        guard version == WireHeader.version else {
            throw DecodingError.dataCorrupted(.init(
                codingPath: [], debugDescription: "the value is in version \(version) of swiftpar's format; this program reads version \(WireHeader.version)"))
        }
        let scratch = CodecScratch.current
        let state = scratch.takeDecoder(UnsafeRawBufferPointer(rebasing: bytes[WireHeader.size...]))
        state.attachments = attachments
        defer {
            state.attachments = nil
            scratch.returnDecoder(state)
        }
        var offset = 0
        let context = state.context
        let value = try context.decode(type, at: &offset, depth: 0)
        guard offset == context.pointee.count else {
            throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "\(context.pointee.count - offset) bytes left over after the value"))
        }
        return value
    }
}
