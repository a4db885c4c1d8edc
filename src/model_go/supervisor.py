"""One owner for every background task. A task that crashes (or returns) is logged and restarted
with a growing delay; at shutdown every task is cancelled first, then each one's final flush runs,
in the order the tasks were started, so nothing a task still held in memory is lost."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger("model_go.supervisor")

FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
HEALTHY_RUN = 60.0  # a task that ran this long before failing starts again from the first delay
FLUSH_ATTEMPTS = 5


@dataclass
class _Service:
    name: str
    run: Callable[[], Awaitable[None]]
    flush: Callable[[], Awaitable[object]] | None
    task: asyncio.Task[None] | None = None


class Supervisor:
    def __init__(self, first_backoff: float = FIRST_BACKOFF, max_backoff: float = MAX_BACKOFF) -> None:
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self._services: list[_Service] = []

    def start(
        self,
        name: str,
        run: Callable[[], Awaitable[None]],
        flush: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        """Run `run` until shutdown, restarting it when it fails; `flush` runs once after it stops."""
        service = _Service(name, run, flush)
        service.task = asyncio.create_task(self._keep_running(service), name=name)
        self._services.append(service)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self._services]

    async def _keep_running(self, service: _Service) -> None:
        loop = asyncio.get_running_loop()
        delay = self.first_backoff
        while True:
            started = loop.time()
            try:
                await service.run()
                log.error("background task %s stopped on its own; restarting it", service.name)
            except Exception:
                log.exception("background task %s failed; restarting it in %.1f s", service.name, delay)
            if loop.time() - started >= HEALTHY_RUN:
                delay = self.first_backoff
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_backoff)

    async def stop(self) -> None:
        for service in self._services:
            if service.task is not None:
                service.task.cancel()
        for service in self._services:
            if service.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await service.task
        for service in self._services:
            if service.flush is not None:
                await _final_flush(service.name, service.flush)


async def _final_flush(name: str, flush: Callable[[], Awaitable[object]]) -> None:
    for attempt in range(FLUSH_ATTEMPTS):
        try:
            await flush()
            return
        except Exception:
            log.exception("final flush of %s failed (attempt %d of %d)", name, attempt + 1, FLUSH_ATTEMPTS)
            await asyncio.sleep(0.5)


def stop_if_cancelled() -> None:
    """For a supervised loop, after each call to a client library: the redis client can turn a
    cancellation that meets its own socket timeout into a reply or a TimeoutError (seen on Python
    3.11), and the supervisor's cancel must still stop the loop, or shutdown waits for it forever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
