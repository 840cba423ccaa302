"""Helpers for the model server tests (no tests here): a workspace with models, server
processes started and stopped by PID, and a look at the server's accepted sockets.

The workspace is built once per test session (`serving_workspace`) and holds:

    iris@1, iris@2   LogisticRegression fitted on the iris DataFrame (alias champion -> 1)
    swap@1, swap@2   the same two models again, for the hot-swap test to move aliases on
    diabetes@1       Ridge fitted on a plain array (a tensor model, a regressor)
    mixed@1          a pipeline taking a string column ("size") and two numeric ones
    sleepy@1         sleeps as many seconds as its first input value says, then sums rows
    broken@1         raises inside predict

``sleepy`` and ``broken`` are python_function models whose class lives in a module the
tests write (`MODELS_MODULE`); the servers import it through PYTHONPATH and trust it.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from integration_support import cli_env

import modelcycle as mc
from servers import free_port

HOST = "127.0.0.1"
START_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0
MODELS_MODULE = "mc_serving_test_models"
TOKEN = "s3cret-token-for-tests"
IRIS_COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]

MODELS_SOURCE = '''
"""Models for the model server tests."""
import time

import numpy as np


class Sleepy:
    """Sleeps X[0, 0] seconds (0 to 10), then answers the row sums."""

    def predict(self, X):
        X = np.asarray(X, dtype=float)
        time.sleep(min(max(float(X[0, 0]), 0.0), 10.0))
        return X.sum(axis=1)


class Broken:
    """Raises inside predict, always."""

    def predict(self, X):
        raise RuntimeError("deliberate failure inside predict")
'''

TENSOR4 = {
    "kind": "tensor",
    "inputs": [{"dtype": "float64", "shape": [-1, 4]}],
    "outputs": [{"name": "prediction", "dtype": "float64", "shape": [-1]}],
}


@dataclass
class ServingWorkspace:
    root: Path
    models_dir: Path

    def open(self) -> Any:
        return mc.Workspace.open(self.root)


_BUILT: dict[str, ServingWorkspace] = {}


def serving_workspace(factory: pytest.TempPathFactory) -> ServingWorkspace:
    """The session's workspace with the models above (built on first use)."""
    if "ws" not in _BUILT:
        base = factory.mktemp("serving")
        _BUILT["ws"] = _build(base)
    return _BUILT["ws"]


def _build(base: Path) -> ServingWorkspace:
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import load_diabetes, load_iris
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    models_dir = base / "code"
    models_dir.mkdir()
    (models_dir / f"{MODELS_MODULE}.py").write_text(MODELS_SOURCE)
    if str(models_dir) not in sys.path:
        sys.path.insert(0, str(models_dir))
    import importlib

    code = importlib.import_module(MODELS_MODULE)
    root = base / "ws"
    ws = mc.Workspace.create(root)
    try:
        x, y = load_iris(return_X_y=True, as_frame=True)
        for name in ("iris", "swap"):
            for c in (1.0, 0.05):
                model = LogisticRegression(C=c, max_iter=2000).fit(x, y)
                with ws.start_run(name) as run:
                    run.log_model(model, "model", input_example=x.head(3), register_as=name)
            ws.models.set_alias(name, "champion", 1)
        xd, yd = load_diabetes(return_X_y=True)
        with ws.start_run("diabetes") as run:
            run.log_model(
                Ridge().fit(xd, yd), "model", input_example=xd[:3], register_as="diabetes"
            )
        mixed_x = mixed_frame(x)
        pipeline = Pipeline(
            [
                (
                    "prep",
                    ColumnTransformer(
                        [("size", OneHotEncoder(handle_unknown="ignore"), ["size"])],
                        remainder="passthrough",
                    ),
                ),
                ("clf", LogisticRegression(max_iter=2000)),
            ]
        ).fit(mixed_x, y)
        with ws.start_run("mixed") as run:
            run.log_model(pipeline, "model", input_example=mixed_x.head(3), register_as="mixed")
        for name, obj in (("sleepy", code.Sleepy()), ("broken", code.Broken())):
            with ws.start_run(name) as run:
                run.log_model(obj, "model", signature=TENSOR4, register_as=name)
    finally:
        ws.close()
    return ServingWorkspace(root, models_dir)


def mixed_frame(x: Any) -> Any:
    """Iris with a string column: "size" from the petal length, and two numeric columns."""
    frame = x[["sepal length (cm)", "petal width (cm)"]].copy()
    frame.insert(0, "size", np.where(x["petal length (cm)"] > 3.0, "large", "small"))
    return frame


def iris_rows(n: int = 150) -> np.ndarray[Any, Any]:
    from sklearn.datasets import load_iris

    data: np.ndarray[Any, Any] = load_iris().data
    return data[:n]


