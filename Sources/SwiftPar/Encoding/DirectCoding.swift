// Arrays and String-keyed dictionaries of scalars (`[String]`, `[String: Int]`, `[Bool]`, ...)
// are written and read in one loop each, without a container per element: the same bytes the
// general path writes, at a fraction of the cost. Which types qualify is found once per type
// (see CodecScratch).

/// A scalar the codec reads and writes directly.
protocol WireScalar: Codable {
    static func write(_ value: Self, to state: Writer)
    static func read(from state: Reader, at offset: inout Int) throws -> Self
    /// The most bytes one value takes, for types whose values have such a bound (not String).
    static var wireBound: Int? { get }
    /// Writes `value` at byte `offset` of `base`, where `wireBound` bytes are free, and returns
    /// the offset past it: the bytes `write(_:to:)` writes, for loops that keep their place in
    /// a local variable instead of the encoder's memory.
    static func write(_ value: Self, into base: UnsafeMutableRawPointer, at offset: Int) -> Int
}

extension WireScalar {
    static var wireBound: Int? { nil }
    static func write(_ value: Self, into base: UnsafeMutableRawPointer, at offset: Int) -> Int {
        preconditionFailure("\(Self.self) has no bound on its encoded size")
    }
}

/// The bytes of `WireTag.signed`/`unsigned` integers and small integers, as
/// `writeSigned`/`writeUnsigned` write them: a tag and at most a 10-byte varint.
let integerWireBound = 11

@inline(__always)
func storeVarint(_ value: UInt64, into base: UnsafeMutableRawPointer, at offset: Int) -> Int {
    var v = value
    var n = offset
    while v >= 0x80 {
        base.storeBytes(of: UInt8(truncatingIfNeeded: v) | 0x80, toByteOffset: n, as: UInt8.self)
        n &+= 1
        v >>= 7
    }
    base.storeBytes(of: UInt8(truncatingIfNeeded: v), toByteOffset: n, as: UInt8.self)
    return n &+ 1
}

@inline(__always)
func storeSigned(_ v: Int64, into base: UnsafeMutableRawPointer, at offset: Int) -> Int {
    if v >= 0 && v < 64 {
        base.storeBytes(of: WireTag.smallInteger | UInt8(truncatingIfNeeded: v), toByteOffset: offset, as: UInt8.self)
        return offset &+ 1
    }
    base.storeBytes(of: WireTag.signed, toByteOffset: offset, as: UInt8.self)
    return storeVarint(zigzag(v), into: base, at: offset &+ 1)
}

@inline(__always)
func storeUnsigned(_ v: UInt64, into base: UnsafeMutableRawPointer, at offset: Int) -> Int {
    if v < 64 {
        base.storeBytes(of: WireTag.smallInteger | UInt8(truncatingIfNeeded: v), toByteOffset: offset, as: UInt8.self)
        return offset &+ 1
    }
    base.storeBytes(of: WireTag.unsigned, toByteOffset: offset, as: UInt8.self)
    return storeVarint(v, into: base, at: offset &+ 1)
}

extension String: WireScalar {
    @inline(__always)
    static func write(_ value: String, to state: Writer) { state.writeString(value) }
    @inline(__always)
    static func read(from state: Reader, at offset: inout Int) throws -> String { try state.string(at: &offset) }
}

extension Bool: WireScalar {
    static var wireBound: Int? { 1 }
    @inline(__always)
    static func write(_ value: Bool, into base: UnsafeMutableRawPointer, at offset: Int) -> Int {
        base.storeBytes(of: value ? WireTag.trueValue : WireTag.falseValue, toByteOffset: offset, as: UInt8.self)
        return offset &+ 1
    }
    @inline(__always)
    static func write(_ value: Bool, to state: Writer) { state.append(value ? WireTag.trueValue : WireTag.falseValue) }
    @inline(__always)
    static func read(from state: Reader, at offset: inout Int) throws -> Bool { try state.bool(at: &offset) }
}

extension Int: WireScalar {
    static var wireBound: Int? { integerWireBound }
    @inline(__always)
    static func write(_ value: Int, into base: UnsafeMutableRawPointer, at offset: Int) -> Int { storeSigned(Int64(value), into: base, at: offset) }
    @inline(__always)
    static func write(_ value: Int, to state: Writer) { state.writeSigned(Int64(value)) }
    @inline(__always)
    static func read(from state: Reader, at offset: inout Int) throws -> Int { try state.integer(Int.self, at: &offset) }
}

