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
    authentication on loopback and ``fsync=off``: a test cluster, gone when it stops
    (``durable``: fsync and synchronous commit stay on, for benchmarks of writes).
    """

    def __init__(self, *, durable: bool = False) -> None:
        self.durable = durable
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
                   "-c max_connections=200")
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
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


def free_port_pair(offset: int = 10000, low: int = 20000, high: int = 45000) -> int:
    """A free port whose ``port + offset`` is free too (a Redis Cluster node's bus listens there)."""
    import random

    for _ in range(200):
        port = random.randint(low, high)
        try:
            for candidate in (port, port + offset):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


class RedisCluster:
    """A real Redis Cluster on loopback: ``masters`` masters with ``replicas`` replicas each.

    Every node is a ``redis-server --cluster-enabled yes`` of its own (no persistence) and
    ``redis-cli --cluster create`` joins them. ``cluster-node-timeout`` is short, so when
    a master is killed its replica takes over within a few seconds.
    """

    def __init__(self, masters: int = 3, replicas: int = 1, node_timeout_ms: int = 2000) -> None:
        self.masters = masters
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.root = Path(tempfile.mkdtemp(prefix="redis-cluster-"))
        self.nodes: dict[int, Service] = {}

    def _node(self, port: int) -> Service:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed: run `make test` (it installs it)")
        workdir = self.root / str(port)
        workdir.mkdir(exist_ok=True)
        return Service(
            f"redis-cluster-{port}",
            [exe, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", str(workdir / "nodes.conf"), "--cluster-node-timeout", str(self.node_timeout_ms),
             "--save", "", "--appendonly", "no", "--dir", str(workdir), "--protected-mode", "yes"],
            env=dict(os.environ), port=port,
        )

    def start(self, *, timeout: float = 60.0) -> RedisCluster:
        for _ in range(self.masters * (1 + self.replicas)):
            port = free_port_pair()
            self.nodes[port] = self._node(port).start()
        cli = shutil.which("redis-cli") or "redis-cli"
        subprocess.run(
            [cli, "--cluster", "create", *[f"127.0.0.1:{p}" for p in self.nodes],
             "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            check=True, capture_output=True, text=True, timeout=timeout,
        )
        self.wait_ok(timeout=timeout)
        return self

    def info(self, port: int) -> dict[str, str]:
        """``CLUSTER INFO`` of one node, as a dict (empty if it does not answer)."""
        import redis

        try:
            client = redis.Redis(port=port, socket_timeout=1)
            text = client.execute_command("CLUSTER INFO")
            client.close()
        except redis.RedisError:
            return {}
        if isinstance(text, bytes):
            text = text.decode()
        if isinstance(text, dict):
            return {str(k): str(v) for k, v in text.items()}
        return dict(line.split(":", 1) for line in text.strip().splitlines() if ":" in line)

    def _replica_synced(self, port: int) -> bool | None:
        """For a replica: whether its link to its master is up (it could take over); None for a master."""
        import redis

        try:
            client = redis.Redis(port=port, socket_timeout=1)
            info = client.info("replication")
            client.close()
        except redis.RedisError:
            return False
        if info.get("role") != "slave":
            return None
        return info.get("master_link_status") == "up" and not info.get("master_sync_in_progress")

    def wait_ok(self, *, timeout: float = 60.0, replicas: int | None = None) -> None:
        """Block until every live node reports ``cluster_state:ok`` with all slots served, and
        ``replicas`` replicas (default: all of them) are in sync with their masters."""
        want = self.masters * self.replicas if replicas is None else replicas
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            live = [p for p, node in self.nodes.items() if node.proc is not None and node.proc.poll() is None]
            infos = [self.info(p) for p in live]
            synced = [self._replica_synced(p) for p in live]
            if (infos and all(i.get("cluster_state") == "ok" and i.get("cluster_slots_ok") == "16384" for i in infos)
                    and sum(1 for s in synced if s) >= want):
                return
            time.sleep(0.2)
        raise TimeoutError(f"the Redis Cluster is not ok after {timeout} s")

    def master_ports(self) -> list[int]:
        """The ports of the nodes that are masters now."""
        import redis

        found = []
        for port, node in self.nodes.items():
            if node.proc is None or node.proc.poll() is not None:
                continue
            try:
                client = redis.Redis(port=port, socket_timeout=1)
                role = client.execute_command("ROLE")[0]
                client.close()
            except redis.RedisError:
                continue
            if (role.decode() if isinstance(role, bytes) else role) == "master":
                found.append(port)
        return sorted(found)

    def master_of(self, key: str) -> int:
        """The port of the master that owns ``key``'s slot now."""
        import redis

        port = self.master_ports()[0]
        client = redis.Redis(port=port, socket_timeout=1)
        slot = client.execute_command("CLUSTER KEYSLOT", key)
        for start, end, master, *_ in client.execute_command("CLUSTER SLOTS"):
            if start <= slot <= end:
                client.close()
                return int(master[1])
        client.close()
        raise LookupError(key)

    def kill(self, port: int) -> None:
        """Kill one node (SIGKILL: a crash)."""
        self.nodes[port].kill(signal.SIGKILL)

    def wait_failover(self, dead: int, *, timeout: float = 60.0) -> None:
        """Block until no slot is served by the killed master ``dead`` and the cluster is ok again."""
        import redis

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                client = redis.Redis(port=self.master_ports()[0], socket_timeout=1)
                owners = {int(master[1]) for _start, _end, master, *_ in client.execute_command("CLUSTER SLOTS")}
                client.close()
            except (redis.RedisError, IndexError):
                owners = {dead}
            if dead not in owners:
                self.wait_ok(timeout=max(1.0, deadline - time.monotonic()),
                             replicas=self.masters * self.replicas - 1)
                return
            time.sleep(0.2)
        raise TimeoutError(f"no replica took over from {dead} within {timeout} s")

    @property
    def url(self) -> str:
        """A URL naming one live node: clients discover the rest."""
        return f"redis://127.0.0.1:{self.master_ports()[0]}/0"

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop(timeout=5)
        shutil.rmtree(self.root, ignore_errors=True)
