# Holdfast — the two commands are `make demo` and `make test`; each installs what it needs.
SWIFT ?= swift
SWIFT_FLAGS ?=
BIN := .build/debug

.PHONY: all deps build test demo bench fuzz clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	$(SWIFT) build $(SWIFT_FLAGS)

test: deps
	$(SWIFT) build --build-tests $(SWIFT_FLAGS)
	$(SWIFT) test --skip-build $(SWIFT_FLAGS)

demo: build
	@scripts/demo.sh $(BIN)

bench: deps
	$(SWIFT) build -c release --product holdfast $(SWIFT_FLAGS)
	$(SWIFT) build -c release --product holdfastd $(SWIFT_FLAGS)
	$(SWIFT) build -c release --product holdfast-cups-backend $(SWIFT_FLAGS)
	$(SWIFT) build -c release --product holdfast-bench $(SWIFT_FLAGS)
	@.build/release/holdfast-bench

clean:
	$(SWIFT) package clean

# libFuzzer over the USB descriptor parser (seeds in Fuzz/corpus; the working corpus stays in .build).
FUZZ_RUNS ?= 1000000
fuzz:
	mkdir -p .build/fuzz/corpus
	swiftc -sanitize=fuzzer,address -parse-as-library -O Sources/DeviceGuard/USBDescriptors.swift Fuzz/DescriptorFuzzer.swift -o .build/fuzz/descriptor-fuzzer
	cp -n Fuzz/corpus/descriptors/* .build/fuzz/corpus/
	.build/fuzz/descriptor-fuzzer -runs=$(FUZZ_RUNS) -max_len=4096 .build/fuzz/corpus
