import Foundation
import Testing

/// The swiftpar command as users run it.
@Suite("swiftpar command line", .serialized)
struct CommandLineTests {
    @Test("mpirun -n 4 swiftpar info shows ranks 0-3 once each, in order, from rank 0")
    func infoUnderMPI() throws {
        let result = try Jobs.run("swiftpar", ["info"], launch: .mpirun(4))
        #expect(result.status == 0, "\(result.report)")
        let lines = result.output.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("backend mpi, 4 ranks, Open MPI") == true, "\(result.report)")
        let rankLines = lines.filter { $0.hasPrefix("rank ") }
        #expect(rankLines.count == 4, "\(result.report)")
        for (index, line) in rankLines.enumerated() {
            #expect(line.hasPrefix("rank \(index) of 4 on "), "line \(index): \(line)\n\(result.report)")
        }
    }

    @Test("swiftpar info --json as one rank describes the serial backend")
    func infoJSONSerial() throws {
        let result = try Jobs.run("swiftpar", ["info", "--json"], launch: .serial)
        #expect(result.status == 0, "\(result.report)")
        struct Report: Decodable { var backend: String; var size: Int; var mpiLibrary: String; var ranks: [[String: String?]]? }
        let object = try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any]
        #expect(object?["backend"] as? String == "serial", "\(result.report)")
        #expect(object?["size"] as? Int == 1, "\(result.report)")
        #expect((object?["ranks"] as? [[String: Any]])?.first?["rank"] as? Int == 0, "\(result.report)")
    }

    @Test("Global options are accepted before the subcommand")
    func optionsBeforeSubcommand() throws {
        let result = try Jobs.run("swiftpar", ["-n", "3", "--json", "info"], launch: .serial)
        #expect(result.status != 0 && result.errors.contains("runs exactly one rank"), "serial with -n 3:\n\(result.report)")
        let local = try Jobs.runCommand([Jobs.product("swiftpar"), "-n", "3", "--json", "info"])
        #expect(local.status == 0, "\(local.report)")
        #expect(local.output.contains("\"backend\" : \"local\""), "\(local.report)")
        #expect(local.output.contains("\"size\" : 3"), "\(local.report)")
        // Every key is always there: the commit too, null when the build does not know it.
        #expect(local.output.contains("\"commit\" : "), "\(local.report)")
        // Before `help`, they change nothing: the help of the command named, exit 0.
        let plain = try Jobs.runCommand([Jobs.product("swiftpar"), "help", "primes"])
        let help = try Jobs.runCommand([Jobs.product("swiftpar"), "-n", "3", "--json", "help", "primes"])
        #expect(plain.status == 0 && plain.output.contains("USAGE: swiftpar primes"), "\(plain.report)")
        #expect(help.status == 0 && help.output == plain.output && help.errors.isEmpty, "\(help.report)")
        // Nor before --help: `-n 2 bench --help` lists the benchmarks, not its default one's help.
        let benchHelp = try Jobs.runCommand([Jobs.product("swiftpar"), "bench", "--help"])
        let benchHelpAfterOptions = try Jobs.runCommand([Jobs.product("swiftpar"), "-n", "2", "bench", "--help"])
        #expect(benchHelp.status == 0 && benchHelp.output.contains("pingpong"), "\(benchHelp.report)")
        #expect(benchHelpAfterOptions.status == 0 && benchHelpAfterOptions.output == benchHelp.output, "\(benchHelpAfterOptions.report)")
    }

    @Test("swiftpar -n 4 info prints ranks 0-3 with backend local")
    func infoLocal() throws {
        let result = try Jobs.runCommand([Jobs.product("swiftpar"), "-n", "4", "info"])
        #expect(result.status == 0, "\(result.report)")
        let lines = result.output.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("backend local, 4 ranks") == true, "\(result.report)")
        let rankLines = lines.filter { $0.hasPrefix("rank ") }
        #expect(rankLines.count == 4, "\(result.report)")
        for (index, line) in rankLines.enumerated() {
            #expect(line.hasPrefix("rank \(index) of 4 on "), "line \(index): \(line)\n\(result.report)")
        }
    }

    @Test("SWIFTPAR_WORKERS sets the number of local ranks; a bad value is a clear error")
    func workersFromEnvironment() throws {
        let result = try Jobs.runCommand([Jobs.product("swiftpar"), "info", "--json"], environment: ["SWIFTPAR_WORKERS": "3"])
        #expect(result.status == 0 && result.output.contains("\"size\" : 3"), "\(result.report)")
        let bad = try Jobs.runCommand([Jobs.product("swiftpar"), "info"], environment: ["SWIFTPAR_WORKERS": "many"])
        #expect(bad.status == 64 && bad.errors.contains("Error: SWIFTPAR_WORKERS=many"), "\(bad.report)")
    }

    @Test("Long command lines (hash of 3,000 named files, run with 3,000 inputs) are read whole, options anywhere, the same as sha256sum's and parallel -k's")
    func longCommandLines() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("swiftpar-many-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        for i in 0..<3000 { try Data("\(i)\n".utf8).write(to: folder.appendingPathComponent("f\(i)")) }
        let swiftpar = Jobs.product("swiftpar")
        // Options before, between and after the operands, and names after --.
        let hashed = try Jobs.runShell("cd '\(folder.path)' && '\(swiftpar)' -n 2 hash f1* --stall-timeout 30 f2* -- f[03-9]* | LC_ALL=C sort", timeout: 120)
        let reference = try Jobs.runShell("cd '\(folder.path)' && sha256sum f1* f2* f[03-9]* | LC_ALL=C sort", timeout: 120)
        #expect(hashed.status == 0 && hashed.output == reference.output && hashed.output.split(separator: "\n").count == 3000, "\(hashed.report.prefix(2000))")
        let bad = try Jobs.runShell("cd '\(folder.path)' && '\(swiftpar)' hash f* --bogus", timeout: 120)
        #expect(bad.status == 64 && bad.errors.contains("Unknown option '--bogus'"), "\(bad.report.prefix(2000))")
        let farm = try Jobs.runShell("'\(swiftpar)' -n 2 run -k 'echo {1}-{2}' ::: $(seq 1500) ::: a b", timeout: 120)
        let parallel = try Jobs.runShell("parallel -k 'echo {1}-{2}' ::: $(seq 1500) ::: a b", timeout: 120)
        #expect(farm.status == 0 && farm.output == parallel.output && farm.output.split(separator: "\n").count == 3000, "\(farm.report.prefix(2000))")
        // A ::: that is an option's value is not where the inputs start.
        let delimited = try Jobs.runShell("'\(swiftpar)' run -d ::: --dry-run echo ::: $(seq 70)", timeout: 60)
        #expect(delimited.status == 0 && delimited.output == (1...70).map { "echo \($0)\n" }.joined(), "\(delimited.report.prefix(2000))")
    }

    @Test("The default number of local ranks is the cores this process may run on (its affinity, as nproc counts them)")
    func ranksFollowAffinity() throws {
        let one = try Jobs.runCommand(["taskset", "-c", "0", Jobs.product("swiftpar"), "info", "--json"])
        #expect(one.status == 0 && one.output.contains("\"size\" : 1"), "\(one.report)")
        let nproc = try Jobs.runCommand(["nproc"])
        let all = try Jobs.runCommand([Jobs.product("swiftpar"), "info", "--json"])
        let cores = nproc.output.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(all.status == 0 && all.output.contains("\"size\" : \(cores)"), "nproc says \(cores)\n\(all.report)")
    }

    @Test("Settings the job would refuse are usage errors like bad options, and under mpirun rank 0 alone reports them")
    func settingsAreUsageErrors() throws {
        let tooMany = try Jobs.runCommand([Jobs.product("swiftpar"), "-n", "100000", "info"])
        #expect(tooMany.status == 64 && tooMany.errors.contains("Error: 100000 local ranks is more than"), "\(tooMany.report)")
        let serial = try Jobs.run("swiftpar", ["--backend", "serial", "-n", "3", "info"], launch: .serial)
        #expect(serial.status == 64 && serial.errors.contains("runs exactly one rank, not 3"), "\(serial.report)")
        // Every rank parses the same command line; the message must come once, whole.
        for (arguments, words) in [(["bench", "pingpong", "--case", "nosuch"], "no case named 'nosuch'"),
                                   (["-n", "4", "info"], "-n/--workers 4 cannot be used here: the number of ranks is set by mpirun, which started 2")] {
            let job = try Jobs.run("swiftpar", arguments, launch: .mpirun(2), timeout: 60)
            #expect(job.status == 64, "\(arguments): \(job.report)")
            #expect(job.errors.components(separatedBy: words).count == 2, "\(arguments): printed \(job.errors.components(separatedBy: words).count - 1) times\n\(job.report)")
            #expect(job.errors.components(separatedBy: "Usage: ").count == 2, "\(arguments): \(job.report)")
        }
        // The launcher's own count is accepted: one command line works both ways.
        let same = try Jobs.run("swiftpar", ["-n", "2", "info"], launch: .mpirun(2), timeout: 60)
        #expect(same.status == 0 && same.output.hasPrefix("backend mpi, 2 ranks"), "\(same.report)")
        // A rank whose own command line is wrong still says so, naming itself.
        let binary = Jobs.product("swiftpar")
        let alone = try Jobs.runCommand(["mpirun", "-n", "1", binary, "info", ":", "-n", "1", binary, "info", "--bogus"], timeout: 60)
        #expect(alone.status == 64 && alone.errors.contains("rank 1: Error: Unknown option '--bogus'"), "\(alone.report)")
        // A program's own SwiftPar.run reports a bad setting once too, with status 2.
        let program = try Jobs.run("swiftpar-checks", ["start-method"], launch: .mpirun(2), environment: ["SWIFTPAR_MPI_MESSAGE_LIMIT": "lots"], timeout: 60)
        #expect(program.status == 2, "\(program.report)")
        #expect(program.errors.components(separatedBy: "SWIFTPAR_MPI_MESSAGE_LIMIT=lots").count == 2, "\(program.report)")
        // A library the user named that does not load is the user's setting to mend: said once,
        // and not taken for a missing Open MPI; info on the local backend names it too.
        let named = ["SWIFTPAR_MPI_LIBRARY": "/nonexistent/libmpi.so"]
        let library = try Jobs.run("swiftpar", ["info"], launch: .mpirun(2), environment: named, timeout: 60)
        #expect(library.status != 0, "\(library.report)")
        #expect(library.errors.components(separatedBy: "swiftpar: cannot start MPI: cannot load SWIFTPAR_MPI_LIBRARY=/nonexistent/libmpi.so: ").count == 2
                && library.errors.contains("point SWIFTPAR_MPI_LIBRARY at Open MPI's libmpi.so") && !library.errors.contains("install Open MPI"),
                "\(library.report)")
        let localInfo = try Jobs.run("swiftpar", ["info"], launch: .local(2), environment: named, timeout: 60)
        #expect(localInfo.status == 0 && localInfo.output.hasPrefix("backend local, 2 ranks, SWIFTPAR_MPI_LIBRARY=/nonexistent/libmpi.so does not load\n"),
                "\(localInfo.report)")
        // Every setting is checked on every backend, also those only MPI uses.
        for (variable, value, words) in [("SWIFTPAR_MPI_THREAD_LEVEL", "bogus", "is not one of single, funneled, serialized, multiple"),
                                         ("SWIFTPAR_DIRECT_OUTPUT", "yes", "is not 0 or 1")] {
            for launch in [Launch.local(2), .mpirun(2)] {
                let job = try Jobs.run("swiftpar", ["primes", "1e6"], launch: launch, environment: [variable: value], timeout: 60)
                #expect(job.status == 64 && job.output.isEmpty, "\(variable) under \(launch): \(job.report)")
                #expect(job.errors.components(separatedBy: "\(variable)=\(value) \(words)").count == 2, "\(variable) under \(launch): \(job.report)")
            }
        }
    }

    @Test("A first word that names no command is called that, with the commands listed; so are a missing command and an unknown benchmark")
    func unknownCommand() throws {
        for arguments in [["bogus"], ["-n", "2", "bogus"]] {
            let job = try Jobs.run("swiftpar", arguments, launch: .serial)
            #expect(job.status == 64 && job.errors.contains("Error: unknown command 'bogus': the commands are run, primes, hash, info, bench"),
                    "\(arguments): \(job.report)")
        }
        // Good options and no command: argument-parser blamed the first option.
        for arguments in [["-n", "2"], ["--json"], ["-n", "2", "--backend", "local"]] {
            let job = try Jobs.runCommand([Jobs.product("swiftpar")] + arguments)
            #expect(job.status == 64 && job.errors.contains("Error: no command given: the commands are run, primes, hash, info, bench"),
                    "\(arguments): \(job.report)")
        }
        for arguments in [["bench", "foo"], ["bench", "-n", "2", "foo"], ["-n", "2", "bench", "foo", "--json"]] {
            let job = try Jobs.runCommand([Jobs.product("swiftpar")] + arguments)
            #expect(job.status == 64 && job.errors.contains("Error: unknown benchmark 'foo': the benchmarks are experiment, pingpong, codec, wordcount, collectives, pool, primes, hash"),
                    "\(arguments): \(job.report)")
        }
    }

    @Test("Benchmarks refuse values they cannot measure with, and bench hash reports what it cannot read")
    func benchmarkValues() throws {
        let refused: [([String], String)] = [
            (["collectives", "--count", "0"], "--count must be a whole number from 1 to 268435456 (2 GiB of doubles), not 0"),
            // A negative value is a value (argument-parser took it for a missing one).
            (["collectives", "--count", "-5"], "--count must be a whole number from 1 to 268435456 (2 GiB of doubles), not -5"),
            (["pingpong", "--repetitions", "-1"], "--repetitions must be at least 1"),
            (["collectives", "--repetitions", "0"], "--repetitions must be at least 1, not 0"),
            (["experiment", "--tasks", "0"], "--tasks must be a whole number from 1 to 1000, not 0"),
            (["experiment", "--limit", "1"], "--limit must be a whole number from 2 to 10^12, not 1"),
        ]
        for (arguments, words) in refused {
            let job = try Jobs.runCommand([Jobs.product("swiftpar"), "bench"] + arguments, timeout: 60)
            #expect(job.status == 64 && job.errors.contains(words) && !job.errors.contains("crashed"), "\(arguments): \(job.report)")
        }
        // One double per call (the check used to read the second, past the end).
        let one = try Jobs.runCommand([Jobs.product("swiftpar"), "-n", "2", "bench", "collectives", "--count", "1", "--repetitions", "1"], timeout: 60)
        #expect(one.status == 0 && one.output.contains("1 doubles on 2 ranks"), "\(one.report)")
        let missing = "/nonexistent-\(UUID().uuidString)"
        let hash = try Jobs.runCommand([Jobs.product("swiftpar"), "-n", "2", "bench", "hash", missing], timeout: 60)
        #expect(hash.status == 1 && hash.errors.contains("swiftpar: \(missing): No such file or directory"), "\(hash.report)")
    }

    @Test("bench pingpong works on the local backend")
    func pingPongLocal() throws {
        let result = try Jobs.runCommand([Jobs.product("swiftpar"), "-n", "2", "bench", "pingpong", "--repetitions", "1"], timeout: 120)
        #expect(result.status == 0, "\(result.report)")
        #expect(result.output.contains("(local backend)") && result.output.contains("codable_4MiB"), "\(result.report)")
    }

    @Test("--backend local under mpirun is refused with a clear message")
    func localUnderMPIRefused() throws {
        let result = try Jobs.run("swiftpar", ["--backend", "local", "info"], launch: .mpirun(2))
        #expect(result.status != 0, "\(result.report)")
        #expect(result.errors.contains("--backend local cannot be used here: this process was started by mpirun"), "\(result.report)")
    }

    @Test("Unknown flags and bad values are usage errors with a non-zero exit")
    func badFlags() throws {
        let unknown = try Jobs.run("swiftpar", ["info", "--bogus"], launch: .serial)
        #expect(unknown.status != 0 && unknown.errors.contains("Unknown option '--bogus'"), "\(unknown.report)")
        let zero = try Jobs.run("swiftpar", ["info", "-n", "0"], launch: .serial)
        #expect(zero.status != 0 && zero.errors.contains("at least 1"), "\(zero.report)")
        let backend = try Jobs.run("swiftpar", ["info", "--backend", "carrier-pigeon"], launch: .serial)
        #expect(backend.status != 0 && backend.errors.contains("carrier-pigeon"), "\(backend.report)")
    }

    @Test("An unknown option is reported even where argument-parser would report something else first")
    func unknownOptionsFirst() throws {
        // `swiftpar hash *` in a folder holding a file named -dash: -d -a -s -h, and -h asked for help.
        let bundle = try Jobs.run("swiftpar", ["hash", "-dash", "notes.txt"], launch: .serial)
        #expect(bundle.status == 64 && bundle.errors.contains("Unknown option '-dash'") && bundle.output.isEmpty, "\(bundle.report)")
        let alone = try Jobs.run("swiftpar", ["hash", "--bogus"], launch: .serial)
        #expect(alone.status == 64 && alone.errors.contains("Unknown option '--bogus'"), "\(alone.report)")
        let info = try Jobs.run("swiftpar", ["info", "-zh"], launch: .serial)
        #expect(info.status == 64 && info.errors.contains("Unknown option '-zh'") && info.output.isEmpty, "\(info.report)")
        // Help asked for in a bundle of real flags, or on its own, is still help.
        let help = try Jobs.run("swiftpar", ["run", "-kh"], launch: .serial)
        #expect(help.status == 0 && help.output.contains("OVERVIEW: Run a shell command"), "\(help.report)")
        let plain = try Jobs.run("swiftpar", ["hash", "-h"], launch: .serial)
        #expect(plain.status == 0 && plain.output.contains("OVERVIEW: SHA-256"), "\(plain.report)")
        // But `hash *` in a folder holding a file named -h does not print the help into the
        // checksum file: a usage error, nothing on standard output (also past 64 operands).
        for operands in [["-h", "notes.txt"], ["a", "-h"], (0..<70).map { "f\($0)" } + ["-h"], ["--help", "a"]] {
            let beside = try Jobs.run("swiftpar", ["hash"] + operands, launch: .serial)
            #expect(beside.status == 64 && beside.output.isEmpty && beside.errors.contains("among the files to hash"),
                    "\(operands.count) operands: \(beside.report)")
        }
        // Nor does a file named -o take the next file for the output and overwrite it with the
        // sums (found by a helper: exit 0, file a overwritten); ./* hashes them all.
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("swiftpar-dash-\(getpid())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let swiftpar = shellQuoted(Jobs.product("swiftpar"))
        let dashedFile = try Jobs.runCommand(["bash", "-c", """
            cd \(shellQuoted(folder.path)) && echo A > a && echo B > b && echo O > ./-o && echo J > ./--json
            SWIFTPAR_BACKEND=serial \(swiftpar) hash * 2> ../err.\(getpid()); echo "glob $?"; cat a b; cat ../err.\(getpid()); rm ../err.\(getpid())
            SWIFTPAR_BACKEND=serial \(swiftpar) hash ./* | cmp - <(sha256sum ./--json ./-o ./a ./b) && echo "dotted same"
            """])
        #expect(dashedFile.output.hasPrefix("glob 64\nA\nB\n") && dashedFile.output.contains("-o gives the output file and is also a file in this folder")
                && dashedFile.output.contains("dotted same\n"), "\(dashedFile.report)")
        // No file at all: standard input, as sha256sum reads it (it was a usage error).
        // Under a launcher rank 0's standard input is a pipe even at a terminal: - is needed.
        let expected = try Jobs.runShell("printf 'some bytes' | sha256sum")
        for (launch, operands) in [(Launch.serial, [String]()), (.local(2), []), (.mpirun(2), ["-"])] {
            let piped = try Jobs.runShell("printf 'some bytes' | \(Jobs.shellCommand("swiftpar", ["hash"] + operands, launch: launch)); echo \"status $?\"")
            #expect(piped.output == expected.output + "status 0\n" && expected.output.hasSuffix("  -\n"), "\(launch):\n\(piped.report)")
        }
        let launched = try Jobs.runShell("printf 'some bytes' | \(Jobs.shellCommand("swiftpar", ["hash"], launch: .mpirun(2)))")
        #expect(launched.status != 0 && launched.errors.contains("give at least one file or directory to hash"), "\(launched.report)")
        let dashed = try Jobs.run("swiftpar", ["hash", "--", "-h"], launch: .serial)
        #expect(dashed.status == 1 && dashed.errors.contains("-h: No such file or directory"), "\(dashed.report)")
        // Under mpirun, rank 0 alone says it.
        let mpi = try Jobs.run("swiftpar", ["hash", "-dash"], launch: .mpirun(2))
        #expect(mpi.status != 0 && mpi.errors.components(separatedBy: "Unknown option '-dash'").count == 2, "\(mpi.report)")
    }

    @Test("hash reads <(command), a named pipe whose writer comes late and /dev/null named as operands as sha256sum does; under mpirun <(command) is explained")
    func hashStreams() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("swiftpar-streams-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        #expect(mkfifo(folder.appendingPathComponent("pipe").path, 0o600) == 0)
        // The named pipe's writer comes after the stall timeout: waiting for it is not a stall.
        let ours = Jobs.shellCommand("swiftpar", ["hash", "--stall-timeout", "1"], launch: .local(2))
        let local = try Jobs.runCommand(["bash", "-c", """
            cd \(shellQuoted(folder.path)) && printf 'A' > a
            (sleep 2.5; printf 'late writer' > pipe) &
            \(ours) <(printf 'from a command') pipe /dev/null a > ours; echo "status $?"; wait
            (printf 'late writer' > pipe) &
            sha256sum <(printf 'from a command') pipe /dev/null a > theirs; wait
            cmp ours theirs && echo same; cat ours
            """], timeout: 60)
        #expect(local.output.hasPrefix("status 0\nsame\n") && local.output.contains("  /dev/fd/") && local.output.contains("  pipe\n"), "\(local.report)")
        // Under mpirun rank 0 is not the shell's child: the descriptor is missing, and said why.
        let launched = try Jobs.runCommand(["bash", "-c", """
            cd \(shellQuoted(folder.path)) && \(Jobs.shellCommand("swiftpar", ["hash"], launch: .mpirun(2))) <(printf 'from a command') a
            """], timeout: 60)
        #expect(launched.status != 0 && launched.errors.contains("a descriptor of the shell that started the launcher, which the ranks do not have")
                && launched.output.hasSuffix("  a\n"), "\(launched.report)")
    }

    @Test("bench wordcount never writes or reads its corpus through a folder in the temporary folder that is not the user's own")
    func wordCountCorpusFolder() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("swiftpar-corpus-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        // Found by a helper: a folder planted at the corpus's fixed path, holding a link named
        // like a corpus file, made the benchmark overwrite the link's target with exit 0.
        let victim = folder.appendingPathComponent("victim")
        try Data("precious\n".utf8).write(to: victim)
        let corpus = "swiftpar-wordcount-corpus-v1-\(getuid())"
        for (name, plant) in [("linked", "mkdir -p linked/\(corpus) && ln -s ../../victim linked/\(corpus)/text-1000.txt && chmod 777 linked/\(corpus)"),
                              ("symlink", "mkdir -p symlink elsewhere && ln -s ../elsewhere symlink/\(corpus)")] {
            let setup = try Jobs.runShell("cd \(shellQuoted(folder.path)) && \(plant)")
            #expect(setup.status == 0, "\(setup.report)")
            let result = try Jobs.run("swiftpar", ["bench", "wordcount", "--plain"], launch: .serial,
                                      environment: ["TMPDIR": folder.appendingPathComponent(name).path], timeout: 60)
            #expect(result.status != 0 && result.errors.contains("is not a folder of this user's that only it can write"), "\(name):\n\(result.report)")
        }
        #expect(try String(contentsOf: victim, encoding: .utf8) == "precious\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.appendingPathComponent("elsewhere").path).isEmpty)
    }

    @Test("bench pingpong --json under mpirun -n 2 prints one JSON document with latency and bandwidth of every case")
    func pingPongJSON() throws {
        let result = try Jobs.run("swiftpar", ["bench", "pingpong", "--json", "--repetitions", "1"], launch: .mpirun(2), timeout: 180)
        #expect(result.status == 0, "\(result.report)")
        let object = try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any]
        #expect(object?["backend"] as? String == "mpi", "\(result.report)")
        let results = object?["results"] as? [String: [String: Any]]
        for key in ["numbers_8B", "numbers_64KiB", "numbers_4MiB", "codable_8B", "codable_64KiB", "codable_4MiB"] {
            let latency = results?[key]?["oneWayMicroseconds"] as? Double
            #expect(latency != nil && latency! > 0, "\(key) missing or not positive:\n\(result.report)")
        }
    }

    @Test("bench pingpong and bench codec --case measure only the cases named, and an unknown name lists the real ones")
    func benchCases() throws {
        // Global options may also sit between `bench` and the benchmark's name.
        let pingPong = try Jobs.runCommand([Jobs.product("swiftpar"), "bench", "-n", "2", "--json", "pingpong", "--repetitions", "1",
                                            "--case", "small", "--case", "numbers_8B"], timeout: 120)
        #expect(pingPong.status == 0, "\(pingPong.report)")
        let object = try JSONSerialization.jsonObject(with: Data(pingPong.output.utf8)) as? [String: Any]
        let results = object?["results"] as? [String: [String: Any]]
        #expect(results.map { Set($0.keys) } == ["small", "numbers_8B"], "\(pingPong.report)")
        #expect((results?["small"]?["oneWayMicroseconds"] as? Double ?? 0) > 0, "\(pingPong.report)")

        let codec = try Jobs.run("swiftpar", ["bench", "codec", "--json", "--repetitions", "1", "--case", "strings_64KiB"], launch: .serial,
                                 timeout: 120)
        #expect(codec.status == 0, "\(codec.report)")
        let rows = try JSONSerialization.jsonObject(with: Data(codec.output.utf8)) as? [String: [String: Any]]
        #expect(rows.map { Array($0.keys) } == ["strings_64KiB"], "\(codec.report)")
        #expect((rows?["strings_64KiB"]?["bytes"] as? Int ?? 0) > 65_536, "\(codec.report)")

        for (command, name) in [("pingpong", "case"), ("codec", "shape")] {
            let unknown = try Jobs.run("swiftpar", ["bench", command, "--case", "tiny"], launch: .serial)
            #expect(unknown.status == 64, "\(unknown.report)")
            #expect(unknown.errors.contains("no \(name) named 'tiny'") && unknown.errors.contains("small"), "\(unknown.report)")
        }
    }

    @Test("bench pingpong with one rank explains that it needs two")
    func pingPongNeedsTwoRanks() throws {
        let result = try Jobs.run("swiftpar", ["bench", "pingpong"], launch: .serial)
        #expect(result.status != 0, "\(result.report)")
        #expect(result.errors.contains("needs at least 2 ranks, for example: swiftpar --backend local -n 2 bench pingpong"), "\(result.report)")
        let local = try Jobs.runCommand([Jobs.product("swiftpar"), "-n", "1", "bench", "pingpong"])
        #expect(local.status != 0 && local.errors.contains("for example: swiftpar -n 2 bench pingpong"), "\(local.report)")
    }

    @Test("bench wordcount names a folder that is missing or is a file before it starts")
    func wordCountFolder() throws {
        let missing = try Jobs.run("swiftpar", ["bench", "wordcount", "/no/such/folder"], launch: .serial)
        #expect(missing.status == 64 && missing.errors.contains("Error: /no/such/folder: No such file or directory"), "\(missing.report)")
        let file = try Jobs.run("swiftpar", ["bench", "wordcount", "/etc/passwd"], launch: .serial)
        #expect(file.status == 64 && file.errors.contains("/etc/passwd: Not a directory"), "\(file.report)")
    }

    @Test("bench wordcount counts files whose names are not UTF-8, leaves out links as Python does, and agrees with Python",
          arguments: [Launch.local(2), .mpirun(2)])
    func wordCountRawNames(_ launch: Launch) throws {
        let folder = "/tmp/swiftpar-words-\(UUID().uuidString)"
        // A folder and a file named in Latin-1, a link to a counted file (left out), words with
        // a byte that is not UTF-8, and a named pipe (left out, never waited on).
        let setup = try Jobs.runShell("""
            mkdir -p "\(folder)/$(printf 'd\\351')" && cd '\(folder)' && printf 'to be or not to be\\n' > a.txt \\
            && printf 'be quick\\tx\\377y\\n' > "$(printf 'd\\351/x\\377')" && ln -s a.txt link && mkfifo pipe
            """)
        #expect(setup.status == 0, "\(setup.report)")
        defer { _ = try? Jobs.runShell("rm -rf '\(folder)'") }
        let ours = try Jobs.runShell(Jobs.shellCommand("swiftpar", ["bench", "wordcount", "--json", folder], launch: launch), timeout: 120)
        let python = try Jobs.runCommand(["python3", LaunchTests.root.appendingPathComponent("Benchmarks/wordcount_python.py").path, folder, "0"])
        #expect(ours.status == 0 && python.status == 0, "ours:\n\(ours.report)\npython:\n\(python.report)")
        let report = try JSONSerialization.jsonObject(with: Data(ours.output.utf8)) as? [String: Any]
        let reference = try JSONSerialization.jsonObject(with: Data(python.output.utf8)) as? [String: Any]
        for key in ["files", "words", "distinctWords"] {
            #expect(report?[key] as? Int == reference?[key] as? Int, "\(key): ours \(String(describing: report?[key])), Python \(String(describing: reference?[key]))")
        }
        #expect(report?["files"] as? Int == 2 && report?["words"] as? Int == 9 && report?["distinctWords"] as? Int == 6, "\(ours.report)")
        // The Latin-1 folder given on the command line is found.
        let operand = try Jobs.runShell("cd '\(folder)' && " + Jobs.shellCommand("swiftpar", ["bench", "wordcount", "--json"], launch: launch)
                                        + " \"$(printf 'd\\351')\"", timeout: 120)
        let single = try? JSONSerialization.jsonObject(with: Data(operand.output.utf8)) as? [String: Any]
        #expect(operand.status == 0 && single?["files"] as? Int == 1 && single?["words"] as? Int == 3, "\(operand.report)")
        // A folder it cannot read ends the count with its name, not a smaller count (as root,
        // the count runs as nobody, whom the folder's mode keeps out).
        let asNobody = "setpriv --reuid=65534 --regid=65534 --clear-groups env "
        guard getuid() == 0, try Jobs.runShell(asNobody + Jobs.shellCommand("swiftpar", ["--version"], launch: .serial)).status == 0 else { return }
        let locked = try Jobs.runShell("chmod 755 '\(folder)' && mkdir '\(folder)/locked' && chmod 000 '\(folder)/locked' && " + asNobody
                                       + Jobs.shellCommand("swiftpar", ["bench", "wordcount", folder], launch: .local(2)), timeout: 120)
        #expect(locked.status != 0 && locked.errors.contains("cannot count every file under \(folder): \(folder)/locked: Permission denied"),
                "\(locked.report)")
    }

    @Test("bench pool draws a progress bar on a terminal and nothing when stderr is piped")
    func progressBarOnlyOnTerminal() throws {
        let arguments = ["-n", "2", "bench", "pool", "--tasks", "200000", "--round-trips", "100", "--heavy-tasks", "4", "--limit", "300000"]
        let piped = try Jobs.runCommand([Jobs.product("swiftpar")] + arguments, timeout: 120)
        #expect(piped.status == 0, "\(piped.report)")
        #expect(piped.errors.isEmpty, "stderr should be empty when piped:\n\(piped.report)")
        // script(1) gives the command a pseudo-terminal, as an interactive shell would.
        let command = ([Jobs.product("swiftpar")] + arguments).joined(separator: " ")
        let terminal = try Jobs.runCommand(["script", "-qec", command, "/dev/null"], timeout: 120)
        #expect(terminal.status == 0, "\(terminal.report)")
        #expect(terminal.output.contains("squaring 200000 integers [") && terminal.output.contains("%)"), "no progress bar:\n\(terminal.report)")
    }

    @Test("hash's notes and errors start a line of their own on a terminal, not the end of the progress bar's")
    func notesAfterProgressBar() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("swiftpar-bar-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        try FileManager.default.createDirectory(at: folder.appendingPathComponent("a"), withIntermediateDirectories: true)
        // Two sparse files of 1 GiB take a second or more: the bar is drawn before the error
        // for the missing operand, which comes last in path order.
        for name in ["big1", "big2"] {
            let path = folder.appendingPathComponent("a").appendingPathComponent(name).path
            _ = FileManager.default.createFile(atPath: path, contents: nil)
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            try handle.truncate(atOffset: 1 << 30)
            try handle.close()
        }
        let command = "cd '\(folder.path)' && '\(Jobs.product("swiftpar"))' -n 2 hash a zz-missing > /dev/null"
        let terminal = try Jobs.runCommand(["script", "-qec", command, "/dev/null"], timeout: 120)
        let text = terminal.output
        #expect(text.contains("%)") && text.contains("swiftpar: zz-missing: No such file or directory"), "no bar, or no error:\n\(terminal.report)")
        // Every message starts a line: after a newline, or after the bar was taken off its line.
        var searched = text.startIndex
        while let found = text.range(of: "swiftpar: ", range: searched..<text.endIndex) {
            let before = text[text.startIndex..<found.lowerBound]
            #expect(before.isEmpty || before.hasSuffix("\n") || before.hasSuffix("\r\u{1B}[K"), "a message glued to the bar:\n\(text.debugDescription)")
            searched = found.upperBound
        }
    }
}
