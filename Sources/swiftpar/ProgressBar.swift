#if canImport(Glibc)
import Glibc
#endif
import SwiftPar
import Synchronization

/// A one-line progress bar on standard error, drawn only when standard error is a terminal
/// and at most ten times a second; nothing at all when it is piped or redirected. `Sendable`:
/// a pool's progress reports may come from any thread.
final class ProgressBar: Sendable {
    let label: String
    let enabled: Bool
    /// When the bar was last drawn, whether it is on the screen, and whether the terminal's
    /// line holds the start of someone else's line (the bar would wipe it): then it waits.
    private let drawing = Mutex((last: 0.0, drawn: false, midLine: false))

    /// Whether standard output is a terminal too (the one the bar is on, as a rule).
    private let outputIsTerminal = isatty(1) != 0

    init(_ label: String, enabled: Bool = isatty(2) != 0) {
        self.label = label
        self.enabled = enabled
    }

    /// Shows `done` of `total` (total unknown: a count only).
    func update(done: Int, total: Int?) { update(done: done, total: total, detail: "") }

    /// Shows `done` of `total` (total unknown: a count only), then `detail`.
    func update(done: Int, total: Int?, detail: String) {
        guard enabled else { return }
        let now = monotonicNow()
        let due = drawing.withLock { state in
            guard !state.midLine, now - state.last >= 0.1 || done == total else { return false }
            state = (now, true, false)
            return true
        }
        guard due else { return }
        var line = "\r\(label) "
        if let total, total > 0 {
            let fraction = min(Double(done) / Double(total), 1)
            let width = 30
            let filled = Int(fraction * Double(width))
            line += "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "]"
            line += " \(done)/\(total) (\(Int(fraction * 100))%)"
        } else {
            line += "\(done) done"
        }
        writeStandardError(line + detail + "\u{1B}[K")
    }

    /// Takes the bar off its line before something else is printed on the terminal (to standard
    /// output when that is the terminal too, `stream` 1, or to standard error, 2); the next
    /// update draws it again at once, below what was printed.
    func clear(before stream: Int32) {
        guard enabled, stream != 1 || outputIsTerminal else { return }
        let drawn = drawing.withLock { state -> Bool in
            let drawn = state.drawn
            state = (0, false, state.midLine)
            return drawn
        }
        if drawn { writeStandardError("\r\u{1B}[K") }
    }

    /// Something else was printed on the terminal (to standard output when that is the
    /// terminal too, `stream` 1, or to standard error, 2): the bar is drawn again only once a
    /// line is ended, so that it never wipes the start of one.
    func printed(on stream: Int32, endsLine: Bool) {
        guard enabled, stream != 1 || outputIsTerminal else { return }
        drawing.withLock { $0.midLine = !endsLine }
    }

    /// Removes the bar, leaving the line clean for what follows.
    func finish() {
        guard enabled, drawing.withLock({ $0.drawn }) else { return }
        writeStandardError("\r\u{1B}[K")
    }
}

func isTerminal(_ descriptor: Int32) -> Bool { isatty(descriptor) != 0 }
