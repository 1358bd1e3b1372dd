import XCTest
@testable import Learn
final class LearnSmokeTests: XCTestCase { func testBuilds() { XCTAssertTrue(true) } }
