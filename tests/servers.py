"""Real servers for the tests: PostgreSQL and an S3-compatible server (moto).

Each server listens on 127.0.0.1 on a free port, keeps its files in a private
temporary folder and is stopped by PID. Nothing here touches a server, a database
or a cloud account that the tests did not start themselves.

If a server cannot be started (for example PostgreSQL is not installed) the helpers
raise ``RuntimeError``: run ``scripts/test``, which installs what is missing.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
PORT_ATTEMPTS = 3

PG_SUPERUSER = "modelcycle"
PG_OS_USER = "postgres"  # PostgreSQL refuses to run as root; as root we run it as this user.

S3_REGION = "us-east-1"
S3_ACCESS_KEY_ID = "testing"
S3_SECRET_ACCESS_KEY = "testing"

INSTALL_HINT = "Run `scripts/test`, which installs the test dependencies, then retry."


class ServerStartError(RuntimeError):
    """A test server could not be started."""


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _stop_process(process: subprocess.Popen[bytes], first_signal: signal.Signals) -> None:
    """Signal one process by PID, wait, and kill it if it does not exit in time."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, first_signal)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT)


def _clean_env(drop_prefixes: tuple[str, ...]) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(drop_prefixes)}


def _world_traversable(path: Path) -> bool:
    """True if every folder from / down to ``path`` can be entered by any user."""
    path = path.resolve()
    for folder in (path, *path.parents):
        try:
            mode = folder.stat().st_mode
        except OSError:
            return False
        if not mode & stat.S_IXOTH:
            return False
    return True


def _private_tempdir(prefix: str, owner: pwd.struct_passwd | None) -> Path:
    """A fresh mode-0700 temporary folder, owned by ``owner`` if given.

    When the folder is handed to another OS user, its parents must be traversable by
    that user, so a temp root that is not is skipped.
    """
    candidates = [tempfile.gettempdir()]
    if owner is not None:
        candidates += ["/tmp", "/var/tmp", "/dev/shm"]
    for root in candidates:
        if owner is None or _world_traversable(Path(root)):
            folder = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
            if owner is not None:
                os.chown(folder, owner.pw_uid, owner.pw_gid)
            folder.chmod(0o700)
            return folder
    raise ServerStartError(
        f"no temporary folder whose parents the {PG_OS_USER!r} user can traverse "
        f"(tried {candidates}); set TMPDIR to one"
    )


# --------------------------------------------------------------------------- PostgreSQL


def find_postgres_bindir() -> Path:
    """The folder holding PostgreSQL's server programs (initdb, postgres)."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        result = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        )
        if result.returncode == 0 and result.stdout.strip():
            candidates.append(Path(result.stdout.strip()))

    def version(path: str) -> tuple[int, ...]:
        name = Path(path).parent.parent.name
        return tuple(int(p) for p in name.split(".") if p.isdigit())

    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version, reverse=True)
    candidates += [Path(p).parent for p in debian]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    raise ServerStartError(
        f"PostgreSQL server programs (initdb, postgres) not found. {INSTALL_HINT}"
    )


def _postgres_os_user() -> pwd.struct_passwd | None:
    """The OS user to run PostgreSQL as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(PG_OS_USER)
    except KeyError:
        raise ServerStartError(
            f"running as root, but there is no {PG_OS_USER!r} OS user to run PostgreSQL as "
            f"(PostgreSQL refuses to run as root). {INSTALL_HINT}"
        ) from None


def _as_user(owner: pwd.struct_passwd | None) -> dict[str, Any]:
    """Popen keyword arguments that run the child as ``owner`` (no preexec_fn needed)."""
    if owner is None:
        return {}
    return {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}


