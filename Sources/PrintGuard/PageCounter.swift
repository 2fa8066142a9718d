import HoldfastCompression
import HoldfastCore

/// Counts the pages of the document the gate receives, from its bytes (`docs/print-enforcement.md`).
///
/// Each format is counted from what it says about itself, never from the file size:
/// - PDF: the larger of the `/Type /Page` objects and the `/Kids` references, in plain objects and
///   inflated object streams. An object stream that cannot be inflated, or an indirect `/Kids`,
///   makes it uncountable.
/// - PostScript: the DSC `%%Pages: N` comment (not `(atend)`), else the `%%Page:` comments.
/// - PWG raster (`RaS2`) and CUPS raster (`RaS3`, uncompressed): one page per page header, walking
///   the compressed or raw page data.
/// - Apple raster (URF): the page count in the file header.
/// - Plain text: 66 lines per page, a form feed starts a new one.
/// - JPEG, PNG: one page.
/// Anything else (printer languages such as PCL, unknown formats) is uncountable: nil.
public enum PageCounter {
    public struct Count: Sendable, Equatable {
        /// Pages in one copy of the document, nil when they cannot be counted.
        public let pages: Int64?
        /// The format as the counter recognised it.
        public let format: String
        /// Why the pages could not be counted.
        public let note: String?
        /// The count is only what the document says of itself (PostScript's `%%Pages:`, a URF
        /// header): the program may print more. The policy decides whether to believe it.
        public let declared: Bool

        public init(pages: Int64?, format: String, note: String?, declared: Bool = false) {
            self.pages = pages
            self.format = format
            self.note = note
            self.declared = declared
        }
    }

    public static let linesPerTextPage = 66

    /// A stream may hold several documents back to back: cupsd pipes every document of a
    /// multi-document job through one backend, and a file can be concatenated by hand (a
    /// PostScript interpreter runs both halves). Each document is counted and the pages added; one
    /// uncountable document makes the whole uncountable. A document starts wherever one of these
    /// magics appears, so an embedded one (an EPS inside PostScript) can overcount, never under.
    static let documentMagics: [[UInt8]] = ["%PDF-", "%!PS", "RaS2", "RaS3", "3SaR", "UNIRAST\0"].map { Array($0.utf8) }

    public static func count(_ bytes: UnsafeRawBufferPointer, contentType: String) -> Count {
        let offsets = documentStarts(bytes)
        guard offsets.count > 1, let base = bytes.baseAddress else { return countOne(bytes, contentType: contentType) }
        var total: Int64 = 0
        var formats: [String] = []
        var declared = false
        for (index, start) in offsets.enumerated() {
            var end = index + 1 < offsets.count ? offsets[index + 1] : bytes.count
            // A PDF is read by offsets, not front to back: whatever follows its header may be
            // part of it (an embedded "RaS3" must not cut it short). Its scan runs to the end.
            if starts(UnsafeRawBufferPointer(start: base + start, count: bytes.count - start), "%PDF-") { end = bytes.count }
            let segment = UnsafeRawBufferPointer(start: base + start, count: end - start)
            let counted = countOne(segment, contentType: index == 0 ? contentType : "")
            guard let pages = counted.pages else {
                return Count(pages: nil, format: counted.format, note: "document \(index + 1) of \(offsets.count) in the stream: \(counted.note ?? "uncountable")")
            }
            total += pages
            declared = declared || counted.declared
            if !formats.contains(counted.format) { formats.append(counted.format) }
        }
        return Count(pages: total, format: formats.joined(separator: "+"), note: nil, declared: declared)
    }

    /// 0 and every later offset where a document magic begins.
    static func documentStarts(_ bytes: UnsafeRawBufferPointer) -> [Int] {
        var starts = [0]
        guard bytes.count > 4 else { return starts }
        var index = 1
        let last = bytes.count - 4
        while index <= last {
            let byte = bytes[index]
            if byte == UInt8(ascii: "%") || byte == UInt8(ascii: "R") || byte == UInt8(ascii: "3") || byte == UInt8(ascii: "U") {
                for magic in documentMagics where magic[0] == byte && index + magic.count <= bytes.count {
                    var match = true
                    for offset in 1..<magic.count where bytes[index + offset] != magic[offset] {
                        match = false
                        break
                    }
                    if match {
                        starts.append(index)
                        break
                    }
                }
            }
            index += 1
        }
        return starts
    }

