#if canImport(Glibc)
import Glibc
#endif

/// A server process that holds shared dictionaries and lists for other processes: the
/// article's `Manager`. Every operation is a request to the server, so each one is atomic.
///
/// ```swift
/// let manager = try Manager()
/// let scores = manager.dictionary("scores", of: Int.self)
/// let seen = manager.list("seen", of: Int.self)
/// // in any process forked after this: try scores.set(7, for: "worker_1"); try seen.append(1)
/// print(try scores.snapshot(), try seen.snapshot())
/// try manager.shutdown()
/// ```
///
/// Requests travel through a `SharedQueue`; each answer comes back in a mailbox slot of shared
/// memory that the asking process reserved, so any number of processes can ask at once.
public final class Manager: @unchecked Sendable {
    // Sendable: its properties never change after init; the mailbox slots in shared memory
    // are guarded by `mailboxLock`, a process-shared mutex, and the request queue by its own.
    enum Operation: Codable {
        case set(name: String, key: String, value: [UInt8])
        case get(name: String, key: String)
        case remove(name: String, key: String)
        case dictionary(name: String)
        case append(name: String, value: [UInt8])
        case list(name: String)
        case stop
    }

    struct Request: Codable {
        var slot: Int
        /// The slot's reservation this request belongs to: an answer for an older one (its
        /// asker died and the slot was taken back) is not written.
        var generation: Int = 0
        var operation: Operation
    }

    enum Answer: Codable {
        case none
        case value([UInt8]?)
        case dictionary([String: [UInt8]])
        case list([[UInt8]])
        case failure(String)
    }

    private let requests: SharedQueue<Request>
    private let mailboxes: SharedMapping
    private let mailboxLock: ProcessLock
    private let answered: ProcessCondition
    private let slotCount: Int
    private let slotSize: Int
    private let server: ChildProcess
    private var stopped = false

