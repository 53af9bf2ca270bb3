import Foundation
import Testing
@testable import SwiftPar

/// The binary message format: what goes in comes out, and bad bytes throw instead of trapping.
@Suite("Binary encoding")
struct EncodingTests {
    struct Inner: Codable, Equatable {
        var id: UInt64
        var tags: [String]
        var weight: Float
    }

    enum Shape: Codable, Equatable {
        case circle(radius: Double)
        case polygon(points: [[Double]])
        case named(String, inner: Inner?)
        case nothing
    }

    struct Outer: Codable, Equatable {
        var title: String
        var inner: Inner
        var shapes: [Shape]
        var optionalPresent: Int?
        var optionalAbsent: Int?
        var lookup: [String: [Int]]
        var byNumber: [Int: String]
        var flags: Set<Bool>
        var small: Int8
        var negative: Int64
        var unsigned: UInt32
        var empty: [Double]
    }

    func roundTrip<T: Codable & Equatable>(_ value: T) throws -> T {
        let bytes = try BinaryEncoder().encode(value)
        let back = try BinaryDecoder().decode(T.self, from: bytes)
        #expect(back == value)
        return back
    }

    @Test("Message copies give the same bytes at every distance and size, also where they go in pieces")
    func fullSpeedCopies() {
        let source = UnsafeMutableRawBufferPointer.allocate(byteCount: 3 << 16, alignment: 4096)
        let destination = UnsafeMutableRawBufferPointer.allocate(byteCount: 3 << 16, alignment: 4096)
        defer { source.deallocate(); destination.deallocate() }
        for i in 0..<source.count { source[i] = UInt8(truncatingIfNeeded: i &* 131 &+ i >> 8) }
        // The destination lies `distance` bytes past the source, modulo 4096 (both buffers start
        // on a page): 8, 13 and 63 go in pieces. Sizes around the 2 KiB pieces.
        for (sourceOffset, distance) in [(0, 0), (0, 8), (48, 13), (100, 63), (7, 64), (4000, 4097), (0, 2048)] {
            for count in [0, 1, 2047, 2048, 2049, 4096 + 5, 65536 + 3] {
                destination.initializeMemory(as: UInt8.self, repeating: 0xEE)
                let from = source.baseAddress! + sourceOffset
                let to = destination.baseAddress! + 4096 + sourceOffset + distance
                to.copyMemoryAtFullSpeed(from: from, byteCount: count)
                let copied = Array(UnsafeRawBufferPointer(start: to, count: count))
                #expect(copied == Array(UnsafeRawBufferPointer(start: from, count: count)), "\(count) bytes at distance \(distance)")
                // Nothing written before or after.
                #expect((to - 1).load(as: UInt8.self) == 0xEE && (to + count).load(as: UInt8.self) == 0xEE, "\(count) bytes at distance \(distance) wrote outside")
            }
        }
    }

    @Test("Nested structs, enums with payloads, optionals and dictionaries round trip")
    func nested() throws {
        let value = Outer(
            title: "Größe – 大きさ – 🌍",
            inner: Inner(id: .max, tags: ["α", "", "β γ"], weight: -0.0),
            shapes: [.circle(radius: 2.5), .polygon(points: [[0, 0], [1, 0], [0, 1]]),
                     .named("n", inner: nil), .named("m", inner: Inner(id: 1, tags: [], weight: .infinity)), .nothing],
            optionalPresent: 0, optionalAbsent: nil,
            lookup: ["a": [1, 2, 3], "": [], "ü": [-1]],
            byNumber: [1: "one", -7: "minus seven", 1 << 40: "big"],
            flags: [true, false], small: -128, negative: .min, unsigned: .max, empty: [])
        _ = try roundTrip(value)
    }