    static func countOne(_ bytes: UnsafeRawBufferPointer, contentType: String) -> Count {
        let type = contentType.lowercased()
        if starts(bytes, "%PDF-") { return pdf(bytes) }
        if starts(bytes, "%!PS") || starts(bytes, "\u{4}%!PS") { return postscript(bytes) }
        if starts(bytes, "RaS2") { return raster(bytes, format: "image/pwg-raster", compressed: true) }
        if starts(bytes, "RaS3") || starts(bytes, "3SaR") { return raster(bytes, format: "application/vnd.cups-raster", compressed: false) }
        if starts(bytes, "UNIRAST\0") { return urf(bytes) }
        if bytes.count >= 3, bytes[0] == 0xFF, bytes[1] == 0xD8, bytes[2] == 0xFF { return Count(pages: 1, format: "image/jpeg", note: nil) }
        if bytes.count >= 4, bytes[0] == 0x89, bytes[1] == 0x50, bytes[2] == 0x4E, bytes[3] == 0x47 { return Count(pages: 1, format: "image/png", note: nil) }
        if type.hasPrefix("text/plain") || type == "application/octet-stream" {
            // Text only when nothing in it could switch a printer to a language (PJL's escape,
            // `@PJL`, a PostScript `%!`): a printer that sniffs would run it, not list it.
            if looksLikeText(bytes), find(bytes, Array("%!".utf8), from: 0) == nil, find(bytes, Array("@PJL".utf8), from: 0) == nil {
                return text(bytes)
            }
            return Count(pages: nil, format: type, note: "the text holds printer-language markers (escape, @PJL or %!)")
        }
        return Count(pages: nil, format: type.isEmpty ? "unknown" : type, note: "pages of \(type.isEmpty ? "this format" : type) cannot be counted")
    }

    public static func count(_ bytes: [UInt8], contentType: String) -> Count {
        bytes.withUnsafeBytes { count($0, contentType: contentType) }
    }

    static func starts(_ bytes: UnsafeRawBufferPointer, _ prefix: String) -> Bool {
        let magic = Array(prefix.utf8)
        guard bytes.count >= magic.count else { return false }
        return zip(bytes.prefix(magic.count), magic).allSatisfy { $0 == $1 }
    }

    // MARK: PDF

    /// What a scan of PDF bytes found.
    struct PDFTally {
        /// `/Type /Page` names: at least one per distinct page object.
        var pageObjects: Int64 = 0
        /// References in direct `/Kids` arrays: at least one per page the tree shows (a page listed
        /// twice is printed twice), plus one per intermediate node.
        var kidReferences: Int64 = 0
        /// A `/Kids` that is not a direct array: its references cannot be seen.
        var indirectKids = false
        /// Offsets of `/Type /ObjStm` names (compressed object streams) in the scanned bytes.
        var objectStreams: [Int] = []
    }

    /// Inflated object streams are capped: a small PDF must not inflate into gigabytes.
    static let maximumInflatedBytes = 64 << 20

    /// PDF pages: the larger of the page objects and the `/Kids` references, over the plain bytes
    /// and every compressed object stream. Names are read with their `#xx` escapes decoded. The scan
    /// has no lexical state (strings, streams and comments are scanned too), so nothing can be
    /// hidden from it by a decoy delimiter; what it finds in content only overcounts. A tree with
    /// intermediate nodes overcounts by their number. `/Count` is not read: it can lie.
    static func pdf(_ bytes: UnsafeRawBufferPointer) -> Count {
        var tally = PDFTally()
        scanPDF(bytes, into: &tally)
        var inflatedTotal = 0
        var seen = Set<Int>()
        for offset in tally.objectStreams {
            guard let (dictionaryStart, _) = enclosingDictionary(bytes, offset), seen.insert(dictionaryStart).inserted else { continue }
            guard let inflated = inflateStream(bytes, around: offset, budget: maximumInflatedBytes - inflatedTotal) else {
                return Count(pages: nil, format: "application/pdf", note: "a compressed object stream of the PDF cannot be read (filter, encryption or size)")
            }
            inflatedTotal += inflated.count
            var inner = PDFTally()
            inflated.withUnsafeBytes { scanPDF($0, into: &inner) }
            tally.pageObjects += inner.pageObjects
            tally.kidReferences += inner.kidReferences
            tally.indirectKids = tally.indirectKids || inner.indirectKids
        }
        if tally.indirectKids {
            return Count(pages: nil, format: "application/pdf", note: "the PDF's page tree has an indirect /Kids array")
        }
        let counted = max(tally.pageObjects, tally.kidReferences)
        guard counted > 0 else { return Count(pages: nil, format: "application/pdf", note: "the PDF has no page tree Holdfast can read") }
        return Count(pages: counted, format: "application/pdf", note: nil)
    }

