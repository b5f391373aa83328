"""A relayed body, piece by piece, as the client is sent it (the stream of `relay.stream_response`).

Owns: counting what was relayed, logging a relay that broke, releasing the exchange. An async
generator, so a module of its own: mypyc does not compile those, and `relay` is compiled (setup.py).
Must not: decide anything about the answer; its head is written already.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable

from proxy.core.encoding import Inflater
from proxy.deliver import Txn
from proxy.fetched import Fetched

log = logging.getLogger("proxy.relay")


async def relay_body(fetched: Fetched, inflater: Inflater | None, txn: Txn) -> AsyncIterator[bytes]:
    """The body's pieces; a failure is logged here and re-raised, so the listener cuts the
    connection (the status line is gone already)."""
    try:
        for piece in _pieces(fetched.body, inflater):
            txn.bytes += len(piece)
            yield piece
        if fetched.stream is not None:
            async for chunk in fetched.stream:
                for piece in _pieces(chunk, inflater):
                    txn.bytes += len(piece)
                    yield piece
        if inflater is not None:
            inflater.close()
    except Exception as exc:
        log.warning("streaming %s broke after %d bytes: %s", txn.path[:120], txn.bytes, exc)
        raise
    finally:
        fetched.release()


def _pieces(chunk: bytes, inflater: Inflater | None) -> Iterable[bytes]:
    return (chunk,) if inflater is None else inflater.feed(chunk)
