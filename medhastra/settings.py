"""Settings for MedhastraAI, read from the environment (12-factor)."""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


# Production is the default: a deployer who forgets a setting gets the safe one. `make run`
# and the test suite turn DEBUG on for local work.
DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if DEBUG and not SECRET_KEY:
    SECRET_KEY = "insecure-local-development-key"
elif not DEBUG and (len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5):
    raise ImproperlyConfigured(
        "Set SECRET_KEY to a random string of 50 or more characters (DEBUG is off), made "
        "once and kept, e.g. python -c 'import secrets; print(secrets.token_urlsafe(50))'."
    )
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "axes",
    "waffle",
    "workflow",
]

MIDDLEWARE = [
    "medhastra.middleware.request_ids",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "medhastra.middleware.utf8_bodies",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "medhastra.middleware.private_responses",
    "medhastra.middleware.flag_cookies",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "medhastra.urls"
ASGI_APPLICATION = "medhastra.asgi.application"

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
                "django.template.context_processors.csp",
            ],
        },
    },
]

DATABASE_URL = os.environ.get("DATABASE_URL") or None
if DATABASE_URL is None:
    from medhastra.embedded_db import database_url

    DATABASE_URL = database_url(BASE_DIR)
# Under ASGI persistent connections leak across threads: use Django's psycopg pool.
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {"min_size": 1, "max_size": 20}

REDIS_URL = os.environ.get("REDIS_URL") or None
CHANNEL_LAYERS = {
    "default": (
        {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
        if REDIS_URL
        else {"BACKEND": "streaming.layers.LocalChannelLayer", "CONFIG": {"capacity": 1000}}
    )
}

# The LLM. With neither base URL nor key the offline demo engine answers.
LLM_BASE_URL = os.environ.get("LLM_BASE_URL") or None
LLM_API_KEY = os.environ.get("LLM_API_KEY") or None
LLM_MODEL = os.environ.get("LLM_MODEL", "gpt-4o-mini")
LLM_MAX_TOKENS = int(os.environ.get("LLM_MAX_TOKENS", 2048))
DEMO_WORDS_PER_SECOND = env_float("DEMO_WORDS_PER_SECOND", 30.0)
# Before text goes to a provider: warn of likely identifiers, always redact them, or
# refuse them (`workflow/phi.py`). Unset: warn for a provider off this machine.
PHI_POLICY = os.environ.get("PHI_POLICY", "").strip().lower()
if PHI_POLICY not in ("", "warn", "redact", "block"):
    raise ImproperlyConfigured("Set PHI_POLICY to warn, redact or block (or leave it unset).")
# How long to wait for a provider, and how hard to try, in one place (seconds).
LLM_LIMITS = {
    "connect_timeout": env_float("LLM_CONNECT_TIMEOUT", 10.0),
    "first_token_timeout": env_float("LLM_FIRST_TOKEN_TIMEOUT", 60.0),
    "idle_timeout": env_float("LLM_IDLE_TIMEOUT", 30.0),
    "deadline": env_float("LLM_DEADLINE", 600.0),
    "attempts": int(os.environ.get("LLM_ATTEMPTS", 4)),
    "backoff": env_float("LLM_BACKOFF", 1.0),
    "backoff_max": env_float("LLM_BACKOFF_MAX", 30.0),
    "auto_continues": int(os.environ.get("LLM_AUTO_CONTINUE", 1)),
}
# A running generation renews its lease this often; one whose lease ran out (its process
# died) is marked interrupted. Lease + heartbeat stays under 30 s.
LEASE_SECONDS = env_float("LEASE_SECONDS", 15.0)

# /metrics answers only this bearer token; unset, only direct loopback requests.
METRICS_TOKEN = os.environ.get("METRICS_TOKEN") or None

# Streaming: how often the runner persists and publishes what it received, and how often
# an idle event stream sends a heartbeat comment.
STREAM_FLUSH_INTERVAL = env_float("STREAM_FLUSH_INTERVAL", 0.02)
STREAM_HEARTBEAT_INTERVAL = env_float("STREAM_HEARTBEAT_INTERVAL", 10.0)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "case-list"
LOGOUT_REDIRECT_URL = "login"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

# Login throttling, on /accounts/login/ and /admin/login/ alike: after AXES_FAILURE_LIMIT
# failures for a username, or from an address, logins from either are refused for the
# cool-off. Behind a proxy the address is the client's only if Daphne runs with
# --proxy-headers (see the README's Deploy section).
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_float("LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
# A success does not wipe the failures counted against its address (another clinician's
# guesses from there), and guesses during a lockout do not prolong it: the page says when.
AXES_RESET_ON_SUCCESS = False
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"

# Sessions end SESSION_HOURS after login, and when the browser closes.
SESSION_COOKIE_AGE = int(env_float("SESSION_HOURS", 8) * 3600)
SESSION_EXPIRE_AT_BROWSER_CLOSE = True

# Behind a TLS proxy by default: it terminates TLS, redirects plain HTTP (or set
# SECURE_SSL_REDIRECT) and sets X-Forwarded-Proto, which Django trusts when DEBUG is off.
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_PROXY_SSL_HEADER = None if DEBUG else ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]  # asked for on this host, over HTTP
SECURE_HSTS_SECONDS = 0 if DEBUG else env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
SECURE_CONTENT_TYPE_NOSNIFF = True
# Pages load only this site's scripts and styles: nothing inline, nothing evaluated, no
# frames, and forms post only here. Model output cannot bring a script or a stylesheet.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}

# Feature flags (django-waffle, managed in the admin): `streaming` is on without a row.
# Read from the database at each check, so a change applies in every process at once.
WAFFLE_FLAG_DEFAULT = True
WAFFLE_CACHE_NAME = "flags"
WAFFLE_SECURE = not DEBUG
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "flags": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},
}

# Per clinician: generations running or queued at once (Run all on two cases), and the
# tokens a real provider may spend on them in a day (about 50 stages); the offline demo
# engine costs nothing and is exempt.
MAX_ACTIVE_GENERATIONS = env_int("MAX_ACTIVE_GENERATIONS", 12)
DAILY_TOKEN_BUDGET = env_int("DAILY_TOKEN_BUDGET", 50 * 8000)

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / ".medhastra" / "static"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "workflow.logs.JsonLines"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {
        # Django's own default adds a plain-text console handler (with DEBUG): JSON only.
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "httpx2": {"level": "WARNING"},
        "pgserver": {"level": "WARNING"},
        # Axes logs every login at INFO; failures and lockouts stay (WARNING).
        "axes": {"level": "WARNING"},
    },
}
