import ArgumentParser
import CSwiftParLinux
import Foundation
import SwiftPar

@main
struct SwiftParCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "swiftpar",
        abstract: "True parallelism for Swift: ranked workers on one machine or across a cluster.",
        discussion: """
            Under mpirun (or srun --mpi=pmix) every process is one rank of an MPI job. Started by hand, swiftpar forks its own ranks on this machine: one per core, or -n N.

            Examples:
              swiftpar primes 1e10
              swiftpar -n 8 hash ~/data > SHA256SUMS
              mpirun -n 4 swiftpar info
              swiftpar -n 2 bench
            """,
        version: "swiftpar \(versionDescription)",
        subcommands: [Run.self, Primes.self, Hash.self, Info.self, Bench.self]
    )

    static func main() {
        // As a container's first process, an init of its own stays in front (before any thread
        // starts); if it cannot be forked, the program runs as process 1 all the same.
        _ = swiftpar_run_under_init_if_first_process()
        SwiftPar.settingsAreOptions = true
        let typed = RawArguments.forParser()
        let arguments = holdingBulk(GlobalOptions.movingLeadingOptions(typed))
        var parsing = true
        do {
            // Mistakes argument-parser would report as something else, or not at all.
            if arguments.first == "run", let typed = Run.maxArgumentsOption(in: arguments) {
                throw UsageMessage(Run.maxArgumentsProblem(typed), of: Run.self)
            }
            if let problem = Hash.helpAmongOperands(arguments) ?? Hash.optionNamingFile(arguments) { throw UsageMessage(problem, of: Hash.self) }
            var command = try parseAsRoot(arguments)
            parsing = false
            try command.run()
        } catch {
            // What argument-parser reports is not always what is wrong (see `hiddenUnknownOption`).
            // A request for help comes as a parsed command whose `run` throws.
            let hidden = (error as? UsageMessage)?.text ?? (parsing || exitCode(for: error).isSuccess
                ? unknownCommand(in: typed) ?? hiddenUnknownOption(behind: error, in: arguments) : nil)
            let message = hidden ?? fullMessage(for: error)
            // `run` keeps 1…101 for the number of failed tasks: its own usage errors end with
            // 255, as GNU parallel's do.
            var code = hidden == nil ? exitCode(for: error) : .validationFailure
            if arguments.first == "run" && code == .validationFailure { code = ExitCode(255) }
            // Under a launcher every rank usually parses the same command line: rank 0 prints
            // the help, and says what is wrong once (another rank does only if it alone fails).
            if LaunchEnvironment.isOtherThanFirstRank() {
                if !code.isSuccess && !message.isEmpty { LaunchEnvironment.reportSharedProblem(message) }
                exit(withError: code)
            }
            if code == ExitCode(255) || hidden != nil {
                // An ExitCode thrown after the problem was reported has no message of its own.
                if !message.isEmpty { writeStandardError(message + "\n") }
                exit(withError: code)
            }
            if code.isSuccess {
                // --help and --version: written and checked here, so that a full disk or a
                // closed pipe is an error rather than a silent exit 0.
                // Under mpirun, straight to mpirun's own output, whose write errors its
                // forwarding would drop, as every command's output goes.
                StandardStreams.adoptLauncherOutput()
                do {
                    if !message.isEmpty { try printChecked(message) }
                } catch {
                    writeStandardError("swiftpar: \(error)\n")
                    exit(withError: ExitCode.failure)
                }
                exit(withError: code)
            }
            exit(withError: error)
        }
    }

    /// A usage error found before argument-parser sees the command line, with its whole text,
    /// worded as argument-parser words its own.
    struct UsageMessage: Error {
        var text: String

        init(_ problem: String, of command: ParsableCommand.Type) {
            let name = command._commandName
            let usage = SwiftParCommand.helpMessage(for: command).split(separator: "\n")
                .first { $0.hasPrefix("USAGE:") }.map { String($0.dropFirst("USAGE: ".count)) } ?? "swiftpar \(name) ..."
            text = "Error: \(problem)\nUsage: \(usage)\n  See 'swiftpar \(name) --help' for more information."
        }
    }

    /// `arguments` without the bulk of a long command line, which is kept aside for the command:
    /// `hash`'s operands, and `run`'s inputs after the first `:::` or `::::`. The argument
    /// parser takes time that grows with the square of the arguments (15 s for 20,000 file
    /// names), where those words need no parsing at all. Short command lines pass whole.
    static func holdingBulk(_ arguments: [String]) -> [String] {
        guard arguments.count > 64, let command = arguments.first else { return arguments }
        if command == "run" {
            // Past run's own options first: a `:::` may be an option's value (`-d :::`).
            var index = 1
            while index < arguments.count {
                let word = arguments[index]
                if word == "--" { break }
                if Run.optionsTakingValues.contains(word) { index += 2; continue }
                if word.hasPrefix("-") && word.count > 1 && !word.hasPrefix(":::") { index += 1; continue }
                break
            }
            guard index < arguments.count,
                  let cut = arguments[index...].firstIndex(where: { [":::", "::::", ":::+", "::::+"].contains($0) }) else { return arguments }
            Run.heldWords = Array(arguments[(cut + 1)...])
            return Array(arguments[...cut])
        }
        guard command == "hash" else { return arguments }
        let takesValue = GlobalOptions.optionsTakingValues
        var kept = [command]
        var index = 1
        while index < arguments.count {
            let word = arguments[index]
            if word == "--" {
                Hash.heldOperands += arguments[(index + 1)...]
                break
            }
            if takesValue.contains(word) {
                kept += arguments[index..<min(index + 2, arguments.count)]
                index += 2
                continue
            }
            if word.hasPrefix("-") && word != "-" { kept.append(word) } else { Hash.heldOperands.append(word) }
            index += 1
        }
        return kept
    }

    /// The error for a first word after the global options that names no command (argument-
    /// parser blamed `-n` in `swiftpar -n 2 bogus`, or said "Unexpected argument"); nil if it
    /// names one.
    static func unknownCommand(in arguments: [String]) -> String? {
        let index = GlobalOptions.globalOptions(in: arguments, from: 0).end
        let names = configuration.subcommands.map { $0._commandName }
        // Global options and nothing after them (`swiftpar -n 2`): argument-parser blamed the
        // first option, which is a good one.
        if index == arguments.count && index > 0 {
            return """
                Error: no command given: the commands are \(names.joined(separator: ", "))
                Usage: swiftpar [--workers <n>] <command> ...
                  See 'swiftpar --help' for more information.
                """
        }
        guard index < arguments.count, !arguments[index].hasPrefix("-") else { return nil }
        if arguments[index] == "bench" {
            // `bench foo`: argument-parser took foo for an operand of the default benchmark.
            let next = GlobalOptions.globalOptions(in: arguments, from: index + 1).end
            let benchmarks = Bench.configuration.subcommands.map { $0._commandName }
            guard next < arguments.count, !arguments[next].hasPrefix("-"), !benchmarks.contains(arguments[next]),
                  arguments[next] != "help" else { return nil }
            return """
                Error: unknown benchmark '\(arguments[next])': the benchmarks are \(benchmarks.joined(separator: ", "))
                Usage: swiftpar bench <benchmark> ...
                  See 'swiftpar bench --help' for more information.
                """
        }
        if arguments[index] == "help" {
            // `help bogus`: argument-parser printed the general help, with exit 0.
            guard index + 1 < arguments.count, !arguments[index + 1].hasPrefix("-"), !names.contains(arguments[index + 1]) else { return nil }
            return """
                Error: unknown command '\(arguments[index + 1])': the commands are \(names.joined(separator: ", "))
                Usage: swiftpar help <command>
                  See 'swiftpar --help' for more information.
                """
        }
        guard !names.contains(arguments[index]) else { return nil }
        return """
            Error: unknown command '\(arguments[index])': the commands are \(names.joined(separator: ", "))
            Usage: swiftpar [--workers <n>] <command> ...
              See 'swiftpar --help' for more information.
            """
    }

    /// The unknown option to report instead of `error`, when `error` hides one; nil otherwise.
    ///
    /// argument-parser reports a missing operand before an unknown option (`hash --bogus` said
    /// "give at least one file"), and takes `-h` inside a bundle of short options as a request
    /// for help: `swiftpar hash *` in a folder holding a file named `-dash` printed the help and
    /// exited 0, leaving a checksum file of help text. Parsing again with an operand added and
    /// the `h` taken out of such bundles shows whether an option is unknown; the message then
    /// names the option as it was typed.
    static func hiddenUnknownOption(behind error: Error, in arguments: [String]) -> String? {
        let end = arguments.firstIndex(of: "--") ?? arguments.endIndex
        let options = arguments[..<end]
        // Asked for in so many words: help and the version are what the user wants.
        if arguments.first == "help" || options.contains(where: { ["-h", "--help", "--version"].contains($0) }) { return nil }
        var typed: [String: String] = [:]
        var probe = arguments.indices.map { index -> String in
            let argument = arguments[index]
            guard index < end, argument.count > 2, argument.hasPrefix("-"), !argument.hasPrefix("--"),
                  argument.contains("h") else { return argument }
            let bundle = argument.filter { $0 != "h" }
            typed[bundle] = argument
            return bundle
        }
        if exitCode(for: error).isSuccess && typed.isEmpty { return nil }
        // U+FFFF is a noncharacter: no real operand is spelled like this.
        probe.insert("\u{FFFF}operand\u{FFFF}", at: end)
        do {
            _ = try parseAsRoot(probe)
            return nil
        } catch {
            var message = fullMessage(for: error)
            guard message.contains("Unknown option") else { return nil }
            for (bundle, argument) in typed {
                message = message.replacingOccurrences(of: "'\(bundle)'", with: "'\(argument)'")
            }
            return message
        }
    }
}
