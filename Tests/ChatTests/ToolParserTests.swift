import Chat
import Foundation
import Kernels
import Testing

/// Completions per format, from the golden cases below.
let hermesCorpus: [String] = [
    "Plain text only, no calls at all. ümlaut 😀",
    "<tool_call>\n{\"name\": \"calculator\", \"arguments\": {\"expression\": \"2+2\"}}\n</tool_call>",
    "Let me check. <tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call><tool_call>{\"name\": \"b\", \"arguments\": {\"x\": [1, {\"y\": null}]}}</tool_call> Done.",
    "<tool_call>{\"name\": \"echo\", \"arguments\": {\"text\": \"</tool_call> and {braces} and \\\"quotes\\\"\"}}</tool_call>after",
    "<tool_call>\n  {\"name\": \"u\", \"arguments\": {\"s\": \"caf\\u00e9 \\ud83d\\ude00\"}}  \n\n</tool_call>",
    "text before <tool_call>{\"name\": \"broken\", \"arguments\": {\"a\": }}</tool_call> text after",
    "<tool_call>{\"name\": \"cut\", \"arguments\": {\"a\": 1",
    "almost a marker <tool_ca and <tool_cal> and <tool_callx",
    "<tool_call>not json</tool_call>tail",
    "<tool_call>{\"name\": \"x\"} trailing</tool_call>",
    "multi\nline\n\n<tool_call>\n{\"name\": \"nested\", \"arguments\": {\"deep\": {\"a\": [[1, 2], [3]], \"b\": {\"c\": \"}\"}}}}\n</tool_call>\nend with 日本",
]

let llama3Corpus: [String] = [
    "{\"name\": \"calculator\", \"parameters\": {\"expression\": \"3*7\"}}",
    "  \n{\"name\": \"a\", \"parameters\": {\"x\": \"} {\"}}; {\"name\": \"b\", \"parameters\": {}}",
    "<|python_tag|>{\"name\": \"t\", \"parameters\": {\"q\": [1, 2]}} then text",
    "Answer first. <|python_tag|>{\"name\": \"late\", \"parameters\": {}}",
    "{\"not\": \"a call\"} just json text",
    "Just words, no call. <|python_ta",
    "<|python_tag|>{\"name\": \"cut\", \"parameters\": {",
    "<|python_tag|> no json here",
    "{\"name\": \"broken\", \"parameters\": {\"a\": tru}}",
]

let mistralCorpus: [String] = [
    "[TOOL_CALLS][{\"name\": \"calculator\", \"arguments\": {\"expression\": \"1+1\"}}]",
    "Sure. [TOOL_CALLS] [{\"name\": \"a\", \"arguments\": {}}, {\"name\": \"b\", \"arguments\": {\"s\": \"]\"}}] ok",
    "[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\", \"days\": [1, 2]}[TOOL_CALLS]other[ARGS]{}",
    "no calls [TOOL_CALL but almost",
    "[TOOL_CALLS][{\"name\": \"cut\", \"arguments\": {",
    "[TOOL_CALLS] nothing useful",
    "[TOOL_CALLS]name without args marker!",
    "[TOOL_CALLS][{\"name\": \"bad\" \"arguments\": {}}] after",
]

func corpus(_ format: ToolCallFormat) -> [String] {
    switch format {
    case .hermes: hermesCorpus
    case .llama3: llama3Corpus
    case .mistral: mistralCorpus
    }
}

/// The input text the events account for: text deltas plus raw spans, in order.
func reassembled(_ events: [ToolCallEvent]) -> String {
    events.map { event in
        switch event {
        case .text(let t): t
        case .toolCall(_, let raw): raw
        case .error(let e): e.raw
        }
    }.joined()
}

func stream(_ format: ToolCallFormat, _ bytes: [UInt8], splits: [Int]) -> [ToolCallEvent] {
    var parser = format.makeParser()
    var events: [ToolCallEvent] = []
    var start = 0
    for end in splits + [bytes.count] where end > start {
        events += parser.feed(Array(bytes[start..<end]))
        start = end
    }
    return events + parser.finish()
}

@Suite("tool-call parsers")
struct ToolParserTests {
    @Test("streaming in any split gives the one-shot events, and the events partition the input",
          arguments: ToolCallFormat.allCases)
    func streamingEqualsOneShot(_ format: ToolCallFormat) {
        var rng = SplitMix64(seed: 17)
        for text in corpus(format) {
            let bytes = Array(text.utf8)
            let whole = coalesced(stream(format, bytes, splits: []))
            #expect(reassembled(whole) == text, "one-shot partitions \(text.debugDescription)")
            // Every single split point (inside UTF-8 sequences and markers included)...
            for cut in 0...bytes.count {
                let events = stream(format, bytes, splits: [cut])
                #expect(coalesced(events) == whole, "split at \(cut) of \(text.debugDescription)")
            }
            // ...all 1-byte chunks...
            let bytewise = stream(format, bytes, splits: Array(0..<bytes.count))
            #expect(coalesced(bytewise) == whole, "1-byte chunks of \(text.debugDescription)")
            #expect(reassembled(bytewise) == text)
            // ...and random chunkings.
            for _ in 0..<30 {
                var splits: [Int] = []
                var at = 0
                while at < bytes.count {
                    at += 1 + Int(rng.next() % 7)
                    splits.append(min(at, bytes.count))
                }
                #expect(coalesced(stream(format, bytes, splits: splits)) == whole, "random split of \(text.debugDescription)")
            }
        }
    }

