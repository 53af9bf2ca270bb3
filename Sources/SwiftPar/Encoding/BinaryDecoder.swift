/// Decodes values from swiftpar's compact binary message format.
///
/// Malformed or mismatched bytes never trap: they throw a `DecodingError` that says where in the
/// value decoding stopped.
public struct BinaryDecoder: Sendable {
    /// Creates a decoder.
    public init() {}

    /// Decodes a value of `type` from `bytes`, which must hold exactly one encoded value.
    public func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        try bytes.withUnsafeBytes { try decode(type, from: $0) }
    }

    /// Decodes a value of `type` from raw bytes, which must hold exactly one encoded value.
    public func decode<T: Decodable>(_ type: T.Type, from bytes: UnsafeRawBufferPointer) throws -> T {
        var reader = ByteReader(bytes: bytes)
        let node = try reader.readNode(depth: 0)
        guard reader.offset == bytes.count else {
            throw DecodingError.dataCorrupted(.init(
                codingPath: [], debugDescription: "\(bytes.count - reader.offset) bytes left over after the value"))
        }
        return try DecodedNode.decode(type, from: node, codingPath: [])
    }
}

/// A parsed value. Plain-number arrays point at their bytes in the message being decoded, which
/// outlives every node (nodes never escape `BinaryDecoder.decode`), so they are copied only once.
indirect enum Node {
    case null
    case bool(Bool)
    case signed(Int64)
    case unsigned(UInt64)
    case float32(Float)
    case float64(Double)
    case string(String)
    case plainArray(PlainNumberKind, UnsafeRawBufferPointer)
    case unkeyed([Node])
    case keyed([String: Node], order: [String])

    var kindName: String {
        switch self {
        case .null: return "nil"
        case .bool: return "a Bool"
        case .signed, .unsigned: return "an integer"
        case .float32, .float64: return "a floating-point number"
        case .string: return "a string"
        case .plainArray(let kind, _): return "an array of \(kind)"
        case .unkeyed: return "an unkeyed container"
        case .keyed: return "a keyed container"
        }
    }
}

struct ByteReader {
    let bytes: UnsafeRawBufferPointer
    var offset = 0

    init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    private func corrupted(_ what: String) -> DecodingError {
        .dataCorrupted(.init(codingPath: [], debugDescription: "\(what) at byte \(offset) of \(bytes.count)"))
    }

    mutating func readByte() throws -> UInt8 {
        guard offset < bytes.count else { throw corrupted("unexpected end of message") }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func readVarint() throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let byte = try readByte()
            if shift == 63 && byte > 1 { throw corrupted("varint overflows 64 bits") }
            result |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 { return result }
            shift += 7
            if shift > 63 { throw corrupted("varint too long") }
        }
    }

    mutating func readLength() throws -> Int {
        let n = try readVarint()
        guard n <= UInt64(bytes.count - offset) else { throw corrupted("length \(n) runs past the end") }
        return Int(n)
    }

    mutating func readFixed<T: FixedWidthInteger>(_ type: T.Type) throws -> T {
        let width = MemoryLayout<T>.size
        guard bytes.count - offset >= width else { throw corrupted("unexpected end of message") }
        var value: T = 0
        withUnsafeMutableBytes(of: &value) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + width])) }
        offset += width
        return T(littleEndian: value)
    }

    mutating func readString() throws -> String {
        let n = try readLength()
        let slice = UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + n])
        offset += n
        guard let s = String(validating: slice.bindMemory(to: UInt8.self), as: UTF8.self) else {
            throw corrupted("invalid UTF-8 in a string")
        }
        return s
    }

    mutating func readNode(depth: Int) throws -> Node {
        guard depth < maximumNestingDepth else { throw corrupted("nesting deeper than \(maximumNestingDepth)") }
        let tagByte = try readByte()
        guard let tag = BinaryTag(rawValue: tagByte) else { throw corrupted("unknown value tag \(tagByte)") }
        switch tag {
        case .null: return .null
        case .falseValue: return .bool(false)
        case .trueValue: return .bool(true)
        case .signed: return .signed(unzigzag(try readVarint()))
        case .unsigned: return .unsigned(try readVarint())
        case .float32: return .float32(Float(bitPattern: try readFixed(UInt32.self)))
        case .float64: return .float64(Double(bitPattern: try readFixed(UInt64.self)))
        case .string: return .string(try readString())
        case .plainArray:
            let kindByte = try readByte()
            guard let kind = PlainNumberKind(rawValue: kindByte) else { throw corrupted("unknown number kind \(kindByte)") }
            let count = try readVarint()
            let (byteCount, overflow) = count.multipliedReportingOverflow(by: UInt64(kind.byteWidth))
            guard !overflow, byteCount <= UInt64(bytes.count - offset) else { throw corrupted("array of \(count) \(kind) runs past the end") }
            let block = UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + Int(byteCount)])
            offset += Int(byteCount)
            return .plainArray(kind, block)
        case .unkeyed:
            let count = try readLength() // every element takes at least one byte
            var items: [Node] = []
            items.reserveCapacity(count)
            for _ in 0..<count { items.append(try readNode(depth: depth + 1)) }
            return .unkeyed(items)
        case .keyed:
            let count = try readLength()
            var items: [String: Node] = [:]
            var order: [String] = []
            items.reserveCapacity(count)
            order.reserveCapacity(count)
            for _ in 0..<count {
                let key = try readString()
                if items.updateValue(try readNode(depth: depth + 1), forKey: key) == nil { order.append(key) }
            }
            return .keyed(items, order: order)
        }
    }
}

