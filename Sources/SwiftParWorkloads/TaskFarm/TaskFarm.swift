#if canImport(Glibc)
import Glibc
#endif
import CSwiftParLinux
import SwiftPar

/// When to stop a farm early, as GNU parallel's `--halt`.
package struct HaltPolicy: Sendable, Equatable {
    package enum Urgency: Sendable { case soon, now }
    package enum Condition: Sendable { case fail, success, done }
    package enum Threshold: Sendable, Equatable { case count(Int), percent(Double) }

    package var urgency: Urgency
    package var condition: Condition
    package var threshold: Threshold

    /// Reads `never` (nil), `soon,fail=3`, `now,success=1`, `now,fail=10%`, and the short
    /// forms 0, 1, 2, -1, -2 and `P%`.
    package static func parse(_ text: String) throws -> HaltPolicy? {
        switch text {
        case "never", "0": return nil
        case "1": return HaltPolicy(urgency: .soon, condition: .fail, threshold: .count(1))
        case "2": return HaltPolicy(urgency: .now, condition: .fail, threshold: .count(1))
        case "-1": return HaltPolicy(urgency: .soon, condition: .success, threshold: .count(1))
        case "-2": return HaltPolicy(urgency: .now, condition: .success, threshold: .count(1))
        default: break
        }
        if text.hasSuffix("%"), let percent = Double(text.dropLast()), percent > 0, percent <= 100 {
            return HaltPolicy(urgency: .soon, condition: .fail, threshold: .percent(percent))
        }
        let parts = text.split(separator: ",", maxSplits: 1)
        let bad = InputError(description: "--halt takes never, soon,fail=N, now,fail=N, soon,success=N, now,done=N or a percentage such as now,fail=10%, not '\(text)'")
        guard parts.count == 2 else { throw bad }
        let urgency: Urgency
        switch parts[0] {
        case "soon": urgency = .soon
        case "now": urgency = .now
        default: throw bad
        }
        let rule = parts[1].split(separator: "=", maxSplits: 1)
        guard rule.count == 2 else { throw bad }
        let condition: Condition
        switch rule[0] {
        case "fail": condition = .fail
        case "success": condition = .success
        case "done": condition = .done
        default: throw bad
        }
        let threshold: Threshold
        if rule[1].hasSuffix("%"), let percent = Double(rule[1].dropLast()), percent > 0, percent <= 100 {
            threshold = .percent(percent)
        } else if let count = Int(rule[1]), count >= 1 {
            threshold = .count(count)
        } else if rule[1].hasSuffix("%"), Double(rule[1].dropLast()) != nil {
            throw InputError(description: "--halt \(text): a percentage must be above 0% and at most 100%")
        } else if Int(rule[1]) != nil {
            throw InputError(description: "--halt \(text): a count of tasks must be at least 1")
        } else {
            throw bad
        }
        return HaltPolicy(urgency: urgency, condition: condition, threshold: threshold)
    }
}

/// What `swiftpar run` was asked to do.
package struct FarmOptions: Sendable {
    /// Called on rank 0 just before it writes to standard output (1) or standard error (2): a
    /// progress bar on the terminal takes itself off the line.
    package var beforePrinting: @Sendable (_ stream: Int32) -> Void = { _ in }
    /// Called on rank 0 just after it wrote tasks' output to standard output (1) or standard
    /// error (2), with whether that output ended a line: a progress bar is not drawn over a
    /// line a task left unfinished.
    package var afterPrinting: @Sendable (_ stream: Int32, _ endsLine: Bool) -> Void = { _, _ in }
    package var template = CommandTemplate([])
    package var sources: [InputSpecification] = [InputSpecification(.standardInput)]
    /// What ends each input record: one byte or more (`-d`).
    package var separator: [UInt8] = [10]
    package var link = false
    package var skipEmpty = false
    package var slotsPerRank = 1
    package var keepOrder = false
    package var tag = false
    package var runner = RunnerSettings()
    package var joblog: PathBytes?
    /// `--joblog +FILE`: add to the log without a new header.
    package var appendToJoblog = false
    package var resume = false
    package var resumeFailed = false
    package var halt: HaltPolicy?
    package var dryRun = false

    package init() {}
}

/// How a farm went, on rank 0.
package struct FarmSummary: Sendable {
    /// Tasks that ran to their end (skipped ones not counted).
    package var tasks: Int
    package var failed: Int
    /// Tasks left out because the joblog shows them done.
    package var skipped: Int
    package var seconds: Double
    /// Rank 0's peak resident memory, in KiB.
    package var peakMemoryKB: Int
    /// GNU parallel's exit status: failures (at most 101), or what `--halt` decided.
    package var exitStatus: Int32
}

/// Progress, for a bar: tasks finished, the total once all inputs are read, failures.
package struct FarmProgress: Sendable {
    package var done: Int
    package var total: Int?
    package var failed: Int
    package var seconds: Double
}

