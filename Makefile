# hull: build, guest image, tests. `make` builds everything; see README.
SHELL := /bin/bash
BUILD ?= build
PREFIX ?= /usr/local
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/hull-runtime/hull/guest.Version=$(VERSION) -X github.com/hull-runtime/hull/pod.Version=$(VERSION)

.PHONY: all binaries guest agent kernel generic initrd proto lint test integration install demo clean bench

all: binaries guest

binaries:
	@mkdir -p $(BUILD)
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS) -X main.version=$(VERSION)' -o $(BUILD)/ ./cmd/...
	CGO_ENABLED=0 $(GO) build -o $(BUILD)/recvtty ./tests/cmd/recvtty

agent:
	@mkdir -p $(BUILD)
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o $(BUILD)/hull-agent ./cmd/hull-agent

# The tuned guest (our kernel; crun runs the containers) and the Debian
# generic one (modules loaded by the agent; runc runs the containers), so
# that both runtimes stay tested.
guest: kernel generic initrd

kernel:
	guest/image/build-kernel.sh $(BUILD)/vmlinuz-hull $(BUILD)/vmlinux-hull

generic:
	@set -e; read -r vmlinuz modroot kver < <(guest/image/fetch-generic-kernel.sh); \
	install -m 0644 "$$vmlinuz" $(BUILD)/vmlinuz-generic; \
	echo "$$modroot $$kver" > $(BUILD)/generic-modules

initrd: agent
	HULL_VERSION=$(VERSION) GUEST_ROOT_OUT=$(BUILD)/guest-root guest/image/build-initrd.sh $(BUILD)/hull-agent $(BUILD)/initrd-hull.img
	@set -e; if [ -f $(BUILD)/generic-modules ]; then read -r modroot kver < $(BUILD)/generic-modules; \
	HULL_VERSION=$(VERSION) GUEST_RUNTIME=runc guest/image/build-initrd.sh $(BUILD)/hull-agent $(BUILD)/initrd-generic.img "$$modroot" "$$kver"; fi

proto:
	PATH="$$PATH:$$($(GO) env GOPATH)/bin" protoc -I agentproto \
	  --go_out=paths=source_relative:agentproto \
	  --go-ttrpc_out=paths=source_relative:agentproto agentproto/agent.proto

# shellcheck over every shell file, go vet over both modules.
lint:
	bash scripts/lint.sh

test:
	$(GO) test ./...

integration: all
	$(GO) test -tags integration -count=1 -v -timeout 20m ./tests/integration/

# Binaries, the tuned guest and the configuration where the defaults look.
install: all
	bash scripts/qemu-user.sh
	install -D -m 0755 $(BUILD)/hull $(DESTDIR)$(PREFIX)/bin/hull
	install -D -m 0755 $(BUILD)/containerd-shim-hull-v2 $(DESTDIR)$(PREFIX)/bin/containerd-shim-hull-v2
	install -D -m 0644 $(BUILD)/vmlinux-hull $(DESTDIR)$(PREFIX)/share/hull/vmlinux
	install -D -m 0644 $(BUILD)/vmlinuz-hull $(DESTDIR)$(PREFIX)/share/hull/vmlinuz
	install -D -m 0644 $(BUILD)/initrd-hull.img $(DESTDIR)$(PREFIX)/share/hull/initrd.img
	rm -rf $(DESTDIR)$(PREFIX)/share/hull/guest-root.new
	cp -a $(BUILD)/guest-root $(DESTDIR)$(PREFIX)/share/hull/guest-root.new
	rm -rf $(DESTDIR)$(PREFIX)/share/hull/guest-root
	mv $(DESTDIR)$(PREFIX)/share/hull/guest-root.new $(DESTDIR)$(PREFIX)/share/hull/guest-root
	install -D -m 0644 $(BUILD)/vmlinuz-generic $(DESTDIR)$(PREFIX)/share/hull/vmlinuz-generic
	install -D -m 0644 $(BUILD)/initrd-generic.img $(DESTDIR)$(PREFIX)/share/hull/initrd-generic.img
	install -D -m 0644 configuration.toml $(DESTDIR)$(PREFIX)/share/hull/configuration.toml

demo: install
	bash scripts/demo.sh

clean:
	rm -rf $(BUILD)

# Start-up, CLI, memory and 9p against floors measured in the same run
# (raw QEMU boot, runc, the host); writes bench/results/latest.{md,csv} and
# startup.png. bench/ is its own module (its chart needs golang.org/x/image).
BENCH_N ?= 5
bench: all
	cd bench && $(GO) run . -out results -n $(BENCH_N) -build $(abspath $(BUILD))
