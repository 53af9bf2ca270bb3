"""Encode and decode times of Python's pickle and json for the shapes of `swiftpar bench codec`:
a small record (dataclass and tuple), a record holding 4 MiB of doubles (a numpy array for
pickle, a list for json), a list of 6,554 words (64 KiB), a dict of 10,000 word counts and a list
of 1,000 small records. Prints one JSON document: per shape, microseconds per dumps and loads.

    python3 Benchmarks/codec_python.py [REPETITIONS]
"""
import dataclasses
import json
import pickle
import statistics
import sys
import time

import numpy as np


@dataclasses.dataclass
class Small:
    id: int
    weight: float
    name: str


@dataclasses.dataclass
class Samples:
    values: object


def timed(function, argument, iterations, repetitions):
    samples = []
    for _ in range(repetitions):
        start = time.perf_counter()
        for _ in range(iterations):
            function(argument)
        samples.append((time.perf_counter() - start) / iterations * 1e6)
    return statistics.median(samples)


def main():
    repetitions = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    shapes = {
        "small": (Small(42, 1.5, "hello"), (42, 1.5, "hello"), 200_000),
        "doubles_4MiB": (Samples(np.full(524_288, 1.5)), {"values": [1.5] * 524_288}, 100),
        "strings_64KiB": ([f"word{100_000 + i}" for i in range(6_554)], None, 2_000),
        "dictionary_10000": ({f"word{100_000 + i}": i * 7 % 1000 for i in range(10_000)}, None, 200),
        "records_1000": ([Small(i, float(i), f"n{i}") for i in range(1000)],
                         [{"id": i, "weight": float(i), "name": f"n{i}"} for i in range(1000)], 500),
    }
    results = {}
    for name, (value, json_value, iterations) in shapes.items():
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        text_value = value if json_value is None or name == "small" else json_value
        if name == "small":
            text_value = dataclasses.asdict(value)
        text = json.dumps(text_value)
        row = {
            "pickleBytes": len(data),
            "pickleDumpsMicroseconds": timed(lambda v: pickle.dumps(v, protocol=pickle.HIGHEST_PROTOCOL), value, iterations, repetitions),
            "pickleLoadsMicroseconds": timed(pickle.loads, data, iterations, repetitions),
            "jsonBytes": len(text),
            "jsonDumpsMicroseconds": timed(json.dumps, text_value, max(iterations // 10, 1), repetitions),
            "jsonLoadsMicroseconds": timed(json.loads, text, max(iterations // 10, 1), repetitions),
        }
        if json_value is not None and name == "small":
            tuple_data = pickle.dumps(json_value, protocol=pickle.HIGHEST_PROTOCOL)
            row["tuplePickleDumpsMicroseconds"] = timed(lambda v: pickle.dumps(v, protocol=pickle.HIGHEST_PROTOCOL), json_value, iterations, repetitions)
            row["tuplePickleLoadsMicroseconds"] = timed(pickle.loads, tuple_data, iterations, repetitions)
        results[name] = row
    print(json.dumps(results))


if __name__ == "__main__":
    main()
