import Foundation
import Testing

/// How a test job is started: as a single rank, or by mpirun with a number of ranks.
enum Launch: CustomStringConvertible, Sendable {
    /// One rank in the process itself, no fork and no MPI (`SWIFTPAR_BACKEND=serial`).
    case serial
    /// Open MPI's mpirun with this many ranks.
    case mpirun(Int)
    /// The local backend forking this many ranks (`SWIFTPAR_WORKERS=n`).
    case local(Int)
    /// The local backend starting this many ranks as new processes of the program
    /// (`SWIFTPAR_WORKERS=n SWIFTPAR_START=spawn`).
    case spawned(Int)

    var description: String {
        switch self {
        case .serial: return "serial"
        case .mpirun(let n): return "mpirun -n \(n)"
        case .local(let n): return "local -n \(n)"
        case .spawned(let n): return "local -n \(n), spawned"
        }
    }

    var isMPI: Bool {
        if case .mpirun = self { return true }
        return false
    }

    var ranks: Int {
        switch self {
        case .serial: return 1
        case .mpirun(let n), .local(let n), .spawned(let n): return n
        }
    }

    /// The launches every API scenario runs under: both backends at 1, 2, 4 and 8 ranks
    /// (4 and 8 oversubscribe a 2-core machine), spawned local ranks, and the single-rank backend.
    static let all: [Launch] = [.serial, .mpirun(1), .mpirun(2), .mpirun(4), .mpirun(8), .local(1), .local(2), .local(4), .local(8),
                                .spawned(3), .spawned(8)]
}

/// What a finished job left behind.
struct JobResult {
    let command: String
    let status: Int32
    let output: String
    let errors: String
    let seconds: Double
    let timedOut: Bool

    /// Everything a failure message needs: the command, status, and both streams.
    var report: String {
        "\(command)\nexit status \(status)\(timedOut ? " (killed after the timeout)" : "") after \(String(format: "%.1f", seconds)) s\n--- stdout\n\(output)\n--- stderr\n\(errors)"
    }

    /// Output lines of the form "rank R: ok SCENARIO ...", keyed by rank.
    func okLines(for scenario: String) -> [Int: String] {
        var result: [Int: String] = [:]
        for line in output.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 3)
            guard parts.count >= 4, parts[0] == "rank", parts[2] == "ok", parts[3].hasPrefix(scenario),
                  let rank = Int(parts[1].dropLast()) else { continue }
            result[rank] = String(line)
        }
        return result
    }
}

enum Jobs {
    /// The folder holding the built products (swiftpar, swiftpar-checks).
    static let productsFolder: URL = {
        if let folder = ProcessInfo.processInfo.environment["SWIFTPAR_PRODUCTS"] {
            return URL(fileURLWithPath: folder)
        }
        var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        while url.path != "/" && !FileManager.default.fileExists(atPath: url.appendingPathComponent("swiftpar-checks").path) {
            url.deleteLastPathComponent()
        }
        return url
    }()

    static func product(_ name: String) -> String {
        productsFolder.appendingPathComponent(name).path
    }

    /// Environment for mpirun as root on a small machine: run as root, more ranks than cores.
    static let mpiEnvironment: [String: String] = [
        "OMPI_ALLOW_RUN_AS_ROOT": "1",
        "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
        "OMPI_MCA_rmaps_base_oversubscribe": "1",
    ]

    /// Runs `arguments` of `program` under `launch`, killing the whole job after `timeout` seconds.
    static func run(_ program: String, _ arguments: [String], launch: Launch, environment: [String: String] = [:],
                    timeout: Double = 60) throws -> JobResult {
        var command = [product(program)] + arguments
        var environment = environment
        switch launch {
        case .mpirun(let n):
            let exports = environment.keys.sorted().flatMap { ["-x", $0] }
            command = ["mpirun", "-n", "\(n)"] + exports + command
        case .local(let n):
            environment["SWIFTPAR_WORKERS"] = "\(n)"
        case .spawned(let n):
            environment["SWIFTPAR_WORKERS"] = "\(n)"
            environment["SWIFTPAR_START"] = "spawn"
        case .serial:
            environment["SWIFTPAR_BACKEND"] = "serial"
        }
        return try runCommand(command, environment: environment, timeout: timeout)
    }

