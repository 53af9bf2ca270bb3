// swiftpar-checks: scenarios the test suite runs as real jobs (under mpirun, or as a single
// rank). Each rank checks what it received; a wrong value throws, which ends the job non-zero
// with a message naming the rank. On success every rank reports a summary that rank 0 prints
// as "rank R: ok SCENARIO SUMMARY", one line per rank in rank order.
#if canImport(Glibc)
import Glibc
#endif
import SwiftPar

let arguments = Array(CommandLine.arguments.dropFirst())
/// The process that ran main up to SwiftPar.run: a forked rank inherits rank 0's value, a
/// spawned rank runs main itself.
let pidBeforeRun = getpid()
/// Scenarios about how the ranks were started.
let startScenarios: [String: @Sendable (Communicator) throws -> String] = [
    // Reports whether this rank's process ran main itself.
    "start-method": { _ in "ran-main-itself=\(pidBeforeRun == getpid())" },
    // The same, in a program that runs a second thread when it calls SwiftPar.run.
    "threads-before-run": { _ in "ran-main-itself=\(pidBeforeRun == getpid())" },
    // The same, in a program that started a child process (and so the thread children are
    // forked from) before SwiftPar.run: its ranks are still forked.
    "child-before-run": { _ in "ran-main-itself=\(pidBeforeRun == getpid())" },
    // Spawned ranks exit before they reach SwiftPar.run; rank 0 must say so.
    "exit-before-run": { _ in "unreachable" },
    // A SharedValue made before SwiftPar.run, added to by every rank: shared by forked ranks
    // only, and the job says so when they are not.
    "shared-before-run": { world in
        sharedBeforeRun?.add(1)
        try world.barrier()
        return "value=\(sharedBeforeRun?.value ?? -1)"
    },
]
let sharedBeforeRun = arguments.first == "shared-before-run" ? try? SharedValue(0) : nil
let everyScenario = scenarios.merging(poolScenarios) { first, _ in first }.merging(multiprocessingScenarios) { first, _ in first }
    .merging(faultScenarios) { first, _ in first }.merging(startScenarios) { first, _ in first }
guard let name = arguments.first, let scenario = everyScenario[name] else {
    let known = everyScenario.keys.sorted().joined(separator: ", ")
    writeError("usage: swiftpar-checks SCENARIO\nscenarios: \(known)\n")
    exit(2)
}

if name == "threads-before-run" { startIdleThread() }
if name == "child-before-run" {
    let child = ChildProcess {}
    do { try child.start(); try child.join() } catch { writeError("\(error)\n"); exit(2) }
}
if name == "exit-before-run", getenv("SWIFTPAR_LOCAL_JOB") != nil {
    exit(3)
}

SwiftPar.run { world in
    let summary = try scenario(world)
    if summary.hasPrefix(soloPrefix) {
        print("rank \(world.rank): ok \(name) \(summary.dropFirst(soloPrefix.count))")
        return
    }
    guard let all = try world.gather(summary, root: 0) else { return }
    for (rank, text) in all.enumerated() {
        print("rank \(rank): ok \(name) \(text)")
    }
}
