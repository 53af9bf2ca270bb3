#if canImport(Glibc)
import Glibc
#endif
import SwiftPar

/// A check that did not hold, with the rank that saw it.
struct CheckFailed: Error, CustomStringConvertible {
    let description: String
}

/// Throws, naming the rank and what it saw, unless `condition` holds.
func expect(_ condition: @autoclosure () -> Bool, _ world: Communicator, _ what: @autoclosure () -> String) throws {
    if !condition() {
        throw CheckFailed(description: "rank \(world.rank) check failed: \(what())")
    }
}

/// Throws unless `actual == expected`, showing both.
func expectEqual<T: Equatable>(_ actual: T, _ expected: T, _ world: Communicator, _ what: String) throws {
    try expect(actual == expected, world, "\(what): got \(actual), expected \(expected)")
}

/// Runs `body`, which must throw a `CommunicatorError` accepted by `match`.
func expectError(_ world: Communicator, _ what: String, _ match: (CommunicatorError) -> Bool, _ body: () throws -> Void) throws -> String {
    do {
        try body()
    } catch let error as CommunicatorError {
        try expect(match(error), world, "\(what): unexpected error \(error)")
        return "\(error)"
    }
    throw CheckFailed(description: "rank \(world.rank) check failed: \(what) did not throw")
}

func writeError(_ text: String) {
    var copy = text
    copy.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

/// A message type with the shapes user code sends: nesting, enums, optionals, dictionaries.
struct Record: Codable, Equatable {
    enum Kind: Codable, Equatable {
        case point(x: Double, y: Double)
        case label(String)
        case empty
    }
    var origin: Int
    var name: String
    var kinds: [Kind]
    var note: String?
    var scores: [String: Int]
    var samples: [Double]

    static func made(by rank: Int, size: Int = 3) -> Record {
        Record(origin: rank, name: "rank \(rank) · ñandú ✓",
               kinds: [.point(x: Double(rank), y: -1.5), .label("r\(rank)"), .empty],
               note: rank % 2 == 0 ? nil : "odd",
               scores: ["a": rank, "b": rank * rank],
               samples: (0..<size * 10).map { Double($0) + Double(rank) / 8 })
    }
}

/// Starts a thread that sleeps for as long as the process runs.
func startIdleThread() {
    var thread = pthread_t()
    pthread_create(&thread, nil, { _ in
        while true { sleep(60) }
    }, nil)
}

/// Sends `signal` to this process from a thread of its own once `delay` microseconds have
/// passed: for a rank that must be killed or stopped while it is inside a swiftpar call.
func signalSelf(_ signal: Int32, afterMicroseconds delay: UInt32) {
    let plan = UnsafeMutablePointer<(signal: Int32, delay: UInt32)>.allocate(capacity: 1)
    plan.initialize(to: (signal, delay))
    var thread = pthread_t()
    _ = pthread_create(&thread, nil, { raw in
        let plan = raw!.assumingMemoryBound(to: (signal: Int32, delay: UInt32).self)
        let (signal, delay) = plan.pointee
        plan.deallocate()
        usleep(delay)
        kill(getpid(), signal)
        return nil
    }, plan)
}
