import SwiftPar

/// A command's standard output, collected and written in large pieces, every write checked: a
/// full disk or a closed standard output ends the command with an error and a non-zero status.
struct CommandOutput {
    private var bytes: [UInt8] = []

    mutating func append(_ text: String) { bytes.append(contentsOf: text.utf8) }

    mutating func append(bytes more: [UInt8]) { bytes.append(contentsOf: more) }

    mutating func appendLine(_ text: String) {
        bytes.append(contentsOf: text.utf8)
        bytes.append(10)
    }

    /// Writes what is collected once it is large.
    mutating func flushIfLarge() throws {
        if bytes.count >= 1 << 16 { try flush() }
    }

    /// Writes everything collected.
    mutating func flush() throws {
        try bytes.withUnsafeBytes { try StandardOutput.write($0) }
        bytes.removeAll(keepingCapacity: true)
    }
}

/// Writes `text` and a newline to standard output, checked.
func printChecked(_ text: String) throws {
    try StandardOutput.write(text + "\n")
}
