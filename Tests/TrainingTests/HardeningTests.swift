import Foundation
import Kernels
import Support
import Testing
import Tokenizer
import Transformer
@testable import Training

/// Runs the binary to the end and returns its status and output.
func runTinyLM(_ arguments: [String], stdin: Data? = nil, environment: [String: String] = [:], directory: String? = nil)
    throws -> (status: Int32, reason: Process.TerminationReason, out: String, err: String) {
    let folder = temporaryPath()
    let outPath = folder + "/out.txt", errPath = folder + "/err.txt", inPath = folder + "/in.txt"
    _ = FileManager.default.createFile(atPath: outPath, contents: nil)
    _ = FileManager.default.createFile(atPath: errPath, contents: nil)
    _ = FileManager.default.createFile(atPath: inPath, contents: stdin ?? Data())
    let process = Process()
    process.executableURL = URL(fileURLWithPath: CLIRun.binary!)
    process.arguments = arguments
    process.currentDirectoryURL = URL(fileURLWithPath: directory ?? CLIRun.repository)
    process.environment = ProcessInfo.processInfo.environment.merging(environment.merging(["TINYLM_THREADS": "2"]) { a, _ in a }) { _, new in new }
    process.standardOutput = FileHandle(forWritingAtPath: outPath)
    process.standardError = FileHandle(forWritingAtPath: errPath)
    process.standardInput = FileHandle(forReadingAtPath: inPath)
    try process.run()
    CLIRun.wait(process, seconds: 120)
    let out = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
    let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
    return (process.terminationStatus, process.terminationReason, out, err)
}

/// Expects exit status 1 (not a signal) and an `Error:` line containing `fragment`.
func expectRefused(_ arguments: [String], _ fragment: String, stdin: Data? = nil, environment: [String: String] = [:],
                   sourceLocation: SourceLocation = #_sourceLocation) throws {
    let r = try runTinyLM(arguments, stdin: stdin, environment: environment)
    #expect(r.reason == .exit && r.status == 1, "\(arguments): status \(r.status) (\(r.reason)); \(r.err)", sourceLocation: sourceLocation)
    let errorLine = r.err.split(separator: "\n").first { $0.hasPrefix("Error: ") } ?? ""
    #expect(errorLine.contains(fragment), "\(arguments): \(r.err)", sourceLocation: sourceLocation)
}

/// One test per class of the 309-input sweep (issue #13). Each input got a trap, a hang, a
/// silent NaN or a misleading message before.
@Suite("bad input: a clear error, never a trap", .serialized, .enabled(if: CLIRun.binary != nil, "the tinylm binary is not built beside the tests"))
struct HardeningTests {
    static func model() throws -> String {
        let directory = temporaryPath() + "/model"
        var config = ModelConfig(vocabularySize: 4096, contextLength: 32, dModel: 16, layers: 1, heads: 2)
        config.initStd = 0.02
        try Checkpoint.save(try TransformerModel(config: config, seed: 1), to: directory,
                            tokenizer: try Data(contentsOf: URL(fileURLWithPath: CLIRun.repository + "/Tokenizers/tinylm-4k.model")))
        return directory
    }

    @Test("1. sizes that multiply past memory are refused before any allocation")
    func sizes() throws {
        let folder = temporaryPath()
        // Every field plausible, the whole 4.4 TB.
        let huge = #"{"vocab_size": 16000000, "context_length": 65536, "d_model": 16384, "n_layers": 256, "n_heads": 128}"#
        try huge.write(toFile: folder + "/huge.json", atomically: true, encoding: .utf8)
        try expectRefused(["init", "--config", folder + "/huge.json", "--out", folder + "/h"], "more than the")
        try expectRefused(["pretrain", "--corpus", "x.txt", "--batch", "100000000000000000", "--out", folder + "/p"], "--batch")
        try expectRefused(["data", "synth-tools", "--count", "1000000000", "--out", folder + "/s.jsonl"], "--count")
        let batches = #"{"batch": 1000000000000000, "length": 1000000000000000, "steps": []}"#
        try batches.write(toFile: folder + "/b.json", atomically: true, encoding: .utf8)
        let m = try Self.model()
        try expectRefused(["train-steps", "--model", m, "--batches", folder + "/b.json"], "batch must be in")
        // A config claiming a million vocabulary rows against 4096-row weights: a shape error,
        // not an 800 MB buffer first.
        var config = try Checkpoint.config(in: m)
        config.vocabularySize = 1 << 20
        try AtomicFile.write(config.encoded(), to: m + "/config.json")
        try expectRefused(["logits", "--model", m, "--ids", "1,2"], "has shape [4096, 16], expected [1048576, 16]",
                          environment: ["TINYLM_MEMORY_LIMIT": "100000000"])
        // The memory check itself, with a small budget.
        try expectRefused(["init", "--config", "base", "--out", folder + "/b"], "would need 131.3 MB",
                          environment: ["TINYLM_MEMORY_LIMIT": "100000000"])
    }

