// How communicators turn values into message bytes and back, with the type checks every
// backend makes the same way: a plain-number array travels as itself; anything else is encoded
// behind swiftpar's header; a receiver that expects one and finds the other throws.

/// Why received bytes do not decode as the type asked for, in words.
struct MessageDecodingFailure: Error {
    let reason: String
}

/// What a message that holds an encoded value holds, in words: "an encoded value (a string)".
func describeEncoded(_ bytes: UnsafeRawBufferPointer) -> String {
    guard bytes.count > WireHeader.size else { return "a swiftpar-encoded value" }
    return "a swiftpar-encoded value (\(WireTag.describe(bytes[WireHeader.size])))"
}

/// Decodes `bytes` as a `T` the way every receive does: plain-number arrays from raw elements
/// (refusing bytes that hold an encoded value), anything else from an encoded value.
func decodeValue<T: Decodable>(_ type: T.Type, from bytes: UnsafeRawBufferPointer) throws -> T {
    if let plainType = plainArrayType(T.self) {
        try checkPlain(bytes, as: plainType, typeName: "\(T.self)")
        return plainType.init(rawElementBytes: bytes) as! T
    }
    return try decodeEncodedValue(type, from: bytes)
}

/// Decodes `bytes` as an encoded `T` (not a plain-number array) with no arrays sent apart:
/// checks swiftpar's header, then decodes.
func decodeEncodedValue<T: Decodable>(_ type: T.Type, from bytes: UnsafeRawBufferPointer) throws -> T {
    guard WireHeader.isPresent(in: bytes) else { throw MessageDecodingFailure(reason: missingHeaderReason(bytes.count)) }
    do {
        return try BinaryDecoder().decode(type, from: bytes, attachments: nil)
    } catch {
        throw MessageDecodingFailure(reason: describeDecodingError(error))
    }
}

/// The message of an encoded value whose large arrays were sent apart (`attachments`, in the
/// order sent), with each array put back in its place: the bytes of the same value sent whole,
/// which decode without anything following them.
func inliningAttachments(_ message: [UInt8], _ attachments: [[UInt8]]) throws -> [UInt8] {
    let header = WireHeader.size
    var whole: [UInt8] = []
    whole.reserveCapacity(message.count + attachments.reduce(0) { $0 + $1.count + 12 })
    whole.append(contentsOf: message[..<header])
    whole[7] = 0
    var copied = header
    let scratch = CodecScratch.current
    try message.withUnsafeBytes { bytes in
        let state = scratch.takeDecoder(UnsafeRawBufferPointer(rebasing: bytes[header...]))
        defer { scratch.returnDecoder(state) }
        let context = state.context
        _ = try context.forEachAttachedArray(at: 0, depth: 0) { start, end in
            var position = start + 1
            let kind = try context.plainKind(at: position)
            position += 1
            let count = try context.varint(at: &position)
            let index = try context.varint(at: &position)
            guard index < UInt64(attachments.count) else {
                throw context.corrupted("the value names array \(index) sent apart, but only \(attachments.count) were", at: start)
            }
            let part = attachments[Int(index)]
            guard count.multipliedReportingOverflow(by: UInt64(kind.byteWidth)) == (UInt64(part.count), false) else {
                throw context.corrupted("array \(index) sent apart has \(part.count) bytes, the value says \(count) elements of \(kind.byteWidth)", at: start)
            }
            whole.append(contentsOf: message[copied..<(header + start)])
            whole.append(WireTag.plainArray)
            whole.append(kind.rawValue)
            var rest = count
            while rest >= 0x80 {
                whole.append(UInt8(truncatingIfNeeded: rest) | 0x80)
                rest >>= 7
            }
            whole.append(UInt8(rest))
            whole.append(contentsOf: part)
            copied = header + end
        }
    }
    whole.append(contentsOf: message[copied...])
    return whole
}

/// Why `byteCount` bytes received as an encoded value are not one, in words.
func missingHeaderReason(_ byteCount: Int) -> String {
    "the message holds \(byteCount) bytes without swiftpar's header: it was sent as plain numbers or raw bytes, not as an encoded value"
}

func decodeValue<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
    try bytes.withUnsafeBytes { try decodeValue(type, from: $0) }
}

/// Checks that `bytes` can be plain numbers of `plainType`: a whole number of elements, and not
/// an encoded value.
func checkPlain(_ bytes: UnsafeRawBufferPointer, as plainType: any PlainNumberArray.Type, typeName: String) throws {
    if WireHeader.isPresent(in: bytes) {
        throw MessageDecodingFailure(reason: "the message holds \(describeEncoded(bytes)), not plain numbers")
    }
    let width = plainType.elementKind.byteWidth
    guard bytes.count % width == 0 else {
        throw MessageDecodingFailure(reason: "\(bytes.count) bytes is not a whole number of \(width)-byte elements")
    }
}

@usableFromInline
func describeDecodingError(_ error: any Error, inArray: Bool = false) -> String {
    func path(_ fullPath: [any CodingKey]) -> String {
        // In an array of items or results, the place in it says nothing to the user.
        let codingPath = inArray && fullPath.first?.intValue != nil ? Array(fullPath.dropFirst()) : fullPath
        let keys = codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
        return keys.isEmpty ? "" : " at \(keys)"
    }
    func path(_ context: DecodingError.Context) -> String { path(context.codingPath) }
    if let encodingError = error as? EncodingError, case .invalidValue(_, let context) = encodingError {
        return context.debugDescription + path(context.codingPath)
    }
    guard let decodingError = error as? DecodingError else { return errorText(error) }
    switch decodingError {
    case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
        return context.debugDescription + path(context)
    case .keyNotFound(let key, let context):
        return "no value for key \"\(key.stringValue)\"" + path(context)
    @unknown default:
        return "\(decodingError)"
    }
}
