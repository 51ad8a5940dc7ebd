"""The suite's settings: the app's own, with DEBUG on as for local work."""

import os

_debug_set_here = "DEBUG" not in os.environ
os.environ.setdefault("DEBUG", "true")

from medhastra.settings import *  # noqa: E402, F403

if _debug_set_here:  # the servers the tests start choose their own
    del os.environ["DEBUG"]
