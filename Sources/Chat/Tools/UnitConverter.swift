/// The `unit_convert` tool: length, mass, volume and temperature.
public enum UnitConverter {
    public enum Dimension: String, Sendable { case length, mass, volume, temperature }

    /// Factors to the dimension's base unit (metre, kilogram, litre); temperatures are special.
    static let units: [String: (Dimension, Double)] = [
        "m": (.length, 1), "km": (.length, 1000), "cm": (.length, 0.01), "mm": (.length, 0.001),
        "mi": (.length, 1609.344), "yd": (.length, 0.9144), "ft": (.length, 0.3048), "in": (.length, 0.0254),
        "kg": (.mass, 1), "g": (.mass, 0.001), "mg": (.mass, 1e-6), "t": (.mass, 1000),
        "lb": (.mass, 0.45359237), "oz": (.mass, 0.028349523125),
        "l": (.volume, 1), "ml": (.volume, 0.001), "m3": (.volume, 1000), "gal": (.volume, 3.785411784),
        "qt": (.volume, 0.946352946), "pt": (.volume, 0.473176473), "cup": (.volume, 0.2365882365),
        "fl_oz": (.volume, 0.0295735295625),
        "c": (.temperature, 1), "f": (.temperature, 1), "k": (.temperature, 1),
    ]

    static let aliases: [String: String] = [
        "meter": "m", "meters": "m", "metre": "m", "metres": "m", "kilometer": "km", "kilometers": "km",
        "centimeter": "cm", "centimeters": "cm", "millimeter": "mm", "millimeters": "mm", "mile": "mi", "miles": "mi",
        "yard": "yd", "yards": "yd", "foot": "ft", "feet": "ft", "inch": "in", "inches": "in",
        "kilogram": "kg", "kilograms": "kg", "gram": "g", "grams": "g", "milligram": "mg", "milligrams": "mg", "tonne": "t", "tonnes": "t",
        "pound": "lb", "pounds": "lb", "lbs": "lb", "ounce": "oz", "ounces": "oz",
        "liter": "l", "liters": "l", "litre": "l", "litres": "l", "milliliter": "ml", "milliliters": "ml",
        "gallon": "gal", "gallons": "gal", "quart": "qt", "quarts": "qt", "pint": "pt", "pints": "pt", "cups": "cup",
        "celsius": "c", "°c": "c", "fahrenheit": "f", "°f": "f", "kelvin": "k",
    ]

    static func canonical(_ unit: String) -> String? {
        let u = unit.lowercased().trimmingCharacters(in: .whitespaces)
        if units[u] != nil { return u }
        return aliases[u]
    }

    public static func convert(_ value: Double, from: String, to: String) throws -> Double {
        guard let f = canonical(from) else { throw ToolFailure("unknown unit \"\(from)\"") }
        guard let t = canonical(to) else { throw ToolFailure("unknown unit \"\(to)\"") }
        let (df, ff) = units[f]!, (dt, ft) = units[t]!
        guard df == dt else { throw ToolFailure("cannot convert \(df.rawValue) (\(from)) to \(dt.rawValue) (\(to))") }
        guard value.isFinite else { throw ToolFailure("the value is not a finite number") }
        if df == .temperature {
            let kelvin: Double = switch f { case "c": value + 273.15; case "f": (value - 32) * 5 / 9 + 273.15; default: value }
            guard kelvin >= 0 else { throw ToolFailure("\(value) \(from) is below absolute zero") }
            return switch t { case "c": kelvin - 273.15; case "f": (kelvin - 273.15) * 9 / 5 + 32; default: kelvin }
        }
        return value * ff / ft
    }

    public static let tool = Tool(
        definition: ToolDefinition(
            name: "unit_convert",
            description: "Convert a quantity between units of length, mass, volume or temperature.",
            parameters: .object([
                ("type", .string("object")),
                ("properties", .object([
                    ("value", .object([("type", .string("number"))])),
                    ("from", .object([("type", .string("string")), ("description", .string("e.g. km, lb, gal, c"))])),
                    ("to", .object([("type", .string("string"))])),
                ])),
                ("required", .array([.string("value"), .string("from"), .string("to")])),
            ])),
        handler: { arguments in
            let value = arguments["value"]?.numberValue ?? .nan
            let from = arguments["from"]?.stringValue ?? "", to = arguments["to"]?.stringValue ?? ""
            let result = try convert(value, from: from, to: to)
            return .object([("value", .number((result * 1e9).rounded() / 1e9)), ("unit", .string(to))])
        })
}

import Foundation
