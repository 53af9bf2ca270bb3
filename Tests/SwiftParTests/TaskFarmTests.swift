import Foundation
import Testing
@testable import SwiftParWorkloads

/// `swiftpar run`, the task farm, against GNU parallel itself: the same inputs must give
/// byte-identical output, joblogs must pass between the two, and faults must leave every task
/// run to its end exactly once.
@Suite("Task farm: swiftpar run", .serialized)
struct TaskFarmTests {
    /// A fresh folder for one test's files.
    static func folder() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("swiftpar-farm-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    static var parallelInstalled: Bool { FileManager.default.isExecutableFile(atPath: "/usr/bin/parallel") }

    /// A shell line that runs swiftpar under `launch` (`-n N` local, or mpirun).
    static func swiftpar(_ launch: Launch) -> String {
        Jobs.shellCommand("swiftpar", [], launch: launch)
    }

    // MARK: Replacement strings and quoting, in the process

    @Test("Replacement strings transform inputs as GNU parallel's do")
    func replacementStrings() {
        let cases: [(String, String, String, String, String, String)] = [
            // input, {}, {.}, {/}, {//}, {/.}
            ("dir.x/file", "dir.x/file", "dir.x/file", "file", "dir.x", "file"),
            (".hidden", ".hidden", "", ".hidden", ".", ""),
            ("a.tar.gz", "a.tar.gz", "a.tar", "a.tar.gz", ".", "a.tar"),
            ("/file", "/file", "/file", "file", "/", "file"),
            ("a/b/", "a/b/", "a/b/", "", "a", ""),
            ("/", "/", "/", "", "/", ""),
            ("", "", "", "", ".", ""),
            ("a/.hidden", "a/.hidden", "a/", ".hidden", "a", ""),
            ("a.b/", "a.b/", "a.b/", "", ".", ""),
            ("..a", "..a", ".", "..a", ".", "."),
            ("//a", "//a", "//a", "a", "/", "a"),
            ("a/b//", "a/b//", "a/b//", "", "a", ""),
            ("dir/a.b/c.d", "dir/a.b/c.d", "dir/a.b/c", "c.d", "dir/a.b", "c"),
        ]
        for (input, whole, noExtension, base, directory, baseNoExtension) in cases {
            let bytes = Array(input.utf8)
            let got = [CommandTemplate.Transform.whole, .noExtension, .basename, .dirname, .basenameNoExtension].map {
                String(decoding: CommandTemplate.apply($0, to: bytes), as: UTF8.self)
            }
            #expect(got == [whole, noExtension, base, directory, baseNoExtension], "input '\(input)'")
        }
    }

    @Test("--halt values: each form parses, and one out of range says which part is wrong")
    func haltValues() throws {
        #expect(try HaltPolicy.parse("now,fail=1") == HaltPolicy(urgency: .now, condition: .fail, threshold: .count(1)))
        #expect(try HaltPolicy.parse("soon,done=30%") == HaltPolicy(urgency: .soon, condition: .done, threshold: .percent(30)))
        #expect(try HaltPolicy.parse("never") == nil)
        func message(_ text: String) -> String {
            do { _ = try HaltPolicy.parse(text); return "accepted" } catch { return "\(error)" }
        }
        #expect(message("now,fail=0") == "--halt now,fail=0: a count of tasks must be at least 1")
        #expect(message("soon,fail=101%") == "--halt soon,fail=101%: a percentage must be above 0% and at most 100%")
        #expect(message("later,fail=1").hasPrefix("--halt takes never, soon,fail=N"))
        #expect(message("now,fail=x").hasPrefix("--halt takes never, soon,fail=N"))
    }

    @Test("Inputs are quoted for the shell as GNU parallel quotes them")
    func quoting() {
        let cases: [(String, String)] = [
            ("plain", "plain"), ("A.Z/9_-", "A.Z/9_-"), ("a b", "'a b'"), ("it's", "'it'\"'\"'s'"),
            ("", "''"), ("'", "\"'\""), ("'abc'", "\"'\"'abc'\"'\""), ("cost $5", "'cost $5'"), ("é", "'é'"),
        ]
        for (input, quoted) in cases {
            #expect(String(decoding: CommandTemplate.shellQuoted(Array(input.utf8)), as: UTF8.self) == quoted, "input '\(input)'")
        }
        let template = CommandTemplate([Array("echo".utf8), Array("x{/}y".utf8)])
        #expect(String(decoding: template.command(inputs: [Array("dir/it's".utf8)], sequence: 1, slot: 1), as: UTF8.self) == "echo x'it'\"'\"'s'y")
        let appended = CommandTemplate([Array("echo".utf8), Array("hi".utf8)])
        #expect(String(decoding: appended.command(inputs: [Array("a".utf8), Array("b c".utf8)], sequence: 1, slot: 1), as: UTF8.self) == "echo hi a 'b c'")
    }

    @Test("A Perl expression ({=…=}) is refused before any task runs, not run as literal text")
    func perlExpressions() throws {
        func words(_ text: String...) -> [[UInt8]] { text.map { Array($0.utf8) } }
        // GNU parallel joins the words first, so an expression may span several.
        #expect(CommandTemplate.perlExpression(in: words("echo", "{=", "s/a/X/", "=}")) == "{= s/a/X/ =}")
        #expect(CommandTemplate.perlExpression(in: words("echo", "x{2=uc=}y", "{-1= $_ =}")) == "{2=uc=}")
        #expect(CommandTemplate.perlExpression(in: words("echo", "{==}")) == "{==}")
        for plain in [words("echo", "{}", "=}"), words("echo", "a{=b"), words("awk", "{x=1}"), words("echo", "{=}"), words("echo", "{#}")] {
            #expect(CommandTemplate.perlExpression(in: plain) == nil, "\(plain.map { String(decoding: $0, as: UTF8.self) })")
        }
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let script = """
            cd '\(folder.path)'
            \(Self.swiftpar(.local(2))) run 'echo {= s/a/X/ =} > ran' ::: abc 2> err; echo "status $?"
            test -e ran && echo "a task ran"
            \(Self.swiftpar(.local(2))) run -k echo '{=' ::: abc; echo "unclosed $?"
            """
        let result = try Jobs.runShell(script, timeout: 60)
        let err = (try? String(contentsOf: folder.appendingPathComponent("err"), encoding: .utf8)) ?? ""
        #expect(result.output.contains("status 255\n") && !result.output.contains("a task ran"), "\(result.report)")
        #expect(err.contains("no Perl expressions in replacement strings: {= s/a/X/ =} would run as literal text"), "\(err)")
        // Without its closing =}, it is no expression (as in GNU parallel): plain text.
        #expect(result.output.contains("{= abc\nunclosed 0\n"), "\(result.report)")
    }

    @Test("Several sources combine as GNU parallel's: every combination, --link, :::+")
    func combinations() throws {
        func all(_ sources: [InputSpecification], link: Bool = false) throws -> [String] {
            let inputs = try TaskInputs(sources, link: link)
            var result: [String] = []
            while let values = try inputs.next() { result.append(values.map { String(decoding: $0, as: UTF8.self) }.joined(separator: " ")) }
            return result
        }
        func values(_ items: String...) -> InputSource { .values(items.map { Array($0.utf8) }) }
        #expect(try all([.init(values("a", "b")), .init(values("1", "2"))]) == ["a 1", "a 2", "b 1", "b 2"])
        #expect(try all([.init(values("a", "b", "c", "d", "e")), .init(values("1", "2"))], link: true) == ["a 1", "b 2", "c 1", "d 2", "e 1"])
        #expect(try all([.init(values("a", "b", "c", "d")), .init(values("1", "2"), linkedToPrevious: true), .init(values("X"))]) == ["a 1 X", "b 2 X"])
        #expect(try all([.init(values("a", "b")), .init(.values([]))]) == ["a ", "b "])
        // With --link a :::+ source wraps as the others do (GNU parallel: --link ::: a b ::: 1 2 3 :::+ x y).
        let linked: [InputSpecification] = [.init(values("a", "b")), .init(values("1", "2", "3")), .init(values("x", "y"), linkedToPrevious: true)]
        #expect(try all(linked, link: true) == ["a 1 x", "b 2 y", "a 3 x"])
        #expect(try TaskInputs(linked, link: true).knownCount == 3)
        #expect(try all([.init(.values([]))]) == [])
        // The total a progress bar shows is known before reading when every source is values.
        func known(_ sources: [InputSpecification], link: Bool = false) throws -> Int? { try TaskInputs(sources, link: link).knownCount }
        #expect(try known([.init(values("a", "b")), .init(values("1", "2", "3"))]) == 6)
        #expect(try known([.init(values("a", "b", "c", "d")), .init(values("1", "2"), linkedToPrevious: true), .init(values("X", "Y"))]) == 4)
        #expect(try known([.init(values("a", "b", "c")), .init(values("1"))], link: true) == 3)
        // As GNU parallel splits them: "c\n" is c and an empty value.
        #expect(try known([.init(values("a\nb", "", "c\n")), .init(.values([]))]) == 5)
        #expect(try known([.init(values("a")), .init(.standardInput)]) == nil)
    }

    @Test("Records of a file split on a separator of several bytes, also across read blocks and in records larger than a block")
    func multiByteSeparator() throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(at: folder) }
        // Reads come in 64 KiB blocks: records of 65,535 and 300,000 bytes put separators across
        // block boundaries; a lone first byte of the separator is part of a record.
        let long = [UInt8](repeating: UInt8(ascii: "x"), count: 300_000)
        let edge = [UInt8](repeating: UInt8(ascii: "y"), count: 65_535)
        let expected: [[UInt8]] = [edge, Array("a\nb".utf8), long, [], Array("last\n".utf8)]
        var file: [UInt8] = []
        for (index, record) in expected.enumerated() {
            file += record
            if index < expected.count - 1 { file += [10, 10] }
        }
        let path = folder.appendingPathComponent("records")
        try Data(file).write(to: path)
        let inputs = try TaskInputs([.init(.file(PathBytes(path.path)))], separator: [10, 10])
        var got: [[UInt8]] = []
        while let values = try inputs.next() { got.append(values[0]) }
        #expect(got.map(\.count) == expected.map(\.count))
        #expect(got == expected)
        // The same bytes given as one value split the same way.
        let fromValue = try TaskInputs([.init(.values([file]))], separator: [10, 10])
        var split: [[UInt8]] = []
        while let values = try fromValue.next() { split.append(values[0]) }
        #expect(split == expected)
    }

    // MARK: Byte for byte against GNU parallel

    /// Runs every case with `swiftpar run -k` under `launch` and with `parallel -k`, and
    /// compares output, errors and exit status byte for byte.
    @Test("swiftpar run -k and parallel -k give byte-identical output", .enabled(if: parallelInstalled),
          arguments: [Launch.local(3), Launch.mpirun(2)])
    func sameAsParallel(launch: Launch) throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(at: folder) }
        // Spaces, quotes, $, a backslash, a non-UTF-8 byte, an empty line, blanks, no final newline.
        try Data("a b\nit's\n$HOME\nback\\slash\nx\u{FF}y\n\n  \nsay \"hi\"\nlast".utf8.map { $0 == 0xC3 ? 0xFF : $0 }).write(to: folder.appendingPathComponent("weird.txt"))
        var raw = Array("a b\nit's\n".utf8); raw += [0x78, 0xFF, 0x79, 0x0A]; raw += Array("é\n".utf8)
        try Data(raw).write(to: folder.appendingPathComponent("weird.txt"))
        try Data("a b\0c\nd\0".utf8).write(to: folder.appendingPathComponent("nul.txt"))
        try Data("f1\nf2\n".utf8).write(to: folder.appendingPathComponent("f.txt"))
        try Data("xaby\n\nz;w,v\\qu".utf8).write(to: folder.appendingPathComponent("delimited.txt"))
        try Data("a\0b\nc\n".utf8).write(to: folder.appendingPathComponent("nul-in-line.txt"))
        let cases = [
            "echo :::: weird.txt",
            "echo '{}' '{.}' '{/}' '{//}' '{/.}' '{#}' :::: weird.txt",
            "echo '{}' '{.}' '{/}' '{//}' '{/.}' ::: dir.x/file .hidden a.tar.gz /file a/b/ / '' ./a.b a//b dir/a.b/c.d",
            "--tag echo :::: weird.txt",
            "--tag 'printf \"A\\rB\\nC\"' ::: z y",
            "'printf \"no-nl-{}\"' ::: a b",
            "echo ::: a b ::: 1 2 ::: x y",
            "--link echo ::: a b c d e ::: 1 2",
            "echo ::: a b c :::+ 1 2 3 ::: X Y",
            "echo :::: f.txt ::: Z",
            "echo '{1}' '{2}' '{1.}' '{2/}' '{2//}' '{1/.}' '{-1}' '{-2}' ::: a.x/b.y ::: c/d.e",
            "echo '{3}' '{10}' '{ }' '{x}' ::: a ::: 1",
            "'echo out1; echo err1 >&2; echo out2; echo err2 >&2' ::: 1 2",
            "-q echo 'a  b' '$HOME' '{}' 'x{}y' ::: 'p q' plain",
            "::: 'echo a' \"echo 'b  c'\"",
            "echo ::: a b :::: /dev/null",
            "-0 echo '[{}]' :::: nul.txt",
            "-d , echo '[{}]' ::: 'a,b,c'",
            "-d ab echo '[{}]' :::: delimited.txt",
            "-d '\\n\\n' echo '[{}]' :::: delimited.txt",
            "-d '\\073' echo '[{}]' :::: delimited.txt",
            "-d 'a\\' echo '[{}]' :::: delimited.txt",
            "-d ab echo '[{}]' ::: 1ab2 3",
            "-r echo '[{}]' :::: weird.txt",
            "echo \"'{}'\" ::: 'a b' plain \"it's\"",
            "'echo {}; exit {}' ::: 0 1 2 0 3",
            "--dry-run 'echo {} | tr a b' ::: aa 'a b'",
            "'seq {} | tail -c 5' ::: 1 50000 7",
            // -r drops blank values from each source as it is read, not only all-blank tasks.
            "-r echo ::: a '' ' ' b ::: '' 1",
            // What follows a value's last newline is one more value, even when empty.
            "--dry-run echo 'x{}y' ::: 'a\n' b",
            "--dry-run --tag echo ::: a 'b c'",
            // -- ends the options.
            "-- echo hi ::: a",
        ]
        var script = "cd '\(folder.path)'\nexport PARALLEL_SHELL=/bin/sh\n"
        // mpirun adds its own notice on standard error when a rank exits non-zero: not ours.
        let mpirunNotice = launch.isMPI ? "sed -i '/^-\\{20,\\}$/,/^-\\{20,\\}$/d' ours.err.$1" : ":"
        script += "dropNotice() { \(mpirunNotice); }\n"
        for (index, arguments) in cases.enumerated() {
            script += """
                \(Self.swiftpar(launch)) run -k \(arguments) > ours.\(index) 2> ours.err.\(index); echo "status $?" >> ours.\(index); dropNotice \(index)
                parallel --will-cite -k \(arguments) > theirs.\(index) 2> theirs.err.\(index); echo "status $?" >> theirs.\(index)
                if cmp -s ours.\(index) theirs.\(index) && cmp -s ours.err.\(index) theirs.err.\(index); then echo "same \(index)"; else
                  echo "different \(index)"; diff ours.\(index) theirs.\(index) | head -8; diff ours.err.\(index) theirs.err.\(index) | head -8; fi

                """
        }
        // A NUL byte inside an input is passed on as \0, as GNU parallel does; each warns in its own words.
        script += """
            \(Self.swiftpar(launch)) run -k printf "'%s\\n'" '[{}]' :::: nul-in-line.txt > ours.nul 2> ours.err.nul
            parallel --will-cite -k printf "'%s\\n'" '[{}]' :::: nul-in-line.txt > theirs.nul 2> /dev/null
            if cmp -s ours.nul theirs.nul && grep -q 'holds a NUL byte' ours.err.nul; then echo "same nul"; else echo "different nul"; od -c ours.nul theirs.nul; cat ours.err.nul; fi

            """
        try script.write(to: folder.appendingPathComponent("compare.sh"), atomically: true, encoding: .utf8)
        let result = try Jobs.runCommand(["/bin/sh", folder.appendingPathComponent("compare.sh").path], timeout: 300)
        for index in cases.indices {
            #expect(result.output.contains("same \(index)\n"), "case \(index) under \(launch): run -k \(cases[index])\n\(result.output)\n\(result.errors)")
        }
        #expect(result.output.contains("same nul\n"), "a NUL byte in an input under \(launch)\n\(result.output)\n\(result.errors)")
    }

    // MARK: Joblog

    @Test("--resume refuses a file that is not a joblog, untouched and in the same words on each backend; a line cut off as it was written runs again",
          arguments: [Launch.local(2), .mpirun(2)])
    func resumeFromNonJoblog(_ launch: Launch) throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let swiftpar = Self.swiftpar(launch)
        let header = "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand"
        let entry = "1\t:\t1796000000.000\t     0.010\t0\t2\t0\t0\techo 1"
        let script = """
            cd '\(folder.path)'
            printf 'garbage\\nmore\\n' > notes.txt
            \(swiftpar) run --joblog notes.txt --resume echo ::: 1 2 > notes.out 2> notes.err; echo "notes $?"
            printf '\(header)\\n\(entry)\\n2\\t:\\t17960\\n3\\n' > cut.log
            \(swiftpar) run -k --joblog cut.log --resume echo ::: 1 2 3 > cut.out 2> cut.err; echo "cut $?"
            \(swiftpar) run -k --joblog cut.log --resume echo ::: 1 2 3 4 > again.out 2> again.err; echo "again $?"
            """
        let result = try Jobs.runShell(script, timeout: 120)
        let read = { (name: String) in (try? String(contentsOf: folder.appendingPathComponent(name), encoding: .utf8)) ?? "" }
        #expect(result.output.contains("notes 255\n") && read("notes.out").isEmpty && read("notes.txt") == "garbage\nmore\n",
                "\(launch): \(result.report)\n\(read("notes.err"))")
        #expect(read("notes.err").contains("swiftpar: run: joblog notes.txt is not a joblog (line 2 is \"more\")"), "\(launch): \(read("notes.err"))")
        // The lines of tasks 2 and 3 were cut off (3's in its number): they run again, and the
        // log stays readable after.
        #expect(result.output.contains("cut 0\n") && read("cut.out") == "2\n3\n", "\(launch): \(result.report)\n\(read("cut.err"))")
        #expect(result.output.contains("again 0\n") && read("again.out") == "4\n", "\(launch): \(result.report)\n\(read("again.err"))")
    }

    /// Ranks that outnumber the cores, for the scheduling test (at most 9, so it stays small).
    static let ranksOverCores = ProcessInfo.processInfo.activeProcessorCount + 1

    @Test("Ranks that outnumber the cores are batch work, and the commands they run are scheduled as usual",
          .enabled(if: ranksOverCores <= 9), arguments: [Launch.local(ranksOverCores), .mpirun(ranksOverCores)])
    func tasksScheduledAsUsual(_ launch: Launch) throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(at: folder) }
        // Sourced by the task's shell: $$ is the task, $PPID the rank that started it.
        let probe = #"policy() { chrt -p "$1" | sed -n '1s/.*: //p'; }; echo "task $(policy $$) rank $(policy $PPID)""#
        try probe.write(to: folder.appendingPathComponent("policy.sh"), atomically: true, encoding: .utf8)
        let tasks = 2 * Self.ranksOverCores
        let result = try Jobs.runShell("""
            cd '\(folder.path)'
            \(Self.swiftpar(launch)) run -k '. ./policy.sh; : {}' ::: $(seq \(tasks))
            """, timeout: 120)
        let lines = result.output.split(separator: "\n")
        #expect(result.status == 0 && lines.count == tasks, "\(launch): \(result.report)")
        for line in lines {
            // The rank's policy carries the flag that keeps it from its children (SCHED_RESET_ON_FORK).
            #expect(line.hasPrefix("task SCHED_OTHER rank SCHED_BATCH"), "\(launch): \(result.report)")
        }
    }

    @Test("The joblog has GNU parallel's format, and --resume/--resume-failed pass logs both ways",
          .enabled(if: parallelInstalled))
    func joblogInterchange() throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let swiftpar = Self.swiftpar(.local(2))
        let script = """
            cd '\(folder.path)'
            export PARALLEL_SHELL=/bin/sh
            \(swiftpar) run -k --joblog ours.log 'echo run{}; [ {} != 3 ]' ::: 1 2 3 4 5 > first.out; echo "first $?"
            parallel --will-cite -k --resume-failed --joblog ours.log 'echo again{}; [ {} != 3 ]' ::: 1 2 3 4 5 6 > second.out; echo "second $?"
            parallel --will-cite -k --joblog theirs.log 'echo run{}; [ {} != 2 ]' ::: 1 2 3 > /dev/null
            \(swiftpar) run -k --resume --joblog theirs.log 'echo new{}' ::: 1 2 3 4 5 > third.out; echo "third $?"
            \(swiftpar) run -k --resume-failed --joblog theirs.log 'echo fixed{}' ::: 1 2 3 4 5 > fourth.out; echo "fourth $?"
            """
        let result = try Jobs.runShell(script, timeout: 120)
        let read = { (name: String) in (try? String(contentsOf: folder.appendingPathComponent(name), encoding: .utf8)) ?? "" }
        #expect(result.output.contains("first 1\n") && read("first.out") == "run1\nrun2\nrun3\nrun4\nrun5\n", "\(result.report)")
        // GNU parallel reran the failed task 3 and the new task 6 from our log.
        #expect(result.output.contains("second 1\n") && read("second.out") == "again3\nagain6\n", "\(result.report)\n\(read("second.out"))")
        // We skip what parallel logged (1, 2, 3), run 4 and 5; then rerun only parallel's failed task 2.
        #expect(result.output.contains("third 0\n") && read("third.out") == "new4\nnew5\n", "\(result.report)\n\(read("third.out"))")
        #expect(result.output.contains("fourth 0\n") && read("fourth.out") == "fixed2\n", "\(result.report)\n\(read("fourth.out"))")
        let log = read("ours.log").split(separator: "\n", omittingEmptySubsequences: false)
        #expect(log.first == "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand", "\(log)")
        let line = try #require(log.dropFirst().first)
        let fields = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
        #expect(fields.count == 9 && fields[0] == "1" && fields[1] == ":" && fields[4] == "0" && fields[5] == "5" && fields[6] == "0"
                && fields[7] == "0" && fields[8] == "echo run1; [ 1 != 3 ]", "\(fields)")
        #expect(fields.count == 9 && fields[2].range(of: #"^\d{10}\.\d{3}$"#, options: .regularExpression) != nil
                && fields[3].count == 10 && fields[3].range(of: #"^ *\d+\.\d{3}$"#, options: .regularExpression) != nil, "\(fields)")
        // 5 lines from us, then 2 appended by parallel (tasks 3 and 6).
        #expect(log.filter { !$0.isEmpty }.count == 8, "\(read("ours.log"))")
    }

    /// SIGKILL of the launcher mid-run, then `--resume`: each task has run to its end once.
    /// Tasks after the 6th wait while the file `hold` exists, so the kill never lands in the
    /// moment between a task's end and its joblog line (no tool can log that moment).
    @Test("SIGKILL of the launcher mid-run, then --resume: every task ran to its end exactly once",
          arguments: [Launch.local(2), Launch.mpirun(2)])
    func killedThenResumed(launch: Launch) throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let task = "'if [ {} -gt 6 ]; then while [ -e hold ]; do sleep 0.031; done; fi; echo {} >> done/{}'"
        let script = """
            cd '\(folder.path)'
            mkdir done; touch hold
            \(Self.swiftpar(launch)) run --joblog farm.log \(task) ::: $(seq 24) & job=$!
            waited=0
            while [ "$(cat farm.log 2>/dev/null | wc -l)" -lt 7 ] && [ $waited -lt 1500 ]; do sleep 0.02; waited=$((waited + 1)); done
            sleep 0.3
            kill -9 $job; wait $job; echo "killed $?"
            sleep 0.5
            echo "logged $(($(wc -l < farm.log) - 1)) done $(ls done | wc -l)"
            rm hold
            \(Self.swiftpar(launch)) run --joblog farm.log --resume \(task) ::: $(seq 24); echo "resumed $?"
            echo "files $(ls done | wc -l) runs $(cat done/* | wc -l) logged $(($(wc -l < farm.log) - 1))"
            cut -f1 farm.log | sort | uniq -d | head -3
            """
        let result = try Jobs.runShell(script, timeout: 120)
        #expect(result.output.contains("killed 137"), "\(result.report)")
        #expect(result.output.contains("logged 6 done 6\n"), "\(result.report)")
        #expect(result.output.contains("resumed 0") && result.output.contains("files 24 runs 24 logged 24\n"), "\(result.report)")
        #expect(Jobs.waitForNoSurvivors(named: "sleep 0.031").isEmpty, "tasks left running: \(Jobs.survivors(named: "sleep 0.031"))")
    }

    // MARK: Control and faults

    @Test("Retries, timeout, halt and the exit status behave as GNU parallel's")
    func control() throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let swiftpar = Self.swiftpar(.local(2))
        let script = """
            cd '\(folder.path)'
            \(swiftpar) run --retries 3 --joblog retries.log 'echo x >> count; echo out; exit 7; : {}' ::: a > retries.out; echo "retries $? $(wc -l < count) $(wc -l < retries.log)"
            \(swiftpar) run --retries 3 'echo x >> count{}; [ $(wc -l < count{}) -ge 2 ]' ::: b; echo "second-try $? $(wc -l < countb)"
            \(swiftpar) run --joblog timeout.log --timeout 1.5 'echo start{}; sleep {}; echo end{}' ::: 0.1 5 > timeout.out 2> timeout.err; echo "timeout $?"
            \(swiftpar) run --halt now,fail=1 'sleep {}; echo done{}; [ {} != 1 ]' ::: 1 3 4 5 > halt-now.out 2> halt-now.err; echo "halt-now $?"
            \(swiftpar) run --halt soon,fail=1 'sleep {}; echo done{}; [ {} != 1 ]' ::: 1 3 4 5 > halt-soon.out 2> halt-soon.err; echo "halt-soon $?"
            \(swiftpar) run --halt now,fail=1 'kill -9 $$; : {}' ::: a 2> /dev/null; echo "halt-signal $?"
            \(swiftpar) run --halt now,success=1 -k 'sleep 0.{}; exit {}' ::: 3 0 4 2> /dev/null; echo "halt-success $?"
            # A percentage that comes to one task ends with that task's status, as a count of 1.
            \(swiftpar) run --halt now,fail=100% 'exit 7; : {}' ::: a 2> /dev/null; echo "halt-one-percent $?"
            \(swiftpar) run --halt soon,fail=20% 'exit {}' ::: 0 4 0 0 0 2> /dev/null; echo "halt-fifth $?"
            \(swiftpar) run --halt soon,fail=40% 'exit {}' ::: 0 4 0 5 0 2> /dev/null; echo "halt-two-fifths $?"
            \(swiftpar) run 'exit 1; : {}' ::: $(seq 150); echo "many $?"
            \(swiftpar) run 'kill -{} $$' ::: TERM KILL INT; echo "signals $?"
            \(swiftpar) run --json 'exit {}' ::: 0 0 3 > summary.json; echo "json $?"
            """
        let result = try Jobs.runShell(script, timeout: 180)
        let read = { (name: String) in (try? String(contentsOf: folder.appendingPathComponent(name), encoding: .utf8)) ?? "" }
        let out = result.output
        // 3 attempts, printed once, one log line.
        #expect(out.contains("retries 1 3 2\n") && read("retries.out") == "out\n", "\(result.report)")
        #expect(out.contains("second-try 0 2\n"), "\(result.report)")
        #expect(out.contains("timeout 1\n") && read("timeout.out") == "start0.1\nend0.1\nstart5\n", "\(result.report)\n\(read("timeout.out"))")
        let timedOut = read("timeout.log").split(separator: "\n").first { $0.hasPrefix("2\t") }?.split(separator: "\t").map(String.init) ?? []
        #expect(timedOut.count == 9 && timedOut[6] == "-1" && timedOut[7] == "15", "\(read("timeout.log"))")
        #expect(read("timeout.err").contains("task 2 ran longer than 1.5 s and was killed"), "\(read("timeout.err"))")
        // now: task 3 killed, printed nothing; soon: task 3 finished and printed.
        #expect(out.contains("halt-now 1\n") && read("halt-now.out") == "done1\n", "\(result.report)\n\(read("halt-now.out"))")
        #expect(out.contains("halt-soon 1\n") && read("halt-soon.out") == "done1\ndone3\n", "\(result.report)\n\(read("halt-soon.out"))")
        #expect(out.contains("halt-signal 137\n"), "\(result.report)")
        #expect(out.contains("halt-success 0\n"), "\(result.report)")
        #expect(out.contains("halt-one-percent 7\nhalt-fifth 4\nhalt-two-fifths 40\n"), "\(result.report)")
        #expect(out.contains("many 101\n") && out.contains("signals 3\n"), "\(result.report)")
        #expect(out.contains("json 1\n") && read("summary.json").hasPrefix("{\"tasks\": 3, \"failed\": 1, \"skipped\": 0, \"seconds\": "), "\(read("summary.json"))")
    }

    @Test("A task's large output is its standard output whole, then its standard error, as GNU parallel prints it into one file",
          .enabled(if: parallelInstalled), arguments: [Launch.local(2), .mpirun(2)])
    func largeOutputStreamsInOneFile(launch: Launch) throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(at: folder) }
        // Above the few megabytes a task holds, output passes on as the task runs: standard
        // error used to come out between pieces of standard output, cutting lines.
        let task = "'yes out{} | head -c 5000000; yes err{} | head -c 2000000 >&2; yes end{} | head -c 100'"
        let script = """
            cd '\(folder.path)'
            \(Self.swiftpar(launch)) run -k \(task) ::: 1 2 3 > ours 2>&1
            parallel --will-cite -k \(task) ::: 1 2 3 > theirs 2>&1
            cmp ours theirs && echo same
            \(Self.swiftpar(launch)) run \(task) ::: 1 2 > unordered 2>&1
            uniq unordered | cut -c1-3 | tr '\\n' ' '
            """
        let result = try Jobs.runShell(script, timeout: 120)
        #expect(result.output.hasPrefix("same\n"), "\(result.report.prefix(2000))")
        // Without -k too: each task's standard output (out…, end…), then its standard error.
        let runs = result.output.split(separator: "\n").last.map { $0.split(separator: " ").map(String.init) } ?? []
        #expect(runs == ["out", "end", "err", "out", "end", "err"], "\(result.report.prefix(2000))")
    }

    /// A batch system ending a job (scancel, a walltime, `srun -K` after a dead task) signals
    /// every process of it at once, the tasks' shells too, in no set order.
    @Test("Tasks whose shells are killed from outside: their children die with them, and no task starts in the moment before the ranks' own signal",
          arguments: [Launch.local(2), .mpirun(2)])
    func tasksKilledFromOutside(_ launch: Launch) throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let command = "touch started-{}; sleep 31.7; echo {}"
        // The two running tasks' shells are killed; the job goes on with the third.
        let goesOn = try Jobs.runShell("""
            cd '\(folder.path)'
            \(Self.swiftpar(launch)) run '\(command)' ::: 1 2 3 > on.out 2> on.err &
            job=$!
            while [ ! -e started-2 ] || [ ! -e started-1 ]; do sleep 0.05; done; sleep 0.3
            pkill -TERM -f '^/bin/sh -c touch started-[12];'
            sleep 1.5; ps -eo args= | grep -c '^sleep 31.7' || true
            pkill -TERM -f '^/bin/sh -c touch started-3;'
            wait $job; echo "status $?"
            """, timeout: 60)
        // Left at the check: task 3's sleep alone. Three failed tasks: GNU parallel's status 3.
        #expect(goesOn.output == "1\nstatus 3\n", "\(launch): \(goesOn.report)")
        #expect(Jobs.waitForNoSurvivors(named: "sleep 31.7").isEmpty, "\(launch)")
        // Then the same, with the whole job signalled 0.2 s after the tasks: nothing more starts.
        for name in ["started-1", "started-2", "started-3"] { try? FileManager.default.removeItem(at: folder.appendingPathComponent(name)) }
        let ended = try Jobs.runShell("""
            cd '\(folder.path)'
            \(Self.swiftpar(launch)) run '\(command)' ::: 1 2 3 4 5 6 > end.out 2> end.err &
            job=$!
            while [ ! -e started-2 ] || [ ! -e started-1 ]; do sleep 0.05; done; sleep 0.3
            pkill -TERM -f '^/bin/sh -c touch started-[12];'
            sleep 0.2; pkill -TERM -f 'swiftpar [r]un touch started-'
            wait $job; echo "status $?"; ls started-*
            """, timeout: 60)
        // Every process of the job was signalled, as a batch system does (mpirun too).
        #expect(ended.output.hasPrefix("status ") && ended.output.hasSuffix("started-1\nstarted-2\n"), "\(launch): \(ended.report)")
        #expect(Jobs.waitForNoSurvivors(named: "sleep 31.7").isEmpty, "\(launch)")
    }

    @Test("Tasks start as their inputs arrive from a slow producer, with their output printed meanwhile",
          arguments: [Launch.local(1), .local(3), .mpirun(2)])
    func slowProducer(launch: Launch) throws {
        // Three inputs a second apart, then a producer that stays open: every task must start
        // (and print) as its input comes, not once enough inputs have come to fill every slot.
        // The second input waits for the first task's output (up to 20 s), so a start-up slowed
        // by a loaded machine does not hand swiftpar two inputs at once.
        let script = """
            start=$(date +%s%N)
            seen=$(mktemp)
            (echo 1; for i in $(seq 2000); do grep -q '^1 ' "$seen" && break; sleep 0.01; done
             sleep 1; echo 2; sleep 1; echo 3; sleep 2) | \(Self.swiftpar(launch)) run --slots-per-rank 2 'echo {}' |
              while read line; do echo "$line $(( ($(date +%s%N) - start) / 1000000 ))" | tee -a "$seen"; done
            rm -f "$seen"
            """
        let result = try Jobs.runShell(script, timeout: 60)
        let lines = result.output.split(separator: "\n").map { $0.split(separator: " ") }
        #expect(lines.map { $0.first.map(String.init) ?? "" } == ["1", "2", "3"], "\(result.report)")
        // Inputs come a second apart, so the outputs do, counted from the first (the start-up
        // of mpirun and the ranks comes before it). Before, tasks waited for the input after
        // theirs: the first two came out together.
        let times = lines.map { $0.count == 2 ? Int($0[1]) ?? 0 : 0 }
        for index in times.indices.dropFirst() {
            let gap = times[index] - times[0]
            #expect(gap > index * 1000 - 400 && gap < index * 1000 + 600,
                    "task \(index + 1) printed \(gap) ms after task 1 under \(launch):\n\(result.report)")
        }
    }

    @Test("Errors other than failed tasks exit 255; tasks stopped by --timeout or --halt now leave no process behind")
    func otherErrorsAndStoppedTasks() throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let swiftpar = Self.swiftpar(.local(2))
        let script = #"""
            cd '\#(folder.path)'
            \#(swiftpar) run --joblog /proc/no/such/log echo ::: a 2> joblog.err; echo "joblog $?"
            \#(swiftpar) run echo ::: a b > /dev/full 2> full.err; echo "full $?"
            head -c 200000 /dev/zero | tr '\0' a > long.txt
            \#(swiftpar) run echo :::: long.txt 2> long.err > /dev/null; echo "long $?"
            \#(swiftpar) run --timeout 0.5 "sh -c 'trap \"\" TERM; sleep 97.25'; : {}" ::: a 2> /dev/null; echo "timeout $?"
            \#(swiftpar) run --halt now,fail=1 "if [ {} = 1 ]; then sleep 0.3; exit 1; fi; sh -c 'trap \"\" TERM; sleep 97.5'" ::: 1 2 2> /dev/null; echo "halt $?"
            sleep 0.3; echo "left: $(pgrep -a -x sleep | grep -c 'sleep 97\.[25]')"
            \#(swiftpar) run --joblog "+log$(printf '\377')" echo ::: a > /dev/null; \#(swiftpar) run --joblog "+log$(printf '\377')" echo ::: b > /dev/null
            echo "appended: $(cat log* | wc -l) $(ls | grep -c '^+')"
            \#(swiftpar) run --joblog done.log echo ::: a b > /dev/null
            \#(swiftpar) run --dry-run --joblog done.log --resume echo ::: a b c > dry.out; echo "dry: $(tr '\n' , < dry.out)"
            """#
        let result = try Jobs.runShell(script, timeout: 120)
        let read = { (name: String) in (try? String(contentsOf: folder.appendingPathComponent(name), encoding: .utf8)) ?? "" }
        let out = result.output
        #expect(out.contains("joblog 255\n") && read("joblog.err").contains("joblog /proc/no/such/log"), "\(result.report)\n\(read("joblog.err"))")
        #expect(out.contains("full 255\n") && read("full.err").contains("No space left on device"), "\(result.report)\n\(read("full.err"))")
        #expect(out.contains("long 255\n") && read("long.err").contains("task 1: its command is 200005 bytes, more than"), "\(result.report)\n\(read("long.err"))")
        #expect(out.contains("timeout 1\n") && out.contains("halt 1\n"), "\(result.report)")
        #expect(out.contains("left: 0\n"), "a process of a stopped task was left running:\n\(result.report)")
        // One joblog (two tasks; appending writes no header, as GNU parallel) named with the byte
        // 0xFF, and no file named +…
        #expect(out.contains("appended: 2 0\n"), "\(result.report)")
        #expect(out.contains("dry: echo c,\n"), "\(result.report)")
    }

    @Test("Found by users: a named pipe as input, a task that cannot start on another rank, -q with no command, a joblog cut mid-line",
          .enabled(if: parallelInstalled), arguments: [Launch.local(2), .mpirun(2)])
    func foundByUsers(launch: Launch) throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let swiftpar = Self.swiftpar(launch)
        let script = """
            cd '\(folder.path)'
            export PARALLEL_SHELL=/bin/sh
            mkfifo pipe; (timeout 30 sh -c "printf 'p\\nq\\n' > pipe" &)
            timeout 30 env \(swiftpar) run -k echo :::: pipe > pipe.out 2> pipe.err; echo "pipe $?"
            mkfifo pipe2; (timeout 30 sh -c "printf 'r\\n' > pipe2" &)
            timeout 30 env \(swiftpar) run -k -a pipe2 echo {1}{2} ::: 1 2 > pipe2.out 2> pipe2.err; echo "pipe2 $?"
            for i in 1 2 3 4 5; do SWIFTPAR_SHELL=/etc/passwd timeout 30 env \(swiftpar) run echo ::: a b c d > /dev/null 2>> start.err; echo "start $?"; done
            printf 'echo 1\\n' | timeout 30 env \(swiftpar) run -q > q.out 2> q.err; echo "q $?"
            printf 'echo 1\\n' | parallel --will-cite -q > qp.out 2> qp.err; echo "q parallel $?"
            timeout 30 env \(swiftpar) run -q -k ::: echo ::: 'a  b' > q2.out; parallel --will-cite -q -k ::: echo ::: 'a  b' > q2p.out
            cmp q2.out q2p.out && echo "q2 same"
            timeout 30 env \(swiftpar) run -k --joblog cut.log echo ::: a b c > /dev/null
            head -c -20 cut.log > cut2.log
            timeout 30 env \(swiftpar) run --joblog cut2.log --resume echo ::: a b c > resumed.out; echo "resume $?"
            """
        let result = try Jobs.runShell(script, timeout: 300)
        let read = { (name: String) in (try? String(contentsOf: folder.appendingPathComponent(name), encoding: .utf8)) ?? "" }
        let out = result.output
        // What a named pipe carries is read once, by the farm: before, checking that it could be
        // opened let its writer go on, and the farm then waited for good for another.
        #expect(out.contains("pipe 0\n") && read("pipe.out") == "p\nq\n", "\(launch): \(result.report)\n\(read("pipe.err"))")
        #expect(out.contains("pipe2 0\n") && read("pipe2.out") == "r1\nr2\n", "\(launch): \(result.report)\n\(read("pipe2.err"))")
        // A task that cannot be started ends the job with 255 whichever rank meets it first.
        let starts = out.split(separator: "\n").filter { $0.hasPrefix("start ") }
        #expect(starts.count == 5 && starts.allSatisfy { $0 == "start 255" }, "\(launch): \(starts)\n\(read("start.err"))")
        #expect(read("start.err").contains("/etc/passwd"), "\(launch): \(read("start.err"))")
        // -q with no command: each input is one word, as in GNU parallel ("echo 1" is no program).
        #expect(out.contains("q 1\n") && out.contains("q parallel 1\n") && read("q.out").isEmpty && read("q.err").contains("not found"),
                "\(launch): \(result.report)\n\(read("q.err"))")
        #expect(out.contains("q2 same\n") && read("q2.out") == "a  b\n", "\(launch): \(result.report)")
        // A joblog cut in the middle of its last line: that task runs again, and its new line
        // starts a line of its own.
        let lines = read("cut2.log").split(separator: "\n", omittingEmptySubsequences: false)
        let whole = lines.dropFirst().filter { $0.split(separator: "\t", omittingEmptySubsequences: false).count == 9 }
        #expect(out.contains("resume 0\n") && read("resumed.out") == "c\n" && whole.count == 3, "\(launch): \(result.report)\n\(read("cut2.log").debugDescription)")
    }

    @Test("The progress bar never wipes a line a task left unfinished on the terminal")
    func progressBarKeepsPartialLines() throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let script = """
            cd '\(folder.path)'
            script -qec "\(Self.swiftpar(.local(2))) run -k 'sleep 0.3; printf {}' ::: a b c d e f; echo '<end>'" /dev/null > bar.raw
            """
        _ = try Jobs.runShell(script, timeout: 60)
        let raw = (try? Data(contentsOf: folder.appendingPathComponent("bar.raw"))) ?? Data()
        // The screen as a terminal shows it: \r goes back to the line's start, ESC [ K clears
        // to its end, a newline moves on.
        var lines: [[UInt8]] = [], line: [UInt8] = [], column = 0
        var bytes = Array(raw)[...]
        while let byte = bytes.popFirst() {
            switch byte {
            case 13: column = 0
            case 10: lines.append(line); line = []; column = 0
            case 0x1B:
                if bytes.starts(with: Array("[K".utf8)) { bytes = bytes.dropFirst(2); line.removeSubrange(min(column, line.count)...) }
            default:
                if column < line.count { line[column] = byte } else { line.append(byte) }
                column += 1
            }
        }
        lines.append(line)
        let screen = lines.map { String(decoding: $0, as: UTF8.self) }
        #expect(String(decoding: raw, as: UTF8.self).contains("tasks ["), "no bar: \(String(decoding: raw, as: UTF8.self).debugDescription)")
        #expect(screen.contains("abcdef<end>"), "screen: \(screen)\nraw: \(String(decoding: raw, as: UTF8.self).debugDescription)")
    }

    @Test("GNU parallel's option forms: -n after run refused, --joblog - and +FILE as GNU parallel's, --timeout 1m30s and 0, attached values; contradictions refused",
          .enabled(if: parallelInstalled))
    func optionForms() throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let swiftpar = Self.swiftpar(.local(2))
        // Joblog lines with their start and run times masked.
        let mask = #"sed -E 's/^([0-9]+\t:\t)[0-9.]+\t *[0-9.]+/\1T\tR/'"#
        let script = """
            cd '\(folder.path)'
            export PARALLEL_SHELL=/bin/sh
            \(swiftpar) run -k -n 2 echo ::: a b > n.out 2> n.err; echo "n $? $(wc -c < n.out)"
            \(swiftpar) run -kn 2 echo ::: a b > kn.out 2> kn.err; echo "kn $? $(wc -c < kn.out)"
            \(swiftpar) run -qkn2 echo ::: a b > kn2.out 2> kn2.err; echo "kn2 $? $(wc -c < kn2.out)"
            \(swiftpar) run -k --joblog - 'echo {}; echo e{} >&2' ::: a b 2>&1 | \(mask) > ours.jl
            parallel --will-cite -k --joblog - 'echo {}; echo e{} >&2' ::: a b 2>&1 | \(mask) > theirs.jl
            cmp ours.jl theirs.jl && echo "joblog - same"
            \(swiftpar) run --joblog +ours.log echo ::: a > /dev/null; parallel --will-cite --joblog +theirs.log echo ::: a > /dev/null
            echo "plus $(wc -l < ours.log) $(wc -l < theirs.log)"
            \(swiftpar) run -k --timeout 1m30s echo ::: t1 > timeout.out; \(swiftpar) run --timeout 0 echo ::: t2 >> timeout.out; echo "timeouts $?"
            \(swiftpar) run --timeout 50% echo ::: x 2> percent.err; echo "percent $?"
            \(swiftpar) run --timeout 1m30 echo ::: x 2> bare.err; echo "bare $?"
            printf 'a;b;;c' > semi
            \(swiftpar) run -k -d';' -asemi echo {}. > attached.out; parallel --will-cite -k -d';' -asemi echo {}. > attached.ref
            cmp attached.out attached.ref && echo "attached same"
            \(swiftpar) run -0 -d ';' echo ::: a 2> both.err; echo "both $?"
            echo 1 | \(swiftpar) run echo :::: - :::: - 2> twice.err; echo "twice $?"
            script -qec "\(swiftpar) run -k 'sleep 0.2; echo out{}' ::: 1 2 3" /dev/null > bar.raw; echo "bar $?"
            """
        let result = try Jobs.runShell(script, timeout: 120)
        let read = { (name: String) in (try? String(contentsOf: folder.appendingPathComponent(name), encoding: .utf8)) ?? "" }
        let out = result.output
        #expect(out.contains("n 255 0\n") && read("n.err").contains("-n 2 after run would be GNU parallel's number of inputs per command"),
                "\(result.report)\n\(read("n.err"))")
        #expect(out.contains("kn 255 0\n") && read("kn.err").contains("-kn 2 after run would be"), "\(result.report)\n\(read("kn.err"))")
        #expect(out.contains("kn2 255 0\n") && read("kn2.err").contains("-qkn2 after run would be"), "\(result.report)\n\(read("kn2.err"))")
        #expect(out.contains("joblog - same\n"), "ours:\n\(read("ours.jl"))\ntheirs:\n\(read("theirs.jl"))")
        #expect(out.contains("plus 1 1\n"), "\(result.report)")
        #expect(out.contains("timeouts 0\n") && read("timeout.out") == "t1\nt2\n", "\(result.report)")
        #expect(out.contains("percent 255\n") && read("percent.err").contains("a percentage of the median run time"), "\(result.report)")
        // A bare number after units is refused, as GNU parallel does (it ran as 1m30s).
        #expect(out.contains("bare 255\n") && read("bare.err").contains("--timeout must be a duration such as"), "\(result.report)")
        #expect(out.contains("attached same\n"), "\(result.report)\n\(read("attached.out"))")
        #expect(out.contains("both 255\n") && read("both.err").contains("give -0 or -d, not both"), "\(result.report)")
        #expect(out.contains("twice 255\n") && read("twice.err").contains("standard input (-) is given as an input source 2 times"), "\(result.report)")
        // On a terminal, each task's output starts on a line the bar has left (\r, then clear
        // to the end), never glued to the bar's text.
        let raw = read("bar.raw")
        #expect(out.contains("bar 0\n") && raw.contains("tasks ["), "\(result.report)\n\(raw.debugDescription)")
        for task in 1...3 {
            let pieces = raw.components(separatedBy: "out\(task)")
            #expect(pieces.count == 2 && (pieces[0].hasSuffix("\r\u{1B}[K") || pieces[0].utf8.last == 10), "task \(task): \(raw.debugDescription)")
        }
    }

    /// A slot gets its next task only once it is free, as in GNU parallel: short tasks all start
    /// while a long one runs, and after `--halt soon` no task starts that GNU parallel would not.
    @Test("A task starts only on a free slot, as in GNU parallel: never queued behind a long one, never after --halt",
          .enabled(if: parallelInstalled), arguments: [Launch.local(2), .mpirun(2)])
    func startsOnFreeSlots(launch: Launch) throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let tools = [("swiftpar", "\(Self.swiftpar(launch)) run"), ("parallel", "parallel --will-cite -j2")]
        var script = "cd '\(folder.path)'\n"
        for (name, tool) in tools {
            script += """
                \(tool) --joblog \(name).log 'sleep {}' ::: 2.5 0.1 0.1 0.1 0.1; echo "\(name) long $?"
                mkdir \(name)-started
                \(tool) --halt soon,fail=1 'touch \(name)-started/{#}; sleep {}; [ {} != 0.4 ]' ::: 2 0.4 0.1 0.1 0.1 0.1 2> /dev/null; echo "\(name) halt $?"
                echo "\(name) started $(ls \(name)-started | sort -n | tr '\\n' ' ')"

                """
        }
        let result = try Jobs.runShell(script, timeout: 120)
        for (name, _) in tools {
            // Seq Host Starttime JobRuntime ...: the four short tasks start before the long one
            // ends (not within a time limit: on a busy machine GNU parallel itself takes 0.4 s
            // for a 0.1 s task).
            let log = (try? String(contentsOf: folder.appendingPathComponent("\(name).log"), encoding: .utf8)) ?? ""
            let times = Dictionary(uniqueKeysWithValues: log.split(separator: "\n").dropFirst().compactMap { line -> (Int, (start: Double, runtime: Double))? in
                let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
                guard fields.count == 9, let sequence = Int(fields[0]), let start = Double(fields[2]),
                      let runtime = Double(fields[3].trimmingCharacters(in: .whitespaces)) else { return nil }
                return (sequence, (start, runtime))
            })
            #expect(times.count == 5, "\(name) under \(launch): joblog\n\(log)\n\(result.report)")
            if let long = times[1], let last = times.values.map(\.start).max() {
                // (A task queued behind it would start when it ends, give or take the log's
                // milliseconds.)
                #expect(last + 0.05 < long.start + long.runtime,
                        "\(name) under \(launch): a short task started \(last - long.start) s after the 2.5 s one, which ran \(long.runtime) s: behind it\n\(log)")
            }
            #expect(result.output.contains("\(name) long 0\n"), "\(name) under \(launch)\n\(result.report)")
            // The 0.4 s task fails while the 2 s one runs: nothing else may start.
            #expect(result.output.contains("\(name) halt 1\n") && result.output.contains("\(name) started 1 2 \n"),
                    "\(name) under \(launch)\n\(result.report)")
        }
    }

    /// A running task is work: ranks waiting meanwhile (for the next task, or at the end) are
    /// not stalled, however short the stall timeout; a rank that is stopped still is.
    @Test("Tasks longer than the stall timeout run to their end; a stopped rank still ends the job",
          arguments: [Launch.local(2), .mpirun(2)])
    func longTasksAreNotStalls(launch: Launch) throws {
        // One rank runs a long task while the other, done with its short one, waits; both ways.
        for inputs in [["2.5", "0.1"], ["0.1", "2.5"]] {
            let long = try Jobs.runShell("\(Self.swiftpar(launch)) run -k --stall-timeout 1 'sleep {}; echo {}' ::: \(inputs.joined(separator: " "))",
                                         timeout: 60)
            #expect(long.status == 0 && long.output == inputs.map { $0 + "\n" }.joined(), "\(long.report)")
        }
        // The rank running the second task stops itself: the other, waiting, names it.
        let stopped = try Jobs.runShell("\(Self.swiftpar(launch)) run --stall-timeout 1 'sleep 0.2; [ {} = b ] && kill -STOP $PPID; echo {}' ::: a b",
                                        timeout: 60)
        // 255, as for any error other than failed tasks: 1 would read as one failed task.
        #expect(stopped.status == 255 && !stopped.timedOut && stopped.errors.contains("has made no progress in swiftpar"), "\(stopped.report)")
    }

    @Test("Ctrl-C and SIGTERM stop every task, keep the joblog whole, and exit 130 and 143")
    func interrupted() throws {
        for (signal, status) in [(SIGINT, Int32(130)), (SIGTERM, Int32(143))] {
            let folder = try Self.folder()
            let job = try BackgroundJob(command: [Jobs.product("swiftpar"), "run", "--joblog", "farm.log", "sleep 0.2; echo {}; sleep 60", ":::"] + (1...20).map(String.init),
                                        environment: ["SWIFTPAR_WORKERS": "3"], directory: folder)
            defer { job.cleanUp([]) }
            let leader = try #require(job.leader(), "the launcher did not start")
            // Three tasks asleep, one per rank.
            let deadline = Date().addingTimeInterval(20)
            while Jobs.survivors(named: "sleep 60").filter({ $0.contains("/bin/sh") }).count < 3 && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
            Thread.sleep(forTimeInterval: 0.3)
            // Ctrl-C reaches the whole foreground process group; SIGTERM only the launcher.
            kill(signal == SIGINT ? -leader : leader, signal)
            let exit = job.waitForExit(seconds: 10)
            #expect(exit == status, "signal \(signal): status \(exit.map(String.init) ?? "none (still running)")\n\(job.errors)")
            #expect(Jobs.waitForNoSurvivors(named: "sleep 60").isEmpty, "signal \(signal) left tasks: \(Jobs.survivors(named: "sleep 60"))")
            let log = (try? String(contentsOf: folder.appendingPathComponent("farm.log"), encoding: .utf8)) ?? ""
            #expect(log.hasPrefix("Seq\tHost") && log.hasSuffix("\n") && log.split(separator: "\n").allSatisfy { $0.split(separator: "\t").count == 9 },
                    "signal \(signal) joblog:\n\(log)")
        }
    }

    @Test("As a container's first process (PID 1), swiftpar reaps what tasks leave behind, passes signals on and keeps the exit status",
          .enabled(if: getuid() == 0, "a PID namespace needs root"))
    func firstProcessOfContainer() throws {
        let swiftpar = shellQuoted(Jobs.product("swiftpar"))
        let namespace = "unshare --pid --fork --mount-proc"
        // Six tasks leave a process that ends at once, adopted by process 1; a seventh keeps the
        // job running while the namespace is looked at twice. A zombie seen both times is one
        // that process 1 does not reap.
        let script = """
            zombies() { ps -o pid=,stat= --ppid "$1" | awk '$2 ~ /^Z/ { print $1 }' | sort; }
            \(namespace) \(swiftpar) -n 2 run -k 'if [ {} = last ]; then sleep 3; else (sleep 0.05; touch orphan{}) & fi; echo {}' ::: 1 2 3 4 5 6 last > out &
            u=$!
            # Looked at once every orphan has ended (each leaves a file as it goes).
            for i in $(seq 100); do [ $(ls orphan* 2> /dev/null | wc -l) -ge 6 ] && break; sleep 0.05; done
            sleep 0.3
            init=$(pgrep -P $u)
            first=$(zombies "$init"); sleep 0.4; second=$(zombies "$init")
            wait $u; echo "status $?"
            echo "orphans $(ls orphan* | wc -l) left: $(echo "$first" | grep -Fxf - <(echo "$second") | grep -c .)"
            tr '\\n' ' ' < out; echo
            \(namespace) \(swiftpar) -n 2 run false ::: 1 2 3; echo "failed $?"
            printf 'x\\ny\\n' | \(namespace) \(swiftpar) -n 2 run -k echo got | tr '\\n' ' '; echo
            # docker stop: SIGTERM to process 1 alone.
            \(namespace) \(swiftpar) -n 2 run 'sleep 30.25; : {}' ::: 1 2 > /dev/null 2> stop.err &
            u=$!
            # Once both tasks run (the job's handlers are in place by then).
            for i in $(seq 200); do [ $(pgrep -fc '^sleep 30.25$') -ge 2 ] && break; sleep 0.05; done
            kill -TERM $(pgrep -P $u); wait $u; echo "stopped $?"
            cat stop.err
            """
        let folder = try Self.folder()
        let result = try Jobs.runCommand(["bash", "-c", "cd \(shellQuoted(folder.path)) && \(script)"], timeout: 90)
        try #require(!result.errors.contains("unshare failed"), "this machine cannot make a PID namespace: \(result.report)")
        #expect(result.output.contains("status 0\norphans 6 left: 0\n1 2 3 4 5 6 last \n"), "\(result.report)")
        #expect(result.output.contains("failed 3\n"), "\(result.report)")
        #expect(result.output.contains("got x got y \n"), "\(result.report)")
        #expect(result.output.contains("stopped 143\nswiftpar: interrupted by SIGTERM; stopped all 2 ranks\n"), "\(result.report)")
        #expect(Jobs.waitForNoSurvivors(named: "sleep 30.25").isEmpty, "tasks left running: \(Jobs.survivors(named: "sleep 30.25"))")
    }

    @Test("Under mpirun, ranks whose launcher is killed end at once: no task starts after it, none is left running")
    func launcherKilled() throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(at: folder) }
        // Open MPI puts each rank in a process group of its own: when mpirun goes (killed, or
        // gone after Ctrl-C), nothing but the ranks themselves stops them starting tasks.
        let script = """
            cd '\(folder.path)'
            \(Self.swiftpar(.mpirun(2))) run --joblog killed-launcher.log 'sleep 0.3; echo {}' ::: $(seq 40) > out 2> err &
            launcher=$!
            waited=0
            while [ "$(cat killed-launcher.log 2>/dev/null | wc -l)" -lt 5 ] && [ $waited -lt 1000 ]; do sleep 0.02; waited=$((waited + 1)); done
            kill -9 $launcher
            killed=$(date +%s.%N)
            sleep 1
            echo "logged $(($(wc -l < killed-launcher.log) - 1))"
            echo "started after the kill: $(awk -v t=$killed 'NR > 1 && $3 > t' killed-launcher.log | wc -l)"
            """
        let result = try Jobs.runShell(script, timeout: 60)
        #expect(result.output.contains("started after the kill: 0\n") && !result.output.contains("logged 40"), "\(result.report)")
        #expect(Jobs.waitForNoSurvivors(named: "killed-launcher.log").isEmpty, "left running: \(Jobs.survivors(named: "killed-launcher.log"))")
    }

    /// Tasks after the 3rd wait while the file `hold` exists: rank 1 dies while its task
    /// waits, never between a task's end and its report.
    @Test("Under mpirun a task is not a rank: it may itself be a swiftpar job, and sees no launcher identity")
    func nestedJobs() throws {
        let binary = Jobs.product("swiftpar")
        let result = try Jobs.run("swiftpar", ["run", "-k", "\(binary) -n 2 primes {}; env | grep -c -E '^(OMPI_COMM_WORLD_|PMIX_RANK=)' || true", ":::", "100", "1000"],
                                  launch: .mpirun(2), timeout: 120)
        #expect(result.status == 0 && result.output == "25\n0\n168\n0\n", "\(result.report)")
    }

    @Test("A local rank that dies has its tasks run again on the others")
    func rankDies() throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let script = """
            cd '\(folder.path)'
            mkdir done; touch hold
            \(Self.swiftpar(.local(3))) run --joblog farm.log 'if [ {} -gt 3 ]; then while [ -e hold ]; do sleep 0.05; done; fi; echo {} >> done/{}' ::: $(seq 15) > out 2> err & job=$!
            waited=0
            while [ "$(cat farm.log 2>/dev/null | wc -l)" -lt 4 ] && [ $waited -lt 500 ]; do sleep 0.02; waited=$((waited + 1)); done
            sleep 0.3
            # Rank 1: the launcher's first child (the ranks are forked before anything else).
            victim=$(pgrep -P $job -x swiftpar | sort -n | head -1)
            kill -9 $victim
            sleep 0.5
            rm hold
            wait $job; echo "status $?"
            echo "files $(ls done | wc -l) runs $(cat done/* | wc -l) logged $(($(wc -l < farm.log) - 1))"
            cat err
            """
        let result = try Jobs.runShell(script, timeout: 60)
        #expect(result.output.contains("status 0\n") && result.output.contains("files 15 runs 15 logged 15\n"), "\(result.report)")
        #expect(result.output.contains("rank 1 died while it held task"), "\(result.report)")
        #expect(result.output.contains("note: rank 1 was killed by signal 9 (SIGKILL) and the job went on without it"), "\(result.report)")
    }

    @Test("Large output: 1 GB in bounded memory, several large outputs whole and in order, a retried one printed once; 100,000 tasks all run and log")
    func volume() throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let swiftpar = Self.swiftpar(.local(2))
        let script = """
            cd '\(folder.path)'
            \(swiftpar) run --json 'head -c {} /dev/zero | tr "\\0" x' ::: 1000000000 3000 > big.out; echo "big $?"
            tail -c 200 big.out | tail -1
            head -c 1000003000 big.out | tr -d x | wc -c
            # Tasks past the 4 MiB a slot holds, on 3 ranks: each printed whole, -k in order.
            \(Self.swiftpar(.local(3))) run 'head -c 6000000 /dev/zero | tr "\\0" {}; echo' ::: a b c d e f > mixed.out
            echo "mixed $(awk '{ c = substr($0, 1, 1); n = length($0); gsub(c, ""); print c, n, length($0) }' mixed.out | sort | tr '\\n' ' ')"
            \(Self.swiftpar(.local(3))) run -k 'head -c 6000000 /dev/zero | tr "\\0" {}; echo' ::: a b c d e f | cut -c 1-2 | tr '\\n' ' ' | sed 's/^/ordered /'; echo
            # A large output of failed attempts is not printed: only the last attempt's.
            \(swiftpar) run --retries 3 'echo x >> count; head -c 5000000 /dev/zero | tr "\\0" x; [ $(wc -l < count) -ge 3 ]' ::: r | wc -c | sed 's/^/retried /'
            seq 100000 | \(swiftpar) run --joblog many.log 'echo {}' | sort -n | md5sum
            seq 100000 | md5sum
            echo "logged $(($(wc -l < many.log) - 1))"
            """
        let result = try Jobs.runShell(script, timeout: 400)
        let lines = result.output.split(separator: "\n").map(String.init)
        #expect(result.output.contains("big 0\n"), "\(result.report)")
        // The output is 1,000,003,000 x's then the summary line; nothing else.
        #expect(lines.count >= 3 && lines[2] == "0", "\(result.report)")
        let summary = lines.count >= 2 ? lines[1] : ""
        let peak = summary.range(of: #""peakMemoryKB": (\d+)"#, options: .regularExpression).map { Int(summary[$0].split(separator: " ").last!)! }
        #expect(peak != nil && peak! < 200_000, "rank 0 peak memory while 1 GB passed: \(summary)")
        #expect(result.output.contains("mixed a 6000000 0 b 6000000 0 c 6000000 0 d 6000000 0 e 6000000 0 f 6000000 0 \n"), "\(result.report.prefix(3000))")
        #expect(result.output.contains("ordered aa bb cc dd ee ff \n"), "\(result.report.prefix(3000))")
        #expect(result.output.contains("retried 5000000\n"), "\(result.report.prefix(3000))")
        let sums = lines.filter { $0.hasSuffix("  -") }
        #expect(sums.count == 2 && sums[0] == sums[1] && result.output.contains("logged 100000\n"), "\(result.report.prefix(3000))")
    }
}
