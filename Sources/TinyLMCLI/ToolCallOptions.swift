import ArgumentParser
import ChatEngine

/// How a reply's tool calls are decoded: the flags `chat` and `eval-tools` share, so that an
/// evaluation measures the decoding the chat uses.
struct ToolCallOptions: ParsableArguments {
    @Flag(inversion: .prefixedNo, help: "Keep tool calls well-formed while they are generated: JSON that parses, a listed tool's required arguments with their JSON types (Hermes-style calls; the model still picks the tool and the values).")
    var constrainCalls = true
    @Flag(inversion: .prefixedNo, help: "Greedy decoding (temperature 0) opens a tool call only when the model gives opening one at least half its probability, summed over every token that starts the call, not whenever the likeliest token starts one.")
    var callByEvent = true

    /// Sets `engine`'s call decoding to these flags.
    func apply(to engine: ChatEngine) {
        engine.constrainsCalls = constrainCalls
        engine.decidesCallsByEvent = callByEvent
    }
}
