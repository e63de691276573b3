"""A Hellwall protocol 1.2 client in Python, written from protocol/README.md alone.

Standard library only, plus `hellwall_types`: the message classes quicktype generates from
protocol/schemas (`node scripts/gen-clients.mjs --lang python`). Requests are built with the
generated `*_to_dict` functions and responses parsed with the generated `*_from_dict` functions,
so a change to the schemas that this code or the server does not follow shows up as an error here.

    with HellwallClient.connect("127.0.0.1", 7443, cafile="data/dev-cert.pem") as client:
        client.hello()
        client.request_passcode(email, password, mac)
        session = client.login(email, phone, password, passcode, mac, device="laptop: my-tool")
        client.check(session.token, mac, "inventory.read")
        client.list_sessions(session.token, mac)   # and logout(), logout_all()

Pipelining [P-2.4]: every typed helper takes `wait=False` and then returns a `Reply` at once;
send as many as you like and call `.result()` on each. Answers are matched first-in first-out and
each echoed `id` is checked.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import hashlib
import hmac
import itertools
import json
import socket
import ssl
import struct
import sys
from typing import Any, Callable, Deque, Iterator, List, Optional

import hellwall_types as ht

if sys.flags.optimize:
    # quicktype's from_dict functions check every field with `assert`; under -O those checks
    # vanish and any response would "parse". Refuse to run rather than trust unchecked data.
    raise ImportError("hellwall_client needs assertions: the generated types validate with assert; do not run with -O")

HEADER = struct.Struct(">I")  # [P-1.1] 4-byte unsigned big-endian length

# What a client accepts from a server: far above any real response, low enough that a broken or
# hostile server cannot make the client buffer without bound.
DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024

FRAME_ERROR_CODES = (
    "E_FRAME_EMPTY",
    "E_FRAME_TOO_LARGE",
    "E_FRAME_INVALID_UTF8",
    "E_FRAME_INVALID_JSON",
    "E_FRAME_NOT_OBJECT",
)

PROTOCOL_MAJOR = 1  # the protocol version this client was written for [P-5.1]


class FrameError(Exception):
    """A framing failure [P-1.2]-[P-1.4]; `code` is the protocol's error code for it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ProtocolViolation(Exception):
    """The server answered something the protocol does not allow (bad framing, wrong id, a response
    that does not fit its schema). The connection should be dropped."""


class IncompatibleServer(ProtocolViolation):
    """The server speaks another MAJOR version of the protocol [P-4.1], [P-5.3]."""


class ConnectionClosed(Exception):
    """The server closed the connection while answers were still owed [P-2.7]: the requests without
    an answer were not necessarily carried out and may be retried on a new connection."""


# --- framing ----------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; JSON (and the server's JSON.parse) does not.
    raise ValueError(f"{name} is not JSON")


def _parse_int(text: str) -> Any:
    # Python refuses to convert integers of more than 4300 digits (a guard against slow int()),
    # but such a number is valid JSON; read it as a float, which is what a JSON parser in
    # JavaScript makes of it too.
    try:
        return int(text)
    except ValueError:
        return float(text)


def parse_payload(payload: bytes) -> dict:
    """One frame's payload as a JSON object, or FrameError with the code of [P-1.4]."""
    try:
        # The strict codec refuses overlong forms, encoded surrogates and code points above
        # U+10FFFF: never decode with errors="replace", which would hide them.
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError("E_FRAME_INVALID_UTF8", "frame payload is not valid UTF-8") from None
    try:
        # A leading BOM is refused by json.loads, as [P-1.1] requires.
        value = json.loads(text, parse_constant=_reject_constant, parse_int=_parse_int)
    except RecursionError:
        # Valid JSON, but nested deeper than Python's parser can go. No Hellwall response nests
        # more than two levels, so this only meets hostile input; refusing it is the safe side.
        raise FrameError("E_FRAME_INVALID_JSON", "frame payload nests too deeply for this decoder") from None
    except ValueError:
        raise FrameError("E_FRAME_INVALID_JSON", "frame payload is not valid JSON") from None
    if not isinstance(value, dict):
        raise FrameError("E_FRAME_NOT_OBJECT", "frame payload must be one JSON object")
    return value


