import CSwiftParLinux
#if canImport(Glibc)
import Glibc
#endif
import SwiftPar

/// A task given to a slot: its number, the slot, and the shell command to run.
package struct TaskAssignment: Sendable, Equatable {
    /// `{#}`: the task's number, from 1.
    package var sequence: Int
    /// `{%}`: the slot's number in the whole job, from 1.
    package var slot: Int
    /// The slot's index on its rank.
    package var localSlot: Int
    /// The shell command, after replacement and quoting.
    package var command: [UInt8]
}

/// How a task ended.
package struct TaskResult: Sendable, Equatable {
    package var sequence: Int
    package var slot: Int
    /// When the last attempt started, in seconds since 1970.
    package var startTime: Double
    /// How long the last attempt ran, in seconds.
    package var runtime: Double
    /// The exit status; -1 when the task was killed for running too long.
    package var exitValue: Int32
    /// The signal that ended the task, or 0.
    package var signal: Int32
    /// Bytes the task wrote to its standard output in all (the joblog's Receive).
    package var outputByteCount: Int
    /// What is left of its standard output and error to print (all of it, unless streamed).
    package var output: [UInt8]
    package var errors: [UInt8]
    package var timedOut: Bool

    /// Whether the task failed: a non-zero status, a signal, or a timeout.
    package var failed: Bool { exitValue != 0 || signal != 0 }
}

/// What a runner reports.
package enum RunnerEvent: Sendable {
    /// Output of a running task to pass on now (`stream` 1 or 2).
    case output(sequence: Int, stream: Int32, bytes: [UInt8])
    case finished(TaskResult)
}

/// How tasks run.
package struct RunnerSettings: Sendable {
    /// The shell that runs each command as `SHELL -c COMMAND`.
    package var shell: String = "/bin/sh"
    /// Seconds after which a task's process group is killed.
    package var timeout: Double?
    /// Attempts in all (1: no retry; `Int.max`: until it succeeds).
    package var attempts: Int = 1
    /// Pass complete lines on as they come instead of a task's output whole.
    package var lineBuffered = false
    /// Output a task may hold before it is passed on in pieces (then printed as it comes, if
    /// nothing else is printing, or the task waits for its turn).
    package var holdLimit = 4 << 20
    /// Pieces passed on and not yet printed, per task, before the task is made to wait.
    package var window = 4
    package var pieceSize = 1 << 20
    /// This rank, for the tasks' environment.
    package var rank = 0

    package init() {}
}

