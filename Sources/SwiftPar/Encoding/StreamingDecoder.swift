#if canImport(Glibc)
import Glibc
#endif

// The decoder: reads a value straight out of the received bytes, in the format of
// WireFormat.swift, as the value's `init(from:)` asks for its parts. Nothing is parsed ahead:
// fields read in the order they were written (as synthesized code does) cost one comparison
// of the key each; a key asked for out of order, `contains`, `allKeys` and absent optional
// fields make the container index its entries once. Malformed bytes throw a `DecodingError`;
// nothing is allocated beyond what the bytes themselves could hold.

/// Everything one decoding shares: the bytes and the interned keys met so far.
final class DecodingState {
    let base: UnsafeRawPointer
    let count: Int
    /// Interned keys, in the order their definitions appear in the message.
    private(set) var internedKeys: [String] = []
    /// Where each interned key is defined, ascending.
    private var definitionOffsets: [Int] = []
    private var valueDecoders: [ValueDecoder] = []

    init(_ bytes: UnsafeRawBufferPointer) {
        base = bytes.baseAddress ?? UnsafeRawPointer(bitPattern: 8)!
        count = bytes.count
    }

    // MARK: Reading

    func corrupted(_ what: String, at offset: Int) -> DecodingError {
        .dataCorrupted(.init(codingPath: [], debugDescription: "\(what) at byte \(offset + WireHeader.size) of \(count + WireHeader.size)"))
    }

    @inline(__always)
    func byte(at offset: Int) throws -> UInt8 {
        guard offset < count else { throw corrupted("unexpected end of message", at: offset) }
        return base.load(fromByteOffset: offset, as: UInt8.self)
    }

    @inline(__always)
    func varint(at offset: inout Int) throws -> UInt64 {
        if offset < count {
            let first = base.load(fromByteOffset: offset, as: UInt8.self)
            if first < 0x80 {
                offset += 1
                return UInt64(first)
            }
        }
        return try longVarint(at: &offset)
    }

