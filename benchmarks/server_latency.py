"""Latency of ``dsr serve`` on loopback: surface queries (median, p95) and job submissions per second.

Starts a real service on 127.0.0.1 (CPU, one torch thread), trains a tiny model through the API, then
sends surface queries and job submissions from several concurrent clients (the plugin's
``RemoteBackend``, so the client's decoding counts too). Every loop is bounded in count and in time; the
submitted jobs are cancelled at the end.

    python benchmarks/server_latency.py --clients 4 --queries 40 --submissions 40 --resolution 64
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from dsr_backend.server.process import ServerProcess
from dsr_backend.synthetic import MovingSphere
from pymol_dsr.remote import RemoteBackend


def sphere_arrays(points: int) -> dict[str, np.ndarray]:
    series = MovingSphere().series([1.0, 5.0, 9.0], points_per_frame=points)
    return dict(times=series.times, sizes=series.frame_sizes(), points=np.concatenate(series.points),
                normals=np.concatenate(series.normals))


def timed_calls(count: int, clients: int, deadline: float, call) -> tuple[list[float], float]:
    """Seconds of each of up to ``count`` calls of ``call(index)`` from ``clients`` threads, and the wall time."""
    latencies: list[float] = []
    lock = threading.Lock()

    def one(index: int) -> None:
        if time.monotonic() > deadline:
            return
        started = time.perf_counter()
        call(index)
        with lock:
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(count)))
    return latencies, time.perf_counter() - started


def summary(latencies: list[float], wall: float) -> str:
    milliseconds = np.array(latencies) * 1e3
    return (f"{len(latencies)} requests in {wall:.2f} s: median {np.median(milliseconds):.1f} ms, "
            f"p95 {np.percentile(milliseconds, 95):.1f} ms, {len(latencies) / wall:.1f} per s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (threads)")
    parser.add_argument("--queries", type=int, default=40, help="surface queries per measurement (at most)")
    parser.add_argument("--submissions", type=int, default=40, help="job submissions (at most)")
    parser.add_argument("--resolution", type=int, default=64, help="grid of each surface query")
    parser.add_argument("--points", type=int, default=2000, help="surface points per frame of each upload")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="time limit of each measurement")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="dsr-bench-") as folder:
        server = ServerProcess(f"{folder}/data", "--max-queries", "2").start()
        try:
            client = RemoteBackend(server.url, server.token, report=lambda line: None)
            arrays = sphere_arrays(args.points)
            job = client.submit_train(dict(name="bench", preset="tiny", steps=100), arrays)
            assert client.wait(job, timeout=300)["state"] == "done"
            clients = [RemoteBackend(server.url, server.token) for _ in range(args.clients)]
            rng = np.random.default_rng(0)
            times = rng.uniform(0, 1, args.queries)

            def query(index: int, backends=clients) -> None:
                backends[index % len(backends)].surfaces("bench", [float(times[index])], [0.0], args.resolution)

            results = {}
            for label, count, pool in (("surface query, 1 client", args.queries, 1),
                                       (f"surface query, {args.clients} clients", args.queries, args.clients)):
                results[label] = timed_calls(count, pool, time.monotonic() + args.max_seconds, query)
            submitted: list[str] = []

            def submit(index: int) -> None:
                settings = dict(name=f"bench-{index}", preset="tiny", steps=10)
                submitted.append(clients[index % len(clients)].submit_train(settings, arrays))

            label = f"submission of {sum(a.nbytes for a in arrays.values()) / 1e3:.0f} kB, {args.clients} clients"
            results[label] = timed_calls(args.submissions, args.clients, time.monotonic() + args.max_seconds, submit)
            for job_id in submitted:
                client.cancel(job_id)
            info = client.describe()
        finally:
            server.stop()
    print(f"dsr serve on 127.0.0.1, {info['devices']}, torch {info['torch']}; resolution {args.resolution}, "
          f"--max-queries 2")
    for label, (latencies, wall) in results.items():
        print(f"{label:45s} {summary(latencies, wall)}")
    print(json.dumps({label: dict(median_ms=1e3 * statistics.median(lat), p95_ms=1e3 * float(np.percentile(lat, 95)),
                                  per_second=len(lat) / wall) for label, (lat, wall) in results.items()}))


if __name__ == "__main__":
    main()
