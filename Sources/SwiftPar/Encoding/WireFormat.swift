// swiftpar's binary format for `Codable` values (version 2).
//
// A message holding an encoded value starts with an 8-byte header: the magic bytes
// B7 73 77 70 61 72 ("·swpar"), the format version (2) and a flags byte (0). Plain-number
// arrays sent on their own never have it: they travel as their raw elements, so that C and
// Fortran ranks can exchange them. A receiver tells the two apart by the header: a value
// received as plain numbers that starts with it, or a value expected as `Codable` without it,
// is a type mismatch.
//
// After the header comes one value. A value is a tag byte and its payload:
//
//   00        nil
//   01, 02    false, true
//   03        signed integer: zigzag varint
//   04        unsigned integer: varint
//   05, 06    Float (4 bytes), Double (8 bytes), little-endian
//   07        string: varint byte count, then UTF-8
//   08        unkeyed container: values, then the end byte FF
//   09        keyed container: entries (a key, then a value), then the end key 0
//   0A        plain-number array: kind byte, varint count, the raw little-endian elements
//   0B, 0C    Int128, UInt128: 16 bytes little-endian
//   0D        keyed container whose writer knew its size: varint entry count, then as 09
//   0E        unkeyed container whose writer knew its size: varint value count, then as 08
//   0F        plain-number array sent apart: kind byte, varint count, varint attachment number
//
// Point-to-point messages send large plain-number arrays (64 KiB and more) inside a value
// apart, as messages of their own that follow the value's message from the same rank with the
// same tag, in order: each is sent from the array's storage and received straight into the new
// array, so a struct holding 4 MiB of Doubles costs what the Doubles alone cost. The header's
// flags byte counts them (at most 255; the rest travel inline).
//   40...7F   an integer from 0 to 63 in the tag itself
//   80...BF   a string of 0 to 63 bytes, its length in the tag, then UTF-8
//
// A key is a varint h: 0 ends the container; h & 3 == 1 refers to interned key number h >> 2;
// h & 3 == 2 defines the next interned key, h >> 2 bytes of UTF-8 following; h & 3 == 3 is a
// key used once (a dictionary's), h >> 2 bytes following. Field names are interned: they travel
// once per message, and then as a byte or two. Containers end with a marker instead of starting
// with a count, so the encoder writes straight into one buffer and never goes back; writers
// that know the size beforehand (arrays and dictionaries of scalars) say it, as a hint.

enum WireTag {
    static let null: UInt8 = 0x00
    static let falseValue: UInt8 = 0x01
    static let trueValue: UInt8 = 0x02
    static let signed: UInt8 = 0x03
    static let unsigned: UInt8 = 0x04
    static let float32: UInt8 = 0x05
    static let float64: UInt8 = 0x06
    static let string: UInt8 = 0x07
    static let unkeyed: UInt8 = 0x08
    static let keyed: UInt8 = 0x09
    static let plainArray: UInt8 = 0x0A
    static let int128: UInt8 = 0x0B
    static let uint128: UInt8 = 0x0C
    static let countedKeyed: UInt8 = 0x0D
    static let countedUnkeyed: UInt8 = 0x0E
    static let attachedArray: UInt8 = 0x0F
    static let smallInteger: UInt8 = 0x40
    static let shortString: UInt8 = 0x80
    static let end: UInt8 = 0xFF

    /// What a tag announces, in words for error messages.
    static func describe(_ tag: UInt8) -> String {
        switch tag {
        case null: return "nil"
        case falseValue, trueValue: return "a Bool"
        case signed, unsigned, int128, uint128, 0x40...0x7F: return "an integer"
        case float32, float64: return "a floating-point number"
        case string, 0x80...0xBF: return "a string"
        case unkeyed, countedUnkeyed: return "an unkeyed container (an array)"
        case keyed, countedKeyed: return "a keyed container (a struct, enum or dictionary)"
        case plainArray, attachedArray: return "an array of plain numbers"
        case end: return "the end of a container"
        default: return "an unknown tag \(tag)"
        }
    }
}

/// The header in front of every encoded value.
enum WireHeader {
    static let size = 8
    static let bytes: [UInt8] = [0xB7, 0x73, 0x77, 0x70, 0x61, 0x72, 0x02, 0x00]
    /// The magic part of the header (its first six bytes) as a little-endian word.
    static let magic: UInt64 = 0x0000_7261_7077_73B7
    static let version: UInt8 = 2

    /// The number of arrays sent apart after the message whose header is at the start of `bytes`.
    static func attachmentCount(in bytes: UnsafeRawBufferPointer) -> Int {
        isPresent(in: bytes) ? Int(bytes[7]) : 0
    }

    /// The smallest plain-number array sent apart, in bytes.
    static let attachmentThreshold = 64 << 10

    /// Whether `bytes` starts with the header's magic (of any version).
    @inline(__always)
    static func isPresent(in bytes: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count >= size else { return false }
        return bytes.loadUnaligned(as: UInt64.self) & 0x0000_FFFF_FFFF_FFFF == magic
    }

    /// How many messages follow the one `bytes` starts: its arrays sent apart, and for an
    /// announcement the value itself.
    static func followingCount(in bytes: UnsafeRawBufferPointer) -> Int {
        attachmentCount(in: bytes) + (Announcement.length(in: bytes) != nil ? 1 : 0)
    }
}

/// What goes before a long encoded value sent point to point under MPI: its length, so that a
/// receiver that posts one receive of a fixed size for a value (`MPITransport.eagerBytes`,
/// instead of probing for its size first) can receive a longer one whole. 16 bytes: the header with the version's
/// top bit set (0x82) and the value's attachment count, then the value's length as a
/// little-endian UInt64. The value follows as a message of its own, from the same rank with the
/// same tag; probes never report an announcement, only the value.
enum Announcement {
    static let size = 16

    /// The 16 bytes announcing an encoded value of `length` bytes whose header is `header`.
    static func bytes(announcing header: UnsafeRawBufferPointer, length: Int) -> [UInt8] {
        var result = WireHeader.bytes
        result[6] = WireHeader.version | 0x80
        result[7] = header[7]
        withUnsafeBytes(of: UInt64(length).littleEndian) { result.append(contentsOf: $0) }
        return result
    }

    /// The announced length, if `bytes` is an announcement.
    static func length(in bytes: UnsafeRawBufferPointer) -> Int? {
        guard bytes.count == size, WireHeader.isPresent(in: bytes), bytes[6] == WireHeader.version | 0x80 else { return nil }
        let length = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        return length <= UInt64(Int.max) ? Int(length) : nil
    }
}

/// The deepest nesting the decoder accepts, so hostile input cannot exhaust the stack.
let maximumNestingDepth = 512

@inline(__always)
func zigzag(_ v: Int64) -> UInt64 { UInt64(bitPattern: (v << 1) ^ (v >> 63)) }

@inline(__always)
func unzigzag(_ v: UInt64) -> Int64 { Int64(bitPattern: v >> 1) ^ -Int64(bitPattern: v & 1) }
