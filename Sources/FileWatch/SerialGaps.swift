/// Finds audit serial numbers that never arrived.
///
/// The kernel numbers every event it emits from one counter per boot; records it had to drop
/// (backlog full, rate limit) leave holes, and so does anything lost between auditd and us. Events
/// arrive nearly in order (CPUs interleave a little), so a serial counts as missing only once 1,024
/// later ones have arrived without it. A jump of more than a million, or a step back past the
/// window, is a new counter (a reboot, another node) rather than a loss: tracking restarts there.
public struct SerialGapTracker: Sendable {
    public static let window: UInt64 = 1_024
    static let restartJump: UInt64 = 1_000_000

    struct Node: Sendable {
        var first: UInt64
        var highest: UInt64
        var seen: [Bool] = Array(repeating: false, count: Int(SerialGapTracker.window))
    }

    private var nodes: [String: Node] = [:]
    /// Serials that never arrived, in total.
    public private(set) var missing: UInt64 = 0
    /// Times tracking restarted (reboots seen, counter resets).
    public private(set) var restarts = 0

    public init() {}

    /// Notes an event; returns how many serials were newly found missing.
    @discardableResult
    public mutating func saw(node: String?, serial: UInt64) -> UInt64 {
        let key = node ?? ""
        // 0 is no serial; the top of the range cannot be a kernel's (and would overflow the window math).
        guard serial > 0, serial < UInt64.max - Self.window else { return 0 }
        guard var state = nodes[key] else {
            var fresh = Node(first: serial, highest: serial)
            fresh.seen[Int(serial % Self.window)] = true
            nodes[key] = fresh
            return 0
        }
        nodes[key] = nil
        defer { nodes[key] = state }
        if serial <= state.highest {
            if state.highest - serial < Self.window {
                if serial >= state.first { state.seen[Int(serial % Self.window)] = true }
                return 0
            }
            restarts += 1
            state = Node(first: serial, highest: serial)
            state.seen[Int(serial % Self.window)] = true
            return 0
        }
        let jump = serial - state.highest
        if jump > Self.restartJump {
            restarts += 1
            state = Node(first: serial, highest: serial)
            state.seen[Int(serial % Self.window)] = true
            return 0
        }
        var found: UInt64 = 0
        let window = Self.window
        // The lowest serial still inside the window once `serial` is the highest.
        let low = serial + 1 >= window ? serial + 1 - window : 0
        // Serials leaving the window unseen are missing: first those the window held…
        let oldLow = max(state.first, state.highest + 1 >= window ? state.highest + 1 - window : 0)
        if oldLow < low {
            for leaving in oldLow...min(state.highest, low - 1) where !state.seen[Int(leaving % window)] { found += 1 }
        }
        // …then those skipped over entirely (never seen, already below the window).
        if state.highest + 1 < low { found += min(serial, low) - (state.highest + 1) }
        // The serials that enter the window start unseen.
        for entering in max(state.highest + 1, low)...serial { state.seen[Int(entering % window)] = false }
        state.seen[Int(serial % Self.window)] = true
        state.highest = serial
        missing += found
        return found
    }
}
