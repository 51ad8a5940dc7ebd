"""The app's settings, serving the bare relay beside it (for the performance benchmark)."""

from medhastra.settings import *  # noqa: F403

ROOT_URLCONF = "tests.load.relay"

# Production's code paths (no query log, no template debugging), over plain HTTP on
# loopback, with the development key the test process signs its sessions with.
DEBUG = False
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = False
