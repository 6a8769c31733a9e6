// swift-tools-version:6.0
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

// The engine's SIMD kernels want AVX2 + FMA (x86-64-v3, every x86 server since 2013); without
// them SIMD8 lowers to SSE pairs and FMA to library calls.
#if arch(x86_64)
let engine: [SwiftSetting] = strict + [.unsafeFlags(["-target-cpu", "haswell"])]
#else
let engine: [SwiftSetting] = strict
#endif

let package = Package(
    name: "Stemify",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "stemify", targets: ["stemify"]),
        .library(name: "StemifyEngine", targets: ["StemifyEngine"]),
        .library(name: "StemifyCore", targets: ["StemifyCore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
    ],
    targets: [
        // glibc allocator settings applied when the binary loads (CStemifySystem.c), and OpenBLAS
        // (Debian `libopenblas0`) loaded at run time with the kernels the CPU runs (blas.c).
        .target(name: "CStemifySystem"),
        // Elementwise vector kernels once per x86 instruction set, picked at run time (Ops/Kernels.swift).
        .target(name: "CStemifyKernels"),
        .target(
            name: "StemifyEngine",
            dependencies: ["CStemifySystem", "CStemifyKernels", .product(name: "Yams", package: "Yams")],
            swiftSettings: engine
        ),
        .target(
            name: "StemifyCore",
            dependencies: [
                "StemifyEngine",
                .product(name: "Yams", package: "Yams"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "StemifyServer",
            dependencies: [
                "StemifyCore",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "_NIOFileSystem", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            resources: [.copy("Public")],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "stemify",
            dependencies: [
                "StemifyEngine", "StemifyCore", "StemifyServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // Times the engine's operations at the shapes the models run (docs/performance.md).
        .executableTarget(name: "stemify-bench", dependencies: ["StemifyEngine"], swiftSettings: strict),
        // Fixture readers and comparison helpers shared by the test targets.
        .target(name: "StemifyTestSupport", dependencies: ["StemifyEngine"], swiftSettings: strict),
        .testTarget(name: "StemifyEngineTests", dependencies: ["StemifyEngine", "StemifyTestSupport"], swiftSettings: strict),
        .testTarget(
            name: "StemifyCoreTests",
            dependencies: [
                "StemifyCore", "StemifyEngine", "StemifyTestSupport",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "StemifyServerTests",
            dependencies: [
                "StemifyServer", "StemifyCore", "StemifyEngine", "StemifyTestSupport",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
    ],
    swiftLanguageModes: [.v6]
)
