# segvault Makefile. Everything the tests need is installed here, pinned, and
# cached under .tools/ (git-ignored): a fresh clone needs only Go (plus Java
# 17 and Maven for the real-Kafka tests, and Debian's tools for packaging).

SHELL        := /bin/bash
GO           ?= go
TOOLS        := $(CURDIR)/.tools
TOOLBIN      := $(TOOLS)/bin
VERSION      ?= $(shell git describe --tags --always --dirty 2>/dev/null | sed 's/^v//' || echo 0.0.0-dev)
LDFLAGS      := -s -w -X main.version=$(VERSION)

MINIO_VERSION       := v0.0.0-20260212201848-7aac2a2c5b7c
STATICCHECK_VERSION := v0.8.2
NFPM_VERSION        := v2.45.2
TOXIPROXY_VERSION   := v2.5.0
KAFKA_VERSIONS      := 4.4.0 3.9.2

MINIO       := $(TOOLBIN)/minio
STATICCHECK := $(TOOLBIN)/staticcheck
NFPM        := $(TOOLBIN)/nfpm
TOXIPROXY   := $(TOOLBIN)/toxiproxy-server
PROMTOOL    := $(TOOLBIN)/promtool
KAFKA_STAMPS := $(foreach v,$(KAFKA_VERSIONS),$(TOOLS)/kafka/$(v)/.stamp)

TEST_TIMEOUT ?= 25m
FUZZTIME     ?= 10s

export SEGVAULT_MINIO_BIN := $(MINIO)
export SEGVAULT_TOXIPROXY_BIN := $(TOXIPROXY)
export SEGVAULT_PROMTOOL_BIN := $(PROMTOOL)

.PHONY: all build test test-short demo bench bench-quick fuzz lint package test-install tools kafka-jars kafka-jars-clean packaging-tools clean

all: build

build: bin/segvault

bin/segvault: $(shell find . -name '*.go' -not -path './.tools/*' 2>/dev/null) go.mod go.sum
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./cmd/segvault

## tools: every pinned tool the tests use.
tools: $(MINIO) $(TOXIPROXY) $(PROMTOOL) kafka-jars

# promtool checks docs/monitoring's alert rules and runs their unit tests
# (packaging tests). It comes from Debian's prometheus package, extracted
# only: nothing is installed system-wide and no service starts.
$(PROMTOOL):
	@mkdir -p $(TOOLS)/deb $(TOOLBIN)
	cd $(TOOLS)/deb && rm -f prometheus_*.deb && { apt-get download prometheus 2>/dev/null || { sudo=; [ "$$(id -u)" -ne 0 ] && sudo=sudo; \
		$$sudo apt-get update -qq && apt-get download prometheus; }; }
	rm -rf $(TOOLS)/deb/x && dpkg-deb -x $(TOOLS)/deb/prometheus_*.deb $(TOOLS)/deb/x
	install -m 0755 $(TOOLS)/deb/x/usr/bin/promtool $@
	rm -rf $(TOOLS)/deb/x

$(MINIO):
	@mkdir -p $(TOOLBIN)
	@echo "installing MinIO $(MINIO_VERSION) (a few minutes, once)"
	GOBIN=$(TOOLBIN) $(GO) install github.com/minio/minio@$(MINIO_VERSION)

$(TOXIPROXY):
	@mkdir -p $(TOOLBIN)
	GOBIN=$(TOOLBIN) $(GO) install github.com/Shopify/toxiproxy/v2/cmd/server@$(TOXIPROXY_VERSION)
	mv $(TOOLBIN)/server $(TOXIPROXY)

RCLONE := $(TOOLBIN)/rclone

# rclone, the second baseline of `make bench` only (`make test` never needs
# it): Debian's package, fetched with apt like packaging-tools' (apt-get
# update only if the package index does not know it yet) and unpacked under
# .tools/rclone, so the system is not modified and the binary is cached.
$(RCLONE):
	@mkdir -p $(TOOLS)/deb $(TOOLBIN)
	@sudo=; [ "$$(id -u)" -ne 0 ] && sudo=sudo; cd $(TOOLS)/deb && rm -f rclone_*.deb && \
		{ apt-get download -qq rclone 2>/dev/null || { $$sudo apt-get update -qq && apt-get download -qq rclone; }; }
	rm -rf $(TOOLS)/rclone && dpkg-deb -x $$(ls $(TOOLS)/deb/rclone_*.deb | head -1) $(TOOLS)/rclone
	ln -sf ../rclone/usr/bin/rclone $@
	$@ version | head -1

$(STATICCHECK):
	@mkdir -p $(TOOLBIN)
	GOBIN=$(TOOLBIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

$(NFPM):
	@mkdir -p $(TOOLBIN)
	GOBIN=$(TOOLBIN) $(GO) install github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION)