@dataclass
class PostgresServer:
    """A running PostgreSQL server started by :func:`start_postgres`."""

    host: str
    port: int
    user: str
    pid: int
    data_dir: Path
    log_path: Path
    _process: subprocess.Popen[bytes] = field(repr=False)
    _root_dir: Path = field(repr=False)

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the ``postgres`` maintenance database."""
        return self.url_for("postgres")

    def url_for(self, dbname: str) -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres") -> Any:
        """A raw psycopg connection (autocommit); close it, or use it with ``with``."""
        import psycopg

        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            dbname=dbname,
            autocommit=True,
            connect_timeout=5,
        )

    def create_database(self, name: str) -> str:
        """Create an empty database and return its SQLAlchemy URL."""
        from psycopg import sql

        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)

    def stop(self) -> None:
        """Fast shutdown (SIGINT disconnects clients), SIGKILL if it hangs; remove files."""
        _stop_process(self._process, signal.SIGINT)
        shutil.rmtree(self._root_dir, ignore_errors=True)


def start_postgres(base_dir: Path) -> PostgresServer:
    """Start a throwaway PostgreSQL server; its log goes to ``base_dir``.

    The data folder lives in a private temporary folder (owned by the ``postgres`` OS
    user when running as root) and is removed by :meth:`PostgresServer.stop`.
    """
    bindir = find_postgres_bindir()
    owner = _postgres_os_user()
    base_dir.mkdir(parents=True, exist_ok=True)
    root_dir = _private_tempdir("mcpg-", owner)
    try:
        data_dir = root_dir / "data"
        socket_dir = root_dir  # short path: unix socket paths are limited to ~100 bytes
        env = _clean_env(("PG",))
        env["LC_ALL"] = "C"
        run_as = _as_user(owner)

        initdb_cmd = [str(bindir / "initdb"), "-D", str(data_dir), "-A", "trust"]
        initdb_cmd += ["-U", PG_SUPERUSER, "-E", "UTF8", "--no-locale", "--no-sync"]
        init_log = base_dir / "initdb.log"
        with init_log.open("wb") as log:
            result = subprocess.run(
                initdb_cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=root_dir,
                env=env,
                check=False,
                **run_as,
            )
        if result.returncode != 0:
            raise ServerStartError(f"initdb failed (exit {result.returncode}):\n{_tail(init_log)}")

        last_error = ""
        for attempt in range(PORT_ATTEMPTS):
            port = free_port()
            postgres_cmd = [str(bindir / "postgres"), "-D", str(data_dir), "-k", str(socket_dir)]
            postgres_cmd += ["-h", HOST, "-p", str(port), "-c", "fsync=off"]
            postgres_cmd += ["-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
            log_path = base_dir / f"postgres-{attempt}.log"
            with log_path.open("wb") as log:
                process = subprocess.Popen(
                    postgres_cmd,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=root_dir,
                    env=env,
                    start_new_session=True,
                    **run_as,
                )
            server = PostgresServer(
                host=HOST,
                port=port,
                user=PG_SUPERUSER,
                pid=process.pid,
                data_dir=data_dir,
                log_path=log_path,
                _process=process,
                _root_dir=root_dir,
            )
            last_error = _wait_for_postgres(server)
            if not last_error:
                atexit.register(server.stop)  # in case a test run is interrupted
                return server
            _stop_process(process, signal.SIGINT)
            if "could not bind" not in _tail(log_path):
                break  # not a port clash: retrying will not help
        raise ServerStartError(last_error)
    except BaseException:
        shutil.rmtree(root_dir, ignore_errors=True)
        raise


def _wait_for_postgres(server: PostgresServer) -> str:
    """Wait until the server accepts connections; return an error message, or ''."""
    import psycopg

    deadline = time.monotonic() + START_TIMEOUT
    error = "no attempt"
    while time.monotonic() < deadline:
        if server._process.poll() is not None:
            return (
                f"PostgreSQL exited with code {server._process.returncode} while starting; "
                f"log tail:\n{_tail(server.log_path)}"
            )
        try:
            with server.connect() as conn:
                conn.execute("SELECT 1")
            return ""
        except psycopg.OperationalError as exc:
            error = str(exc).strip()
        time.sleep(0.1)
    return (
        f"PostgreSQL did not accept connections on {server.host}:{server.port} within "
        f"{START_TIMEOUT:.0f} s ({error}); log tail:\n{_tail(server.log_path)}"
    )


# --------------------------------------------------------------------------- S3 (moto)


def s3_client(endpoint_url: str) -> Any:
    """A boto3 S3 client for the test server, with dummy credentials given explicitly.

    Close it (``client.close()``) when done.
    """
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(
        aws_access_key_id=S3_ACCESS_KEY_ID,
        aws_secret_access_key=S3_SECRET_ACCESS_KEY,
        region_name=S3_REGION,
    )
    return session.client(
        "s3",
        endpoint_url=endpoint_url,
        config=Config(retries={"max_attempts": 2, "mode": "standard"}),
    )


@dataclass(frozen=True)
class S3Location:
    """A place in a bucket on the test server: ``url`` is ``s3://bucket/prefix``."""

    bucket: str
    prefix: str
    endpoint_url: str

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


