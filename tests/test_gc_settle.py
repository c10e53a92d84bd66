"""Once the servers are up, what start-up built is frozen out of the garbage collector's way
and the youngest generation is collected less often (cli/collector.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from idenfy_stepup.cli import collector


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
def test_settle_freezes_what_is_alive_and_raises_the_young_threshold() -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    alive = [object() for _ in range(10)]  # noqa: F841 - held while settling
    collector.settle()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (collector.YOUNG_THRESHOLD, 10, 10)


@pytest.mark.usefixtures("restored_gc")
def test_settle_never_lowers_a_threshold_set_higher() -> None:
    gc.set_threshold(collector.YOUNG_THRESHOLD * 2, 10, 10)
    collector.settle()
    assert gc.get_threshold()[0] == collector.YOUNG_THRESHOLD * 2


@pytest.mark.usefixtures("restored_gc")
def test_cycles_are_still_collected_after_settling() -> None:
    collector.settle()

    class Node:
        other: object = None

    a, b = Node(), Node()
    a.other, b.other = b, a
    del a, b
    assert gc.collect() >= 2
