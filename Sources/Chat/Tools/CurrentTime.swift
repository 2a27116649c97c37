import Foundation

/// The `current_time` tool: the date and time now in an IANA time zone.
public enum CurrentTime {
    public static func tool(now: @escaping @Sendable () -> Date) -> Tool {
        Tool(
            definition: ToolDefinition(
                name: "current_time",
                description: "The current date and time in a time zone.",
                parameters: .object([
                    ("type", .string("object")),
                    ("properties", .object([("timezone", .object([
                        ("type", .string("string")), ("description", .string("IANA name, e.g. Europe/Paris; default UTC")),
                    ]))])),
                ])),
            handler: { arguments in
                let name = arguments["timezone"]?.stringValue ?? "UTC"
                guard let zone = TimeZone(identifier: name) else {
                    throw ToolFailure("unknown time zone \"\(name)\" (use an IANA name such as Europe/Paris)")
                }
                return describe(now(), in: zone)
            })
    }

    static func describe(_ date: Date, in zone: TimeZone) -> JSONValue {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = zone
        formatter.dateFormat = "yyyy-MM-dd'T'HH:mm:ssxxx"
        let iso = formatter.string(from: date)
        formatter.dateFormat = "EEEE"
        let weekday = formatter.string(from: date)
        formatter.dateFormat = "HH:mm"
        let time = formatter.string(from: date)
        return .object([("timezone", .string(zone.identifier)), ("datetime", .string(iso)), ("weekday", .string(weekday)), ("time", .string(time))])
    }
}
