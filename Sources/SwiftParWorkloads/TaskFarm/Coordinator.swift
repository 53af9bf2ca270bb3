#if canImport(Glibc)
import Glibc
#endif
import SwiftPar

/// A task handed out and not yet printed.
struct FarmTask {
    var inputs: [[UInt8]]
    var command: [UInt8]
    var rank: Int
}

/// Rank 0 of a farm: reads the inputs, hands a task to a slot when the slot is free, prints,
/// logs, and decides when the farm ends.
///
/// A slot is never given a task ahead of time, as in GNU parallel: a short task never waits
/// behind a long one while another slot idles, and once `--halt` is reached or the farm is
/// interrupted, no task has been started that a free slot would not have started.
final class Coordinator {
    let options: FarmOptions
    let world: Communicator
    let progress: (FarmProgress) -> Void
    let slotsPerRank: Int
    let runner: TaskRunner
    let inputs: TaskInputs
    let printer: Printer
    let started = monotonicNow()

    /// Inputs read ahead (only when `--halt` counts a percentage, which needs the total).
    private var readAhead: [[[UInt8]]] = []
    private var readAheadIndex = 0
    private var nextSequence = 1
    private let skip: Set<Int>
    private var inputDone = false
    /// The inputs, read on a thread of their own.
    private var feed: InputFeed!
    /// Whether the last `fill()` stopped with a slot free because no input had come yet.
    private var starvedForInput = false
    private var retryQueue: [(sequence: Int, inputs: [[UInt8]])] = []
    /// Free slots, in the order they get a task.
    private var ready: [Int] = []
    private var readyIndex = 0
    private var outstanding: [Set<Int>]
    private var live: [Int]
    private var hosts: [String]
    private var finished = 0, failed = 0, succeeded = 0, skipped = 0
    private var halting: HaltPolicy.Urgency?
    private var haltStatus: Int32?
    /// Ranks asked to give back their queued tasks (`--halt soon`) that have not answered.
    private var awaitingDrops: Set<Int> = []
    private var lastDeathCheck = 0.0
    /// The number of tasks to run, when the inputs say it before they are read.
    private var knownTotal: Int?
    /// Orders on their way to workers: rank 0 never waits in a send, so a worker sending it a
    /// large message while it sends one to that worker cannot block both.
    private var sends: [(rank: Int, request: SendRequest)] = []
    /// Messages handled and tasks ended so far, to see whether anything happened in a turn.
    private var events = 0
    /// How long a turn waits on rank 0's tasks while other ranks' news (which cannot wake it)
    /// may come: briefly after something happened, longer while nothing does, and never more
    /// than a millisecond, which is as long as another rank's freed slot may stay idle.
    private var remoteWait = PollBackoff(shortest: 0.0001, longest: 0.001)

    init(options: FarmOptions, world: Communicator, progress: @escaping (FarmProgress) -> Void) throws {
        self.options = options
        self.world = world
        self.progress = progress
        slotsPerRank = max(options.slotsPerRank, 1)
        var settings = options.runner
        settings.rank = 0
        runner = try TaskRunner(settings: settings, slots: slotsPerRank)
        inputs = try TaskInputs(options.sources, separator: options.separator, link: options.link, skipEmpty: options.skipEmpty)
        var log: JobLog?
        if let path = options.joblog {
            if options.resume || options.resumeFailed {
                skip = try JobLog.finishedTasks(in: path, succeededOnly: options.resumeFailed)
            } else {
                skip = []
            }
            log = try JobLog(path: path, append: options.appendToJoblog || options.resume || options.resumeFailed, header: !options.appendToJoblog)
        } else {
            skip = []
        }
        outstanding = Array(repeating: [], count: world.size)
        live = Array(1..<world.size)
        let localHost = world.hostName
        hosts = Array(repeating: localHost, count: world.size)
        printer = Printer(keepOrder: options.keepOrder, tag: options.tag, lineBuffered: options.runner.lineBuffered, joblog: log,
                          beforePrinting: options.beforePrinting, afterPrinting: options.afterPrinting)
        printer.acknowledge = { [unowned self] rank, sequence, count in
            if rank == 0 {
                self.runner.acknowledge(sequence: sequence, count: count)
            } else if self.live.contains(rank) {
                var message = FarmMessage(.acknowledge)
                message.append(sequence)
                message.append(count)
                try self.order(message, to: rank)
            }
        }
        printer.host = { [unowned self] rank in self.hosts[rank] == localHost ? ":" : self.hosts[rank] }
        for slot in 0..<(world.size * slotsPerRank) { ready.append(slot) }
        knownTotal = inputs.knownCount.map { count in count - skip.filter { (1...max(count, 1)).contains($0) }.count }
        if case .percent? = options.halt?.threshold {
            while let values = try inputs.next() { readAhead.append(values) }
        }
        feed = try InputFeed(inputs)
    }

