import Crypto
import SwiftPar
#if canImport(Glibc)
import Glibc
#endif

/// SHA-256 of many files, spread over the ranks of a communicator.
///
/// Rank 0 walks the paths, hands the files out largest first (so a few large files do not end
/// up last on one rank) and prints lines that `sha256sum -c` accepts, sorted by path. Every
/// rank reads the files it is given itself, in 1 MiB pieces, so memory stays small whatever
/// the file sizes; only paths and digests travel.
public enum FileHashing {
    /// One file to hash, as found by the walk.
    public struct File: Codable, Sendable, Equatable {
        /// The path as it will be printed.
        public var path: PathBytes
        /// Its size in bytes when walked.
        public var size: Int64
    }

    /// A problem with one path: it is reported and the rest still hashed.
    public struct Problem: Codable, Sendable, Equatable, Error, CustomStringConvertible {
        /// The path concerned.
        public var path: PathBytes
        /// What went wrong.
        public var reason: String
        /// "path: reason", the path quoted as coreutils quote names.
        public var description: String { "\(path): \(reason)" }
    }

    /// The result of one file.
    public enum Outcome: Codable, Sendable, Equatable {
        case digest(String)
        case failed(String)
    }

    /// Files under `paths` (directories recursively, in byte order of names) and the problems
    /// met. Symbolic links named as operands are followed, as `sha256sum` and `find -H` do; links
    /// met during the walk are skipped unless `followSymlinks` is set, and followed links that
    /// lead back into a directory being walked are reported as loops.
    public static func walk(_ paths: [PathBytes], followSymlinks: Bool) -> (files: [File], problems: [Problem], skippedLinks: [PathBytes]) {
        var files: [File] = []
        var problems: [Problem] = []
        var skipped: [PathBytes] = []
        var active: [(UInt64, UInt64)] = []

        func visit(_ path: PathBytes, operand: Bool) {
            var info = stat()
            guard path.withCString({ lstat($0, &info) }) == 0 else {
                problems.append(Problem(path: path, reason: systemMessage(errno)))
                return
            }
            if info.st_mode & S_IFMT == S_IFLNK {
                guard operand || followSymlinks else {
                    skipped.append(path)
                    return
                }
                guard path.withCString({ stat($0, &info) }) == 0 else {
                    let reason = errno == ELOOP ? "symbolic link loop" : systemMessage(errno)
                    problems.append(Problem(path: path, reason: reason))
                    return
                }
            }
            switch info.st_mode & S_IFMT {
            case S_IFREG:
                files.append(File(path: path, size: Int64(info.st_size)))
            case S_IFDIR:
                let identity = (UInt64(info.st_dev), UInt64(info.st_ino))
                if active.contains(where: { $0 == identity }) {
                    problems.append(Problem(path: path, reason: "symbolic link loop: leads back to a directory above it"))
                    return
                }
                guard let directory = path.withCString({ opendir($0) }) else {
                    problems.append(Problem(path: path, reason: systemMessage(errno)))
                    return
                }
                var names: [[UInt8]] = []
                while let entry = readdir(directory) {
                    let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in Array(raw.prefix { $0 != 0 }) }
                    if name != [0x2E] && name != [0x2E, 0x2E] { names.append(name) }
                }
                closedir(directory)
                active.append(identity)
                for name in names.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
                    visit(path.appending(name), operand: false)
                }
                active.removeLast()
            default:
                problems.append(Problem(path: path, reason: "not a regular file (\(kind(of: info.st_mode)))"))
            }
        }

        for path in paths { visit(path, operand: true) }
        return (files, problems, skipped)
    }

    static func kind(of mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFIFO: return "a named pipe"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFSOCK: return "a socket"
        case S_IFDIR: return "a directory"
        case S_IFLNK: return "a symbolic link"
        default: return "a special file"
        }
    }

    /// The SHA-256 of the file at `path` as lowercase hex, read in pieces of `buffer`'s size.
    ///
    /// The file is opened without blocking and checked on the open descriptor: a path that
    /// became a named pipe or a device after the walk is reported, never waited on.
    public static func digest(of path: PathBytes, buffer: UnsafeMutableRawBufferPointer) throws -> String {
        let descriptor = path.withCString { open($0, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY) }
        guard descriptor >= 0 else { throw Problem(path: path, reason: systemMessage(errno)) }
        defer { close(descriptor) }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { throw Problem(path: path, reason: systemMessage(errno)) }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw Problem(path: path, reason: "not a regular file (\(kind(of: info.st_mode)))")
        }
        // Regular files never block; reading whole pieces is simpler without O_NONBLOCK.
        _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) & ~O_NONBLOCK)
        var hasher = SHA256()
        while true {
            let count = read(descriptor, buffer.baseAddress, buffer.count)
            if count < 0 {
                if errno == EINTR { continue }
                throw Problem(path: path, reason: systemMessage(errno))
            }
            if count == 0 { break }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[..<count]))
        }
        return hex(hasher.finalize())
    }

    static func hex<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 {
        let digits = Array("0123456789abcdef".utf8)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(64)
        for byte in digest {
            bytes.append(digits[Int(byte >> 4)])
            bytes.append(digits[Int(byte & 15)])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Hashes `files` on every rank of `pool`; on rank 0 returns one outcome per file, in the
    /// order given, nil elsewhere.
    public static func hash(_ files: [File], pool: Pool, progress: (@Sendable (Int, Int?) -> Void)? = nil) throws -> [Outcome]? {
        // Largest first: the big files start early and the small ones fill the gaps at the end.
        let order = files.indices.sorted { files[$0].size > files[$1].size }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)
        defer { buffer.deallocate() }
        var outcomes = [Outcome?](repeating: nil, count: pool.communicator.rank == 0 ? files.count : 0)
        try pool.forEachResult(order.lazy.map { files[$0].path }, ordered: false, options: MapOptions(progress: progress), { path -> Outcome in
            do {
                return .digest(try digest(of: path, buffer: buffer))
            } catch let problem as Problem {
                return .failed(problem.reason)
            }
        }) { index, outcome in
            outcomes[order[index]] = outcome
        }
        guard pool.communicator.rank == 0 else { return nil }
        return outcomes.map { $0! }
    }

    /// A line in `sha256sum`'s format: "digest  path" and a newline, the path's bytes as they
    /// are, except that a path holding a backslash, newline or carriage return is escaped as
    /// GNU does (`\\`, `\n`, `\r`) and the line then starts with a backslash.
    public static func checksumLine(digest: String, path: PathBytes) -> [UInt8] {
        let special: Set<UInt8> = [UInt8(ascii: "\\"), 10, 13]
        var line: [UInt8] = []
        line.reserveCapacity(digest.utf8.count + path.bytes.count + 4)
        let escape = path.bytes.contains { special.contains($0) }
        if escape { line.append(UInt8(ascii: "\\")) }
        line.append(contentsOf: digest.utf8)
        line.append(contentsOf: [0x20, 0x20])
        for byte in path.bytes {
            switch byte {
            case UInt8(ascii: "\\") where escape: line.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case 10: line.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case 13: line.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            default: line.append(byte)
            }
        }
        line.append(10)
        return line
    }
}

/// The system's words for an error number: "No such file or directory".
func systemMessage(_ code: Int32) -> String { String(cString: strerror(code)) }
