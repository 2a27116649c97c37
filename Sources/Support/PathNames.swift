/// Parts of a file path, by POSIX rules, without Foundation: `NSString.deletingLastPathComponent`
/// in Swift 6.3's Foundation on Linux traps on a one-character name ("x", "x/"), which made
/// `--out x` crash every command that writes a file.
public enum PathNames {
    /// The folder part of `path`, as `NSString.deletingLastPathComponent` gives it: trailing
    /// slashes ignored, "" for a bare name, "/" for a name at the root.
    public static func parent(of path: String) -> String {
        var bytes = Array(path.utf8)
        while bytes.count > 1 && bytes.last == UInt8(ascii: "/") { bytes.removeLast() }
        if bytes == [UInt8(ascii: "/")] { return "/" }
        guard let slash = bytes.lastIndex(of: UInt8(ascii: "/")) else { return "" }
        var end = slash
        while end > 0 && bytes[end - 1] == UInt8(ascii: "/") { end -= 1 }
        return end == 0 ? "/" : String(decoding: bytes[..<end], as: UTF8.self)
    }

    /// The last name in `path` (trailing slashes ignored; "/" for the root, "" for "").
    public static func lastComponent(of path: String) -> String {
        var bytes = Array(path.utf8)
        while bytes.count > 1 && bytes.last == UInt8(ascii: "/") { bytes.removeLast() }
        if bytes == [UInt8(ascii: "/")] { return "/" }
        let start = bytes.lastIndex(of: UInt8(ascii: "/")).map { $0 + 1 } ?? 0
        return String(decoding: bytes[start...], as: UTF8.self)
    }
}
