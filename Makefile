# Common entry points. `make test` is what CI runs (.ci/run).
CARGO ?= cargo

.PHONY: build sample demo test lint fmt bench stack-up stack-down

build:
	$(CARGO) build --release

# Replay a real test_decoding capture into local gzipped CSV files (no network).
sample: build
	rm -rf target/sample
	./target/release/re_dms --stdin --config examples/replay-local.toml < tests/fixtures/capture_plain.txt
	@find target/sample/out -type f | sort

# The newcomer's first command: the local stack, a live source database under pgbench, re_dms
# streaming it into redshift-sim, every table compared; everything stopped again at the end
# (examples/demo/demo.sh; about 30 s once built).
demo:
	CARGO="$(CARGO)" examples/demo/demo.sh

# The whole test suite: the stack tests and fault points included (Cargo features). The stack
# tests start the local stack (tests/stack.sh) themselves unless its environment is exported.
# A bare `cargo test` runs only the tests that need nothing started.
test:
	$(CARGO) test --workspace --all-targets --features stack-tests,failpoints

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --workspace --all-targets --features stack-tests,failpoints -- -D warnings

fmt:
	$(CARGO) fmt --all

# 1,000,000 generated changes through re_dms --stdin: into the local target, then through the
# local stack into redshift-sim; then live replication from a pgbench-driven source against
# pg_recvlogical, and a Redshift outage under load (BENCHMARKS.md).
bench:
	benches/run.sh
	benches/redshift.sh
	benches/live.sh

stack-up:
	tests/stack.sh up

stack-down:
	tests/stack.sh down
