import Foundation
import Support
import Testing
import Transformer
@testable import Training

/// Runs the `tinylm` binary built beside the tests, as a user would.
struct CLIRun {
    static var binary: String? {
        let directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for candidate in [directory, directory.deletingLastPathComponent()] {
            let path = candidate.appendingPathComponent("tinylm").path
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }

    static var repository: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }

    /// Starts `tinylm` (or `executable`) in the repository (or `directory`); with `errorFile`,
    /// its standard error goes there.
    static func start(_ arguments: [String], errorFile: String? = nil, executable: String? = nil,
                      directory: String? = nil) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable ?? binary!)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory ?? repository)
        process.environment = ProcessInfo.processInfo.environment.merging(["TINYLM_THREADS": "2"]) { _, new in new }
        process.standardOutput = FileHandle.nullDevice
        if let errorFile {
            _ = FileManager.default.createFile(atPath: errorFile, contents: nil)
            process.standardError = FileHandle(forWritingAtPath: errorFile)
        } else {
            process.standardError = FileHandle.nullDevice
        }
        try process.run()
        return process
    }

    /// Waits for `process` to end; one still running after `seconds` is killed and fails the
    /// test, so that a hung run cannot hang the suite. It polls instead of calling
    /// `waitUntilExit()`, which waits on the calling thread's run loop: on the worker threads
    /// tests run on, that wait can miss the exit and spin for ever.
    static func wait(_ process: Process, seconds: Double = 300, sourceLocation: SourceLocation = #_sourceLocation) {
        func poll(until deadline: Date) {
            while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        }
        poll(until: Date().addingTimeInterval(seconds))
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            Issue.record("tinylm \(process.arguments?.first ?? "") still ran after \(Int(seconds)) s; killed", sourceLocation: sourceLocation)
            poll(until: Date().addingTimeInterval(10))
        }
    }

    /// A corpus and a config for a run of a few seconds.
    static func fixture() throws -> (corpus: String, config: String) {
        let directory = temporaryPath()
        var text = ""
        for i in 0..<400 { text += "Tom saw \(i % 7) red balls and Lily found \(i % 5) cats in the park.\n" }
        try text.write(toFile: directory + "/corpus.txt", atomically: true, encoding: .utf8)
        let config = #"{"vocab_size": 4096, "context_length": 32, "d_model": 32, "n_layers": 2, "n_heads": 2}"#
        try config.write(toFile: directory + "/config.json", atomically: true, encoding: .utf8)
        return (directory + "/corpus.txt", directory + "/config.json")
    }

    static func arguments(corpus: String, config: String, out: String, steps: Int, saveEvery: Int) -> [String] {
        ["pretrain", "--corpus", corpus, "--config", config, "--steps", String(steps), "--batch", "4",
         "--warmup", "5", "--eval-every", "50", "--save-every", String(saveEvery), "--seed", "3", "--out", out]
    }
}

@Suite("pretraining processes", .serialized)
struct ProcessTests {
    @Test("Ctrl-C saves a checkpoint; --resume finishes bit-identical to an uninterrupted run", .enabled(if: CLIRun.binary != nil, "the tinylm binary is not built beside the tests"))
    func interruptAndResume() throws {
        let (corpus, config) = try CLIRun.fixture()
        let straight = temporaryPath()
        let full = try CLIRun.start(CLIRun.arguments(corpus: corpus, config: config, out: straight, steps: 2000, saveEvery: 0))
        CLIRun.wait(full)
        #expect(!full.isRunning && full.terminationStatus == 0)

        let interrupted = temporaryPath()
        let run = try CLIRun.start(CLIRun.arguments(corpus: corpus, config: config, out: interrupted, steps: 2000, saveEvery: 0))
        // Wait until training is under way (its log has lines), then press Ctrl-C.
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline && run.isRunning {
            if let log = try? String(contentsOfFile: interrupted + "/log.jsonl", encoding: .utf8), log.split(separator: "\n").count >= 20 { break }
            Thread.sleep(forTimeInterval: 0.02)
        }
        kill(run.processIdentifier, SIGINT)
        CLIRun.wait(run)
        #expect(!run.isRunning && run.terminationStatus == 130, "exit status after Ctrl-C")
        let state = try Safetensors.File(path: interrupted + "/trainer_state.safetensors")
        #expect(state.metadata["trainer_state"] != nil)
        // Without --steps, as a user resumes: the run keeps its own 2000 (not the option's default).
        // A changed --lr is ignored, and said so; the unchanged --config and --seed are not named.
        var resumeArguments = CLIRun.arguments(corpus: corpus, config: config, out: interrupted, steps: 2000, saveEvery: 0)
        let stepsOption = resumeArguments.firstIndex(of: "--steps")!
        resumeArguments.removeSubrange(stepsOption...stepsOption + 1)
        let errors = temporaryPath() + "/stderr.txt"
        let resume = try CLIRun.start(resumeArguments + ["--resume", "--lr=0.5"], errorFile: errors)
        CLIRun.wait(resume)
        #expect(!resume.isRunning && resume.terminationStatus == 0)
        let messages = try String(contentsOfFile: errors, encoding: .utf8)
        #expect(messages.contains("note: --lr 0.5 (saved: 0.001) is ignored"), "\(messages)")
        #expect(!messages.contains("--config") && !messages.contains("--seed"), "\(messages)")
        let a = try Checkpoint.load(from: straight).parameters.array
        let b = try Checkpoint.load(from: interrupted).parameters.array
        #expect(a == b, "parameters after an interrupted + resumed run equal an uninterrupted run's")
    }

