import Chat
import Foundation
import GGUF
import Kernels
import Support
import Tokenizer
import Transformer

/// Mutation fuzzing of every parser that reads untrusted input: valid seed inputs are mutated
/// (bit flips, byte changes to boundary values, insertions, deletions, duplicated and spliced
/// runs, truncation) and fed to the parser. A parser passes when it returns or throws a
/// described error for every input, and, for the tool-call parsers, accounts for every byte.
/// `make test` runs a fixed number of iterations per target; `tinylm fuzz` runs longer.
public enum FuzzTarget: String, CaseIterable, Sendable {
    case safetensors, gguf, config, tokenShard = "token-shard", chatData = "chat-data", hermes, llama3, mistral
}

/// What a fuzzing run saw.
public struct FuzzReport: Sendable, CustomStringConvertible {
    public var target: FuzzTarget
    public var iterations = 0
    /// Inputs the parser accepted.
    public var accepted = 0
    /// Inputs it refused with an error.
    public var refused = 0
    /// Property violations (a refusal without a message, a parser that lost bytes), with the input.
    public var failures: [(message: String, input: [UInt8])] = []

    public var description: String {
        "\(target.rawValue): \(iterations) inputs, \(accepted) accepted, \(refused) refused, \(failures.count) failures"
    }
}

public enum Fuzzer {
    /// Runs `iterations` mutated inputs through `target`'s parser; the same seed gives the same
    /// inputs. Files the parsers read are written in `directory` (a temporary one by default).
    public static func run(_ target: FuzzTarget, iterations: Int, seed: UInt64, directory: String? = nil) throws -> FuzzReport {
        let folder = directory ?? FileManager.default.temporaryDirectory.appendingPathComponent("tinylm-fuzz-\(UUID().uuidString)").path
        try AtomicFile.createDirectory(folder)
        defer { if directory == nil { try? FileManager.default.removeItem(atPath: folder) } }
        let seeds = try seedInputs(target, directory: folder)
        var rng = SplitMix64(seed: seed &+ UInt64(FuzzTarget.allCases.firstIndex(of: target)!) &* 0x9E37_79B9_7F4A_7C15)
        var report = FuzzReport(target: target)
        for i in 0..<iterations {
            var input = seeds[Int(rng.next() % UInt64(seeds.count))]
            // Every 16th input is a seed as it is; the rest get 1 to 8 mutations.
            if i % 16 != 0 {
                for _ in 0..<(1 + Int(rng.next() % 8)) { mutate(&input, rng: &rng, splice: seeds) }
            }
            report.iterations += 1
            switch check(target, input, directory: folder) {
            case .accepted: report.accepted += 1
            case .refused: report.refused += 1
            case .failed(let message): report.failures.append((message, input))
            }
        }
        return report
    }

    enum Outcome { case accepted, refused, failed(String) }

