# RecDB — two commands do all setup on a fresh Debian machine:
#   make demo   import MovieLens-100K → train → recommend (the main job)
#   make test   the test suite (optimised build: numeric code is too slow unoptimised)
SWIFT ?= swift
TEST_FLAGS ?= -c release -Xswiftc -enable-testing

.PHONY: deps build demo test bench bench-import schemas clean

deps:
	@scripts/install-deps.sh

build: deps
	$(SWIFT) build -c release

demo: deps
	@scripts/demo.sh

test: deps
	$(SWIFT) build $(TEST_FLAGS) --build-tests
	$(SWIFT) test $(TEST_FLAGS) --skip-build

bench: deps bench-import

bench-import: deps
	@scripts/bench-import.sh

schemas:
	@tools/bundle-schemas.sh

clean:
	rm -rf .build .cache