    static func scanPDF(_ bytes: UnsafeRawBufferPointer, into tally: inout PDFTally) {
        var index = 0
        let end = bytes.count
        // The last stretch skipped as space and comments: a long line of `/Type%` must not be
        // skipped once per occurrence.
        var skipped = (from: 0, to: 0)
        func skipFrom(_ position: Int) -> Int {
            if position >= skipped.from, position < skipped.to { return skipped.to }
            let next = skipSpaceAndComments(bytes, position)
            skipped = (position, next)
            return next
        }
        while index < end {
            guard bytes[index] == UInt8(ascii: "/") else {
                index += 1
                continue
            }
            let start = index
            let (name, after) = readName(bytes, index)
            index = max(after, index + 1)
            switch name {
            case "Type":
                let next = skipFrom(index)
                guard next < end, bytes[next] == UInt8(ascii: "/") else { continue }
                let (value, _) = readName(bytes, next)
                if value == "Page" { tally.pageObjects += 1 }
            case "First":
                // Every object stream has /First (its /Type may be indirect or missing).
                tally.objectStreams.append(start)
            case "Kids":
                var cursor = skipFrom(index)
                guard cursor < end else { continue }
                guard bytes[cursor] == UInt8(ascii: "[") else {
                    if (0x30...0x39).contains(bytes[cursor]) { tally.indirectKids = true }
                    continue
                }
                cursor += 1
                // Count the `R` keywords up to the closing bracket; the scan goes on after it, so an
                // unclosed `[` costs one pass, not one per occurrence.
                while cursor < end, bytes[cursor] != UInt8(ascii: "]") {
                    if bytes[cursor] == UInt8(ascii: "R"), cursor > 0, !isRegular(bytes[cursor - 1]),
                        cursor + 1 >= end || !isRegular(bytes[cursor + 1]) {
                        tally.kidReferences += 1
                    }
                    cursor += 1
                }
                index = cursor
            default:
                break
            }
        }
    }

    /// The name at `index` (a `/`), `#xx` escapes decoded, and the offset after it.
    static func readName(_ bytes: UnsafeRawBufferPointer, _ index: Int) -> (String, Int) {
        var cursor = index + 1
        var decoded: [UInt8] = []
        while cursor < bytes.count, isRegular(bytes[cursor]), decoded.count < 128 {
            if bytes[cursor] == UInt8(ascii: "#"), cursor + 2 < bytes.count,
                let value = UInt8(String(decoding: [bytes[cursor + 1], bytes[cursor + 2]], as: UTF8.self), radix: 16) {
                decoded.append(value)
                cursor += 3
            } else {
                decoded.append(bytes[cursor])
                cursor += 1
            }
        }
        return (String(decoding: decoded, as: UTF8.self), cursor)
    }

    static func skipSpaceAndComments(_ bytes: UnsafeRawBufferPointer, _ start: Int) -> Int {
        var index = skipSpace(bytes, start)
        while index < bytes.count, bytes[index] == UInt8(ascii: "%") {
            while index < bytes.count, bytes[index] != 0x0A, bytes[index] != 0x0D { index += 1 }
            index = skipSpace(bytes, index)
        }
        return index
    }

    /// The inflated data of the stream whose dictionary holds `offset`: FlateDecode only (what
    /// object streams use), at most `budget` bytes. nil when it cannot be read.
    static func inflateStream(_ bytes: UnsafeRawBufferPointer, around offset: Int, budget: Int) -> [UInt8]? {
        guard budget > 0, let (dictionaryStart, dictionaryEnd) = enclosingDictionary(bytes, offset) else { return nil }
        let dictionary = UnsafeRawBufferPointer(rebasing: bytes[dictionaryStart..<dictionaryEnd])
        // Exactly one filter, FlateDecode, and no predictor (object streams have none).
        let filterKey = Array("/Filter".utf8)
        guard let filter = find(dictionary, filterKey, from: 0), find(dictionary, filterKey, from: filter + 1) == nil,
            find(dictionary, Array("/DecodeParms".utf8), from: 0) == nil
        else { return nil }
        var cursor = skipSpace(dictionary, filter + filterKey.count)
        let array = cursor < dictionary.count && dictionary[cursor] == UInt8(ascii: "[")
        if array { cursor = skipSpace(dictionary, cursor + 1) }
        let flate = Array("/FlateDecode".utf8)
        guard cursor + flate.count <= dictionary.count, zip(dictionary[cursor..<(cursor + flate.count)], flate).allSatisfy({ $0 == $1 }) else { return nil }
        cursor += flate.count
        if cursor < dictionary.count, isRegular(dictionary[cursor]) { return nil }
        // One filter only: a filter array must close right after it.
        cursor = skipSpace(dictionary, cursor)
        if array, cursor < dictionary.count, dictionary[cursor] != UInt8(ascii: "]") { return nil }
        guard let keyword = find(bytes, Array("stream".utf8), from: dictionaryEnd), keyword - dictionaryEnd < 64 else { return nil }
        var start = keyword + 6
        if start < bytes.count, bytes[start] == 0x0D { start += 1 }
        if start < bytes.count, bytes[start] == 0x0A { start += 1 }
        guard start < bytes.count, let base = bytes.baseAddress else { return nil }
        return Inflater.inflate(UnsafeRawBufferPointer(start: base + start, count: bytes.count - start), limit: budget)
    }

