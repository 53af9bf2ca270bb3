/// Encodes `Encodable` values into swiftpar's compact binary message format.
///
/// This is what every `Codable` message, collective and pool item travels as. It is not JSON or
/// a property list: integers are varints, and arrays of plain numbers (`[Double]`, `[Int32]`, ...)
/// are copied as raw memory in one step.
public struct BinaryEncoder: Sendable {
    /// Creates an encoder.
    public init() {}

    /// Returns the bytes of `value`.
    public func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let item = try EncodingItem.of(value, codingPath: [])
        var output: [UInt8] = []
        output.reserveCapacity(item.estimatedSize)
        item.write(into: &output)
        return output
    }
}

/// One encoded value, kept as a tree until the whole value is known.
enum EncodingItem {
    case null
    case bool(Bool)
    case signed(Int64)
    case unsigned(UInt64)
    case float32(Float)
    case float64(Double)
    case string(String)
    case plainArray(any PlainNumberArray)
    case unkeyed(UnkeyedBox)
    case keyed(KeyedBox)
    /// A slot filled later by a nested encoder (single-value containers, superEncoder).
    case slot(SlotBox)

    static func of<T: Encodable>(_ value: T, codingPath: [any CodingKey]) throws -> EncodingItem {
        if let plain = value as? any PlainNumberArray { return .plainArray(plain) }
        let encoder = ItemEncoder(codingPath: codingPath)
        try value.encode(to: encoder)
        return encoder.slot.item ?? .keyed(KeyedBox())
    }

    var estimatedSize: Int {
        switch self {
        case .plainArray(let a): return 16 + a.count * type(of: a).elementKind.byteWidth
        case .unkeyed(let box): return 8 + box.items.reduce(0) { $0 + $1.estimatedSize }
        case .keyed(let box): return 8 + box.items.reduce(0) { $0 + $1.1.estimatedSize + $1.0.utf8.count + 1 }
        case .slot(let box): return box.item?.estimatedSize ?? 1
        case .string(let s): return 5 + s.utf8.count
        default: return 9
        }
    }

    func write(into out: inout [UInt8]) {
        switch self {
        case .null: out.append(BinaryTag.null.rawValue)
        case .bool(let b): out.append(b ? BinaryTag.trueValue.rawValue : BinaryTag.falseValue.rawValue)
        case .signed(let v):
            out.append(BinaryTag.signed.rawValue)
            out.appendVarint(zigzag(v))
        case .unsigned(let v):
            out.append(BinaryTag.unsigned.rawValue)
            out.appendVarint(v)
        case .float32(let v):
            out.append(BinaryTag.float32.rawValue)
            out.appendLittleEndian(v.bitPattern)
        case .float64(let v):
            out.append(BinaryTag.float64.rawValue)
            out.appendLittleEndian(v.bitPattern)
        case .string(let s):
            out.append(BinaryTag.string.rawValue)
            out.appendString(s)
        case .plainArray(let array):
            out.append(BinaryTag.plainArray.rawValue)
            out.append(type(of: array).elementKind.rawValue)
            out.appendVarint(UInt64(array.count))
            // All supported platforms are little-endian, so the storage is the wire format.
            array.withUnsafeBytes { out.append(contentsOf: $0) }
        case .unkeyed(let box):
            out.append(BinaryTag.unkeyed.rawValue)
            out.appendVarint(UInt64(box.items.count))
            for item in box.items { item.write(into: &out) }
        case .keyed(let box):
            out.append(BinaryTag.keyed.rawValue)
            out.appendVarint(UInt64(box.items.count))
            for (key, item) in box.items {
                out.appendString(key)
                item.write(into: &out)
            }
        case .slot(let box):
            (box.item ?? .null).write(into: &out)
        }
    }
}

final class UnkeyedBox { var items: [EncodingItem] = [] }
final class KeyedBox {
    var items: [(String, EncodingItem)] = []
    var index: [String: Int] = [:]
    func set(_ key: String, _ item: EncodingItem) {
        if let i = index[key] { items[i].1 = item } else {
            index[key] = items.count
            items.append((key, item))
        }
    }
}
final class SlotBox { var item: EncodingItem? }

