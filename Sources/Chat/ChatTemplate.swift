import Tokenizer

/// A chat format as data: turn markers, the tool preamble of the system turn, and how tool
/// calls and tool results are wrapped. `ChatTemplate.chatML` is ChatML with Hermes-style tools;
/// another format is another value of this type, with no change to its callers.
public struct ChatTemplate: Sendable {
    public var turnStart = "<|im_start|>"
    public var turnEnd = "<|im_end|>"
    /// Between a turn's role and its content, and after each turn.
    public var newline = "\n"
    /// Added to the system turn when the conversation has tools; `{tools}` becomes one JSON
    /// signature per line.
    public var toolsPreamble = """
    # Tools

    You may call one or more functions to assist with the user query.

    You are provided with function signatures within <tools></tools> XML tags:
    <tools>
    {tools}
    </tools>

    For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:
    <tool_call>
    {"name": <function-name>, "arguments": <args-json-object>}
    </tool_call>
    """
    public var toolCallOpen = "<tool_call>\n"
    public var toolCallClose = "\n</tool_call>"
    public var toolResponseOpen = "<tool_response>\n"
    public var toolResponseClose = "\n</tool_response>"
    /// The format assistant tool calls are parsed with.
    public var toolCallFormat = ToolCallFormat.hermes

    public init() {}

    public static let chatML = ChatTemplate()

    // MARK: Rendering

    /// A span of rendered text, whether the model is trained on it, and whether it is markup the
    /// template emits (its markers become marker tokens) or message text (a marker's spelling
    /// inside it stays text: no message can forge a turn).
    public struct Segment: Sendable, Equatable {
        public var text: String
        public var trained: Bool
        public var isMarkup: Bool

        public init(text: String, trained: Bool, isMarkup: Bool = true) {
            self.text = text
            self.trained = trained
            self.isMarkup = isMarkup
        }
    }

    /// The conversation as segments; assistant content and its closing marker are trained.
    public func segments(_ c: Conversation) -> [Segment] {
        var out: [Segment] = []
        var messages = c.messages
        if !c.tools.isEmpty {
            let list = c.tools.map { $0.json.serialized() }.joined(separator: "\n")
            let preamble = toolsPreamble.replacingOccurrences(of: "{tools}", with: list)
            if let first = messages.first, first.role == .system {
                messages[0].content = first.content.isEmpty ? preamble : first.content + "\n\n" + preamble
            } else {
                messages.insert(Message(role: .system, content: preamble), at: 0)
            }
        }
        func text(_ t: String, trained: Bool) { if !t.isEmpty { out.append(Segment(text: t, trained: trained, isMarkup: false)) } }
        for m in messages {
            out.append(Segment(text: turnStart + m.role.rawValue + newline, trained: false))
            switch m.role {
            case .assistant:
                text(m.content, trained: true)
                for (i, call) in m.toolCalls.enumerated() {
                    let separator = i > 0 || !m.content.isEmpty ? newline : ""
                    out.append(Segment(text: separator + toolCallOpen, trained: true))
                    text(JSONValue.object([("name", .string(call.name)), ("arguments", call.arguments)]).serialized(), trained: true)
                    out.append(Segment(text: toolCallClose, trained: true))
                }
                out.append(Segment(text: turnEnd, trained: true))
                out.append(Segment(text: newline, trained: false))
            case .tool:
                out.append(Segment(text: toolResponseOpen, trained: false))
                text(m.content, trained: false)
                out.append(Segment(text: toolResponseClose + turnEnd + newline, trained: false))
            case .system, .user:
                text(m.content, trained: false)
                out.append(Segment(text: turnEnd + newline, trained: false))
            }
        }
        return out
    }

    /// The trained spans of a conversation: adjacent trained segments joined (one per assistant
    /// turn, its closing marker included).
    public func trainedSpans(_ c: Conversation) -> [String] {
        var spans: [String] = [], current: String?
        for segment in segments(c) {
            if segment.trained { current = (current ?? "") + segment.text } else if let span = current { spans.append(span); current = nil }
        }
        if let current { spans.append(current) }
        return spans
    }

    /// The conversation as text.
    public func render(_ c: Conversation) -> String { segments(c).map(\.text).joined() }

    /// The prompt for the assistant's next turn.
    public func generationPrompt(_ c: Conversation) -> String { render(c) + turnStart + Role.assistant.rawValue + newline }

    /// Token ids and a loss mask (1 on assistant tokens, their closing marker included). Each
    /// segment is encoded on its own, so the mask boundary is exact, and decoding the ids gives
    /// back the rendered text; generation prompts are encoded the same way (`promptIDs`), so
    /// training and inference see the same tokens.
    public func tokenize(_ c: Conversation, with tokenizer: any TextTokenizer) throws -> (ids: [Int32], mask: [UInt8]) {
        var ids: [Int32] = [], mask: [UInt8] = []
        for segment in segments(c) {
            let piece = try encode(segment, tokenizer)
            ids += piece
            mask += [UInt8](repeating: segment.trained ? 1 : 0, count: piece.count)
        }
        return (ids, mask)
    }

