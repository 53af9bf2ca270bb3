import Foundation
import Testing

/// The cluster tooling in Launch/, with the real engines: network namespaces as hosts for
/// Open MPI's TCP transport, and a real single-node Slurm. Both need root.
@Suite("Launch: namespace hosts and Slurm", .serialized, .enabled(if: getuid() == 0))
struct LaunchTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static func script(_ path: String) -> String { root.appendingPathComponent(path).path }

    /// Namespaces whose names the cluster tool uses (spc<pid>…).
    func clusterNamespaces() -> [String] {
        let list = (try? Jobs.runCommand(["ip", "netns", "list"]).output) ?? ""
        return list.split(separator: "\n").compactMap { $0.split(separator: " ").first.map(String.init) }.filter { $0.hasPrefix("spc") }
    }

    @Test("primes and hash across 3 namespace hosts with 2 slots each give the serial results")
    func acrossHosts() throws {
        let swiftpar = Jobs.product("swiftpar")
        let serialPrimes = try Jobs.runCommand([swiftpar, "--backend", "serial", "primes", "1e8"])
        let clusterPrimes = try Jobs.runCommand([Self.script("Launch/local-cluster"), "--", "-n", "6", swiftpar, "primes", "1e8"], timeout: 180)
        #expect(clusterPrimes.status == 0 && clusterPrimes.output == serialPrimes.output && serialPrimes.output == "5761455\n",
                "cluster:\n\(clusterPrimes.report)\nserial: \(serialPrimes.output)")
        let info = try Jobs.runCommand([Self.script("Launch/local-cluster"), "--", "-n", "6", swiftpar, "info"], timeout: 120)
        let hosts = Set(info.output.split(separator: "\n").filter { $0.hasPrefix("rank ") }.compactMap { $0.split(separator: " ").dropFirst(5).first })
        #expect(hosts.count == 3, "ranks should run on 3 hosts:\n\(info.report)")

        let tree = FileManager.default.temporaryDirectory.appendingPathComponent("swiftpar-cluster-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: tree) }
        for i in 0..<200 {
            let folder = tree.appendingPathComponent("d\(i % 7)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try Data((0..<(i * 997 % 50_000)).map { UInt8(truncatingIfNeeded: $0 &* i) }).write(to: folder.appendingPathComponent("f\(i)"))
        }
        let serialHash = try Jobs.runCommand([swiftpar, "--backend", "serial", "hash", tree.path])
        let clusterHash = try Jobs.runCommand([Self.script("Launch/local-cluster"), "--", "-n", "6", swiftpar, "hash", tree.path], timeout: 180)
        #expect(clusterHash.status == 0 && clusterHash.output == serialHash.output && serialHash.output.split(separator: "\n").count == 200,
                "cluster hash differs from serial:\n\(clusterHash.report.prefix(2000))")
        // The list written inside the tree is skipped on every host, whichever rank walks its folder.
        for folder in ["d2", "d5"] {
            let sums = tree.appendingPathComponent(folder).appendingPathComponent("SUMS").path
            let into = try Jobs.runCommand([Self.script("Launch/local-cluster"), "--", "-n", "6", swiftpar, "hash", "--output", sums, tree.path], timeout: 180)
            let written = (try? String(contentsOfFile: sums, encoding: .utf8)) ?? ""
            #expect(into.status == 0 && written == serialHash.output && into.errors.contains("skipped \(sums): it is the file the output is written to"),
                    "hash --output inside the tree across hosts:\n\(into.report.prefix(2000))")
            try? FileManager.default.removeItem(atPath: sums)
        }
        #expect(clusterNamespaces().isEmpty, "namespaces left: \(clusterNamespaces())")
    }

    @Test("SIGTERM to the cluster tool alone ends its job at once and removes its hosts; bad options are refused")
    func clusterToolSignal() throws {
        let cluster = Self.script("Launch/local-cluster")
        let swiftpar = Jobs.product("swiftpar")
        // The signal reaches only the script (not its process group), as a batch system's or
        // a supervisor's kill does; bash would run its trap only after mpirun ended by itself.
        // (The test runner's children start with SIGTERM blocked: perl clears the mask.)
        let script = """
            perl -MPOSIX -e 'sigprocmask(SIG_SETMASK, POSIX::SigSet->new); exec @ARGV' '\(cluster)' --hosts 2 -- -n 4 '\(swiftpar)' run 'sleep 40; echo {}' ::: 1 2 3 4 > /dev/null 2>&1 & tool=$!
            sleep 6
            start=$(date +%s)
            kill -TERM $tool
            wait $tool; echo "status $?"
            echo "seconds $(( $(date +%s) - start ))"
            """
        let result = try Jobs.runShell(script, timeout: 90)
        #expect(result.output.contains("status 143\n"), "\(result.report)")
        let seconds = result.output.split(separator: "\n").first { $0.hasPrefix("seconds ") }.flatMap { Int($0.dropFirst(8)) } ?? 99
        #expect(seconds < 15, "the job took \(seconds) s to end:\n\(result.report)")
        #expect(clusterNamespaces().isEmpty, "namespaces left: \(clusterNamespaces())")
        #expect(Jobs.waitForNoSurvivors(named: "sleep 40").isEmpty, "tasks left: \(Jobs.survivors(named: "sleep 40"))")
        for options in [["--hosts", "abc"], ["--slots", "0"], ["--hosts"]] {
            let refused = try Jobs.runCommand([cluster] + options + ["--", "-n", "2", swiftpar, "info"], timeout: 30)
            #expect(refused.status == 2 && refused.errors.hasPrefix("local-cluster: "), "\(options):\n\(refused.report)")
        }
    }

    @Test("All ranks of one host killed mid-run: the job ends non-zero within 30 s, nothing left on any host")
    func hostKilled() throws {
        let hostsFile = FileManager.default.temporaryDirectory.appendingPathComponent("swiftpar-hosts-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: hostsFile) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.script("Launch/local-cluster"))
        // A job that runs for minutes unless stopped.
        process.arguments = ["--print-hosts", hostsFile.path, "--", "-n", "6", Jobs.product("swiftpar"), "primes", "1e13"]
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        defer { if process.isRunning { process.terminate() } }
        // Wait for the ranks of host 2 to be running.
        var namespace = ""
        let deadline = Date().addingTimeInterval(30)
        var pids: [String] = []
        while Date() < deadline {
            let hosts = (try? String(contentsOf: hostsFile, encoding: .utf8)) ?? ""
            namespace = hosts.split(separator: "\n").dropFirst().first?.split(separator: " ").last.map(String.init) ?? ""
            if !namespace.isEmpty {
                pids = ((try? Jobs.runCommand(["ip", "netns", "pids", namespace]).output) ?? "").split(separator: "\n").map(String.init)
                let names = pids.compactMap { try? String(contentsOfFile: "/proc/\($0)/comm", encoding: .utf8) }
                if names.filter({ $0.hasPrefix("swiftpar") }).count >= 2 { break }
            }
            Thread.sleep(forTimeInterval: 0.2)
        }
        #expect(!pids.isEmpty, "host 2 never ran its ranks")
        Thread.sleep(forTimeInterval: 2)
        let killedAt = Date()
        _ = try Jobs.runCommand(["sh", "-c", "ip netns pids \(namespace) | xargs -r kill -9"])
        while process.isRunning && Date().timeIntervalSince(killedAt) < 30 { Thread.sleep(forTimeInterval: 0.1) }
        let seconds = Date().timeIntervalSince(killedAt)
        let message = String(decoding: errors.fileHandleForReading.availableData, as: UTF8.self)
        #expect(!process.isRunning, "the job still runs 30 s after host \(namespace) lost its ranks")
        #expect(!process.isRunning && process.terminationStatus != 0, "status \(process.terminationStatus):\n\(message)")
        #expect(seconds < 30, "took \(seconds) s")
        // Open MPI names the lost daemon ("lost communication with a remote daemon", or, if the
        // host dies while the job is still wiring up, "unable to reliably start one or more daemons").
        #expect(message.contains("lost communication with a remote daemon") || message.contains("unable to reliably start one or more daemons"),
                "no clear message:\n\(message)")
        Thread.sleep(forTimeInterval: 0.5)
        #expect(clusterNamespaces().isEmpty, "namespaces left: \(clusterNamespaces())")
        #expect(Jobs.survivors(named: "primes 1e13").isEmpty, "processes left: \(Jobs.survivors(named: "primes 1e13"))")
        // Nor Open MPI's session folder of the killed host (found by a user: dozens piled up).
        let left = ((try? FileManager.default.contentsOfDirectory(atPath: "/tmp")) ?? []).filter { $0.hasPrefix("ompi.\(namespace).") }
        #expect(left.isEmpty, "session folders of \(namespace) left: \(left)")
    }

    @Test("A real Slurm runs both batch scripts with srun --mpi=pmix and with mpirun")
    func slurmBatchScripts() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("swiftpar-slurm-\(UUID().uuidString)").path
        let started = try Jobs.runCommand([Self.script("Launch/local-slurm"), "start", folder], timeout: 60)
        defer { _ = try? Jobs.runCommand([Self.script("Launch/local-slurm"), "stop", folder], timeout: 60) }
        #expect(started.status == 0 && started.output.contains("SLURM_CONF="), "\(started.report)")
        guard started.status == 0 else { return }
        let environment = ["SLURM_CONF": "\(folder)/slurm.conf"]
        let tree = FileManager.default.temporaryDirectory.appendingPathComponent("swiftpar-slurm-data-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tree, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: tree) }
        for i in 0..<50 { try Data("file \(i)\n".utf8).write(to: tree.appendingPathComponent("f\(i)")) }
        for launcher in ["srun", "mpirun"] {
            let output = "\(folder)/primes-\(launcher).out"
            let job = try Jobs.runCommand(["sbatch", "--wait", "--output=\(output)",
                                           "--export=ALL,SWIFTPAR=\(Jobs.product("swiftpar")),N=1e8,LAUNCHER=\(launcher)",
                                           Self.script("Launch/slurm/primes.sbatch")], environment: environment, timeout: 180)
            let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
            #expect(job.status == 0 && text.contains("\"count\" : 5761455") && text.contains("\"ranks\" : 4"),
                    "primes.sbatch with \(launcher):\n\(job.report)\njob output:\n\(text)")
            let sums = "\(folder)/sums-\(launcher).txt"
            let hashJob = try Jobs.runCommand(["sbatch", "--wait", "--output=\(folder)/hash-\(launcher).out",
                                               "--export=ALL,SWIFTPAR=\(Jobs.product("swiftpar")),DATA=\(tree.path),OUTPUT=\(sums),LAUNCHER=\(launcher)",
                                               Self.script("Launch/slurm/hash.sbatch")], environment: environment, timeout: 180)
            let check = try Jobs.runCommand(["sha256sum", "--strict", "-c", sums])
            #expect(hashJob.status == 0 && check.status == 0 && check.output.split(separator: "\n").count == 50,
                    "hash.sbatch with \(launcher):\n\(hashJob.report)\nsha256sum -c:\n\(check.report)")
        }
        // Slurm's forwarding drops write errors: the list goes through --output, so a full disk
        // fails the job under both launchers. A list that cannot be created ends the job at once,
        // not with the other ranks left in MPI's start-up (srun does not end a step when one task
        // exits).
        let failures = [("full", "/dev/full", "write to /dev/full failed: No space left on device", 180.0),
                        ("missing", "/nonexistent-\(UUID().uuidString)/SUMS", "opening the output file", 60.0)]
        for (name, output, words, limit) in failures {
            for launcher in ["srun", "mpirun"] {
                let job = try Jobs.runCommand(["sbatch", "--wait", "--output=\(folder)/\(name)-\(launcher).out",
                                               "--export=ALL,SWIFTPAR=\(Jobs.product("swiftpar")),DATA=\(tree.path),OUTPUT=\(output),LAUNCHER=\(launcher)",
                                               Self.script("Launch/slurm/hash.sbatch")], environment: environment, timeout: 180)
                let log = (try? String(contentsOfFile: "\(folder)/\(name)-\(launcher).out", encoding: .utf8)) ?? ""
                #expect(job.status != 0 && job.seconds < limit && log.contains(words),
                        "hash.sbatch into \(output) with \(launcher):\n\(job.report)\njob output:\n\(log)")
            }
        }
        // srun without a PMI plugin, and a usage error of every task: said once, not per task.
        let swiftpar = Jobs.product("swiftpar")
        for (arguments, words) in [(["srun", "-n", "3", swiftpar, "info"], "srun --mpi=pmix"),
                                   (["srun", "--mpi=pmix", "-n", "3", swiftpar, "-n", "2", "info"], "-n/--workers 2 cannot be used here")] {
            let result = try Jobs.runCommand(arguments, environment: environment, timeout: 120)
            #expect(result.status != 0 && result.errors.components(separatedBy: words).count == 2,
                    "\(arguments): the message should come once\n\(result.report)")
        }
        // stop removes only a folder that start made.
        let foreign = FileManager.default.temporaryDirectory.appendingPathComponent("swiftpar-not-slurm-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: foreign, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: foreign) }
        try Data("keep\n".utf8).write(to: foreign.appendingPathComponent("data"))
        let refused = try Jobs.runCommand([Self.script("Launch/local-slurm"), "stop", foreign.path], timeout: 60)
        #expect(refused.status != 0 && FileManager.default.fileExists(atPath: foreign.appendingPathComponent("data").path), "\(refused.report)")
    }

    @Test("swiftpar run across 3 namespace hosts: tasks run on every host; a host killed mid-run ends the job and --resume finishes the rest, each task once")
    func farmAcrossHosts() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("swiftpar-farm-hosts-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder.appendingPathComponent("done"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let swiftpar = Jobs.product("swiftpar")
        let cluster = Self.script("Launch/local-cluster")
        let spread = try Jobs.runCommand([cluster, "--", "-n", "6", swiftpar, "run", "-k", "--joblog", folder.appendingPathComponent("spread.log").path,
                                          "echo {} $(hostname)", ":::"] + (1...30).map(String.init), timeout: 120)
        let hosts = Set(spread.output.split(separator: "\n").compactMap { $0.split(separator: " ").last })
        #expect(spread.status == 0 && spread.output.split(separator: "\n").count == 30 && hosts.count == 3, "tasks should run on 3 hosts:\n\(spread.report)")
        let logHosts = Set(((try? String(contentsOf: folder.appendingPathComponent("spread.log"), encoding: .utf8)) ?? "")
            .split(separator: "\n").dropFirst().map { $0.split(separator: "\t")[1] })
        #expect(logHosts.count == 3 && logHosts.contains(":"), "joblog hosts: \(logHosts)")

        // Tasks after the 12th wait while the file `hold` exists: host 2 dies while they wait,
        // never between a task's end and its joblog line.
        let task = "if [ {} -gt 12 ]; then while [ -e '\(folder.path)/hold' ]; do sleep 0.032; done; fi; echo {} >> '\(folder.path)/done/{}'"
        let script = """
            cd '\(folder.path)'
            touch hold
            '\(cluster)' --print-hosts hosts.txt -- -n 6 '\(swiftpar)' run --joblog farm.log "$TASK" ::: $(seq 60) > out 2> err & job=$!
            waited=0
            while [ "$(cat farm.log 2>/dev/null | wc -l)" -lt 13 ] && [ $waited -lt 1500 ]; do sleep 0.02; waited=$((waited + 1)); done
            sleep 0.25
            host=$(sed -n 2p hosts.txt | awk '{print $NF}')
            ip netns pids "$host" | xargs -r kill -9
            wait $job; echo "killed-run $?"
            echo "logged $(($(wc -l < farm.log) - 1)) done $(ls done | wc -l)"
            rm hold
            '\(cluster)' -- -n 6 '\(swiftpar)' run --joblog farm.log --resume "$TASK" ::: $(seq 60); echo "resumed $?"
            echo "files $(ls done | wc -l) runs $(cat done/* | wc -l) logged $(($(wc -l < farm.log) - 1))"
            """
        let result = try Jobs.runShell(script, environment: ["TASK": task], timeout: 240)
        #expect(!result.output.contains("killed-run 0\n") && result.output.contains("killed-run "), "a lost host must end the job non-zero:\n\(result.report)")
        #expect(result.output.contains("resumed 0\n") && result.output.contains("files 60 runs 60 logged 60\n"), "\(result.report)")
        if let line = result.output.split(separator: "\n").first(where: { $0.hasPrefix("logged ") }) {
            let numbers = line.split(separator: " ")
            #expect(numbers.count == 4 && numbers[1] == "12" && numbers[3] == "12", "before the resume: \(line)")
        }
        #expect(clusterNamespaces().isEmpty, "namespaces left: \(clusterNamespaces())")
        #expect(Jobs.waitForNoSurvivors(named: "sleep 0.032").isEmpty, "tasks left: \(Jobs.survivors(named: "sleep 0.032"))")
    }

    @Test("farm.sbatch under the real Slurm, with srun and mpirun: cancelled mid-run and submitted again, every command ran once")
    func slurmFarm() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("swiftpar-slurm-farm-\(UUID().uuidString)").path
        let started = try Jobs.runCommand([Self.script("Launch/local-slurm"), "start", folder], timeout: 60)
        defer { _ = try? Jobs.runCommand([Self.script("Launch/local-slurm"), "stop", folder], timeout: 60) }
        #expect(started.status == 0, "\(started.report)")
        guard started.status == 0 else { return }
        for launcher in ["srun", "mpirun"] {
            let work = "\(folder)/farm-\(launcher)"
            try FileManager.default.createDirectory(atPath: "\(work)/done", withIntermediateDirectories: true)
            // Commands after the 8th wait while the file `hold` exists: the cancel lands while
            // they wait, never between a command's end and its joblog line. (They wait in a
            // loop: Slurm's proctrack/linuxproc signals a step's processes one by one, and a
            // script whose `sleep` was killed first would go on to its end.)
            let tasks = (1...24).map { "if [ \($0) -gt 8 ]; then while [ -e hold ]; do sleep 0.033; done; fi; echo \($0) >> done/\($0)" }.joined(separator: "\n") + "\n"
            try tasks.write(toFile: "\(work)/tasks.txt", atomically: true, encoding: .utf8)
            let exports = "--export=ALL,SWIFTPAR=\(Jobs.product("swiftpar")),TASKS=tasks.txt,LAUNCHER=\(launcher)"
            let script = """
                cd '\(work)'
                touch hold
                id=$(sbatch --parsable --output=first.out '\(exports)' '\(Self.script("Launch/slurm/farm.sbatch"))')
                waited=0
                while [ "$(cat tasks.txt.joblog 2>/dev/null | wc -l)" -lt 9 ] && [ $waited -lt 3000 ]; do sleep 0.02; waited=$((waited + 1)); done
                sleep 0.3
                scancel "$id"
                while squeue -h -j "$id" 2>/dev/null | grep -q .; do sleep 0.2; done
                # proctrack/linuxproc may let a step's processes outlive the job for a moment
                # (a cgroup-based proctrack would not): wait until the first run's are gone.
                waited=0
                while ps -eo stat=,args= | grep -v -e '^Z' -e mpirun | grep -q -e '[s]leep 0.033' -e '[r]un --joblog tasks.txt.joblog' && [ $waited -lt 300 ]; do sleep 0.1; waited=$((waited + 1)); done
                # Commands the cancel killed are logged as failed (signal 15), as GNU parallel logs
                # them; the others that are logged ran to their end.
                echo "succeeded $(awk -F'\t' 'NR > 1 && $7 == 0 && $8 == 0' tasks.txt.joblog | wc -l) done $(ls done | wc -l)"
                rm hold
                sbatch --wait --output=second.out '\(exports)' '\(Self.script("Launch/slurm/farm.sbatch"))'; echo "second $?"
                echo "files $(ls done | wc -l) runs $(cat done/* | wc -l)"
                for f in done/*; do [ "$(wc -l < "$f")" -gt 1 ] && echo "twice: $f"; done
                cat second.out
                cut -f1,4,7,8 tasks.txt.joblog
                """
            let result = try Jobs.runShell(script, environment: ["SLURM_CONF": "\(folder)/slurm.conf"], timeout: 240)
            #expect(result.output.contains("second 0\n") && result.output.contains("files 24 runs 24\n")
                    && result.output.contains("24 of 24 commands have succeeded"), "farm.sbatch with \(launcher):\n\(result.report)")
            if let line = result.output.split(separator: "\n").first(where: { $0.hasPrefix("succeeded ") }) {
                let numbers = line.split(separator: " ")
                #expect(numbers.count == 4 && numbers[1] == "8" && numbers[3] == "8", "with \(launcher), before the second submission: \(line)")
            }
        }
    }
}