    private func longVarint(at offset: inout Int) throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let b = try byte(at: offset)
            offset += 1
            if shift == 63 && b > 1 { throw corrupted("varint overflows 64 bits", at: offset - 1) }
            result |= UInt64(b & 0x7F) << shift
            if b < 0x80 { return result }
            shift += 7
            if shift > 63 { throw corrupted("varint too long", at: offset - 1) }
        }
    }

    /// A length that must fit in the bytes left after `offset`.
    @inline(__always)
    func length(_ value: UInt64, at offset: Int) throws -> Int {
        guard value <= UInt64(count - offset) else { throw corrupted("length \(value) runs past the end", at: offset) }
        return Int(value)
    }

    @inline(__always)
    func fixed<T: FixedWidthInteger>(_ type: T.Type, at offset: inout Int) throws -> T {
        let width = MemoryLayout<T>.size
        guard count - offset >= width else { throw corrupted("unexpected end of message", at: offset) }
        let value = T(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: T.self))
        offset += width
        return value
    }

    func text(at offset: Int, length: Int) throws -> String {
        let bytes = UnsafeBufferPointer(start: (base + offset).assumingMemoryBound(to: UInt8.self), count: length)
        guard let text = String(validating: bytes, as: UTF8.self) else { throw corrupted("invalid UTF-8 in a string", at: offset) }
        return text
    }

    // MARK: Keys

    /// A parsed key: an interned one (by number), or the bytes of one used once; nil at the end.
    enum Key {
        case interned(Int)
        case literal(offset: Int, length: Int)
    }

    /// Reads the key at `offset`, registering definitions met for the first time.
    @inline(__always)
    func key(at offset: inout Int) throws -> Key? {
        let start = offset
        let header = try varint(at: &offset)
        if header == 0 { return nil }
        switch header & 3 {
        case 1:
            let index = Int(header >> 2)
            guard index < internedKeys.count else { throw corrupted("key number \(index) is not defined", at: start) }
            return .interned(index)
        case 2:
            let n = try length(header >> 2, at: offset)
            let index: Int
            if let last = definitionOffsets.last, start <= last {
                guard let known = binarySearch(definitionOffsets, start) else { throw corrupted("misplaced key definition", at: start) }
                index = known
            } else {
                internedKeys.append(try text(at: offset, length: n))
                definitionOffsets.append(start)
                index = internedKeys.count - 1
            }
            offset += n
            return .interned(index)
        case 3:
            let n = try length(header >> 2, at: offset)
            defer { offset += n }
            return .literal(offset: offset, length: n)
        default:
            throw corrupted("invalid key header \(header)", at: start)
        }
    }

    func name(of key: Key) throws -> String {
        switch key {
        case .interned(let index): return internedKeys[index]
        case .literal(let offset, let length): return try text(at: offset, length: length)
        }
    }

    /// Whether `key` is `name`, without making a String for keys used once.
    @inline(__always)
    func key(_ key: Key, is name: String) -> Bool {
        switch key {
        case .interned(let index):
            return internedKeys[index] == name
        case .literal(let offset, let length):
            var name = name
            return name.withUTF8 { utf8 in
                utf8.count == length && (length == 0 || memcmp(base + offset, utf8.baseAddress!, length) == 0)
            }
        }
    }

    // MARK: Skipping

    /// The offset just past the value starting at `offset`.
    func skipValue(at offset: Int, depth: Int) throws -> Int {
        guard depth < maximumNestingDepth else { throw corrupted("nesting deeper than \(maximumNestingDepth)", at: offset) }
        var position = offset
        let tag = try byte(at: position)
        position += 1
        switch tag {
        case WireTag.null, WireTag.falseValue, WireTag.trueValue, 0x40...0x7F:
            return position
        case WireTag.signed, WireTag.unsigned:
            _ = try varint(at: &position)
            return position
        case WireTag.float32: return try advance(position, by: 4)
        case WireTag.float64: return try advance(position, by: 8)
        case WireTag.int128, WireTag.uint128: return try advance(position, by: 16)
        case WireTag.string:
            let n = try length(try varint(at: &position), at: position)
            return position + n
        case 0x80...0xBF:
            return try advance(position, by: Int(tag - WireTag.shortString))
        case WireTag.plainArray:
            let kind = try plainKind(at: position)
            position += 1
            let elements = try varint(at: &position)
            let (bytes, overflow) = elements.multipliedReportingOverflow(by: UInt64(kind.byteWidth))
            guard !overflow else { throw corrupted("array of \(elements) \(kind) runs past the end", at: position) }
            return position + (try length(bytes, at: position))
        case WireTag.unkeyed:
            while try byte(at: position) != WireTag.end {
                position = try skipValue(at: position, depth: depth + 1)
            }
            return position + 1
        case WireTag.keyed:
            while try key(at: &position) != nil {
                position = try skipValue(at: position, depth: depth + 1)
            }
            return position
        default:
            throw corrupted("unknown value tag \(tag)", at: offset)
        }
    }

    private func advance(_ position: Int, by n: Int) throws -> Int {
        guard count - position >= n else { throw corrupted("unexpected end of message", at: position) }
        return position + n
    }

    func plainKind(at offset: Int) throws -> PlainNumberKind {
        let raw = try byte(at: offset)
        guard let kind = PlainNumberKind(rawValue: raw) else { throw corrupted("unknown number kind \(raw)", at: offset) }
        return kind
    }

    // MARK: Values

    func mismatch(_ type: Any.Type, found tag: UInt8, at offset: Int) -> DecodingError {
        .typeMismatch(type, .init(codingPath: [], debugDescription: "expected \(type), found \(WireTag.describe(tag))"))
    }

    /// Decodes a value of `type` at `offset` and moves `offset` past it.
    @inline(__always)
    func decode<T: Decodable>(_ type: T.Type, at offset: inout Int, depth: Int) throws -> T {
        if T.self == Int.self { return try integer(Int.self, at: &offset) as! T }
        if T.self == String.self { return try string(at: &offset) as! T }
        if T.self == Double.self { return try double(at: &offset) as! T }
        if T.self == Bool.self { return try bool(at: &offset) as! T }
        return try decodeOther(type, at: &offset, depth: depth)
    }

    private func decodeOther<T: Decodable>(_ type: T.Type, at offset: inout Int, depth: Int) throws -> T {
        switch type {
        case is Float.Type: return try float(at: &offset) as! T
        case is Int64.Type: return try integer(Int64.self, at: &offset) as! T
        case is Int32.Type: return try integer(Int32.self, at: &offset) as! T
        case is Int16.Type: return try integer(Int16.self, at: &offset) as! T
        case is Int8.Type: return try integer(Int8.self, at: &offset) as! T
        case is UInt.Type: return try integer(UInt.self, at: &offset) as! T
        case is UInt64.Type: return try integer(UInt64.self, at: &offset) as! T
        case is UInt32.Type: return try integer(UInt32.self, at: &offset) as! T
        case is UInt16.Type: return try integer(UInt16.self, at: &offset) as! T
        case is UInt8.Type: return try integer(UInt8.self, at: &offset) as! T
        case is Int128.Type: return try integer(Int128.self, at: &offset) as! T
        case is UInt128.Type: return try integer(UInt128.self, at: &offset) as! T
        default: break
        }
        guard depth < maximumNestingDepth else { throw corrupted("nesting deeper than \(maximumNestingDepth)", at: offset) }
        if let arrayType = type as? any PlainNumberArray.Type, try byte(at: offset) == WireTag.plainArray,
           try plainKind(at: offset + 1) == arrayType.elementKind {
            var position = offset + 2
            let elements = try varint(at: &position)
            let (bytes, overflow) = elements.multipliedReportingOverflow(by: UInt64(arrayType.elementKind.byteWidth))
            guard !overflow else { throw corrupted("array of \(elements) elements runs past the end", at: position) }
            let n = try length(bytes, at: position)
            offset = position + n
            return arrayType.init(rawElementBytes: UnsafeRawBufferPointer(start: base + position, count: n)) as! T
        }
        if let dictionaryType = type as? any StringKeyedDictionary.Type {
            return try dictionaryType.decodeEntries(from: self, at: &offset, depth: depth) as! T
        }
        let decoder = valueDecoder(at: offset, depth: depth)
        let value = try T(from: decoder)
        offset = try decoder.end()
        return value
    }

    /// The reusable decoder for values at `depth`, positioned at `offset`.
    private func valueDecoder(at offset: Int, depth: Int) -> ValueDecoder {
        while valueDecoders.count <= depth { valueDecoders.append(ValueDecoder(state: self, depth: valueDecoders.count)) }
        let decoder = valueDecoders[depth]
        decoder.reset(offset: offset)
        return decoder
    }

    func integer<I: FixedWidthInteger>(_ type: I.Type, at offset: inout Int) throws -> I {
        let start = offset
        let tag = try byte(at: offset)
        offset += 1
        let converted: I?
        switch tag {
        case 0x40...0x7F: return I(tag - WireTag.smallInteger)
        case WireTag.signed: converted = I(exactly: unzigzag(try varint(at: &offset)))
        case WireTag.unsigned: converted = I(exactly: try varint(at: &offset))
        case WireTag.int128: converted = I(exactly: try fixed(Int128.self, at: &offset))
        case WireTag.uint128: converted = I(exactly: try fixed(UInt128.self, at: &offset))
        default: throw mismatch(I.self, found: tag, at: start)
        }
        guard let value = converted else {
            throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "number does not fit in \(I.self)"))
        }
        return value
    }

    func string(at offset: inout Int) throws -> String {
        let tag = try byte(at: offset)
        var position = offset + 1
        let n: Int
        if tag & 0xC0 == WireTag.shortString {
            n = try length(UInt64(tag & 0x3F), at: position)
        } else if tag == WireTag.string {
            n = try length(try varint(at: &position), at: position)
        } else {
            throw mismatch(String.self, found: tag, at: offset)
        }
        let value = try text(at: position, length: n)
        offset = position + n
        return value
    }

    func double(at offset: inout Int) throws -> Double {
        let tag = try byte(at: offset)
        switch tag {
        case WireTag.float64:
            offset += 1
            return Double(bitPattern: try fixed(UInt64.self, at: &offset))
        case WireTag.float32:
            offset += 1
            return Double(Float(bitPattern: try fixed(UInt32.self, at: &offset)))
        case WireTag.signed, WireTag.unsigned, 0x40...0x7F:
            return Double(try integer(Int64.self, at: &offset))
        default:
            throw mismatch(Double.self, found: tag, at: offset)
        }
    }

    func float(at offset: inout Int) throws -> Float {
        let tag = try byte(at: offset)
        switch tag {
        case WireTag.float32:
            offset += 1
            return Float(bitPattern: try fixed(UInt32.self, at: &offset))
        case WireTag.float64:
            offset += 1
            return Float(Double(bitPattern: try fixed(UInt64.self, at: &offset)))
        case WireTag.signed, WireTag.unsigned, 0x40...0x7F:
            return Float(try integer(Int64.self, at: &offset))
        default:
            throw mismatch(Float.self, found: tag, at: offset)
        }
    }

    func bool(at offset: inout Int) throws -> Bool {
        let tag = try byte(at: offset)
        guard tag == WireTag.trueValue || tag == WireTag.falseValue else { throw mismatch(Bool.self, found: tag, at: offset) }
        offset += 1
        return tag == WireTag.trueValue
    }
}

