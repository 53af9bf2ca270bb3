import Foundation
import SwiftParWorkloads
import Testing

/// `swiftpar primes` and `swiftpar hash` as users run them, checked against the references.
@Suite("Workloads", .serialized)
struct WorkloadTests {
    static let launches: [Launch] = [.serial, .local(2), .local(4), .spawned(3), .mpirun(2), .mpirun(4)]

    func swiftpar(_ arguments: [String], _ launch: Launch, timeout: Double = 120) throws -> JobResult {
        switch launch {
        case .serial: return try Jobs.runCommand([Jobs.product("swiftpar"), "--backend", "serial"] + arguments, timeout: timeout)
        case .local(let n): return try Jobs.runCommand([Jobs.product("swiftpar"), "-n", "\(n)"] + arguments, timeout: timeout)
        case .spawned(let n):
            return try Jobs.runCommand([Jobs.product("swiftpar"), "-n", "\(n)"] + arguments, environment: ["SWIFTPAR_START": "spawn"], timeout: timeout)
        case .mpirun: return try Jobs.run("swiftpar", arguments, launch: launch, timeout: timeout)
        }
    }

    @Test("π(10^k) for k = 0…9 on every backend", arguments: launches)
    func primeCounts(_ launch: Launch) throws {
        let expected = [0, 4, 25, 168, 1229, 9592, 78498, 664_579, 5_761_455, 50_847_534]
        for (k, count) in expected.enumerated() {
            let result = try swiftpar(["primes", "1e\(k)"], launch)
            #expect(result.status == 0 && result.output == "\(count)\n", "π(10^\(k)) under \(launch):\n\(result.report)")
        }
    }

    @Test("Edges: N < 2, N = 2, ranges that start and end on primes, ranges near 10^12")
    func primeEdges() throws {
        let cases: [([String], String)] = [
            (["0"], "0"), (["1"], "0"), (["2"], "1"), (["3"], "2"), (["--from", "2", "2"], "1"),
            (["--from", "7", "7"], "1"), (["--from", "8", "10"], "0"), (["--from", "13", "17"], "2"),
            (["--from", "11", "29"], "6"), (["--from", "999999999989", "1000000000039"], "2"),
            (["--from", "999999000000", "1000000000000"], "36400"),
        ]
        for (arguments, count) in cases {
            let result = try swiftpar(["primes"] + arguments, .local(2))
            #expect(result.status == 0 && result.output == count + "\n", "primes \(arguments):\n\(result.report)")
        }
    }

