"""The architecture contracts of pyproject.toml hold: the core imports no app, the chat's layers call down."""

from __future__ import annotations

import subprocess
import tomllib

from tests.services import ROOT


def test_lint_imports_keeps_every_contract():
    """`lint-imports` (import-linter) finds no import from realtime/ into chat, reactions or receipts."""
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "lint-imports"), "--no-cache"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_the_core_contract_forbids_every_app_and_excuses_only_the_wiring():
    """The core contract covers all of realtime/ and lets only the wiring (asgi) name an app."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    contracts = {c.get("id"): c for c in config["contracts"]}
    core = contracts["core-independent"]
    assert core["source_modules"] == ["realtime"]
    assert set(core["forbidden_modules"]) == set(config["root_packages"]) - {"realtime"}  # every app
    wiring = ("realtime.settings", "realtime.urls", "realtime.asgi", "realtime.wsgi", "realtime.celery")
    assert all(rule.split(" -> ")[0] in wiring for rule in core.get("ignore_imports", []))
    assert {"realtime.asgi", "realtime.urls"} <= set(contracts["wiring-on-top"]["forbidden_modules"])


def test_services_and_selectors_are_held_to_domain_errors():
    """The domain contract names every app's services and selectors and forbids them the protocol module."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    domain = {c.get("id"): c for c in config["contracts"]}["domain-speaks-no-protocol"]
    for app in ("chat", "reactions", "receipts", "attachments", "search"):
        assert {f"{app}.services", f"{app}.selectors"} <= set(domain["source_modules"])
    assert domain["forbidden_modules"] == ["realtime.protocol"]
