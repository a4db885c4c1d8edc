"""Send one message over SMTP with aiosmtplib. The only network code of the mail package."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from model_go.settings import Settings
from model_go.storage.tables import utcnow


class SmtpMailer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def configured(self) -> bool:
        return bool(self.settings.smtp_host)

    def build(self, to: str, subject: str, body: str) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.settings.smtp_from
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = format_datetime(utcnow())
        message["Message-ID"] = make_msgid(domain="model-go")
        message.set_content(body)
        return message

    async def send(self, to: str, subject: str, body: str) -> None:
        import aiosmtplib  # at the first mail: a server without mail to send never loads it

        s = self.settings
        assert s.smtp_host is not None
        password = s.smtp_password.get_secret_value() if s.smtp_password else None
        await aiosmtplib.send(
            self.build(to, subject, body),
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=password,
            start_tls=s.smtp_starttls,
            timeout=s.smtp_timeout,
        )
