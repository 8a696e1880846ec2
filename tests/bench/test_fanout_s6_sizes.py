"""bench/fanout/run.py sizes S6 per server so that no process is asked for more sockets than
its open-file limit allows: the project's over its processes, the others in one."""

from __future__ import annotations

from bench.fanout.run import Config, s6_sizes


def test_s6_runs_the_asked_n_only_where_every_process_can_hold_its_share() -> None:
    """100,000 sockets under a 20,000 file limit: the project on 7 processes with 6 load
    processes gets all of them; the single-process servers get what one process holds; too
    few load processes cap everyone."""
    cfg = Config.make(False, 6, 20, None)
    assert cfg.s6_sockets == 100_000
    fit = s6_sizes(cfg, 20_000, ["project", "stock", "bare"], project_procs=7)
    assert "project" not in fit
    assert fit == {"stock": 19_500, "bare": 19_500}
    assert s6_sizes(cfg, 20_000, ["project"], project_procs=5)["project"] < 100_000
    few_loaders = Config.make(False, 2, 20, None)
    assert s6_sizes(few_loaders, 20_000, ["project"], project_procs=7) == {"project": 39_000}
    assert s6_sizes(cfg, 1_000_000, ["project", "bare"], project_procs=1) == {}
