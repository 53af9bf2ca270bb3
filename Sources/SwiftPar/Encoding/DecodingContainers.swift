// The containers a value's `init(from:)` reads through (see StreamingDecoder.swift).

/// The `Decoder` a value's `init(from:)` sees: one per nesting depth, reused for every value at
/// that depth. After `init(from:)` returns, `end()` says where the value stopped.
final class ValueDecoder: Decoder {
    unowned let state: DecodingState
    let depth: Int
    private(set) var start = 0
    private var keyed: KeyedCursor?
    private var unkeyed: UnkeyedCursor?
    /// Set by single-value reads: the offset after the value.
    var singleEnd: Int?
    private var handed: Handed = .nothing

    enum Handed { case nothing, keyed, unkeyed, single }

    var codingPath: [any CodingKey] { [] }
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    init(state: DecodingState, depth: Int) {
        self.state = state
        self.depth = depth
    }

    func reset(offset: Int) {
        start = offset
        singleEnd = nil
        handed = .nothing
    }

    /// The offset just past this value, skipping whatever `init(from:)` left unread.
    func end() throws -> Int {
        switch handed {
        case .keyed: return try keyed!.end()
        case .unkeyed: return try unkeyed!.end()
        case .single: if let singleEnd { return singleEnd }
        case .nothing: break
        }
        return try state.skipValue(at: start, depth: depth)
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        let tag = try state.byte(at: start)
        guard tag == WireTag.keyed else { throw state.mismatch([String: Any].self, found: tag, at: start) }
        if handed != .keyed {
            let cursor = keyed ?? KeyedCursor(state: state, depth: depth)
            keyed = cursor
            cursor.reset(first: start + 1)
            handed = .keyed
        }
        return KeyedDecodingContainer(KeyedReader<Key>(cursor: keyed!))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        let cursor = unkeyed ?? UnkeyedCursor(state: state, depth: depth)
        unkeyed = cursor
        try cursor.reset(at: start)
        handed = .unkeyed
        return UnkeyedReader(cursor: cursor)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        handed = .single
        return SingleValueReader(decoder: self)
    }
}

/// Where a keyed container has been read up to, and its entries once indexed.
final class KeyedCursor {
    unowned let state: DecodingState
    let depth: Int
    private var first = 0
    /// The key of the next entry in order, for fields read in the order written.
    private var next: Int?
    /// The entry handed out in order whose value is being read: `next` follows that value.
    private var current: (name: String, value: Int)?
    /// A nested container reading the current entry's value: its end is found when needed.
    private var currentChild: ValueDecoder?
    /// Every entry's key and value offset, once something was asked for out of order.
    private var entries: [(key: DecodingState.Key, value: Int)]?
    private var endOffset: Int?

    init(state: DecodingState, depth: Int) {
        self.state = state
        self.depth = depth
    }

    func reset(first: Int) {
        self.first = first
        next = first
        current = nil
        currentChild = nil
        entries = nil
        endOffset = nil
    }

    /// Moves `next` past the entry handed out in order, however far it was read.
    private func settle() throws {
        guard let current else { return }
        if let child = currentChild {
            next = try child.end()
        } else {
            next = try state.skipValue(at: current.value, depth: depth + 1)
        }
        self.current = nil
        currentChild = nil
    }

    /// The offset of the value for `name`, or nil if the container has no such key.
    func find(_ name: String) throws -> Int? {
        if let current, current.name == name, currentChild == nil { return current.value }
        try settle()
        if let position = next {
            var after = position
            if let key = try state.key(at: &after) {
                if state.key(key, is: name) {
                    current = (name, after)
                    return after
                }
            } else {
                endOffset = after
            }
        }
        return try indexedValue(for: name)
    }

    /// Whether the container has `name`, without moving through it.
    func contains(_ name: String) throws -> Bool {
        if let current, current.name == name { return true }
        if current == nil, let position = next {
            var after = position
            if let key = try state.key(at: &after), state.key(key, is: name) { return true }
        }
        return try indexedValue(for: name) != nil
    }

    /// The value that starts at `start` was read up to `end`.
    @inline(__always)
    func finished(valueAt start: Int, end: Int) {
        if let current, current.value == start, currentChild == nil {
            next = end
            self.current = nil
        }
    }

