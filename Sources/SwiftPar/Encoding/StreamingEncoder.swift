#if canImport(Glibc)
import Glibc
#endif

// The encoder: writes a value straight into one growing buffer, in the format of
// WireFormat.swift, as the value's `encode(to:)` runs.
//
// Containers are written in place, so they must be filled one at a time, innermost first, as
// synthesized `Codable` code always does: a write to a container closes the nested containers
// opened after it. A hand-written `encode(to:)` that goes back to a container it already left
// is still encoded correctly, by `TreeEncoder`, which builds the value first and then writes
// the same bytes.
//
// What the encoder touches on every field lives in unsafe memory (`EncodeContext`), reached
// through a pointer: no reference counting and no exclusivity checks on the hot path.

/// Raised inside the streaming encoder when a value fills its containers out of order.
struct ContainersOutOfOrder: Error {}

/// An open container or value frame of the encoder.
struct EncodeEntry {
    enum Kind: UInt8 { case frame, keyed, unkeyed, slot }
    var id: Int
    var kind: Kind
    /// For frames and slots: whether the value has been written.
    var wrote: Bool
}

/// What one encoding knows: the buffer, the open containers, the interning generation.
struct EncodeContext {
    var base: UnsafeMutableRawPointer
    var count = 0
    var capacity: Int
    var stack: UnsafeMutablePointer<EncodeEntry>
    var stackCount = 0
    var stackCapacity = 32
    var nextID = 0
    /// Keys interned in this message so far.
    var internedCount = 0
    /// This message's number among those encoded on this thread: a key cache entry stamped
    /// with it has been defined in this message.
    var generation = 0
    let scratch: Unmanaged<CodecScratch>
    var owner: Unmanaged<EncodingState>?
    /// Whether large plain-number arrays may be sent apart (point-to-point messages only).
    var attaching = false
    /// Which encoding state this is, among those of its thread: container boxes kept for reuse
    /// belong to one.
    var serial = 0
    /// Values being encoded inside one another now.
    var nesting = 0
}

typealias Writer = UnsafeMutablePointer<EncodeContext>

/// Owns an encode context and its memory; reused by a thread for message after message.
final class EncodingState {
    let context: Writer
    /// Reused encoders, one per nesting depth.
    @exclusivity(unchecked) private var encoders: [ValueEncoder] = []
    /// Plain-number arrays to send apart, after the message, in order.
    @exclusivity(unchecked) var attachments: [any PlainNumberArray] = []
    /// Field names of values built by the tree encoder (any record's names, interned by name).
    private(set) lazy var treeKeys = KeyCache(interning: true)
    let scratch: CodecScratch

    init(scratch: CodecScratch) {
        self.scratch = scratch
        let capacity = 256
        context = .allocate(capacity: 1)
        context.initialize(to: EncodeContext(base: malloc(capacity)!, capacity: capacity, stack: .allocate(capacity: 32),
                                             scratch: Unmanaged.passUnretained(scratch)))
        context.pointee.owner = Unmanaged.passUnretained(self)
        context.pointee.generation = scratch.newGeneration()
        context.pointee.serial = scratch.newSerial()
    }

    deinit {
        free(context.pointee.base)
        context.pointee.stack.deallocate()
        context.deinitialize(count: 1)
        context.deallocate()
    }

    /// Whether this state is worth keeping for the next message (not grown too large).
    var reusable: Bool { context.pointee.capacity <= 1 << 20 }

    /// Prepares for a new message.
    func reset() {
        if !attachments.isEmpty { attachments.removeAll(keepingCapacity: true) }
        context.pointee.attaching = false
        context.pointee.count = 0
        context.pointee.stackCount = 0
        context.pointee.nesting = 0
        context.pointee.internedCount = 0
        context.pointee.nextID = 0
        context.pointee.generation = scratch.newGeneration()
    }

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: context.pointee.base, count: context.pointee.count) }

    func encoder(forFrame frame: Int, depth: Int) -> ValueEncoder {
        while encoders.count <= depth { encoders.append(ValueEncoder(context: context)) }
        let encoder = encoders[depth]
        encoder.frame = frame
        return encoder
    }
}

