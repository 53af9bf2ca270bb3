import ArgumentParser
import SwiftPar
import SwiftParWorkloads
#if canImport(Glibc)
import Glibc
#endif

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a shell command per input on every slot of every rank: a task farm, as GNU parallel.",
        usage: "swiftpar run [options] [COMMAND [ARG...]] [::: VALUE...] [:::: FILE...]",
        discussion: """
            Each input becomes one task: COMMAND with the input in place of {} (appended when there is no replacement string), run by /bin/sh -c in a process group of its own. Inputs come from ::: values, from the lines of :::: files, or from standard input. Several sources give every combination (the last varies fastest); --link pairs them.

            Replacement strings: {} {.} {/} {//} {/.} {#} (task number) {%} (slot), and {1} {2} {1.} {2/} ... for one source. Inputs are quoted for the shell. There are no Perl expressions: a command with {=...=} is refused.

            Every rank is a slot (rank 0 too); --slots-per-rank K gives K. The number of ranks goes before run (swiftpar -n 8 run ...) or as --workers: after run, -n would be GNU parallel's inputs per command, which run does not have. Each task's output is printed whole as it ends, never mixed with another's; -k keeps input order. The exit status is the number of failed tasks (at most 101), as GNU parallel's; 255 for a usage error or any other error. Tasks see SWIFTPAR_TASK, SWIFTPAR_RANK and SWIFTPAR_SLOT (and PARALLEL_SEQ, PARALLEL_JOBSLOT) in their environment; SWIFTPAR_SHELL chooses another shell.

            Examples:
              swiftpar -n 8 run gzip -9 {} ::: *.log
              swiftpar run -k --tag 'wc -l < {}' :::: files.txt
              find . -name '*.fa' | swiftpar run --joblog log 'blast {} > {.}.out'
              mpirun -n 64 swiftpar run --joblog log --resume --commands tasks.txt
            """
    )

    @OptionGroup var options: GlobalOptions

    @Flag(name: [.customShort("k"), .customLong("keep-order")], help: "Print the tasks' output in input order.")
    var keepOrder = false

    @Flag(help: "Put each task's inputs and a tab before every line it prints.")
    var tag = false

    @Flag(name: .customLong("line-buffer"), help: "Print complete lines as tasks write them, instead of each task's output whole.")
    var lineBuffer = false

    @Option(help: ArgumentHelp("Log each finished task to FILE in GNU parallel's joblog format (+FILE adds to it).", valueName: "file"))
    var joblog: String?

    @Flag(help: "Skip the tasks the joblog shows as run (needs --joblog).")
    var resume = false

    @Flag(name: .customLong("resume-failed"), help: "Skip the tasks the joblog shows as succeeded; run the others (needs --joblog).")
    var resumeFailed = false

    @Option(parsing: .unconditional, help: ArgumentHelp("Run a failing task up to N times in all (0: until it succeeds).", valueName: "n"))
    var retries: Int = 1

    @Option(parsing: .unconditional, help: ArgumentHelp("Kill a task's process group after this long: seconds, or numbers with s, m, h, d (1h30m); 0 for no limit.", valueName: "duration"))
    var timeout: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("Stop early: never, soon,fail=N, now,fail=N, now,fail=P%, soon,success=N, now,done=N.", valueName: "when"))
    var halt: String?

    @Option(name: .customLong("slots-per-rank"), parsing: .unconditional, help: ArgumentHelp("Tasks each rank runs at once.", valueName: "k"))
    var slotsPerRank: Int = 1

    @Option(help: ArgumentHelp("Run each line of FILE as a whole command (as TACC's launcher).", valueName: "file"))
    var commands: String?

    @Option(name: [.customShort("a", allowingJoined: true), .customLong("arg-file")], help: ArgumentHelp("Read inputs from the lines of FILE (as :::: FILE).", valueName: "file"))
    var argumentFiles: [String] = []

    @Flag(name: .customLong("link"), help: "Pair the input sources element by element instead of taking every combination.")
    var link = false

    @Flag(name: [.customShort("0"), .customLong("null")], help: "Inputs end with a NUL byte instead of a newline.")
    var null = false

    @Option(name: [.customShort("d", allowingJoined: true), .customLong("delimiter")], help: ArgumentHelp("Inputs end with DELIM instead of a newline: characters, C escapes such as \\n or \\0, octal \\NNN or hexadecimal \\xHH codes.", valueName: "delim"))
    var delimiter: String?

    @Flag(name: [.customShort("r"), .customLong("no-run-if-empty")], help: "Skip inputs that are empty or blank.")
    var noRunIfEmpty = false

    @Flag(name: [.customShort("q"), .customLong("quote")], help: "Quote each word of the command, so it holds no shell code.")
    var quote = false

    @Flag(name: .customLong("dry-run"), help: "Print each task's command instead of running it.")
    var dryRun = false

    @Argument(parsing: .captureForPassthrough, help: ArgumentHelp("The command, its arguments, and the inputs after ::: or ::::.", valueName: "command"))
    var passedWords: [String] = []

    /// Inputs of a long command line after its first `:::` or `::::`, kept from the argument
    /// parser by `main` (see `SwiftParCommand.holdingBulk`); they follow `passedWords`.
    nonisolated(unsafe) static var heldWords: [String] = []

    /// The command and inputs: what follows the options, without a `--` that ends them (as GNU
    /// parallel takes it; a command may then start with `-`).
    private var words: [String] {
        let all = passedWords + Self.heldWords
        return all.first == "--" ? Array(all.dropFirst()) : all
    }

    /// run's options whose value is the next word.
    static let optionsTakingValues: Set<String> = ["--workers", "--backend", "--stall-timeout", "--joblog", "--retries", "--timeout", "--halt",
                                                   "--slots-per-rank", "--commands", "-a", "--arg-file", "-d", "--delimiter", "-o", "--output"]

    /// A `-n` among run's options in `arguments` (which start with `run`): GNU parallel's
    /// number of inputs per command there. (The number of ranks, given before `run`, has been
    /// moved here as `--workers`.)
    static func maxArgumentsOption(in arguments: [String]) -> String? {
        let takesValue = optionsTakingValues
        var index = 1
        while index < arguments.count {
            let word = arguments[index]
            guard word.hasPrefix("-"), word != "--", !word.hasPrefix(":::") else { return nil }
            if word == "-n" { return index + 1 < arguments.count ? "-n \(arguments[index + 1])" : word }
            if word.hasPrefix("-n"), !word.hasPrefix("--") { return word }
            // Short flags grouped with -n (-kn 2, -qrn2) parse as -n too.
            if !word.hasPrefix("--"), let at = word.dropFirst().firstIndex(of: "n"),
               word.dropFirst()[..<at].allSatisfy({ "k0rq".contains($0) }) {
                let rest = word[word.index(after: at)...]
                return rest.isEmpty && index + 1 < arguments.count ? "\(word) \(arguments[index + 1])" : word
            }
            index += takesValue.contains(word) ? 2 : 1
        }
        return nil
    }

    /// Why a `-n` after `run` (`typed`, as the user wrote it) is refused: `main` says so before
    /// parsing, since argument-parser would read it as `--workers` (and, grouped as in `-kn2`,
    /// take the next word for its value).
    static func maxArgumentsProblem(_ typed: String) -> String {
        "\(typed) after run would be GNU parallel's number of inputs per command, which swiftpar run does not have "
            + "(each task takes one input); for the number of ranks give -n before run (swiftpar -n 4 run ...) or --workers"
    }

    func validate() throws {
        if let first = passedWords.first, first == "--help" || first == "-h" { throw CleanExit.helpRequest(Self.self) }
        if let first = passedWords.first, first.hasPrefix("-"), first.count > 1, !first.hasPrefix(":::"), first != "--" {
            if first == "-j" || first.hasPrefix("-j") || first.hasPrefix("--jobs") || first.hasPrefix("-P") || first.hasPrefix("--max-procs") {
                throw ValidationError("swiftpar run has no \(first): every rank is a slot, so give -n N before run for N slots on this machine "
                                      + "(swiftpar -n 4 run ...), or --slots-per-rank K")
            }
            throw ValidationError("unknown option '\(first)' for run (a command cannot start with '-')")
        }
        if null && delimiter != nil { throw ValidationError("give -0 or -d, not both: each says where inputs end") }
        let standardInputs = argumentFiles.filter { $0 == "-" }.count + zip(words, words.dropFirst()).filter { ["::::", "::::+"].contains($0.0) && $0.1 == "-" }.count
        if standardInputs > 1 { throw ValidationError("standard input (-) is given as an input source \(standardInputs) times; it can be read once") }
        guard slotsPerRank >= 1 else { throw ValidationError("--slots-per-rank must be at least 1, not \(slotsPerRank)") }
        guard retries >= 0 else { throw ValidationError("--retries must be 0 (until it succeeds) or more, not \(retries)") }
        if (resume || resumeFailed) && joblog == nil {
            throw ValidationError("--resume and --resume-failed need --joblog FILE: the log says which tasks have run")
        }
        if resume && resumeFailed { throw ValidationError("give --resume or --resume-failed, not both") }
        _ = try timeoutSeconds()
        _ = try separator()
        do { _ = try HaltPolicy.parse(halt ?? "never") } catch { throw ValidationError("\(error)") }
        if commands != nil && (!words.isEmpty || !argumentFiles.isEmpty) {
            throw ValidationError("--commands FILE takes the commands from FILE: give no command, ::: or -a with it")
        }
        let command = words.prefix { ![":::", ":::+", "::::", "::::+"].contains($0) }.map(RawArguments.bytes(of:))
        if let expression = CommandTemplate.perlExpression(in: command) {
            throw ValidationError("swiftpar run has no Perl expressions in replacement strings: \(expression) would run as literal text; "
                                  + "compute the value in the command instead (for example with sed, or the shell's ${x%.gz})")
        }
    }

    /// `--timeout` in seconds, nil for none: a number of seconds, or numbers each followed by
    /// s, m, h or d (`1h30m`), as GNU parallel reads durations; 0 means no limit.
    private func timeoutSeconds() throws -> Double? {
        guard let timeout else { return nil }
        if timeout.hasSuffix("%") {
            throw ValidationError("--timeout \(timeout): a percentage of the median run time (GNU parallel's) is not supported; "
                                  + "give a duration such as 30, 90s, 10m or 1h30m")
        }
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        let invalid = ValidationError("--timeout must be a duration such as 30, 1.5, 90s, 10m or 1h30m (0: no limit), not '\(timeout)'")
        var total = 0.0
        var number = ""
        var hasUnit = false
        for character in timeout {
            if character.isASCII && (character.isNumber || character == ".") {
                number.append(character)
            } else if let unit = units[character], let value = Double(number) {
                total += value * unit
                number = ""
                hasUnit = true
            } else {
                throw invalid
            }
        }
        if !number.isEmpty {
            // A bare number after units (1m30) is ambiguous, as GNU parallel says too.
            guard !hasUnit, let value = Double(number) else { throw invalid }
            total += value
        }
        guard !timeout.isEmpty, total.isFinite else { throw invalid }
        return total > 0 ? total : nil
    }

    /// `-d`'s delimiter as bytes: characters, C escapes (\n, \t, \r, \0, \a, \b, \f, \v,
    /// \\), octal (\NNN) and hexadecimal (\xHH) codes, as printf reads them.
    private func separator() throws -> [UInt8] {
        if null { return [0] }
        guard let delimiter else { return [10] }
        let text = RawArguments.bytes(of: delimiter)
        var bytes: [UInt8] = []
        var index = 0
        func digits(_ limit: Int, radix: Int) -> UInt8? {
            var value = 0, count = 0
            while count < limit, index < text.count, let digit = Int(String(UnicodeScalar(text[index])), radix: radix) {
                value = value * radix + digit
                index += 1
                count += 1
            }
            return count == 0 || value > 255 ? nil : UInt8(value)
        }
        while index < text.count {
            let byte = text[index]
            index += 1
            guard byte == UInt8(ascii: "\\"), index < text.count else {
                bytes.append(byte)
                continue
            }
            let escaped = text[index]
            index += 1
            let simple: [UInt8: UInt8] = [UInt8(ascii: "n"): 10, UInt8(ascii: "t"): 9, UInt8(ascii: "r"): 13, UInt8(ascii: "a"): 7,
                                          UInt8(ascii: "b"): 8, UInt8(ascii: "f"): 12, UInt8(ascii: "v"): 11, UInt8(ascii: "\\"): 92]
            if let value = simple[escaped] {
                bytes.append(value)
            } else if escaped == UInt8(ascii: "x") {
                guard let value = digits(2, radix: 16) else {
                    throw ValidationError("-d: \\x needs one or two hexadecimal digits, in '\(delimiter)'")
                }
                bytes.append(value)
            } else if (UInt8(ascii: "0")...UInt8(ascii: "7")).contains(escaped) {
                index -= 1
                guard let value = digits(3, radix: 8) else {
                    throw ValidationError("-d: an octal code above \\377 in '\(delimiter)'")
                }
                bytes.append(value)
            } else {
                // Not an escape: the backslash stands for itself, as in printf.
                bytes += [92, escaped]
            }
        }
        guard !bytes.isEmpty else { throw ValidationError("-d needs a delimiter of one character or more") }
        return bytes
    }

    /// The shell that runs each command: SWIFTPAR_SHELL (a path, or a name looked up on the
    /// PATH), or /bin/sh.
    private func shellPath() throws -> String {
        let environment = currentEnvironment()
        guard let shell = environment["SWIFTPAR_SHELL"], !shell.isEmpty else { return "/bin/sh" }
        if shell.contains("/") { return shell }
        for folder in (environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let candidate = "\(folder)/\(shell)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        throw InputError(description: "SWIFTPAR_SHELL is \(shell), which is not on the PATH")
    }

    /// The command template and the input sources, from the words after the options.
    private func farmOptions() throws -> FarmOptions {
        var farm = FarmOptions()
        var template: [[UInt8]] = []
        var sources: [InputSpecification] = argumentFiles.map { InputSpecification(.file(PathBytes(RawArguments.bytes(of: $0)))) }
        enum Mode { case template, values(linked: Bool), files(linked: Bool) }
        var mode = Mode.template
        var values: [[UInt8]] = []
        func closeValues() {
            if case .values(let linked) = mode { sources.append(InputSpecification(.values(values), linkedToPrevious: linked)) }
            values = []
        }
        for word in words {
            switch word {
            case ":::", ":::+":
                closeValues()
                mode = .values(linked: word == ":::+")
            case "::::", "::::+":
                closeValues()
                mode = .files(linked: word == "::::+")
            default:
                let bytes = RawArguments.bytes(of: word)
                switch mode {
                case .template: template.append(bytes)
                case .values: values.append(bytes)
                case .files(let linked): sources.append(InputSpecification(.file(PathBytes(bytes)), linkedToPrevious: linked))
                }
            }
        }
        closeValues()
        if let commands {
            sources = [InputSpecification(.file(PathBytes(RawArguments.bytes(of: commands))))]
            template = []
        }
        if sources.isEmpty { sources = [InputSpecification(.standardInput)] }
        // Open every input file now, so a missing one is reported before any rank starts. A
        // named pipe is only looked at: opening and closing it would let its writer go on, and
        // what it wrote would be lost before the farm opens it again.
        for source in sources {
            if case .file(let path) = source.source, path.bytes != Array("-".utf8) {
                var named = stat()
                if path.withCString({ stat($0, &named) }) == 0 && (named.st_mode & S_IFMT) == S_IFIFO {
                    guard path.withCString({ access($0, R_OK) }) == 0 else {
                        throw InputError(description: "cannot open input file \(path): \(String(cString: strerror(errno)))")
                    }
                    continue
                }
                let descriptor = path.withCString { open($0, O_RDONLY | O_CLOEXEC) }
                guard descriptor >= 0 else { throw InputError(description: "cannot open input file \(path): \(String(cString: strerror(errno)))") }
                var status = stat()
                let isDirectory = fstat(descriptor, &status) == 0 && (status.st_mode & S_IFMT) == S_IFDIR
                close(descriptor)
                if isDirectory { throw InputError(description: "input file \(path) is a directory") }
            }
        }
        farm.template = CommandTemplate(template, quotesWords: quote)
        farm.sources = sources
        farm.separator = try separator()
        farm.link = link
        farm.skipEmpty = noRunIfEmpty
        farm.slotsPerRank = slotsPerRank
        farm.keepOrder = keepOrder
        farm.tag = tag
        farm.runner.lineBuffered = lineBuffer
        farm.runner.timeout = try timeoutSeconds()
        farm.runner.attempts = retries == 0 ? Int.max : retries
        farm.runner.shell = try shellPath()
        if let log = joblog {
            // The path's own bytes: a name that is not UTF-8 reaches us as a placeholder string.
            var path = RawArguments.bytes(of: log)
            if path.first == UInt8(ascii: "+") {
                farm.appendToJoblog = true
                path.removeFirst()
            }
            farm.joblog = PathBytes(path)
        }
        farm.resume = resume
        farm.resumeFailed = resumeFailed
        farm.halt = try HaltPolicy.parse(halt ?? "never")
        farm.dryRun = dryRun
        return farm
    }

    func run() throws {
        let farm: FarmOptions
        do {
            farm = try farmOptions()
        } catch let error as InputError {
            LaunchEnvironment.reportSharedProblem("swiftpar: run: \(error.description)")
            throw ExitCode(255)
        }
        let json = options.json
        // A job that fails on any rank (a task that cannot be started there, a lost or stalled
        // rank) ends with 255 too, never with a status that reads as a count of failed tasks.
        SwiftPar.jobFailureStatus = 255
        options.run(Self.self, failureStatus: 255) { world in
            let bar = ProgressBar("tasks", enabled: world.rank == 0 && isTerminal(2) && !farm.dryRun)
            var farm = farm
            farm.beforePrinting = { stream in bar.clear(before: stream) }
            farm.afterPrinting = { stream, endsLine in bar.printed(on: stream, endsLine: endsLine) }
            let summary: FarmSummary?
            do {
                summary = try TaskFarm.run(farm, on: world) { progress in
                    var detail = ""
                    if progress.failed > 0 { detail += ", \(progress.failed) failed" }
                    if let total = progress.total, progress.done > 0, progress.done < total {
                        let left = progress.seconds / Double(progress.done) * Double(total - progress.done)
                        detail += ", \(Int(left.rounded(.up))) s left"
                    }
                    bar.update(done: progress.done, total: progress.total, detail: detail)
                }
            } catch let error as InputError {
                bar.finish()
                writeStandardError("swiftpar: run: \(error.description)\n")
                world.exitStatus = 255
                return
            } catch where world.rank == 0 && !(error is CommunicatorError) {
                // Whatever else of rank 0's own stops the farm (a joblog that cannot be written,
                // output that cannot be printed, a task that cannot be started) has stopped the
                // workers: 255, GNU parallel's status for an error other than failed tasks, so
                // that it is never taken for a count of failed tasks. (The job's own errors, a
                // stall or a lost rank, end it as they end any job, with `jobFailureStatus`.)
                bar.finish()
                writeStandardError("swiftpar: run: \(error)\n")
                world.exitStatus = 255
                return
            }
            bar.finish()
            guard let summary else { return }
            if json {
                let rate = summary.seconds > 0 ? Double(summary.tasks) / summary.seconds : 0
                try printChecked("{\"tasks\": \(summary.tasks), \"failed\": \(summary.failed), \"skipped\": \(summary.skipped), \"seconds\": \(format(summary.seconds, 3)), \"tasksPerSecond\": \(format(rate, 1)), \"peakMemoryKB\": \(summary.peakMemoryKB)}")
            }
            world.exitStatus = summary.exitStatus
        }
    }
}
