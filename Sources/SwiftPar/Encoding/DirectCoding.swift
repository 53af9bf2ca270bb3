// Arrays and String-keyed dictionaries of scalars (`[String]`, `[String: Int]`, `[Bool]`, ...)
// are written and read in one loop each, without a container per element: the same bytes the
// general path writes, at a fraction of the cost. Which types qualify is found once per type
// (see CodecScratch).

/// A scalar the codec reads and writes directly.
protocol WireScalar: Codable {
    static func write(_ value: Self, to state: Writer)
    static func read(from state: Reader, at offset: inout Int) throws -> Self
}

extension String: WireScalar {
    @inline(__always)
    static func write(_ value: String, to state: Writer) { state.writeString(value) }
    @inline(__always)
    static func read(from state: Reader, at offset: inout Int) throws -> String { try state.string(at: &offset) }
}

extension Bool: WireScalar {
    @inline(__always)
    static func write(_ value: Bool, to state: Writer) { state.append(value ? WireTag.trueValue : WireTag.falseValue) }
    @inline(__always)
    static func read(from state: Reader, at offset: inout Int) throws -> Bool { try state.bool(at: &offset) }
}

extension Int: WireScalar {
    @inline(__always)
    static func write(_ value: Int, to state: Writer) { state.writeSigned(Int64(value)) }
    @inline(__always)
    static func read(from state: Reader, at offset: inout Int) throws -> Int { try state.integer(Int.self, at: &offset) }
}

extension Int64: WireScalar {
    @inline(__always)
    static func write(_ value: Int64, to state: Writer) { state.writeSigned(value) }
    @inline(__always)
    static func read(from state: Reader, at offset: inout Int) throws -> Int64 { try state.integer(Int64.self, at: &offset) }
}

extension Int32: WireScalar {
    @inline(__always)
    static func write(_ value: Int32, to state: Writer) { state.writeSigned(Int64(value)) }
    @inline(__always)
    static func read(from state: Reader, at offset: inout Int) throws -> Int32 { try state.integer(Int32.self, at: &offset) }
}

extension UInt64: WireScalar {
    @inline(__always)
    static func write(_ value: UInt64, to state: Writer) { state.writeUnsigned(value) }
    @inline(__always)
    static func read(from state: Reader, at offset: inout Int) throws -> UInt64 { try state.integer(UInt64.self, at: &offset) }
}

extension UInt: WireScalar {
    @inline(__always)
    static func write(_ value: UInt, to state: Writer) { state.writeUnsigned(UInt64(value)) }
    @inline(__always)
    static func read(from state: Reader, at offset: inout Int) throws -> UInt { try state.integer(UInt.self, at: &offset) }
}

extension Double: WireScalar {
    @inline(__always)
    static func write(_ value: Double, to state: Writer) { state.writeDouble(value) }
    @inline(__always)
    static func read(from state: Reader, at offset: inout Int) throws -> Double { try state.double(at: &offset) }
}

extension Float: WireScalar {
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
        for (key, value) in self {
            state.writeKey(key, cache: nil)
            Value.write(value, to: state)
        }
        state.append(0)
    }

    @_specialize(where Key == String, Value == Int)
    @_specialize(where Key == String, Value == Double)
    @_specialize(where Key == String, Value == String)
    static func decodeEntries(from state: Reader, at offset: inout Int) throws -> [String: Value] {
        var position = offset + 1
        var result: [String: Value] = [:]
        result.reserveCapacity(try state.capacityHint(at: &position, tag: state.byte(at: offset), counting: true))
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