extension Int64: WireScalar {
    static var wireBound: Int? { integerWireBound }
    @inline(__always)
    static func write(_ value: Int64, into base: UnsafeMutableRawPointer, at offset: Int) -> Int { storeSigned(value, into: base, at: offset) }
    @inline(__always)
    static func write(_ value: Int64, to state: Writer) { state.writeSigned(value) }
    @inline(__always)
    static func read(from state: Reader, at offset: inout Int) throws -> Int64 { try state.integer(Int64.self, at: &offset) }
}

extension Int32: WireScalar {
    static var wireBound: Int? { integerWireBound }
    @inline(__always)
    static func write(_ value: Int32, into base: UnsafeMutableRawPointer, at offset: Int) -> Int { storeSigned(Int64(value), into: base, at: offset) }
    @inline(__always)
    static func write(_ value: Int32, to state: Writer) { state.writeSigned(Int64(value)) }
    @inline(__always)
    static func read(from state: Reader, at offset: inout Int) throws -> Int32 { try state.integer(Int32.self, at: &offset) }
}

extension UInt64: WireScalar {
    static var wireBound: Int? { integerWireBound }
    @inline(__always)
    static func write(_ value: UInt64, into base: UnsafeMutableRawPointer, at offset: Int) -> Int { storeUnsigned(value, into: base, at: offset) }
    @inline(__always)
    static func write(_ value: UInt64, to state: Writer) { state.writeUnsigned(value) }
    @inline(__always)
    static func read(from state: Reader, at offset: inout Int) throws -> UInt64 { try state.integer(UInt64.self, at: &offset) }
}

extension UInt: WireScalar {
    static var wireBound: Int? { integerWireBound }
    @inline(__always)
    static func write(_ value: UInt, into base: UnsafeMutableRawPointer, at offset: Int) -> Int { storeUnsigned(UInt64(value), into: base, at: offset) }
    @inline(__always)
    static func write(_ value: UInt, to state: Writer) { state.writeUnsigned(UInt64(value)) }
    @inline(__always)
    static func read(from state: Reader, at offset: inout Int) throws -> UInt { try state.integer(UInt.self, at: &offset) }
}

extension Double: WireScalar {
    static var wireBound: Int? { 9 }
    @inline(__always)
    static func write(_ value: Double, into base: UnsafeMutableRawPointer, at offset: Int) -> Int {
        base.storeBytes(of: WireTag.float64, toByteOffset: offset, as: UInt8.self)
        base.storeBytes(of: value.bitPattern.littleEndian, toByteOffset: offset &+ 1, as: UInt64.self)
        return offset &+ 9
    }
    @inline(__always)
    static func write(_ value: Double, to state: Writer) { state.writeDouble(value) }
    @inline(__always)
    static func read(from state: Reader, at offset: inout Int) throws -> Double { try state.double(at: &offset) }
}

extension Float: WireScalar {
    static var wireBound: Int? { 5 }
    @inline(__always)
    static func write(_ value: Float, into base: UnsafeMutableRawPointer, at offset: Int) -> Int {
        base.storeBytes(of: WireTag.float32, toByteOffset: offset, as: UInt8.self)
        base.storeBytes(of: value.bitPattern.littleEndian, toByteOffset: offset &+ 1, as: UInt32.self)
        return offset &+ 5
    }
    @inline(__always)
    static func write(_ value: Float, to state: Writer) { state.writeFloat(value) }
    @inline(__always)
    static func read(from state: Reader, at offset: inout Int) throws -> Float { try state.float(at: &offset) }
}

/// An array of scalars, coded in one loop (arrays of plain numbers take the raw path first).
protocol DirectArray {
    func encodeElements(to state: Writer)
    static func decodeElements(from state: Reader, at offset: inout Int) throws -> Self
}

extension Array: DirectArray where Element: WireScalar {
    @_specialize(where Element == String)
    @_specialize(where Element == Bool)
    func encodeElements(to state: Writer) {
        state.append(WireTag.countedUnkeyed)
        state.appendVarint(UInt64(count))
        for element in self { Element.write(element, to: state) }
        state.append(WireTag.end)
    }

