"""`model-go serve --workers N`: N server processes on one listening socket, supervised by this one.

Each worker is a `model-go serve` child started afresh (`python -m model_go`, not a fork: this process
has a logging thread and has used asyncio, neither of which survives a fork), handed the listening
socket as an inherited file descriptor; the kernel gives each new connection to one of them. A worker
is a replica like one on another machine: it keeps nothing another needs, because balances, limits,
sign-in throttling and channel health are in the shared Redis and database. That is why more than
one needs MODELGO_REDIS_URL (refused in serve.py otherwise, with the reason). A worker's log lines
(its stderr) come through here, whole (see relay).

The supervisor migrates and bootstraps once before any worker starts (serve.py), then:
- SIGTERM or SIGINT: SIGTERM to every worker, which drains its requests for up to
  MODELGO_SHUTDOWN_GRACE_SECONDS and flushes usage; a worker still alive DRAIN_MARGIN_SECONDS later
  is killed. Further signals are not passed on (see drain). Exit status 0 when every worker finished
  its shutdown, else 1.
- a worker that exits on its own after it was ready (it writes a byte to a pipe from here once its
  application started) is reported (a log line at ERROR) and replaced; one that exits before failed
  to start, which a replacement would repeat, so every worker is stopped and the supervisor exits 1
  (for systemd, Docker or Kubernetes to act on). Readiness, not time: a start-up takes seconds to
  tens of seconds on a loaded machine.
Workers run in process groups of their own, so a terminal's Ctrl-C reaches them once, through here;
a worker whose supervisor dies (SIGKILL) notices within a second and drains as on SIGTERM, logging to
the standard output it inherited from then on (serve.py)."""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import FrameType
from typing import IO

log = logging.getLogger("model_go.workers")

STDERR = 2
DRAIN_MARGIN_SECONDS = 10.0
POLL_SECONDS = 0.2
# what a worker's exit status is after a shutdown we asked for (uvicorn re-raises the signal it got)
CLEAN_EXITS = frozenset({0, -signal.SIGTERM, -signal.SIGINT})


