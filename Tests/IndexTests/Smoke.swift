import XCTest
@testable import Index
final class IndexSmokeTests: XCTestCase { func testBuilds() { XCTAssertTrue(true) } }
