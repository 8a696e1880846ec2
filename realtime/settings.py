"""Django settings, read from the environment.

Development works with no variable set. Production (``DJANGO_DEBUG=0``) refuses to
start without ``DJANGO_SECRET_KEY`` and ``DJANGO_ALLOWED_HOSTS``: a half-configured
deployment is worse than one that does not start.

Each integration has its own block below; every variable is listed in docs/deploy.md.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    """The variable ``name`` as a string, or ``default``."""
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    """The variable ``name`` read as a boolean (1/0, true/false, yes/no, on/off)."""
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    """The variable ``name`` as an integer, or ``default``."""
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


def env_list(name: str, default: list[str]) -> list[str]:
    """A comma-separated variable as a list of non-empty, stripped items."""
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_hostports(name: str, default_port: int) -> list[tuple[str, int]]:
    """A comma-separated list of ``host:port`` (IPv6 in brackets) as ``(host, port)`` pairs."""
    pairs = []
    for item in env_list(name, []):
        if item.startswith("["):
            host, _, port = item[1:].partition("]")
            port = port.lstrip(":")
        elif item.count(":") == 1:
            host, _, port = item.partition(":")
        else:
            host, port = item, ""
        pairs.append((host, int(port) if port else default_port))
    return pairs


# --- Core -----------------------------------------------------------------------

DEBUG = env_bool("DJANGO_DEBUG", True)

if DEBUG:
    SECRET_KEY = env_str("DJANGO_SECRET_KEY", "dev-insecure-secret-key-change-me-in-production")
    ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
else:
    _missing = [n for n in ("DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS") if not os.environ.get(n)]
    if _missing:
        raise ImproperlyConfigured(
            "DJANGO_DEBUG=0 requires " + " and ".join(_missing) + " to be set (see docs/deploy.md)."
        )
    SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
    ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_celery_beat",
    # Log-in throttle: failed attempts, lockouts and their admin (see "Log-in throttle" below).
    "axes",
    "realtime",
    "chat",
    # Features built on the extension surface (realtime/features.py).
    "reactions",
    "receipts",
    "attachments",
    # Full-text search of messages (SQLite FTS5 or PostgreSQL), GET /api/search/.
    "search",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: turns a locked-out log-in into the 429 page (realtime.lockout.lockout_response).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "realtime.urls"
ASGI_APPLICATION = "realtime.asgi.application"
# The WebSocket route each long-polling session runs through (realtime/longpoll.py): the
# same Origin check, authentication and consumer as a socket opened there.
REALTIME_LONGPOLL_PATH = env_str("REALTIME_LONGPOLL_PATH", "/ws/chat/")
# Set by realtime.web for each of its children: the child's index, and the private
# directory where every child also listens on a unix socket, so a long-poll request that
# the kernel handed to the wrong child is forwarded to the one holding its session.
WEB_PROCESS_INDEX = env_str("WEB_PROCESS_INDEX", "")
WEB_PEER_DIR = env_str("WEB_PEER_DIR", "")
# A secret realtime.web gives its children, with which they read each other's /metrics.
WEB_PEER_TOKEN = env_str("WEB_PEER_TOKEN", "")
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------
# SQLite is the embedded default; DATABASE_URL (postgres://...) switches to PostgreSQL.
# https://docs.djangoproject.com/en/5.2/ref/databases/#sqlite-notes
# https://docs.djangoproject.com/en/5.2/ref/databases/#postgresql-notes
# SQLite: IMMEDIATE transactions take the write lock at BEGIN, so two server
# processes assigning a room's next seq queue up instead of failing with
# "database is locked" on lock upgrade; WAL lets readers proceed meanwhile.

DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    # PostgreSQL through psycopg 3. Persistent connections, not Django's psycopg pool: each
    # process runs its queries on one thread (Daphne: the single database_sync_to_async
    # thread; Celery prefork: each child), so one kept connection per process is what a
    # pool would hand out anyway, without the pool's thread and its CONN_MAX_AGE=0.
    # The health check replaces a connection the server dropped (a restart, a failover)
    # at the next request or frame; the frame in flight gets `unavailable` and is retried.
    DATABASES = {
        "default": dj_database_url.parse(
            DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 600), conn_health_checks=True
        )
    }
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # A write that waits on a lock longer than DB_LOCK_TIMEOUT_MS fails (the sender gets
        # `unavailable`, nothing is stored) instead of stalling the process's database thread,
        # as SQLITE_TIMEOUT does for SQLite; DB_STATEMENT_TIMEOUT_MS bounds any query.
        DATABASES["default"].setdefault("OPTIONS", {})["options"] = (
            f"-c lock_timeout={env_int('DB_LOCK_TIMEOUT_MS', 5000)} "
            f"-c statement_timeout={env_int('DB_STATEMENT_TIMEOUT_MS', 15000)}"
        )
        DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", env_int("DB_CONNECT_TIMEOUT", 5))
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env_str("SQLITE_PATH", str(BASE_DIR / "var" / "db.sqlite3")),
            # Keep connections: Channels' database_sync_to_async closes "old" connections
            # around every call, which with the default 0 reopened SQLite (and re-ran the
            # PRAGMAs) for every frame a consumer served.
            "CONN_MAX_AGE": env_int("DB_CONN_MAX_AGE", 600),
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": env_int("SQLITE_TIMEOUT", 20),
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
            # A file, not :memory:, so the Daphne and Celery processes that the tests
            # start share the test database with the test process.
            "TEST": {"NAME": env_str("SQLITE_TEST_PATH", str(BASE_DIR / "var" / "test.sqlite3"))},
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Log-in throttle (django-axes) ------------------------------------------------
# https://django-axes.readthedocs.io/en/latest/4_configuration.html
# Failed log-ins are counted per account and per client address, in the database; either
# count reaching the limit within the cool-off locks that account or address out (HTTP 429
# with the time to retry). Staff lift a lockout in the admin (Axes > Access attempts,
# realtime/admin.py). The ticket endpoint, the WebSocket handshake and the long-poll open
# refuse a locked account too (realtime/lockout.py).

# The axes backend only refuses locked-out requests; ModelBackend authenticates.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_ENABLED = env_bool("LOGIN_THROTTLE", True)
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(seconds=env_int("LOGIN_COOLOFF_SECONDS", 900))
# Either parameter alone locks: one account from many addresses, or many accounts from one.
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
# A success does not reset the count: otherwise one's own account would wipe an address's
# failures against others between guesses.
AXES_RESET_ON_SUCCESS = False
# Tries while locked out are refused but not counted, so the retry time shown holds.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "realtime.lockout.lockout_response"
# Daphne runs with --proxy-headers, so REMOTE_ADDR is the client; no forwarded header is trusted.
AXES_IPWARE_META_PRECEDENCE_ORDER = ("REMOTE_ADDR",)
# Successful log-ins are not recorded (the table would only grow); failures are.
AXES_DISABLE_ACCESS_LOG = True

# Sign-ups per client address: a token bucket in Redis (realtime/ratelimit.py) holding
# SIGNUP_LIMIT accounts, refilled over SIGNUP_WINDOW_SECONDS.
SIGNUP_LIMIT = env_int("SIGNUP_LIMIT", 5)
SIGNUP_WINDOW_SECONDS = env_int("SIGNUP_WINDOW_SECONDS", 3600)
if min(AXES_FAILURE_LIMIT, AXES_COOLOFF_TIME.total_seconds(), SIGNUP_LIMIT, SIGNUP_WINDOW_SECONDS) <= 0:
    raise ImproperlyConfigured(
        "LOGIN_FAILURE_LIMIT, LOGIN_COOLOFF_SECONDS, SIGNUP_LIMIT and SIGNUP_WINDOW_SECONDS must be positive "
        "(LOGIN_THROTTLE=0 turns the log-in throttle off; see docs/deploy.md)."
    )

# Searches per user: a token bucket like the sign-ups' (a search costs more than a message).
SEARCH_RATE_BURST = env_int("SEARCH_RATE_BURST", 20)
SEARCH_RATE_PER_SECOND = float(env_str("SEARCH_RATE_PER_SECOND", "2"))

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files (WhiteNoise serves them from Daphne) --------------------------

STATIC_URL = "/static/"
# Browser code from npm (package.json; bin/bootstrap runs `npm ci`) is served from
# node_modules under its own prefix; templates/base.html's import map names it.
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("vendor/msgpack", BASE_DIR / "node_modules" / "@msgpack" / "msgpack" / "dist.esm"),
]
STATIC_ROOT = BASE_DIR / "var" / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- Attachments (attachments/; "Attachments" in docs/deploy.md) ------------------
# https://docs.djangoproject.com/en/5.2/ref/settings/#storages
# Uploaded files go through the storage named ATTACHMENTS_STORAGE: local files under
# MEDIA_ROOT (var/media) by default, never served by WhiteNoise or nginx directly (the
# attachments views check who may read them). ATTACHMENTS_STORAGE_BACKEND and
# ATTACHMENTS_STORAGE_OPTIONS (JSON) select another, e.g. django-storages' S3Storage.
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(BASE_DIR / "var" / "media")))
ATTACHMENTS_STORAGE = "attachments"
STORAGES["attachments"] = {
    "BACKEND": env_str("ATTACHMENTS_STORAGE_BACKEND", "django.core.files.storage.FileSystemStorage"),
    "OPTIONS": json.loads(env_str("ATTACHMENTS_STORAGE_OPTIONS", "{}"))
    or {"location": str(MEDIA_ROOT), "base_url": None, "directory_permissions_mode": 0o750,
        "file_permissions_mode": 0o640},
}
# Above this an upload is refused with 413 (the body streams to temporary files, never whole in memory).
UPLOAD_MAX_BYTES = env_int("UPLOAD_MAX_BYTES", 25 * 1024 * 1024)
# Per user: a burst of UPLOAD_RATE_BURST uploads, refilled at UPLOAD_RATE_PER_MINUTE.
UPLOAD_RATE_BURST = env_int("UPLOAD_RATE_BURST", 20)
UPLOAD_RATE_PER_MINUTE = env_int("UPLOAD_RATE_PER_MINUTE", 30)
if min(UPLOAD_MAX_BYTES, UPLOAD_RATE_BURST, UPLOAD_RATE_PER_MINUTE) <= 0:
    raise ImproperlyConfigured("UPLOAD_MAX_BYTES, UPLOAD_RATE_BURST and UPLOAD_RATE_PER_MINUTE must be positive.")
# Pages load the current files in development without running collectstatic.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

# --- Security -------------------------------------------------------------------
# https://docs.djangoproject.com/en/5.2/howto/deployment/checklist/

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", True)
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    # TLS is terminated by nginx in front of Daphne (deploy/nginx).
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # The health endpoint is probed over plain HTTP by load balancers.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

# Origins allowed to open a WebSocket, beyond the site's own hosts (ALLOWED_HOSTS,
# any scheme/port). Cross-site WebSocket hijacking is refused at the handshake.
WS_ALLOWED_ORIGINS = env_list("WS_ALLOWED_ORIGINS", [])

# --- Redis -----------------------------------------------------------------------
# https://redis.readthedocs.io/en/stable/connections.html
# Broadcasts, presence, rate limits and tickets (realtime/redis_pool.py) and the Celery
# broker. No channel layer: the core delivers through its own hub (realtime/hub.py).

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")

# Redis Cluster ("Redis for scale" in docs/deploy.md): REDIS_CLUSTER_URL names any node of a
# cluster (redis://host:port/0); broadcasts move to sharded pub/sub (realtime/hub_cluster.py)
# and presence, rate limits and tickets to the cluster. Celery's broker stays on REDIS_URL
# (or CELERY_BROKER_URL): kombu's Redis transport does not speak Cluster.
REDIS_CLUSTER_URL = env_str("REDIS_CLUSTER_URL")

# Redis Sentinel ("Redis for scale" in docs/deploy.md): REDIS_SENTINELS=host:port,... with
# REDIS_SENTINEL_MASTER switch the project's Redis clients and the Celery broker to whichever
# Redis the sentinels name master, so a failover needs no restart. Unset: REDIS_URL, as before.
REDIS_SENTINELS = env_hostports("REDIS_SENTINELS", 26379)
REDIS_SENTINEL_MASTER = env_str("REDIS_SENTINEL_MASTER")
REDIS_SENTINEL_PASSWORD = env_str("REDIS_SENTINEL_PASSWORD")
if REDIS_SENTINELS and REDIS_CLUSTER_URL:
    raise ImproperlyConfigured("Set REDIS_SENTINELS or REDIS_CLUSTER_URL, not both (see docs/deploy.md).")
if REDIS_SENTINELS and not REDIS_SENTINEL_MASTER:
    raise ImproperlyConfigured("REDIS_SENTINELS requires REDIS_SENTINEL_MASTER (see docs/deploy.md).")

# --- Celery ---------------------------------------------------------------------
# https://docs.celeryq.dev/en/stable/userguide/configuration.html

# With Sentinel: sentinel://h1:26379;sentinel://h2:26379 and the master_name transport option.
# https://docs.celeryq.dev/en/stable/getting-started/backends-and-brokers/redis.html#configuration
_broker_auth = f":{quote(REDIS_SENTINEL_PASSWORD, safe='')}@" if REDIS_SENTINEL_PASSWORD else ""
_sentinel_broker = ";".join(
    f"sentinel://{_broker_auth}{f'[{h}]' if ':' in h else h}:{p}" for h, p in REDIS_SENTINELS
)
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", _sentinel_broker or REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = TIME_ZONE
# A task whose worker died unacked (acks_late) is redelivered once it has been invisible
# this long; workers look for such tasks every interval x throttle seconds. Tasks must
# finish well within the visibility timeout (they take milliseconds to seconds).
# https://docs.celeryq.dev/en/stable/getting-started/backends-and-brokers/redis.html#visibility-timeout
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600),
    "unacked_restore_interval": env_int("CELERY_RESTORE_INTERVAL", 10),
    "unacked_restore_throttle": env_int("CELERY_RESTORE_THROTTLE", 10),
}
if CELERY_BROKER_URL.startswith("sentinel://"):
    CELERY_BROKER_TRANSPORT_OPTIONS["master_name"] = REDIS_SENTINEL_MASTER
    if REDIS_SENTINEL_PASSWORD:
        CELERY_BROKER_TRANSPORT_OPTIONS["sentinel_kwargs"] = {"password": REDIS_SENTINEL_PASSWORD}
# Queuing a task happens after a chat write commits; with the broker down it must give
# up quickly (the write is durable; the follow-up is logged as not queued).
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_TASK_TIME_LIMIT = 120
CELERY_TASK_SOFT_TIME_LIMIT = 100
# Fixed schedules; admins add their own (e.g. chat.tasks.room_reminder) in the admin.
CELERY_BEAT_SCHEDULE = {
    "announcements-queue-due": {"task": "chat.tasks.announcements_queue_due", "schedule": 5.0},
    "attachments-sweep": {"task": "attachments.tasks.attachments_sweep", "schedule": 3600.0},
}

# --- Metrics and regional edges (docs/deploy.md) ----------------------------------

# The region this process serves: the ``region`` label of every metric.
REGION = env_str("REGION", "local")
# The catalogue of regional edges (realtime/edges.py, deploy/generate.py).
REGIONS_FILE = env_str("REGIONS_FILE", str(BASE_DIR / "deploy" / "regions.toml"))
# Whether pages on the catalogue's site_origin pick the nearest edge for their socket
# (static/js/edges.js); off: every page connects to its own host.
EDGE_ROUTING = env_bool("EDGE_ROUTING", True)
# GET /metrics needs "Authorization: Bearer <METRICS_TOKEN>" or a client address in
# METRICS_ALLOW_IPS (addresses or networks; empty: the token only).
METRICS_TOKEN = env_str("METRICS_TOKEN")
METRICS_ALLOW_IPS = env_list("METRICS_ALLOW_IPS", ["127.0.0.1", "::1"])

# --- Sentry ---------------------------------------------------------------------
# https://docs.sentry.io/platforms/python/integrations/django/

SENTRY_DSN = env_str("SENTRY_DSN")
SENTRY_ENVIRONMENT = env_str("SENTRY_ENVIRONMENT", "development" if DEBUG else "production")
SENTRY_RELEASE = env_str("SENTRY_RELEASE", "")
SENTRY_TRACES_SAMPLE_RATE = float(env_str("SENTRY_TRACES_SAMPLE_RATE", "0") or 0)

# --- Real-time limits (docs/protocol.md) ----------------------------------------

REALTIME = {
    # Longest message body, in characters.
    "MAX_BODY_CHARS": env_int("CHAT_MAX_BODY_CHARS", 4000),
    # Largest WebSocket message Daphne accepts, in bytes (Procfile passes it on).
    "MAX_FRAME_BYTES": env_int("WS_MAX_FRAME_BYTES", 65536),
    # Per-user token bucket for messages: burst and sustained rate per second.
    "RATE_BURST": env_int("CHAT_RATE_BURST", 20),
    "RATE_PER_SECOND": float(env_str("CHAT_RATE_PER_SECOND", "5")),
    # How often each process reconciles the message rate limit's local buckets with Redis
    # (realtime.ratelimit.LocalBuckets; the error bound is in docs/reliability.md).
    "RATE_SYNC_SECONDS": float(env_str("CHAT_RATE_SYNC_SECONDS", "0.5")),
    # Frames refused by the rate limiter before the socket is closed (4008).
    "RATE_STRIKES_BEFORE_CLOSE": env_int("CHAT_RATE_STRIKES", 20),
    # Open sockets per user, across every process.
    "MAX_CONNECTIONS_PER_USER": env_int("WS_MAX_CONNECTIONS_PER_USER", 20),
    # Admission control (realtime/admission.py, docs/deploy.md): handshakes and joins each
    # process admits per second (burst: how many may come at once), handshakes served at
    # once (in flight: admitted, not yet accepted); above it a handshake
    # gets HTTP 503 + Retry-After, a join an ``unavailable`` error with retry_after. 0: off.
    "ADMISSION_HANDSHAKES_PER_SECOND": float(env_str("WS_ADMISSION_HANDSHAKES_PER_SECOND", "500")),
    "ADMISSION_HANDSHAKES_BURST": float(env_str("WS_ADMISSION_HANDSHAKES_BURST", "1000")),
    "ADMISSION_HANDSHAKES_IN_FLIGHT": env_int("WS_ADMISSION_HANDSHAKES_IN_FLIGHT", 100),
    "ADMISSION_JOINS_PER_SECOND": float(env_str("WS_ADMISSION_JOINS_PER_SECOND", "1000")),
    "ADMISSION_JOINS_BURST": float(env_str("WS_ADMISSION_JOINS_BURST", "2000")),
    # Messages sent on join without last_seq; and the most sent on resume before reset.
    "HISTORY_PAGE": env_int("CHAT_HISTORY_PAGE", 50),
    "RESUME_CAP": env_int("CHAT_RESUME_CAP", 500),
    # Events each process keeps per subscribed room, encoded, for joins to resume from
    # without the database (realtime/streams.py); 0: every join reads the database.
    "STREAM_CACHE_EVENTS": env_int("CHAT_STREAM_CACHE_EVENTS", 200),
    # Ticket lifetime in seconds.
    "TICKET_TTL": env_int("WS_TICKET_TTL", 60),
    # Presence entries not refreshed within this many seconds are swept.
    "PRESENCE_TTL": env_int("PRESENCE_TTL", 30),
    # How often each socket re-checks that its session/user is still valid.
    "SESSION_RECHECK_SECONDS": env_int("WS_SESSION_RECHECK_SECONDS", 30),
    # Client heartbeat interval, in milliseconds (sent to the page).
    "CLIENT_PING_MS": env_int("WS_CLIENT_PING_MS", 25000),
    # How long a process trusts its compiled banned-word list before comparing the list's
    # version again: other processes' changes apply within this bound (chat/moderation.py).
    "MODERATION_CACHE_SECONDS": float(env_str("MODERATION_CACHE_SECONDS", "5") or 0),
    # Fault injection for tests only: seconds a delivery task waits between pushing and
    # recording the delivery, so a test can kill the worker in between. Always 0 otherwise.
    "FAULT_PAUSE_AFTER_PUSH": float(env_str("FAULT_PAUSE_AFTER_PUSH", "0") or 0),
}

# --- Logging --------------------------------------------------------------------
# Message bodies and tickets are never logged: nothing below logs request data.

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        # Failures and lockouts (masked) are warnings; axes' INFO lines repeat them per request.
        "axes": {"level": "WARNING"},
    },
}

from realtime.sentry import sentry_init  # noqa: E402  (needs the settings above)

sentry_init(
    dsn=SENTRY_DSN,
    environment=SENTRY_ENVIRONMENT,
    release=SENTRY_RELEASE,
    traces_sample_rate=SENTRY_TRACES_SAMPLE_RATE,
)
