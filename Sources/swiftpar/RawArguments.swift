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
        var result: [String] = []
        for index in 1..<Int(CommandLine.argc) {
            guard let pointer = CommandLine.unsafeArgv[index] else { continue }
            let bytes = Array(UnsafeRawBufferPointer(start: pointer, count: strlen(pointer)))
            if let text = String(validating: bytes, as: UTF8.self) {
                result.append(text)
            } else {
                // U+FFFF is a noncharacter: no real argument is spelled like this.
                let placeholder = "\u{FFFF}argument \(index)\u{FFFF}"
                originals[placeholder] = bytes
                result.append(placeholder)
            }
        }
        return result
    }

    /// The bytes of an argument the parser returned.
    static func bytes(of argument: String) -> [UInt8] {
        originals[argument] ?? Array(argument.utf8)
    }
}