    @Test("a text delta never waits unless it could start a marker")
    func textIsNotHeldBack() {
        var parser = HermesToolCallParser(tools: nil)
        #expect(parser.feed("Hello wor") == [.text("Hello wor")])
        #expect(parser.feed("ld <tool") == [.text("ld ")])
        #expect(parser.feed("box>") == [.text("<toolbox>")])
        // An incomplete UTF-8 sequence waits for its continuation.
        #expect(parser.feed([0xE6, 0x97]) == [])
        #expect(parser.feed([0xA5]) == [.text("日")])
        #expect(parser.finish() == [])
    }

    func calls(_ events: [ToolCallEvent]) -> [ToolCall] {
        events.compactMap { if case .toolCall(let c, _) = $0 { c } else { nil } }
    }

    func errors(_ events: [ToolCallEvent]) -> [ToolCallError.Kind] {
        events.compactMap { if case .error(let e) = $0 { e.kind } else { nil } }
    }

    @Test("Hermes golden cases")
    func hermesGolden() throws {
        let e = hermesCorpus.map { coalesced(HermesToolCallParser.parse($0)) }
        #expect(e[0] == [.text(hermesCorpus[0])])
        #expect(calls(e[1]).map(\.name) == ["calculator"])
        #expect(calls(e[1])[0].arguments == .object([("expression", .string("2+2"))]))
        #expect(calls(e[2]).map(\.name) == ["a", "b"] && calls(e[2]).map(\.id) == ["call_0", "call_1"])
        #expect(calls(e[2])[1].arguments == (try JSONValue.parse(#"{"x": [1, {"y": null}]}"#)))
        guard case .text("Let me check. ")? = e[2].first, case .text(" Done.")? = e[2].last else { Issue.record("\(e[2])"); return }
        #expect(calls(e[3])[0].arguments["text"]?.stringValue == "</tool_call> and {braces} and \"quotes\"")
        #expect(e[3].last == .text("after"))
        #expect(calls(e[4])[0].arguments["s"]?.stringValue == "café 😀")
        #expect(errors(e[5]) == [.malformedJSON] && e[5].first == .text("text before ") && e[5].last == .text(" text after"))
        #expect(errors(e[6]) == [.unclosedCall])
        #expect(e[7] == [.text(hermesCorpus[7])])
        #expect(errors(e[8]) == [.malformedJSON] && e[8].last == .text("tail"))
        #expect(errors(e[9]) == [.malformedJSON])
        #expect(calls(e[10])[0].arguments["deep"]?["b"]?["c"]?.stringValue == "}")
        #expect(e[10].last == .text("\nend with 日本"))
    }

    @Test("Llama 3 golden cases")
    func llama3Golden() {
        let e = llama3Corpus.map { coalesced(Llama3ToolCallParser.parse($0)) }
        #expect(calls(e[0]).map(\.name) == ["calculator"])
        #expect(calls(e[1]).map(\.name) == ["a", "b"])
        #expect(calls(e[1])[0].arguments["x"]?.stringValue == "} {")
        #expect(calls(e[2]).map(\.name) == ["t"] && e[2].last == .text(" then text"))
        #expect(e[3].first == .text("Answer first. ") && calls(e[3]).map(\.name) == ["late"])
        #expect(calls(e[4]).isEmpty && errors(e[4]).isEmpty, "a JSON object that is not a call is text")
        #expect(e[5] == [.text(llama3Corpus[5])])
        #expect(errors(e[6]) == [.unclosedCall])
        #expect(errors(e[7]) == [.notACall])
        #expect(errors(e[8]) == [.malformedJSON] || calls(e[8]).isEmpty)
    }

    @Test("Mistral golden cases")
    func mistralGolden() {
        let e = mistralCorpus.map { coalesced(MistralToolCallParser.parse($0)) }
        #expect(calls(e[0]).map(\.name) == ["calculator"])
        #expect(calls(e[1]).map(\.name) == ["a", "b"] && e[1].first == .text("Sure. ") && e[1].last == .text(" ok"))
        #expect(calls(e[1])[1].arguments["s"]?.stringValue == "]")
        #expect(calls(e[2]).map(\.name) == ["get_weather", "other"])
        #expect(calls(e[2])[0].arguments == .object([("city", .string("Paris")), ("days", .array([.number(1), .number(2)]))]))
        #expect(e[3] == [.text(mistralCorpus[3])])
        #expect(errors(e[4]) == [.unclosedCall])
        #expect(errors(e[5]) == [.notACall] && e[5].last == .text(" useful"), "\(e[5])")
        #expect(errors(e[6]) == [.notACall])
        #expect(errors(e[7]) == [.malformedJSON] && e[7].last == .text(" after"))
    }

    @Test("unknown tools and arguments that break the schema are errors carrying the raw text",
          arguments: ToolCallFormat.allCases)
    func validation(_ format: ToolCallFormat) {
        let tools = ToolRegistry.builtIn().definitions
        let wrap: (String, String) -> String = { name, args in
            switch format {
            case .hermes: "<tool_call>{\"name\": \"\(name)\", \"arguments\": \(args)}</tool_call>"
            case .llama3: "<|python_tag|>{\"name\": \"\(name)\", \"parameters\": \(args)}"
            case .mistral: "[TOOL_CALLS]\(name)[ARGS]\(args)"
            }
        }
        var parser = format.makeParser(tools: tools)
        let unknown = wrap("rm_rf", "{}")
        let bad = wrap("calculator", "{\"expression\": 42}")
        let missing = wrap("unit_convert", "{\"value\": 1, \"from\": \"m\"}")
        let good = wrap("calculator", "{\"expression\": \"1+1\"}")
        let events = coalesced(parser.feed(unknown + " " + bad + " " + missing + " " + good) + parser.finish())
        #expect(errors(events) == [.unknownTool, .invalidArguments, .invalidArguments])
        #expect(calls(events).map(\.name) == ["calculator"])
        #expect(reassembled(events) == unknown + " " + bad + " " + missing + " " + good)
    }
}
