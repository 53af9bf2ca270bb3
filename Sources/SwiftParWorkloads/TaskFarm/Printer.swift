#if canImport(Glibc)
import Glibc
#endif
import SwiftPar

/// Prints the farm's output on rank 0 and writes the joblog.
///
/// By default each task's output is printed whole, standard output then standard error, as the
/// task ends, and output of different tasks never mixes. A task whose output grows past what a
/// slot holds is printed as it comes while no other task prints; the others' pieces wait (and
/// their tasks with them, as a pipe's writer waits for its reader). With `keepOrder`, tasks print
/// in input order; with `lineBuffered`, complete lines pass as they come.
final class Printer {
    private struct Held {
        var rank: Int
        var pieces: [(stream: Int32, bytes: [UInt8])] = []
        var result: TaskResult?
    }

    private let keepOrder: Bool
    private let tag: Bool
    private let lineBuffered: Bool
    private let joblog: JobLog?
    var acknowledge: (_ rank: Int, _ sequence: Int, _ count: Int) throws -> Void = { _, _, _ in }
    var host: (_ rank: Int) -> String = { _ in ":" }

    private var tasks: [Int: FarmTask] = [:]
    /// Input order of the tasks handed out (keepOrder), from `orderIndex` on.
    private var printOrder: [Int] = []
    private var orderIndex = 0
    private var held: [Int: Held] = [:]
    private var heldBytes = 0
    /// Tasks that ended while another printed, in the order they ended.
    private var waiting: [Int] = []
    /// The task printing as it runs.
    private var owner: Int?
    /// Whether the next byte of a streamed task's stream starts a line (for tags).
    private var lineStarts: [Int: (output: Bool, errors: Bool)] = [:]
    private var output: [UInt8] = []

    init(keepOrder: Bool, tag: Bool, lineBuffered: Bool, joblog: JobLog?) {
        self.keepOrder = keepOrder
        self.tag = tag
        self.lineBuffered = lineBuffered
        self.joblog = joblog
    }

    /// Whether more tasks may be handed out: held output is bounded.
    var hasRoom: Bool { heldBytes < 64 << 20 && held.count < 10_000 }

    /// Notes that `sequence` is the next task in input order.
    func order(_ sequence: Int) {
        if keepOrder { printOrder.append(sequence) }
    }

    func register(_ sequence: Int, _ task: FarmTask) { tasks[sequence] = task }

    func command(of sequence: Int) -> [UInt8]? { tasks[sequence]?.command }

    /// A task will not run (`--halt soon` took it back from a queue).
    func forget(_ sequence: Int) {
        tasks[sequence] = nil
        if let dropped = held.removeValue(forKey: sequence) { heldBytes -= size(of: dropped) }
    }

    /// A task's rank died: what it printed is dropped (a note says so if some was already
    /// printed); returns its inputs to run it again.
    func abandon(_ sequence: Int) -> [[UInt8]]? {
        if let dropped = held.removeValue(forKey: sequence) { heldBytes -= size(of: dropped) }
        if owner == sequence || lineStarts[sequence] != nil {
            writeStandardError("swiftpar: task \(sequence) was cut short; the output it printed is followed by that of its next run\n")
            if owner == sequence { owner = nil }
            lineStarts[sequence] = nil
        }
        return tasks[sequence]?.inputs
    }

    /// Drops everything not yet printed (`--halt now`).
    func discardAll() {
        tasks = [:]
        held = [:]
        heldBytes = 0
        waiting = []
        owner = nil
        printOrder = []
        orderIndex = 0
    }

    private func size(of held: Held) -> Int {
        held.pieces.reduce(0) { $0 + $1.bytes.count } + (held.result.map { $0.output.count + $0.errors.count } ?? 0)
    }

    /// The task whose turn it is to print, with `keepOrder`.
    private var head: Int? {
        while orderIndex < printOrder.count {
            if tasks[printOrder[orderIndex]] != nil { return printOrder[orderIndex] }
            orderIndex += 1
        }
        if orderIndex > 4096 {
            printOrder.removeFirst(orderIndex)
            orderIndex = 0
        }
        return nil
    }