    /// Starts the server process. Up to `slots` requests may wait for their answers at once;
    /// reads whose answers are larger than `answerCapacity` bytes fail with an error (writes
    /// answer nothing, so they are not limited by it). Throws `SwiftParUsageError` when `slots`
    /// is below 1, `answerCapacity` is below `minimumAnswerCapacity`, or the mailboxes would
    /// not fit in memory.
    public init(slots: Int = 32, answerCapacity: Int = 256 << 10) throws {
        guard slots >= 1 else { throw SwiftParUsageError("a Manager needs at least one slot, not \(slots)") }
        guard answerCapacity >= Self.minimumAnswerCapacity else {
            throw SwiftParUsageError("a Manager's answer capacity must be at least \(Self.minimumAnswerCapacity) bytes (room for an error), not \(answerCapacity)")
        }
        guard answerCapacity <= Int.max - 64,
              !slots.multipliedReportingOverflow(by: 64 + answerCapacity).overflow else {
            throw SwiftParUsageError("a Manager cannot hold \(slots) answers of \(answerCapacity) bytes")
        }
        slotCount = slots
        slotSize = answerCapacity
        requests = try SharedQueue(capacity: 4 << 20, producers: 1)
        let mutexSize = alignedSize(MemoryLayout<pthread_mutex_t>.stride)
        let conditionSize = alignedSize(MemoryLayout<pthread_cond_t>.stride)
        mailboxes = try SharedMapping(byteCount: mutexSize + conditionSize + slots * (64 + answerCapacity))
        mailboxLock = try ProcessLock(mapping: mailboxes, at: 0)
        answered = try ProcessCondition(mapping: mailboxes, at: mutexSize)
        let (requests, slotsBase, slotSize) = (requests, mailboxes.base + mutexSize + conditionSize, answerCapacity)
        let (lock, condition) = (mailboxLock, answered)
        server = ChildProcess {
            var dictionaries: [String: [String: [UInt8]]] = [:]
            var lists: [String: [[UInt8]]] = [:]
            while let request = try requests.get() {
                let answer: Answer
                switch request.operation {
                case let .set(name, key, value):
                    dictionaries[name, default: [:]][key] = value
                    answer = .none
                case let .get(name, key):
                    answer = .value(dictionaries[name]?[key])
                case let .remove(name, key):
                    dictionaries[name]?.removeValue(forKey: key)
                    answer = .none
                case let .dictionary(name):
                    answer = .dictionary(dictionaries[name] ?? [:])
                case let .append(name, value):
                    lists[name, default: []].append(value)
                    answer = .none
                case let .list(name):
                    answer = .list(lists[name] ?? [])
                case .stop:
                    return
                }
                var bytes = try BinaryEncoder().encode(answer)
                if bytes.count > slotSize {
                    bytes = try BinaryEncoder().encode(Answer.failure("the answer is \(bytes.count) bytes, more than the manager's \(slotSize)-byte answer capacity"))
                }
                lock.withLock {
                    let slot = slotsBase + request.slot * (64 + slotSize)
                    // The asker died and its slot went to another request meanwhile.
                    guard (slot + 16).load(as: Int.self) == request.generation, slot.load(as: Int.self) == 1 else { return }
                    slot.storeBytes(of: 2, as: Int.self)                     // answered
                    (slot + 8).storeBytes(of: bytes.count, as: Int.self)
                    bytes.withUnsafeBytes { (slot + 64).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                    condition.broadcast()
                }
            }
        }
        try server.start()
    }

    /// A handle on the dictionary called `name`, whose values are of `type`.
    public func dictionary<Value: Codable>(_ name: String, of type: Value.Type = Value.self) -> ManagedDictionary<Value> {
        ManagedDictionary(manager: self, name: name)
    }

    /// A handle on the list called `name`, whose elements are of `type`.
    public func list<Element: Codable>(_ name: String, of type: Element.Type = Element.self) -> ManagedList<Element> {
        ManagedList(manager: self, name: name)
    }

    /// The smallest `answerCapacity`: an answer that does not fit is replaced by an error,
    /// which must fit.
    public static let minimumAnswerCapacity = 256

    /// Stops the server and waits for it to exit.
    public func shutdown() throws {
        guard !stopped else { return }
        stopped = true
        do {
            try post(Request(slot: -1, operation: .stop))
        } catch SharedMemoryError.managerExited {
            // Already gone: joining it says how it ended.
        }
        try server.join()
    }

    /// Queues `request` for the server, waiting while the queue is full for as long as the
    /// server runs: a server that died takes no more requests, and its queue would stay full.
    private func post(_ request: Request) throws {
        while true {
            do {
                return try requests.put(request, timeout: 0.2)
            } catch SharedMemoryError.timedOut {
                guard server.isRunningForCaller else { throw SharedMemoryError.managerExited }
            }
        }
    }

    deinit { try? shutdown() }

    /// Sends `operation` and waits for its answer.
    func ask(_ operation: Operation) throws -> Answer {
        guard !stopped else { throw SharedMemoryError.managerExited }
        let base = mailboxes.base + alignedSize(MemoryLayout<pthread_mutex_t>.stride) + alignedSize(MemoryLayout<pthread_cond_t>.stride)
        func slot(_ index: Int) -> UnsafeMutableRawPointer { base + index * (64 + slotSize) }
        // Reserve a free mailbox (state 0 free, 1 waiting, 2 answered; then the byte count, the
        // reservation's generation and the asking process).
        let (index, generation): (Int, Int) = mailboxLock.withLock {
            while true {
                if let free = (0..<slotCount).first(where: { slot($0).load(as: Int.self) == 0 }) {
                    let generation = (slot(free) + 16).load(as: Int.self) &+ 1
                    slot(free).storeBytes(of: 1, as: Int.self)
                    (slot(free) + 16).storeBytes(of: generation, as: Int.self)
                    (slot(free) + 24).storeBytes(of: Int(getpid()), as: Int.self)
                    return (free, generation)
                }
                // None is free: take back those of askers that died waiting.
                let abandoned = (0..<slotCount).filter { index in
                    Self.hasEnded(pid_t(truncatingIfNeeded: (slot(index) + 24).load(as: Int.self)))
                }
                for index in abandoned { slot(index).storeBytes(of: 0, as: Int.self) }
                if abandoned.isEmpty { _ = answered.wait(mailboxLock, until: monotonicNow() + 0.2) }
            }
        }
        do {
            try post(Request(slot: index, generation: generation, operation: operation))
        } catch {
            mailboxLock.withLock {
                slot(index).storeBytes(of: 0, as: Int.self)
                answered.broadcast()
            }
            // (A request too large for the queue is `tooLarge`: the server never saw it.)
            throw error
        }
        let bytes: [UInt8] = try mailboxLock.withLock {
            while slot(index).load(as: Int.self) != 2 {
                // Taken back by another process, which judged this one dead: the answer went to it.
                guard (slot(index) + 16).load(as: Int.self) == generation else {
                    throw SharedMemoryError.managerFailed(reason: "this process's mailbox was taken back by another while it waited, and its answer lost")
                }
                if !answered.wait(mailboxLock, until: monotonicNow() + 0.2), !server.isRunningForCaller {
                    slot(index).storeBytes(of: 0, as: Int.self)
                    throw SharedMemoryError.managerExited
                }
            }
            let count = (slot(index) + 8).load(as: Int.self)
            let bytes = [UInt8](UnsafeRawBufferPointer(start: slot(index) + 64, count: count))
            slot(index).storeBytes(of: 0, as: Int.self)
            answered.broadcast()
            return bytes
        }
        let answer = try BinaryDecoder().decode(Answer.self, from: bytes)
        if case .failure(let message) = answer { throw SharedMemoryError.managerFailed(reason: message) }
        return answer
    }
}

extension Manager {
    /// Whether process `pid` has ended: it does not exist, or it is a zombie. A process whose
    /// state cannot be read (another pid namespace, /proc hidden) counts as running.
    static func hasEnded(_ pid: pid_t) -> Bool {
        if kill(pid, 0) != 0 && errno == ESRCH { return true }
        return processState(Int(pid)) == UInt8(ascii: "Z")
    }
}

extension ChildProcess {
    /// Whether the child still runs, as far as any process that inherited this object can tell.
    var isRunningForCaller: Bool {
        // Joined: the pid may belong to another process by now.
        guard let pid, exitCode == nil else { return false }
        return kill(pid, 0) == 0 && !ChildProcess.isZombie(pid)
    }
}

/// A dictionary held by a `Manager`, shared by every process that has the handle.
public struct ManagedDictionary<Value: Codable>: Sendable {
    let manager: Manager
    /// The dictionary's name in its manager.
    public let name: String

