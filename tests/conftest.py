"""Shared test helpers: bounded waits and an isolated kernel registry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import Any, TypeVar

import pytest

from pydotcompute import RingKernelRuntime
from pydotcompute.ring import _spec

T = TypeVar("T")

WAIT = 5.0  # seconds any single wait in a test may take before the test fails


async def within(aw: Awaitable[T], seconds: float = WAIT) -> T:
    """Await ``aw`` but fail the test if it takes longer than ``seconds``."""
    async with asyncio.timeout(seconds):
        return await aw


async def until(predicate: Any, seconds: float = WAIT) -> None:
    """Yield to the loop until ``predicate()`` is true, failing after ``seconds``."""
    async with asyncio.timeout(seconds):
        # A runtime state with no event to await: yield to the loop, bounded above.
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0)


@pytest.fixture(autouse=True)
def isolated_registry() -> Iterator[None]:
    """Each test sees the registry as it was before it, whatever it registers."""
    saved = dict(_spec._registry)
    yield
    _spec._registry.clear()
    _spec._registry.update(saved)


@pytest.fixture
async def runtime() -> AsyncIterator[RingKernelRuntime]:
    """A runtime shut down (with a bounded wait) at the end of the test."""
    rt = RingKernelRuntime()
    async with asyncio.timeout(WAIT * 2):
        async with rt:
            yield rt
