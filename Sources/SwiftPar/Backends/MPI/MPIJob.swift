import CSwiftParLinux
import CSwiftParMPI
import Atomics
#if canImport(Glibc)
import Glibc
#endif

/// What every communicator of an MPI process shares: which ranks of the job have finished,
/// learned from notices on a private duplicate of `MPI_COMM_WORLD`, and the loop in which every
/// operation that can block waits.
///
/// Open MPI's blocking calls cannot be interrupted: a receive from a rank that has returned
/// from its closure would wait forever. So swiftpar starts every operation nonblocking
/// (`MPI_Isend`, `MPI_Irecv`, `MPI_Ibarrier`, ...) and waits by testing it, and between tests
/// reads the control channel. A rank whose closure returns tells every other rank so before it
/// calls `MPI_Finalize`; a rank waiting on it then throws the same error the local backend
/// throws, within about a second, instead of hanging.
///
/// Used by one thread at a time (`OneOperationAtATime`; the default thread level is
/// `MPI_THREAD_SERIALIZED`): the thread running the rank's operation, or one noting progress
/// while none runs.
final class MPIJob {
    /// The job of this process, once MPI is initialised.
    nonisolated(unsafe) static var current: MPIJob?

    let control: MPI_Comm
    let worldRank: Int
    let worldSize: Int
    /// Which world ranks have announced that they finished.
    @exclusivity(unchecked) private(set) var finished: [Bool]
    @exclusivity(unchecked) private(set) var finishedCount = 0
    /// More ranks on this host than cores: waiting ranks yield the core at once.
    let oversubscribed: Bool
    /// The launcher put every rank of the job on this machine.
    let allOnThisMachine: Bool
    /// `SWIFTPAR_STALL_TIMEOUT`: seconds a rank may wait without progress before the job ends.
    let stallTimeout: Double?
    @exclusivity(unchecked) private var noticeSends: [MPI_Request?] = []
    /// What notices carry (this rank's number), kept for as long as the process runs so that no
    /// nonblocking send ever reads freed memory.
    private let noticeWords: UnsafeMutablePointer<Int64>
    @exclusivity(unchecked) private var stall = StallState()
    /// Operations this rank has started waiting for: with `noted`, what it answers a rank that
    /// asks whether it makes progress.
    @exclusivity(unchecked) private var progress: Int64 = 0
    /// Calls of `noteProgress()`, from any thread.
    private let noted = ManagedAtomic<Int64>(0)
    /// `noted` when this rank last read the control channel for it.
    @exclusivity(unchecked) private var notedWhenPolled: Int64 = 0
    /// Whether this rank answers while it computes rather than from a wait.
    @exclusivity(unchecked) private var computing = false
    @exclusivity(unchecked) private var lastProgressPoll = 0.0
    @exclusivity(unchecked) private var lastFastPoll = 0.0
    /// `MPI_THREAD_SINGLE` or `FUNNELED`: only the main thread may call MPI.
    private let mainThreadOnly: Bool
    /// The words of answers in flight, freed once every notice sent has completed.
    @exclusivity(unchecked) private var answerWords: [UnsafeMutablePointer<Int64>] = []
    /// Communicators with receives started and not yet waited for, and what each does while
    /// this rank waits for anything: takes their messages off the queue (see
    /// `MPITransport.beginReceive`), so that a sender blocked on one can finish.
    @exclusivity(unchecked) private var whileWaiting: [ObjectIdentifier: () throws -> Bool] = [:]
    /// Whether there is such work (read in every wait's loop), and whether it is running now
    /// (a wait inside it does not start it again).
    @exclusivity(unchecked) private var hasWorkWhileWaiting = false
    @exclusivity(unchecked) private var doingWhileWaiting = false

    /// Sets (or with nil, removes) what `owner` does while this rank waits; the work returns
    /// false once its owner is gone. Called only by the thread running an operation.
    func setWorkWhileWaiting(for owner: ObjectIdentifier, _ work: (() throws -> Bool)?) {
        whileWaiting[owner] = work
        hasWorkWhileWaiting = !whileWaiting.isEmpty
    }

    /// What a wait does between its tests, for operations that test once and return
    /// (`MPI_Test` moves posted receives along too): a loop that polls a request is a wait.
    @inline(__always)
    func serveStartedReceives() throws {
        if hasWorkWhileWaiting { try workWhileWaiting() }
    }

