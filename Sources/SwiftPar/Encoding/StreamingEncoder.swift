// The encoder: writes a value straight into one growing buffer, in the format of
// WireFormat.swift, as the value's `encode(to:)` runs.
//
// Containers are written in place, so they must be filled one at a time, innermost first, as
// synthesized `Codable` code always does: a write to a container closes the nested containers
// opened after it. A hand-written `encode(to:)` that goes back to a container it already left
// is still encoded correctly, by `TreeEncoder`, which builds the value first and then writes
// the same bytes.

/// Raised inside the streaming encoder when a value fills its containers out of order.
struct ContainersOutOfOrder: Error {}

/// Everything one encoding shares: the buffer, the open containers, the interned keys.
final class EncodingState {
    var writer = ByteWriter()
    /// Open containers and value frames, innermost last.
    private var stack: [Entry] = []
    private var nextID = 0
    /// Interned keys of this message, by name.
    private var internedKeys: [String: Int] = [:]
    /// Per key type, the keys already interned (or nil: keys used once, as a dictionary's).
    private var keyCaches: [ObjectIdentifier: KeyCache] = [:]
    /// Reused encoders, one per nesting depth.
    private var encoders: [ValueEncoder] = []

    struct Entry {
        enum Kind { case frame, keyed, unkeyed, slot }
        let id: Int
        let kind: Kind
        /// For frames and slots: whether the value has been written.
        var wrote = false
    }

    // MARK: Values

    /// Writes `value` at the current position.
    @inline(__always)
    func encode<T: Encodable>(_ value: T) throws {
        if T.self == String.self { return writeString(value as! String) }
        if T.self == Int.self { return writeSigned(Int64(value as! Int)) }
        if T.self == Double.self { return writeDouble(value as! Double) }
        if T.self == Bool.self { return writer.append((value as! Bool) ? WireTag.trueValue : WireTag.falseValue) }
        try encodeOther(value)
    }

    private func encodeOther<T: Encodable>(_ value: T) throws {
        switch value {
        case let v as Float: writeFloat(v)
        case let v as Int64: writeSigned(v)
        case let v as Int32: writeSigned(Int64(v))
        case let v as Int16: writeSigned(Int64(v))
        case let v as Int8: writeSigned(Int64(v))
        case let v as UInt: writeUnsigned(UInt64(v))
        case let v as UInt64: writeUnsigned(v)
        case let v as UInt32: writeUnsigned(UInt64(v))
        case let v as UInt16: writeUnsigned(UInt64(v))
        case let v as UInt8: writeUnsigned(UInt64(v))
        case let v as Int128:
            writer.append(WireTag.int128)
            writer.appendLittleEndian(v)
        case let v as UInt128:
            writer.append(WireTag.uint128)
            writer.appendLittleEndian(v)
        case let array as any PlainNumberArray:
            writePlainArray(array)
        case let dictionary as any StringKeyedEncodable:
            try dictionary.encodeEntries(to: self)
        default:
            try encodeNested(value)
        }
    }

    /// Runs `value.encode(to:)` with an encoder for a new value frame, then closes what it opened.
    private func encodeNested<T: Encodable>(_ value: T) throws {
        let depth = stack.count
        let frame = push(.frame)
        let encoder = encoder(forFrame: frame, depth: depth)
        try value.encode(to: encoder)
        try close(downTo: depth)
    }

    /// Closes every entry at `depth` and above: containers get their end marker, and a value
    /// frame or slot that wrote nothing gets an empty keyed container or nil.
    func close(downTo depth: Int) throws {
        while stack.count > depth {
            let entry = stack.removeLast()
            switch entry.kind {
            case .keyed: writer.append(0)
            case .unkeyed: writer.append(WireTag.end)
            case .frame: if !entry.wrote { writer.append(WireTag.keyed, 0) }
            case .slot: if !entry.wrote { writer.append(WireTag.null) }
            }
        }
    }

    private func encoder(forFrame frame: Int, depth: Int) -> ValueEncoder {
        while encoders.count <= depth { encoders.append(ValueEncoder(state: self)) }
        let encoder = encoders[depth]
        encoder.frame = frame
        return encoder
    }

