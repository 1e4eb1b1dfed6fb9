from __future__ import annotations

import stat
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from structlog.testing import capture_logs

from tablehouse.config import Settings, load_settings
from tablehouse.core.mail import (
    MailDeliveryError,
    MailMessage,
    OutboxMailer,
    SmtpMailer,
    create_mailer,
)
from tests.support.processes import free_port

SENDER = "Tablehouse <noreply@tablehouse.test>"
MESSAGE = MailMessage(
    to="ada@example.com",
    subject="Confirm your address",
    body="Open http://127.0.0.1:8000/verify?token=abc123 to confirm.\n",
)
USERNAME = "mailer"
PASSWORD = "s3cret-smtp-pw"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    login: bytes | None

    def parsed(self) -> EmailMessage:
        parsed = message_from_bytes(self.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class Collector:
    received: list[Received] = field(default_factory=list)

    # aiosmtpd finds its hooks by these exact names.
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        assert envelope.mail_from is not None
        assert isinstance(envelope.content, bytes)
        login = session.auth_data.login if isinstance(session.auth_data, LoginPassword) else None
        self.received.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content, login)
        )
        return "250 OK"


@dataclass
class SmtpServer:
    port: int
    collector: Collector

    @property
    def received(self) -> list[Received]:
        return self.collector.received


def _check_login(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    if auth_data == LoginPassword(USERNAME.encode(), PASSWORD.encode()):
        return AuthResult(success=True, auth_data=auth_data)
    # A careless server echoing the secret back: the error we raise must not repeat it.
    return AuthResult(
        success=False, handled=False, message=f"535 5.7.8 {auth_data.password.decode()} rejected"
    )


@pytest.fixture
def start_smtp() -> Iterator[Callable[..., SmtpServer]]:
    """Starts real SMTP servers on 127.0.0.1; extra arguments go to aiosmtpd's ``SMTP``."""
    controllers: list[Controller] = []

    def start(**smtp_parameters: Any) -> SmtpServer:
        collector = Collector()
        port = free_port()
        controller = Controller(
            collector,
            hostname="127.0.0.1",
            port=port,
            server_hostname="localhost",
            **smtp_parameters,
        )
        controller.start()
        controllers.append(controller)
        return SmtpServer(port, collector)

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
def smtp_server(start_smtp: Callable[..., SmtpServer]) -> SmtpServer:
    return start_smtp()


def _smtp_settings(port: int, data_dir: Path, **overrides: Any) -> Settings:
    return load_settings(
        **{
            "_env_file": None,
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            "smtp_security": "none",
            "mail_from": SENDER,
            "data_dir": data_dir,
            **overrides,
        }
    )


async def test_smtp_mailer_delivers_the_message(smtp_server: SmtpServer, tmp_path: Path) -> None:
    await SmtpMailer(_smtp_settings(smtp_server.port, tmp_path)).send(MESSAGE)

    [received] = smtp_server.received
    assert received.mail_from == "noreply@tablehouse.test"
    assert received.rcpt_tos == [MESSAGE.to]
    assert received.login is None
    email = received.parsed()
    assert email["From"] == SENDER
    assert email["To"] == MESSAGE.to
    assert email["Subject"] == MESSAGE.subject
    assert email["Message-ID"].endswith("@tablehouse.test>")
    assert email["Date"]
    # SMTP carries CRLF line endings on the wire.
    assert email.get_content().replace("\r\n", "\n") == MESSAGE.body


async def test_smtp_mailer_logs_in_when_given_credentials(
    start_smtp: Callable[..., SmtpServer], tmp_path: Path
) -> None:
    server = start_smtp(auth_require_tls=False, authenticator=_check_login)
    settings = _smtp_settings(server.port, tmp_path, smtp_username=USERNAME, smtp_password=PASSWORD)

    await SmtpMailer(settings).send(MESSAGE)

    [received] = server.received
    assert received.login == USERNAME.encode()


async def test_rejected_login_does_not_reveal_the_password(
    start_smtp: Callable[..., SmtpServer], tmp_path: Path
) -> None:
    server = start_smtp(auth_require_tls=False, authenticator=_check_login)
    settings = _smtp_settings(
        server.port, tmp_path, smtp_username=USERNAME, smtp_password=f"{PASSWORD}-wrong"
    )

    with pytest.raises(MailDeliveryError, match="535") as caught:
        await SmtpMailer(settings).send(MESSAGE)

    assert PASSWORD not in "".join(traceback.format_exception(caught.value))
    assert server.received == []


async def test_starttls_is_required_when_configured(
    smtp_server: SmtpServer, tmp_path: Path
) -> None:
    settings = _smtp_settings(smtp_server.port, tmp_path, smtp_security="starttls")

    with pytest.raises(MailDeliveryError, match="STARTTLS"):
        await SmtpMailer(settings).send(MESSAGE)

    assert smtp_server.received == []


async def test_unreachable_server_raises_quickly_without_the_password(tmp_path: Path) -> None:
    settings = _smtp_settings(
        free_port(), tmp_path, smtp_username=USERNAME, smtp_password=PASSWORD, smtp_timeout=2
    )
    started = time.monotonic()

    with pytest.raises(MailDeliveryError) as caught:
        await SmtpMailer(settings).send(MESSAGE)

    assert time.monotonic() - started < 2
    assert f"127.0.0.1:{settings.smtp_port}" in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_create_mailer_uses_smtp_only_when_a_host_is_set(tmp_path: Path) -> None:
    assert isinstance(create_mailer(_smtp_settings(2525, tmp_path)), SmtpMailer)
    assert isinstance(create_mailer(load_settings(_env_file=None, data_dir=tmp_path)), OutboxMailer)


async def test_outbox_mailer_writes_a_private_eml_file(tmp_path: Path) -> None:
    settings = load_settings(_env_file=None, data_dir=tmp_path / "data", mail_from=SENDER)

    await OutboxMailer(settings).send(MESSAGE)

    [path] = (tmp_path / "data" / "outbox").iterdir()
    assert path.suffix == ".eml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    email = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(email, EmailMessage)
    assert email["From"] == SENDER
    assert email["To"] == MESSAGE.to
    assert email["Subject"] == MESSAGE.subject
    assert email.get_content() == MESSAGE.body


async def test_outbox_logs_the_body_in_development(tmp_path: Path) -> None:
    settings = load_settings(_env_file=None, environment="development", data_dir=tmp_path)

    with capture_logs() as logs:
        await OutboxMailer(settings).send(MESSAGE)

    [entry] = [entry for entry in logs if entry["event"] == "mail.outbox"]
    assert entry["to"] == MESSAGE.to
    assert entry["subject"] == MESSAGE.subject
    assert entry["body"] == MESSAGE.body
    assert Path(entry["path"]).parent == tmp_path / "outbox"


async def test_outbox_never_logs_the_body_in_production(tmp_path: Path) -> None:
    settings = load_settings(
        _env_file=None, environment="production", jwt_secret="x" * 32, data_dir=tmp_path
    )

    with capture_logs() as logs:
        await OutboxMailer(settings).send(MESSAGE)

    [entry] = [entry for entry in logs if entry["event"] == "mail.outbox"]
    assert entry["to"] == MESSAGE.to
    assert "body" not in entry
    assert "token=abc123" not in repr(logs)
