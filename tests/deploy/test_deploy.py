"""The regional deployment: catalogue, /api/edges/, and the files deploy/generate.py writes.

The committed deploy/generated/ must equal a fresh generation; the nginx files pass
``nginx -t`` and, run for real in front of the two live Daphne processes, carry
WebSockets over TLS with sticky upstreams and a /metrics closed to other addresses;
the Kubernetes manifests validate offline against the API schemas (kubernetes-validate,
strict: unknown fields fail); the systemd units pass ``systemd-analyze verify``; the
dashboard and the autoscaler name only metrics that realtime/metrics.py exports.
"""

from __future__ import annotations

import asyncio
import http.client
import importlib.util
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from django.test import Client
from kubernetes_validate.utils import latest_version
from websockets.asyncio.client import connect as ws_connect

from realtime import edges, metrics
from tests import services
from tests.conftest import cookie_header

ROOT = services.ROOT
GENERATED = ROOT / "deploy" / "generated"
CATALOGUE = ROOT / "deploy" / "regions.toml"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
# The oldest Kubernetes we claim to support, and the newest the package knows.
K8S_VERSIONS = ("1.29.0", latest_version())


def generator() -> Any:
    spec = importlib.util.spec_from_file_location("deploy_generate", ROOT / "deploy" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def k8s_documents() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted((GENERATED / "k8s").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield path.relative_to(GENERATED).as_posix(), doc


# --- Catalogue and /api/edges/ ---------------------------------------------------------


def test_catalogue_loads_every_region_with_its_edge_and_services():
    """deploy/regions.toml has us-east, eu-west, ap-south on ws-<region>.example.com with health URLs and processes."""
    cat = edges.catalogue_load(CATALOGUE)
    assert list(cat.regions) == ["us-east", "eu-west", "ap-south"]
    for name, region in cat.regions.items():
        assert region.hostname == f"ws-{name}.example.com"
        assert region.health_url == f"https://ws-{name}.example.com/healthz"
        assert region.wss_url(cat.ws_path) == f"wss://ws-{name}.example.com/ws/chat/"
        assert region.daphne.processes_per_host >= 1 and region.daphne.hosts
        assert region.redis.url.startswith("redis://")
    assert cat.regions["us-east"].redis.sentinels and cat.regions["us-east"].redis.master
    assert cat.region_for_country("DE") == "eu-west"
    assert cat.region_for_country("in") == "ap-south"
    assert cat.region_for_country("XX") == cat.default_region == "us-east"


def test_catalogue_errors_name_the_problem(tmp_path):
    """A country mapped to an unknown region, or a region without hostname, is refused with where and why."""
    text = CATALOGUE.read_text()
    bad_country = tmp_path / "country.toml"
    bad_country.write_text(text.replace('DE = "eu-west"', 'DE = "eu-central"'))
    with pytest.raises(edges.CatalogueError, match=r"\[countries\]: DE"):
        edges.catalogue_load(bad_country)
    no_hostname = tmp_path / "hostname.toml"
    no_hostname.write_text(text.replace('hostname = "ws-eu-west.example.com"\n', ""))
    with pytest.raises(edges.CatalogueError, match=r"\[regions.eu-west\]: 'hostname' is missing"):
        edges.catalogue_load(no_hostname)
    with pytest.raises(edges.CatalogueError, match="cannot read"):
        edges.catalogue_load(tmp_path / "absent.toml")


def test_api_edges_lists_every_region_and_prefers_none_without_the_country_header(client: Client):
    """GET /api/edges/ returns each region's wss and health URL from the catalogue, and no ``preferred``."""
    response = client.get("/api/edges/")
    assert response.status_code == 200
    body = response.json()
    cat = edges.catalogue_load(CATALOGUE)
    assert [r["name"] for r in body["regions"]] == list(cat.regions)
    assert body["regions"][1] == {
        "name": "eu-west",
        "label": "EU West (Ireland)",
        "hostname": "ws-eu-west.example.com",
        "wss_url": "wss://ws-eu-west.example.com/ws/chat/",
        "health_url": "https://ws-eu-west.example.com/healthz",
    }
    assert body["default"] == "us-east"
    assert "preferred" not in body and "country" not in body
    assert "CF-IPCountry" in response["Vary"]
    assert "private" in response["Cache-Control"]


@pytest.mark.parametrize(
    ("country", "preferred"),
    [("DE", "eu-west"), ("in", "ap-south"), ("US", "us-east"), ("XX", "us-east"), ("T1", "us-east"),
     ("AQ", "us-east")],
)
def test_api_edges_prefers_the_region_of_the_cdn_country(client: Client, country: str, preferred: str):
    """CF-IPCountry picks the region from the catalogue's map; unknown (XX, Tor T1, unmapped) gets the default."""
    body = client.get("/api/edges/", headers={"CF-IPCountry": country}).json()
    assert body["preferred"] == preferred
    assert body["country"] == country.upper()


def test_api_edges_ignores_a_malformed_country_header(client: Client):
    """A header that is not a two-character code is ignored rather than echoed."""
    body = client.get("/api/edges/", headers={"CF-IPCountry": "<script>"}).json()
    assert "preferred" not in body and "country" not in body


def test_api_edges_reads_the_catalogue_named_by_regions_file(client: Client, settings, tmp_path):
    """REGIONS_FILE points the endpoint at another catalogue, and a change to the file is picked up."""
    path = tmp_path / "regions.toml"
    path.write_text(CATALOGUE.read_text().replace("ws-ap-south.example.com", "ws-mumbai.example.org"))
    settings.REGIONS_FILE = str(path)
    body = client.get("/api/edges/").json()
    assert body["regions"][2]["wss_url"] == "wss://ws-mumbai.example.org/ws/chat/"
    path.write_text(path.read_text().replace('IN = "ap-south"', 'IN = "eu-west"'))
    os.utime(path, ns=(0, os.stat(path).st_mtime_ns + 1_000_000_000))
    assert client.get("/api/edges/", headers={"CF-IPCountry": "IN"}).json()["preferred"] == "eu-west"


# --- The generated files ---------------------------------------------------------------


def test_committed_output_equals_a_fresh_generation(tmp_path):
    """deploy/generated/ is exactly what deploy/generate.py writes now (no stale, missing or edited file)."""
    gen = generator()
    fresh = gen.render(edges.catalogue_load(CATALOGUE))
    assert gen.existing(GENERATED) == fresh, "deploy/generated is stale: run .venv/bin/python deploy/generate.py"
    # The command line does the same, and --check tells stale from fresh.
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "deploy/generate.py", "--out", str(out)], cwd=ROOT, capture_output=True)
    assert run.returncode == 0, run.stderr
    assert gen.existing(out) == fresh
    check = [sys.executable, "deploy/generate.py", "--check", "--out"]
    assert subprocess.run([*check, str(GENERATED)], cwd=ROOT, capture_output=True).returncode == 0
    (out / "nginx" / "us-east.conf").write_text("# edited by hand\n")
    (out / "stray.txt").write_text("left behind\n")
    assert subprocess.run([*check, str(out)], cwd=ROOT, capture_output=True).returncode == 1
    # A regeneration restores the edited file and removes the stray one.
    subprocess.run([sys.executable, "deploy/generate.py", "--out", str(out)], cwd=ROOT, check=True, capture_output=True)
    assert gen.existing(out) == fresh
    # It never deletes from a directory it did not make.
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.conf").write_text("mine\n")
    refused = subprocess.run(
        [sys.executable, "deploy/generate.py", "--out", str(foreign)], cwd=ROOT, capture_output=True
    )
    assert refused.returncode != 0 and gen.existing(foreign) == {"keep.conf": "mine\n"}