    @Test("2. numeric options out of their domain are usage errors naming the option")
    func options() throws {
        let m = try Self.model()
        try expectRefused(["chat", "render", "--data", "x", "--limit=-1"], "--limit")
        try expectRefused(["pretrain", "--corpus", "x", "--weight-decay", "inf", "--out", "/tmp/x"], "--weight-decay must be a finite number")
        try expectRefused(["pretrain", "--corpus", "x", "--lr", "1e30", "--out", "/tmp/x"], "--lr")
        try expectRefused(["generate", "--model", m, "--temperature", "nan"], "--temperature")
        try expectRefused(["generate", "--model", m, "--top-p", "2"], "--top-p")
        try expectRefused(["generate", "--model", m, "--kv-bits", "7"], "--kv-bits must be 32 (fp32), 16 (fp16) or 8")
        try expectRefused(["chat", "--model", m, "--kv-bits", "4"], "--kv-bits must be 32 (fp32), 16 (fp16) or 8")
        try expectRefused(["bench", "decode", "--model", m, "--kv-bits", "12"], "--kv-bits must be 32 (fp32), 16 (fp16) or 8")
        // This model's heads are 8 wide: not whole blocks of 32.
        try expectRefused(["generate", "--model", m, "--prompt", "Once", "--kv-bits", "8"],
                          "--kv-bits 8: the head dimension (d_model / n_heads) must be a multiple of 32")
        try expectRefused(["tools", "parse", "--chunk-size", "0"], "--chunk-size")
        try expectRefused(["tokenizer", "encode", "--model", "m", "--max-line-bytes", "0"], "--max-line-bytes")
    }

