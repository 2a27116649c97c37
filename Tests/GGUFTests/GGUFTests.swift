import Foundation
import Kernels
import Support
import Testing
import Tokenizer
@testable import GGUF
@testable import Transformer

let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures").path

func scratch() -> String {
    ScratchDirectory.make("gguf")
}

func floats(_ file: GGUFFile, _ name: String) throws -> [Float] {
    let info = try #require(file.tensor(named: name), "\(name)")
    var out = [Float](repeating: 0, count: info.elementCount)
    out.withUnsafeMutableBufferPointer { file.read(info, into: $0.baseAddress!) }
    return out
}

@Suite("GGUF: blocks, files, models")
struct GGUFTests {
    /// `blocks.gguf` was written by the `gguf` package (llama.cpp's Python library), with its
    /// reference dequantization beside each tensor (Benchmarks/gguf_fixture.py).
    @Test("every block format decodes bit for bit as ggml's reference", arguments: ["Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q6_K", "F16", "BF16"])
    func dequantize(_ type: String) throws {
        let file = try GGUFFile(path: fixtures + "/gguf/blocks.gguf")
        let ours = try floats(file, "\(type).raw"), reference = try floats(file, "\(type).expected")
        #expect(ours.count == reference.count && ours.count >= 512)
        #expect(zip(ours, reference).allSatisfy { $0.bitPattern == $1.bitPattern || ($0.isNaN && $1.isNaN) }, "\(type)")
        #expect(file["fixture.note"]?.string == "raw blocks and their reference dequantization")
    }

    @Test("Q8_0, F16 and BF16 encoding is byte-identical to the reference quantizers", arguments: ["Q8_0", "BF16"])
    func quantize(_ type: String) throws {
        let file = try GGUFFile(path: fixtures + "/gguf/blocks.gguf")
        let source = try floats(file, "\(type).source")
        let raw = try #require(file.tensor(named: "\(type).raw"))
        let expected = file.withBytes(of: raw) { Array($0) }
        let ours = try source.withUnsafeBufferPointer { try GGMLQuantize.encode($0, as: type == "Q8_0" ? .q8_0 : .bf16) }
        #expect(ours == expected)
    }

    @Test("writer then reader: every value kind, tensors of every written type, alignment and order")
    func roundTrip() throws {
        var w = GGUFWriter()
        w.add("general.architecture", .string("test"))
        w.add("u", .uint(7)); w.add("big", .uint(1 << 40)); w.add("i", .int(-5)); w.add("f", .float(0.5)); w.add("b", .bool(true))
        w.add("s", .string("héllo ✓")); w.add("list", .array([.string("a"), .string("b")])); w.add("ints", .array([.int(-1), .int(2)]))
        let values = (0..<96).map { Float($0) * 0.25 - 3 }
        for type in [GGMLType.f32, .f16, .bf16, .q8_0] {
            let data = try values.withUnsafeBufferPointer { try GGMLQuantize.encode($0, as: type) }
            w.add(tensor: "t.\(type)", dimensions: [32, 3], type: type, data: data)
        }
        let path = scratch() + "/t.gguf"
        try w.write(to: path)
        let file = try GGUFFile(path: path)
        #expect(file.version == 3 && file.alignment == 32)
        #expect(file["u"] == .uint(7) && file["big"] == .uint(1 << 40) && file["i"] == .int(-5) && file["f"] == .float(0.5))
        #expect(file["b"] == .bool(true) && file["s"]?.string == "héllo ✓" && file["list"]?.strings == ["a", "b"])
        #expect(file["ints"]?.array?.compactMap(\.integer) == [-1, 2])
        #expect(file.tensors.map(\.name) == ["t.F32", "t.F16", "t.BF16", "t.Q8_0"])
        #expect(file.tensors.allSatisfy { $0.offset % 32 == 0 && $0.shape == [3, 32] })
        #expect(try floats(file, "t.F32") == values)
        #expect(try floats(file, "t.F16") == values, "these values are exact in fp16")
        let q8 = try floats(file, "t.Q8_0")
        // Each 32-value block rounds to a step d = max|x| / 127 (the largest here is 20.75), and d
        // itself to fp16: |error| ≤ d/2 + 127 d 2⁻¹¹.
        let d: Float = 20.75 / 127
        #expect(zip(q8, values).allSatisfy { abs($0 - $1) <= d / 2 + 127 * d / 2048 })
    }

