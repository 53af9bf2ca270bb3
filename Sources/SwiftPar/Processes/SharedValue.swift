import Atomics
#if canImport(Glibc)
import Glibc
#endif

/// A number in shared memory, seen and changed by every process forked after it was made:
/// the article's `Value`. Reading and writing `value` are single loads and stores; a
/// read-modify-write needs `withLock` (or, for `Int`, the atomic `add`).
///
/// ```swift
/// let counter = try SharedValue(0)
/// let lock = try ProcessLock()
/// // in each of 4 processes: for _ in 0..<10_000 { lock.withLock { counter.value += 1 } }
/// // counter.value == 40_000
/// ```
public final class SharedValue<Value: PlainNumber>: @unchecked Sendable {
    // Sendable like a pointer to shared memory: `value` is a plain load or store of one number
    // (use a ProcessLock, or `add`, which is atomic, for read-modify-write), as Python's Value.
    let mapping: SharedMapping
    let storage: UnsafeMutablePointer<Value>
    /// The lock that `withLock` holds; use it to make several changes at once.
    public let lock: ProcessLock

    /// Makes a shared value holding `initial`.
    public init(_ initial: Value) throws {
        let lockSize = alignedSize(MemoryLayout<pthread_mutex_t>.stride)
        mapping = try SharedMapping(byteCount: lockSize + alignedSize(MemoryLayout<Value>.stride))
        lock = try ProcessLock(mapping: mapping, at: 0)
        storage = (mapping.base + lockSize).bindMemory(to: Value.self, capacity: 1)
        storage.initialize(to: initial)
    }

    /// The current value. `value += 1` from several processes at once loses updates, as in
    /// the article's race; use `withLock` or `add`.
    public var value: Value {
        get { storage.pointee }
        set { storage.pointee = newValue }
    }

    /// Changes the value holding its lock.
    public func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        try lock.withLock { try body(&storage.pointee) }
    }
}

extension SharedValue where Value == Int {
    /// Adds `delta` atomically, without the lock, and returns the new value.
    @discardableResult
    public func add(_ delta: Int) -> Int {
        let atomic = UnsafeAtomic<Int>(at: UnsafeMutableRawPointer(storage).assumingMemoryBound(to: UnsafeAtomic<Int>.Storage.self))
        return atomic.wrappingIncrementThenLoad(by: delta, ordering: .sequentiallyConsistent)
    }
}

/// A fixed-size array of numbers in shared memory: the article's `Array`.
public final class SharedArray<Element: PlainNumber>: RandomAccessCollection, MutableCollection, @unchecked Sendable {
    // Sendable like a pointer to shared memory: each element is a plain load or store; guard
    // read-modify-write with a ProcessLock, as with Python's Array.
    let mapping: SharedMapping
    let storage: UnsafeMutablePointer<Element>
    /// The lock that `withLock` holds.
    public let lock: ProcessLock
    /// Number of elements.
    public let count: Int

    /// Makes a shared array holding `elements`.
    public convenience init<S: Sequence>(_ elements: S) throws where S.Element == Element {
        let values = Array(elements)
        try self.init(count: values.count) { $0.initialize(from: values, count: values.count) }
    }

    /// Makes a shared array of `count` copies of `value`. Throws `SwiftParUsageError` for a
    /// negative count, and `SharedMemoryError.cannotMap` when the memory cannot be had.
    public convenience init(repeating value: Element, count: Int) throws {
        guard count >= 0 else { throw SwiftParUsageError("a SharedArray cannot hold \(count) elements") }
        try self.init(count: count) { $0.initialize(repeating: value, count: count) }
    }

    /// Maps room for `count` elements, then lets `fill` initialize them in place.
    private init(count: Int, fill: (UnsafeMutablePointer<Element>) -> Void) throws {
        self.count = count
        let lockSize = alignedSize(MemoryLayout<pthread_mutex_t>.stride)
        let (bytes, overflow) = Swift.max(count, 1).multipliedReportingOverflow(by: MemoryLayout<Element>.stride)
        guard !overflow, bytes <= Int.max - lockSize - 64 else {
            throw SharedMemoryError.cannotMap(bytes: Int.max, reason: "\(count) elements of \(MemoryLayout<Element>.stride) bytes are more than memory can address")
        }
        mapping = try SharedMapping(byteCount: lockSize + alignedSize(bytes))
        lock = try ProcessLock(mapping: mapping, at: 0)
        storage = (mapping.base + lockSize).bindMemory(to: Element.self, capacity: Swift.max(count, 1))
        fill(storage)
    }

    /// Index of the first element (0).
    public var startIndex: Int { 0 }
    /// One past the last element.
    public var endIndex: Int { count }

    /// The element at `index`; a plain load or store, like the article's `arr[i] *= 2`.
    public subscript(index: Int) -> Element {
        get {
            precondition(index >= 0 && index < count, "SharedArray index \(index) out of 0..<\(count)")
            return storage[index]
        }
        set {
            precondition(index >= 0 && index < count, "SharedArray index \(index) out of 0..<\(count)")
            storage[index] = newValue
        }
    }

    /// Changes the elements holding the array's lock.
    public func withLock<R>(_ body: (UnsafeMutableBufferPointer<Element>) throws -> R) rethrows -> R {
        try lock.withLock { try body(UnsafeMutableBufferPointer(start: storage, count: count)) }
    }
}
