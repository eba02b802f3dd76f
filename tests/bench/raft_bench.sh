#!/usr/bin/env bash
# Raft core throughput: 3 cores in one process, perfect network, no I/O.
set -euo pipefail
bin=${SANDFS_BIN:-$(cd "$(dirname "$0")/../.." && pwd)/build/bin}
exec "$bin/raft_bench"
