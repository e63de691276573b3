"""A small real SMTP server (RFC 5321 subset) on 127.0.0.1 that keeps what it receives.

Standard library only: socketserver threads and a per-connection state machine for EHLO/HELO,
MAIL FROM, RCPT TO, DATA (with dot-unstuffing), RSET, NOOP and QUIT. It advertises neither
STARTTLS nor AUTH, so a client configured for plain SMTP (Hellwall's HELLWALL_SMTP_SECURITY=none,
which makes nodemailer ignore STARTTLS) has an ordinary conversation with it. For tests only:
it accepts every recipient and relays nothing.
"""

from __future__ import annotations

import email
import email.policy
import re
import socketserver
import threading
import time
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

MAX_LINE = 4096  # RFC 5321 allows 1000 octets per line; leave room but stay bounded
MAX_MESSAGE = 1024 * 1024
MAX_RECIPIENTS = 100

# [P-4.2] The passcode alphabet: no 0 O 1 I L.
PASSCODE_RE = re.compile(r"passcode is: ([23456789ABCDEFGHJKMNPQRSTUVWXYZ]{6})\b")
_PATH_RE = re.compile(r"^(FROM|TO):\s*<([^<>]*)>(?:\s+(.*))?$", re.IGNORECASE)


@dataclass
class Message:
    mail_from: str
    rcpt_to: List[str]
    data: bytes  # the message as sent, dot-unstuffed, CRLF line ends
    helo: str
    received_at: float = field(default_factory=time.monotonic)

    def parsed(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)  # type: ignore[return-value]

    def text(self) -> str:
        """The plain-text body, transfer encoding (quoted-printable, base64) undone."""
        msg = self.parsed()
        part = msg.get_body(preferencelist=("plain",))
        if part is None:
            raise ValueError("message has no text/plain part")
        # On the wire every line ends in CRLF; give back text with the sender's \n line ends.
        return part.get_content().replace("\r\n", "\n")