    /// Runs a command with its own process group, killed by `timeout(1)` when it overstays.
    static func runCommand(_ command: [String], environment: [String: String] = [:], timeout: Double = 60) throws -> JobResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
        process.arguments = ["-k", "5", String(Int(timeout))] + command
        var env = ProcessInfo.processInfo.environment
        for (key, value) in mpiEnvironment { env[key] = value }
        for (key, value) in environment { env[key] = value }
        // A job started by the tests must not think a launcher started it.
        for key in env.keys where key.hasPrefix("OMPI_COMM_WORLD") || key.hasPrefix("PMIX_") || key.hasPrefix("PMI_") {
            env[key] = nil
        }
        // Crash reports from the Swift runtime are long; the tests read the job's own messages.
        env["SWIFT_BACKTRACE"] = "enable=no"
        process.environment = env
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("swiftpar-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let outURL = folder.appendingPathComponent("out")
        let errURL = folder.appendingPathComponent("err")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: outURL)
        process.standardError = try FileHandle(forWritingTo: errURL)
        process.standardInput = FileHandle.nullDevice
        let start = Date()
        try process.run()
        process.waitUntilExit()
        let seconds = Date().timeIntervalSince(start)
        // Output may hold bytes that are not UTF-8 (file names): show them repaired, never drop it all.
        let output = String(decoding: (try? Data(contentsOf: outURL)) ?? Data(), as: UTF8.self)
        let errors = String(decoding: (try? Data(contentsOf: errURL)) ?? Data(), as: UTF8.self)
        // A command killed by a signal shows as the shell shows it: 128 + the signal.
        let status = process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
        return JobResult(command: command.joined(separator: " "), status: status,
                         output: output, errors: errors, seconds: seconds,
                         timedOut: status == 124 || status == 137)
    }

    /// Runs `script` with /bin/sh, for redirections and pipes, killed after `timeout` seconds.
    static func runShell(_ script: String, environment: [String: String] = [:], timeout: Double = 60) throws -> JobResult {
        try runCommand(["/bin/sh", "-c", script], environment: environment, timeout: timeout)
    }

    /// A command line for `sh` that runs swiftpar under `launch`: for tests that redirect its output.
    static func shellCommand(_ program: String, _ arguments: [String], launch: Launch) -> String {
        let quoted = ([product(program)] + arguments).map(shellQuoted).joined(separator: " ")
        switch launch {
        case .serial: return "SWIFTPAR_BACKEND=serial " + quoted
        case .local(let n): return "SWIFTPAR_WORKERS=\(n) " + quoted
        case .spawned(let n): return "SWIFTPAR_WORKERS=\(n) SWIFTPAR_START=spawn " + quoted
        case .mpirun(let n): return "mpirun -n \(n) " + quoted
        }
    }

    /// Processes still running (not zombies) whose command line contains `name`.
    static func survivors(named name: String) -> [String] {
        guard let result = try? runCommand(["ps", "-eo", "pid=,stat=,args="], timeout: 10) else { return [] }
        return result.output.split(separator: "\n").map(String.init).filter { line in
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            return fields.count >= 3 && !fields[1].hasPrefix("Z") && line.contains(name) && !line.contains("ps -eo")
        }
    }

    /// Waits up to `seconds` for every process named `name` to be gone; returns those left.
    static func waitForNoSurvivors(named name: String, seconds: Double = 5) -> [String] {
        let deadline = Date().addingTimeInterval(seconds)
        var left = survivors(named: name)
        while !left.isEmpty && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.1)
            left = survivors(named: name)
        }
        return left
    }
}

/// Checks that a scenario job succeeded with an "ok" line from every rank.
func expectEveryRankOK(_ result: JobResult, scenario: String, ranks: Int, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(result.status == 0, "job failed:\n\(result.report)", sourceLocation: sourceLocation)
    let lines = result.okLines(for: scenario)
    for rank in 0..<ranks {
        #expect(lines[rank] != nil, "rank \(rank) reported no success for \(scenario):\n\(result.report)", sourceLocation: sourceLocation)
    }
    #expect(lines.count == ranks, "expected \(ranks) ranks, saw \(lines.keys.sorted()):\n\(result.report)", sourceLocation: sourceLocation)
}

