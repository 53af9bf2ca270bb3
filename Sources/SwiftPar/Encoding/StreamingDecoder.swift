#if canImport(Glibc)
import Glibc
#endif

// The decoder: reads a value straight out of the received bytes, in the format of
// WireFormat.swift, as the value's `init(from:)` asks for its parts. Nothing is parsed ahead:
// fields read in the order they were written (as synthesized code does) cost one comparison
// of the key each; a key asked for out of order, `contains`, `allKeys` and absent optional
// fields make the container index its entries once. Malformed bytes throw a `DecodingError`;
// nothing is allocated beyond what the bytes themselves could hold.
//
// Everything the decoder reads on every field lives in unsafe memory (`DecodeContext`, one
// `DecodeFrame` per open value), reached through pointers: no reference counting and no
// exclusivity checks on the hot path. The `Decoder` and container types the value's code sees
// are thin handles on those pointers.

/// What one decoding knows: the bytes, the keys interned so far, the frames of open values.
struct DecodeContext {
    var base: UnsafeRawPointer
    var count: Int
    /// Interned keys, in the order their definitions appear, and where each is defined.
    var keys: UnsafeMutablePointer<String>
    var definitions: UnsafeMutablePointer<Int>
    var keyCount = 0
    var keyCapacity = 16
    /// One frame per nesting depth, for the values decoded in turn at that depth.
    var frames: UnsafeMutablePointer<DecodeFrame>
    /// Index entries of keyed containers read out of order: (key offset, value offset) pairs.
    var entries: UnsafeMutablePointer<Int>
    var entryCount = 0
    var entryCapacity = 64
    let scratch: Unmanaged<CodecScratch>
    /// The state that owns this context, for its reusable decoders.
    var owner: Unmanaged<DecodingState>?
    /// Which decoding state this is, among those of its thread: container boxes kept for
    /// reuse belong to one.
    var serial = 0
    /// Elements that counts given by writers may still reserve room for in this message (see
    /// `believable(count:at:)`).
    var reservable = 0

    static let frameCount = maximumNestingDepth + 2
}

/// The state of one open value and the container it was read through.
struct DecodeFrame {
    enum Handed: UInt8 { case nothing, keyed, unkeyed, single }

    var start = 0
    var handed = Handed.nothing
    var singleEnd = -1
    var depth = 0
    // Keyed: the first entry; the next entry in order (-1: unknown); the entry handed out in
    // order (key and value offsets, -1: none); a frame reading that value; the end (-1:
    // unknown); the index of entries (start in `entries`, count; -1: not built).
    var first = 0
    var next = -1
    var currentKey = -1
    var currentValue = -1
    var child: UnsafeMutablePointer<DecodeFrame>?
    var endOffset = -1
    var indexStart = -1
    var indexCount = 0
    // Unkeyed: the next value, its index, a plain-number array's kind (0: none), count and data.
    var position = 0
    var element = 0
    var plainKind: UInt8 = 0
    var plainCount = 0
    var plainData = 0
    /// Where an array sent apart was received (nil: its elements are in the message, at
    /// `plainData`), and the offset past the array's encoding in the message.
    var plainAddress: UnsafeRawPointer?
    var plainEnd = 0
    var counted = -1
}

typealias Reader = UnsafeMutablePointer<DecodeContext>
typealias FrameRef = UnsafeMutablePointer<DecodeFrame>

/// Receives the arrays sent apart after a message, in order, keeping those read out of order.
final class AttachmentReader {
    /// Receives the next attachment (a whole message) into a buffer of exactly its size.
    let receiveNext: (UnsafeMutableRawBufferPointer) throws -> Void
    /// Receives the next attachment whole, whatever its size.
    let receiveWhole: () throws -> [UInt8]
    let count: Int
    @exclusivity(unchecked) private(set) var received = 0
    @exclusivity(unchecked) private var kept: [Int: [UInt8]] = [:]

    init(count: Int, receiveNext: @escaping (UnsafeMutableRawBufferPointer) throws -> Void, receiveWhole: @escaping () throws -> [UInt8]) {
        self.count = count
        self.receiveNext = receiveNext
        self.receiveWhole = receiveWhole
    }

