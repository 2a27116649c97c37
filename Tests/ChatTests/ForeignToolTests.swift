@testable import Chat
import Foundation
import Testing

@Suite("foreign tools: other domains' functions for synthetic data")
struct ForeignToolTests {
    /// A deterministic draw (a linear congruential stream), as the generator's own.
    static func draws(seed: UInt64) -> ForeignToolDraw {
        nonisolated(unsafe) var state = seed
        return ForeignToolDraw(int: { range in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return range.lowerBound + Int((state >> 33) % UInt64(range.count))
        })
    }

    @Test("every wording states every argument, and the arguments fit the tool's schema")
    func argumentsStated() {
        let names = ForeignTool.all.map(\.definition.name)
        #expect(Set(names).count == names.count)
        for tool in ForeignTool.all {
            var d = Self.draws(seed: 7)
            for _ in 0..<40 {
                let example = tool.example(&d)
                #expect(JSONSchema.validate(example.arguments, against: tool.definition.parameters) == nil, "\(tool.definition.name): \(example.arguments)")
                guard case .object(let arguments) = example.arguments else { Issue.record("\(tool.definition.name)"); continue }
                for request in example.requests {
                    for (key, value) in arguments {
                        // A code or ticker the schema asks for may be the name a request gives turned
                        // into its code ("Tesla" → TSLA, "euro" → EUR): then it is a code.
                        let description = tool.definition.parameters["properties"]?[key]?["description"]?.stringValue ?? ""
                        if description.contains("code") || description.contains("symbol") {
                            #expect(value.stringValue.map { $0 == $0.uppercased() && (3...5).contains($0.count) } == true, "\(key) = \(value)")
                            continue
                        }
                        let spoken = value.stringValue ?? value.numberValue.map(JSONValue.format) ?? value.serialized()
                        #expect(request.lowercased().contains(spoken.lowercased()), "\(tool.definition.name).\(key) = \(spoken) not in \"\(request)\"")
                    }
                }
                #expect(!example.answer.isEmpty)
            }
        }
    }

    @Test("knowledge lookups answer with the real fact their result holds")
    func knowledgeFacts() {
        let lookups = ["history.get_event_date", "science.find_discoverer", "get_head_of_state", "biology.function_lookup"]
        for name in lookups {
            let tool = ForeignTool.all.first { $0.definition.name == name }
            #expect(tool != nil, "\(name) missing")
            guard let tool else { continue }
            var d = Self.draws(seed: 11)
            for _ in 0..<20 {
                let example = tool.example(&d)
                guard case .object(let result) = example.result else { Issue.record("\(name)"); continue }
                // Every value of the result is in the answer in words.
                for (_, value) in result {
                    let spoken = value.stringValue ?? value.numberValue.map(JSONValue.format) ?? ""
                    #expect(example.answer.lowercased().contains(spoken.lowercased()), "\(name): \(spoken) not in \"\(example.answer)\"")
                }
            }
        }
        let events = ForeignTool.all.first { $0.definition.name == "history.get_event_date" }!
        var d = Self.draws(seed: 3), checked = 0
        for _ in 0..<40 {
            let example = events.example(&d)
            let year = example.result["year"]?.numberValue
            switch example.arguments["event"]?.stringValue {
            case "fall of the Berlin Wall": #expect(year == 1989); checked += 1
            case "first Moon landing": #expect(year == 1969); checked += 1
            default: break
            }
        }
        #expect(checked > 0, "neither known event was drawn")
    }
}
