"""Background refresh (RFC 5861 stale-while-revalidate): a copy answers now, the vendor later.

Owns: starting at most one refresh per key (a fetch already in flight for the key is one),
adopting a flight whose clients were answered with the copy (`stale_if_slow`) as a refresh,
the exponential backoff per key after a failed refresh (no refresh per request against a dead
vendor), and the end of every refresh: counted, logged, never swallowed.
Must not: decide when a copy may answer (that is `core.decide`), or build answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from proxy.clock import Clock
from proxy.core.model import Entry
from proxy.fetch import Fetcher
from proxy.flight import Flights
from proxy.outcome import Outcome
from proxy.runtime import RouteState
from proxy.telemetry import Telemetry
from proxy.transport import Outbound

log = logging.getLogger("proxy.refresh")
MAX_BACKOFF_KEYS: Final = 10_000
MAX_BACKOFF: Final = 60.0  # seconds between refreshes of a key whose vendor keeps failing


class Backoff:
    """Per key: how many refreshes failed in a row, and when the next may start (bounded LRU)."""

    def __init__(self) -> None:
        self._keys: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def allowed(self, key: str, now: float) -> bool:
        found = self._keys.get(key)
        return found is None or now >= found[1]

    def failed(self, key: str, now: float) -> float:
        """Doubles the wait with each failure, up to MAX_BACKOFF; returns the delay chosen."""
        failures = self._keys.get(key, (0, 0.0))[0] + 1
        delay = min(MAX_BACKOFF, 2.0 ** (failures - 1))
        self._keys[key] = (failures, now + delay)
        self._keys.move_to_end(key)
        if len(self._keys) > MAX_BACKOFF_KEYS:
            self._keys.popitem(last=False)
        return delay

    def succeeded(self, key: str) -> None:
        self._keys.pop(key, None)


class Refresher:
    def __init__(
        self, clock: Clock, telemetry: Telemetry, flights: Flights[Outcome], fetcher: Fetcher
    ) -> None:
        self.clock, self.telemetry, self.flights, self.fetcher = clock, telemetry, flights, fetcher
        self.backoff = Backoff()

    def start(self, rs: RouteState, vkey: str, entry: Entry, outbound: Callable[[], Outbound]) -> bool:
        """Refresh `vkey` in the background; True when a refresh runs (this one or an earlier)."""
        now = self.clock.now()
        if vkey in self.flights:
            return True
        if not self.backoff.allowed(vkey, now):
            return False
        if rs.upstream.track.healthy is False:
            return False  # an unhealthy vendor is left to its health check, not probed per key
        out = outbound()
        future, _ = self.flights.start(vkey, lambda: self.fetcher.fetch(rs, vkey, entry, out), now)
        self.flights.mark(vkey, future, "refresh")  # its bookkeeping is attached here, once
        future.add_done_callback(lambda f: self._done(rs, vkey, f))
        future.add_done_callback(release_unused)
        return True

    def adopt(self, rs: RouteState, vkey: str, future: asyncio.Future[Outcome], *, owned: bool) -> None:
        """The vendor is slower than the route's `stale_if_slow` and the copy answered: the flight
        goes on as a refresh (stored if it passes the guards; a failure counted and backed off).
        Marks on the flight make the log line and the bookkeeping happen once, whoever gave up."""
        if self.flights.mark(vkey, future, "slow"):
            _log_slow(rs, vkey, "")
        if self.flights.mark(vkey, future, "refresh"):  # unless it is a refresh already
            future.add_done_callback(lambda f: self._done(rs, vkey, f))
        if owned:  # nobody else may read a body this request was going to stream
            future.add_done_callback(release_unused)

    def adopt_alone(self, rs: RouteState, vkey: str, task: asyncio.Future[Outcome]) -> None:
        """The same for a fetch outside the key's flight: nobody else waits for it."""
        _log_slow(rs, vkey, " (fetching alone)")
        task.add_done_callback(lambda f: self._done(rs, vkey, f))
        task.add_done_callback(release_unused)

    def _done(self, rs: RouteState, key: str, future: asyncio.Future[Outcome]) -> None:
        if future.cancelled():
            return
        now, route = self.clock.now(), rs.config.name
        exc = future.exception()
        outcome = future.result() if exc is None else None
        if exc is not None or not isinstance(outcome, Outcome):
            log.error("background refresh of %s crashed", key[:120], exc_info=exc)
            self.telemetry.refreshes.inc((route, "crashed"))
            self.backoff.failed(key, now)
            return
        if outcome.error is not None:
            delay = self.backoff.failed(key, now)
            self.telemetry.refreshes.inc((route, "failed"))
            log.info(
                "background refresh of %s failed (%s); next try in %.0fs",
                key[:120],
                outcome.error.code,
                delay,
            )
            return
        self.backoff.succeeded(key)
        self.telemetry.refreshes.inc((route, "ok"))


def _log_slow(rs: RouteState, vkey: str, how: str) -> None:
    assert rs.config.cache is not None
    log.info(
        "route %s: no answer from %s within stale_if_slow %gs for %s%s; "
        "answered with the copy, the fetch goes on in the background",
        rs.config.name,
        rs.upstream.name,
        rs.config.cache.stale_if_slow,
        vkey[:120],
        how,
    )


def release_unused(future: asyncio.Future[Outcome]) -> None:
    """A background flight's answer that is not stored has no reader: free its connection."""
    if future.cancelled() or future.exception() is not None:
        return
    fetched = future.result().fetched
    if fetched is not None:
        fetched.release()