/// A task farm: runs a shell command per input on every slot of every rank, as GNU parallel
/// does on one machine. Rank 0 reads the inputs, hands tasks out as slots free up, prints each
/// task's output whole (or in input order, or line by line), and writes the joblog; every rank,
/// rank 0 too, runs tasks.
package enum TaskFarm {
    static let toCoordinator = 7101
    static let toWorker = 7102

    /// Runs the farm on every rank of `world`; returns the summary on rank 0, nil elsewhere.
    package static func run(_ options: FarmOptions, on world: Communicator,
                            progress: @escaping (FarmProgress) -> Void = { _ in }) throws -> FarmSummary? {
        if options.dryRun {
            guard world.rank == 0 else { return nil }
            return try dryRun(options, slots: world.size * max(options.slotsPerRank, 1))
        }
        if world.backend == .mpi {
            // Under mpirun a signal reaches every rank: each ends with 128 + the signal (mpirun
            // then decides the job's status); the guardians stop the tasks.
            swiftpar_exit_on_termination_signals()
        }
        if world.rank == 0 {
            // However rank 0 fails (an input that cannot be read, a full disk), the workers are
            // told to stop their tasks and end, so the job ends with rank 0's error alone.
            let coordinator: Coordinator
            do {
                coordinator = try Coordinator(options: options, world: world, progress: progress)
            } catch {
                for rank in 1..<world.size { try? world.send(bytes: FarmMessage(.halt).bytes, to: rank, tag: toWorker) }
                throw error
            }
            do {
                return try coordinator.run()
            } catch {
                coordinator.haltWorkers()
                throw error
            }
        }
        try Worker(options: options, world: world).run()
        return nil
    }

    /// Prints each task's command, one per line (after its inputs and a tab with `--tag`), and
    /// runs nothing; tasks that `--resume` or `--resume-failed` would skip are left out.
    static func dryRun(_ options: FarmOptions, slots: Int) throws -> FarmSummary {
        let inputs = try TaskInputs(options.sources, separator: options.separator, link: options.link, skipEmpty: options.skipEmpty)
        var skip: Set<Int> = []
        if let path = options.joblog, options.resume || options.resumeFailed {
            skip = try JobLog.finishedTasks(in: path, succeededOnly: options.resumeFailed)
        }
        var output = [UInt8]()
        var sequence = 0
        var shown = 0
        while let values = try inputs.next() {
            sequence += 1
            if skip.contains(sequence) { continue }
            shown += 1
            if options.tag { output += CommandTemplate.tag(inputs: values) }
            output += options.template.command(inputs: values, sequence: sequence, slot: 1 + (shown - 1) % slots)
            output.append(10)
            if output.count > 1 << 16 {
                try output.withUnsafeBytes { try StandardOutput.write($0) }
                output.removeAll(keepingCapacity: true)
            }
        }
        try output.withUnsafeBytes { try StandardOutput.write($0) }
        return FarmSummary(tasks: 0, failed: 0, skipped: 0, seconds: 0, peakMemoryKB: peakMemoryKB(), exitStatus: 0)
    }
}

// MARK: - Messages

/// The farm's messages, as bytes: a kind, then fields.
struct FarmMessage {
    enum Kind: UInt8 {
        // Worker to coordinator.
        case hello = 1, output, finished, dropped, bye
        // Coordinator to worker.
        case assign = 11, acknowledge, stop, halt, dropQueued
    }

    private(set) var bytes: [UInt8]

    init(_ kind: Kind) { bytes = [kind.rawValue] }

    mutating func append(_ value: Int) {
        withUnsafeBytes(of: Int64(value).littleEndian) { bytes += $0 }
    }

    mutating func append(_ value: Double) { append(Int(value.bitPattern)) }

    mutating func append(bytes more: [UInt8]) {
        append(more.count)
        bytes += more
    }
}

/// Reads a `FarmMessage`.
struct FarmMessageReader {
    let bytes: [UInt8]
    var offset = 1
    let source: Int

    init(_ bytes: [UInt8], source: Int) {
        self.bytes = bytes
        self.source = source
    }

    var kind: FarmMessage.Kind? { bytes.isEmpty ? nil : FarmMessage.Kind(rawValue: bytes[0]) }

    mutating func integer() throws -> Int {
        guard offset + 8 <= bytes.count else { throw malformed() }
        var value: Int64 = 0
        withUnsafeMutableBytes(of: &value) { $0.copyBytes(from: bytes[offset..<(offset + 8)]) }
        offset += 8
        return Int(Int64(littleEndian: value))
    }

    mutating func double() throws -> Double { Double(bitPattern: UInt64(bitPattern: Int64(try integer()))) }

    mutating func data() throws -> [UInt8] {
        let count = try integer()
        guard count >= 0, offset + count <= bytes.count else { throw malformed() }
        defer { offset += count }
        return Array(bytes[offset..<(offset + count)])
    }