    /// Does the work, on the thread that runs the rank's operations only: a request finished
    /// from a deinitializer on another thread only waits.
    @inline(never)
    private func workWhileWaiting() throws {
        guard !doingWhileWaiting, OneOperationAtATime.isHeldByThisThread else { return }
        doingWhileWaiting = true
        defer { doingWhileWaiting = false }
        for (owner, work) in Array(whileWaiting) where try !work() {
            setWorkWhileWaiting(for: owner, nil)
        }
    }

    enum NoticeTag: Int32 {
        case finished = 1, stallQuery, stallAnswer
    }

    init(world: MPI_Comm, rank: Int, size: Int, settings: JobSettings) throws {
        var dup: MPI_Comm? = nil
        let code = MPI_Comm_dup(world, &dup)
        guard code == MPI_SUCCESS, let dup else {
            throw CommunicatorError.mpi(operation: "MPI_Comm_dup", code: code, message: mpiErrorString(code), rank: rank)
        }
        MPI_Comm_set_errhandler(dup, swiftpar_errors_return())
        control = dup
        worldRank = rank
        worldSize = size
        finished = Array(repeating: false, count: size)
        noticeWords = .allocate(capacity: 4)
        noticeWords.initialize(repeating: Int64(rank), count: 4)
        let localRanks = Int(getenvString("OMPI_COMM_WORLD_LOCAL_SIZE") ?? "") ?? 1
        oversubscribed = localRanks > SwiftPar.onlineCores
        allOnThisMachine = getenvString("OMPI_COMM_WORLD_LOCAL_SIZE") != nil && localRanks == size
        stallTimeout = settings.stallTimeout
        mainThreadOnly = ["single", "funneled"].contains(settings.mpiThreadLevel)
        settings.shareCores(ranksOnHost: localRanks)
    }

    // MARK: Notices

    /// Reads every notice that has arrived on the control channel.
    func pollNotices() throws {
        while true {
            var flag: Int32 = 0
            var status = MPI_Status()
            try check(MPI_Iprobe(Int32(MPI_ANY_SOURCE), Int32(MPI_ANY_TAG), control, &flag, &status), "MPI_Iprobe")
            guard flag != 0 else { return }
            var words = [Int64](repeating: 0, count: 4)
            try check(MPI_Recv(&words, 4, swiftpar_type_int64(), status.MPI_SOURCE, status.MPI_TAG, control, swiftpar_status_ignore()),
                      "MPI_Recv")
            let source = Int(status.MPI_SOURCE)
            switch NoticeTag(rawValue: status.MPI_TAG) {
            case .finished?:
                if !finished[source] {
                    finished[source] = true
                    finishedCount += 1
                }
            case .stallQuery?:
                try answerStallQuery(from: source)
            case .stallAnswer?:
                stall.record(answer: words, from: source)
            case nil:
                break
            }
        }
    }

    /// Sends whose requests were dropped before they completed, with their communicators. A
    /// request may be dropped on any thread: the list has a lock of its own; MPI is called on
    /// them only as an operation of the thread that calls it.
    @exclusivity(unchecked) private var droppedSends: [(request: MPISendRequest, transport: MPITransport)] = []
    private let droppedLock = InProcessLock()

    /// Keeps a dropped send until it completes; forgets those that have, when no other thread
    /// is in an operation (MPI is used one thread at a time).
    func keepDroppedSend(_ request: MPISendRequest, transport: MPITransport) {
        droppedLock.withLock { droppedSends.append((request, transport)) }
        _ = try? OneOperationAtATime.run("test dropped sends", rank: worldRank) {
            let kept = droppedLock.withLock { droppedSends.map(\.request) }
            let done = kept.filter { (try? $0.test()) ?? false }
            guard !done.isEmpty else { return }
            droppedLock.withLock { droppedSends.removeAll { entry in done.contains { $0 === entry.request } } }
        }
    }

    /// Waits for every dropped send, before this rank announces that it has finished: one whose
    /// receiver finished without taking it fails the rank, as a blocking send does.
    func finishDroppedSends() throws {
        while let first = droppedLock.withLock({ droppedSends.first?.request }) {
            try first.wait()
            droppedLock.withLock { droppedSends.removeAll { $0.request === first } }
        }
    }

