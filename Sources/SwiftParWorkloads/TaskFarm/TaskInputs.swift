#if canImport(Glibc)
import Glibc
#endif
import SwiftPar

/// Where a task's inputs come from, as GNU parallel's `:::`, `::::` and standard input.
package enum InputSource: Sendable {
    /// Values from the command line (`::: a b c`).
    case values([[UInt8]])
    /// Records of a file (`:::: FILE`), or of standard input when the path is `-`.
    case file(PathBytes)
    /// Records of standard input (no source given).
    case standardInput
}

/// One source and whether it is joined element by element to the one before (`:::+`, `::::+`).
package struct InputSpecification: Sendable {
    package var source: InputSource
    package var linkedToPrevious: Bool

    package init(_ source: InputSource, linkedToPrevious: Bool = false) {
        self.source = source
        self.linkedToPrevious = linkedToPrevious
    }
}

/// An input file that could not be read.
package struct InputError: Error, CustomStringConvertible {
    package let description: String

    package init(description: String) { self.description = description }
}

/// The values of a command-line value (`::: VALUE`), split on `separator` (one byte or more) as
/// GNU parallel splits it: what follows the last separator is one more value, even when empty
/// (`::: $'a\n'` is `a` and an empty value), and empty bytes are one empty value.
func records(of bytes: [UInt8], separator: [UInt8]) -> [[UInt8]] {
    var result: [[UInt8]] = []
    var start = 0
    while let end = firstSeparator(separator, in: bytes, from: start) {
        result.append(Array(bytes[start..<end]))
        start = end + separator.count
    }
    result.append(Array(bytes[start...]))
    return result
}

/// Where the next `separator` starts in `bytes` at or after `start`.
func firstSeparator(_ separator: [UInt8], in bytes: [UInt8], from start: Int) -> Int? {
    var from = start
    while let candidate = bytes[from...].firstIndex(of: separator[0]) {
        guard candidate + separator.count <= bytes.count else { return nil }
        if separator.count == 1 || bytes[(candidate + 1)..<(candidate + separator.count)].elementsEqual(separator.dropFirst()) {
            return candidate
        }
        from = candidate + 1
    }
    return nil
}

/// Records read from a descriptor a block at a time: constant memory whatever the input's size.
final class RecordReader {
    private let descriptor: Int32
    private let separator: [UInt8]
    private let name: String
    private var buffer: [UInt8] = []
    private var start = 0
    /// Where in `buffer` a separator may start that has not been looked for yet: a record
    /// longer than a block is searched once, not again from its start after every read.
    private var unsearched = 0
    private var ended = false
    /// Standard input: under mpirun, a copy that ends alike however mpirun's own input ended,
    /// so its end is checked against mpirun's.
    private let isStandardInput: Bool

    /// Records of `descriptor`, named `name` in errors ("standard input", "input file …").
    init(descriptor: Int32, separator: [UInt8], name: String, isStandardInput: Bool = false) {
        self.descriptor = descriptor
        self.separator = separator
        self.name = name
        self.isStandardInput = isStandardInput
    }

    private let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 16)

    deinit {
        scratch.deallocate()
        if descriptor > 2 { close(descriptor) }
    }

    /// The next record without its separator; the last one counts without a final separator.
    func next() throws -> [UInt8]? {
        while true {
            if let end = firstSeparator(separator, in: buffer, from: max(start, unsearched)) {
                let record = Array(buffer[start..<end])
                start = end + separator.count
                unsearched = start
                return record
            }
            if ended {
                guard start < buffer.count else { return nil }
                let record = Array(buffer[start...])
                start = buffer.count
                return record
            }
            // A separator may start in the last bytes and end in the next block.
            unsearched = max(start, buffer.count - separator.count + 1)
            if start > 0 {
                buffer.removeFirst(start)
                unsearched -= start
                start = 0
            }
            let got = read(descriptor, scratch.baseAddress!, scratch.count)
            if got < 0 {
                if errno == EINTR { continue }
                throw InputError(description: "reading \(name) failed: \(String(cString: strerror(errno)))")
            }
            buffer.append(contentsOf: UnsafeRawBufferPointer(start: scratch.baseAddress!, count: got))
            if got == 0 {
                if isStandardInput, let reason = StandardStreams.launcherInputCutShort() {
                    throw InputError(description: "reading \(name) failed: \(reason)")
                }
                ended = true
            }
        }
    }
}