    /// Fills `buffer` with attachment `index`.
    func read(_ index: Int, into buffer: UnsafeMutableRawBufferPointer) throws {
        guard index < count else {
            throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "the value names array \(index) sent apart, but only \(count) were"))
        }
        // Read already by a container (a value's code may read the same array again).
        if let (held, byteCount) = held[index] {
            guard byteCount == buffer.count else { throw sizeError(index, byteCount, buffer.count) }
            if byteCount > 0 { buffer.baseAddress!.copyMemory(from: held, byteCount: byteCount) }
            return
        }
        if let bytes = kept.removeValue(forKey: index) {
            guard bytes.count == buffer.count else { throw sizeError(index, bytes.count, buffer.count) }
            bytes.withUnsafeBytes { buffer.copyMemoryAtFullSpeed(from: $0) }
            return
        }
        guard index >= received else {
            throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "array \(index) sent apart is read twice"))
        }
        // Attachments arrive in order: keep those before the one asked for.
        while received < index {
            kept[received] = try receiveWhole()
            received += 1
        }
        try receiveNext(buffer)
        received += 1
    }

    /// Receives and drops every attachment not read yet, so the next message is the next value.
    func drain() throws {
        while received < count {
            _ = try receiveWhole()
            received += 1
        }
    }

    /// Attachment `index` of `byteCount` bytes, received into memory this reader keeps until it
    /// goes: for a value's code that reads the array element by element.
    func heldBytes(_ index: Int, byteCount: Int) throws -> UnsafeRawPointer {
        if let (buffer, count) = held[index] {
            guard count == byteCount else { throw sizeError(index, count, byteCount) }
            return UnsafeRawPointer(buffer)
        }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: Swift.max(byteCount, 1), alignment: 16)
        do {
            try read(index, into: UnsafeMutableRawBufferPointer(start: buffer, count: byteCount))
        } catch {
            buffer.deallocate()
            throw error
        }
        held[index] = (buffer, byteCount)
        return UnsafeRawPointer(buffer)
    }

    /// Attachments received for containers, by index, with their sizes.
    @exclusivity(unchecked) private var held: [Int: (UnsafeMutableRawPointer, Int)] = [:]

    deinit {
        for (buffer, _) in held.values { buffer.deallocate() }
    }

    private func sizeError(_ index: Int, _ got: Int, _ expected: Int) -> DecodingError {
        .dataCorrupted(.init(codingPath: [], debugDescription: "array \(index) sent apart has \(got) bytes, the value says \(expected)"))
    }
}

/// Owns a decode context and its memory; reused by a thread for message after message.
final class DecodingState {
    let context: Reader
    /// The arrays sent apart from the message being decoded, if any.
    @exclusivity(unchecked) var attachments: AttachmentReader?
    /// The `Decoder` of each depth, reused for every value at that depth.
    @exclusivity(unchecked) private var valueDecoders: [ValueDecoder] = []
    /// Frames made for nested containers handed to a value's code, freed at the next reset.
    @exclusivity(unchecked) private var extraFrames: [FrameRef] = []

    init(_ bytes: UnsafeRawBufferPointer, scratch: CodecScratch) {
        context = .allocate(capacity: 1)
        context.initialize(to: DecodeContext(
            base: bytes.baseAddress ?? UnsafeRawPointer(bitPattern: 8)!, count: bytes.count,
            keys: .allocate(capacity: 16), definitions: .allocate(capacity: 16),
            frames: .allocate(capacity: DecodeContext.frameCount), entries: .allocate(capacity: 64),
            scratch: Unmanaged.passUnretained(scratch)))
        context.pointee.frames.initialize(repeating: DecodeFrame(), count: DecodeContext.frameCount)
        context.pointee.owner = Unmanaged.passUnretained(self)
        context.pointee.serial = scratch.newSerial()
        context.pointee.reservable = bytes.count
    }

    /// Prepares for decoding `bytes`.
    func reset(_ bytes: UnsafeRawBufferPointer) {
        context.pointee.base = bytes.baseAddress ?? UnsafeRawPointer(bitPattern: 8)!
        context.pointee.count = bytes.count
        context.pointee.reservable = bytes.count
        if context.pointee.keyCount > 0 {
            context.pointee.keys.deinitialize(count: context.pointee.keyCount)
            context.pointee.keyCount = 0
        }
        context.pointee.entryCount = 0
        guard !extraFrames.isEmpty else { return }
        for frame in extraFrames {
            frame.deinitialize(count: 1)
            frame.deallocate()
        }
        extraFrames.removeAll(keepingCapacity: true)
    }

