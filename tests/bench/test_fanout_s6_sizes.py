"""bench/fanout/run.py sizes S6 per server so that no process is asked for more sockets than
its open-file limit allows: the project's over its processes, the others in one."""

from __future__ import annotations

from bench.fanout.load import source_address, sources_for
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


def test_s6_spreads_its_sockets_so_no_source_address_runs_out_of_even_ports() -> None:
    """A bound client socket takes an even ephemeral port first: each loopback source address
    is given at most 80 % of the even half of the range (100,000 over the default range: 9
    addresses of at most 11,112 sockets, not 5 of 20,000), and the addresses are distinct."""
    default = (32768, 60999)
    assert sources_for(100_000, default) == 9
    assert sources_for(300, default) == 2
    n = 100_000
    k = sources_for(n, default)
    per = {}
    for i in range(n):
        per[source_address(i, k)] = per.get(source_address(i, k), 0) + 1
    assert len(per) == k and max(per.values()) <= (default[1] - default[0] + 1) // 2 * 0.8