def frame_bytes(payload: bytes) -> bytes:
    """Frames raw bytes as they are (for sending deliberately malformed payloads)."""
    return HEADER.pack(len(payload)) + payload


def encode_frame(message: dict) -> bytes:
    """One message as a frame: length prefix, then compact UTF-8 JSON [P-1.1]."""
    payload = json.dumps(message, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    return frame_bytes(payload)


class FrameDecoder:
    """Incremental decoder for a stream of frames, independent of any socket.

    `push(data)` takes the next bytes in whatever pieces they arrive and returns the objects of
    every frame completed so far, in order. A malformed stream sets `error` (a FrameError) after
    returning the objects that came before the bad frame; from then on the stream is unusable
    [P-1.5] and `push` returns nothing. `buffered` is the number of bytes held towards a frame
    not yet complete.
    """

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        if max_frame_bytes < 1:
            raise ValueError("max_frame_bytes must be at least 1")
        self.max_frame_bytes = max_frame_bytes
        self.error: Optional[FrameError] = None
        self._buf = bytearray()
        self._need: Optional[int] = None  # payload length once the prefix is read

    @property
    def buffered(self) -> int:
        return len(self._buf) + (HEADER.size if self._need is not None else 0)

    def push(self, data: bytes) -> List[dict]:
        if self.error is not None:
            return []
        self._buf += data
        out: List[dict] = []
        pos = 0
        try:
            while True:
                if self._need is None:
                    if len(self._buf) - pos < HEADER.size:
                        break
                    (length,) = HEADER.unpack_from(self._buf, pos)
                    pos += HEADER.size
                    if length == 0:
                        raise FrameError("E_FRAME_EMPTY", "frame length is zero")
                    if length > self.max_frame_bytes:
                        # [P-1.3] Decided on the prefix alone: the payload is never waited for.
                        raise FrameError("E_FRAME_TOO_LARGE", f"frame length {length} exceeds maximum {self.max_frame_bytes}")
                    self._need = length
                if len(self._buf) - pos < self._need:
                    break
                payload = bytes(self._buf[pos : pos + self._need])
                pos += self._need
                self._need = None
                out.append(parse_payload(payload))
        except FrameError as err:
            self.error = err
            self._buf = bytearray()
            self._need = None
            return out
        del self._buf[:pos]
        return out


# --- responses --------------------------------------------------------------------------------

Parsed = Any  # one of the generated response classes, or ht.ErrorResponse

_KNOWN_ERRORS = frozenset(e.value for e in ht.ErrorCode)

# quicktype flattens token.check's oneOf into one class whose fields are all optional, so the
# generated type cannot tell a complete `renew` from one missing its token. These are the fields
# each branch of schemas/token-check.response.json requires (besides code and status).
_TOKEN_CHECK_FIELDS = {
    ht.TokenCheckStatus.AUTHORIZED: frozenset({"user", "expires_at"}),
    ht.TokenCheckStatus.RENEW: frozenset({"token", "user", "expires_at", "renewable_until"}),
    ht.TokenCheckStatus.UNAUTHORIZED: frozenset(),
}
_TOKEN_CHECK_OPTIONAL = ("user", "expires_at", "token", "renewable_until")


def json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values: Python's ==, except that a boolean never equals a number (in
    Python True == 1; in JSON true is not 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _redacted(response: dict) -> dict:
    # Exception messages end up in logs and CI output; a token is a credential.
    return {k: ("<redacted>" if k == "token" else v) for k, v in response.items()}


def parse_response(raw: dict, parse_ok: Callable[[Any], Any], code: Optional[int], strict: bool = False) -> Parsed:
    """Turns one response object into the generated type for its command, or an ErrorResponse.

    Always checked: the generated type accepts it, `code` echoes the request's, and a token.check
    outcome has the fields of its branch. `strict` (for tests and conformance runs) also demands
    that the response holds nothing its schema does not declare (the generated type's to_dict
    gives back exactly what was received) and that `error` is a code this client knows. Without
    `strict`, unknown fields are ignored and an unknown error code reads as E_INTERNAL, as
    [P-5.2] asks of clients.
    """
    is_error = raw.get("status") == "error"
    if is_error and not strict and isinstance(raw.get("error"), str) and raw["error"] not in _KNOWN_ERRORS:
        raw = dict(raw, error="E_INTERNAL")
    try:
        typed = ht.error_response_from_dict(raw) if is_error else parse_ok(raw)
    except (AssertionError, ValueError, TypeError, KeyError, AttributeError) as err:
        kind = "error response" if is_error else getattr(parse_ok, "__name__", "response")
        raise ProtocolViolation(f"{kind} does not fit its generated type ({type(err).__name__} {err}): {_redacted(raw)}") from err
    if code is not None and typed.code != code:
        # quicktype turns `"const": N` into a plain int, so the echo is checked here.
        raise ProtocolViolation(f"response code {typed.code!r} does not echo request code {code}: {_redacted(raw)}")
    if isinstance(typed, ht.TokenCheckResponse):
        present = {f for f in _TOKEN_CHECK_OPTIONAL if getattr(typed, f) is not None}
        required = _TOKEN_CHECK_FIELDS[typed.status]
        if not required <= present or (strict and present != required):
            raise ProtocolViolation(f"token.check {typed.status.value} has fields {sorted(present)}, schema requires {sorted(required)}: {_redacted(raw)}")
    if strict and not json_equal(typed.to_dict(), raw):
        # What the type would send back differs from what came: a field the schema does not
        # declare, or a null where the schema allows none.
        raise ProtocolViolation(f"response does not round-trip through its generated type: {_redacted(raw)}")
    return typed


def is_error(response: Any) -> bool:
    return isinstance(response, ht.ErrorResponse)


def check_version(hello: Any) -> None:
    """Raises IncompatibleServer unless `hello` reports this client's MAJOR version [P-4.1]."""
    major, _, minor = hello.version.partition(".")
    if not (major.isdigit() and minor.isdigit()) or int(major) != PROTOCOL_MAJOR:
        raise IncompatibleServer(f"server speaks protocol {hello.version!r}; this client speaks {PROTOCOL_MAJOR}.x")


# --- the client -------------------------------------------------------------------------------


class Reply:
    """The answer to one sent request, read when asked for (answers arrive in request order)."""

    def __init__(self, client: "HellwallClient", id: Optional[str], code: Optional[int], parse_ok: Optional[Callable[[Any], Any]]) -> None:
        self._client = client
        self.id = id
        self.code = code
        self._parse_ok = parse_ok
        self.raw: Optional[dict] = None

    @property
    def done(self) -> bool:
        return self.raw is not None

    def response(self) -> dict:
        """The answer as a JSON object, reading from the connection until it has arrived."""
        if self.raw is None and self._client._batch is not None:
            raise RuntimeError("the batch has not been sent yet: read answers after the with block")
        while self.raw is None:
            self._client._read_one()
        return self.raw

    def result(self) -> Parsed:
        """The answer parsed with the generated types (an ErrorResponse for `status: "error"`)."""
        raw = self.response()
        if self._parse_ok is None:
            raise TypeError("raw request: use response()")
        return parse_response(raw, self._parse_ok, self.code, self._client.strict)


def totp_code(secret_base32: str, at_seconds: float, digits: int = 6, period: int = 30) -> str:
    """RFC 6238 TOTP (HMAC-SHA-1, RFC 4226 dynamic truncation) from the standard library alone:
    the code an authenticator app shows at `at_seconds` for the base32 secret totp.enroll gave."""
    padded = secret_base32.upper() + "=" * (-len(secret_base32) % 8)
    key = base64.b32decode(padded)
    counter = struct.pack(">Q", int(at_seconds // period))
    digest = hmac.new(key, counter, hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(value % (10**digits)).zfill(digits)


class HellwallClient:
    """One persistent TLS connection to a Hellwall server. Not thread-safe."""

    def __init__(
        self,
        sock: ssl.SSLSocket,
        *,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        strict: bool = False,
        observer: Optional[Callable[[dict], None]] = None,
    ) -> None:
        self._sock = sock
        self._decoder = FrameDecoder(max_frame_bytes)
        self._pending: Deque[Reply] = collections.deque()
        self._ids = itertools.count(1)
        self.strict = strict
        # Sees every response object as it arrives (logging, metrics, or a test's schema check).
        self._observer = observer
        self._batch: Optional[List[bytes]] = None
        self.eof = False
        # The server's hello, once asked for: its limits then shape what this client sends.
        self.server: Optional[ht.HelloResponse] = None

    @classmethod
    def connect(
        cls,
        host: str,
        port: int,
        cafile: str,
        *,
        servername: Optional[str] = None,
        timeout: float = 10.0,
        source_address: Optional[str] = None,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        strict: bool = False,
        observer: Optional[Callable[[dict], None]] = None,
    ) -> "HellwallClient":
        """Connects and completes the TLS handshake [P-1.0].

        `cafile` is the PEM of the CA that issued the server's certificate, or the server's
        self-signed development certificate itself. The certificate is always verified, and so is
        the name: `servername` (default: `host`) must be in its subjectAltName. For an IP literal
        OpenSSL checks the certificate's IP addresses and no SNI is sent, so hostname checking
        never has to be turned off (the development certificate lists 127.0.0.1 and ::1).
        `timeout` bounds the connect, the handshake and every later read.
        """
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        # create_default_context already sets these; stated so that no edit can loosen them quietly.
        context.verify_mode = ssl.CERT_REQUIRED
        context.check_hostname = True
        name = servername or host
        raw = socket.create_connection((host, port), timeout=timeout, source_address=(source_address, 0) if source_address else None)
        try:
            # Small request frames must not wait for Nagle: pipelined or not, latency matters.
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock = context.wrap_socket(raw, server_hostname=name)
        except BaseException:
            raw.close()
            raise
        return cls(sock, max_frame_bytes=max_frame_bytes, strict=strict, observer=observer)

    def __enter__(self) -> "HellwallClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def socket(self) -> ssl.SSLSocket:
        return self._sock

    @property
    def pending(self) -> int:
        """Requests sent whose answer has not been read yet."""
        return sum(1 for r in self._pending if not r.done)

    def next_id(self) -> str:
        return str(next(self._ids))

    # Sending. Everything goes through _write so that one call is one write: a pipelined batch
    # leaves in as few TLS records as possible.

    def _write(self, data: bytes) -> None:
        if self._batch is not None:
            self._batch.append(data)
        else:
            self._sock.sendall(data)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Requests sent inside the block (with wait=False) leave in one write when it ends:

            with client.batch():
                a = client.hello(wait=False)
                b = client.check(token, mac, "x", wait=False)
            a.result(), b.result()
        """
        if self._batch is not None:
            raise RuntimeError("batches do not nest")
        self._batch = []
        try:
            yield
        finally:
            data, self._batch = b"".join(self._batch), None
        self._sock.sendall(data)

    def send(self, message: dict, parse_ok: Optional[Callable[[Any], Any]] = None) -> Reply:
        """Sends one request object (adding an `id` when it has none) and returns its Reply."""
        return self.send_many([message], parse_ok)[0]

    def send_many(self, messages: List[dict], parse_ok: Optional[Callable[[Any], Any]] = None) -> List[Reply]:
        """Pipelines several requests in one write [P-2.4].

        Once hello() has run, the server's limits apply: a request larger than its maxFrameBytes
        raises ValueError before anything is sent (the server would close the connection), and
        with maxInflight answers unread, answers are read before more is sent. A batch() is sent
        as the caller made it; the server's backpressure still keeps it correct [P-2.6].
        """
        replies: List[Reply] = []
        frames = []
        for message in messages:
            if "id" not in message:
                message = dict(message, id=self.next_id())
            frame = encode_frame(message)
            if self.server is not None and len(frame) - HEADER.size > self.server.max_frame_bytes:
                raise ValueError(f"request of {len(frame) - HEADER.size} bytes exceeds the server's maxFrameBytes {self.server.max_frame_bytes}")
            frames.append(frame)
            code = message.get("code")
            replies.append(Reply(self, message["id"] if isinstance(message["id"], str) else None, code if type(code) is int else None, parse_ok))
        if self._batch is None and self.server is not None:
            while self.pending and self.pending + len(replies) > self.server.max_inflight:
                self._read_one()
        self._write(b"".join(frames))
        self._pending.extend(replies)
        return replies

    def send_raw(self, data: bytes, answers: int = 1) -> List[Reply]:
        """Writes bytes as they are and expects `answers` responses to them, unchecked (for tests
        that send malformed frames)."""
        replies = [Reply(self, None, None, None) for _ in range(answers)]
        self._write(data)
        self._pending.extend(replies)
        return replies

    def _submit(self, request: Any, to_dict: Callable[[Any], Any], parse_ok: Callable[[Any], Any], wait: bool) -> Any:
        if request.id is None:
            request.id = self.next_id()
        reply = self.send(to_dict(request), parse_ok)
        return reply.result() if wait else reply

    def server_has_minor(self, minor: int) -> bool:
        """Whether the server's hello reported version 1.`minor` or later, so that what that version
        added may be sent [P-5.2]. Needs hello() first: without its answer this raises RuntimeError,
        so that a field is never dropped (or sent) without the caller knowing."""
        if self.server is None:
            raise RuntimeError(f"call hello() first: what protocol 1.{minor} added is sent only to a server that reports 1.{minor} or later")
        major, _, have = self.server.version.partition(".")
        return int(major) == PROTOCOL_MAJOR and int(have) >= minor

    # The commands [P-4.1]-[P-4.4], [P-4.8]-[P-4.10]. With wait=False each returns its Reply unread.

    def hello(self, *, wait: bool = True) -> Any:
        """hello; with wait=True it also checks the MAJOR version (IncompatibleServer) and keeps
        the answer in `server`, whose limits then apply to what is sent [P-4.1]."""
        result = self._submit(ht.HelloRequest(code=0), ht.hello_request_to_dict, ht.hello_response_from_dict, wait)
        if wait and isinstance(result, ht.HelloResponse):
            check_version(result)
            self.server = result
        return result

    def request_passcode(self, email: str, password: str, mac: str, ip: Optional[str] = None, *, wait: bool = True) -> Any:
        request = ht.PasscodeRequestRequest(code=1, email=email, mac=mac, password=password, ip=ip)
        return self._submit(request, ht.passcode_request_request_to_dict, ht.passcode_request_response_from_dict, wait)

    def login(
        self, email: str, phone: str, password: str, passcode: str, mac: str, device: Optional[str] = None, totp: Optional[str] = None, *, wait: bool = True
    ) -> Any:
        """passcode.auth [P-4.3]. `device` (since 1.2) describes this device in the operator's
        session list. It is sent only when given and only to a server whose hello reported 1.2 or
        later (an older one refuses fields it does not know [P-2.1]); to an older server the login
        goes without it. With a `device`, call hello() first (RuntimeError otherwise). `totp`
        (since 1.5) is the authenticator's current code (see totp_code); a server older than 1.5
        has no authenticators, so sending it there is refused (RuntimeError) rather than dropped."""
        if device is not None and not self.server_has_minor(2):
            device = None
        if totp is not None and not self.server_has_minor(5):
            raise RuntimeError("totp is sent only to a server that reports 1.5 or later")
        request = ht.PasscodeAuthRequest(code=2, email=email, mac=mac, passcode=passcode, password=password, phone=phone, device=device, totp=totp)
        return self._submit(request, ht.passcode_auth_request_to_dict, ht.passcode_auth_response_from_dict, wait)

    def check(self, token: str, mac: str, request: str, data: Any = None, *, wait: bool = True) -> Any:
        """token.check. `data` None means "no data": the generated type cannot send a JSON null."""
        req = ht.TokenCheckRequest(code=3, mac=mac, request=request, token=token, data=data)
        return self._submit(req, ht.token_check_request_to_dict, ht.token_check_response_from_dict, wait)

    # The session commands (since 1.2) authenticate with the caller's token and MAC, which must
    # check `authorized` right now; anything else answers E_UNAUTHENTICATED and changes nothing
    # [P-3.6]. A 1.1 server answers them E_UNKNOWN_COMMAND [P-5.1].

    def logout(self, token: str, mac: str, *, wait: bool = True) -> Any:
        """session.logout [P-4.8]: ends this token's session; the operator's others stay."""
        req = ht.SessionLogoutRequest(code=4, mac=mac, token=token)
        return self._submit(req, ht.session_logout_request_to_dict, ht.session_logout_response_from_dict, wait)

    def logout_all(self, token: str, mac: str, *, wait: bool = True) -> Any:
        """session.logout_all [P-4.9]: ends every session of the token's operator, this one
        included; `ended` says how many active ones ended."""
        req = ht.SessionLogoutAllRequest(code=5, mac=mac, token=token)
        return self._submit(req, ht.session_logout_all_request_to_dict, ht.session_logout_all_response_from_dict, wait)

    def list_sessions(self, token: str, mac: str, *, wait: bool = True) -> Any:
        """session.list [P-4.10]: the operator's active sessions, oldest login first, the caller's
        marked `current`. Never a token."""
        req = ht.SessionListRequest(code=6, mac=mac, token=token)
        return self._submit(req, ht.session_list_request_to_dict, ht.session_list_response_from_dict, wait)

    # Second factors (since 1.5) [P-4.14]-[P-4.15].

    def totp_enroll(self, token: str, mac: str, *, wait: bool = True) -> Any:
        """totp.enroll [P-4.14]: a new, unconfirmed TOTP secret (base32), its otpauth URI and QR code."""
        req = ht.TotpEnrollRequest(code=22, mac=mac, token=token)
        return self._submit(req, ht.totp_enroll_request_to_dict, ht.totp_enroll_response_from_dict, wait)

    def totp_confirm(self, token: str, mac: str, totp: str, *, wait: bool = True) -> Any:
        """totp.confirm [P-4.15]: the first code; the answer carries the recovery codes, shown once."""
        req = ht.TotpConfirmRequest(code=23, mac=mac, token=token, totp=totp)
        return self._submit(req, ht.totp_confirm_request_to_dict, ht.totp_confirm_response_from_dict, wait)

    # Receiving.

    def _read_one(self) -> None:
        """Reads until at least one more answer is assigned to the oldest waiting Reply."""
        waiting = next((r for r in self._pending if not r.done), None)
        if waiting is None:
            raise RuntimeError("no request is waiting for an answer")
        while True:
            chunk = self._recv()
            if not chunk:
                raise ConnectionClosed(f"connection closed with {self.pending} answer(s) owed")
            objects = self._decoder.push(chunk)
            for obj in objects:
                self._deliver(obj)
            if self._decoder.error is not None:
                raise ProtocolViolation(f"server sent a malformed frame: {self._decoder.error}")
            if objects:
                return

    def _recv(self) -> bytes:
        if self.eof:
            return b""
        try:
            chunk = self._sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            self.eof = True
        return chunk

    def _deliver(self, obj: dict) -> None:
        reply = next((r for r in self._pending if not r.done), None)
        if reply is None:
            raise ProtocolViolation(f"unsolicited response: {_redacted(obj)}")
        # [P-2.4] First in, first out; the echoed id is the check that the two sides agree.
        if reply.id is not None and obj.get("id") != reply.id:
            raise ProtocolViolation(f"expected the answer to id {reply.id!r}, got {_redacted(obj)}")
        if self._observer is not None:
            self._observer(obj)
        reply.raw = obj
        while self._pending and self._pending[0].done:
            self._pending.popleft()

    def expect_close(self) -> None:
        """Asserts that the server closes the connection without sending anything more (after a
        framing error [P-1.5]); raises ProtocolViolation if bytes arrive, socket.timeout if the
        connection stays open past the timeout."""
        leftover = self._decoder.buffered
        while True:
            chunk = self._recv()
            if not chunk:
                break
            leftover += len(chunk)
        if leftover:
            raise ProtocolViolation(f"server sent {leftover} more byte(s) before closing")

    def close(self) -> None:
        """Closes the connection. Answers not read yet are lost: read them first."""
        try:
            if not self.eof:
                # Send close_notify so the server sees a clean end rather than a reset; do not
                # wait long for its reply.
                self._sock.settimeout(1.0)
                self._sock.unwrap()
        except (OSError, ValueError, ssl.SSLError):
            pass
        finally:
            self._sock.close()
