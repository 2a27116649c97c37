// swift-tools-version:6.0
import PackageDescription

// Kernels need the host's vector units. Without a target-CPU setting Swift emits baseline x86-64:
// `SIMD16<Float>.addingProduct` becomes a call to `fmaf` per lane and the GEMM runs ~200x slower.
// `-Xcc -march=native` sets the target features that Swift's code generator takes from its
// Clang importer, so a plain `swift build -c release` emits AVX-512/FMA (`vfmadd231ps` on zmm)
// on this machine, AVX2 code on an AVX2 machine and NEON on arm64. The kernels are written with
// portable SIMD types, so every CPU gets correct code; only the speed differs.
let nativeCPU: [SwiftSetting] = [
    .unsafeFlags(["-Xcc", "-march=native"]),
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "TinyLM",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "tinylm", targets: ["TinyLMCLI"]),
        .library(name: "Kernels", targets: ["Kernels"]),
        .library(name: "Tokenizer", targets: ["Tokenizer"]),
        .library(name: "Transformer", targets: ["Transformer"]),
        .library(name: "Training", targets: ["Training"]),
        .library(name: "Chat", targets: ["Chat"]),
        .library(name: "GGUF", targets: ["GGUF"]),
        .library(name: "Quantization", targets: ["Quantization"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // The AMX-BF16 tile micro-kernel (Swift cannot emit tile instructions).
        .target(name: "CAMX"),
        .target(
            name: "Kernels",
            dependencies: ["CAMX", "CQuant"],
            swiftSettings: nativeCPU + [.unsafeFlags(["-enforce-exclusivity=unchecked"])]
        ),
        .target(name: "Support"),
        // libedit's readline interface: line editing and history in `tinylm chat`.
        .systemLibrary(name: "CEditLine", pkgConfig: "libedit", providers: [.apt(["libedit-dev"])]),
        // The AVX-512 VNNI block dot products (Swift cannot emit `vpdpbusd`).
        .target(name: "CQuant"),
        // ggml's block formats: reference quantizers, dequantization, quantized matrices.
        .target(
            name: "Quantization",
            dependencies: ["CQuant", "Kernels", "Support"],
            swiftSettings: nativeCPU
        ),
        // The C interface over Debian's libsentencepiece (`libsentencepiece-dev`).
        .target(
            name: "CSentencePiece",
            cxxSettings: [.unsafeFlags(["-std=c++17"])],
            linkerSettings: [.linkedLibrary("sentencepiece"), .linkedLibrary("sentencepiece_train")]
        ),
        .target(
            name: "Tokenizer",
            dependencies: ["CSentencePiece", "Kernels", "Support"],
            swiftSettings: nativeCPU
        ),
        .target(
            name: "Transformer",
            dependencies: ["CQuant", "Kernels", "Quantization", "Support", "Tokenizer"],
            swiftSettings: nativeCPU
        ),
        .target(
            name: "Training",
            dependencies: ["Chat", "Kernels", "Support", "Tokenizer", "Transformer"],
            swiftSettings: nativeCPU
        ),
        .target(
            name: "Chat",
            dependencies: ["Kernels", "Support", "Tokenizer"],
            swiftSettings: nativeCPU
        ),
        // GGUF files: the container, ggml's block formats, Llama import and export.
        .target(
            name: "GGUF",
            dependencies: ["Kernels", "Quantization", "Support", "Tokenizer", "Transformer"],
            swiftSettings: nativeCPU
        ),
        // Conversations with a model: cache reuse across turns, streaming, the tool loop.
        .target(
            name: "ChatEngine",
            dependencies: ["Chat", "Kernels", "Tokenizer", "Transformer"],
            swiftSettings: nativeCPU
        ),
        // Mutation fuzzing of the parsers of untrusted input (tests and `tinylm fuzz`).
        .target(
            name: "Fuzzing",
            dependencies: ["Chat", "GGUF", "Kernels", "Support", "Tokenizer", "Transformer"],
            swiftSettings: nativeCPU
        ),
        .executableTarget(
            name: "TinyLMCLI",
            dependencies: [
                "CEditLine",
                "Chat",
                "ChatEngine",
                "Fuzzing",
                "GGUF",
                "Kernels",
                "Tokenizer",
                "Transformer",
                "Training",
                "Support",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: nativeCPU
        ),
        .testTarget(
            name: "KernelsTests",
            dependencies: ["Kernels"],
            swiftSettings: nativeCPU
        ),
        .testTarget(
            name: "TransformerTests",
            dependencies: ["Transformer", "Kernels", "Support"],
            swiftSettings: nativeCPU
        ),
        .testTarget(
            name: "TrainingTests",
            // The CLI is a dependency so that its binary is built for the process tests.
            dependencies: ["Training", "Transformer", "Kernels", "Support", "Tokenizer", "Chat", "ChatEngine", "Fuzzing", "TinyLMCLI"],
            swiftSettings: nativeCPU
        ),
        .testTarget(
            name: "ChatTests",
            dependencies: ["Chat", "Kernels", "Support", "Tokenizer"],
            swiftSettings: nativeCPU
        ),
        .testTarget(
            name: "GGUFTests",
            dependencies: ["GGUF", "Kernels", "Quantization", "Support", "Tokenizer", "Transformer"],
            swiftSettings: nativeCPU
        ),
        .testTarget(
            name: "TokenizerTests",
            dependencies: ["Tokenizer", "Support", "Kernels"],
            swiftSettings: nativeCPU
        ),
    ],
    swiftLanguageModes: [.v6]
)
