import CSwiftParLinux

/// This release of swiftpar (CHANGELOG.md says what is in it).
let swiftparVersion = "0.1.0"

/// The git commit the binary was built from, when the build said (Launch/install.sh and
/// Launch/package.sh do).
let buildCommit: String? = {
    let commit = String(cString: swiftpar_build_commit())
    return commit.isEmpty ? nil : commit
}()

/// "0.1.0 (commit 1a2b3c4d5e6f)", or "0.1.0 (commit unknown: built without Launch/install.sh)".
let versionDescription = "\(swiftparVersion) (commit \(buildCommit ?? "unknown: built without Launch/install.sh"))"
