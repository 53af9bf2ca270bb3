// The `Decoder` and containers a value's `init(from:)` reads through: handles on the decode
// context and a frame (see StreamingDecoder.swift).

/// The `Decoder` a value's `init(from:)` sees. One per nesting depth is reused for every value
/// at that depth; nested containers a value's code keeps get one of their own.
final class ValueDecoder: Decoder {
    let context: Reader
    let frame: FrameRef
    /// Keeps the decode context alive while a nested container that outlives the call uses it.
    let owner: DecodingState
    /// The depth whose frame this decoder reuses, or -1 for a decoder with a frame of its own.
    let place: Int

    var codingPath: [any CodingKey] { [] }
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    init(context: Reader, frame: FrameRef, owner: DecodingState, place: Int) {
        self.context = context
        self.frame = frame
        self.owner = owner
        self.place = place
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        try context.beginKeyed(frame)
        // A reused decoder's containers read the same frame every time: their box can be too.
        guard place >= 0, ContainerReuse.isAvailable else { return KeyedDecodingContainer(KeyedReader<Key>(context: context, frame: frame)) }
        let cache = context.pointee.scratch._withUnsafeGuaranteedRef { $0.keyCache(for: type) }
        return cache.decodingContainer(Key.self, place: place, context: context, frame: frame)
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        try context.beginUnkeyed(frame)
        return UnkeyedReader(context: context, frame: frame)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        frame.pointee.handed = .single
        return SingleValueReader(context: context, frame: frame)
    }
}

