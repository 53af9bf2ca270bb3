import Foundation
import Testing
@testable import SwiftPar

/// What a process learns from its launcher's variables, and the settings checks built on it.
@Suite("Launch environment and settings checks")
struct LaunchEnvironmentTests {
    @Test("mpirun, srun with PMIx, and PMI launchers give the rank and the size; none gives nil")
    func detection() throws {
        let mpirun = LaunchEnvironment.detect(["OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_RANK": "2", "PMIX_RANK": "2"])
        #expect(mpirun?.launcher == "mpirun" && mpirun?.rank == 2 && mpirun?.size == 4, "\(String(describing: mpirun))")
        let srun = LaunchEnvironment.detect(["PMIX_RANK": "3", "SLURM_PROCID": "3", "SLURM_STEP_NUM_TASKS": "8"])
        #expect(srun?.variable == "PMIX_RANK" && srun?.rank == 3 && srun?.size == 8, "\(String(describing: srun))")
        let pmi = LaunchEnvironment.detect(["PMI_RANK": "1", "PMI_SIZE": "2"])
        #expect(pmi?.launcher == "a PMI launcher" && pmi?.rank == 1 && pmi?.size == 2, "\(String(describing: pmi))")
        let noSize = LaunchEnvironment.detect(["PMIX_RANK": "0"])
        #expect(noSize?.rank == 0 && noSize?.size == nil, "\(String(describing: noSize))")
        #expect(LaunchEnvironment.detect([:]) == nil)
        #expect(LaunchEnvironment.detect(["SLURM_STEP_NUM_TASKS": "1", "SLURM_PROCID": "0"]) == nil, "a one-task Slurm step is a plain process")
        #expect(LaunchEnvironment.detect(["SLURM_STEP_NUM_TASKS": "4", "SLURM_PROCID": "2"])?.rank == 2, "srun without PMI")
        #expect(LaunchEnvironment.detect(["SLURM_STEP_NUM_TASKS": "4", "SLURM_PROCID": "2", "SWIFTPAR_TASK": "7"]) == nil,
                "a task of swiftpar run inherits its rank's Slurm variables but is not a rank")
        #expect(LaunchEnvironment.isOtherThanFirstRank(["OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "1"]))
        #expect(!LaunchEnvironment.isOtherThanFirstRank(["OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "0"]))
        #expect(!LaunchEnvironment.isOtherThanFirstRank([:]))
        // A shared problem is said by rank 0, and by the first rank of each other host.
        #expect(!LaunchEnvironment.speaksForItsHost(["SLURM_STEP_NUM_TASKS": "8", "SLURM_PROCID": "3", "SLURM_LOCALID": "3", "SLURM_NODEID": "0"]))
        #expect(!LaunchEnvironment.speaksForItsHost(["SLURM_STEP_NUM_TASKS": "8", "SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_NODEID": "1"]))
        #expect(LaunchEnvironment.speaksForItsHost(["SLURM_STEP_NUM_TASKS": "8", "SLURM_PROCID": "4", "SLURM_LOCALID": "0", "SLURM_NODEID": "1"]))
        #expect(LaunchEnvironment.speaksForItsHost(["OMPI_COMM_WORLD_SIZE": "8", "OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_LOCAL_RANK": "1",
                                                    "SLURM_NODEID": "0", "SLURM_LOCALID": "0"]), "mpirun ends the job when rank 0 fails: a rank still running speaks")
        #expect(LaunchEnvironment.speaksForItsHost(["PMI_SIZE": "4", "PMI_RANK": "2"]), "a launcher that names no host")
    }

    @Test("Under a launcher, a worker count is accepted only when it equals the launcher's, and refused in run's own words")
    func workersUnderLauncher() throws {
        let environment = ["OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_RANK": "0"]
        #expect(try SwiftPar.chooseBackend(requested: nil, workers: 4, environment: environment) == .mpi)
        #expect(try SwiftPar.chooseBackend(requested: nil, workers: nil, environment: environment) == .mpi)
        do {
            _ = try SwiftPar.chooseBackend(requested: nil, workers: 3, environment: environment)
            Issue.record("-n 3 under a launcher of 4 ranks was accepted")
        } catch {
            #expect("\(error)".contains("workers: 3 cannot be used here: the number of ranks is set by mpirun, which started 4"), "\(error)")
        }
    }

    @Test("checkSettings refuses what run would refuse, and accepts the rest")
    func settingsCheck() throws {
        try SwiftPar.checkSettings(workers: 2, backend: nil, environment: [:])
        try SwiftPar.checkSettings(workers: nil, backend: .serial, environment: [:])
        let refused: [(Int?, Backend?, [String: String], String)] = [
            (100_000, nil, [:], "100000 local ranks is more than"),
            (3, .serial, [:], "backend: .serial runs exactly one rank, not 3; use backend: .local for more"),
            (nil, nil, ["SWIFTPAR_WORKERS": "many"], "SWIFTPAR_WORKERS=many"),
            (nil, nil, ["SWIFTPAR_MPI_MESSAGE_LIMIT": "lots"], "SWIFTPAR_MPI_MESSAGE_LIMIT=lots"),
            (nil, .local, ["OMPI_COMM_WORLD_SIZE": "2"], "backend: .local cannot be used here: this process was started by mpirun (OMPI_COMM_WORLD_SIZE is set), which runs one rank per process; ask for no backend, or for .mpi"),
            (nil, nil, ["SLURM_STEP_NUM_TASKS": "4", "SLURM_PROCID": "1"], "srun started 4 tasks without an MPI plugin"),
        ]
        for (workers, backend, environment, words) in refused {
            do {
                try SwiftPar.checkSettings(workers: workers, backend: backend, environment: environment)
                Issue.record("accepted: workers \(String(describing: workers)), backend \(String(describing: backend)), \(environment)")
            } catch {
                #expect("\(error)".contains(words), "\(error)")
            }
        }
    }

    @Test("Errors are shown in their own words; an enum error without any, with its type")
    func errorTexts() {
        enum LoadError: Error { case missing(path: String) }
        #expect(errorText(LoadError.missing(path: "a")) == "LoadError.missing(path: \"a\")")
        let decoding = DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "bad bytes"))
        #expect(errorText(decoding).contains("bad bytes") && !errorText(decoding).contains("DecodingError.DecodingError"), "\(errorText(decoding))")
        struct Described: Error, CustomStringConvertible { var description: String { "described" } }
        #expect(errorText(Described()) == "described")
        struct Plain: Error { var code = 3 }
        #expect(errorText(Plain()) == "Plain(code: 3)")
    }
}
