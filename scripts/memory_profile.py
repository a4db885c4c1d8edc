"""`make memory`: what a running `model-go serve` holds in memory after warm-up, and what it imported.

Starts the real server (SQLite in a temporary data directory, a loopback port) with a channel to the
tests' mock OpenAI upstream (tests/support/mock_openai.py, in this process), sets up a user, a price,
a channel and a key through the CLI as scripts/bench.sh does, warms up with a bounded number of
/v1/chat/completions requests (one in four streamed), waits for the usage flush, and reports:

  - VmRSS, VmHWM (peak), RssAnon, RssFile and the thread count from /proc/PID/status, at ready and
    after warm-up;
  - every module the server imported, from its own `-X importtime` trace (PYTHONPROFILEIMPORTTIME:
    CPython writes one stderr line per module it imports, lazily imported ones included, and one
    per failed attempt such as `nt` on Linux), counted by top-level package;
  - with --breakdown, the resident memory each top-level package adds when a fresh interpreter
    imports the server's modules package by package, in the order the server first imported them
    (the standard library first, model_go last; a package is charged for what it pulls in that is not
    yet loaded, and those are named).

Usage: PYTHONPATH=src .venv/bin/python scripts/memory_profile.py [--requests 3000] [--breakdown]
       [--env MALLOC_ARENA_MAX=4 ...]
Binds and targets 127.0.0.1 only; everything it starts is stopped at the end.
"""

# ruff: noqa: T201, S603  (a report on stdout; it starts our own interpreter)
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.support
sys.path.insert(0, str(ROOT / "src"))

from tests.support.gateway import Gateway  # noqa: E402
from tests.support.importtime import imported_modules  # noqa: E402
from tests.support.mock_openai import MockUpstream  # noqa: E402

STATUS_FIELDS = ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads")


def proc_status(pid: int) -> dict[str, int]:
    """The fields of /proc/PID/status this report shows: sizes in KiB, Threads a count."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in STATUS_FIELDS:
            values[name] = int(rest.split()[0])
    return values


async def warm_up(base_url: str, key: str, model: str, requests: int, concurrency: int) -> dict[int, int]:
    """Send `requests` chat completions, `concurrency` at a time; the count of each status."""
    import aiohttp

    statuses: collections.Counter[int] = collections.Counter()
    headers = {"Authorization": f"Bearer {key}"}
    queue = iter(range(requests))

    async def worker(session: aiohttp.ClientSession) -> None:
        for i in queue:
            body = {
                "model": model,
                "max_tokens": 16,
                "messages": [{"role": "user", "content": f"hello {i}"}],
                "stream": i % 4 == 0,
            }
            async with session.post(f"{base_url}/v1/chat/completions", json=body, headers=headers) as r:
                await r.read()
                statuses[r.status] += 1

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return dict(statuses)


BREAKDOWN_CHILD = r"""
import importlib, json, sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
groups = json.loads(sys.stdin.read())
rows = []
for package, modules in groups:
    before_rss, before = rss(), set(sys.modules)
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:
            pass  # a module the server imported in a way a plain import cannot repeat
    new = {m.split(".")[0] for m in set(sys.modules) - before}
    pulled = sorted(new - {package} - sys.stdlib_module_names)
    rows.append([package, rss() - before_rss, len(set(sys.modules) - before), pulled])