extension UnsafeMutablePointer where Pointee == EncodeContext {
    // MARK: The buffer

    /// Makes room for `extra` more bytes.
    @inline(__always)
    func reserve(_ extra: Int) {
        if pointee.count + extra > pointee.capacity { grow(pointee.count + extra) }
    }

    private func grow(_ needed: Int) {
        var newCapacity = pointee.capacity * 2
        while newCapacity < needed { newCapacity *= 2 }
        guard let moved = realloc(pointee.base, newCapacity) else {
            fatalError("swiftpar: out of memory growing a message to \(newCapacity) bytes")
        }
        pointee.base = moved
        pointee.capacity = newCapacity
    }

    @inline(__always)
    func append(_ byte: UInt8) {
        reserve(1)
        pointee.base.storeBytes(of: byte, toByteOffset: pointee.count, as: UInt8.self)
        pointee.count += 1
    }

    @inline(__always)
    func append(_ first: UInt8, _ second: UInt8) {
        reserve(2)
        pointee.base.storeBytes(of: first, toByteOffset: pointee.count, as: UInt8.self)
        pointee.base.storeBytes(of: second, toByteOffset: pointee.count + 1, as: UInt8.self)
        pointee.count += 2
    }

    @inline(__always)
    func appendVarint(_ value: UInt64) {
        reserve(10)
        pointee.count = storeVarint(value, into: pointee.base, at: pointee.count)
    }

    @inline(__always)
    func appendLittleEndian<T: FixedWidthInteger>(_ value: T) {
        reserve(MemoryLayout<T>.size)
        (pointee.base + pointee.count).storeBytes(of: value.littleEndian, as: T.self)
        pointee.count += MemoryLayout<T>.size
    }

    @inline(__always)
    func append(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        reserve(bytes.count)
        (pointee.base + pointee.count).copyMemoryAtFullSpeed(from: bytes.baseAddress!, byteCount: bytes.count)
        pointee.count += bytes.count
    }

    /// Writes swiftpar's 8-byte header.
    @inline(__always)
    func appendHeader() {
        appendLittleEndian(WireHeader.magic | UInt64(WireHeader.version) << 48)
    }

    // MARK: Values

    /// Writes `value` at the current position.
    @inline(__always)
    func encode<T: Encodable>(_ value: T) throws {
        if T.self == String.self { return writeString(value as! String) }
        if T.self == Int.self { return writeSigned(Int64(value as! Int)) }
        if T.self == Double.self { return writeDouble(value as! Double) }
        if T.self == Bool.self { return append((value as! Bool) ? WireTag.trueValue : WireTag.falseValue) }
        try encodeOther(value)
    }

    private func encodeOther<T: Encodable>(_ value: T) throws {
        if T.self == Float.self { return writeFloat(value as! Float) }
        if T.self == Int64.self { return writeSigned(value as! Int64) }
        if T.self == UInt64.self { return writeUnsigned(value as! UInt64) }
        if T.self == Int32.self { return writeSigned(Int64(value as! Int32)) }
        if T.self == UInt8.self { return writeUnsigned(UInt64(value as! UInt8)) }
        if T.self == UInt.self { return writeUnsigned(UInt64(value as! UInt)) }
        if T.self == UInt32.self { return writeUnsigned(UInt64(value as! UInt32)) }
        if T.self == Int16.self { return writeSigned(Int64(value as! Int16)) }
        if T.self == Int8.self { return writeSigned(Int64(value as! Int8)) }
        if T.self == UInt16.self { return writeUnsigned(UInt64(value as! UInt16)) }
        if T.self == Int128.self {
            append(WireTag.int128)
            return appendLittleEndian(value as! Int128)
        }
        if T.self == UInt128.self {
            append(WireTag.uint128)
            return appendLittleEndian(value as! UInt128)
        }
        switch pointee.scratch._withUnsafeGuaranteedRef({ $0.kind(of: T.self) }) {
        case .plainArray:
            writePlainArray(value as! any PlainNumberArray)
        case .directArray:
            (value as! any DirectArray).encodeElements(to: self)
        case .directDictionary:
            (value as! any DirectDictionary).encodeEntries(to: self)
        case .stringKeyedEncodable, .stringKeyedBoth:
            try (value as! any StringKeyedEncodable).encodeEntries(to: self)
        case .stringKeyedDecodable, .other:
            try encodeNested(value)
        }
    }

