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
