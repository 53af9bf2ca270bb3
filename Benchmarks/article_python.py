"""The article's benchmark as it stands (serial, threading, multiprocessing.Process), with
its cpu_intensive_task, for comparing with `swiftpar bench`. Prints JSON seconds.
Usage: python3 Benchmarks/article_python.py ITERATIONS N"""
import json
import multiprocessing
import sys
import threading
import time


def cpu_intensive_task(n):
    count = 0
    for i in range(2, n):
        if all(i % j != 0 for j in range(2, int(i ** 0.5) + 1)):
            count += 1
    return count


def run(kind, iterations, n):
    start = time.perf_counter()
    if kind == "sequential":
        for _ in range(iterations):
            cpu_intensive_task(n)
    else:
        make = threading.Thread if kind == "threading" else multiprocessing.Process
        workers = [make(target=cpu_intensive_task, args=(n,)) for _ in range(iterations)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    return time.perf_counter() - start


if __name__ == "__main__":
    iterations, n = int(sys.argv[1]), int(sys.argv[2])
    print(json.dumps({kind: run(kind, iterations, n) for kind in ("sequential", "threading", "multiprocessing")}))
