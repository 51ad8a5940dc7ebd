"""The leases this process holds on the generations it is generating.

While a job runs, its generations are held here, and every `LEASE_SECONDS / 3` one UPDATE
per kind of generation renews all their leases, however many there are. A lease that
runs out means its process died: the sweeper (`sweeper.py`) then ends the work.
"""

from collections import Counter, defaultdict

from django.conf import settings

from workflow import periodic
from workflow.models import Generation

_held: Counter[tuple[type[Generation], int]] = Counter()


def hold(generations: list[Generation]) -> None:
    _held.update((type(generation), generation.pk) for generation in generations)
    periodic.ensure(renew, settings.LEASE_SECONDS / 3)


def release(generations: list[Generation]) -> None:
    _held.subtract((type(generation), generation.pk) for generation in generations)
    for key in [key for key, count in _held.items() if count <= 0]:
        del _held[key]


async def renew() -> None:
    """Renew every lease this process holds."""
    by_model: defaultdict[type[Generation], list[int]] = defaultdict(list)
    for model, pk in list(_held):
        by_model[model].append(pk)
    for model, pks in by_model.items():
        await model.renew_leases(pks)