    private func mayPrint(_ sequence: Int) -> Bool {
        if keepOrder { return head == sequence }
        if lineBuffered { return true }
        if owner == nil { owner = sequence }
        return owner == sequence
    }

    /// A piece of a running task's output.
    func output(sequence: Int, stream: Int32, bytes: [UInt8], rank: Int) throws {
        guard tasks[sequence] != nil else { return }
        if mayPrint(sequence) {
            try write(bytes, stream: stream, sequence: sequence, streamed: true)
            try acknowledge(rank, sequence, 1)
        } else {
            held[sequence, default: Held(rank: rank)].pieces.append((stream, bytes))
            heldBytes += bytes.count
        }
    }

    /// A task has ended.
    func finished(_ result: TaskResult, rank: Int) throws {
        guard tasks[result.sequence] != nil else { return }
        let sequence = result.sequence
        if keepOrder ? head == sequence : (lineBuffered || owner == nil || owner == sequence) {
            try printWhole(sequence, result)
            try release()
        } else {
            held[sequence, default: Held(rank: rank)].result = result
            heldBytes += result.output.count + result.errors.count
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
                try printPieces(next)
                break
            }
            return
        }
        guard owner == nil else { return }
        while !waiting.isEmpty {
            let next = waiting.removeFirst()
            guard let result = held[next]?.result else { continue }
            try printWhole(next, result)
        }
        if let next = held.first(where: { !$0.value.pieces.isEmpty })?.key {
            owner = next
            try printPieces(next)
        }
    }

    private func printPieces(_ sequence: Int) throws {
        guard var waitingTask = held[sequence], !waitingTask.pieces.isEmpty else { return }
        for piece in waitingTask.pieces {
            try write(piece.bytes, stream: piece.stream, sequence: sequence, streamed: true)
            heldBytes -= piece.bytes.count
        }
        let count = waitingTask.pieces.count
        waitingTask.pieces = []
        held[sequence] = waitingTask
        try acknowledge(waitingTask.rank, sequence, count)
    }

    private func printWhole(_ sequence: Int, _ result: TaskResult) throws {
        if let waitingTask = held.removeValue(forKey: sequence) {
            heldBytes -= size(of: waitingTask)
            for piece in waitingTask.pieces { try write(piece.bytes, stream: piece.stream, sequence: sequence, streamed: true) }
        }
        let streamed = lineStarts[sequence] != nil
        try write(result.output, stream: 1, sequence: sequence, streamed: streamed)
        try write(result.errors, stream: 2, sequence: sequence, streamed: streamed)
        lineStarts[sequence] = nil
        if owner == sequence { owner = nil }
        if let joblog, let task = tasks[sequence] {
            try flushOutput()
            try joblog.record(result, host: host(task.rank), command: task.command)
        }
        tasks[sequence] = nil
    }

    /// Writes a task's bytes to standard output (buffered) or standard error, tagged if asked.
    private func write(_ bytes: [UInt8], stream: Int32, sequence: Int, streamed: Bool) throws {
        guard !bytes.isEmpty else { return }
        var text = bytes
        if tag, let task = tasks[sequence] {
            var starts = lineStarts[sequence] ?? (true, true)
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
            if streamed { lineStarts[sequence] = starts }
        } else if streamed && lineStarts[sequence] == nil {
            lineStarts[sequence] = (true, true)
        }
        if stream == 1 {
            output += text
            if output.count >= 1 << 16 || lineBuffered { try flushOutput() }
        } else {
            try flushOutput()
            writeAllToStandardError(text)
        }
    }

    func flushOutput() throws {
        guard !output.isEmpty else { return }
        try output.withUnsafeBytes { try StandardOutput.write($0) }
        output.removeAll(keepingCapacity: true)
    }

    /// Prints what is left at the end.
    func finish() throws {
        try flushOutput()
    }
}

/// Writes all of `bytes` to standard error.
func writeAllToStandardError(_ bytes: [UInt8]) {
    bytes.withUnsafeBytes { buffer in
        var offset = 0
        while offset < buffer.count {
            let written = write(2, buffer.baseAddress! + offset, buffer.count - offset)
            if written < 0 && errno == EINTR { continue }
            if written <= 0 { return }
            offset += written
        }
    }
}
