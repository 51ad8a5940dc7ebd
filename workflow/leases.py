"""The leases this process holds on the generations it is generating.

While a job runs, its generations are held here, and every `LEASE_SECONDS / 3` one UPDATE
per kind of generation renews all their leases, however many there are, and reads back
which of them the clinician asked to stop (should a Stop's signal be lost). A lease that
runs out means its process died: the sweeper (`sweeper.py`) then ends the work.
"""

import logging
from collections import defaultdict

from django.conf import settings

from workflow import periodic
from workflow.models import Generation

logger = logging.getLogger(__name__)

_held: list[Generation] = []


def hold(generations: list[Generation]) -> None:
    _held.extend(generations)
    periodic.ensure(renew, settings.LEASE_SECONDS / 3)


def release(generations: list[Generation]) -> None:
    for generation in generations:
        _held.remove(generation)


def held(model: type[Generation]) -> list[int]:
    """The generations of this kind this process is generating: alive, whatever their
    lease says while a busy event loop is late to renew it."""
    return [generation.pk for generation in _held if type(generation) is model]


async def renew() -> None:
    """Renew every lease this process holds."""
    by_model: defaultdict[type[Generation], list[Generation]] = defaultdict(list)
    for generation in _held:
        by_model[type(generation)].append(generation)
    for model, held in by_model.items():
        try:
            stopping = await model.renew_leases([generation.pk for generation in held])
        except Exception:
            logger.warning("Renewing %s leases failed.", model.__name__, exc_info=True)
            continue
        for generation in held:
            generation.cancel_requested = generation.cancel_requested or generation.pk in stopping