    /// The total number of tasks to run: known from the start for command-line values, or once
    /// every input has been read. Tasks a resumed joblog skips are left out once they are met.
    private var total: Int? {
        if inputDone { return nextSequence - 1 - skipped }
        if !readAhead.isEmpty { return readAhead.count - skipped }
        if let known = knownTotal { return known }
        return nil
    }

    func run() throws -> FarmSummary {
        world.tolerateRankFailures(true)
        defer {
            world.tolerateRankFailures(false)
            feed.stop()
        }
        try fill()
        var eventsSeen = 0
        while true {
            if sends.count > 64 { try pruneSends() }
            try receive(wait: false)
            try fill()
            if halting == .now || isFinished { break }
            let remoteBusy = !awaitingDrops.isEmpty || live.contains { !outstanding[$0].isEmpty }
            if events != eventsSeen {
                eventsSeen = events
                remoteWait.reset()
            }
            // A slot is free and its input has not come yet: wake when it does.
            let waitingForInput = starvedForInput && halting == nil
            if runner.isBusy || waitingForInput {
                // A running task, or a source still producing, is work: ranks waiting meanwhile
                // are not stalled.
                world.noteProgress()
                try printer.flushOutput()
                let wait = remoteBusy ? remoteWait.next() : runner.isBusy ? 0.05 : 1
                try runner.step(timeout: wait, extra: waitingForInput ? feed.wakeDescriptor : -1) { event in
                    switch event {
                    case .output(let sequence, let stream, let bytes):
                        try self.printer.output(sequence: sequence, stream: stream, bytes: bytes, rank: 0)
                    case .finished(let result):
                        try self.finished(result, rank: 0)
                    }
                }
                if remoteBusy && monotonicNow() - lastDeathCheck > 0.2 {
                    lastDeathCheck = monotonicNow()
                    for rank in world.failedRanks(among: live) { try rankFailed(rank, reason: "died") }
                }
            } else if remoteBusy {
                try printer.flushOutput()
                try receive(wait: true)
            } else {
                // Nothing runs anywhere and nothing more can be handed out.
                break
            }
        }
        try shutDown()
        try printer.finish()
        let seconds = monotonicNow() - started
        var status: Int32
        if let haltStatus {
            status = haltStatus
        } else if case .percent? = options.halt?.threshold {
            status = finished == 0 ? 0 : Int32((Double(failed) * 100 / Double(finished)).rounded(.up))
        } else {
            status = Int32(min(failed, 101))
        }
        if halting == nil && !isFinished {
            say("swiftpar: run: internal error: the farm stopped with tasks left\n")
            status = 255
        }
        progress(FarmProgress(done: finished, total: total, failed: failed, seconds: seconds))
        return FarmSummary(tasks: finished, failed: failed, skipped: skipped, seconds: seconds, peakMemoryKB: peakMemoryKB(), exitStatus: status)
    }

    private var isFinished: Bool {
        let noneOutstanding = awaitingDrops.isEmpty && outstanding.allSatisfy(\.isEmpty) && !runner.isBusy
        if halting != nil { return noneOutstanding }
        return noneOutstanding && inputDone && retryQueue.isEmpty
    }

    // MARK: Handing out

    private func nextTask() throws -> (sequence: Int, inputs: [[UInt8]])? {
        if !retryQueue.isEmpty { return retryQueue.removeFirst() }
        while !inputDone {
            let values: [[UInt8]]?
            if !readAhead.isEmpty {
                values = readAheadIndex < readAhead.count ? readAhead[readAheadIndex] : nil
                readAheadIndex += 1
            } else {
                switch try feed.next() {
                case .inputs(let next): values = next
                case .end: values = nil
                case .pending:
                    starvedForInput = true
                    return nil
                }
            }
            guard let values else {
                inputDone = true
                return nil
            }
            let sequence = nextSequence
            nextSequence += 1
            if skip.contains(sequence) {
                skipped += 1
                continue
            }
            printer.order(sequence)
            return (sequence, values)
        }
        return nil
    }

