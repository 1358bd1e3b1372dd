#!/usr/bin/env bash
# Builds one libFuzzer binary per harness in Fuzz/Targets/ (swiftc -sanitize=fuzzer,address).
#
# The library modules (RecDB, Index, Learn) are compiled by SwiftPM into a separate build directory
# with coverage instrumentation and AddressSanitizer (-sanitize=fuzzer,address, -enable-testing so the
# harnesses reach the internal parsers); each harness is then linked against their objects and the
# system libraries. Nothing here is part of `make test` or of a normal build.
set -euo pipefail
cd "$(dirname "$0")/.."
SWIFT=${SWIFT:-swift}
SWIFTC=${SWIFTC:-swiftc}
BUILD=.build/fuzz
"$SWIFT" build -c release --build-path "$BUILD" --target RecDB \
    -Xswiftc -sanitize=fuzzer -Xswiftc -sanitize=address -Xswiftc -enable-testing
BIN=$(cd "$BUILD" && find . -maxdepth 2 -type d -name release | head -1)
BIN="$BUILD/${BIN#./}"
mapfile -t OBJECTS < <(find "$BIN/RecDB.build" "$BIN/Index.build" "$BIN/Learn.build" "$BIN/CFaiss.build" -name '*.o')
mkdir -p "$BUILD/bin"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for f in Fuzz/Targets/*.swift; do targets+=("$(basename "$f" .swift)"); done
fi
for t in "${targets[@]}"; do
    echo "fuzz: building $t"
    "$SWIFTC" -O -sanitize=fuzzer,address -parse-as-library -module-name "Fuzz_$t" \
        -I "$BIN/Modules" -I Sources/CLMDB -I Sources/COpenBLAS \
        -Xcc -fmodule-map-file="$BIN/CFaiss.build/module.modulemap" -I Sources/CFaiss/include \
        Fuzz/Support.swift "Fuzz/Targets/$t.swift" "${OBJECTS[@]}" \
        -llmdb -lfaiss -lgomp -llapack -lblas -lopenblas -lstdc++ \
        -o "$BUILD/bin/fuzz-$t" 2> >(grep -v "Cannot export local symbol" >&2)
done
