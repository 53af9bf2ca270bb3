import Atomics
import CSwiftParLinux
#if canImport(Glibc)
import Glibc
#endif

/// The memory all ranks of a local job share: one anonymous `MAP_SHARED` mapping made before
/// the ranks start (inherited through fork, or as a memfd descriptor by spawned ranks), so it
/// has no name anywhere and only this job's processes can reach it.
///
/// Layout (every field that two processes write sits on its own cache line):
///
/// - the job block: the first failure (rank, kind, value, message) and the ending flag;
/// - one block per rank: its state (running, finished, failed), its doorbell (a futex word),
///   whether it sleeps, its pid, and what it is waiting for;
/// - one ring per ordered pair of ranks (sender → receiver): see `Ring`.
///
/// The rings are reserved, not committed (`MAP_NORESERVE`): a page costs memory only once a
/// message has passed through it, so a job of a thousand ranks that talk to a few neighbours
/// each needs little.
///
/// `@unchecked Sendable`: its stored properties never change after `init`, and the memory it
/// maps is only touched through atomics or through a ring's bytes, which the ring's head and
/// tail hand from one side to the other.
final class SharedRegion: @unchecked Sendable {
    static let lineSize = 64
    static let messageCapacity = 2048
    static let jobBlockSize = 4096
    static let rankBlockSize = 512
    /// The most local ranks a job may have.
    static let maximumRanks = 4096

    let base: UnsafeMutableRawPointer
    let byteCount: Int
    let size: Int
    let ringCapacity: Int

    /// Ring capacity for `size` ranks: 1 MiB for a few ranks, less as pairs multiply, at least 16 KiB.
    static func ringCapacity(for size: Int) -> Int {
        let pairs = max(size * (size - 1), 1)
        var capacity = 1 << 20
        while capacity > 16 << 10 && capacity * pairs > 256 << 20 { capacity >>= 1 }
        return capacity
    }

    static func byteCount(for size: Int) -> Int {
        ringsOffset(for: size) + size * (size - 1) * (Ring.dataOffset + ringCapacity(for: size))
    }

    /// Where the rings start: after the job block, the rank blocks and the table of used rings
    /// (one byte per pair, rounded up to whole lines).
    static func ringsOffset(for size: Int) -> Int {
        jobBlockSize + size * rankBlockSize + (size * size + lineSize - 1) / lineSize * lineSize
    }

    /// Maps a new region for `size` ranks: anonymous memory that forked ranks inherit, or, with
    /// `shareable`, a memfd (`descriptor`) that spawned ranks inherit and map.
    convenience init(size: Int, shareable: Bool = false) throws {
        guard shareable else {
            try self.init(size: size, descriptor: -1, fresh: true)
            return
        }
        let descriptor = swiftpar_memfd_create("swiftpar-local-job")
        guard descriptor >= 0 else { throw SystemError.current("memfd_create for the shared memory of \(size) local ranks") }
        guard ftruncate(descriptor, off_t(Self.byteCount(for: size))) == 0 else {
            let failure = SystemError.current("ftruncate of the shared memory of \(size) local ranks to \(Self.byteCount(for: size)) bytes")
            close(descriptor)
            throw failure
        }
        do {
            try self.init(size: size, descriptor: descriptor, fresh: true)
        } catch {
            close(descriptor)
            throw error
        }
    }

