/// The part of JSON Schema tool signatures use: `type` (object, string, number, integer,
/// boolean, array, null), `properties`, `required`, `additionalProperties: false`, `enum`,
/// `items`, `minimum`, `maximum`.
public enum JSONSchema {
    /// nil when `value` matches `schema`; otherwise what is wrong, with its path.
    public static func validate(_ value: JSONValue, against schema: JSONValue, path: String = "arguments") -> String? {
        if let options = schema["enum"], case .array(let allowed) = options, !allowed.contains(value) {
            return "\(path) must be one of \(options), got \(value)"
        }
        if let type = schema["type"]?.stringValue {
            switch (type, value) {
            case ("object", .object(let fields)):
                let properties = schema["properties"]?.objectFields ?? []
                if case .array(let required)? = schema["required"] {
                    for case .string(let name) in required where !fields.contains(where: { $0.key == name }) {
                        return "\(path).\(name) is required"
                    }
                }
                for field in fields {
                    if let property = properties.first(where: { $0.key == field.key }) {
                        if let problem = validate(field.value, against: property.value, path: "\(path).\(field.key)") { return problem }
                    } else if case .bool(false)? = schema["additionalProperties"] {
                        return "\(path).\(field.key) is not a known argument"
                    }
                }
            case ("array", .array(let items)):
                if let itemSchema = schema["items"] {
                    for (i, item) in items.enumerated() {
                        if let problem = validate(item, against: itemSchema, path: "\(path)[\(i)]") { return problem }
                    }
                }
            case ("string", .string), ("boolean", .bool), ("null", .null):
                break
            case ("number", .number(let n)), ("integer", .number(let n)):
                if type == "integer" && n != n.rounded() { return "\(path) must be an integer, got \(value)" }
                if let low = schema["minimum"]?.numberValue, n < low { return "\(path) must be ≥ \(JSONValue.format(low)), got \(value)" }
                if let high = schema["maximum"]?.numberValue, n > high { return "\(path) must be ≤ \(JSONValue.format(high)), got \(value)" }
            default:
                return "\(path) must be \(type == "integer" ? "an" : "a") \(type), got \(value)"
            }
        }
        return nil
    }
}
