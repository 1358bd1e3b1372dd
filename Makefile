# RecDB — two commands do all setup on a fresh Debian machine:
#   make demo   import MovieLens-100K → train → recommend (the main job)
#   make test   the test suite (optimised build: numeric code is too slow unoptimised)
#   make test-tsan   the thread and process tests under ThreadSanitizer (debug build in .build-tsan)
#   make fuzz   libFuzzer targets for every parser, FUZZ_SECONDS (default 60) each, one at a time
#               (FUZZ_TARGETS="csv npy" for some); not part of `make test` (see Fuzz/README.md)
SWIFT ?= swift
TEST_FLAGS ?= -c release -Xswiftc -enable-testing

.PHONY: deps build demo test test-tsan stress fuzz bench bench-import bench-serve bench-learn bench-index bench-encoder bench-distill beauty-e2e schemas clean

deps:
	@scripts/install-deps.sh

build: deps
	$(SWIFT) build -c release

demo: deps
	@scripts/demo.sh

test: deps
	$(SWIFT) build $(TEST_FLAGS) --build-tests
	$(SWIFT) test $(TEST_FLAGS) --skip-build --disable-swift-testing

# Races are failures: see scripts/test-tsan.sh for the tests it runs (TSAN_FILTER=... to choose others).
test-tsan: deps
	SWIFT=$(SWIFT) scripts/test-tsan.sh

FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
fuzz: deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) Fuzz/run.sh $(FUZZ_TARGETS)

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

bench-learn: deps
	$(SWIFT) run -c release learn-bench --data ../shared/data/amazon-beauty/Beauty.txt --arch sasrec --items id

bench-index: deps
	$(SWIFT) run -c release IndexBench

bench-encoder: deps
	$(SWIFT) run -c release EncoderBench

bench-distill: deps
	$(SWIFT) run -c release distill-bench

beauty-e2e: deps
	@scripts/beauty-e2e.sh

schemas:
	@tools/bundle-schemas.sh

clean:
	rm -rf .build .build-tsan .cache
