#!/usr/bin/env bash
# Prime counting: `swiftpar primes` against primesieve on the same cores, and trial division
# on several ranks against one, in one run. Usage: Benchmarks/primes.sh [N] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-10000000000}"
rounds="${2:-3}"
cores="$(nproc)"

source Benchmarks/prepare.sh

python3 - "$swiftpar" "$n" "$rounds" "$cores" <<'PY'
import statistics, subprocess, sys, time
swiftpar, n, rounds, cores = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
def timed(command):
    start = time.perf_counter()
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return time.perf_counter() - start, out
runs = {"primesieve": [], "local": [], "mpi": []}
answers = {}
for _ in range(rounds):
    t, out = timed(["primesieve", n, "-c", "-q", "-t", cores]); runs["primesieve"].append(t); answers["primesieve"] = out.strip()
    t, out = timed([swiftpar, "-n", cores, "primes", n]); runs["local"].append(t); answers["local"] = out.strip()
    t, out = timed(["mpirun", "-n", cores, swiftpar, "primes", n]); runs["mpi"].append(t); answers["mpi"] = out.strip()
assert len(set(answers.values())) == 1, answers
ref = statistics.median(runs["primesieve"])
print(f"π({n}) = {answers['primesieve']} on {cores} cores, median wall time of {rounds} alternating rounds")
for name, label in (("primesieve", f"primesieve -c -t{cores}"), ("local", f"swiftpar -n {cores} primes"), ("mpi", f"mpirun -n {cores} swiftpar primes")):
    t = statistics.median(runs[name])
    print(f"  {label:32} {t:7.3f} s   {t / ref:5.2f}× primesieve's time")
# Trial division: the article's workload, one rank against all of them.
limit = "3000000"
one = statistics.median(timed([swiftpar, "-n", "1", "primes", limit, "--method", "trial"])[0] for _ in range(rounds))
many = statistics.median(timed([swiftpar, "-n", cores, "primes", limit, "--method", "trial"])[0] for _ in range(rounds))
print(f"trial division up to {limit}: 1 rank {one:.3f} s, {cores} ranks {many:.3f} s, speedup {one / many:.2f}× (target ≥ {0.9 * int(cores):.1f}×)")
PY
