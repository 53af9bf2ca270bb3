#if canImport(Glibc)
import Glibc
#endif

/// The command line as the kernel passed it: bytes.
///
/// Swift's `CommandLine.arguments` repairs bytes that are not UTF-8, so two different file names
/// could become one. Here every argument that is not valid UTF-8 is handed to the argument parser
/// as a placeholder, and commands that take file names or shell commands get the bytes back.
enum RawArguments {
    /// Placeholders by their text, for arguments that are not valid UTF-8.
    nonisolated(unsafe) private static var originals: [String: [UInt8]] = [:]

    /// The arguments after the program's name, as text for the parser.
    static func forParser() -> [String] {
        let arguments: [[UInt8]] = (1..<Int(CommandLine.argc)).compactMap { index in
            CommandLine.unsafeArgv[index].map { Array(UnsafeRawBufferPointer(start: $0, count: strlen($0))) }
        }
        let texts = arguments.map { String(validating: $0, as: UTF8.self) }
        // A placeholder is spelled with U+FFFF, a noncharacter; but U+FFFF is valid UTF-8, so a
        // real argument may hold the same text (a file so named, or `--option=` and it): the
        // mark grows until no real argument holds any placeholder, or that argument (or its
        // value) would be taken for another's bytes.
        let real = texts.compactMap { $0 }
        var mark = "\u{FFFF}"
        func placeholder(_ index: Int) -> String { "\(mark)argument \(index + 1)\(mark)" }
        while texts.indices.contains(where: { index in texts[index] == nil && real.contains { $0.contains(placeholder(index)) } }) {
            mark += "\u{FFFF}"
        }
        var result: [String] = []
        for (index, text) in texts.enumerated() {
            if let text {
                result.append(text)
            } else {
                originals[placeholder(index)] = arguments[index]
                result.append(placeholder(index))
            }
        }
        return result
    }

    /// The bytes of an argument the parser returned.
    static func bytes(of argument: String) -> [UInt8] {
        originals[argument] ?? Array(argument.utf8)
    }
}
