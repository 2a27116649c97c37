import Foundation

/// Files TinyLM ships beside its binary (the default tokenizer, shipped checkpoints), found
/// wherever the binary is run from: in the repository it was built in (`.build/release/tinylm`),
/// or installed (`make install`: `PREFIX/bin/tinylm` and `PREFIX/share/tinylm/…`).
public enum ShippedFiles {
    /// The default tokenizer, relative to a shipped-files root.
    public static let defaultTokenizer = "Tokenizers/tinylm-4k.model"

    /// The directories searched, in order: `$TINYLM_HOME`; `share/tinylm` beside the binary's
    /// directory (an installed binary); the binary's directory and each of its ancestors (a
    /// binary built inside the repository).
    public static func roots(executable: String? = executablePath) -> [String] {
        var roots: [String] = []
        if let home = ProcessInfo.processInfo.environment["TINYLM_HOME"], !home.isEmpty { roots.append(home) }
        if let executable {
            var directory = URL(fileURLWithPath: executable).resolvingSymlinksInPath().deletingLastPathComponent()
            roots.append(directory.deletingLastPathComponent().appendingPathComponent("share/tinylm").path)
            while directory.path != "/" && !directory.path.isEmpty {
                roots.append(directory.path)
                directory = directory.deletingLastPathComponent()
            }
        }
        return roots
    }

    /// The running binary.
    public static var executablePath: String? {
        #if os(Linux)
        if let path = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return path }
        #endif
        return Bundle.main.executablePath
    }

    /// The path of shipped file `relative`, or nil when no root has it.
    public static func locate(_ relative: String, executable: String? = executablePath) -> String? {
        for root in roots(executable: executable) {
            let path = root + "/" + relative
            if FileManager.default.fileExists(atPath: path) { return path }
        }
        return nil
    }

    /// The path of shipped file `relative`; an error that says where it looked otherwise.
    public static func path(_ relative: String) throws -> String {
        if let path = locate(relative) { return path }
        throw FileError.notFound(path: relative + " (a file TinyLM ships; looked beside the binary, in its ancestors and share/tinylm, and in $TINYLM_HOME)")
    }
}
