import Chat
import Foundation
import Kernels
import Tokenizer
import Transformer

/// The model side of a chat: it feeds tokens at the next positions of its cache, returns the
/// last one's next-token logits, and can forget positions from a point on.
public protocol ChatModel: AnyObject {
    var contextLength: Int { get }
    var position: Int { get }
    func truncate(to position: Int)
    func feed(_ ids: [Int32]) throws -> [Float]
}

/// A model's inference session as a chat model.
public final class SessionChatModel: ChatModel {
    public let session: InferenceSession
    /// The context the chat uses: the model's, or less (`maxContext`), which bounds the cache.
    public let contextLength: Int
    public init(_ model: TransformerModel, maxContext: Int? = nil, kvBits: KVCacheBits = .fp32) throws {
        session = try InferenceSession(model: model, kvBits: kvBits)
        contextLength = min(model.config.contextLength, maxContext ?? .max)
    }
    public var position: Int { session.position }
    public func truncate(to position: Int) { session.truncate(to: position) }
    public func feed(_ ids: [Int32]) throws -> [Float] { try session.feed(ids) }
}

/// A conversation with a model, turn by turn: the conversation stays in the model's cache, so a
/// turn prefills only what is new; replies stream through the template's tool-call parser; calls
/// run through the tool registry and their results go back to the model until it answers in
/// plain text (or the per-turn call limit is reached). Call markup never reaches the answer text.
public final class ChatEngine {
    public enum Event: Sendable, Equatable {
        /// Answer text, as soon as it is complete UTF-8 and cannot be the start of call markup.
        case text(String)
        /// A call the model made, about to run.
        case toolCall(ToolCall)
        /// Its result, as the model will read it.
        case toolResult(name: String, result: String)
        /// Something the user should know (turns dropped to fit the context, a limit reached).
        case notice(String)
    }

    /// What one reply cost.
    public struct Stats: Sendable {
        public var promptTokens = 0
        /// Tokens actually fed for the prompts (the rest came from the cache).
        public var prefilledTokens = 0
        public var generatedTokens = 0
        public var prefillSeconds = 0.0
        public var decodeSeconds = 0.0
        public var toolCalls = 0
        public var decodeTokensPerSecond: Double { decodeSeconds > 0 ? Double(generatedTokens) / decodeSeconds : 0 }
    }

    public let model: any ChatModel
    public let tokenizer: any TextTokenizer
    public var template: ChatTemplate
    /// The system message (nil: none).
    public var system: String?
    /// The conversation so far, without the system message.
    public private(set) var messages: [Message] = []
    public var tools: ToolRegistry
    public var sampler = Sampler()
    /// Keep tool calls well-formed while they are generated (`ToolCallConstraint`): JSON that
    /// parses, a listed tool's required arguments with their JSON types.
    public var constrainsCalls = true
    /// With greedy decoding and Hermes-style calls, open a call only when the model gives
    /// opening one at least half its probability (`CallOpening`), not whenever the likeliest
    /// single token starts one.
    public var decidesCallsByEvent = true
    /// The probability the last message's first token gave to opening a call (nil when no tools
    /// were listed or the format's calls are not Hermes-style).
    public private(set) var lastCallProbability: Double?
    private lazy var callOpening = CallOpening(marker: ToolCallConstraint.openingMarker, tokenBytes: tokenBytes)
    /// Each token's bytes, for the call constraint.
    private lazy var tokenBytes: [[UInt8]] = (0..<tokenizer.vocabularySize).map { tokenizer.bytes(of: [Int32($0)]) }
    public var maxTokens = 512
    /// Tool calls allowed per user turn.
    public var maxToolCalls = 4
    /// Whether earlier turns keep their tool calls and results in the prompt. Off, a finished
    /// turn keeps only its question and final answer (small models fine-tuned on single
    /// exchanges stay in the form they know; the context also lasts longer).
    public var keepToolTurns = false
    /// Polled between tokens; true stops the reply being generated (Ctrl-C).
    public var shouldStop: () -> Bool = { false }
    /// The ids in the model's cache.
    private var cached: [Int32] = []
    /// Ids that end a reply: EOS and the template's turn markers.
    private let stopIDs: Set<Int32>

    public init(model: any ChatModel, tokenizer: any TextTokenizer, template: ChatTemplate = .chatML,
                system: String? = nil, tools: ToolRegistry = ToolRegistry()) {
        self.model = model
        self.tokenizer = tokenizer
        self.template = template
        self.system = system
        self.tools = tools
        // A reply ends at EOS or its turn's end; a model that starts another turn has ended its own.
        stopIDs = Set([tokenizer.eosID, tokenizer.id(for: template.turnEnd) ?? -1, tokenizer.id(for: template.turnStart) ?? -1].filter { $0 >= 0 })
    }

