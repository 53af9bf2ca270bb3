#if canImport(Glibc)
import Glibc
#endif

/// A first-in, first-out queue of `Codable` values shared by processes: the article's `Queue`.
///
/// Values are encoded into a bounded ring in shared memory guarded by a process-shared mutex and
/// two conditions (not empty, not full). Any number of processes may put and get. The end of
/// the stream is part of the queue, not a sentinel value: each of the `producers` calls
/// `finish()` when done, and once all have and the queue is empty, `get()` returns nil and
/// iteration ends, in every consumer.
///
/// Make it before forking the processes that use it.
public final class SharedQueue<Element: Codable>: Sequence, @unchecked Sendable {
    // Sendable: its properties never change after init; the ring and counters in shared memory
    // are read and written holding its process-shared mutex.
    let mapping: SharedMapping
    let lock: ProcessLock
    let notEmpty: ProcessCondition
    let notFull: ProcessCondition
    let header: UnsafeMutablePointer<Int>   // [head, tail, finishedProducers, producers, count]
    let data: UnsafeMutableRawPointer
    /// Bytes the ring holds.
    public let capacity: Int

    /// A queue holding up to `capacity` bytes of encoded values, ended by `producers` calls to `finish()`.
    ///
    /// Throws `SwiftParUsageError` when `capacity` is below 64 bytes or `producers` below 1, and
    /// `SystemError` when the shared memory cannot be made.
    public convenience init(capacity: Int = 1 << 20, producers: Int = 1) throws {
        try self.init(capacity: capacity, producers: producers, counted: true)
    }

    /// `counted` false for a queue swiftpar makes for its own use (a `TaskPool`'s).
    init(capacity: Int, producers: Int, counted: Bool) throws {
        guard capacity >= 64 else { throw SwiftParUsageError("a SharedQueue needs a capacity of at least 64 bytes, not \(capacity)") }
        guard producers >= 1 else { throw SwiftParUsageError("a SharedQueue needs at least one producer, not \(producers)") }
        guard capacity <= Int.max / 2 else { throw SwiftParUsageError("a SharedQueue cannot hold \(capacity) bytes") }
        self.capacity = capacity
        let mutexSize = alignedSize(MemoryLayout<pthread_mutex_t>.stride)
        let conditionSize = alignedSize(MemoryLayout<pthread_cond_t>.stride)
        let headerSize = alignedSize(5 * MemoryLayout<Int>.stride)
        mapping = try SharedMapping(byteCount: mutexSize + 2 * conditionSize + headerSize + capacity, counted: counted)
        lock = try ProcessLock(mapping: mapping, at: 0)
        notEmpty = try ProcessCondition(mapping: mapping, at: mutexSize)
        notFull = try ProcessCondition(mapping: mapping, at: mutexSize + conditionSize)
        header = (mapping.base + mutexSize + 2 * conditionSize).bindMemory(to: Int.self, capacity: 5)
        header.initialize(repeating: 0, count: 5)
        header[3] = producers
        data = mapping.base + mutexSize + 2 * conditionSize + headerSize
    }

    private var head: Int { get { header[0] } set { header[0] = newValue } }
    private var tail: Int { get { header[1] } set { header[1] = newValue } }
    private var finishedProducers: Int { get { header[2] } set { header[2] = newValue } }
    private var producers: Int { header[3] }
    private var storedCount: Int { get { header[4] } set { header[4] = newValue } }

    /// Values waiting in the queue now.
    public var count: Int { lock.withLock { storedCount } }

    /// Whether every producer has finished.
    public var isFinished: Bool { lock.withLock { finishedProducers >= producers } }

