#!/usr/bin/env bash
# Start-up cost of a whole job: `swiftpar -n N info` on the local backend with its ranks forked
# and spawned (SWIFTPAR_START), against `mpirun -n N swiftpar info` (Open MPI), alternating,
# median wall time of several runs each.
# Usage: Benchmarks/startup.sh [ranks] [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
ranks="${1:-8}"
runs="${2:-10}"

source Benchmarks/prepare.sh

python3 - "$swiftpar" "$ranks" "$runs" <<'PY'
import statistics, subprocess, sys, time
binary, ranks, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
import os
commands = {
    f"swiftpar -n {ranks} info (fork)": ([binary, "-n", ranks, "info"], {"SWIFTPAR_START": "fork"}),
    f"swiftpar -n {ranks} info (spawn)": ([binary, "-n", ranks, "info"], {"SWIFTPAR_START": "spawn"}),
    f"mpirun -n {ranks} swiftpar info": (["mpirun", "-n", ranks, binary, "info"], {}),
}
times = {name: [] for name in commands}
for _ in range(runs):
    for name, (command, extra) in commands.items():
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=dict(os.environ, **extra))
        times[name].append(time.perf_counter() - start)
local, spawn, mpi = (statistics.median(t) for t in times.values())
for name, t in times.items():
    print(f"{name:32} median {1000*statistics.median(t):7.1f} ms  (min {1000*min(t):.1f}, max {1000*max(t):.1f}, {runs} runs)")
print(f"local start-up is {mpi/local:.1f}× faster than mpirun by fork, {mpi/spawn:.1f}× by spawn")
PY
