import ArgumentParser

/// The domain of every numeric option, checked before a command runs (each command's
/// `validate()`), so that an out-of-range value is a usage error naming the option instead of a
/// trap, a hang or a non-finite number written to a file.
enum OptionDomain {
    /// Counts and sizes: whole numbers in `min...max`.
    static func count(_ value: Int, _ option: String, min: Int = 1, max: Int = 1 << 30) throws {
        guard value >= min && value <= max else {
            let domain = max == Int.max ? "≥ \(min)" : "in \(min)...\(max)"
            throw ValidationError("--\(option) must be a whole number \(domain), got \(value)")
        }
    }

    /// An optional count, checked when given.
    static func count(_ value: Int?, _ option: String, min: Int = 1, max: Int = 1 << 30) throws {
        if let value { try count(value, option, min: min, max: max) }
    }

    /// Finite real numbers in `range`; `openLower` excludes the lower bound (a rate of 0, say).
    static func number(_ value: Double, _ option: String, _ range: ClosedRange<Double>, openLower: Bool = false) throws {
        let inside = value.isFinite && range.contains(value) && !(openLower && value == range.lowerBound)
        guard inside else {
            let lower = openLower ? "(\(range.lowerBound)" : "[\(range.lowerBound)"
            throw ValidationError("--\(option) must be a finite number in \(lower), \(range.upperBound)], got \(value)")
        }
    }

    static func number(_ value: Float, _ option: String, _ range: ClosedRange<Double>, openLower: Bool = false) throws {
        try number(Double(value), option, range, openLower: openLower)
    }

    static func number(_ value: Double?, _ option: String, _ range: ClosedRange<Double>, openLower: Bool = false) throws {
        if let value { try number(value, option, range, openLower: openLower) }
    }
}
