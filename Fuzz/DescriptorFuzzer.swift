// libFuzzer entry point for the USB descriptor parser (`make fuzz`). Built with
// `swiftc -sanitize=fuzzer,address` together with Sources/DeviceGuard/USBDescriptors.swift, which
// depends on nothing else. Any crash, trap or sanitizer report is a finding; a descriptor set
// that parses must describe at least one configuration.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDescriptors(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if let parsed = try? DescriptorParser.parse(bytes) {
        precondition(!parsed.configurations.isEmpty, "a parsed device without configurations")
        precondition(parsed.configurations.count == parsed.device.configurationCount, "configuration count disagrees")
    }
    return 0
}
