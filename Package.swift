// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "swiftpar",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "SwiftPar", targets: ["SwiftPar"]),
        .library(name: "SwiftParWorkloads", targets: ["SwiftParWorkloads"]),
        .executable(name: "swiftpar", targets: ["swiftpar"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-atomics", from: "1.2.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
    ],
    targets: [
        // The only C in the project: Open MPI's handle macros as functions Swift can call.
        .systemLibrary(
            name: "CMPI",
            pkgConfig: "ompi-c",
            providers: [.apt(["libopenmpi-dev"])]
        ),
        .target(
            name: "SwiftPar",
            dependencies: ["CMPI", .product(name: "Atomics", package: "swift-atomics")]
        ),
        // The workloads users run first: prime counting and file hashing, built on the pool.
        .target(
            name: "SwiftParWorkloads",
            dependencies: ["SwiftPar", .product(name: "Crypto", package: "swift-crypto")]
        ),
        .executableTarget(
            name: "swiftpar",
            dependencies: [
                "SwiftPar",
                "SwiftParWorkloads",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Scenarios the tests launch under mpirun (and the local backend): each rank checks
        // what it received and exits non-zero naming itself when anything is wrong.
        .executableTarget(
            name: "swiftpar-checks",
            dependencies: ["SwiftPar"],
            path: "Tests/SwiftParChecks"
        ),
        .testTarget(
            name: "SwiftParTests",
            dependencies: ["SwiftPar", "SwiftParWorkloads", "swiftpar-checks", "swiftpar"]
        ),
    ],
    swiftLanguageModes: [.v5]
)