    /// Maps the region a spawning rank 0 made, from the memfd `descriptor` it passed down.
    convenience init(joining descriptor: Int32, size: Int) throws {
        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            throw SystemError.current("fstat of descriptor \(descriptor), the shared memory of the local job this rank was started for")
        }
        guard Int(status.st_size) == Self.byteCount(for: size) else {
            throw SystemError("descriptor \(descriptor) holds \(status.st_size) bytes, not the \(Self.byteCount(for: size)) of a local job of \(size) ranks", code: EINVAL)
        }
        try self.init(size: size, descriptor: descriptor, fresh: false)
    }

    /// The memfd behind the region, or -1 for anonymous memory.
    let descriptor: Int32

    private init(size: Int, descriptor: Int32, fresh: Bool) throws {
        precondition(size >= 1 && size <= Self.maximumRanks)
        self.size = size
        self.descriptor = descriptor
        ringCapacity = Self.ringCapacity(for: size)
        byteCount = Self.byteCount(for: size)
        let flags = descriptor < 0 ? MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE : MAP_SHARED | MAP_NORESERVE
        guard let mapped = mmap(nil, byteCount, PROT_READ | PROT_WRITE, flags, descriptor, 0), mapped != MAP_FAILED else {
            throw SystemError.current("mmap of \(byteCount) bytes of shared memory for \(size) local ranks")
        }
        base = mapped
        guard fresh else { return }
        // Fresh memory is zero; the atomics start at their initial values explicitly.
        failedRank.store(-1, ordering: .relaxed)
        for rank in 0..<size {
            state(of: rank).store(RankState.running.rawValue, ordering: .relaxed)
        }
    }

    func atomic(at offset: Int) -> UnsafeAtomic<Int> {
        UnsafeAtomic(at: (base + offset).assumingMemoryBound(to: UnsafeAtomic<Int>.Storage.self))
    }

    // MARK: The job block

    /// The first rank that failed, or -1.
    var failedRank: UnsafeAtomic<Int> { atomic(at: 0) }
    /// How it failed (`FailureKind`).
    var failureKind: UnsafeAtomic<Int> { atomic(at: 8) }
    /// The signal number or exit status, by kind.
    var failureValue: UnsafeAtomic<Int> { atomic(at: 16) }
    /// Length of the failure message, set after the message is written.
    var failureMessageLength: UnsafeAtomic<Int> { atomic(at: 24) }
    /// Set once by whichever thread ends the job, so only one does.
    var ending: UnsafeAtomic<Int> { atomic(at: Self.lineSize) }
    /// Non-zero while rank 0 handles dead workers itself (a map with retries): a dead rank is
    /// then recorded in its own block only, and the job goes on.
    var toleratesFailures: UnsafeAtomic<Int> { atomic(at: Self.lineSize + 8) }
    /// Spawned ranks that have mapped the region and are ready (spawn start method).
    var joinedRanks: UnsafeAtomic<Int> { atomic(at: Self.lineSize + 16) }
    var failureMessage: UnsafeMutableRawPointer { base + 2 * Self.lineSize }

    /// Records the job's first failure; later ones are ignored. Returns whether this one was first.
    @discardableResult
    func recordFailure(rank: Int, kind: FailureKind, value: Int = 0, message: String = "") -> Bool {
        guard failedRank.compareExchange(expected: -1, desired: rank, ordering: .acquiringAndReleasing).exchanged else {
            return false
        }
        failureKind.store(kind.rawValue, ordering: .relaxed)
        failureValue.store(value, ordering: .relaxed)
        var text = message
        let length = text.withUTF8 { bytes -> Int in
            let n = min(bytes.count, Self.messageCapacity)
            if n > 0 { failureMessage.copyMemory(from: bytes.baseAddress!, byteCount: n) }
            return n
        }
        failureMessageLength.store(length, ordering: .releasing)
        return true
    }

    /// What happened to the first rank that failed, in words: "was killed by signal 9 (SIGKILL)".
    func failureDescription() -> (rank: Int, text: String)? {
        let rank = failedRank.load(ordering: .acquiring)
        guard rank >= 0 else { return nil }
        let value = failureValue.load(ordering: .relaxed)
        switch FailureKind(rawValue: failureKind.load(ordering: .relaxed)) {
        case .signal?:
            return (rank, "was killed by signal \(value) (\(signalName(Int32(value))))")
        case .exitStatus?:
            return (rank, "exited with status \(value)")
        case .threw?:
            let length = failureMessageLength.load(ordering: .acquiring)
            let bytes = UnsafeRawBufferPointer(start: failureMessage, count: length)
            return (rank, "failed: " + String(decoding: bytes, as: UTF8.self))
        case .interrupted?:
            return (rank, "was interrupted by signal \(value) (\(signalName(Int32(value))))")
        case .endedBeforeJoining?:
            let how = value < 0 ? "was killed by signal \(-value) (\(signalName(Int32(-value))))" : "exited with status \(value)"
            return (rank, "\(how) before it reached SwiftPar.run; a spawned rank runs the program from the start of main and must call SwiftPar.run as rank 0 did")
        case nil:
            return (rank, "failed")
        }
    }

    // MARK: Per-rank blocks

    private func rankBlock(_ rank: Int) -> Int { Self.jobBlockSize + rank * Self.rankBlockSize }
    func state(of rank: Int) -> UnsafeAtomic<Int> { atomic(at: rankBlock(rank)) }
    /// Non-zero while the rank is about to sleep or sleeping on its doorbell.
    func sleeping(_ rank: Int) -> UnsafeAtomic<Int> { atomic(at: rankBlock(rank) + Self.lineSize) }
    /// The rank's doorbell: a futex word others increment to wake it.
    func doorbell(_ rank: Int) -> UnsafeMutablePointer<UInt32> {
        (base + rankBlock(rank) + 2 * Self.lineSize).assumingMemoryBound(to: UInt32.self)
    }
    func doorbellAtomic(_ rank: Int) -> UnsafeAtomic<UInt32> {
        UnsafeAtomic(at: UnsafeMutableRawPointer(doorbell(rank)).assumingMemoryBound(to: UnsafeAtomic<UInt32>.Storage.self))
    }
    func pid(of rank: Int) -> UnsafeAtomic<Int> { atomic(at: rankBlock(rank) + 3 * Self.lineSize) }
    /// How this rank ended when it failed while failures were tolerated (`FailureKind`), and the value.
    func ownFailureKind(_ rank: Int) -> UnsafeAtomic<Int> { atomic(at: rankBlock(rank) + 4 * Self.lineSize) }
    func ownFailureValue(_ rank: Int) -> UnsafeAtomic<Int> { atomic(at: rankBlock(rank) + 4 * Self.lineSize + 8) }
    /// Non-zero while the rank waits inside swiftpar.
    func waiting(_ rank: Int) -> UnsafeAtomic<Int> { atomic(at: rankBlock(rank) + 5 * Self.lineSize) }
    /// Counts the rank's completed waits and messages: it changes while the rank makes progress.
    func progress(_ rank: Int) -> UnsafeAtomic<Int> { atomic(at: rankBlock(rank) + 6 * Self.lineSize) }
    /// Non-zero once the rank has joined the job (a spawned rank that reached `SwiftPar.run`).
    func joined(_ rank: Int) -> UnsafeAtomic<Int> { atomic(at: rankBlock(rank) + 7 * Self.lineSize) }

    /// Records that `rank` ended badly, for this rank alone (failures tolerated).
    func recordRankFailure(rank: Int, kind: FailureKind, value: Int) {
        ownFailureKind(rank).store(kind.rawValue, ordering: .relaxed)
        ownFailureValue(rank).store(value, ordering: .relaxed)
        state(of: rank).store(RankState.failed.rawValue, ordering: .releasing)
    }

    /// How `rank` ended, in words, when it failed on its own.
    func rankFailureDescription(_ rank: Int) -> String {
        let value = ownFailureValue(rank).load(ordering: .relaxed)
        switch FailureKind(rawValue: ownFailureKind(rank).load(ordering: .relaxed)) {
        case .signal?: return "was killed by signal \(value) (\(signalName(Int32(value))))"
        case .exitStatus?: return "exited with status \(value)"
        default: return "failed"
        }
    }

    /// Wakes `rank` if it sleeps on its doorbell.
    @inline(__always)
    func ring(_ rank: Int) {
        doorbellAtomic(rank).wrappingIncrement(ordering: .sequentiallyConsistent)
        _ = swiftpar_futex_wake(doorbell(rank))
    }

    // MARK: Rings

    /// The ring that carries messages from `source` to `destination` (never the same rank).
    func ring(from source: Int, to destination: Int) -> Ring {
        // Pairs are numbered skipping source == destination.
        let column = destination < source ? destination : destination - 1
        let index = source * (size - 1) + column
        let offset = Self.ringsOffset(for: size) + index * (Ring.dataOffset + ringCapacity)
        return Ring(base: base + offset, capacity: ringCapacity)
    }

    /// Set by `source` before its first message to `destination`. A rank that looks for messages
    /// from many sources reads its own row of this table and only the rings set in it: reading
    /// a ring no one wrote would give shared memory a page for nothing, and a rank that looks
    /// at every ring (a send waiting for room, a receive from any source) made a job's start-up
    /// grow with the square of its ranks, past what the memory holds at 4,096 ranks.
    func ringUsed(from source: Int, to destination: Int) -> UnsafeAtomic<UInt8> {
        let offset = Self.jobBlockSize + size * Self.rankBlockSize + destination * size + source
        return UnsafeAtomic(at: (base + offset).assumingMemoryBound(to: UnsafeAtomic<UInt8>.Storage.self))
    }
}

