import Foundation

/// Temporary folders that go away with the process. Each is made inside one folder per process,
/// `<system temporary folder>/tinylm-<pid>`, which is removed when the process exits normally
/// (a test run makes hundreds of them and would otherwise leave them all behind).
public enum ScratchDirectory {
    /// The process's folder, made on first use; removing it is registered with `atexit`.
    static let root: String = {
        let path = FileManager.default.temporaryDirectory
            .appendingPathComponent("tinylm-\(ProcessInfo.processInfo.processIdentifier)").path
        // What an earlier process with the same id left (it crashed, or was killed) is stale.
        try? FileManager.default.removeItem(atPath: path)
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(atPath: ScratchDirectory.root) }
        return path
    }()

    /// A new, empty folder `prefix-<UUID>` inside the process's folder.
    public static func make(_ prefix: String) -> String {
        let path = root + "/\(prefix)-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// The path of a file `name` directly inside the process's folder (not created).
    public static func file(_ name: String) -> String { root + "/" + name }
}