    /// Adds `value`, waiting while the queue is full (up to `timeout` seconds, if given).
    ///
    /// Throws `SharedMemoryError.tooLarge` when the encoded value cannot fit in the queue at all,
    /// `.finished` when every producer has already finished, and `.timedOut` when `timeout`
    /// passes first.
    public func put(_ value: Element, timeout: Double? = nil) throws {
        let bytes = try BinaryEncoder().encode(value)
        let needed = 8 + bytes.count
        guard needed <= capacity else { throw SharedMemoryError.tooLarge(bytes: bytes.count, capacity: capacity) }
        let deadline = timeout.map { monotonicNow() + $0 }
        lock.lock()
        defer { lock.unlock() }
        while capacity - (head - tail) < needed {
            guard finishedProducers < producers else { throw SharedMemoryError.finished }
            if !notFull.wait(lock, until: deadline) { throw SharedMemoryError.timedOut(seconds: timeout ?? 0) }
        }
        guard finishedProducers < producers else { throw SharedMemoryError.finished }
        var length = UInt64(bytes.count)
        withUnsafeBytes(of: &length) { copyIn($0.baseAddress!, 8, at: head) }
        bytes.withUnsafeBytes { if $0.count > 0 { copyIn($0.baseAddress!, $0.count, at: head + 8) } }
        head += needed
        storedCount += 1
        notEmpty.broadcast()
    }

    /// Takes the oldest value, waiting while the queue is empty. Returns nil once every
    /// producer has finished and the queue is empty. Throws `timedOut` after `timeout` seconds.
    public func get(timeout: Double? = nil) throws -> Element? {
        try get(timeout: timeout, taking: nil)
    }

    /// `get`; with `taking`, the value is decoded and given to `taking` while the queue is still
    /// locked, before it leaves the queue: a process that dies after it was taken has recorded
    /// that it took it.
    func get(timeout: Double?, taking: ((Element) -> Void)?) throws -> Element? {
        let deadline = timeout.map { monotonicNow() + $0 }
        lock.lock()
        var locked = true
        defer { if locked { lock.unlock() } }
        while head == tail {
            if finishedProducers >= producers { return nil }
            if !notEmpty.wait(lock, until: deadline) { throw SharedMemoryError.timedOut(seconds: timeout ?? 0) }
        }
        var length: UInt64 = 0
        withUnsafeMutableBytes(of: &length) { copyOut($0.baseAddress!, 8, at: tail) }
        let count = Int(length)
        let bytes = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            if count > 0 { copyOut(UnsafeMutableRawPointer(buffer.baseAddress!), count, at: tail + 8) }
            initialized = count
        }
        if let taking {
            let value = try BinaryDecoder().decode(Element.self, from: bytes)
            taking(value)
            tail += 8 + count
            storedCount -= 1
            notFull.broadcast()
            lock.unlock()
            locked = false
            return value
        }
        tail += 8 + count
        storedCount -= 1
        notFull.broadcast()
        lock.unlock()
        locked = false
        return try BinaryDecoder().decode(Element.self, from: bytes)
    }

    /// Marks one producer as done. When all have, waiting consumers return nil.
    public func finish() {
        lock.withLock {
            finishedProducers += 1
            notEmpty.broadcast()
            notFull.broadcast()
        }
    }

    /// Iterates over values as they come, until every producer has finished and the queue is empty.
    ///
    /// An iterator cannot throw, and ending early would pass for the end of the stream, with
    /// the values after it lost. So a value that fails to decode (an `init(from:)` that rejects
    /// it, say) stops the process with a message that names the error. Call `get()` in a loop
    /// to handle such an error instead.
    public func makeIterator() -> AnyIterator<Element> {
        AnyIterator { [self] in
            do {
                return try self.get()
            } catch {
                fatalError("SharedQueue<\(Element.self)>: a value taken from the queue cannot be iterated over: \(error); call get() in a loop to handle such errors")
            }
        }
    }

    private func copyIn(_ source: UnsafeRawPointer, _ count: Int, at position: Int) {
        let start = position % capacity
        let first = Swift.min(count, capacity - start)
        (data + start).copyMemoryAtFullSpeed(from: source, byteCount: first)
        if first < count { data.copyMemoryAtFullSpeed(from: source + first, byteCount: count - first) }
    }

    private func copyOut(_ destination: UnsafeMutableRawPointer, _ count: Int, at position: Int) {
        let start = position % capacity
        let first = Swift.min(count, capacity - start)
        destination.copyMemoryAtFullSpeed(from: data + start, byteCount: first)
        if first < count { (destination + first).copyMemoryAtFullSpeed(from: data, byteCount: count - first) }
    }
}