/// Decoding from a parsed node: the `Decoder` the value's `init(from:)` sees.
final class DecodedNode: Decoder {
    let node: Node
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    init(node: Node, codingPath: [any CodingKey]) {
        self.node = node
        self.codingPath = codingPath
    }

    static func decode<T: Decodable>(_ type: T.Type, from node: Node, codingPath: [any CodingKey]) throws -> T {
        if let arrayType = type as? any PlainNumberArray.Type, case .plainArray(let kind, let block) = node,
           kind == arrayType.elementKind {
            return arrayType.init(rawElementBytes: block) as! T
        }
        if let scalar = try decodeScalar(type, from: node, codingPath: codingPath) { return scalar }
        return try T(from: DecodedNode(node: node, codingPath: codingPath))
    }

    static func mismatch(_ type: Any.Type, _ node: Node, _ path: [any CodingKey]) -> DecodingError {
        .typeMismatch(type, .init(codingPath: path, debugDescription: "expected \(type), found \(node.kindName)"))
    }

    /// Decodes the standard scalar types directly; nil for any other type.
    static func decodeScalar<T>(_ type: T.Type, from node: Node, codingPath: [any CodingKey]) throws -> T? {
        func integer<I: FixedWidthInteger>(_ t: I.Type) throws -> I {
            let converted: I?
            switch node {
            case .signed(let v): converted = I(exactly: v)
            case .unsigned(let v): converted = I(exactly: v)
            case .string(let text) where I.bitWidth == 128: converted = I(text)
            default: throw mismatch(type, node, codingPath)
            }
            guard let value = converted else {
                throw DecodingError.dataCorrupted(.init(codingPath: codingPath, debugDescription: "number does not fit in \(I.self)"))
            }
            return value
        }
        switch type {
        case is Bool.Type:
            guard case .bool(let b) = node else { throw mismatch(type, node, codingPath) }
            return b as? T
        case is String.Type:
            guard case .string(let s) = node else { throw mismatch(type, node, codingPath) }
            return s as? T
        case is Double.Type:
            switch node {
            case .float64(let v): return v as? T
            case .float32(let v): return Double(v) as? T
            default: throw mismatch(type, node, codingPath)
            }
        case is Float.Type:
            switch node {
            case .float32(let v): return v as? T
            case .float64(let v): return Float(v) as? T
            default: throw mismatch(type, node, codingPath)
            }
        case is Int.Type: return try integer(Int.self) as? T
        case is Int64.Type: return try integer(Int64.self) as? T
        case is Int32.Type: return try integer(Int32.self) as? T
        case is Int16.Type: return try integer(Int16.self) as? T
        case is Int8.Type: return try integer(Int8.self) as? T
        case is UInt.Type: return try integer(UInt.self) as? T
        case is UInt64.Type: return try integer(UInt64.self) as? T
        case is UInt32.Type: return try integer(UInt32.self) as? T
        case is UInt16.Type: return try integer(UInt16.self) as? T
        case is UInt8.Type: return try integer(UInt8.self) as? T
        case is Int128.Type: return try integer(Int128.self) as? T
        case is UInt128.Type: return try integer(UInt128.self) as? T
        default: return nil
        }
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .keyed(let items, let order) = node else {
            throw DecodedNode.mismatch([String: Any].self, node, codingPath)
        }
        return KeyedDecodingContainer(KeyedNodeDecoder<Key>(items: items, order: order, codingPath: codingPath))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        switch node {
        case .unkeyed(let items): return UnkeyedNodeDecoder(items: items, codingPath: codingPath)
        case .plainArray(let kind, let block): return UnkeyedNodeDecoder(items: Node.expand(kind, block), codingPath: codingPath)
        default: throw DecodedNode.mismatch([Any].self, node, codingPath)
        }
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        SingleNodeDecoder(node: node, codingPath: codingPath)
    }
}

