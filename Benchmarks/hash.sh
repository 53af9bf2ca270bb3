#!/usr/bin/env bash
# SHA-256 throughput: `swiftpar hash` against `sha256sum` run through `xargs -P<cores>`, on the
# same files in the page cache, alternating for several rounds; medians are compared.
# Two data sets: a few large files (2 GiB in all) and 100,000 files of 4 KiB.
# Usage: Benchmarks/hash.sh [rounds] [folder for the data sets]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
data="${2:-${TMPDIR:-/tmp}/swiftpar-hash-bench}"
cores="$(nproc)"

source Benchmarks/prepare.sh

mkdir -p "$data/large" "$data/small"
if [ ! -f "$data/large/.done" ]; then
    for i in 1 2 3 4; do head -c $((512 << 20)) /dev/urandom > "$data/large/file$i"; done
    touch "$data/large/.done"
fi
if [ ! -f "$data/small/.done" ]; then
    python3 - "$data/small" <<'PY'
import os, sys
folder = sys.argv[1]
block = os.urandom(4096 * 64)
for d in range(100):
    sub = os.path.join(folder, f"d{d:03}")
    os.makedirs(sub, exist_ok=True)
    for f in range(1000):
        n = d * 1000 + f
        with open(os.path.join(sub, f"f{f:04}"), "wb") as out:
            start = (n * 4096) % (len(block) - 4096)
            out.write(block[start:start + 4096 - 8] + n.to_bytes(8, "little"))
PY
    touch "$data/small/.done"
fi
# Warm the page cache.
cat "$data"/large/file* > /dev/null
find "$data/small" -type f -print0 | xargs -0 cat > /dev/null

python3 - "$swiftpar" "$data" "$rounds" "$cores" <<'PY'
import statistics, subprocess, sys, time
swiftpar, data, rounds, cores = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
sets = {"4 files, 2 GiB": (f"{data}/large", 4 * 512 * 2**20), "100,000 files of 4 KiB": (f"{data}/small", 100_000 * 4096)}
def reference(folder):
    find = subprocess.Popen(["find", folder, "-type", "f", "-not", "-name", ".done", "-print0"], stdout=subprocess.PIPE)
    subprocess.run(["xargs", "-0", "-P", cores, "-n", "1000", "sha256sum"], stdin=find.stdout, stdout=subprocess.DEVNULL, check=True)
    find.wait()
def ours(folder):
    subprocess.run([swiftpar, "-n", cores, "hash", folder], stdout=subprocess.DEVNULL, check=True)
print(f"SHA-256 on {cores} cores, files in the page cache, median of {rounds} alternating rounds")
print(f"{'data set':26} {'sha256sum | xargs -P' + cores:>24} {'swiftpar -n ' + cores + ' hash':>22} {'ratio':>7}")
for name, (folder, size) in sets.items():
    times = {"ref": [], "ours": []}
    for _ in range(rounds):
        for key, run in (("ref", reference), ("ours", ours)):
            start = time.perf_counter()
            run(folder)
            times[key].append(time.perf_counter() - start)
    r, o = statistics.median(times["ref"]), statistics.median(times["ours"])
    print(f"{name:26} {r:8.3f} s {size / r / 1e9:6.2f} GB/s {o:8.3f} s {size / o / 1e9:6.2f} GB/s {r / o:6.2f}×")
PY
