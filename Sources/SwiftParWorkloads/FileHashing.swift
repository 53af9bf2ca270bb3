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
        public var path: String
        /// Its size in bytes when walked.
        public var size: Int64
    }

    /// A problem with one path: it is reported and the rest still hashed.
    public struct Problem: Codable, Sendable, Equatable, Error, CustomStringConvertible {
        /// The path concerned.
        public var path: String
        /// What went wrong.
        public var reason: String
        /// "path: reason".
        public var description: String { "\(path): \(reason)" }
    }

    /// The result of one file.
    public enum Outcome: Codable, Sendable, Equatable {
        case digest(String)
        case failed(String)
    }

    /// Files under `paths` (directories recursively, in sorted order) and the problems met.
    /// Symbolic links are skipped unless `followSymlinks` is set; followed links that lead back
    /// into a directory being walked are reported as loops.
    public static func walk(_ paths: [String], followSymlinks: Bool) -> (files: [File], problems: [Problem], skippedLinks: [String]) {
        var files: [File] = []
        var problems: [Problem] = []
        var skipped: [String] = []
        var active: [(UInt64, UInt64)] = []

        func visit(_ path: String, explicit: Bool) {
            var info = stat()
            guard lstat(path, &info) == 0 else {
                problems.append(Problem(path: path, reason: String(cString: strerror(errno))))
                return
            }
            if info.st_mode & S_IFMT == S_IFLNK {
                guard followSymlinks else {
                    skipped.append(path)
                    return
                }
                guard stat(path, &info) == 0 else {
                    let reason = errno == ELOOP ? "symbolic link loop" : String(cString: strerror(errno))
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
                guard let directory = opendir(path) else {
                    problems.append(Problem(path: path, reason: String(cString: strerror(errno))))
                    return
                }
                var names: [String] = []
                while let entry = readdir(directory) {
                    let name = withUnsafePointer(to: entry.pointee.d_name) {
                        $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
                    }
                    if name != "." && name != ".." { names.append(name) }
                }
                closedir(directory)
                active.append(identity)
                let prefix = path.hasSuffix("/") ? path : path + "/"
                for name in names.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }) {
                    visit(prefix + name, explicit: false)
                }
                active.removeLast()
            default:
                problems.append(Problem(path: path, reason: "not a regular file (\(kind(of: info.st_mode)))"))
            }
        }

        for path in paths { visit(path, explicit: true) }
        return (files, problems, skipped)
    }

    static func kind(of mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFIFO: return "a named pipe"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFSOCK: return "a socket"
        default: return "a special file"
        }
    }

    /// The SHA-256 of the file at `path` as lowercase hex, read in pieces of `buffer`'s size.
    public static func digest(of path: String, buffer: UnsafeMutableRawBufferPointer) throws -> String {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw Problem(path: path, reason: String(cString: strerror(errno))) }
        defer { close(descriptor) }
        var hasher = SHA256()
        while true {
            let count = read(descriptor, buffer.baseAddress, buffer.count)
            if count < 0 {
                if errno == EINTR { continue }
                throw Problem(path: path, reason: String(cString: strerror(errno)))
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
    public static func hash(_ files: [File], pool: Pool, progress: ((Int, Int?) -> Void)? = nil) throws -> [Outcome]? {
        // Largest first: the big files start early and the small ones fill the gaps at the end.
        let order = files.indices.sorted { files[$0].size > files[$1].size }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)
        defer { buffer.deallocate() }
        var outcomes = [Outcome?](repeating: nil, count: pool.communicator.rank == 0 ? files.count : 0)
        try pool.forEachResult(order.map { files[$0].path }, ordered: false, options: MapOptions(progress: progress), { path -> Outcome in
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

    /// A line in `sha256sum`'s format: "digest  path", with GNU's escaping of backslashes and
    /// newlines in the path (the line then starts with a backslash).
    public static func checksumLine(digest: String, path: String) -> String {
        guard path.utf8.contains(where: { $0 == UInt8(ascii: "\\") || $0 == 10 || $0 == 13 }) else { return digest + "  " + path }
        var escaped = ""
        for character in path {
            switch character {
            case "\\": escaped += "\\\\"
            case "\n": escaped += "\\n"
            case "\r": escaped += "\\r"
            default: escaped.append(character)
            }
        }
        return "\\\(digest)  \(escaped)"
    }
}
