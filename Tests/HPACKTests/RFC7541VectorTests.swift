import XCTest
@testable import HPACK

/// RFC 7541 Appendix C: every example decoded and, where the encoder makes the same choices
/// (incremental indexing, static table first), encoded to the same bytes.
final class RFC7541VectorTests: XCTestCase {
    func bytes(_ hex: String) -> [UInt8] {
        let digits = Array(hex.filter { !$0.isWhitespace })
        return stride(from: 0, to: digits.count, by: 2).map { UInt8(String(digits[$0...$0 + 1]), radix: 16)! }
    }

    func fields(_ pairs: [(String, String)]) -> [HeaderField] { pairs.map { HeaderField($0.0, $0.1) } }

    let requests: [[(String, String)]] = [
        [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com")],
        [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "www.example.com"), ("cache-control", "no-cache")],
        [(":method", "GET"), (":scheme", "https"), (":path", "/index.html"), (":authority", "www.example.com"), ("custom-key", "custom-value")],
    ]
    let responses: [[(String, String)]] = [
        [(":status", "302"), ("cache-control", "private"), ("date", "Mon, 21 Oct 2013 20:13:21 GMT"), ("location", "https://www.example.com")],
        [(":status", "307"), ("cache-control", "private"), ("date", "Mon, 21 Oct 2013 20:13:21 GMT"), ("location", "https://www.example.com")],
        [(":status", "200"), ("cache-control", "private"), ("date", "Mon, 21 Oct 2013 20:13:22 GMT"), ("location", "https://www.example.com"),
         ("content-encoding", "gzip"), ("set-cookie", "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1")],
    ]

    let c3 = ["8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
              "8286 84be 5808 6e6f 2d63 6163 6865",
              "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65"]
    let c4 = ["8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
              "8286 84be 5886 a8eb 1064 9cbf",
              "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf"]
    let c5 = ["4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
              "4803 3330 37c1 c0bf",
              "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31"]
    let c6 = ["4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
              "4883 640e ffc1 c0bf",
              "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07"]

    func checkSequence(_ hex: [String], _ expected: [[(String, String)]], tableSize: Int, sizes: [Int], huffman: Bool,
                       file: StaticString = #filePath, line: UInt = #line) throws {
        var decoder = HPACKDecoder(tableSizeLimit: tableSize)
        var encoder = HPACKEncoder(indexing: .incremental, huffman: huffman, tableSize: tableSize)
        for (i, block) in hex.enumerated() {
            XCTAssertEqual(try decoder.decode(bytes(block)), fields(expected[i]), "block \(i + 1)", file: file, line: line)
            XCTAssertEqual(decoder.table.size, sizes[i], "table size after block \(i + 1)", file: file, line: line)
            XCTAssertEqual(encoder.encode(fields(expected[i])), bytes(block), "encoding block \(i + 1)", file: file, line: line)
        }
    }

    func testC2LiteralRepresentations() throws {
        var d = HPACKDecoder()
        XCTAssertEqual(try d.decode(bytes("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572")), [HeaderField("custom-key", "custom-header")])
        XCTAssertEqual(d.table.size, 55)
        var d2 = HPACKDecoder()
        XCTAssertEqual(try d2.decode(bytes("040c 2f73 616d 706c 652f 7061 7468")), [HeaderField(":path", "/sample/path")])
        XCTAssertEqual(d2.table.entries.count, 0)
        var d3 = HPACKDecoder()
        XCTAssertEqual(try d3.decode(bytes("1008 7061 7373 776f 7264 0673 6563 7265 74")), [HeaderField("password", "secret")])
        XCTAssertEqual(d3.table.entries.count, 0)
        var d4 = HPACKDecoder()
        XCTAssertEqual(try d4.decode(bytes("82")), [HeaderField(":method", "GET")])
    }

    func testC3RequestsWithoutHuffman() throws {
        try checkSequence(c3, requests, tableSize: 4096, sizes: [57, 110, 164], huffman: false)
    }

    func testC4RequestsWithHuffman() throws {
        try checkSequence(c4, requests, tableSize: 4096, sizes: [57, 110, 164], huffman: true)
    }

    func testC5ResponsesWithoutHuffmanAndEviction() throws {
        try checkSequence(c5, responses, tableSize: 256, sizes: [222, 222, 215], huffman: false)
    }

    func testC6ResponsesWithHuffmanAndEviction() throws {
        try checkSequence(c6, responses, tableSize: 256, sizes: [222, 222, 215], huffman: true)
    }

