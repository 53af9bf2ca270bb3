#if canImport(Glibc)
import Glibc
#endif
import SwiftPar

/// A joblog in GNU parallel's format: a header, then one tab-separated line per finished task
/// (`Seq Host Starttime JobRuntime Send Receive Exitval Signal Command`), each written whole
/// with one `write` as the task's output is printed, so a job killed at any moment leaves only
/// whole lines, one per task whose output was printed.
package final class JobLog {
    package static let header = "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n"

    private let descriptor: Int32
    private let path: PathBytes

    /// Opens `path`: appended to when `append` is set and it has content, otherwise created or
    /// emptied and given a header unless `header` is false (GNU parallel writes none to a log
    /// it appends to, `+FILE`, even a new one). `-` is standard output, as in GNU parallel:
    /// the header, then each task's line after its output.
    package init(path: PathBytes, append: Bool, header: Bool = true) throws {
        self.path = path
        if Self.isStandardOutput(path) {
            descriptor = -1
            if header { try write(Array(Self.header.utf8)) }
            return
        }
        var status = stat()
        let exists = path.withCString { stat($0, &status) } == 0
        let keep = append && exists && status.st_size > 0
        let flags = O_WRONLY | O_CREAT | O_CLOEXEC | (keep ? O_APPEND : O_TRUNC)
        descriptor = path.withCString { open($0, flags, 0o644) }
        guard descriptor >= 0 else { throw SystemError.current("opening joblog \(path)") }
        if !keep && header { try write(Array(Self.header.utf8)) }
        // A log cut off in the middle of a line (a job killed while its disk was full): the
        // new lines start on a line of their own, rather than glued to that part of one.
        if keep && status.st_mode & S_IFMT == S_IFREG {
            let reader = path.withCString { open($0, O_RDONLY | O_CLOEXEC) }
            guard reader >= 0 else { throw SystemError.current("opening joblog \(path)") }
            var last: UInt8 = 0
            let read = pread(reader, &last, 1, status.st_size - 1)
            close(reader)
            if read == 1 && last != 10 { try write([10]) }
        }
    }

    deinit { if descriptor >= 0 { close(descriptor) } }

    /// Whether the log goes to standard output (`--joblog -`).
    package var writesToStandardOutput: Bool { descriptor < 0 }

    /// Whether `path` names standard output (`-`).
    package static func isStandardOutput(_ path: PathBytes) -> Bool { path.bytes == [UInt8(ascii: "-")] }

    /// Writes one task's line.
    package func record(_ result: TaskResult, host: String, command: [UInt8]) throws {
        var line = Array("\(result.sequence)\t\(host)\t\(Self.seconds(result.startTime))\t".utf8)
        // GNU parallel: the runtime is cut (not rounded) to milliseconds, right-aligned in 10.
        let runtime = Self.seconds(Double(Int(max(result.runtime, 0) * 1000)) / 1000)
        line += Array((String(repeating: " ", count: max(0, 10 - runtime.count)) + runtime).utf8)
        line += Array("\t0\t\(result.outputByteCount)\t\(result.exitValue)\t\(result.signal)\t".utf8)
        // A newline in a command would break the line: GNU parallel writes it as NUL.
        line += command.map { $0 == 10 ? 0 : $0 }
        line.append(10)
        try write(line)
    }

    private func write(_ bytes: [UInt8]) throws {
        guard descriptor >= 0 else { return try bytes.withUnsafeBytes { try StandardOutput.write($0) } }
        try bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = Glibc.write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    throw SystemError.current("write to joblog \(path)")
                }
                offset += written
            }
        }
    }

    /// `value` with three decimals.
    static func seconds(_ value: Double) -> String {
        let thousandths = Int((value * 1000).rounded())
        let fraction = String(thousandths % 1000)
        return "\(thousandths / 1000).\(String(repeating: "0", count: 3 - fraction.count))\(fraction)"
    }

    /// The task numbers a joblog marks as done: every task it has a line for, or with
    /// `succeededOnly` those with a line saying exit status 0 and no signal (GNU parallel's
    /// `--resume` and `--resume-failed`). A missing file marks none.
    ///
    /// - Throws: `InputError` when a line is not a joblog line (a task number, five fields, an
    ///   exit status, a signal number and the command, tab-separated), as GNU parallel refuses
    ///   such a file, so that a file given by mistake is neither trusted nor appended to. The
    ///   first line may be anything (the header). A line that starts as a joblog line does (a
    ///   task number, then a tab or nothing) but stops short is taken for one cut off as it was
    ///   written (a full disk): its task runs again, unless the cut fell in the command, after
    ///   the exit status and signal were written.
    package static func finishedTasks(in path: PathBytes, succeededOnly: Bool) throws -> Set<Int> {
        // A log on standard output cannot be read back: nothing is marked, as in GNU parallel.
        if isStandardOutput(path) { return [] }
        let descriptor = path.withCString { open($0, O_RDONLY | O_CLOEXEC) }
        if descriptor < 0 {
            if errno == ENOENT { return [] }
            throw SystemError.current("opening joblog \(path) to resume")
        }
        let reader = RecordReader(descriptor: descriptor, separator: [10], name: "joblog \(path)")
        var done: Set<Int> = []
        var number = 0
        while let line = try reader.next() {
            number += 1
            guard let entry = Entry(line) else {
                if number == 1 || Entry.isCutOff(line) { continue }
                let shown = String(decoding: line.prefix(200), as: UTF8.self)
                throw InputError(description: "joblog \(path) is not a joblog (line \(number) is \"\(shown)\"); give another file to --joblog, or run without --resume")
            }
            if succeededOnly && (entry.exitValue != 0 || entry.signal != 0) { continue }
            done.insert(entry.sequence)
        }
        return done
    }

    /// What `--resume` reads of a joblog line: Seq, Host, Starttime, JobRuntime, Send, Receive,
    /// Exitval, Signal and Command, separated by tabs.
    private struct Entry {
        let sequence: Int
        let exitValue: Int
        let signal: Int

        init?(_ line: [UInt8]) {
            let fields = line.split(separator: 9, maxSplits: 8, omittingEmptySubsequences: false)
            func number(_ index: Int) -> Int? { Int(String(decoding: fields[index], as: UTF8.self)) }
            guard fields.count == 9, let sequence = number(0), sequence >= 1, let exitValue = number(6), let signal = number(7)
            else { return nil }
            self.sequence = sequence
            self.exitValue = exitValue
            self.signal = signal
        }

        /// Whether `line` is the start of a joblog line: a task number, then a tab or nothing.
        static func isCutOff(_ line: [UInt8]) -> Bool {
            let number = line.prefix { $0 != 9 }
            return !number.isEmpty && number.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }
        }
    }
}
