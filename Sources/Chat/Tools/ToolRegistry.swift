import Foundation

/// A tool the assistant can call: its signature and a handler.
public struct Tool: Sendable {
    public var definition: ToolDefinition
    /// Runs the tool on validated arguments; a thrown error becomes the tool's result.
    public var handler: @Sendable (JSONValue) throws -> JSONValue

    public init(definition: ToolDefinition, handler: @escaping @Sendable (JSONValue) throws -> JSONValue) {
        self.definition = definition
        self.handler = handler
    }
}

/// An error a tool reports to the model (not a crash): the message goes back as the result.
public struct ToolFailure: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Tools by name. Calls are validated against the schema before the handler runs; every
/// failure is returned as `{"error": "…"}`, so the model sees it and can recover.
public struct ToolRegistry: Sendable {
    public private(set) var tools: [Tool] = []

    public init(_ tools: [Tool] = []) {
        for tool in tools { register(tool) }
    }

    public mutating func register(_ tool: Tool) {
        tools.removeAll { $0.definition.name == tool.definition.name }
        tools.append(tool)
    }

    public var definitions: [ToolDefinition] { tools.map(\.definition) }

    /// The result of calling `name` with `arguments`: the handler's value, or `{"error": …}`.
    public func call(_ name: String, arguments: JSONValue) -> JSONValue {
        guard let tool = tools.first(where: { $0.definition.name == name }) else {
            return .object([("error", .string("unknown tool \"\(name)\"; available: \(tools.map(\.definition.name).joined(separator: ", "))"))])
        }
        if let problem = JSONSchema.validate(arguments, against: tool.definition.parameters) {
            return .object([("error", .string(problem))])
        }
        do {
            let result = try tool.handler(arguments)
            guard result.isFinite else {
                return .object([("error", .string("the result is not a finite number (too large or undefined)"))])
            }
            return result
        } catch {
            return .object([("error", .string("\(error)"))])
        }
    }

    /// The calculator, current time and unit conversion tools. `now` supplies the clock (fixed
    /// in tests and synthetic data).
    public static func builtIn(now: @escaping @Sendable () -> Date = { Date() }) -> ToolRegistry {
        ToolRegistry([Calculator.tool, CurrentTime.tool(now: now), UnitConverter.tool])
    }
}
