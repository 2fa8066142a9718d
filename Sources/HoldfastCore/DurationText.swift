/// Durations as people type them on a command line: `90s`, `10m`, `2h`, `1d`, `1w`, or `1h30m`.
public enum DurationText {
    /// Seconds in `text`, or nil when it is not a positive duration in this notation.
    public static func seconds(_ text: String) -> Int64? {
        guard !text.isEmpty else { return nil }
        var total: Int64 = 0
        var number: Int64?
        for character in text {
            if let digit = character.wholeNumberValue, character.isASCII {
                let (scaled, overflow1) = (number ?? 0).multipliedReportingOverflow(by: 10)
                let (next, overflow2) = scaled.addingReportingOverflow(Int64(digit))
                if overflow1 || overflow2 { return nil }
                number = next
                continue
            }
            let unit: Int64
            switch character {
            case "s": unit = 1
            case "m": unit = 60
            case "h": unit = 3_600
            case "d": unit = 86_400
            case "w": unit = 604_800
            default: return nil
            }
            guard let value = number else { return nil }
            let (part, overflow1) = value.multipliedReportingOverflow(by: unit)
            let (sum, overflow2) = total.addingReportingOverflow(part)
            if overflow1 || overflow2 { return nil }
            total = sum
            number = nil
        }
        // A bare trailing number has no unit: refuse rather than guess.
        guard number == nil, total > 0 else { return nil }
        return total
    }

    /// Seconds in the same notation, largest units first: 28800 → `8h`, 5400 → `1h30m`, 0 → `0s`.
    public static func text(_ seconds: Int64) -> String {
        guard seconds > 0 else { return "0s" }
        var rest = seconds
        var text = ""
        for (unit, size) in [("d", Int64(86_400)), ("h", 3_600), ("m", 60), ("s", 1)] where rest >= size {
            text += "\(rest / size)\(unit)"
            rest %= size
        }
        return text
    }
}
