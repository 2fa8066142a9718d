import CCups

/// The IPP operations PrintGuard gates or restricts (RFC 8011 §5.4, PWG 5100.x, CUPS extensions).
public enum IPPOperation: Int32, Sendable, CaseIterable {
    case printJob = 0x0002
    case createJob = 0x0005
    case releaseJob = 0x000D
    case setJobAttributes = 0x0014
    case createPrinterSubscriptions = 0x0016
    case cupsAddModifyPrinter = 0x4003
    case cupsDeletePrinter = 0x4004
    case cupsMoveJob = 0x400D
    case cupsCreateLocalPrinter = 0x4028

    /// The operation's name as libcups spells it (`ippOpString`), e.g. `Print-Job`.
    public var name: String { String(cString: ippOpString(ipp_op_t(rawValue: rawValue))) }

    /// The operation libcups knows by `name` (`ippOpValue`), if any.
    public init?(name: String) {
        self.init(rawValue: ippOpValue(name).rawValue)
    }
}
