"""The remote backend: a ``dsr serve`` service reached over HTTP(S) with the stdlib's urllib.

Jobs live on the server, so a dropped connection loses nothing: :meth:`RemoteBackend.wait` says once that
the connection is gone, keeps polling, and says when it is back. Other calls fail with a one-line message.
The token goes only into the ``Authorization`` header; it is never printed or put in a message.
"""
from __future__ import annotations

import io
import json
import math
import os
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from http.client import HTTPException
from typing import Any, Callable

import numpy as np
from pymol import CmdException

TOKEN_VARIABLE = "PYMOL_DSR_TOKEN"
"""Environment variable holding the server's token (instead of ``token=`` or ``token_file=``)."""

FINISHED = ("done", "failed", "cancelled")
POLL_SECONDS = 0.5
RETRY_SECONDS = 2.0
TIMEOUT = 30.0          # seconds for small requests
TRANSFER_TIMEOUT = 600.0  # uploads, checkpoints and surface queries
EVALUATION_TIMEOUT = 6 * 3600.0  # dsr_evaluate scores every frame on the server before it answers


class ConnectionLost(CmdException):
    """The server could not be reached (jobs there keep running)."""


def resolve_token(token: str = "", token_file: str = "") -> str:
    """The token given, else the one in ``token_file``, else ``$PYMOL_DSR_TOKEN``."""
    if not token and token_file:
        path = os.path.expanduser(token_file)
        try:
            with open(path, encoding="ascii") as handle:
                token = handle.read().strip()
        except (OSError, UnicodeDecodeError) as error:
            raise CmdException(f"cannot read the token file {path}: {getattr(error, 'strerror', error)}") from None
    token = token or os.environ.get(TOKEN_VARIABLE, "")
    if not token:
        raise CmdException(f"the remote backend needs the server's token: token_file=/path/to/token (a copy of "
                           f"the server's --token-file) or the {TOKEN_VARIABLE} environment variable")
    return token


def _umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_url(url: str) -> str:
    """``http(s)://host:port`` without a trailing slash; no credentials, path, query or fragment."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CmdException(f"the server address must look like http://host:8765, not '{url}'")
    if parts.username or parts.password or parts.path.strip("/") or parts.query or parts.fragment:
        raise CmdException("give the server address only (http://host:port); the token goes in token= or "
                           "token_file=")
    return f"{parts.scheme}://{parts.netloc}"


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _arrays(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def unpack_surfaces(arrays: dict[str, np.ndarray]) -> list[list[dict]]:
    """The meshes of a surface query (see ``dsr_backend.server.wire``) as ``result[i][j]`` dicts."""
    vertex_counts, face_counts = arrays["vertex_counts"], arrays["face_counts"]
    vertex_ends, face_ends = np.cumsum(vertex_counts.ravel()), np.cumsum(face_counts.ravel())
    per_vertex = [key for key in ("vertices", "normals", "speed") if key in arrays]
    rows = []
    for i, t in enumerate(arrays["t"]):
        row = []
        for j, level in enumerate(arrays["level"]):
            k = i * len(arrays["level"]) + j
            vertices = slice(vertex_ends[k] - vertex_counts[i, j], vertex_ends[k])
            faces = slice(face_ends[k] - face_counts[i, j], face_ends[k])
            mesh = {key: arrays[key][vertices] for key in per_vertex}
            mesh.update(t=float(t), level=float(level), faces=arrays["faces"][faces])
            row.append(mesh)
        rows.append(row)
    return rows


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Follow no redirect: urllib would send the Authorization header on to wherever it points."""

    def redirect_request(self, *args, **kwargs) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