    deinit {
        reset(UnsafeRawBufferPointer(start: nil, count: 0))
        context.pointee.keys.deallocate()
        context.pointee.definitions.deallocate()
        context.pointee.frames.deinitialize(count: DecodeContext.frameCount)
        context.pointee.frames.deallocate()
        context.pointee.entries.deallocate()
        context.deinitialize(count: 1)
        context.deallocate()
    }

    /// The reusable decoder for values at `depth`.
    func valueDecoder(depth: Int) -> ValueDecoder {
        while valueDecoders.count <= depth {
            let d = valueDecoders.count
            valueDecoders.append(ValueDecoder(context: context, frame: context.pointee.frames + d, owner: self, place: d))
        }
        return valueDecoders[depth]
    }

    /// A decoder with a frame of its own, for a nested container the value's code keeps.
    func detachedDecoder(offset: Int, depth: Int) -> ValueDecoder {
        let frame = FrameRef.allocate(capacity: 1)
        frame.initialize(to: DecodeFrame())
        frame.pointee.start = offset
        frame.pointee.depth = depth
        extraFrames.append(frame)
        return ValueDecoder(context: context, frame: frame, owner: self, place: -1)
    }
}

extension UnsafeMutablePointer where Pointee == DecodeContext {
    // MARK: Reading

    func corrupted(_ what: String, at offset: Int) -> DecodingError {
        .dataCorrupted(.init(codingPath: [], debugDescription: "\(what) at byte \(offset + WireHeader.size) of \(pointee.count + WireHeader.size)"))
    }

    @inline(__always)
    func byte(at offset: Int) throws -> UInt8 {
        guard offset < pointee.count else { throw corrupted("unexpected end of message", at: offset) }
        return pointee.base.load(fromByteOffset: offset, as: UInt8.self)
    }

    @inline(__always)
    func varint(at offset: inout Int) throws -> UInt64 {
        if offset + 1 < pointee.count {
            // One or two bytes, the common cases, without a loop.
            let first = pointee.base.load(fromByteOffset: offset, as: UInt8.self)
            if first < 0x80 {
                offset += 1
                return UInt64(first)
            }
            let second = pointee.base.load(fromByteOffset: offset + 1, as: UInt8.self)
            if second < 0x80 {
                offset += 2
                return UInt64(first & 0x7F) | UInt64(second) << 7
            }
        } else if offset < pointee.count {
            let first = pointee.base.load(fromByteOffset: offset, as: UInt8.self)
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
        guard value <= UInt64(pointee.count - offset) else { throw corrupted("length \(value) runs past the end", at: offset) }
        return Int(value)
    }

    @inline(__always)
    func fixed<T: FixedWidthInteger>(_ type: T.Type, at offset: inout Int) throws -> T {
        let width = MemoryLayout<T>.size
        guard pointee.count - offset >= width else { throw corrupted("unexpected end of message", at: offset) }
        let value = T(littleEndian: pointee.base.loadUnaligned(fromByteOffset: offset, as: T.self))
        offset += width
        return value
    }

    @inline(__always)
    func text(at offset: Int, length: Int) throws -> String {
        let bytes = UnsafeBufferPointer(start: (pointee.base + offset).assumingMemoryBound(to: UInt8.self), count: length)
        // ASCII, the common case, needs no validation beyond the top bits.
        if let small = SmallASCIIString.make(pointee.base, offset: offset, count: length, end: pointee.count) { return small }
        if isASCII(UnsafeRawPointer(bytes.baseAddress!), length) { return String(decoding: bytes, as: UTF8.self) }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw corrupted("invalid UTF-8 in a string", at: offset) }
        return text
    }

    // MARK: Keys

    /// Reads the key at `offset`, registering definitions met for the first time. Returns nil
    /// at the end of the container; otherwise the interned key's number (≥ 0), or for a key
    /// used once, -1 - (offset of its bytes) with its length in `literalLength`.
    @inline(__always)
    func key(at offset: inout Int, literalLength: inout Int) throws -> Int? {
        let start = offset
        let header = try varint(at: &offset)
        if header == 0 { return nil }
        switch header & 3 {
        case 1:
            let index = Int(header >> 2)
            guard index < pointee.keyCount else { throw corrupted("key number \(index) is not defined", at: start) }
            return index
        case 2:
            let n = try length(header >> 2, at: offset)
            let index = try define(at: start, text: offset, length: n)
            offset += n
            return index
        case 3:
            let n = try length(header >> 2, at: offset)
            literalLength = n
            defer { offset += n }
            return -1 - offset
        default:
            throw corrupted("invalid key header \(header)", at: start)
        }
    }