def test_generator_needs_only_pyyaml_besides_the_standard_library(tmp_path):
    """The generator runs with PyYAML alone (no Django, no Celery imported), e.g. on a bare CI runner."""
    out = tmp_path / "out"
    script = "\n".join([
        "import runpy, sys",
        "sys.argv = ['generate.py', '--out', sys.argv[1]]",
        "try:",
        "    runpy.run_path('deploy/generate.py', run_name='__main__')",
        "except SystemExit as exc:",
        "    assert not exc.code, exc.code",
        "heavy = [m for m in ('django', 'celery', 'channels', 'daphne', 'redis') if m in sys.modules]",
        "assert not heavy, heavy",
    ])
    run = subprocess.run([sys.executable, "-I", "-c", script, str(out)], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    for rel in ("nginx/eu-west.conf", "k8s/eu-west/web.yaml"):
        assert (out / rel).read_text() == (GENERATED / rel).read_text()


# --- nginx -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory) -> Path:
    """A throwaway self-signed certificate (cert.pem, key.pem), readable by nginx's workers."""
    path = tmp_path_factory.mktemp("tls")
    path.chmod(0o755)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=test", "-days", "1",
         "-keyout", str(path / "key.pem"), "-out", str(path / "cert.pem")],
        check=True, capture_output=True,
    )
    return path


