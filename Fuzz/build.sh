#!/usr/bin/env bash
# Builds one libFuzzer binary per harness in Fuzz/Targets/ (swiftc -sanitize=fuzzer,address).
#
# Learn, Index and RecDB are compiled here with swiftc, each as one whole-module object with coverage
# instrumentation and AddressSanitizer (-sanitize=fuzzer,address; -enable-testing so the harnesses reach
# the internal parsers). Only the Faiss shim (C++) comes from SwiftPM, uninstrumented. Each harness is
# then linked against these objects and the system libraries. Not part of `make test` or a normal build.
set -euo pipefail
cd "$(dirname "$0")/.."
SWIFT=${SWIFT:-swift}
SWIFTC=${SWIFTC:-swiftc}
BUILD=.build/fuzz
OUT=$BUILD/modules
mkdir -p "$OUT" "$BUILD/bin"
# The C++ Faiss shim, the C CRC-32C and Learn's C kernels, built by SwiftPM (plain release flags).
"$SWIFT" build -c release --build-path "$BUILD/spm" --target CFaiss >/dev/null
"$SWIFT" build -c release --build-path "$BUILD/spm" --target CChecksum >/dev/null
"$SWIFT" build -c release --build-path "$BUILD/spm" --target CKernels >/dev/null
CFAISS=$(find "$BUILD/spm" -path '*release/CFaiss.build' -type d | head -1)
CCHECKSUM=$(find "$BUILD/spm" -path '*release/CChecksum.build' -type d | head -1)
CKERNELS=$(find "$BUILD/spm" -path '*release/CKernels.build' -type d | head -1)
# LMDB (patched, Sources/CLMDB) with coverage and AddressSanitizer like the Swift code, so the fuzzer is
# guided through LMDB's own page handling and an access outside a heap block is a report.
scripts/fetch-lmdb.sh
CLANG=${CLANG:-clang}
for f in mdb midl; do
    if [ ! -f "$OUT/lmdb-$f.o" ] || [ "Sources/CLMDB/vendor/$f.c" -nt "$OUT/lmdb-$f.o" ]; then
        echo "fuzz: compiling LMDB $f.c (instrumented)"
        "$CLANG" -c -O1 -g -fsanitize=fuzzer-no-link,address -pthread "Sources/CLMDB/vendor/$f.c" -o "$OUT/lmdb-$f.o"
    fi
done
echo "module CLMDB { header \"$PWD/Sources/CLMDB/include/CLMDB.h\" export * }" > "$OUT/CLMDB.modulemap"
FLAGS=(-O -wmo -parse-as-library -sanitize=fuzzer,address -enable-testing -I "$OUT" -I Sources/COpenBLAS
       -Xcc -fmodule-map-file="$OUT/CLMDB.modulemap"
       -Xcc -fmodule-map-file="$CFAISS/module.modulemap" -I Sources/CFaiss/include
       -Xcc -fmodule-map-file="$CCHECKSUM/module.modulemap" -I Sources/CChecksum/include
       -Xcc -fmodule-map-file="$CKERNELS/module.modulemap" -I Sources/CKernels/include)
module() {  # name, sources…: rebuilt only when a source is newer than the object
    local name=$1; shift
    local newest
    newest=$(ls -t "$@" | head -1)
    if [ ! -f "$OUT/$name.o" ] || [ "$newest" -nt "$OUT/$name.o" ]; then
        echo "fuzz: compiling $name (instrumented)"
        "$SWIFTC" "${FLAGS[@]}" -module-name "$name" -emit-module -emit-module-path "$OUT/$name.swiftmodule" \
            -c "$@" -o "$OUT/$name.o"
    fi
}
module Learn $(find Sources/Learn -name '*.swift' | sort)
module Index $(find Sources/Index -name '*.swift' | sort)
module RecDB $(find Sources/RecDB -name '*.swift' | sort)
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for f in Fuzz/Targets/*.swift; do targets+=("$(basename "$f" .swift)"); done
fi
for t in "${targets[@]}"; do
    echo "fuzz: building $t"
    # A harness may name extra source files (without imports) to compile in: "// fuzz-sources: PATH…".
    read -r -a extra <<< "$(sed -n 's|^// fuzz-sources: ||p' "Fuzz/Targets/$t.swift")"
    "$SWIFTC" "${FLAGS[@]}" -module-name "Fuzz_$t" Fuzz/Support.swift "Fuzz/Targets/$t.swift" "${extra[@]}" \
        "$OUT/RecDB.o" "$OUT/Index.o" "$OUT/Learn.o" "$CFAISS"/*.o "$CCHECKSUM"/*.o "$CKERNELS"/*.o "$OUT/lmdb-mdb.o" "$OUT/lmdb-midl.o" \
        -lfaiss -lgomp -llapack -lblas -lopenblas -lstdc++ \
        -o "$BUILD/bin/fuzz-$t" 2> >(grep -v "Cannot export local symbol" >&2)
done