    /// The number of the key defined at `start`: new if this is the first time the definition
    /// is read, else the number it got then.
    private func define(at start: Int, text: Int, length: Int) throws -> Int {
        let count = pointee.keyCount
        if count > 0, start <= pointee.definitions[count - 1] {
            guard let known = binarySearch(pointee.definitions, count, start) else { throw corrupted("misplaced key definition", at: start) }
            return known
        }
        if count == pointee.keyCapacity {
            let capacity = count * 2
            let keys = UnsafeMutablePointer<String>.allocate(capacity: capacity)
            keys.moveInitialize(from: pointee.keys, count: count)
            pointee.keys.deallocate()
            pointee.keys = keys
            let definitions = UnsafeMutablePointer<Int>.allocate(capacity: capacity)
            definitions.moveInitialize(from: pointee.definitions, count: count)
            pointee.definitions.deallocate()
            pointee.definitions = definitions
            pointee.keyCapacity = capacity
        }
        (pointee.keys + count).initialize(to: try self.text(at: text, length: length))
        pointee.definitions[count] = start
        pointee.keyCount = count + 1
        return count
    }

    /// The text of a key as `key(at:literalLength:)` returned it.
    func name(of key: Int, literalLength: Int) throws -> String {
        key >= 0 ? pointee.keys[key] : try text(at: -1 - key, length: literalLength)
    }

    /// The next key of a dictionary, as its text, moving `offset` past it; nil at the end of
    /// the container. A short key written whole (the common case) is read in one step.
    @inline(__always)
    func dictionaryKey(at offset: inout Int) throws -> String? {
        if offset < pointee.count {
            let header = pointee.base.load(fromByteOffset: offset, as: UInt8.self)
            // One header byte for a key used once: its length is header >> 2, below 32.
            if header & 0x83 == 3, offset + 1 + Int(header >> 2) <= pointee.count,
               let small = SmallASCIIString.make(pointee.base, offset: offset + 1, count: Int(header >> 2), end: pointee.count) {
                offset += 1 + Int(header >> 2)
                return small
            }
        }
        var length = 0
        guard let key = try key(at: &offset, literalLength: &length) else { return nil }
        return try name(of: key, literalLength: length)
    }

    /// Whether a key as `key(at:literalLength:)` returned it is `name`.
    @inline(__always)
    func key(_ key: Int, literalLength: Int, is name: String) -> Bool {
        if key >= 0 { return pointee.keys[key] == name }
        let offset = -1 - key
        var name = name
        return name.withUTF8 { utf8 in
            utf8.count == literalLength && (literalLength == 0 || memcmp(pointee.base + offset, utf8.baseAddress!, literalLength) == 0)
        }
    }

    /// Whether the key at `offset` is `name`.
    @inline(__always)
    func key(at offset: Int, is name: String) throws -> Bool {
        var position = offset
        var length = 0
        guard let key = try key(at: &position, literalLength: &length) else { return false }
        return self.key(key, literalLength: length, is: name)
    }

