// swiftpar-async-checks: an async program, as a new user writes one, that the tests run under
// every backend. It awaits before SwiftPar.run and inside it, uses the async pool forms, hands
// the communicator to a child task, and prints what rank 0 collected: the output must be the
// same on every backend.
//
//     swiftpar-async-checks [await-first | run-first | long-item | cancel | cancel-one | unawaited | nested]
//
// nested: an async map's items call Pool.map themselves, in its async and its synchronous form.
// unawaited: the closure returns while a task it did not await is inside an async map.
// cancel: every rank cancels its task that runs an async map of 200 items of 50 ms after 300 ms:
// the map ends well before its 10 s, throwing CancellationError on every rank.
// cancel-one: only the last rank cancels: it gets CancellationError, the others the item that
// failed on it.
// cancel-serving: rank 0 (working on no item) cancels its map, whose items ignore cancellation:
// it throws CancellationError early, and the other ranks stop soon after.
// interruptible: run before any await (forked ranks), then a long async map: Ctrl-C must end it
// as it ends a synchronous job.
// long-item: an async pool item computes for 2 to 3 s, noting its progress, under a stall timeout
// shorter than that: the ranks waiting meanwhile must wait on.
#if canImport(Glibc)
import Glibc
#endif
import SwiftPar

/// Writes `text` to standard error at once.
func writeError(_ text: String) {
    var bytes = Array(text.utf8)
    _ = write(2, &bytes, bytes.count)
}

/// Items done on this rank.
actor Counter {
    private(set) var value = 0
    func add() { value += 1 }
}

/// Something to await that is not a sleep: an actor's state.
actor Ledger {
    private var entries: [String] = []
    func record(_ entry: String) { entries.append(entry) }
    var count: Int { entries.count }
}

struct Report: Codable, Sendable, Equatable {
    var rank: Int
    var ledgerEntries: Int
    var fromChildTask: Int
}

/// A synchronous pool call, made from async code (where the async form would be chosen).
func syncMap(_ world: Communicator, _ items: [Int]) throws -> Int {
    try Pool(world).map(items) { $0 }?.first ?? 0
}