    /// Sets the value for `key` (nil removes it).
    public func set(_ value: Value?, for key: String) throws {
        if let value {
            _ = try manager.ask(.set(name: name, key: key, value: try BinaryEncoder().encode(value)))
        } else {
            _ = try manager.ask(.remove(name: name, key: key))
        }
    }

    /// The value for `key`, if any.
    public func value(for key: String) throws -> Value? {
        guard case .value(let bytes?) = try manager.ask(.get(name: name, key: key)) else { return nil }
        return try BinaryDecoder().decode(Value.self, from: bytes)
    }

    /// A copy of the whole dictionary.
    public func snapshot() throws -> [String: Value] {
        guard case .dictionary(let all) = try manager.ask(.dictionary(name: name)) else { return [:] }
        return try all.mapValues { try BinaryDecoder().decode(Value.self, from: $0) }
    }
}

/// A list held by a `Manager`, shared by every process that has the handle.
public struct ManagedList<Element: Codable>: Sendable {
    let manager: Manager
    /// The list's name in its manager.
    public let name: String

    /// Appends `element` at the end.
    public func append(_ element: Element) throws {
        _ = try manager.ask(.append(name: name, value: try BinaryEncoder().encode(element)))
    }

    /// A copy of the whole list, in the order elements were appended.
    public func snapshot() throws -> [Element] {
        guard case .list(let all) = try manager.ask(.list(name: name)) else { return [] }
        return try all.map { try BinaryDecoder().decode(Element.self, from: $0) }
    }
}
