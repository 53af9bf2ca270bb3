// Every struct's `encode(to:)` and `init(from:)` asks its coder for a keyed container, and the
// standard library wraps ours in a box: a heap object whose generic type it looks up at run
// time, for every container, and frees when the value is done. For a small struct that is more
// than a third of the cost of coding it. A value at a given place (a position in the encoder's
// stack, a depth of the decoder) gets the same kind of container every time, so the codec keeps
// the box of each key type and place and hands it out again — only when nothing else holds it,
// which the box's reference count tells, and only to the coding state that made it.
//
// This relies on `KeyedEncodingContainer` and `KeyedDecodingContainer` being nothing but a
// reference to their box. That is checked once, against the standard library, by taking a
// container apart and putting it back together and using it; if the check fails, every
// container gets a new box, as without this.

enum ContainerReuse {
    /// Whether containers can be taken apart into their boxes and rebuilt (checked once).
    static let isAvailable: Bool = {
        guard MemoryLayout<Encoding>.size == MemoryLayout<AnyObject>.size,
              MemoryLayout<Encoding>.alignment == MemoryLayout<AnyObject>.alignment,
              MemoryLayout<Decoding>.size == MemoryLayout<AnyObject>.size,
              MemoryLayout<Decoding>.alignment == MemoryLayout<AnyObject>.alignment else { return false }
        // Encoding: a container taken apart and rebuilt still writes where it did, and its box's
        // reference count says whether the original is still held.
        let state = EncodingState(scratch: CodecScratch())
        let context = state.context
        context.appendHeader()
        let frame = context.push(.frame)
        var place = -1
        let id = context.openContainer(in: frame, kind: .keyed, place: &place)
        var (box, sharedWhileHeld) = takenApart(KeyedEncodingContainer(KeyedWriter<ProbeKey>(context: context, id: id, cache: nil)))
        guard sharedWhileHeld, isKnownUniquelyReferenced(&box), let box else { return false }
        var rebuilt = unsafeBitCast(box, to: Encoding.self)
        do {
            try rebuilt.encode(7, forKey: .probe)
            try context.close(downTo: 0)
        } catch { return false }
        let encoded = [UInt8](state.bytes)
        // Decoding: the same, reading the bytes just written.
        let decoding = DecodingState(UnsafeRawBufferPointer(start: nil, count: 0), scratch: CodecScratch())
        return encoded.withUnsafeBytes { bytes -> Bool in
            decoding.reset(UnsafeRawBufferPointer(rebasing: bytes[WireHeader.size...]))
            let decoder = decoding.valueDecoder(depth: 0)
            decoder.frame.pointee.start = 0
            decoder.frame.pointee.handed = .nothing
            guard (try? decoding.context.beginKeyed(decoder.frame)) != nil else { return false }
            var (box, sharedWhileHeld) = takenApart(KeyedDecodingContainer(KeyedReader<ProbeKey>(context: decoding.context, frame: decoder.frame)))
            guard sharedWhileHeld, isKnownUniquelyReferenced(&box), let box else { return false }
            return (try? unsafeBitCast(box, to: Decoding.self).decode(Int.self, forKey: .probe)) == 7
        }
    }()

    enum ProbeKey: String, CodingKey { case probe }
    typealias Encoding = KeyedEncodingContainer<ProbeKey>
    typealias Decoding = KeyedDecodingContainer<ProbeKey>

    /// The box of `container` and whether its reference count showed it shared while
    /// `container` was held. `container` is gone once this returns.
    @inline(never)
    private static func takenApart<C>(_ container: C) -> (box: AnyObject?, sharedWhileHeld: Bool) {
        var box: AnyObject? = unsafeBitCast(container, to: AnyObject.self)
        let shared = withExtendedLifetime(container) { !isKnownUniquelyReferenced(&box) }
        return (box, shared)
    }
}

/// Container boxes of one key type kept for reuse, by place, each with the serial number of the
/// coding state it belongs to; for encoding, also the id of the container each box writes to.
/// The storage never moves, so the slots can be pointed to.
final class KeptBoxes {
    /// Places beyond this are not kept (values nested deeper make new boxes).
    static let places = 64
    private let boxes: UnsafeMutablePointer<AnyObject?>
    private let owners: UnsafeMutablePointer<Int>
    let slots: UnsafeMutablePointer<Int>

    init() {
        boxes = .allocate(capacity: Self.places)
        boxes.initialize(repeating: nil, count: Self.places)
        owners = .allocate(capacity: Self.places)
        owners.initialize(repeating: 0, count: Self.places)
        slots = .allocate(capacity: Self.places)
        slots.initialize(repeating: -1, count: Self.places)
    }

    deinit {
        boxes.deinitialize(count: Self.places)
        boxes.deallocate()
        owners.deallocate()
        slots.deallocate()
    }

    /// The box kept at `place` for `owner`, if there is one and nothing else holds it.
    @inline(__always)
    func available(at place: Int, owner: Int) -> AnyObject? {
        guard place < Self.places, owners[place] == owner, isKnownUniquelyReferenced(&boxes[place]) else { return nil }
        return boxes[place]
    }

    /// Whether a new box may be kept at `place`: none is, or nothing else holds the one that is.
    @inline(__always)
    func canKeep(at place: Int) -> Bool {
        place < Self.places && (boxes[place] == nil || isKnownUniquelyReferenced(&boxes[place]))
    }

    func keep(_ box: AnyObject, at place: Int, owner: Int) {
        boxes[place] = box
        owners[place] = owner
    }
}

extension KeyCache {
    /// A keyed encoding container of container `id`, at stack position `place` of `context`:
    /// the box kept there, pointed at `id`, when it is free.
    func encodingContainer<Key: CodingKey>(_: Key.Type, place: Int, id: Int, context: Writer) -> KeyedEncodingContainer<Key> {
        let owner = context.pointee.serial
        let kept = encodingBoxes
        if let box = kept.available(at: place, owner: owner) {
            kept.slots[place] = id
            return unsafeBitCast(box, to: KeyedEncodingContainer<Key>.self)
        }
        let cache = Unmanaged.passUnretained(self)
        guard kept.canKeep(at: place) else { return KeyedEncodingContainer(KeyedWriter<Key>(context: context, id: id, cache: cache)) }
        kept.slots[place] = id
        let container = KeyedEncodingContainer(KeyedWriter<Key>(context: context, id: id, slot: kept.slots + place, cache: cache))
        kept.keep(unsafeBitCast(container, to: AnyObject.self), at: place, owner: owner)
        return container
    }

    /// A keyed decoding container on `frame`, the reused frame of depth `place` of `context`.
    func decodingContainer<Key: CodingKey>(_: Key.Type, place: Int, context: Reader, frame: FrameRef) -> KeyedDecodingContainer<Key> {
        let owner = context.pointee.serial
        let kept = decodingBoxes
        if let box = kept.available(at: place, owner: owner) {
            return unsafeBitCast(box, to: KeyedDecodingContainer<Key>.self)
        }
        let container = KeyedDecodingContainer(KeyedReader<Key>(context: context, frame: frame))
        if kept.canKeep(at: place) { kept.keep(unsafeBitCast(container, to: AnyObject.self), at: place, owner: owner) }
        return container
    }
}