    @discardableResult
    func push(_ kind: Entry.Kind) -> Int {
        nextID += 1
        stack.append(Entry(id: nextID, kind: kind))
        return nextID
    }

    /// Makes `id` the innermost open entry, closing those opened after it; throws if `id` was
    /// already closed (the caller went back to a container it had left).
    @inline(__always)
    func prepare(_ id: Int) throws {
        if stack.last?.id == id { return }
        guard let index = stack.lastIndex(where: { $0.id == id }) else { throw ContainersOutOfOrder() }
        try close(downTo: index + 1)
    }

    /// Opens the container of `frame`'s value, or returns the one already opened there (a class
    /// and its superclass asking for the keyed container of the same encoder share it).
    /// Returns -1 when that cannot be done in place.
    func openContainer(in frame: Int, kind: Entry.Kind) -> Int {
        guard let index = stack.lastIndex(where: { $0.id == frame }) else { return -1 }
        if !stack[index].wrote {
            do { try close(downTo: index + 1) } catch { return -1 }
            stack[index].wrote = true
            writer.append(kind == .keyed ? WireTag.keyed : WireTag.unkeyed)
            return push(kind)
        }
        if index + 1 < stack.count, stack[index + 1].kind == kind { return stack[index + 1].id }
        return -1
    }

    /// The value frame `id` is about to receive a single value; false if it already has one.
    func beginValue(in frame: Int) throws -> Bool {
        try prepare(frame)
        if stack[stack.count - 1].wrote { return false }
        stack[stack.count - 1].wrote = true
        return true
    }

    // MARK: Scalars

    @inline(__always)
    func writeSigned(_ v: Int64) {
        if v >= 0 && v < 64 {
            writer.append(WireTag.smallInteger | UInt8(v))
        } else {
            writer.append(WireTag.signed)
            writer.appendVarint(zigzag(v))
        }
    }

    @inline(__always)
    func writeUnsigned(_ v: UInt64) {
        if v < 64 {
            writer.append(WireTag.smallInteger | UInt8(v))
        } else {
            writer.append(WireTag.unsigned)
            writer.appendVarint(v)
        }
    }

    @inline(__always)
    func writeDouble(_ v: Double) {
        writer.append(WireTag.float64)
        writer.appendLittleEndian(v.bitPattern)
    }

    @inline(__always)
    func writeFloat(_ v: Float) {
        writer.append(WireTag.float32)
        writer.appendLittleEndian(v.bitPattern)
    }

    @inline(__always)
    func writeString(_ s: String) {
        if let done = s.utf8.withContiguousStorageIfAvailable({ utf8 -> Bool in
            writeStringBytes(UnsafeRawBufferPointer(utf8))
            return true
        }), done { return }
        let copy = Array(s.utf8)
        copy.withUnsafeBytes { writeStringBytes($0) }
    }

    @inline(__always)
    private func writeStringBytes(_ utf8: UnsafeRawBufferPointer) {
        if utf8.count < 64 {
            writer.append(WireTag.shortString | UInt8(utf8.count))
        } else {
            writer.append(WireTag.string)
            writer.appendVarint(UInt64(utf8.count))
        }
        writer.append(utf8)
    }

    func writePlainArray(_ array: any PlainNumberArray) {
        writer.append(WireTag.plainArray, type(of: array).elementKind.rawValue)
        writer.appendVarint(UInt64(array.count))
        // Every supported platform is little-endian: the storage is the wire format.
        array.withUnsafeBytes { writer.append($0) }
    }

    // MARK: Keys

    /// Writes `key` as an entry's key, interning it unless its type is used for dictionary keys.
    @inline(__always)
    func writeKey(_ name: String, cache: KeyCache?) {
        guard let cache else { return writeLiteralKey(name) }
        if let index = cache.index(of: name) {
            return writer.appendVarint(UInt64(index) << 2 | 1)
        }
        if let index = internedKeys[name] {
            cache.add(name, index)
            return writer.appendVarint(UInt64(index) << 2 | 1)
        }
        let index = internedKeys.count
        internedKeys[name] = index
        cache.add(name, index)
        writeKeyBytes(name, kind: 2)
    }

    private func writeLiteralKey(_ name: String) {
        writeKeyBytes(name, kind: 3)
    }