    /// The value that starts at `start` is read by the nested container of `child`.
    func handed(valueAt start: Int, to child: ValueDecoder) {
        if let current, current.value == start { currentChild = child }
    }

    private func indexedValue(for name: String) throws -> Int? {
        try buildIndex()
        for entry in entries! where state.key(entry.key, is: name) { return entry.value }
        return nil
    }

    func buildIndex() throws {
        guard entries == nil else { return }
        var found: [(key: DecodingState.Key, value: Int)] = []
        var position = first
        while let key = try state.key(at: &position) {
            found.append((key, position))
            position = try state.skipValue(at: position, depth: depth + 1)
        }
        entries = found
        endOffset = position
    }

    var allNames: [String] {
        get throws {
            try buildIndex()
            return try entries!.map { try state.name(of: $0.key) }
        }
    }

    /// The offset just past the container.
    func end() throws -> Int {
        if let endOffset { return endOffset }
        try settle()
        if var position = next {
            while try state.key(at: &position) != nil {
                position = try state.skipValue(at: position, depth: depth + 1)
            }
            endOffset = position
            return position
        }
        try buildIndex()
        return endOffset!
    }
}

struct KeyedReader<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let cursor: KeyedCursor
    var state: DecodingState { cursor.state }
    var codingPath: [any CodingKey] { [] }

    var allKeys: [Key] { ((try? cursor.allNames) ?? []).compactMap { Key(stringValue: $0) } }

    func contains(_ key: Key) -> Bool { (try? cursor.contains(key.stringValue)) ?? false }

    private func offset(of key: Key) throws -> Int {
        guard let offset = try cursor.find(key.stringValue) else {
            throw DecodingError.keyNotFound(key, .init(codingPath: [], debugDescription: "no value for key \"\(key.stringValue)\""))
        }
        return offset
    }

    func decodeNil(forKey key: Key) throws -> Bool {
        let offset = try self.offset(of: key)
        if try state.byte(at: offset) == WireTag.null {
            cursor.finished(valueAt: offset, end: offset + 1)
            return true
        }
        return false
    }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        do {
            let start = try self.offset(of: key)
            var offset = start
            let value = try state.decode(type, at: &offset, depth: cursor.depth + 1)
            cursor.finished(valueAt: start, end: offset)
            return value
        } catch let error as DecodingError {
            throw error.under(key)
        }
    }

    func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
        do {
            guard let start = try cursor.find(key.stringValue) else { return nil }
            if try state.byte(at: start) == WireTag.null {
                cursor.finished(valueAt: start, end: start + 1)
                return nil
            }
            var offset = start
            let value = try state.decode(type, at: &offset, depth: cursor.depth + 1)
            cursor.finished(valueAt: start, end: offset)
            return value
        } catch let error as DecodingError {
            throw error.under(key)
        }
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try nestedDecoder(for: key).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try nestedDecoder(for: key).unkeyedContainer()
    }

    private func nestedDecoder(for key: Key) throws -> ValueDecoder {
        let decoder = ValueDecoder(state: state, depth: cursor.depth + 1)
        let start = try offset(of: key)
        decoder.reset(offset: start)
        cursor.handed(valueAt: start, to: decoder)
        return decoder
    }

    func superDecoder() throws -> any Decoder { try superDecoder(named: "super") }
    func superDecoder(forKey key: Key) throws -> any Decoder { try superDecoder(named: key.stringValue) }

    private func superDecoder(named name: String) throws -> any Decoder {
        let decoder = ValueDecoder(state: state, depth: cursor.depth + 1)
        if let offset = try cursor.find(name) {
            decoder.reset(offset: offset)
            cursor.handed(valueAt: offset, to: decoder)
            return decoder
        }
        return NullDecoder()
    }
}