    /// Runs `value.encode(to:)` with an encoder for a new value frame, then closes what it opened.
    private func encodeNested<T: Encodable>(_ value: T) throws {
        // Deeper than any receiver decodes (and, far deeper, than the thread's stack holds):
        // refused here, by the sender, rather than sent to fail on the other side.
        guard pointee.nesting < maximumNestingDepth else {
            throw EncodingError.invalidValue(value, .init(codingPath: [], debugDescription: "values nested more than \(maximumNestingDepth) deep, deeper than a receiver decodes"))
        }
        pointee.nesting += 1
        defer { pointee.nesting -= 1 }
        let depth = pointee.stackCount
        let frame = push(.frame)
        let encoder = pointee.owner!._withUnsafeGuaranteedRef { $0.encoder(forFrame: frame, depth: depth) }
        try value.encode(to: encoder)
        try close(downTo: depth)
    }

    // MARK: Containers

    /// Closes every entry at `depth` and above: containers get their end marker, and a value
    /// frame or slot that wrote nothing gets an empty keyed container or nil.
    func close(downTo depth: Int) throws {
        while pointee.stackCount > depth {
            pointee.stackCount -= 1
            let entry = pointee.stack[pointee.stackCount]
            switch entry.kind {
            case .keyed: append(0)
            case .unkeyed: append(WireTag.end)
            case .frame: if !entry.wrote { append(WireTag.keyed, 0) }
            case .slot: if !entry.wrote { append(WireTag.null) }
            }
        }
    }

    @discardableResult
    func push(_ kind: EncodeEntry.Kind) -> Int {
        if pointee.stackCount == pointee.stackCapacity {
            let capacity = pointee.stackCapacity * 2
            let stack = UnsafeMutablePointer<EncodeEntry>.allocate(capacity: capacity)
            stack.moveInitialize(from: pointee.stack, count: pointee.stackCount)
            pointee.stack.deallocate()
            pointee.stack = stack
            pointee.stackCapacity = capacity
        }
        pointee.nextID += 1
        pointee.stack[pointee.stackCount] = EncodeEntry(id: pointee.nextID, kind: kind, wrote: false)
        pointee.stackCount += 1
        return pointee.nextID
    }

    /// Makes `id` the innermost open entry, closing those opened after it; throws if `id` was
    /// already closed (the caller went back to a container it had left).
    @inline(__always)
    func prepare(_ id: Int) throws {
        if pointee.stackCount > 0 && pointee.stack[pointee.stackCount - 1].id == id { return }
        try prepareSlowly(id)
    }

    private func prepareSlowly(_ id: Int) throws {
        var index = pointee.stackCount - 1
        while index >= 0 && pointee.stack[index].id != id { index -= 1 }
        guard index >= 0 else { throw ContainersOutOfOrder() }
        try close(downTo: index + 1)
    }

    /// Opens the container of `frame`'s value, or returns the one already opened there (a class
    /// and its superclass asking for the keyed container of the same encoder share it); `place`
    /// gets its position in the stack. Returns -1 when that cannot be done in place.
    func openContainer(in frame: Int, kind: EncodeEntry.Kind, place: inout Int) -> Int {
        var index = pointee.stackCount - 1
        while index >= 0 && pointee.stack[index].id != frame { index -= 1 }
        guard index >= 0 else { return -1 }
        place = index + 1
        if !pointee.stack[index].wrote {
            do { try close(downTo: index + 1) } catch { return -1 }
            pointee.stack[index].wrote = true
            append(kind == .keyed ? WireTag.keyed : WireTag.unkeyed)
            return push(kind)
        }
        if index + 1 < pointee.stackCount, pointee.stack[index + 1].kind == kind { return pointee.stack[index + 1].id }
        return -1
    }