    private func writeKeyBytes(_ name: String, kind: UInt64) {
        var copy = name
        copy.withUTF8 { utf8 in
            writer.appendVarint(UInt64(utf8.count) << 2 | kind)
            writer.append(UnsafeRawBufferPointer(utf8))
        }
    }

    /// The interning cache of key type `Key` for this message; nil for dictionary-like keys.
    func keyCache<Key: CodingKey>(for type: Key.Type) -> KeyCache? {
        let identifier = ObjectIdentifier(type)
        if let cache = keyCaches[identifier] { return cache.interning ? cache : nil }
        let cache = KeyCache(interning: !KeyCache.isDictionaryKey(type))
        keyCaches[identifier] = cache
        return cache.interning ? cache : nil
    }
}

/// The keys of one key type interned in the current message, in the order first seen.
final class KeyCache {
    private(set) var interning: Bool
    private var names: [String] = []
    private var indices: [Int] = []

    init(interning: Bool) { self.interning = interning }

    @inline(__always)
    func index(of name: String) -> Int? {
        for i in 0..<names.count where names[i] == name { return indices[i] }
        return nil
    }

    func add(_ name: String, _ index: Int) {
        names.append(name)
        indices.append(index)
        // A key type with many distinct keys is a map, not a record: stop caching its keys.
        if names.count > 64 { interning = false }
    }

    /// The standard library encodes a dictionary's keys with its private key type.
    static func isDictionaryKey<Key: CodingKey>(_ type: Key.Type) -> Bool {
        String(reflecting: type).contains("DictionaryCodingKey")
    }
}

/// The `Encoder` a value's `encode(to:)` sees, one per nesting depth, reused.
final class ValueEncoder: Encoder {
    unowned let state: EncodingState
    var frame = 0
    var codingPath: [any CodingKey] { [] }
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    init(state: EncodingState) { self.state = state }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        KeyedEncodingContainer(KeyedWriter<Key>(state: state, id: openContainer(.keyed), cache: state.keyCache(for: type)))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        UnkeyedWriter(state: state, id: openContainer(.unkeyed))
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        SingleValueWriter(state: state, frame: frame)
    }

    private func openContainer(_ kind: EncodingState.Entry.Kind) -> Int {
        state.openContainer(in: frame, kind: kind)
    }
}

