import CEditLine
import Foundation
import Support

/// Reading the user's lines: on a terminal through libedit (cursor movement, editing keys,
/// history with the arrow keys, kept across sessions in `~/.cache/tinylm/chat_history`); from a
/// pipe, plain lines, nothing interactive.
final class LineEditor {
    let interactive: Bool
    private let historyPath: String
    private static let historySize: Int32 = 1000

    init(interactive: Bool) {
        self.interactive = interactive
        historyPath = (ProcessInfo.processInfo.environment["TINYLM_HISTORY"]
            ?? NSHomeDirectory() + "/.cache/tinylm/chat_history")
        guard interactive else { return }
        using_history()
        stifle_history(Self.historySize)
        _ = read_history(historyPath)
    }

    /// The next line (without its newline), or nil at the end of input (Ctrl-D).
    func readLine(prompt: String) -> String? {
        guard interactive else { return Swift.readLine(strippingNewline: true) }
        guard let raw = CEditLine.readline(prompt) else { return nil }
        defer { free(raw) }
        let line = String(decoding: UnsafeRawBufferPointer(start: raw, count: strlen(raw)), as: UTF8.self)
        if !line.trimmingCharacters(in: .whitespaces).isEmpty {
            add_history(raw)
            try? FileManager.default.createDirectory(atPath: PathNames.parent(of: historyPath), withIntermediateDirectories: true)
            _ = write_history(historyPath)
        }
        return line
    }
}
