import Foundation
import Testing
@testable import Training

@Suite("training log")
struct TrainingLogTests {
    /// The `step` of each line of the log at `path`.
    static func steps(_ path: String) throws -> [Int] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map { line in
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            return try #require(object?["step"] as? Int, "\(line)")
        }
    }

    @Test("a resumed run keeps the lines up to its step and drops the rest and a cut-off line; a new run starts empty")
    func resumeKeepsItsSteps() throws {
        let directory = temporaryPath()
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = directory + "/log.jsonl"
        let old = (1...5).map { #"{"step": \#($0), "loss": 1.5, "seconds": \#(Double($0) * 10)}"# }
            + [#"{"step": 3, "val_loss": 0.25}"#, #"{"step": 6, "loss": 1."#]
        try (old.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)

        let resumed = try TrainingLog(directory: directory, startingAfter: 3)
        #expect(resumed.previousSeconds == 30)
        try resumed.append(Data(#"{"step": 4, "loss": 0.5}"#.utf8))
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text == [old[0], old[1], old[2], old[5], #"{"step": 4, "loss": 0.5}"#].joined(separator: "\n") + "\n")

        let fresh = try TrainingLog(directory: directory, startingAfter: 0)
        #expect(fresh.previousSeconds == 0)
        #expect(try String(contentsOfFile: path, encoding: .utf8).isEmpty)
        // Resuming where no log is: an empty one.
        try FileManager.default.removeItem(atPath: path)
        _ = try TrainingLog(directory: directory, startingAfter: 7)
        #expect(try String(contentsOfFile: path, encoding: .utf8).isEmpty)
    }
}
