import Foundation
import Glibc
import HoldfastBroker
import HoldfastCore
import HoldfastTestSupport
import Synchronization
import Testing

/// libmicrohttpd as the broker runs it (plain HTTP on loopback here; HTTPS is covered by the
/// broker's own tests), driven with curl.
@Suite struct HTTPServerTests {
    func curl(_ arguments: [String]) throws -> (code: Int, body: String) {
        let result = try runProcess("/usr/bin/curl", ["-s", "-w", "\n%{http_code}", "--max-time", "20"] + arguments)
        let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
    }

    @Test func answersAndRefusesWhatIsTooLarge() throws {
        let server = HTTPServer(.init(listen: "127.0.0.1:0", threads: 2, maximumBody: 1_024)) { request in
            .respond(.json(200, .object(["method": .string(request.method), "path": .string(request.path), "bytes": .int(Int64(request.body.count)), "q": .string(request.query["q"] ?? "")])))
        }
        try server.start()
        defer { server.stop() }
        let base = "http://127.0.0.1:\(server.port)"
        let get = try curl(["\(base)/v1/x?q=a%20b"])
        #expect(get.code == 200)
        #expect(get.body.trimmingCharacters(in: .whitespacesAndNewlines) == #"{"bytes":0,"method":"GET","path":"/v1/x","q":"a b"}"#)
        let post = try curl(["--data-binary", String(repeating: "x", count: 1_000), "\(base)/p"])
        #expect(post.body.contains(#""bytes":1000"#))
        let large = try curl(["--data-binary", String(repeating: "x", count: 5_000), "\(base)/p"])
        #expect(large.code == 413)
    }

    @Test func aHeaderValueCannotSplitTheResponse() throws {
        let server = HTTPServer(.init(listen: "127.0.0.1:0")) { _ in
            .respond(HTTPResponse(status: 200, headers: ["X-Echo": "a\r\nSet-Cookie: evil=1"], body: Array("ok".utf8)))
        }
        try server.start()
        defer { server.stop() }
        let result = try runProcess("/usr/bin/curl", ["-s", "-i", "http://127.0.0.1:\(server.port)/"])
        #expect(!result.stdout.contains("evil"))
        #expect(result.stdout.hasSuffix("ok"))
    }

    /// A long poll holds the connection without a thread and answers when ready, or with the
    /// timeout answer at the deadline; stopping the server answers held polls with 503.
    @Test func longPollsAreHeldReleasedAndAnsweredOnStop() throws {
        let flag = Mutex(false)
        let server = HTTPServer(.init(listen: "127.0.0.1:0", threads: 1)) { request in
            switch request.path {
            case "/ready":
                return .wait(until: .now + .seconds(20), ready: { flag.withLock { $0 } ? HTTPResponse(status: 200, body: Array("ready".utf8)) : nil }, timeout: HTTPResponse(status: 204))
            case "/short":
                return .wait(until: .now + .milliseconds(300), ready: { nil }, timeout: HTTPResponse(status: 204))
            default:
                return .wait(until: .now + .seconds(60), ready: { nil }, timeout: HTTPResponse(status: 204))
            }
        }
        try server.start()
        let base = "http://127.0.0.1:\(server.port)"
        #expect(try curl(["\(base)/short"]).code == 204)
        // Ten held polls on one thread (curl processes, so no test thread blocks on them), and
        // the server still answers another request meanwhile.
        let held = try (0..<10).map { _ in try Self.launchCurl("\(base)/ready") }
        let deadline = Date().addingTimeInterval(30)
        while server.heldConnections < 10, Date() < deadline { usleep(20_000) }
        #expect(server.heldConnections == 10)
        #expect(try curl(["\(base)/short"]).code == 204)
        flag.withLock { $0 = true }
        #expect(held.map { $0.finish() } == Array(repeating: "200", count: 10))
        // One held when the server stops: it gets 503, not a reset.
        let last = try Self.launchCurl("\(base)/forever")
        while server.heldConnections < 1, Date() < deadline { usleep(20_000) }
        server.stop()
        #expect(last.finish() == "503")
    }

    /// A curl process printing only the status code.
    final class CurlProcess {
        let process = Process()
        let output = Pipe()
        func finish() -> String {
            process.waitUntilExit()
            return String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        }
    }

    static func launchCurl(_ url: String) throws -> CurlProcess {
        let curl = CurlProcess()
        curl.process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        curl.process.arguments = ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "30", url]
        curl.process.standardOutput = curl.output
        try curl.process.run()
        return curl
    }

    @Test(arguments: [("127.0.0.1:8443", true), ("127.9.9.9:1", true), ("[::1]:8443", true), ("0.0.0.0:8443", false), ("10.0.0.1:80", false), ("[::]:1", false), ("localhost:1", false)])
    func loopbackIsNumericAndExact(_ listen: String, _ loopback: Bool) {
        #expect(HTTPServer.isLoopback(listen) == loopback)
    }
}

extension HTTPServerTests {
    /// Framing a proxy could read differently is refused, and so is a declared body over the
    /// route's limit (before it is read), and whatever `early` refuses.
    @Test func framingLimitsAndEarlyRefusals() throws {
        let server = HTTPServer(.init(listen: "127.0.0.1:0", maximumBody: 1 << 20, bodyLimits: ["/small": 10]), early: { _, path, _ in
            path == "/guarded" ? .refuse(.error(401, "unauthenticated", "no")) : .proceed(nil)
        }) { _ in .respond(HTTPResponse(status: 200, body: Array("ok".utf8))) }
        try server.start()
        defer { server.stop() }
        let base = "http://127.0.0.1:\(server.port)"
        #expect(try curl(["--data-binary", String(repeating: "x", count: 11), "\(base)/small"]).code == 413)
        #expect(try curl(["--data-binary", "12345", "\(base)/small"]).code == 200)
        #expect(try curl(["--data-binary", String(repeating: "x", count: 100_000), "\(base)/guarded"]).code == 401)
        // A body on a GET is refused (GETs carry none).
        #expect(try curl(["-X", "GET", "--data-binary", "abc", "\(base)/any"]).code == 413)
        // Content-Length and Transfer-Encoding together: 400, and the connection closes.
        let raw = "POST /any HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n"
        let answer = try runProcess("/usr/bin/python3", ["-c", """
            import socket,sys
            s=socket.create_connection(("127.0.0.1", \(server.port))); s.sendall(sys.argv[1].encode()); s.settimeout(5)
            data=b""
            while True:
                try:
                    chunk=s.recv(65536)
                except Exception:
                    break
                if not chunk: break
                data+=chunk
            print(data.decode(errors="replace"))
            """, raw])
        #expect(answer.stdout.hasPrefix("HTTP/1.1 400"), "\(answer.stdout)")
        #expect(answer.stdout.components(separatedBy: "HTTP/1.1 ").count == 2, "only one answer on that connection: \(answer.stdout)")
    }
}