/// A local job running in the background, for tests that signal it from outside.
final class BackgroundJob {
    let process = Process()
    let errorsURL: URL
    let folder: URL
    let start = Date()

    /// Starts `swiftpar-checks SCENARIO` with `ranks` local ranks, in its own process group,
    /// started by `start` (fork or spawn).
    init(scenario: String, ranks: Int, start: String = "fork") throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("swiftpar-bg-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        errorsURL = folder.appendingPathComponent("err")
        _ = FileManager.default.createFile(atPath: errorsURL.path, contents: nil)
        // setsid gives the job its own process group, as a shell does for a foreground job.
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setsid")
        process.arguments = ["--wait", Jobs.product("swiftpar-checks"), scenario]
        var env = ProcessInfo.processInfo.environment
        env["SWIFTPAR_WORKERS"] = "\(ranks)"
        env["SWIFTPAR_START"] = start
        env["SWIFT_BACKTRACE"] = "enable=no"
        process.environment = env
        process.standardOutput = FileHandle.nullDevice
        process.standardError = try FileHandle(forWritingTo: errorsURL)
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    /// Starts `command` in `directory`, in its own process group (as a shell starts a foreground
    /// job, with SIGINT at its default action), its output to `directory/out`.
    init(command: [String], environment: [String: String], directory: URL) throws {
        folder = directory
        errorsURL = folder.appendingPathComponent("err")
        _ = FileManager.default.createFile(atPath: errorsURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: folder.appendingPathComponent("out").path, contents: nil)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setsid")
        process.arguments = ["--wait"] + command
        process.currentDirectoryURL = directory
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        env["SWIFT_BACKTRACE"] = "enable=no"
        process.environment = env
        process.standardOutput = try FileHandle(forWritingTo: folder.appendingPathComponent("out"))
        process.standardError = try FileHandle(forWritingTo: errorsURL)
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    /// The pid of the program setsid started (it leads the job's process group), once it runs.
    func leader(seconds: Double = 10) -> Int32? {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            let children = (try? String(contentsOfFile: "/proc/\(process.processIdentifier)/task/\(process.processIdentifier)/children", encoding: .utf8)) ?? ""
            if let pid = children.split(separator: " ").first.flatMap({ Int32($0) }) { return pid }
            Thread.sleep(forTimeInterval: 0.02)
        }
        return nil
    }

    var errors: String { (try? String(contentsOf: errorsURL, encoding: .utf8)) ?? "" }

    /// The pid of each rank, once every rank has printed "pid RANK PID"; nil after `seconds`.
    func waitForPids(_ ranks: Int, seconds: Double = 20) -> [Int32]? {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            var pids = [Int32?](repeating: nil, count: ranks)
            for line in errors.split(separator: "\n") {
                let parts = line.split(separator: " ")
                if parts.count == 3, parts[0] == "pid", let rank = Int(parts[1]), rank < ranks, let pid = Int32(parts[2]) {
                    pids[rank] = pid
                }
            }
            if pids.allSatisfy({ $0 != nil }) { return pids.map { $0! } }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return nil
    }

    /// Waits up to `seconds` for the launcher to exit; returns its status, or nil if it did not.
    /// The job's exit status as a shell shows it (128 + the signal for a job a signal killed),
    /// or nil if it still runs after `seconds`.
    func waitForExit(seconds: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        if process.isRunning { return nil }
        return diedOfSignal ? 128 + process.terminationStatus : process.terminationStatus
    }

    /// Whether the job, now ended, was killed by a signal rather than exiting: `setsid --wait`
    /// then says so and exits with the wait status, the signal's number.
    var diedOfSignal: Bool { !process.isRunning && errors.contains("did not exit normally") }

    /// Kills whatever is left, so a failed test never leaves processes behind.
    func cleanUp(_ pids: [Int32]) {
        for pid in pids { kill(pid, SIGKILL) }
        if process.isRunning { process.terminate() }
        try? FileManager.default.removeItem(at: folder)
    }
}

/// True when no process with this pid exists any more (zombies count as gone).
func isGone(_ pid: Int32) -> Bool {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return true }
    return status.contains("State:\tZ")
}

/// `text` in single quotes for /bin/sh.
func shellQuoted(_ text: String) -> String {
    "'" + text.replacingOccurrences(of: "'", with: "'\"'\"'") + "'"
}