    /// Feeds one input to the target's parser.
    static func check(_ target: FuzzTarget, _ input: [UInt8], directory: String) -> Outcome {
        func refused(_ error: any Error) -> Outcome {
            "\(error)".isEmpty ? .failed("an error without a message: \(type(of: error))") : .refused
        }
        switch target {
        case .safetensors, .gguf, .tokenShard, .chatData:
            let path = directory + "/input-\(target.rawValue)"
            do { try Data(input).write(to: URL(fileURLWithPath: path)) } catch { return .failed("cannot write \(path)") }
            do {
                switch target {
                case .safetensors:
                    let file = try Safetensors.File(path: path)
                    for (name, info) in file.tensors where info.dtype == .f32 || info.dtype == .f16 || info.dtype == .bf16 {
                        var values = [Float](repeating: 0, count: info.elementCount)
                        try values.withUnsafeMutableBufferPointer { try file.read(name, shape: info.shape, into: $0.baseAddress!) }
                    }
                case .gguf:
                    let file = try GGUFFile(path: path)
                    for info in file.tensors where info.elementCount <= 1 << 20 {
                        var values = [Float](repeating: 0, count: info.elementCount)
                        values.withUnsafeMutableBufferPointer { file.read(info, into: $0.baseAddress!) }
                    }
                    if file["tokenizer.ggml.tokens"] != nil { _ = try GGUFTokenizer.load(file) }
                    if file["general.architecture"]?.string == "llama" { _ = try GGUFModel.load(file) }
                case .tokenShard:
                    let shard = try TokenShard(path: path)
                    var ids = [Int32](repeating: 0, count: min(shard.count, 1 << 16))
                    ids.withUnsafeMutableBufferPointer { shard.copy(from: 0, count: $0.count, into: $0.baseAddress!) }
                default:
                    let conversations = try ChatDatasets.read(path)
                    for c in conversations { _ = ChatTemplate.chatML.render(c) }
                }
                return .accepted
            } catch {
                return refused(error)
            }
        case .config:
            do {
                _ = try ModelConfig.decode(Data(input), source: "fuzz")
                return .accepted
            } catch {
                return refused(error)
            }
        case .hermes, .llama3, .mistral:
            let format = ToolCallFormat(rawValue: target.rawValue)!
            // Whole, then byte by byte: both must account for every byte of valid UTF-8 input.
            guard let text = String(validating: input, as: UTF8.self) else { return .refused }
            for chunk in [max(1, input.count), 1, 7] {
                var parser = format.makeParser(tools: ToolRegistry.builtIn().definitions)
                var events: [ToolCallEvent] = []
                var start = 0
                while start < input.count {
                    events += parser.feed(Array(input[start..<min(input.count, start + chunk)]))
                    start += chunk
                }
                events += parser.finish()
                let rebuilt = events.map { event -> String in
                    switch event {
                    case .text(let t): t
                    case .toolCall(_, let raw): raw
                    case .error(let e): e.raw
                    }
                }.joined()
                if rebuilt != text { return .failed("chunks of \(chunk): the events hold \(rebuilt.utf8.count) bytes of the \(input.count)") }
            }
            return .accepted
        }
    }