    /// The whole conversation, system message and tools included.
    public var conversation: Conversation {
        Conversation(messages: (system.map { [Message(role: .system, content: $0)] } ?? []) + messages,
                     tools: tools.definitions)
    }

    /// Forgets the conversation (the system message stays).
    public func clear() { messages.removeAll() }

    /// Replaces the conversation (from `/load`); a leading system message becomes the system.
    public func load(_ c: Conversation) {
        var list = c.messages
        if let first = list.first, first.role == .system { system = first.content; list.removeFirst() }
        messages = list
    }

    /// Answers `text`, streaming events to `onEvent`.
    @discardableResult
    public func send(_ text: String, onEvent: (Event) -> Void) throws -> Stats {
        if !keepToolTurns {
            messages.removeAll { $0.role == .tool || ($0.role == .assistant && !$0.toolCalls.isEmpty && $0.content.isEmpty) }
            for i in messages.indices where !messages[i].toolCalls.isEmpty { messages[i].toolCalls = [] }
        }
        messages.append(Message(role: .user, content: text))
        return try reply(onEvent: onEvent)
    }

    /// Drops the last reply (and the tool turns in it) and answers the last user message again.
    @discardableResult
    public func regenerate(onEvent: (Event) -> Void) throws -> Stats? {
        guard let last = messages.lastIndex(where: { $0.role == .user }) else { return nil }
        messages.removeSubrange((last + 1)...)
        return try reply(onEvent: onEvent)
    }

    private func reply(onEvent: (Event) -> Void) throws -> Stats {
        var stats = Stats()
        var calls = 0
        while true {
            let (answer, found, _) = try generateMessage(stats: &stats, onEvent: onEvent)
            let runnable = found.filter { !$0.name.isEmpty }
            guard !found.isEmpty, !shouldStop() else {
                messages.append(Message(role: .assistant, content: answer))
                return stats
            }
            messages.append(Message(role: .assistant, content: answer, toolCalls: runnable))
            for call in found {
                calls += 1
                stats.toolCalls += 1
                let result: JSONValue
                if call.name.isEmpty {
                    result = call.arguments
                } else {
                    onEvent(.toolCall(call))
                    result = tools.call(call.name, arguments: call.arguments)
                }
                let serialized = result.serialized()
                onEvent(.toolResult(name: call.name.isEmpty ? "(malformed call)" : call.name, result: serialized))
                messages.append(Message(role: .tool, content: serialized, toolCallID: call.name.isEmpty ? nil : call.id,
                                        name: call.name.isEmpty ? nil : call.name))
            }
            if calls >= maxToolCalls {
                onEvent(.notice("stopped after \(calls) tool calls in one turn (the limit)"))
                return stats
            }
        }
    }

    /// The model's next assistant message for `conversation` (its messages after the system
    /// message, which stays as set), without running any call: its text and the calls it made
    /// (a malformed call has an empty name), and why each call that was not made was refused.
    /// For scoring what a model does.
    public func nextMessage(after history: [Message]) throws -> (text: String, calls: [ToolCall], rejected: [ToolCallError]) {
        messages = history
        var stats = Stats()
        let message = try generateMessage(stats: &stats, onEvent: { _ in })
        return (message.answer, message.found, message.rejected)
    }

