import XCTest
@testable import RecDB
final class RecDBSmokeTests: XCTestCase { func testBuilds() { XCTAssertTrue(true) } }
