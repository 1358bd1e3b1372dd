// swift-tools-version:6.0
// RecDB — an embedded, storage-centric recommendation database.
// Dependencies run one way: rdbctl → RecDB → {Index, Learn}; Index and Learn never import each other.
import PackageDescription

let package = Package(
    name: "RecDB",
    products: [
        .library(name: "RecDB", targets: ["RecDB"]),
        // The HTTP server, for an app that serves its database itself (as `rdbctl serve` does).
        .library(name: "RecDBServer", targets: ["RecDBServer"]),
        .executable(name: "rdbctl", targets: ["rdbctl"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // The HTTP server (`rdbctl serve`) only: the library itself has no network dependency.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.0"),
        // Hummingbird's own networking layer; named only so `rdbctl serve` can run Swift concurrency on its event loops.
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        // Hummingbird's HTTP part types (NIOHTTPTypes), named only for the server's recommendation fast path.
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.34.1"),
        // Hummingbird's service runner, named only so the server can stop gracefully when its task is cancelled.
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.0.0"),
    ],
    targets: [
        // MARK: - C bindings (system libraries and the Faiss shim)
        // LMDB 0.9.31 from source with RecDB's page checks (patches/); scripts/fetch-lmdb.sh puts it in vendor/.
        .target(name: "CLMDB", path: "Sources/CLMDB", exclude: ["patches"]),
        .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS", providers: [.apt(["libopenblas-dev"])]),
        .target(
            name: "CFaiss",
            path: "Sources/CFaiss",
            // compat/ supplies the <omp.h> declarations Faiss's headers need (see compat/omp.h).
            cxxSettings: [.headerSearchPath("compat")],
            linkerSettings: [
                // Order matters: libfaiss.a is static and needs gomp, lapack and blas after it.
                .linkedLibrary("faiss"), .linkedLibrary("gomp"), .linkedLibrary("lapack"),
                .linkedLibrary("blas"), .linkedLibrary("stdc++"),
            ]
        ),

        // MARK: - Libraries
        .target(name: "Index", dependencies: ["CFaiss"], path: "Sources/Index"),
        // Training kernels with AVX-512/AVX2 paths chosen at run time, bit-identical to their portable path;
        // also the cache-line prefetch hint (cprefetch.h) that Learn and the importer use.
        .target(name: "CKernels", path: "Sources/CKernels"),
        .target(name: "Learn", dependencies: ["COpenBLAS", "CKernels"], path: "Sources/Learn"),
        // CRC-32C of stored values (hardware instruction when the CPU has it).
        .target(name: "CChecksum", path: "Sources/CChecksum"),
        .target(name: "RecDB", dependencies: ["CLMDB", "CChecksum", "CKernels", "Index", "Learn"], path: "Sources/RecDB"),

        // MARK: - HTTP server (a thin layer over the same Database, in the same process)
        .target(
            name: "RecDBServer",
            dependencies: ["RecDB", .product(name: "Hummingbird", package: "hummingbird"),
                           .product(name: "HummingbirdCore", package: "hummingbird"),
                           .product(name: "NIOPosix", package: "swift-nio"),
                           .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                           .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")],
            path: "Sources/RecDBServer"
        ),

        // MARK: - Command-line tool
        .executableTarget(
            name: "rdbctl",
            dependencies: ["RecDB", "RecDBServer", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Sources/rdbctl"
        ),

        // MARK: - Benchmarks (release executables)
        .executableTarget(name: "learn-bench", dependencies: ["Learn", "COpenBLAS"], path: "Benchmarks/LearnBench",
                         exclude: ["compare_speed.sh", "RESULTS.md"]),
        .executableTarget(name: "serve-bench", dependencies: ["RecDB", "Index"], path: "Benchmarks/ServeBench", exclude: ["torch_serve.py"]),
        .executableTarget(name: "train-scale-bench", dependencies: ["Learn"], path: "Benchmarks/TrainScaleBench"),
        .executableTarget(name: "distill-bench", dependencies: ["RecDB"], path: "Benchmarks/DistillBench"),
        .executableTarget(name: "scale-bench", dependencies: ["RecDB"], path: "Benchmarks/ScaleBench"),
        .executableTarget(name: "EncoderBench", dependencies: ["Learn"], path: "Benchmarks/EncoderBench", exclude: ["st_peer.py"]),
        .executableTarget(
            name: "IndexBench", dependencies: ["Index", "IndexBenchDirect"], path: "Benchmarks/IndexBench",
            exclude: ["faiss_python_peer.py", "hub_analysis.py", "README.md"]
        ),
        // The C++ peer that drives the same Faiss index without the wrapper, for the overhead comparison.
        .target(
            name: "IndexBenchDirect",
            path: "Benchmarks/IndexBenchDirect",
            // compat/ for <omp.h>; ../CFaiss for FlatDistance.h, so the peer times the very kernels the shim uses.
            cxxSettings: [.headerSearchPath("../../Sources/CFaiss/compat"), .headerSearchPath("../../Sources/CFaiss")],
            linkerSettings: [
                .linkedLibrary("faiss"), .linkedLibrary("gomp"), .linkedLibrary("lapack"),
                .linkedLibrary("blas"), .linkedLibrary("stdc++"),
            ]
        ),

        // MARK: - Tests
        // Fixtures shared by the test targets (a tiny sentence encoder); nothing outside Tests depends on it.
        .target(name: "TestSupport", dependencies: ["Learn"], path: "Tests/TestSupport"),
        // CLMDB: a test writes what a format-3 build left (no user_events_delta), which RecDB itself never does.
        .testTarget(name: "RecDBTests", dependencies: ["RecDB", "TestSupport", "CLMDB"], path: "Tests/RecDBTests"),
        // The server is tested over real loopback HTTP (URLSession), so no TLS stack is built for tests. NIO's
        // HTTP/1.1 decoder on an embedded channel is the reference the wire path's parser is checked against.
        .testTarget(name: "RecDBServerTests", dependencies: ["RecDBServer", "TestSupport",
                                                            .product(name: "NIOHTTP1", package: "swift-nio"),
                                                            .product(name: "NIOEmbedded", package: "swift-nio")],
                    path: "Tests/RecDBServerTests"),
        .testTarget(name: "IndexTests", dependencies: ["Index"], path: "Tests/IndexTests"),
        .testTarget(name: "LearnTests", dependencies: ["Learn", "CKernels"], path: "Tests/LearnTests"),
    ],
    // No unsafeFlags anywhere: apps must be able to depend on RecDB by version.
    // Swift 6 language mode (complete concurrency checking) for every target, benchmarks and tests included.
    swiftLanguageModes: [.v6],
    cxxLanguageStandard: .cxx17
)
