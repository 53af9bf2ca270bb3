import Foundation
import Testing

/// The documentation's code compiles as a user would compile it: every Swift block of the
/// README and of the DocC catalog, in a new package that depends on swiftpar by path, in Swift 6
/// language mode; and a program that hands a `Pool` and a `Communicator` to other tasks
/// compiles with no diagnostic at all.
@Suite("Documentation code compiles in a user's package", .serialized)
struct DocumentationTests {
    /// The package's root: three levels above this file.
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The ```swift blocks of a Markdown file.
    static func swiftBlocks(in file: URL) throws -> [String] {
        var blocks: [String] = []
        var current: [String]?
        for line in try String(contentsOf: file, encoding: .utf8).components(separatedBy: "\n") {
            if current == nil, line.hasPrefix("```swift") {
                current = []
            } else if current != nil, line.hasPrefix("```") {
                blocks.append(current!.joined(separator: "\n"))
                current = nil
            } else if current != nil {
                current!.append(line)
            }
        }
        return blocks
    }

    /// Names the README's pool examples use without defining them.
    static let prelude = """
        import SwiftPar
        func wordCounts(of path: String) throws -> [String: Int] { [path: 1] }
        func isPrime(_ n: Int) -> Bool { n > 1 && (2..<max(n, 2)).allSatisfy { n % $0 != 0 } }
        func parse(_ line: String) -> Int { line.count }
        func store(_ index: Int, _ record: Int) {}
        func load(_ path: String) throws -> Int { path.count }
        func work(_ item: Int) -> Int { item }
        let lines = ["a", "bb"]
        let paths = ["a.txt"]
        let items = [1, 2, 3]
        """

    /// Code a Swift 6 user writes that moves swiftpar's values between tasks.
    static let sendableProgram = """
        import SwiftPar

        @main struct SendableUse {
            static func main() async {
                await SwiftPar.run { world in
                    let pool = Pool(world)
                    let options = MapOptions(chunkSize: .fixed(2), progress: { done, total in _ = (done, total) })
                    let squares = try await Task.detached { try pool.map(Array(0..<10), options: options) { $0 * $0 } }.value
                    let sum = try await Task { try world.allreduce(world.rank, .sum) }.value
                    let next = (world.rank + 1) % world.size, previous = (world.rank + world.size - 1) % world.size
                    let request = try world.startSend(world.rank, to: next)
                    let received = try await Task { try world.receive(Int.self, from: .rank(previous)) }.value
                    try await Task.detached { try request.wait() }.value
                    if world.rank == 0 { print(squares ?? [], sum, received) }
                }
            }
        }
        """

    @Test("Every Swift block of the README and the DocC catalog compiles; Sendable use has no diagnostics")
    func documentationCompiles() throws {
        let package = FileManager.default.temporaryDirectory.appendingPathComponent("swiftpar-doc-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: package) }
        var files = [Self.root.appendingPathComponent("README.md")]
        let catalog = Self.root.appendingPathComponent("Sources/SwiftPar/SwiftPar.docc")
        for name in try FileManager.default.contentsOfDirectory(atPath: catalog.path).sorted() where name.hasSuffix(".md") {
            files.append(catalog.appendingPathComponent(name))
        }
        var functions: [String] = []
        var mains: [String] = []
        for file in files {
            for (index, block) in try Self.swiftBlocks(in: file).enumerated() {
                if block.contains("import PackageDescription") { continue }
                let body = block.components(separatedBy: "\n").filter { !$0.hasPrefix("import ") }.joined(separator: "\n")
                if block.contains("@main") {
                    mains.append("import SwiftPar\n// \(file.lastPathComponent), block \(index + 1)\n" + body)
                } else {
                    let name = "\(file.deletingPathExtension().lastPathComponent)_\(index + 1)".replacingOccurrences(of: "-", with: "_")
                    // A block that awaits goes in an async function; the others in a plain one, where
                    // SwiftPar.run is the synchronous overload, as at the top of a main.swift.
                    let effects = body.contains("await ") ? "async throws" : "throws"
                    functions.append("// \(file.lastPathComponent), block \(index + 1)\nfunc block_\(name)() \(effects) {\n\(body)\n}")
                }
            }
        }
        #expect(functions.count >= 4 && mains.count >= 2, "found \(functions.count) blocks and \(mains.count) @main programs")
        var targets = [#".target(name: "Blocks", dependencies: [.product(name: "SwiftPar", package: "swiftpar")])"#,
                       #".executableTarget(name: "SendableUse", dependencies: [.product(name: "SwiftPar", package: "swiftpar")], swiftSettings: [.unsafeFlags(["-warnings-as-errors"])])"#]
        func write(_ text: String, _ path: String) throws {
            let url = package.appendingPathComponent(path)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try text.write(to: url, atomically: true, encoding: .utf8)
        }
        try write(Self.prelude + "\n\n" + functions.joined(separator: "\n\n") + "\n", "Sources/Blocks/Blocks.swift")
        try write(Self.sendableProgram + "\n", "Sources/SendableUse/main.swift")
        for (index, program) in mains.enumerated() {
            targets.append(#".executableTarget(name: "Main\#(index)", dependencies: [.product(name: "SwiftPar", package: "swiftpar")])"#)
            try write(program + "\n", "Sources/Main\(index)/App.swift")
        }
        try write("""
            // swift-tools-version:6.0
            import PackageDescription
            let package = Package(
                name: "docs",
                dependencies: [.package(name: "swiftpar", path: \(String(reflecting: Self.root.path)))],
                targets: [\(targets.joined(separator: ",\n        "))],
                swiftLanguageModes: [.v6]
            )
            """, "Package.swift")
        let build = try Jobs.runCommand(["swift", "build", "--package-path", package.path], timeout: 900)
        #expect(build.status == 0, "the documentation's code does not compile:\n\(build.report)")
        let sendable = build.output.components(separatedBy: "\n").filter { $0.contains("SendableUse") && ($0.contains("warning") || $0.contains("error")) }
        #expect(sendable.isEmpty, "diagnostics in the Sendable program:\n\(sendable.joined(separator: "\n"))")
        guard build.status == 0 else { return }
        // The Sendable program runs, on 2 spawned ranks (an async main has threads).
        let binary = package.appendingPathComponent(".build/debug/SendableUse").path
        let run = try Jobs.runCommand([binary], environment: ["SWIFTPAR_WORKERS": "2"], timeout: 60)
        #expect(run.status == 0 && run.output == "[0, 1, 4, 9, 16, 25, 36, 49, 64, 81] 1 1\n", "\(run.report)")
    }
}