print(json.dumps({"baseline": rss(), "rows": rows}))
"""


def breakdown(modules: list[str]) -> dict[str, object]:
    """RSS added by each top-level package, imported in a fresh interpreter in the server's order."""
    groups: dict[str, list[str]] = {}
    for name in modules:
        groups.setdefault(name.split(".")[0], []).append(name)
    # the standard library first (as one row), then the other packages in the server's order, ours last
    stdlib = [m for p, names in groups.items() if p in sys.stdlib_module_names for m in names]
    groups = {
        "(standard library)": stdlib,
        **{p: names for p, names in groups.items() if p not in sys.stdlib_module_names and p != "model_go"},
        "model_go": groups.get("model_go", []),
    }
    done = subprocess.run(
        [sys.executable, "-c", BREAKDOWN_CHILD],
        input=json.dumps(list(groups.items())),
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="warm-up requests (default 3000)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--breakdown", action="store_true", help="RSS per top-level package too")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--import-log", type=Path, help="also write the server's -X importtime trace here")
    args = parser.parse_args()
    if not 1 <= args.requests <= 100_000:
        parser.error("--requests must be between 1 and 100000")

    extra = dict(item.split("=", 1) for item in args.env)
    mock = MockUpstream(slow_stream_delay=0).start()
    with tempfile.TemporaryDirectory(prefix="model-go-memory.") as tmp:
        gw = Gateway(
            Path(tmp),
            None,
            extra_env={"MODELGO_DEMO": "false", "PYTHONPROFILEIMPORTTIME": "1", **extra},
        )
        # the calls scripts/bench.sh makes, against the mock's normal model
        gw.cli("user", "add", "bench", "--email", "bench@example.com")
        gw.cli("credit", "add", "bench", "1000000")
        gw.cli("price", "set", "gpt-mock", "--input", "1", "--output", "2")
        gw.cli(
            "channel", "add", "bench-mock", "--provider", "openai", "--base-url", mock.base_url,
            "--models", "gpt-mock", "--api-key-stdin", input="sk-bench-upstream",
        )  # fmt: skip
        key = gw.cli("key", "add", "bench", "--name", "bench").stdout.strip().splitlines()[-1]
        try:
            gw.start()
            assert gw.proc is not None
            pid = gw.proc.pid
            ready = proc_status(pid)
            started = time.monotonic()
            statuses = asyncio.run(warm_up(gw.base_url, key, "gpt-mock", args.requests, args.concurrency))
            elapsed = time.monotonic() - started
            time.sleep(2.5)  # the usage writer's flush (1 s) and the snapshot refresh settle
            warm = proc_status(pid)
        finally:
            gw.stop()
            mock.stop()
        modules = imported_modules(gw.output())
        if args.import_log:
            args.import_log.write_text(gw.output())

    by_package = collections.Counter(m.split(".")[0] for m in modules)
    print(
        f"server: SQLite, {args.requests} warm-up requests ({args.concurrency} concurrent, 1 in 4 streamed)"
    )
    print(f"  statuses {statuses} in {elapsed:.1f} s; extra env {extra or 'none'}")
    print(f"  {'':12} {'VmRSS':>10} {'VmHWM':>10} {'RssAnon':>10} {'RssFile':>10} threads")
    for label, s in (("ready", ready), ("warmed up", warm)):
        print(
            f"  {label:12} {mib(s['VmRSS']):>10} {mib(s['VmHWM']):>10} {mib(s['RssAnon']):>10} "
            f"{mib(s['RssFile']):>10} {s['Threads']:>7}"
        )
    print(f"modules imported: {len(modules)} in {len(by_package)} top-level packages")
    print("  " + ", ".join(f"{p} {n}" for p, n in by_package.most_common()))
    report: dict[str, object] = {
        "requests": args.requests,
        "env": extra,
        "statuses": statuses,
        "ready": ready,
        "warm": warm,
        "modules": len(modules),
        "packages": dict(by_package),
    }
    if args.breakdown:
        result = breakdown(modules)
        rows = sorted(result["rows"], key=lambda r: -r[1])  # type: ignore[call-overload]
        print(f"resident memory per top-level package (fresh interpreter, {mib(result['baseline'])} total):")  # type: ignore[arg-type]
        for package, kib, count, pulled in rows[:25]:
            also = f"  (pulled in: {', '.join(pulled)})" if pulled else ""
            print(f"  {package:22} {mib(kib):>10} {count:>5} modules{also}")
        report["breakdown"] = result
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
