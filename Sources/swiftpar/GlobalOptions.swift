import ArgumentParser
import SwiftPar
import SwiftParWorkloads
#if canImport(Glibc)
import Glibc
#endif

extension Backend: ExpressibleByArgument {}

/// Options every subcommand shares: how many ranks, which backend, and the output format.
struct GlobalOptions: ParsableArguments {
    @Option(name: [.customShort("n", allowingJoined: true), .customLong("workers")], parsing: .unconditional,
            help: ArgumentHelp("Number of ranks to start on this machine (under mpirun or srun, the launcher sets it).", valueName: "n"))
    var workers: String?

    @Option(help: ArgumentHelp("Backend: auto, mpi, local or serial.", valueName: "backend"))
    var backend: BackendOption = .auto

    @Flag(help: "Print machine-readable JSON instead of text (run: the tasks' output as it is, then a JSON summary line).")
    var json = false

    @Option(name: [.customShort("o", allowingJoined: true), .customLong("output")],
            help: ArgumentHelp("Write the output to this file (- for standard output): swiftpar writes it itself, checks every write and syncs it at the end. Use it under srun, whose forwarding of standard output drops write errors.", valueName: "file"))
    var output: String?

    @Option(name: .customLong("stall-timeout"), parsing: .unconditional,
            help: ArgumentHelp("End the job when a rank has waited this many seconds for ranks that make no progress, naming them (default: SWIFTPAR_STALL_TIMEOUT, or no limit).", valueName: "seconds"))
    var stallTimeout: String?

    /// The number of local ranks asked for, checked.
    var workerCount: Int? {
        get throws {
            guard let workers else { return nil }
            guard let value = Int(workers), value >= 1 else {
                throw ValidationError("-n/--workers must be a whole number of at least 1, not '\(workers)'")
            }
            return value
        }
    }

    var stallSeconds: Double? {
        get throws {
            guard let stallTimeout else { return nil }
            guard let value = Double(stallTimeout), value >= 0, value.isFinite else {
                throw ValidationError("--stall-timeout must be a number of seconds, 0 for none, not '\(stallTimeout)'")
            }
            return value
        }
    }

    func validate() throws {
        let workers = try workerCount
        let stall = try stallSeconds
        // What the job would refuse as it starts (-n under mpirun, too many local ranks, a bad
        // SWIFTPAR_* setting) is a usage error too, reported as the options' are.
        do {
            try SwiftPar.checkSettings(workers: workers, backend: backend.backend, stallTimeout: stall)
        } catch {
            throw ValidationError("\(error)")
        }
    }

    /// Moves global options written before the subcommand (`swiftpar -n 8 info`), or between
    /// `bench` and the benchmark's name (`swiftpar bench -n 2 pingpong`), to just after the
    /// name, where every subcommand accepts them (`swiftpar info -n 8`), ahead of arguments that
    /// belong to the subcommand (a `run` command line must stay as it was written). Before
    /// `help` they are dropped.
    static func movingLeadingOptions(_ arguments: [String]) -> [String] {
        var (leading, index) = globalOptions(in: arguments, from: 0)
        guard index < arguments.count else { return arguments }
        var names = [arguments[index]]
        index += 1
        // `help` runs nothing: options before it do not change what it prints
        // (`swiftpar -n 3 help primes` is the help of `primes`).
        if names[0] == "help" { return Array(arguments[(index - 1)...]) }
        // `bench` is a group: the options go after the benchmark's name.
        if names[0] == "bench" {
            let (more, next) = globalOptions(in: arguments, from: index)
            if next < arguments.count, Bench.configuration.subcommands.contains(where: { $0.configuration.commandName == arguments[next] }) {
                leading += more
                names.append(arguments[next])
                index = next + 1
            }
        }
        guard !leading.isEmpty else { return arguments }
        // Nor before `--help`: `swiftpar -n 2 bench --help` lists the benchmarks, as `swiftpar
        // bench --help` does (moved after `bench`, `-n` would choose its default benchmark).
        if index < arguments.count && (arguments[index] == "--help" || arguments[index] == "-h") {
            return names + arguments[index...]
        }
        // After `run`, `-n` is GNU parallel's inputs per command (refused there): the number of
        // ranks given before `run` moves as `--workers`.
        if names[0] == "run" {
            leading = leading.map { option in
                if option == "-n" { return "--workers" }
                if option.hasPrefix("-n=") { return "--workers=" + option.dropFirst(3) }
                if option.hasPrefix("-n") && !option.hasPrefix("--") { return "--workers=" + option.dropFirst(2) }
                return option
            }
        }
        return names + leading + arguments[index...]
    }

    /// The global options whose value is the next word.
    static let optionsTakingValues: Set<String> = ["-n", "--workers", "--backend", "--stall-timeout", "-o", "--output"]