def nginx_conf(tmp: Path, tls: Path, edge_files: list[str], *, rewrite=lambda text: text) -> Path:
    """A complete nginx.conf in ``tmp`` around the generated files, with paths pointing into ``tmp``."""
    tmp.chmod(0o755)
    includes = []
    for name in ["realtime-common.conf", *edge_files]:
        text = (GENERATED / "nginx" / name).read_text()
        text = re.sub(r"ssl_certificate\s+\S+;", f"ssl_certificate {tls}/cert.pem;", text)
        text = re.sub(r"ssl_certificate_key\s+\S+;", f"ssl_certificate_key {tls}/key.pem;", text)
        text = rewrite(text.replace("/var/log/nginx/", f"{tmp}/"))
        (tmp / name).write_text(text)
        includes.append(f"    include {tmp / name};")
    temp_paths = "".join(
        f"    {kind}_temp_path {tmp}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"pid {tmp}/nginx.pid;\nerror_log {tmp}/error.log;\nworker_processes 1;\n"
        f"events {{ worker_connections 256; }}\n"
        f"http {{\n{temp_paths}    access_log {tmp}/access.log;\n" + "\n".join(includes) + "\n}\n"
    )
    return conf


def nginx_test(conf: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [NGINX, "-t", "-c", str(conf), "-p", str(conf.parent), "-e", str(conf.parent / "error.log")],
        capture_output=True, text=True,
    )


@pytest.mark.parametrize("edge", ["us-east", "eu-west", "ap-south"])
def test_each_edge_passes_nginx_t(tmp_path, tls_dir, edge):
    """Each edge file, with the shared file, is a valid nginx configuration (as deployed, one edge per host)."""
    result = nginx_test(nginx_conf(tmp_path, tls_dir, [f"{edge}.conf"]))
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_all_edges_together_pass_nginx_t(tmp_path, tls_dir):
    """Every edge in one nginx (names do not collide); and a broken file is caught, so the check is real."""
    files = [f"{r}.conf" for r in ("us-east", "eu-west", "ap-south")]
    (tmp_path / "all").mkdir()
    result = nginx_test(nginx_conf(tmp_path / "all", tls_dir, files))
    assert result.returncode == 0, result.stderr
    broken = nginx_conf(tmp_path, tls_dir, files[:1], rewrite=lambda t: t.replace("keepalive 32;", "keepalive;"))
    assert nginx_test(broken).returncode != 0


