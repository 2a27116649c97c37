import Foundation
import Kernels
import Support
import Testing
@testable import Transformer

func scratchDirectory() -> String {
    ScratchDirectory.make("ckpt")
}

@Suite("checkpoints and configs")
struct CheckpointTests {
    @Test("save then load gives identical parameters, config and names in Hugging Face convention", arguments: Variant.all)
    func roundTrip(_ variant: Variant) throws {
        let model = try TransformerModel(config: variant.config, seed: 9)
        let directory = scratchDirectory()
        try Checkpoint.save(model, to: directory, tokenizer: Data("tok".utf8))
        let loaded = try Checkpoint.load(from: directory)
        #expect(loaded.config == model.config)
        #expect(loaded.parameters.array == model.parameters.array)
        let file = try Safetensors.File(path: directory + "/model.safetensors")
        #expect(file.tensors["model.embed_tokens.weight"]?.shape == [13, 8])
        #expect(file.tensors["model.layers.1.self_attn.q_proj.weight"]?.shape == [8, 8])
        #expect(file.tensors["model.layers.0.self_attn.k_proj.weight"]?.shape == [variant.config.kvHeads * 4, 8])
        #expect((file.tensors["lm_head.weight"] != nil) == !variant.config.tiedEmbeddings)
        #expect((file.tensors["model.embed_positions.weight"] != nil) == (variant.config.positions == .learned))
        #expect((file.tensors["model.layers.0.mlp.gate_proj.weight"] != nil) == (variant.config.activation == .swiglu))
        #expect(file.metadata["format"] == "pt")
        #expect(Checkpoint.tokenizerPath(in: directory) != nil)
    }

    /// Writes a hand-made safetensors file: a header JSON and `dataBytes` bytes of data.
    func writeRaw(_ header: String, dataBytes: Int, length: UInt64? = nil, to path: String) throws {
        var bytes = Data()
        var n = (length ?? UInt64(header.utf8.count)).littleEndian
        withUnsafeBytes(of: &n) { bytes.append(contentsOf: $0) }
        bytes.append(contentsOf: header.utf8)
        bytes.append(Data(count: dataBytes))
        try bytes.write(to: URL(fileURLWithPath: path))
    }

    @Test("hostile and broken safetensors files are refused with the reason")
    func hostileHeaders() throws {
        let directory = scratchDirectory()
        let path = directory + "/x.safetensors"
        let cases: [(String, Int, UInt64?, String)] = [
            ("{}", 0, UInt64(1) << 60, "exceeds"),
            ("{}", 0, 1000, "runs past the end"),
            ("not json", 0, nil, "not a JSON object"),
            (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8000]}}"#, 8, nil, "outside"),
            (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, 12, nil, "overlaps"),
            (#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, 8, nil, "needs"),
            (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, 12, nil, "belong to no tensor"),
            (#"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, 8, nil, "shape"),
            (#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}}"#, 8, nil, "overflows"),
            (#"{"a":{"dtype":"Q9","shape":[2],"data_offsets":[0,8]}}"#, 8, nil, "dtype Q9"),
        ]
        for (header, data, length, expected) in cases {
            try writeRaw(header, dataBytes: data, length: length, to: path)
            do {
                _ = try Safetensors.File(path: path)
                Issue.record("accepted: \(header)")
            } catch {
                #expect("\(error)".contains(expected), "\(header): \(error)")
                #expect("\(error)".contains(path))
            }
        }
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: path))
        #expect(throws: Safetensors.Error.self) { try Safetensors.File(path: path) }
    }

    @Test("wrong shapes, missing and unexpected tensors, truncated weights and bad configs name the file and field")
    func badCheckpoints() throws {
        let model = try TransformerModel(config: Variant.all[0].config, seed: 1)
        let directory = scratchDirectory()
        try Checkpoint.save(model, to: directory)
        // A config that disagrees with the weights.
        var other = model.config
        other.dFF = 16
        try AtomicFile.write(other.encoded(), to: directory + "/config.json")
        #expect(throws: Safetensors.Error.wrongShape(path: directory + "/model.safetensors", name: "model.layers.0.mlp.up_proj.weight", expected: [16, 8], found: [12, 8])) {
            try Checkpoint.load(from: directory)
        }
        other = model.config
        other.tiedEmbeddings = false
        try AtomicFile.write(other.encoded(), to: directory + "/config.json")
        #expect(throws: Safetensors.Error.missingTensor(path: directory + "/model.safetensors", name: "lm_head.weight")) {
            try Checkpoint.load(from: directory)
        }
        other = model.config
        other.bias = false
        try AtomicFile.write(other.encoded(), to: directory + "/config.json")
        #expect(throws: TransformerError.self) { try Checkpoint.load(from: directory) }
        // Truncated weights.
        try AtomicFile.write(model.config.encoded(), to: directory + "/config.json")
        let weights = try Data(contentsOf: URL(fileURLWithPath: directory + "/model.safetensors"))
        try weights.prefix(weights.count - 100).write(to: URL(fileURLWithPath: directory + "/model.safetensors"))
        #expect(throws: Safetensors.Error.self) { try Checkpoint.load(from: directory) }
        // Configs.
        let bad: [(String, String)] = [
            (#"{"vocab_size": 10, "context_length": 8, "d_model": 10, "n_layers": 1, "n_heads": 3}"#, "n_heads"),
            (#"{"vocab_size": 10, "context_length": 8, "d_model": 12, "n_layers": 1, "n_heads": 4, "n_kv_heads": 3}"#, "n_kv_heads"),
            (#"{"vocab_size": 10, "context_length": 8, "d_model": 12, "n_layers": 1}"#, "n_heads"),
            (#"{"vocab_size": "ten", "context_length": 8, "d_model": 12, "n_layers": 1, "n_heads": 2}"#, "vocab_size"),
            (#"{"vocab_size": 10, "context_length": 8, "d_model": 12, "n_layers": 1, "n_heads": 2, "norm": "batchnorm"}"#, "norm"),
            (#"{"vocab_size": 10, "context_length": 0, "d_model": 12, "n_layers": 1, "n_heads": 2}"#, "context_length"),
            (#"{"vocab_size": 10, "context_length": 8, "d_model": 12, "n_layers": 1, "n_heads": 2, "dropout": 1.5}"#, "dropout"),
            ("{", "(file)"),
        ]
        for (json, field) in bad {
            do {
                _ = try ModelConfig.decode(Data(json.utf8), source: "c.json")
                Issue.record("accepted \(json)")
            } catch let TransformerError.invalidConfig(source, f, _) {
                #expect(source == "c.json")
                #expect(f == field, "\(json)")
            }
        }
        #expect(throws: TransformerError.self) { try Checkpoint.load(from: directory + "/nowhere") }
    }

    @Test("presets have the documented parameter counts")
    func presets() throws {
        let counts = try ["tiny", "small", "base"].map { ParameterLayout(try ModelConfig.load($0)).count }
        #expect(counts[0] == 1_334_016, "the peer benchmark's PyTorch tiny model")
        #expect(counts[1] == 13_891_584, "the peer benchmark's PyTorch small model")
        // 8192·512 embedding + 512·512 positions + 9 × (12·512² + 13·512 biases and norms) + 2·512.
        #expect(counts[2] == 4_194_304 + 262_144 + 9 * (12 * 512 * 512 + 13 * 512) + 1024)
    }
}