    /// Tells every other rank that this one has finished; called once, after its closure returned.
    func announceFinished() throws {
        for peer in 0..<worldSize where peer != worldRank {
            try sendNotice(.finished, to: peer)
        }
        // Notices are a few bytes and complete at once; testing them lets Open MPI push them out.
        let deadline = monotonicNow() + 5
        while !noticeSends.isEmpty && monotonicNow() < deadline {
            var flag: Int32 = 0
            try check(MPI_Testall(Int32(noticeSends.count), &noticeSends, &flag, swiftpar_statuses_ignore()), "MPI_Testall")
            if flag != 0 { noticeSendsCompleted() }
            try pollNotices()
        }
    }

    /// Waits, sleeping between polls, until every other rank has announced that it finished.
    ///
    /// Called between `announceFinished()` and `MPI_Finalize`. Open MPI 4.1's mpirun can hang for
    /// good, or crash, when one rank calls `MPI_Abort` while others are inside `MPI_Finalize`'s
    /// closing fence (seen here in about 1 job in 20 on a loaded machine, with plain C ranks too).
    /// A rank that is done therefore enters that fence only once no rank can fail any more; until
    /// then it sits here, where an abort elsewhere simply ends it.
    ///
    /// With a stall timeout, a rank that waits here longer than that for ranks that make no
    /// progress names them and ends the job, as a blocked operation does (no rank is in
    /// `MPI_Finalize` yet, so ending it is safe).
    func waitForEveryoneFinished() throws {
        var pause: useconds_t = 50
        var quietSince = monotonicNow()
        try pollNotices()
        while finishedCount < worldSize - 1 {
            usleep(pause)
            pause = min(pause * 2, 5_000)
            try pollNotices()
            if let stallTimeout, monotonicNow() - quietSince > stallTimeout {
                let context = MPIWaitContext(operation: Self.finishing, peers: .everyone, members: Array(0..<worldSize),
                                             rank: worldRank, activity: nil)
                _ = try checkStall(context, quiet: monotonicNow() - quietSince) { finishedCount == worldSize - 1 }
                quietSince = monotonicNow()
            }
        }
    }

    // MARK: Waiting

    /// Waits until `done` holds, testing it in a loop; between tests reads notices and throws
    /// when `context` can never be satisfied (its peers finished) or the stall timeout passes.
    @inline(__always)
    /// `idle`: the rank waits for a message to arrive (a probe), so it may sleep between tests
    /// when it shares a core.
    func wait(_ context: @autoclosure () -> MPIWaitContext, idle: Bool = false, _ done: () throws -> Bool) throws {
        progress &+= 1
        // A rank whose operations all end at once answers stall queries too (every 10 ms at most).
        if stallTimeout != nil {
            let now = monotonicNow()
            if now - lastFastPoll >= 0.01 {
                lastFastPoll = now
                try pollNotices()
            }
        }
        if try done() { return }
        try waitSlowly(context(), idle: idle, done)
    }

    private func waitSlowly(_ context: MPIWaitContext, idle: Bool, _ done: () throws -> Bool) throws {
        // With receives started, their messages are taken after a short spin, and then between
        // every two tests; otherwise the spin that answers fastest runs with nothing else in it.
        let spinLimit = hasWorkWhileWaiting ? 16 : oversubscribed ? 64 : 20_000
        let start = monotonicNow()
        var quietSince = start
        var lastPoll = start
        var failureSince: Double?
        var testsSinceFailure = 0
        var tries = 0
        var naps = 0
        while true {
            if try done() { return }
            tries += 1
            testsSinceFailure += 1
            if tries < spinLimit {
                swiftpar_spin_pause()
                continue
            }
            if hasWorkWhileWaiting { try workWhileWaiting() }
            let now = monotonicNow()
            if now - lastPoll >= 0.002 {
                lastPoll = now
                try pollNotices()
                if context.failure(finished: finished) != nil {
                    // A notice can overtake the last messages the finished rank sent on another
                    // communicator, and other ranks may be finishing too: keep testing a little
                    // longer, then report every rank known to have finished by then. "Longer"
                    // counts tests as well as time, so that a rank the scheduler kept off its
                    // core meanwhile still gives Open MPI the chance to deliver what arrived.
                    if let since = failureSince {
                        if now - since > finishGrace, testsSinceFailure > 100, let failure = context.failure(finished: finished) {
                            throw failure
                        }
                    } else {
                        failureSince = now
                        testsSinceFailure = 0
                    }
                }
                if let stallTimeout, now - quietSince > stallTimeout {
                    if try checkStall(context, quiet: now - quietSince, done: done) { return }
                    quietSince = monotonicNow()
                }
            }
            // A rank that shares its core yields it at once; one that waits for a message to
            // arrive sleeps after 5 ms, ever longer, up to a twentieth of the time it has waited
            // (at most 10 ms): one that waits long (left without work by a pool, say) would
            // otherwise take the core from a working rank thousands of times a second. Not
            // while a transfer of its own is under way (Open MPI moves it forward only when
            // the rank tests), while it takes messages off the queue for started receives (a
            // sender may wait for that), nor while it counts the tests that a finished rank's
            // last messages get before its end is reported.
            let waited = now - start
            if oversubscribed, idle, waited > 0.005, !hasWorkWhileWaiting, failureSince == nil {
                usleep(UInt32(max(50, min(Double(50 << min(naps, 8)), waited * 50_000, 10_000))))
                naps += 1
            } else if oversubscribed || waited > 0.05 {
                if waited > 1 { usleep(200) } else { sched_yield() }
            }
        }
    }

