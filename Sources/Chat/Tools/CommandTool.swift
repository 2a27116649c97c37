import Foundation

/// Users' own tools: OpenAI-style function schemas, each bound to a command. A call runs the
/// command directly (an argument vector, never a shell string) with the arguments as JSON on
/// standard input, and reads its JSON answer from standard output, within a time limit and an
/// output limit. A failure (exit status, timeout, too much output, not JSON) is the tool's
/// error result, which the model sees.
///
/// The file is a JSON array of
/// `{"type": "function", "function": {"name", "description", "parameters"}, "command": ["/path/to/program", "arg", …]}`.
public enum CommandTool {
    public static let timeLimit: TimeInterval = 10
    public static let outputLimit = 64 * 1024
    public static let maximumFileBytes = 1 << 20

    /// The tools of `path`; errors name the file and the entry.
    public static func load(_ path: String) throws -> [Tool] {
        guard let data = FileManager.default.contents(atPath: path) else { throw ChatError.invalidData(source: path, reason: "cannot be read") }
        guard data.count <= maximumFileBytes else {
            throw ChatError.invalidData(source: path, reason: "is \(data.count) bytes; a tools file is at most \(maximumFileBytes)")
        }
        guard let text = String(data: data, encoding: .utf8) else { throw ChatError.invalidData(source: path, reason: "is not valid UTF-8") }
        let json: JSONValue
        do { json = try JSONValue.parse(text) } catch { throw ChatError.invalidData(source: path, reason: "is not valid JSON: \(error)") }
        guard case .array(let entries) = json, !entries.isEmpty else {
            throw ChatError.invalidData(source: path, reason: "must be a non-empty JSON array of tool entries")
        }
        var names = Set<String>()
        return try entries.enumerated().map { index, entry in
            let at = "\(path): entry \(index + 1)"
            guard let function = entry["function"], let name = function["name"]?.stringValue, !name.isEmpty else {
                throw ChatError.invalidData(source: at, reason: "needs \"function\" with a \"name\"")
            }
            guard name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }), name.count <= 64 else {
                throw ChatError.invalidData(source: at, reason: "the name '\(name)' must be letters, digits, _ or - (at most 64)")
            }
            guard names.insert(name).inserted else { throw ChatError.invalidData(source: at, reason: "the name '\(name)' is used twice") }
            let parameters = function["parameters"] ?? .object([("type", .string("object")), ("properties", .object([]))])
            guard case .object = parameters else { throw ChatError.invalidData(source: at, reason: "\"parameters\" must be a JSON Schema object") }
            guard case .array(let parts)? = entry["command"], !parts.isEmpty,
                  let command = Optional(parts.compactMap(\.stringValue)), command.count == parts.count, !command[0].isEmpty else {
                throw ChatError.invalidData(source: at, reason: "needs \"command\": a non-empty array of strings (the program and its arguments)")
            }
            guard FileManager.default.isExecutableFile(atPath: command[0]) else {
                throw ChatError.invalidData(source: at, reason: "the command '\(command[0])' is not an executable file (give its full path)")
            }
            let definition = ToolDefinition(name: name, description: function["description"]?.stringValue ?? "", parameters: parameters)
            return Tool(definition: definition) { arguments in try run(command, input: arguments.serialized()) }
        }
    }

    /// Runs `command` with `input` on standard input; its standard output as JSON.
    static func run(_ command: [String], input: String) throws -> JSONValue {
        // A command that exits without reading its input must not kill us with SIGPIPE: the
        // write fails with EPIPE instead, and the command's own status is what counts.
        signal(SIGPIPE, SIG_IGN)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        let stdin = Pipe(), stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { throw ToolFailure("the command could not start: \(error.localizedDescription)") }
        try? stdin.fileHandleForWriting.write(contentsOf: Data(input.utf8))
        try? stdin.fileHandleForWriting.close()
        // Read on another thread, so a hung program is killed at the deadline.
        let collected = OutputBuffer()
        let reader = Thread {
            let handle = stdout.fileHandleForReading
            while let chunk = try? handle.read(upToCount: 4096), !chunk.isEmpty {
                if !collected.append(chunk, limit: outputLimit) { break }
            }
            collected.finish()
        }
        reader.start()
        let deadline = Date().addingTimeInterval(timeLimit)
        while process.isRunning && Date() < deadline && !collected.isOverLimit { usleep(2_000) }
        if process.isRunning {
            process.terminate()
            usleep(50_000)
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
            throw ToolFailure(collected.isOverLimit ? "the command wrote more than \(outputLimit) bytes" : "the command took longer than \(Int(timeLimit)) s")
        }
        process.waitUntilExit()
        collected.wait()
        guard !collected.isOverLimit else { throw ToolFailure("the command wrote more than \(outputLimit) bytes") }
        guard process.terminationStatus == 0 else { throw ToolFailure("the command exited with status \(process.terminationStatus)") }
        guard let text = String(data: collected.data, encoding: .utf8) else { throw ToolFailure("the command's output is not UTF-8") }
        do { return try JSONValue.parse(text) } catch { throw ToolFailure("the command's output is not JSON: \(error)") }
    }
}

/// A command's output as it arrives, up to a limit.
private final class OutputBuffer: @unchecked Sendable {
    private let lock = NSLock()
    private let done = DispatchSemaphore(value: 0)
    private var bytes = Data()
    private var over = false

    func append(_ chunk: Data, limit: Int) -> Bool {
        lock.lock(); defer { lock.unlock() }
        if bytes.count + chunk.count > limit { over = true; return false }
        bytes.append(chunk)
        return true
    }
    func finish() { done.signal() }
    func wait() { done.wait() }
    var isOverLimit: Bool { lock.lock(); defer { lock.unlock() }; return over }
    var data: Data { lock.lock(); defer { lock.unlock() }; return bytes }
}
