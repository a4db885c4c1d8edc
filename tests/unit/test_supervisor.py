"""The supervisor restarts a crashed task with a growing delay and runs the final flushes, in the
order the tasks were started, after every task has stopped."""

from __future__ import annotations

import asyncio

from model_go.supervisor import Supervisor


def test_a_crashed_task_is_restarted_and_flushes_run_in_order() -> None:
    events: list[str] = []

    async def main() -> None:
        supervisor = Supervisor(first_backoff=0.01, max_backoff=0.02)
        runs = 0

        async def flaky() -> None:
            nonlocal runs
            runs += 1
            if runs < 3:
                raise RuntimeError("boom")
            await asyncio.Event().wait()

        async def steady() -> None:
            await asyncio.Event().wait()

        async def flush(name: str) -> None:
            events.append(f"flush {name}")

        supervisor.start("first", flaky, lambda: flush("first"))
        supervisor.start("second", steady, lambda: flush("second"))
        while runs < 3:
            await asyncio.sleep(0.005)
        events.append("stop")
        await supervisor.stop()

    asyncio.run(main())
    assert events == ["stop", "flush first", "flush second"]


def test_a_failing_flush_is_retried() -> None:
    attempts = 0

    async def main() -> None:
        supervisor = Supervisor()

        async def idle() -> None:
            await asyncio.Event().wait()

        async def flush() -> None:
            nonlocal attempts
            attempts += 1
            if attempts == 1:
                raise OSError("database gone for a moment")

        supervisor.start("writer", idle, flush)
        await asyncio.sleep(0)
        await supervisor.stop()

    asyncio.run(main())
    assert attempts == 2