def test_generated_nginx_has_upgrade_stickiness_timeouts_and_restricted_metrics():
    """What nginx -t cannot tell: the upgrade map, the sticky hash, the long WebSocket timeout, /metrics allow/deny."""
    common = (GENERATED / "nginx" / "realtime-common.conf").read_text()
    assert re.search(r"map \$http_upgrade \$realtime_connection \{\s*default upgrade;", common)
    assert re.search(r'map \$cookie_sessionid \$realtime_sticky_fallback \{\s*""\s+\$remote_addr;', common)
    edge = (GENERATED / "nginx" / "us-east.conf").read_text()
    assert "hash $cookie_sessionid$realtime_sticky_fallback consistent;" in edge
    # One upstream server per host: a host's web processes share its one port.
    assert re.findall(r"^\s+server (\S+) ", edge, re.M) == ["10.10.1.11:8001", "10.10.1.12:8001"]
    ws = re.search(r"location /ws/ \{(.*?)\n    \}", edge, re.S).group(1)
    assert "proxy_set_header Upgrade $http_upgrade;" in ws and "proxy_set_header Connection $realtime_connection;" in ws
    assert "proxy_read_timeout 3600s;" in ws
    metrics_block = re.search(r"location = /metrics \{(.*?)\n    \}", edge, re.S).group(1)
    assert "allow 10.0.0.0/8;" in metrics_block and "deny all;" in metrics_block
    assert "ssl_certificate     /etc/ssl/realtime/ws-us-east.example.com/fullchain.pem;" in edge
    assert "location = /healthz" in edge


def run_edge_nginx(tmp_path: Path, tls_dir: Path, upstream_ports: list[int], *, max_fails: int = 3,
                   fail_timeout: str = "10s") -> tuple[services.Service, int, int]:
    """The generated us-east edge, run for real in front of local Daphne processes: (nginx, https, http)."""
    https, plain = services.free_port(), services.free_port()
    upstreams = "".join(
        f"\n    server 127.0.0.1:{port} max_fails={max_fails} fail_timeout={fail_timeout};" for port in upstream_ports
    )

    def local(text: str) -> str:
        text = re.sub(r"(\n    server 10\.10\.1\.\d+:\d+ [^\n]*)+", upstreams, text, count=1)
        text = re.sub(r"\n    listen \[::\]:\d+[^\n]*", "", text)
        text = text.replace("listen 443 ssl http2;", f"listen 127.0.0.1:{https} ssl http2;")
        return text.replace("listen 80;", f"listen 127.0.0.1:{plain};")

    conf = nginx_conf(tmp_path, tls_dir, ["us-east.conf"], rewrite=local)
    server = services.Service(
        "nginx", [NGINX, "-c", str(conf), "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-g", "daemon off;"],
        env=dict(os.environ), port=https,
    ).start()
    return server, https, plain


@pytest.fixture
def edge_nginx(tmp_path, tls_dir, daphne, daphne_b) -> Iterator[dict[str, int]]:
    """The generated us-east edge, run for real: its upstream replaced by the two live Daphne processes."""
    server, https, plain = run_edge_nginx(tmp_path, tls_dir, [daphne.port, daphne_b.port])
    yield {"https": https, "http": plain}
    server.stop()


def _tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _get(port: int, path: str, *, headers: dict[str, str] | None = None, source: str = "127.0.0.1", tls: bool = True):
    """GET through the edge (Host: 127.0.0.1, which the live processes allow), from address ``source``."""
    cls = http.client.HTTPSConnection if tls else http.client.HTTPConnection
    kwargs: dict[str, Any] = {"context": _tls()} if tls else {}
    conn = cls("127.0.0.1", port, timeout=10, source_address=(source, 0), **kwargs)
    conn.request("GET", path, headers={"Host": "127.0.0.1", **(headers or {})})
    response = conn.getresponse()
    body = response.read().decode()
    conn.close()
    return response, body


