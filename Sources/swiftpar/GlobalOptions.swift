import ArgumentParser
import SwiftPar

extension Backend: ExpressibleByArgument {}

/// Options every subcommand shares: how many ranks, which backend, and the output format.
struct GlobalOptions: ParsableArguments {
    @Option(name: [.customShort("n"), .customLong("workers")],
            help: "Number of ranks to start on this machine (ignored under mpirun, which sets it).")
    var workers: Int?

    @Option(help: ArgumentHelp("Backend: auto, mpi, local or serial.", valueName: "backend"))
    var backend: BackendOption = .auto

    @Flag(help: "Print machine-readable JSON instead of text.")
    var json = false

    func validate() throws {
        if let workers, workers < 1 {
            throw ValidationError("-n/--workers must be at least 1, not \(workers)")
        }
    }

    /// Moves global options written before the subcommand (`swiftpar -n 8 info`) to after it,
    /// where every subcommand accepts them (`swiftpar info -n 8`).
    static func movingLeadingOptions(_ arguments: [String]) -> [String] {
        let takesValue: Set<String> = ["-n", "--workers", "--backend"]
        let flags: Set<String> = ["--json"]
        var leading: [String] = []
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            if takesValue.contains(argument), index + 1 < arguments.count {
                leading += [argument, arguments[index + 1]]
                index += 2
            } else if flags.contains(argument) || takesValue.contains(where: { argument.hasPrefix($0 + "=") })
                        || (argument.hasPrefix("-n") && argument.count > 2 && Int(argument.dropFirst(2)) != nil) {
                leading.append(argument)
                index += 1
            } else {
                break
            }
        }
        guard !leading.isEmpty, index < arguments.count else { return arguments }
        return Array(arguments[index...]) + leading
    }

    /// Runs `body` on every rank of the job these options describe. Never returns.
    func run(_ body: (Communicator) throws -> Void) -> Never {
        SwiftPar.run(workers: workers, backend: backend.backend, body)
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
