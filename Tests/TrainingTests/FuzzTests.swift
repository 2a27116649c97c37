import Fuzzing
import Testing

/// Every parser of untrusted input against a few thousand mutated inputs: no trap, every refusal
/// described, every byte of a completion accounted for. `tinylm fuzz` runs longer.
@Suite("fuzzing the parsers")
struct FuzzTests {
    @Test("no crash, no lost byte, no silent refusal", arguments: FuzzTarget.allCases)
    func fuzz(_ target: FuzzTarget) throws {
        let report = try Fuzzer.run(target, iterations: 2000, seed: 20261126)
        #expect(report.failures.isEmpty, "\(report.failures.prefix(3).map { "\($0.message): \($0.input.prefix(80))" })")
        // The mutations reach both sides of the parser.
        #expect(report.accepted > 20 && report.refused > 20, "\(report)")
    }
}

@Suite("inputs the long fuzz runs found")
struct FuzzRegressionTests {
    @Test("a d_model whose default d_ff overflows is refused, naming d_model")
    func hugeDModel() throws {
        let text = #"{"vocab_size": 64, "context_length": 8, "d_model": 8999999999999999999, "n_layers": 1, "n_heads": 2}"#
        #expect(throws: (any Error).self) { try ModelConfigProbe.decode(text) }
        do { try ModelConfigProbe.decode(text) } catch { #expect("\(error)".contains("d_model"), "\(error)") }
    }
}

import Foundation
import Transformer

enum ModelConfigProbe {
    static func decode(_ text: String) throws { _ = try ModelConfig.decode(Data(text.utf8), source: "probe") }
}