    // MARK: Stall watchdog

    /// What this rank answers about itself, and what it learned from others while stalled.
    struct StallState {
        var answers: [Int: [Int64]] = [:]
        /// The operation this rank is waiting in, for answers to others.
        var waitingIn: String?

        mutating func record(answer: [Int64], from rank: Int) { answers[rank] = answer }
    }

    private func answerStallQuery(from source: Int) throws {
        let words = UnsafeMutablePointer<Int64>.allocate(capacity: 4)
        words.initialize(repeating: 0, count: 4)
        words[0] = progress &+ noted.load(ordering: .relaxed)
        words[1] = computing ? 1 : 0
        answerWords.append(words)
        try sendNotice(.stallAnswer, to: source, words: words)
    }

    /// Starts a notice to `peer` carrying this rank's number, or `words`, which must stay
    /// allocated until the notice completes; completed notices are dropped as new ones go out.
    private func sendNotice(_ tag: NoticeTag, to peer: Int, words: UnsafeMutablePointer<Int64>? = nil) throws {
        var request: MPI_Request? = swiftpar_request_null()
        try check(MPI_Isend(words ?? noticeWords, 4, swiftpar_type_int64(), Int32(peer), tag.rawValue, control, &request), "MPI_Isend")
        noticeSends.append(request)
        if noticeSends.count > 256 {
            var flag: Int32 = 0
            try check(MPI_Testall(Int32(noticeSends.count), &noticeSends, &flag, swiftpar_statuses_ignore()), "MPI_Testall")
            if flag != 0 { noticeSendsCompleted() }
        }
    }

    /// Every notice sent so far has completed: their requests and the answers' words can go.
    private func noticeSendsCompleted() {
        noticeSends = []
        for words in answerWords { words.deallocate() }
        answerWords = []
    }

    /// This rank's sign of life while it computes (see `Communicator.noteProgress()`): counted
    /// from any thread; then, from the thread running this rank's swiftpar operations, or from
    /// any thread while none runs, the control channel is read every 10 ms so that a waiting
    /// rank's question gets an answer. Nothing at all without a stall timeout.
    func noteProgress() {
        guard stallTimeout != nil else { return }
        noted.wrappingIncrement(ordering: .relaxed)
        if mainThreadOnly && swiftpar_is_main_thread() == 0 { return }
        OneOperationAtATime.ifFree { answerWhileComputing() }
    }

    /// Reads the control channel, as a rank that computes, if progress was noted since it last
    /// did and 10 ms have passed. Runs where MPI may be called (see `noteProgress`).
    func answerWhileComputing() {
        let count = noted.load(ordering: .relaxed)
        guard count != notedWhenPolled else { return }
        let now = monotonicNow()
        guard now - lastProgressPoll >= 0.01 else { return }
        lastProgressPoll = now
        notedWhenPolled = count
        computing = true
        defer { computing = false }
        // An MPI error here meets this rank's next operation too, which reports it.
        try? pollNotices()
    }

    /// The operation a rank that is done waits in, for the others to finish.
    static let finishing = "finishing"