    /// The global options in `arguments` from `start` up to the first argument that is not
    /// one, and where that argument is.
    static func globalOptions(in arguments: [String], from start: Int) -> (options: [String], end: Int) {
        let takesValue = optionsTakingValues
        // Short options whose value may be joined to them: -n8, -oSUMS.
        let joinable = ["-n", "-o"]
        let flags: Set<String> = ["--json"]
        var options: [String] = []
        var index = start
        while index < arguments.count {
            let argument = arguments[index]
            if takesValue.contains(argument), index + 1 < arguments.count {
                options += [argument, arguments[index + 1]]
                index += 2
            } else if flags.contains(argument) || takesValue.contains(where: { argument.hasPrefix($0 + "=") })
                        || joinable.contains(where: { argument.hasPrefix($0) && argument.count > 2 }) {
                options.append(argument)
                index += 1
            } else {
                break
            }
        }
        return (options, index)
    }

    /// Runs `body` on every rank of the job these options describe, rank 0's standard output
    /// going to `--output` when it is given. Never returns.
    ///
    /// The file is opened before the job starts, by the process that becomes rank 0 (a local
    /// job's ranks share it): a file that cannot be written is reported before anything runs,
    /// exiting with `failureStatus` (1, or `run`'s 255), as the shell's `> FILE` would be.
    ///
    /// Errors that name the operation waiting on another rank name `command` instead ("hash
    /// has waited 2.0 s"): its users never called the library's operations themselves.
    func run<Command: ParsableCommand>(_ command: Command.Type, failureStatus: Int32 = 1,
                                       _ body: (Communicator) throws -> Void) -> Never {
        let isBenchmark = Bench.configuration.subcommands.contains { ObjectIdentifier($0) == ObjectIdentifier(command) }
        CommunicatorError.commandName = (isBenchmark ? "bench " : "") + command._commandName
        // "-" is standard output itself, as for most tools.
        let file = output.flatMap { $0 == "-" ? nil : PathBytes(RawArguments.bytes(of: $0)) }
        let label = failureStatus == 255 ? "run: " : ""
        var opened = false
        var failure: String?
        if let file, Self.becomesRankZero == true {
            do {
                try Self.redirectStandardOutput(to: file)
                opened = true
            } catch {
                failure = "swiftpar: \(label)\(error)\n"
                // Under a launcher the other ranks are starting too (and srun would leave them
                // waiting in MPI's start-up): the job is ended once it has started.
                if LaunchEnvironment.detect() == nil {
                    writeStandardError(failure!)
                    Glibc.exit(failureStatus)
                }
            }
        }
        // validate() has checked both.
        SwiftPar.run(workers: try? workerCount, backend: backend.backend, stallTimeout: (try? stallSeconds) ?? nil) { world in
            guard world.rank == 0, let file else { return try body(world) }
            if let failure {
                writeStandardError(failure)
                SwiftPar.abortJob(status: failureStatus)
            }
            // A launcher that does not say which rank a process is: rank 0 opens it now.
            if !opened { try Self.redirectStandardOutput(to: file) }
            try body(world)
            do {
                try Self.finishOutput(file)
            } catch where failureStatus != 1 {
                writeStandardError("swiftpar: \(label)\(error)\n")
                world.exitStatus = failureStatus
            }
        }
    }

    /// Whether this process will be rank 0 of its job: true when it starts a local job (its
    /// forked or spawned ranks share its descriptors), false for a rank a local job spawned
    /// or another rank of a launcher's job, nil when a launcher does not say.
    static var becomesRankZero: Bool? {
        if getenv("SWIFTPAR_LOCAL_JOB") != nil { return false }
        guard let launched = LaunchEnvironment.detect() else { return true }
        return launched.rank.map { $0 == 0 }
    }

    /// Points standard output at `file`, created or emptied. Only rank 0 opens it: under a
    /// launcher every rank runs the same command line, and a second truncation would erase
    /// what rank 0 had written.
    static func redirectStandardOutput(to file: PathBytes) throws {
        if let failure = StandardOutput.flushChecked() { throw failure }
        let descriptor = file.withCString { open($0, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o666) }
        guard descriptor >= 0 else { throw SystemError.current("opening the output file \(file)") }
        defer { close(descriptor) }
        guard dup2(descriptor, 1) >= 0 else { throw SystemError.current("dup2 of \(file) onto standard output") }
        StandardOutput.destinationName = "\(file)"
    }

    /// Flushes what was written to `file` and syncs it, so that an error a file system
    /// reports late (NFS, a quota) is still an error of this job.
    static func finishOutput(_ file: PathBytes) throws {
        if let failure = StandardOutput.flushChecked() { throw failure }
        if fsync(1) != 0 && errno != EINVAL && errno != EROFS {
            throw SystemError.current("write to \(file)")
        }
    }
}

enum BackendOption: String, ExpressibleByArgument, CaseIterable {
    case auto, mpi, local, serial

    var backend: Backend? {
        switch self {
        case .auto: return nil
        case .mpi: return .mpi
        case .local: return .local
        case .serial: return .serial
        }
    }
}