    /// Ids of the generation prompt, encoded segment by segment like `tokenize`.
    public func promptIDs(_ c: Conversation, with tokenizer: any TextTokenizer) throws -> [Int32] {
        var ids: [Int32] = []
        for segment in segments(c) { ids += try encode(segment, tokenizer) }
        return ids + (try encode(Segment(text: turnStart + Role.assistant.rawValue + newline, trained: false), tokenizer))
    }

    /// Markup: markers as their single ids, the text between them as mid-text (every piece of a
    /// conversation follows a marker), so the ids decode to exactly the rendered text. Message
    /// text: ordinary text whatever it spells (`encode(plainText:)`).
    private func encode(_ segment: Segment, _ tokenizer: any TextTokenizer) throws -> [Int32] {
        guard segment.isMarkup else { return try tokenizer.encode(plainText: segment.text) }
        var ids: [Int32] = []
        var rest = Substring(segment.text)
        let markers = [turnStart, turnEnd].filter { tokenizer.id(for: $0) != nil }
        while !rest.isEmpty {
            let next = markers.compactMap { marker in rest.range(of: marker).map { ($0, marker) } }.min { $0.0.lowerBound < $1.0.lowerBound }
            guard let (range, marker) = next else {
                ids += try tokenizer.encode(continuing: String(rest))
                break
            }
            if range.lowerBound > rest.startIndex { ids += try tokenizer.encode(continuing: String(rest[..<range.lowerBound])) }
            ids.append(tokenizer.id(for: marker)!)
            rest = rest[range.upperBound...]
        }
        return ids
    }

    // MARK: Parsing

    /// Reads rendered text back into a conversation: `parse(render(c)) == c` for conversations
    /// whose tool results follow their calls.
    public func parse(_ text: String) throws -> Conversation {
        var messages: [Message] = []
        var tools: [ToolDefinition] = []
        var rest = Substring(text)
        var pendingCalls: [ToolCall] = []
        var callCount = 0
        while !rest.isEmpty {
            guard rest.hasPrefix(turnStart) else { throw ChatError.invalidTemplateText(reason: "expected \(turnStart) at \"\(rest.prefix(30))\"") }
            rest = rest.dropFirst(turnStart.count)
            guard let roleEnd = rest.range(of: newline) else { throw ChatError.invalidTemplateText(reason: "a turn has no role line") }
            let roleName = String(rest[..<roleEnd.lowerBound])
            guard let role = Role(rawValue: roleName) else { throw ChatError.invalidTemplateText(reason: "unknown role \"\(roleName)\"") }
            rest = rest[roleEnd.upperBound...]
            // The turn ends at the first turnEnd outside a tool call's JSON strings.
            let (body, after) = try splitTurn(rest, role: role)
            rest = after
            guard rest.hasPrefix(newline) else { throw ChatError.invalidTemplateText(reason: "no newline after \(turnEnd)") }
            rest = rest.dropFirst(newline.count)
            switch role {
            case .system:
                var content = body
                let preambleStart = toolsPreamble.components(separatedBy: "{tools}")[0]
                if let r = content.range(of: preambleStart) {
                    let listEnd = toolsPreamble.components(separatedBy: "{tools}")[1]
                    guard content.hasSuffix(listEnd) else { throw ChatError.invalidTemplateText(reason: "the tools preamble is incomplete") }
                    let list = content[r.upperBound..<content.index(content.endIndex, offsetBy: -listEnd.count)]
                    tools = try list.split(separator: "\n").map { try ToolDefinition(json: JSONValue.parse(String($0))) }
                    content = String(content[..<r.lowerBound])
                    if content.hasSuffix("\n\n") { content.removeLast(2) }
                }
                if !content.isEmpty || tools.isEmpty { messages.append(Message(role: .system, content: content)) }
            case .user:
                messages.append(Message(role: .user, content: body))
            case .assistant:
                var text = ""
                var calls: [ToolCall] = []
                for event in coalesced(HermesToolCallParser.parse(body)) {
                    switch event {
                    case .text(let t): text += t
                    case .toolCall(let call, _):
                        calls.append(ToolCall(id: "call_\(callCount)", name: call.name, arguments: call.arguments))
                        callCount += 1
                    case .error(let e): throw ChatError.invalidTemplateText(reason: "an assistant tool call: \(e)")
                    }
                }
                if !calls.isEmpty {
                    // Calls follow the content on their own lines.
                    text = String(text.dropLast(newline.count * calls.count))
                }
                messages.append(Message(role: .assistant, content: text, toolCalls: calls))
                pendingCalls = calls
            case .tool:
                guard body.hasPrefix(toolResponseOpen), body.hasSuffix(toolResponseClose) else {
                    throw ChatError.invalidTemplateText(reason: "a tool turn is not wrapped in <tool_response>")
                }
                let content = String(body.dropFirst(toolResponseOpen.count).dropLast(toolResponseClose.count))
                let call = pendingCalls.isEmpty ? nil : pendingCalls.removeFirst()
                messages.append(Message(role: .tool, content: content, toolCallID: call?.id, name: call?.name))
            }
        }
        return Conversation(messages: messages, tools: tools)
    }

    private func splitTurn(_ text: Substring, role: Role) throws -> (String, Substring) {
        guard let end = text.range(of: turnEnd) else { throw ChatError.invalidTemplateText(reason: "a \(role.rawValue) turn has no \(turnEnd)") }
        return (String(text[..<end.lowerBound]), text[end.upperBound...])
    }
}
