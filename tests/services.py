"""Real services for the tests: Redis, Daphne and Celery processes on free loopback ports.

Each is a real process started from this checkout's virtualenv, stopped (and, if it
does not stop, killed) when the test session ends. Nothing here is a mock.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, *, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    """Block until something accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port} after {timeout} s")


def stop(proc: subprocess.Popen | None, *, timeout: float = 10.0) -> None:
    """SIGTERM a process group, then SIGKILL it if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


@dataclass
class Service:
    """A started process and how to start it again."""

    name: str
    args: list[str]
    env: dict[str, str]
    port: int | None = None
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    extra: dict = field(default_factory=dict)

    def start(self, *, wait: bool = True) -> Service:
        if self.log_path is None:
            self.log_path = Path(tempfile.mkstemp(prefix=f"{self.name}-", suffix=".log")[1])
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.args, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        if wait and self.port is not None:
            wait_for_port(self.port, proc=self.proc)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        stop(self.proc, timeout=timeout)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send a signal to the whole process group (SIGKILL: a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            if sig == signal.SIGKILL:
                self.proc.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def wait_for_log(self, text: str, *, timeout: float = 30.0, after: int = 0) -> None:
        """Block until ``text`` appears in the log (past offset ``after``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log()[after:]:
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"{self.name}: {text!r} not in the log after {timeout} s:\n{self.log()[-3000:]}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


def redis_service() -> Service:
    """A throwaway Redis on a free port, no persistence."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError(
            "redis-server is not installed: run `make test` (it installs it) or apt-get install redis-server"
        )
    port = free_port()
    return Service(
        "redis",
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--protected-mode", "yes"],
        env=dict(os.environ),
        port=port,
    )


def app_env(**overrides: str) -> dict[str, str]:
    """The environment for an app process (Daphne, Celery) that shares the test's services."""
    env = dict(os.environ)
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # set for Playwright in this process only
    env.update({"DJANGO_SETTINGS_MODULE": "realtime.settings", "PYTHONUNBUFFERED": "1"})
    env.update(overrides)
    return env


def daphne_service(
    env: dict[str, str], *, port: int | None = None, access_log: bool = False, extra_args: tuple[str, ...] = ()
) -> Service:
    """The project's Daphne (``realtime.server``) serving its ASGI app (``extra_args``: more Daphne options)."""
    port = port or free_port()
    args = [sys.executable, "-m", "realtime.server", "-b", "127.0.0.1", "-p", str(port), *extra_args]
    args += ["--websocket-max-message-size", env.get("WS_MAX_FRAME_BYTES", "65536")]
    args += ["--websocket-max-frame-size", env.get("WS_MAX_FRAME_BYTES", "65536")]
    if access_log:
        args += ["--access-log", "-"]
    else:
        args += ["-v", "0"]
    args.append("realtime.asgi:application")
    return Service(f"daphne-{port}", args, env=env, port=port)


def web_service(env: dict[str, str], *, concurrency: int, port: int | None = None) -> Service:
    """``realtime.web``: ``concurrency`` of the project's Daphne processes sharing one port."""
    port = port or free_port()
    args = [sys.executable, "-m", "realtime.web", "-b", "127.0.0.1", "-p", str(port), "-v", "0"]
    args += ["--websocket-max-message-size", env.get("WS_MAX_FRAME_BYTES", "65536")]
    args += ["--websocket-max-frame-size", env.get("WS_MAX_FRAME_BYTES", "65536")]
    args.append("realtime.asgi:application")
    return Service(f"web-{port}", args, env={**env, "WEB_CONCURRENCY": str(concurrency)}, port=port)


def wait_serving(service: Service, *, timeout: float = 60.0, answers: int = 20) -> None:
    """Block until ``answers`` requests in a row, each on a new connection, get /healthz quickly.

    The port accepts as soon as ``realtime.web`` opened it; each child answers only once
    its Django is loaded, and the kernel gives each new connection to any of them.
    """
    import urllib.request

    deadline = time.monotonic() + timeout
    streak = 0
    while streak < answers:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{service.name}: not serving after {timeout} s:\n{service.log()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{service.url}/healthz", timeout=2) as response:
                streak = streak + 1 if response.status == 200 else 0
        except OSError:
            streak = 0
            time.sleep(0.2)


def celery_worker_service(env: dict[str, str], *, concurrency: int = 1) -> Service:
    """A real Celery worker (prefork), not eager mode."""
    args = [
        str(BIN / "celery"), "-A", "realtime", "worker", "--loglevel", "INFO",
        "--concurrency", str(concurrency), "--without-gossip", "--without-mingle", "--pool", "prefork",
    ]
    return Service("celery-worker", args, env=env, extra={"ready": "ready."})


def celery_worker_start(service: Service) -> Service:
    """Start a worker and wait until it consumes."""
    offset = len(service.log())
    service.start(wait=False)
    service.wait_for_log("ready.", after=offset, timeout=60)
    return service


def _postgres_bin(name: str) -> str:
    """A PostgreSQL server binary (initdb, pg_ctl): Debian keeps them off PATH."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: p.parent.parent.name)
    if not candidates:
        raise RuntimeError(
            f"{name} is not installed: run `make test` (it installs Debian's postgresql) or apt-get install postgresql"
        )
    return str(candidates[-1])


class PostgresCluster:
    """A throwaway PostgreSQL cluster: initdb in a temporary directory, pg_ctl on a free port.

    ``initdb`` refuses to run as root, so as root the cluster belongs to the ``postgres``
    user (Debian's package creates it) and the binaries run through ``runuser``. Trust
    authentication on loopback and ``fsync=off``: a test cluster, gone when it stops.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="pg-"))
        self.data = self.root / "data"
        self.log_path = self.root / "server.log"
        self.user = "postgres" if os.geteuid() == 0 else None

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = list(args)
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=120)

    def start(self) -> PostgresCluster:
        if not self.data.exists():
            if self.user is not None:
                shutil.chown(self.root, self.user)
            self._run(_postgres_bin("initdb"), "-D", str(self.data), "--auth=trust", "-U", "postgres",
                      "--encoding=UTF8", "--locale=C.UTF-8", "--no-instructions")
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='{self.root}' "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run(_postgres_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log_path), "-o", options,
                  "-w", "-t", "60", "start")
        wait_for_port(self.port)
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``immediate``: as if it crashed); the data directory stays."""
        if (self.data / "postmaster.pid").exists():
            self._run(_postgres_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", check=False)

    def restart(self) -> None:
        """Stop and start again on the same port: every client connection is cut."""
        self.stop("fast")
        self.start()

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
