import ArgumentParser
import SwiftPar
import SwiftParWorkloads

struct Hash: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "SHA-256 of files and directory trees, in sha256sum's format.",
        discussion: """
            Directories are walked recursively. Output lines are sorted by path and exactly
            sha256sum's, so `sha256sum -c` verifies them. A missing or unreadable path, a
            special file or a symbolic link loop gets an error line on standard error; every
            other file is still hashed and the exit status is 1. Symbolic links are skipped
            (with a note) unless --follow-symlinks is given.

            Examples:
              swiftpar hash ~/data > SHA256SUMS && sha256sum -c SHA256SUMS
              swiftpar -n 8 hash /scratch/run42 --json
              mpirun -n 16 swiftpar hash /shared/dataset
            """
    )

    @OptionGroup var options: GlobalOptions

    @Argument(help: "Files and directories to hash.")
    var paths: [String]

    @Flag(help: "Hash the targets of symbolic links instead of skipping them.")
    var followSymlinks = false

    func validate() throws {
        guard !paths.isEmpty else { throw ValidationError("give at least one file or directory to hash") }
    }

    struct Entry: Codable {
        var path: String
        var sha256: String?
        var error: String?
    }

    func run() throws {
        let (paths, follow, json) = (self.paths, followSymlinks, options.json)
        options.run { world in
            let pool = Pool(world)
            // Rank 0 walks; the others learn only the paths they are given.
            var walked = (files: [FileHashing.File](), problems: [FileHashing.Problem](), skippedLinks: [String]())
            if world.rank == 0 { walked = FileHashing.walk(paths, followSymlinks: follow) }
            let bar = ProgressBar("hashing \(walked.files.count) files", enabled: world.rank == 0 && isTerminal(2))
            let outcomes = try FileHashing.hash(walked.files, pool: pool, progress: bar.update)
            bar.finish()
            guard world.rank == 0, let outcomes else { return }
            for link in walked.skippedLinks {
                writeStandardError("swiftpar: skipped symbolic link \(link) (use --follow-symlinks to hash its target)\n")
            }
            var entries: [Entry] = walked.problems.map { Entry(path: $0.path, sha256: nil, error: $0.reason) }
            for (file, outcome) in zip(walked.files, outcomes) {
                switch outcome {
                case .digest(let digest): entries.append(Entry(path: file.path, sha256: digest, error: nil))
                case .failed(let reason): entries.append(Entry(path: file.path, sha256: nil, error: reason))
                }
            }
            entries.sort { $0.path.utf8.lexicographicallyPrecedes($1.path.utf8) }
            let failures = entries.filter { $0.error != nil }
            for failure in failures { writeStandardError("swiftpar: \(failure.path): \(failure.error!)\n") }
            if json {
                print(try jsonText(entries))
            } else {
                var output = OutputBuffer()
                for entry in entries {
                    if let digest = entry.sha256 { output.appendLine(FileHashing.checksumLine(digest: digest, path: entry.path)) }
                    output.flushIfLarge()
                }
                output.flush()
            }
            if !failures.isEmpty { world.exitStatus = 1 }
        }
    }
}
