#!/usr/bin/env bash
# The main job: a whole node on this machine (needs root). Extra args go to
# `afxdpctl lab` (e.g. --pods 2 --queues 4 --sharing pinned --duration 20).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/install.sh
cargo build --release --locked --workspace --bins
exec target/release/afxdpctl lab "$@"