    /// The value frame `frame` is about to receive a single value; false if it already has one.
    func beginValue(in frame: Int) throws -> Bool {
        try prepare(frame)
        let top = pointee.stackCount - 1
        if pointee.stack[top].wrote { return false }
        pointee.stack[top].wrote = true
        return true
    }

    // MARK: Scalars

    // Each writes what the scalar's `WireScalar.write(_:into:at:)` writes (DirectCoding.swift).

    @inline(__always)
    func writeSigned(_ v: Int64) {
        reserve(integerWireBound)
        pointee.count = storeSigned(v, into: pointee.base, at: pointee.count)
    }

    @inline(__always)
    func writeUnsigned(_ v: UInt64) {
        reserve(integerWireBound)
        pointee.count = storeUnsigned(v, into: pointee.base, at: pointee.count)
    }

    @inline(__always)
    func writeDouble(_ v: Double) {
        reserve(9)
        pointee.count = Double.write(v, into: pointee.base, at: pointee.count)
    }

    @inline(__always)
    func writeFloat(_ v: Float) {
        reserve(5)
        pointee.count = Float.write(v, into: pointee.base, at: pointee.count)
    }

    @inline(__always)
    func writeString(_ s: String) {
        if SmallASCIIString.isAvailable, let inline = SmallASCIIString.inlineWords(of: s) {
            return writeInline(inline.words, count: inline.count, header: WireTag.shortString | UInt8(inline.count))
        }
        if let done = s.utf8.withContiguousStorageIfAvailable({ utf8 -> Bool in
            writeStringBytes(UnsafeRawBufferPointer(utf8))
            return true
        }), done { return }
        var copy = s
        copy.withUTF8 { writeStringBytes(UnsafeRawBufferPointer($0)) }
    }

    @inline(__always)
    private func writeStringBytes(_ utf8: UnsafeRawBufferPointer) {
        if utf8.count < 64 {
            append(WireTag.shortString | UInt8(utf8.count))
        } else {
            append(WireTag.string)
            appendVarint(UInt64(utf8.count))
        }
        append(utf8)
    }

    /// Writes `header` and the first `count` bytes of an inline string's words.
    @inline(__always)
    private func writeInline(_ words: (UInt64, UInt64), count: Int, header: UInt8) {
        reserve(17)
        let at = pointee.base + pointee.count
        at.storeBytes(of: header, as: UInt8.self)
        // All 16 bytes go in (the room is reserved); only `count` of them are kept.
        (at + 1).storeBytes(of: words.0, as: UInt64.self)
        (at + 9).storeBytes(of: words.1, as: UInt64.self)
        pointee.count += 1 + count
    }

    func writePlainArray(_ array: any PlainNumberArray) {
        let kind = type(of: array).elementKind
        if pointee.attaching, array.count * kind.byteWidth >= WireHeader.attachmentThreshold,
           let index = pointee.owner!._withUnsafeGuaranteedRef({ owner -> Int? in
               guard owner.attachments.count < 255 else { return nil }
               owner.attachments.append(array)
               return owner.attachments.count - 1
           }) {
            append(WireTag.attachedArray, kind.rawValue)
            appendVarint(UInt64(array.count))
            appendVarint(UInt64(index))
            return
        }
        append(WireTag.plainArray, kind.rawValue)
        appendVarint(UInt64(array.count))
        // Every supported platform is little-endian: the storage is the wire format.
        array.withUnsafeBytes { append($0) }
    }

    // MARK: Keys

    /// Writes `name` as an entry's key: interned (defined the first time in this message, then
    /// referred to by number) when its key type is a record's, written whole when it is a
    /// dictionary's.
    @inline(__always)
    func writeKey(_ name: String, cache: Unmanaged<KeyCache>?) {
        guard let cache, cache._withUnsafeGuaranteedRef({ $0.interning }) else { return writeKeyBytes(name, kind: 3) }
        let generation = pointee.generation
        let reference: Int? = cache._withUnsafeGuaranteedRef { cache in
            let entry = cache.entry(for: name)
            if cache.generations[entry] == generation { return cache.indices[entry] }
            cache.generations[entry] = generation
            cache.indices[entry] = pointee.internedCount
            pointee.internedCount += 1
            return nil
        }
        if let reference { return appendVarint(UInt64(reference) << 2 | 1) }
        writeKeyBytes(name, kind: 2)
    }