    /// The `<< … >>` dictionary around `position`: the offsets just after `<<` and at `>>`.
    static func enclosingDictionary(_ bytes: UnsafeRawBufferPointer, _ position: Int) -> (Int, Int)? {
        var start = position
        while start > 1 {
            if bytes[start - 1] == UInt8(ascii: "<"), bytes[start - 2] == UInt8(ascii: "<") { break }
            start -= 1
            if position - start > 4_096 { return nil }
        }
        var depth = 1
        var stop = position
        while stop + 1 < bytes.count {
            if bytes[stop] == UInt8(ascii: "<"), bytes[stop + 1] == UInt8(ascii: "<") {
                depth += 1
                stop += 2
                continue
            }
            if bytes[stop] == UInt8(ascii: ">"), bytes[stop + 1] == UInt8(ascii: ">") {
                depth -= 1
                if depth == 0 { return (start, stop) }
                stop += 2
                continue
            }
            stop += 1
            if stop - position > 65_536 { return nil }
        }
        return nil
    }

    static func isRegular(_ byte: UInt8) -> Bool {
        switch byte {
        case 0x00, 0x09, 0x0A, 0x0C, 0x0D, 0x20: false
        case UInt8(ascii: "("), UInt8(ascii: ")"), UInt8(ascii: "<"), UInt8(ascii: ">"), UInt8(ascii: "["), UInt8(ascii: "]"),
            UInt8(ascii: "{"), UInt8(ascii: "}"), UInt8(ascii: "/"), UInt8(ascii: "%"): false
        default: true
        }
    }

    static func skipSpace(_ bytes: UnsafeRawBufferPointer, _ start: Int) -> Int {
        var index = start
        while index < bytes.count, [0x00, 0x09, 0x0A, 0x0C, 0x0D, 0x20].contains(bytes[index]) { index += 1 }
        return index
    }

    static func find(_ bytes: UnsafeRawBufferPointer, _ needle: [UInt8], from start: Int) -> Int? {
        guard let first = needle.first, needle.count <= bytes.count else { return nil }
        var index = start
        let last = bytes.count - needle.count
        while index <= last {
            if bytes[index] == first {
                var match = true
                for offset in 1..<needle.count where bytes[index + offset] != needle[offset] {
                    match = false
                    break
                }
                if match { return index }
            }
            index += 1
        }
        return nil
    }

    // MARK: PostScript

    static func postscript(_ bytes: UnsafeRawBufferPointer) -> Count {
        var declared: Int64?
        var pageComments: Int64 = 0
        forEachLine(bytes) { line in
            if line.starts(with: Array("%%Pages:".utf8)) {
                let value = String(decoding: line.dropFirst(8), as: UTF8.self).trimmingSpaces
                if let number = Int64(value), number >= 0 { declared = number }
            } else if line.starts(with: Array("%%Page:".utf8)) {
                pageComments += 1
            }
        }
        if let declared, declared > 0 { return Count(pages: declared, format: "application/postscript", note: nil, declared: true) }
        if pageComments > 0 { return Count(pages: pageComments, format: "application/postscript", note: nil, declared: true) }
        return Count(pages: nil, format: "application/postscript", note: "the PostScript has no DSC page comments")
    }