    func malformed() -> CommunicatorError {
        .decodingFailed(type: "task farm message", source: source, tag: 0, byteCount: bytes.count,
                        reason: "it ends early", rank: 0)
    }
}

extension TaskResult {
    func encoded() -> [UInt8] {
        var message = FarmMessage(.finished)
        message.append(sequence)
        message.append(slot)
        message.append(startTime)
        message.append(runtime)
        message.append(Int(exitValue))
        message.append(Int(signal))
        message.append(outputByteCount)
        message.append(timedOut ? 1 : 0)
        message.append(bytes: output)
        message.append(bytes: errors)
        return message.bytes
    }

    init(_ reader: inout FarmMessageReader) throws {
        self.init(sequence: try reader.integer(), slot: try reader.integer(), startTime: try reader.double(), runtime: try reader.double(),
                  exitValue: Int32(truncatingIfNeeded: try reader.integer()), signal: Int32(truncatingIfNeeded: try reader.integer()),
                  outputByteCount: try reader.integer(), output: [], errors: [], timedOut: try reader.integer() != 0)
        output = try reader.data()
        errors = try reader.data()
    }
}

/// This process's peak resident memory, in KiB.
func peakMemoryKB() -> Int {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return usage.ru_maxrss
}

// MARK: - Worker

/// A rank other than 0: runs what it is given, reports output and ends, until told to stop.
final class Worker {
    let world: Communicator
    let runner: TaskRunner

    init(options: FarmOptions, world: Communicator) throws {
        self.world = world
        var settings = options.runner
        settings.rank = world.rank
        runner = try TaskRunner(settings: settings, slots: options.slotsPerRank)
    }

    func run() throws {
        var hello = FarmMessage(.hello)
        hello.append(bytes: Array(world.hostName.utf8))
        try world.send(bytes: hello.bytes, to: 0, tag: TaskFarm.toCoordinator)
        var stopping = false
        // A free slot's next task comes as a message, which cannot wake the poll of the running
        // ones: look often just after a slot frees up, less and less while nothing comes.
        var assignmentWait = PollBackoff(shortest: 0.0001, longest: 0.005)
        while true {
            // Orders first, without waiting while tasks run.
            while let info = try world.probeNow(from: 0, tag: .tag(TaskFarm.toWorker)) {
                if try handle(info) { stopping = true }
                assignmentWait.reset()
            }
            if stopping && !runner.isBusy { break }
            if runner.isBusy {
                // A running task is work: ranks waiting meanwhile are not stalled.
                world.noteProgress()
                // A task waiting for its output to be acknowledged waits for a message too.
                let wait = runner.awaitsAcknowledgement ? 0.001 : runner.hasIdleSlot && !stopping ? assignmentWait.next() : 0.05
                try runner.step(timeout: wait) { event in
                    if case .finished = event { assignmentWait.reset() }
                    try self.report(event)
                }
            } else {
                let info = try world.probe(from: 0, tag: .tag(TaskFarm.toWorker))
                if try handle(info) { stopping = true }
            }
        }
        try world.send(bytes: FarmMessage(.bye).bytes, to: 0, tag: TaskFarm.toCoordinator)
    }

    /// Handles one order; returns whether it says to stop.
    private func handle(_ info: MessageInfo) throws -> Bool {
        let message = try world.receiveBytes(from: .rank(0), tag: .tag(TaskFarm.toWorker)).value
        var reader = FarmMessageReader(message, source: 0)
        switch reader.kind {
        case .assign?:
            let sequence = try reader.integer(), slot = try reader.integer(), localSlot = try reader.integer()
            runner.enqueue(TaskAssignment(sequence: sequence, slot: slot, localSlot: localSlot, command: try reader.data()))
        case .acknowledge?:
            runner.acknowledge(sequence: try reader.integer(), count: try reader.integer())
        case .dropQueued?:
            var dropped = FarmMessage(.dropped)
            let sequences = runner.dropQueued()
            dropped.append(sequences.count)
            for sequence in sequences { dropped.append(sequence) }
            try world.send(bytes: dropped.bytes, to: 0, tag: TaskFarm.toCoordinator)
        case .halt?:
            runner.killAll()
            return true
        case .stop?:
            return true
        default:
            throw reader.malformed()
        }
        return false
    }

    private func report(_ event: RunnerEvent) throws {
        switch event {
        case .output(let sequence, let stream, let bytes):
            var message = FarmMessage(.output)
            message.append(sequence)
            message.append(Int(stream))
            message.append(bytes: bytes)
            try world.send(bytes: message.bytes, to: 0, tag: TaskFarm.toCoordinator)
        case .finished(let result):
            try world.send(bytes: result.encoded(), to: 0, tag: TaskFarm.toCoordinator)
        }
    }
}

extension Communicator {
    func send(bytes: [UInt8], to destination: Int, tag: Int) throws {
        try bytes.withUnsafeBytes { try send(bytes: $0, to: destination, tag: tag) }
    }
}
