"""mpi4py.futures on the pool benchmark's trivial tasks: chunk size 1 and chunk size 10000.
Run with: mpirun -n WORKERS+1 python3 -m mpi4py.futures Benchmarks/pool_mpi4py.py TASKS ROUND_TRIPS
Prints JSON: tasks per second for both."""
import json
import sys
import time

from mpi4py.futures import MPIPoolExecutor


def square(n):
    return n * n


if __name__ == "__main__":
    tasks, round_trips = int(sys.argv[1]), int(sys.argv[2])
    with MPIPoolExecutor() as executor:
        list(executor.map(square, range(100)))
        start = time.perf_counter()
        results = list(executor.map(square, range(tasks), chunksize=10000))
        chunked = tasks / (time.perf_counter() - start)
        assert results[-1] == (tasks - 1) ** 2
        start = time.perf_counter()
        list(executor.map(square, range(round_trips), chunksize=1))
        one = round_trips / (time.perf_counter() - start)
    print(json.dumps({"chunk10000TasksPerSecond": chunked, "chunkOneTasksPerSecond": one}))
