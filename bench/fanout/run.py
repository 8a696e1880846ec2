"""The fan-out benchmark of issue 7: the project vs the stock Channels chat vs a bare websockets server.

    .venv/bin/python bench/fanout/run.py [--quick] [--scenarios S0,S1,S2,S3,S4,S3B,S6] [--json OUT]
                                         [--s6-sockets N] [--s6-members M]

Starts, each as its own process on a free loopback port: two Redis servers (one for
each Channels server, so each one's Redis CPU is its own), the project's Daphne
(``realtime.asgi:application``, production settings, a throwaway migrated SQLite
database with bench users and rooms), the stock tutorial chat on the same Daphne
(``bench/fanout/stock_asgi.py``) and the bare ``websockets`` server
(``bench/fanout/bare_server.py``). Then it runs every selected scenario against the
three servers in turn, measuring server CPU (utime+stime of the server's process tree,
plus its Redis) and RSS from /proc, prints a table with the ratios project/stock and
project/bare, and writes JSON (default bench/results/fanout.json) and a Markdown copy
of the table next to it. bench/README.md explains the scenarios and the output.

``--quick`` runs tiny sizes (it proves the harness works; its numbers mean little).
Everything started here is stopped on exit, on SIGTERM and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.fanout.load import (  # noqa: E402
    Adapter,
    LoadClient,
    hist_merge,
    hist_percentile_ms,
    raise_nofile,
    sources_for,
    split,
)

SERVERS = ("project", "stock", "bare")
ALL_SCENARIOS = ("S0", "S1", "S2", "S3", "S4", "S3B", "S6")
# --quick without --scenarios: the original five (make test runs S3B and S6 on their own).
QUICK_SCENARIOS = ("S0", "S1", "S2", "S3", "S4")
P99_LIMIT_MS = 250.0
LOSS_LIMIT = 0.001
# While no step has met the latency limit, the ladder goes on as long as the server keeps up:
# loss within the limit, at least 90 % of the offered rate delivered, p99 under this.
KEEPUP_P99_MS = 2000.0
CLIENT_CPU_LIMIT = 0.70
# The rate of the p99 target (S2): after the ladder, a server that sustained it is held there
# for Config.hold_duration seconds, so that its p99 rests on many messages, not on a 2 s step's
# few (at M = 1,000 a step carries 20: its p99 is the tail of the slowest one or two).
HOLD_RATE = 10_000
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Config:
    quick: bool
    load_procs: int
    users: int
    s1_clients: list[int]
    s1_duration: float
    s2_members: list[int]
    ladder: list[int]  # deliveries per second, S2 and S3
    step_duration: float
    min_msgs_per_step: int
    drain_max: float
    drain_idle: float
    s3_rooms: int
    s3_members: int
    s0_low: int
    idle_window: float
    s4_sockets: int
    settle_max: float
    budget: float
    s3b_rooms: int = 100  # the many-rooms burst: rooms x members sockets join at once, then each posts once
    s3b_members: int = 10
    s6_sockets: int = 100_000  # one machine's scale: idle sockets, M of them in one room
    s6_members: int = 10_000
    s6_messages: int = 3  # messages to the big room, 1 per second
    warmup_msgs: int = 3
    hold_duration: float = 0.0  # seconds at HOLD_RATE after each S2 ladder that sustained it (0: none)
    phase_need: float = 2.0  # seconds a scenario needs left in the budget to start on a server

    @classmethod
    def make(cls, quick: bool, load_procs: int | None, users: int, budget: float | None) -> Config:
        if quick:
            return cls(
                quick=True, load_procs=load_procs or 1, users=users, s1_clients=[1, 5], s1_duration=0.3,
                s2_members=[10], ladder=[100, 200], step_duration=0.5, min_msgs_per_step=3, warmup_msgs=3,
                drain_max=1.5, drain_idle=0.5, s3_rooms=5, s3_members=4, s0_low=8, idle_window=0.3,
                s4_sockets=40, settle_max=1.0, budget=budget or 45, phase_need=2.0,
                s3b_rooms=5, s3b_members=4, s6_sockets=120, s6_members=20, s6_messages=2,
            )
        return cls(
            quick=False, load_procs=load_procs or 2, users=users, s1_clients=[1, 100], s1_duration=3.0,
            s2_members=[10, 100, 1000],
            ladder=[100, 200, 500, 1000, 2000, 3000, 5000, 7500, 10000, 15000, 20000, 30000, 45000, 65000, 100000],
            step_duration=2.0, min_msgs_per_step=5, warmup_msgs=10, drain_max=3.0, drain_idle=1.0, s3_rooms=500,
            s3_members=10, s0_low=1000, idle_window=31.0, s4_sockets=1000, settle_max=20.0, budget=budget or 960,
            phase_need=20.0, hold_duration=10.0,
        )


# --- /proc ---------------------------------------------------------------------------------


def proc_tree(pid: int) -> list[int]:
    """pid and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            pass
    return out


def proc_cpu_seconds(pids: list[int]) -> float:
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
        except (FileNotFoundError, ProcessLookupError, IndexError):
            pass
    return total / CLK_TCK


def proc_rss_kib(pids: list[int]) -> int:
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


# --- servers -------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    service: Any
    redis: Any | None
    adapter: Adapter
    client: LoadClient | None = None

    def app_pids(self) -> list[int]:
        return proc_tree(self.service.proc.pid)

    def cpu(self) -> tuple[float, float]:
        """(app process tree, its Redis) CPU seconds so far."""
        redis = proc_cpu_seconds([self.redis.proc.pid]) if self.redis else 0.0
        return proc_cpu_seconds(self.app_pids()), redis

    def rss(self) -> tuple[int, int]:
        redis = proc_rss_kib([self.redis.proc.pid]) if self.redis else 0
        return proc_rss_kib(self.app_pids()), redis

    def alive(self) -> bool:
        return self.service.proc.poll() is None


def settle(server: Server, max_wait: float, window: float = 0.5, quiet: float = 0.05) -> float:
    """Wait until the server (and its Redis) use under ``quiet`` of a core; returns the wait."""
    start = time.monotonic()
    while time.monotonic() - start < max_wait:
        a0, r0 = server.cpu()
        time.sleep(window)
        a1, r1 = server.cpu()
        if (a1 - a0 + r1 - r0) / window < quiet:
            break
    return time.monotonic() - start


# --- helpers for results -----------------------------------------------------------------


def pct(hist: dict[int, int], p: float) -> float | None:
    v = hist_percentile_ms(hist, p)
    return None if v is None else round(v, 2)


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def ratios(values: dict[str, Any]) -> dict[str, float | None]:
    return {"project/stock": ratio(values.get("project"), values.get("stock")),
            "project/bare": ratio(values.get("project"), values.get("bare"))}


class Budget:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds
        self.exhausted = False

    def left(self) -> float:
        return self.end - time.monotonic()

    def ok(self, need: float = 0.0) -> bool:
        """Whether ``need`` seconds are left (a refusal is remembered for the report)."""
        if self.left() < need:
            self.exhausted = True
            return False
        return True


