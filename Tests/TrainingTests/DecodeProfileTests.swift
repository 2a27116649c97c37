import Foundation
import Testing
import Transformer

/// `tinylm bench decode --profile`: where the prompt's and a decoded token's time go, phase by phase.
@Suite("bench decode --profile", .enabled(if: CLIRun.binary != nil, "the tinylm binary is not built beside the tests"))
struct DecodeProfileTests {
    @Test("every phase of a cached decode is counted once per layer (attention included), and the rows add up to the token's time; the prompt's phases too")
    func phases() throws {
        let directory = temporaryPath() + "/model"
        var config = ModelConfig(vocabularySize: 4096, contextLength: 32, dModel: 16, layers: 3, heads: 2)
        config.initStd = 0.02
        try Checkpoint.save(try TransformerModel(config: config, seed: 1), to: directory,
                            tokenizer: try Data(contentsOf: URL(fileURLWithPath: CLIRun.repository + "/Tokenizers/tinylm-4k.model")))
        let r = try runTinyLM(["bench", "decode", "--model", directory, "--peer", "none", "--rounds", "1", "--prompt-tokens", "8",
                               "--gen-tokens", "6", "--profile"])
        #expect(r.reason == .exit && r.status == 0, "\(r.err)")
        #expect(r.out.contains("Profile of 6 decoded tokens"), "\(r.out)")
        let decoding = phaseTable(r.out, title: "Profile of 6 decoded tokens")
        #expect(decoding.header?.hasSuffix("MB/token    GB/s") == true, "\(decoding.header ?? "")")
        let calls = decoding.rows.mapValues { $0.calls }, share = decoding.share
        var reads: [String: (ms: Double, mb: Double, rate: Double)] = [:]
        for (name, row) in decoding.rows where row.rest.count == 2 { reads[name] = (row.ms, row.rest[0], row.rest[1]) }
        #expect(calls["attention"] == 3 && calls["qkv"] == 3 && calls["rope"] == 3 && calls["mlp down"] == 3, "\(calls)")
        #expect(calls["lm head"] == 1 && calls["norm"] == 7 && calls["sampling"] == 1, "\(calls)")
        // Bytes a token: the output layer's fp32 weights (4,096 × 16), and the cache's keys and
        // values (16 floats each) at 8 + 3.5 positions on average, in 3 layers. Each rate is the
        // bytes over the time, within the rounding of the printed figures.
        #expect(Set(reads.keys) == ["qkv", "attention", "attention out", "mlp up", "mlp down", "lm head"], "\(reads)")
        #expect(reads["lm head"]?.mb == 0.262 && reads["attention"]?.mb == 0.004, "\(reads)")
        for (name, read) in reads where read.ms >= 0.002 {
            let bound = 0.05 + 0.0005 / read.ms + (read.mb + 0.0005) * 0.0005 / (read.ms * (read.ms - 0.0005))
            #expect(abs(read.rate - read.mb / read.ms) <= bound, "\(name): \(read)")
        }
        // The sampled run's choice of each token: its time a token over the token's time is the share printed.
        let sampled = try #require(r.out.split(separator: "\n").first { $0.hasPrefix("sampled (") }, "\(r.out)")
        let figures = sampled.split(separator: ":").last!.split(whereSeparator: { $0 == " " || $0 == "," })
            .compactMap { Double($0.hasSuffix("%") ? $0.dropLast() : $0) }
        // ms a token choosing it, share %, ms a token
        #expect(figures.count == 3 && figures[0] > 0 && figures[0] < figures[2], "\(sampled)")
        // Within the rounding of the three printed figures (ms to 0.001, the share to 0.1%).
        if figures.count == 3 {
            #expect(abs(100 * figures[0] / figures[2] - figures[1]) <= 0.06 + 100 * 0.0005 * (1 / figures[2] + figures[0] / (figures[2] * figures[2])), "\(sampled)")
        }
        #expect(abs(share - 100) <= 0.6, "the shares add to \(share)%")
        // The prompt's one call through the layers: each phase's calls, no sampling, and shares of
        // the prefill's time that add up.
        let prompt = phaseTable(r.out, title: "Profile of the 8-token prefill")
        #expect(prompt.header?.hasSuffix("ms/prompt   share  calls/prompt") == true, "\(r.out)")
        let prefillCalls = prompt.rows.mapValues { $0.calls }
        #expect(prefillCalls["attention"] == 3 && prefillCalls["qkv"] == 3 && prefillCalls["mlp up"] == 3 && prefillCalls["rope"] == 3,
                "\(prefillCalls)")
        #expect(prefillCalls["norm"] == 7 && prefillCalls["lm head"] == 1 && prefillCalls["embedding"] == 1
                && prefillCalls["sampling"] == nil, "\(prefillCalls)")
        #expect(abs(prompt.share - 100) <= 0.6, "the prefill's shares add to \(prompt.share)%")
        // The bandwidth line: decoding's weight rate over the probe's rate is the share it prints.
        let bandwidth = try #require(r.out.split(separator: "\n").first { $0.hasPrefix("read bandwidth") }, "\(r.out)")
        let numbers = bandwidth.split(whereSeparator: { $0 == " " || $0 == "(" || $0 == ")" || $0 == "," || $0 == ";" })
            .compactMap { Double($0.hasSuffix("%") ? $0.dropLast() : $0) }
        // threads, MiB, read GB/s, weights GB/s, share %
        #expect(numbers.count == 5 && numbers[1] == 256, "\(bandwidth)")
        if numbers.count == 5 { #expect(abs(100 * numbers[3] / numbers[2] - numbers[4]) <= 1.5, "\(bandwidth)") }
    }

    /// The phase table printed under the line that starts with `title`: its header, each phase's
    /// figures ("  phase  ms  share%  calls [MB  GB/s]"), and the sum of the shares, the last row's
    /// "(outside the phases)" (which has no calls) included.
    private func phaseTable(_ out: String, title: String)
        -> (header: Substring?, rows: [String: (ms: Double, calls: Double, rest: [Double])], share: Double) {
        let lines = out.split(separator: "\n").drop(while: { !$0.hasPrefix(title) }).dropFirst()
        var rows: [String: (ms: Double, calls: Double, rest: [Double])] = [:], share = 0.0
        for line in lines.dropFirst() {
            let fields = line.split(separator: " ")
            guard let s = fields.firstIndex(where: { $0.hasSuffix("%") }), s >= 2,
                  let percent = Double(fields[s].dropLast()), let ms = Double(fields[s - 1]) else { break }
            share += percent
            if line.contains("(outside the phases)") { break }
            guard fields.count > s + 1, let calls = Double(fields[s + 1]) else { break }
            rows[fields[..<(s - 1)].joined(separator: " ")] = (ms, calls, fields[(s + 2)...].compactMap { Double($0) })
        }
        return (lines.first, rows, share)
    }
}