## kafka-jars: Apache Kafka brokers from Maven Central (no jar is committed),
## into .tools/kafka/<v>/libs (the broker) and .tools/kafka/<v>/tools (DumpLogSegments).
## kafka-tools 4.4.0 is not on Maven Central, so 4.4.0 segments are dumped with 4.3.1's tools.
KAFKA_TOOLS_VERSION_4.4.0 ?= 4.3.1
KAFKA_MVN = mvn -B -q -f internal/kafkatest/pom.xml -Dmaven.repo.local=$(TOOLS)/m2

kafka-jars: $(KAFKA_STAMPS)

$(TOOLS)/kafka/%/.stamp: | internal/kafkatest/pom.xml
	@echo "resolving Apache Kafka $* from Maven Central (once)"
	@rm -rf $(TOOLS)/kafka/$*/libs.tmp $(TOOLS)/kafka/$*/tools.tmp
	$(KAFKA_MVN) -Dkafka.version=$* -Dout=$(TOOLS)/kafka/$*/libs.tmp dependency:copy-dependencies
	$(KAFKA_MVN) -Ptools -Dkafka.version=$(or $(KAFKA_TOOLS_VERSION_$*),$*) -Dout=$(TOOLS)/kafka/$*/tools.tmp dependency:copy-dependencies
	@rm -rf $(TOOLS)/kafka/$*/libs $(TOOLS)/kafka/$*/tools
	@mv $(TOOLS)/kafka/$*/libs.tmp $(TOOLS)/kafka/$*/libs
	@mv $(TOOLS)/kafka/$*/tools.tmp $(TOOLS)/kafka/$*/tools
	@touch $@

kafka-jars-clean:
	rm -rf $(TOOLS)/kafka

## test: the whole suite, against a real MinIO and real Kafka brokers. In CI
## (CI=true) a server that cannot start is a failure, never a skip.
# Debian's tools for the package tests (packaging/package_test.go), as
# command:package, installed with apt if missing: the linters, rpm (rpmlint
# runs `rpm -Kv`), the cpio TestRpmlint extracts with, systemd-analyze for the
# unit and the /bin/kill of its ExecReload (`systemd-analyze verify` checks it).
# gcc and libc6-dev: the race detector needs cgo, and a machine with only Go
# has no C compiler (go test -race: "requires cgo"). .ci/fresh-root.sh checks
# that this list is complete.
PKG_TOOLS := lintian:lintian rpmlint:rpmlint rpm:rpm rpm2cpio:rpm2cpio cpio:cpio systemd-analyze:systemd /bin/kill:procps \
	gcc:gcc /usr/include/stdio.h:libc6-dev
packaging-tools:
	@missing=; for t in $(PKG_TOOLS); do { command -v $${t%%:*} >/dev/null || [ -e $${t%%:*} ]; } || missing="$$missing $${t#*:}"; done; \
	if [ -n "$$missing" ]; then echo "installing$$missing"; sudo=; [ "$$(id -u)" -ne 0 ] && sudo=sudo; \
		$$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; fi

# The packages that run goroutines (the agent's pipeline, the uploader's
# parallel parts, restore's workers, the CLI's signal handling) run under the
# race detector; the rest (the e2e and packaging tests drive the binary) run
# without it, so the suite stays well inside its time budget.
RACE_PKGS := ./agent/... ./archive/... ./uploader/... ./restore/... ./cmd/...

test: tools packaging-tools
	$(GO) vet ./...
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(RACE_PKGS)
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) $$($(GO) list ./... | grep -v -e '/agent' -e '/archive' -e '/uploader' -e '/restore' -e '/cmd/')

## test-short: unit tests only (no servers).
test-short:
	$(GO) test -short -count=1 ./...

## demo: generate a realistic broker log dir, archive it, restore it, prove byte identity.
demo: build
	$(GO) run ./internal/demo -segvault $(CURDIR)/bin/segvault -dir $(CURDIR)/demo-out

## bench: every figure of docs/PERFORMANCE.md, beside its baseline, into bench/results/.
bench: build $(MINIO) $(RCLONE)
	$(GO) run ./internal/benchrun -segvault $(CURDIR)/bin/segvault -rclone $(RCLONE) -out bench/results

## bench-quick: a reduced set in under two minutes.
bench-quick: build $(MINIO) $(RCLONE)
	$(GO) run ./internal/benchrun -quick -segvault $(CURDIR)/bin/segvault -rclone $(RCLONE) -out bench/results

## fuzz: every fuzz target for FUZZTIME each.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for t in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$t"; \
			$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

## lint: gofmt, go vet, staticcheck.
lint: $(STATICCHECK)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

## package: .deb and .rpm for amd64 and arm64 into dist/.
package: $(NFPM)
	VERSION=$(VERSION) NFPM=$(NFPM) GO=$(GO) bash packaging/build.sh

## test-install: install, upgrade, remove and purge the packages in a throwaway Debian root.
test-install: package $(MINIO)
	bash packaging/test-install.sh

clean:
	rm -rf bin dist demo-out
