"""``dsr serve`` in a subprocess on 127.0.0.1: for scripts, benchmarks and tests that need a real service."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

START_SECONDS = 90.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """``python -m dsr_backend.cli serve`` on the CPU with one torch thread, its log in ``DATA_DIR/../server.log``.

    Parameters
    ----------
    data_dir : the service's ``--data-dir`` (its token file lies there).
    options : more ``dsr serve`` options, e.g. ``"--checkpoint-every", "10"``; they override the defaults.
    """

    def __init__(self, data_dir: str, *options: str):
        self.data_dir, self.options = str(data_dir), list(options)
        self.token_file = os.path.join(self.data_dir, "token")
        self.log = os.path.join(os.path.dirname(self.data_dir), "server.log")
        self.process: subprocess.Popen | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        with open(self.token_file, encoding="ascii") as handle:
            return handle.read().strip()

    def start(self) -> "ServerProcess":
        """Start (again on the same port when restarted) and wait until it answers."""
        self.port = self.port or free_port()
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "dsr_backend.cli", "serve", "--port", str(self.port), "--data-dir",
                 self.data_dir, "--threads", "1", "--device", "cpu", *self.options],
                stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dsr serve exited with {self.process.returncode}:\n{open(self.log).read()}")
            try:
                if self.request("GET", "/health", token=None)[0] == 200:
                    return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"dsr serve did not answer within {START_SECONDS} s:\n{open(self.log).read()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()

    def request(self, method: str, path: str, body: bytes | None = None, token: str | None = "") -> tuple[int, bytes]:
        """(status, body) of one request; ``token=""``: the server's token, None: no Authorization header."""
        token = self.token if token == "" else token
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        if body is not None:
            headers["Content-Type"] = "application/octet-stream"
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
