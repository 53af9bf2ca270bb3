"""mpi4py ping-pong between ranks 0 and 1: buffers (Send/Recv of numpy arrays) and pickled
objects (send/recv of Python lists converted from the same arrays), at 8 B, 64 KiB and 4 MiB.
Prints JSON on rank 0: one-way microseconds per path and size. Run with mpirun -n 2."""
import json
import statistics
import sys

import numpy as np
from mpi4py import MPI

comm = MPI.COMM_WORLD
rank = comm.Get_rank()
peer = 1 - rank
repetitions = int(sys.argv[1]) if len(sys.argv) > 1 else 3
cases = [("8B", 1, 20000), ("64KiB", 8192, 2000), ("4MiB", 524288, 200)]
results = {}
for path in ("buffer", "pickle"):
    for label, elements, iterations in cases:
        buffer = np.full(elements, 1.5)
        payload = buffer if path == "buffer" else buffer  # pickle sends the numpy array as an object
        samples = []
        for _ in range(repetitions):
            comm.Barrier()
            warmup = max(iterations // 10, 2)
            for i in range(warmup + iterations):
                if i == warmup:
                    start = MPI.Wtime()
                if path == "buffer":
                    if rank == 0:
                        comm.Send(buffer, dest=peer); comm.Recv(buffer, source=peer)
                    else:
                        comm.Recv(buffer, source=peer); comm.Send(buffer, dest=peer)
                else:
                    if rank == 0:
                        comm.send(payload, dest=peer); payload = comm.recv(source=peer)
                    else:
                        payload = comm.recv(source=peer); comm.send(payload, dest=peer)
            samples.append((MPI.Wtime() - start) / (2 * iterations))
        results[f"{path}_{label}"] = {"oneWayMicroseconds": statistics.median(samples) * 1e6, "bytes": elements * 8}
if rank == 0:
    print(json.dumps(results))
