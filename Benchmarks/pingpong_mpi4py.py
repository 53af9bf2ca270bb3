"""mpi4py ping-pong between ranks 0 and 1, the Python side of `swiftpar bench pingpong`.

Buffers (Send/Recv of numpy arrays) and pickled objects (send/recv) of the shapes swiftpar sends
as Codable values: numpy arrays of 8 B, 64 KiB and 4 MiB; a small record as a dataclass and as a
tuple (an int, a float and a short str); a list of about 64 KiB and 4 MiB of 10-byte words; a
dict of 10,000 and of about 4 MiB (233,017) word counts. Prints one JSON document on rank 0:
one-way microseconds per case. Run with mpirun -n 2.
"""
import dataclasses
import json
import statistics
import sys

import numpy as np
from mpi4py import MPI


@dataclasses.dataclass
class Small:
    id: int
    weight: float
    name: str


comm = MPI.COMM_WORLD
rank = comm.Get_rank()
peer = 1 - rank
repetitions = int(sys.argv[1]) if len(sys.argv) > 1 else 3


def words(count):
    return [f"word{100_000 + i}" for i in range(count)]


def counts(count):
    return {f"word{100_000 + i}": i * 7 % 1000 for i in range(count)}


def measure(iterations, round_trip):
    samples = []
    for _ in range(repetitions):
        comm.Barrier()
        warmup = max(iterations // 10, 2)
        for i in range(warmup + iterations):
            if i == warmup:
                start = MPI.Wtime()
            round_trip()
        samples.append((MPI.Wtime() - start) / (2 * iterations))
    return statistics.median(samples) * 1e6


def buffer_case(elements):
    buffer = np.full(elements, 1.5)

    def round_trip():
        if rank == 0:
            comm.Send(buffer, dest=peer)
            comm.Recv(buffer, source=peer)
        else:
            comm.Recv(buffer, source=peer)
            comm.Send(buffer, dest=peer)
    return round_trip


def pickle_case(value):
    def round_trip():
        if rank == 0:
            comm.send(value, dest=peer)
            comm.recv(source=peer)
        else:
            comm.send(comm.recv(source=peer), dest=peer)
    return round_trip


cases = []
for label, elements, iterations in (("8B", 1, 20000), ("64KiB", 8192, 2000), ("4MiB", 524288, 200)):
    cases.append((f"buffer_{label}", elements * 8, iterations, buffer_case(elements)))
    cases.append((f"pickle_{label}", elements * 8, iterations, pickle_case(np.full(elements, 1.5))))
cases.append(("pickle_small", 21, 20000, pickle_case(Small(42, 1.5, "hello"))))
cases.append(("pickle_small_tuple", 21, 20000, pickle_case((42, 1.5, "hello"))))
for label, count, iterations in (("64KiB", 6554, 500), ("4MiB", 419430, 10)):
    cases.append((f"pickle_strings_{label}", count * 10, iterations, pickle_case(words(count))))
for label, count, iterations in (("10000", 10000, 200), ("4MiB", 233017, 10)):
    cases.append((f"pickle_dictionary_{label}", count * 18, iterations, pickle_case(counts(count))))

results = {}
for key, size, iterations, round_trip in cases:
    results[key] = {"oneWayMicroseconds": measure(iterations, round_trip), "bytes": size}
if rank == 0:
    print(json.dumps(results))
