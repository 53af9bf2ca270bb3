import ArgumentParser
import Foundation
import SwiftPar
import SwiftParWorkloads

struct Hash: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "SHA-256 of files and directory trees, in sha256sum's format.",
        discussion: """
            Directories are walked recursively. Output lines are sorted by path (byte order) and
            exactly sha256sum's, so `sha256sum -c` verifies them; file names are bytes, printed as
            they are. A missing or unreadable path, a special file or a symbolic link loop gets an
            error line on standard error; every other file is still hashed and the exit status is
            1. Symbolic links given as operands are followed; links met inside directories are
            skipped (with a note) unless --follow-symlinks is given.

            Examples:
              swiftpar hash ~/data > SHA256SUMS && sha256sum -c SHA256SUMS
              swiftpar -n 8 hash /scratch/run42 --json
              mpirun -n 16 swiftpar hash /shared/dataset
            """
    )

    @OptionGroup var options: GlobalOptions

    @Argument(help: "Files and directories to hash.")
    var paths: [String] = []

    @Flag(help: "Hash the targets of symbolic links inside directories instead of skipping them.")
    var followSymlinks = false

    func validate() throws {
        guard !paths.isEmpty else { throw ValidationError("give at least one file or directory to hash") }
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
        let (paths, follow, json) = (self.paths.map { PathBytes(RawArguments.bytes(of: $0)) }, followSymlinks, options.json)
        options.run { world in
            let pool = Pool(world)
            // Rank 0 walks; the others learn only the paths they are given.
            var walked = (files: [FileHashing.File](), problems: [FileHashing.Problem](), skippedLinks: [PathBytes]())
            if world.rank == 0 { walked = FileHashing.walk(paths, followSymlinks: follow) }
            let bar = ProgressBar("hashing \(walked.files.count) files", enabled: world.rank == 0 && isTerminal(2))
            let outcomes = try FileHashing.hash(walked.files, pool: pool, progress: bar.update)
            bar.finish()
            guard world.rank == 0, let outcomes else { return }
            for link in walked.skippedLinks {
                writeStandardError("swiftpar: skipped symbolic link \(link) (use --follow-symlinks to hash its target)\n")
            }
            var results: [(path: PathBytes, digest: String?, error: String?)] = walked.problems.map { ($0.path, nil, $0.reason) }
            for (file, outcome) in zip(walked.files, outcomes) {
                switch outcome {
                case .digest(let digest): results.append((file.path, digest, nil))
                case .failed(let reason): results.append((file.path, nil, reason))
                }
            }
            results.sort { $0.path < $1.path }
            var failed = false
            for result in results {
                if let error = result.error {
                    writeStandardError("swiftpar: \(result.path): \(error)\n")
                    failed = true
                }
            }
            if json {
                try printChecked(try jsonText(results.map { Entry(path: $0.path, sha256: $0.digest, error: $0.error) }))
            } else {
                var output = CommandOutput()
                for result in results {
                    if let digest = result.digest { output.append(bytes: FileHashing.checksumLine(digest: digest, path: result.path)) }
                    try output.flushIfLarge()
                }
                try output.flush()
            }
            if failed { world.exitStatus = 1 }
        }
    }
}
