# sockit: the two commands the README promises are `make run` and `make test`.
# Everything is built by CMake under build/ (build-asan/, build-tsan/ for the
# sanitizer builds); this Makefile only strings the steps together.
#
# Every build step runs `cmake -S . -B DIR` first: cheap when DIR is
# configured, and it repairs a DIR left half-configured by an interrupted or
# failed configure (a CMakeCache.txt without a Makefile). The tests are
# configured when their dependencies are installed; `make test` installs them
# first, so its configure enables them.

BUILD     ?= build
JOBS      ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_ARGS ?=
PREFIX    ?= /usr/local
BUILD_TYPE ?= RelWithDebInfo
CTEST_ARGS ?= --output-on-failure -j$(JOBS)
RUN_ARGS  ?=

.PHONY: all build configure deps test-deps run test sanitize tsan bench fuzz install deb certs clean format check-format

all: build

deps:
	@sh scripts/deps.sh build

test-deps:
	@sh scripts/deps.sh test

# The test suite is configured only when its dependencies are installed (a
# C++ compiler and cmocka among them), so `make run` needs only the build
# dependencies; `make test` installs the others first. CMAKE_ARGS come
# last, so they win over these defaults.
SK_TESTS = $(shell sh scripts/deps.sh test --check && echo ON || echo OFF)

configure: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DSK_BUILD_TESTS=$(SK_TESTS) $(CMAKE_ARGS)

build: configure
	cmake --build $(BUILD) -j$(JOBS)

# Builds the server (only), then starts the echo server on 127.0.0.1:8888
# (Ctrl-C stops it).
run: configure
	cmake --build $(BUILD) -j$(JOBS) --target sockit-server
	./$(BUILD)/programs/sockit-server $(RUN_ARGS)

# Builds, then runs every test through CTest (none configured is a failure).
test: test-deps
	$(MAKE) --no-print-directory build
	cd $(BUILD) && ctest --no-tests=error $(CTEST_ARGS)

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

# Debian packages (CPack) in build-deb/: a Release build without the tests.
deb:
	@sh scripts/deps.sh deb
	cmake -S . -B build-deb -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr -DSK_BUILD_TESTS=OFF $(CMAKE_ARGS)
	cmake --build build-deb -j$(JOBS)
	cd build-deb && cpack -G DEB

# A test CA and a server certificate for localhost, for the README's TLS
# examples: certs/ca.pem, certs/server.pem, certs/server.key (kept if there).
certs: certs/server.pem

certs/server.pem:
	@command -v openssl >/dev/null || { echo "sockit: as root, run: apt-get install -y openssl" >&2; exit 1; }
	@mkdir -p certs
	openssl req -x509 -new -newkey rsa:2048 -nodes -days 825 -subj '/CN=sockit test CA' \
	  -keyout certs/ca.key -out certs/ca.pem 2>/dev/null
	openssl req -new -newkey rsa:2048 -nodes -subj '/CN=localhost' \
	  -keyout certs/server.key -out certs/server.csr 2>/dev/null
	printf 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >certs/server.ext
	openssl x509 -req -in certs/server.csr -CA certs/ca.pem -CAkey certs/ca.key -CAcreateserial \
	  -days 825 -extfile certs/server.ext -out certs/server.pem.tmp 2>/dev/null
	rm -f certs/server.csr certs/server.ext certs/ca.srl
	mv certs/server.pem.tmp certs/server.pem

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

check-format:
	clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-tsan build-fuzz build-deb
