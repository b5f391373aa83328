"""Alert events POSTed as JSON to `alerts.webhook`, in the background.

Owns: delivery of events to the webhook: a bounded queue, one sender task, bounded retries
with backoff. A slow or dead webhook never slows a request: when the queue is full the event is
dropped and counted (it is still in the log).
Must not: decide what is worth an alert (callers do).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp

log = logging.getLogger("proxy.alerts")


class Alerts:
    def __init__(
        self, webhook: str | None, *, max_queue: int = 1000, attempts: int = 3, timeout: float = 2.0
    ) -> None:
        self.webhook = webhook
        self.attempts = attempts
        self.timeout = timeout
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(max_queue)
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.sent = 0
        self.failed = 0
        self.dropped = 0

    def start(self) -> None:
        if self.webhook and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="alerts")

    def send(self, event: dict[str, Any]) -> None:
        if not self.webhook:
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1

    async def _run(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        while True:
            event = await self._queue.get()
            try:
                await self._deliver(event)
            except Exception:  # never let one bad event stop alerting
                self.failed += 1
                log.exception("alert delivery crashed for %s", event.get("event"))
            finally:
                self._queue.task_done()

    async def _deliver(self, event: dict[str, Any]) -> None:
        assert self._session is not None and self.webhook is not None
        for attempt in range(1, self.attempts + 1):
            try:
                async with self._session.post(self.webhook, json=event) as resp:
                    if resp.status < 300:
                        self.sent += 1
                        return
                    reason = f"HTTP {resp.status}"
            except (TimeoutError, aiohttp.ClientError) as exc:
                reason = type(exc).__name__
            if attempt < self.attempts:
                await asyncio.sleep(0.2 * 2 ** (attempt - 1))
        self.failed += 1
        log.warning("alert %s not delivered after %d attempts: %s", event.get("event"), self.attempts, reason)

    async def flush(self, timeout: float = 2.0) -> None:
        """Wait (bounded) until queued events are delivered or given up; for shutdown and tests."""
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
        except TimeoutError:
            log.warning("%d alert events still queued at shutdown", self._queue.qsize())

    async def close(self) -> None:
        await self.flush()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None
