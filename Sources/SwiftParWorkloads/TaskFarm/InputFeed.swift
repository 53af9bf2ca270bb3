#if canImport(Glibc)
import Glibc
#endif
import CSwiftParLinux
import SwiftPar

/// The tasks' inputs, read on a thread of their own so that a source that is slow to produce
/// (a pipe from a program still running, a terminal, a FIFO) never holds up rank 0: its tasks
/// start, their output is printed, their time limits are kept and the other ranks are served
/// while it waits, as GNU parallel starts a task as soon as its input arrives. Rank 0 takes
/// what has been read without waiting, and polls `wakeDescriptor`, which becomes readable when
/// more has come.
final class InputFeed: @unchecked Sendable {
    /// What `next()` found.
    enum Next {
        case inputs([[UInt8]])
        /// Nothing read yet: poll `wakeDescriptor`.
        case pending
        case end
    }

    /// The most tasks' inputs read ahead of the tasks handed out.
    static let capacity = 1024

    /// Readable when inputs (or their end) have come since `next()` last found none.
    let wakeDescriptor: Int32
    private let wakeWriter: Int32
    private let inputs: TaskInputs
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let room = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    // Guarded by `lock`.
    private var queue: [[[UInt8]]] = []
    private var head = 0
    private var ended = false
    private var failure: (any Error)?
    private var stopped = false

    init(_ inputs: TaskInputs) throws {
        self.inputs = inputs
        var ends: [Int32] = [-1, -1]
        guard swiftpar_pipe(&ends) == 0 else { throw SystemError.current("pipe for the task farm's inputs") }
        for end in ends { _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK) }
        (wakeDescriptor, wakeWriter) = (ends[0], ends[1])
        pthread_mutex_init(lock, nil)
        pthread_cond_init(room, nil)
        try startJoinableThread({ [self] in self.readAll() }, detached: true)
    }

    deinit {
        close(wakeDescriptor)
        close(wakeWriter)
        pthread_cond_destroy(room)
        pthread_mutex_destroy(lock)
        room.deallocate()
        lock.deallocate()
    }

    /// Ends the reading thread once it is not blocked in a read (it may be, on a source that
    /// produces nothing more; the process then ends with it still there).
    func stop() {
        pthread_mutex_lock(lock)
        stopped = true
        pthread_cond_broadcast(room)
        pthread_mutex_unlock(lock)
    }

    /// The next task's inputs if they have been read, `.pending` if not yet, `.end` after the
    /// last; rethrows what reading them met, once the inputs read before it are taken.
    func next() throws -> Next {
        // Emptied before the queue is looked at: inputs added after this leave a new byte.
        var scratch = [UInt8](repeating: 0, count: 64)
        while read(wakeDescriptor, &scratch, scratch.count) > 0 {}
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        if head < queue.count {
            let values = queue[head]
            queue[head] = []
            head += 1
            if head >= 256 && head * 2 >= queue.count {
                queue.removeFirst(head)
                head = 0
            }
            pthread_cond_signal(room)
            return .inputs(values)
        }
        if let failure {
            self.failure = nil
            throw failure
        }
        return ended ? .end : .pending
    }

    private func readAll() {
        while true {
            let result = Result { try inputs.next() }
            pthread_mutex_lock(lock)
            while !stopped && queue.count - head >= Self.capacity { pthread_cond_wait(room, lock) }
            if stopped {
                pthread_mutex_unlock(lock)
                return
            }
            let wasEmpty = head == queue.count
            var done = false
            switch result {
            case .success(let values?): queue.append(values)
            case .success(nil): (ended, done) = (true, true)
            case .failure(let error): (failure, ended, done) = (error, true, true)
            }
            pthread_mutex_unlock(lock)
            if wasEmpty || done {
                var byte: UInt8 = 1
                _ = write(wakeWriter, &byte, 1)
            }
            if done { return }
        }
    }
}
