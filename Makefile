# RecDB — two commands do all setup on a fresh Debian machine:
#   make demo   import MovieLens-100K → train → recommend (the main job)
#   make test   the test suite (optimised build: numeric code is too slow unoptimised)
#   make test-tsan   the thread and process tests under ThreadSanitizer (debug build in .build-tsan)
#   make fuzz   libFuzzer targets for every parser, FUZZ_SECONDS (default 60) each, one at a time
#               (FUZZ_TARGETS="csv npy" for some); not part of `make test` (see Fuzz/README.md)
SWIFT ?= swift
TEST_FLAGS ?= -c release -Xswiftc -enable-testing

.PHONY: deps build demo test test-tsan test-asan stress fuzz corruption bench bench-import bench-serve bench-learn bench-index bench-encoder bench-distill bench-scale bench-http dashboard-check beauty-e2e schemas clean

deps:
	@scripts/install-deps.sh

build: deps
	$(SWIFT) build -c release

demo: deps
	@scripts/demo.sh

test: deps
	$(SWIFT) build $(TEST_FLAGS) --build-tests
	Fuzz/typecheck.sh
	$(SWIFT) test $(TEST_FLAGS) --skip-build --disable-swift-testing

# Races are failures: see scripts/test-tsan.sh for the tests it runs (TSAN_FILTER=... to choose others).
test-tsan: deps
	SWIFT=$(SWIFT) scripts/test-tsan.sh

FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
fuzz: deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) Fuzz/run.sh $(FUZZ_TARGETS)

# The whole suite under AddressSanitizer (optimised, in its own build directory): any report fails the run.
# halt_on_error makes the first report end the process with an error status, so a report cannot pass unseen.
# allocator_may_return_null=1: tests feed damaged index bytes to Faiss, which trusts the sizes in them and
# asks for tens of GB; without ASan that `new` throws bad_alloc, which the Faiss shim turns into an error —
# ASan would instead abort on the request itself. Leak detection stays on, with tools/lsan.supp
# suppressing only leaks inside XCTest, Foundation and the runtime's weak references (see the file).
ASAN_FLAGS ?= -c release -Xswiftc -enable-testing --sanitize=address --scratch-path .build-asan
test-asan: deps
	$(SWIFT) build $(ASAN_FLAGS) --build-tests
	ASAN_OPTIONS=halt_on_error=1:allocator_may_return_null=1:detect_leaks=$${ASAN_DETECT_LEAKS:-1} \
	LSAN_OPTIONS=suppressions=$(CURDIR)/tools/lsan.supp OMP_WAIT_POLICY=passive \
		$(SWIFT) test $(ASAN_FLAGS) --skip-build --disable-swift-testing

# The long corruption run: single-byte flips at CORRUPTION_OFFSETS offsets of a populated database;
# every command must fail clearly or answer exactly as on the undamaged copy (see CorruptionTests).
CORRUPTION_OFFSETS ?= 400
corruption: deps
	$(SWIFT) build $(TEST_FLAGS) --build-tests
	RECDB_CORRUPTION_OFFSETS=$(CORRUPTION_OFFSETS) OMP_WAIT_POLICY=passive \
		$(SWIFT) test $(TEST_FLAGS) --skip-build --disable-swift-testing --filter CorruptionTests

# Benchmarks run in release and compare against a peer in the same run; all but bench-import need ../shared
# (and the PyTorch peers a Python venv with torch: PYTHON=... or $$HOME/refvenv/bin/python).
bench: deps bench-import bench-serve bench-index bench-encoder bench-learn

bench-import: deps
	@scripts/bench-import.sh

# Long concurrency stress (issue #11): ROUNDS=100 multi-process rounds, then both reproductions TRIALS=20 times.
stress: deps
	@scripts/stress.sh

bench-serve: deps
	$(SWIFT) run -c release serve-bench

# HTTP load (wrk, 64 connections) vs in-process throughput, same run; DURATION=30 ROUNDS=2 (see the script).
bench-http: deps
	@scripts/bench-http.sh

# Headless Chromium renders the dashboard of the `make demo` database and checks it (screenshots in .cache/dashboard).
dashboard-check: deps
	@scripts/dashboard-check.sh

bench-learn: deps
	$(SWIFT) run -c release learn-bench --data ../shared/data/amazon-beauty/Beauty.txt --arch sasrec --items id

bench-index: deps
	$(SWIFT) run -c release IndexBench

bench-encoder: deps
	$(SWIFT) run -c release EncoderBench

bench-distill: deps
	$(SWIFT) run -c release distill-bench

# Large catalogues (issue #14): sampled softmax vs full CE on Beauty (3 seeds) and on generated data, and the
# per-epoch cost at 50k/200k/1M items. Long (an hour or more); BENCH_SCALE_PART=beauty|quality|epoch for one part.
BENCH_SCALE_PART ?= all
bench-scale: deps
	@scripts/bench-scale.sh $(BENCH_SCALE_PART)

beauty-e2e: deps
	@scripts/beauty-e2e.sh

schemas:
	@tools/bundle-schemas.sh

clean:
	rm -rf .build .build-tsan .cache
