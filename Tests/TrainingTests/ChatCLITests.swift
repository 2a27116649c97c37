import Chat
import Foundation
import Testing
import Transformer

/// `tinylm chat` as a user scripts it: piped lines in, replies out; commands; a user's tools
/// file; Ctrl-C during a reply; bytes that are not UTF-8.
@Suite("chat from the command line", .serialized, .enabled(if: CLIRun.binary != nil, "the tinylm binary is not built beside the tests"))
struct ChatCLITests {
    /// A small random model with the repository's tokenizer and room for the tools' system
    /// prompt (its replies are noise; the REPL is what is tested).
    static func model(context: Int = 2048) throws -> String {
        let directory = temporaryPath() + "/model"
        var config = ModelConfig(vocabularySize: 4096, contextLength: context, dModel: 16, layers: 1, heads: 2)
        config.positions = .rope
        config.initStd = 0.02
        try Checkpoint.save(try TransformerModel(config: config, seed: 1), to: directory,
                            tokenizer: try Data(contentsOf: URL(fileURLWithPath: CLIRun.repository + "/Tokenizers/tinylm-4k.model")))
        return directory
    }

    static func toolsFile(_ entries: String) throws -> String {
        let path = temporaryPath() + "/tools.json"
        try entries.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test("piped: one message per line, commands work, /save then /load round-trips, bytes that are not UTF-8 are read, not fatal")
    func piped() throws {
        let model = try Self.model(), saved = temporaryPath() + "/conversation.jsonl"
        var input = Data("hello there\n/tools\n/system Be brief.\n/save \(saved)\n".utf8)
        input += Data([0xFF, 0xFE, 0x41, 0x0A])   // not UTF-8
        input += Data("/load \(saved)\n/clear\n/help\n/nonsense\n/exit\n".utf8)
        let r = try runTinyLM(["chat", "--model", model, "--max-tokens", "8", "--temperature", "0"], stdin: input)
        #expect(r.reason == .exit && r.status == 0, "\(r.err)")
        #expect(r.out.contains("calculator:") && r.out.contains("unit_convert:"), "/tools lists the tools")
        #expect(r.out.contains("saved 2 messages") && r.out.contains("loaded 2 messages"), "\(r.out)")
        #expect(r.out.contains("/regen") && r.err.contains("unknown command /nonsense"))
        let conversation = try ChatDatasets.read(saved, allowEmptyReplies: true)
        #expect(conversation.count == 1 && conversation[0].messages.first { $0.role == .user }?.content == "hello there")
    }

    @Test("a tools file adds the user's commands: arguments on stdin, JSON back; each failure is the tool's error, not the chat's")
    func userTools() throws {
        let file = try Self.toolsFile("""
            [{"type": "function", "function": {"name": "echo", "description": "Returns its arguments.",
              "parameters": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}},
              "command": ["/bin/cat"]},
             {"type": "function", "function": {"name": "broken", "description": "Fails."}, "command": ["/bin/false"]},
             {"type": "function", "function": {"name": "chatty", "description": "Not JSON."}, "command": ["/bin/echo", "hello"]},
             {"type": "function", "function": {"name": "flood", "description": "Too much output."}, "command": ["/usr/bin/yes"]}]
            """)
        let tools = try CommandTool.load(file)
        var registry = ToolRegistry()
        for tool in tools { registry.register(tool) }
        #expect(registry.call("echo", arguments: .object([("text", .string("héllo \"quoted\""))])).serialized()
                == JSONValue.object([("text", .string("héllo \"quoted\""))]).serialized())
        #expect(registry.call("echo", arguments: .object([])).serialized().contains("error"), "the schema is checked first")
        #expect(registry.call("broken", arguments: .object([]))["error"]?.stringValue?.contains("status 1") == true)
        #expect(registry.call("chatty", arguments: .object([]))["error"]?.stringValue?.contains("not JSON") == true)
        #expect(registry.call("flood", arguments: .object([]))["error"]?.stringValue?.contains("more than") == true)
        // The chat lists them beside the built-in ones.
        let r = try runTinyLM(["chat", "--model", try Self.model(), "--tools-file", file, "--max-tokens", "4"], stdin: Data("/tools\n".utf8))
        #expect(r.status == 0 && r.out.contains("echo: Returns its arguments.") && r.out.contains("calculator:"), "\(r.out)\(r.err)")
        // Bad files name the file and the entry.
        for (text, fragment) in [("{}", "non-empty JSON array"), ("[{\"function\": {\"name\": \"x\"}}]", "entry 1: needs \"command\""),
                                 ("[{\"function\": {\"name\": \"x\"}, \"command\": [\"relative/path\"]}]", "not an executable file"),
                                 ("[{\"function\": {\"name\": \"a b\"}, \"command\": [\"/bin/cat\"]}]", "must be letters"), ("[", "not valid JSON")] {
            try expectRefused(["chat", "--model", try Self.model(), "--tools-file", try Self.toolsFile(text)], fragment)
        }
    }

    @Test("Ctrl-C stops the reply being generated, not the program")
    func interrupt() throws {
        let folder = temporaryPath()
        let inPipe = Pipe(), outPath = folder + "/out.txt"
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: CLIRun.binary!)
        // A long context, so that the reply runs until it is stopped.
        let directory = try Self.model(context: 65536)
        process.arguments = ["chat", "--model", directory, "--max-tokens", "1000000", "--temperature", "1"]
        process.environment = ProcessInfo.processInfo.environment.merging(["TINYLM_THREADS": "2"]) { _, new in new }
        process.standardInput = inPipe
        process.standardOutput = FileHandle(forWritingAtPath: outPath)
        process.standardError = FileHandle.nullDevice
        try process.run()
        inPipe.fileHandleForWriting.write(Data("tell me a very long story\n".utf8))
        Thread.sleep(forTimeInterval: 1.5)
        #expect(process.isRunning, "still replying")
        kill(process.processIdentifier, SIGINT)
        Thread.sleep(forTimeInterval: 0.5)
        #expect(process.isRunning, "the program goes on after Ctrl-C")
        inPipe.fileHandleForWriting.write(Data("/tools\n".utf8))
        try inPipe.fileHandleForWriting.close()
        CLIRun.wait(process, seconds: 60)
        #expect(process.terminationReason == .exit && process.terminationStatus == 0)
        let out = try String(contentsOfFile: outPath, encoding: .utf8)
        #expect(out.contains("calculator:"), "the next line was still read")
    }
}
