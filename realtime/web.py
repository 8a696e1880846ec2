"""Several web processes on one port: ``python -m realtime.web [Daphne's options] realtime.asgi:application``.

Daphne serves from one process, so one port per machine used one core. This launcher
opens the listening sockets itself and starts ``WEB_CONCURRENCY`` children (default:
the cores this process may run on), each the project's Daphne (``realtime.server``)
adopting one of them with Daphne's ``--fd``. On Linux every child gets a socket of its
own, all bound to the same address with ``SO_REUSEPORT``, so the kernel spreads new
connections over the children; elsewhere they share one socket.

Each child is a whole server with its own hub, presence refresher and drain: a message
posted on one reaches the sockets of the others through Redis, as between machines.
SIGTERM or SIGINT is passed to every child (each drains its sockets with 4000 "going
away") and the launcher exits once all have; a child that dies on its own is started
again on the same socket, so connections waiting in its backlog are not lost.

Each child also listens on a unix socket of its own, ``<WEB_PEER_DIR>/<index>.sock`` in
a directory only the launcher's user can enter: a long-polling session lives in one
child, and a poll that the kernel handed to another is forwarded there
(realtime/longpoll.py). WebSockets need no such thing: a socket is one connection.

``-b``/``--bind`` and ``-p``/``--port`` are read here; every other option goes to each
child unchanged.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger("realtime.web")

# How long the children get to drain and exit after SIGTERM before they are killed.
STOP_GRACE_SECONDS = 20.0
# A child that exits on its own is started again after this pause (it doubles, to 30 s,
# while children keep dying within a minute of their start).
RESTART_PAUSE_SECONDS = 1.0
PR_SET_PDEATHSIG = 1


#: The suffix of a web process's peer socket in ``WEB_PEER_DIR`` (``<index>.sock``).
PEER_SUFFIX = ".sock"


def peer_socket_path(peer_dir: str | Path, index: int | str) -> Path:
    """Where web process ``index`` takes requests from its siblings (long-poll forwarding, /metrics)."""
    return Path(peer_dir) / f"{index}{PEER_SUFFIX}"


def web_concurrency() -> int:
    """``WEB_CONCURRENCY``, or the number of cores this process may run on."""
    value = os.environ.get("WEB_CONCURRENCY", "").strip()
    if value:
        count = int(value)
        if count < 1:
            raise ValueError("WEB_CONCURRENCY must be at least 1")
        return count
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def listening_sockets(host: str, port: int, count: int, *, backlog: int = 2048) -> list[socket.socket]:
    """``count`` listening sockets on ``host:port``: one each with SO_REUSEPORT, or one shared."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if family == socket.AF_INET6:
        # Daphne's --fd adopts IPv4 sockets only (Twisted's fd endpoint defaults to AF_INET).
        raise ValueError("realtime.web binds IPv4 addresses; use plain realtime.server for IPv6")
    reuseport = hasattr(socket, "SO_REUSEPORT")
    sockets = []
    for _ in range(count if reuseport else 1):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.set_inheritable(True)
        sockets.append(sock)
    return sockets


def _die_with_parent() -> None:
    """In a child, before exec: receive SIGTERM if the launcher dies (even by SIGKILL)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


@dataclass
class Child:
    """One web process and the socket it serves."""

    index: int
    sock: socket.socket
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    pause: float = RESTART_PAUSE_SECONDS


class Launcher:
    """Starts, restarts and stops the children."""

    def __init__(self, daphne_args: list[str], sockets: list[socket.socket], count: int) -> None:
        self.daphne_args = daphne_args
        self.children = [Child(i, sockets[i % len(sockets)]) for i in range(count)]
        self.stopping = False
        # mkdtemp: mode 0700, so only this user may connect to the children's unix sockets.
        self.peer_dir = Path(tempfile.mkdtemp(prefix="realtime-web-"))
        # With it the children read each other's /metrics, so a scrape of the port gets them all.
        self.peer_token = secrets.token_urlsafe(32)

    def peer_socket(self, child: Child) -> Path:
        """The unix socket where ``child`` takes long-poll requests forwarded by its siblings."""
        return peer_socket_path(self.peer_dir, child.index)

    def _env(self, child: Child) -> dict[str, str]:
        env = dict(os.environ)
        env["WEB_PROCESS_INDEX"] = str(child.index)
        env["WEB_PEER_DIR"] = str(self.peer_dir)
        env["WEB_PEER_TOKEN"] = self.peer_token
        if env.get("METRICS_PROCESS"):
            # Each child is its own series in Prometheus.
            env["METRICS_PROCESS"] = f"{env['METRICS_PROCESS']}/{child.index}"
        return env

    def start(self, child: Child) -> None:
        fd = child.sock.fileno()
        peer = self.peer_socket(child)
        peer.unlink(missing_ok=True)  # left by a child that died
        args = [sys.executable, "-m", "realtime.server", "--fd", str(fd), "-u", str(peer), *self.daphne_args]
        child.proc = subprocess.Popen(args, env=self._env(child), pass_fds=(fd,), preexec_fn=_die_with_parent)
        child.started_at = time.monotonic()

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Ask every child to drain and exit; kill those still running after STOP_GRACE_SECONDS."""
        self.stopping = True
        for child in self.children:
            if child.proc is not None and child.proc.poll() is None:
                child.proc.send_signal(signum)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in self.children:
            if child.proc is None:
                continue
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("web process %d did not stop in %.0f s; killing it", child.index, STOP_GRACE_SECONDS)
                child.proc.kill()
                child.proc.wait()
        shutil.rmtree(self.peer_dir, ignore_errors=True)

    def run(self) -> int:
        """Start every child, restart those that die, until SIGTERM or SIGINT; then stop them all."""
        def on_signal(signum: int, frame: object) -> None:
            self.stopping = True
            self.signal = signum

        self.signal = signal.SIGTERM
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        for child in self.children:
            self.start(child)
        while not self.stopping:
            time.sleep(0.2)
            for child in self.children:
                if self.stopping or child.proc is None or child.proc.poll() is None:
                    continue
                code = child.proc.returncode
                lived = time.monotonic() - child.started_at
                child.pause = RESTART_PAUSE_SECONDS if lived > 60 else min(30.0, child.pause * 2)
                logger.warning("web process %d exited with %s after %.0f s; starting it again in %.0f s",
                               child.index, code, lived, child.pause)
                deadline = time.monotonic() + child.pause
                while not self.stopping and time.monotonic() < deadline:
                    time.sleep(0.1)
                if not self.stopping:
                    self.start(child)
        # Daphne drains on SIGTERM and on SIGINT alike; pass on the one received.
        self.stop(signal.SIGTERM if self.signal == signal.SIGTERM else signal.SIGINT)
        return 0


def main(argv: list[str] | None = None) -> int:
    """Parse ``-b``/``-p``, open the sockets, run the children."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    parser = argparse.ArgumentParser(prog="python -m realtime.web", add_help=False)
    parser.add_argument("-b", "--bind", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=8000)
    known, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    count = web_concurrency()
    sockets = listening_sockets(known.bind, known.port, count)
    logger.info("serving %s:%d with %d web process(es)", known.bind, known.port, count)
    return Launcher(rest, sockets, count).run()


if __name__ == "__main__":
    sys.exit(main())