struct KeyedWriter<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let state: EncodingState
    let id: Int
    let cache: KeyCache?
    var codingPath: [any CodingKey] { [] }

    @inline(__always)
    private func key(_ key: Key) throws {
        try state.prepare(id)
        state.writeKey(key.stringValue, cache: cache)
    }

    mutating func encodeNil(forKey key: Key) throws { try self.key(key); state.writer.append(WireTag.null) }
    mutating func encode(_ value: Bool, forKey key: Key) throws {
        try self.key(key)
        state.writer.append(value ? WireTag.trueValue : WireTag.falseValue)
    }
    mutating func encode(_ value: String, forKey key: Key) throws { try self.key(key); state.writeString(value) }
    mutating func encode(_ value: Double, forKey key: Key) throws { try self.key(key); state.writeDouble(value) }
    mutating func encode(_ value: Float, forKey key: Key) throws { try self.key(key); state.writeFloat(value) }
    mutating func encode(_ value: Int, forKey key: Key) throws { try self.key(key); state.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int8, forKey key: Key) throws { try self.key(key); state.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int16, forKey key: Key) throws { try self.key(key); state.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int32, forKey key: Key) throws { try self.key(key); state.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { try self.key(key); state.writeSigned(value) }
    mutating func encode(_ value: UInt, forKey key: Key) throws { try self.key(key); state.writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { try self.key(key); state.writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { try self.key(key); state.writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { try self.key(key); state.writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { try self.key(key); state.writeUnsigned(value) }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws { try self.key(key); try state.encode(value) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        var nested = -1
        if (try? self.key(key)) != nil {
            state.writer.append(WireTag.keyed)
            nested = state.push(.keyed)
        }
        return KeyedEncodingContainer(KeyedWriter<NestedKey>(state: state, id: nested, cache: state.keyCache(for: keyType)))
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        var nested = -1
        if (try? self.key(key)) != nil {
            state.writer.append(WireTag.unkeyed)
            nested = state.push(.unkeyed)
        }
        return UnkeyedWriter(state: state, id: nested)
    }

    mutating func superEncoder() -> any Encoder { superEncoder(named: "super") }
    mutating func superEncoder(forKey key: Key) -> any Encoder { superEncoder(named: key.stringValue) }

    private func superEncoder(named name: String) -> any Encoder {
        let encoder = ValueEncoder(state: state)
        encoder.frame = -1
        if (try? state.prepare(id)) != nil {
            state.writeKey(name, cache: cache)
            encoder.frame = state.push(.slot)
        }
        return encoder
    }
}

struct UnkeyedWriter: UnkeyedEncodingContainer {
    let state: EncodingState
    let id: Int
    var count = 0
    var codingPath: [any CodingKey] { [] }

    init(state: EncodingState, id: Int) {
        self.state = state
        self.id = id
    }

    @inline(__always)
    private mutating func next() throws {
        try state.prepare(id)
        count += 1
    }

    mutating func encodeNil() throws { try next(); state.writer.append(WireTag.null) }
    mutating func encode(_ value: Bool) throws { try next(); state.writer.append(value ? WireTag.trueValue : WireTag.falseValue) }
    mutating func encode(_ value: String) throws { try next(); state.writeString(value) }
    mutating func encode(_ value: Double) throws { try next(); state.writeDouble(value) }
    mutating func encode(_ value: Float) throws { try next(); state.writeFloat(value) }
    mutating func encode(_ value: Int) throws { try next(); state.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int8) throws { try next(); state.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int16) throws { try next(); state.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int32) throws { try next(); state.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int64) throws { try next(); state.writeSigned(value) }
    mutating func encode(_ value: UInt) throws { try next(); state.writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt8) throws { try next(); state.writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt16) throws { try next(); state.writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt32) throws { try next(); state.writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt64) throws { try next(); state.writeUnsigned(value) }
    mutating func encode<T: Encodable>(_ value: T) throws { try next(); try state.encode(value) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        var nested = -1
        if (try? next()) != nil {
            state.writer.append(WireTag.keyed)
            nested = state.push(.keyed)
        }
        return KeyedEncodingContainer(KeyedWriter<NestedKey>(state: state, id: nested, cache: state.keyCache(for: keyType)))
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        var nested = -1
        if (try? next()) != nil {
            state.writer.append(WireTag.unkeyed)
            nested = state.push(.unkeyed)
        }
        return UnkeyedWriter(state: state, id: nested)
    }

    mutating func superEncoder() -> any Encoder {
        let encoder = ValueEncoder(state: state)
        encoder.frame = -1
        if (try? next()) != nil { encoder.frame = state.push(.slot) }
        return encoder
    }
}

struct SingleValueWriter: SingleValueEncodingContainer {
    let state: EncodingState
    let frame: Int
    var codingPath: [any CodingKey] { [] }

    @inline(__always)
    private func begin() throws {
        guard try state.beginValue(in: frame) else { throw ContainersOutOfOrder() }
    }

    mutating func encodeNil() throws { try begin(); state.writer.append(WireTag.null) }
    mutating func encode(_ value: Bool) throws { try begin(); state.writer.append(value ? WireTag.trueValue : WireTag.falseValue) }
    mutating func encode(_ value: String) throws { try begin(); state.writeString(value) }
    mutating func encode(_ value: Double) throws { try begin(); state.writeDouble(value) }
    mutating func encode(_ value: Float) throws { try begin(); state.writeFloat(value) }
    mutating func encode(_ value: Int) throws { try begin(); state.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int8) throws { try begin(); state.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int16) throws { try begin(); state.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int32) throws { try begin(); state.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int64) throws { try begin(); state.writeSigned(value) }
    mutating func encode(_ value: UInt) throws { try begin(); state.writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt8) throws { try begin(); state.writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt16) throws { try begin(); state.writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt32) throws { try begin(); state.writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt64) throws { try begin(); state.writeUnsigned(value) }
    mutating func encode<T: Encodable>(_ value: T) throws {
        try begin()
        // The value fills this frame: its own containers open inside it.
        try state.encode(value)
    }
}
