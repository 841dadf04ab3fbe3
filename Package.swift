// swift-tools-version:6.0
import PackageDescription

// Targets are split by dependency weight and arrows point down only:
//
//   cairn (executable: CLI, `cairn controller`, the storage backends a Profile may name)
//     ├─► Controller ─► Server (probes, /metrics, the HTTP endpoint) ─► Kube
//     │        └──────► Protection ─► Kube ─► KubeModel (JSON, objects, kinds, JSON patch: no HTTP)
//     │                     ├───────► ProtectionRules (capture rules, order, transforms, confinement) ─► KubeModel
//     │                     └───────► Snapshot ─► Repository ─► Storage ◄─ S3Storage
//     │                                                     (all of them ─► Concurrent)
//     └─► S3Storage, Snapshot, Protection
//
// `Repository` knows nothing of files on disk as a user sees them; `Snapshot` knows nothing of packs;
// `Storage` knows only named blobs; `Controller` does not link S3 (the executable chooses backends).
// Test support: TestSupport (child processes, waiting, files, loopback), StorageTesting (conformance
// suite, faults, moto), KubeTesting (the local cluster fixture). Test targets named Cluster* need the local
// cluster; the others run without it (`scripts/test --unit`). See docs/architecture.md.
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
        // Concurrency primitives: bounded fan-out (`Concurrent.forEach`, `.map`, `.ordered`: the one task group
        // that starts N and another as each finishes), AsyncSemaphore, Locked.
        .target(name: "Concurrent"),
        .target(
            name: "Storage",
            dependencies: ["Concurrent"]
        ),
        // The S3 backend: SigV4, multipart, retries and adaptive concurrency over async-http-client.
        .target(
            name: "S3Storage",
            dependencies: [
                "Storage", "Concurrent",
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
                "Storage", "Concurrent",
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
                "Storage", "Concurrent",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Kubernetes objects without a client: JSONValue and its parser, YAML, KubeObject, kinds, JSON
        // patch, API resources, user info, KubeError. Pure logic builds on this alone.
        .target(
            name: "KubeModel",
            dependencies: [.product(name: "Yams", package: "Yams")]
        ),
        // The Kubernetes client: kubeconfig, discovery, dynamic objects, watch, exec. Written here (no
        // Swift client on the package list covers it); HTTP through async-http-client, exec's WebSocket
        // through NIOWebSocket. Re-exports KubeModel.
        .target(
            name: "Kube",
            dependencies: [
                "KubeModel", "Concurrent",
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
        // The pure rules of application protection — capture rules, object cleaning, restore order,
        // transforms, confinement, ProtectionError — on KubeModel alone: no HTTP stack, no repository.
        .target(
            name: "ProtectionRules",
            dependencies: ["KubeModel"]
        ),
        // Application protection: capture, restore points, volume access (host, mover pods), backup and
        // restore of whole applications over Kube's client and the repository. Re-exports ProtectionRules.
        .target(
            name: "Protection",
            dependencies: ["ProtectionRules", "Kube", "Snapshot", "Repository", "Concurrent",
                           .product(name: "Crypto", package: "swift-crypto")]
        ),
        // Cairn's HTTP side: one small NIO HTTP/1.1 endpoint (TLS optional), the probes and /metrics behind
        // a TokenReview + SubjectAccessReview authorizer. The dashboard grows here.
        .target(
            name: "Server",
            dependencies: [
                "Kube",
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // The in-cluster controller: reconcilers for Cairn's CRDs, work queue, schedules, leader election,
        // the admission webhook. Wires Protection to the cluster; knows nothing of the CLI or of S3.
        .target(
            name: "Controller",
            dependencies: [
                "Kube", "Protection", "Snapshot", "Repository", "Storage", "Server",
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
                "Concurrent",
                "Controller",
                "Server",
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
            name: "TestSupport",
            dependencies: [.product(name: "Crypto", package: "swift-crypto")]
        ),
        .target(
            name: "StorageTesting",
            dependencies: ["Storage", "Concurrent", "TestSupport"]
        ),
        .target(
            name: "KubeTesting",
            dependencies: ["TestSupport"]
        ),
        // Without a cluster.
        .testTarget(name: "StorageTests", dependencies: ["Storage", "StorageTesting", "Concurrent"]),
        .testTarget(name: "S3Tests", dependencies: ["S3Storage", "Storage", "StorageTesting", "Repository", "Snapshot"]),
        .testTarget(name: "ConcurrentTests", dependencies: ["Concurrent", "TestSupport"]),
        .testTarget(name: "RepositoryTests", dependencies: ["Repository", "Storage", "Concurrent", "StorageTesting"]),
        .testTarget(name: "SnapshotTests", dependencies: ["Snapshot", "Repository", "Storage", "Concurrent", "StorageTesting"]),
        .testTarget(name: "CLITests", dependencies: ["StorageTesting"]),
        .testTarget(name: "KubeTests", dependencies: ["Kube", "TestSupport"]),
        .testTarget(name: "ProtectionTests", dependencies: ["ProtectionRules", "Protection", "KubeModel", "Repository", "Snapshot",
                                                           "Storage"]),
        .testTarget(name: "ControllerTests", dependencies: [
            "Controller", "Server", "Protection", "Kube", "Snapshot", "Repository", "Storage", "TestSupport",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // Against the local cluster (scripts/local-cluster).
        .testTarget(name: "ClusterTests", dependencies: ["KubeTesting"]),
        .testTarget(name: "ClusterKubeTests", dependencies: ["Kube", "KubeTesting"]),
        .testTarget(name: "ClusterProtectionTests", dependencies: ["Protection", "Kube", "KubeTesting", "Snapshot",
                                                                   "Repository", "Storage", "StorageTesting"]),
        .testTarget(name: "ClusterApplicationTests", dependencies: ["Protection", "Kube", "KubeTesting", "Repository",
                                                                    "Storage", "StorageTesting"]),
        .testTarget(name: "ClusterControllerTests", dependencies: ["Kube", "KubeTesting", "Repository", "Storage",
                                                                   "StorageTesting"]),
    ],
    swiftLanguageModes: [.v6]
)