def listening_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """The socket every worker accepts on, bound and listening (connections queue while they start)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


@dataclass
class Worker:
    index: int  # 1..N, stable across a restart: its log lines and metrics port follow it
    proc: subprocess.Popen[bytes]
    ready_fd: int  # the read end of the pipe the worker writes one byte to once it serves; -1: closed
    ready: bool = False

    def check_ready(self) -> bool:
        """Whether the worker said it serves (reads its pipe without waiting)."""
        if not self.ready and self.ready_fd >= 0:
            with contextlib.suppress(BlockingIOError):
                if os.read(self.ready_fd, 1):
                    self.ready = True
                    self.close_ready()
        return self.ready

    def close_ready(self) -> None:
        if self.ready_fd >= 0:
            os.close(self.ready_fd)
            self.ready_fd = -1


class Supervisor:
    """Starts `count` workers on `sock`, restarts one that dies after starting, drains all on a signal."""

    def __init__(
        self,
        count: int,
        sock: socket.socket,
        grace_seconds: float,
        worker_env: Mapping[int, Mapping[str, str]] | None = None,
    ) -> None:
        self.count = count
        self.sock = sock
        self.grace_seconds = grace_seconds
        self.worker_env = worker_env or {}
        self.workers: dict[int, Worker] = {}
        self.signals: list[int] = []
        self.relays: list[threading.Thread] = []
        self.relay_lock = threading.Lock()

    def command(self, index: int, ready_fd: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "model_go",
            "serve",
            "--no-migrate",
            "--worker-fd",
            str(self.sock.fileno()),
            "--worker-index",
            str(index),
            "--worker-ready-fd",
            str(ready_fd),
        ]

    def spawn(self, index: int) -> Worker:
        env = {**os.environ, **self.worker_env.get(index, {})}
        ready_read, ready_write = os.pipe()
        os.set_blocking(ready_read, False)
        try:
            proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module, fixed arguments
                self.command(index, ready_write),
                env=env,
                pass_fds=(self.sock.fileno(), ready_write),
                process_group=0,
                stderr=subprocess.PIPE,
            )
        finally:
            os.close(ready_write)  # the worker's now: its end of the pipe closes when it exits
        assert proc.stderr is not None
        relay = threading.Thread(
            target=self.relay, args=(proc.stderr,), name=f"worker-{index}-log", daemon=True
        )
        relay.start()
        self.relays.append(relay)
        log.info("worker %d started (pid %d)", index, proc.pid)
        worker = Worker(index, proc, ready_read)
        self.workers[index] = worker
        return worker

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.signals.append(signum)

    def run(self) -> int:
        """Supervise until a signal or a worker that failed to start; the exit status."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        for index in range(1, self.count + 1):
            self.spawn(index)
        failed = False
        while not self.signals and not failed:
            time.sleep(POLL_SECONDS)
            outcomes = [self._check(worker) for worker in list(self.workers.values())]  # each, every time
            failed = any(outcomes)
        clean = self.drain()
        return 1 if failed or not clean else 0

    def _check(self, worker: Worker) -> bool:
        """Note a worker that became ready, replace one that exited after it was; True when it exited
        before (it failed to start)."""
        was_ready = worker.ready
        ready = worker.check_ready()  # (before the poll: a byte it wrote, then died, counts)
        if ready and not was_ready:
            log.info("worker %d (pid %d) ready", worker.index, worker.proc.pid)
        code = worker.proc.poll()
        if code is None:
            return False
        if not ready:
            worker.close_ready()
            log.error(
                "worker %d (pid %d) exited with status %d before it was ready; stopping the other workers",
                worker.index,
                worker.proc.pid,
                code,
            )
            return True
        log.error(
            "worker %d (pid %d) exited with status %d; starting another", worker.index, worker.proc.pid, code
        )
        self.spawn(worker.index)
        return False

    def drain(self) -> bool:
        """SIGTERM every worker and wait for all of them; True when each finished its own shutdown."""
        alive = {i: w for i, w in self.workers.items() if w.proc.poll() is None}
        log.info("stopping %d workers (up to %.0f s for requests in flight)", len(alive), self.grace_seconds)
        for worker in alive.values():
            _send(worker, signal.SIGTERM)
        heard = len(self.signals)
        deadline = time.monotonic() + self.grace_seconds + DRAIN_MARGIN_SECONDS
        while any(w.proc.poll() is None for w in alive.values()) and time.monotonic() < deadline:
            if len(self.signals) > heard:
                # not passed on: a second signal makes uvicorn skip the application's shutdown, and
                # with it the final flush of usage rows and debits
                heard = len(self.signals)
                log.warning("already stopping: the workers finish their requests and flush first")
            time.sleep(POLL_SECONDS)
        clean = True
        for worker in alive.values():
            if worker.proc.poll() is None:
                log.error(
                    "worker %d (pid %d) did not stop in time; killing it", worker.index, worker.proc.pid
                )
                worker.proc.kill()
                worker.proc.wait()
                clean = False
            elif worker.proc.returncode not in CLEAN_EXITS:
                log.error(
                    "worker %d (pid %d) exited with status %d while stopping",
                    worker.index,
                    worker.proc.pid,
                    worker.proc.returncode,
                )
                clean = False
        self.sock.close()
        for worker in self.workers.values():
            worker.close_ready()
        for relay in self.relays:  # the workers' last lines ("Application shutdown complete")
            relay.join(timeout=5)
        return clean

    def relay(self, pipe: IO[bytes]) -> None:
        """Copy a worker's log (its stderr) to this process's stderr, whole lines only.

        Workers write their lines in batches (observability/logs.py); N processes writing batches
        into one pipe (Docker's, say) could splice one's batch into the middle of another's line, as
        only writes of up to PIPE_BUF bytes are atomic. Here every worker's lines pass through one
        writer, under one lock, in writes of whole lines of at most PIPE_BUF bytes where they fit."""
        fd, pending = pipe.fileno(), b""
        while chunk := os.read(fd, 65536):
            pending += chunk
            cut = pending.rfind(b"\n") + 1
            if cut:
                self._write_lines(pending[:cut])
                pending = pending[cut:]
        if pending:
            self._write_lines(pending + b"\n")
        pipe.close()

    def _write_lines(self, data: bytes) -> None:
        with self.relay_lock:
            start = 0
            while start < len(data):
                end = data.rfind(b"\n", start, start + select.PIPE_BUF) + 1 or data.find(b"\n", start) + 1
                end = end or len(data)
                view = memoryview(data)[start:end]
                while view:
                    view = view[os.write(STDERR, view) :]
                start = end


def _send(worker: Worker, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it exited between the poll and the signal
        worker.proc.send_signal(sig)