/// What `superDecoder()` returns when the value has no superclass part: a decoder of nil.
struct NullDecoder: Decoder, SingleValueDecodingContainer {
    var codingPath: [any CodingKey] { [] }
    var userInfo: [CodingUserInfoKey: Any] { [:] }
    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        throw DecodingError.valueNotFound([String: Any].self, .init(codingPath: [], debugDescription: "no value for the superclass"))
    }
    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        throw DecodingError.valueNotFound([Any].self, .init(codingPath: [], debugDescription: "no value for the superclass"))
    }
    func singleValueContainer() throws -> any SingleValueDecodingContainer { self }
    func decodeNil() -> Bool { true }
    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        throw DecodingError.valueNotFound(type, .init(codingPath: [], debugDescription: "no value for the superclass"))
    }
}

/// Where an unkeyed container has been read up to: values in the stream, or the elements of a
/// plain-number array read one by one.
final class UnkeyedCursor {
    unowned let state: DecodingState
    let depth: Int
    var position = 0
    var index = 0
    /// For a plain-number array: its kind, element count and first element's offset.
    var plain: (kind: PlainNumberKind, count: Int, data: Int)?
    private var counted: Int?
    private var pendingChild: ValueDecoder?
    private var start = 0

    init(state: DecodingState, depth: Int) {
        self.state = state
        self.depth = depth
    }

    func reset(at offset: Int) throws {
        start = offset
        index = 0
        counted = nil
        pendingChild = nil
        let tag = try state.byte(at: offset)
        switch tag {
        case WireTag.unkeyed:
            plain = nil
            position = offset + 1
        case WireTag.plainArray:
            let kind = try state.plainKind(at: offset + 1)
            var at = offset + 2
            let elements = try state.varint(at: &at)
            let (bytes, overflow) = elements.multipliedReportingOverflow(by: UInt64(kind.byteWidth))
            guard !overflow else { throw state.corrupted("array of \(elements) elements runs past the end", at: at) }
            _ = try state.length(bytes, at: at)
            plain = (kind, Int(elements), at)
            position = at
        default:
            throw state.mismatch([Any].self, found: tag, at: offset)
        }
    }

    func settle() throws {
        if let child = pendingChild {
            pendingChild = nil
            position = try child.end()
        }
    }

    var isAtEnd: Bool {
        if let plain { return index >= plain.count }
        guard (try? settle()) != nil else { return true }
        return (try? state.byte(at: position)) ?? WireTag.end == WireTag.end
    }

    var count: Int? {
        if let plain { return plain.count }
        if let counted { return counted }
        guard (try? settle()) != nil else { return nil }
        var at = position
        var n = index
        while let tag = try? state.byte(at: at), tag != WireTag.end {
            guard let next = try? state.skipValue(at: at, depth: depth + 1) else { return nil }
            at = next
            n += 1
        }
        counted = n
        return n
    }

    func end() throws -> Int {
        if let plain { return plain.data + plain.count * plain.kind.byteWidth }
        try settle()
        while try state.byte(at: position) != WireTag.end {
            position = try state.skipValue(at: position, depth: depth + 1)
        }
        return position + 1
    }

