import ArgumentParser
import Foundation
import SwiftPar

struct WordCountBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wordcount",
        abstract: "Word frequencies of a tree of text files with Pool.mapReduce(into:), the shape of many users' jobs.",
        discussion: """
            Each rank counts the words of the files it is given into a [String: Int] of its own; one partial per rank travels to rank 0 at the end. Words are runs of bytes between ASCII whitespace, as Python's bytes.split() makes them. With no DIR, a corpus of text with a Zipf-like vocabulary (256 files of 1 MiB) is generated once in the temporary folder and reused. --plain counts on rank 0 alone, in a plain loop: the baseline.

            Examples:
              swiftpar -n 2 bench wordcount
              swiftpar bench wordcount --plain
              mpirun -n 4 swiftpar bench wordcount /usr/share/doc --json
            """
    )

    @OptionGroup var options: GlobalOptions

    @Argument(help: ArgumentHelp("A folder of text files (default: a generated corpus).", valueName: "dir"))
    var folder: String?

    @Flag(help: "Count in a plain loop on rank 0, without the pool.")
    var plain = false

    struct Report: Codable {
        var files: Int
        var bytes: Int
        var words: Int
        var distinctWords: Int
        var seconds: Double
        var ranks: Int
        var backend: String
        var plain: Bool
    }

    func validate() throws {
        guard let folder else { return }
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isFolder) else {
            throw ValidationError("\(folder): No such file or directory")
        }
        guard isFolder.boolValue else { throw ValidationError("\(folder): Not a directory (give a folder of text files)") }
    }

    func run() throws {
        let (folder, plain, json) = (self.folder, self.plain, options.json)
        options.run { world in
            var files: [String] = []
            if world.rank == 0 {
                let root = try folder ?? Corpus.make()
                files = try Corpus.files(in: root)
                guard !files.isEmpty else { throw SwiftParUsageError("no files to count under \(root)") }
            }
            try world.barrier()
            let start = monotonicNow()
            var counts: [String: Int]?
            if plain {
                if world.rank == 0 {
                    var total: [String: Int] = [:]
                    for file in files { total.merge(try countWords(in: file), uniquingKeysWith: +) }
                    counts = total
                }
            } else {
                counts = try Pool(world).mapReduce(files, into: [String: Int](), { try countWords(in: $0) }) { total, part in
                    total.merge(part, uniquingKeysWith: +)
                }
            }
            let seconds = monotonicNow() - start
            guard world.rank == 0, let counts else { return }
            let bytes = files.reduce(0) { $0 + ((try? FileManager.default.attributesOfItem(atPath: $1)[.size] as? Int) ?? 0) }
            let report = Report(files: files.count, bytes: bytes, words: counts.values.reduce(0, +), distinctWords: counts.count,
                                seconds: seconds, ranks: plain ? 1 : world.size, backend: world.backend.rawValue, plain: plain)
            if json {
                try printChecked(try jsonText(report))
            } else {
                try printChecked("\(report.words) words (\(report.distinctWords) distinct) in \(report.files) files, \(bytes >> 20) MiB: \(format(seconds, 3)) s"
                                 + (plain ? " in a plain loop" : " on \(world.size) ranks, \(world.backend) backend"))
            }
        }
    }
}

/// The words of one file and how often each occurs: runs of bytes between ASCII whitespace.
func countWords(in path: String) throws -> [String: Int] {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw SwiftParUsageError("cannot read \(path)")
    }
    var counts: [String: Int] = [:]
    data.withUnsafeBytes { raw in
        let bytes = raw.bindMemory(to: UInt8.self)
        var start = -1
        for i in 0..<bytes.count {
            let byte = bytes[i]
            // Space, \t, \n, \v, \f, \r: what bytes.split() splits on.
            if byte == 32 || (byte >= 9 && byte <= 13) {
                if start >= 0 {
                    counts[String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self), default: 0] += 1
                    start = -1
                }
            } else if start < 0 {
                start = i
            }
        }
        if start >= 0 {
            counts[String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<bytes.count]), as: UTF8.self), default: 0] += 1
        }
    }
    return counts
}

/// A generated text corpus: the same bytes on every machine, made once and kept.
enum Corpus {
    static let files = 256
    static let bytesPerFile = 1 << 20
    static let vocabulary = 50_000

    /// The folder of the corpus, made if it is not there yet.
    static func make() throws -> String {
        let root = (ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp") + "/swiftpar-wordcount-corpus-v1"
        let marker = root + "/COMPLETE"
        if FileManager.default.fileExists(atPath: marker) { return root }
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        var generator = SplitMix(seed: 20261125)
        // Words of 2 to 12 lowercase letters; word r is drawn with probability about 1/r.
        let words: [[UInt8]] = (0..<vocabulary).map { _ in
            (0..<(2 + Int(generator.next() % 11))).map { _ in UInt8(97 + generator.next() % 26) }
        }
        let logVocabulary = log(Double(vocabulary))
        for index in 0..<files {
            var text: [UInt8] = []
            text.reserveCapacity(bytesPerFile + 16)
            var column = 0
            while text.count < bytesPerFile {
                let u = Double(generator.next() >> 11) / Double(1 << 53)
                let rank = min(Int(exp(u * logVocabulary)) - 1, vocabulary - 1)
                let word = words[rank]
                text.append(contentsOf: word)
                column += word.count + 1
                if column > 72 {
                    text.append(10)
                    column = 0
                } else {
                    text.append(32)
                }
            }
            let path = root + "/text-\(1000 + index).txt"
            guard FileManager.default.createFile(atPath: path, contents: Data(text)) else {
                throw SwiftParUsageError("cannot write the corpus file \(path)")
            }
        }
        guard FileManager.default.createFile(atPath: marker, contents: Data("\(files) files\n".utf8)) else {
            throw SwiftParUsageError("cannot write \(marker)")
        }
        return root
    }

    /// Regular files under `root`, sorted, the marker left out.
    static func files(in root: String) throws -> [String] {
        guard let walker = FileManager.default.enumerator(atPath: root) else { throw SwiftParUsageError("cannot read the folder \(root)") }
        var found: [String] = []
        while let name = walker.nextObject() as? String {
            let path = root + "/" + name
            var isFolder: ObjCBool = false
            if name != "COMPLETE", FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), !isFolder.boolValue,
               (try? FileManager.default.attributesOfItem(atPath: path)[.type] as? FileAttributeType) == .typeRegular {
                found.append(path)
            }
        }
        return found.sorted()
    }
}

/// A small, fast pseudo-random generator with a fixed seed (SplitMix64).
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
