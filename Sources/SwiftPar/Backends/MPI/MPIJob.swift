import CSwiftParLinux
import CSwiftParMPI
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
/// Used only from the thread that initialised MPI (the default thread level is
/// `MPI_THREAD_SINGLE`).
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
    /// `SWIFTPAR_STALL_TIMEOUT`: seconds a rank may wait without progress before the job ends.
    let stallTimeout: Double?
    @exclusivity(unchecked) private var noticeSends: [MPI_Request?] = []
    /// What notices carry (this rank's number), kept for as long as the process runs so that no
    /// nonblocking send ever reads freed memory.
    private let noticeWords: UnsafeMutablePointer<Int64>
    @exclusivity(unchecked) private var stall = StallState()

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
        oversubscribed = localRanks > max(Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), 1)
        stallTimeout = settings.stallTimeout
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
            if flag != 0 { noticeSends = [] }
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
        let start = monotonicNow()
        try pollNotices()
        while finishedCount < worldSize - 1 {
            usleep(pause)
            pause = min(pause * 2, 5_000)
            try pollNotices()
            if let stallTimeout, monotonicNow() - start > stallTimeout {
                let context = MPIWaitContext(operation: "finishing", peers: .everyone, members: Array(0..<worldSize),
                                             rank: worldRank, activity: nil)
                try reportStall(context, waited: monotonicNow() - start)
            }
        }
    }

    // MARK: Waiting

    /// Waits until `done` holds, testing it in a loop; between tests reads notices and throws
    /// when `context` can never be satisfied (its peers finished) or the stall timeout passes.
    @inline(__always)
    func wait(_ context: @autoclosure () -> MPIWaitContext, _ done: () throws -> Bool) throws {
        if try done() { return }
        try waitSlowly(context(), done)
    }

    private func waitSlowly(_ context: MPIWaitContext, _ done: () throws -> Bool) throws {
        let spinLimit = oversubscribed ? 64 : 20_000
        let start = monotonicNow()
        var lastPoll = start
        var failureSince: Double?
        var testsSinceFailure = 0
        var tries = 0
        while true {
            if try done() { return }
            tries += 1
            testsSinceFailure += 1
            if tries < spinLimit {
                swiftpar_spin_pause()
                continue
            }
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
                if let stallTimeout, now - start > stallTimeout {
                    try reportStall(context, waited: now - start)
                }
            }
            if oversubscribed || now - start > 0.05 {
                if now - start > 1 { usleep(200) } else { sched_yield() }
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
        try sendNotice(.stallAnswer, to: source)
    }

    /// Starts a notice to `peer`; completed notices are dropped as new ones go out.
    private func sendNotice(_ tag: NoticeTag, to peer: Int) throws {
        var request: MPI_Request? = swiftpar_request_null()
        try check(MPI_Isend(noticeWords, 4, swiftpar_type_int64(), Int32(peer), tag.rawValue, control, &request), "MPI_Isend")
        noticeSends.append(request)
        if noticeSends.count > 256 {
            var flag: Int32 = 0
            try check(MPI_Testall(Int32(noticeSends.count), &noticeSends, &flag, swiftpar_statuses_ignore()), "MPI_Testall")
            if flag != 0 { noticeSends = [] }
        }
    }

    /// This rank has waited longer than the stall timeout: ask every rank whether it is alive
    /// in swiftpar, name those that do not answer, and end the job.
    private func reportStall(_ context: MPIWaitContext, waited: Double) throws {
        stall.answers = [:]
        for peer in 0..<worldSize where peer != worldRank && !finished[peer] {
            try sendNotice(.stallQuery, to: peer)
        }
        let deadline = monotonicNow() + 1
        while monotonicNow() < deadline {
            try pollNotices()
            usleep(1000)
        }
        let silent = (0..<worldSize).filter { $0 != worldRank && !finished[$0] && stall.answers[$0] == nil }
        throw CommunicatorError.stalled(operation: context.operation, seconds: waited, silentRanks: silent,
                                        timeout: stallTimeout ?? 0, rank: context.rank)
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