    func atEndError<T>(_ type: T.Type) -> DecodingError {
        .valueNotFound(type, .init(codingPath: [IndexKey(index)], debugDescription: "unkeyed container has only \(index) elements"))
    }

    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        if let plain {
            guard index < plain.count else { throw atEndError(type) }
            defer { index += 1 }
            return try decodePlainElement(type, plain, index)
        }
        try settle()
        guard try state.byte(at: position) != WireTag.end else { throw atEndError(type) }
        do {
            let value = try state.decode(type, at: &position, depth: depth + 1)
            index += 1
            return value
        } catch let error as DecodingError {
            throw error.under(IndexKey(index))
        }
    }

    /// Element `i` of a plain-number array, converted exactly to `T`.
    private func decodePlainElement<T: Decodable>(_ type: T.Type, _ plain: (kind: PlainNumberKind, count: Int, data: Int), _ i: Int) throws -> T {
        let address = state.base + plain.data + i * plain.kind.byteWidth
        let number: Double
        let exact: Int64?
        switch plain.kind {
        case .int8: exact = Int64(address.loadUnaligned(as: Int8.self)); number = Double(exact!)
        case .int16: exact = Int64(address.loadUnaligned(as: Int16.self)); number = Double(exact!)
        case .int32: exact = Int64(address.loadUnaligned(as: Int32.self)); number = Double(exact!)
        case .int64: exact = address.loadUnaligned(as: Int64.self); number = Double(exact!)
        case .uint8: exact = Int64(address.loadUnaligned(as: UInt8.self)); number = Double(exact!)
        case .uint16: exact = Int64(address.loadUnaligned(as: UInt16.self)); number = Double(exact!)
        case .uint32: exact = Int64(address.loadUnaligned(as: UInt32.self)); number = Double(exact!)
        case .uint64:
            let v = address.loadUnaligned(as: UInt64.self)
            if T.self == UInt64.self { return v as! T }
            if T.self == UInt.self { return UInt(v) as! T }
            exact = Int64(exactly: v)
            number = Double(v)
        case .float32: exact = nil; number = Double(address.loadUnaligned(as: Float.self))
        case .float64: exact = nil; number = address.loadUnaligned(as: Double.self)
        }
        func integer<I: FixedWidthInteger>(_ t: I.Type) throws -> I {
            guard let exact, let value = I(exactly: exact) else {
                throw DecodingError.typeMismatch(I.self, .init(codingPath: [IndexKey(i)], debugDescription: "element \(i) of an array of \(plain.kind) is not an exact \(I.self)"))
            }
            return value
        }
        switch type {
        case is Double.Type: return number as! T
        case is Float.Type: return Float(number) as! T
        case is Int.Type: return try integer(Int.self) as! T
        case is Int64.Type: return try integer(Int64.self) as! T
        case is Int32.Type: return try integer(Int32.self) as! T
        case is Int16.Type: return try integer(Int16.self) as! T
        case is Int8.Type: return try integer(Int8.self) as! T
        case is UInt.Type: return try integer(UInt.self) as! T
        case is UInt64.Type: return try integer(UInt64.self) as! T
        case is UInt32.Type: return try integer(UInt32.self) as! T
        case is UInt16.Type: return try integer(UInt16.self) as! T
        case is UInt8.Type: return try integer(UInt8.self) as! T
        default:
            throw DecodingError.typeMismatch(type, .init(codingPath: [IndexKey(i)], debugDescription: "expected \(type), found an element of an array of \(plain.kind)"))
        }
    }

    func decodeNil() throws -> Bool {
        if plain != nil { return false }
        try settle()
        guard try state.byte(at: position) != WireTag.end else { throw atEndError(Any?.self) }
        if try state.byte(at: position) == WireTag.null {
            position += 1
            index += 1
            return true
        }
        return false
    }

    /// A decoder for the next element, read by a nested container.
    func nextDecoder() throws -> ValueDecoder {
        guard plain == nil else {
            throw DecodingError.typeMismatch([Any].self, .init(codingPath: [IndexKey(index)], debugDescription: "expected a container, found a number"))
        }
        try settle()
        guard try state.byte(at: position) != WireTag.end else { throw atEndError([Any].self) }
        let decoder = ValueDecoder(state: state, depth: depth + 1)
        decoder.reset(offset: position)
        pendingChild = decoder
        index += 1
        return decoder
    }
}

struct UnkeyedReader: UnkeyedDecodingContainer {
    let cursor: UnkeyedCursor
    var codingPath: [any CodingKey] { [] }
    var count: Int? { cursor.count }
    var isAtEnd: Bool { cursor.isAtEnd }
    var currentIndex: Int { cursor.index }

    mutating func decodeNil() throws -> Bool { try cursor.decodeNil() }
    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { try cursor.decode(type) }
    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        try cursor.nextDecoder().container(keyedBy: type)
    }
    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        try cursor.nextDecoder().unkeyedContainer()
    }
    mutating func superDecoder() throws -> any Decoder { try cursor.nextDecoder() }
}

struct SingleValueReader: SingleValueDecodingContainer {
    let decoder: ValueDecoder
    var codingPath: [any CodingKey] { [] }

    func decodeNil() -> Bool {
        (try? decoder.state.byte(at: decoder.start)) == WireTag.null
    }

    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        var offset = decoder.start
        let value = try decoder.state.decode(type, at: &offset, depth: decoder.depth + 1)
        decoder.singleEnd = offset
        return value
    }
}
