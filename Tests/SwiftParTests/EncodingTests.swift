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
