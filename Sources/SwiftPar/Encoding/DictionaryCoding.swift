// Dictionaries with String keys (word counts, lookup tables) are the commonest large values
// users send. The standard library codes them through a keyed container with one key object per
// entry; these paths write and read the same bytes directly.

/// A `[String: Value]` the encoder writes entry by entry.
protocol StringKeyedEncodable {
    func encodeEntries(to state: Writer) throws
}

/// A `[String: Value]` the decoder builds entry by entry.
protocol StringKeyedDictionary {
    static func decodeEntries(from state: Reader, at offset: inout Int, depth: Int) throws -> Self
}

extension Dictionary: StringKeyedEncodable where Key == String, Value: Encodable {
    func encodeEntries(to state: Writer) throws {
        state.append(WireTag.countedKeyed)
        state.appendVarint(UInt64(count))
        for (key, value) in self {
            state.writeKey(key, cache: nil)
            try state.encode(value)
        }
        state.append(0)
    }
}

extension Dictionary: StringKeyedDictionary where Key == String, Value: Decodable {
    static func decodeEntries(from state: Reader, at offset: inout Int, depth: Int) throws -> Self {
        let tag = try state.byte(at: offset)
        guard tag == WireTag.keyed || tag == WireTag.countedKeyed else { throw state.mismatch(Self.self, found: tag, at: offset) }
        var position = offset + 1
        if tag == WireTag.countedKeyed {
            // Only a writer that gave its count is followed in table order (a container without
            // one would need a counting pass first).
            let expected = state.believable(count: try state.varint(at: &position), at: position)
            if expected >= TableOrderedEntries<Value>.threshold {
                return try decodeInTableOrder(from: state, at: &offset, position: position, depth: depth)
            }
        }
        var result: [String: Value] = [:]
        var length = 0
        while let key = try state.key(at: &position, literalLength: &length) {
            let name = try state.name(of: key, literalLength: length)
            do {
                result[name] = try state.decode(Value.self, at: &position, depth: depth + 1)
            } catch let error as DecodingError {
                throw error.under(TreeKey(stringValue: name))
            }
        }
        offset = position
        return result
    }

    /// The loop above for a large dictionary: its entries are gathered, then inserted in the
    /// order of its own table (see `TableOrderedEntries`).
    private static func decodeInTableOrder(from state: Reader, at offset: inout Int, position start: Int,
                                           depth: Int) throws -> Self {
        var position = start
        // Values may be of any size: nothing is reserved on the message's word, the room grows
        // with the entries that arrive.
        let entries = TableOrderedEntries<Value>(expected: 4096)
        var length = 0
        while let key = try state.key(at: &position, literalLength: &length) {
            let name = try state.name(of: key, literalLength: length)
            do {
                entries.append(name, try state.decode(Value.self, at: &position, depth: depth + 1))
            } catch let error as DecodingError {
                throw error.under(TreeKey(stringValue: name))
            }
        }
        offset = position
        return entries.makeDictionary()
    }
}
