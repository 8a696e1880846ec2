"""What /api/edges/ tells the browser's edge routing (static/js/edges.js): site, switch, socket URLs."""

from __future__ import annotations

import pytest
from django.test import Client

from realtime import edges
from tests.services import ROOT

CATALOGUE = ROOT / "deploy" / "regions.toml"


def test_api_edges_names_the_site_and_whether_routing_is_on(client: Client, settings):
    """``site_origin`` (pages elsewhere, e.g. local development, keep their own host) and ``routing``."""
    body = client.get("/api/edges/").json()
    assert body["site_origin"] == "https://chat.example.com"
    assert body["routing"] is True
    settings.EDGE_ROUTING = False
    assert client.get("/api/edges/").json()["routing"] is False


def test_a_region_may_name_its_socket_url(client: Client, settings, tmp_path):
    """``ws_url`` replaces wss://<hostname><ws_path> (a port, or ws:// in the simulation); anything else is refused."""
    path = tmp_path / "regions.toml"
    text = CATALOGUE.read_text()
    anchor = 'health_url = "https://ws-eu-west.example.com/healthz"\n'
    path.write_text(text.replace(anchor, anchor + 'ws_url = "ws://127.0.0.1:9100/ws/chat/"\n'))
    settings.REGIONS_FILE = str(path)
    regions = {r["name"]: r for r in client.get("/api/edges/").json()["regions"]}
    assert regions["eu-west"]["wss_url"] == "ws://127.0.0.1:9100/ws/chat/"
    assert regions["us-east"]["wss_url"] == "wss://ws-us-east.example.com/ws/chat/"

    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace(anchor, anchor + 'ws_url = "https://ws-eu-west.example.com/ws/chat/"\n'))
    with pytest.raises(edges.CatalogueError, match=r"\[regions.eu-west\]: 'ws_url' must be a ws\(s\) URL"):
        edges.catalogue_load(bad)