enum RankState: Int {
    case running = 0, finished, failed
}

enum FailureKind: Int {
    case threw = 1, signal, exitStatus, interrupted
    /// A spawned rank that ended before it joined: the value is its exit status, or minus the signal.
    case endedBeforeJoining
}

/// A single-producer, single-consumer byte ring in shared memory.
///
/// `head` counts bytes ever written (only the producer stores it) and `tail` bytes ever read
/// (only the consumer stores it); each on its own cache line. The producer publishes bytes
/// with a releasing store of `head` after copying them, the consumer frees space with a
/// releasing store of `tail` after copying out, so neither ever sees a half-written byte.
struct Ring {
    static let dataOffset = 128
    let base: UnsafeMutableRawPointer
    let capacity: Int

    var head: UnsafeAtomic<Int> { UnsafeAtomic(at: base.assumingMemoryBound(to: UnsafeAtomic<Int>.Storage.self)) }
    var tail: UnsafeAtomic<Int> { UnsafeAtomic(at: (base + 64).assumingMemoryBound(to: UnsafeAtomic<Int>.Storage.self)) }
    var data: UnsafeMutableRawPointer { base + Self.dataOffset }

    /// Copies `count` bytes into the ring at absolute position `position`, wrapping around.
    func copyIn(_ source: UnsafeRawPointer, count: Int, at position: Int) {
        let start = position & (capacity - 1)
        let first = min(count, capacity - start)
        (data + start).copyMemoryAtFullSpeed(from: source, byteCount: first)
        if first < count { data.copyMemoryAtFullSpeed(from: source + first, byteCount: count - first) }
    }

