// The compact binary format for `Codable` messages.
//
// A value is one tag byte followed by its payload:
//
//   0 nil   1 false   2 true
//   3 signed integer, zigzag varint        4 unsigned integer, varint
//   5 Float, 4 bytes little-endian         6 Double, 8 bytes little-endian
//   7 string: varint byte count, UTF-8
//   8 unkeyed container: varint count, then the values
//   9 keyed container: varint count, then (varint key length, key UTF-8, value) pairs
//  10 plain-number array: kind byte, varint count, the elements' raw little-endian bytes
//
// Keys are kept (so optional fields, reordered fields and dictionaries decode), numbers are
// varints, and arrays of plain numbers are one memcpy each way.

enum BinaryTag: UInt8 {
    case null = 0, falseValue, trueValue, signed, unsigned, float32, float64, string, unkeyed, keyed, plainArray
}

/// The deepest nesting the decoder accepts, so hostile input cannot exhaust the stack.
let maximumNestingDepth = 512

extension Array where Element == UInt8 {
    @inline(__always)
    mutating func appendVarint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        append(UInt8(v))
    }

    @inline(__always)
    mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }

    mutating func appendString(_ string: String) {
        var s = string
        s.withUTF8 { utf8 in
            appendVarint(UInt64(utf8.count))
            append(contentsOf: utf8)
        }
    }
}

@inline(__always)
func zigzag(_ v: Int64) -> UInt64 { UInt64(bitPattern: (v << 1) ^ (v >> 63)) }

@inline(__always)
func unzigzag(_ v: UInt64) -> Int64 { Int64(bitPattern: v >> 1) ^ -Int64(bitPattern: v & 1) }
