import Foundation
import Testing

/// How a test job is started: as a single rank, or by mpirun with a number of ranks.
enum Launch: CustomStringConvertible, Sendable {
    case serial
    case mpirun(Int)

    var description: String {
        switch self {
        case .serial: return "serial"
        case .mpirun(let n): return "mpirun -n \(n)"
        }
    }

    var ranks: Int {
        switch self {
        case .serial: return 1
        case .mpirun(let n): return n
        }
    }

    /// The launches every API scenario runs under.
    static let all: [Launch] = [.serial, .mpirun(2), .mpirun(4)]
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
        if case .mpirun(let n) = launch {
            let exports = environment.keys.sorted().flatMap { ["-x", $0] }
            command = ["mpirun", "-n", "\(n)"] + exports + command
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
        process.environment = env
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("swiftpar-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let outURL = folder.appendingPathComponent("out")
        let errURL = folder.appendingPathComponent("err")
        FileManager.default.createFile(atPath: outURL.path, contents: nil)
        FileManager.default.createFile(atPath: errURL.path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: outURL)
        process.standardError = try FileHandle(forWritingTo: errURL)
        process.standardInput = FileHandle.nullDevice
        let start = Date()
        try process.run()
        process.waitUntilExit()
        let seconds = Date().timeIntervalSince(start)
        let output = (try? String(contentsOf: outURL, encoding: .utf8)) ?? ""
        let errors = (try? String(contentsOf: errURL, encoding: .utf8)) ?? ""
        return JobResult(command: command.joined(separator: " "), status: process.terminationStatus,
                         output: output, errors: errors, seconds: seconds,
                         timedOut: process.terminationStatus == 124 || process.terminationStatus == 137)
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
