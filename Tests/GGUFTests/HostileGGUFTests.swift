import Foundation
import Kernels
import Testing
import Tokenizer
@testable import GGUF
@testable import Transformer

/// Raw GGUF bytes with any field set to anything, for files no writer would make.
struct RawGGUF {
    var magic = Array("GGUF".utf8)
    var version: UInt32 = 3
    var tensorCount: UInt64?
    var kvCount: UInt64?
    var kvs: [[UInt8]] = []
    var tensors: [[UInt8]] = []
    var data: [UInt8] = []
    var alignment = 32

    static func u32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    static func u64(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    static func string(_ s: String) -> [UInt8] { u64(UInt64(s.utf8.count)) + Array(s.utf8) }

    mutating func kv(_ key: String, type: UInt32, _ value: [UInt8]) { kvs.append(RawGGUF.string(key) + RawGGUF.u32(type) + value) }
    mutating func kv(_ key: String, string: String) { kv(key, type: 8, RawGGUF.string(string)) }
    mutating func tensor(_ name: String, dims: [UInt64], type: UInt32 = 0, offset: UInt64) {
        tensors.append(RawGGUF.string(name) + RawGGUF.u32(UInt32(dims.count)) + dims.flatMap(RawGGUF.u64) + RawGGUF.u32(type) + RawGGUF.u64(offset))
    }

    var bytes: [UInt8] {
        var out = magic + RawGGUF.u32(version) + RawGGUF.u64(tensorCount ?? UInt64(tensors.count)) + RawGGUF.u64(kvCount ?? UInt64(kvs.count))
        out += kvs.flatMap { $0 } + tensors.flatMap { $0 }
        while out.count % alignment != 0 { out.append(0) }
        return out + data
    }

    /// A valid file: one 32 x 2 F32 tensor.
    static func valid() -> RawGGUF {
        var g = RawGGUF()
        g.kv("general.architecture", string: "test")
        g.tensor("w", dims: [32, 2], offset: 0)
        g.data = [UInt8](repeating: 0, count: 256)
        return g
    }
}

@Suite("hostile GGUF files: an error naming the field, never a trap or a huge allocation")
struct HostileGGUFTests {
    func write(_ bytes: [UInt8]) throws -> String {
        let path = scratch() + "/h.gguf"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// Cases: a description, the bytes, and text the error must contain.
    static let cases: [(String, [UInt8], String)] = {
        var list: [(String, [UInt8], String)] = []
        func add(_ name: String, _ change: (inout RawGGUF) -> Void, _ expected: String) {
            var g = RawGGUF.valid()
            change(&g)
            list.append((name, g.bytes, expected))
        }
        list.append(("empty file", [], "shorter than the 24-byte header"))
        list.append(("ten bytes", Array("GGUF".utf8) + [3, 0, 0, 0, 1, 0], "shorter than the 24-byte header"))
        add("wrong magic", { $0.magic = Array("GGML".utf8) }, "magic")
        add("version 1", { $0.version = 1 }, "version")
        add("version 4", { $0.version = 4 }, "version")
        add("huge tensor count", { $0.tensorCount = 1 << 60 }, "tensor_count")
        add("huge key/value count", { $0.kvCount = 1 << 58 }, "metadata_kv_count")
        add("key length past the end", { $0.kvs = [RawGGUF.u64(1 << 40) + Array("x".utf8)] }, "runs past the end")
        add("key not UTF-8", { $0.kvs = [RawGGUF.u64(2) + [0xFF, 0xFE] + RawGGUF.u32(4) + RawGGUF.u32(1)] }, "not valid UTF-8")
        add("unknown value type", { $0.kv("x", type: 13, [0, 0, 0, 0]) }, "unknown value type 13")
        add("bool of 2", { $0.kv("x", type: 7, [2]) }, "a bool of value 2")
        add("array count past the file", { $0.kv("x", type: 9, RawGGUF.u32(4) + RawGGUF.u64(1 << 50)) }, "cannot fit")
        add("arrays nested three deep", {
            $0.kv("x", type: 9, RawGGUF.u32(9) + RawGGUF.u64(1) + RawGGUF.u32(9) + RawGGUF.u64(1) + RawGGUF.u32(9) + RawGGUF.u64(1) + RawGGUF.u32(4) + RawGGUF.u64(0))
        }, "nested too deep")
        add("string value past the end", { $0.kv("x", type: 8, RawGGUF.u64(1 << 33)) }, "runs past the end")
        add("duplicate key", { $0.kv("general.architecture", string: "again") }, "appears twice")
        add("alignment 0", { $0.kv("general.alignment", type: 4, RawGGUF.u32(0)) }, "general.alignment")
        add("alignment 24", { $0.kv("general.alignment", type: 4, RawGGUF.u32(24)) }, "power of two")
        add("alignment as a string", { $0.kv("general.alignment", string: "32") }, "general.alignment")
        add("no dimensions", { $0.tensors = []; $0.tensor("w", dims: [], offset: 0) }, "n_dims")
        add("five dimensions", { $0.tensors = []; $0.tensor("w", dims: [1, 1, 1, 1, 1], offset: 0) }, "n_dims")
        add("a zero dimension", { $0.tensors = []; $0.tensor("w", dims: [32, 0], offset: 0) }, "dims[1]")
        add("dimensions that overflow", { $0.tensors = []; $0.tensor("w", dims: [1 << 40, 1 << 40], offset: 0) }, "multiply past")
        add("unknown tensor type", { $0.tensors = []; $0.tensor("w", dims: [32, 2], type: 99, offset: 0) }, "unknown tensor type 99")
        add("a row that is not whole blocks", { $0.tensors = []; $0.tensor("w", dims: [33, 2], type: 2, offset: 0) }, "not a multiple of Q4_0's block")
        add("an unaligned offset", { $0.tensors = []; $0.tensor("w", dims: [32, 2], offset: 4) }, "not aligned")
        add("data past the end", { $0.tensors = []; $0.tensor("w", dims: [32, 2], offset: 1 << 20) }, "run past the end")
        add("overlapping tensors", { $0.tensor("v", dims: [32], offset: 0) }, "overlaps")
        add("a repeated tensor name", { $0.tensor("w", dims: [32], offset: 256) ; $0.data += [UInt8](repeating: 0, count: 128) }, "appears twice")
        add("truncated data", { $0.data.removeLast(100) }, "run past the end")
        add("truncated inside the key/values", { g in g.kvs = [Array(g.kvs[0].prefix(16))]; g.tensors = []; g.data = []; g.alignment = 1 }, "runs past the end")
        return list
    }()

    @Test("each hostile file is refused with a message naming the field")
    func hostile() throws {
        #expect(Self.cases.count >= 25)
        for (name, bytes, expected) in Self.cases {
            let path = try write(bytes)
            do {
                _ = try GGUFFile(path: path)
                Issue.record("\(name): accepted")
            } catch let error as GGUFError {
                #expect("\(error)".contains(path) && "\(error)".contains(expected), "\(name): \(error)")
            }
        }
    }

    /// A tiny but complete llama GGUF with a byte-level BPE vocabulary, then broken one way at a time.
    static func model(_ change: (inout ModelConfig, inout [String: [Float]], inout [String: GGUFValue]) -> Void = { _, _, _ in }) throws -> String {
        var c = ModelConfig(vocabularySize: 260, contextLength: 16, dModel: 32, layers: 1, heads: 4, kvHeads: 2, dFF: 64)
        c.useLlamaLayout()
        let model = try TransformerModel(config: c, seed: 3)
        var w = try GGUFExport.gguf(model, tokenizer: nil, type: .f32, name: "tiny")
        var tensors: [String: [Float]] = [:]
        var meta: [String: GGUFValue] = [:]
        change(&c, &tensors, &meta)
        // Rebuild with the changes: metadata overrides and replaced tensors.
        if !meta.isEmpty || !tensors.isEmpty {
            w = GGUFWriter()
            var base: [String: GGUFValue] = ["general.architecture": .string("llama"), "llama.context_length": .uint(16),
                "llama.embedding_length": .uint(32), "llama.block_count": .uint(1), "llama.feed_forward_length": .uint(64),
                "llama.attention.head_count": .uint(4), "llama.attention.head_count_kv": .uint(2)]
            base.merge(meta) { _, new in new }
            for (k, v) in base.sorted(by: { $0.key < $1.key }) where v != .string("<remove>") && !k.hasPrefix("tokenizer.") { w.add(k, v) }
            let exported = try GGUFFile(path: try { let p = scratch() + "/base.gguf"; try GGUFExport.gguf(model, tokenizer: nil, type: .f32, name: "t").write(to: p); return p }())
            for info in exported.tensors {
                guard tensors[info.name] != [] else { continue } // [] removes the tensor
                var values = try floats(exported, info.name)
                if let replacement = tensors[info.name] { values = replacement }
                let dims = values.count == info.elementCount ? info.dimensions : [values.count]
                w.add(tensor: info.name, dimensions: dims, type: .f32, data: try values.withUnsafeBufferPointer { try GGMLQuantize.encode($0, as: .f32) })
            }
        }
        // The vocabulary: the 256 byte characters and four merges.
        let alphabet = ByteLevelBPETokenizer.byteAlphabet.map { GGUFValue.string(String(Character($0))) }
        let tokens = alphabet + [.string("he"), .string("ll"), .string("hell"), .string("<|im_end|>")]
        w.add("tokenizer.ggml.model", meta["tokenizer.ggml.model"] ?? .string("gpt2"))
        w.add("tokenizer.ggml.pre", meta["tokenizer.ggml.pre"] ?? .string("gpt2"))
        w.add("tokenizer.ggml.tokens", .array(tokens))
        w.add("tokenizer.ggml.token_type", .array(Array(repeating: .int(1), count: 259) + [.int(3)]))
        w.add("tokenizer.ggml.merges", meta["tokenizer.ggml.merges"] ?? .array([.string("h e"), .string("l l"), .string("he ll")]))
        w.add("tokenizer.ggml.eos_token_id", .uint(259))
        let path = scratch() + "/model.gguf"
        try w.write(to: path)
        return path
    }

    @Test("a tiny llama GGUF with its BPE vocabulary loads, encodes and decodes")
    func tinyModel() throws {
        let loaded = try LoadedModel.load(try Self.model())
        #expect(loaded.model.config.vocabularySize == 260 && loaded.tokenizer.eosID == 259)
        let t = try #require(loaded.tokenizer as? ByteLevelBPETokenizer)
        let hello = t.encode("hello<|im_end|>", specialTokens: true)
        #expect(hello == [258, Int32(t.id(for: "o")!), 259])
        #expect(try t.decode(hello) == "hello<|im_end|>")
        #expect(!t.encode("hello<|im_end|>", specialTokens: false).contains(259))
    }

    @Test("model and tokenizer problems are refused, naming the key or tensor")
    func badModels() throws {
        let cases: [(String, (inout ModelConfig, inout [String: [Float]], inout [String: GGUFValue]) -> Void, String)] = [
            ("another architecture", { _, _, m in m["general.architecture"] = .string("gpt2") }, "architecture 'gpt2' is not supported"),
            ("a missing tensor", { _, t, _ in t["blk.0.attn_q.weight"] = [] }, "blk.0.attn_q.weight"),
            ("a wrong shape", { _, t, _ in t["output_norm.weight"] = [Float](repeating: 1, count: 31) }, "output_norm.weight"),
            ("a NaN weight", { _, t, _ in var v = [Float](repeating: 1, count: 32); v[3] = .nan; t["blk.0.ffn_norm.weight"] = v }, "must be finite"),
            ("heads that do not divide the width", { _, _, m in m["llama.attention.head_count"] = .uint(5) }, "n_heads"),
            ("a missing hyperparameter", { _, _, m in m["llama.block_count"] = .string("<remove>") }, "llama.block_count"),
            ("a merge of unknown tokens", { _, _, m in m["tokenizer.ggml.merges"] = .array([.string("h zz")]) }, "merge 0"),
            ("an unknown pre-tokenizer", { _, _, m in m["tokenizer.ggml.pre"] = .string("klingon") }, "pre-tokenizer 'klingon'"),
            ("a SentencePiece vocabulary", { _, _, m in m["tokenizer.ggml.model"] = .string("llama") }, "tokenizer.ggml.model 'llama'"),
        ]
        for (name, change, expected) in cases {
            let path = try Self.model(change)
            do {
                _ = try LoadedModel.load(path)
                Issue.record("\(name): accepted")
            } catch {
                #expect("\(error)".contains(expected), "\(name): \(error)")
            }
        }
    }
}