    private func writeKeyBytes(_ name: String, kind: UInt64) {
        if SmallASCIIString.isAvailable, let inline = SmallASCIIString.inlineWords(of: name) {
            // 15 bytes or fewer: the header varint is one byte.
            return writeInline(inline.words, count: inline.count, header: UInt8(UInt64(inline.count) << 2 | kind))
        }
        if let done = name.utf8.withContiguousStorageIfAvailable({ utf8 -> Bool in
            appendVarint(UInt64(utf8.count) << 2 | kind)
            append(UnsafeRawBufferPointer(utf8))
            return true
        }), done { return }
        var copy = name
        copy.withUTF8 { utf8 in
            appendVarint(UInt64(utf8.count) << 2 | kind)
            append(UnsafeRawBufferPointer(utf8))
        }
    }

    /// What this thread keeps for key type `Key` (its names, if it interns them, and boxes).
    @inline(__always)
    func keyCache<Key: CodingKey>(for type: Key.Type) -> Unmanaged<KeyCache> {
        Unmanaged.passUnretained(pointee.scratch._withUnsafeGuaranteedRef { $0.keyCache(for: type) })
    }
}

/// What the codec keeps for one key type, per thread, across messages: the keys' names, where
/// each was interned in the message of the generation it was last used in, and container boxes
/// to hand out again (see ContainerReuse.swift). A key type with many distinct keys is a
/// dictionary's, and its keys are written whole instead of interned.
final class KeyCache {
    @exclusivity(unchecked) private(set) var interning: Bool
    @exclusivity(unchecked) private var names: UnsafeMutablePointer<String>
    @exclusivity(unchecked) fileprivate var indices: UnsafeMutablePointer<Int>
    @exclusivity(unchecked) fileprivate var generations: UnsafeMutablePointer<Int>
    @exclusivity(unchecked) private var count = 0
    @exclusivity(unchecked) private var capacity = 8
    /// Boxes of encoding containers, by stack position, and of decoding containers, by depth.
    let encodingBoxes = KeptBoxes()
    let decodingBoxes = KeptBoxes()

    init(interning: Bool) {
        self.interning = interning
        names = .allocate(capacity: 8)
        indices = .allocate(capacity: 8)
        generations = .allocate(capacity: 8)
    }

    deinit {
        names.deinitialize(count: count)
        names.deallocate()
        indices.deallocate()
        generations.deallocate()
    }

    /// The entry for `name`, added if new. Fields come in the same order every time, so the
    /// entry after the last one found is looked at first.
    @inline(__always)
    func entry(for name: String) -> Int {
        let guess = lastEntry &+ 1 < count ? lastEntry &+ 1 : 0
        if guess < count && names[guess] == name {
            lastEntry = guess
            return guess
        }
        for i in 0..<count where names[i] == name {
            lastEntry = i
            return i
        }
        lastEntry = add(name)
        return lastEntry
    }

    @exclusivity(unchecked) private var lastEntry = -1

    private func add(_ name: String) -> Int {
        if count == capacity {
            let larger = capacity * 2
            moveToLargerBuffer(&names, count: count, capacity: larger)
            moveToLargerBuffer(&indices, count: count, capacity: larger)
            moveToLargerBuffer(&generations, count: count, capacity: larger)
            capacity = larger
        }
        (names + count).initialize(to: name)
        indices[count] = 0
        generations[count] = -1
        count += 1
        // A key type with many distinct keys is a map, not a record: write its keys whole.
        if count > 256 { interning = false }
        return count - 1
    }

    /// The standard library encodes a dictionary's keys with its private key type.
    static func isDictionaryKey<Key: CodingKey>(_ type: Key.Type) -> Bool {
        String(reflecting: type).contains("DictionaryCodingKey")
    }
}