class _Handler(socketserver.StreamRequestHandler):
    timeout = 30  # a stuck client must not hold a thread forever
    server: "_Server"

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode("ascii") + b"\r\n")
        self.wfile.flush()

    def readline(self) -> Optional[bytes]:
        raw = self.rfile.readline(MAX_LINE + 1)
        if not raw:
            return None
        if len(raw) > MAX_LINE:
            raise ValueError("line too long")
        return raw.rstrip(b"\r\n")

    def handle(self) -> None:
        sink = self.server.sink
        self.reply("220 127.0.0.1 hellwall test sink ESMTP ready")
        helo: Optional[str] = None
        mail_from: Optional[str] = None
        rcpts: List[str] = []
        try:
            while True:
                line = self.readline()
                if line is None:
                    return
                text = line.decode("ascii", "replace")
                verb, _, arg = text.partition(" ")
                verb = verb.upper()
                arg = arg.strip()
                sink._record(text)
                if verb in ("EHLO", "HELO"):
                    if not arg:
                        self.reply(f"501 {verb} needs a domain")
                        continue
                    helo, mail_from, rcpts = arg, None, []
                    if verb == "EHLO":
                        # No STARTTLS and no AUTH on purpose: the service must deliver without them.
                        self.reply("250-127.0.0.1 greets " + arg)
                        self.reply("250-8BITMIME")
                        self.reply(f"250 SIZE {MAX_MESSAGE}")
                    else:
                        self.reply("250 127.0.0.1 greets " + arg)
                elif verb == "MAIL":
                    m = _PATH_RE.match(arg)
                    if helo is None:
                        self.reply("503 5.5.1 EHLO or HELO first")
                    elif mail_from is not None:
                        self.reply("503 5.5.1 nested MAIL command")
                    elif not m or m.group(1).upper() != "FROM":
                        self.reply("501 5.5.4 syntax: MAIL FROM:<address>")
                    elif not _params_ok(m.group(3)):
                        self.reply("555 5.5.4 unsupported MAIL parameter")
                    else:
                        mail_from = m.group(2)
                        self.reply("250 2.1.0 sender ok")
                elif verb == "RCPT":
                    m = _PATH_RE.match(arg)
                    if mail_from is None:
                        self.reply("503 5.5.1 MAIL first")
                    elif not m or m.group(1).upper() != "TO" or not m.group(2):
                        self.reply("501 5.5.4 syntax: RCPT TO:<address>")
                    elif m.group(3):
                        self.reply("555 5.5.4 unsupported RCPT parameter")
                    elif len(rcpts) >= MAX_RECIPIENTS:
                        self.reply("452 4.5.3 too many recipients")
                    else:
                        rcpts.append(m.group(2))
                        self.reply("250 2.1.5 recipient ok")
                elif verb == "DATA":
                    if arg:
                        self.reply("501 5.5.4 DATA takes no argument")
                    elif not rcpts or mail_from is None:
                        self.reply("503 5.5.1 RCPT first")
                    else:
                        self.reply("354 end data with <CR><LF>.<CR><LF>")
                        got = self._read_data()
                        if got is None:
                            return  # connection dropped mid-message: nothing is stored
                        data, too_big = got
                        if too_big:
                            self.reply("552 5.3.4 message too big")
                        else:
                            sink._store(Message(mail_from, list(rcpts), data, helo or ""))
                            self.reply("250 2.0.0 queued")
                        mail_from, rcpts = None, []
                elif verb == "RSET":
                    mail_from, rcpts = None, []
                    self.reply("250 2.0.0 reset")
                elif verb == "NOOP":
                    self.reply("250 2.0.0 ok")
                elif verb == "QUIT":
                    self.reply("221 2.0.0 bye")
                    return
                elif verb in ("STARTTLS", "AUTH"):
                    self.reply(f"502 5.5.1 {verb} not offered")
                else:
                    self.reply("500 5.5.2 command not recognized")
        except (ValueError, OSError):
            # Overlong line, timeout or reset: drop the connection, keep what was already stored.
            return

    def _read_data(self) -> Optional[Tuple[bytes, bool]]:
        """The message up to the lone "." and whether it was too big (read to the end all the same,
        so the conversation stays in step), or None if the connection ends first."""
        data = bytearray()
        too_big = False
        while True:
            line = self.readline()
            if line is None:
                return None
            if line == b".":
                return bytes(data), too_big
            if line.startswith(b"."):
                line = line[1:]  # RFC 5321 4.5.2 transparency: the sender doubled leading dots
            if len(data) + len(line) + 2 > MAX_MESSAGE:
                too_big = True
            if not too_big:
                data += line + b"\r\n"


def _params_ok(params: Optional[str]) -> bool:
    """MAIL FROM parameters: only those of the extensions advertised in EHLO."""
    for p in (params or "").split():
        key, _, value = p.partition("=")
        key = key.upper()
        if key == "BODY" and value.upper() in ("7BIT", "8BITMIME"):
            continue
        if key == "SIZE" and value.isdigit():
            continue
        return False
    return True


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = False
    sink: "SmtpSink"


class SmtpSink:
    """Start with `SmtpSink()`; `port` is where it listens on 127.0.0.1; `close()` when done."""

    def __init__(self) -> None:
        self.messages: List[Message] = []
        self.commands: List[str] = []  # every command line received, for checking a conversation
        self._cond = threading.Condition()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.sink = self
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()

    def _record(self, line: str) -> None:
        with self._cond:
            self.commands.append(line)

    def _store(self, message: Message) -> None:
        with self._cond:
            self.messages.append(message)
            self._cond.notify_all()

    def wait_for(self, to: str, since: int = 0, timeout: float = 15.0) -> Message:
        """The first message to `to` among those received after the first `since`; waits up to
        `timeout` seconds for it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for m in self.messages[since:]:
                    if any(r.lower() == to.lower() for r in m.rcpt_to):
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no mail to {to} within {timeout} s ({len(self.messages)} message(s) received)")
                self._cond.wait(left)

    def count(self) -> int:
        with self._cond:
            return len(self.messages)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "SmtpSink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def passcode_from(message: Message) -> str:
    """The passcode in a Hellwall passcode mail."""
    m = PASSCODE_RE.search(message.text())
    if not m:
        raise ValueError("no passcode in the message text")
    return m.group(1)