def records(rows: np.ndarray[Any, Any], columns: list[str] = IRIS_COLUMNS) -> list[dict[str, Any]]:
    return [dict(zip(columns, map(float, row), strict=True)) for row in rows]


# --------------------------------------------------------------------------- servers


@dataclass
class Server:
    """A model server process on 127.0.0.1, stopped by PID."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    token: str | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def client(self, **options: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers(), timeout=30.0, **options)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        """Signal the server by PID and wait for it (SIGKILL if it hangs); its exit code."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, sig)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=STOP_TIMEOUT)
        return self.process.returncode


def start_server(
    ws: ServingWorkspace, args: list[str], log_dir: Path, *, token: str | None = None
) -> Server:
    """Start ``python -m modelcycle.serving ARGS`` on a free port; wait until it is ready."""
    log_dir.mkdir(parents=True, exist_ok=True)
    extra: list[str] = ["--trust", f"{MODELS_MODULE}.*"]
    if token is not None:
        token_file = log_dir / "tokens.txt"
        token_file.write_text(f"# tokens\nsome-other-token\n{token}\n")
        extra += ["--token-file", str(token_file)]
    env = cli_env(MODELCYCLE_WORKSPACE=str(ws.root), PYTHONPATH=str(ws.models_dir))
    last = ""
    for _ in range(3):
        port = free_port()
        log_path = log_dir / f"server-{port}.log"
        cmd = [sys.executable, "-m", "modelcycle.serving", *args, *extra]
        cmd += ["--host", HOST, "--port", str(port)]
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                cmd,
                cwd=ws.root,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        server = Server(process, port, log_path, token)
        if _wait_ready(server):
            return server
        server.stop(signal.SIGKILL)
        last = server.log()
        if "address already in use" not in last:
            break
    pytest.fail(f"the model server did not become ready; its log:\n{last[-4000:]}")


def _wait_ready(server: Server) -> bool:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/v2/health/ready", timeout=2.0).status_code == 200:
                return True
        time.sleep(0.1)
    return False


@contextlib.contextmanager
def running(
    ws: ServingWorkspace, args: list[str], log_dir: Path, **options: Any
) -> Iterator[Server]:
    server = start_server(ws, args, log_dir, **options)
    try:
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------- metrics


def metric(server: Server, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels`` (0 if none)."""
    text = httpx.get(f"{server.url}/metrics", timeout=10.0).text
    return metric_in(text, name, **labels)


def metric_in(text: str, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def wait_for(condition: Any, timeout: float, what: str) -> None:
    """Poll ``condition()`` until it is true; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


# --------------------------------------------------------------------------- sockets

SYS_PIDFD_GETFD = 438  # the same number on x86-64 and arm64


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(parents.get(p, []))
    return found


def _socket_inode(local_port: int, remote_port: int) -> int | None:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, remote = fields[1], fields[2]
                if (
                    int(local.rsplit(":", 1)[1], 16) == local_port
                    and int(remote.rsplit(":", 1)[1], 16) == remote_port
                ):
                    return int(fields[9])
    return None


def accepted_nodelay(server: Server, client: socket.socket) -> int:
    """TCP_NODELAY of the server-side socket that accepted ``client``'s connection, read
    from the server process (or its workers) through pidfd_getfd."""
    inode = _socket_inode(server.port, client.getsockname()[1])
    assert inode is not None, "the accepted connection is not in /proc/net/tcp"
    target = f"socket:[{inode}]"
    libc = ctypes.CDLL(None, use_errno=True)
    for pid in process_tree(server.pid):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}") != target:
                    continue
                pidfd = os.pidfd_open(pid)
                try:
                    copy = libc.syscall(SYS_PIDFD_GETFD, pidfd, int(fd), 0)
                    if copy < 0:
                        errno = ctypes.get_errno()
                        raise OSError(errno, f"pidfd_getfd: {os.strerror(errno)}")
                finally:
                    os.close(pidfd)
                with socket.socket(fileno=copy) as sock:
                    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    raise AssertionError(f"no process of server {server.pid} holds {target}")


def raw_http(port: int, request: bytes, *, read_timeout: float = 10.0) -> bytes:
    """Send ``request`` on a fresh connection and read until the server closes or the
    response's Content-Length is complete."""
    with socket.create_connection((HOST, port), timeout=read_timeout) as sock:
        sock.sendall(request)
        return read_response(sock)


def read_response(sock: socket.socket) -> bytes:
    data = b""
    while True:
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = 0
            for line in head.split(b"\r\n")[1:]:
                key, _, value = line.partition(b":")
                if key.strip().lower() == b"content-length":
                    length = int(value)
            if len(body) >= length:
                return data
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def body_of(response: bytes) -> Any:
    return json.loads(response.partition(b"\r\n\r\n")[2])