struct KeyedReader<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let context: Reader
    let frame: FrameRef
    var codingPath: [any CodingKey] { [] }

    var allKeys: [Key] { ((try? context.allNames(frame)) ?? []).compactMap { Key(stringValue: $0) } }

    func contains(_ key: Key) -> Bool { (try? context.contains(key.stringValue, in: frame)) ?? false }

    @inline(__always)
    private func offset(of key: Key) throws -> Int {
        let offset = try context.find(key.stringValue, in: frame)
        guard offset >= 0 else {
            throw DecodingError.keyNotFound(key, .init(codingPath: [], debugDescription: "no value for key \"\(key.stringValue)\""))
        }
        return offset
    }

    func decodeNil(forKey key: Key) throws -> Bool {
        let offset = try self.offset(of: key)
        if try context.byte(at: offset) == WireTag.null {
            context.finished(frame, valueAt: offset, end: offset + 1)
            return true
        }
        return false
    }

    @inline(__always)
    private func scalar<T>(_ key: Key, _ read: (inout Int) throws -> T) throws -> T {
        do {
            let start = try offset(of: key)
            var offset = start
            let value = try read(&offset)
            context.finished(frame, valueAt: start, end: offset)
            return value
        } catch let error as DecodingError {
            throw error.under(key)
        }
    }

    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try scalar(key) { try context.integer(Int.self, at: &$0) } }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try scalar(key) { try context.string(at: &$0) } }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try scalar(key) { try context.double(at: &$0) } }
    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try scalar(key) { try context.bool(at: &$0) } }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float { try scalar(key) { try context.float(at: &$0) } }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try scalar(key) { try context.integer(Int64.self, at: &$0) } }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try scalar(key) { try context.integer(UInt64.self, at: &$0) } }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try scalar(key) { try context.integer(Int32.self, at: &$0) } }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        try scalar(key) { try context.decode(type, at: &$0, depth: frame.pointee.depth + 1) }
    }

    func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
        do {
            let start = try context.find(key.stringValue, in: frame)
            guard start >= 0 else { return nil }
            if try context.byte(at: start) == WireTag.null {
                context.finished(frame, valueAt: start, end: start + 1)
                return nil
            }
            var offset = start
            let value = try context.decode(type, at: &offset, depth: frame.pointee.depth + 1)
            context.finished(frame, valueAt: start, end: offset)
            return value
        } catch let error as DecodingError {
            throw error.under(key)
        }
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try nestedDecoder(at: try offset(of: key)).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try nestedDecoder(at: try offset(of: key)).unkeyedContainer()
    }

    /// A decoder of its own for the value at `start`, which the caller reads later.
    private func nestedDecoder(at start: Int) -> ValueDecoder {
        let decoder = context.pointee.owner!._withUnsafeGuaranteedRef { $0.detachedDecoder(offset: start, depth: frame.pointee.depth + 1) }
        context.handed(frame, valueAt: start, to: decoder.frame)
        return decoder
    }

    func superDecoder() throws -> any Decoder { try superDecoder(named: "super") }
    func superDecoder(forKey key: Key) throws -> any Decoder { try superDecoder(named: key.stringValue) }

    private func superDecoder(named name: String) throws -> any Decoder {
        let offset = try context.find(name, in: frame)
        guard offset >= 0 else { return NullDecoder() }
        return nestedDecoder(at: offset)
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

struct UnkeyedReader: UnkeyedDecodingContainer {
    let context: Reader
    let frame: FrameRef
    var codingPath: [any CodingKey] { [] }
    var currentIndex: Int { frame.pointee.element }

    var isAtEnd: Bool {
        if frame.pointee.plainKind != 0 { return frame.pointee.element >= frame.pointee.plainCount }
        guard (try? context.settleUnkeyed(frame)) != nil else { return true }
        return (try? context.byte(at: frame.pointee.position)) ?? WireTag.end == WireTag.end
    }

    var count: Int? {
        if frame.pointee.plainKind != 0 { return frame.pointee.plainCount }
        if frame.pointee.counted >= 0 { return frame.pointee.counted }
        guard (try? context.settleUnkeyed(frame)) != nil,
              let rest = try? context.countValues(at: frame.pointee.position) else { return nil }
        frame.pointee.counted = frame.pointee.element + rest
        return frame.pointee.counted
    }

    private func atEndError<T>(_ type: T.Type) -> DecodingError {
        .valueNotFound(type, .init(codingPath: [IndexKey(frame.pointee.element)],
                                   debugDescription: "unkeyed container has only \(frame.pointee.element) elements"))
    }

    mutating func decodeNil() throws -> Bool {
        if frame.pointee.plainKind != 0 { return false }
        try context.settleUnkeyed(frame)
        let tag = try context.byte(at: frame.pointee.position)
        guard tag != WireTag.end else { throw atEndError(Any?.self) }
        if tag == WireTag.null {
            frame.pointee.position += 1
            frame.pointee.element += 1
            return true
        }
        return false
    }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        if frame.pointee.plainKind != 0 {
            guard frame.pointee.element < frame.pointee.plainCount else { throw atEndError(type) }
            defer { frame.pointee.element += 1 }
            return try plainElement(type)
        }
        try context.settleUnkeyed(frame)
        guard try context.byte(at: frame.pointee.position) != WireTag.end else { throw atEndError(type) }
        do {
            var position = frame.pointee.position
            let value = try context.decode(type, at: &position, depth: frame.pointee.depth + 1)
            frame.pointee.position = position
            frame.pointee.element += 1
            return value
        } catch let error as DecodingError {
            throw error.under(IndexKey(frame.pointee.element))
        }
    }

    /// The current element of a plain-number array, converted exactly to `T`.
    private func plainElement<T: Decodable>(_ type: T.Type) throws -> T {
        let kind = PlainNumberKind(rawValue: frame.pointee.plainKind)!
        let i = frame.pointee.element
        let address = (frame.pointee.plainAddress ?? context.pointee.base + frame.pointee.plainData) + i * kind.byteWidth
        let number: Double
        let exact: Int64?
        switch kind {
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
                throw DecodingError.typeMismatch(I.self, .init(codingPath: [IndexKey(i)], debugDescription: "element \(i) of an array of \(kind) is not an exact \(I.self)"))
            }
            return value
        }
        switch type {
        case is Double.Type: return number as! T
        case is Float.Type:
            let narrow = Float(number)
            guard narrow.isFinite || !number.isFinite else {
                throw DecodingError.dataCorrupted(.init(codingPath: [IndexKey(i)], debugDescription: "element \(i), \(number), does not fit in Float"))
            }
            return narrow as! T
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
            throw DecodingError.typeMismatch(type, .init(codingPath: [IndexKey(i)], debugDescription: "expected \(type), found an element of an array of \(kind)"))
        }
    }

    /// A decoder for the next element, read by a nested container.
    private mutating func nextDecoder() throws -> ValueDecoder {
        guard frame.pointee.plainKind == 0 else {
            throw DecodingError.typeMismatch([Any].self, .init(codingPath: [IndexKey(frame.pointee.element)], debugDescription: "expected a container, found a number"))
        }
        try context.settleUnkeyed(frame)
        guard try context.byte(at: frame.pointee.position) != WireTag.end else { throw atEndError([Any].self) }
        let decoder = context.pointee.owner!._withUnsafeGuaranteedRef {
            $0.detachedDecoder(offset: frame.pointee.position, depth: frame.pointee.depth + 1)
        }
        frame.pointee.child = decoder.frame
        frame.pointee.element += 1
        return decoder
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        try nextDecoder().container(keyedBy: type)
    }
    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        try nextDecoder().unkeyedContainer()
    }
    mutating func superDecoder() throws -> any Decoder { try nextDecoder() }
}

struct SingleValueReader: SingleValueDecodingContainer {
    let context: Reader
    let frame: FrameRef
    var codingPath: [any CodingKey] { [] }

    func decodeNil() -> Bool {
        (try? context.byte(at: frame.pointee.start)) == WireTag.null
    }

    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        var offset = frame.pointee.start
        let value = try context.decode(type, at: &offset, depth: frame.pointee.depth + 1)
        frame.pointee.singleEnd = offset
        return value
    }
}
