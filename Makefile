# Tardis monorepo. `make setup` builds .venv; `make test` runs the suite; `make demo` backs
# up and restores a sample tree with the services embedded.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PACKAGES := proto libs/tardis-common services/blobstore services/catalog services/ingest \
            services/remote-http clients/cli clients/fuse
PROTOS := $(wildcard proto/tardis/v1/*.proto)
PYTEST_ARGS ?=

.PHONY: setup proto proto-check lint test demo clean lock

setup: $(BIN)/.installed proto

$(BIN)/.installed: requirements.lock $(addsuffix /pyproject.toml,$(PACKAGES))
	bash scripts/system-deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps $(addprefix -e ,$(PACKAGES))
	touch $@

# Stubs are generated, never committed: pinned grpcio-tools gives reproducible output.
proto: $(BIN)/.installed proto/python/tardis/v1/.stamp

proto/python/tardis/v1/.stamp: $(PROTOS)
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=proto/python \
	  --grpc_python_out=proto/python --pyi_out=proto/python $(PROTOS)
	touch $@

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: setup
	bash scripts/demo.sh

# The .proto files must also compile with Debian's protoc 3.21 (the armv7 image uses it).
proto-check:
	@tmp=$$(mktemp -d) && protoc -Iproto --python_out=$$tmp $(PROTOS) && rm -rf $$tmp && echo "protoc $$(protoc --version): ok"

lock:
	$(BIN)/pip freeze --exclude-editable | grep -v -E '^(tardis-|-e )' > requirements.lock.new
	mv requirements.lock.new requirements.lock

clean:
	rm -rf $(VENV) proto/python/tardis/v1/*_pb2*.py* proto/python/tardis/v1/.stamp

# Peer benchmark (borg, restic, rsync --link-dest, tardis embedded and distributed) through the
# shared harness in ../shared/bench; results in bench/results/, table in docs/benchmarks.md.
# `make bench ROUNDS=3 CORPUS_MB=500`.
.PHONY: bench
bench: ROUNDS ?= 1
bench: CORPUS_MB ?= 1000
bench: setup
	ROUNDS=$(ROUNDS) CORPUS_MB=$(CORPUS_MB) bash bench/run.sh

# --- logwatch (issue 9) ----------------------------------------------------------------------
# `make install-logwatch [DESTDIR=/pkgroot] [LOGWATCH_DIR=/etc/logwatch]`: the tardisd service
# for logwatch (deploy/logwatch/). An existing logfiles/tardisd.conf (the log's path, which
# a site edits) is kept; `make install` includes this target.
LOGWATCH_DIR ?= /etc/logwatch
LOGWATCH_DEST = $(DESTDIR)$(LOGWATCH_DIR)
.PHONY: install install-logwatch
install: install-logwatch
install-logwatch:
	install -D -m 0644 deploy/logwatch/conf/services/tardisd.conf $(LOGWATCH_DEST)/conf/services/tardisd.conf
	install -D -m 0755 deploy/logwatch/scripts/services/tardisd $(LOGWATCH_DEST)/scripts/services/tardisd
	test -e $(LOGWATCH_DEST)/conf/logfiles/tardisd.conf || \
	  install -D -m 0644 deploy/logwatch/conf/logfiles/tardisd.conf $(LOGWATCH_DEST)/conf/logfiles/tardisd.conf
# --- end logwatch ------------------------------------------------------------------------------

# --- deploy (issue 7): images, compose, Helm, systemd. deploy/README.md and docs/operations.md
# ("Deploying") describe them. Container targets need `scripts/system-deps.sh --containers`.
.PHONY: images compose-test kube-play-test deploy-lint deploy-tools qemu
PLATFORMS ?=

# The image for the host platform (or PLATFORMS=linux/arm64,linux/arm/v7 under qemu: `make qemu` first).
images:
	bash scripts/system-deps.sh --containers
	PLATFORMS=$(PLATFORMS) bash scripts/images.sh

# Build, compose up with podman-compose, back up over tardis://, restore over remote-http, down/up.
compose-test: setup
	bash scripts/system-deps.sh --containers
	bash scripts/compose-test.sh

# The Helm chart's pods under `podman kube play` (as far as podman 4.3 supports the objects).
kube-play-test: setup
	bash scripts/system-deps.sh --containers
	bash scripts/kube-play-test.sh

# hadolint, yamllint, helm lint, helm template | kubernetes-validate --strict, systemd-analyze.
deploy-lint:
	bash scripts/deploy-lint.sh

deploy-tools:
	bash scripts/deploy-tools.sh

# Emulation for foreign-architecture images (binfmt_misc with qemu-user-static).
qemu:
	bash scripts/system-deps.sh --qemu
	bash scripts/qemu-setup.sh
# --- end deploy

# --- reliability report (issue 8) --------------------------------------------------------------
# `make reliability-report`: run the reliability suites (tests/reliability/), each writing a JSON
# summary to tests/reliability/results/, and render docs/reliability.md from them. The report is
# written even when a suite fails (its failures are in the table); the target then fails too.
.PHONY: reliability-report
reliability-report: setup
	rm -rf tests/reliability/results
	$(BIN)/python -m pytest -q tests/reliability $(PYTEST_ARGS); status=$$?; \
	  $(BIN)/python scripts/reliability_report.py; exit $$status
# --- end reliability report ----------------------------------------------------------------------
