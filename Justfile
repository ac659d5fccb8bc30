# Developer recipes. Users need none of them: `cargo run --release -- serve`
# and `cargo test --workspace` work on a machine with only the Rust toolchain.

default:
    @just --list

# Run the gateway with the catalogue in providers/ (enable providers in .env).
run *ARGS:
    cargo run --release -- serve {{ARGS}}

# The test suite, exactly as CI runs it.
test:
    cargo test --workspace

# Validate providers/ and plugins/ without serving.
check:
    cargo run --release -- check

# Build the bundled plugins as components into
# target/plugins/wasm32-wasip2/release/: host/build.rs builds every crate
# under plugins/, the no_std ones and the std ones in separate cargo runs.
plugins:
    cargo build --release -p tollgate

# A simulated day of traffic against mocks enforcing the free-tier limits
# (the README's quota table). Exits non-zero on any 429 or wasted free request.
simday:
    cargo bench -p tollgate --bench simday

# Tollgate against a direct call and a bare reverse proxy (the README's table).
bench:
    cargo bench -p tollgate --bench proxy

# The plugin sandbox alone: a fresh adapter instance and its two calls, no network.
bench-plugin:
    cargo bench -p tollgate --bench plugin

# This build (A) against another at concurrency 32, in alternating 2 s runs:
# BENCH_PAIR_TOLLGATE=path/to/other/tollgate, and/or BENCH_PAIR_PLUGINS=dir
# for B's plugins folder (one build, two versions of a plugin).
bench-pair ROUNDS="20":
    cargo bench -p tollgate --bench proxy -- --pair {{ROUNDS}}

# One gateway's chat, Messages and Responses endpoints side by side: the
# latency each inbound translation adds to chat's path.
bench-protocols ROUNDS="10":
    cargo bench -p tollgate --bench proxy -- --protocols {{ROUNDS}}

# Half an hour of mixed load with faults (32 clients, about SOAK_RATE=400
# requests/s), printing RSS, file descriptors and connections as it goes;
# fails on an unanswered request, RSS growth or a leak (docs/reliability.md).
soak SECS="1800":
    cargo bench -p tollgate --bench proxy -- --soak {{SECS}}

# Fuzz one parser (requests, sse, rate_headers, config) for SECS seconds
# with cargo-fuzz on nightly (`cargo install cargo-fuzz`); new inputs that
# reach new code are added to host/fuzz/corpus/TARGET, which `cargo test`
# replays. The plugins are built with the pinned toolchain.
fuzz TARGET SECS="600":
    cd host/fuzz && TOLLGATE_PLUGIN_TOOLCHAIN=1.95.0 cargo +nightly fuzz run -s none {{TARGET}} -- -max_total_time={{SECS}} -max_len=8192

# Shrink a target's corpus to the inputs that each add coverage.
fuzz-cmin TARGET:
    cd host/fuzz && TOLLGATE_PLUGIN_TOOLCHAIN=1.95.0 cargo +nightly fuzz cmin -s none {{TARGET}}

# `tollgate plugin new` plus `tollgate plugin build` from nothing: a fresh
# crate and an empty target folder (cargo's download cache is kept), timed.
plugin-cold:
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build --release -p tollgate
    bin="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/tollgate"
    work="$(mktemp -d)"
    start=$(date +%s.%N)
    "$bin" plugin new cold --dir "$work/cold"
    CARGO_TARGET_DIR="$work/target" "$bin" plugin build "$work/cold"
    echo "plugin new + plugin build, cold: $(python3 -c "print(round($(date +%s.%N) - $start, 1))") s"
    rm -rf "$work"

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# What CI runs.
ci:
    bash .ci/run