    @_specialize(where Element == String)
    @_specialize(where Element == Bool)
    static func decodeElements(from state: Reader, at offset: inout Int) throws -> [Element] {
        var position = offset + 1
        var result: [Element] = []
        result.reserveCapacity(try state.capacityHint(at: &position, tag: state.byte(at: offset), counting: false))
        while try state.byte(at: position) != WireTag.end {
            do {
                result.append(try Element.read(from: state, at: &position))
            } catch let error as DecodingError {
                throw error.under(IndexKey(result.count))
            }
        }
        offset = position + 1
        return result
    }
}

/// A dictionary from String to a scalar, coded in one loop.
protocol DirectDictionary {
    func encodeEntries(to state: Writer)
    static func decodeEntries(from state: Reader, at offset: inout Int) throws -> Self
}

extension Dictionary: DirectDictionary where Key == String, Value: WireScalar {
    @_specialize(where Key == String, Value == Int)
    @_specialize(where Key == String, Value == Double)
    @_specialize(where Key == String, Value == String)
    func encodeEntries(to state: Writer) {
        state.append(WireTag.countedKeyed)
        state.appendVarint(UInt64(count))
        if let valueBound = Value.wireBound, SmallASCIIString.isAvailable {
            encodeEntries(to: state, valueBound: valueBound)
        } else {
            for (key, value) in self {
                state.writeKey(key, cache: nil)
                Value.write(value, to: state)
            }
        }
        state.append(0)
    }

    /// The loop above for values of bounded size: the write position and the buffer stay in
    /// local variables (the encoder's own are reloaded after every byte it stores, since a
    /// store through the buffer might change them), and a short ASCII key is stored as the two
    /// words the string already is. The same bytes as `writeKey` and `write` put down.
    @inline(__always)
    private func encodeEntries(to state: Writer, valueBound: Int) {
        // A short key takes its header and 16 stored bytes (of which only its own are kept).
        let room = 17 + valueBound
        var base = state.pointee.base
        var offset = state.pointee.count
        var last = state.pointee.capacity - room
        for (key, value) in self {
            if offset > last {
                state.pointee.count = offset
                state.reserve(room)
                (base, last) = (state.pointee.base, state.pointee.capacity - room)
            }
            if let inline = SmallASCIIString.inlineWords(of: key) {
                base.storeBytes(of: UInt8(truncatingIfNeeded: inline.count << 2 | 3), toByteOffset: offset, as: UInt8.self)
                base.storeBytes(of: inline.words.0, toByteOffset: offset &+ 1, as: UInt64.self)
                base.storeBytes(of: inline.words.1, toByteOffset: offset &+ 9, as: UInt64.self)
                offset &+= 1 &+ inline.count
            } else {
                state.pointee.count = offset
                state.writeKey(key, cache: nil)
                state.reserve(room)
                (base, offset, last) = (state.pointee.base, state.pointee.count, state.pointee.capacity - room)
            }
            offset = Value.write(value, into: base, at: offset)
        }
        state.pointee.count = offset
    }

    @_specialize(where Key == String, Value == Int)
    @_specialize(where Key == String, Value == Double)
    @_specialize(where Key == String, Value == String)
    static func decodeEntries(from state: Reader, at offset: inout Int) throws -> [String: Value] {
        var position = offset + 1
        let expected = try state.capacityHint(at: &position, tag: state.byte(at: offset), counting: true)
        if expected >= TableOrderedEntries<Value>.threshold {
            let entries = TableOrderedEntries<Value>(expected: expected)
            while let name = try state.dictionaryKey(at: &position) {
                do {
                    entries.append(name, try Value.read(from: state, at: &position))
                } catch let error as DecodingError {
                    throw error.under(TreeKey(stringValue: name))
                }
            }
            offset = position
            return entries.makeDictionary()
        }
        var result: [String: Value] = [:]
        // Room for half again as many entries keeps the table at most half full, so an insertion
        // meets fewer occupied buckets, each a comparison of two strings: decoding 10,000 entries
        // took 12% less time (`swiftpar bench codec --case dictionary_10000`). The extra room is
        // believed as `expected` was, within the bytes left and the message's size.
        result.reserveCapacity(expected + state.believable(count: UInt64(expected / 2), at: position))
        while let name = try state.dictionaryKey(at: &position) {
            do {
                result[name] = try Value.read(from: state, at: &position)
            } catch let error as DecodingError {
                throw error.under(TreeKey(stringValue: name))
            }
        }
        offset = position
        return result
    }
}