    /// The `count` bytes at absolute position `position`, if they do not wrap around the end.
    @inline(__always)
    func contiguousBytes(at position: Int, count: Int) -> UnsafeRawBufferPointer? {
        let start = position & (capacity - 1)
        guard start + count <= capacity else { return nil }
        return UnsafeRawBufferPointer(start: data + start, count: count)
    }

    /// Copies `count` bytes out of the ring from absolute position `position`, wrapping around.
    func copyOut(_ destination: UnsafeMutableRawPointer, count: Int, at position: Int) {
        let start = position & (capacity - 1)
        let first = min(count, capacity - start)
        destination.copyMemoryAtFullSpeed(from: data + start, byteCount: first)
        if first < count { (destination + first).copyMemoryAtFullSpeed(from: data, byteCount: count - first) }
    }
}

/// The header in front of every message in a ring.
struct FrameHeader {
    static let size = 32
    var length: Int
    var tag: Int
    var context: Int

    func write(into ring: Ring, at position: Int) {
        var words = (length, tag, context, 0)
        withUnsafeBytes(of: &words) { ring.copyIn($0.baseAddress!, count: Self.size, at: position) }
    }

    static func read(from ring: Ring, at position: Int) -> FrameHeader {
        var words = (0, 0, 0, 0)
        withUnsafeMutableBytes(of: &words) { ring.copyOut($0.baseAddress!, count: size, at: position) }
        return FrameHeader(length: words.0, tag: words.1, context: words.2)
    }
}

/// The conventional name of a signal: "SIGKILL".
func signalName(_ signal: Int32) -> String {
    switch signal {
    case SIGHUP: return "SIGHUP"
    case SIGINT: return "SIGINT"
    case SIGQUIT: return "SIGQUIT"
    case SIGILL: return "SIGILL"
    case SIGTRAP: return "SIGTRAP"
    case SIGABRT: return "SIGABRT"
    case SIGBUS: return "SIGBUS"
    case SIGFPE: return "SIGFPE"
    case SIGKILL: return "SIGKILL"
    case SIGSEGV: return "SIGSEGV"
    case SIGPIPE: return "SIGPIPE"
    case SIGALRM: return "SIGALRM"
    case SIGTERM: return "SIGTERM"
    case SIGUSR1: return "SIGUSR1"
    case SIGUSR2: return "SIGUSR2"
    case SIGSTOP: return "SIGSTOP"
    case SIGTSTP: return "SIGTSTP"
    default: return "signal \(signal)"
    }
}
