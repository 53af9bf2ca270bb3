#if canImport(Glibc)
import Glibc
#endif

/// What the codec keeps per thread between messages, so a small message costs no allocation:
/// a reusable encoder and decoder, the field names of each key type, and how each value type
/// is written.
final class CodecScratch {
    /// The scratch of the calling thread.
    static var current: CodecScratch {
        if let pointer = pthread_getspecific(key) { return Unmanaged<CodecScratch>.fromOpaque(pointer).takeUnretainedValue() }
        let scratch = CodecScratch()
        pthread_setspecific(key, Unmanaged.passRetained(scratch).toOpaque())
        return scratch
    }

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key) { pointer in
            if let pointer { Unmanaged<CodecScratch>.fromOpaque(pointer).release() }
        }
        return key
    }()

    /// The reusable encoder and decoder: nil until first used, and while a message is being
    /// coded with them.
    @exclusivity(unchecked) private var idleEncoder: EncodingState?
    @exclusivity(unchecked) private var idleDecoder: DecodingState?
    /// Field names per key type, kept across messages.
    @exclusivity(unchecked) private var keyCaches: [ObjectIdentifier: KeyCache] = [:]
    /// How values of each type are written.
    @exclusivity(unchecked) private var valueKinds: [ObjectIdentifier: ValueKind] = [:]
    @exclusivity(unchecked) private var generations = 0

    /// A number no encoding on this thread has used: key caches are stamped with it.
    func newGeneration() -> Int {
        generations &+= 1
        return generations
    }

    @exclusivity(unchecked) private var serials = 0

    /// A number no other coding state of this thread has.
    func newSerial() -> Int {
        serials &+= 1
        return serials
    }

    /// An encoder ready for a new message (the reusable one unless it is busy: a value's
    /// `encode(to:)` that encodes another message itself gets a fresh one).
    func takeEncoder() -> EncodingState {
        guard let encoder = idleEncoder else { return EncodingState(scratch: self) }
        idleEncoder = nil
        encoder.reset()
        return encoder
    }

    func returnEncoder(_ encoder: EncodingState) {
        if encoder.reusable { idleEncoder = encoder }
    }

    func takeDecoder(_ bytes: UnsafeRawBufferPointer) -> DecodingState {
        guard let decoder = idleDecoder else { return DecodingState(bytes, scratch: self) }
        idleDecoder = nil
        decoder.reset(bytes)
        return decoder
    }

    func returnDecoder(_ decoder: DecodingState) {
        idleDecoder = decoder
    }

    /// What this thread keeps for key type `Key`: its names (unless it is dictionary-like, and
    /// its keys are written whole) and container boxes.
    @inline(__always)
    func keyCache<Key: CodingKey>(for type: Key.Type) -> KeyCache {
        let identifier = ObjectIdentifier(type)
        if identifier == lastKeyType, let cache = lastKeyCache { return cache }
        let cache = keyCaches[identifier] ?? {
            let made = KeyCache(interning: !KeyCache.isDictionaryKey(type))
            keyCaches[identifier] = made
            return made
        }()
        lastKeyType = identifier
        lastKeyCache = cache
        return cache
    }

    /// The type asked about last and its kind: a message is usually one type after another.
    @exclusivity(unchecked) private var lastType: ObjectIdentifier?
    @exclusivity(unchecked) private var lastKind = ValueKind.other
    @exclusivity(unchecked) private var lastKeyType: ObjectIdentifier?
    @exclusivity(unchecked) private var lastKeyCache: KeyCache?

    /// How values of type `T` are written.
    @inline(__always)
    func kind<T>(of type: T.Type) -> ValueKind {
        let identifier = ObjectIdentifier(type)
        if identifier == lastType { return lastKind }
        lastType = identifier
        lastKind = kindLookedUp(type)
        return lastKind
    }

    private func kindLookedUp<T>(_ type: T.Type) -> ValueKind {
        let identifier = ObjectIdentifier(type)
        if let kind = valueKinds[identifier] { return kind }
        let kind = ValueKind(type)
        valueKinds[identifier] = kind
        return kind
    }
}

/// The plain-number array type `T` is, if it is one (asked of the calling thread's cache:
/// cheaper than a dynamic cast to a protocol, which these checks would otherwise be on every
/// message).
@inline(__always)
func plainArrayType<T>(_ type: T.Type) -> (any PlainNumberArray.Type)? {
    if case .plainArray(let plain) = CodecScratch.current.kind(of: type) { return plain }
    return nil
}

/// How a value of a type is coded, found once per type.
enum ValueKind {
    case plainArray(any PlainNumberArray.Type)
    case directArray(any DirectArray.Type)
    case directDictionary(any DirectDictionary.Type)
    case stringKeyedEncodable
    case stringKeyedDecodable(any StringKeyedDictionary.Type)
    case stringKeyedBoth(any StringKeyedDictionary.Type)
    case other

    init<T>(_ type: T.Type) {
        if let plain = type as? any PlainNumberArray.Type {
            self = .plainArray(plain)
        } else if let array = type as? any DirectArray.Type {
            self = .directArray(array)
        } else if let dictionary = type as? any DirectDictionary.Type {
            self = .directDictionary(dictionary)
        } else if let dictionary = type as? any StringKeyedDictionary.Type {
            self = type is any StringKeyedEncodable.Type ? .stringKeyedBoth(dictionary) : .stringKeyedDecodable(dictionary)
        } else if type is any StringKeyedEncodable.Type {
            self = .stringKeyedEncodable
        } else {
            self = .other
        }
    }
}