    @Test("Short strings of every length, ASCII or not, decode equal to the standard library's, with the same hash")
    func shortStrings() throws {
        #expect(SmallASCIIString.isAvailable, "this toolchain's small strings are not laid out as the codec expects")
        var samples: [String] = []
        for length in 0...20 {
            let ascii = String((0..<length).map { Character(Unicode.Scalar(UInt8(33 + ($0 * 7) % 94))) })
            samples += [ascii, ascii + "é", "é" + ascii, String(ascii.dropLast()) + "\u{7F}"]
        }
        // As values, as dictionary keys, and as field names (record keys are interned).
        let words = try roundTrip(samples)
        let counts = try roundTrip(Dictionary(samples.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first }))
        for (index, word) in samples.enumerated() {
            let reference = String(decoding: Array(word.utf8), as: UTF8.self)
            #expect(words[index] == reference && words[index].hashValue == reference.hashValue && Array(words[index].utf8) == Array(word.utf8))
            #expect(counts[reference] != nil, "the decoded dictionary cannot find \(reference.debugDescription)")
        }
        struct Keys: Codable, Equatable { var a: String; var abcdefghijklmno: String; var abcdefghijklmnop: String }
        _ = try roundTrip(Keys(a: "", abcdefghijklmno: "fifteen-byte key", abcdefghijklmnop: "sixteen"))
        // A string ending exactly at the end of the message: nothing past it is read.
        let last = try BinaryEncoder().encode("abc")
        #expect(try BinaryDecoder().decode(String.self, from: last) == "abc")
    }

    @Test("Top-level scalars, strings and optionals round trip")
    func scalars() throws {
        _ = try roundTrip(42)
        _ = try roundTrip(-1.25e-300)
        _ = try roundTrip(Float.greatestFiniteMagnitude)
        _ = try roundTrip("")
        _ = try roundTrip("日本語のテキスト and emoji 👩‍👩‍👧")
        _ = try roundTrip(Optional<Int>.none)
        _ = try roundTrip(Optional<String>.some("x"))
        _ = try roundTrip(true)
        _ = try roundTrip(UInt64.max)
        _ = try roundTrip(Int.min)
        _ = try roundTrip([Int128.max, Int128.min, 5, -5])
        _ = try roundTrip([UInt128.max, 0, 7])
    }

    @Test("Empty and large arrays of numbers, strings and structs round trip")
    func arrays() throws {
        _ = try roundTrip([Int]())
        _ = try roundTrip([String]())
        _ = try roundTrip([[Double]]([[], [1], []]))
        let big = (0..<1_000_000).map { Double($0) * 0.001 }
        _ = try roundTrip(big)
        _ = try roundTrip((0..<100_000).map { Int32(truncatingIfNeeded: $0 &* 7919) })
        _ = try roundTrip((0..<10_000).map { "item \($0)" })
        _ = try roundTrip((0..<1000).map { Inner(id: UInt64($0), tags: ["t\($0)"], weight: Float($0)) })
    }

    @Test("Plain-number arrays are stored as raw memory, a few bytes over their size")
    func plainArraysAreCompact() throws {
        let header = 8
        let values = [Double](repeating: 1.5, count: 1000)
        let bytes = try BinaryEncoder().encode(values)
        #expect(bytes.count <= header + 8000 + 4, "encoded \(bytes.count) bytes for 8000 bytes of doubles")
        #expect(try BinaryEncoder().encode(7).count == header + 1, "a small Int should take 1 byte after the header")
    }

    @Test("Foundation's Data and Date round trip through their own Codable forms")
    func foundationTypes() throws {
        struct Stamp: Codable, Equatable { var data: Data; var date: Date; var url: URL }
        _ = try roundTrip(Stamp(data: Data([0, 1, 2, 255]), date: Date(timeIntervalSince1970: 1_700_000_000.5),
                                url: URL(string: "https://example.invalid/a?b=c")!))
    }

    @Test("Decoding as the wrong type throws a DecodingError")
    func mismatchThrows() throws {
        let bytes = try BinaryEncoder().encode("text")
        #expect(throws: DecodingError.self) { try BinaryDecoder().decode(Inner.self, from: bytes) }
        #expect(throws: DecodingError.self) { try BinaryDecoder().decode(Int.self, from: bytes) }
        let inner = try BinaryEncoder().encode(Inner(id: 1, tags: [], weight: 1))
        #expect(throws: DecodingError.self) { try BinaryDecoder().decode(Outer.self, from: inner) }
        let large = try BinaryEncoder().encode(300)
        #expect(throws: DecodingError.self) { try BinaryDecoder().decode(UInt8.self, from: large) }
    }

    @Test("Truncated, corrupted and hostile bytes throw instead of trapping")
    func corruptThrows() throws {
        let bytes = try BinaryEncoder().encode(Inner(id: 99, tags: ["abc"], weight: 2))
        for cut in 0..<bytes.count {
            #expect(throws: (any Error).self) { try BinaryDecoder().decode(Inner.self, from: Array(bytes[..<cut])) }
        }
        #expect(throws: (any Error).self) { try BinaryDecoder().decode(Inner.self, from: bytes + [0]) }
        #expect(throws: (any Error).self) { try BinaryDecoder().decode(Int.self, from: [0xFF]) }
        // A length far beyond the message, and nesting deeper than allowed.
        #expect(throws: (any Error).self) { try BinaryDecoder().decode([Int].self, from: [8, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F]) }
        let deep: [UInt8] = (0..<2000).flatMap { _ in [UInt8(8), 1] }
        #expect(throws: (any Error).self) { try BinaryDecoder().decode([Int].self, from: deep) }
        // Invalid UTF-8 in a string.
        #expect(throws: (any Error).self) { try BinaryDecoder().decode(String.self, from: [7, 2, 0xC3, 0x28]) }
        // Random bytes never trap.
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let noise = (0..<Int.random(in: 0..<40, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            _ = try? BinaryDecoder().decode(Outer.self, from: noise)
        }
    }
}