    /// The longest command a task may have: the shell gets it as one argument, which Linux
    /// limits to 32 pages with its final NUL.
    private static let longestCommand = 32 * sysconf(Int32(_SC_PAGESIZE)) - 1

    private func fill() throws {
        starvedForInput = false
        // Held output bounds only new tasks: a task to run again always goes out.
        while readyIndex < ready.count && halting == nil && (printer.hasRoom || !retryQueue.isEmpty) {
            let slotIndex = ready[readyIndex]
            let rank = slotIndex / slotsPerRank
            if rank != 0 && !live.contains(rank) {
                readyIndex += 1
                continue
            }
            guard let (sequence, values) = try nextTask() else { break }
            readyIndex += 1
            let command = options.template.command(inputs: values, sequence: sequence, slot: slotIndex + 1)
            guard command.count <= Self.longestCommand else {
                throw InputError(description: "task \(sequence): its command is \(command.count) bytes, more than the \(Self.longestCommand) that Linux passes to a program in one argument")
            }
            printer.register(sequence, FarmTask(inputs: values, command: command, rank: rank))
            outstanding[rank].insert(sequence)
            let assignment = TaskAssignment(sequence: sequence, slot: slotIndex + 1, localSlot: slotIndex % slotsPerRank, command: command)
            if rank == 0 {
                runner.enqueue(assignment)
            } else {
                var message = FarmMessage(.assign)
                message.append(sequence)
                message.append(slotIndex + 1)
                message.append(slotIndex % slotsPerRank)
                message.append(bytes: command)
                try order(message, to: rank)
            }
        }
        if readyIndex > 4096 {
            ready.removeFirst(readyIndex)
            readyIndex = 0
        }
    }

    /// Sends `message` to worker `rank` without waiting; a rank that has died is handled as such.
    /// Prints a note of the farm's own on standard error, the progress bar stepping aside.
    private func say(_ line: String) {
        options.beforePrinting(2)
        writeStandardError(line)
        options.afterPrinting(2, true)
    }

    private func order(_ message: FarmMessage, to rank: Int) throws {
        do {
            sends.append((rank, try world.startSend(bytes: message.bytes, to: rank, tag: TaskFarm.toWorker)))
        } catch let CommunicatorError.peerFailed(peer, reason, _, _) where live.contains(peer) {
            try rankFailed(peer, reason: reason)
        }
    }

    /// Rank `rank` has died: what it sent before it died counts, so that is read first (up to a
    /// message it did not finish sending); then its tasks are run again elsewhere.
    private func rankFailed(_ rank: Int, reason: String) throws {
        guard live.contains(rank) else { return }
        do {
            while let info = try world.probeNow(from: .rank(rank), tag: .tag(TaskFarm.toCoordinator)) {
                try handle(try world.receiveBytes(from: .rank(info.source), tag: .tag(TaskFarm.toCoordinator)).value, from: rank)
            }
        } catch CommunicatorError.peerFailed {
            // The rest of what it was sending is lost with it.
        }
        if live.contains(rank) { try rankDied(rank, reason: reason) }
    }

    /// Forgets the sends that have completed.
    private func pruneSends() throws {
        var pending: [(rank: Int, request: SendRequest)] = []
        for send in sends {
            do {
                if try !send.request.test() { pending.append(send) }
            } catch let CommunicatorError.peerFailed(peer, reason, _, _) {
                try rankFailed(peer, reason: reason)
            }
        }
        sends = pending
    }

    // MARK: Results

