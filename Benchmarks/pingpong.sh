#!/usr/bin/env bash
# Ping-pong latency and bandwidth: C MPI against swiftpar (plain numbers and Codable), on this
# machine in one run. The two programs alternate for several rounds so that a change in the
# machine's speed during the run hits both alike; each figure is the median over the rounds,
# and the ratios compare those medians. Usage: Benchmarks/pingpong.sh [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-5}"

Launch/setup.sh
mkdir -p Benchmarks/bin
mpicc -O2 -o Benchmarks/bin/pingpong Benchmarks/pingpong.c
swift build -c release --product swiftpar >/dev/null
swiftpar="$(swift build -c release --show-bin-path)/swiftpar"

[ "$(id -u)" -eq 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1

results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
for round in $(seq "$rounds"); do
    mpirun -n 2 Benchmarks/bin/pingpong 3 > "$results/c.$round"
    mpirun -n 2 "$swiftpar" bench pingpong --json --repetitions 3 > "$results/swift.$round"
done

python3 - "$results" "$rounds" <<'PY'
import json, statistics, sys
folder, rounds = sys.argv[1], int(sys.argv[2])
c, ours = {}, {}
for r in range(1, rounds + 1):
    for line in open(f"{folder}/c.{r}").read().split("\n"):
        if line.strip():
            label, _, us, _ = line.split()
            c.setdefault(label, []).append(float(us))
    text = open(f"{folder}/swift.{r}").read()
    for key, value in json.loads(text[text.index('{\n  "codable_4MiB"'):]).items():
        ours.setdefault(key, []).append(value["oneWayMicroseconds"])
size = {"8B": 8, "64KiB": 65536, "4MiB": 4194304}
med = statistics.median
def spread(xs): return 100 * (max(xs) - min(xs)) / med(xs)
print(f"ping-pong, ranks 0 and 1 under mpirun -n 2, median of {rounds} alternating rounds (spread = max-min over rounds)")
print(f"{'size':6} {'C µs':>8} {'C GB/s':>7} | {'numbers µs':>10} {'GB/s':>6} {'lat ×C':>6} {'bw %C':>6} | {'Codable µs':>10} {'GB/s':>6} {'bw %C':>6} | spread C/num/Cod")
for label in ["8B", "64KiB", "4MiB"]:
    cu, nu, ku = med(c[label]), med(ours[f"numbers_{label}"]), med(ours[f"codable_{label}"])
    gb = lambda us: size[label] / us / 1e3
    print(f"{label:6} {cu:8.3f} {gb(cu):7.3f} | {nu:10.3f} {gb(nu):6.2f} {nu/cu:6.2f} {100*cu/nu:5.0f}% | {ku:10.3f} {gb(ku):6.2f} {100*cu/ku:5.0f}% |"
          f" {spread(c[label]):.0f}%/{spread(ours['numbers_'+label]):.0f}%/{spread(ours['codable_'+label]):.0f}%")
PY
