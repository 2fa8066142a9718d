# Holdfast — the two commands are `make demo` and `make test`; each installs what it needs.
SWIFT ?= swift
SWIFT_FLAGS ?=
BIN := .build/debug

.PHONY: all deps build test demo bench fuzz fuzz-descriptors fuzz-audit clean

all: build

deps:
	@scripts/install-deps.sh

build: deps
	$(SWIFT) build $(SWIFT_FLAGS)

test: deps
	$(SWIFT) build --build-tests $(SWIFT_FLAGS)
	$(SWIFT) test --skip-build $(SWIFT_FLAGS)
	Tests/acceptance/broker.sh $(BIN)
	Tests/acceptance/lockdown.sh $(BIN)
	Tests/acceptance/offboarding.sh $(BIN)

demo: build
	@scripts/demo.sh $(BIN)

bench: deps
	$(SWIFT) build -c release --product holdfast $(SWIFT_FLAGS)
	$(SWIFT) build -c release --product holdfast-login-check $(SWIFT_FLAGS)
	$(SWIFT) build -c release --product holdfastd $(SWIFT_FLAGS)
	$(SWIFT) build -c release --product holdfast-cups-backend $(SWIFT_FLAGS)
	$(SWIFT) build -c release --product holdfast-audit-plugin $(SWIFT_FLAGS)
	$(SWIFT) build -c release --product holdfast-broker $(SWIFT_FLAGS)
	$(SWIFT) build -c release --product holdfast-bench $(SWIFT_FLAGS)
	cc -O2 -Wall -o .build/release/auparse-feed Benchmarks/auparse/auparse-feed.c -lauparse -laudit
	@.build/release/holdfast-bench

clean:
	$(SWIFT) package clean

# libFuzzer over the USB descriptor parser and the audit stream (seeds in Fuzz/corpus; the
# working corpora stay in .build).
FUZZ_RUNS ?= 1000000
AUDIT_SOURCES := $(addprefix Sources/FileWatch/,AuditRecord.swift AuditAssembler.swift AuditStream.swift AuditEventSummary.swift AuditEventJSON.swift AuditNames.swift)
fuzz: fuzz-descriptors fuzz-audit

fuzz-descriptors:
	mkdir -p .build/fuzz/corpus
	swiftc -sanitize=fuzzer,address -parse-as-library -O Sources/DeviceGuard/USBDescriptors.swift Fuzz/DescriptorFuzzer.swift -o .build/fuzz/descriptor-fuzzer
	cp -n Fuzz/corpus/descriptors/* .build/fuzz/corpus/
	.build/fuzz/descriptor-fuzzer -runs=$(FUZZ_RUNS) -max_len=4096 .build/fuzz/corpus

# FileWatch's text view uses HoldfastCore (Printable): built first as its own instrumented module.
fuzz-audit:
	mkdir -p .build/fuzz/audit-corpus .build/fuzz/modules
	swiftc -sanitize=fuzzer,address -parse-as-library -O -module-name HoldfastCore -emit-module -emit-module-path .build/fuzz/modules/HoldfastCore.swiftmodule -emit-library -static -o .build/fuzz/libHoldfastCore.a $$(find Sources/HoldfastCore -name '*.swift')
	swiftc -sanitize=fuzzer,address -parse-as-library -O -I Sources/CAudit -I .build/fuzz/modules $(AUDIT_SOURCES) Fuzz/AuditFuzzer.swift .build/fuzz/libHoldfastCore.a -laudit -lauparse -o .build/fuzz/audit-fuzzer
	cp -n Fuzz/corpus/audit/* .build/fuzz/audit-corpus/
	.build/fuzz/audit-fuzzer -runs=$(FUZZ_RUNS) -max_len=8192 .build/fuzz/audit-corpus
