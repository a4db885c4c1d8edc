"""A real SMTP server on a loopback port (aiosmtpd) that keeps every message it receives."""

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

LINK_RE = re.compile(r"https?://\S+\?token=([A-Za-z0-9_\-%]+)")


@dataclass
class Mail:
    to: list[str]
    subject: str
    body: str

    def token(self) -> str:
        match = LINK_RE.search(self.body)
        assert match, f"no link with a token in mail {self.subject!r}"
        return match.group(1)

    def link(self) -> str:
        match = LINK_RE.search(self.body)
        assert match, f"no link in mail {self.subject!r}"
        return match.group(0)


class _Collector:
    def __init__(self, box: MailBox) -> None:
        self.box = box

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = message.get_body(preferencelist=("plain",))
        text = body.get_content() if body is not None else ""
        mail = Mail([a.lower() for a in envelope.rcpt_tos], str(message["subject"]), text)
        with self.box.lock:
            self.box.messages.append(mail)
        return "250 OK"


@dataclass
class MailBox:
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    messages: list[Mail] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _controller: Controller | None = None

    def start(self) -> MailBox:
        self._controller = Controller(_Collector(self), hostname=self.host, port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()

    def env(self) -> dict[str, str]:
        """Settings that point a gateway at this server."""
        return {
            "MODELGO_SMTP_HOST": self.host,
            "MODELGO_SMTP_PORT": str(self.port),
            "MODELGO_SMTP_STARTTLS": "false",
            "MODELGO_SMTP_FROM": "model-go <no-reply@model-go.test>",
            "MODELGO_MAIL_POLL_SECONDS": "0.2",
        }

    def to(self, address: str) -> list[Mail]:
        with self.lock:
            return [m for m in self.messages if address.lower() in m.to]

    def wait_for(self, address: str, subject: str = "", *, count: int = 1, timeout: float = 10) -> list[Mail]:
        """Wait until `address` has at least `count` mails whose subject contains `subject`."""
        deadline = time.monotonic() + timeout
        found: list[Mail] = []
        while time.monotonic() < deadline:
            found = [m for m in self.to(address) if subject in m.subject]
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"expected {count} mail(s) to {address} about {subject!r}, got {len(found)}")
