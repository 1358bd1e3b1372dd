#!/usr/bin/env bash
# Type-checks every fuzz harness against the modules of the release test build (`make test` runs this after
# building): the harnesses are compiled only by `make fuzz`, so an internal API change could otherwise break
# them unseen (it did twice). Seconds, no sanitizer build. BUILD_DIR: another build's products directory.
set -euo pipefail
cd "$(dirname "$0")/.."
M=${BUILD_DIR:-.build/release}
[ -d "$M/Modules" ] || { echo "Fuzz/typecheck.sh: no $M/Modules (build with: swift build -c release -Xswiftc -enable-testing --build-tests)" >&2; exit 1; }
maps=()
for c in CLMDB CFaiss CChecksum CKernels; do maps+=(-Xcc "-fmodule-map-file=$M/$c.build/module.modulemap" -I "Sources/$c/include"); done
status=0
for t in Fuzz/Targets/*.swift; do
    read -r -a extra <<< "$(sed -n 's|^// fuzz-sources: ||p' "$t")"
    if ! swiftc -typecheck -parse-as-library -I "$M/Modules" -I Sources/COpenBLAS "${maps[@]}" Fuzz/Support.swift "$t" "${extra[@]}"; then
        echo "Fuzz/typecheck.sh: $t does not compile against the current sources" >&2; status=1
    fi
done
[ "$status" -ne 0 ] || echo "fuzz harnesses type-check: $(ls Fuzz/Targets/*.swift | wc -l) targets"
exit $status
