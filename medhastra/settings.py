"""Settings for MedhastraAI, read from the environment (12-factor)."""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

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


DEBUG = env_bool("DEBUG", True)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = "insecure-local-development-key"
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
    "workflow",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
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

SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True

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
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {"httpx2": {"level": "WARNING"}, "pgserver": {"level": "WARNING"}},
}