def _process_behind(port: int, cookie: str | None) -> str:
    """Which Daphne process served the request: the ``process`` label of its /metrics."""
    response, body = _get(port, "/metrics", headers={"Cookie": f"sessionid={cookie}"} if cookie else None)
    assert response.status == 200, body
    return re.search(r'^realtime_active_connections\{[^}]*process="([^"]+)"', body, re.M).group(1)


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_edge_nginx_carries_websockets_over_tls_to_the_live_processes(edge_nginx, make_user):
    """A wss:// socket through the generated edge reaches Daphne (Upgrade/Connection passed) and talks the protocol."""
    cookie = cookie_header(make_user("alice"))

    async def session() -> list[dict[str, Any]]:
        async with ws_connect(
            f"wss://127.0.0.1:{edge_nginx['https']}/ws/chat/",
            ssl=_tls(), server_hostname="ws-us-east.example.com",
            origin="https://127.0.0.1", additional_headers={"Cookie": cookie}, open_timeout=10,
        ) as ws:
            hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
            await ws.send(json.dumps({"type": "ping", "t": 7}))
            pong = json.loads(await asyncio.wait_for(ws.recv(), 10))
            return [hello, pong]

    hello, pong = asyncio.run(session())
    assert hello["type"] == "hello" and hello["user"] == "alice"
    assert pong == {"type": "pong", "t": 7}


@pytest.mark.live
def test_edge_nginx_is_sticky_per_session_cookie_and_falls_back_to_the_address(edge_nginx):
    """One sessionid always reaches one process; many sessionids spread over both; no cookie: keyed by address."""
    port = edge_nginx["https"]
    cookie = uuid.uuid4().hex
    assert len({_process_behind(port, cookie) for _ in range(8)}) == 1
    assert len({_process_behind(port, None) for _ in range(8)}) == 1
    assert len({_process_behind(port, uuid.uuid4().hex) for _ in range(40)}) == 2


@pytest.mark.live
def test_edge_nginx_health_redirect_and_metrics_restriction(edge_nginx):
    """Health passes through on HTTP and HTTPS, other HTTP redirects to HTTPS, /metrics is denied to other addresses."""
    response, body = _get(edge_nginx["https"], "/healthz")
    assert response.status == 200 and json.loads(body)["status"] == "ok"
    response, body = _get(edge_nginx["http"], "/healthz", tls=False)
    assert response.status == 200
    response, _ = _get(edge_nginx["http"], "/chat/?x=1", tls=False, headers={"Host": "ws-us-east.example.com"})
    assert response.status == 301 and response.getheader("Location") == "https://ws-us-east.example.com/chat/?x=1"
    # 127.0.0.2 is neither loopback-allowed nor in the monitoring networks; a forged CDN header does not help.
    response, _ = _get(edge_nginx["https"], "/metrics", source="127.0.0.2", headers={"CF-Connecting-IP": "10.1.1.1"})
    assert response.status == 403
    response, body = _get(edge_nginx["https"], "/metrics")
    assert response.status == 200 and "realtime_active_connections" in body


# --- Kubernetes --------------------------------------------------------------------------


def test_every_manifest_validates_against_the_kubernetes_schemas():
    """Each document validates (strict: unknown fields fail) for Kubernetes 1.29 and the newest known version."""
    docs = list(k8s_documents())
    assert {d["kind"] for _, d in docs} >= {
        "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ConfigMap", "Namespace"
    }
    for where, doc in docs:
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{where} {doc['kind']}/{doc['metadata']['name']} (k8s {version}): {exc.message}")


