"""Nearest-edge routing in real Chromium (static/js/edges.js): probe, ticket across origins, give up an edge.

The page is served by one Daphne (the site, whose catalogue names it as ``site_origin``);
the catalogue's edges are another Daphne (another origin: the session cookie does not
go there, a ticket does) and an address where nothing answers. The unit tests of the
selection logic are in tests/js/edges.test.mjs; deploy/simulate_regions.py measures it
with simulated distances.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests import services
from tests.browser.login import submit_login

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.django_db(transaction=True)]

CONNECTED = "() => document.querySelector('#conn-status').dataset.state === 'connected'"
SHOWN = "([seq, body]) => document.querySelector(`#messages li[data-seq='${seq}'] .body`)?.textContent === body"


def catalogue(path: Path, *, site_port: int, edges: dict[str, int]) -> Path:
    lines = ["[edge]", f'site_origin = "http://127.0.0.1:{site_port}"', 'image = "test"',
             f'default_region = "{next(iter(edges))}"', f'beat_region = "{next(iter(edges))}"', ""]
    for name, port in edges.items():
        lines += [
            f"[regions.{name}]", f'hostname = "{name}.test.localhost"',
            f'health_url = "http://127.0.0.1:{port}/healthz"', f'ws_url = "ws://127.0.0.1:{port}/ws/chat/"',
            f"[regions.{name}.daphne]", 'hosts = ["127.0.0.1"]', "processes_per_host = 1", "port = 8001",
            f"[regions.{name}.redis]", 'url = "redis://127.0.0.1:6379/0"',
            f"[regions.{name}.celery]", "worker_concurrency = 1", "workers = 1",
            f"[regions.{name}.kubernetes]", 'namespace = "t"', "min_replicas = 1", "max_replicas = 1",
            "connections_per_pod = 10", "",
        ]
    path.write_text("\n".join(lines))
    return path


@pytest.fixture
def servers(app_env, tmp_path):
    """The site and one live edge; a second edge that never answers."""
    edge = services.daphne_service(app_env).start()
    site_port, dead_port = services.free_port(), services.free_port()
    regions = catalogue(tmp_path / "regions.toml", site_port=site_port, edges={"near": edge.port, "gone": dead_port})
    site = services.daphne_service({**app_env, "REGIONS_FILE": str(regions)}, port=site_port).start()
    yield site, edge
    site.stop()
    edge.stop()


def test_page_connects_to_the_answering_edge_with_a_ticket_and_falls_back_to_its_site_when_it_dies(
    browser: Any, servers: Any, make_user: Any, lobby: Any
):
    site, edge = servers
    make_user("alice")
    context = browser.new_context()
    page = context.new_page()
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    try:
        submit_login(page, site.url, "alice")
        page.wait_for_function(CONNECTED, timeout=20000)

        # The only edge that answered its probes, on another origin: a ticket in the URL.
        assert sockets[-1].startswith(f"ws://127.0.0.1:{edge.port}/ws/chat/?ticket="), sockets
        stored = page.evaluate("() => JSON.parse(localStorage.getItem('chat.edge.v1'))")
        assert stored["name"] == "near" and stored["at"] > 0
        page.fill("#body", "via the edge")
        page.press("#body", "Enter")
        page.wait_for_function(SHOWN, arg=[1, "via the edge"])

        # The edge dies; the other one never answered: after two failed connects the page
        # gives the edge up and, with no edge left, connects to its own site (cookie, no ticket).
        edge.stop()
        page.wait_for_function("() => document.querySelector('#conn-status').dataset.state !== 'connected'")
        page.wait_for_function(CONNECTED, timeout=30000)
        assert sockets[-1] == f"ws://127.0.0.1:{site.port}/ws/chat/", sockets
        page.fill("#body", "via the site")
        page.press("#body", "Enter")
        page.wait_for_function(SHOWN, arg=[2, "via the site"])
        assert page.evaluate("() => localStorage.getItem('chat.edge.v1')") is None
    finally:
        context.close()