func binarySearch(_ sorted: [Int], _ value: Int) -> Int? {
    var low = 0
    var high = sorted.count - 1
    while low <= high {
        let middle = (low + high) / 2
        if sorted[middle] == value { return middle }
        if sorted[middle] < value { low = middle + 1 } else { high = middle - 1 }
    }
    return nil
}

extension DecodingError {
    /// The same error with `key` in front of its coding path.
    func under(_ key: any CodingKey) -> DecodingError {
        switch self {
        case .typeMismatch(let type, let context):
            return .typeMismatch(type, context.under(key))
        case .valueNotFound(let type, let context):
            return .valueNotFound(type, context.under(key))
        case .keyNotFound(let missing, let context):
            return .keyNotFound(missing, context.under(key))
        case .dataCorrupted(let context):
            return .dataCorrupted(context.under(key))
        @unknown default:
            return self
        }
    }
}

extension DecodingError.Context {
    func under(_ key: any CodingKey) -> DecodingError.Context {
        DecodingError.Context(codingPath: [key] + codingPath, debugDescription: debugDescription, underlyingError: underlyingError)
    }
}

/// The index of an element in an unkeyed container, for coding paths.
struct IndexKey: CodingKey {
    let intValue: Int?
    var stringValue: String { "Index \(intValue ?? 0)" }
    init(_ index: Int) { intValue = index }
    init?(stringValue: String) { return nil }
    init?(intValue: Int) { self.intValue = intValue }
}