/// The `Encoder` a value's `encode(to:)` sees, one per nesting depth, reused.
final class ValueEncoder: Encoder {
    let context: Writer
    @exclusivity(unchecked) var frame = 0
    var codingPath: [any CodingKey] { [] }
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    init(context: Writer) { self.context = context }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        var place = -1
        let id = context.openContainer(in: frame, kind: .keyed, place: &place)
        let cache = context.keyCache(for: type)
        guard id >= 0, ContainerReuse.isAvailable else {
            return KeyedEncodingContainer(KeyedWriter<Key>(context: context, id: id, cache: cache))
        }
        return cache._withUnsafeGuaranteedRef { $0.encodingContainer(Key.self, place: place, id: id, context: context) }
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        var place = -1
        return UnkeyedWriter(context: context, id: context.openContainer(in: frame, kind: .unkeyed, place: &place))
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        SingleValueWriter(context: context, frame: frame)
    }
}

struct KeyedWriter<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let context: Writer
    /// The container written to, or, for a box kept for reuse, where the codec puts the id of
    /// the container it is handed out for.
    private let fixedID: Int
    private let slot: UnsafeMutablePointer<Int>?
    let cache: Unmanaged<KeyCache>?
    var codingPath: [any CodingKey] { [] }

    init(context: Writer, id: Int, slot: UnsafeMutablePointer<Int>? = nil, cache: Unmanaged<KeyCache>?) {
        self.context = context
        self.fixedID = id
        self.slot = slot
        self.cache = cache
    }

    @inline(__always)
    var id: Int { slot?.pointee ?? fixedID }

    @inline(__always)
    private func key(_ key: Key) throws {
        try context.prepare(id)
        context.writeKey(key.stringValue, cache: cache)
    }

    mutating func encodeNil(forKey key: Key) throws { try self.key(key); context.append(WireTag.null) }
    mutating func encode(_ value: Bool, forKey key: Key) throws {
        try self.key(key)
        context.append(value ? WireTag.trueValue : WireTag.falseValue)
    }
    mutating func encode(_ value: String, forKey key: Key) throws { try self.key(key); context.writeString(value) }
    mutating func encode(_ value: Double, forKey key: Key) throws { try self.key(key); context.writeDouble(value) }
    mutating func encode(_ value: Float, forKey key: Key) throws { try self.key(key); context.writeFloat(value) }
    mutating func encode(_ value: Int, forKey key: Key) throws { try self.key(key); context.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int8, forKey key: Key) throws { try self.key(key); context.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int16, forKey key: Key) throws { try self.key(key); context.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int32, forKey key: Key) throws { try self.key(key); context.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { try self.key(key); context.writeSigned(value) }
    mutating func encode(_ value: UInt, forKey key: Key) throws { try self.key(key); context.writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { try self.key(key); context.writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { try self.key(key); context.writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { try self.key(key); context.writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { try self.key(key); context.writeUnsigned(value) }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws { try self.key(key); try context.encode(value) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        var nested = -1
        if (try? self.key(key)) != nil {
            context.append(WireTag.keyed)
            nested = context.push(.keyed)
        }
        return KeyedEncodingContainer(KeyedWriter<NestedKey>(context: context, id: nested, cache: context.keyCache(for: keyType)))
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        var nested = -1
        if (try? self.key(key)) != nil {
            context.append(WireTag.unkeyed)
            nested = context.push(.unkeyed)
        }
        return UnkeyedWriter(context: context, id: nested)
    }

    mutating func superEncoder() -> any Encoder { superEncoder(named: "super") }
    mutating func superEncoder(forKey key: Key) -> any Encoder { superEncoder(named: key.stringValue) }

    private func superEncoder(named name: String) -> any Encoder {
        let encoder = ValueEncoder(context: context)
        encoder.frame = -1
        if (try? context.prepare(id)) != nil {
            context.writeKey(name, cache: cache)
            encoder.frame = context.push(.slot)
        }
        return encoder
    }
}

struct UnkeyedWriter: UnkeyedEncodingContainer {
    let context: Writer
    let id: Int
    var count = 0
    var codingPath: [any CodingKey] { [] }

    init(context: Writer, id: Int) {
        self.context = context
        self.id = id
    }

    @inline(__always)
    private mutating func next() throws {
        try context.prepare(id)
        count += 1
    }

    mutating func encodeNil() throws { try next(); context.append(WireTag.null) }
    mutating func encode(_ value: Bool) throws { try next(); context.append(value ? WireTag.trueValue : WireTag.falseValue) }
    mutating func encode(_ value: String) throws { try next(); context.writeString(value) }
    mutating func encode(_ value: Double) throws { try next(); context.writeDouble(value) }
    mutating func encode(_ value: Float) throws { try next(); context.writeFloat(value) }
    mutating func encode(_ value: Int) throws { try next(); context.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int8) throws { try next(); context.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int16) throws { try next(); context.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int32) throws { try next(); context.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int64) throws { try next(); context.writeSigned(value) }
    mutating func encode(_ value: UInt) throws { try next(); context.writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt8) throws { try next(); context.writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt16) throws { try next(); context.writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt32) throws { try next(); context.writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt64) throws { try next(); context.writeUnsigned(value) }
    mutating func encode<T: Encodable>(_ value: T) throws { try next(); try context.encode(value) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        var nested = -1
        if (try? next()) != nil {
            context.append(WireTag.keyed)
            nested = context.push(.keyed)
        }
        return KeyedEncodingContainer(KeyedWriter<NestedKey>(context: context, id: nested, cache: context.keyCache(for: keyType)))
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        var nested = -1
        if (try? next()) != nil {
            context.append(WireTag.unkeyed)
            nested = context.push(.unkeyed)
        }
        return UnkeyedWriter(context: context, id: nested)
    }

    mutating func superEncoder() -> any Encoder {
        let encoder = ValueEncoder(context: context)
        encoder.frame = -1
        if (try? next()) != nil { encoder.frame = context.push(.slot) }
        return encoder
    }
}

struct SingleValueWriter: SingleValueEncodingContainer {
    let context: Writer
    let frame: Int
    var codingPath: [any CodingKey] { [] }

    @inline(__always)
    private func begin() throws {
        guard try context.beginValue(in: frame) else { throw ContainersOutOfOrder() }
    }

    mutating func encodeNil() throws { try begin(); context.append(WireTag.null) }
    mutating func encode(_ value: Bool) throws { try begin(); context.append(value ? WireTag.trueValue : WireTag.falseValue) }
    mutating func encode(_ value: String) throws { try begin(); context.writeString(value) }
    mutating func encode(_ value: Double) throws { try begin(); context.writeDouble(value) }
    mutating func encode(_ value: Float) throws { try begin(); context.writeFloat(value) }
    mutating func encode(_ value: Int) throws { try begin(); context.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int8) throws { try begin(); context.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int16) throws { try begin(); context.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int32) throws { try begin(); context.writeSigned(Int64(value)) }
    mutating func encode(_ value: Int64) throws { try begin(); context.writeSigned(value) }
    mutating func encode(_ value: UInt) throws { try begin(); context.writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt8) throws { try begin(); context.writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt16) throws { try begin(); context.writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt32) throws { try begin(); context.writeUnsigned(UInt64(value)) }
    mutating func encode(_ value: UInt64) throws { try begin(); context.writeUnsigned(value) }
    mutating func encode<T: Encodable>(_ value: T) throws {
        try begin()
        // The value fills this frame: its own containers open inside it.
        try context.encode(value)
    }
}

/// Moves the first `count` elements at `pointer` into a new allocation of `capacity` elements,
/// frees the old one, and points `pointer` at the new one.
package func moveToLargerBuffer<T>(_ pointer: inout UnsafeMutablePointer<T>, count: Int, capacity: Int) {
    let larger = UnsafeMutablePointer<T>.allocate(capacity: capacity)
    larger.moveInitialize(from: pointer, count: count)
    pointer.deallocate()
    pointer = larger
}
