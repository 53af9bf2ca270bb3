#!/usr/bin/env bash
# Ping-pong latency and bandwidth: C MPI against swiftpar on MPI (plain numbers and Codable) and
# on its local backend, on this machine in one run. The two programs alternate for several rounds so that a change in the
# machine's speed during the run hits both alike; each figure is the median over the rounds,
# and the ratios compare those medians. Usage: Benchmarks/pingpong.sh [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-5}"

source Benchmarks/prepare.sh
mkdir -p Benchmarks/bin
mpicc -O2 -o Benchmarks/bin/pingpong Benchmarks/pingpong.c

results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
for round in $(seq "$rounds"); do
    mpirun -n 2 Benchmarks/bin/pingpong 3 > "$results/c.$round"
    mpirun -n 2 "$swiftpar" bench pingpong --json --repetitions 3 > "$results/swift.$round"
    "$swiftpar" -n 2 bench pingpong --json --repetitions 3 > "$results/local.$round"
done

python3 - "$results" "$rounds" <<'PY'
import json, statistics, sys
folder, rounds = sys.argv[1], int(sys.argv[2])
c, ours, local = {}, {}, {}
for r in range(1, rounds + 1):
    for line in open(f"{folder}/c.{r}").read().split("\n"):
        if line.strip():
            label, _, us, _ = line.split()
            c.setdefault(label, []).append(float(us))
    for name, target in (("swift", ours), ("local", local)):
        text = open(f"{folder}/{name}.{r}").read()
        for key, value in json.loads(text[text.index('{\n'):])["results"].items():
            target.setdefault(key, []).append(value["oneWayMicroseconds"])
size = {"8B": 8, "64KiB": 65536, "4MiB": 4194304}
med = statistics.median
def spread(xs): return 100 * (max(xs) - min(xs)) / med(xs)
print(f"ping-pong, ranks 0 and 1 under mpirun -n 2, median of {rounds} alternating rounds (spread = max-min over rounds)")
print("one-way µs (GB/s); ×C = time relative to C, %C = bandwidth relative to C")
print(f"{'size':6} | {'C MPI':>15} | {'swiftpar MPI numbers':>26} | {'swiftpar MPI Codable':>26} | {'swiftpar local numbers':>26} | {'swiftpar local Codable':>26}")
for label in ["8B", "64KiB", "4MiB"]:
    cu = med(c[label])
    gb = lambda us: size[label] / us / 1e3
    def cell(xs):
        us = med(xs)
        return f"{us:8.3f} ({gb(us):5.2f}) {us/cu:4.2f}× {100*cu/us:4.0f}%"
    print(f"{label:6} | {cu:8.3f} ({gb(cu):5.2f}) | {cell(ours['numbers_'+label])} | {cell(ours['codable_'+label])} | "
          f"{cell(local['numbers_'+label])} | {cell(local['codable_'+label])}")
print("spread over rounds (max-min)/median: " + ", ".join(
    f"{name} {label} {spread(d[key]):.0f}%" for name, d, key, label in
    [("C", c, "4MiB", "4MiB"), ("MPI", ours, "numbers_4MiB", "4MiB"), ("local", local, "numbers_4MiB", "4MiB"),
     ("C", c, "8B", "8B"), ("MPI", ours, "numbers_8B", "8B"), ("local", local, "numbers_8B", "8B")]))
PY
