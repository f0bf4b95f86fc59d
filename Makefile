# Loom — convenience wrapper around CMake.
#   make deps   install missing Debian packages (no-op when present)
#   make        build into build/ (binaries in build/bin/)
#   make test   deps + build + the whole test suite (ASan+UBSan build)
#   make demo   deps + build + a sample payment and batch flow
#   make bench  deps + build + benchmarks
SHELL := /bin/bash
MAKEFLAGS += --no-print-directory
BUILD      ?= build
ASAN_BUILD ?= build/asan
TSAN_BUILD ?= build/tsan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

DEB_PACKAGES := build-essential cmake pkg-config liblmdb-dev lmdb-utils libuv1-dev \
	libprotobuf-c-dev protobuf-c-compiler protobuf-compiler python3 python3-protobuf \
	libmsgpack-dev libcriterion-dev libyaml-dev clang libfuzzer-14-dev

.PHONY: all build deps test test-tsan demo bench fuzz clean format

all: build

deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

test: deps build
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DLOOM_SANITIZE=address $(CMAKE_FLAGS)
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 600

# TSan-built loomd, processors and bench; the tests labelled tsan drive them
# as child processes (the criterion binaries themselves are not TSan-built).
# A race report ends its process with status 66, and every report is also
# written under tsan-reports/: any file there fails the run, even when the
# test did not notice a child's exit.
TSAN_REPORTS = $(abspath $(TSAN_BUILD))/tsan-reports
TSAN_OPTIONS_RUN = halt_on_error=1 exitcode=66 second_deadlock_stack=1 log_path=$(TSAN_REPORTS)/tsan
test-tsan: deps
	cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DLOOM_SANITIZE=thread $(CMAKE_FLAGS)
	cmake --build $(TSAN_BUILD) -j $(JOBS)
	rm -rf $(TSAN_REPORTS) && mkdir -p $(TSAN_REPORTS)
	cd $(TSAN_BUILD) && export TSAN_OPTIONS="$(TSAN_OPTIONS_RUN)" && rc=0; \
	  ctest -L tsan --output-on-failure -j $(JOBS) --timeout 600 || rc=1; \
	  bin/loom-bench steps --seconds 2 || rc=1; \
	  if [ -n "$$(ls -A $(TSAN_REPORTS))" ]; then \
	    cat $(TSAN_REPORTS)/*; echo "test-tsan: ThreadSanitizer reports above"; rc=1; fi; \
	  exit $$rc

demo: deps build
	./engine/demo/run-demo.sh $(BUILD)/bin

bench: deps build
	$(BUILD)/bin/loom-bench fold --machines 10000 --events 100
	$(BUILD)/bin/loom-bench append
	$(BUILD)/bin/loom-bench steps --machines 1000 --seconds 5

fuzz: deps
	cmake -S . -B build/fuzz -DCMAKE_C_COMPILER=clang -DLOOM_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug
	cmake --build build/fuzz -j $(JOBS)

format:
	find engine processor-sdk proto storage tests bench -name '*.[ch]' | xargs clang-format -i

clean:
	rm -rf $(BUILD)
