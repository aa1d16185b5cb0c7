# sockit: the two commands the README promises are `make run` and `make test`.
# Everything is built by CMake under build/ (build-asan/, build-tsan/ for the
# sanitizer builds); this Makefile only strings the steps together.

BUILD     ?= build
JOBS      ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_ARGS ?=
PREFIX    ?= /usr/local
CTEST_ARGS ?= --output-on-failure -j$(JOBS)
RUN_ARGS  ?=

.PHONY: all build deps test-deps run test sanitize tsan bench fuzz install clean format check-format

all: build

deps:
	@sh scripts/deps.sh build

test-deps:
	@sh scripts/deps.sh test

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_ARGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS)

# Builds, then starts the echo server on 127.0.0.1:8888 (Ctrl-C stops it).
run: build
	./$(BUILD)/programs/sockit-server $(RUN_ARGS)

# Builds, then runs every test through CTest.
test: test-deps build
	cd $(BUILD) && ctest $(CTEST_ARGS)

# The whole suite under AddressSanitizer + UndefinedBehaviorSanitizer.
sanitize: test-deps
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSK_SANITIZE=address,undefined $(CMAKE_ARGS)
	cmake --build build-asan -j$(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest $(CTEST_ARGS)

# The whole suite under ThreadSanitizer (threaded code: wake-ups, workers).
tsan: test-deps
	cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DSK_SANITIZE=thread $(CMAKE_ARGS)
	cmake --build build-tsan -j$(JOBS)
	cd build-tsan && TSAN_OPTIONS=halt_on_error=1 ctest $(CTEST_ARGS)

bench: build
	@sh scripts/deps.sh bench
	./bench/run.sh

fuzz: test-deps
	CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DSK_BUILD_FUZZ=ON -DSK_BUILD_TESTS=OFF -DSK_SANITIZE=address,undefined $(CMAKE_ARGS)
	cmake --build build-fuzz -j$(JOBS)
	./fuzz/run.sh build-fuzz $${FUZZ_SECONDS:-60}

install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

check-format:
	clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-tsan build-fuzz
