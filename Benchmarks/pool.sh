#!/usr/bin/env bash
# Pool.map throughput: swiftpar (local backend and under mpirun) against Python's
# multiprocessing.Pool.map on the same tasks, in one run, alternating for several rounds;
# medians are compared. The CPU-heavy task is the article's trial-division prime count (Python
# gets a smaller bound, since it is about 100 times slower; speedups are compared, not times).
# Usage: Benchmarks/pool.sh [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
workers="$(nproc)"

source Benchmarks/prepare.sh

results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
for round in $(seq "$rounds"); do
    python3 Benchmarks/pool_python.py "$workers" 1000000 20000 16 50000 > "$results/python.$round"
    "$swiftpar" -n "$workers" bench pool --json > "$results/local.$round"
    mpirun -n "$workers" "$swiftpar" bench pool --json > "$results/mpi.$round"
done

python3 - "$results" "$rounds" "$workers" <<'PY'
import json, statistics, sys
folder, rounds, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
runs = {name: [json.load(open(f"{folder}/{name}.{r}")) for r in range(1, rounds + 1)] for name in ("python", "local", "mpi")}
def med(name, key): return statistics.median(run[key] for run in runs[name])
print(f"Pool.map with {workers} workers on {workers} cores, median of {rounds} alternating rounds")
print(f"{'measure':44} {'Python':>12} {'swiftpar local':>16} {'swiftpar MPI':>14}")
for key, label, unit, scale in [
    ("trivialAutomaticTasksPerSecond", "1,000,000 trivial tasks, automatic chunks", "M/s", 1e6),
    ("trivialChunkOneTasksPerSecond", "20,000 trivial tasks, chunk size 1", "k/s", 1e3),
]:
    p, l, m = med("python", key), med("local", key), med("mpi", key)
    print(f"{label:44} {p/scale:8.2f} {unit} {l/scale:8.2f} {unit} ({l/p:4.1f}×) {m/scale:7.2f} {unit} ({m/p:4.1f}×)")
p, l, m = (med(n, "heavySpeedup") for n in ("python", "local", "mpi"))
print(f"{'CPU-heavy map, speedup over serial':44} {p:11.2f}× {l:15.2f}× {m:13.2f}×   (target ≥ {0.9*workers:.1f}×)")
print(f"{'  serial seconds (Python bound 50,000; ours 1,000,000)':44} {med('python','heavySerialSeconds'):11.3f}  {med('local','heavySerialSeconds'):15.3f}  {med('mpi','heavySerialSeconds'):13.3f}")
PY
