"""Helpers of the server tests: a real ``dsr serve`` (:class:`ServerProcess`) with asserting requests."""
from __future__ import annotations

import io
import json
import time

import numpy as np

from dsr_backend.server.process import ServerProcess as _ServerProcess


class ServerProcess(_ServerProcess):
    """The service in a subprocess, with JSON requests that assert their status and job polling."""

    def json(self, method: str, path: str, body: bytes | None = None, expect: int = 200):
        status, data = self.request(method, path, body)
        assert status == expect, (status, data)
        return json.loads(data)

    def wait_job(self, job_id: str, until=lambda job: job["state"] not in ("queued", "running"),
                 timeout: float = 120.0) -> dict:
        """Poll a job until ``until(job)`` holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.json("GET", f"/jobs/{job_id}")
            if until(job):
                return job
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} did not get there in {timeout} s: {job}")


def npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def job_upload(series, name: str, steps: int, preset: str = "tiny", members: int | None = None, **replace) -> bytes:
    """The training upload of a surface series (points + normals), with arrays replaced as given."""
    settings = dict(name=name, preset=preset, steps=steps, **({} if members is None else dict(members=members)))
    arrays = dict(settings=np.array(json.dumps(settings)), times=series.times,
                  sizes=series.frame_sizes(), proteins=series.proteins, points=np.concatenate(series.points),
                  normals=np.concatenate(series.normals))
    arrays.update(replace)
    return npz(**{key: value for key, value in arrays.items() if value is not None})
