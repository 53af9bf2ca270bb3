// Most strings in messages are short ASCII: words, names, keys. The standard library keeps a
// string of up to 15 UTF-8 bytes inline, in its own two words, with no allocation; but making
// one from bytes, or reading one's bytes, goes through its general UTF-8 paths, which cost more
// than everything else the codec does with such a string. These read and build the inline form
// directly — the bytes, then a byte of flags and count — after checking once, against strings
// the standard library made itself, that this toolchain lays small strings out that way. Where
// it does not, every string takes the general path.

enum SmallASCIIString {
    /// The longest string kept inline.
    static let capacity = 15

    /// The top byte of an inline ASCII string's second word, without the count: small (0x20),
    /// ASCII (0x40), immortal (0x80).
    private static let flags: UInt64 = 0xE0

    /// Whether this standard library stores small ASCII strings as read and built here
    /// (checked once).
    static let isAvailable: Bool = {
        guard MemoryLayout<String>.size == 16, MemoryLayout<String>.alignment == 8 else { return false }
        let samples = ["", "a", "id", "word", "hello", "weight", "word100123", "0123456789abcde", "~ !{}\u{7F}\u{01}"]
        for sample in samples {
            let bytes = Array(sample.utf8)
            let reference = bytes.withUnsafeBufferPointer { String(decoding: $0, as: UTF8.self) }
            let built = bytes.withUnsafeBytes { raw -> String in
                var padded = [UInt8](repeating: 0xFF, count: 16)
                padded.replaceSubrange(0..<raw.count, with: raw)
                return padded.withUnsafeBytes { make(words: $0.loadUnaligned(as: (UInt64, UInt64).self), count: raw.count) }
            }
            guard built == reference, built.utf8.count == bytes.count, Array(built.utf8) == bytes,
                  built.hashValue == reference.hashValue, built.unicodeScalars.count == bytes.count,
                  (built + "x").utf8.count == bytes.count + 1 else { return false }
            guard let words = inlineWords(of: reference), words.count == bytes.count,
                  withUnsafeBytes(of: words.words, { Array($0.prefix(bytes.count)) }) == bytes else { return false }
        }
        // Strings that are not small ASCII are never taken for it.
        for other in [String(repeating: "x", count: 16), "héllo", String(repeating: "long string ", count: 4)] {
            guard inlineWords(of: other) == nil else { return false }
        }
        return true
    }()

    /// The string whose first `count` bytes (≤ 15, all below 0x80) are those of `words` in
    /// memory order; the rest of `words` is ignored.
    @inline(__always)
    static func make(words: (UInt64, UInt64), count: Int) -> String {
        // Little-endian: byte k of the string is byte k of the two words.
        let low = count >= 8 ? words.0 : words.0 & ((1 << (8 * UInt64(count))) &- 1)
        let highBytes = max(count - 8, 0)
        let high = (words.1 & ((1 << (8 * UInt64(highBytes))) &- 1)) | (flags | UInt64(count)) << 56
        return unsafeBitCast((low, high), to: String.self)
    }

    /// The string of the `count` bytes at `offset` of `base`, if they are ASCII and few enough
    /// to be kept inline; reads no byte at or past `end`.
    @inline(__always)
    static func make(_ base: UnsafeRawPointer, offset: Int, count: Int, end: Int) -> String? {
        guard count <= capacity, isAvailable else { return nil }
        let words: (UInt64, UInt64)
        if end - offset >= 16 {
            words = (base.loadUnaligned(fromByteOffset: offset, as: UInt64.self),
                     base.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self))
        } else {
            var copied: (UInt64, UInt64) = (0, 0)
            withUnsafeMutableBytes(of: &copied) { $0.baseAddress!.copyMemory(from: base + offset, byteCount: count) }
            words = copied
        }
        let string = make(words: words, count: count)
        // ASCII: no byte of the string (now alone in its words) has its top bit set.
        let (low, high) = unsafeBitCast(string, to: (UInt64, UInt64).self)
        guard (low | (high & 0x00FF_FFFF_FFFF_FFFF)) & 0x8080_8080_8080_8080 == 0 else { return nil }
        return string
    }

    /// The two words of `string` and its length, if it is kept inline as ASCII.
    @inline(__always)
    static func inlineWords(of string: String) -> (words: (UInt64, UInt64), count: Int)? {
        let words = unsafeBitCast(string, to: (UInt64, UInt64).self)
        let top = words.1 >> 56
        guard top & 0xF0 == flags else { return nil }
        return (words, Int(top & 0x0F))
    }
}