    /// Valid inputs of each kind, made here.
    static func seedInputs(_ target: FuzzTarget, directory: String) throws -> [[UInt8]] {
        switch target {
        case .safetensors:
            var c = ModelConfig(vocabularySize: 11, contextLength: 4, dModel: 4, layers: 1, heads: 2, dFF: 8)
            c.norm = .rmsnorm
            let model = try TransformerModel(config: c, seed: 1)
            try Checkpoint.save(model, to: directory + "/seed", metadata: ["note": "fuzz seed"])
            return [Array(try Data(contentsOf: URL(fileURLWithPath: directory + "/seed/model.safetensors")))]
        case .gguf:
            var c = ModelConfig(vocabularySize: 258, contextLength: 8, dModel: 8, layers: 1, heads: 2, dFF: 16)
            c.useLlamaLayout()
            var w = try GGUFExport.gguf(try TransformerModel(config: c, seed: 1), tokenizer: nil, type: .q8_0, name: "seed")
            let alphabet = ByteLevelBPETokenizer.byteAlphabet.map { GGUFValue.string(String(Character($0))) }
            w.add("tokenizer.ggml.model", .string("gpt2"))
            w.add("tokenizer.ggml.pre", .string("smollm"))
            w.add("tokenizer.ggml.tokens", .array(alphabet + [.string("ab"), .string("<|im_end|>")]))
            w.add("tokenizer.ggml.token_type", .array(Array(repeating: .int(1), count: 257) + [.int(3)]))
            w.add("tokenizer.ggml.merges", .array([.string("a b")]))
            return [w.bytes()]
        case .config:
            var c = ModelConfig(vocabularySize: 64, contextLength: 16, dModel: 16, layers: 2, heads: 4, kvHeads: 2)
            c.positions = .rope
            return [Array(c.encoded()), Array(#"{"vocab_size": 64, "context_length": 8, "d_model": 8, "n_layers": 1, "n_heads": 2}"#.utf8)]
        case .tokenShard:
            let path = directory + "/seed.bin"
            let writer = TokenShardWriter(path: path, vocabularySize: 300, tokenizerSHA256: String(repeating: "ab", count: 32))
            writer.append(document: [1, 2, 3, 299, 7])
            writer.append(document: [5, 6])
            try writer.finish()
            return [Array(try Data(contentsOf: URL(fileURLWithPath: path)))]
        case .chatData:
            return [
                Array(#"{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "", "tool_calls": [{"id": "c0", "type": "function", "function": {"name": "calculator", "arguments": "{\"expression\": \"2+2\"}"}}]}, {"role": "tool", "tool_call_id": "c0", "content": "{\"result\": 4}"}, {"role": "assistant", "content": "4"}], "tools": [{"type": "function", "function": {"name": "calculator", "description": "math", "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]}}}]}"#.utf8) + [10],
                Array(#"[{"conversations": [{"from": "human", "value": "hi"}, {"from": "function_call", "value": "{\"name\": \"f\", \"arguments\": {}}"}, {"from": "observation", "value": "{}"}, {"from": "gpt", "value": "done"}], "tools": "[]"}]"#.utf8),
            ]
        case .hermes:
            return [Array("Let me check. <tool_call>\n{\"name\": \"calculator\", \"arguments\": {\"expression\": \"17*23\"}}\n</tool_call> then <tool_call>{\"name\": \"x\"}</tool_call> é".utf8)]
        case .llama3:
            return [Array("<|python_tag|>{\"name\": \"calculator\", \"parameters\": {\"expression\": \"1+1\"}}".utf8),
                    Array("{\"name\": \"current_time\", \"parameters\": {\"timezone\": \"Asia/Tokyo\"}} and text".utf8)]
        case .mistral:
            return [Array("[TOOL_CALLS] [{\"name\": \"calculator\", \"arguments\": {\"expression\": \"2^10\"}}]".utf8),
                    Array("ok [TOOL_CALLS]calculator[ARGS]{\"expression\": \"3*3\"} tail".utf8)]
        }
    }

    /// One random change to `input`.
    static func mutate(_ input: inout [UInt8], rng: inout SplitMix64, splice seeds: [[UInt8]]) {
        let interesting: [UInt8] = [0, 0xFF, 0x7F, 0x80, 0x22, 0x5C, 0x7B, 0x7D, 0x5B, 0x5D, 0x2C, 0x3A, 0x30, 0x39, 0x2D, 0x0A, 0xC3, 0xE2]
        func position(_ extra: Int = 0) -> Int { Int(rng.next() % UInt64(input.count + extra)) }
        switch rng.next() % 9 {
        case 0 where !input.isEmpty: input[position()] ^= UInt8(1 << (rng.next() % 8))
        case 1 where !input.isEmpty: input[position()] = interesting[Int(rng.next() % UInt64(interesting.count))]
        case 2: input.insert(interesting[Int(rng.next() % UInt64(interesting.count))], at: position(1))
        case 3 where !input.isEmpty: input.remove(at: position())
        case 4 where input.count > 1:
            let a = position(), b = min(input.count, a + 1 + Int(rng.next() % 32))
            input.insert(contentsOf: input[a..<b], at: position(1))
        case 5 where !input.isEmpty: input.removeLast(Int(rng.next() % UInt64(input.count)))
        case 6:
            let other = seeds[Int(rng.next() % UInt64(seeds.count))]
            guard !other.isEmpty else { return }
            let a = Int(rng.next() % UInt64(other.count)), b = min(other.count, a + 1 + Int(rng.next() % 64))
            input.insert(contentsOf: other[a..<b], at: position(1))
        case 7 where input.count >= 8:
            // A little-endian integer field set to a boundary value (lengths, counts, offsets).
            let at = position() / 8 * 8
            let values: [UInt64] = [0, 1, 0x7FFF_FFFF, 0xFFFF_FFFF, 1 << 40, UInt64.max, UInt64(input.count)]
            let v = values[Int(rng.next() % UInt64(values.count))]
            for k in 0..<min(8, input.count - at) { input[at + k] = UInt8(truncatingIfNeeded: v >> (8 * k)) }
        default:
            // A digit run made long (numbers past Int's range, deep exponents).
            input.insert(contentsOf: Array(repeating: UInt8(ascii: "9"), count: 1 + Int(rng.next() % 40)), at: position(1))
        }
    }
}
