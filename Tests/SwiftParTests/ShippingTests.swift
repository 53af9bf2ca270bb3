import Foundation
import Testing

/// The way swiftpar ships: a release binary with the Swift runtime linked in, installed by
/// Launch/install.sh or packed by Launch/package.sh, that runs where there is no Swift
/// toolchain and no Open MPI. Needs root (a mount namespace hides the toolchain).
@Suite("Shipping: the static binary, install.sh and package.sh", .serialized, .enabled(if: getuid() == 0))
struct ShippingTests {
    static let root = LaunchTests.root

    static func folder(_ name: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("swiftpar-\(name)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    @Test("install.sh: a binary that runs without a Swift toolchain or Open MPI, a manual and completions for every command, --uninstall removes it all")
    func install() throws {
        let prefix = try Self.folder("prefix")
        defer { try? FileManager.default.removeItem(at: prefix) }
        // An empty folder that was there before, as Debian's /usr/local/share/man is, stays.
        try FileManager.default.createDirectory(at: prefix.appendingPathComponent("share/man"), withIntermediateDirectories: true)
        let installed = try Jobs.runCommand([LaunchTests.script("Launch/install.sh"), "--prefix", prefix.path], timeout: 1500)
        #expect(installed.status == 0, "\(installed.report)")
        guard installed.status == 0 else { return }
        let binary = prefix.appendingPathComponent("bin/swiftpar").path

        let commit = try Jobs.runCommand(["git", "-C", Self.root.path, "rev-parse", "--short=12", "HEAD"]).output.trimmingCharacters(in: .whitespacesAndNewlines)
        let version = try Jobs.runCommand([binary, "--version"])
        #expect(version.status == 0 && version.output.hasPrefix("swiftpar 0.1.0 (commit \(commit)"), "\(version.report)")
        let info = try Jobs.runCommand([binary, "-n", "2", "info", "--json"])
        #expect(info.output.contains("\"version\" : \"0.1.0\"") && info.output.contains("\"commit\" : \"\(commit)"), "\(info.report)")
        let libraries = try Jobs.runCommand(["ldd", binary]).output
        #expect(!libraries.contains("libswift") && !libraries.contains("libFoundation") && !libraries.contains("libmpi"), "ldd:\n\(libraries)")

        // A root where the toolchain's folder is empty and Open MPI's library is not a library.
        let data = try Self.folder("shipping-data")
        defer { try? FileManager.default.removeItem(at: data) }
        try Data("hello\n".utf8).write(to: data.appendingPathComponent("file"))
        let script = """
            toolchain=$(dirname "$(dirname "$(dirname "$(readlink -f "$(command -v swift)")")")")
            libmpi=$(readlink -f /usr/lib/x86_64-linux-gnu/libmpi.so.40)
            exec unshare -m sh -c '
                mount -t tmpfs none "$1" && mount --bind /dev/null "$2" || exit 99
                command -v swift > /dev/null && echo "swift still there"
                echo "== dynamic"; "$3" info 2>&1 | head -1
                echo "== static"
                "$4" info; "$4" primes 1e6; "$4" hash "$5/file"; "$4" -n 2 run -k echo ::: a b
                ' sh "$toolchain" "$libmpi" '\(Jobs.product("swiftpar"))' '\(binary)' '\(data.path)'
            """
        let bare = try Jobs.runShell(script, timeout: 60)
        let parts = bare.output.components(separatedBy: "== static\n")
        #expect(!bare.output.contains("swift still there") && parts.count == 2, "\(bare.report)")
        // The toolchain's own build cannot start there; the shipped one can.
        #expect(parts.first?.contains("libswift") == true || parts.first?.contains("error while loading shared libraries") == true, "\(bare.report)")
        let sum = try Jobs.runCommand(["sha256sum", data.appendingPathComponent("file").path]).output
        let expected = "78498\n\(sum)a\nb\n"
        #expect(parts.count == 2 && parts[1].contains("Open MPI not found") && parts[1].hasSuffix(expected), "\(bare.report)")

        // Where Open MPI is installed, the same binary runs MPI jobs.
        let mpi = try Jobs.runCommand(["mpirun", "-n", "2", binary, "info"], timeout: 60)
        #expect(mpi.status == 0 && mpi.output.hasPrefix("backend mpi, 2 ranks"), "\(mpi.report)")

        // The manual and the completions come from the command definitions: every subcommand
        // and run's options are in them.
        let manual = try String(contentsOf: prefix.appendingPathComponent("share/man/man1/swiftpar.1"), encoding: .utf8)
        let bash = try String(contentsOf: prefix.appendingPathComponent("share/bash-completion/completions/swiftpar"), encoding: .utf8)
        let zsh = try String(contentsOf: prefix.appendingPathComponent("share/zsh/site-functions/_swiftpar"), encoding: .utf8)
        let fish = try String(contentsOf: prefix.appendingPathComponent("share/fish/vendor_completions.d/swiftpar.fish"), encoding: .utf8)
        for word in ["run", "primes", "hash", "info", "bench", "joblog", "slots-per-rank", "resume-failed", "stall-timeout"] {
            #expect(manual.contains(word) && bash.contains(word) && zsh.contains(word) && fish.contains(word), "'\(word)' missing from the manual or a completion")
        }
        let page = try Jobs.runCommand(["sh", "-c", "man -l '\(prefix.path)/share/man/man1/swiftpar.1' 2>&1 | head -20 || true"])
        #expect(page.output.contains("swiftpar"), "\(page.report)")

        let removed = try Jobs.runCommand([LaunchTests.script("Launch/install.sh"), "--uninstall", "--prefix", prefix.path], timeout: 60)
        let left = try Jobs.runCommand(["find", prefix.path, "-mindepth", "1"]).output
        #expect(removed.status == 0 && left == "\(prefix.path)/share\n\(prefix.path)/share/man\n", "\(removed.report)\nleft:\n\(left)")

        // A prefix the install makes (a fresh account's ~/.local) is removed again, and can be
        // uninstalled at all (found by review: its manifest entry was refused).
        let made = prefix.appendingPathComponent("made").path
        let again = try Jobs.runShell("""
            \(shellQuoted(LaunchTests.script("Launch/install.sh"))) --prefix \(shellQuoted(made)) > /dev/null && \
            \(shellQuoted(LaunchTests.script("Launch/install.sh"))) --uninstall --prefix \(shellQuoted(made)) && test ! -e \(shellQuoted(made)) && echo gone
            """, timeout: 1500)
        #expect(again.output.hasSuffix("gone\n"), "\(again.report)")

        // A disk that fills during the install (found by a helper: a cut binary was left, which
        // --uninstall refused to remove): an error, and nothing left behind.
        let full = try Jobs.runCommand(["unshare", "-m", "sh", "-c", """
            mount -t tmpfs -o size=2m none "$1" || exit 99
            "$2" --prefix "$1/p"; echo "status $?"; find "$1" -mindepth 1
            """, "sh", prefix.path, LaunchTests.script("Launch/install.sh")], timeout: 600)
        #expect(full.output.hasSuffix("status 1\n") && full.errors.contains("No space left on device"), "\(full.report)")
    }

    @Test("package.sh: an archive with the binary, manual, completions, README, licence and changelog, and its SHA-256")
    func package() throws {
        let output = try Self.folder("package")
        defer { try? FileManager.default.removeItem(at: output) }
        let packed = try Jobs.runCommand([LaunchTests.script("Launch/package.sh"), output.path], timeout: 1500)
        #expect(packed.status == 0, "\(packed.report)")
        let archive = "swiftpar-0.1.0-linux-\(try Jobs.runCommand(["uname", "-m"]).output.trimmingCharacters(in: .whitespacesAndNewlines)).tar.gz"
        let check = try Jobs.runShell("cd '\(output.path)' && sha256sum -c '\(archive).sha256'")
        #expect(check.status == 0, "\(check.report)")
        let listing = try Jobs.runCommand(["tar", "-tzf", output.appendingPathComponent(archive).path]).output
        let name = String(archive.dropLast(".tar.gz".count))
        for file in ["bin/swiftpar", "share/man/man1/swiftpar.1", "share/bash-completion/completions/swiftpar", "share/zsh/site-functions/_swiftpar",
                     "share/fish/vendor_completions.d/swiftpar.fish", "README.md", "LICENSE", "CHANGELOG.md"] {
            #expect(listing.contains("\(name)/\(file)\n"), "\(file) missing from the archive:\n\(listing)")
        }
    }
}