@main
struct AsyncChecks {
    static func main() async {
        let mode = CommandLine.arguments.dropFirst().first ?? "await-first"
        let ledger = Ledger()
        if mode == "await-first" {
            // Awaits before run: the Swift runtime's threads are running by now.
            try? await Task.sleep(for: .milliseconds(5))
            await ledger.record("before run")
        }
        if mode == "interruptible" {
            // Run before any await (forked ranks), then every rank awaits in an async map that
            // would take minutes: the main thread is parked by the Swift runtime meanwhile.
            await SwiftPar.run { world in
                print("rank \(world.rank) started")
                let results = try await Pool(world).map(Array(0..<100_000), options: MapOptions(chunkSize: .fixed(1))) { item async throws -> Int in
                    if item == 0 { writeError("waiting\n") }
                    try await Task.sleep(for: .milliseconds(5))
                    return item
                }
                print("interruptible: \(results?.count ?? -1) results, never interrupted")
            }
            return
        }
        if mode == "long-item" {
            await SwiftPar.run { world in
                let results = try await Pool(world).map(Array(0..<4), options: MapOptions(chunkSize: .fixed(1))) { item async throws -> Int in
                    guard item == 1 else { return item }
                    var now = timespec()
                    clock_gettime(CLOCK_MONOTONIC, &now)
                    let end = now.tv_sec + 3
                    while now.tv_sec < end {
                        world.noteProgress()
                        try await Task.sleep(for: .milliseconds(5))
                        clock_gettime(CLOCK_MONOTONIC, &now)
                    }
                    return item
                }
                if let results { print("long item: \(results)") }
            }
        }
        if mode == "cancel" || mode == "cancel-one" {
            await SwiftPar.run { world in
                let start = ContinuousClock.now
                let mapping = Task {
                    try await Pool(world).map(Array(0..<200), options: MapOptions(chunkSize: .fixed(1))) { item async throws -> Int in
                        try await Task.sleep(for: .milliseconds(50))
                        return item
                    }
                }
                try await Task.sleep(for: .milliseconds(300))
                if mode == "cancel" || world.rank == world.size - 1 { mapping.cancel() }
                let seconds = { (ContinuousClock.now - start) / .seconds(1) }
                let when = { seconds() < 5 ? "early" : "late (\(seconds()) s)" }
                do {
                    let results = try await mapping.value
                    print("rank \(world.rank): the cancelled map returned \(results?.count ?? -1) results")
                } catch is CancellationError {
                    print("rank \(world.rank): CancellationError, \(when())")
                } catch let PoolError.itemFailed(_, rank, message) {
                    print("rank \(world.rank): an item failed on rank \(rank): \(message), \(when())")
                }
                try world.barrier()
            }
        }
        if mode == "cancel-serving" {
            // Rank 0 works on no item and cancels its task, whose items are on the other ranks
            // and ignore cancellation (found by a helper: the 600 items all ran, and rank 0
            // returned every result from a cancelled task).
            await SwiftPar.run { world in
                let start = ContinuousClock.now
                let done = Counter()
                let mapping = Task {
                    var options = MapOptions(chunkSize: .fixed(2))
                    options.rankZeroWorks = false
                    return try await Pool(world).map(Array(0..<600), options: options) { item async throws -> Int in
                        let deadline = ContinuousClock.now + .milliseconds(10)
                        while ContinuousClock.now < deadline {}
                        await done.add()
                        return item
                    }
                }
                if world.rank == 0 {
                    try await Task.sleep(for: .milliseconds(300))
                    mapping.cancel()
                }
                do {
                    let results = try await mapping.value
                    let count = results.map { "\($0.count) results" } ?? "nil"
                    let items = await done.value
                    print("rank \(world.rank): \(count), \(items < 150 ? "stopped early" : "ran \(items) items")")
                } catch is CancellationError {
                    let seconds = (ContinuousClock.now - start) / .seconds(1)
                    print("rank \(world.rank): CancellationError, \(seconds < 2 ? "early" : "late (\(seconds) s)")")
                }
                try world.barrier()
            }
            return
        }
        if mode == "nested" {
            // A pool call inside an async item, async or not, is refused as nested on every rank.
            await SwiftPar.run { world in
                for form in ["async", "sync"] {
                    do {
                        _ = try await Pool(world).map(Array(0..<6)) { item async throws -> Int in
                            if form == "async" { return try await Pool(world).map([item]) { $0 }?.first ?? 0 }
                            return try syncMap(world, [item])
                        }
                        print("rank \(world.rank): \(form) inner map ran")
                    } catch let PoolError.itemFailed(_, _, message) {
                        print("rank \(world.rank): \(form) inner map: \(message)")
                    }
                }
            }
        }
        if mode == "unawaited" {
            // A task that maps while the closure returns without awaiting it: every rank must
            // end the job with the same words, not crash (MPI) or exit 0 (local).
            await SwiftPar.run { world in
                // 600 items of 20 ms: still running when the closure returns, however slowly
                // the machine starts the task.
                _ = Task.detached {
                    _ = try await Pool(world).map(Array(0..<600)) { item async throws -> Int in
                        try await Task.sleep(for: .milliseconds(20))
                        return item
                    }
                }
                try await Task.sleep(for: .milliseconds(500))
            }
        }
        await SwiftPar.run { world in
            try await Task.sleep(for: .milliseconds(1))
            await ledger.record("rank \(world.rank)")
            // The communicator is Sendable: a child task may use it while this one waits.
            let fromChild = try await Task { try world.allreduce(world.rank + 1, .sum) }.value
            let sizes = try await Pool(world).map(Array(0..<40)) { item async throws -> Int in
                try await Task.sleep(for: .microseconds(100))
                return item * item
            }
            let total = try await Pool(world).mapReduce(Array(1...100), into: 0, everyRank: true, { item async throws in item }) { $0 += $1 }
            let report = Report(rank: world.rank, ledgerEntries: await ledger.count, fromChildTask: fromChild)
            guard let reports = try world.gather(report, root: 0) else { return }
            print("ranks \(world.size): sum of squares \(sizes!.reduce(0, +)), mapReduce total \(total!)")
            for report in reports {
                print("rank \(report.rank): ledger \(report.ledgerEntries - (mode == "await-first" ? 1 : 0)) entry, child task saw \(report.fromChildTask)")
            }
        }
    }
}