    /// No rank has shown this one progress for longer than the stall timeout: ask every rank,
    /// twice half a second apart, what it has done. Returns true if `done` came true meanwhile,
    /// false if a rank made progress (it answered while computing, answered in one round only,
    /// or its count moved); otherwise names the ranks that did not answer and ends the job.
    private func checkStall(_ context: MPIWaitContext, quiet: Double, done: () throws -> Bool) throws -> Bool {
        var rounds: [[Int: [Int64]]] = []
        for _ in 0..<2 {
            stall.answers = [:]
            for peer in 0..<worldSize where peer != worldRank && !finished[peer] {
                try sendNotice(.stallQuery, to: peer)
            }
            let deadline = monotonicNow() + 0.5
            while monotonicNow() < deadline {
                if try done() { return true }
                try pollNotices()
                usleep(1000)
            }
            rounds.append(stall.answers)
        }
        // A rank that finished meanwhile is reported as such, the way a wait reports it (ranks
        // that wait to finish wait for finished ones anyway).
        if context.operation != Self.finishing, let failure = context.failure(finished: finished) { throw failure }
        let peers = (0..<worldSize).filter { $0 != worldRank && !finished[$0] }
        let progressed = peers.contains { peer in
            let answers = rounds.compactMap { $0[peer] }
            return answers.contains { $0[1] != 0 } || answers.count == 1 || (answers.count == 2 && answers[0][0] != answers[1][0])
        }
        if progressed { return false }
        let silent = peers.filter { peer in rounds.allSatisfy { $0[peer] == nil } }
        // World ranks throughout: a stall is the whole job's, whatever communicator waits.
        throw CommunicatorError.stalled(operation: context.activity ?? context.operation, seconds: quiet + 1, silentRanks: silent,
                                        timeout: stallTimeout ?? 0, rank: worldRank)
    }

    func check(_ code: Int32, _ operation: @autoclosure () -> String) throws {
        guard code != MPI_SUCCESS else { return }
        throw CommunicatorError.mpi(operation: operation(), code: code, message: mpiErrorString(code), rank: worldRank)
    }
}

/// What a blocked MPI operation waits for, in the terms its error would use.
struct MPIWaitContext {
    enum Peers {
        /// A receive from one rank (world rank).
        case sender(Int)
        /// A receive from any member.
        case anySender
        /// A receive from any of these world ranks.
        case anySenderOf([Int])
        /// A send to one rank (world rank).
        case receiver(Int)
        /// Every member (a collective).
        case everyone
    }

    let operation: String
    let peers: Peers
    /// World ranks of the communicator's members, in its rank order.
    let members: [Int]
    /// This rank in the communicator.
    let rank: Int
    /// The collective or pool call this wait belongs to.
    let activity: String?

    /// The error to throw if the peers this wait needs have finished; nil while it can still end.
    func failure(finished: [Bool]) -> CommunicatorError? {
        func groupRank(_ world: Int) -> Int { members.firstIndex(of: world) ?? world }
        switch peers {
        case .sender(let world):
            guard finished[world] else { return nil }
            return .sendersFinished([groupRank(world)], anySource: false, activity: activity, rank: rank)
        case .receiver(let world):
            guard finished[world] else { return nil }
            return .receiverFinished(groupRank(world), activity: activity, rank: rank)
        case .anySender:
            let others = members.indices.filter { $0 != rank }
            guard !others.isEmpty, others.allSatisfy({ finished[members[$0]] }) else { return nil }
            return .sendersFinished(others, anySource: true, activity: activity, rank: rank)
        case .anySenderOf(let worlds):
            guard !worlds.isEmpty, worlds.allSatisfy({ finished[$0] }) else { return nil }
            return .sendersFinished(worlds.map(groupRank), anySource: true, activity: activity, rank: rank)
        case .everyone:
            let gone = members.indices.filter { $0 != rank && finished[members[$0]] }
            guard !gone.isEmpty else { return nil }
            return .sendersFinished(gone, anySource: false, activity: activity ?? operation, rank: rank)
        }
    }
}

/// How long a wait goes on after the ranks it needs have finished, before it fails: messages
/// they sent last may still be arriving, and ranks finishing together are reported together.
let finishGrace = 0.05

func mpiErrorString(_ code: Int32) -> String {
    var buffer = [CChar](repeating: 0, count: Int(MPI_MAX_ERROR_STRING) + 1)
    var length: Int32 = 0
    MPI_Error_string(code, &buffer, &length)
    return stringFromCString(buffer)
}
