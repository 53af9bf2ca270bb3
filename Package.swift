// swift-tools-version:6.0
// swiftpar: true parallelism for Swift, from one multicore machine to a cluster.
// Licensed under the Apache License, Version 2.0 (see LICENSE).
import PackageDescription

let package = Package(
    name: "swiftpar",
    // Linux only: the local backend is built on Linux calls (fork, futex, signalfd, pidfd).
    products: [
        .library(name: "SwiftPar", targets: ["SwiftPar"]),
        .library(name: "SwiftParWorkloads", targets: ["SwiftParWorkloads"]),
        .executable(name: "swiftpar", targets: ["swiftpar"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-atomics", from: "1.2.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
        // `swift package generate-documentation --target SwiftPar` (the DocC catalog).
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.4.0"),
    ],
    targets: [
        // Open MPI's calls and handles, loaded at run time (dlopen): nothing of Open MPI is
        // needed to build, and a program runs local jobs where Open MPI is not installed.
        .target(name: "CSwiftParMPI", linkerSettings: [.linkedLibrary("dl")]),
        // The few Linux calls Swift cannot make by itself (prctl, futex, pidfd, memfd).
        .target(name: "CSwiftParLinux"),
        .target(
            name: "SwiftPar",
            dependencies: ["CSwiftParMPI", "CSwiftParLinux", .product(name: "Atomics", package: "swift-atomics")]
        ),
        // The workloads users run first: prime counting and file hashing, built on the pool.
        .target(
            name: "SwiftParWorkloads",
            dependencies: ["SwiftPar", "CSwiftParLinux", .product(name: "Crypto", package: "swift-crypto")]
        ),
        .executableTarget(
            name: "swiftpar",
            dependencies: [
                "SwiftPar",
                "CSwiftParLinux",
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
        // An async program, as users write one, run by the tests under every backend.
        .executableTarget(
            name: "swiftpar-async-checks",
            dependencies: ["SwiftPar"],
            path: "Tests/SwiftParAsyncChecks"
        ),
        .testTarget(
            name: "SwiftParTests",
            dependencies: ["SwiftPar", "SwiftParWorkloads", "swiftpar-checks", "swiftpar-async-checks", "swiftpar"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
