import ArgumentParser
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
        let arguments = GlobalOptions.movingLeadingOptions(RawArguments.forParser())
        do {
            var command = try parseAsRoot(arguments)
            try command.run()
        } catch {
            // `run` keeps 1…101 for the number of failed tasks: its own usage errors end with
            // 255, as GNU parallel's do.
            var code = exitCode(for: error)
            if arguments.first == "run" && code == .validationFailure { code = ExitCode(255) }
            // Under a launcher every rank usually parses the same command line: rank 0 prints
            // the help, and says what is wrong once (another rank does only if it alone fails).
            if LaunchEnvironment.isOtherThanFirstRank() {
                let message = code.isSuccess ? "" : fullMessage(for: error)
                if !message.isEmpty { LaunchEnvironment.reportSharedProblem(message) }
                exit(withError: code)
            }
            if code == ExitCode(255) {
                // An ExitCode thrown after the problem was reported has no message of its own.
                let message = fullMessage(for: error)
                if !message.isEmpty { writeStandardError(message + "\n") }
                exit(withError: code)
            }
            if code.isSuccess {
                // --help and --version: written and checked here, so that a full disk or a
                // closed pipe is an error rather than a silent exit 0.
                let message = fullMessage(for: error)
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
}