extension Node {
    /// Element nodes of a plain-number block, for types that decode it element by element.
    static func expand(_ kind: PlainNumberKind, _ raw: UnsafeRawBufferPointer) -> [Node] {
        do {
            func read<T: PlainNumber>(_ t: T.Type, _ make: (T) -> Node) -> [Node] {
                [T](rawElementBytes: raw).map(make)
            }
            switch kind {
            case .int8: return read(Int8.self) { .signed(Int64($0)) }
            case .int16: return read(Int16.self) { .signed(Int64($0)) }
            case .int32: return read(Int32.self) { .signed(Int64($0)) }
            case .int64: return read(Int64.self) { .signed($0) }
            case .uint8: return read(UInt8.self) { .unsigned(UInt64($0)) }
            case .uint16: return read(UInt16.self) { .unsigned(UInt64($0)) }
            case .uint32: return read(UInt32.self) { .unsigned(UInt64($0)) }
            case .uint64: return read(UInt64.self) { .unsigned($0) }
            case .float32: return read(Float.self) { .float32($0) }
            case .float64: return read(Double.self) { .float64($0) }
            }
        }
    }
}

struct KeyedNodeDecoder<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let items: [String: Node]
    let order: [String]
    let codingPath: [any CodingKey]

    var allKeys: [Key] { order.compactMap { Key(stringValue: $0) } }
    func contains(_ key: Key) -> Bool { items[key.stringValue] != nil }

    private func node(for key: Key) throws -> Node {
        guard let node = items[key.stringValue] else {
            throw DecodingError.keyNotFound(key, .init(codingPath: codingPath, debugDescription: "no value for key \"\(key.stringValue)\""))
        }
        return node
    }

    func decodeNil(forKey key: Key) throws -> Bool {
        if case .null = try node(for: key) { return true }
        return false
    }
    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        try DecodedNode.decode(type, from: try node(for: key), codingPath: codingPath + [key])
    }
    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try DecodedNode(node: try node(for: key), codingPath: codingPath + [key]).container(keyedBy: type)
    }
    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try DecodedNode(node: try node(for: key), codingPath: codingPath + [key]).unkeyedContainer()
    }
    func superDecoder() throws -> any Decoder {
        DecodedNode(node: items["super"] ?? .null, codingPath: codingPath)
    }
    func superDecoder(forKey key: Key) throws -> any Decoder {
        DecodedNode(node: items[key.stringValue] ?? .null, codingPath: codingPath + [key])
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

struct UnkeyedNodeDecoder: UnkeyedDecodingContainer {
    let items: [Node]
    let codingPath: [any CodingKey]
    var currentIndex = 0
    var count: Int? { items.count }
    var isAtEnd: Bool { currentIndex >= items.count }

    init(items: [Node], codingPath: [any CodingKey]) {
        self.items = items
        self.codingPath = codingPath
    }

    private mutating func next<T>(_ type: T.Type) throws -> Node {
        guard !isAtEnd else {
            throw DecodingError.valueNotFound(type, .init(
                codingPath: codingPath + [IndexKey(currentIndex)], debugDescription: "unkeyed container has only \(items.count) elements"))
        }
        defer { currentIndex += 1 }
        return items[currentIndex]
    }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd else { throw DecodingError.valueNotFound(Any?.self, .init(codingPath: codingPath, debugDescription: "at end")) }
        if case .null = items[currentIndex] {
            currentIndex += 1
            return true
        }
        return false
    }
    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        let path = codingPath + [IndexKey(currentIndex)]
        return try DecodedNode.decode(type, from: try next(type), codingPath: path)
    }
    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        let path = codingPath + [IndexKey(currentIndex)]
        return try DecodedNode(node: try next([String: Any].self), codingPath: path).container(keyedBy: type)
    }
    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        let path = codingPath + [IndexKey(currentIndex)]
        return try DecodedNode(node: try next([Any].self), codingPath: path).unkeyedContainer()
    }
    mutating func superDecoder() throws -> any Decoder {
        let path = codingPath + [IndexKey(currentIndex)]
        return DecodedNode(node: try next(Any.self), codingPath: path)
    }
}

struct SingleNodeDecoder: SingleValueDecodingContainer {
    let node: Node
    let codingPath: [any CodingKey]

    func decodeNil() -> Bool {
        if case .null = node { return true }
        return false
    }
    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try DecodedNode.decode(type, from: node, codingPath: codingPath)
    }
}
