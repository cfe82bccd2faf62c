#!/usr/bin/env bash
# Prepare the machine (engine, registry, base images), then run the whole test suite: the
# hermetic tests and, with the `engine-tests` feature, the ones against the real engine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo test --release --features engine-tests --tests