    /// A Llama-style model exported and imported: the q/k permutation round-trips, so the logits
    /// are identical; the GPT-2-style one exports with fused q/k/v.
    @Test("export then import gives the same model, bit for bit (f32) or within q8_0's error")
    func exportImport() throws {
        var c = ModelConfig(vocabularySize: 64, contextLength: 32, dModel: 32, layers: 2, heads: 4, kvHeads: 2, dFF: 48)
        c.useLlamaLayout(); c.tiedEmbeddings = false; c.initStd = 0.2
        let model = try TransformerModel(config: c, seed: 5)
        let ids: [Int32] = [1, 9, 33, 4, 60, 2, 17]
        let reference = try InferenceSession(model: model).feed(ids, allRows: true)
        for type in [GGMLType.f32, .q8_0] {
            let path = scratch() + "/m.gguf"
            try GGUFExport.gguf(model, tokenizer: nil, type: type, name: "test").write(to: path)
            let file = try GGUFFile(path: path)
            #expect(file.tensor(named: "blk.0.attn_q.weight")?.type == type)
            #expect(file.tensor(named: "blk.0.attn_norm.weight")?.type == .f32)
            let imported = try GGUFModel.load(file)
            var expected = c
            expected.normEps = Double(Float(c.normEps))   // GGUF keeps f32, as llama.cpp computes with
            expected.initStd = imported.config.initStd      // an initialisation setting, not part of the file
            #expect(imported.config == expected)
            let logits = try InferenceSession(model: imported).feed(ids, allRows: true)
            if type == .f32 {
                #expect(logits == reference)
                #expect(imported.parameters.array == model.parameters.array)
            } else {
                let scale = reference.map(abs).max()!
                #expect(zip(logits, reference).map { abs($0 - $1) }.max()! < 0.05 * scale)
            }
        }
        // Rows of q in llama.cpp's order: pairs (2i, 2i+1) of each head are HF's (i, i + hd/2).
        let path = scratch() + "/m.gguf"
        try GGUFExport.gguf(model, tokenizer: nil, type: .f32, name: "test").write(to: path)
        let file = try GGUFFile(path: path)
        let q = try floats(file, "blk.1.attn_q.weight"), hd = 8, columns = 32
        let hfQ = model.layout.tensor(named: "model.layers.1.self_attn.q_proj.weight")!
        for (h, j) in [(0, 0), (1, 3), (3, 2)] {
            for col in [0, 31] {
                #expect(q[(h * hd + 2 * j) * columns + col] == model.parameters.pointer[hfQ.offset + (h * hd + j) * columns + col])
                #expect(q[(h * hd + 2 * j + 1) * columns + col] == model.parameters.pointer[hfQ.offset + (h * hd + hd / 2 + j) * columns + col])
            }
        }
        // GPT-2 style: fused q/k/v with biases; an option mix llama.cpp has no architecture for is refused.
        let gpt2 = try TransformerModel(config: ModelConfig(vocabularySize: 64, contextLength: 16, dModel: 32, layers: 1, heads: 2), seed: 1)
        let g = try GGUFExport.gguf(gpt2, tokenizer: nil, type: .f32, name: "g")
        let gpath = scratch() + "/g.gguf"
        try g.write(to: gpath)
        let gfile = try GGUFFile(path: gpath)
        #expect(gfile["general.architecture"]?.string == "gpt2" && gfile.tensor(named: "blk.0.attn_qkv.weight")?.shape == [96, 32])
        #expect(gfile.tensor(named: "blk.0.attn_qkv.bias")?.shape == [96] && gfile.tensor(named: "position_embd.weight") != nil)
        var mixed = c
        mixed.bias = true
        #expect(throws: GGUFError.self) { try GGUFExport.architecture(of: mixed) }
    }

    /// A Mixtral-shaped mixture goes out as llama.cpp's `llama` with stacked experts.
    @Test("a mixture of experts exports as llama.cpp's Mixtral layout: router, stacked [E, out, in] experts, expert counts")
    func exportMixture() throws {
        var c = ModelConfig(vocabularySize: 64, contextLength: 32, dModel: 32, layers: 2, heads: 4, kvHeads: 2, dFF: 48)
        c.useLlamaLayout()
        c.experts = 4; c.expertsPerToken = 2; c.expertDFF = 24
        let model = try TransformerModel(config: c, seed: 3)
        let path = scratch() + "/moe.gguf"
        try GGUFExport.gguf(model, tokenizer: nil, type: .f32, name: "moe").write(to: path)
        let file = try GGUFFile(path: path)
        #expect(file["general.architecture"]?.string == "llama")
        #expect(file["llama.expert_count"]?.integer == 4 && file["llama.expert_used_count"]?.integer == 2 && file["llama.feed_forward_length"]?.integer == 24)
        #expect(file.tensor(named: "blk.1.ffn_gate_inp.weight")?.shape == [4, 32])
        #expect(file.tensor(named: "blk.1.ffn_gate_exps.weight")?.shape == [4, 24, 32])
        #expect(file.tensor(named: "blk.1.ffn_down_exps.weight")?.shape == [4, 32, 24])
        #expect(file.tensor(named: "blk.0.ffn_gate.weight") == nil)
        // Expert e's matrix is slice e of the stack, unchanged.
        let p = model.parameters.pointer
        for (gguf, w) in [("ffn_gate_exps", "w1"), ("ffn_up_exps", "w3"), ("ffn_down_exps", "w2")] {
            let stacked = try floats(file, "blk.1.\(gguf).weight")
            for e in [0, 3] {
                let t = model.layout.tensor(named: "model.layers.1.block_sparse_moe.experts.\(e).\(w).weight")!
                #expect(Array(stacked[(e * t.count)..<((e + 1) * t.count)]) == Array(UnsafeBufferPointer(start: p + t.offset, count: t.count)))
            }
        }
        // Mixtures llama.cpp does not compute (raw top-k weights, dense blocks between) are refused.
        var raw = c
        raw.normalizeTopK = false
        #expect(throws: GGUFError.self) { try GGUFExport.architecture(of: raw) }
    }
}
