import FoundationEssentials
import HoldfastCommandLine
import HoldfastCore
import HoldfastCrypto

/// `holdfast verify`: check a signed document against trusted keys.
struct Verify: Subcommand {
    static let path = ["verify"]
    static let summary = "verify a signed document (JWS/JWT, EdDSA) and print its payload"
    static let positionals = "[TOKEN|FILE|-]"
    static let options = [
        OptionSpec("jwks", value: "FILE", help: "trusted keys as a JWK Set"),
        OptionSpec("public-key", value: "FILE", help: "a trusted key as PEM"),
        OptionSpec("jwt", help: "also check the claims: exp, nbf, iat (and --aud, --iss)"),
        OptionSpec("aud", value: "AUDIENCE", help: "with --jwt: the audience that must be in aud"),
        OptionSpec("iss", value: "ISSUER", help: "with --jwt: the required issuer"),
        OptionSpec("typ", value: "TYPE", help: "the required typ header"),
        OptionSpec("leeway", value: "DURATION", help: "with --jwt: clock skew allowed (default 60s)"),
        OptionSpec("json", help: "print header and payload (or claims) as JSON"),
    ]

    let jwks: String?
    let publicKey: String?
    let jwt: Bool
    let audience: String?
    let issuer: String?
    let type: String?
    let leeway: Int64
    let json: Bool
    let input: String

    init(_ arguments: ParsedArguments) throws(UsageError) {
        jwks = arguments.value("jwks")
        publicKey = arguments.value("public-key")
        guard (jwks == nil) != (publicKey == nil) else { throw UsageError("give exactly one of --jwks and --public-key") }
        jwt = arguments.flag("jwt")
        audience = arguments.value("aud")
        issuer = arguments.value("iss")
        type = arguments.value("typ")
        leeway = try arguments.duration("leeway", allowZero: true) ?? 60
        json = arguments.flag("json")
        guard arguments.positionals.count <= 1 else { throw UsageError("one document at most") }
        input = arguments.positionals.first ?? "-"
        if !jwt, audience != nil || issuer != nil {
            throw UsageError("--aud and --iss go with --jwt")
        }
    }

    func run(_ context: CommandContext) throws -> ExitCode {
        let keys = try trustedKeys(context)
        let token = try document(context)
        do {
            if jwt {
                let validation = JWTValidation(
                    leeway: TimeInterval(leeway), audience: audience, issuer: issuer, type: type
                )
                let verified = try JWT.verify(token, keys: keys, validation: validation)
                try report(header: verified.header, payload: verified.payload, context)
            } else {
                let verified = try JWS.verify(token, keys: keys)
                if let type, verified.header.type != type {
                    throw CryptoError(.wrongType, "document type is \(verified.header.type ?? "unset"), expected \(type)")
                }
                try report(header: verified.header, payload: verified.payload, context)
            }
            return .success
        } catch let error as CryptoError {
            throw CommandFailure("refused: \(error.message)")
        }
    }

    private func trustedKeys(_ context: CommandContext) throws -> VerifyingKeySet {
        if let jwks {
            let bytes = try InputFile.read(jwks, context: context, limit: 1 << 20)
            if let duplicate = JSONDuplicateKeys.first(in: bytes) {
                throw CommandFailure("\(jwks) names \"\(duplicate)\" twice", exitCode: .dataError)
            }
            let set: JWKSet
            do {
                set = try JSONDecoder().decode(JWKSet.self, from: Data(bytes))
            } catch {
                throw CommandFailure("\(jwks) is not a JWK Set", exitCode: .dataError)
            }
            return try VerifyingKeySet(jwks: set)
        }
        let path = publicKey ?? "-"
        return VerifyingKeySet([try VerifyingKey(pem: try InputFile.read(path, context: context, limit: 1 << 20))])
    }

    /// The token itself when the argument looks like one, else a file (or stdin) holding it.
    private func document(_ context: CommandContext) throws -> String {
        var bytes: [UInt8]
        if input != "-", input.split(separator: ".", omittingEmptySubsequences: false).count == 3, !input.contains("/") {
            bytes = Array(input.utf8)
        } else {
            bytes = try InputFile.read(input, context: context, limit: JWS.maximumSize + 1)
        }
        // One trailing newline is how shells and files end a line; anything else is data.
        if bytes.last == UInt8(ascii: "\n") { bytes.removeLast() }
        return String(decoding: bytes, as: UTF8.self)
    }

    private func report(header: JWSHeader, payload: [UInt8], _ context: CommandContext) throws {
        guard json else {
            context.out(String(decoding: payload, as: UTF8.self))
            if payload.last != UInt8(ascii: "\n") { context.out("\n") }
            return
        }
        var object: [String: JSONValue] = ["valid": true, "alg": .string(header.algorithm)]
        if let keyID = header.keyID { object["kid"] = .string(keyID) }
        if let type = header.type { object["typ"] = .string(type) }
        if let parsed = try? JSONDecoder().decode(JSONValue.self, from: Data(payload)) {
            object["payload"] = parsed
        } else {
            object["payload_base64url"] = .string(Base64URL.encode(payload))
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        context.line(String(decoding: try encoder.encode(object), as: UTF8.self))
    }
}
