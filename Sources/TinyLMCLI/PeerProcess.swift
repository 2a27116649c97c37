import Foundation

/// A peer benchmark running as a line-oriented subprocess: one JSON request per line in, one JSON
/// answer per line out. Keeping it alive lets TinyLM and the peer be measured in alternation.
final class PeerProcess {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    private let process = Process()
    private let input = Pipe()
    private let output = Pipe()
    private let errors = Pipe()
    private var buffer = Data()

    /// Starts `python script` with `environment` added, and waits for its `ready` line.
    init(python: String, script: String, arguments: [String] = [], environment extra: [String: String]) throws {
        guard FileManager.default.fileExists(atPath: script) else {
            throw Failure(description: "\(script) not found (run from the repository root)")
        }
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [python, script] + arguments
        process.environment = ProcessInfo.processInfo.environment.merging(extra) { _, new in new }
        process.standardInput = input
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        _ = try readLine()
    }

    deinit {
        try? input.fileHandleForWriting.close()
        if process.isRunning { process.terminate() }
    }

    /// Sends one request and returns the decoded answer.
    func request<Request: Encodable, Answer: Decodable>(_ value: Request, as type: Answer.Type) throws -> Answer {
        var line = try JSONEncoder().encode(value)
        line.append(0x0A)
        try input.fileHandleForWriting.write(contentsOf: line)
        return try JSONDecoder().decode(Answer.self, from: readLine())
    }

    private func readLine() throws -> Data {
        while true {
            if let newline = buffer.firstIndex(of: 0x0A) {
                let line = buffer[buffer.startIndex..<newline]
                buffer = Data(buffer[(newline + 1)...])
                return Data(line)
            }
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty {
                process.waitUntilExit()
                let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                let last = text.split(separator: "\n").last.map(String.init)
                throw Failure(description: last ?? "the peer exited with status \(process.terminationStatus)")
            }
            buffer.append(chunk)
        }
    }
}
