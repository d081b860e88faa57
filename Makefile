# Everything a developer or CI runs.
#   make demo   send a sample invoice through the whole pipeline against the built-in emulator
#   make test   every check CI runs
SHELL := /bin/bash
GO    ?= go
BIN   := $(CURDIR)/bin
RIE_VERSION := v0.0.0-20261030222936-bef5c4ba774d

FUNCTIONS := challenge send poll ingest api batch
# The functions' logical ids in template.yaml: ChallengeFunction, SendFunction, PollFunction,
# IngestFunction.
LAMBDA_LDFLAGS := -s -w
lambda_build = CGO_ENABLED=0 GOOS=linux GOARCH=$(2) $(GO) build -tags lambda.norpc -trimpath -ldflags='$(LAMBDA_LDFLAGS)' -o $(3) ./functions/$(1)

.PHONY: all test fmt-check vet lint unit templates demo build build-local tools npm clean \
	build-ChallengeFunction build-SendFunction build-PollFunction build-IngestFunction build-ApiFunction build-BatchFunction

all: test

## ---- checks ------------------------------------------------------------------------------------
test: fmt-check vet lint templates unit

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './local/*')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

lint:
	$(GO) tool staticcheck ./...

# The SAM template and the state machine definition: cfn-lint (understands SAM) and asl-validator.
templates: npm
	cfn-lint template.yaml
	local/node_modules/.bin/asl-validator --json-path statemachine.asl.json
	local/node_modules/.bin/asl-validator --json-path batch.asl.json

unit: build-local tools npm
	CI=$${CI:-} KSEF_LOCAL_BIN=$(BIN) $(GO) test -count=1 ./...

## ---- builds ------------------------------------------------------------------------------------
# AWS SAM (BuildMethod: makefile) runs these with ARTIFACTS_DIR set: arm64 bootstraps for
# provided.al2023.
build-ChallengeFunction:
	$(call lambda_build,challenge,arm64,$(ARTIFACTS_DIR)/bootstrap)
build-SendFunction:
	$(call lambda_build,send,arm64,$(ARTIFACTS_DIR)/bootstrap)
build-PollFunction:
	$(call lambda_build,poll,arm64,$(ARTIFACTS_DIR)/bootstrap)
build-ApiFunction:
	$(call lambda_build,api,arm64,$(ARTIFACTS_DIR)/bootstrap)
build-IngestFunction:
	$(call lambda_build,ingest,arm64,$(ARTIFACTS_DIR)/bootstrap)

build-BatchFunction:
	$(call lambda_build,batch,arm64,$(ARTIFACTS_DIR)/bootstrap)

# The deployable arm64 bootstraps, without SAM: bin/arm64/<function>/bootstrap.
build:
	@for f in $(FUNCTIONS); do $(call lambda_build,$$f,arm64,$(BIN)/arm64/$$f/bootstrap) || exit 1; done

# What the local run needs, for this machine's architecture: the bootstraps, the emulator, the
# CLIs.
build-local:
	@for f in $(FUNCTIONS); do $(call lambda_build,$$f,$$($(GO) env GOARCH),$(BIN)/lambda/$$f/bootstrap) || exit 1; done
	$(GO) build -o $(BIN)/ksef-emulator ./cmd/ksef-emulator
	$(GO) build -o $(BIN)/ksef ./cmd/ksef
	$(GO) build -o $(BIN)/ksef-local ./cmd/ksef-local

# The Lambda Runtime Interface Emulator runs a bootstrap on this machine as Lambda would.
tools: $(BIN)/aws-lambda-rie
$(BIN)/aws-lambda-rie:
	GOBIN=$(BIN) $(GO) install github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@$(RIE_VERSION)

# aws-local-stepfunctions (runs the definition), asl-validator, and Node 22 for them.
npm: local/node_modules/.installed
local/node_modules/.installed: local/package.json local/package-lock.json
	cd local && npm ci --no-audit --no-fund
	touch $@

## ---- the main job, locally ---------------------------------------------------------------------
# make demo [INVOICE=path/to/invoice.xml] [NIP=...]      one invoice through statemachine.asl.json
# make demo MODE=batch [DIR=folder/of/invoices]           a KSeF batch session through batch.asl.json
demo: build-local tools npm
	$(BIN)/ksef-local demo --no-build --mode $(or $(MODE),online) $(if $(INVOICE),--invoice $(INVOICE)) $(if $(DIR),--dir $(DIR)) $(if $(NIP),--nip $(NIP))

clean:
	rm -rf bin out .local
