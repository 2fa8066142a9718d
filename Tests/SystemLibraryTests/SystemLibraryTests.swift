import BrokerClient
@testable import DeviceGuard
import FileWatch
import HoldfastBroker
import PrintGuard
import Testing

/// Each C library is reached through its one owning module, for real, on this machine.
@Suite struct SystemLibraryTests {
    @Test func libudevEnumeratesTheRealSysfs() throws {
        let paths = try UdevContext().devicePaths(subsystem: "mem")
        #expect(paths.contains("/sys/devices/virtual/mem/null"))
    }

    @Test(arguments: [
        (IPPOperation.printJob, "Print-Job"),
        (IPPOperation.createPrinterSubscriptions, "Create-Printer-Subscriptions"),
        (IPPOperation.cupsAddModifyPrinter, "CUPS-Add-Modify-Printer"),
        (IPPOperation.cupsCreateLocalPrinter, "CUPS-Create-Local-Printer"),
    ])
    func libcupsNamesTheGatedOperations(_ operation: IPPOperation, _ name: String) {
        #expect(operation.name == name)
        #expect(IPPOperation(name: name) == operation)
    }

    @Test func libauditResolvesSyscallsAndRecordTypes() {
        #expect(AuditNames.syscallNumber("openat") == 257)
        #expect(AuditNames.syscallNumber("renameat2") == 316)
        #expect(AuditNames.syscallNumber("no_such_syscall") == nil)
        #expect(AuditNames.recordTypeName(1300) == "SYSCALL")
        #expect(AuditNames.recordTypeName(1302) == "PATH")
        #expect(AuditNames.recordTypeName(1327) == "PROCTITLE")
    }

    @Test func libcurlSpeaksHTTPS() {
        #expect(CurlLibrary.supportsHTTPS)
        #expect(CurlLibrary.version.split(separator: ".").count == 3)
    }

    @Test func libmicrohttpdHasEpollAndTLS() {
        #expect(MicroHTTPD.supportsEpoll)
        #expect(MicroHTTPD.supportsTLS)
        #expect(MicroHTTPD.version.first?.isNumber == true)
    }
}