    /// Generates one assistant message: prompt (reusing the cache), sample until the turn ends,
    /// stream the text through the tool-call parser.
    private func generateMessage(stats: inout Stats, onEvent: (Event) -> Void) throws
        -> (answer: String, found: [ToolCall], rejected: [ToolCallError]) {
        let ids = try promptFitting(onEvent: onEvent)
        stats.promptTokens = ids.count
        // Reuse the cache up to the first id that differs; feed the rest.
        var common = zip(cached, ids).prefix { $0 == $1 }.count
        if common == ids.count { common -= 1 }
        model.truncate(to: common)
        var start = DispatchTime.now().uptimeNanoseconds
        var logits = try model.feed(Array(ids[common...]))
        stats.prefilledTokens += ids.count - common
        stats.prefillSeconds += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        cached = ids
        start = DispatchTime.now().uptimeNanoseconds
        var parser = template.toolCallFormat.makeParser(tools: tools.definitions.isEmpty ? nil : tools.definitions)
        var generated: [Int32] = [], emittedText = "", answer = ""
        var found: [ToolCall] = [], rejected: [ToolCallError] = []
        func handle(_ events: [ToolCallEvent]) {
            for event in events {
                switch event {
                case .text(let t):
                    answer += t
                    onEvent(.text(t))
                case .toolCall(let call, _):
                    found.append(call)
                case .error(let e):
                    // A malformed or invalid call: its text stays out of the answer, and the
                    // model reads why in the tool turn that follows.
                    found.append(ToolCall(id: "call_error_\(found.count)", name: "", arguments: .object([("error", .string(e.message))])))
                    rejected.append(e)
                }
            }
        }
        let vocabulary = tokenizer.vocabularySize
        var constraint = constrainsCalls ? ToolCallConstraint(format: template.toolCallFormat, tools: tools.definitions) : nil
        let hermesTools = template.toolCallFormat == .hermes && !tools.definitions.isEmpty
        lastCallProbability = nil
        while generated.count < maxTokens && model.position < model.contextLength && !shouldStop() {
            let row = Array(logits.prefix(vocabulary))
            // The reply's first token decides whether it opens with a call (`CallOpening`).
            let opening = generated.isEmpty && hermesTools ? callOpening.probability(row) : nil
            if let opening { lastCallProbability = opening }
            var next = if let opening, decidesCallsByEvent && sampler.temperature == 0 {
                callOpening.greedyChoice(row, callProbability: opening)
            } else {
                sampler.sample(row, history: generated)
            }
            if let c = constraint {
                // A token that would break a call is redrawn among those that keep it valid:
                // drawing again from the rest is drawing from the distribution restricted to them.
                if !allows(next, c) { next = sampler.sample(restricted(row, to: c), history: generated) }
                constraint?.feed(tokenBytes[Int(next)])
            }
            if stopIDs.contains(next) { cached.append(next); break }
            generated.append(next)
            cached.append(next)
            let text = try tokenizer.decode(generated)
            if !text.hasSuffix("\u{FFFD}") && text.hasPrefix(emittedText) && text.count > emittedText.count {
                handle(parser.feed(String(text.dropFirst(emittedText.count))))
                emittedText = text
            }
            logits = try model.feed([next])
        }
        let text = try tokenizer.decode(generated)
        if text.count > emittedText.count && text.hasPrefix(emittedText) { handle(parser.feed(String(text.dropFirst(emittedText.count)))) }
        handle(parser.finish())
        stats.generatedTokens += generated.count
        stats.decodeSeconds += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        if shouldStop() { onEvent(.notice("stopped")) }
        return (answer.trimmingCharacters(in: .whitespacesAndNewlines), found, rejected)
    }

    /// Whether token `id` may come next under `constraint`: inside a call, no end of turn and
    /// no token without text of its own (control tokens), which the call's text would not show.
    private func allows(_ id: Int32, _ constraint: ToolCallConstraint) -> Bool {
        if constraint.isInCall && (stopIDs.contains(id) || tokenBytes[Int(id)].isEmpty) { return false }
        return constraint.allows(tokenBytes[Int(id)])
    }

    /// `logits` with every token that would break the call at -∞: the best 32 are tried (the
    /// model's likely choices), then, only if none of them fits, the rest in order of logit
    /// until one does. If nothing fits (cannot happen for a reachable state), the logits as
    /// they were.
    private func restricted(_ logits: [Float], to constraint: ToolCallConstraint) -> [Float] {
        // The best 32 by one pass that keeps them sorted (no sort of the vocabulary).
        let candidates = 32
        var top: [Int] = []
        for i in logits.indices where top.count < candidates || logits[i] > logits[top[top.count - 1]] {
            var at = top.count
            while at > 0 && logits[top[at - 1]] < logits[i] { at -= 1 }
            top.insert(i, at: at)
            if top.count > candidates { top.removeLast() }
        }
        var viable = top.filter { allows(Int32($0), constraint) }
        if viable.isEmpty {
            let order = logits.indices.sorted { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
            if let first = order.first(where: { allows(Int32($0), constraint) }) { viable = [first] }
        }
        guard !viable.isEmpty else { return logits }
        var masked = [Float](repeating: -.infinity, count: logits.count)
        for i in viable { masked[i] = logits[i] }
        return masked
    }

    /// The prompt ids of the conversation, dropping the oldest turns (the system message stays)
    /// until they leave room for a reply of at least a quarter of the context.
    private func promptFitting(onEvent: (Event) -> Void) throws -> [Int32] {
        var dropped = 0
        while true {
            let ids = try template.promptIDs(conversation, with: tokenizer)
            let room = model.contextLength - ids.count
            if room >= min(maxTokens, model.contextLength / 4) || messages.count <= 1 {
                if dropped > 0 { onEvent(.notice("the context was full: dropped the \(dropped) oldest messages")) }
                guard room > 0 else { throw TransformerError.sequenceTooLong(tokens: ids.count + 1, contextLength: model.contextLength) }
                return ids
            }
            // Drop the oldest user turn and everything up to the next one.
            let next = messages.dropFirst().firstIndex { $0.role == .user } ?? messages.count
            dropped += next
            messages.removeFirst(next)
        }
    }
}
