#if canImport(Glibc)
import Glibc
#endif
import SwiftPar

/// Prints the farm's output on rank 0 and writes the joblog.
///
/// By default each task's output is printed whole, standard output then standard error, as the
/// task ends, and output of different tasks never mixes. A task whose output grows past what a
/// slot holds is printed as it comes while no other task prints; the others' output waits its
/// turn in `HeldOutput` (memory, then a file in TMPDIR), so no task ever waits for printing.
/// With `keepOrder`, tasks print in input order; with `lineBuffered`, complete lines pass as
/// they come. Every piece is acknowledged as soon as it is printed or kept.
final class Printer {
    private struct Held {
        var pieces: [HeldOutput.Piece] = []
        var result: TaskResult?
    }

    private let keepOrder: Bool
    private let tag: Bool
    private let lineBuffered: Bool
    private let joblog: JobLog?
    private let beforePrinting: (_ stream: Int32) -> Void
    private let afterPrinting: (_ stream: Int32, _ endsLine: Bool) -> Void
    private let store = HeldOutput()
    var acknowledge: (_ rank: Int, _ sequence: Int, _ count: Int) throws -> Void = { _, _, _ in }
    var host: (_ rank: Int) -> String = { _ in ":" }

    private var tasks: [Int: FarmTask] = [:]
    /// Input order of the tasks handed out (keepOrder), from `orderIndex` on.
    private var printOrder: [Int] = []
    private var orderIndex = 0
    private var held: [Int: Held] = [:]
    /// Tasks that ended while another printed, in the order they ended.
    private var waiting: [Int] = []
    private var waitingIndex = 0
    /// The task printing as it runs.
    private var owner: Int?
    /// Whether the next byte of a streamed task's stream starts a line (for tags); present once
    /// some of the task's output has been printed.
    private var lineStarts: [Int: (output: Bool, errors: Bool)] = [:]
    private var output: [UInt8] = []

    init(keepOrder: Bool, tag: Bool, lineBuffered: Bool, joblog: JobLog?, beforePrinting: @escaping (_ stream: Int32) -> Void = { _ in },
         afterPrinting: @escaping (_ stream: Int32, _ endsLine: Bool) -> Void = { _, _ in }) {
        self.beforePrinting = beforePrinting
        self.afterPrinting = afterPrinting
        self.keepOrder = keepOrder
        self.tag = tag
        self.lineBuffered = lineBuffered
        self.joblog = joblog
    }

    /// Whether more tasks may be handed out: what is held about each waiting task is bounded.
    var hasRoom: Bool { held.count < 100_000 }

    /// Whether nothing waits to be printed.
    var isEmpty: Bool { held.isEmpty }

    /// Notes that `sequence` is the next task in input order.
    func order(_ sequence: Int) {
        if keepOrder { printOrder.append(sequence) }
    }

    func register(_ sequence: Int, _ task: FarmTask) { tasks[sequence] = task }

    func command(of sequence: Int) -> [UInt8]? { tasks[sequence]?.command }

    /// A task will not run (`--halt soon` took it back from a queue).
    func forget(_ sequence: Int) throws {
        tasks[sequence] = nil
        drop(sequence)
        if owner == sequence { owner = nil }
        try release()
    }

    /// A task's rank died: what it had printed is followed by its next run's output (a note
    /// says so); what was held is dropped. Returns its inputs when it is to run again.
    func abandon(_ sequence: Int, runAgain: Bool) throws -> [[UInt8]]? {
        drop(sequence)
        if lineStarts.removeValue(forKey: sequence) != nil {
            beforePrinting(2)
            writeStandardError("swiftpar: task \(sequence) was cut short; the output it printed \(runAgain ? "is followed by that of its next run" : "is all there is")\n")
            afterPrinting(2, true)
        }
        if owner == sequence { owner = nil }
        let inputs = tasks[sequence]?.inputs
        if !runAgain { tasks[sequence] = nil }
        try release()
        return inputs
    }

    /// Drops everything not yet printed (`--halt now`).
    func discardAll() {
        for sequence in Array(held.keys) { drop(sequence) }
        tasks = [:]
        waiting = []
        waitingIndex = 0
        owner = nil
        printOrder = []
        orderIndex = 0
    }

    private func drop(_ sequence: Int) {
        guard let dropped = held.removeValue(forKey: sequence) else { return }
        for piece in dropped.pieces { store.forget(piece) }
    }

    /// The task whose turn it is to print, with `keepOrder`.
    private var head: Int? {
        while orderIndex < printOrder.count && tasks[printOrder[orderIndex]] == nil { orderIndex += 1 }
        if orderIndex > 4096 && orderIndex * 2 > printOrder.count {
            printOrder.removeFirst(orderIndex)
            orderIndex = 0
        }
        return orderIndex < printOrder.count ? printOrder[orderIndex] : nil
    }

    private func mayPrint(_ sequence: Int) -> Bool {
        if keepOrder { return head == sequence }
        if lineBuffered { return true }
        if owner == nil { owner = sequence }
        return owner == sequence
    }

    /// A piece of a running task's output. A task printing as it runs prints its standard
    /// output so; its standard error waits for the end (unless output is line-buffered), so
    /// that the task's output is its standard output whole, then its standard error, as GNU
    /// parallel prints it, also when both go to one file.
    func output(sequence: Int, stream: Int32, bytes: [UInt8], rank: Int) throws {
        if tasks[sequence] != nil {
            if mayPrint(sequence) && (stream == 1 || lineBuffered) {
                try printHeldPieces(sequence)
                try write(bytes, stream: stream, sequence: sequence, streamed: true)
            } else {
                held[sequence, default: Held()].pieces.append(try store.keep(bytes, stream: stream))
            }
        }
        // Printed or kept: either way the task may go on.
        try acknowledge(rank, sequence, 1)
    }

