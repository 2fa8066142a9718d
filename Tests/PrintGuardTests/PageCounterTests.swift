import Foundation
import HoldfastTestSupport
import PrintGuard
import Testing

/// A PWG raster (RaS2) of `pages` pages, each `height` lines of `width` 8-bit gray pixels, with
/// every line group compressed the way PWG 5102.4 says.
func pwgRaster(pages: Int, width: Int = 100, height: Int = 50) -> [UInt8] {
    var bytes = Array("RaS2".utf8)
    func word(_ value: Int) -> [UInt8] { [UInt8(value >> 24 & 0xFF), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)] }
    for _ in 0..<pages {
        var header = [UInt8](repeating: 0, count: 1_796)
        header.replaceSubrange(372..<376, with: word(width))
        header.replaceSubrange(376..<380, with: word(height))
        header.replaceSubrange(384..<388, with: word(8))
        header.replaceSubrange(388..<392, with: word(8))
        header.replaceSubrange(392..<396, with: word(width))
        bytes += header
        // First line: a literal run of 3 pixels, then the rest repeated; then all other lines
        // as one group repeating a white line.
        bytes += [0, 254, 1, 2, 3, UInt8(width - 3 - 1), 0xFF]
        bytes += [UInt8(height - 2), UInt8(width - 1), 0xFF]
    }
    return bytes
}

/// A PDF with a plain decoy page tree (/Count 1) and an object stream holding `inner`, compressed
/// by Python's zlib (the test does not link zlib itself).
func pdfWithObjectStream(inner: String, filter: String = "/FlateDecode", padding: Int = 0, type: String = "/Type /ObjStm") throws -> [UInt8] {
    let script = """
        import sys, zlib
        inner = sys.stdin.buffer.read() + b" " * int(sys.argv[2])
        data = zlib.compress(inner, 9) if sys.argv[1] == "/FlateDecode" else inner.hex().encode()
        out = b"%PDF-1.5\\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\\n"
        out += b"9 0 obj << /Type /Pages /Count 1 >> endobj\\n"
        out += b"5 0 obj << " + sys.argv[3].encode() + b" /N 8 /First 40 /Filter " + sys.argv[1].encode() + b" /Length %d >>\\nstream\\n" % len(data)
        out += data + b"\\nendstream\\nendobj\\n%%EOF\\n"
        sys.stdout.buffer.write(out)
        """
    return try runProcessBytes("/usr/bin/python3", ["-c", script, filter, String(padding), type], stdin: Array(inner.utf8))
}

@Suite struct PageCounterTests {
    func count(_ text: String, _ type: String = "application/octet-stream") -> PageCounter.Count {
        PageCounter.count(Array(text.utf8), contentType: type)
    }

    @Test func pdfPagesAreThePageObjectsAndKidReferences() {
        let pdf = """
            %PDF-1.4
            1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj
            2 0 obj << /Type /Pages /Kids [3 0 R 4 0 R 5 0 R] /Count 3 >> endobj
            3 0 obj << /Type /Page /Parent 2 0 R >> endobj
            4 0 obj << /Type /Page /Parent 2 0 R >> endobj
            5 0 obj << /Type/Page /Parent 2 0 R >> endobj
            """
        #expect(count(pdf) == PageCounter.Count(pages: 3, format: "application/pdf", note: nil))
    }

    @Test func aNestedTreeOvercountsByItsIntermediateNodes() {
        let pdf = """
            %PDF-1.4
            2 0 obj << /Type /Pages /Kids [3 0 R 5 0 R] /Count 3 >> endobj
            3 0 obj << /Type /Pages /Parent 2 0 R /Kids [4 0 R 6 0 R] /Count 2 >> endobj
            4 0 obj << /Type /Page /Parent 3 0 R >> endobj
            5 0 obj << /Type /Page /Parent 2 0 R >> endobj
            6 0 obj << /Type /Page /Parent 3 0 R >> endobj
            """
        #expect(count(pdf).pages == 4)
    }

