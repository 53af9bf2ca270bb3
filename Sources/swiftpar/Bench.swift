import ArgumentParser

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure swiftpar on this machine.",
        subcommands: [PingPong.self, PoolBench.self]
    )
}