    /// Handles the workers' messages that have arrived; with `wait`, waits for one first.
    private func receive(wait: Bool) throws {
        var shouldWait = wait
        while !live.isEmpty {
            let info: MessageInfo?
            do {
                if live.count == world.size - 1 {
                    // Every worker is there: one probe for any of them.
                    info = shouldWait ? try world.probe(from: .any, tag: .tag(TaskFarm.toCoordinator))
                                      : try world.probeNow(from: .any, tag: .tag(TaskFarm.toCoordinator))
                } else {
                    info = try world.probe(anyOf: live, tag: TaskFarm.toCoordinator, wait: shouldWait)
                }
            } catch let CommunicatorError.peerFailed(peer, reason, _, _) where live.contains(peer) {
                try rankDied(peer, reason: reason)
                continue
            }
            guard let info else { return }
            shouldWait = false
            let bytes: [UInt8]
            do {
                bytes = try world.receiveBytes(from: .rank(info.source), tag: .tag(TaskFarm.toCoordinator)).value
            } catch let CommunicatorError.peerFailed(peer, reason, _, _) where live.contains(peer) {
                // It died while sending this message.
                try rankDied(peer, reason: reason)
                continue
            }
            try handle(bytes, from: info.source)
        }
    }

    private func handle(_ bytes: [UInt8], from rank: Int) throws {
        events += 1
        var reader = FarmMessageReader(bytes, source: rank)
        switch reader.kind {
        case .hello?:
            hosts[rank] = String(decoding: try reader.data(), as: UTF8.self)
        case .output?:
            let sequence = try reader.integer(), stream = Int32(try reader.integer())
            try printer.output(sequence: sequence, stream: stream, bytes: try reader.data(), rank: rank)
        case .finished?:
            try finished(try TaskResult(&reader), rank: rank)
        case .dropped?:
            let count = try reader.integer()
            for _ in 0..<count { try forget(try reader.integer(), rank: rank) }
            awaitingDrops.remove(rank)
        case .bye?:
            live.removeAll { $0 == rank }
        default:
            throw reader.malformed()
        }
    }

    private func forget(_ sequence: Int, rank: Int) throws {
        outstanding[rank].remove(sequence)
        try printer.forget(sequence)
    }

    private func finished(_ result: TaskResult, rank: Int) throws {
        guard outstanding[rank].remove(result.sequence) != nil else { return }
        events += 1
        ready.append(result.slot - 1)
        finished += 1
        if result.failed { failed += 1 } else { succeeded += 1 }
        if result.timedOut, let command = printer.command(of: result.sequence) {
            say("swiftpar: task \(result.sequence) ran longer than \(formatSeconds(options.runner.timeout ?? 0)) s and was killed: \(String(decoding: command, as: UTF8.self))\n")
        }
        let command = printer.command(of: result.sequence)
        try printer.finished(result, rank: rank)
        try checkHalt(result, command: command)
        progress(FarmProgress(done: finished, total: total, failed: failed, seconds: monotonicNow() - started))
    }

    private func rankDied(_ rank: Int, reason: String) throws {
        live.removeAll { $0 == rank }
        let lost = outstanding[rank].sorted()
        outstanding[rank] = []
        awaitingDrops.remove(rank)
        if !lost.isEmpty && halting == nil {
            say("swiftpar: rank \(rank) \(reason) while it held task\(lost.count == 1 ? "" : "s") \(lost.map(String.init).joined(separator: ", ")); running \(lost.count == 1 ? "it" : "them") again on the other ranks\n")
        }
        for sequence in lost.reversed() {
            guard let inputs = try printer.abandon(sequence, runAgain: halting == nil), halting == nil else { continue }
            retryQueue.insert((sequence, inputs), at: 0)
        }
    }

    // MARK: Halting