    /// Skips the key at `offset`; false at the end of the container.
    @inline(__always)
    func skipKey(at offset: inout Int) throws -> Bool {
        var length = 0
        return try key(at: &offset, literalLength: &length) != nil
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
        case WireTag.attachedArray:
            _ = try plainKind(at: position)
            position += 1
            _ = try varint(at: &position)
            _ = try varint(at: &position)
            return position
        case WireTag.unkeyed, WireTag.countedUnkeyed:
            if tag == WireTag.countedUnkeyed { _ = try varint(at: &position) }
            while try byte(at: position) != WireTag.end {
                position = try skipValue(at: position, depth: depth + 1)
            }
            return position + 1
        case WireTag.keyed, WireTag.countedKeyed:
            if tag == WireTag.countedKeyed { _ = try varint(at: &position) }
            while try skipKey(at: &position) {
                position = try skipValue(at: position, depth: depth + 1)
            }
            return position
        default:
            throw corrupted("unknown value tag \(tag)", at: offset)
        }
    }

    /// Calls `found` with the start and end of every array sent apart in the value at `offset`,
    /// in the message's order; returns the offset just past the value.
    func forEachAttachedArray(at offset: Int, depth: Int, _ found: (_ start: Int, _ end: Int) throws -> Void) throws -> Int {
        guard depth < maximumNestingDepth else { throw corrupted("nesting deeper than \(maximumNestingDepth)", at: offset) }
        let tag = try byte(at: offset)
        var position = offset + 1
        switch tag {
        case WireTag.attachedArray:
            let end = try skipValue(at: offset, depth: depth)
            try found(offset, end)
            return end
        case WireTag.unkeyed, WireTag.countedUnkeyed:
            if tag == WireTag.countedUnkeyed { _ = try varint(at: &position) }
            while try byte(at: position) != WireTag.end {
                position = try forEachAttachedArray(at: position, depth: depth + 1, found)
            }
            return position + 1
        case WireTag.keyed, WireTag.countedKeyed:
            if tag == WireTag.countedKeyed { _ = try varint(at: &position) }
            while try skipKey(at: &position) {
                position = try forEachAttachedArray(at: position, depth: depth + 1, found)
            }
            return position
        default:
            return try skipValue(at: offset, depth: depth)
        }
    }

    /// Room to reserve for the elements of the container whose tag was `tag`, its contents at
    /// `position` (moved past a count, if the writer gave one). A given count is trusted only
    /// as far as the bytes left could hold, so hostile input cannot make a large reservation;
    /// without one, the elements are counted in a quick pass.
    func capacityHint(at position: inout Int, tag: UInt8, counting entries: Bool) throws -> Int {
        if tag == WireTag.countedKeyed || tag == WireTag.countedUnkeyed {
            return believable(count: try varint(at: &position), at: position)
        }
        return entries ? try countEntries(at: position) : try countValues(at: position)
    }

    /// A count a writer gave for the container whose contents start at `position`, believed only
    /// as far as the bytes left could hold (every value or entry takes at least two bytes), and
    /// only while the counts believed in this message add up to no more than its size: nested
    /// containers that each claimed what the rest of the message could hold made the room
    /// reserved grow with the square of the message's size.
    @inline(__always)
    func believable(count claimed: UInt64, at position: Int) -> Int {
        let believed = Int(min(claimed, UInt64(pointee.count - position) / 2, UInt64(pointee.reservable)))
        pointee.reservable -= believed
        return believed
    }

    /// How many values an unkeyed container holds, its first value at `offset` (a quick pass).
    func countValues(at offset: Int) throws -> Int {
        var position = offset
        var n = 0
        while try byte(at: position) != WireTag.end {
            position = try skipValue(at: position, depth: 1)
            n += 1
        }
        return n
    }

    /// How many entries a keyed container holds, its first key at `offset` (a quick pass).
    func countEntries(at offset: Int) throws -> Int {
        var position = offset
        var n = 0
        while try skipKey(at: &position) {
            position = try skipValue(at: position, depth: 1)
            n += 1
        }
        return n
    }

    private func advance(_ position: Int, by n: Int) throws -> Int {
        guard pointee.count - position >= n else { throw corrupted("unexpected end of message", at: position) }
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

    var scratch: CodecScratch { pointee.scratch.takeUnretainedValue() }

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
        if T.self == Float.self { return try float(at: &offset) as! T }
        if T.self == Int64.self { return try integer(Int64.self, at: &offset) as! T }
        if T.self == UInt64.self { return try integer(UInt64.self, at: &offset) as! T }
        if T.self == Int32.self { return try integer(Int32.self, at: &offset) as! T }
        if T.self == UInt8.self { return try integer(UInt8.self, at: &offset) as! T }
        if T.self == UInt.self { return try integer(UInt.self, at: &offset) as! T }
        if T.self == UInt32.self { return try integer(UInt32.self, at: &offset) as! T }
        if T.self == Int16.self { return try integer(Int16.self, at: &offset) as! T }
        if T.self == Int8.self { return try integer(Int8.self, at: &offset) as! T }
        if T.self == UInt16.self { return try integer(UInt16.self, at: &offset) as! T }
        if T.self == Int128.self { return try integer(Int128.self, at: &offset) as! T }
        if T.self == UInt128.self { return try integer(UInt128.self, at: &offset) as! T }
        guard depth < maximumNestingDepth else { throw corrupted("nesting deeper than \(maximumNestingDepth)", at: offset) }
        let tag = try byte(at: offset)
        switch pointee.scratch._withUnsafeGuaranteedRef({ $0.kind(of: T.self) }) {
        case .plainArray(let arrayType):
            if tag == WireTag.attachedArray, try plainKind(at: offset + 1) == arrayType.elementKind {
                return try attachedArray(arrayType, at: &offset) as! T
            }
            if tag == WireTag.plainArray, try plainKind(at: offset + 1) == arrayType.elementKind {
                var position = offset + 2
                let elements = try varint(at: &position)
                let (bytes, overflow) = elements.multipliedReportingOverflow(by: UInt64(arrayType.elementKind.byteWidth))
                guard !overflow else { throw corrupted("array of \(elements) elements runs past the end", at: position) }
                let n = try length(bytes, at: position)
                offset = position + n
                return arrayType.init(rawElementBytes: UnsafeRawBufferPointer(start: pointee.base + position, count: n)) as! T
            }
        case .directArray(let arrayType):
            if tag == WireTag.unkeyed || tag == WireTag.countedUnkeyed { return try arrayType.decodeElements(from: self, at: &offset) as! T }
        case .directDictionary(let dictionaryType):
            if tag == WireTag.keyed || tag == WireTag.countedKeyed { return try dictionaryType.decodeEntries(from: self, at: &offset) as! T }
        case .stringKeyedDecodable(let dictionaryType), .stringKeyedBoth(let dictionaryType):
            if tag == WireTag.keyed || tag == WireTag.countedKeyed {
                return try dictionaryType.decodeEntries(from: self, at: &offset, depth: depth) as! T
            }
        case .stringKeyedEncodable, .other:
            break
        }
        let decoder = pointee.owner!._withUnsafeGuaranteedRef { $0.valueDecoder(depth: depth) }
        decoder.frame.pointee.start = offset
        decoder.frame.pointee.depth = depth
        decoder.frame.pointee.handed = .nothing
        decoder.frame.pointee.singleEnd = -1
        let value = try T(from: decoder)
        offset = try end(of: decoder.frame)
        return value
    }

    /// A plain-number array sent apart: allocated at its size and received straight into.
    private func attachedArray(_ arrayType: any PlainNumberArray.Type, at offset: inout Int) throws -> any PlainNumberArray {
        var position = offset + 2
        let elements = try varint(at: &position)
        let index = try varint(at: &position)
        let width = UInt64(arrayType.elementKind.byteWidth)
        guard let reader = pointee.owner!._withUnsafeGuaranteedRef({ $0.attachments }) else {
            throw corrupted("an array sent apart, outside a point-to-point message", at: offset)
        }
        guard index < UInt64(reader.count), elements <= UInt64(Int.max) / width else {
            throw corrupted("array \(index) sent apart of \(elements) elements is not one the message announced", at: offset)
        }
        let array = try arrayType.received(count: Int(elements)) { try reader.read(Int(index), into: $0) }
        offset = position
        return array
    }

    @inline(__always)
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
        case WireTag.unsigned:
            // Every unsigned number reaches a Double (rounded, as JSONDecoder rounds it).
            return Double(try integer(UInt64.self, at: &offset))
        case WireTag.signed, 0x40...0x7F:
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
            let start = offset
            offset += 1
            let wide = Double(bitPattern: try fixed(UInt64.self, at: &offset))
            let narrow = Float(wide)
            // A finite Double beyond Float's range does not fit: an error, as in JSONDecoder,
            // not infinity.
            guard narrow.isFinite || !wide.isFinite else {
                throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "the number \(wide) at byte \(start + WireHeader.size) does not fit in Float"))
            }
            return narrow
        case WireTag.unsigned:
            return Float(try integer(UInt64.self, at: &offset))
        case WireTag.signed, 0x40...0x7F:
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

    // MARK: Frames

    /// The offset just past the value of `frame`, skipping whatever its code left unread.
    func end(of frame: FrameRef) throws -> Int {
        switch frame.pointee.handed {
        case .keyed: return try keyedEnd(frame)
        case .unkeyed: return try unkeyedEnd(frame)
        case .single: if frame.pointee.singleEnd >= 0 { return frame.pointee.singleEnd }
        case .nothing: break
        }
        return try skipValue(at: frame.pointee.start, depth: frame.pointee.depth)
    }

    // MARK: Keyed containers

    func beginKeyed(_ frame: FrameRef) throws {
        let tag = try byte(at: frame.pointee.start)
        guard tag == WireTag.keyed || tag == WireTag.countedKeyed else { throw mismatch([String: Any].self, found: tag, at: frame.pointee.start) }
        guard frame.pointee.handed != .keyed else { return }
        var first = frame.pointee.start + 1
        if tag == WireTag.countedKeyed { _ = try varint(at: &first) }
        frame.pointee.handed = .keyed
        frame.pointee.first = first
        frame.pointee.next = frame.pointee.first
        frame.pointee.currentKey = -1
        frame.pointee.currentValue = -1
        frame.pointee.child = nil
        frame.pointee.endOffset = -1
        frame.pointee.indexStart = -1
    }

    /// Moves `next` past the entry handed out in order, however far it was read.
    @inline(__always)
    private func settle(_ frame: FrameRef) throws {
        guard frame.pointee.currentKey >= 0 else { return }
        if let child = frame.pointee.child {
            frame.pointee.next = try end(of: child)
            frame.pointee.child = nil
        } else {
            frame.pointee.next = try skipValue(at: frame.pointee.currentValue, depth: frame.pointee.depth + 1)
        }
        frame.pointee.currentKey = -1
    }

    /// The offset of the value for `name`, or -1 if the container has no such key.
    @inline(__always)
    func find(_ name: String, in frame: FrameRef) throws -> Int {
        if frame.pointee.currentKey >= 0, frame.pointee.child == nil, try key(at: frame.pointee.currentKey, is: name) {
            return frame.pointee.currentValue
        }
        try settle(frame)
        let position = frame.pointee.next
        if position >= 0 {
            var after = position
            var length = 0
            if let key = try key(at: &after, literalLength: &length) {
                if self.key(key, literalLength: length, is: name) {
                    frame.pointee.currentKey = position
                    frame.pointee.currentValue = after
                    return after
                }
            } else {
                frame.pointee.endOffset = after
            }
        }
        return try indexedValue(for: name, in: frame)
    }

    /// Whether the container has `name`, without moving through it.
    func contains(_ name: String, in frame: FrameRef) throws -> Bool {
        if frame.pointee.currentKey >= 0 {
            if try key(at: frame.pointee.currentKey, is: name) { return true }
        } else if frame.pointee.next >= 0, try key(at: frame.pointee.next, is: name) {
            return true
        }
        return try indexedValue(for: name, in: frame) >= 0
    }

    /// The value that starts at `start` was read up to `end`.
    @inline(__always)
    func finished(_ frame: FrameRef, valueAt start: Int, end: Int) {
        if frame.pointee.currentKey >= 0, frame.pointee.currentValue == start, frame.pointee.child == nil {
            frame.pointee.next = end
            frame.pointee.currentKey = -1
        }
    }

    /// The value that starts at `start` is read by a nested container on `child`.
    func handed(_ frame: FrameRef, valueAt start: Int, to child: FrameRef) {
        if frame.pointee.currentKey >= 0, frame.pointee.currentValue == start { frame.pointee.child = child }
    }

    private func indexedValue(for name: String, in frame: FrameRef) throws -> Int {
        try buildIndex(frame)
        let entries = pointee.entries + frame.pointee.indexStart
        for i in 0..<frame.pointee.indexCount where try key(at: entries[2 * i], is: name) {
            return entries[2 * i + 1]
        }
        return -1
    }

    func buildIndex(_ frame: FrameRef) throws {
        guard frame.pointee.indexStart < 0 else { return }
        let start = pointee.entryCount
        var position = frame.pointee.first
        var n = 0
        while true {
            let keyOffset = position
            guard try skipKey(at: &position) else { break }
            if pointee.entryCount + 2 > pointee.entryCapacity {
                let capacity = pointee.entryCapacity * 2
                let entries = UnsafeMutablePointer<Int>.allocate(capacity: capacity)
                entries.moveInitialize(from: pointee.entries, count: pointee.entryCount)
                pointee.entries.deallocate()
                pointee.entries = entries
                pointee.entryCapacity = capacity
            }
            pointee.entries[pointee.entryCount] = keyOffset
            pointee.entries[pointee.entryCount + 1] = position
            pointee.entryCount += 2
            n += 1
            position = try skipValue(at: position, depth: frame.pointee.depth + 1)
        }
        frame.pointee.indexStart = start
        frame.pointee.indexCount = n
        frame.pointee.endOffset = position
    }

    func allNames(_ frame: FrameRef) throws -> [String] {
        try buildIndex(frame)
        var names: [String] = []
        names.reserveCapacity(frame.pointee.indexCount)
        for i in 0..<frame.pointee.indexCount {
            var position = pointee.entries[frame.pointee.indexStart + 2 * i]
            var length = 0
            guard let key = try key(at: &position, literalLength: &length) else { continue }
            names.append(try name(of: key, literalLength: length))
        }
        return names
    }

    private func keyedEnd(_ frame: FrameRef) throws -> Int {
        if frame.pointee.endOffset >= 0 { return frame.pointee.endOffset }
        try settle(frame)
        if frame.pointee.next >= 0 {
            var position = frame.pointee.next
            while try skipKey(at: &position) {
                position = try skipValue(at: position, depth: frame.pointee.depth + 1)
            }
            frame.pointee.endOffset = position
            return position
        }
        try buildIndex(frame)
        return frame.pointee.endOffset
    }

    // MARK: Unkeyed containers

    func beginUnkeyed(_ frame: FrameRef) throws {
        let start = frame.pointee.start
        let tag = try byte(at: start)
        frame.pointee.handed = .unkeyed
        frame.pointee.element = 0
        frame.pointee.counted = -1
        frame.pointee.child = nil
        switch tag {
        case WireTag.unkeyed, WireTag.countedUnkeyed:
            var position = start + 1
            if tag == WireTag.countedUnkeyed { _ = try varint(at: &position) }
            frame.pointee.plainKind = 0
            frame.pointee.position = position
        case WireTag.plainArray:
            let kind = try plainKind(at: start + 1)
            var at = start + 2
            let elements = try varint(at: &at)
            let (bytes, overflow) = elements.multipliedReportingOverflow(by: UInt64(kind.byteWidth))
            guard !overflow else { throw corrupted("array of \(elements) elements runs past the end", at: at) }
            _ = try length(bytes, at: at)
            frame.pointee.plainKind = kind.rawValue
            frame.pointee.plainCount = Int(elements)
            frame.pointee.plainData = at
            frame.pointee.plainAddress = nil
            frame.pointee.plainEnd = at + Int(bytes)
            frame.pointee.position = at
        case WireTag.attachedArray:
            // An array of 64 KiB or more, sent apart, read by the value's own code (a loop over
            // an unkeyed container, or another element type): received here, then read as one
            // in the message is.
            let kind = try plainKind(at: start + 1)
            var at = start + 2
            let elements = try varint(at: &at)
            let index = try varint(at: &at)
            guard let reader = pointee.owner!._withUnsafeGuaranteedRef({ $0.attachments }) else {
                throw corrupted("an array sent apart, outside a point-to-point message", at: start)
            }
            guard index < UInt64(reader.count), elements <= UInt64(Int.max) / UInt64(kind.byteWidth) else {
                throw corrupted("array \(index) sent apart of \(elements) elements is not one the message announced", at: start)
            }
            frame.pointee.plainAddress = try reader.heldBytes(Int(index), byteCount: Int(elements) * kind.byteWidth)
            frame.pointee.plainKind = kind.rawValue
            frame.pointee.plainCount = Int(elements)
            frame.pointee.plainData = 0
            frame.pointee.plainEnd = at
            frame.pointee.position = at
        default:
            throw mismatch([Any].self, found: tag, at: start)
        }
    }

    @inline(__always)
    func settleUnkeyed(_ frame: FrameRef) throws {
        if let child = frame.pointee.child {
            frame.pointee.child = nil
            frame.pointee.position = try end(of: child)
        }
    }

    private func unkeyedEnd(_ frame: FrameRef) throws -> Int {
        if frame.pointee.plainKind != 0 { return frame.pointee.plainEnd }
        try settleUnkeyed(frame)
        var position = frame.pointee.position
        while try byte(at: position) != WireTag.end {
            position = try skipValue(at: position, depth: frame.pointee.depth + 1)
        }
        return position + 1
    }
}

/// Whether every one of `count` bytes at `start` is below 0x80.
@inline(__always)
func isASCII(_ start: UnsafeRawPointer, _ count: Int) -> Bool {
    var i = 0
    var high: UInt64 = 0
    while i + 8 <= count {
        high |= start.loadUnaligned(fromByteOffset: i, as: UInt64.self)
        i += 8
    }
    while i < count {
        high |= UInt64(start.load(fromByteOffset: i, as: UInt8.self))
        i += 1
    }
    return high & 0x8080_8080_8080_8080 == 0
}

/// The index of `value` in the first `count` elements of ascending `sorted`, or nil.
func binarySearch(_ sorted: UnsafePointer<Int>, _ count: Int, _ value: Int) -> Int? {
    var low = 0
    var high = count - 1
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
