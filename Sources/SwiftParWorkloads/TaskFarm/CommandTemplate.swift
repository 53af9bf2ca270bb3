/// A command line with replacement strings, turned into one shell command per task the way GNU
/// parallel does it: the template's words are joined with single spaces and stay shell code;
/// only the values put in their place are quoted.
package struct CommandTemplate: Sendable {
    /// Which part of an input a replacement string stands for.
    package enum Transform: Sendable, Equatable {
        /// `{}`: the input as it is.
        case whole
        /// `{.}`: without its last extension.
        case noExtension
        /// `{/}`: the last path component.
        case basename
        /// `{//}`: the directory, as `dirname` gives it.
        case dirname
        /// `{/.}`: the last path component without its extension.
        case basenameNoExtension
    }

    /// One piece of a template word.
    package enum Piece: Sendable, Equatable {
        case literal([UInt8])
        /// An input: `source` counts from 1 (`{2}`), from the end when negative (`{-1}`), or
        /// nil for every input of the task (`{}`).
        case input(source: Int?, Transform)
        /// `{#}`: the task's number, from 1.
        case sequence
        /// `{%}`: the slot's number, from 1.
        case slot
    }

    /// The template's words, each cut into pieces.
    package let words: [[Piece]]
    /// `-q`: quote each whole word after replacement, so the template holds no shell code.
    package let quotesWords: Bool

    /// Whether any word holds a replacement string; with none, the inputs are appended.
    package var hasReplacement: Bool {
        words.contains { $0.contains { if case .literal = $0 { false } else { true } } }
    }

    /// A template of `words` (a command and its arguments, as given on the command line).
    package init(_ words: [[UInt8]], quotesWords: Bool = false) {
        self.words = words.map(Self.pieces)
        self.quotesWords = quotesWords
    }

    /// Whether there is a command at all (with none, each input is itself the command).
    package var isEmpty: Bool { words.isEmpty }

    /// The shell command for a task with `inputs` (one per source), number `sequence`, on `slot`.
    package func command(inputs: [[UInt8]], sequence: Int, slot: Int) -> [UInt8] {
        if words.isEmpty {
            // No command: the inputs are the command; with -q each is one word, as in GNU
            // parallel (`-q ::: 'echo 1'` runs a program named "echo 1").
            return Self.joined(quotesWords ? inputs.map(Self.shellQuoted) : inputs)
        }
        var line: [UInt8] = []
        for (index, word) in words.enumerated() {
            if index > 0 { line.append(0x20) }
            if quotesWords {
                var expanded: [UInt8] = []
                for piece in word { append(piece, inputs: inputs, sequence: sequence, slot: slot, quoted: false, to: &expanded) }
                line += Self.shellQuoted(expanded)
            } else {
                for piece in word { append(piece, inputs: inputs, sequence: sequence, slot: slot, quoted: true, to: &line) }
            }
        }
        if !hasReplacement {
            for input in inputs {
                line.append(0x20)
                line += Self.shellQuoted(input)
            }
        }
        return line
    }

    /// The tag `--tag` puts before each line of a task's output: its inputs, unquoted.
    package static func tag(inputs: [[UInt8]]) -> [UInt8] { joined(inputs) + [0x09] }

    /// `parts` joined with single spaces.
    private static func joined(_ parts: [[UInt8]]) -> [UInt8] {
        var line: [UInt8] = []
        for (index, part) in parts.enumerated() {
            if index > 0 { line.append(0x20) }
            line += part
        }
        return line
    }

    private func append(_ piece: Piece, inputs: [[UInt8]], sequence: Int, slot: Int, quoted: Bool, to line: inout [UInt8]) {
        switch piece {
        case .literal(let bytes):
            line += bytes
        case .sequence:
            line += Array(String(sequence).utf8)
        case .slot:
            line += Array(String(slot).utf8)
        case .input(let source, let transform):
            let chosen: [[UInt8]]
            if let source {
                let index = source > 0 ? source - 1 : inputs.count + source
                guard index >= 0, index < inputs.count else { return }
                chosen = [inputs[index]]
            } else {
                chosen = inputs
            }
            for (index, input) in chosen.enumerated() {
                if index > 0 { line.append(0x20) }
                let value = Self.apply(transform, to: input)
                line += quoted ? Self.shellQuoted(value) : value
            }
        }
    }

    /// The first Perl expression GNU parallel would replace in a command of `words` (`{=…=}`
    /// or `{3=…=}`, possibly spread over several words, as parallel joins them with spaces
    /// first), or nil when there is none. swiftpar runs no Perl: such a command would run with
    /// the expression as literal text, so the caller refuses it.
    package static func perlExpression(in words: [[UInt8]]) -> String? {
        let text = joined(words)
        let open = UInt8(ascii: "{"), equals = UInt8(ascii: "="), close = UInt8(ascii: "}")
        var index = 0
        while index < text.count {
            defer { index += 1 }
            guard text[index] == open else { continue }
            // An optional input number (`{2=`, `{-1=`), then `=`.
            var next = index + 1
            if next < text.count, text[next] == UInt8(ascii: "-") { next += 1 }
            while next < text.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(text[next]) { next += 1 }
            guard next < text.count, text[next] == equals else { continue }
            var end = next + 1
            while end + 1 < text.count, !(text[end] == equals && text[end + 1] == close) { end += 1 }
            guard end + 1 < text.count else { return nil }
            return String(decoding: text[index...(end + 1)], as: UTF8.self)
        }
        return nil
    }

    /// Cuts a word into literal text and the replacement strings GNU parallel knows; anything
    /// else between braces (`{x}`, `{ }`) stays literal.
    static func pieces(_ word: [UInt8]) -> [Piece] {
        var pieces: [Piece] = []
        var literal: [UInt8] = []
        var index = 0
        while index < word.count {
            if word[index] == UInt8(ascii: "{"), let close = word[index...].firstIndex(of: UInt8(ascii: "}")),
               let piece = replacement(Array(word[(index + 1)..<close])) {
                if !literal.isEmpty { pieces.append(.literal(literal)); literal = [] }
                pieces.append(piece)
                index = close + 1
            } else {
                literal.append(word[index])
                index += 1
            }
        }
        if !literal.isEmpty { pieces.append(.literal(literal)) }
        return pieces
    }

    /// The replacement string between a pair of braces, or nil when it is not one.
    private static func replacement(_ inside: [UInt8]) -> Piece? {
        let text = String(decoding: inside, as: UTF8.self)
        switch text {
        case "#": return .sequence
        case "%": return .slot
        default: break
        }
        var rest = Substring(text)
        var number: Int?
        let digits = rest.prefix { $0 == "-" || $0.isASCII && $0.isNumber }
        if !digits.isEmpty {
            guard let value = Int(digits), value != 0 else { return nil }
            number = value
            rest = rest.dropFirst(digits.count)
        }
        let transform: Transform
        switch rest {
        case "": transform = .whole
        case ".": transform = .noExtension
        case "/": transform = .basename
        case "//": transform = .dirname
        case "/.": transform = .basenameNoExtension
        default: return nil
        }
        return .input(source: number, transform)
    }

    /// `transform` applied to the bytes of an input.
    package static func apply(_ transform: Transform, to value: [UInt8]) -> [UInt8] {
        switch transform {
        case .whole: return value
        case .noExtension: return withoutExtension(value)
        case .basename: return basename(value)
        case .dirname: return dirname(value)
        case .basenameNoExtension: return withoutExtension(basename(value))
        }
    }

    private static let slash = UInt8(ascii: "/"), dot = UInt8(ascii: ".")

    /// Everything after the last slash (nothing, when the value ends with one).
    static func basename(_ value: [UInt8]) -> [UInt8] {
        guard let last = value.lastIndex(of: slash) else { return value }
        return Array(value[(last + 1)...])
    }

    /// Without the last dot and what follows it, when that holds no slash.
    static func withoutExtension(_ value: [UInt8]) -> [UInt8] {
        guard let last = value.lastIndex(of: dot), !value[(last + 1)...].contains(slash) else { return value }
        return Array(value[..<last])
    }

    /// The directory part, as POSIX `dirname` gives it.
    static func dirname(_ value: [UInt8]) -> [UInt8] {
        var end = value.count
        while end > 1 && value[end - 1] == slash { end -= 1 }
        if end == 0 { return [dot] }
        if end == 1 && value[0] == slash { return [slash] }
        guard let lastSlash = value[..<end].lastIndex(of: slash) else { return [dot] }
        end = lastSlash
        while end > 0 && value[end - 1] == slash { end -= 1 }
        return end == 0 ? [slash] : Array(value[..<end])
    }

    /// `value` as one word for a POSIX shell, as GNU parallel quotes it: unchanged when it is
    /// made only of letters, digits and `-_.+/`; `''` when empty; otherwise inside single quotes,
    /// each `'` written as `'"'"'`. Byte by byte: bytes that are not UTF-8 pass unchanged.
    package static func shellQuoted(_ value: [UInt8]) -> [UInt8] {
        if value.isEmpty { return Array("''".utf8) }
        if value.allSatisfy(isSafe) { return value }
        var quoted: [UInt8] = [UInt8(ascii: "'")]
        for byte in value {
            if byte == UInt8(ascii: "'") {
                quoted += Array("'\"'\"'".utf8)
            } else {
                quoted.append(byte)
            }
        }
        quoted.append(UInt8(ascii: "'"))
        // A value that starts or ends with a quote leaves an empty '' there: drop it.
        if quoted.count >= 2 && quoted[0] == UInt8(ascii: "'") && quoted[1] == UInt8(ascii: "'") { quoted.removeFirst(2) }
        if quoted.count >= 2 && quoted[quoted.count - 1] == UInt8(ascii: "'") && quoted[quoted.count - 2] == UInt8(ascii: "'") {
            quoted.removeLast(2)
        }
        return quoted
    }

    private static func isSafe(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "+"), UInt8(ascii: "/"):
            return true
        default:
            return false
        }
    }
}