    @Test("Counts and lists agree with primesieve on random ranges", .enabled(if: FileManager.default.fileExists(atPath: "/usr/bin/primesieve")))
    func agreesWithPrimesieve() throws {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<8 {
            let low = UInt64.random(in: 0...1_000_000_000_000, using: &generator)
            let high = low + UInt64.random(in: 0...3_000_000, using: &generator)
            let reference = try Jobs.runCommand(["primesieve", "\(low)", "\(high)", "-c", "-q"])
            let ours = try swiftpar(["primes", "--from", "\(low)", "\(high)"], .local(2))
            #expect(ours.output == reference.output, "range \(low)...\(high):\n\(ours.report)\nprimesieve: \(reference.output)")
        }
        let low: UInt64 = 1_000_000_000_000 - 200_000
        let reference = try Jobs.runCommand(["primesieve", "\(low)", "1000000000000", "-p"])
        let listed = try swiftpar(["primes", "--from", "\(low)", "1e12", "--list"], .mpirun(2))
        #expect(listed.status == 0 && listed.output == reference.output, "listing:\n\(listed.report.prefix(2000))")
        // Near 10^18 a listing's blocks are 2^26 numbers (each makes the sieving primes up to
        // 10^9 again): three blocks, the last one short, on two ranks; and at the top, 10^18.
        for (from, to) in [("999999999800000000", "1000000000000000000"), ("999999999999990000", "1e18")] {
            let top = try Jobs.runCommand(["primesieve", from, to == "1e18" ? "1000000000000000000" : to, "-p"], timeout: 120)
            for launch in [Launch.local(2), .mpirun(2)] {
                let ours = try swiftpar(["primes", "--from", from, to, "--list"], launch, timeout: 180)
                #expect(ours.status == 0 && ours.output == top.output && !top.output.isEmpty,
                        "\(from)...\(to) under \(launch): \(ours.output.count) bytes against primesieve's \(top.output.count)\n\(ours.report.prefix(2000))")
            }
        }
    }

    @Test("Every kind of sieving prime agrees with primesieve: slices, segments, buckets, and buckets in batches across blocks",
          .enabled(if: FileManager.default.fileExists(atPath: "/usr/bin/primesieve")))
    func sievingPrimeKinds() throws {
        // Roots below the slice limit, inside one segment, past the buckets' start (4·10^6),
        // and past the batch size, with ranges that cross segment and block boundaries.
        let ranges: [(String, String)] = [
            ("1000", "40000000"), ("3600000000", "3700000000"),
            ("16000000000000", "16000200000000"), ("123456789012345", "123456800012345"),
            ("4000000000000000", "4000002100000000"),
        ]
        for (low, high) in ranges {
            let reference = try Jobs.runCommand(["primesieve", low, high, "-c", "-q"], timeout: 120)
            for launch in [Launch.local(2), .mpirun(2)] {
                let ours = try swiftpar(["primes", "--from", low, high], launch, timeout: 180)
                #expect(ours.status == 0 && ours.output == reference.output, "\(low)...\(high) under \(launch):\n\(ours.report)\nprimesieve: \(reference.output)")
            }
        }
    }

    @Test("Near 10^18 the blocks are whole rounds of the ranks, but never so many that they mostly make sieving primes")
    func blocksNearTheTop() {
        func blocks(_ low: UInt64, ranks: Int) -> Int {
            let range = low...1_000_000_000_000_000_000
            return PrimeCounting.Blocks(range, span: PrimeCounting.countingSpan(for: range, ranks: ranks)).count
        }
        // The benchmark's window: more blocks than the memory needs, a whole round of 2 ranks.
        let window: UInt64 = 999_999_990_000_000_000
        #expect(blocks(window, ranks: 2) % 2 == 0 && blocks(window, ranks: 2) >= blocks(window, ranks: 1), "\(blocks(window, ranks: 1)) and \(blocks(window, ranks: 2))")
        // 10^9 numbers: one block per rank on 2; 10^8: one block however many ranks (it was one per rank).
        #expect(blocks(999_999_999_000_000_000, ranks: 2) == 2)
        for ranks in [1, 2, 16, 200] {
            #expect(blocks(999_999_999_900_000_000, ranks: ranks) == 1, "\(ranks) ranks")
        }
    }

    @Test("Large primes' first multiples: the vector code, the same one at a time, and exact division agree")
    func largePrimePlacements() {
        var generator = SystemRandomNumberGenerator()
        // Starts near 0, near 10^18 and up to just below 2^62, with and without the primes'
        // squares as the least multiple (clamped); primes from above 2^22 to about 2^32, in
        // every class.
        let starts: [UInt64] = [0, 1, 29, 30, 4_000_000_000_000, 999_999_990_000_000_000, 1_000_000_000_000_000_000, (1 << 62) - 1]
            + (0..<24).map { _ in UInt64.random(in: 0..<(1 << 62), using: &generator) }
        for start in starts {
            // 203 primes: 25 groups of eight and a tail of three.
            var packed = (0..<203).map { _ in UInt64.random(in: 140_000...143_165_576, using: &generator) << 3 | UInt64.random(in: 0...7, using: &generator) }
            // Starts at a multiple of a prime and just past one: its quotient in floating point
            // falls just short of the exact one 4% of the time, and the remainder's two
            // corrections (+1 past 0, +1 more past p) must still give the least multiple. That
            // prime in a group and in the tail.
            var cases = [(start, packed[5])]
            for _ in 0..<64 {
                let chosen = packed[Int.random(in: 0..<200, using: &generator)]
                let p = 30 * (chosen >> 3) + [1, 7, 11, 13, 17, 19, 23, 29][Int(chosen & 7)]
                if start >= p && start / p * p + 3 < 1 << 62 {
                    cases += (0...3).map { (start / p * p + $0, chosen) }
                }
            }
            for (start, chosen) in cases {
                packed[201] = chosen
                for clamped in [false, true] {
                    let baseByte = start / 30 - UInt64.random(in: 0...min(start / 30, 1 << 20), using: &generator)
                    // Every prime, and only those whose multiple falls below a limit that keeps
                    // about half (the block's end), in order.
                    let all = PrimeSieve.placements(of: packed, start: start, baseByte: baseByte, clamped: clamped).exact
                    let middle = all.map { UInt64(bitPattern: $0[0]) }.sorted()[all.count / 2]
                    for limit in [UInt64.max, middle] {
                        let (used, oneAtATime, exact) = PrimeSieve.placements(of: packed, start: start, baseByte: baseByte, clamped: clamped, limit: limit)
                        #expect(limit == .max ? exact.count == packed.count : exact.count < packed.count && exact.count > packed.count / 4)
                        #expect(used.count == exact.count && oneAtATime.count == exact.count,
                                "start \(start), clamped \(clamped), limit \(limit): kept \(used.count) and \(oneAtATime.count), exactly \(exact.count)")
                        let wrong = (0..<min(used.count, oneAtATime.count, exact.count)).filter { used[$0] != exact[$0] || oneAtATime[$0] != exact[$0] }
                        #expect(wrong.isEmpty, "start \(start), clamped \(clamped), limit \(limit): \(wrong.count) differ, first \(wrong.first.map { "\(used[$0]) \(oneAtATime[$0]) against \(exact[$0])" } ?? "")")
                    }
                }
            }
        }
    }

    @Test("Gathering a sieve's set bits: the vector code and the same one bit at a time give every bit, in order")
    func gatheredBits() {
        var generator = SystemRandomNumberGenerator()
        // Empty, full and single-bit words, and random ones of every density.
        var words: [UInt64] = [0, .max, 1, 1 << 63, 0x8000_0000_0000_0001, 0, 0, .max]
        for _ in 0..<500 {
            let density = Int.random(in: 0...6, using: &generator)
            var word = UInt64.random(in: 0...UInt64.max, using: &generator)
            for _ in 0..<density { word &= UInt64.random(in: 0...UInt64.max, using: &generator) }
            words.append(word)
        }
        for baseA in [UInt64(0), 8, 33_333_333, 1 << 40] {
            for length in [0, 1, 7, words.count] {
                let slice = Array(words.prefix(length))
                var expected: [UInt64] = []
                for (w, word) in slice.enumerated() {
                    for b in 0..<64 where word >> UInt64(b) & 1 == 1 {
                        expected.append((baseA + 8 * UInt64(w) + UInt64(b / 8)) << 3 | UInt64(b % 8))
                    }
                }
                let (used, oneAtATime) = PrimeSieve.gathered(slice, baseA: baseA)
                #expect(used == expected, "base \(baseA), \(length) words: \(used.count) gathered, \(expected.count) bits set")
                #expect(oneAtATime == expected, "one at a time, base \(baseA), \(length) words: \(oneAtATime.count) gathered, \(expected.count) bits set")
            }
        }
    }

    @Test("The sieve's own interface works up to 2^64 − 1, as primesieve does",
          .enabled(if: FileManager.default.fileExists(atPath: "/usr/bin/primesieve")))
    func sieveAtTheTopOfUInt64() throws {
        // (Every such range needs the 203 million sieving primes below 2^32: one range is enough.)
        for low in [UInt64.max - 1000] {
            let reference = try Jobs.runCommand(["primesieve", "\(low)", "\(UInt64.max)", "-c", "-q"], timeout: 120)
            let ours = PrimeSieve.count(in: low...UInt64.max)
            #expect("\(ours)\n" == reference.output, "\(low)...2^64−1: \(ours), primesieve \(reference.output)")
        }
    }

    @Test("--list prints the primes in order; trial division agrees with the sieve", arguments: [Launch.local(3), .mpirun(2)])
    func listAndTrial(_ launch: Launch) throws {
        let listed = try swiftpar(["primes", "--from", "4000000", "5000000", "--list"], launch)
        let numbers = listed.output.split(separator: "\n").compactMap { UInt64($0) }
        // π(5·10^6) − π(4·10^6) = 348513 − 283146.
        #expect(listed.status == 0 && numbers.count == 65367, "\(listed.report.prefix(500))")
        #expect(numbers == numbers.sorted() && numbers.first == 4_000_037 && numbers.last == 4_999_999, "first \(String(describing: numbers.first)), last \(String(describing: numbers.last))")
        let trial = try swiftpar(["primes", "200000", "--method", "trial"], launch)
        #expect(trial.output == "17984\n", "\(trial.report)")
        let json = try swiftpar(["primes", "1e6", "--json"], launch)
        #expect(json.output.contains("\"count\" : 78498"), "\(json.report)")
    }

    @Test("Bad input is a usage error that says what is wrong", arguments: [
        (["-5"], "N must be a whole number from 0 to 10^18, not '-5'"), (["--", "-5"], "N must be a whole number from 0 to 10^18, not '-5'"), (["ten"], "not 'ten'"),
        (["--from", "10", "5"], "--from 10 is larger than N = 5"), (["1e19"], "not '1e19'"), (["10", "--method", "magic"], "magic"),
        (["10", "--list", "--method", "trial"], "--list works with --method sieve only"), (["10", "--memory", "50M"], "at least 100M"),
        (["10", "--memory", "lots"], "not 'lots'"), (["10", "--memory", "-1G"], "not '-1G'"), (["10", "--memory", "1e30"], "not '1e30'"),
        (["10", "--memory", "20000000000G"], "is too large"), (["10", "20"], "give one upper end N, not 2"),
        (["10", "--memory", "1k"], "at least 100M"), (["10", "--memory", "1gg"], "not '1gg'"), (["10", "--memory", "1 G"], "not '1 G'"),
    ])
    func primeBadInput(_ bad: (arguments: [String], words: String)) throws {
        let result = try swiftpar(["primes"] + bad.arguments, .local(2))
        #expect(result.status == 64 && result.errors.contains("Error: ") && result.errors.contains(bad.words), "\(bad.arguments):\n\(result.report)")
        #expect(result.output.isEmpty, "\(result.report)")
    }

    @Test("--memory takes a size as people write it, in any case", arguments: ["1g", "512mb", "0.5GiB", "200000k", "150MB", "1000000000"])
    func primesMemorySpellings(_ size: String) throws {
        let result = try swiftpar(["primes", "1e6", "--memory", size], .serial)
        #expect(result.status == 0 && result.output == "78498\n", "--memory \(size):\n\(result.report)")
    }

    @Test("After --, N may be written anywhere a number can")
    func primesAfterDoubleDash() throws {
        let result = try swiftpar(["primes", "--", "100"], .serial)
        #expect(result.status == 0 && result.output == "25\n", "\(result.report)")
    }

    /// A tree of files with awkward names, an empty file, a larger one, a symlink, a loop and a pipe.
    func makeTree() throws -> URL {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("swiftpar-hash-\(UUID().uuidString)")
        let fm = FileManager.default
        try fm.createDirectory(at: root.appendingPathComponent("d/e"), withIntermediateDirectories: true)
        try Data("hello\n".utf8).write(to: root.appendingPathComponent("a.txt"))
        try Data().write(to: root.appendingPathComponent("empty"))
        try Data((0..<3_000_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 9) }).write(to: root.appendingPathComponent("d/big.bin"))
        try Data("x".utf8).write(to: root.appendingPathComponent("d/e/sp ace ü.txt"))
        try Data("y".utf8).write(to: root.appendingPathComponent("d/back\\slash"))
        for i in 0..<300 { try Data("file \(i)".utf8).write(to: root.appendingPathComponent("d/e/n\(i)")) }
        return root
    }

    @Test("hash output is sha256sum's, sorted by path, and sha256sum -c accepts it", arguments: [Launch.serial, .local(2), .local(4), .mpirun(3)])
    func hashMatchesSha256sum(_ launch: Launch) throws {
        let root = try makeTree()
        defer { try? FileManager.default.removeItem(at: root) }
        let ours = try swiftpar(["hash", root.path], launch)
        #expect(ours.status == 0, "\(ours.report)")
        let lines = ours.output.split(separator: "\n").map(String.init)
        #expect(lines.count == 305, "\(ours.report.prefix(3000))")
        // "digest  path": the path is everything after the first two spaces.
        let paths = lines.map { line in line.range(of: "  ").map { String(line[$0.upperBound...]) } ?? "" }
        let sorted = paths == paths.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        #expect(sorted, "lines are not sorted by path; first lines: \(lines.prefix(5))")
        let list = root.appendingPathComponent("../\(root.lastPathComponent).sums").standardized
        try Data(ours.output.utf8).write(to: list)
        defer { try? FileManager.default.removeItem(at: list) }
        let check = try Jobs.runCommand(["sha256sum", "--strict", "-c", list.path])
        #expect(check.status == 0 && !check.output.contains("FAILED"), "sha256sum -c:\n\(check.report.prefix(3000))")
        let reference = try Jobs.runCommand(["sh", "-c", "find '\(root.path)' -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum"])
        #expect(Set(reference.output.split(separator: "\n")) == Set(lines.map { Substring($0) }), "differs from sha256sum")
        let json = try swiftpar(["hash", root.appendingPathComponent("a.txt").path, "--json"], launch)
        #expect(json.output.contains("\"sha256\" : \"5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03\""), "\(json.report)")
    }

    @Test("A deep tree split among the ranks prints exactly what sha256sum prints for the sorted file list",
          arguments: [Launch.local(3), .mpirun(2)])
    func hashDeepTree(_ launch: Launch) throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("swiftpar-deep-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        // Names that sort around "/" ("a-b" < "a.txt" < "a/…" < "a0"), directories at six
        // depths, a flat directory of 700 files, and one large file among small ones.
        var path = root
        for depth in 0..<6 {
            path = path.appendingPathComponent("a")
            try FileManager.default.createDirectory(at: path, withIntermediateDirectories: true)
            for name in ["a-b", "a.txt", "a0", "z\(depth)"] { try Data("\(depth) \(name)".utf8).write(to: path.appendingPathComponent(name)) }
        }
        let flat = root.appendingPathComponent("flat")
        try FileManager.default.createDirectory(at: flat, withIntermediateDirectories: true)
        for i in 0..<700 { try Data("flat \(i)".utf8).write(to: flat.appendingPathComponent("f\(i)")) }
        try Data(repeating: 7, count: 70 << 20).write(to: flat.appendingPathComponent("large"))
        try Data("top".utf8).write(to: root.appendingPathComponent("a.txt"))
        let reference = try Jobs.runCommand(["sh", "-c", "find '\(root.path)' -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum"], timeout: 60)
        let ours = try swiftpar(["hash", root.path], launch)
        #expect(ours.status == 0 && ours.output == reference.output, "\(launch):\n\(ours.report.prefix(3000))")
        #expect(ours.output.split(separator: "\n").count == 6 * 4 + 701 + 1, "line count: \(ours.report.prefix(500))")
    }

    @Test("Small files next to large ones join their units, no more than 1/64 of the large file each, and the output is sha256sum's")
    func hashSmallFilesJoinLargeOnes() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("swiftpar-join-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        try FileManager.default.createDirectory(at: root.appendingPathComponent("sub"), withIntermediateDirectories: true)
        // A marker before four large (sparse) files, a checksum list after them, and 600 files
        // of 4 KiB before a fifth large file: more than 1/64 of it, so not all of them can join.
        let large = Int64(64 << 20)
        for i in 0..<5 {
            let name = i < 4 ? "file\(i)" : "sub/z-large"
            try Data().write(to: root.appendingPathComponent(name))
            let handle = try FileHandle(forWritingTo: root.appendingPathComponent(name))
            try handle.truncate(atOffset: UInt64(large) + UInt64(i))
            try handle.close()
        }
        try Data().write(to: root.appendingPathComponent(".done"))
        try Data("sums\n".utf8).write(to: root.appendingPathComponent("zz-SHA256SUMS"))
        for i in 0..<600 { try Data(repeating: UInt8(i % 251), count: 4096).write(to: root.appendingPathComponent(String(format: "sub/f%03d", i))) }

        let units = FileHashing.units(of: [PathBytes(root.path)], followSymlinks: false, ranks: 2)
        var covered: [String] = []
        var largeUnits = 0
        for unit in units {
            guard case .files(let files) = unit else { continue }
            covered += files.map(\.path.description)
            let big = files.filter { $0.size >= large }
            #expect(big.count <= 1, "two large files in one unit: \(files.map(\.path))")
            if let one = big.first {
                largeUnits += 1
                let small = files.filter { $0.size < large }.reduce(Int64(0)) { $0 + $1.size + 4096 }
                #expect(small <= one.size / 64 && files.count <= 1025, "\(one.path) took in \(files.count - 1) small files, \(small) bytes")
            } else {
                #expect(files.count <= 256, "a group of \(files.count) small files")
            }
        }
        #expect(largeUnits == 5, "units: \(units.map(\.debugKind))")
        // The marker joins file0, which follows it in path order, and the list joins
        // sub/z-large, which it follows; of the 600 small files, the last 88 (a group short of
        // 256) join sub/z-large too, and two groups of 256 stay on their own: each weighs 2 MiB,
        // over 1/64 of it.
        #expect(units.count == largeUnits + 2, "units: \(units.map(\.debugKind))")
        let expected = try Jobs.runCommand(["sh", "-c", "find '\(root.path)' -type f | LC_ALL=C sort"]).output.split(separator: "\n").map(String.init)
        #expect(covered == expected, "the units do not cover the files in path order")

        let reference = try Jobs.runCommand(["sh", "-c", "find '\(root.path)' -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum"], timeout: 60)
        for launch in [Launch.local(2), .mpirun(2)] {
            let ours = try swiftpar(["hash", root.path], launch)
            #expect(ours.status == 0 && ours.output == reference.output, "\(launch):\n\(ours.report.prefix(3000))")
        }
    }

    @Test("Operands given twice or inside one another, and a tree 100 levels deep, print what sha256sum prints sorted")
    func hashOverlapsAndDepth() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("swiftpar-overlap-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let inner = root.appendingPathComponent("d/x")
        try FileManager.default.createDirectory(at: inner, withIntermediateDirectories: true)
        for name in ["a", "b", "g"] { try Data(name.utf8).write(to: inner.appendingPathComponent(name)) }
        try Data("z".utf8).write(to: root.appendingPathComponent("d/z"))
        var deep = root.appendingPathComponent("deep")
        for level in 0..<100 { deep = deep.appendingPathComponent("l\(level)") }
        try FileManager.default.createDirectory(at: deep, withIntermediateDirectories: true)
        try Data("bottom".utf8).write(to: deep.appendingPathComponent("f"))
        let d = root.appendingPathComponent("d").path, g = inner.appendingPathComponent("g").path
        let deepRoot = root.appendingPathComponent("deep").path
        let reference = try Jobs.runCommand(["sh", "-c", "{ find '\(d)' -type f; echo '\(g)'; find '\(d)' '\(deepRoot)' -type f; } | LC_ALL=C sort | xargs sha256sum"])
        for launch in [Launch.local(2), .mpirun(2)] {
            let ours = try swiftpar(["hash", d, g, d, deepRoot], launch)
            #expect(ours.status == 0 && ours.output == reference.output, "\(launch):\n\(ours.report.prefix(3000))")
        }
    }

    @Test("The operand - hashes standard input as sha256sum does, its line first, on every backend")
    func hashStandardInput() throws {
        let root = try makeTree()
        defer { try? FileManager.default.removeItem(at: root) }
        let input = "printf 'standard\\ninput\\n' | "
        let reference = try Jobs.runShell(input + "{ sha256sum -; find '\(root.path)/d/e' -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum; }")
        #expect(reference.status == 0 && reference.output.hasPrefix("00604ef809f82743b17ca469093e7200f770a1b72d5153ca94adbf5fbed68276  -\n"), "\(reference.report)")
        for launch in [Launch.serial, .local(2), .mpirun(2)] {
            let ours = try Jobs.runShell(input + Jobs.shellCommand("swiftpar", ["hash", "-", root.path + "/d/e"], launch: launch), timeout: 60)
            #expect(ours.status == 0 && ours.output == reference.output, "\(launch):\n\(ours.report.prefix(3000))")
        }
        // Alone, twice (the second reads nothing, as sha256sum's does), and as JSON, slashes unescaped.
        let twice = try Jobs.runShell(input + Jobs.shellCommand("swiftpar", ["hash", "-", "-"], launch: .local(2)))
        let twiceReference = try Jobs.runShell(input + "sha256sum - -")
        #expect(twice.status == 0 && twice.output == twiceReference.output && twice.output.split(separator: "\n").count == 2, "\(twice.report)")
        let json = try Jobs.runShell(input + Jobs.shellCommand("swiftpar", ["hash", "--json", "-", root.path + "/a.txt"], launch: .local(2)))
        #expect(json.status == 0 && json.output.contains("\"path\" : \"-\"") && json.output.contains("00604ef809f82743b17ca469093e7200f770a1b72d5153ca94adbf5fbed68276"),
                "\(json.report)")
        #expect(json.output.contains(root.path + "/a.txt") && !json.output.contains("\\/"), "paths in JSON keep their slashes as they are:\n\(json.report)")
        let closed = try Jobs.runShell(Jobs.shellCommand("swiftpar", ["hash", "-"], launch: .local(2)) + " <&-")
        #expect(closed.status == 1 && closed.errors.contains("swiftpar: -: Bad file descriptor"), "\(closed.report)")
        // Under mpirun the input is Open MPI's copy, which ends alike when mpirun cannot read its
        // own or is interrupted: both are errors in the local backend's words, never a digest
        // of what came before (an empty input's digest, exit 0, for a directory).
        for launch in [Launch.local(2), .mpirun(2)] {
            let directory = try Jobs.runShell(Jobs.shellCommand("swiftpar", ["hash", "-"], launch: launch) + " < /tmp", timeout: 60)
            #expect(directory.status == 1 && directory.output.isEmpty && directory.errors.contains("swiftpar: -: Is a directory"), "\(launch):\n\(directory.report)")
        }
        // (The test runner's children inherit SIGTERM blocked, so mpirun gets it at its default.)
        let withTermAtDefault = "perl -MPOSIX -e 'sigprocmask(SIG_SETMASK, POSIX::SigSet->new); $SIG{TERM} = \"DEFAULT\"; exec @ARGV or die' "
        let interrupted = try Jobs.runShell(
            "(head -c 3000000 /dev/zero; sleep 20) | " + withTermAtDefault + "timeout -s TERM 3 " + Jobs.shellCommand("swiftpar", ["hash", "-"], launch: .mpirun(2)),
            timeout: 60)
        #expect(interrupted.status != 0 && !interrupted.output.contains("  -"), "an interrupted input's digest was printed:\n\(interrupted.report)")
    }

    @Test("Missing, unreadable and special paths and symlink loops: an error line each, the rest hashed, exit 1")
    func hashBadInput() throws {
        let root = try makeTree()
        defer { try? FileManager.default.removeItem(at: root) }
        let fm = FileManager.default
        try fm.createSymbolicLink(atPath: root.appendingPathComponent("link").path, withDestinationPath: "a.txt")
        try fm.createDirectory(at: root.appendingPathComponent("loop"), withIntermediateDirectories: true)
        try fm.createSymbolicLink(atPath: root.appendingPathComponent("loop/up").path, withDestinationPath: "..")
        try fm.createSymbolicLink(atPath: root.appendingPathComponent("self").path, withDestinationPath: "self")
        _ = try Jobs.runCommand(["mkfifo", root.appendingPathComponent("pipe").path])
        let unreadable = root.appendingPathComponent("secret")
        try Data("s".utf8).write(to: unreadable)
        try fm.setAttributes([.posixPermissions: 0], ofItemAtPath: unreadable.path)
        let missing = root.appendingPathComponent("missing").path
        let plain = try swiftpar(["hash", root.path, missing], .local(2))
        #expect(plain.status == 1, "\(plain.report.prefix(3000))")
        #expect(plain.errors.contains("swiftpar: \(missing): No such file or directory"), "\(plain.errors)")
        #expect(plain.errors.contains("pipe: not a regular file (a named pipe)"), "\(plain.errors)")
        #expect(plain.errors.contains("skipped symbolic link \(root.path)/link"), "\(plain.errors)")
        if getuid() != 0 { #expect(plain.errors.contains("secret: Permission denied"), "\(plain.errors)") }
        #expect(plain.output.contains("\(root.path)/a.txt") && plain.output.contains("\(root.path)/d/big.bin"), "other files not hashed")
        #expect(!plain.output.contains("\(root.path)/link"), "a symlink was followed without --follow-symlinks")
        let follow = try swiftpar(["hash", "--follow-symlinks", root.path], .local(2))
        #expect(follow.status == 1, "\(follow.report.prefix(3000))")
        #expect(follow.output.contains("5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03  \(root.path)/link"), "link not hashed")
        #expect(follow.errors.contains("loop/up: symbolic link loop"), "\(follow.errors)")
        #expect(follow.errors.contains("self: symbolic link loop"), "\(follow.errors)")
        // No operand: standard input (here empty, not a terminal), as sha256sum reads it.
        let none = try Jobs.runShell(Jobs.shellCommand("swiftpar", ["hash"], launch: .local(2)) + " < /dev/null")
        #expect(none.status == 0 && none.output == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  -\n", "\(none.report)")
    }

    @Test("A file named like the stand-in for an argument that is not UTF-8 is hashed as itself, beside that argument")
    func argumentSpelledLikeAStandIn() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("swiftpar-names-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        // `hash A B`: B (not UTF-8) is the third argument; A is spelled as B's stand-in was.
        let script = """
            cd '\(folder.path)'
            a="$(printf '\\357\\277\\277argument 3\\357\\277\\277')"; b="$(printf 'y\\377')"
            printf 'X\\n' > "$a"; printf 'Y\\n' > "$b"
            '\(Jobs.product("swiftpar"))' hash "$a" "$b" > ours; echo "status $?"
            sha256sum "$b" "$a" > theirs
            cmp ours theirs && echo same
            """
        let result = try Jobs.runShell(script, timeout: 60)
        // Before: the file named like the stand-in was taken for the other argument, whose line
        // was printed twice.
        #expect(result.output == "status 0\nsame\n", "\(result.report)")
    }

    /// Whether a FUSE file system can be mounted here (root, /dev/fuse, python3).
    static var canMountFUSE: Bool {
        getuid() == 0 && FileManager.default.fileExists(atPath: "/dev/fuse") && FileManager.default.isExecutableFile(atPath: "/usr/bin/python3")
    }

    @Test("Failing system calls on a real file system: a listing cut short, a read error, EAGAIN on a file; each reported, the rest hashed, exit 1",
          .enabled(if: canMountFUSE), arguments: [Launch.serial, .local(2), .mpirun(2)])
    func hashFailingFileSystem(_ launch: Launch) throws {
        let mountpoint = FileManager.default.temporaryDirectory.appendingPathComponent("swiftpar-faulty-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: mountpoint, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: mountpoint) }
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/faulty_fs.py")
        server.arguments = [fixture.path, mountpoint.path]
        try server.run()
        defer {
            _ = try? Jobs.runCommand(["umount", "-l", mountpoint.path], timeout: 10)
            // The server ends when the file system is unmounted; one that does not is stopped
            // (it would hold the test run) and reported.
            let stop = Date().addingTimeInterval(10)
            while server.isRunning && Date() < stop { Thread.sleep(forTimeInterval: 0.05) }
            if server.isRunning {
                Issue.record("the FUSE server (pid \(server.processIdentifier)) outlived the unmount by 10 s; killed")
                kill(server.processIdentifier, SIGKILL)
                server.waitUntilExit()
            }
        }
        let deadline = Date().addingTimeInterval(10)
        while !FileManager.default.fileExists(atPath: mountpoint.appendingPathComponent("ok").path) && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.05)
        }
        let root = mountpoint.path
        let result = try swiftpar(["hash", root], launch, timeout: 60)
        #expect(result.status == 1, "\(result.report.prefix(3000))")
        // The 50 files listed before the listing failed, and the file that reads well.
        let x = "73cb3858a687a8494ca3323053016282f3dad39d42cf62ca4e79dda2aac7d9ac"   // sha256 of "x\n"
        let expected = (0..<50).map { String(format: "\(x)  \(root)/listing/f%03d", $0) }
            + ["5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03  \(root)/ok"]
        #expect(result.output.split(separator: "\n").map(String.init) == expected, "\(result.report.prefix(3000))")
        // Before: the listing's end was taken for the directory's end (no word, exit 0), and
        // EAGAIN on a file was polled for in a spin that never ended.
        #expect(result.errors.contains("swiftpar: \(root)/listing: Input/output error"), "\(result.errors)")
        #expect(result.errors.contains("swiftpar: \(root)/broken: Input/output error"), "\(result.errors)")
        #expect(result.errors.contains("swiftpar: \(root)/again: Resource temporarily unavailable"), "\(result.errors)")
    }

    @Test("--output naming a file also given to hash, or standard input, is refused before it is emptied; met inside a directory it is skipped")
    func outputAmongOperands() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("swiftpar-output-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder.appendingPathComponent("S"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let swiftpar = "'\(Jobs.product("swiftpar"))'"
        let result = try Jobs.runShell("""
            cd '\(folder.path)'
            echo old > S/SUMS; echo data > f; ln -s ../f S/link
            \(swiftpar) -n 2 hash S/SUMS -o ./S/SUMS 2> e1; echo "operand $? $(cat S/SUMS)"
            \(swiftpar) hash - -o f < f 2> e2; echo "stdin $? $(cat f)"
            \(swiftpar) hash S/link -o f 2> e3; echo "link $? $(cat f)"
            \(swiftpar) -n 2 hash S -o S/SUMS 2> e4; echo "inside $?"; cat e4
            \(swiftpar) -n 2 hash new -o ./new 2> e5; echo "not there yet $? $(test -e new && echo made || echo absent)"
            \(Jobs.shellCommand("swiftpar", ["hash", "new2", "-o", "new2"], launch: .mpirun(2))) > /dev/null 2> e6; echo "mpirun $?"
            """, timeout: 60)
        let read = { (name: String) in (try? String(contentsOf: folder.appendingPathComponent(name), encoding: .utf8)) ?? "" }
        // Before, each emptied the file and printed the digest of nothing, or nothing, with status 0.
        #expect(result.output.contains("operand 64 old\nstdin 64 data\nlink 64 data\n"), "\(result.report)")
        #expect(read("e1").contains("'S/SUMS' is the output file (--output ./S/SUMS): writing the output would empty it before it is hashed"), "\(read("e1"))")
        #expect(read("e2").contains("standard input is the output file (--output f)"), "\(read("e2"))")
        #expect(read("e3").contains("'S/link' is the output file"), "\(read("e3"))")
        #expect(result.output.contains("inside 0\nswiftpar: skipped S/SUMS: it is the file the output is written to\n"), "\(result.report)")
        // A file not there yet is compared by folder and name: every rank of a launcher's job
        // refuses it alike, though rank 0 may have made it before another checks.
        #expect(result.output.contains("not there yet 64 absent\nmpirun 64\n") && read("e5").contains("'new' is the output file"), "\(result.report)\n\(read("e5"))")
        #expect(read("e6").contains("'new2' is the output file"), "\(read("e6"))")
    }

    @Test("A path that became a named pipe after the walk is reported at once, never waited on")
    func digestOfPipeDoesNotBlock() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("swiftpar-fifo-\(UUID().uuidString)").path
        #expect(mkfifo(path, 0o600) == 0)
        defer { unlink(path) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 8)
        defer { buffer.deallocate() }
        let start = Date()
        #expect(throws: FileHashing.Problem.self) { _ = try FileHashing.digest(of: PathBytes(path), buffer: buffer) }
        #expect(Date().timeIntervalSince(start) < 1)
        do {
            _ = try FileHashing.digest(of: PathBytes(path), buffer: buffer)
        } catch let problem as FileHashing.Problem {
            #expect(problem.reason == "not a regular file (a named pipe)")
        }
    }

    @Test("A 2 GiB file is hashed in small pieces: the digest matches and memory stays small")
    func hashLargeFileInPieces() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("swiftpar-sparse-\(UUID().uuidString)")
        _ = try Jobs.runCommand(["truncate", "-s", "2G", file.path])
        defer { try? FileManager.default.removeItem(at: file) }
        try Data("tail".utf8).write(to: URL(fileURLWithPath: file.path + ".tail"))
        let reference = try Jobs.runCommand(["sha256sum", file.path], timeout: 120)
        let ours = try Jobs.runCommand(["/usr/bin/time", "-f", "maxrss=%M", Jobs.product("swiftpar"), "--backend", "serial", "hash", file.path], timeout: 120)
        try? FileManager.default.removeItem(atPath: file.path + ".tail")
        #expect(ours.output == reference.output, "\(ours.report)")
        let kilobytes = ours.errors.split(separator: "=").last.flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? Int.max
        #expect(kilobytes < 100_000, "hashing 2 GiB used \(kilobytes) KiB")
    }

    @Test("swiftpar bench prints the serial, threads and processes table")
    func benchTable() throws {
        let result = try swiftpar(["bench", "--tasks", "4", "--limit", "20000"], .local(2))
        #expect(result.status == 0, "\(result.report)")
        for row in ["serial (one process, one thread)", "4 threads in one process", "2 processes, local backend (Pool.map)"] {
            #expect(result.output.contains(row), "missing \(row):\n\(result.report)")
        }
        let mpi = try swiftpar(["bench", "--tasks", "4", "--limit", "20000", "--json"], .mpirun(2))
        #expect(mpi.status == 0 && mpi.output.contains("2 MPI ranks (Pool.map)"), "\(mpi.report)")
    }
}

extension FileHashing.Unit {
    /// What a unit holds, for failure messages.
    var debugKind: String {
        switch self {
        case .files(let files): "\(files.count) files from \(files[0].path)"
        case .tree(let path, _): "tree \(path)"
        case .problem(let problem): "problem \(problem.path)"
        case .skippedLink(let path): "link \(path)"
        }
    }
}
