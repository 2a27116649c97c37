import Foundation
import Testing

/// The macOS build cannot be compiled here, so its code paths are checked in the source: every
/// use of a platform module (`Glibc`, `Darwin`) must sit in a branch for that platform, and every
/// such branch must have one for the other platform beside it.
@Suite("portability of the sources")
struct PortabilityTests {
    static let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Sources").path

    /// Problems in one file's text: platform-module uses outside their branch, and branches
    /// without the other platform's alternative.
    static func problems(in text: String, file: String) -> [String] {
        var problems: [String] = []
        // The conditions of the enclosing #if / #elseif / #else branches.
        var stack: [(condition: String, branches: [String])] = []
        for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("//") { continue }
            if line.hasPrefix("#if ") {
                let condition = String(line.dropFirst(4))
                stack.append((condition, [condition]))
            } else if line.hasPrefix("#elseif "), !stack.isEmpty {
                stack[stack.count - 1].condition = String(line.dropFirst(8))
                stack[stack.count - 1].branches.append(stack[stack.count - 1].condition)
            } else if line.hasPrefix("#else"), !stack.isEmpty {
                let others = stack[stack.count - 1].branches.joined(separator: " ")
                stack[stack.count - 1].condition = "else of " + others
                stack[stack.count - 1].branches.append("else")
            } else if line.hasPrefix("#endif"), let block = stack.popLast() {
                let first = block.branches[0]
                let platformSpecific = first.contains("canImport(Glibc)") || first.contains("canImport(Darwin)")
                if platformSpecific && block.branches.count < 2 {
                    problems.append("\(file):\(number + 1): the #if \(first) block has no branch for the other platform")
                }
            }
            for module in ["Glibc", "Darwin"] where line.contains("import \(module)") || line.contains("\(module).") {
                let condition = stack.last?.condition ?? ""
                let linux = condition.contains("canImport(Glibc)") || condition.contains("os(Linux)")
                let darwin = condition.contains("canImport(Darwin)") || condition.contains("os(macOS)")
                let inElse = condition.hasPrefix("else of ")
                let ok = module == "Glibc" ? (linux && !inElse) : (darwin || (inElse && linux))
                if !ok { problems.append("\(file):\(number + 1): \(module) used outside a branch for its platform: \(line)") }
            }
        }
        return problems
    }

    @Test("every Glibc or Darwin use is inside its platform's branch, with the other platform's beside it")
    func platformBranches() throws {
        let files = try #require(FileManager.default.enumerator(atPath: Self.sources)).compactMap { $0 as? String }
            .filter { $0.hasSuffix(".swift") }
        #expect(files.count > 50)
        var problems: [String] = []
        for file in files {
            let text = try String(contentsOfFile: Self.sources + "/" + file, encoding: .utf8)
            problems += Self.problems(in: text, file: file)
        }
        #expect(problems.isEmpty, "\(problems.joined(separator: "\n"))")
    }

    @Test("the check itself finds an unguarded call and a branch without an alternative")
    func checkFindsProblems() {
        let unguarded = "#if canImport(Glibc)\nimport Glibc\n#elseif canImport(Darwin)\nimport Darwin\n#endif\nlet n = Glibc.write(1, p, 2)\n"
        #expect(Self.problems(in: unguarded, file: "a.swift").count == 1)
        let oneSided = "#if canImport(Glibc)\nimport Glibc\n#endif\n"
        #expect(Self.problems(in: oneSided, file: "b.swift").count == 1)
        let fine = "#if canImport(Glibc)\nimport Glibc\n#else\nimport Darwin\n#endif\n#if canImport(Glibc)\nlet w = Glibc.write\n#else\nlet w = Darwin.write\n#endif\n"
        #expect(Self.problems(in: fine, file: "c.swift").isEmpty)
    }
}