final class ItemEncoder: Encoder {
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }
    let slot = SlotBox()

    init(codingPath: [any CodingKey]) { self.codingPath = codingPath }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        let box: KeyedBox
        if case .keyed(let existing)? = slot.item { box = existing } else {
            box = KeyedBox()
            slot.item = .keyed(box)
        }
        return KeyedEncodingContainer(KeyedItemEncoder<Key>(box: box, codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        let box: UnkeyedBox
        if case .unkeyed(let existing)? = slot.item { box = existing } else {
            box = UnkeyedBox()
            slot.item = .unkeyed(box)
        }
        return UnkeyedItemEncoder(box: box, codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        SingleItemEncoder(slot: slot, codingPath: codingPath)
    }
}

/// Scalar encodings shared by the three container kinds.
protocol ItemEncoding {
    var codingPath: [any CodingKey] { get }
}

extension ItemEncoding {
    func item<T: Encodable>(for value: T, key: (any CodingKey)?) throws -> EncodingItem {
        switch value {
        case let v as Bool: return .bool(v)
        case let v as String: return .string(v)
        case let v as Double: return .float64(v)
        case let v as Float: return .float32(v)
        case let v as Int: return .signed(Int64(v))
        case let v as Int64: return .signed(v)
        case let v as Int32: return .signed(Int64(v))
        case let v as Int16: return .signed(Int64(v))
        case let v as Int8: return .signed(Int64(v))
        case let v as UInt: return .unsigned(UInt64(v))
        case let v as UInt64: return .unsigned(v)
        case let v as UInt32: return .unsigned(UInt64(v))
        case let v as UInt16: return .unsigned(UInt64(v))
        case let v as UInt8: return .unsigned(UInt64(v))
        // 128-bit integers travel as 64-bit ones when they fit, otherwise as decimal text.
        case let v as Int128: return Int64(exactly: v).map { .signed($0) } ?? .string(String(v))
        case let v as UInt128: return UInt64(exactly: v).map { .unsigned($0) } ?? .string(String(v))
        default:
            return try EncodingItem.of(value, codingPath: key.map { codingPath + [$0] } ?? codingPath)
        }
    }
}

struct KeyedItemEncoder<Key: CodingKey>: KeyedEncodingContainerProtocol, ItemEncoding {
    let box: KeyedBox
    let codingPath: [any CodingKey]

    mutating func encodeNil(forKey key: Key) throws { box.set(key.stringValue, .null) }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        box.set(key.stringValue, try item(for: value, key: key))
    }
    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key)
        -> KeyedEncodingContainer<NestedKey> {
        let nested = KeyedBox()
        box.set(key.stringValue, .keyed(nested))
        return KeyedEncodingContainer(KeyedItemEncoder<NestedKey>(box: nested, codingPath: codingPath + [key]))
    }
    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        let nested = UnkeyedBox()
        box.set(key.stringValue, .unkeyed(nested))
        return UnkeyedItemEncoder(box: nested, codingPath: codingPath + [key])
    }
    mutating func superEncoder() -> any Encoder { superEncoder(named: "super") }
    mutating func superEncoder(forKey key: Key) -> any Encoder { superEncoder(named: key.stringValue) }
    private func superEncoder(named name: String) -> any Encoder {
        let encoder = ItemEncoder(codingPath: codingPath)
        box.set(name, .slot(encoder.slot))
        return encoder
    }
}

struct UnkeyedItemEncoder: UnkeyedEncodingContainer, ItemEncoding {
    let box: UnkeyedBox
    let codingPath: [any CodingKey]
    var count: Int { box.items.count }

    mutating func encodeNil() throws { box.items.append(.null) }
    mutating func encode<T: Encodable>(_ value: T) throws {
        box.items.append(try item(for: value, key: nil))
    }
    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        let nested = KeyedBox()
        box.items.append(.keyed(nested))
        return KeyedEncodingContainer(KeyedItemEncoder<NestedKey>(box: nested, codingPath: codingPath))
    }
    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let nested = UnkeyedBox()
        box.items.append(.unkeyed(nested))
        return UnkeyedItemEncoder(box: nested, codingPath: codingPath)
    }
    mutating func superEncoder() -> any Encoder {
        let encoder = ItemEncoder(codingPath: codingPath)
        box.items.append(.slot(encoder.slot))
        return encoder
    }
}

struct SingleItemEncoder: SingleValueEncodingContainer, ItemEncoding {
    let slot: SlotBox
    let codingPath: [any CodingKey]

    mutating func encodeNil() throws { slot.item = .null }
    mutating func encode<T: Encodable>(_ value: T) throws { slot.item = try item(for: value, key: nil) }
}
