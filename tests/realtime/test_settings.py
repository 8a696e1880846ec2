"""Settings come from the environment; production refuses to start half-configured."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.services import ROOT


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    full.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=full, capture_output=True, text=True, timeout=60
    )


def test_production_refuses_to_start_without_secret_key_and_allowed_hosts():
    """DJANGO_DEBUG=0 without DJANGO_SECRET_KEY / DJANGO_ALLOWED_HOSTS fails with a message naming them."""
    result = manage("check", DJANGO_DEBUG="0")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY and DJANGO_ALLOWED_HOSTS" in result.stderr
    result = manage("check", DJANGO_DEBUG="0", DJANGO_SECRET_KEY="x" * 60)
    assert result.returncode != 0 and "DJANGO_ALLOWED_HOSTS" in result.stderr


def test_check_deploy_is_clean_with_production_settings():
    """`manage.py check --deploy` reports nothing with production variables set (HSTS, secure cookies...)."""
    result = manage(
        "check", "--deploy", "--fail-level", "WARNING",
        DJANGO_DEBUG="0", DJANGO_SECRET_KEY="k" * 30 + "Q7!zP#x9" * 5, DJANGO_ALLOWED_HOSTS="chat.example.com",
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_database_url_switches_to_postgresql_through_psycopg_3(postgres, db):
    """DATABASE_URL=postgres://… selects PostgreSQL with psycopg 3, persistent checked connections and
    lock/statement timeouts; where a server runs (TEST_DATABASE=postgres), `migrate --check` talks to it."""
    url = postgres.url("test_chat") if postgres is not None else "postgres://u:p@127.0.0.1:1/db"
    code = (
        "from django.conf import settings; import psycopg; db = settings.DATABASES['default']; "
        "print(db['ENGINE'], db['CONN_MAX_AGE'], db['CONN_HEALTH_CHECKS'], db['OPTIONS']['options'], "
        "psycopg.__version__)"
    )
    result = manage("shell", "-c", code, DATABASE_URL=url, DB_LOCK_TIMEOUT_MS="1234")
    assert result.returncode == 0, result.stderr
    engine, max_age, checks, *options, version = result.stdout.strip().splitlines()[-1].split()
    assert engine == "django.db.backends.postgresql" and int(max_age) > 0 and checks == "True"
    assert "lock_timeout=1234" in options and version.startswith("3.")
    if postgres is not None:
        result = manage("migrate", "--check", DATABASE_URL=url)
        assert result.returncode == 0, result.stdout + result.stderr
