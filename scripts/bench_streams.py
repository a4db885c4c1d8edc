"""Hold many streaming chat completions open at once against model-go replicas, for the memory check
of `scripts/bench_replicas.sh`: opens --per-target streams on every --url together, reads each to
`data: [DONE]`, and samples every --pid's resident memory (VmRSS) while they run.

Bounded: a fixed number of streams, one deadline for the whole run (--timeout), 127.0.0.1 only.
Prints one line `STREAMJSON {...}`: per target the streams completed, failed, the most open at one
moment, and the largest VmRSS (MiB) seen for its process while the streams ran.

Runs under any Python with aiohttp (the harness's venv-bench has it)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp


@dataclass
class Target:
    url: str
    pid: int
    ok: int = 0
    failed: int = 0
    open_now: int = 0
    peak_open: int = 0
    rss_peak_mib: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)

    def fail(self, reason: str) -> None:
        self.failed += 1
        self.errors[reason] = self.errors.get(reason, 0) + 1


def rss_mib(pid: int) -> float:
    """The process's resident set now (VmRSS), in MiB; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def one_stream(
    session: aiohttp.ClientSession, target: Target, body: bytes, headers: dict[str, str]
) -> None:
    opened = False
    try:
        async with session.post(target.url, data=body, headers=headers) as resp:
            if resp.status != 200:
                target.fail(f"http {resp.status}")
                return
            done = False
            async for line in resp.content:
                if not opened:
                    opened = True
                    target.open_now += 1
                    target.peak_open = max(target.peak_open, target.open_now)
                if line.startswith(b"data: [DONE]"):
                    done = True
            if done:
                target.ok += 1
            else:
                target.fail("ended without [DONE]")
    except (aiohttp.ClientError, TimeoutError) as exc:
        target.fail(type(exc).__name__)
    finally:
        if opened:
            target.open_now -= 1


async def sample_rss(targets: list[Target], stop: asyncio.Event) -> None:
    while not stop.is_set():
        for target in targets:
            target.rss_peak_mib = max(target.rss_peak_mib, rss_mib(target.pid))
        with contextlib.suppress(TimeoutError):  # the sampling interval
            await asyncio.wait_for(stop.wait(), timeout=0.05)


async def run(args: argparse.Namespace) -> dict[str, object]:
    if len(args.url) != len(args.pid):
        raise SystemExit("give one --pid per --url")
    for url in args.url:
        if urlsplit(url).hostname != "127.0.0.1":
            raise SystemExit(f"only 127.0.0.1 targets: {url}")
    targets = [Target(url, pid) for url, pid in zip(args.url, args.pid, strict=True)]
    body = json.dumps(
        {
            "model": args.model,
            "stream": True,
            "max_tokens": 150,
            "messages": [{"role": "user", "content": "Stream a short answer."}],
        }
    ).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {args.key}"}
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    stop = asyncio.Event()
    started = time.monotonic()
    # one session per target, no pool cap: every stream gets its own connection, as clients would
    sessions = [
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) for _ in targets
    ]
    sampler = asyncio.create_task(sample_rss(targets, stop))
    try:
        streams = [
            one_stream(session, target, body, headers)
            for session, target in zip(sessions, targets, strict=True)
            for _ in range(args.per_target)
        ]
        await asyncio.wait_for(asyncio.gather(*streams), timeout=args.timeout + 5)
    finally:
        stop.set()
        await sampler
        for session in sessions:
            await session.close()
    return {
        "wall_s": round(time.monotonic() - started, 2),
        "targets": [
            {
                "url": t.url,
                "pid": t.pid,
                "ok": t.ok,
                "failed": t.failed,
                "errors": t.errors,
                "peak_open": t.peak_open,
                "rss_peak_mib": round(t.rss_peak_mib, 1),
            }
            for t in targets
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", action="append", required=True, help="chat completions URL (repeat)")
    parser.add_argument("--pid", action="append", type=int, required=True, help="server PID per --url")
    parser.add_argument("--key", required=True)
    parser.add_argument("--model", default="mock-model")
    parser.add_argument("--per-target", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds for the whole run")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print("STREAMJSON " + json.dumps(result), flush=True)  # noqa: T201  the one line the caller parses


if __name__ == "__main__":
    main()