/// Hand-written `Codable` the way people write it: out of order, optional keys, classes.
@Suite("Binary encoding of hand-written Codable")
struct HandWrittenCodingTests {
    /// Encodes its fields in one order and decodes them in another, with `contains` and
    /// `decodeIfPresent`, and reads `allKeys`.
    struct Reordered: Codable, Equatable {
        var a: Int
        var b: String
        var c: [Double]
        var d: Int?
        var extra: [String: Int]

        enum CodingKeys: String, CodingKey { case a, b, c, d, extra, unused }

        init(a: Int, b: String, c: [Double], d: Int?, extra: [String: Int]) {
            (self.a, self.b, self.c, self.d, self.extra) = (a, b, c, d, extra)
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(extra, forKey: .extra)
            try container.encodeIfPresent(d, forKey: .d)
            try container.encode(c, forKey: .c)
            try container.encode(b, forKey: .b)
            try container.encode(a, forKey: .a)
        }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            let keys = Set(container.allKeys.map(\.stringValue))
            let expected: Set<String> = d == nil ? ["a", "b", "c", "extra"] : ["a", "b", "c", "d", "extra"]
            _ = expected
            guard keys.isSuperset(of: ["a", "b", "c", "extra"]), !container.contains(.unused) else {
                throw DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "keys \(keys)"))
            }
            a = try container.decode(Int.self, forKey: .a)
            b = try container.decode(String.self, forKey: .b)
            d = try container.decodeIfPresent(Int.self, forKey: .d)
            c = try container.decode([Double].self, forKey: .c)
            extra = try container.decode([String: Int].self, forKey: .extra)
            _ = try container.decodeIfPresent(String.self, forKey: .unused)
        }
    }

    class Animal: Codable, Equatable {
        var name: String
        init(name: String) { self.name = name }
        static func == (l: Animal, r: Animal) -> Bool { l.name == r.name && type(of: l) == type(of: r) }
    }

    final class Dog: Animal {
        var tricks: [String]
        init(name: String, tricks: [String]) {
            self.tricks = tricks
            super.init(name: name)
        }
        enum CodingKeys: String, CodingKey { case tricks }
        required init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            tricks = try container.decode([String].self, forKey: .tricks)
            try super.init(from: container.superDecoder())
        }
        override func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try super.encode(to: container.superEncoder())
            try container.encode(tricks, forKey: .tricks)
        }
    }

    /// Fills a nested container after writing to its parent again: the streaming encoder must
    /// fall back to building the value first, and the bytes must still decode.
    struct Interleaved: Codable, Equatable {
        var first: [Int]
        var second: [Int]
        enum CodingKeys: String, CodingKey { case first, second }
        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            var one = container.nestedUnkeyedContainer(forKey: .first)
            var two = container.nestedUnkeyedContainer(forKey: .second)
            for i in 0..<3 {
                try one.encode(first[i])
                try two.encode(second[i])
            }
        }
    }

    enum Shape: Codable, Equatable {
        case circle(radius: Double)
        case labelled(String, Int)
        case empty
    }

    func roundTrip<T: Codable & Equatable>(_ value: T) throws {
        let back = try BinaryDecoder().decode(T.self, from: try BinaryEncoder().encode(value))
        #expect(back == value)
    }

    @Test("Keys written in one order and read in another, with allKeys, contains and decodeIfPresent")
    func reordered() throws {
        try roundTrip(Reordered(a: 1, b: "two", c: [3, 4], d: nil, extra: ["x": 5]))
        try roundTrip(Reordered(a: -1, b: "", c: [], d: 9, extra: [:]))
        try roundTrip((0..<50).map { Reordered(a: $0, b: "b\($0)", c: [Double($0)], d: $0 % 2 == 0 ? $0 : nil, extra: ["k\($0)": $0]) })
    }

    @Test("A subclass with superEncoder and superDecoder")
    func classHierarchy() throws {
        let dog = Dog(name: "Rex", tricks: ["sit", "roll"])
        let back = try BinaryDecoder().decode(Dog.self, from: try BinaryEncoder().encode(dog))
        #expect(back.name == "Rex" && back.tricks == ["sit", "roll"])
    }

    @Test("Containers filled out of order are encoded by the fallback and decode the same")
    func interleaved() throws {
        try roundTrip(Interleaved(first: [1, 2, 3], second: [4, 5, 6]))
        try roundTrip([Interleaved(first: [1, 2, 3], second: [4, 5, 6]), Interleaved(first: [7, 8, 9], second: [0, 0, 0])])
    }

    @Test("Synthesized enums with and without associated values, in arrays and dictionaries")
    func enums() throws {
        try roundTrip([Shape.circle(radius: 2), .labelled("x", 3), .empty])
        try roundTrip(["a": Shape.empty, "b": .circle(radius: -1)])
    }

    /// A value that codes as the value it holds, through a single-value container: a
    /// dictionary of these takes the general path where one of `T` takes the direct loop.
    struct Boxed<T: Codable & Equatable>: Codable, Equatable {
        var value: T
        init(_ value: T) { self.value = value }
        init(from decoder: any Decoder) throws { value = try decoder.singleValueContainer().decode(T.self) }
        func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            try container.encode(value)
        }
    }

    /// `count` distinct keys: empty, short ASCII (kept inline), 15 and 16 bytes, non-ASCII, long.
    func mixedKeys(_ count: Int) -> [String] {
        (0..<count).map { i in
            switch i % 6 {
            case 0: return i == 0 ? "" : "k\(i)"
            case 1: return String("abcdefghijklmno".prefix(15 - String(i).count)) + String(i)
            case 2: return "abcdefghijklmnop" + String(i)
            case 3: return "é\(i)"
            case 4: return String(repeating: "long key ", count: 5) + String(i)
            default: return "w\(i)"
            }
        }
    }

    @Test("Dictionaries of numbers and Bools, written by the direct loop, read by the general path and the other way round")
    func directDictionaries() throws {
        func check<T: Codable & Equatable>(_ values: [T], sourceLocation: SourceLocation = #_sourceLocation) throws {
            let direct = Dictionary(uniqueKeysWithValues: zip(mixedKeys(values.count), values))
            let general = direct.mapValues(Boxed.init)
            let back = try BinaryDecoder().decode([String: T].self, from: BinaryEncoder().encode(direct))
            #expect(back == direct, sourceLocation: sourceLocation)
            let readGenerally = try BinaryDecoder().decode([String: Boxed<T>].self, from: BinaryEncoder().encode(direct))
            #expect(readGenerally == general, sourceLocation: sourceLocation)
            let writtenGenerally = try BinaryDecoder().decode([String: T].self, from: BinaryEncoder().encode(general))
            #expect(writtenGenerally == direct, sourceLocation: sourceLocation)
        }
        // Enough entries that the buffer grows many times, in the loop and after long keys.
        let n = 6_000
        try check((0..<n).map { [0, 63, 64, -1, Int.min, Int.max, $0 * 7919][$0 % 7] })
        try check((0..<n).map { [Int64.min, -64, 127, Int64($0)][$0 % 4] })
        try check((0..<n).map { [Int32.min, Int32.max, 0, Int32($0)][$0 % 4] })
        try check((0..<n).map { [UInt64.max, 63, 64, UInt64($0) << 40][$0 % 4] })
        try check((0..<n).map { [UInt.max, 0, UInt($0)][$0 % 3] })
        try check((0..<n).map { [1.5, -0.0, .infinity, -.greatestFiniteMagnitude, Double($0) / 3][$0 % 5] })
        try check((0..<n).map { [Float(1.25), -.infinity, .leastNonzeroMagnitude, Float($0)][$0 % 4] })
        try check((0..<n).map { $0 % 3 == 0 })
        try check([String: Int]().values.map { $0 })
    }

    @Test("Dictionaries with String, Int and struct values; Int keys; nested arrays")
    func collections() throws {
        try roundTrip(Dictionary(uniqueKeysWithValues: (0..<1000).map { ("word\($0)", $0) }))
        try roundTrip([1: "one", -2: "minus two"])
        try roundTrip(["a": [1.5, 2.5], "b": []])
        try roundTrip([["x", "y"], [], ["z"]])
        try roundTrip(["only": Reordered(a: 1, b: "b", c: [], d: 2, extra: [:])])
        try roundTrip([String?]([nil, "a", nil]))
    }

    /// Entries written as a keyed container, in the given order, repeats and all.
    struct Entries<Value: Encodable>: Encodable {
        var entries: [(String, Value)]
        struct Key: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }
        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: Key.self)
            for (key, value) in entries { try container.encode(value, forKey: Key(stringValue: key)) }
        }
    }

    /// `bytes` of a keyed container at the top, rewritten as the container of a writer that gave
    /// its count (as a dictionary's encoding does), so that decoding takes the counted path.
    func counted(_ bytes: [UInt8], entries: Int) -> [UInt8] {
        precondition(bytes[WireHeader.size] == WireTag.keyed, "the value should be a keyed container")
        var count: [UInt8] = []
        var n = UInt64(entries)
        while n >= 0x80 { count.append(UInt8(truncatingIfNeeded: n) | 0x80); n >>= 7 }
        count.append(UInt8(n))
        return Array(bytes[..<WireHeader.size]) + [WireTag.countedKeyed] + count + Array(bytes[(WireHeader.size + 1)...])
    }

    @Test("Large dictionaries, filled in their own table's order, decode equal; a repeated key keeps its last value")
    func largeDictionaries() throws {
        if getenv("SWIFT_DETERMINISTIC_HASHING") == nil {
            #expect(TableOrder.isPredictable, "this standard library's dictionaries should be laid out as the decoder predicts")
        }
        let n = TableOrderedEntries<Int>.threshold + 5_000
        // Compared entry by entry: a failure names a key rather than printing the dictionaries.
        func check<V: Codable & Equatable>(_ value: [String: V], sourceLocation: SourceLocation = #_sourceLocation) throws {
            let back = try BinaryDecoder().decode([String: V].self, from: BinaryEncoder().encode(value))
            let wrong = value.first { back[$0.key] != $0.value }
            #expect(back.count == value.count && wrong == nil,
                    "\(back.count) of \(value.count) entries back; first wrong key: \(wrong.map(\.key) ?? "none")",
                    sourceLocation: sourceLocation)
        }
        let counts = Dictionary(uniqueKeysWithValues: zip(mixedKeys(n), (0..<n).map { $0 * 31 - 1000 }))
        try check(counts)
        try check(counts.mapValues { "v\($0)" })
        try check(counts.mapValues(Boxed.init))
        try check(counts.mapValues { [$0, -$0] })
        // The same key three times, far apart: the last value is the one kept, on both paths.
        var entries = (0..<n).map { ("k\($0)", $0) }
        entries.insert(("k7", -1), at: n / 2)
        entries.append(("k7", -2))
        var expected = Dictionary(uniqueKeysWithValues: (0..<n).map { ("k\($0)", $0) })
        expected["k7"] = -2
        // As a struct writes them (no count: the direct loop counts them first), and as a
        // dictionary writes them (with the count: both loops).
        let uncounted = try BinaryEncoder().encode(Entries(entries: entries))
        for bytes in [uncounted, counted(uncounted, entries: entries.count)] {
            #expect(try BinaryDecoder().decode([String: Int].self, from: bytes) == expected)
            #expect(try BinaryDecoder().decode([String: Boxed<Int>].self, from: bytes) == expected.mapValues(Boxed.init))
        }
    }

    @Test("A decoded dictionary of scalars has room to spare, but never more than its message's bytes could fill")
    func dictionaryRoom() throws {
        // Room for half again as many entries (the table at most half full) is a speed choice:
        // fewer occupied buckets to pass on each insertion.
        let counts = Dictionary(uniqueKeysWithValues: mixedKeys(10_000).enumerated().map { ($1, $0) })
        let back = try BinaryDecoder().decode([String: Int].self, from: BinaryEncoder().encode(counts))
        #expect(back == counts)
        #expect(back.capacity >= 15_000, "capacity \(back.capacity) for 10,000 entries")
        // A count that claims far more entries than follow reserves only what the bytes left
        // could hold (two bytes an entry at least), whatever room is added for speed.
        let three = try BinaryEncoder().encode(Entries(entries: [("a", 1), ("b", 2), ("c", 3)]))
        let lying = counted(three, entries: 1 << 40)
        let decoded = try BinaryDecoder().decode([String: Int].self, from: lying)
        #expect(decoded == ["a": 1, "b": 2, "c": 3])
        #expect(decoded.capacity <= lying.count, "capacity \(decoded.capacity) from a message of \(lying.count) bytes")
    }

    @Test("A large dictionary with one value of the wrong type throws, naming its key")
    func largeDictionaryWithBadValue() throws {
        enum Either: Encodable {
            case number(Int), text(String)
            func encode(to encoder: any Encoder) throws {
                var container = encoder.singleValueContainer()
                switch self {
                case .number(let n): try container.encode(n)
                case .text(let t): try container.encode(t)
                }
            }
        }
        let n = TableOrderedEntries<Int>.threshold + 5_000
        var entries = (0..<n).map { ("word\($0)", Either.number($0)) }
        entries[n - 10] = ("the-bad-one", .text("not a number"))
        let uncounted = try BinaryEncoder().encode(Entries(entries: entries))
        let bytes = counted(uncounted, entries: entries.count)
        for decode in [{ _ = try BinaryDecoder().decode([String: Int].self, from: bytes) },
                       { _ = try BinaryDecoder().decode([String: Boxed<Int>].self, from: bytes) },
                       { _ = try BinaryDecoder().decode([String: Int].self, from: uncounted) }] {
            do {
                try decode()
                Issue.record("a String where an Int belongs decoded without an error")
            } catch let error as DecodingError {
                #expect("\(error)".contains("the-bad-one"), "the error should name the key: \(error)")
            }
        }
    }
}