    @Test("killing the process at random moments, even mid-save, always leaves a checkpoint that loads and resumes", .enabled(if: CLIRun.binary != nil, "the tinylm binary is not built beside the tests"))
    func killDuringSave() throws {
        let (corpus, config) = try CLIRun.fixture()
        let out = temporaryPath()
        // Saving every step makes most kills land in or near a save.
        let args = CLIRun.arguments(corpus: corpus, config: config, out: out, steps: 200, saveEvery: 1)
        var rng = SystemRandomNumberGenerator()
        var lastStep = 0
        for attempt in 0..<4 {
            let process = try CLIRun.start(attempt == 0 ? args : args + ["--resume"])
            Thread.sleep(forTimeInterval: Double.random(in: 0.4...1.2, using: &rng))
            kill(process.processIdentifier, SIGKILL)
            CLIRun.wait(process)
            guard FileManager.default.fileExists(atPath: out + "/trainer_state.safetensors") else { continue }
            // Whatever moment the kill hit, the checkpoint is whole.
            let model = try Checkpoint.load(from: out)
            #expect(model.parameters.array.allSatisfy { $0.isFinite })
            let state = try Safetensors.File(path: out + "/trainer_state.safetensors")
            let json = try #require(state.metadata["trainer_state"])
            let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
            let step = (object?["state"] as? [String: Any])?["step"] as? Int
            #expect((step ?? 0) >= lastStep, "progress is never lost")
            lastStep = step ?? lastStep
        }
        let finish = try CLIRun.start(args + ["--resume"])
        CLIRun.wait(finish)
        #expect(!finish.isRunning && finish.terminationStatus == 0)
        #expect(try Checkpoint.load(from: out).parameters.array.allSatisfy { $0.isFinite })
        // No temporary files are left behind by the atomic writes of the finished run.
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: out).filter { $0.contains(".tmp-") }
        #expect(leftovers.count <= 4, "at most one temporary file per killed write: \(leftovers)")
    }

    @Test("the binary finds the files it ships from any working directory, built in place or installed",
          .enabled(if: CLIRun.binary != nil, "the tinylm binary is not built beside the tests"))
    func shippedFilesFromAnywhere() throws {
        let (corpus, config) = try CLIRun.fixture()
        let elsewhere = temporaryPath()
        // Built in place, run from an unrelated directory.
        let run = elsewhere + "/run"
        let errors = elsewhere + "/errors.txt"
        let process = try CLIRun.start(CLIRun.arguments(corpus: corpus, config: config, out: run, steps: 2, saveEvery: 0),
                                       errorFile: errors, directory: elsewhere)
        CLIRun.wait(process)
        #expect(process.terminationStatus == 0, "\((try? String(contentsOfFile: errors, encoding: .utf8)) ?? "")")
        #expect(FileManager.default.fileExists(atPath: run + "/tokenizer.model"))

        // Installed as `make install` lays it out: PREFIX/bin/tinylm, PREFIX/share/tinylm/Tokenizers.
        let prefix = elsewhere + "/prefix"
        try FileManager.default.createDirectory(atPath: prefix + "/bin", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: prefix + "/share/tinylm/Tokenizers", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: CLIRun.binary!, toPath: prefix + "/bin/tinylm")
        try FileManager.default.copyItem(atPath: CLIRun.repository + "/Tokenizers/tinylm-4k.model",
                                         toPath: prefix + "/share/tinylm/Tokenizers/tinylm-4k.model")
        let installed = try CLIRun.start(["init", "--config", "tiny", "--out", elsewhere + "/fresh"], errorFile: errors,
                                         executable: prefix + "/bin/tinylm", directory: elsewhere)
        CLIRun.wait(installed)
        #expect(installed.terminationStatus == 0, "\((try? String(contentsOfFile: errors, encoding: .utf8)) ?? "")")
        let shipped = try Data(contentsOf: URL(fileURLWithPath: CLIRun.repository + "/Tokenizers/tinylm-4k.model"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: elsewhere + "/fresh/tokenizer.model")) == shipped)
    }
}
