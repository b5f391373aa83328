"""Both event loops for tests of our own protocols: production serves on uvloop, whose transports
differ from asyncio's. A module opts in with `from tests.loops import event_loop_policy`."""

from __future__ import annotations

import asyncio

import pytest


@pytest.fixture(scope="module", params=["asyncio", "uvloop"])
def event_loop_policy(request: pytest.FixtureRequest) -> asyncio.AbstractEventLoopPolicy:
    """Every case runs on both loops."""
    if request.param == "uvloop":
        import uvloop

        policy: asyncio.AbstractEventLoopPolicy = uvloop.EventLoopPolicy()
        return policy
    return asyncio.DefaultEventLoopPolicy()
