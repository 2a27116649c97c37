import Foundation
import Support

/// A run's JSONL log (`log.jsonl` in its directory): one JSON object per line, each with the
/// `step` it reports.
///
/// A run that starts at step 0 starts the log empty. A run resumed at step `s` keeps the lines of
/// steps up to `s` and drops the rest: a kill after the last checkpoint leaves lines for steps the
/// resumed run does again, and a line cut off mid-write. Without this the log would hold those
/// steps twice. The kept lines are written back atomically before anything is appended.
public final class TrainingLog {
    /// `directory/log.jsonl`.
    public let path: String
    /// The largest `seconds` among the kept lines (0 for none): a log that counts wall time adds
    /// it, so that its clock runs on across a resume.
    public let previousSeconds: Double
    private let handle: FileHandle

    /// Opens the log of the run in `directory` for a run that starts after step `step`.
    public init(directory: String, startingAfter step: Int) throws {
        path = directory + "/log.jsonl"
        var kept = Data(), seconds = 0.0
        if step > 0, let old = FileManager.default.contents(atPath: path) {
            for line in old.split(separator: UInt8(ascii: "\n")) {
                guard let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any],
                      let lineStep = object["step"] as? Int, lineStep <= step else { continue }
                kept.append(contentsOf: line)
                kept.append(UInt8(ascii: "\n"))
                if let s = object["seconds"] as? Double { seconds = max(seconds, s) }
            }
        }
        previousSeconds = seconds
        try AtomicFile.write(kept, to: path)
        do {
            handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            try handle.seekToEnd()
        } catch {
            throw FileError.unwritable(path: path, reason: "cannot open the log: \(error.localizedDescription)")
        }
    }

    deinit { try? handle.close() }

    /// Appends one line (`object` is one JSON object without its newline). A failed write (a
    /// full disk) throws, naming the log, where `FileHandle.write(_:)` would stop the process.
    public func append(_ object: Data) throws {
        do {
            try handle.write(contentsOf: object + Data("\n".utf8))
        } catch {
            throw FileError.unwritable(path: path, reason: "cannot append to the log: \(error.localizedDescription)")
        }
    }
}
