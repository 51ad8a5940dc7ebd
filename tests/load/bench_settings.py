"""The app's settings, serving the bare relay beside it (for the performance benchmark)."""

from medhastra.settings import *  # noqa: F403

ROOT_URLCONF = "tests.load.relay"
