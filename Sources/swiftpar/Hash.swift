import ArgumentParser
import Foundation
import SwiftPar
import SwiftParWorkloads

struct Hash: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "SHA-256 of files and directory trees, in sha256sum's format.",
        discussion: """
            Directories are walked recursively. Output lines are sorted by path (byte order) and exactly sha256sum's, so `sha256sum -c` verifies them; file names are bytes, printed as they are. A missing or unreadable path, a special file inside a directory or a symbolic link loop gets an error line on standard error; every other file is still hashed and the exit status is 1. Symbolic links given as operands are followed; links met inside directories are skipped (with a note) unless --follow-symlinks is given. The operand - is standard input, as for sha256sum, and a named pipe or device given as an operand (<(command), /dev/null) is read as sha256sum reads it: rank 0 reads them first, in the order given, and their lines come before the others. Under mpirun or srun, pipe a command into swiftpar and give - instead of <(command): the ranks do not have the shell's descriptors. The file the output is written to (--output SUMS, or > SUMS where rank 0 writes standard output itself) is skipped with a note.

            Examples:
              swiftpar hash ~/data > SHA256SUMS && sha256sum -c SHA256SUMS
              swiftpar -n 8 hash /scratch/run42 --json
              mpirun -n 16 swiftpar hash /shared/dataset
            """
    )

    @OptionGroup var options: GlobalOptions

    @Argument(help: "Files and directories to hash (- for standard input).")
    var paths: [String] = []

    @Flag(help: "Hash the targets of symbolic links inside directories instead of skipping them.")
    var followSymlinks = false

    /// Operands of a long command line, kept from the argument parser by `main` (see
    /// `SwiftParCommand.holdingBulk`); they follow `paths`.
    nonisolated(unsafe) static var heldOperands: [String] = []

    mutating func validate() throws {
        if paths.isEmpty && Self.heldOperands.isEmpty {
            // As sha256sum: standard input, unless it is a terminal (nobody is about to type it).
            // Under a launcher, rank 0's standard input is a pipe from it even at a terminal:
            // there `-` must be given.
            guard isatty(0) == 0, LaunchEnvironment.detect() == nil else {
                throw ValidationError("give at least one file or directory to hash (with none, standard input is hashed when it is not a terminal)")
            }
            paths = ["-"]
        }
        // --output naming a file that is also given to hash (or is standard input, for -) would
        // be emptied before it is read: found by a user, who got nothing hashed and status 0.
        // (Met inside a directory, it is skipped with a note, as before.)
        // Every rank of a launcher's job checks: rank 0 may already have made the output file
        // when another checks, so a name that is not there yet is compared by its folder and
        // its last part, which gives every rank the same answer.
        if let output = options.output, output != "-" {
            let target = Self.entry(PathBytes(RawArguments.bytes(of: output)))
            for operand in paths + Self.heldOperands {
                let same = operand == "-" ? FileHashing.FileIdentity.ofRegularFile(open: 0).map(NamedFile.file) == target
                    : Self.entry(PathBytes(RawArguments.bytes(of: operand))) == target
                guard !same || target == nil else {
                    let named = operand == "-" ? "standard input" : "'\(operand)'"
                    throw ValidationError("\(named) is the output file (--output \(output)): writing the output would empty it before it is hashed; write the output to another file")
                }
            }
        }
    }

    /// Whether `path` names a descriptor of the process (`/dev/fd/63`, as a shell's
    /// `<(command)` gives).
    static func namesDescriptor(_ path: PathBytes) -> Bool {
        path.bytes.starts(with: Array("/dev/fd/".utf8)) || path.bytes.starts(with: Array("/proc/self/fd/".utf8))
    }

    static let launcherDescriptorReason = "not read: a descriptor of the shell that started the launcher, "
        + "which the ranks do not have (for `<(command)` under mpirun or srun, pipe the command into swiftpar and give -)"

    /// What a path names, to tell whether two paths name the same file: the regular file there,
    /// or, when there is nothing there yet, the folder it would be in and its last part.
    enum NamedFile: Equatable {
        case file(FileHashing.FileIdentity)
        case missing(folder: FileHashing.FileIdentity, name: [UInt8])
    }

    static func entry(_ path: PathBytes) -> NamedFile? {
        if let file = FileHashing.FileIdentity.ofRegularFile(at: path) { return .file(file) }
        var bytes = path.bytes
        while bytes.count > 1 && bytes.last == UInt8(ascii: "/") { bytes.removeLast() }
        let slash = bytes.lastIndex(of: UInt8(ascii: "/"))
        let name = Array(bytes[(slash.map { $0 + 1 } ?? 0)...])
        let folder: [UInt8] = slash.map { $0 == 0 ? [UInt8(ascii: "/")] : Array(bytes[..<$0]) } ?? [UInt8(ascii: ".")]
        var info = stat()
        guard !name.isEmpty, name != Array(".".utf8), name != Array("..".utf8), path.withCString({ lstat($0, &info) }) != 0,
              PathBytes(folder).withCString({ stat($0, &info) }) == 0, info.st_mode & S_IFMT == S_IFDIR else { return nil }
        return .missing(folder: FileHashing.FileIdentity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino)), name: name)
    }

    /// `hash * > SUMS` in a folder holding a file named `-h` or `--help`: argument-parser
    /// would print the help into SUMS and exit 0. Either beside other operands is refused
    /// instead (sha256sum refuses them too); `hash -h` alone is still the help.
    static func helpAmongOperands(_ arguments: [String]) -> String? {
        guard arguments.first == "hash" else { return nil }
        let end = arguments.firstIndex(of: "--") ?? arguments.endIndex
        let words = arguments[1..<end]
        guard let asked = words.first(where: { $0 == "-h" || $0 == "--help" }) else { return nil }
        let takesValue = GlobalOptions.optionsTakingValues
        var operands = heldOperands.count + (end < arguments.endIndex ? arguments.endIndex - end - 1 : 0)
        var index = words.startIndex
        while index < words.endIndex {
            let word = words[index]
            if takesValue.contains(word) {
                index += 2
                continue
            }
            if !word.hasPrefix("-") || word == "-" { operands += 1 }
            index += 1
        }
        guard operands > 0 else { return nil }
        return "\(asked) among the files to hash: a file named \(asked) is hashed as ./\(asked) or after --; "
            + "for the help, give 'swiftpar hash --help' alone"
    }

    /// `hash *` in a folder holding a file named `-o` (or `--output`, `-oNAME`): the shell puts
    /// the name among the arguments, where it is read as the option, and the next file (or
    /// NAME) becomes the output, overwritten with the sums. Such a word before `--` that is
    /// also the name of a file here is refused (sha256sum refuses it as an option it does not
    /// know); other options named like files change what is printed, not what is kept.
    static func optionNamingFile(_ arguments: [String]) -> String? {
        guard arguments.first == "hash" else { return nil }
        let end = arguments.firstIndex(of: "--") ?? arguments.endIndex
        for word in arguments[1..<end] where word.hasPrefix("-o") || word.hasPrefix("--o") {
            var status = stat()
            guard lstat(word, &status) == 0 else { continue }
            return "\(word) gives the output file and is also a file in this folder: if a pattern such as * put it among the files, "
                + "write ./* instead (or put -- before the files) so that no file is read as an option"
        }
        return nil
    }

    /// Where rank 0's output goes: a regular file on its host (and its path, for the others),
    /// or nil.
    struct OutputFile: Codable {
        var host: String
        var file: FileHashing.FileIdentity?
        var path: PathBytes?

        static func ofStandardOutput(host: String) -> OutputFile {
            let file = FileHashing.FileIdentity.ofRegularFile(open: 1)
            return OutputFile(host: host, file: file, path: file == nil ? nil : FileHashing.FileIdentity.path(ofOpen: 1))
        }
    }

    struct Entry: Codable {
        var path: String
        /// The path's bytes in base64, when they are not UTF-8 (`path` then shows them repaired).
        var pathBase64: String?
        var sha256: String?
        var error: String?

        init(path: PathBytes, sha256: String?, error: String?) {
            self.path = path.string ?? String(decoding: path.bytes, as: UTF8.self)
            pathBase64 = path.string == nil ? Data(path.bytes).base64EncodedString() : nil
            self.sha256 = sha256
            self.error = error
        }
    }

    func run() throws {
        let operands = (self.paths + Self.heldOperands).map { PathBytes(RawArguments.bytes(of: $0)) }
        let standardInput = FileHashing.standardInputPath
        let (follow, json) = (followSymlinks, options.json)
        options.run(Self.self) { world in
            // "-" is standard input, as for sha256sum, and a named pipe or device named here
            // (`hash <(command)`, `hash /dev/null`) is read as sha256sum reads it: both whole,
            // on rank 0, first, in the order given. Files and trees go to the ranks.
            var streams: [PathBytes] = []
            var paths: [PathBytes] = []
            if world.rank == 0 {
                // Under a launcher, a shell's /dev/fd/N is never read, even if rank 0 happens to
                // have a descriptor of that number open (one of the launcher's own).
                let launched = LaunchEnvironment.detect() != nil
                for operand in operands {
                    if operand == standardInput || (!(launched && Self.namesDescriptor(operand)) && FileHashing.isStream(operand)) {
                        streams.append(operand)
                    } else {
                        paths.append(operand)
                    }
                }
            }
            let pool = Pool(world)
            // The file the output goes to (`> SUMS` or --output) is not hashed, wherever the
            // walk meets it: it is being written. Ranks on other hosts find it by its path.
            let destination = try world.broadcast(world.rank == 0 ? OutputFile.ofStandardOutput(host: world.hostName) : nil)
            let skipping = destination.host == world.hostName ? destination.file
                : destination.path.flatMap { FileHashing.FileIdentity.ofRegularFile(at: $0) }
            // Rank 0 walks the top levels; the ranks walk the directories below and hash.
            let bar = ProgressBar("hashing", enabled: world.rank == 0 && isTerminal(2))
            var failed = false
            var entries: [FileHashing.Entry] = []
            var output = CommandOutput()
            // Each - reads what is left (the second one nothing, as for sha256sum - -).
            if !streams.isEmpty {
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)
                defer { buffer.deallocate() }
                for stream in streams {
                    do {
                        let digest = try FileHashing.notingProgress(of: world) {
                            stream == standardInput ? try FileHashing.digestOfStandardInput(buffer: buffer)
                                : try FileHashing.digestOfStream(at: stream, buffer: buffer)
                        }
                        if json {
                            entries.append(FileHashing.Entry(path: stream, digest: digest, problem: nil))
                        } else {
                            output.append(bytes: FileHashing.checksumLine(digest: digest, path: stream))
                        }
                    } catch let problem as FileHashing.Problem {
                        writeStandardError("swiftpar: \(problem.path): \(problem.reason)\n")
                        failed = true
                        if json { entries.append(FileHashing.Entry(path: stream, digest: nil, problem: problem.reason)) }
                    }
                }
            }
            // Under a launcher, rank 0 is not the shell's child: a descriptor the shell opened
            // for `<(command)` is not there. Said so, rather than just "No such file".
            if LaunchEnvironment.detect() != nil {
                paths.removeAll { path in
                    guard Self.namesDescriptor(path) else { return false }
                    writeStandardError("swiftpar: \(path): \(Self.launcherDescriptorReason)\n")
                    failed = true
                    if json { entries.append(FileHashing.Entry(path: path, digest: nil, problem: Self.launcherDescriptorReason)) }
                    return true
                }
            }
            try FileHashing.hashTrees(paths, followSymlinks: follow, keepEntries: json, pool: pool, skipping: skipping, progress: bar.update) { unit in
                // A note goes on a line of its own: the bar is taken off its line first.
                func note(_ text: String) {
                    bar.clear(before: 2)
                    writeStandardError(text)
                }
                for link in unit.skippedLinks {
                    note("swiftpar: skipped symbolic link \(link) (use --follow-symlinks to hash its target)\n")
                }
                for path in unit.skippedOutput {
                    note("swiftpar: skipped \(path): it is the file the output is written to\n")
                }
                for problem in unit.problems {
                    note("swiftpar: \(problem.path): \(problem.reason)\n")
                    failed = true
                }
                if json {
                    entries += unit.entries
                } else {
                    output.append(bytes: unit.lines)
                    try output.flushIfLarge()
                }
            }
            bar.finish()
            guard world.rank == 0 else { return }
            if json {
                try printChecked(try jsonText(entries.map { Entry(path: $0.path, sha256: $0.digest, error: $0.problem) }))
            } else {
                try output.flush()
            }
            if failed { world.exitStatus = 1 }
        }
    }
}
