"""Python's multiprocessing.Pool on the tasks of `swiftpar bench pool`, for comparison.

Prints one JSON object: trivial tasks per second (automatic chunks and chunk size 1) and the
speedup of the article's trial-division prime count over a serial loop.
Usage: python3 Benchmarks/pool_python.py WORKERS [TASKS ROUND_TRIPS HEAVY_TASKS LIMIT]
"""
import json
import multiprocessing
import sys
import time


def square(n):
    return n * n


from article_python import cpu_intensive_task  # the article's task, as it stands


def main():
    workers = int(sys.argv[1])
    tasks, round_trips, heavy_tasks, limit = (int(a) for a in (sys.argv[2:6] or (1_000_000, 20_000, 16, 50_000)))
    report = {"workers": workers}
    with multiprocessing.Pool(workers) as pool:
        pool.map(square, range(1000))  # start the workers before timing
        start = time.perf_counter()
        results = pool.map(square, range(tasks))
        report["trivialAutomaticTasksPerSecond"] = tasks / (time.perf_counter() - start)
        assert results[-1] == (tasks - 1) ** 2
        start = time.perf_counter()
        pool.map(square, range(round_trips), chunksize=1)
        report["trivialChunkOneTasksPerSecond"] = round_trips / (time.perf_counter() - start)
        start = time.perf_counter()
        serial = [cpu_intensive_task(limit + i) for i in range(heavy_tasks)]
        report["heavySerialSeconds"] = time.perf_counter() - start
        start = time.perf_counter()
        parallel = pool.map(cpu_intensive_task, [limit + i for i in range(heavy_tasks)], chunksize=1)
        report["heavyParallelSeconds"] = time.perf_counter() - start
        assert parallel == serial
        report["heavySpeedup"] = report["heavySerialSeconds"] / report["heavyParallelSeconds"]
    print(json.dumps(report))


if __name__ == "__main__":
    main()