    static func forEachLine(_ bytes: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer.SubSequence) -> Void) {
        var start = 0
        for index in 0..<bytes.count where bytes[index] == 0x0A || bytes[index] == 0x0D {
            if index > start { body(bytes[start..<index]) }
            start = index + 1
        }
        if start < bytes.count { body(bytes[start..<bytes.count]) }
    }

    // MARK: Raster

    static let rasterHeaderBytes = 1_796

    static func raster(_ bytes: UnsafeRawBufferPointer, format: String, compressed: Bool) -> Count {
        let bigEndian = bytes[0] == UInt8(ascii: "R")
        func word(_ offset: Int) -> Int? {
            guard offset + 4 <= bytes.count else { return nil }
            let b = (0..<4).map { Int(bytes[offset + $0]) }
            return bigEndian ? (b[0] << 24 | b[1] << 16 | b[2] << 8 | b[3]) : (b[3] << 24 | b[2] << 16 | b[1] << 8 | b[0])
        }
        var offset = 4
        var pages: Int64 = 0
        while offset < bytes.count {
            // cupsHeight at 276 + 4*... : cupsWidth 372, cupsHeight 376, cupsBitsPerPixel 388, cupsBytesPerLine 392.
            guard offset + rasterHeaderBytes <= bytes.count, let height = word(offset + 376), let bitsPerPixel = word(offset + 388),
                let bytesPerLine = word(offset + 392), height > 0, height < 1_000_000, bytesPerLine > 0, bytesPerLine < 1 << 24,
                bitsPerPixel > 0, bitsPerPixel <= 240
            else {
                return Count(pages: nil, format: format, note: "raster page \(pages + 1) has a malformed header")
            }
            offset += rasterHeaderBytes
            pages += 1
            if compressed {
                let unit = max(1, bitsPerPixel / 8)
                guard let next = skipCompressedPage(bytes, from: offset, height: height, bytesPerLine: bytesPerLine, unit: unit) else {
                    return Count(pages: nil, format: format, note: "raster page \(pages) is truncated")
                }
                offset = next
            } else {
                let size = height * bytesPerLine
                guard offset + size <= bytes.count else { return Count(pages: nil, format: format, note: "raster page \(pages) is truncated") }
                offset += size
            }
        }
        return Count(pages: pages > 0 ? pages : nil, format: format, note: pages == 0 ? "no raster pages" : nil)
    }

    /// PWG 5102.4 compression: per line group a repeat byte, then runs until a line is full:
    /// 0…127 repeats the next unit n+1 times, 129…255 copies 257−n units, 128 fills the line.
    static func skipCompressedPage(_ bytes: UnsafeRawBufferPointer, from start: Int, height: Int, bytesPerLine: Int, unit: Int) -> Int? {
        var offset = start
        var lines = 0
        let unitsPerLine = max(1, bytesPerLine / unit)
        while lines < height {
            guard offset < bytes.count else { return nil }
            lines += Int(bytes[offset]) + 1
            offset += 1
            var units = 0
            while units < unitsPerLine {
                guard offset < bytes.count else { return nil }
                let control = Int(bytes[offset])
                offset += 1
                if control == 128 {
                    units = unitsPerLine
                } else if control < 128 {
                    units += control + 1
                    offset += unit
                } else {
                    let count = 257 - control
                    units += count
                    offset += count * unit
                }
                guard offset <= bytes.count else { return nil }
            }
        }
        return offset
    }

    static func urf(_ bytes: UnsafeRawBufferPointer) -> Count {
        guard bytes.count >= 12 else { return Count(pages: nil, format: "image/urf", note: "the URF header is truncated") }
        let pages = (0..<4).reduce(Int64(0)) { $0 << 8 | Int64(bytes[8 + $1]) }
        return Count(pages: pages > 0 ? pages : nil, format: "image/urf", note: pages > 0 ? nil : "the URF header has no page count", declared: true)
    }

    // MARK: Text

    /// No control bytes but tab, newline, carriage return and form feed, anywhere (UTF-8 is fine).
    static func looksLikeText(_ bytes: UnsafeRawBufferPointer) -> Bool {
        bytes.allSatisfy { $0 >= 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D || $0 == 0x0C } && !bytes.contains(0x7F)
    }

    static func text(_ bytes: UnsafeRawBufferPointer) -> Count {
        guard !bytes.isEmpty else { return Count(pages: 0, format: "text/plain", note: nil) }
        var pages: Int64 = 1
        var lines = 0
        var lastWasNewline = false
        for byte in bytes {
            lastWasNewline = false
            if byte == 0x0C {
                pages += 1
                lines = 0
            } else if byte == 0x0A {
                lines += 1
                lastWasNewline = true
                if lines == linesPerTextPage {
                    pages += 1
                    lines = 0
                }
            }
        }
        // A file that ends exactly at a page boundary does not start an empty page.
        if lines == 0, pages > 1, lastWasNewline || bytes.last == 0x0C { pages -= 1 }
        return Count(pages: pages, format: "text/plain", note: nil)
    }
}
