import Chat
import Foundation
import Kernels
import Support
import Testing
import Tokenizer
import Transformer
@testable import Training

@Suite("LoRA fine-tuning and PEFT files")
struct LoRATests {
    func base() throws -> TransformerModel {
        var c = ModelConfig(vocabularySize: 4096, contextLength: 128, dModel: 32, layers: 2, heads: 4, kvHeads: 2, dFF: 64)
        c.useLlamaLayout(); c.initStd = 0.1
        return try TransformerModel(config: c, seed: 2)
    }

    @Test("PEFT files round-trip: the loaded adapter gives the same logits; bad configs are refused")
    func peftRoundTrip() throws {
        let model = try TransformerModel.adapting(try base(), with: AdapterConfig(rank: 4, alpha: 8, targets: ["q", "v", "down"]), seed: 3)
        var rng = SplitMix64(seed: 1)
        for t in model.layout.tensors where t.group == .adapter {
            for i in 0..<t.count { model.parameters.pointer[t.offset + i] = rng.nextFloat() - 0.5 }
        }
        let directory = temporaryPath() + "/adapter"
        try PEFTAdapter.save(model, to: directory, baseModel: "test-base")
        let file = try Safetensors.File(path: directory + "/adapter_model.safetensors")
        #expect(file.tensors["base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight"]?.shape == [4, 32])
        #expect(file.tensors["base_model.model.model.layers.0.mlp.down_proj.lora_B.weight"]?.shape == [32, 4])
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: directory + "/adapter_config.json"))) as! [String: Any]
        #expect(config["peft_type"] as? String == "LORA" && config["r"] as? Int == 4 && config["lora_alpha"] as? Double == 8)
        #expect(config["target_modules"] as? [String] == ["down_proj", "q_proj", "v_proj"])
        let loaded = try PEFTAdapter.load(directory, onto: try base())
        let ids: [Int32] = [5, 9, 100, 7, 4000]
        #expect(try InferenceSession(model: loaded).feed(ids, allRows: true) == InferenceSession(model: model).feed(ids, allRows: true))
        // A config for another projection set, and a missing file, are errors.
        try #"{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "k_proj"]}"#
            .write(toFile: directory + "/adapter_config.json", atomically: true, encoding: .utf8)
        #expect(throws: (any Error).self) { try PEFTAdapter.load(directory, onto: try base()) }
        try #"{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["lm_head"]}"#
            .write(toFile: directory + "/adapter_config.json", atomically: true, encoding: .utf8)
        #expect(throws: TransformerError.self) { try PEFTAdapter.load(directory, onto: try base()) }
        #expect(throws: FileError.self) { try PEFTAdapter.load(directory + "/nowhere", onto: try base()) }
    }

    @Test("tinylm lora --from-adapter starts from that adapter: its validation loss before a step is the one the first run ended with",
          .enabled(if: CLIRun.binary != nil, "the tinylm binary is not built beside the tests"))
    func fromAdapter() throws {
        let m = try HardeningTests.model(), folder = temporaryPath()
        var rng = SplitMix64(seed: 3)
        let words = ["the", "cat", "sat", "on", "a", "red", "mat", "and", "Tom", "saw", "it", "too"]
        func lines(_ n: Int) -> String {
            (0..<n).map { _ in #"{"text": ""# + (0..<12).map { _ in words[Int(rng.next() % 12)] }.joined(separator: " ") + #""}"# }
                .joined(separator: "\n") + "\n"
        }
        try lines(24).write(toFile: folder + "/train.jsonl", atomically: true, encoding: .utf8)
        try lines(6).write(toFile: folder + "/valid.jsonl", atomically: true, encoding: .utf8)
        let common = ["lora", "--model", m, "--data", folder, "--batch", "4", "--lr", "1e-2", "--warmup", "1",
                      "--max-seq-length", "32", "--eval-every", "0", "--save-every", "0"]
        let first = try runTinyLM(common + ["--adapter-path", folder + "/a", "--iters", "6", "--rank", "4", "--alpha", "8", "--targets", "q,v"])
        #expect(first.status == 0, "\(first.err)")
        let before = try #require(first.err.split(separator: "\n").first { $0.hasPrefix("step 0: validation loss") })
        let last = try #require(first.err.split(separator: "\n").first { $0.hasPrefix("step 6/6") })
        let ended = try #require(last.split(separator: " ").drop { $0 != "val" }.dropFirst().first)
        let second = try runTinyLM(common + ["--adapter-path", folder + "/b", "--iters", "1", "--rank", "8", "--from-adapter", folder + "/a"])
        #expect(second.status == 0, "\(second.err)")
        #expect(second.err.contains("(rank 4, q,v)"), "the adapter's rank and targets, not --rank's: \(second.err)")
        #expect(second.err.contains("step 0: validation loss \(ended)"), "first run ended at \(ended): \(second.err)")
        #expect(!before.hasSuffix(String(ended)), "training moved the validation loss (\(before))")
        try expectRefused(common + ["--adapter-path", folder + "/c", "--from-adapter", folder + "/nowhere"], "nowhere")
    }

    @Test("tinylm lora --group-by-length: less padding, said so; a resume keeps the order or is refused",
          .enabled(if: CLIRun.binary != nil, "the tinylm binary is not built beside the tests"))
    func groupByLength() throws {
        let m = try HardeningTests.model(), folder = temporaryPath()
        var rng = SplitMix64(seed: 5)
        let words = ["the", "cat", "sat", "on", "a", "red", "mat", "and", "Tom", "saw", "it", "too"]
        // Lines of 2 to 40 words, so that a batch of random ones is mostly padding.
        let lines = (0..<64).map { _ in
            #"{"text": ""# + (0..<(2 + Int(rng.next() % 39))).map { _ in words[Int(rng.next() % 12)] }.joined(separator: " ") + #""}"#
        }
        try (lines.joined(separator: "\n") + "\n").write(toFile: folder + "/train.jsonl", atomically: true, encoding: .utf8)
        let common = ["lora", "--model", m, "--data", folder, "--batch", "4", "--warmup", "1", "--max-seq-length", "64",
                      "--eval-every", "0", "--save-every", "0", "--rank", "4", "--alpha", "8"]
        func padding(_ err: String) -> Int? {
            err.split(separator: "\n").first { $0.hasPrefix("lora: ") }
                .flatMap { $0.split(separator: "longest: ").last?.split(separator: "%").first }.flatMap { Int($0) }
        }
        let plain = try runTinyLM(common + ["--adapter-path", folder + "/plain", "--iters", "2"])
        let grouped = try runTinyLM(common + ["--adapter-path", folder + "/grouped", "--iters", "2", "--group-by-length"])
        #expect(plain.status == 0 && grouped.status == 0, "\(plain.err)\n\(grouped.err)")
        #expect(grouped.err.contains("batches grouped by length") && !plain.err.contains("grouped"), "\(grouped.err)")
        let less = try #require(padding(grouped.err)), more = try #require(padding(plain.err))
        #expect(less < more / 2, "padding \(less)% grouped against \(more)%")
        // A saved run's state is taken back with the same order, and refused with the other one.
        let resumed = try runTinyLM(common + ["--adapter-path", folder + "/grouped", "--iters", "2", "--group-by-length", "--resume"])
        #expect(resumed.status == 0 && resumed.err.contains("resuming at step 2 of 2"), "\(resumed.err)")
        try expectRefused(common + ["--adapter-path", folder + "/plain", "--iters", "2", "--group-by-length", "--resume"], "their order")
        try expectRefused(common + ["--adapter-path", folder + "/grouped", "--iters", "2", "--resume"], "their order")
    }

    @Test("tinylm lora: progress lines with an ETA; --resume drops the log lines a kill left after the last save",
          .enabled(if: CLIRun.binary != nil, "the tinylm binary is not built beside the tests"))
    func resumedLog() throws {
        let m = try HardeningTests.model(), folder = temporaryPath()
        let lines = (0..<16).map { #"{"text": "the cat sat on the mat number \#($0)"}"# }
        try (lines.joined(separator: "\n") + "\n").write(toFile: folder + "/train.jsonl", atomically: true, encoding: .utf8)
        let run = ["lora", "--model", m, "--data", folder, "--adapter-path", folder + "/a", "--batch", "2", "--warmup", "1",
                   "--eval-every", "0", "--save-every", "2", "--rank", "4", "--alpha", "8", "--iters", "4"]
        let first = try runTinyLM(run)
        #expect(first.status == 0, "\(first.err)")
        // Each step's line says how long the rest will take; after the last, nothing.
        let progress = first.err.split(separator: "\n").filter { $0.hasPrefix("step ") && $0.contains("/4 ") }
        #expect(progress.count == 4 && progress.allSatisfy { $0.contains("  ETA ") }, "\(first.err)")
        #expect(progress.last?.hasSuffix("ETA 0m00s") == true, "\(first.err)")
        let log = folder + "/a/log.jsonl"
        let saved = try String(contentsOfFile: log, encoding: .utf8)
        #expect(try TrainingLogTests.steps(log) == [1, 2, 3, 4])
        // As if a longer run had gone on past its step-4 save and been killed mid-line.
        try (saved + (5...7).map { #"{"step": \#($0), "left": "by a kill"}"# }.joined(separator: "\n") + "\n{\"st")
            .write(toFile: log, atomically: true, encoding: .utf8)
        let resumed = try runTinyLM(run + ["--resume"])
        #expect(resumed.status == 0 && resumed.err.contains("resuming at step 4 of 4"), "\(resumed.err)")
        #expect(try String(contentsOfFile: log, encoding: .utf8) == saved)
    }

    @Test("training adapters on chat data lowers the held-out loss; the base does not move")
    func learns() throws {
        let tokenizer = try SentencePieceTokenizer(contentsOf: repoTokenizerPath)
        var generator = SyntheticToolData(seed: 4)
        let folder = temporaryPath()
        try ChatDatasets.writeOpenAI(generator.conversations(48).map { Conversation(messages: $0.messages, tools: []) }, to: folder + "/train.jsonl")
        var options = FineTuneData.Options()
        options.maxLength = 128
        let train = try FineTuneData.read(folder + "/train.jsonl", tokenizer: tokenizer, options: options)
        #expect(train.count == 48 && train.allSatisfy { $0.ids.count <= 128 && $0.targets.contains { $0 >= 0 } })
        let base = try base()
        let model = try TransformerModel.adapting(base, with: AdapterConfig(rank: 8, alpha: 16), seed: 1)
        let before = try model.evaluate(examples: Array(train.prefix(16)), batch: 4, length: 128)
        var training = TrainingOptions()
        training.steps = 64; training.batch = 4; training.sequenceLength = 128; training.weightDecay = 0; training.spikeFactor = 0
        training.schedule = LearningRateSchedule(maxLR: 1e-2, minLR: 1e-3, warmup: 4, total: 64)
        let trainer = try Trainer(model: model, options: training, data: try MaskedExamples(examples: train, vocabularySize: 4096, seed: 1), validation: nil)
        #expect(trainer.optimizer.m.count == model.layout.gradientCount && model.layout.gradientCount < model.layout.baseCount / 3)
        for _ in 0..<64 { _ = try trainer.step() }
        let after = try model.evaluate(examples: Array(train.prefix(16)), batch: 4, length: 128)
        #expect(after < 0.8 * before, "\(before) → \(after)")
        #expect(Array(UnsafeBufferPointer(start: model.parameters.pointer, count: base.layout.count)) == base.parameters.array)
        // Lines that are not one of the formats name the file and line.
        try "{\"messages\": []}\n{\"nope\": 1}\n".write(toFile: folder + "/bad.jsonl", atomically: true, encoding: .utf8)
        #expect(throws: ChatError.self) { try FineTuneData.read(folder + "/bad.jsonl", tokenizer: tokenizer, options: options) }
    }

    @Test("--mask-prompt (mlx-lm): a conversation trains on its final assistant turn only")
    func maskPrompt() throws {
        let tokenizer = try SentencePieceTokenizer(contentsOf: repoTokenizerPath)
        var generator = SyntheticToolData(seed: 8)
        let conversation = generator.conversation(.followUp)
        let folder = temporaryPath()
        try ChatDatasets.writeOpenAI([conversation], to: folder + "/train.jsonl")
        var options = FineTuneData.Options()
        options.maxLength = 1024
        let all = try FineTuneData.read(folder + "/train.jsonl", tokenizer: tokenizer, options: options)[0]
        options.lastTurnOnly = true
        let last = try FineTuneData.read(folder + "/train.jsonl", tokenizer: tokenizer, options: options)[0]
        #expect(all.ids == last.ids)
        let trainedAll = all.targets.filter { $0 >= 0 }, trainedLast = last.targets.filter { $0 >= 0 }
        // Every assistant turn (calls included) trains without it; with it, one contiguous run at the end.
        #expect(trainedLast.count < trainedAll.count && trainedAll.suffix(trainedLast.count) == trainedLast[...])
        let firstTrained = last.targets.firstIndex { $0 >= 0 }!, lastTrained = last.targets.lastIndex { $0 >= 0 }!
        #expect(last.targets[firstTrained...lastTrained].allSatisfy { $0 >= 0 })
        let text = try tokenizer.decode(trainedLast)
        #expect(text.contains(conversation.messages.last!.content), "\(text)")
    }

    @Test("an adapter run resumed from its saved state is bit-identical to the uninterrupted run; a mismatched run is refused")
    func resume() throws {
        let tokenizer = try SentencePieceTokenizer(contentsOf: repoTokenizerPath)
        var generator = SyntheticToolData(seed: 5)
        let folder = temporaryPath()
        try ChatDatasets.writeOpenAI(generator.conversations(24).map { Conversation(messages: $0.messages, tools: []) }, to: folder + "/train.jsonl")
        var dataOptions = FineTuneData.Options()
        dataOptions.maxLength = 96
        let train = try FineTuneData.read(folder + "/train.jsonl", tokenizer: tokenizer, options: dataOptions)
        var options = TrainingOptions()
        options.steps = 8; options.batch = 2; options.sequenceLength = 96; options.weightDecay = 0; options.spikeFactor = 0
        options.schedule = LearningRateSchedule(maxLR: 5e-3, minLR: 5e-4, warmup: 2, total: 8)
        let base = try base()
        func trainer() throws -> Trainer {
            let model = try TransformerModel.adapting(base, with: AdapterConfig(rank: 4, alpha: 8), seed: 7)
            return try Trainer(model: model, options: options, data: try MaskedExamples(examples: train, vocabularySize: 4096, seed: 3), validation: nil)
        }
        let straight = try trainer()
        for _ in 0..<8 { _ = try straight.step() }
        let first = try trainer()
        for _ in 0..<5 { _ = try first.step() }
        let path = folder + "/trainer_state.safetensors"
        try first.saveTrainableState(to: path)
        let resumed = try trainer()
        try resumed.restoreTrainableState(from: path)
        #expect(resumed.state.step == 5)
        for _ in 0..<3 { _ = try resumed.step() }
        #expect(resumed.model.parameters.array == straight.model.parameters.array)
        #expect(resumed.optimizer.m.array == straight.optimizer.m.array && resumed.optimizer.v.array == straight.optimizer.v.array)
        // Another learning rate, or other adapters, cannot continue this run.
        options.schedule = LearningRateSchedule(maxLR: 1e-3, minLR: 5e-4, warmup: 2, total: 8)
        #expect(throws: TrainingError.self) { try trainer().restoreTrainableState(from: path) }
        options.schedule = LearningRateSchedule(maxLR: 5e-3, minLR: 5e-4, warmup: 2, total: 8)
        let other = try Trainer(model: try TransformerModel.adapting(base, with: AdapterConfig(rank: 2, alpha: 8), seed: 7), options: options,
                                data: try MaskedExamples(examples: train, vocabularySize: 4096, seed: 3), validation: nil)
        #expect(throws: TrainingError.self) { try other.restoreTrainableState(from: path) }
    }

    @Test("adapter dropout: the same mask in backward as in forward (gradients against finite differences), off without training noise")
    func adapterDropout() throws {
        let base = try base()
        var config = AdapterConfig(rank: 4, alpha: 8, targets: ["q", "v", "o", "up", "down"])
        config.dropout = 0.3
        let model = try TransformerModel.adapting(base, with: config, seed: 2)
        var plainConfig = config
        plainConfig.dropout = 0
        let plain = try TransformerModel.adapting(base, with: plainConfig, seed: 2)
        var rng = SplitMix64(seed: 6)
        for t in model.layout.tensors where t.name.hasSuffix("lora_B.weight") {
            for i in 0..<t.count { model.parameters.pointer[t.offset + i] = rng.nextGaussian() * 0.5 }
        }
        plain.parameters.pointer.update(from: model.parameters.pointer, count: model.layout.count)
        let ids = (0..<24).map { _ in Int32(rng.next() % 4096) }, targets = (0..<24).map { _ in Int32(rng.next() % 4096) }
        let w = try TrainingWorkspace(model: model, batch: 2, length: 12)
        let seed: UInt64 = 41
        let noisy = try model.forward(ids: ids, targets: targets, workspace: w, dropoutSeed: seed)
        #expect(try model.forward(ids: ids, targets: targets, workspace: w, dropoutSeed: seed) == noisy, "the same seed, the same masks")
        let clean = try model.forward(ids: ids, targets: targets, workspace: w)
        #expect(clean != noisy)
        #expect(clean == (try plain.forward(ids: ids, targets: targets, workspace: try TrainingWorkspace(model: plain, batch: 2, length: 12))),
                "without training noise, dropout is off")
        _ = try model.forward(ids: ids, targets: targets, workspace: w, dropoutSeed: seed)
        w.gradients.zero()
        model.backward(workspace: w)
        let analytic = w.gradients.array, p = model.parameters.pointer, h: Float = 1e-2
        var checked = 0
        for t in model.layout.tensors where t.group == .adapter {
            for k in [0, t.count / 3, t.count - 1] {
                let i = t.offset + k, saved = p[i]
                p[i] = saved + h
                let up = Double(try model.forward(ids: ids, targets: targets, workspace: w, dropoutSeed: seed))
                p[i] = saved - h
                let down = Double(try model.forward(ids: ids, targets: targets, workspace: w, dropoutSeed: seed))
                p[i] = saved
                let numeric = (up - down) / Double(2 * h), a = Double(analytic[t.gradientOffset! + k])
                #expect(abs(numeric - a) <= 2e-3 + 3e-2 * abs(a), "\(t.name)[\(k)]: numeric \(numeric), analytic \(a)")
                checked += 1
            }
        }
        #expect(checked >= 30)
        // The PEFT files carry it.
        let directory = temporaryPath() + "/dropout-adapter"
        try PEFTAdapter.save(model, to: directory, baseModel: "test")
        #expect(try PEFTAdapter.load(directory, onto: base).adapters?.dropout == 0.3)
    }
}