/// The tasks' inputs, one array of values (one per source) per task, produced as they are
/// needed: the first source (or linked group) is streamed, the others are read once and kept.
///
/// Several sources give every combination, the last source varying fastest; with `link`, they
/// are paired element by element, shorter sources starting over, for as many tasks as the
/// longest has values; a source marked `linkedToPrevious` is paired with the one before it and
/// the pair ends with the shorter (with `link`, it wraps as the others do). An empty source
/// among others counts as one empty value.
package final class TaskInputs {
    /// A group of sources read in step.
    private final class Unit {
        var readers: [() throws -> [UInt8]?]
        var kept: [[[UInt8]]]? // every element, when the unit is read more than once
        init(readers: [() throws -> [UInt8]?]) { self.readers = readers }

        func next() throws -> [[UInt8]]? {
            var values: [[UInt8]] = []
            for reader in readers {
                guard let value = try reader() else { return nil }
                values.append(value)
            }
            return values
        }

        func all() throws -> [[[UInt8]]] {
            if let kept { return kept }
            var elements: [[[UInt8]]] = []
            while let element = try next() { elements.append(element) }
            kept = elements
            return elements
        }
    }

    private let units: [Unit]
    private let link: Bool
    /// Product: the current element of each unit after the first, by index.
    private var positions: [Int] = []
    private var keptUnits: [[[[UInt8]]]] = []
    private var current: [[UInt8]]?
    private var started = false
    private var finished = false
    /// Link: values read so far of each unit, to start over from, and which have ended.
    private var linkSeen: [[[[UInt8]]]] = []
    private var linkEnded: [Bool] = []
    private var linkIndex = 0

    /// How many tasks there will be, when that is known before reading: every source is
    /// values from the command line and none is skipped (`-r`). Nil otherwise.
    package let knownCount: Int?

    /// The inputs of `sources`, records ending with `separator` (one byte or more); with
    /// `skipEmpty`, blank values (spaces, tabs and line ends only) are left out of every source
    /// as it is read (`-r`).
    package init(_ sources: [InputSpecification], separator: [UInt8] = [10], link: Bool = false, skipEmpty: Bool = false) throws {
        knownCount = skipEmpty ? nil : Self.count(of: sources, separator: separator, link: link)
        var units: [Unit] = []
        for specification in sources {
            var reader = try Self.reader(for: specification.source, separator: separator)
            if skipEmpty {
                // As GNU parallel, blank values are dropped from each source as it is read.
                let all = reader
                reader = {
                    while let value = try all() {
                        if !value.allSatisfy({ $0 == 0x20 || (0x09...0x0D).contains($0) }) { return value }
                    }
                    return nil
                }
            }
            // With --link every source wraps, :::+ ones too, as in GNU parallel.
            if specification.linkedToPrevious && !link, let last = units.last {
                last.readers.append(reader)
            } else {
                units.append(Unit(readers: [reader]))
            }
        }
        self.units = units
        self.link = link
    }

    /// The number of tasks `sources` give, if they are all command-line values.
    private static func count(of sources: [InputSpecification], separator: [UInt8], link: Bool) -> Int? {
        var units: [Int] = []
        for specification in sources {
            guard case .values(let values) = specification.source else { return nil }
            var records = 0
            for value in values { records += SwiftParWorkloads.records(of: value, separator: separator).count }
            if specification.linkedToPrevious && !link, let last = units.last {
                units[units.count - 1] = min(last, records)
            } else {
                units.append(records)
            }
        }
        guard let first = units.first else { return 0 }
        if link { return units.max() ?? 0 }
        if units.count == 1 { return first }
        // An empty source among others counts as one empty value.
        var total = 1
        for count in units {
            let (product, overflow) = total.multipliedReportingOverflow(by: max(count, 1))
            if overflow { return nil }
            total = product
        }
        return total
    }

    private static func reader(for source: InputSource, separator: [UInt8]) throws -> () throws -> [UInt8]? {
        switch source {
        case .values(let values):
            // Values are split on the separator too (`::: $'a\nb'` is two values).
            let split = values.flatMap { records(of: $0, separator: separator) }
            var index = 0
            return {
                guard index < split.count else { return nil }
                defer { index += 1 }
                return split[index]
            }
        case .file(let path) where path.bytes == Array("-".utf8):
            return try reader(for: .standardInput, separator: separator)
        case .standardInput:
            let records = RecordReader(descriptor: dup(0), separator: separator, name: "standard input", isStandardInput: true)
            return { try records.next() }
        case .file(let path):
            let descriptor = path.withCString { open($0, O_RDONLY | O_CLOEXEC) }
            guard descriptor >= 0 else {
                throw InputError(description: "cannot open input file \(path): \(String(cString: strerror(errno)))")
            }
            var status = stat()
            if fstat(descriptor, &status) == 0 && (status.st_mode & S_IFMT) == S_IFDIR {
                close(descriptor)
                throw InputError(description: "input file \(path) is a directory")
            }
            // Standard input named by a path (`-a /dev/stdin`) is checked as standard input.
            var input = stat()
            let isStandardInput = fstat(0, &input) == 0 && status.st_dev == input.st_dev && status.st_ino == input.st_ino
            let records = RecordReader(descriptor: descriptor, separator: separator, name: isStandardInput ? "standard input" : "input file \(path)",
                                       isStandardInput: isStandardInput)
            return { try records.next() }
        }
    }

    /// Whether an input with a NUL byte has been met (and said so).
    private var warnedOfNul = false

    /// The next task's inputs, or nil when there are no more.
    ///
    /// A NUL byte cannot be passed in a command line (it would end it there): it is written as
    /// the two characters `\0` (GNU parallel writes it so too), with a warning the first time.
    package func next() throws -> [[UInt8]]? {
        while true {
            guard var inputs = try nextCombination() else { return nil }
            if inputs.contains(where: { $0.contains(0) }) {
                if !warnedOfNul {
                    warnedOfNul = true
                    writeStandardError("swiftpar: run: warning: an input holds a NUL byte, which cannot be passed in a command line; it is written as \\0 (-0 splits the inputs at NUL bytes)\n")
                }
                inputs = inputs.map { input in input.flatMap { $0 == 0 ? [92, 48] : [$0] } }
            }
            return inputs
        }
    }

    private func nextCombination() throws -> [[UInt8]]? {
        if finished || units.isEmpty { return nil }
        if link { return try nextLinked() }
        if !started {
            started = true
            keptUnits = try units.dropFirst().map { unit in
                let all = try unit.all()
                // An empty source among others counts as one empty value.
                return all.isEmpty ? [Array(repeating: [], count: unit.readers.count)] : all
            }
            positions = Array(repeating: 0, count: keptUnits.count)
            if let first = try units[0].next() {
                current = first
            } else if keptUnits.isEmpty {
                finished = true
                return nil
            } else {
                current = Array(repeating: [], count: units[0].readers.count)
            }
        } else {
            // Advance: the last unit fastest.
            var level = keptUnits.count - 1
            while level >= 0 {
                positions[level] += 1
                if positions[level] < keptUnits[level].count { break }
                positions[level] = 0
                level -= 1
            }
            if level < 0 {
                guard let first = try units[0].next() else {
                    finished = true
                    return nil
                }
                current = first
            }
        }
        var inputs = current!
        for (level, elements) in keptUnits.enumerated() { inputs += elements[positions[level]] }
        return inputs
    }

    private func nextLinked() throws -> [[UInt8]]? {
        if linkSeen.isEmpty {
            linkSeen = Array(repeating: [], count: units.count)
            linkEnded = Array(repeating: false, count: units.count)
        }
        var inputs: [[UInt8]] = []
        for (index, unit) in units.enumerated() {
            if !linkEnded[index], let element = try unit.next() {
                linkSeen[index].append(element)
                inputs += element
                continue
            }
            linkEnded[index] = true
            if linkEnded.allSatisfy({ $0 }) {
                finished = true
                return nil
            }
            guard !linkSeen[index].isEmpty else {
                throw InputError(description: "--link: input source \(index + 1) is empty")
            }
            inputs += linkSeen[index][linkIndex % linkSeen[index].count]
        }
        linkIndex += 1
        return inputs
    }
}