/// Each rule of the format, broken on purpose: the decoder throws, never traps.
@Suite("Binary encoding rejects what breaks each format rule")
struct FormatRuleTests {
    struct Pair: Codable { var left: Int; var right: String }
    let magic: [UInt8] = [0xB7, 0x73, 0x77, 0x70, 0x61, 0x72, 0x02, 0x00]

    func rejects<T: Decodable>(_ type: T.Type, _ body: [UInt8], _ words: String, sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            _ = try BinaryDecoder().decode(type, from: magic + body)
            Issue.record("decoded \(body) as \(type)", sourceLocation: sourceLocation)
        } catch {
            #expect(describeError(error).contains(words), "\(error)", sourceLocation: sourceLocation)
        }
    }

    func describeError(_ error: any Error) -> String {
        if let decoding = error as? DecodingError, case .dataCorrupted(let context) = decoding { return context.debugDescription }
        if let decoding = error as? DecodingError, case .typeMismatch(_, let context) = decoding { return context.debugDescription }
        return "\(error)"
    }

    @Test("The header: missing, cut short, or of another version")
    func headerRule() throws {
        #expect(throws: DecodingError.self) { try BinaryDecoder().decode(Int.self, from: [0x41]) }
        #expect(throws: DecodingError.self) { try BinaryDecoder().decode(Int.self, from: Array(magic.prefix(5))) }
        #expect(throws: DecodingError.self) { try BinaryDecoder().decode(Int.self, from: [0xB7, 0x73, 0x77, 0x70, 0x61, 0x72, 0x09, 0x00, 0x41]) }
    }

    @Test("Tags: unknown, the end marker where a value belongs, a value of the wrong kind")
    func tags() {
        rejects(Int.self, [0xC5], "unknown tag 197")
        rejects([Int].self, [0x08, 0xC5, 0xFF], "unknown tag 197")
        rejects(Int.self, [0xFF], "expected Int, found the end of a container")
        rejects(String.self, [0x45], "expected String, found an integer")
        rejects(Bool.self, [0x06, 0, 0, 0, 0, 0, 0, 0, 0], "expected Bool")
    }

    @Test("Varints: overlong and overflowing")
    func varints() {
        rejects(Int.self, [0x03] + [UInt8](repeating: 0x80, count: 10) + [0x01], "varint")
        rejects(Int.self, [0x04, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F], "varint overflows 64 bits")
        rejects(Int8.self, [0x03, 0x80, 0x04], "does not fit in Int8")
    }

    @Test("Nested arrays whose counts each claim the rest of the message reserve, together, no more room than its size")
    func nestedLyingCounts() throws {
        // [[String]]: 5,000 empty arrays, each saying it holds 2^62 strings.
        let lie: [UInt8] = [WireTag.countedUnkeyed, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40, 0xFF]
        let body = [WireTag.unkeyed] + Array([[UInt8]](repeating: lie, count: 5_000).joined()) + [0xFF]
        let decoded = try BinaryDecoder().decode([[String]].self, from: magic + body)
        #expect(decoded.count == 5_000 && decoded.allSatisfy(\.isEmpty))
        let reserved = decoded.reduce(0) { $0 + $1.capacity }
        #expect(reserved <= 2 * body.count, "\(reserved) elements reserved from a message of \(body.count) bytes")
    }

    @Test("Strings: a length past the end, invalid UTF-8")
    func strings() {
        rejects(String.self, [0x07, 0x20, 0x61], "runs past the end")
        rejects(String.self, [0x82, 0xC3, 0x28], "invalid UTF-8")
        rejects(String.self, [0x85, 0x61], "runs past the end")
    }

    @Test("Plain-number arrays: unknown kind, a count whose bytes overflow or run past the end")
    func plainArrays() {
        rejects([Double].self, [0x0A, 0x33, 0x01, 0, 0, 0, 0, 0, 0, 0, 0], "unknown number kind")
        rejects([Double].self, [0x0A, 0x0A, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10], "runs past the end")
        rejects([Double].self, [0x0A, 0x0A, 0x02, 0, 0, 0, 0, 0, 0, 0, 0], "runs past the end")
    }

    @Test("Keys: an interned key never defined, an invalid header, a container never closed")
    func keys() {
        rejects(Pair.self, [0x09, 0x05, 0x41], "key number 1 is not defined")
        rejects(Pair.self, [0x09, 0x10, 0x41, 0x00], "invalid key header")
        rejects(Pair.self, [0x09, 0x12, 0x6C, 0x65, 0x66, 0x74, 0x41], "unexpected end of message")
        rejects([Int].self, [0x08, 0x41, 0x42], "unexpected end of message")
    }

    @Test("Nesting deeper than the limit, and bytes left over after the value")
    func nestingAndLeftovers() {
        // An unknown field holding arrays nested 600 deep, skipped to find the fields asked for.
        rejects(Pair.self, [0x09, 0x12, 0x64, 0x65, 0x65, 0x70] + [UInt8](repeating: 0x08, count: 600), "nesting deeper than")
        rejects(Int.self, [0x41, 0x41], "left over")
    }

    @Test("A 16 MiB message decoded as the wrong type throws at once")
    func largeMismatch() throws {
        let bytes = try BinaryEncoder().encode([String](repeating: "x", count: 1 << 20))
        let start = Date()
        #expect(throws: DecodingError.self) { try BinaryDecoder().decode([Pair].self, from: bytes) }
        #expect(throws: DecodingError.self) { try BinaryDecoder().decode([Int].self, from: bytes) }
        #expect(Date().timeIntervalSince(start) < 1)
    }
}
