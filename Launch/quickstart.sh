#!/usr/bin/env bash
# From a fresh clone on Debian: install what is missing, build swiftpar, and run its main job,
# counting the primes up to 10^9, on the local backend and on 4 ranks with Open MPI.
# Usage: Launch/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."

Launch/setup.sh
swift build -c release --product swiftpar
bin="$(swift build -c release --show-bin-path)/swiftpar"

# Open MPI refuses to run as root unless told, and needs leave to put more ranks than cores.
if [ "$(id -u)" -eq 0 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export OMPI_MCA_rmaps_base_oversubscribe=1

echo "== swiftpar info (local backend, one rank per core)"
"$bin" info
echo
echo "== mpirun -n 4 swiftpar info"
mpirun -n 4 "$bin" info
echo
echo "== swiftpar primes 1e9 (local backend)"
"$bin" primes 1e9 --json
echo
echo "== mpirun -n 4 swiftpar primes 1e9"
mpirun -n 4 "$bin" primes 1e9
echo
echo "swiftpar is at $bin"