@dataclass
class S3Server:
    """A running moto S3 server started by :func:`start_s3`."""

    host: str
    port: int
    pid: int
    log_path: Path
    _process: subprocess.Popen[bytes] = field(repr=False)
    _root_dir: Path = field(repr=False)

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def client(self) -> Any:
        """A boto3 S3 client for this server; close it when done."""
        return s3_client(self.endpoint_url)

    def create_bucket(self, name: str) -> None:
        client = self.client()
        try:
            client.create_bucket(Bucket=name)
        finally:
            client.close()

    def stop(self) -> None:
        _stop_process(self._process, signal.SIGTERM)
        shutil.rmtree(self._root_dir, ignore_errors=True)


def start_s3() -> S3Server:
    """Start moto's standalone server in its own process (its state is private to it)."""
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
        raise ServerStartError(f"moto[server] is not installed. {INSTALL_HINT}")

    root_dir = Path(tempfile.mkdtemp(prefix="mcs3-"))
    try:
        env = _clean_env(("AWS_", "MOTO_"))
        env.update(
            AWS_ACCESS_KEY_ID=S3_ACCESS_KEY_ID,
            AWS_SECRET_ACCESS_KEY=S3_SECRET_ACCESS_KEY,
            AWS_DEFAULT_REGION=S3_REGION,
            AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        )
        last_error = ""
        for attempt in range(PORT_ATTEMPTS):
            port = free_port()
            log_path = root_dir / f"moto-{attempt}.log"
            with log_path.open("wb") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=root_dir,
                    env=env,
                    start_new_session=True,
                )
            server = S3Server(
                host=HOST,
                port=port,
                pid=process.pid,
                log_path=log_path,
                _process=process,
                _root_dir=root_dir,
            )
            last_error = _wait_for_s3(server)
            if not last_error:
                atexit.register(server.stop)  # in case a test run is interrupted
                return server
            _stop_process(process, signal.SIGTERM)
            if "already in use" not in _tail(log_path):
                break
        raise ServerStartError(last_error)
    except BaseException:
        shutil.rmtree(root_dir, ignore_errors=True)
        raise


def _wait_for_s3(server: S3Server) -> str:
    deadline = time.monotonic() + START_TIMEOUT
    error = "no attempt"
    while time.monotonic() < deadline:
        if server._process.poll() is not None:
            return (
                f"moto server exited with code {server._process.returncode} while starting; "
                f"log tail:\n{_tail(server.log_path)}"
            )
        try:
            with urllib.request.urlopen(f"{server.endpoint_url}/moto-api/", timeout=2) as resp:
                resp.read()
            return ""
        except (urllib.error.URLError, OSError) as exc:
            error = str(exc)
        time.sleep(0.1)
    return (
        f"moto server did not answer on {server.endpoint_url} within {START_TIMEOUT:.0f} s "
        f"({error}); log tail:\n{_tail(server.log_path)}"
    )