class RemoteBackend:
    """A ``dsr serve`` service. Checks the address and the token at once.

    Parameters
    ----------
    url : ``http://host:port`` (``https://`` with a TLS server).
    token : the server's bearer token.
    report : where connection notices go (``print``: PyMOL's feedback).
    """

    def __init__(self, url: str, token: str, report: Callable[[str], None] = print):
        self.url = check_url(url)
        self.label = f"remote ({self.url})"
        self._token, self._report = token, report
        self._last: dict[str, dict] = {}   # latest record of each job seen
        self._lost = False
        self.info = self.describe()

    def __repr__(self) -> str:
        return f"RemoteBackend({self.url!r})"

    # ------------------------------------------------------------------ HTTP
    def _request(self, method: str, path: str, body: bytes | None = None, timeout: float = TIMEOUT) -> bytes:
        headers = {"Authorization": f"Bearer {self._token}"}
        if body is not None:
            headers["Content-Type"] = "application/octet-stream"
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with _OPENER.open(request, timeout=timeout) as response:
                return response.read()
        except urllib.error.HTTPError as error:
            raise self._refusal(error) from None
        except (urllib.error.URLError, OSError, HTTPException) as error:
            reason = getattr(error, "reason", None) or error
            raise ConnectionLost(f"cannot reach the DSR server at {self.url} ({reason}); is it running, and the "
                                 "SSH tunnel open? Jobs on the server keep running") from None

    def _refusal(self, error: urllib.error.HTTPError) -> CmdException:
        if error.code == 401:
            return CmdException(f"the DSR server at {self.url} refused the token; give the one in its "
                                 f"--token-file (token_file= or ${TOKEN_VARIABLE})")
        try:
            detail = json.loads(error.read())["detail"]
        except (ValueError, KeyError, TypeError, OSError):
            detail = error.reason
        return CmdException(str(detail) if error.code < 500 else f"the DSR server failed ({error.code}): {detail}")

    def _upload(self, path: str, body: bytes, method: str = "POST", timeout: float = TRANSFER_TIMEOUT) -> Any:
        limit = self.info["max_upload_bytes"]
        if len(body) > limit:
            raise CmdException(f"the upload has {len(body)} bytes; the DSR server at {self.url} accepts at most "
                               f"{limit} (dsr serve --max-upload-mb)")
        return self._json(method, path, body, timeout)

    def _json(self, method: str, path: str, body: bytes | None = None, timeout: float = TIMEOUT) -> Any:
        return json.loads(self._request(method, path, body, timeout))

    @staticmethod
    def _quote(name: str) -> str:
        return urllib.parse.quote(str(name), safe="")

    # ------------------------------------------------------------------ jobs
    def describe(self) -> dict:
        return self._json("GET", "/info")

    def submit_train(self, settings: dict, arrays: dict[str, np.ndarray]) -> str:
        body = _npz({**arrays, "settings": np.array(json.dumps(settings))})
        job = self._upload("/jobs", body)
        self._last[job["id"]] = job
        return job["id"]

    def job(self, job_id: str) -> dict:
        job = self._json("GET", f"/jobs/{self._quote(job_id)}")
        self._last[job_id] = job
        return job

    def jobs(self) -> list[dict]:
        return self._json("GET", "/jobs")

    def cancel(self, job_id: str) -> dict:
        return self._json("POST", f"/jobs/{self._quote(job_id)}/cancel")

    def wait(self, job_id: str, timeout: float | None = None) -> dict:
        """Poll until the job ends or ``timeout`` seconds pass; while the server is unreachable, keep trying
        (saying so once) and return the latest record seen."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                job = self.job(job_id)
                if self._lost:
                    self._lost = False
                    self._report(f" dsr_backend: connected to {self.url} again")
            except ConnectionLost as error:
                if job_id not in self._last:
                    raise
                if not self._lost:
                    self._lost = True
                    self._report(f" dsr_backend: {error.message}; retrying every {RETRY_SECONDS:g} s")
                job = self._last[job_id]
            if job["state"] in FINISHED:
                return job
            pause = RETRY_SECONDS if self._lost else POLL_SECONDS
            if deadline is not None:
                pause = min(pause, deadline - time.monotonic())
                if pause <= 0:
                    return job
            time.sleep(pause)

    # ------------------------------------------------------------------ models
    def models(self) -> list[dict]:
        return self._json("GET", "/models")

    def model_info(self, name: str) -> dict:
        return self._json("GET", f"/models/{self._quote(name)}")

    def save_model(self, name: str, path: str) -> dict:
        """Download the model's checkpoint into the local file ``path`` (written atomically)."""
        data = self._request("GET", f"/models/{self._quote(name)}/checkpoint", timeout=TRANSFER_TIMEOUT)
        path = os.path.abspath(os.path.expanduser(path))
        tmp = ""
        try:
            if os.path.isdir(path):
                raise IsADirectoryError(21, "it is a folder")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=f".{os.path.basename(path)}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, path)
        except OSError as error:
            if tmp and os.path.exists(tmp):
                os.unlink(tmp)
            raise CmdException(f"cannot write {path}: {error.strerror or error}") from None
        return dict(name=name, path=path)

    def load_model(self, path: str, name: str, device: str = "") -> dict:
        """Upload the local checkpoint ``path`` as model ``name`` (the server picks the device)."""
        with open(os.path.abspath(os.path.expanduser(path)), "rb") as handle:
            data = handle.read()
        return self._upload(f"/models/{self._quote(name)}/checkpoint", data, "PUT")

    def delete_model(self, name: str) -> dict:
        """Delete the model and its checkpoint on the server."""
        return self._json("DELETE", f"/models/{self._quote(name)}")

    # ------------------------------------------------------------------ queries
    def _query(self, model: str, what: str, **params: Any) -> dict[str, np.ndarray]:
        query = urllib.parse.urlencode(params, doseq=True)
        return _arrays(self._request("GET", f"/models/{self._quote(model)}/{what}?{query}", timeout=TRANSFER_TIMEOUT))

    def surfaces(self, model: str, ts: list[float], levels: list[float], resolution: int = 64,
                 protein: int | str = 0, with_speed: bool = False,
                 min_component: float | None = None) -> list[list[dict]]:
        extra = {} if min_component is None else {"min_component": float(min_component)}
        arrays = self._query(model, "surface", t=[float(t) for t in ts], level=[float(v) for v in levels],
                             resolution=int(resolution), protein=protein, speed=str(bool(with_speed)).lower(),
                             **extra)
        return unpack_surfaces(arrays)

    def sdf_grid(self, model: str, t: float, resolution: int = 64, protein: int | str = 0) -> dict:
        arrays = self._query(model, "sdf", t=float(t), resolution=int(resolution), protein=protein)
        return dict(grid=arrays["grid"], origin=[float(v) for v in arrays["origin"]],
                    spacing=float(arrays["spacing"]))

    def evaluate(self, model: str, arrays: dict[str, np.ndarray], train_times: list[float], protein: int | str = 0,
                 resolution: int = 128, samples: int = 300_000, baselines: bool = True,
                 frames: list[int] | None = None, all_times: list[float] | None = None) -> dict:
        """Score the model on the server against the reference atoms sent (see ``Engine.evaluate``)."""
        settings = dict(train_times=[float(t) for t in train_times], protein=protein, resolution=int(resolution),
                        samples=int(samples), baselines=bool(baselines),
                        frames=None if frames is None else [int(i) for i in frames],
                        all_times=None if all_times is None else [float(t) for t in all_times])
        body = _npz({**arrays, "settings": np.array(json.dumps(settings))})
        result = self._upload(f"/models/{self._quote(model)}/evaluate", body, timeout=EVALUATION_TIMEOUT)
        for row in result["summary"] + result["frames"]:  # JSON has no NaN: the server sends null
            row.update({key: math.nan for key, value in row.items() if value is None})
        return result

    def close(self) -> None:
        """Nothing to end: jobs and models stay on the server."""
