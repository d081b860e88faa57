# Everything a developer or CI runs. `make demo` runs the main job locally; `make test` runs
# every check CI runs.
SHELL := /bin/bash
GO    ?= go

.PHONY: all test fmt-check vet lint unit demo clean

all: test

test: fmt-check vet lint unit

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

lint:
	$(GO) tool staticcheck ./...

unit:
	$(GO) test -count=1 ./...

clean:
	rm -rf bin .local