    func testC1IntegerExamples() throws {
        var out: [UInt8] = []
        IntegerCoding.encode(10, prefixBits: 5, flags: 0, into: &out)
        XCTAssertEqual(out, [0x0A])
        out = []
        IntegerCoding.encode(1337, prefixBits: 5, flags: 0, into: &out)
        XCTAssertEqual(out, [0x1F, 0x9A, 0x0A])
        out = []
        IntegerCoding.encode(42, prefixBits: 8, flags: 0, into: &out)
        XCTAssertEqual(out, [0x2A])
        var i = 0
        XCTAssertEqual(try IntegerCoding.decode([0x1F, 0x9A, 0x0A][...], at: &i, prefixBits: 5), 1337)
        XCTAssertEqual(i, 3)
    }
}

final class HPACKLimitTests: XCTestCase {
    func testHuffmanRoundTripsEveryByte() throws {
        let all = (0...255).map { UInt8($0) }
        var coded: [UInt8] = []
        Huffman.encode(all, into: &coded)
        XCTAssertEqual(coded.count, Huffman.encodedLength(all))
        XCTAssertEqual(try Huffman.decode(coded[...]), all)
    }

    func testHuffmanRejectsBadPaddingAndEOS() {
        // "a" is 00011 (5 bits); padding with zeros instead of ones is invalid.
        XCTAssertThrowsError(try Huffman.decode([0x18][...]))
        // 0x1f: "a" then three 1-bits of padding: valid.
        XCTAssertEqual(try Huffman.decode([0x1F][...]), [UInt8(ascii: "a")])
        // A full byte of padding (more than 7 bits) is invalid.
        XCTAssertThrowsError(try Huffman.decode([0x1F, 0xFF][...]))
        // EOS (30 ones) inside a string is invalid.
        XCTAssertThrowsError(try Huffman.decode([0xFF, 0xFF, 0xFF, 0xFF][...]))
    }

    func testRejectsOutOfRangeIndexAndTruncation() {
        var d = HPACKDecoder()
        XCTAssertThrowsError(try d.decode([0x80])) { XCTAssertEqual($0 as? HPACKError, .invalidIndex(0)) }
        XCTAssertThrowsError(try d.decode([0xBE])) { XCTAssertEqual($0 as? HPACKError, .invalidIndex(62)) }
        XCTAssertThrowsError(try d.decode([0x40, 0x05, 0x61])) { XCTAssertEqual($0 as? HPACKError, .truncated) }
        XCTAssertThrowsError(try d.decode([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F])) { XCTAssertEqual($0 as? HPACKError, .integerOverflow) }
        // Zero continuation bytes push the shift to 63, where 0x7F would wrap the value negative
        // (a trap when used as a length, before the bound).
        let padded: [UInt8] = [0x5E, 0xFF, 0xFF, 0xFF] + [UInt8](repeating: 0x80, count: 7) + [UInt8](repeating: 0xFF, count: 8)
        XCTAssertThrowsError(try d.decode(padded)) { XCTAssertEqual($0 as? HPACKError, .integerOverflow) }
        XCTAssertThrowsError(try d.decode([0x3F] + [UInt8](repeating: 0x80, count: 12) + [0x01])) {
            XCTAssertEqual($0 as? HPACKError, .integerOverflow)
        }
    }

    func testTableSizeUpdateBoundsAndPlacement() throws {
        var d = HPACKDecoder(tableSizeLimit: 4096)
        XCTAssertEqual(try d.decode([0x20, 0x82]), [HeaderField(":method", "GET")])
        XCTAssertEqual(d.table.maximumSize, 0)
        XCTAssertThrowsError(try d.decode([0x3F, 0xE2, 0x1F])) { XCTAssertEqual($0 as? HPACKError, .tableSizeUpdateTooLarge(4097)) }
        XCTAssertThrowsError(try d.decode([0x82, 0x20])) { XCTAssertEqual($0 as? HPACKError, .tableSizeUpdateMisplaced) }
    }

    func testHeaderListSizeLimit() {
        var d = HPACKDecoder(maxHeaderListSize: 100)
        var e = HPACKEncoder(huffman: false)
        let block = e.encode([HeaderField("x-big", String(repeating: "a", count: 200))])
        XCTAssertThrowsError(try d.decode(block)) { XCTAssertEqual($0 as? HPACKError, .stringTooLong(200)) }
        let many = e.encode((0..<5).map { HeaderField("k\($0)", "0123456789") })
        XCTAssertThrowsError(try d.decode(many)) { XCTAssertEqual($0 as? HPACKError, .headerListTooLarge(limit: 100)) }
    }

    func testStatelessEncoderNeverIndexes() throws {
        var e = HPACKEncoder()
        var d = HPACKDecoder()
        let headers = [HeaderField(":method", "POST"), HeaderField("x-token", "abc"), HeaderField("te", "trailers")]
        let block = e.encode(headers)
        XCTAssertEqual(block.first, 0x83)
        XCTAssertEqual(try d.decode(block), headers)
        XCTAssertTrue(e.table.entries.isEmpty)
        XCTAssertTrue(d.table.entries.isEmpty)
    }
}
