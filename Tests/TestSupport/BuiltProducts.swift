import Foundation

/// Executables built beside the test bundle (`make test` builds every product), for tests that run them.
public enum BuiltProducts {
    /// The path of product `name` (e.g. `rdbctl`), or nil when it was not built.
    public static func locate(_ name: String) -> String? {
        var candidates: [URL] = []
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        candidates.append(exe.deletingLastPathComponent())
        candidates.append(exe.deletingLastPathComponent().deletingLastPathComponent())
        candidates.append(Bundle.main.bundleURL)
        for b in Bundle.allBundles { candidates.append(b.bundleURL.deletingLastPathComponent()) }
        for dir in candidates {
            var d = dir
            for _ in 0..<4 {
                let p = d.appendingPathComponent(name).path
                if FileManager.default.isExecutableFile(atPath: p) { return p }
                d = d.deletingLastPathComponent()
            }
        }
        return nil
    }
}
