"""Word frequencies of the files under a folder, the way a Python user writes it: a plain loop,
or multiprocessing.Pool with collections.Counter. Words are runs of bytes between ASCII
whitespace (bytes.split()), as in `swiftpar bench wordcount`. Prints JSON.

    python3 Benchmarks/wordcount_python.py FOLDER [PROCESSES]     # PROCESSES 0: plain loop
"""
import collections
import json
import multiprocessing
import os
import sys
import time


def count_words(path):
    with open(path, "rb") as f:
        return collections.Counter(f.read().split())


def files_under(root):
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            if not (folder == root and name == "COMPLETE") and os.path.isfile(path) and not os.path.islink(path):
                found.append(path)
    return sorted(found)


def main():
    root = sys.argv[1]
    processes = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    files = files_under(root)
    start = time.perf_counter()
    total = collections.Counter()
    if processes == 0:
        for path in files:
            total.update(count_words(path))
    else:
        with multiprocessing.Pool(processes) as pool:
            for counts in pool.imap_unordered(count_words, files):
                total.update(counts)
    seconds = time.perf_counter() - start
    print(json.dumps({"files": len(files), "words": sum(total.values()), "distinctWords": len(total),
                      "seconds": seconds, "processes": processes}))


if __name__ == "__main__":
    main()
