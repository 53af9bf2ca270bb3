import SwiftPar

/// A command's standard output, collected and written in large pieces, every write checked: a
/// full disk or a closed standard output ends the command with an error and a non-zero status.
struct CommandOutput {
    private var bytes: [UInt8] = []

    mutating func append(_ text: String) { bytes.append(contentsOf: text.utf8) }

    mutating func append(bytes more: [UInt8]) { bytes.append(contentsOf: more) }

    mutating func append(byte: UInt8) { bytes.append(byte) }

    /// Appends `value` in decimal, without making a `String` (a listing of primes is mostly this).
    mutating func append(decimal value: UInt64) {
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)   // 24 bytes: room for 20 digits
        var count = 0
        withUnsafeMutableBytes(of: &digits) { room in
            var rest = value
            repeat {
                count += 1
                room[24 - count] = UInt8(truncatingIfNeeded: rest % 10) + 48
                rest /= 10
            } while rest > 0
            bytes.append(contentsOf: room[(24 - count)...])
        }
    }

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
