import ArgumentParser
import Foundation
import SwiftPar

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the backend, the ranks, their hosts and the MPI library.",
        discussion: """
            Rank 0 prints one line per rank, in rank order.

            Examples:
              swiftpar info
              mpirun -n 4 swiftpar info --json
            """
    )

    @OptionGroup var options: GlobalOptions

    struct RankInfo: Codable {
        var rank: Int
        var host: String
        var pid: Int32
    }

    struct Report: Codable {
        var version: String
        var commit: String?
        var backend: String
        var size: Int
        var mpiLibrary: String
        var ranks: [RankInfo]

        enum CodingKeys: String, CodingKey { case version, commit, backend, size, mpiLibrary, ranks }

        /// Every key is always there: an unknown commit is `null`, not a missing key.
        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(version, forKey: .version)
            try container.encode(commit, forKey: .commit)
            try container.encode(backend, forKey: .backend)
            try container.encode(size, forKey: .size)
            try container.encode(mpiLibrary, forKey: .mpiLibrary)
            try container.encode(ranks, forKey: .ranks)
        }
    }

    /// Open MPI's version line, or why there is none: a library named by the user that does
    /// not load is the user's setting to mend, not a missing Open MPI.
    static var mpiLibrary: String {
        if let version = SwiftPar.mpiLibraryVersion { return version }
        if let named = getenv("SWIFTPAR_MPI_LIBRARY") { return "SWIFTPAR_MPI_LIBRARY=\(String(cString: named)) does not load" }
        return "Open MPI not found"
    }

    func run() throws {
        let json = options.json
        options.run(Self.self) { world in
            let mine = RankInfo(rank: world.rank, host: world.hostName, pid: getpid())
            guard let all = try world.gather(mine, root: 0) else { return }
            let report = Report(version: swiftparVersion, commit: buildCommit, backend: world.backend.rawValue, size: world.size,
                                mpiLibrary: Self.mpiLibrary, ranks: all)
            if json {
                try printChecked(try jsonText(report))
            } else {
                try printChecked("backend \(report.backend), \(report.size) rank\(report.size == 1 ? "" : "s"), \(report.mpiLibrary)")
                for entry in all {
                    try printChecked("rank \(entry.rank) of \(report.size) on \(entry.host) (pid \(entry.pid))")
                }
            }
        }
    }
}

/// Pretty, key-sorted JSON for machine-readable output.
func jsonText<T: Encodable>(_ value: T) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}
