import Crypto
import SwiftPar
#if canImport(Glibc)
import Glibc
#endif

/// SHA-256 of many files, spread over the ranks of a communicator.
///
/// ``hashTrees(_:followSymlinks:keepEntries:pool:progress:deliver:)`` is what `swiftpar hash`
/// runs: rank 0 walks only the top levels and cuts the work into units (subtrees, groups of
/// files, large files alone); the ranks walk their subtrees themselves, hash each file in 1 MiB
/// pieces, and send back finished lines that `sha256sum -c` accepts, which rank 0 prints in path
/// order. ``walk(_:followSymlinks:)`` and ``hash(_:pool:progress:)`` are the simpler form for a
/// list of files known in advance: rank 0 walks everything and hands files out largest first.
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
        var walker = Walker(followSymlinks: followSymlinks, deferDepth: .max)
        walker.needSizes = true
        for path in paths { walker.visit(path, operand: true, depth: 0) }
        var problems: [Problem] = []
        var skipped: [PathBytes] = []
        for unit in walker.units {
            switch unit {
            case .problem(let problem): problems.append(problem)
            case .skippedLink(let link): skipped.append(link)
            default: break
            }
        }
        return (walker.files, problems, skipped)
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
        try digest(of: path, buffer: buffer, skipping: nil)
    }

    /// The same, throwing `SkippedFile` for the file `skipped` names.
    static func digest(of path: PathBytes, buffer: UnsafeMutableRawBufferPointer, skipping skipped: FileIdentity?) throws -> String {
        try path.withCString { try digest(in: AT_FDCWD, name: $0, path: path, buffer: buffer, skipping: skipped) }
    }

    /// The SHA-256 of the file `name` in the directory open as `directory` (or `AT_FDCWD`),
    /// `path` naming it in errors.
    static func digest(in directory: Int32, name: UnsafePointer<CChar>, path: PathBytes,
                       buffer: UnsafeMutableRawBufferPointer, skipping skipped: FileIdentity? = nil) throws -> String {
        let descriptor = openat(directory, name, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard descriptor >= 0 else { throw Problem(path: path, reason: systemMessage(errno)) }
        defer { close(descriptor) }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { throw Problem(path: path, reason: systemMessage(errno)) }
        if let skipped, skipped == FileIdentity(info) { throw SkippedFile() }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw Problem(path: path, reason: "not a regular file (\(kind(of: info.st_mode)))")
        }
        // O_NONBLOCK has no effect on a regular file's reads, so it can stay set.
        return try digest(reading: descriptor, path: path, buffer: buffer, size: Int(info.st_size))
    }

    /// A file as the system tells files apart, whatever their names: its device and inode.
    public struct FileIdentity: Hashable, Codable, Sendable {
        public var device: UInt64
        public var inode: UInt64

        public init(device: UInt64, inode: UInt64) {
            self.device = device
            self.inode = inode
        }

        init(_ info: stat) {
            self.init(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
        }

        /// The regular file open as `descriptor`, if it is one (the file the output goes to,
        /// for `hashTrees`' `skipping`).
        public static func ofRegularFile(open descriptor: Int32) -> FileIdentity? {
            var info = stat()
            guard fstat(descriptor, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return nil }
            return FileIdentity(info)
        }

        /// The regular file at `path`, if there is one (the same file seen from another host
        /// of a shared file system has another device number there).
        public static func ofRegularFile(at path: PathBytes) -> FileIdentity? {
            var info = stat()
            guard path.withCString({ stat($0, &info) }) == 0, info.st_mode & S_IFMT == S_IFREG else { return nil }
            return FileIdentity(info)
        }

        /// The whole path of the file open as `descriptor`, as the kernel names it.
        public static func path(ofOpen descriptor: Int32) -> PathBytes? {
            var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
            let count = buffer.withUnsafeMutableBufferPointer { pointer in
                pointer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: pointer.count) { readlink("/proc/self/fd/\(descriptor)", $0, pointer.count) }
            }
            guard count > 0, count < buffer.count, buffer[0] == UInt8(ascii: "/") else { return nil }
            return PathBytes(Array(buffer[..<count]))
        }
    }

    /// The file met is the one to skip.
    struct SkippedFile: Error {}

    /// Run after every piece a digest reads, inside `notingProgress(of:_:)`.
    nonisolated(unsafe) private static var afterEachPiece: (() -> Void)?

    /// Runs `body`, in which every piece a digest reads (every file, every megabyte) is a sign
    /// of life of this rank for the stall timeout (`Communicator.noteProgress()`), however
    /// large the file: the ranks waiting for this one wait on.
    public static func notingProgress<R>(of communicator: Communicator, _ body: () throws -> R) rethrows -> R {
        let outer = afterEachPiece
        afterEachPiece = { communicator.noteProgress() }
        defer { afterEachPiece = outer }
        return try body()
    }

    /// The path that stands for standard input among `hash`'s operands, as for `sha256sum`.
    public static let standardInputPath = PathBytes(Array("-".utf8))

    /// The SHA-256 of everything left on standard input, as lowercase hex (`sha256sum -`).
    ///
    /// - Parameter buffer: where each piece is read to; its size is the size of the reads.
    /// - Throws: `Problem` for the path `-` when standard input cannot be read (closed, or a
    ///   read error), with the system's words.
    public static func digestOfStandardInput(buffer: UnsafeMutableRawBufferPointer) throws -> String {
        let digest = try digest(reading: STDIN_FILENO, path: standardInputPath, buffer: buffer, size: nil)
        // Under mpirun the input is a copy that ends alike however mpirun's own ended.
        if let reason = StandardStreams.launcherInputCutShort() { throw Problem(path: standardInputPath, reason: reason) }
        return digest
    }

    /// Whether `path`, named as an operand, is a stream to read whole on one rank, as
    /// `sha256sum` reads it, rather than a file or tree to cut into units: a named pipe
    /// (`hash <(command)`), a character device (`hash /dev/null`) or a block device, through
    /// symbolic links. The same files met inside a directory are reported and never opened:
    /// nobody named them, and a pipe there could wait for a writer for good.
    public static func isStream(_ path: PathBytes) -> Bool {
        var info = stat()
        guard path.withCString({ stat($0, &info) }) == 0 else { return false }
        let type = info.st_mode & S_IFMT
        return type == S_IFIFO || type == S_IFCHR || type == S_IFBLK
    }

    /// The SHA-256 of everything the stream at `path` gives (see `isStream(_:)`), read to its
    /// end in pieces of `buffer`'s size. Opening a named pipe waits for its writer, as
    /// `sha256sum` does; waiting for its data is a sign of life for the stall timeout, as for
    /// standard input.
    ///
    /// - Throws: `Problem` for `path` when it cannot be opened or read, with the system's words.
    public static func digestOfStream(at path: PathBytes, buffer: UnsafeMutableRawBufferPointer) throws -> String {
        var info = stat()
        let isPipe = path.withCString { stat($0, &info) } == 0 && info.st_mode & S_IFMT == S_IFIFO
        let (descriptor, error) = isPipe && afterEachPiece != nil ? openWaitingForWriter(path) : openForReading(path)
        guard descriptor >= 0 else { throw Problem(path: path, reason: systemMessage(error)) }
        defer { close(descriptor) }
        return try digest(reading: descriptor, path: path, buffer: buffer, size: nil)
    }

    /// `open(path, O_RDONLY)`, again after a signal: the descriptor, or -1 and the error.
    fileprivate static func openForReading(_ path: PathBytes) -> (Int32, Int32) {
        while true {
            let descriptor = path.withCString { open($0, O_RDONLY | O_CLOEXEC | O_NOCTTY) }
            if descriptor >= 0 { return (descriptor, 0) }
            if errno != EINTR { return (-1, errno) }
        }
    }

    /// `openForReading` of a named pipe, which waits for its writer, on a thread of its own:
    /// meanwhile this one gives a sign of life every quarter of a second (`afterEachPiece`),
    /// as while waiting for the writer's data. Only the end of the process ends a wait for a
    /// writer that never comes, as for `sha256sum`.
    private static func openWaitingForWriter(_ path: PathBytes) -> (Int32, Int32) {
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else { return openForReading(path) }
        _ = fcntl(ends[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(ends[1], F_SETFD, FD_CLOEXEC)
        defer { close(ends[0]) }
        let opening = PipeOpening(path: path, doneDescriptor: ends[1])
        var thread = pthread_t()
        let context = Unmanaged.passRetained(opening).toOpaque()
        guard pthread_create(&thread, nil, runPipeOpening, context) == 0 else {
            Unmanaged<PipeOpening>.fromOpaque(context).release()
            close(ends[1])
            return openForReading(path)
        }
        pthread_detach(thread)
        var ready = pollfd(fd: ends[0], events: Int16(POLLIN), revents: 0)
        while true {
            let polled = poll(&ready, 1, 250)
            if polled > 0 { break }
            if polled < 0 && errno != EINTR {
                // Cannot wait alongside: wait for the open itself.
                while poll(&ready, 1, -1) < 0 && errno == EINTR {}
                break
            }
            afterEachPiece?()
        }
        return opening.result
    }

    /// The SHA-256 of what is left to read from `descriptor`, read in pieces of `buffer`'s size;
    /// `size`, when known (a regular file), lets a short read that reaches it end without a
    /// second read.
    static func digest(reading descriptor: Int32, path: PathBytes, buffer: UnsafeMutableRawBufferPointer,
                       size: Int?) throws -> String {
        var hasher = SHA256()
        var total = 0
        while true {
            if size == nil, let afterEachPiece {
                // A pipe or terminal: waiting for its writer is waiting on the user's own
                // producer, not a stall (as `run` waits for its inputs), so it is a sign of life
                // every quarter of a second it lasts.
                var ready = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
                let polled = poll(&ready, 1, 250)
                if polled == 0 || (polled < 0 && errno == EINTR) {
                    afterEachPiece()
                    continue
                }
            }
            let count = read(descriptor, buffer.baseAddress, buffer.count)
            if count < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN && size == nil {
                    // A pipe or terminal left non-blocking by whoever passed it: wait until it is
                    // readable. (A regular file is always "readable" to poll, so one whose file
                    // system answers EAGAIN is reported, as sha256sum does, not read in a spin.)
                    var ready = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
                    _ = poll(&ready, 1, -1)
                    continue
                }
                throw Problem(path: path, reason: systemMessage(errno))
            }
            if count == 0 { break }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[..<count]))
            afterEachPiece?()
            total += count
            if count < buffer.count && total == size { break }
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
        try notingProgress(of: pool.communicator) { try pool.forEachResult(order.lazy.map { files[$0].path }, ordered: false, options: MapOptions(progress: progress), { path -> Outcome in
            do {
                return .digest(try digest(of: path, buffer: buffer))
            } catch let problem as Problem {
                return .failed(problem.reason)
            }
        }) { index, outcome in
            outcomes[order[index]] = outcome
        } }
        guard pool.communicator.rank == 0 else { return nil }
        return outcomes.map { $0! }
    }

    /// A piece of the work of hashing trees, in the order of the output.
    public enum Unit: Codable, Sendable {
        /// Files met by rank 0's walk of the top levels (a few, or one large one).
        case files([File])
        /// A directory walked by the rank that hashes it; `ancestors` are the directories
        /// above it (device and inode), for finding link loops.
        case tree(PathBytes, ancestors: [[UInt64]])
        /// A path the top-level walk could not use.
        case problem(Problem)
        /// A symbolic link met inside a directory and not followed.
        case skippedLink(PathBytes)

        /// The first path the unit covers; a tree covers every path under "path/".
        var key: [UInt8] {
            switch self {
            case .files(let files): files[0].path.bytes
            case .tree(let path, _): path.bytes + [UInt8(ascii: "/")]
            case .problem(let problem): problem.path.bytes
            case .skippedLink(let path): path.bytes
            }
        }

        /// A guess at the work, to start the largest first.
        var weight: Int64 {
            switch self {
            // Saturating: sizes near 2^63 (sparse files) must not overflow the sum.
            case .files(let files): files.reduce(Int64(0)) { total, file in
                let (sum, overflow) = total.addingReportingOverflow(min(file.size, Int64.max - 4096) + 4096)
                return overflow ? .max : sum
            }
            case .tree: Int64.max
            case .problem, .skippedLink: 0
            }
        }
    }

    /// What became of one unit, ready to print.
    public struct HashedUnit: Codable, Sendable {
        /// `sha256sum` lines of the files hashed, in path order.
        public var lines: [UInt8] = []
        /// Every path and its digest or problem, in path order (kept only when asked for).
        public var entries: [Entry] = []
        /// Paths that could not be hashed, in path order.
        public var problems: [Problem] = []
        /// Symbolic links skipped inside directories, in path order.
        public var skippedLinks: [PathBytes] = []
        /// Where the file given as `skipping` was met, not hashed, in path order.
        public var skippedOutput: [PathBytes] = []
        /// How many files were hashed.
        public var hashed = 0
    }

    /// One path of the output and what became of it.
    public struct Entry: Codable, Sendable, Equatable {
        public var path: PathBytes
        public var digest: String?
        public var problem: String?

        /// The digest of `path`, or the problem that kept it from being hashed.
        public init(path: PathBytes, digest: String?, problem: String?) {
            self.path = path
            self.digest = digest
            self.problem = problem
        }
    }

    /// Files, problems and skipped links of a walk, and the directories left for later.
    struct Walker {
        let followSymlinks: Bool
        /// Directories at this depth below an operand are left as `.tree` units.
        let deferDepth: Int
        /// Whether files need their sizes (to group and order them).
        var needSizes: Bool
        /// When set, files met inside directories are hashed at once, opened relative to their
        /// directory (no path lookup from the root for each), into `hashed`.
        let buffer: UnsafeMutableRawBufferPointer?
        var units: [Unit] = []
        var files: [File] = []
        var hashed: [(path: PathBytes, digest: String?, reason: String)] = []
        var active: [[UInt64]]
        /// The file not to hash (where the output goes), and the paths it was met at.
        let skipping: FileIdentity?
        var skipped: [PathBytes] = []

        init(followSymlinks: Bool, deferDepth: Int, ancestors: [[UInt64]] = [], buffer: UnsafeMutableRawBufferPointer? = nil,
             skipping: FileIdentity? = nil) {
            self.followSymlinks = followSymlinks
            self.deferDepth = deferDepth
            self.buffer = buffer
            self.skipping = skipping
            needSizes = deferDepth != .max
            active = ancestors
        }

        /// Visits `path`; inside a directory, `parent` is that directory's descriptor and `name`
        /// the entry's name (a NUL-terminated copy), otherwise `AT_FDCWD` and the whole path.
        mutating func visit(_ path: PathBytes, operand: Bool, depth: Int, type: UInt8 = UInt8(DT_UNKNOWN),
                            parent: Int32 = AT_FDCWD, name: [UInt8]? = nil) {
            let name = name ?? (path.bytes + [0])
            func withName<R>(_ body: (UnsafePointer<CChar>) throws -> R) rethrows -> R {
                try name.withUnsafeBufferPointer { try body(UnsafeRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self)) }
            }
            func file(size: Int64) {
                guard let buffer, !needSizes else {
                    files.append(File(path: path, size: size))
                    return
                }
                do {
                    hashed.append((path, try withName { try digest(in: parent, name: $0, path: path, buffer: buffer, skipping: skipping) }, ""))
                } catch is SkippedFile {
                    skipped.append(path)
                } catch {
                    hashed.append((path, nil, (error as? Problem)?.reason ?? "\(error)"))
                }
            }
            // A regular file named by its directory needs no stat when its size is not needed.
            if type == UInt8(DT_REG) && !needSizes {
                file(size: 0)
                return
            }
            var info = stat()
            guard withName({ fstatat(parent, $0, &info, AT_SYMLINK_NOFOLLOW) }) == 0 else {
                units.append(.problem(Problem(path: path, reason: systemMessage(errno))))
                return
            }
            if info.st_mode & S_IFMT == S_IFLNK {
                guard operand || followSymlinks else {
                    units.append(.skippedLink(path))
                    return
                }
                guard withName({ fstatat(parent, $0, &info, 0) }) == 0 else {
                    let reason = errno == ELOOP ? "symbolic link loop" : systemMessage(errno)
                    units.append(.problem(Problem(path: path, reason: reason)))
                    return
                }
            }
            switch info.st_mode & S_IFMT {
            case S_IFREG:
                file(size: Int64(info.st_size))
            case S_IFDIR:
                let identity = [UInt64(info.st_dev), UInt64(info.st_ino)]
                if active.contains(identity) {
                    units.append(.problem(Problem(path: path, reason: "symbolic link loop: leads back to a directory above it")))
                    return
                }
                if depth >= deferDepth {
                    units.append(.tree(path, ancestors: active))
                    return
                }
                let descriptor = withName { openat(parent, $0, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOCTTY) }
                guard descriptor >= 0, let directory = fdopendir(descriptor) else {
                    let reason = systemMessage(errno)
                    if descriptor >= 0 { close(descriptor) }
                    units.append(.problem(Problem(path: path, reason: reason)))
                    return
                }
                var names: [(name: [UInt8], type: UInt8)] = []
                while true {
                    // readdir ends the listing and fails alike, with NULL: only errno tells them
                    // apart. A listing cut short is reported, so no file goes missing unsaid;
                    // the entries read before it are hashed, as find lists them.
                    errno = 0
                    guard let entry = readdir(directory) else {
                        if errno != 0 { units.append(.problem(Problem(path: path, reason: systemMessage(errno)))) }
                        break
                    }
                    let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in Array(raw.prefix { $0 != 0 }) }
                    if name != [0x2E] && name != [0x2E, 0x2E] { names.append((name, entry.pointee.d_type)) }
                }
                // Entries are opened relative to this directory, which stays open meanwhile,
                // except below 64 levels: there it is closed first, so a very deep tree cannot
                // run out of descriptors, and entries are named by their whole paths.
                let relative = depth < 64
                if !relative { closedir(directory) }
                active.append(identity)
                for (name, type) in names.sorted(by: { $0.name.lexicographicallyPrecedes($1.name) }) {
                    let child = path.appending(name)
                    visit(child, operand: false, depth: depth + 1, type: type,
                          parent: relative ? dirfd(directory) : AT_FDCWD, name: relative ? name + [0] : nil)
                }
                active.removeLast()
                if relative { closedir(directory) }
            default:
                units.append(.problem(Problem(path: path, reason: "not a regular file (\(kind(of: info.st_mode)))")))
            }
        }
    }

    /// A file this large is a unit of its own, which small files beside it may join.
    static let largeFileSize: Int64 = 64 << 20

    /// Splits the work of hashing `paths` into units: rank 0 walks the operands' top levels
    /// and leaves deeper directories to the ranks. Files are grouped a few hundred at a time
    /// (a file of 64 MiB or more alone); units come back sorted by the paths they cover.
    public static func units(of paths: [PathBytes], followSymlinks: Bool, ranks: Int) -> [Unit] {
        var depth = 1
        var units: [Unit] = []
        // Deeper until there are enough pieces to keep every rank busy, or nothing deeper.
        while true {
            var walker = Walker(followSymlinks: followSymlinks, deferDepth: depth)
            for path in paths { walker.visit(path, operand: true, depth: 0) }
            // In path order first, then neighbouring files grouped: a group never spans a tree.
            var pieces = (walker.units + walker.files.map { Unit.files([$0]) })
                .sorted { $0.key.lexicographicallyPrecedes($1.key) }
            // Operands that repeat or lie inside one another would make trees overlap other
            // units; then rank 0 walks everything, and every file is its own piece in order.
            let overlap = pieces.indices.dropLast().contains { i in
                if case .tree = pieces[i] { return pieces[i + 1].key.starts(with: pieces[i].key) }
                return false
            }
            if overlap && depth < .max {
                var whole = Walker(followSymlinks: followSymlinks, deferDepth: .max)
                whole.needSizes = true
                for path in paths { whole.visit(path, operand: true, depth: 0) }
                pieces = (whole.units + whole.files.map { Unit.files([$0]) }).sorted { $0.key.lexicographicallyPrecedes($1.key) }
                depth = .max
            }
            var grouped: [Unit] = []
            var group: [File] = []
            var groupBytes: Int64 = 0
            func close() {
                if !group.isEmpty { grouped.append(.files(group)) }
                group = []
                groupBytes = 0
            }
            for piece in pieces {
                guard case .files(let one) = piece, let file = one.first else {
                    close()
                    grouped.append(piece)
                    continue
                }
                if file.size >= largeFileSize {
                    close()
                    grouped.append(piece)
                    continue
                }
                group.append(file)
                groupBytes += file.size
                if group.count == 256 || groupBytes >= 64 << 20 { close() }
            }
            close()
            units = absorbingSmallGroups(grouped)
            let trees = units.filter { if case .tree = $0 { true } else { false } }.count
            if trees == 0 || units.count >= 16 * ranks || depth >= 4 { break }
            depth += 1
        }
        return units
    }

    /// `units` (in path order) with the small files that lie next to a large file (64 MiB or
    /// more, with no directory or other unit between them) put into the large file's unit, as
    /// long as together they weigh (size + 4 KiB each) no more than 1/64 of it and number no
    /// more than 1,024.
    ///
    /// The pool hands out pieces by count: with a tiny piece left over besides the large files
    /// (a checksum list next to disk images, a marker file), it counts two pieces left where
    /// there is one piece of work, and may queue the last large file behind another one on a
    /// busy rank while rank 0 takes the tiny piece: 4 files of 512 MiB and a small one went
    /// 3 to 1 across 2 ranks when rank 0 fell behind.
    static func absorbingSmallGroups(_ units: [Unit]) -> [Unit] {
        struct Tally {
            var largeFiles = 0
            var largeSize: Int64 = 0
            var smallFiles = 0
            var smallWeight: Int64 = 0

            init(_ files: [File]) {
                for file in files {
                    if file.size >= FileHashing.largeFileSize {
                        largeFiles += 1
                        largeSize = file.size
                    } else {
                        smallFiles += 1
                        smallWeight += file.size + 4096
                    }
                }
            }

            /// The tally of two units together, when they hold exactly one large file and
            /// small files that fit beside it.
            func joined(with other: Tally) -> Tally? {
                var both = self
                both.largeFiles += other.largeFiles
                both.largeSize = max(largeSize, other.largeSize)
                both.smallFiles += other.smallFiles
                both.smallWeight += other.smallWeight
                guard both.largeFiles == 1, both.smallFiles <= 1024, both.smallWeight <= both.largeSize / 64 else { return nil }
                return both
            }
        }
        var result: [Unit] = []
        // The tally of each unit of files in `result`; nil for other units.
        var tallies: [Tally?] = []
        for unit in units {
            guard case .files(var files) = unit else {
                result.append(unit)
                tallies.append(nil)
                continue
            }
            var tally = Tally(files)
            // Each group joins the one before it while together they hold one large file and
            // small ones that fit: a large file takes in the small groups before it (nearest
            // first) when it comes, and those after it as they come.
            while case .files(let before)? = result.last, let both = tallies.last??.joined(with: tally) {
                result.removeLast()
                tallies.removeLast()
                files = before + files
                tally = both
            }
            result.append(.files(files))
            tallies.append(tally)
        }
        return result
    }

    /// Hashes one unit: walks it if it is a tree, then hashes its files in path order.
    public static func hash(_ unit: Unit, followSymlinks: Bool, keepEntries: Bool,
                            buffer: UnsafeMutableRawBufferPointer, skipping: FileIdentity? = nil) -> HashedUnit {
        var result = HashedUnit()
        // Every path of the unit with its digest or the reason it has none.
        var items: [(path: PathBytes, digest: String?, reason: String)] = []
        func hashFiles(_ files: [File]) {
            for file in files {
                do {
                    items.append((file.path, try digest(of: file.path, buffer: buffer, skipping: skipping), ""))
                } catch is SkippedFile {
                    result.skippedOutput.append(file.path)
                } catch {
                    items.append((file.path, nil, (error as? Problem)?.reason ?? "\(error)"))
                }
            }
        }
        switch unit {
        case .files(let list):
            hashFiles(list)
        case .tree(let path, let ancestors):
            var walker = Walker(followSymlinks: followSymlinks, deferDepth: .max, ancestors: ancestors, buffer: buffer, skipping: skipping)
            walker.visit(path, operand: false, depth: 0)
            items = walker.hashed
            result.skippedOutput = walker.skipped
            hashFiles(walker.files)
            for piece in walker.units {
                switch piece {
                case .problem(let problem): items.append((problem.path, nil, problem.reason))
                case .skippedLink(let link): result.skippedLinks.append(link)
                default: break
                }
            }
        case .problem(let problem):
            items.append((problem.path, nil, problem.reason))
        case .skippedLink(let link):
            result.skippedLinks.append(link)
        }
        items.sort { $0.path < $1.path }
        result.skippedLinks.sort()
        result.skippedOutput.sort()
        for item in items {
            if let digest = item.digest {
                result.lines += checksumLine(digest: digest, path: item.path)
                result.hashed += 1
            } else {
                result.problems.append(Problem(path: item.path, reason: item.reason))
            }
            if keepEntries { result.entries.append(Entry(path: item.path, digest: item.digest, problem: item.digest == nil ? item.reason : nil)) }
        }
        return result
    }

    /// Hashes everything under `paths` on every rank of `pool`: rank 0 splits the work
    /// (``units(of:followSymlinks:ranks:)``), the ranks walk and hash the units, largest first,
    /// and `deliver` gets each unit's result on rank 0, in path order, as soon as every unit
    /// before it is done. Only formatted lines travel; a worker holds no more than its unit,
    /// rank 0 the units that wait for an earlier one. The file `skipping` names (the one the
    /// output is written to, on this host) is not hashed wherever it is met: its paths are in
    /// `HashedUnit.skippedOutput`, as tar leaves out its own archive.
    public static func hashTrees(_ paths: [PathBytes], followSymlinks: Bool, keepEntries: Bool, pool: Pool,
                                 skipping: FileIdentity? = nil,
                                 progress: (@Sendable (Int, Int?) -> Void)? = nil,
                                 deliver: (HashedUnit) throws -> Void) throws {
        let units = pool.communicator.rank == 0 ? units(of: paths, followSymlinks: followSymlinks, ranks: pool.communicator.size) : []
        // Largest first, so one big piece does not end up last on one rank.
        let order = units.indices.sorted { units[$0].weight > units[$1].weight }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)
        defer { buffer.deallocate() }
        var done = [HashedUnit?](repeating: nil, count: units.count)
        var next = 0
        try notingProgress(of: pool.communicator) { try pool.forEachResult(order.lazy.map { units[$0] }, ordered: false, options: MapOptions(chunkSize: .fixed(1), progress: progress), { unit in
            hash(unit, followSymlinks: followSymlinks, keepEntries: keepEntries, buffer: buffer, skipping: skipping)
        }) { index, result in
            done[order[index]] = result
            while next < done.count, let ready = done[next] {
                done[next] = nil
                next += 1
                try deliver(ready)
            }
        } }
    }

    /// A line in `sha256sum`'s format: "digest  path" and a newline, the path's bytes as they
    /// are, except that a path holding a backslash, newline or carriage return is escaped as
    /// GNU does (`\\`, `\n`, `\r`) and the line then starts with a backslash.
    public static func checksumLine(digest: String, path: PathBytes) -> [UInt8] {
        var line: [UInt8] = []
        line.reserveCapacity(digest.utf8.count + path.bytes.count + 4)
        let escape = path.bytes.contains { $0 == UInt8(ascii: "\\") || $0 == 10 || $0 == 13 }
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

/// A blocking open of a named pipe, run on a thread of its own (`openWaitingForWriter`).
private final class PipeOpening: @unchecked Sendable {
    let path: PathBytes
    /// Closed once `result` is set: the waiting thread's poll then returns.
    let doneDescriptor: Int32
    var result: (Int32, Int32) = (-1, 0)

    init(path: PathBytes, doneDescriptor: Int32) {
        self.path = path
        self.doneDescriptor = doneDescriptor
    }
}

private func runPipeOpening(_ context: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    let opening = Unmanaged<PipeOpening>.fromOpaque(context!).takeRetainedValue()
    opening.result = FileHashing.openForReading(opening.path)
    close(opening.doneDescriptor)
    return nil
}

/// The system's words for an error number: "No such file or directory".
func systemMessage(_ code: Int32) -> String { String(cString: strerror(code)) }