    @Test("3. non-finite numbers: refused at load, never in JSON, never in a tool result")
    func nonFinite() throws {
        let m = try Self.model()
        let loaded = try Checkpoint.load(from: m)
        let tensor = loaded.layout.tensor(named: "model.layers.0.mlp.up_proj.weight")!
        loaded.parameters.pointer[tensor.offset + 5] = .nan
        // Saving refuses it; written by hand, loading refuses it, naming the tensor.
        #expect(throws: TransformerError.self) { try Checkpoint.save(loaded, to: m) }
        let entries = loaded.layout.tensors.map {
            Safetensors.Entry(name: $0.name, shape: $0.shape, data: UnsafeBufferPointer(start: loaded.parameters.pointer + $0.offset, count: $0.count))
        }
        try withExtendedLifetime(loaded) { try Safetensors.write(entries, metadata: [:], to: m + "/model.safetensors") }
        try expectRefused(["generate", "--model", m, "--prompt", "Hi"], "'model.layers.0.mlp.up_proj.weight' holds nan")
        try expectRefused(["logits", "--model", m, "--ids", "1,2"], "must be finite")
        let r = try runTinyLM(["tools", "call", "unit_convert", #"{"value": 1e308, "from": "km", "to": "mm"}"#])
        #expect(r.status == 1 && r.out.contains("\"error\"") && !r.out.contains("null"), "\(r.out)")
    }

    @Test("3. a run whose weights become non-finite stops before it saves them")
    func divergence() throws {
        let (trainer, _) = try smallRun(steps: 20, dropout: 0, spikeFactor: 0)
        _ = try trainer.step()
        // A weight at the edge of Float's range: the next update overflows it.
        let head = trainer.model.layout.lmHead.weight
        trainer.model.parameters.pointer[head] = Float.greatestFiniteMagnitude
        let directory = temporaryPath()
        do {
            _ = try PretrainLoop.run(trainer, directory: directory, tokenizer: nil)
            Issue.record("the run went on")
        } catch let error as TrainingError {
            #expect("\(error)".contains("NaN or infinite") || "\(error)".contains("NaN/Inf"), "\(error)")
        }
        // Whatever it saved is finite.
        for path in [directory, directory + "/best"] where FileManager.default.fileExists(atPath: path + "/model.safetensors") {
            let saved = try Checkpoint.load(from: path)
            #expect(firstNonFinite(saved.parameters.pointer, count: saved.parameters.count) == nil)
        }
    }

    @Test("6. unbounded input: a line past the limit is refused before it is buffered whole")
    func longInput() throws {
        let model = CLIRun.repository + "/Tokenizers/tinylm-4k.model"
        let line = Data(repeating: UInt8(ascii: "a"), count: 3 << 20)
        try expectRefused(["tokenizer", "encode", "--model", model], "line 1 is longer than 1048576 bytes", stdin: line)
        // A file of many short lines streams in batches.
        let folder = temporaryPath()
        let text = (0..<50_000).map { "line \($0)" }.joined(separator: "\n") + "\n"
        try text.write(toFile: folder + "/many.txt", atomically: true, encoding: .utf8)
        var lines = try LineReader(path: folder + "/many.txt", maxLineBytes: 64)
        var total = 0, batches = 0
        while let batch = try lines.nextBatch(maxLines: 4096) { total += batch.count; batches += 1 }
        #expect(total == 50_000 && batches == 13)
    }

    @Test("7. messages say what is wrong with which file, in plain words")
    func messages() throws {
        let folder = temporaryPath()
        try "x".write(toFile: folder + "/file", atomically: true, encoding: .utf8)
        try expectRefused(["init", "--config", "tiny", "--out", folder + "/file/run"], "is a file, not a directory")
        try #"{"vocab_size": 64, "context_length": 8, "d_model": 12.5, "n_layers": 1, "n_heads": 2}"#
            .write(toFile: folder + "/c.json", atomically: true, encoding: .utf8)
        try expectRefused(["init", "--config", folder + "/c.json", "--out", folder + "/c"], "d_model must be a whole number")
        // A truncated shard given to eval is reported as a shard.
        let m = try Self.model()
        let tokenizer = try SentencePieceTokenizer(contentsOf: m + "/tokenizer.model")
        let writer = TokenShardWriter(path: folder + "/val.bin", vocabularySize: 4096, tokenizerSHA256: tokenizer.sha256)
        writer.append(document: Array(repeating: 5, count: 100))
        try writer.finish()
        let bytes = try Data(contentsOf: URL(fileURLWithPath: folder + "/val.bin"))
        try bytes.prefix(150).write(to: URL(fileURLWithPath: folder + "/short.bin"))
        try expectRefused(["eval", "--model", m, "--data", folder + "/short.bin"], "short.bin: not a TinyLM token shard")
        // An id outside the vocabulary names the file and the position.
        var damaged = [UInt8](bytes)
        damaged[128 + 2 * 7] = 0xFF
        damaged[128 + 2 * 7 + 1] = 0xFF
        try Data(damaged).write(to: URL(fileURLWithPath: folder + "/bad.bin"))
        try expectRefused(["eval", "--model", m, "--data", folder + "/bad.bin"], "bad.bin: token 7 is id 65535")
    }

    @Test("8. run directories: stale temporaries removed, resume before the first save explained, a refused resume changes nothing")
    func runDirectories() throws {
        let (corpus, config) = try CLIRun.fixture()
        let out = temporaryPath() + "/run"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try Data("junk".utf8).write(to: URL(fileURLWithPath: out + "/.model.safetensors.tmp-Ab3xYz"))
        let first = try runTinyLM(CLIRun.arguments(corpus: corpus, config: config, out: out, steps: 3, saveEvery: 0))
        #expect(first.status == 0, "\(first.err)")
        #expect(first.err.contains("removed") && !FileManager.default.fileExists(atPath: out + "/.model.safetensors.tmp-Ab3xYz"))
        // A resume with another corpus is refused and leaves the run's data as it was.
        let data = try Data(contentsOf: URL(fileURLWithPath: out + "/data/train.bin"))
        let other = temporaryPath() + "/other.txt"
        try String(repeating: "Completely different words about boats and rivers.\n", count: 300).write(toFile: other, atomically: true, encoding: .utf8)
        var args = CLIRun.arguments(corpus: other, config: config, out: out, steps: 5, saveEvery: 0)
        args.append("--resume")
        try expectRefused(args, "the training data differs")
        #expect(try Data(contentsOf: URL(fileURLWithPath: out + "/data/train.bin")) == data)
        // A run stopped before its first save: the reason, not "not a training checkpoint".
        try FileManager.default.removeItem(atPath: out + "/" + Trainer.stateFile)
        args = CLIRun.arguments(corpus: corpus, config: config, out: out, steps: 5, saveEvery: 0)
        args.append("--resume")
        try expectRefused(args, "stopped before its first checkpoint")
        try expectRefused(["pretrain", "--corpus", corpus, "--data", out + "/data", "--out", out], "not both")
        // A tokenizer with fewer pieces than the model's rows gets a note.
        let m = try Self.model()
        var c = try Checkpoint.config(in: m)
        c.vocabularySize = 5000
        try Checkpoint.save(try TransformerModel(config: c, seed: 2), to: m,
                            tokenizer: try Data(contentsOf: URL(fileURLWithPath: m + "/tokenizer.model")))
        let r = try runTinyLM(["generate", "--model", m, "--prompt", "Hi", "--max-tokens", "2"])
        #expect(r.status == 0 && r.err.contains("note: ") && r.err.contains("4096 pieces and the model 5000 rows"), "\(r.err)")
    }

    @Test("9. evaluation keeps no gradients, backward scratch or earlier layers' activations")
    func evaluationMemory() throws {
        let model = try TransformerModel(config: ModelConfig.presets["tiny"]!, seed: 1)
        let train = try TrainingWorkspace(model: model, batch: 4, length: 128)
        let eval = try TrainingWorkspace(model: model, batch: 4, length: 128, training: false)
        #expect(eval.gradients.count == 0 && train.gradients.count == model.layout.count)
        #expect(!eval.canTrain)
        // Training holds the gradients, the backward scratch and every layer's kept activations;
        // evaluation one layer's (and two residual slots).
        let n = 4 * 128, c = model.config, earlier = c.layers - 1
        let backward = model.layout.count + n * c.dModel + n * max(c.mlpInDim, c.qkvDim) + n * c.dFF + ThreadPool.shared.threadCount * 128 * 128
        let layers = n * earlier * (2 * c.dModel + c.qkvDim + c.mlpInDim)
        // Evaluation also runs the output layer in chunks (here one of all 512 rows, with its
        // gathered inputs, row indices, targets, losses and logsumexps); training this trainable
        // output layer keeps the whole logits.
        #expect(train.residentBytes - eval.residentBytes == 4 * (backward + layers - n * c.dModel - 4 * n))
    }

    @Test("10. invalid UTF-8 in arguments and in a completion is an error, not a silent U+FFFD")
    func invalidUTF8() throws {
        let m = try Self.model()
        let r = try runTinyLM(["generate", "--model", m, "--prompt", String(decoding: [0x48, 0x69], as: UTF8.self)])
        #expect(r.status == 0)
        try expectRefused(["tools", "parse"], "not valid UTF-8", stdin: Data([0x61, 0xFF, 0x62]))
        try expectRefused(["tokenizer", "encode", "--model", CLIRun.repository + "/Tokenizers/tinylm-4k.model"], "line 2 is not valid UTF-8",
                          stdin: Data([0x6F, 0x6B, 0x0A, 0xFF, 0xFE, 0x0A]))
    }

    @Test("11. usage errors exit 1 with Error:, like every other failure; help exits 0")
    func usage() throws {
        try expectRefused(["no-such-command"], "Unexpected argument")
        try expectRefused(["generate"], "Missing expected argument")
        let help = try runTinyLM(["generate", "--help"])
        #expect(help.status == 0 && help.out.contains("OVERVIEW"))
    }

    @Test("12. one-character file and folder names, relative, are written (Foundation traps on their parent)")
    func shortNames() throws {
        let folder = temporaryPath()
        let data = try runTinyLM(["data", "synth-tools", "--count", "3", "--out", "x"], directory: folder)
        #expect(data.reason == .exit && data.status == 0, "\(data.err)")
        #expect(try String(contentsOfFile: folder + "/x", encoding: .utf8).split(separator: "\n").count == 3)
        let (corpus, config) = try CLIRun.fixture()
        let run = try runTinyLM(CLIRun.arguments(corpus: corpus, config: config, out: "r/", steps: 2, saveEvery: 0), directory: folder)
        #expect(run.reason == .exit && run.status == 0, "\(run.err)")
        #expect(FileManager.default.fileExists(atPath: folder + "/r/model.safetensors"))
    }
}

@Suite("path names")
struct PathNameTests {
    @Test("parent and last name by POSIX rules: Foundation's where it does not trap, and the one-character names")
    func pathNames() {
        let cases: [(String, String, String)] = [
            ("x", "", "x"), ("x/", "", "x"), ("/x", "/", "x"), ("/x/", "/", "x"), ("a/b", "a", "b"), ("a//b", "a", "b"),
            ("a/b//", "a", "b"), ("/", "/", "/"), ("//", "/", "/"), ("", "", ""), ("./x", ".", "x"), ("../ab/c", "../ab", "c"),
            ("/usr/local/lib", "/usr/local", "lib"), ("é/ü", "é", "ü"), ("ab", "", "ab"), ("//a", "/", "a"),
        ]
        for (path, parent, last) in cases {
            #expect(PathNames.parent(of: path) == parent, "parent of \(path)")
            #expect(PathNames.lastComponent(of: path) == last, "last name of \(path)")
            // Foundation agrees wherever it does not trap (names of two characters or more; "//"
            // is "" to it).
            let names = path.split(separator: "/")
            if !names.isEmpty && names.allSatisfy({ $0.count >= 2 }) {
                #expect((path as NSString).deletingLastPathComponent == parent, "Foundation's parent of \(path)")
                #expect((path as NSString).lastPathComponent == last, "Foundation's last name of \(path)")
            }
        }
    }
}