/// A rank's slots: runs the tasks given to it, each in a process group of its own under the
/// shell, collects their output, enforces timeouts and retries, and reports each task's end.
///
/// A guardian process watches over the running tasks' process groups: however this process
/// ends (even by SIGKILL), the tasks it started are killed, so nothing is left running.
package final class TaskRunner {
    private final class Running {
        var assignment: TaskAssignment
        var pid: pid_t = -1
        var processDescriptor: Int32 = -1
        var outputDescriptor: Int32 = -1
        var errorDescriptor: Int32 = -1
        var startTime = 0.0
        var startClock = 0.0
        var output: [UInt8] = []
        var errors: [UInt8] = []
        var outputByteCount = 0
        var streaming = false
        var unacknowledged = 0
        var attempt = 1
        var exited = false
        var status: Int32 = 0
        var timedOut = false
        var killStep = -1
        var nextKillAt = 0.0
        /// When the task's shell ended (its runtime ends there, not when its output is passed on).
        var endClock = 0.0
        /// Output of an attempt that may be retried, kept aside once it is large.
        var keptAside: [HeldOutput.Piece] = []
        /// Until when a task that a signal from outside ended keeps its slot (see `outsideKillPause`).
        var heldUntil: Double?

        init(_ assignment: TaskAssignment) { self.assignment = assignment }
    }

    /// How long a task ended by a termination signal that this rank did not send keeps its
    /// slot before its end is reported (and a retry or the next task starts there). A batch
    /// system ending the job (scancel, a walltime, a dead task under `srun -K`) signals every
    /// process of it at once, the tasks' own ones too: without the pause a rank could log
    /// their deaths and start more tasks in the moment before its own signal came, and those
    /// would outlive it.
    static let outsideKillPause = 0.5

    /// TERM, and again after 200, 100 and 50 ms; KILL after 25 more.
    private static let killSequence: [(signal: Int32, wait: Double)] = [(SIGTERM, 0.2), (SIGTERM, 0.1), (SIGTERM, 0.05), (SIGKILL, 0.025)]

    private let settings: RunnerSettings
    private var queues: [[TaskAssignment]]
    private var running: [Running?]
    private let guardian: Int32
    private let nullInput: Int32
    private var environment: [String]
    private let shellArgument: String
    /// Where output is read to before it is appended to its task's buffer.
    private let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 16)
    /// Where a large output waits while its task may still be retried (a file in TMPDIR).
    private let keptAside = HeldOutput(memoryLimit: 0)

    /// Whether `name` is one of the variables by which a launcher makes a process one rank of
    /// an MPI job (Open MPI's, PMIx's, PMI's). A task is not a rank: without them, a task that
    /// is itself a swiftpar or MPI program starts as a job of its own instead of trying to
    /// join this one. Settings a user may have passed on (`OMPI_MCA_btl`, running as root)
    /// are kept.
    static func isLauncherIdentity(_ name: String) -> Bool {
        if name.hasPrefix("PMIX_") || name.hasPrefix("OMPI_COMM_WORLD_") { return true }
        if ["PMI_RANK", "PMI_SIZE", "PMI_FD", "PMI_JOBID", "PMI_PORT", "PMI_ID"].contains(name) { return true }
        let openMPIJob = ["OMPI_APP_CTX_NUM_PROCS", "OMPI_ARGV", "OMPI_COMMAND", "OMPI_FILE_LOCATION", "OMPI_FIRST_RANKS",
                          "OMPI_NUM_APP_CTX", "OMPI_UNIVERSE_SIZE", "OMPI_MCA_initial_wdir", "OMPI_MCA_pmix",
                          "OMPI_MCA_shmem_RUNTIME_QUERY_hint"]
        return openMPIJob.contains(name) || name.hasPrefix("OMPI_MCA_ess") || name.hasPrefix("OMPI_MCA_orte_")
            || name.hasPrefix("OMPI_MCA_prte_") || name.hasPrefix("PRTE_")
    }

    /// A runner with `slots` slots.
    package init(settings: RunnerSettings, slots: Int) throws {
        self.settings = settings
        queues = Array(repeating: [], count: slots)
        running = Array(repeating: nil, count: slots)
        guardian = swiftpar_start_guardian()
        guard guardian >= 0 else { throw SystemError.current("starting the guardian of rank \(settings.rank)'s tasks") }
        nullInput = open("/dev/null", O_RDONLY | O_CLOEXEC)
        guard nullInput >= 0 else { throw SystemError.current("opening /dev/null for the tasks' input") }
        let ours = ["SWIFTPAR_TASK=", "SWIFTPAR_RANK=", "SWIFTPAR_SLOT=", "PARALLEL_SEQ=", "PARALLEL_JOBSLOT=", "SWIFTPAR_LOCAL_"]
        environment = currentEnvironment().filter { !Self.isLauncherIdentity($0.key) }
            .map { "\($0.key)=\($0.value)" }.filter { entry in !ours.contains { entry.hasPrefix($0) } }
        shellArgument = settings.shell
    }

    deinit {
        scratch.deallocate()
        close(guardian)
        close(nullInput)
    }

    /// Whether a task runs or waits in a queue.
    package var isBusy: Bool { running.contains { $0 != nil } || queues.contains { !$0.isEmpty } }

    /// Whether a task runs.
    package var isRunning: Bool { running.contains { $0 != nil } }

    /// Whether a slot has nothing to run: neither a running task nor one given to it.
    package var hasIdleSlot: Bool { running.indices.contains { running[$0] == nil && queues[$0].isEmpty } }

    /// Whether a task's output waits for acknowledgements before more of it is passed on.
    package var awaitsAcknowledgement: Bool { running.contains { ($0?.unacknowledged ?? 0) >= settings.window } }

    /// Tasks given to the slots and not finished.
    package var pendingCount: Int { running.reduce(0) { $0 + ($1 == nil ? 0 : 1) } + queues.reduce(0) { $0 + $1.count } }

    /// Queues `assignment` on its slot.
    package func enqueue(_ assignment: TaskAssignment) {
        queues[assignment.localSlot].append(assignment)
    }

    /// Forgets the tasks waiting in the queues (not those running) and returns their numbers.
    package func dropQueued() -> [Int] {
        let dropped = queues.flatMap { $0.map(\.sequence) }
        queues = queues.map { _ in [] }
        return dropped
    }

    /// Pieces of task `sequence`'s output have been printed: it may pass on `count` more.
    package func acknowledge(sequence: Int, count: Int) {
        for task in running where task?.assignment.sequence == sequence {
            task!.unacknowledged = max(0, task!.unacknowledged - count)
        }
    }

    /// Starts what is queued, waits up to `timeout` seconds for something to happen, and reports
    /// output and finished tasks to `emit`. Returns whether `extra` became readable.
    @discardableResult
    package func step(timeout: Double, extra: Int32 = -1, emit: (RunnerEvent) throws -> Void) throws -> Bool {
        for slot in running.indices where running[slot] == nil && !queues[slot].isEmpty {
            let assignment = queues[slot].removeFirst()
            let task = Running(assignment)
            try start(task)
            running[slot] = task
        }
        var descriptors: [pollfd] = []
        var owners: [(slot: Int, kind: Int)] = []
        var wait = timeout
        let now = monotonicNow()
        for slot in running.indices {
            guard let task = running[slot] else { continue }
            if task.unacknowledged < settings.window {
                if task.outputDescriptor >= 0 { descriptors.append(pollfd(fd: task.outputDescriptor, events: Int16(POLLIN), revents: 0)); owners.append((slot, 1)) }
                if task.errorDescriptor >= 0 { descriptors.append(pollfd(fd: task.errorDescriptor, events: Int16(POLLIN), revents: 0)); owners.append((slot, 2)) }
            }
            if !task.exited && task.processDescriptor >= 0 {
                descriptors.append(pollfd(fd: task.processDescriptor, events: Int16(POLLIN), revents: 0))
                owners.append((slot, 0))
            }
            if let limit = settings.timeout, !task.timedOut, !task.exited { wait = min(wait, task.startClock + limit - now) }
            if task.killStep >= 0, !task.exited { wait = min(wait, task.nextKillAt - now) }
            if task.processDescriptor < 0 && !task.exited { wait = min(wait, 0.01) }
            if let held = task.heldUntil, held > now { wait = min(wait, held - now) }
        }
        if extra >= 0 { descriptors.append(pollfd(fd: extra, events: Int16(POLLIN), revents: 0)); owners.append((-1, 0)) }
        let nanoseconds = Int64(max(0, min(wait, 60) * 1e9).rounded(.up))
        let ready = swiftpar_poll(&descriptors, UInt(descriptors.count), nanoseconds)
        if ready < 0 && errno != EINTR { throw SystemError.current("poll of rank \(settings.rank)'s tasks") }
        var extraReady = false
        if ready > 0 {
            for (index, descriptor) in descriptors.enumerated() where descriptor.revents != 0 {
                let owner = owners[index]
                if owner.slot < 0 { extraReady = true; continue }
                guard let task = running[owner.slot] else { continue }
                switch owner.kind {
                case 1: readOutput(task, stream: 1)
                case 2: readOutput(task, stream: 2)
                default: reap(task)
                }
            }
        }
        let later = monotonicNow()
        for slot in running.indices {
            guard let task = running[slot] else { continue }
            // Without a pidfd (an old kernel), the task's end is found by asking.
            if task.processDescriptor < 0 { reap(task) }
            if let limit = settings.timeout, !task.timedOut, !task.exited, later >= task.startClock + limit {
                task.timedOut = true
                task.killStep = 0
                task.nextKillAt = later
            }
            if task.killStep >= 0, !task.exited, later >= task.nextKillAt {
                if task.killStep < Self.killSequence.count {
                    let step = Self.killSequence[task.killStep]
                    kill(-task.pid, step.signal)
                    task.nextKillAt = later + step.wait
                    task.killStep += 1
                } else {
                    task.nextKillAt = later + 0.05
                }
            }
            try passOn(task, emit: emit)
            if task.exited {
                // Read what the pipes hold now; a background process that keeps them open is not
                // waited for. A task whose output waits for its turn to print finishes later.
                var waitsForTurn = false
                // At most a megabyte more per stream: a background process that keeps writing
                // to the pipes must not keep the task from ending.
                var budget = 16
                while budget > 0 {
                    budget -= 1
                    try passOn(task, emit: emit)
                    if task.unacknowledged >= settings.window {
                        waitsForTurn = true
                        break
                    }
                    var readMore = false
                    for stream: Int32 in [1, 2] {
                        let descriptor = stream == 1 ? task.outputDescriptor : task.errorDescriptor
                        guard descriptor >= 0 else { continue }
                        var check = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
                        if poll(&check, 1, 0) > 0 {
                            readOutput(task, stream: stream)
                            readMore = true
                        }
                    }
                    if !readMore { break }
                }
                if !waitsForTurn && !heldAfterOutsideKill(task, now: later) { try finish(slot: slot, emit: emit) }
            }
        }
        return extraReady
    }

    /// Whether `task`, ended by a termination signal from outside this rank, still keeps its
    /// slot (`outsideKillPause`).
    private func heldAfterOutsideKill(_ task: Running, now: Double) -> Bool {
        // The shell itself killed (a shell that only reports its command's death as 128 + N may
        // have meant it: `timeout -s KILL`, a JVM ending on SIGTERM).
        let signal = task.status & 0x7F
        guard task.killStep < 0, !task.timedOut, [SIGTERM, SIGKILL, SIGHUP, SIGINT].contains(signal) else { return false }
        if task.heldUntil == nil {
            task.heldUntil = task.endClock + Self.outsideKillPause
            // What the shell started dies with it, as for a task this rank stopped; at once,
            // while the group still holds its number.
            kill(-task.pid, SIGKILL)
        }
        return now < task.heldUntil!
    }

    /// Kills every running task's process group (TERM, then KILL), waits for them, and forgets
    /// them and every queued task; nothing is reported.
    package func killAll() {
        queues = queues.map { _ in [] }
        let tasks = running.compactMap { $0 }
        for task in tasks where !task.exited { kill(-task.pid, SIGTERM) }
        let deadline = monotonicNow() + 0.35
        while tasks.contains(where: { !$0.exited }) && monotonicNow() < deadline {
            for task in tasks where !task.exited { reap(task) }
            usleep(5000)
        }
        for task in tasks where !task.exited {
            kill(-task.pid, SIGKILL)
            var status: Int32 = 0
            while waitpid(task.pid, &status, 0) < 0 && errno == EINTR {}
            task.exited = true
        }
        for task in tasks { release(task, killingGroup: true) }
        running = running.map { _ in nil }
    }

    private func start(_ task: Running) throws {
        var outputEnds: [Int32] = [-1, -1], errorEnds: [Int32] = [-1, -1]
        guard swiftpar_pipe(&outputEnds) == 0 else { throw SystemError.current("pipe for task \(task.assignment.sequence) on rank \(settings.rank)") }
        guard swiftpar_pipe(&errorEnds) == 0 else {
            close(outputEnds[0]); close(outputEnds[1])
            throw SystemError.current("pipe for task \(task.assignment.sequence) on rank \(settings.rank)")
        }
        let extra = ["SWIFTPAR_TASK=\(task.assignment.sequence)", "SWIFTPAR_RANK=\(settings.rank)", "SWIFTPAR_SLOT=\(task.assignment.slot)",
                     "PARALLEL_SEQ=\(task.assignment.sequence)", "PARALLEL_JOBSLOT=\(task.assignment.slot)"]
        var command = task.assignment.command
        command.append(0)
        let pid: pid_t = withCStrings([shellArgument, "-c"]) { leading in
            command.withUnsafeBufferPointer { commandBytes in
                withCStrings(environment + extra) { environmentPointers in
                    // The shell, -c, the command (bytes, maybe not UTF-8), and the end.
                    var arguments = Array(leading.dropLast())
                    arguments.append(UnsafeMutablePointer(mutating: UnsafeRawPointer(commandBytes.baseAddress!).assumingMemoryBound(to: CChar.self)))
                    arguments.append(nil)
                    return swiftpar_spawn_task(shellArgument, arguments, environmentPointers, nullInput, outputEnds[1], errorEnds[1])
                }
            }
        }
        let spawnError = errno
        close(outputEnds[1])
        close(errorEnds[1])
        guard pid > 0 else {
            close(outputEnds[0]); close(errorEnds[0])
            throw SystemError("starting \(shellArgument) for task \(task.assignment.sequence) on rank \(settings.rank)", code: spawnError)
        }
        _ = swiftpar_guardian_tell(guardian, Int32(pid))
        task.pid = pid
        task.startTime = wallClockNow()
        task.startClock = monotonicNow()
        task.outputDescriptor = outputEnds[0]
        task.errorDescriptor = errorEnds[0]
        task.processDescriptor = swiftpar_pidfd_open(pid)
        task.exited = false
        task.status = 0
    }

    /// Reads what a task's stream holds now; closes it at its end.
    private func readOutput(_ task: Running, stream: Int32) {
        let descriptor = stream == 1 ? task.outputDescriptor : task.errorDescriptor
        guard descriptor >= 0 else { return }
        let got = read(descriptor, scratch.baseAddress!, scratch.count)
        if got > 0 {
            let bytes = UnsafeRawBufferPointer(start: scratch.baseAddress!, count: got)
            if stream == 1 {
                task.output.append(contentsOf: bytes)
                task.outputByteCount += got
            } else {
                task.errors.append(contentsOf: bytes)
            }
        }
        if got == 0 || (got < 0 && errno != EINTR && errno != EAGAIN) {
            close(descriptor)
            if stream == 1 { task.outputDescriptor = -1 } else { task.errorDescriptor = -1 }
        }
    }

    private func reap(_ task: Running) {
        guard !task.exited else { return }
        var status: Int32 = 0
        let result = waitpid(task.pid, &status, WNOHANG)
        if result == task.pid {
            task.exited = true
            task.status = status
            task.endClock = monotonicNow()
        }
    }

    /// Passes on output that should not wait for the task's end.
    private func passOn(_ task: Running, emit: (RunnerEvent) throws -> Void) throws {
        if settings.lineBuffered {
            for stream: Int32 in [1, 2] {
                while task.unacknowledged < settings.window {
                    let buffer = stream == 1 ? task.output : task.errors
                    // Complete lines; a line longer than a piece goes in pieces.
                    let cut: Int
                    if buffer.count >= settings.pieceSize {
                        cut = buffer[..<settings.pieceSize].lastIndex(of: 10).map { $0 + 1 } ?? settings.pieceSize
                    } else if let lastNewline = buffer.lastIndex(of: 10) {
                        cut = lastNewline + 1
                    } else {
                        break
                    }
                    try send(task, stream: stream, count: cut, emit: emit)
                }
            }
            return
        }
        if task.attempt < settings.attempts {
            // This attempt may fail and be run again, and then its output must not have been
            // printed: once it is large, it waits in a file instead of being passed on.
            if task.output.count + task.errors.count > settings.holdLimit {
                if !task.output.isEmpty { task.keptAside.append(try keptAside.keep(task.output, stream: 1)) }
                if !task.errors.isEmpty { task.keptAside.append(try keptAside.keep(task.errors, stream: 2)) }
                task.output = []
                task.errors = []
            }
            return
        }
        if !task.streaming && task.output.count + task.errors.count > settings.holdLimit { task.streaming = true }
        guard task.streaming else { return }
        // Whole pieces only: fewer, larger messages (what is left goes with the task's end).
        while task.unacknowledged < settings.window, task.output.count >= settings.pieceSize {
            try send(task, stream: 1, count: settings.pieceSize, emit: emit)
        }
        while task.unacknowledged < settings.window, task.errors.count >= settings.pieceSize {
            try send(task, stream: 2, count: settings.pieceSize, emit: emit)
        }
    }

    private func send(_ task: Running, stream: Int32, count: Int, emit: (RunnerEvent) throws -> Void) throws {
        let bytes: [UInt8]
        if stream == 1 {
            bytes = Array(task.output[..<count])
            task.output.removeFirst(count)
        } else {
            bytes = Array(task.errors[..<count])
            task.errors.removeFirst(count)
        }
        task.unacknowledged += 1
        try emit(.output(sequence: task.assignment.sequence, stream: stream, bytes: bytes))
    }

    private func finish(slot: Int, emit: (RunnerEvent) throws -> Void) throws {
        guard let task = running[slot] else { return }
        release(task, killingGroup: task.killStep >= 0)
        let signal = task.status & 0x7F
        let exitValue: Int32 = task.timedOut ? -1 : (signal == 0 ? (task.status >> 8) & 0xFF : 0)
        let result = TaskResult(sequence: task.assignment.sequence, slot: task.assignment.slot, startTime: task.startTime,
                                runtime: task.endClock - task.startClock, exitValue: exitValue, signal: signal,
                                outputByteCount: task.outputByteCount, output: task.output, errors: task.errors, timedOut: task.timedOut)
        if result.failed && task.attempt < settings.attempts {
            // Try again on the same slot at once; this attempt's output is dropped.
            for piece in task.keptAside { keptAside.forget(piece) }
            let retry = Running(task.assignment)
            retry.attempt = task.attempt + 1
            retry.unacknowledged = task.unacknowledged
            retry.streaming = task.streaming
            try start(retry)
            running[slot] = retry
            return
        }
        running[slot] = nil
        for piece in task.keptAside {
            try keptAside.release(piece) { bytes in try emit(.output(sequence: task.assignment.sequence, stream: piece.stream, bytes: bytes)) }
        }
        try emit(.finished(result))
    }

    /// Closes a finished task's descriptors and takes its group back from the guardian.
    /// Closes the task's descriptors and takes its process group out of the guardian's care;
    /// `killingGroup` (a task being stopped: a timeout, `--halt now`, an interrupt) first kills
    /// what is left of the group, as GNU parallel does: a process in it that ignores SIGTERM
    /// outlived the shell that led it.
    private func release(_ task: Running, killingGroup: Bool = false) {
        if killingGroup { kill(-task.pid, SIGKILL) }
        for descriptor in [task.outputDescriptor, task.errorDescriptor, task.processDescriptor] where descriptor >= 0 { close(descriptor) }
        task.outputDescriptor = -1
        task.errorDescriptor = -1
        task.processDescriptor = -1
        _ = swiftpar_guardian_tell(guardian, -Int32(task.pid))
    }
}

/// Seconds since 1970, to the microsecond.
func wallClockNow() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}
