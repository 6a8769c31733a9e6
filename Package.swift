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
        .library(name: "DemucsKit", targets: ["DemucsKit"]),
        .library(name: "StemifyCore", targets: ["StemifyCore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        // OpenBLAS from Debian (`libopenblas-dev`): sgemm for every convolution, linear and attention.
        .systemLibrary(
            name: "CBLAS",
            path: "Sources/CBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),
        // malloc tuning (mallopt) not exported by Swift's Glibc module.
        .target(name: "CSystem"),
        .target(name: "DemucsKit", dependencies: ["CBLAS", "CSystem"], swiftSettings: engine),
        .target(
            name: "StemifyCore",
            dependencies: ["DemucsKit", .product(name: "Yams", package: "Yams")],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "stemify",
            dependencies: ["StemifyCore", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strict
        ),
        // Fixture readers and comparison helpers shared by the test targets.
        .target(name: "StemifyTestSupport", dependencies: ["DemucsKit"], swiftSettings: strict),
        .testTarget(name: "DemucsKitTests", dependencies: ["DemucsKit", "StemifyTestSupport"], swiftSettings: strict),
        .testTarget(name: "StemifyCoreTests", dependencies: ["StemifyCore", "DemucsKit", "StemifyTestSupport"], swiftSettings: strict),
    ],
    swiftLanguageModes: [.v6]
)
