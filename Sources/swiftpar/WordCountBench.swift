import ArgumentParser
import Foundation
import SwiftPar
import SwiftParWorkloads
#if canImport(Glibc)
import Glibc
#endif

struct WordCountBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wordcount",
        abstract: "Word frequencies of a tree of text files with Pool.mapReduce(into:), the shape of many users' jobs.",
        discussion: """
            Each rank counts the words of the files it is given into a [String: Int] of its own; one partial per rank travels to rank 0 at the end. Words are runs of bytes between ASCII whitespace, as Python's bytes.split() makes them, counted as Swift Strings: bytes that are not UTF-8 are repaired and canonically equivalent spellings are one word, so only on UTF-8 text in one normalization form (such as the generated corpus) are the counts Python's. With no DIR, a corpus of text with a Zipf-like vocabulary (256 files of 1 MiB) is generated once in the temporary folder and reused. --plain counts on rank 0 alone, in a plain loop: the baseline.

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
        var info = stat()
        let path = PathBytes(RawArguments.bytes(of: folder))
        guard path.withCString({ stat($0, &info) }) == 0 else {
            let code = errno
            throw ValidationError("\(path): \(String(cString: strerror(code)))")
        }
        guard info.st_mode & S_IFMT == S_IFDIR else { throw ValidationError("\(path): Not a directory (give a folder of text files)") }
    }

    func run() throws {
        let (folder, plain, json) = (self.folder.map { PathBytes(RawArguments.bytes(of: $0)) }, self.plain, options.json)
        options.run(Self.self) { world in
            var files: [PathBytes] = []
            var bytes: Int64 = 0
            if world.rank == 0 {
                let root = try folder ?? PathBytes(Corpus.make())
                let found = try Corpus.files(in: root)
                files = found.map(\.path)
                bytes = found.reduce(0) { $0 + $1.size }
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
            let report = Report(files: files.count, bytes: Int(bytes), words: counts.values.reduce(0, +), distinctWords: counts.count,
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
func countWords(in path: PathBytes) throws -> [String: Int] {
    let data = try contents(of: path)
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

/// The whole of the regular file at `path`; a failure names the path and the system's reason.
/// The file's size when opened sizes the buffer; a file that grows meanwhile is read to its end.
func contents(of path: PathBytes) throws -> [UInt8] {
    func failure(_ code: Int32) -> SwiftParUsageError { SwiftParUsageError("cannot read \(path): \(String(cString: strerror(code)))") }
    // Without blocking: a path that became a named pipe since the walk is reported, not waited on.
    let descriptor = path.withCString { open($0, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY) }
    guard descriptor >= 0 else { throw failure(errno) }
    defer { close(descriptor) }
    var info = stat()
    guard fstat(descriptor, &info) == 0 else { throw failure(errno) }
    guard info.st_mode & S_IFMT == S_IFREG else { throw SwiftParUsageError("cannot read \(path): not a regular file") }
    /// Reads into `buffer` until it is full or the file ends; the bytes read.
    func fill(_ buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        var filled = 0
        while filled < buffer.count {
            let got = read(descriptor, buffer.baseAddress! + filled, buffer.count - filled)
            if got < 0 {
                if errno == EINTR { continue }
                throw failure(errno)
            }
            if got == 0 { break }
            filled += got
        }
        return filled
    }
    var data = try [UInt8](unsafeUninitializedCapacity: Int(info.st_size)) { buffer, count in
        count = try fill(UnsafeMutableRawBufferPointer(buffer))
    }
    // Whatever was added after the size was taken (or all of a file that reports no size).
    if data.count == Int(info.st_size) {
        try withUnsafeTemporaryAllocation(byteCount: 64 << 10, alignment: 16) { more in
            while true {
                let got = try fill(more)
                data.append(contentsOf: UnsafeRawBufferPointer(rebasing: more[..<got]))
                if got < more.count { break }
            }
        }
    }
    return data
}

/// A generated text corpus: the same bytes on every machine, made once and kept.
enum Corpus {
    static let files = 256
    static let bytesPerFile = 1 << 20
    static let vocabulary = 50_000

    /// The folder of the corpus, made if it is not there yet.
    ///
    /// It lives in the temporary folder, which other users can write to: a corpus folder that
    /// is not this user's own (a symbolic link, another user's, writable by others) is refused,
    /// never written through or trusted. A new corpus is made in a folder of its own, its
    /// files created new, and renamed into place whole once complete.
    static func make() throws -> String {
        var temporary = ProcessInfo.processInfo.environment["TMPDIR"] ?? ""
        if temporary.isEmpty { temporary = "/tmp" }
        // One per user: another user's corpus there is neither in the way nor trusted.
        let name = "swiftpar-wordcount-corpus-v1-\(getuid())"
        let root = temporary + "/" + name
        removeAbandonedStaging(in: temporary, prefix: name + ".")
        if try isOwnFolder(root) {
            if FileManager.default.fileExists(atPath: root + "/COMPLETE") { return root }
            // Left by a run that was cut short before the rename (or by an older swiftpar).
            try FileManager.default.removeItem(atPath: root)
        }
        var template = Array((root + ".\(getpid()).XXXXXX").utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw SystemError.current("making a folder for the corpus beside \(root)")
        }
        let staging = String(cString: made)
        do {
            try generate(into: staging)
            guard chmod(staging, 0o755) == 0 else { throw SystemError.current("chmod of \(staging)") }
            guard rename(staging, root) == 0 else {
                // Another run made it meanwhile: use that one, if it is sound.
                let failure = SystemError.current("renaming \(staging) to \(root)")
                try? FileManager.default.removeItem(atPath: staging)
                if try isOwnFolder(root), FileManager.default.fileExists(atPath: root + "/COMPLETE") { return root }
                throw failure
            }
        } catch {
            try? FileManager.default.removeItem(atPath: staging)
            throw error
        }
        return root
    }

    /// Removes the folders a corpus was being made in by runs that ended before they finished
    /// (Ctrl-C during the minute it takes): `PREFIX.PID.XXXXXX` of this user's, whose process is
    /// gone. A run still making one keeps it.
    static func removeAbandonedStaging(in folder: String, prefix: String) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return }
        for name in names where name.hasPrefix(prefix) {
            let parts = name.dropFirst(prefix.count).split(separator: ".")
            guard parts.count == 2, let pid = pid_t(parts[0]), kill(pid, 0) != 0 && errno == ESRCH,
                  (try? isOwnFolder(folder + "/" + name)) == true else { continue }
            try? FileManager.default.removeItem(atPath: folder + "/" + name)
        }
    }

    /// Whether `path` is a folder of this user's that no one else can write to; false when
    /// nothing is there. Anything else there is refused.
    static func isOwnFolder(_ path: String) throws -> Bool {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            if errno == ENOENT { return false }
            throw SystemError.current("examining \(path)")
        }
        guard info.st_mode & S_IFMT == S_IFDIR, info.st_uid == getuid(), info.st_mode & 0o022 == 0 else {
            throw SwiftParUsageError("\(path) is not a folder of this user's that only it can write (a symbolic link, or another user's folder): "
                + "the corpus is neither written nor read there; remove it, or set TMPDIR to a folder of your own")
        }
        return true
    }

    /// Writes the corpus's files and its marker into the empty folder `root`.
    private static func generate(into root: String) throws {
        let marker = root + "/COMPLETE"
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
            try writeNewFile(path, text)
        }
        try writeNewFile(marker, Array("\(files) files\n".utf8))
    }

    /// Writes `bytes` to a new file at `path` (never through a link, never over a file that
    /// is there), every write checked: a full disk says so, in the system's words.
    static func writeNewFile(_ path: String, _ bytes: [UInt8]) throws {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw SystemError.current("creating \(path)") }
        var written = 0
        while written < bytes.count {
            let count = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress! + written, $0.count - written) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else {
                let failure = SystemError.current("write to \(path)")
                close(descriptor)
                throw failure
            }
            written += count
        }
        guard close(descriptor) == 0 else { throw SystemError.current("write to \(path)") }
    }

    /// Regular files under `root`, folder by folder in byte order of their names (symbolic
    /// links, named pipes, sockets and devices met on the way are left out, as Python's `os.walk`
    /// with `isfile` and `islink` leaves them out), the corpus's marker at the top left out. A
    /// folder or file that cannot be read ends the count, naming it: a count that silently
    /// skipped files would not be the count asked for.
    static func files(in root: PathBytes) throws -> [FileHashing.File] {
        let (found, reported, _) = FileHashing.walk([root], followSymlinks: false)
        let problems = reported.filter { problem in
            var info = stat()
            let special = problem.path.withCString { lstat($0, &info) } == 0
                && ![S_IFREG, S_IFDIR, S_IFLNK].contains(info.st_mode & S_IFMT)
            return !special
        }
        if let first = problems.first {
            throw SwiftParUsageError("cannot count every file under \(root): \(first)" + (problems.count > 1 ? " (and \(problems.count - 1) more problems)" : ""))
        }
        let marker = root.appending(Array("COMPLETE".utf8))
        return found.filter { $0.path != marker }
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