def test_the_validator_rejects_a_broken_manifest():
    """The validation above is real: a misspelt probe field and a string replica count are refused."""
    deployment = next(d for w, d in k8s_documents() if w == "k8s/us-east/web.yaml" and d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["periodSecond"] = 5
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)
    del container["readinessProbe"]["periodSecond"]
    deployment["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)


def test_web_deployment_probes_drain_and_autoscaling():
    """Per region: realtime.web with WEB_CONCURRENCY, /healthz probes, preStop drain within the grace period,
    HPA v2 on CPU 70% and open sockets, PDB."""
    cat = edges.catalogue_load(CATALOGUE)
    for name, region in cat.regions.items():
        docs = {d["kind"]: d for w, d in k8s_documents() if w == f"k8s/{name}/web.yaml"}
        pod = docs["Deployment"]["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        sleep = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
        assert 0 < sleep < pod["terminationGracePeriodSeconds"]
        env = {e["name"]: e for e in container["env"]}
        assert "$(POD_IP)" in env["DJANGO_ALLOWED_HOSTS"]["value"]  # probes reach the pod by IP
        # WEB_CONCURRENCY web processes per pod, on the pod's one port, half a core each.
        assert container["args"][:3] == ["python", "-m", "realtime.web"]
        assert env["WEB_CONCURRENCY"]["value"] == str(region.kubernetes.web_concurrency)
        assert container["resources"]["requests"]["cpu"] == f"{500 * region.kubernetes.web_concurrency}m"
        hpa = docs["HorizontalPodAutoscaler"]
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"]["name"] == docs["Deployment"]["metadata"]["name"]
        by_type = {m["type"]: m for m in hpa["spec"]["metrics"]}
        assert by_type["Resource"]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
        assert by_type["Pods"]["pods"]["metric"]["name"] == "realtime_active_connections"
        assert by_type["Pods"]["pods"]["target"]["averageValue"] == str(region.kubernetes.connections_per_pod)
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (
            region.kubernetes.min_replicas, region.kubernetes.max_replicas
        )
        assert docs["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
        assert docs["Service"]["spec"]["selector"] == docs["Deployment"]["spec"]["selector"]["matchLabels"]


def test_exactly_one_celery_beat_and_a_worker_per_region():
    """One beat Deployment in the whole deployment (replicas 1, Recreate); every region has workers."""
    cat = edges.catalogue_load(CATALOGUE)
    deployments = [(w, d) for w, d in k8s_documents() if d["kind"] == "Deployment"]
    beats = [(w, d) for w, d in deployments if d["metadata"]["name"] == "realtime-beat"]
    assert [w for w, _ in beats] == [f"k8s/{cat.beat_region}/beat.yaml"]
    assert beats[0][1]["spec"]["replicas"] == 1 and beats[0][1]["spec"]["strategy"]["type"] == "Recreate"
    for name, region in cat.regions.items():
        worker = next(d for w, d in deployments if w == f"k8s/{name}/worker.yaml")
        assert worker["spec"]["replicas"] == region.celery.workers


# --- systemd ---------------------------------------------------------------------------------


def test_systemd_units_pass_systemd_analyze_verify(tmp_path):
    """Every region's units verify, with the app directory pointed at this checkout so ExecStart exists."""
    cat = edges.catalogue_load(CATALOGUE)
    for name, region in cat.regions.items():
        units = tmp_path / name
        units.mkdir()
        for path in (GENERATED / "systemd" / name).iterdir():
            (units / path.name).write_text(path.read_text().replace(cat.app_dir, str(ROOT)))
        target = (units / "realtime.target").read_text()
        wanted = ["realtime-web.service"]
        assert all(w in target for w in wanted) and "realtime-beat" not in target
        web = (units / "realtime-web.service").read_text()
        # WEB_CONCURRENCY processes of realtime.web on the host's one port, SIGTERM to the launcher only.
        assert "-m realtime.web" in web and f"-p {region.daphne.port} " in web
        assert f"Environment=WEB_CONCURRENCY={region.daphne.processes_per_host}" in web and "KillMode=mixed" in web
        names = ["realtime.target", *wanted, "realtime-worker.service"]
        if name == cat.beat_region:
            names.append("realtime-beat.service")
        run = subprocess.run(
            ["systemd-analyze", "verify", "--man=no", *names],
            cwd=units, env={**os.environ, "SYSTEMD_UNIT_PATH": f"{units}:"}, capture_output=True, text=True,
            timeout=120,
        )
        assert run.returncode == 0 and not run.stderr.strip(), f"{name}: {run.stderr}"
    assert sorted(p.name for p in (GENERATED / "systemd").iterdir() if (p / "realtime-beat.service").exists()) == [
        cat.beat_region
    ]


# --- Monitoring ------------------------------------------------------------------------------


def _families() -> dict[str, str]:
    """Each family /metrics exports, named as its series are (counters with ``_total``), and its type."""
    return {f.name + ("_total" if f.type == "counter" else ""): f.type for f in metrics.REGISTRY.collect()}


def _exported_names() -> set[str]:
    names = set()
    for name, kind in _families().items():
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


def test_dashboard_and_autoscaler_name_only_exported_metrics():
    """Every series in the Grafana dashboard, the adapter rule and Prometheus config exists in realtime/metrics.py."""
    exported = _exported_names()
    dashboard = json.loads((GENERATED / "grafana" / "realtime.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {n for e in exprs for n in re.findall(r"\brealtime_[a-z_]+\b", e)}
    assert used and used <= exported, used - exported
    # Every exported family is on the dashboard.
    assert set(_families()) <= {re.sub(r"_(bucket|sum|count)$", "", n) for n in used}
    adapter = yaml.safe_load((GENERATED / "prometheus" / "adapter-rules.yaml").read_text())
    assert adapter["rules"][0]["name"]["as"] == "realtime_active_connections" in exported
    prometheus = yaml.safe_load((GENERATED / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in prometheus["scrape_configs"]}
    targets = [t for group in jobs["realtime-web-hosts"]["static_configs"] for t in group["targets"]]
    cat = edges.catalogue_load(CATALOGUE)
    assert targets == [a for r in cat.regions.values() for a in r.daphne.addresses]
    assert all(j["authorization"]["type"] == "Bearer" for j in jobs.values())


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_killing_the_sticky_process_moves_its_users_and_they_resume(tmp_path, tls_dir, app_env, make_user, lobby):
    """Behind the generated edge: reconnects stay on one process; SIGKILL it and its users move and lose nothing."""
    import signal

    from tests.reliability.client import ResumingClient
    from tests.reliability.test_faults import chat, everyone_has_everything

    d1, d2 = services.daphne_service(app_env).start(), services.daphne_service(app_env).start()
    nginx, https, _ = run_edge_nginx(tmp_path, tls_dir, [d1.port, d2.port], max_fails=1, fail_timeout="30s")
    alice, bob = make_user("alice"), make_user("bob")
    try:
        alice_header = cookie_header(alice)
        alice_cookie = alice_header.split("=", 1)[1]
        home = _process_behind(https, alice_cookie)
        assert {_process_behind(https, alice_cookie) for _ in range(6)} == {home}  # sticky
        victim = d1 if home.endswith(f":{d1.proc.pid}") else d2
        assert home.endswith(f":{victim.proc.pid}")

        async def scenario() -> None:
            edge = f"wss://127.0.0.1:{https}"
            clients = [ResumingClient(u, [edge], ssl=_tls(), origin="https://127.0.0.1") for u in (alice, bob)]
            clients[0]._cookie_value = alice_header  # the session whose stickiness was measured above
            for c in clients:
                await c.start()
            try:
                sent = await chat(clients, "before", 3)
                victim.kill(signal.SIGKILL)
                sent += await chat(clients, "after", 3)
                await everyone_has_everything(clients, sent)
            finally:
                for c in clients:
                    await c.stop()

        asyncio.run(scenario())
        survivor = d2 if victim is d1 else d1
        assert _process_behind(https, alice_cookie).endswith(f":{survivor.proc.pid}")
    finally:
        nginx.stop()
        d1.stop()
        d2.stop()