    @Test func aLyingCountAPageListedTwiceAndEscapedNamesDoNotUndercount() {
        // /Count says 1; the tree lists page 3 three times (printed three times).
        #expect(count("%PDF-1.4\n2 0 obj << /Type /Pages /Kids [3 0 R 3 0 R 3 0 R] /Count 1 >> endobj\n3 0 obj << /Type /Page >> endobj\n").pages == 3)
        // `#xx` escapes in names are decoded, as PDF readers do.
        #expect(count("%PDF-1.4\n<< /T#79pe /Pag#65 >>\n<< /Type /P#61ge >>\n").pages == 2)
        // A /Kids that is not a direct array hides its references.
        let indirect = count("%PDF-1.4\n2 0 obj << /Type /Pages /Kids 7 0 R /Count 1 >> endobj\n3 0 obj << /Type /Page >> endobj\n")
        #expect(indirect.pages == nil)
        #expect(indirect.note == "the PDF's page tree has an indirect /Kids array")
    }

    @Test func anEmbeddedRasterMagicDoesNotCutAPdfShort() {
        // The PDF is scanned to the end (all 10 pages seen), and the bogus raster after the magic
        // makes the whole uncountable: refused, never charged 1.
        let pdf = "%PDF-1.4\n<< /Type /Page >>\n(RaS3)\n" + String(repeating: "<< /Type /Page >>\n", count: 9)
        let counted = count(pdf)
        #expect(counted.pages == nil)
        #expect(counted.note?.hasPrefix("document 2 of 2 in the stream: raster page 1") == true)
        let withPostScript = "%PDF-1.4\n" + String(repeating: "<< /Type /Page >>\n", count: 3) + "%!PS\n%%Pages: 2\n"
        #expect(count(withPostScript).pages == 5)
    }

    @Test func objectStreamsAreFoundWithoutTheirType() throws {
        // An object stream whose /Type is an indirect reference (or missing) still has /First.
        for type in ["/Type 7 0 R", ""] {
            let hidden = try pdfWithObjectStream(inner: String(repeating: " << /Type /Page >>", count: 10), type: type)
            #expect(PageCounter.count(hidden, contentType: "application/pdf").pages == 10, "\(type)")
        }
    }

    @Test func textWithPrinterLanguageMarkersIsUncountable() {
        #expect(count("\u{1B}%-12345X@PJL ENTER LANGUAGE=POSTSCRIPT\nshowpage\n", "text/plain").pages == nil)
        #expect(count("hello\n%!PS\nshowpage\n", "text/plain").pages == nil)
        #expect(count("@PJL JOB\n", "text/plain").pages == nil)
    }

    @Test func aLongLineOfCommentsAfterTypeCostsOnePass() {
        let text = "%PDF-1.4\n" + String(repeating: "/Type%", count: 200_000)
        let started = ContinuousClock.now
        #expect(count(text).pages == nil)
        // Not a speed assertion: a quadratic scan would take hours here; this returns.
        #expect(ContinuousClock.now - started < .seconds(120))
    }

    @Test func aLongUnclosedKidsArrayCostsOnePass() {
        let text = "%PDF-1.4\n" + String(repeating: "/Kids [", count: 200_000)
        let started = ContinuousClock.now
        #expect(count(text).pages == nil)
        // Not a speed assertion: a quadratic scan would take minutes here; this returns.
        #expect(ContinuousClock.now - started < .seconds(120))
    }

    @Test func aLowRootCountDoesNotHidePageObjects() {
        #expect(count("%PDF-1.4\n<< /Type /Pages /Count 1 >>\n<< /Type /Page >>\n<< /Type /Page >>\n<< /Type /Page >>\n").pages == 3)
    }

    @Test func pageTreesInsideCompressedObjectStreamsAreInflatedAndCounted() throws {
        // A real page tree of 7 pages in a FlateDecode object stream, and a decoy of 1 in plain sight.
        let pdf = try pdfWithObjectStream(inner: "<< /Type /Pages /Kids [] /Count 7 >>" + String(repeating: " << /Type /Page /Parent 2 0 R >>", count: 7))
        #expect(PageCounter.count(pdf, contentType: "application/pdf") == PageCounter.Count(pages: 7, format: "application/pdf", note: nil))
    }

    @Test func objectStreamsThatCannotBeReadMakeThePdfUncountable() throws {
        let other = try pdfWithObjectStream(inner: "<< /Type /Pages /Count 7 >>", filter: "/ASCIIHexDecode")
        #expect(PageCounter.count(other, contentType: "application/pdf").pages == nil)
        // 80 MiB of inflated data from a small file: refused, not inflated.
        let bomb = try pdfWithObjectStream(inner: "<< /Type /Pages /Count 7 >>", padding: 80 << 20)
        #expect(bomb.count < 1 << 20)
        #expect(PageCounter.count(bomb, contentType: "application/pdf").pages == nil)
    }

