import Foundation
import Testing

/// Nothing lost, nothing hangs: the cases of the hostile test, each run as users run them, on
/// every backend where it applies. A fault must give the same outcome and the same words under
/// mpirun and on the local backend.
@Suite("Reliability: write errors, file names, mistakes that used to hang", .serialized)
struct ReliabilityTests {
    static let backends: [Launch] = [.serial, .local(2), .spawned(2), .mpirun(2)]
    static let multiRank: [Launch] = [.local(3), .spawned(3), .mpirun(3)]

    /// A small tree to hash.
    func smallTree() throws -> URL {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("swiftpar-small-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        for i in 0..<300 { try Data("file \(i)\n".utf8).write(to: root.appendingPathComponent("f\(i).txt")) }
        return root
    }

    @Test("Output to a full disk or a closed standard output ends every command non-zero with a clear message", arguments: backends)
    func writeErrors(_ launch: Launch) throws {
        let root = try smallTree()
        defer { try? FileManager.default.removeItem(at: root) }
        let commands: [[String]] = [["hash", root.path], ["primes", "1e6"], ["primes", "1e5", "--list"], ["primes", "1e6", "--json"], ["info"],
                                       ["--help"], ["run", "--help"], ["--version"]]
        for arguments in commands {
            for (redirect, words) in [("> /dev/full", "No space left on device"), (">&-", "Bad file descriptor")] {
                let script = Jobs.shellCommand("swiftpar", arguments, launch: launch) + " " + redirect
                let result = try Jobs.runShell(script, timeout: 60)
                #expect(result.status != 0, "\(arguments) \(redirect) under \(launch) exited 0:\n\(result.report)")
                #expect(result.errors.contains("write to standard output failed: \(words)"), "\(arguments) \(redirect) under \(launch):\n\(result.report)")
            }
        }
    }

    @Test("Under mpirun through a wrapper (a script, timeout) a full disk is still an error and the output file is not hashed; a wrapper's own file or pipe keeps the output")
    func wrappedUnderMPIRun() throws {
        let root = try smallTree()
        defer { try? FileManager.default.removeItem(at: root) }
        let swiftpar = shellQuoted(Jobs.product("swiftpar"))
        func wrapper(_ name: String, _ body: String) throws -> String {
            let path = root.appendingPathComponent(name).path
            try "#!/bin/sh\n\(body)\n".write(toFile: path, atomically: true, encoding: .utf8)
            #expect(chmod(path, 0o755) == 0)
            return shellQuoted(path)
        }
        let plain = try wrapper("plain.sh", "\(swiftpar) \"$@\"")
        let ownFile = try wrapper("file.sh", "exec \(swiftpar) \"$@\" > \(shellQuoted(root.path + "/own.txt"))")
        let throughSed = try wrapper("sed.sh", "\(swiftpar) \"$@\" | sed 's/^/piped: /'")
        let merged = try wrapper("merged.sh", "exec \(swiftpar) \"$@\" 2>&1")
        for started in [plain, "timeout 60 " + swiftpar] {
            let full = try Jobs.runShell("mpirun -n 2 \(started) run -k echo ::: a b > /dev/full", timeout: 60)
            #expect(full.status == 255 && full.errors.contains("swiftpar: run: write to standard output failed: No space left on device"),
                    "\(started):\n\(full.report)")
            let hashed = try Jobs.runShell("cd '\(root.path)' && mpirun -n 2 \(started) hash . > SUMS", timeout: 60)
            let sums = (try? String(contentsOfFile: root.path + "/SUMS", encoding: .utf8)) ?? ""
            #expect(hashed.status == 0 && hashed.errors.contains("skipped ./SUMS: it is the file the output is written to")
                    && !sums.contains("./SUMS") && sums.contains("  ./f299.txt\n"), "\(started):\n\(hashed.report)\n\(sums.suffix(300))")
        }
        let intoFile = try Jobs.runShell("mpirun -n 2 \(ownFile) run -k echo ::: a b", timeout: 60)
        let own = (try? String(contentsOfFile: root.path + "/own.txt", encoding: .utf8)) ?? ""
        #expect(intoFile.status == 0 && intoFile.output.isEmpty && own == "a\nb\n", "\(intoFile.report)\nown.txt: \(own)")
        let piped = try Jobs.runShell("mpirun -n 2 \(throughSed) run -k echo ::: a b", timeout: 60)
        #expect(piped.status == 0 && piped.output == "piped: a\npiped: b\n", "\(piped.report)")
        // Errors the wrapper sent to standard output stay there.
        let joined = try Jobs.runShell("mpirun -n 2 \(merged) run -k 'echo out{}; echo err{} >&2' ::: a", timeout: 60)
        #expect(joined.status == 0 && joined.output.contains("outa\n") && joined.output.contains("erra\n") && !joined.errors.contains("erra"),
                "\(joined.report)")
        // Standard input passed on through the wrapper: read whole, or refused as locally when
        // mpirun could not read its own (a directory).
        let input = try Jobs.runShell("printf 'x\\ny\\n' | mpirun -n 2 \(plain) run -k echo", timeout: 60)
        #expect(input.status == 0 && input.output == "x\ny\n", "\(input.report)")
        for command in [Jobs.shellCommand("swiftpar", ["run", "echo"], launch: .local(2)), Jobs.shellCommand("swiftpar", ["run", "echo"], launch: .mpirun(2)),
                        "mpirun -n 2 \(plain) run echo"] {
            let directory = try Jobs.runShell(command + " < /tmp", timeout: 60)
            #expect(directory.status == 255 && directory.output.isEmpty
                    && directory.errors.contains("swiftpar: run: reading standard input failed: Is a directory"), "\(directory.report)")
        }
    }

    @Test("--output FILE: rank 0 alone writes the file, every write checked and named; the file the output goes to is never hashed", arguments: backends)
    func outputFile(_ launch: Launch) throws {
        let root = try smallTree()
        defer { try? FileManager.default.removeItem(at: root) }
        // Into a file inside the tree being hashed: the same lines as sha256sum's of the other files.
        let sums = root.appendingPathComponent("SUMS").path
        let hashed = try Jobs.runShell("cd '\(root.path)' && " + Jobs.shellCommand("swiftpar", ["hash", ".", "--output", sums], launch: launch), timeout: 60)
        let reference = try Jobs.runShell("cd '\(root.path)' && for f in ./f*; do sha256sum \"$f\"; done")
        let written = (try? String(contentsOfFile: sums, encoding: .utf8)) ?? ""
        let lines = written.split(separator: "\n")
        #expect(hashed.status == 0 && lines.sorted() == reference.output.split(separator: "\n").sorted() && lines.count == 300,
                "\(hashed.report)\nfile:\n\(written.prefix(300))")
        #expect(hashed.errors.contains("skipped ./SUMS: it is the file the output is written to") && hashed.output.isEmpty, "\(hashed.report)")
        // The same through the shell's redirection (which creates the file before swiftpar starts).
        let redirected = try Jobs.runShell("cd '\(root.path)' && " + Jobs.shellCommand("swiftpar", ["hash", "."], launch: launch) + " > SUMS2", timeout: 60)
        let second = (try? String(contentsOfFile: root.appendingPathComponent("SUMS2").path, encoding: .utf8)) ?? ""
        #expect(redirected.status == 0 && second.split(separator: "\n").count == 301 && !second.contains("SUMS2"), "\(redirected.report)\n\(second.suffix(300))")
        // A full disk, and a folder that does not exist: non-zero, naming the file.
        for (arguments, words) in [(["primes", "1e5", "--list", "-o", "/dev/full"], "write to /dev/full failed: No space left on device"),
                                   (["hash", root.path, "--output", "/dev/full"], "write to /dev/full failed: No space left on device"),
                                   (["info", "-o", "/nonexistent-\(UUID().uuidString)/out"], "opening the output file /nonexistent-")] {
            let result = try Jobs.run("swiftpar", arguments, launch: launch, timeout: 60)
            #expect(result.status != 0 && result.errors.contains(words), "\(arguments) under \(launch):\n\(result.report)")
        }
        // "-" is standard output; the value may be joined to -o.
        let dash = try Jobs.run("swiftpar", ["primes", "100", "--output", "-"], launch: launch, timeout: 60)
        #expect(dash.status == 0 && dash.output.contains("25"), "\(dash.report)")
        let joined = try Jobs.runShell("cd '\(root.path)' && " + Jobs.shellCommand("swiftpar", ["primes", "100", "-oJOINED"], launch: launch) + " && cat JOINED", timeout: 60)
        #expect(joined.status == 0 && joined.output.contains("25"), "\(joined.report)")
        // run: an output file that cannot be written is an error of run's own (255), not a count of failed tasks.
        let farm = try Jobs.run("swiftpar", ["run", "-o", "/nonexistent-\(UUID().uuidString)/out", "echo", ":::", "a"], launch: launch, timeout: 60)
        #expect(farm.status == 255 && farm.errors.contains("opening the output file"), "\(farm.report)")
    }

    @Test("primes by trial near 10^17 shows progress while one number takes seconds: a stall timeout of 2 s does not end it",
          arguments: [Launch.local(2), .mpirun(2)])
    func trialDivisionProgress(_ launch: Launch) throws {
        let result = try Jobs.run("swiftpar", ["primes", "--method", "trial", "--from", "100000000000000000", "100000000000000300",
                                               "--stall-timeout", "2"], launch: launch, timeout: 120)
        // primesieve 100000000000000000 100000000000000300 -c: 9.
        #expect(result.status == 0 && result.output == "9\n", "\(result.report)")
    }

    @Test("hash - waiting for standard input that comes slowly is not a stall; a stopped rank's stall names the command, not a library call",
          arguments: [Launch.local(2), .mpirun(2)])
    func slowStandardInputIsNotAStall(_ launch: Launch) throws {
        let slow = try Jobs.runShell("(echo x; sleep 3; echo a) | " + Jobs.shellCommand("swiftpar", ["hash", "--stall-timeout", "1", "-"], launch: launch),
                                     timeout: 60)
        // printf 'x\na\n' | sha256sum
        let expected = try Jobs.runShell("printf 'x\\na\\n' | sha256sum", timeout: 10).output
        #expect(slow.status == 0 && slow.output == expected && expected.hasSuffix("  -\n"), "\(launch): \(slow.report)")
        let stopped = try Jobs.runShell(Jobs.shellCommand("swiftpar", ["run", "--stall-timeout", "1", "sleep 0.2; [ {} = b ] && kill -STOP $PPID; echo {}", ":::", "a", "b"],
                                                          launch: launch), timeout: 60)
        #expect(stopped.status == 255 && stopped.errors.contains(": run has waited ") && !stopped.errors.contains("receive"), "\(launch): \(stopped.report)")
    }

    @Test("A reader that stops early (| head -1) ends the command at once and quietly", arguments: backends)
    func closedPipe(_ launch: Launch) throws {
        let script = Jobs.shellCommand("swiftpar", ["primes", "1e14", "--list"], launch: launch) + " | head -1"
        let result = try Jobs.runShell(script, timeout: 60)
        #expect(result.output == "2\n", "\(result.report)")
        #expect(result.seconds < 10, "took \(result.seconds) s:\n\(result.report)")
        if case .mpirun = launch {} else { #expect(result.errors.isEmpty, "\(result.report)") }
        #expect(Jobs.waitForNoSurvivors(named: "primes 1e14").isEmpty)
    }

    @Test("File names that are not UTF-8 are hashed and printed as bytes, as sha256sum prints them", arguments: [Launch.local(2), .mpirun(2)])
    func rawFileNames(_ launch: Launch) throws {
        let folder = "/tmp/swiftpar-names-\(UUID().uuidString)"
        // x\377 (Latin-1 ÿ) and x followed by U+FFFD are different files with the same repaired name.
        let setup = try Jobs.runShell("""
            mkdir -p '\(folder)' && cd '\(folder)' && printf one > "$(printf 'x\\377')" && printf two > "$(printf 'x\\357\\277\\275')" \
            && printf three > 'back\\slash' && printf four > "$(printf 'new\\nline')"
            """)
        #expect(setup.status == 0, "\(setup.report)")
        defer { _ = try? Jobs.runShell("rm -rf '\(folder)'") }
        let ours = try Jobs.runShell("cd '\(folder)' && " + Jobs.shellCommand("swiftpar", ["hash", "."], launch: launch) + " > ../sums-\(folder.suffix(8)) && LC_ALL=C sort ../sums-\(folder.suffix(8)) | od -An -c")
        let reference = try Jobs.runShell("cd '\(folder)' && for f in ./*; do sha256sum \"$f\"; done | LC_ALL=C sort | od -An -c")
        #expect(ours.status == 0 && ours.output == reference.output, "ours:\n\(ours.report)\nsha256sum:\n\(reference.output)")
        let check = try Jobs.runShell("cd '\(folder)' && sha256sum -c ../sums-\(folder.suffix(8)) && rm ../sums-\(folder.suffix(8))")
        #expect(check.status == 0 && check.output.components(separatedBy: ": OK").count == 5, "\(check.report)")
        // A Latin-1 name given on the command line is found.
        let operand = try Jobs.runShell("cd '\(folder)' && " + Jobs.shellCommand("swiftpar", ["hash"], launch: launch) + " \"$(printf 'x\\377')\" | od -An -c")
        let expected = try Jobs.runShell("cd '\(folder)' && sha256sum \"$(printf 'x\\377')\" | od -An -c")
        #expect(operand.status == 0 && operand.output == expected.output, "\(operand.report)")
    }

    @Test("A symbolic link named on the command line is followed, as sha256sum does")
    func symlinkOperand() throws {
        let root = try smallTree()
        defer { try? FileManager.default.removeItem(at: root) }
        let link = root.appendingPathComponent("link").path
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: root.appendingPathComponent("f1.txt").path)
        let ours = try Jobs.runCommand([Jobs.product("swiftpar"), "-n", "2", "hash", link])
        let reference = try Jobs.runCommand(["sha256sum", link])
        #expect(ours.status == 0 && ours.output == reference.output, "\(ours.report)\nsha256sum: \(reference.output)")
    }

    @Test("A named pipe in the tree is reported without blocking, and the rest is hashed")
    func namedPipe() throws {
        let root = try smallTree()
        defer { try? FileManager.default.removeItem(at: root) }
        #expect(mkfifo(root.appendingPathComponent("pipe").path, 0o600) == 0)
        let result = try Jobs.runCommand([Jobs.product("swiftpar"), "-n", "2", "hash", root.path], timeout: 30)
        #expect(result.status == 1 && !result.timedOut, "\(result.report)")
        #expect(result.errors.contains("pipe: not a regular file (a named pipe)"), "\(result.report)")
        #expect(result.output.split(separator: "\n").count == 300, "\(result.report)")
    }

    @Test("Bad command lines name the real problem", arguments: [
        (["primes", "-5"], "N must be a whole number from 0 to 10^18, not '-5'"),
        (["primes", "--from", "-5", "10"], "--from must be a whole number from 0 to 10^18, not '-5'"),
        (["-n", "-1", "info"], "-n/--workers must be a whole number of at least 1, not '-1'"),
        (["-n", "3000000", "info"], "3000000 local ranks is more than the 4096 one machine can run"),
        (["primes", "10", "--bogus"], "Unknown option '--bogus'"),
        (["primes", "--stall-timeout", "soon", "10"], "--stall-timeout must be a number of seconds"),
        // Found by a helper: these crashed (a bad pointer, a failed allocation of 800 GB).
        (["bench", "collectives", "--count", "9223372036854775807"], "--count must be a whole number from 1 to 268435456"),
        (["bench", "experiment", "--tasks", "9223372036854775807"], "--tasks must be a whole number from 1 to 1000, not 9223372036854775807"),
        (["bench", "pool", "--limit", "0"], "--limit must be a whole number from 2 to 10^12, not 0"),
        (["bench", "pingpong", "--repetitions", "0"], "--repetitions must be at least 1, not 0"),
        (["help", "nosuch"], "unknown command 'nosuch': the commands are run, primes, hash, info, bench"),
    ])
    func badCommandLines(_ arguments: [String], _ words: String) throws {
        let result = try Jobs.runCommand([Jobs.product("swiftpar")] + arguments, timeout: 30)
        #expect(result.status != 0 && result.errors.contains(words), "\(arguments):\n\(result.report)")
        #expect(result.output.isEmpty, "\(result.report)")
    }

    @Test("Bad settings in the environment are reported, never ignored", arguments: [
        (["SWIFTPAR_WORKERS": "999999999999"], "SWIFTPAR_WORKERS=999999999999 is not a whole number from 1 to 4096"),
        (["SWIFTPAR_BACKEND": "serial", "SWIFTPAR_WORKERS": "2"], "SWIFTPAR_BACKEND=serial runs exactly one rank, not 2"),
        (["SWIFTPAR_MPI_MESSAGE_LIMIT": "lots"], "SWIFTPAR_MPI_MESSAGE_LIMIT=lots is not a number of bytes"),
        (["SWIFTPAR_STALL_TIMEOUT": "-3"], "SWIFTPAR_STALL_TIMEOUT=-3 must be a number of seconds"),
    ])
    func badEnvironment(_ environment: [String: String], _ words: String) throws {
        var arguments = ["info"]
        if environment["SWIFTPAR_WORKERS"] == "2" { arguments = ["-n", "2", "info"] }
        let result = try Jobs.runCommand([Jobs.product("swiftpar")] + arguments, environment: environment, timeout: 30)
        #expect(result.status == 64 && result.errors.contains("Error: " + words), "\(environment):\n\(result.report)")
    }

    @Test("-n1 is one rank; -n 1024 local ranks start and report in order")
    func manyRanks() throws {
        let one = try Jobs.runCommand([Jobs.product("swiftpar"), "-n1", "info", "--json"])
        #expect(one.status == 0 && one.output.contains("\"size\" : 1"), "\(one.report)")
        let many = try Jobs.runCommand([Jobs.product("swiftpar"), "-n", "1024", "info"], timeout: 180)
        let lines = many.output.split(separator: "\n").filter { $0.hasPrefix("rank ") }
        #expect(many.status == 0 && lines.count == 1024, "\(many.report.prefix(3000))")
        #expect(lines.last?.hasPrefix("rank 1023 of 1024 on ") == true, "\(String(describing: lines.last))")
    }

    @Test("--list --json is one JSON array of the primes, in order")
    func listAsJSON() throws {
        let result = try Jobs.runCommand([Jobs.product("swiftpar"), "-n", "2", "primes", "--from", "90", "130", "--list", "--json"])
        #expect(result.status == 0, "\(result.report)")
        let numbers = try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [Int]
        #expect(numbers == [97, 101, 103, 107, 109, 113, 127], "\(result.report)")
        let empty = try Jobs.runCommand([Jobs.product("swiftpar"), "primes", "--from", "24", "28", "--list", "--json"])
        #expect((try JSONSerialization.jsonObject(with: Data(empty.output.utf8)) as? [Int]) == [], "\(empty.report)")
    }

    @Test("primes near 10^18 and just past the sieve's cached primes agree with primesieve",
          .enabled(if: FileManager.default.fileExists(atPath: "/usr/bin/primesieve")))
    func primesOfHugeNumbers() throws {
        for (low, high) in [("999999999990000000", "1000000000000000000"), ("20000000000000", "20000010000000")] {
            let reference = try Jobs.runCommand(["primesieve", low, high, "-c", "-q"])
            let ours = try Jobs.runCommand([Jobs.product("swiftpar"), "-n", "2", "primes", "--from", low, high], timeout: 120)
            #expect(ours.status == 0 && ours.output == reference.output, "\(low)...\(high):\n\(ours.report)\nprimesieve: \(reference.output)")
        }
        let listing = try Jobs.runCommand(["primesieve", "999999999999990000", "1e18", "-p"])
        let ours = try Jobs.runCommand([Jobs.product("swiftpar"), "-n", "2", "primes", "--from", "999999999999990000", "1e18", "--list"], timeout: 120)
        #expect(ours.status == 0 && ours.output == listing.output, "\(ours.report.prefix(1000))")
    }

    @Test("A window just below 10^18, where the large primes cross two whole blocks in batches, stays under 100 MB",
          .enabled(if: FileManager.default.fileExists(atPath: "/usr/bin/primesieve")))
    func primesBatchedMemory() throws {
        // 2.5·10^9 numbers: more than the largest block within 100 MB, so two blocks of even size.
        let (low, high) = ("999999997500000000", "1000000000000000000")
        let reference = try Jobs.runCommand(["primesieve", low, high, "-c", "-q"], timeout: 120)
        let ours = try Jobs.runCommand(["/usr/bin/time", "-f", "maxrss=%M", Jobs.product("swiftpar"), "--backend", "serial",
                                        "primes", "--from", low, high], timeout: 180)
        #expect(ours.status == 0 && ours.output == reference.output, "\(ours.report)\nprimesieve: \(reference.output)")
        let kilobytes = ours.errors.split(separator: "=").last.flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? Int.max
        #expect(kilobytes < 100_000, "the window took \(kilobytes) KiB")
    }

    @Test("With --memory 1G a window near 10^18 places its sieving primes once, agrees with primesieve, and stays within the budget",
          .enabled(if: FileManager.default.fileExists(atPath: "/usr/bin/primesieve")))
    func primesLargerMemory() throws {
        let (low, high) = ("999999997000000000", "1000000000000000000")
        let reference = try Jobs.runCommand(["primesieve", low, high, "-c", "-q"], timeout: 120)
        let local = try Jobs.runCommand(["/usr/bin/time", "-f", "maxrss=%M", Jobs.product("swiftpar"), "-n", "2",
                                         "primes", "--from", low, high, "--memory", "1G"], timeout: 300)
        #expect(local.status == 0 && local.output == reference.output, "\(local.report)\nprimesieve: \(reference.output)")
        let kilobytes = local.errors.split(separator: "=").last.flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? Int.max
        #expect(kilobytes < 1_000_000_000 / 1024, "a rank took \(kilobytes) KiB with --memory 1G")
        let mpi = try Jobs.run("swiftpar", ["primes", "--from", low, high, "--memory", "1G"], launch: .mpirun(2), timeout: 300)
        #expect(mpi.status == 0 && mpi.output == reference.output, "\(mpi.report)\nprimesieve: \(reference.output)")
        let binary = try Jobs.runCommand([Jobs.product("swiftpar"), "primes", "1e6", "--memory", "512MiB"])
        #expect(binary.status == 0 && binary.output == "78498\n", "\(binary.report)")
    }

    @Test("A program run alone on the MPI backend outlives the shell that started it")
    func mpiSingletonOutlivesItsParent() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("swiftpar-singleton-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        // A singleton's MPI_Init sets PMIx's variables, which once made it take the shell for a
        // launcher and end with SIGTERM, silently, when the shell exited. π(3·10^9) takes
        // longer than the shell lives.
        let script = """
            cd '\(folder.path)'
            sh -c "'\(Jobs.product("swiftpar"))' --backend mpi primes 3e9 > out 2> err & sleep 1; exit 0"
            waited=0
            while ! grep -q . out 2>/dev/null && [ $waited -lt 600 ]; do sleep 0.05; waited=$((waited + 1)); done
            sleep 0.2
            cat out err
            """
        let result = try Jobs.runShell(script, timeout: 60)
        #expect(result.output == "144449537\n", "\(result.report)")
    }

    @Test("primes 1e18 on 2 ranks stays within tens of MB per rank")
    func primesMemoryIsBounded() throws {
        let job = Process()
        job.executableURL = URL(fileURLWithPath: Jobs.product("swiftpar"))
        job.arguments = ["-n", "2", "primes", "1e18"]
        job.standardOutput = FileHandle.nullDevice
        job.standardError = FileHandle.nullDevice
        try job.run()
        defer {
            kill(job.processIdentifier, SIGTERM)
            job.waitUntilExit()
        }
        Thread.sleep(forTimeInterval: 4)
        let children = (try? String(contentsOfFile: "/proc/\(job.processIdentifier)/task/\(job.processIdentifier)/children", encoding: .utf8)) ?? ""
        let pids = [job.processIdentifier] + children.split(separator: " ").compactMap { Int32($0) }
        #expect(pids.count == 2, "ranks: \(pids)")
        for pid in pids {
            let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
            let line = status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") } ?? ""
            let kilobytes = Int(line.filter(\.isNumber)) ?? 0
            #expect(kilobytes > 0 && kilobytes < 100_000, "rank process \(pid) peaked at \(kilobytes) KiB")
        }
    }

    // MARK: Mistakes in rank code: the same outcome on both backends

    /// Runs a scenario that must fail, and checks the words on both backends.
    func expectFailure(_ scenario: String, _ launch: Launch, _ words: String, environment: [String: String] = [:]) throws {
        let result = try Jobs.run("swiftpar-checks", [scenario], launch: launch, environment: environment, timeout: 60)
        #expect(result.status != 0, "\(scenario) under \(launch) succeeded:\n\(result.report)")
        #expect(!result.timedOut && result.seconds < 20, "\(scenario) under \(launch) hung:\n\(result.report)")
        #expect(result.errors.contains(words), "\(scenario) under \(launch):\n\(result.report)")
        let left = Jobs.waitForNoSurvivors(named: "swiftpar-checks \(scenario)")
        #expect(left.isEmpty, "processes left behind: \(left)")
    }

    @Test("A receive from a rank that has returned throws instead of waiting forever", arguments: multiRank)
    func receiveFromFinished(_ launch: Launch) throws {
        let result = try Jobs.run("swiftpar-checks", ["receive-from-finished"], launch: launch, timeout: 30)
        #expect(result.status == 0 && result.output.contains("rank 0: ok receive-from-finished threw-after-ms="), "\(result.report)")
    }

    @Test("A barrier the other ranks skip fails, naming them", arguments: multiRank)
    func barrierSkipped(_ launch: Launch) throws {
        try expectFailure("barrier-skipped", launch, "rank 0: barrier would wait forever: ranks 1 and 2 have finished without calling it")
    }

    @Test("A broadcast the other ranks skip fails, naming them", arguments: multiRank)
    func broadcastSkipped(_ launch: Launch) throws {
        try expectFailure("broadcast-skipped", launch, "rank 0: broadcast would wait forever: ranks 1 and 2 have finished without calling it")
    }

    @Test("A Pool.map called on rank 0 alone fails, naming the ranks that never joined", arguments: multiRank)
    func poolAlone(_ launch: Launch) throws {
        try expectFailure("pool-alone", launch, "rank 0: Pool.map would wait forever: ranks 1 and 2 have finished without calling it")
    }

    @Test("Different collectives on different ranks fail on every rank with the same words", arguments: multiRank)
    func collectiveMismatch(_ launch: Launch) throws {
        try expectFailure("collective-mismatch", launch,
                          "the ranks called different collectives: rank 0 called barrier (collective #1 of this communicator); ranks 1, 2 called broadcast of [Double] from root 0")
    }

    @Test("A pool call against a collective on another rank fails on every rank with the same words", arguments: multiRank)
    func poolMismatch(_ launch: Launch) throws {
        try expectFailure("pool-mismatch", launch,
                          "the ranks called different collectives: ranks 0, 2 called Pool.map (collective #1 of this communicator); rank 1 called barrier (collective #1 of this communicator)")
    }

    @Test("A rank that returns with an exit status of its own ends the job with it, on every backend", arguments: [Launch.local(2), .spawned(2), .mpirun(2)])
    func exitStatus(_ launch: Launch) throws {
        let rankZero = try Jobs.run("swiftpar-checks", ["exit-status"], launch: launch, timeout: 30)
        #expect(rankZero.status == 3 && rankZero.output.contains("rank 0: ok exit-status status 3")
                && rankZero.output.contains("rank 1: ok exit-status status 0"), "\(launch):\n\(rankZero.report)")
        // Quietly: rank 0 has reported whatever made it fail (mpirun adds a notice of its own).
        if case .mpirun = launch {} else { #expect(rankZero.errors.isEmpty, "\(launch):\n\(rankZero.report)") }
        // Another rank's status is the job's too (it was 1 on the local backend, 5 under mpirun).
        let rankOne = try Jobs.run("swiftpar-checks", ["exit-status", "rank1"], launch: launch, timeout: 30)
        #expect(rankOne.status == 5 && rankOne.output.contains("rank 1: ok exit-status status 5"), "\(launch):\n\(rankOne.report)")
        if case .mpirun = launch {} else {
            #expect(rankOne.errors.contains("swiftpar: rank 1 exited with status 5; ended the job"), "\(launch):\n\(rankOne.report)")
        }
        // Set on a communicator split from the world, it is the process's status all the same.
        let split = try Jobs.run("swiftpar-checks", ["exit-status", "split"], launch: launch, timeout: 30)
        #expect(split.status == 3 && split.output.contains("rank 0: ok exit-status status 3"), "\(launch):\n\(split.report)")
    }

    @Test("Errors on a split communicator say whose numbers they use; a failed rank outside it is named by its world rank",
          arguments: [Launch.local(4), .spawned(4), .mpirun(4)])
    func splitErrors(_ launch: Launch) throws {
        try expectFailure("split-errors", launch,
                          "swiftpar: rank 3: on a communicator split from the world, where it is rank 1: send names rank 5, but the communicator has ranks 0..<2")
        // A stall met on the split communicator is the job's: world ranks throughout.
        let stall = try Jobs.run("swiftpar-checks", ["split-errors", "stall"], launch: launch, environment: ["SWIFTPAR_STALL_TIMEOUT": "1"], timeout: 30)
        let stalled = stall.output.split(separator: "\n").first { $0.hasPrefix("rank 2: ok split-errors ") } ?? ""
        #expect(stalled.hasPrefix("rank 2: ok split-errors rank 2: receive has waited") && stalled.hasSuffix(": ranks 0, 1 and 3 have made no progress in swiftpar (stopped, or busy outside swiftpar)"),
                "\(launch):\n\(stall.report)")
        // A pool over a split communicator without world rank 0: its own rank 0 reports, once.
        let pool = try Jobs.run("swiftpar-checks", ["split-errors", "pool"], launch: launch, timeout: 30)
        #expect(pool.status == 1 && pool.errors.components(separatedBy: "item 57 failed on rank").count == 2
                && pool.errors.contains("swiftpar: rank 2: item 57 failed on rank"), "\(launch):\n\(pool.report)")
        // Under mpirun the job ends at once when a rank fails: no rank waits to be told.
        if case .mpirun = launch { return }
        let outsider = try Jobs.run("swiftpar-checks", ["split-errors", "outsider"], launch: launch, timeout: 30)
        #expect(outsider.status == 1 && outsider.errors.contains("swiftpar: rank 1: boom"), "\(launch):\n\(outsider.report)")
        #expect(outsider.output.contains("rank 2: ok split-errors rank 0: receive failed because world rank 1, which is not in this communicator, failed: boom"),
                "\(launch):\n\(outsider.report)")
    }

    @Test("A send whose request is dropped goes on in the background; one never received does not hang",
          arguments: [Launch.local(2), .spawned(2), .mpirun(2)])
    func droppedSend(_ launch: Launch) throws {
        let received = try Jobs.run("swiftpar-checks", ["dropped-send"], launch: launch, timeout: 30)
        expectEveryRankOK(received, scenario: "dropped-send", ranks: 2)
        // Never received: it never hangs. The local backend holds every message whole on the way
        // (the receiver takes it aside), so the send completed; under MPI it cannot, and says so.
        let unreceived = try Jobs.run("swiftpar-checks", ["dropped-send", "unreceived"], launch: launch, timeout: 30)
        #expect(!unreceived.timedOut && unreceived.seconds < 20, "\(launch):\n\(unreceived.report)")
        if case .mpirun = launch {
            #expect(unreceived.status == 1
                    && unreceived.errors.contains("swiftpar: rank 0: send failed because rank 1 has finished and will not receive any more messages"),
                    "\(launch):\n\(unreceived.report)")
        }
    }

    @Test("exit called inside the closure is an error of that rank, in the same words on every backend", arguments: [Launch.local(2), .spawned(2), .mpirun(2)])
    func exitInsideClosure(_ launch: Launch) throws {
        for rank in [1, 0] {
            let result = try Jobs.run("swiftpar-checks", ["exit-inside"] + (rank == 0 ? ["rank0"] : []), launch: launch, timeout: 30)
            #expect(result.status == 1 && !result.timedOut, "rank \(rank) exits, \(launch):\n\(result.report)")
            #expect(result.output.contains("rank \(rank): exiting\n") && !result.output.contains("returned"), "rank \(rank) exits, \(launch):\n\(result.report)")
            #expect(result.errors.contains("swiftpar: rank \(rank): exit was called inside the closure given to SwiftPar.run, which would end this rank alone in the middle of the job"),
                    "rank \(rank) exits, \(launch):\n\(result.report)")
        }
    }

    @Test("A String broadcast received as [Double] fails instead of giving garbage", arguments: multiRank)
    func broadcastTypeMismatch(_ launch: Launch) throws {
        try expectFailure("broadcast-type-mismatch", launch,
                          "rank 0 called broadcast of Codable values from root 0 (collective #1 of this communicator); ranks 1, 2 called broadcast of [Double]")
    }

    @Test("Messages received as the wrong kind throw decodingFailed on the receiver", arguments: multiRank)
    func messageTypeMismatch(_ launch: Launch) throws {
        let result = try Jobs.run("swiftpar-checks", ["message-type-mismatch"], launch: launch, timeout: 30)
        #expect(result.status == 0 && result.output.contains("rank 0: ok message-type-mismatch errors=4")
                && result.output.contains("rank 1: ok message-type-mismatch errors=4"), "\(result.report)")
    }

    @Test("split with a color beyond MPI's int is an error, not a trap", arguments: multiRank)
    func splitBadColor(_ launch: Launch) throws {
        let result = try Jobs.run("swiftpar-checks", ["split-bad-color"], launch: launch, timeout: 30)
        #expect(result.status == 0 && result.output.components(separatedBy: "color 1099511627776 is outside 0...2147483647").count == 4,
                "\(result.report)")
    }

    @Test("16 MiB received as the wrong types is rejected at once, in little memory", arguments: [Launch.local(2), .mpirun(2)])
    func hostileDecode(_ launch: Launch) throws {
        let result = try Jobs.run("swiftpar-checks", ["hostile-decode"], launch: launch, timeout: 60)
        #expect(result.status == 0 && result.output.contains("rank 1: ok hostile-decode rejected=3"), "\(result.report)")
    }

    @Test("A rank that fails after the others have finished still ends the job non-zero", arguments: [Launch.local(2), .mpirun(2)])
    func lateFailure(_ launch: Launch) throws {
        try expectFailure("late-failure", launch, "rank 1: rank 1 failed after rank 0 had finished")
    }

    @Test("Large arrays inside values travel apart and arrive whole, in any reading order", arguments: [Launch.local(2), .mpirun(2)])
    func largeArraysApart(_ launch: Launch) throws {
        let result = try Jobs.run("swiftpar-checks", ["large-arrays-apart"], launch: launch, timeout: 60)
        #expect(result.status == 0 && result.output.contains("rank 1: ok large-arrays-apart arrays=150000"), "\(result.report)")
        let chunked = try Jobs.run("swiftpar-checks", ["large-arrays-apart"], launch: launch,
                                   environment: ["SWIFTPAR_MPI_MESSAGE_LIMIT": "65536"], timeout: 60)
        #expect(chunked.status == 0 && chunked.output.contains("rank 1: ok large-arrays-apart"), "\(chunked.report)")
    }

    @Test("A stopped rank: with a stall timeout the job ends, naming it", arguments: multiRank)
    func stall(_ launch: Launch) throws {
        try expectFailure("stall", launch, "rank 1 has made no progress in swiftpar (stopped, or busy outside swiftpar)",
                          environment: ["SWIFTPAR_STALL_TIMEOUT": "2"])
    }

    @Test("A rank that computes longer than the stall timeout and notes its progress is waited for; one that does not note it ends the job",
          arguments: multiRank)
    func busyNotingProgress(_ launch: Launch) throws {
        let noting = try Jobs.run("swiftpar-checks", ["busy-noting-progress", "noting"], launch: launch,
                                  environment: ["SWIFTPAR_STALL_TIMEOUT": "1"], timeout: 60)
        let received = (0..<3).filter { $0 != 1 }.map { "rank \($0): ok busy-noting-progress received=\($0)" }
        #expect(noting.status == 0 && received.allSatisfy(noting.output.contains), "\(noting.report)")
        try expectFailure("busy-noting-progress", launch,
                          "rank 1 has made no progress in swiftpar (stopped, or busy outside swiftpar)",
                          environment: ["SWIFTPAR_STALL_TIMEOUT": "1"])
    }

    @Test("A rank stopped inside a wait of its own: with a stall timeout the job ends, naming it and not the ranks waiting with it",
          arguments: multiRank)
    func stallInWait(_ launch: Launch) throws {
        try expectFailure("stall-in-wait", launch, "rank 1 has made no progress in swiftpar (stopped, or busy outside swiftpar)",
                          environment: ["SWIFTPAR_STALL_TIMEOUT": "2"])
    }

    @Test("A rank stopped partway through sending a message larger than a ring: with a stall timeout the job ends, naming it",
          arguments: multiRank)
    func stallMidMessage(_ launch: Launch) throws {
        try expectFailure("stall-mid-message", launch, "rank 1 has made no progress in swiftpar (stopped, or busy outside swiftpar)",
                          environment: ["SWIFTPAR_STALL_TIMEOUT": "2"])
    }

    @Test("A rank stopped while the others have finished: with a stall timeout the job ends, naming it", arguments: multiRank)
    func stallAtEnd(_ launch: Launch) throws {
        try expectFailure("stall-at-end", launch, "rank 1 has made no progress in swiftpar (stopped, or busy outside swiftpar)",
                          environment: ["SWIFTPAR_STALL_TIMEOUT": "2"])
    }
}
