"""A loopback SMTP server (aiosmtpd) that keeps every message it receives, for reading mailed links."""

from __future__ import annotations

import email
import email.policy
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller

from tests.support.gateway import free_port


@dataclass
class Received:
    to: list[str]
    subject: str
    body: str


@dataclass
class Mailbox:
    port: int = field(default_factory=free_port)
    messages: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _controller: Controller | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # the name aiosmtpd calls
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        part = msg.get_body(preferencelist=("plain",)) if msg.is_multipart() else msg
        body = part.get_content() if part is not None else ""
        with self._lock:
            self.messages.append(Received(list(envelope.rcpt_tos), str(msg["Subject"]), body))
        return "250 OK"

    def start(self) -> Mailbox:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()

    def wait_for(self, to: str, subject_contains: str, timeout: float = 15) -> Received:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for msg in self.messages:
                    if to.lower() in (r.lower() for r in msg.to) and subject_contains in msg.subject:
                        return msg
            time.sleep(0.1)
        raise AssertionError(f"no mail to {to} with {subject_contains!r} within {timeout}s")

    @staticmethod
    def link(msg: Received, path: str) -> str:
        """The first link in the mail whose path is `path` (e.g. /verify), with its token."""
        found = re.search(r"https?://\S+" + re.escape(path) + r"\?token=\S+", msg.body)
        assert found, f"no {path} link in mail {msg.subject!r}:\n{msg.body}"
        return found.group(0)