    @Test func pageObjectsCountWithoutATree() {
        #expect(count("%PDF-1.3\n<< /Type /Page >>\n<< /Type /Page >>\n").pages == 2)
    }

    @Test func aPageTreeHiddenInObjectStreamsIsUncountable() {
        let counted = count("%PDF-1.5\n5 0 obj << /Type /ObjStm /N 40 /First 300 /Filter /FlateDecode >> stream\n\u{1}\u{2}\nendstream")
        #expect(counted.pages == nil)
        #expect(counted.note == "a compressed object stream of the PDF cannot be read (filter, encryption or size)")
    }

    @Test func postscriptUsesTheDSCCommentsAndSaysTheyAreOnlyDeclared() {
        #expect(count("%!PS-Adobe-3.0\n%%Pages: 4\n%%EndComments\nshowpage\n") == PageCounter.Count(pages: 4, format: "application/postscript", note: nil, declared: true))
        #expect(count("%!PS-Adobe-3.0\n%%Pages: (atend)\n%%Page: 1 1\nshowpage\n%%Page: 2 2\nshowpage\n%%Trailer\n").pages == 2)
        #expect(count("%!PS\nshowpage\nshowpage\n").pages == nil)
    }

    @Test func pwgRasterPagesAreWalkedThroughTheCompression() {
        #expect(PageCounter.count(pwgRaster(pages: 3), contentType: "image/pwg-raster") == PageCounter.Count(pages: 3, format: "image/pwg-raster", note: nil))
        let truncated = Array(pwgRaster(pages: 2).dropLast(2))
        #expect(PageCounter.count(truncated, contentType: "image/pwg-raster").pages == nil)
    }

    @Test func documentsBackToBackAreEachCounted() {
        // What cupsd pipes through the backend for `lp a.ps b.ps`, and a hand-made concatenation.
        let two = "%!PS-Adobe-3.0\n%%Pages: 2\n%%EOF\n%!PS-Adobe-3.0\n%%Pages: 3\n%%EOF\n"
        #expect(count(two) == PageCounter.Count(pages: 5, format: "application/postscript", note: nil, declared: true))
        let noNewline = "%!PS-Adobe-3.0\n%%Pages: 1\nshowpage%!PS-Adobe-3.0\n%%Pages: 40\n"
        #expect(count(noNewline).pages == 41)
        let mixed = "%!PS-Adobe-3.0\n%%Pages: 1\n%%EOF\n%PDF-1.4\n<< /Type /Pages /Kids [3 0 R 4 0 R] /Count 9 >>\n"
        #expect(count(mixed) == PageCounter.Count(pages: 3, format: "application/postscript+application/pdf", note: nil, declared: true))
        let uncountableTail = "%!PS-Adobe-3.0\n%%Pages: 1\n%%EOF\nRaS2garbage"
        let refused = count(uncountableTail)
        #expect(refused.pages == nil)
        #expect(refused.note?.hasPrefix("document 2 of 2 in the stream") == true)
    }

    @Test func appleRasterCarriesItsPageCount() {
        #expect(PageCounter.count(Array("UNIRAST\0".utf8) + [0, 0, 0, 5], contentType: "image/urf").pages == 5)
    }

    @Test func textIsSixtySixLinesAPageAndAFormFeedStartsOne() {
        #expect(count(String(repeating: "line\n", count: 66), "text/plain").pages == 1)
        #expect(count(String(repeating: "line\n", count: 67), "text/plain").pages == 2)
        #expect(count("page one\u{0C}page two\u{0C}", "text/plain").pages == 2)
        #expect(count("", "text/plain").pages == 0)
    }

    @Test func imagesAreOnePageAndPrinterLanguagesAreUncountable() {
        #expect(PageCounter.count([0xFF, 0xD8, 0xFF, 0xE0, 0, 0], contentType: "image/jpeg").pages == 1)
        #expect(PageCounter.count([0x89] + Array("PNG\r\n".utf8), contentType: "image/png").pages == 1)
        let pcl = PageCounter.count([0x1B] + Array("E\u{1B}&l0O".utf8), contentType: "application/vnd.hp-pcl")
        #expect(pcl.pages == nil)
        #expect(pcl.note == "pages of application/vnd.hp-pcl cannot be counted")
    }
}
