#!/usr/bin/env bash
# Build and publish examples/debian-vim, then pull the published image back and run vim in it.
set -euo pipefail
cd "$(dirname "$0")/.."
DOCKER=${DOCKER:-/usr/bin/docker}
IMAGE=localhost:5000/atguiguwh/myvim:1.1

bash scripts/setup.sh
cargo run --release -- apply examples/debian-vim/pipeline.toml

# Drop the local tag so that the image really comes back from the registry.
"$DOCKER" rmi "$IMAGE" >/dev/null 2>&1 || true
"$DOCKER" pull "$IMAGE"
"$DOCKER" run --rm --entrypoint /bin/sh "$IMAGE" -c 'vim --version | head -1'