    private func checkHalt(_ result: TaskResult, command: [UInt8]?) throws {
        guard let halt = options.halt, halting != .now else { return }
        let count: Int
        let verb: String
        switch halt.condition {
        case .fail:
            guard result.failed else { return }
            (count, verb) = (failed, "failed")
        case .success:
            guard !result.failed else { return }
            (count, verb) = (succeeded, "succeeded")
        case .done:
            (count, verb) = (finished, "finished")
        }
        say("swiftpar: task \(result.sequence) \(verb): \(String(decoding: command ?? [], as: UTF8.self))\n")
        guard halting == nil else { return }
        let triggered: Bool
        // A limit of one task, given as a count or as the percentage that comes to one task
        // (100% of 1, 50% of 2), ends with that task's own status, as GNU parallel's does.
        let ownStatus = result.timedOut ? 255 : result.signal != 0 ? 128 + result.signal : result.exitValue
        switch halt.threshold {
        case .count(let limit):
            triggered = count >= limit
            if triggered {
                haltStatus = halt.condition == .success ? 0 : limit == 1 ? ownStatus : Int32(min(failed, 101))
            }
        case .percent(let percent):
            let all = max(total ?? finished, 1)
            let limit = Double(all) * percent / 100
            triggered = Double(count) >= limit
            if triggered {
                haltStatus = halt.condition == .success ? 0 : limit == 1 ? ownStatus
                    : Int32((Double(failed) * 100 / Double(all)).rounded(.up))
            }
        }
        guard triggered else { return }
        switch halt.urgency {
        case .now:
            halting = .now
            say("swiftpar: --halt \(haltDescription(halt)) reached; killing the running tasks\n")
            runner.killAll()
            for rank in live { try order(FarmMessage(.halt), to: rank) }
            printer.discardAll()
            outstanding = outstanding.map { _ in [] }
        case .soon:
            halting = .soon
            for sequence in runner.dropQueued() { try forget(sequence, rank: 0) }
            for rank in live where !outstanding[rank].isEmpty {
                awaitingDrops.insert(rank)
                try order(FarmMessage(.dropQueued), to: rank)
            }
            say("swiftpar: --halt \(haltDescription(halt)) reached; starting no more tasks, waiting for the running ones\n")
        }
    }

    private func haltDescription(_ halt: HaltPolicy) -> String {
        let condition: String
        switch halt.condition {
        case .fail: condition = "fail"
        case .success: condition = "success"
        case .done: condition = "done"
        }
        let threshold: String
        switch halt.threshold {
        case .count(let n): threshold = "\(n)"
        case .percent(let p): threshold = "\(formatSeconds(p))%"
        }
        return "\(halt.urgency == .now ? "now" : "soon"),\(condition)=\(threshold)"
    }

    /// Tells every worker to stop and waits until each has said goodbye (or died), dropping
    /// whatever else still arrives (output of tasks killed by `--halt now`).
    private func shutDown() throws {
        for rank in live where halting != .now { try order(FarmMessage(.stop), to: rank) }
        try waitForWorkers(handling: halting != .now)
    }

    /// Takes the workers' messages until each has said goodbye (or died), handling them or,
    /// without `handling`, dropping them.
    private func waitForWorkers(handling: Bool) throws {
        while !live.isEmpty {
            let info: MessageInfo?
            do {
                info = try world.probe(anyOf: live, tag: TaskFarm.toCoordinator, wait: true)
            } catch let CommunicatorError.peerFailed(peer, _, _, _) where live.contains(peer) {
                live.removeAll { $0 == peer }
                continue
            }
            guard let info else { return }
            let bytes: [UInt8]
            do {
                bytes = try world.receiveBytes(from: .rank(info.source), tag: .tag(TaskFarm.toCoordinator)).value
            } catch let CommunicatorError.peerFailed(peer, _, _, _) where live.contains(peer) {
                live.removeAll { $0 == peer }
                continue
            }
            if bytes.first == FarmMessage.Kind.bye.rawValue {
                live.removeAll { $0 == info.source }
            } else if handling {
                try handle(bytes, from: info.source)
            }
        }
        for send in sends { try? send.request.wait() }
        sends = []
    }

    /// Rank 0 failed: tells every worker to stop its tasks and end, and drops what they still
    /// send until each has said goodbye, so that none fails sending to a rank 0 that has gone
    /// (which would end the job with that worker's error instead of rank 0's).
    func haltWorkers() {
        for rank in live { try? order(FarmMessage(.halt), to: rank) }
        runner.killAll()
        try? waitForWorkers(handling: false)
        for send in sends { try? send.request.wait() }
        sends = []
    }
}

/// A wait that starts short and doubles each time it is taken, up to a limit, until reset: for
/// news that cannot wake a poll, expected soon after something happened and seldom otherwise.
struct PollBackoff {
    let shortest: Double
    let longest: Double
    private var current: Double

    init(shortest: Double, longest: Double) {
        self.shortest = shortest
        self.longest = longest
        current = shortest
    }

    /// Starts again from the shortest wait.
    mutating func reset() { current = shortest }

    /// The wait to take now, in seconds.
    mutating func next() -> Double {
        defer { current = min(current * 2, longest) }
        return current
    }
}

/// "1.5", "2", "0.25".
func formatSeconds(_ value: Double) -> String {
    if value == value.rounded() && abs(value) < 1e15 { return String(Int(value)) }
    return String(value)
}