    /// A task has ended.
    func finished(_ result: TaskResult, rank: Int) throws {
        guard tasks[result.sequence] != nil else { return }
        let sequence = result.sequence
        if keepOrder ? head == sequence : (lineBuffered || owner == nil || owner == sequence) {
            try printWhole(sequence, result)
            try release()
        } else {
            var rest = result
            var waitingTask = held[sequence] ?? Held()
            if !result.output.isEmpty { waitingTask.pieces.append(try store.keep(result.output, stream: 1)) }
            if !result.errors.isEmpty { waitingTask.pieces.append(try store.keep(result.errors, stream: 2)) }
            rest.output = []
            rest.errors = []
            waitingTask.result = rest
            held[sequence] = waitingTask
            if !keepOrder { waiting.append(sequence) }
        }
    }

    /// Prints what waited for a turn that has come.
    private func release() throws {
        if keepOrder {
            while let next = head, let waitingTask = held[next] {
                if let result = waitingTask.result {
                    try printWhole(next, result)
                    continue
                }
                try printHeldPieces(next)
                break
            }
            return
        }
        guard owner == nil else { return }
        while waitingIndex < waiting.count {
            let next = waiting[waitingIndex]
            waitingIndex += 1
            guard let result = held[next]?.result else { continue }
            try printWhole(next, result)
        }
        waiting = []
        waitingIndex = 0
        // The next to print as it runs: a running task with standard output held (one with only
        // standard error held keeps it until it ends anyway).
        if let next = held.first(where: { $0.value.result == nil && $0.value.pieces.contains { lineBuffered || $0.stream == 1 } })?.key {
            owner = next
            try printHeldPieces(next)
        }
    }

    /// Prints the held pieces of a task that may print as it runs: those of its standard error
    /// stay held until it ends (unless output is line-buffered).
    private func printHeldPieces(_ sequence: Int) throws {
        guard var waitingTask = held[sequence], !waitingTask.pieces.isEmpty else { return }
        let pieces = waitingTask.pieces.filter { lineBuffered || $0.stream == 1 }
        guard !pieces.isEmpty else { return }
        waitingTask.pieces.removeAll { lineBuffered || $0.stream == 1 }
        held[sequence] = waitingTask.result == nil && waitingTask.pieces.isEmpty ? nil : waitingTask
        for piece in pieces {
            try store.release(piece) { bytes in try write(bytes, stream: piece.stream, sequence: sequence, streamed: true) }
        }
    }

    private func printWhole(_ sequence: Int, _ result: TaskResult) throws {
        let streamed = lineStarts[sequence] != nil || !(held[sequence]?.pieces.isEmpty ?? true)
        let pieces = held.removeValue(forKey: sequence)?.pieces ?? []
        func release(_ pieces: [HeldOutput.Piece]) throws {
            for piece in pieces {
                try store.release(piece) { bytes in try write(bytes, stream: piece.stream, sequence: sequence, streamed: streamed) }
            }
        }
        if lineBuffered {
            try release(pieces)
            try write(result.output, stream: 1, sequence: sequence, streamed: streamed)
            try write(result.errors, stream: 2, sequence: sequence, streamed: streamed)
        } else {
            // Standard output whole, then standard error.
            try release(pieces.filter { $0.stream == 1 })
            try write(result.output, stream: 1, sequence: sequence, streamed: streamed)
            try release(pieces.filter { $0.stream != 1 })
            try write(result.errors, stream: 2, sequence: sequence, streamed: streamed)
        }
        lineStarts[sequence] = nil
        if owner == sequence { owner = nil }
        if let joblog, let task = tasks[sequence] {
            try flushOutput()
            if joblog.writesToStandardOutput { beforePrinting(1) }
            try joblog.record(result, host: host(task.rank), command: task.command)
            if joblog.writesToStandardOutput { afterPrinting(1, true) }
        }
        tasks[sequence] = nil
    }

    /// Writes a task's bytes to standard output (buffered) or standard error, tagged if asked.
    private func write(_ bytes: [UInt8], stream: Int32, sequence: Int, streamed: Bool) throws {
        guard !bytes.isEmpty else { return }
        var text = bytes
        var starts = lineStarts[sequence] ?? (true, true)
        if tag, let task = tasks[sequence] {
            var atStart = stream == 1 ? starts.output : starts.errors
            let prefix = CommandTemplate.tag(inputs: task.inputs)
            text = []
            text.reserveCapacity(bytes.count + prefix.count)
            for byte in bytes {
                if atStart {
                    text += prefix
                    atStart = false
                }
                text.append(byte)
                if byte == 10 || byte == 13 { atStart = true }
            }
            if stream == 1 { starts.output = atStart } else { starts.errors = atStart }
        }
        if streamed { lineStarts[sequence] = starts }
        if stream == 1 {
            output += text
            if output.count >= 1 << 16 || lineBuffered { try flushOutput() }
        } else {
            try flushOutput()
            beforePrinting(2)
            text.withUnsafeBytes { writeStandardError(bytes: $0) }
            afterPrinting(2, text.last == 10)
        }
    }

    func flushOutput() throws {
        guard !output.isEmpty else { return }
        beforePrinting(1)
        try output.withUnsafeBytes { try StandardOutput.write($0) }
        afterPrinting(1, output.last == 10)
        output.removeAll(keepingCapacity: true)
    }

    /// Prints what is left at the end.
    func finish() throws {
        try flushOutput()
    }
}