class Bench:
    def __init__(self, cfg: Config, servers: dict[str, Server], budget: Budget) -> None:
        self.cfg = cfg
        self.servers = servers
        self.budget = budget
        self.step_id = 0
        self.log_lines: list[str] = []
        self.nofile = 0  # the open-file limit main() raised (S6 reports it)
        self.s6_fit: dict[str, int] = {}  # S6: each server's N, where its processes' open-file limit is below N
        self.project_procs = 1  # the project's server processes (--project-env WEB_CONCURRENCY)

    def say(self, text: str) -> None:
        print(text, flush=True)

    def settle(self, server: Server) -> float:
        return settle(server, self.cfg.settle_max, window=0.2 if self.cfg.quick else 0.5)

    def idle_wait(self, server: Server, seconds: float) -> None:
        """S0's silent window (a method, so a profiler can be attached around it)."""
        time.sleep(seconds)

    def next_step(self) -> int:
        self.step_id += 1
        return self.step_id

    # --- opening and closing sockets -------------------------------------------------

    def open(self, server: Server, rooms: list[str | None], *, purpose: str = "room", join: bool = True,
             reader: bool = True, concurrency: int = 50, timeout: float = 30.0, first_index: int = 0,
             retries: int = 0, sources: int = 1) -> dict:
        lc = server.client
        parts = split(list(enumerate(rooms)), len(lc.conns))
        per = [{"rooms": [r for _, r in part], "first_index": first_index + (part[0][0] if part else 0)}
               for part in parts]
        # Each worker's sockets take the bench users round-robin from their own offset; with
        # round-robin parts, first_index + k * procs would be exact, but any spread will do.
        res = lc.call_each("open", per_worker=per, purpose=purpose, join=join, reader=reader,
                           concurrency=max(1, concurrency // len(lc.conns)), open_timeout=timeout,
                           retries=retries, sources=sources,
                           timeout=(timeout + 5) * (retries + 1) * math.ceil(len(rooms) / max(1, concurrency)) + 60)
        return {
            "opened": sum(r["opened"] for r in res), "errors": sum(r["errors"] for r in res),
            "error_samples": [e for r in res for e in r["error_samples"]][:5],
            "failed_attempts": sum(r["failed_attempts"] for r in res),
            "failed_attempt_samples": sorted({e for r in res for e in r["failed_attempt_samples"]})[:5],
            "started": min(r["started"] for r in res), "last_ready": max(r["last_ready"] for r in res),
            "ready_at": sorted(t for r in res for t in r["ready_at"]),
            "per_worker": [r["total"] for r in res],
            "failed_rooms": [room for r in res for room in r["failed_rooms"]],
        }

    def close(self, server: Server) -> None:
        server.client.call_each("close")
        self.settle(server)

    # --- one measured step of S2/S3 ---------------------------------------------------

    def step(self, server: Server, *, target: int, msg_rate: float, duration: float, mode: str,
             deliveries_per_msg: int, sockets_per_worker: list[int], drain_max: float | None = None,
             drain_idle: float | None = None, patient: bool = False) -> dict[str, Any]:
        lc = server.client
        cfg = self.cfg
        drain_max = cfg.drain_max if drain_max is None else drain_max
        drain_idle = cfg.drain_idle if drain_idle is None else drain_idle
        sid = self.next_step()
        lc.call_each("begin", step=sid)
        app0, red0 = server.cpu()
        wall0 = time.monotonic()
        t0 = wall0 + 0.1
        if mode == "fixed":
            pub = [lc.call(0, "publish", step=sid, t0=t0, rate=msg_rate, duration=duration, mode="fixed",
                           timeout=duration + 120)]
        else:
            total = sum(sockets_per_worker)
            per = [{"rate": msg_rate * n / total, "seed": sid * 1000 + w} for w, n in enumerate(sockets_per_worker)]
            pub = lc.call_each("publish", per_worker=per, step=sid, t0=t0, duration=duration, mode=mode,
                               timeout=duration + 120)
        sent = sum(p["sent"] for p in pub)
        expected = sent * deliveries_per_msg
        drain_start = time.monotonic()
        last_total, last_change = -1, drain_start
        while True:
            total = sum(r["received"] for r in lc.call_each("poll", step=sid))
            now = time.monotonic()
            if total >= expected:
                break
            if total != last_total:
                last_total, last_change = total, now
            elif now - last_change > drain_idle and (total > 0 or not patient):
                break  # patient (S3B, S6): the first delivery may come late; until it does, only drain_max ends it
            if now - drain_start > drain_max:
                break
            time.sleep(0.05)
        ends = lc.call_each("end", step=sid)
        app1, red1 = server.cpu()
        wall1 = time.monotonic()
        hist: dict[int, int] = {}
        for e in ends:
            hist_merge(hist, {int(k): v for k, v in e["hist"].items()})
        received = sum(e["received"] for e in ends)
        last_arrival = max(e["last_arrival"] for e in ends)
        # Over the offered window (n messages take n/rate), or longer when deliveries lagged behind it.
        span = max(last_arrival - t0, sent / msg_rate) if received else 0.0
        loss = max(0, expected - received) / expected if expected else 1.0
        cpu_app, cpu_redis = app1 - app0, red1 - red0
        client_cpu = [e["cpu"] / e["wall"] for e in ends if e["wall"] > 0]
        p99 = pct(hist, 99)
        result = {
            "target_deliveries_per_s": target, "msg_rate": round(msg_rate, 3), "duration_s": round(duration, 3),
            "sent": sent, "expected": expected, "received": received,
            "delivered_per_s": round(received / span, 1) if span > 0 else 0.0,
            "loss": round(loss, 6),
            "p50_ms": pct(hist, 50), "p95_ms": pct(hist, 95), "p99_ms": p99, "max_ms": pct(hist, 100),
            "server_cpu_s": round(cpu_app + cpu_redis, 3), "server_app_cpu_s": round(cpu_app, 3),
            "server_redis_cpu_s": round(cpu_redis, 3),
            "server_cpu_pct": round(100 * (cpu_app + cpu_redis) / (wall1 - wall0), 1),
            "server_cpu_us_per_delivery": round(1e6 * (cpu_app + cpu_redis) / received, 2) if received else None,
            "client_cpu_pct_max": round(100 * max(client_cpu), 1) if client_cpu else None,
            "client_cpu_pct_sum": round(100 * sum(client_cpu), 1) if client_cpu else None,
            "publisher_late_max_ms": round(1000 * max(p.get("late_max", 0.0) for p in pub), 1),
            "seq_missing": sum(e["seq_missing"] for e in ends), "seq_gaps": sum(e["seq_gaps"] for e in ends),
            "seq_backwards": sum(e["seq_backwards"] for e in ends),
            "error_events": ends[0]["errors_seen"],
            "sockets_closed_unexpectedly": sum(e["closed_unexpectedly"] for e in ends),
        }
        result["passed"] = bool(received and p99 is not None and p99 <= P99_LIMIT_MS and loss <= LOSS_LIMIT)
        result["kept_up"] = bool(received and p99 is not None and p99 <= KEEPUP_P99_MS and loss <= LOSS_LIMIT
                                 and result["delivered_per_s"] >= 0.9 * target)
        return result

    def warmup(self, server: Server, *, members: int, mode: str, sockets_per_worker: list[int]) -> None:
        """A few uncounted messages first (lazy imports, first connections, caches), then quiet."""
        lc = server.client
        n = self.cfg.warmup_msgs
        rate = (20.0 if self.cfg.quick else 5.0) if mode == "fixed" else 50.0
        sid = self.next_step()  # never begun: workers do not count its deliveries
        t0 = time.monotonic() + 0.05
        if mode == "fixed":
            lc.call(0, "publish", step=sid, t0=t0, rate=rate, duration=n / rate, mode="fixed", timeout=120)
        else:
            total = sum(sockets_per_worker)
            per = [{"rate": rate * k / total, "seed": w} for w, k in enumerate(sockets_per_worker)]
            lc.call_each("publish", per_worker=per, step=sid, t0=t0, duration=n / rate, mode="poisson", timeout=120)
        time.sleep(0.3)
        self.settle(server)

    def ladder(self, server: Server, label: str, *, members: int, mode: str, sockets_per_worker: list[int],
               start_at: int = 0) -> dict[str, Any]:
        cfg = self.cfg
        steps = []
        stop_reason = "ladder exhausted"
        self.warmup(server, members=members, mode=mode, sockets_per_worker=sockets_per_worker)
        for target in [t for t in cfg.ladder if t >= start_at] or cfg.ladder[-1:]:
            msg_rate = target / members
            duration = max(cfg.step_duration, cfg.min_msgs_per_step / msg_rate)
            if not self.budget.ok(duration + cfg.drain_max + 5):
                stop_reason = "time budget"
                break
            s = self.step(server, target=target, msg_rate=msg_rate, duration=duration, mode=mode,
                          deliveries_per_msg=members, sockets_per_worker=sockets_per_worker)
            if not s["passed"] and self.budget.ok(duration + cfg.drain_max + 5):
                # One more try before a failure counts: on a shared machine a single stall (another
                # process, a collector pause) can fail a step the server can sustain.
                self.say(f"  {label:<22} {server.name:<8} {target:>7}/s    p99 {fmt(s['p99_ms'])} ms, loss "
                         f"{100 * s['loss']:.2f}%: failed once, trying again")
                self.settle(server)
                first = s
                s = self.step(server, target=target, msg_rate=msg_rate, duration=duration, mode=mode,
                              deliveries_per_msg=members, sockets_per_worker=sockets_per_worker)
                s["first_attempt"] = {k: first[k] for k in ("delivered_per_s", "p50_ms", "p99_ms", "loss", "passed")}
            steps.append(s)
            self.say(
                f"  {label:<22} {server.name:<8} {target:>7}/s -> {s['delivered_per_s']:>9.0f}/s "
                f"p50 {fmt(s['p50_ms'])} p99 {fmt(s['p99_ms'])} ms loss {100 * s['loss']:.2f}% "
                f"cpu {fmt(s['server_cpu_us_per_delivery'])} us/dlv srv {s['server_cpu_pct']:.0f}% "
                f"client {fmt(s['client_cpu_pct_max'])}%" + ("" if s["passed"] else "  FAIL")
            )
            if not s["passed"]:
                why = []
                if s["p99_ms"] is None or s["p99_ms"] > P99_LIMIT_MS:
                    why.append(f"p99 {s['p99_ms']} ms > {P99_LIMIT_MS:.0f}")
                if s["loss"] > LOSS_LIMIT:
                    why.append(f"loss {100 * s['loss']:.2f}% > 0.1%")
                stop_reason = ", ".join(why)
                if any(x["passed"] for x in steps) or not s["kept_up"]:
                    break
                # Nothing met the latency limit yet: go on while the server keeps up, to find its capacity.
        passed = [s for s in steps if s["passed"]]
        best = passed[-1] if passed else None
        lossless = [s for s in steps if s["received"] and s["loss"] <= LOSS_LIMIT]
        capacity = max(lossless, key=lambda x: x["delivered_per_s"]) if lossless else None
        at_10k = next((s for s in steps if s["target_deliveries_per_s"] == HOLD_RATE), None)
        failing = steps[-1] if steps and not steps[-1]["passed"] else None
        return {
            "steps": steps, "best": best, "capacity": capacity, "stop_reason": stop_reason, "at_10k": at_10k,
            "client_bound": bool(failing and (failing["client_cpu_pct_max"] or 0) >= 100 * CLIENT_CPU_LIMIT),
        }

    # --- scenarios --------------------------------------------------------------------

    def calibrate(self) -> dict[str, Any]:
        """Before anything else: how much of a core does the load client need per delivery?

        One room of M members on the bare server at a fixed high rate; the load client's CPU
        at that rate gives the delivery rate it could take at 70 % of a core.
        """
        cfg = self.cfg
        server = self.servers["bare"]
        members, target = (10, 1000) if cfg.quick else (100, 20000)
        opened = self.open(server, ["calib"] * members, join=True, reader=True)
        self.warmup(server, members=members, mode="fixed", sockets_per_worker=opened["per_worker"])
        s = self.step(server, target=target, msg_rate=target / members, duration=cfg.step_duration, mode="fixed",
                      deliveries_per_msg=members, sockets_per_worker=opened["per_worker"])
        self.close(server)
        cpu = (s["client_cpu_pct_max"] or 0) / 100  # the busiest load process
        per_core = s["delivered_per_s"] / len(server.client.conns) / cpu if cpu > 0 else None
        out = {
            "members": members, "target_deliveries_per_s": target, "delivered_per_s": s["delivered_per_s"],
            "loss": s["loss"], "p99_ms": s["p99_ms"], "client_cpu_pct_max": s["client_cpu_pct_max"],
            "client_deliveries_per_s_at_70pct": round(CLIENT_CPU_LIMIT * per_core) if per_core else None,
            "procs": cfg.load_procs,
        }
        self.say(f"load client calibration (bare, M={members}): {s['delivered_per_s']:.0f} deliveries/s took "
                 f"{s['client_cpu_pct_max']}% of a core per load process -> about "
                 f"{fmt(out['client_deliveries_per_s_at_70pct'])} deliveries/s per process at 70%")
        return out

    def s1(self) -> dict[str, Any]:
        cfg = self.cfg
        self.say(f"S1 echo: closed-loop round trips, {cfg.s1_duration:g} s each, clients {cfg.s1_clients}")
        variants = [("project", "echo"), ("project_echo_endpoint", "echo-endpoint"), ("stock", "echo"),
                    ("bare", "echo")]
        results: dict[str, Any] = {}
        for clients in cfg.s1_clients:
            for name, purpose in variants:
                server = self.servers.get("project" if name.startswith("project") else name)
                if server is None:
                    continue
                if not self.budget.ok(cfg.s1_duration + cfg.phase_need):
                    break
                opened = self.open(server, [None] * clients, purpose=purpose, join=False, reader=False)
                shares = [len(p) for p in split(list(range(clients)), len(server.client.conns))]
                server.client.call_each("echo", per_worker=[{"clients": n} for n in shares],
                                        duration=min(0.5, cfg.s1_duration / 3), purpose=purpose)  # warm-up
                app0, red0 = server.cpu()
                res = server.client.call_each("echo", per_worker=[{"clients": n} for n in shares],
                                              duration=cfg.s1_duration, purpose=purpose)
                app1, red1 = server.cpu()
                hist: dict[int, int] = {}
                for r in res:
                    hist_merge(hist, {int(k): v for k, v in r["hist"].items()})
                count = sum(r["count"] for r in res)
                wall = max(r["wall"] for r in res)
                client_cpu = max(r["cpu"] / r["wall"] for r, n in zip(res, shares, strict=True) if n and r["wall"] > 0)
                entry = {
                    "clients": clients, "opened": opened["opened"], "errors": opened["errors"],
                    "round_trips_per_s": round(count / wall, 1), "p50_ms": pct(hist, 50), "p99_ms": pct(hist, 99),
                    "server_cpu_us_per_round_trip": round(1e6 * (app1 - app0 + red1 - red0) / count, 2)
                    if count else None,
                    "client_cpu_pct_max": round(100 * client_cpu, 1),
                }
                results.setdefault(name, {})[str(clients)] = entry
                self.say(f"  {clients:>4} clients {name:<22} {entry['round_trips_per_s']:>9.0f} rt/s "
                         f"p50 {fmt(entry['p50_ms'])} p99 {fmt(entry['p99_ms'])} ms "
                         f"client {entry['client_cpu_pct_max']}%")
                self.close(server)
        rat = {}
        for clients in cfg.s1_clients:
            c = str(clients)
            for metric in ("round_trips_per_s", "p50_ms", "p99_ms"):
                rat[f"{c}:{metric}"] = ratios({n: results.get(n, {}).get(c, {}).get(metric) for n in SERVERS})
        return {"results": results, "ratios": rat,
                "note": "project = ping/pong on /ws/chat/ (the full protocol path); project_echo_endpoint = /ws/echo/"}

    def hold(self, server: Server, label: str, *, members: int, ladder: dict[str, Any],
             sockets_per_worker: list[int]) -> dict[str, Any] | None:
        """HOLD_RATE for hold_duration seconds, when the ladder's step at that rate passed (else None)."""
        cfg = self.cfg
        at = ladder.get("at_10k")
        if not cfg.hold_duration or not at or not at["passed"]:
            return None
        if not self.budget.ok(cfg.hold_duration + cfg.drain_max + 5):
            return None
        self.settle(server)
        s = self.step(server, target=HOLD_RATE, msg_rate=HOLD_RATE / members, duration=cfg.hold_duration,
                      mode="fixed", deliveries_per_msg=members, sockets_per_worker=sockets_per_worker)
        self.say(f"  {label:<22} {server.name:<8} {HOLD_RATE:>7}/s held {cfg.hold_duration:g} s -> "
                 f"{s['delivered_per_s']:>9.0f}/s p50 {fmt(s['p50_ms'])} p99 {fmt(s['p99_ms'])} ms "
                 f"loss {100 * s['loss']:.2f}% cpu {fmt(s['server_cpu_us_per_delivery'])} us/dlv "
                 f"client {fmt(s['client_cpu_pct_max'])}%")
        return s

    def s2(self) -> dict[str, Any]:
        cfg = self.cfg
        self.say(f"S2 fan-out: one room, M members, one publisher on a fixed schedule; {cfg.step_duration:g} s steps, "
                 f"stop at p99 > {P99_LIMIT_MS:.0f} ms or loss > 0.1%")
        results: dict[str, Any] = {name: {} for name in self.servers}
        for members in cfg.s2_members:
            room = f"fan-{members}"
            for name, server in self.servers.items():
                if not self.budget.ok(cfg.phase_need):
                    break
                t = time.monotonic()
                opened = self.open(server, [room] * members, join=True, reader=True)
                join_s = time.monotonic() - t
                settled = self.settle(server)
                if opened["errors"]:
                    self.say(f"  {name}: {opened['errors']} of {members} sockets failed: {opened['error_samples']}")
                # From 1 message/s: slower steps would take too long to carry enough messages.
                lad = self.ladder(server, f"M={members}", members=members, mode="fixed",
                                  sockets_per_worker=opened["per_worker"], start_at=members)
                lad.update({"members": members, "opened": opened["opened"], "open_errors": opened["errors"],
                            "open_seconds": round(join_s, 2), "settle_seconds_after_join": round(settled, 2)})
                hold = self.hold(server, f"M={members}", members=members, ladder=lad,
                                 sockets_per_worker=opened["per_worker"])
                if hold is not None:
                    lad["hold_10k"] = hold
                if name == "project":
                    sent = sum(s["sent"] for s in lad["steps"])
                    if sent:
                        lad["resume_check"] = server.client.call(0, "resume_check", room=room, back=min(100, sent),
                                                                 timeout=90)
                results[name][str(members)] = lad
                self.close(server)
        rat = {}
        for members in cfg.s2_members:
            m = str(members)
            best = {n: (results[n].get(m) or {}).get("best") or {} for n in results}
            cap = {n: (results[n].get(m) or {}).get("capacity") or {} for n in results}
            rat[m] = {
                "delivered_per_s": ratios({n: best[n].get("delivered_per_s") for n in best}),
                "max_delivered_per_s_any_latency": ratios({n: cap[n].get("delivered_per_s") for n in cap}),
                "p99_ms": ratios({n: best[n].get("p99_ms") for n in best}),
                "server_cpu_us_per_delivery": ratios({n: best[n].get("server_cpu_us_per_delivery") for n in best}),
            }
        return {"results": results, "ratios": rat}

    def rooms_phase(self, do_s0: bool, do_s3: bool) -> dict[str, Any]:
        """S0 (idle memory and CPU) and S3 (many rooms) share one set of sockets: R rooms x K members."""
        cfg = self.cfg
        total = cfg.s3_rooms * cfg.s3_members
        rooms = [f"r-{i // cfg.s3_members}" for i in range(total)]
        low = min(cfg.s0_low, total)
        out: dict[str, Any] = {}
        if do_s0:
            self.say(f"S0 idle: server RSS at {low} and {total} open sockets, then idle CPU over {cfg.idle_window:g} s")
        if do_s3:
            self.say(f"S3 many rooms: {cfg.s3_rooms} rooms x {cfg.s3_members} members, Poisson senders")
        s0: dict[str, Any] = {}
        s3: dict[str, Any] = {}
        for name, server in self.servers.items():
            if not self.budget.ok(cfg.phase_need):
                break
            rss_base = server.rss()
            open_cpu0 = sum(server.cpu())
            t = time.monotonic()
            # Modest concurrency, and retries: S0/S3 need every socket; S4 is the storm test.
            first = self.open(server, rooms[:low], join=True, reader=True, concurrency=32, timeout=60, retries=3)
            self.settle(server)
            rss_low = server.rss()
            second = self.open(server, rooms[low:], join=True, reader=True, concurrency=32, timeout=60,
                               first_index=low, retries=3)
            open_s = time.monotonic() - t
            open_cpu = sum(server.cpu()) - open_cpu0  # includes the settle after the first batch
            self.settle(server)
            rss_high = server.rss()
            opened = first["opened"] + second["opened"]
            errors = first["errors"] + second["errors"]
            failed_attempts = first["failed_attempts"] + second["failed_attempts"]
            if failed_attempts:
                self.say(f"  {name}: {failed_attempts} handshakes failed and were retried: "
                         f"{first['failed_attempt_samples'] or second['failed_attempt_samples']}")
            if errors:
                samples = first["error_samples"] + second["error_samples"]
                self.say(f"  {name}: {errors} sockets failed to open: {samples}")
            per_worker = second["per_worker"]  # sockets per worker after both opens
            if do_s0:
                n_low, n_high = first["opened"], opened
                app_slope = (rss_high[0] - rss_low[0]) / max(1, n_high - n_low)
                redis_slope = (rss_high[1] - rss_low[1]) / max(1, n_high - n_low)
                a0, r0 = server.cpu()
                w0 = time.monotonic()
                self.idle_wait(server, cfg.idle_window)
                a1, r1 = server.cpu()
                w = time.monotonic() - w0
                cpu_ticks = server.client.call_each("cpu")
                s0[name] = {
                    "sockets_low": n_low, "sockets_high": n_high, "open_errors": errors,
                    "open_failed_attempts": failed_attempts,
                    "rss_kib_base": rss_base[0], "rss_kib_low": rss_low[0], "rss_kib_high": rss_high[0],
                    "kib_per_idle_connection": round(app_slope, 2),
                    "redis_kib_per_idle_connection": round(redis_slope, 2),
                    "total_kib_per_idle_connection": round(app_slope + redis_slope, 2),
                    "idle_cpu_pct": round(100 * (a1 - a0 + r1 - r0) / w, 2),
                    "idle_cpu_pct_app": round(100 * (a1 - a0) / w, 2),
                    "idle_cpu_pct_redis": round(100 * (r1 - r0) / w, 2),
                    "open_seconds": round(open_s, 2),
                    "open_server_cpu_ms_per_socket": round(1000 * open_cpu / max(1, opened), 2),
                    "sockets_still_open": sum(c["open"] for c in cpu_ticks),
                }
                self.say(f"  S0 {name:<8} {s0[name]['kib_per_idle_connection']:>7.1f} KiB/conn "
                         f"(+redis {s0[name]['redis_kib_per_idle_connection']:.1f}), idle CPU "
                         f"{s0[name]['idle_cpu_pct']:.1f}% of a core with {n_high} sockets "
                         f"(opened and joined in {open_s:.1f} s, "
                         f"{s0[name]['open_server_cpu_ms_per_socket']:.1f} ms server CPU each)")
            if do_s3:
                lad = self.ladder(server, f"S3 {cfg.s3_rooms}x{cfg.s3_members}", members=cfg.s3_members,
                                  mode="poisson", sockets_per_worker=per_worker)
                lad.update({"rooms": cfg.s3_rooms, "members": cfg.s3_members, "opened": opened,
                            "open_errors": errors, "open_failed_attempts": failed_attempts,
                            "open_seconds": round(open_s, 2)})
                s3[name] = lad
            self.close(server)
        if do_s0:
            out["S0"] = {"results": s0, "ratios": {
                "kib_per_idle_connection": ratios({n: s0.get(n, {}).get("kib_per_idle_connection") for n in SERVERS}),
                "total_kib_per_idle_connection": ratios(
                    {n: s0.get(n, {}).get("total_kib_per_idle_connection") for n in SERVERS}),
                "idle_cpu_pct": ratios({n: s0.get(n, {}).get("idle_cpu_pct") for n in SERVERS}),
            }}
        if do_s3:
            best = {n: (s3.get(n) or {}).get("best") or {} for n in SERVERS}
            cap = {n: (s3.get(n) or {}).get("capacity") or {} for n in SERVERS}
            out["S3"] = {"results": s3, "ratios": {
                "delivered_per_s": ratios({n: best[n].get("delivered_per_s") for n in SERVERS}),
                "max_delivered_per_s_any_latency": ratios({n: cap[n].get("delivered_per_s") for n in SERVERS}),
                "p99_ms": ratios({n: best[n].get("p99_ms") for n in SERVERS}),
                "server_cpu_us_per_delivery": ratios({n: best[n].get("server_cpu_us_per_delivery") for n in SERVERS}),
            }}
        return out

    def s3b(self) -> dict[str, Any]:
        """The many-rooms burst: R x K users join their rooms all at once, then each posts one message at once."""
        cfg = self.cfg
        total = cfg.s3b_rooms * cfg.s3b_members
        rooms = [f"b-{i // cfg.s3b_members}" for i in range(total)]
        self.say(f"S3B many-rooms burst: {total} users join {cfg.s3b_rooms} rooms of {cfg.s3b_members} at once, "
                 "then each posts one message at once")
        results: dict[str, Any] = {}
        for name, server in self.servers.items():
            if not self.budget.ok(cfg.phase_need):
                break
            self.settle(server)
            app0, red0 = server.cpu()
            t = time.monotonic()
            opened = self.open(server, rooms, join=True, reader=True, concurrency=total, timeout=120, retries=2)
            join_s = time.monotonic() - t
            app1, red1 = server.cpu()
            if opened["errors"] or opened["failed_attempts"]:
                self.say(f"  {name}: {opened['failed_attempts']} attempts failed, {opened['errors']} sockets never "
                         f"opened: {opened['failed_attempt_samples'][:2]}")
            reopened = 0
            if opened["failed_rooms"]:
                # The burst is measured on every socket: open the refused ones again, gently.
                again = self.open(server, opened["failed_rooms"], join=True, reader=True, concurrency=32,
                                  timeout=60, retries=3, first_index=total)
                reopened = again["opened"]
                opened["per_worker"] = again["per_worker"]
                self.say(f"  {name}: reopened {reopened} of {len(opened['failed_rooms'])} at 32 at a time")
            self.settle(server)
            # A burst is judged on when its last delivery lands: wait for it longer than a ladder step would.
            s = self.step(server, target=total * cfg.s3b_members, msg_rate=1e9, duration=0.0, mode="burst",
                          deliveries_per_msg=cfg.s3b_members, sockets_per_worker=opened["per_worker"],
                          drain_max=10 * cfg.drain_max, drain_idle=5 * cfg.drain_idle, patient=True)
            s.update({"sockets": total, "opened": opened["opened"], "open_errors": opened["errors"],
                      "open_failed_attempts": opened["failed_attempts"], "reopened_gently": reopened,
                      "join_seconds": round(join_s, 3),
                      "join_server_cpu_ms_per_socket": round(1000 * (app1 - app0 + red1 - red0)
                                                             / max(1, opened["opened"]), 2)})
            results[name] = s
            self.say(f"  {name:<8} joined {opened['opened']}/{total} at once in {join_s:.2f} s; burst {s['received']}/"
                     f"{s['expected']} delivered, {s['delivered_per_s']:.0f}/s, p50 {fmt(s['p50_ms'])} "
                     f"p99 {fmt(s['p99_ms'])} ms, loss {100 * s['loss']:.1f}%, "
                     f"cpu {fmt(s['server_cpu_us_per_delivery'])} us/dlv")
            self.close(server)
        return {"results": results, "ratios": {
            metric: ratios({n: results.get(n, {}).get(metric) for n in SERVERS})
            for metric in ("delivered_per_s", "p99_ms", "join_seconds", "server_cpu_us_per_delivery")
        }}

    def s6(self) -> dict[str, Any]:
        """One machine's scale: N idle sockets (M of them in one room), RSS per socket, then a message to the M."""
        cfg = self.cfg
        self.say(f"S6 one machine: {cfg.s6_sockets} sockets, {min(cfg.s6_members, cfg.s6_sockets)} of them in one "
                 f"room; then {cfg.s6_messages} message(s) to that room (open-file limit {self.nofile} per process)")
        results: dict[str, Any] = {}
        for name, server in self.servers.items():
            if not self.budget.ok(cfg.phase_need):
                break
            n = self.s6_fit.get(name, cfg.s6_sockets)
            m = min(cfg.s6_members, n)
            sources = sources_for(n)
            self.say(f"  {name}: {n} sockets from {sources} loopback source addresses, a room of {m}"
                     + (f" (the {cfg.s6_sockets} asked for do not fit its processes' open-file limit)"
                        if n < cfg.s6_sockets else ""))
            self.settle(server)
            t = time.monotonic()
            big = self.open(server, ["s6-big"] * m, join=True, reader=True, concurrency=200, timeout=120,
                            retries=2, sources=sources)
            self.settle(server)
            rss_m = server.rss()
            # The rest idle: the project's are authenticated and say hello (no room); the others
            # join one idle room by URL, which costs them nothing until someone sends there.
            idle_room = None if name == "project" else "s6-idle"
            idle = self.open(server, [idle_room] * (n - m), join=False, reader=True, concurrency=200, timeout=120,
                             retries=2, first_index=m, sources=sources)
            open_s = time.monotonic() - t
            self.settle(server)
            rss_n = server.rss()
            per_worker = idle["per_worker"]
            s = self.step(server, target=m, msg_rate=1.0, duration=float(cfg.s6_messages), mode="fixed",
                          deliveries_per_msg=m, sockets_per_worker=per_worker, drain_max=10 * cfg.drain_max,
                          drain_idle=5 * cfg.drain_idle, patient=True)
            idle_n = max(1, idle["opened"])
            s.update({
                "sockets": n, "members": m, "sources": sources, "opened": big["opened"] + idle["opened"],
                "processes": self.project_procs if name == "project" else 1,
                "open_errors": big["errors"] + idle["errors"],
                "error_samples": big["error_samples"] + idle["error_samples"],
                "open_seconds": round(open_s, 1), "rss_kib_at_members": rss_m[0], "rss_kib_at_all": rss_n[0],
                "kib_per_idle_socket": round((rss_n[0] - rss_m[0]) / idle_n, 2),
                "redis_kib_per_idle_socket": round((rss_n[1] - rss_m[1]) / idle_n, 2),
            })
            results[name] = s
            self.say(f"  {name:<8} {s['opened']}/{n} open in {open_s:.0f} s ({s['open_errors']} errors), "
                     f"{s['kib_per_idle_socket']:.1f} KiB/idle socket; room of {m}: {s['received']}/{s['expected']} "
                     f"delivered, p50 {fmt(s['p50_ms'])} p99 {fmt(s['p99_ms'])} ms")
            self.close(server)
        return {"results": results, "ratios": {
            metric: ratios({k: results.get(k, {}).get(metric) for k in SERVERS})
            for metric in ("kib_per_idle_socket", "p50_ms", "p99_ms")
        }}

    def s4(self) -> dict[str, Any]:
        cfg = self.cfg
        n = cfg.s4_sockets
        self.say(f"S4 connection storm: {n} concurrent handshakes (project: session-authenticated, until hello)")
        results = {}
        for name, server in self.servers.items():
            if not self.budget.ok(cfg.phase_need):
                break
            self.settle(server)
            app0, red0 = server.cpu()
            res = self.open(server, ["storm"] * n, join=False, reader=True, concurrency=n * 10, timeout=60)
            app1, red1 = server.cpu()
            elapsed = res["last_ready"] - res["started"]
            ready = [t - res["started"] for t in res["ready_at"]]

            def nth(q: float, ready: list[float] = ready) -> float | None:
                return round(ready[min(len(ready) - 1, int(q * len(ready)))], 3) if ready else None

            results[name] = {
                "first_connected_s": nth(0.0), "half_connected_s": nth(0.5), "p90_connected_s": nth(0.9),
                "sockets": n, "connected": res["opened"], "errors": res["errors"],
                "error_samples": res["error_samples"], "seconds_until_all_connected": round(elapsed, 3),
                "handshakes_per_s": round(res["opened"] / elapsed, 1) if elapsed > 0 else None,
                "server_cpu_ms_per_handshake": round(1000 * (app1 - app0 + red1 - red0) / max(1, res["opened"]), 3),
            }
            self.say(f"  {name:<8} {res['opened']}/{n} connected in {elapsed:.2f} s (first {nth(0.0)} s, "
                     f"half {nth(0.5)} s), errors {res['errors']}"
                     + (f" {res['error_samples'][:2]}" if res["errors"] else ""))
            self.close(server)
        return {"results": results, "ratios": {
            "seconds_until_all_connected": ratios({k: results.get(k, {}).get("seconds_until_all_connected")
                                                   for k in SERVERS})}}


def s6_sizes(cfg: Config, nofile: int, names: list[str], project_procs: int) -> dict[str, int]:
    """S6's N for each server whose processes cannot hold ``cfg.s6_sockets`` open files each.

    Every socket is a file in one server process and in one load process. The stock and
    bare servers are one process; the project is ``project_procs`` (``--project-env
    WEB_CONCURRENCY=K``: realtime.web's processes sharing the port, among which the kernel
    spreads connections). Without the right to raise the hard limit (CAP_SYS_RESOURCE;
    ``ulimit -Hn``, systemd's LimitNOFILE) a single process stops near it.
    """
    margin = 500  # the process's own files: its database, Redis, logs, the listening sockets
    per_load = max(1, nofile - margin) * cfg.load_procs
    fit: dict[str, int] = {}
    for name in names:
        procs = project_procs if name == "project" else 1
        # SO_REUSEPORT spreads by a hash of each connection: even only on average (at 17,000
        # per process, one standard deviation is about 120), so each keeps 3 % spare.
        per_server = max(1, nofile - margin) * procs * (0.97 if procs > 1 else 1.0)
        n = int(min(cfg.s6_sockets, per_server, per_load))
        if n < cfg.s6_sockets:
            fit[name] = max(100, n)
            print(f"NOTE: S6 wants {cfg.s6_sockets} sockets but the open-file limit is {nofile} per process (hard "
                  f"limit; raising it needs CAP_SYS_RESOURCE): {name} ({procs} process(es), {cfg.load_procs} load "
                  f"process(es)) runs S6 with {fit[name]}", flush=True)
    return fit


def fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{digits}f}" if abs(v) >= 10 else f"{v:.{max(digits, 2)}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


# --- the table ------------------------------------------------------------------------


def table_rows(report: dict[str, Any]) -> list[tuple[str, list[Any]]]:
    """(section title, rows) with rows: label, project, stock, bare, p/s, p/b."""
    sections = []
    sc = report["scenarios"]

    def row(label: str, values: dict[str, Any]) -> list[Any]:
        r = ratios(values)
        return [label, values.get("project"), values.get("stock"), values.get("bare"), r["project/stock"],
                r["project/bare"]]

    if "S1" in sc:
        res = sc["S1"]["results"]
        rows = []
        for c in report["config"]["s1_clients"]:
            c = str(c)
            for metric, label in (("round_trips_per_s", "round trips/s"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms")):
                rows.append(row(f"{c} client(s): {label}", {n: res.get(n, {}).get(c, {}).get(metric) for n in SERVERS}))
            pe = res.get("project_echo_endpoint", {}).get(c, {})
            rows.append([f"{c} client(s): project /ws/echo/ rt/s", pe.get("round_trips_per_s"), None, None, None, None])
            rows.append([f"{c} client(s): project /ws/echo/ p50 ms", pe.get("p50_ms"), None, None, None, None])
        sections.append(("S1 echo (project: ping/pong on /ws/chat/)", rows))
    def ladder_rows(prefix: str, lads: dict[str, Any]) -> list[list[Any]]:
        best = {n: (lads.get(n) or {}).get("best") or {} for n in SERVERS}
        cap = {n: (lads.get(n) or {}).get("capacity") or {} for n in SERVERS}
        rows = [row(f"{prefix}delivered msg/s", {n: best[n].get("delivered_per_s") for n in SERVERS})]
        for k in ("p50_ms", "p95_ms", "p99_ms"):
            rows.append(row(f"{prefix}  {k.replace('_ms', '')} ms", {n: best[n].get(k) for n in SERVERS}))
        rows.append(row(f"{prefix}  loss %", {n: (100 * best[n]["loss"] if "loss" in best[n] else None)
                                                for n in SERVERS}))
        rows.append(row(f"{prefix}  server CPU us/delivery",
                        {n: best[n].get("server_cpu_us_per_delivery") for n in SERVERS}))
        rows.append(row(f"{prefix}max msg/s, any p99, loss<=0.1%", {n: cap[n].get("delivered_per_s") for n in SERVERS}))
        rows.append(row(f"{prefix}  p99 ms there", {n: cap[n].get("p99_ms") for n in SERVERS}))
        rows.append(row(f"{prefix}  server CPU us/delivery there",
                        {n: cap[n].get("server_cpu_us_per_delivery") for n in SERVERS}))
        rows.append(row(f"{prefix}  server CPU % of a core there", {n: cap[n].get("server_cpu_pct") for n in SERVERS}))
        at = {n: (lads.get(n) or {}).get("at_10k") or {} for n in SERVERS}
        if any(at.values()):
            rows.append(row(f"{prefix}p99 ms at 10,000/s offered", {n: at[n].get("p99_ms") for n in SERVERS}))
        held = {n: (lads.get(n) or {}).get("hold_10k") or {} for n in SERVERS}
        if any(held.values()):
            secs = next(h["duration_s"] for h in held.values() if h)
            rows.append(row(f"{prefix}  p50 ms, 10,000/s held {secs:g} s", {n: held[n].get("p50_ms") for n in SERVERS}))
            rows.append(row(f"{prefix}  p99 ms, 10,000/s held {secs:g} s", {n: held[n].get("p99_ms") for n in SERVERS}))
        return rows

    if "S2" in sc:
        res = sc["S2"]["results"]
        rows = []
        for m in report["config"]["s2_members"]:
            rows += ladder_rows(f"M={m}: ", {n: res.get(n, {}).get(str(m)) for n in SERVERS})
        sections.append(("S2 fan-out, one room, one publisher (first block: highest step with p99 <= 250 ms "
                         "and loss <= 0.1%)", rows))
    if "S3" in sc:
        cfg = report["config"]
        sections.append((f"S3 many rooms ({cfg['s3_rooms']} x {cfg['s3_members']}, Poisson senders)",
                         ladder_rows("", sc["S3"]["results"])))
    if "S0" in sc:
        res = sc["S0"]["results"]
        rows = [
            row("KiB per idle connection (server)",
                {n: res.get(n, {}).get("kib_per_idle_connection") for n in SERVERS}),
            row("KiB per idle connection (+Redis)",
                {n: res.get(n, {}).get("total_kib_per_idle_connection") for n in SERVERS}),
            row("idle CPU % of a core", {n: res.get(n, {}).get("idle_cpu_pct") for n in SERVERS}),
            row("seconds to open + join all sockets", {n: res.get(n, {}).get("open_seconds") for n in SERVERS}),
            row("server CPU ms per open + join",
                {n: res.get(n, {}).get("open_server_cpu_ms_per_socket") for n in SERVERS}),
        ]
        sections.append(("S0 idle", rows))
    if "S3B" in sc:
        res = sc["S3B"]["results"]
        cfg = report["config"]
        rows = [
            row("seconds to join all", {n: res.get(n, {}).get("join_seconds") for n in SERVERS}),
            row("server CPU ms per join", {n: res.get(n, {}).get("join_server_cpu_ms_per_socket") for n in SERVERS}),
            row("burst deliveries/s", {n: res.get(n, {}).get("delivered_per_s") for n in SERVERS}),
            row("  loss %", {n: (100 * res[n]["loss"] if n in res else None) for n in SERVERS}),
            row("  p50 ms", {n: res.get(n, {}).get("p50_ms") for n in SERVERS}),
            row("  p99 ms", {n: res.get(n, {}).get("p99_ms") for n in SERVERS}),
            row("  server CPU us/delivery", {n: res.get(n, {}).get("server_cpu_us_per_delivery") for n in SERVERS}),
        ]
        sections.append((f"S3B many-rooms burst ({cfg['s3b_rooms']} rooms x {cfg['s3b_members']}: all join, "
                         "then each posts once)", rows))
    if "S6" in sc:
        res = sc["S6"]["results"]
        cfg = report["config"]
        rows = [
            row("server processes", {n: res.get(n, {}).get("processes") for n in SERVERS}),
            row("sockets asked", {n: res.get(n, {}).get("sockets") for n in SERVERS}),
            row("sockets open", {n: res.get(n, {}).get("opened") for n in SERVERS}),
            row("open errors", {n: res.get(n, {}).get("open_errors") for n in SERVERS}),
            row("seconds to open all", {n: res.get(n, {}).get("open_seconds") for n in SERVERS}),
            row("KiB per idle socket (server)", {n: res.get(n, {}).get("kib_per_idle_socket") for n in SERVERS}),
            row("one room: delivered", {n: res.get(n, {}).get("received") for n in SERVERS}),
            row("  loss %", {n: (100 * res[n]["loss"] if n in res else None) for n in SERVERS}),
            row("  p50 ms", {n: res.get(n, {}).get("p50_ms") for n in SERVERS}),
            row("  p99 ms", {n: res.get(n, {}).get("p99_ms") for n in SERVERS}),
        ]
        sections.append((f"S6 one machine ({cfg['s6_sockets']} sockets, one room of {cfg['s6_members']})", rows))
    if "S4" in sc:
        res = sc["S4"]["results"]
        rows = [
            row("seconds until all connected", {n: res.get(n, {}).get("seconds_until_all_connected") for n in SERVERS}),
            row("seconds until half connected", {n: res.get(n, {}).get("half_connected_s") for n in SERVERS}),
            row("errors", {n: res.get(n, {}).get("errors") for n in SERVERS}),
            row("server CPU ms/handshake", {n: res.get(n, {}).get("server_cpu_ms_per_handshake") for n in SERVERS}),
        ]
        sections.append((f"S4 connection storm ({report['config']['s4_sockets']} handshakes)", rows))
    return sections


def render(report: dict[str, Any], markdown: bool = False) -> str:
    out = []
    for title, rows in table_rows(report):
        if markdown:
            out.append(f"\n**{title}**\n")
            out.append("| metric | project | stock | bare | project/stock | project/bare |")
            out.append("|---|---:|---:|---:|---:|---:|")
            for r in rows:
                out.append("| " + " | ".join([r[0]] + [fmt(v) for v in r[1:4]] + [fmt(v, 2) for v in r[4:]]) + " |")
        else:
            out.append(f"\n{title}")
            out.append(f"  {'metric':<38}{'project':>11}{'stock':>11}{'bare':>11}{'proj/stock':>12}{'proj/bare':>11}")
            for r in rows:
                out.append(f"  {r[0]:<38}" + "".join(f"{fmt(v):>11}" for v in r[1:4])
                           + f"{fmt(r[4], 2):>12}{fmt(r[5], 2):>11}")
    return "\n".join(out)


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, judged on this run (None: not measured)."""
    sc = report["scenarios"]
    out = []

    def add(name: str, ok: bool | None, detail: str) -> None:
        out.append({"target": name, "met": ok, "detail": detail})

    if "S2" in sc:
        res = sc["S2"]["results"]
        big = str(max(report["config"]["s2_members"]))
        lad_p, lad_s = res.get("project", {}).get(big) or {}, res.get("stock", {}).get(big) or {}
        # The sustained figures (p99 <= 250 ms) when both have one, else the lossless maxima.
        key = "best" if lad_p.get("best") and lad_s.get("best") else "capacity"
        p, s = lad_p.get(key) or {}, lad_s.get(key) or {}
        name = f"S2 M={big}: >= 10x stock delivered msg/s, zero loss"
        if p and s and s.get("delivered_per_s"):
            r = p["delivered_per_s"] / s["delivered_per_s"]
            add(name, bool(r >= 10 and p["received"] >= p["expected"]),
                f"{r:.2f}x stock ({'p99 <= 250 ms' if key == 'best' else 'highest lossless step, any latency'}), "
                f"loss {100 * p['loss']:.3f}%")
        else:
            add(name, False if lad_s else None, "project had no lossless step" if lad_s else "not measured")
        for m, lad in res.get("project", {}).items():
            at, held = lad.get("at_10k"), lad.get("hold_10k")
            if held:
                # The hold's p99 rests on hold_duration seconds of messages; the ladder step's on 2 s.
                add(f"S2 M={m}: p99 < 50 ms at 10,000 deliveries/s",
                    held["p99_ms"] is not None and held["p99_ms"] < 50 and held["passed"],
                    f"p99 {held['p99_ms']} ms held {held['duration_s']:g} s (ladder step: {at['p99_ms']} ms), "
                    f"loss {100 * held['loss']:.2f}%")
            elif at:
                add(f"S2 M={m}: p99 < 50 ms at 10,000 deliveries/s", at["p99_ms"] is not None and at["p99_ms"] < 50
                    and at["passed"], f"p99 {at['p99_ms']} ms, loss {100 * at['loss']:.2f}%")
            elif lad.get("steps"):
                add(f"S2 M={m}: p99 < 50 ms at 10,000 deliveries/s", False,
                    f"stopped below 10,000/s ({lad['stop_reason']})")
    if "S0" in sc:
        res = sc["S0"]["results"]
        p, b = res.get("project", {}).get("kib_per_idle_connection"), res.get("bare", {}).get("kib_per_idle_connection")
        if p is not None and b:
            add("S0: <= 1.5x bare memory per idle connection", p <= 1.5 * b, f"{p:.1f} vs {b:.1f} KiB ({p / b:.2f}x)")
    if "S4" in sc:
        p = sc["S4"]["results"].get("project")
        if p:
            add("S4: zero errors", p["errors"] == 0 and p["connected"] == p["sockets"],
                f"{p['errors']} errors, {p['connected']}/{p['sockets']} connected in "
                f"{p['seconds_until_all_connected']} s")
    for key, label in (("S3", "S3 many rooms"), ("S3B", "S3B many-rooms burst")):
        if key not in sc:
            continue
        if key == "S3":
            p = ((sc[key]["results"].get("project") or {}).get("best") or {}).get("delivered_per_s")
            b = ((sc[key]["results"].get("bare") or {}).get("best") or {}).get("delivered_per_s")
        else:
            p = (sc[key]["results"].get("project") or {}).get("delivered_per_s")
            b = (sc[key]["results"].get("bare") or {}).get("delivered_per_s")
        if p is not None and b:
            add(f"{label}: >= 0.3x bare deliveries/s", p >= 0.3 * b, f"{p:.0f} vs {b:.0f}/s ({p / b:.2f}x)")
    if "S6" in sc:
        res = sc["S6"]["results"]
        p, b = res.get("project") or {}, res.get("bare") or {}
        if p:
            add(f"S6: {report['config']['s6_sockets']} sockets asked, {p['sockets']} open, the room of "
                f"{p['members']} delivered to all",
                p["sockets"] >= report["config"]["s6_sockets"] and p["open_errors"] == 0
                and p["received"] >= p["expected"],
                f"{p['opened']}/{p['sockets']} open, {p['received']}/{p['expected']} delivered, "
                f"p50 {p['p50_ms']} p99 {p['p99_ms']} ms")
        if p and b and b.get("kib_per_idle_socket"):
            add("S6: memory per idle socket <= bare", p["kib_per_idle_socket"] <= b["kib_per_idle_socket"],
                f"{p['kib_per_idle_socket']:.1f} vs {b['kib_per_idle_socket']:.1f} KiB")
    if "S1" in sc:
        res = sc["S1"]["results"]
        for c in report["config"]["s1_clients"]:
            p = res.get("project", {}).get(str(c), {}).get("p50_ms")
            b = res.get("bare", {}).get(str(c), {}).get("p50_ms")
            if p is not None and b:
                add(f"S1 {c} client(s): echo p50 within 2x bare", p <= 2 * b, f"{p} vs {b} ms ({p / b:.2f}x)")
    return out


def client_check(report: dict[str, Any]) -> dict[str, Any]:
    """Was the load client the limit against the bare server? (It should stay under 70 % of a core.)

    Judged on the fan-out scenarios (S2, S3) at the bare server's best step, and on whether its
    ladder stopped with the client saturated. S1 is a closed loop, where the client is busy by
    construction; its figure is reported apart.
    """
    sc = report["scenarios"]
    worst, where, bound = 0.0, "", []
    ladders = [(f"S2 M={m}", lad) for m, lad in sc.get("S2", {}).get("results", {}).get("bare", {}).items()]
    if sc.get("S3", {}).get("results", {}).get("bare"):
        ladders.append(("S3", sc["S3"]["results"]["bare"]))
    for label, lad in ladders:
        best = lad.get("best")
        if best and (best.get("client_cpu_pct_max") or 0) > worst:
            worst, where = best["client_cpu_pct_max"], label
        if lad.get("client_bound"):
            bound.append(label)
    s1 = max((e["client_cpu_pct_max"] for e in sc.get("S1", {}).get("results", {}).get("bare", {}).values()),
             default=None)
    calib = report.get("calibration") or {}
    lines = []
    if calib:
        lines.append(f"load client calibration: {calib['delivered_per_s']:.0f} deliveries/s from the bare server cost "
                     f"{calib['client_cpu_pct_max']}% of a core per load process (about "
                     f"{fmt(calib['client_deliveries_per_s_at_70pct'])} deliveries/s per process at 70%)")
    ok = worst < 100 * CLIENT_CPU_LIMIT and not bound
    # Two cores are shared by the server and the load processes: near 100 % of all of them, the
    # machine is the limit even when each load process is under 70 %.
    cores = report["machine"]["cpus"] or 1
    saturated = []
    for label, lad in ladders:
        best = lad.get("best") or {}
        total = (best.get("server_cpu_pct") or 0) + (best.get("client_cpu_pct_sum") or 0)
        if total >= 90 * cores:
            saturated.append(f"{label} ({total:.0f}% of {cores * 100}%)")
    if not ladders:
        lines.append("load client vs bare in fan-out: not measured (no S2/S3)")
    elif ok:
        lines.append(f"load client vs bare in fan-out: OK, at most {worst:.0f}% of a core at the bare server's "
                     f"reported steps ({where}); the bare figures are the server's")
    else:
        lines.append(f"load client vs bare in fan-out: NOT below 70% of a core (max {worst:.0f}% at {where}"
                     + (f"; client saturated when the bare ladder stopped: {', '.join(bound)}" if bound else "")
                     + "): the bare figures are a lower bound, limited by the load client on this machine; "
                     "the project/bare ratios are upper bounds")
    if saturated:
        lines.append("at the bare server's best steps the machine itself was nearly saturated (server + load client "
                     f"CPU >= 90% of all cores: {', '.join(saturated)}): those bare figures are bounded by this "
                     "machine, not by the bare server alone")
    if s1 is not None:
        lines.append(f"S1 is a closed loop: the load client used up to {s1:.0f}% of a core against bare there "
                     "(bare S1 throughput is client-limited when that is near 100%)")
    return {"max_client_cpu_pct_vs_bare": worst, "where": where, "below_70pct": ok, "client_bound": bound,
            "machine_saturated_at": saturated,
            "s1_client_cpu_pct_max_vs_bare": s1, "calibration": calib, "text": "\n".join(lines)}


# --- set-up ----------------------------------------------------------------------------


def setup_project_db(cfg: Config, env: dict[str, str]) -> list[str]:
    """Migrate the throwaway database, create bench users and rooms; one session cookie per user."""
    os.environ.update({k: env[k] for k in env if k not in os.environ or os.environ[k] != env[k]})
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from chat.models import Room

    call_command("migrate", verbosity=0)
    User = get_user_model()
    users = [User.objects.create_user(f"bench{i}", password=None) for i in range(cfg.users)]
    slugs = ([f"fan-{m}" for m in cfg.s2_members] + [f"r-{i}" for i in range(cfg.s3_rooms)]
             + [f"b-{i}" for i in range(cfg.s3b_rooms)] + ["s6-big"])
    Room.objects.bulk_create([Room(slug=s, title=s, is_public=True) for s in slugs])
    cookies = []
    for user in users:
        client = Client()
        client.force_login(user)
        cookies.append(f"sessionid={client.cookies['sessionid'].value}")
    connection.close()
    return cookies


def versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {"python": platform.python_version()}
    for pkg in ("django", "channels", "channels-redis", "daphne", "redis", "websockets", "twisted"):
        try:
            out[pkg] = version(pkg)
        except Exception:  # noqa: BLE001
            out[pkg] = "?"
    try:
        out["redis-server"] = subprocess.run([shutil.which("redis-server") or "redis-server", "--version"],
                                             capture_output=True, text=True, timeout=10).stdout.split()[2]
    except Exception:  # noqa: BLE001
        out["redis-server"] = "?"
    return out


def project_code() -> dict[str, Any]:
    """Which code the project server ran: the commit, uncommitted app files, a hash of realtime/ and chat/."""
    import hashlib

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception:  # noqa: BLE001
            return "?"

    digest = hashlib.sha256()
    for path in sorted([*ROOT.glob("realtime/**/*.py"), *ROOT.glob("chat/**/*.py")]):
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    changed = [line.split(None, 1)[-1] for line in git("status", "--porcelain", "--", "realtime", "chat").splitlines()
               if line.strip()]
    return {"commit": git("rev-parse", "--short", "HEAD"), "uncommitted_app_files": changed,
            "app_sources_sha256": digest.hexdigest()[:16]}


def machine() -> dict[str, Any]:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) // 1024} MiB"
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": cpu, "memory": mem, "platform": platform.platform(),
            "loadavg_at_start": os.getloadavg()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, well under a minute (for the tests)")
    parser.add_argument("--scenarios", default=None,
                        help="comma-separated subset of S0..S4, S3B, S6 (default all; --quick: S0..S4)")
    parser.add_argument("--s6-sockets", type=int, default=None,
                        help="S6: concurrent idle sockets (default 100000; quick 300)")
    parser.add_argument("--s6-members", type=int, default=None,
                        help="S6: members of its one room (default 10000; quick 60)")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated subset of project,stock,bare")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "fanout.json"), help="where to write JSON")
    parser.add_argument("--load-procs", type=int, default=None,
                        help="load client processes per server (default 2; quick 1)")
    parser.add_argument("--users", type=int, default=20, help="bench users the project's sockets are spread over")
    parser.add_argument("--project-env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for the project's Daphne (repeatable), e.g. to try a setting")
    parser.add_argument("--members", default=None,
                        help="S2 room sizes, comma-separated (default 10,100,1000; quick 10)")
    parser.add_argument("--budget", type=float, default=None, help="seconds for the scenarios (default 960; quick 45)")
    args = parser.parse_args(argv)
    chosen = args.scenarios or ",".join(QUICK_SCENARIOS if args.quick else ALL_SCENARIOS)
    scenarios = [s.strip().upper() for s in chosen.split(",") if s.strip()]
    unknown = set(scenarios) - set(ALL_SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}")
    names = [s.strip() for s in args.servers.split(",") if s.strip()]
    if set(names) - set(SERVERS):
        parser.error(f"unknown servers {sorted(set(names) - set(SERVERS))}")
    names = [n for n in SERVERS if n in names]
    cfg = Config.make(args.quick, args.load_procs, args.users, args.budget)
    if args.members:
        cfg.s2_members = [int(m) for m in args.members.split(",") if m.strip()]
    if args.s6_sockets:
        cfg.s6_sockets = args.s6_sockets
    if args.s6_members:
        cfg.s6_members = args.s6_members

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    # A hard stop well past the budget, whatever hangs: the finally below still cleans up.
    signal.signal(signal.SIGALRM, on_term)
    signal.alarm(int(cfg.budget + (60 if cfg.quick else 420)))
    # Every socket is a file in the server and in a load process; S6 needs its N in both
    # (processes started from here inherit the limit).
    nofile = raise_nofile(2 * cfg.s6_sockets + 10_000 if "S6" in scenarios else 0)
    project_procs = 1
    for item in args.project_env:
        key, _, value = item.partition("=")
        if key == "WEB_CONCURRENCY":
            project_procs = max(1, int(value))
    s6_fit: dict[str, int] = {}
    if "S6" in scenarios:
        s6_fit = s6_sizes(cfg, nofile, names, project_procs)
    started_wall = time.monotonic()
    from tests import services

    code = project_code()  # before the project server imports anything
    tmp = Path(tempfile.mkdtemp(prefix="bench-fanout-"))
    started: list[Any] = []
    clients: list[LoadClient] = []
    try:
        redis_p = services.redis_service().start()
        started.append(redis_p)
        redis_s = services.redis_service().start()
        started.append(redis_s)
        common = {
            "DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "bench-" + secrets.token_hex(16),
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost", "DJANGO_SECURE_SSL_REDIRECT": "0",
            "DJANGO_SECURE_COOKIES": "0", "SENTRY_DSN": "", "LOG_LEVEL": "WARNING",
            "SQLITE_PATH": str(tmp / "db.sqlite3"),
        }
        url_p = f"redis://127.0.0.1:{redis_p.port}/0"
        env_p = services.app_env(
            REDIS_URL=url_p, CELERY_BROKER_URL=url_p, **common,
            WS_MAX_CONNECTIONS_PER_USER="1000000", CHAT_RATE_BURST="1000000000", CHAT_RATE_PER_SECOND="1000000000",
            # Admission control off, like the rate limit: these scenarios measure the cost
            # unthrottled (bench/reconnect.py, S5, measures it on).
            WS_ADMISSION_HANDSHAKES_PER_SECOND="0", WS_ADMISSION_HANDSHAKES_IN_FLIGHT="0",
            WS_ADMISSION_JOINS_PER_SECOND="0",
        )
        for item in args.project_env:
            key, _, value = item.partition("=")
            env_p[key] = value
        url_s = f"redis://127.0.0.1:{redis_s.port}/0"
        env_s = services.app_env(
            REDIS_URL=url_s, CELERY_BROKER_URL=url_s, DJANGO_SETTINGS_MODULE="bench.fanout.stock_settings", **common
        )
        cookies = setup_project_db(cfg, env_p)

        servers: dict[str, Server] = {}
        if "project" in names:
            if env_p.get("WEB_CONCURRENCY"):  # --project-env WEB_CONCURRENCY=N: realtime.web's N processes
                svc = services.web_service(env_p, concurrency=int(env_p["WEB_CONCURRENCY"])).start()
                started.append(svc)
                services.wait_serving(svc)
            else:
                svc = services.daphne_service(env_p).start()
                started.append(svc)
            servers["project"] = Server("project", svc, redis_p, Adapter("project", svc.port, cookies))
        if "stock" in names:
            port = services.free_port()
            svc = services.Service(
                f"stock-daphne-{port}",
                [str(services.BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "-v", "0",
                 "bench.fanout.stock_asgi:application"],
                env=env_s, port=port,
            ).start()
            started.append(svc)
            servers["stock"] = Server("stock", svc, redis_s, Adapter("stock", port))
        if "bare" in names:
            port = services.free_port()
            svc = services.Service(
                f"bare-{port}",
                [sys.executable, str(ROOT / "bench" / "fanout" / "bare_server.py"), "--port", str(port)],
                env=dict(os.environ), port=port,
            ).start()
            started.append(svc)
            servers["bare"] = Server("bare", svc, None, Adapter("bare", port))
        for server in servers.values():
            server.client = LoadClient(server.adapter, cfg.load_procs)
            clients.append(server.client)

        print(f"fan-out benchmark{' (quick)' if cfg.quick else ''}: servers {', '.join(servers)}; "
              f"scenarios {', '.join(scenarios)}; {cfg.load_procs} load process(es) per server; "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}", flush=True)
        budget = Budget(cfg.budget)
        bench = Bench(cfg, servers, budget)
        bench.nofile = nofile
        bench.s6_fit = s6_fit
        bench.project_procs = project_procs
        report: dict[str, Any] = {
            "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "quick": cfg.quick, "machine": machine(), "versions": versions(), "project_code": code,
            "config": {**vars(cfg), "project_env": args.project_env, "open_file_limit": nofile},
            "servers": {n: {"port": s.adapter.port, "what": {
                "project": "realtime.asgi:application on Daphne (production settings, SQLite, own Redis)",
                "stock": "Channels tutorial chat (bench/fanout/stock_chat.py) on Daphne, RedisChannelLayer, own Redis",
                "bare": "websockets.asyncio.server, compression=None, broadcast() (bench/fanout/bare_server.py)",
            }[n]} for n, s in servers.items()},
            "scenarios": {},
        }
        sc = report["scenarios"]
        if "bare" in servers and ("S2" in scenarios or "S3" in scenarios):
            report["calibration"] = bench.calibrate()
        if "S1" in scenarios:
            sc["S1"] = bench.s1()
        # S4 before the long ones, so a run cut short by the time budget still has it.
        if "S4" in scenarios:
            sc["S4"] = bench.s4()
        if "S2" in scenarios:
            sc["S2"] = bench.s2()
        if "S0" in scenarios or "S3" in scenarios:
            sc.update(bench.rooms_phase("S0" in scenarios, "S3" in scenarios))
        if "S3B" in scenarios:
            sc["S3B"] = bench.s3b()
        if "S6" in scenarios:
            sc["S6"] = bench.s6()
        sc = {k: sc[k] for k in ALL_SCENARIOS if k in sc}
        report["scenarios"] = sc
        for name, server in servers.items():
            if not server.alive():
                print(f"WARNING: the {name} server exited during the run:\n{server.service.log()[-2000:]}")
        report["budget_exhausted"] = budget.exhausted
        report["load_client"] = client_check(report)
        report["targets"] = targets(report)
        report["duration_s"] = round(time.monotonic() - started_wall, 1)
        report["server_logs_tail"] = {n: s.service.log()[-1500:] for n, s in servers.items()}

        print(render(report))
        print()
        print(report["load_client"]["text"])
        for t in report["targets"]:
            mark = {True: "met", False: "NOT met", None: "n/a"}[t["met"]]
            print(f"  target: {t['target']:<55} {mark:<8} {t['detail']}")
        if budget.exhausted:
            print("NOTE: the time budget ran out; some steps or scenarios were skipped.")
        print(f"total {report['duration_s']} s")
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2, default=str))
        md = out.with_suffix(".md")
        md.write_text(
            f"Fan-out benchmark, {report['started_at']}{' (quick)' if cfg.quick else ''}: "
            f"{report['machine']['cpus']} CPUs ({report['machine']['cpu_model']}), {report['machine']['memory']}, "
            f"{report['machine']['platform']}; project code {code['commit']}"
            + (f" + uncommitted {', '.join(code['uncommitted_app_files'])}" if code["uncommitted_app_files"] else "")
            + "; "
            + ", ".join(f"{k} {v}" for k, v in report["versions"].items()) + "\n"
            + render(report, markdown=True) + "\n\n" + report["load_client"]["text"] + "\n"
        )
        print(f"wrote {out} and {md}")
        return 0
    finally:
        for lc in clients:
            lc.close()
        for svc in reversed(started):
            svc.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
