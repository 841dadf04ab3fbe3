// swift-tools-version:6.0
import PackageDescription

// Targets are split by dependency weight and arrows point down only:
//   cairn → Snapshot → Repository → Storage;  cairn → Kube
//   Controller → Protection → Kube, Snapshot;  S3Storage → Storage
// Test support: StorageTesting (conformance suite, faults), KubeTesting (the local cluster fixture).
// `Repository` knows nothing of files on disk as a user sees them; `Snapshot` knows
// nothing of packs; `Storage` knows only named blobs. See docs/architecture.md.
let package = Package(
    name: "cairn",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "cairn", targets: ["cairn"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
    ],
    targets: [
        .systemLibrary(
            name: "CZstd",
            pkgConfig: "libzstd",
            providers: [.apt(["libzstd-dev"])]
        ),
        .target(
            name: "Storage",
            dependencies: []
        ),
        // The S3 backend: SigV4, multipart, retries and adaptive concurrency over async-http-client.
        .target(
            name: "S3Storage",
            dependencies: [
                "Storage",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "Repository",
            dependencies: [
                "Storage",
                "CZstd",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "Snapshot",
            dependencies: [
                "Repository",
                "Storage",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The Kubernetes client: kubeconfig, discovery, dynamic objects, watch, exec. Written here (no
        // Swift client on the package list covers it); HTTP through async-http-client, exec's WebSocket
        // through NIOWebSocket.
        .target(
            name: "Kube",
            dependencies: [
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOHTTPCompression", package: "swift-nio-extras"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // Application protection: capture, restore points, volume access (host, mover pods), backup and
        // restore of whole applications over Kube's client and the repository.
        .target(
            name: "Protection",
            dependencies: ["Kube", "Snapshot", "Repository", .product(name: "Crypto", package: "swift-crypto")]
        ),
        // The in-cluster controller: reconcilers for Cairn's CRDs, work queue, schedules, leader election,
        // metrics and probes. Wires Protection to the cluster; knows nothing of the CLI.
        .target(
            name: "Controller",
            dependencies: [
                "Kube", "Protection", "Snapshot", "Repository", "Storage", "S3Storage",
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ]
        ),
        .executableTarget(
            name: "cairn",
            dependencies: [
                "Controller",
                "Kube",
                "Protection",
                "S3Storage",
                "Snapshot",
                "Repository",
                "Storage",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Bench only: the Cairn side of bench/kube/run.
        .executableTarget(
            name: "kube-bench",
            dependencies: ["Kube", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .target(
            name: "StorageTesting",
            dependencies: ["Storage", .product(name: "Crypto", package: "swift-crypto")],
            path: "Sources/StorageTesting"
        ),
        .target(
            name: "KubeTesting",
            dependencies: ["StorageTesting"],
            path: "Sources/KubeTesting"
        ),
        .testTarget(name: "ClusterTests", dependencies: ["KubeTesting"]),
        .testTarget(name: "ProtectionTests", dependencies: ["Protection", "Kube", "KubeTesting", "Snapshot", "Repository",
                                                            "Storage", "StorageTesting"]),
        .testTarget(name: "ApplicationTests", dependencies: ["Protection", "Kube", "KubeTesting", "Repository", "Storage",
                                                             "StorageTesting"]),
        .testTarget(name: "ControllerTests", dependencies: [
            "Controller", "Protection", "Kube", "KubeTesting", "Snapshot", "Repository", "Storage", "StorageTesting",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "KubeTests", dependencies: ["Kube", "KubeTesting", "StorageTesting"]),
        .testTarget(name: "StorageTests", dependencies: ["Storage", "StorageTesting"]),
        .testTarget(name: "S3Tests", dependencies: ["S3Storage", "Storage", "StorageTesting", "Repository", "Snapshot"]),
        .testTarget(name: "RepositoryTests", dependencies: ["Repository", "Storage", "StorageTesting"]),
        .testTarget(name: "SnapshotTests", dependencies: ["Snapshot", "Repository", "Storage", "StorageTesting"]),
        .testTarget(name: "CLITests", dependencies: ["Snapshot", "Repository", "Storage", "StorageTesting"]),
    ],
    swiftLanguageModes: [.v6]
)
