#!/usr/bin/env bash
# Prepare the machine (engine, registry, base images), then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo test --release --tests
