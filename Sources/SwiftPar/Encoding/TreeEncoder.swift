// The encoder for values whose `encode(to:)` fills containers out of order (goes back to a
// container after opening another): it builds the value as a tree first, then writes the
// same bytes the streaming encoder writes. Synthesized `Codable` code never needs it.

/// A value being built.
final class TreeNode {
    enum Content {
        case empty
        case scalar((Writer) -> Void)
        case keyed([(key: String, interned: Bool, node: TreeNode)])
        case unkeyed([TreeNode])
    }
    @exclusivity(unchecked) var content: Content = .empty

    func write(to state: Writer) {
        switch content {
        case .empty:
            state.append(WireTag.keyed, 0)
        case .scalar(let write):
            write(state)
        case .keyed(let entries):
            state.append(WireTag.keyed)
            for entry in entries {
                state.writeKey(entry.key, cache: entry.interned ? state.pointee.owner!._withUnsafeGuaranteedRef { Unmanaged.passUnretained($0.treeKeys) } : nil)
                entry.node.write(to: state)
            }
            state.append(0)
        case .unkeyed(let items):
            state.append(WireTag.unkeyed)
            for item in items { item.write(to: state) }
            state.append(WireTag.end)
        }
    }

    func setKeyed(_ key: String, interned: Bool, _ node: TreeNode) {
        if case .keyed(var entries) = content {
            if let index = entries.firstIndex(where: { $0.key == key }) {
                entries[index].node = node
            } else {
                entries.append((key, interned, node))
            }
            content = .keyed(entries)
        } else {
            content = .keyed([(key, interned, node)])
        }
    }

    func append(_ node: TreeNode) {
        if case .unkeyed(var items) = content {
            items.append(node)
            content = .unkeyed(items)
        } else {
            content = .unkeyed([node])
        }
    }

    var count: Int {
        if case .unkeyed(let items) = content { return items.count }
        return 0
    }
}

/// The key type tree entries are interned under (any one will do: keys are interned by name).
struct TreeKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { return nil }
}

final class TreeEncoder: Encoder {
    let node: TreeNode
    var codingPath: [any CodingKey] { [] }
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    init(node: TreeNode) { self.node = node }

    /// A tree node holding `value`.
    static func node<T: Encodable>(for value: T) throws -> TreeNode {
        let node = TreeNode()
        switch value {
        case let v as String: node.content = .scalar { $0.writeString(v) }
        case let v as Bool: node.content = .scalar { $0.append(v ? WireTag.trueValue : WireTag.falseValue) }
        case let v as Double: node.content = .scalar { $0.writeDouble(v) }
        case let v as Float: node.content = .scalar { $0.writeFloat(v) }
        case let v as Int: node.content = .scalar { $0.writeSigned(Int64(v)) }
        case let v as Int64: node.content = .scalar { $0.writeSigned(v) }
        case let v as Int32: node.content = .scalar { $0.writeSigned(Int64(v)) }
        case let v as Int16: node.content = .scalar { $0.writeSigned(Int64(v)) }
        case let v as Int8: node.content = .scalar { $0.writeSigned(Int64(v)) }
        case let v as UInt: node.content = .scalar { $0.writeUnsigned(UInt64(v)) }
        case let v as UInt64: node.content = .scalar { $0.writeUnsigned(v) }
        case let v as UInt32: node.content = .scalar { $0.writeUnsigned(UInt64(v)) }
        case let v as UInt16: node.content = .scalar { $0.writeUnsigned(UInt64(v)) }
        case let v as UInt8: node.content = .scalar { $0.writeUnsigned(UInt64(v)) }
        case let v as Int128: node.content = .scalar { $0.append(WireTag.int128); $0.appendLittleEndian(v) }
        case let v as UInt128: node.content = .scalar { $0.append(WireTag.uint128); $0.appendLittleEndian(v) }
        case let array as any PlainNumberArray: node.content = .scalar { $0.writePlainArray(array) }
        default: try value.encode(to: TreeEncoder(node: node))
        }
        return node
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        if case .keyed = node.content {} else { node.content = .keyed([]) }
        return KeyedEncodingContainer(TreeKeyedWriter<Key>(node: node, interned: !KeyCache.isDictionaryKey(type)))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        if case .unkeyed = node.content {} else { node.content = .unkeyed([]) }
        return TreeUnkeyedWriter(node: node)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer { TreeSingleWriter(node: node) }
}

struct TreeKeyedWriter<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let node: TreeNode
    let interned: Bool
    var codingPath: [any CodingKey] { [] }

    mutating func encodeNil(forKey key: Key) throws {
        let child = TreeNode()
        child.content = .scalar { $0.append(WireTag.null) }
        node.setKeyed(key.stringValue, interned: interned, child)
    }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        node.setKeyed(key.stringValue, interned: interned, try TreeEncoder.node(for: value))
    }
    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        let child = TreeNode()
        node.setKeyed(key.stringValue, interned: interned, child)
        return TreeEncoder(node: child).container(keyedBy: keyType)
    }
    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        let child = TreeNode()
        node.setKeyed(key.stringValue, interned: interned, child)
        return TreeEncoder(node: child).unkeyedContainer()
    }
    mutating func superEncoder() -> any Encoder { slot("super") }
    mutating func superEncoder(forKey key: Key) -> any Encoder { slot(key.stringValue) }

    private func slot(_ name: String) -> any Encoder {
        let child = TreeNode()
        child.content = .scalar { $0.append(WireTag.null) }
        node.setKeyed(name, interned: interned, child)
        return TreeEncoder(node: child)
    }
}

struct TreeUnkeyedWriter: UnkeyedEncodingContainer {
    let node: TreeNode
    var codingPath: [any CodingKey] { [] }
    var count: Int { node.count }

    mutating func encodeNil() throws {
        let child = TreeNode()
        child.content = .scalar { $0.append(WireTag.null) }
        node.append(child)
    }
    mutating func encode<T: Encodable>(_ value: T) throws { node.append(try TreeEncoder.node(for: value)) }
    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        let child = TreeNode()
        node.append(child)
        return TreeEncoder(node: child).container(keyedBy: keyType)
    }
    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let child = TreeNode()
        node.append(child)
        return TreeEncoder(node: child).unkeyedContainer()
    }
    mutating func superEncoder() -> any Encoder {
        let child = TreeNode()
        child.content = .scalar { $0.append(WireTag.null) }
        node.append(child)
        return TreeEncoder(node: child)
    }
}

struct TreeSingleWriter: SingleValueEncodingContainer {
    let node: TreeNode
    var codingPath: [any CodingKey] { [] }

    mutating func encodeNil() throws { node.content = .scalar { $0.append(WireTag.null) } }
    mutating func encode<T: Encodable>(_ value: T) throws { node.content = try TreeEncoder.node(for: value).content }
}
