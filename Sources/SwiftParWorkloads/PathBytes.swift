/// A file name as the file system stores it: bytes, which need not be UTF-8.
///
/// Paths travel between ranks and reach the output unchanged; only messages shown to a person
/// decode them, quoted as coreutils quote names they cannot show plainly.
public struct PathBytes: Hashable, Comparable, Codable, Sendable, CustomStringConvertible {
    /// The bytes of the path, without a terminating NUL.
    public var bytes: [UInt8]

    /// A path of these bytes.
    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// A path spelled as UTF-8.
    public init(_ string: String) { bytes = Array(string.utf8) }

    /// Byte order, as `sort` in the C locale orders names.
    public static func < (lhs: PathBytes, rhs: PathBytes) -> Bool {
        lhs.bytes.lexicographicallyPrecedes(rhs.bytes)
    }

    /// `self/name`, with one slash between.
    public func appending(_ name: [UInt8]) -> PathBytes {
        var joined = bytes
        if joined.last != UInt8(ascii: "/") { joined.append(UInt8(ascii: "/")) }
        joined.append(contentsOf: name)
        return PathBytes(joined)
    }

    /// Calls `body` with the path as a NUL-terminated C string.
    public func withCString<R>(_ body: (UnsafePointer<CChar>) throws -> R) rethrows -> R {
        try (bytes + [0]).withUnsafeBufferPointer { buffer in
            try buffer.withMemoryRebound(to: CChar.self) { try body($0.baseAddress!) }
        }
    }

    /// The path as text when it is valid UTF-8, else nil.
    public var string: String? { String(validating: bytes, as: UTF8.self) }

    /// The path for a message to a person: as it is when it is plain, otherwise in shell quotes
    /// with bytes that are not printable UTF-8 written as `$'\ooo'`, as coreutils write names.
    public var description: String { quotedForDisplay(bytes) }
}

/// `bytes` quoted the way coreutils' shell-escape style quotes file names in messages.
func quotedForDisplay(_ bytes: [UInt8]) -> String {
    let plain: (UInt8) -> Bool = { byte in
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
            || "/._-+,:@%=".utf8.contains(byte)
    }
    if !bytes.isEmpty, bytes.allSatisfy(plain) { return String(decoding: bytes, as: UTF8.self) }
    // Split into runs that are printable UTF-8 and runs of bytes that are not.
    var result = ""
    var index = 0
    var quoted = ""
    func closeQuoted() {
        if !quoted.isEmpty { result += "'" + quoted + "'" }
        quoted = ""
    }
    while index < bytes.count {
        if let (scalar, length) = decodeScalar(bytes, at: index), scalar.value >= 0x20, scalar.value != 0x7F {
            if scalar == "'" {
                closeQuoted()
                result += "\"'\""
            } else {
                quoted.unicodeScalars.append(scalar)
            }
            index += length
        } else {
            closeQuoted()
            let octal = String(bytes[index], radix: 8)
            result += "$'\\" + String(repeating: "0", count: 3 - octal.count) + octal + "'"
            index += 1
        }
    }
    closeQuoted()
    return result.isEmpty ? "''" : result
}

/// The Unicode scalar whose UTF-8 encoding starts at `index`, and its length; nil for bytes
/// that are not valid UTF-8 there.
func decodeScalar(_ bytes: [UInt8], at index: Int) -> (Unicode.Scalar, Int)? {
    let first = bytes[index]
    let length: Int
    switch first {
    case 0x00...0x7F: return (Unicode.Scalar(first), 1)
    case 0xC2...0xDF: length = 2
    case 0xE0...0xEF: length = 3
    case 0xF0...0xF4: length = 4
    default: return nil
    }
    guard index + length <= bytes.count else { return nil }
    guard let text = String(validating: bytes[index..<index + length], as: UTF8.self), let scalar = text.unicodeScalars.first else { return nil }
    return (scalar, length)
}
