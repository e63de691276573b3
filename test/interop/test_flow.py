"""The seed flow end to end, from Python: real processes, real TLS, real SMTP, no mocks.

Run from test/interop with HELLWALL_TYPES_DIR pointing at the generated Python types, after
`npm run build` (see README.md). python.test.ts runs this under `npm test`.
"""

from __future__ import annotations

import json
import os
import re
import smtplib
import ssl
import unittest
from email.message import EmailMessage

import harness
from harness import EMAIL, MAC, PASSWORD, PHONE, now_ms, sleep_until_ms
import hellwall_client as hc
import hellwall_types as ht
from smtp_sink import SmtpSink, passcode_from

TOKEN_RE = re.compile(r"^Awfer_hellwall_[A-Za-z0-9_-]{43}$")  # [P-3.1]
OTHER_MAC = "00:1a:2b:3c:4d:5f"
OK = ht.OkStatus.OK
AUTHORIZED = ht.TokenCheckStatus.AUTHORIZED
RENEW = ht.TokenCheckStatus.RENEW
UNAUTHORIZED = ht.TokenCheckStatus.UNAUTHORIZED


def start_stack(cls: type, **server_env: str) -> None:
    """SMTP sink, data dir with one operator, and a server mailing through the sink; all torn
    down by class cleanups, which run even when set-up or a test fails."""
    cls.sink = SmtpSink()
    cls.addClassCleanup(cls.sink.close)
    tmp = harness.temp_dir("hellwall-py-")
    cls.addClassCleanup(tmp.cleanup)
    cls.data_dir = tmp.name
    harness.add_user(cls.data_dir)
    cls.server = harness.Server(
        cls.data_dir,
        HELLWALL_SMTP_HOST="127.0.0.1",
        HELLWALL_SMTP_PORT=str(cls.sink.port),
        HELLWALL_SMTP_SECURITY="none",
        **server_env,
    )
    cls.addClassCleanup(cls.server.kill)


def stop_cleanly(server: harness.Server) -> None:
    code = server.stop()
    if code != 0:
        raise AssertionError(f"SIGTERM: server exited {code}, expected 0\n{server.stderr}")
    if not server.logged("hellwall stopped"):
        raise AssertionError("the server did not log `hellwall stopped`")


def log_in(
    test: unittest.TestCase, client: hc.HellwallClient, sink: SmtpSink, email: str = EMAIL, mac: str = MAC, device: "str | None" = None
) -> ht.PasscodeAuthResponse:
    since = sink.count()
    ack = client.request_passcode(email, PASSWORD, mac)
    test.assertIsInstance(ack, ht.PasscodeRequestResponse)
    passcode = passcode_from(sink.wait_for(email, since))
    session = client.login(email, PHONE, PASSWORD, passcode, mac, device=device)
    test.assertIsInstance(session, ht.PasscodeAuthResponse, f"login failed: {session}")
    return session


class ClientOfflineTest(unittest.TestCase):
    """What the client checks on its own, beyond what the generated types check."""

    def test_frame_encoding_matches_the_spec_example(self) -> None:
        # protocol/README.md §1: {"code":0} framed.
        self.assertEqual(hc.encode_frame({"code": 0}), bytes.fromhex("0000000a7b22636f6465223a307d"))

    def test_unknown_error_code_reads_as_internal_unless_strict(self) -> None:
        raw = {"id": "1", "code": 0, "status": "error", "error": "E_FROM_THE_FUTURE", "message": "x"}
        lenient = hc.parse_response(raw, ht.hello_response_from_dict, 0)
        self.assertEqual(lenient.error, ht.ErrorCode.E_INTERNAL)  # [P-5.2]
        with self.assertRaises(hc.ProtocolViolation):
            hc.parse_response(raw, ht.hello_response_from_dict, 0, strict=True)

    def test_a_response_must_echo_the_request_code(self) -> None:
        raw = {"code": 1, "status": "ok", "protocol": "hellwall", "version": "1.0", "maxFrameBytes": 1, "maxInflight": 1}
        with self.assertRaises(hc.ProtocolViolation):
            hc.parse_response(raw, ht.hello_response_from_dict, 0)

    def test_token_check_outcome_must_have_its_branch_fields(self) -> None:
        user = {"email": EMAIL, "role": "user"}
        renew_without_token = {"code": 3, "status": "renew", "user": user, "expiresAt": 1, "renewableUntil": 2}
        # The generated type alone accepts it: its oneOf became one class of optional fields.
        self.assertIsNone(ht.token_check_response_from_dict(renew_without_token).token)
        with self.assertRaises(hc.ProtocolViolation):
            hc.parse_response(renew_without_token, ht.token_check_response_from_dict, 3)
        with self.assertRaises(hc.ProtocolViolation):
            hc.parse_response({"code": 3, "status": "unauthorized", "user": user}, ht.token_check_response_from_dict, 3, strict=True)

    def test_strict_mode_refuses_undeclared_fields(self) -> None:
        raw = {"code": 3, "status": "unauthorized", "reason": "revoked"}
        self.assertEqual(hc.parse_response(raw, ht.token_check_response_from_dict, 3).status, UNAUTHORIZED)
        with self.assertRaises(hc.ProtocolViolation):
            hc.parse_response(raw, ht.token_check_response_from_dict, 3, strict=True)

    def test_a_server_of_another_major_version_is_refused(self) -> None:
        hello = {"code": 0, "status": "ok", "protocol": "hellwall", "version": "1.7", "maxFrameBytes": 65536, "maxInflight": 64}
        hc.check_version(ht.hello_response_from_dict(hello))  # a newer MINOR is compatible [P-5.2]
        with self.assertRaises(hc.IncompatibleServer):
            hc.check_version(ht.hello_response_from_dict(dict(hello, version="2.0")))

    def test_device_is_sent_only_to_a_server_of_version_1_2_or_later(self) -> None:
        class Capture:
            sent = b""

            def sendall(self, data: bytes) -> None:
                self.sent += data

        def sent_login(version: str, device: "str | None") -> dict:
            sock = Capture()
            c = hc.HellwallClient(sock)  # type: ignore[arg-type]  # only sendall is used
            c.server = ht.hello_response_from_dict(
                {"code": 0, "status": "ok", "protocol": "hellwall", "version": version, "maxFrameBytes": 65536, "maxInflight": 64}
            )
            c.login(EMAIL, PHONE, PASSWORD, "K7M2QX", MAC, device=device, wait=False)
            [request] = hc.FrameDecoder().push(sock.sent)
            return request

        self.assertEqual(sent_login("1.2", "laptop: unittest")["device"], "laptop: unittest")
        self.assertEqual(sent_login("1.3", "laptop: unittest")["device"], "laptop: unittest", "a newer MINOR has it too")
        self.assertNotIn("device", sent_login("1.1", "laptop: unittest"), "a 1.1 server would refuse the field [P-2.1]")
        self.assertNotIn("device", sent_login("1.2", None), "sent only when given")
        with self.assertRaisesRegex(RuntimeError, "hello"):
            hc.HellwallClient(Capture()).login(EMAIL, PHONE, PASSWORD, "K7M2QX", MAC, device="x", wait=False)  # type: ignore[arg-type]

    def test_schema_check_catches_what_the_generated_types_cannot(self) -> None:
        bad = {"code": 0, "status": "ok", "protocol": "hellwall", "version": "1.0\n", "maxFrameBytes": 0, "maxInflight": 64}
        ht.hello_response_from_dict(bad)  # types only: accepted
        with self.assertRaisesRegex(AssertionError, r"/version.*/maxFrameBytes"):
            harness.SCHEMAS.validate_response(bad)


class SmtpSinkTest(unittest.TestCase):
    """The sink is a real SMTP server: prove it with the standard library's SMTP client."""

    def setUp(self) -> None:
        self.sink = SmtpSink()
        self.addCleanup(self.sink.close)

    def test_a_conversation_with_smtplib(self) -> None:
        msg = EmailMessage()
        msg["From"] = "a@example.com"
        msg["To"] = "b@example.com"
        msg["Subject"] = "hi"
        # Quoted-printable with a soft line break and a line that starts with a dot.
        msg.set_content("Your Hellwall passcode is: K7M2QX\n.leading dot\n" + "x=" * 60 + "\n", cte="quoted-printable")
        with smtplib.SMTP("127.0.0.1", self.sink.port, timeout=10) as smtp:
            code, _ = smtp.ehlo("client.test")
            self.assertEqual(code, 250)
            self.assertFalse(smtp.has_extn("starttls"), "STARTTLS must not be offered")
            self.assertFalse(smtp.has_extn("auth"), "AUTH must not be offered")
            self.assertTrue(smtp.has_extn("8bitmime"))
            smtp.mail("x@example.com")
            smtp.rcpt("discarded@example.com")
            self.assertEqual(smtp.rset()[0], 250)
            self.assertEqual(smtp.noop()[0], 250)
            smtp.send_message(msg, to_addrs=["b@example.com", "c@example.com"])
        received = self.sink.wait_for("C@example.com", timeout=5)
        self.assertEqual(self.sink.count(), 1, "RSET discarded the first transaction")
        self.assertEqual(received.mail_from, "a@example.com")
        self.assertEqual(received.rcpt_to, ["b@example.com", "c@example.com"])
        self.assertEqual(received.helo, "client.test")
        self.assertIn(b"\r\n.leading dot\r\n", received.data, "dot-unstuffed")
        self.assertEqual(received.text(), "Your Hellwall passcode is: K7M2QX\n.leading dot\n" + "x=" * 60 + "\n")
        self.assertEqual(passcode_from(received), "K7M2QX")
        self.assertEqual(self.sink.commands[-1], "QUIT")

    def test_commands_out_of_order_are_refused(self) -> None:
        with smtplib.SMTP("127.0.0.1", self.sink.port, timeout=10) as smtp:
            self.assertEqual(smtp.docmd("MAIL", "FROM:<a@example.com>")[0], 503, "MAIL before EHLO")
            smtp.ehlo("client.test")
            self.assertEqual(smtp.docmd("RCPT", "TO:<b@example.com>")[0], 503, "RCPT before MAIL")
            self.assertEqual(smtp.docmd("DATA")[0], 503, "DATA before RCPT")
            self.assertEqual(smtp.docmd("MAIL", "FROM:<a@example.com> SMTPUTF8")[0], 555, "parameter not advertised")
            self.assertEqual(smtp.docmd("STARTTLS")[0], 502)
            self.assertEqual(smtp.docmd("FROB")[0], 500)
        with self.assertRaises(TimeoutError):
            self.sink.wait_for("b@example.com", timeout=0.2)


class SeedFlowTest(unittest.TestCase):
    """hello, passcode.request, the passcode from real mail, passcode.auth, token.check."""

    @classmethod
    def setUpClass(cls) -> None:
        start_stack(cls)

    @classmethod
    def tearDownClass(cls) -> None:
        stop_cleanly(cls.server)

    def connect(self, **kw) -> hc.HellwallClient:
        client = self.server.connect(**kw)
        self.addCleanup(client.close)
        return client

    def test_hello(self) -> None:
        c = self.connect()
        hello = c.hello()
        self.assertIsInstance(hello, ht.HelloResponse)
        version = json.loads((harness.ROOT / "protocol" / "index.json").read_text())["version"]
        self.assertEqual((hello.status, hello.protocol, hello.version), (OK, ht.ProtocolName.HELLWALL, version))
        self.assertEqual((hello.max_frame_bytes, hello.max_inflight), (65536, 64))
        self.assertEqual(hello.id, "1", "the client's id is echoed")
        self.assertIn(c.socket.version(), ("TLSv1.2", "TLSv1.3"))

    def test_the_certificate_is_verified(self) -> None:
        # A certificate for the same names (127.0.0.1, localhost) that the server does not hold:
        # trusting it instead of the server's must fail the handshake.
        with harness.temp_dir("hellwall-py-ca-") as tmp:
            other = os.path.join(tmp, "other.pem")
            with open(other, "w") as f:
                f.write(harness.other_certificate())
            with self.assertRaises(ssl.SSLCertVerificationError):
                hc.HellwallClient.connect("127.0.0.1", self.server.port, other)
        # The right certificate under a name it does not carry fails too.
        with self.assertRaises(ssl.SSLCertVerificationError):
            hc.HellwallClient.connect("127.0.0.1", self.server.port, self.server.cafile, servername="hellwall.example.com")
        # And by its DNS name it passes.
        with hc.HellwallClient.connect("127.0.0.1", self.server.port, self.server.cafile, servername="localhost") as c:
            self.assertIsInstance(c.hello(), ht.HelloResponse)

    def test_passcode_login_and_check(self) -> None:
        c = self.connect()
        since = self.sink.count()
        ack = c.request_passcode(EMAIL, PASSWORD, MAC, ip="192.0.2.10")
        self.assertIsInstance(ack, ht.PasscodeRequestResponse)
        self.assertEqual((ack.status, ack.expires_in_seconds), (OK, 180))

        mail = self.sink.wait_for(EMAIL, since)
        passcode = passcode_from(mail)
        text = mail.text()
        self.assertIn(MAC, text)
        self.assertIn("127.0.0.1", text, "the address the server saw")
        self.assertIn("192.0.2.10", text, "the address the client reported")
        self.assertIn("hellwall@localhost", mail.mail_from)

        wrong = "22222A" if passcode != "22222A" else "33333A"
        failed = c.login(EMAIL, PHONE, PASSWORD, wrong, MAC)
        self.assertIsInstance(failed, ht.ErrorResponse)
        self.assertEqual((failed.error, failed.message), (ht.ErrorCode.E_AUTH_FAILED, "authentication failed"))
        self.assertEqual(failed.code, 2)

        # Case-insensitive passcode and email, phone compared on digits [P-4.3].
        before = now_ms()
        session = c.login(EMAIL.upper(), "+1 (555) 01-00", PASSWORD, passcode.lower(), MAC)
        self.assertIsInstance(session, ht.PasscodeAuthResponse, f"login failed: {session}")
        self.assertRegex(session.token, TOKEN_RE)
        self.assertTrue(session.token.startswith("Awfer_hellwall_"))
        self.assertEqual((session.user.email, session.user.role), (EMAIL, "user"))
        self.assertEqual(session.idle_timeout_seconds, 86400)
        self.assertAlmostEqual(session.expires_at, before + 3600_000, delta=60_000)
        self.assertAlmostEqual(session.renewable_until, before + 30 * 86400_000, delta=60_000)

        again = c.login(EMAIL, PHONE, PASSWORD, passcode, MAC)
        self.assertIsInstance(again, ht.ErrorResponse, "a passcode is used once")
        self.assertEqual(again.error, ht.ErrorCode.E_AUTH_FAILED)

        check = c.check(session.token, MAC, "inventory.read", data={"item": 42})
        self.assertIsInstance(check, ht.TokenCheckResponse)
        self.assertEqual(check.status, AUTHORIZED)
        self.assertEqual((check.user.email, check.user.role), (EMAIL, "user"))
        self.assertEqual(check.expires_at, session.expires_at)
        self.assertEqual(c.check(session.token, "00-1A-2B-3C-4D-5E", "x").status, AUTHORIZED, "MACs compare case- and separator-insensitively [P-3.3]")
        self.assertEqual(c.check(session.token, OTHER_MAC, "x").status, UNAUTHORIZED, "another MAC [P-3.2]")
        self.assertEqual(c.check(session.token[:-1] + ("A" if session.token[-1] != "A" else "B"), MAC, "x").status, UNAUTHORIZED)

        # Another client address does not match either [P-3.2]: 127.0.0.2 is loopback too on Linux.
        elsewhere = self.connect(source_address="127.0.0.2")
        self.assertEqual(elsewhere.check(session.token, MAC, "x").status, UNAUTHORIZED, "another address")
        self.assertEqual(c.check(session.token, MAC, "x").status, AUTHORIZED, "and the session still works from its own")

        log = self.server.log_text()
        for secret, what in ((session.token[15:], "token"), (passcode, "passcode"), (PASSWORD, "password")):
            self.assertNotIn(secret, log, f"the {what} is not in the server log")

    def test_a_schema_error_keeps_the_connection_open(self) -> None:
        c = self.connect()
        bad = c.check("Awfer_hellwall_whatever", "00:1a:2b:3c:4d", "inventory.read", wait=False)
        err = bad.result()
        self.assertIsInstance(err, ht.ErrorResponse)
        self.assertEqual((err.error, err.code, err.id), (ht.ErrorCode.E_SCHEMA, 3, bad.id))
        self.assertIn("/mac", err.message, "the message names the field")
        self.assertNotIn("00:1a:2b:3c:4d", err.message, "but never its value")
        unknown = c.send({"code": 99}, ht.hello_response_from_dict).result()
        self.assertEqual((unknown.error, unknown.code), (ht.ErrorCode.E_UNKNOWN_COMMAND, 99))
        self.assertIsInstance(c.hello(), ht.HelloResponse, "the connection is still usable")

    def test_the_servers_limits_shape_what_is_sent(self) -> None:
        c = self.connect()
        self.assertIsNone(c.server)
        hello = c.hello()
        self.assertIs(c.server, hello)
        with self.assertRaisesRegex(ValueError, "maxFrameBytes"):
            c.check("Awfer_hellwall_x", MAC, "x", data="a" * hello.max_frame_bytes)
        self.assertEqual(c.pending, 0, "nothing was sent")
        # One write per request and never more than maxInflight unread: the client reads first.
        replies, most = [], 0
        for _ in range(hello.max_inflight * 2 + 5):
            replies.append(c.check("not-a-token", MAC, "x", wait=False))
            most = max(most, c.pending)
        self.assertLessEqual(most, hello.max_inflight)
        self.assertTrue(all(r.result().status == UNAUTHORIZED for r in replies))
        self.assertIsInstance(c.hello(), ht.HelloResponse, "the connection was never closed")

    def test_pipelined_requests_are_answered_in_order(self) -> None:
        arrived = []

        def observe(response: dict) -> None:
            harness.SCHEMAS.validate_response(response)
            arrived.append(response.get("id"))

        c = self.connect(observer=observe)
        with c.batch():
            # The slow one first: passcode.request hashes a password (~100 ms), hello and
            # token.check answer at once, yet every answer must wait its turn [P-2.4]. More
            # requests than maxInflight (64): the rest wait in the server, none is dropped [P-2.6].
            replies = [c.request_passcode("nobody@example.invalid", PASSWORD, MAC, wait=False)]
            replies += [c.hello(wait=False) for _ in range(100)]
            replies.append(c.check("not-a-token", MAC, "x", wait=False))
            replies.append(c.hello(wait=False))
        results = [r.result() for r in replies]
        self.assertEqual(arrived, [r.id for r in replies])
        self.assertEqual(len(set(arrived)), len(replies), "ids are distinct")
        self.assertIsInstance(results[0], ht.PasscodeRequestResponse)
        self.assertTrue(all(isinstance(r, ht.HelloResponse) for r in results[1:101]))
        self.assertEqual(results[101].status, UNAUTHORIZED)
        self.assertIsInstance(results[102], ht.HelloResponse)


class SessionCommandsTest(unittest.TestCase):
    """Protocol 1.2's session commands [P-4.8]-[P-4.10]. Each test has an operator of its own, so
    that one test's logins, logouts and the session cap [P-3.5] never reach another's."""

    DEVICE = "laptop: hellwall_client.py unittest"

    @classmethod
    def setUpClass(cls) -> None:
        start_stack(cls)

    @classmethod
    def tearDownClass(cls) -> None:
        stop_cleanly(cls.server)

    def connect(self) -> hc.HellwallClient:
        # Every response is kept raw too, to prove no token is ever listed.
        self.raw: list = []

        def observe(response: dict) -> None:
            harness.SCHEMAS.validate_response(response)
            self.raw.append(response)

        client = self.server.connect(observer=observe)
        self.addCleanup(client.close)
        hello = client.hello()
        self.assertTrue(client.server_has_minor(2), f"the server speaks 1.2 or later, not {hello.version}")
        return client

    def operator(self, name: str) -> str:
        email = f"{name}@example.com"
        harness.add_user(self.data_dir, email=email)
        return email

    def assertUnauthenticated(self, response: object, code: int) -> None:
        self.assertIsInstance(response, ht.ErrorResponse)
        self.assertEqual((response.error, response.code), (ht.ErrorCode.E_UNAUTHENTICATED, code))

    def test_list_shows_each_login_with_its_device_and_marks_the_callers_session(self) -> None:
        email = self.operator("lister")
        c = self.connect()
        plain = log_in(self, c, self.sink, email, MAC)
        with_device = log_in(self, c, self.sink, email, OTHER_MAC, device=self.DEVICE)

        listed = c.list_sessions(with_device.token, OTHER_MAC)
        self.assertIsInstance(listed, ht.SessionListResponse, f"session.list failed: {listed}")
        self.assertEqual((listed.status, listed.code), (OK, 6))
        self.assertEqual([s.mac for s in listed.sessions], [MAC, OTHER_MAC], "both logins, oldest first")
        self.assertEqual([s.current for s in listed.sessions], [False, True], "exactly one is current: the caller's")
        self.assertEqual([s.device for s in listed.sessions], [None, self.DEVICE], "the device as sent at login, absent when none was")
        self.assertEqual({s.ip for s in listed.sessions}, {"127.0.0.1"})
        self.assertEqual(len({s.id for s in listed.sessions}), 2, "distinct ids")
        for s in listed.sessions:
            self.assertLessEqual(s.created_at, s.last_seen_at)
        self.assertNotIn("device", self.raw[-1]["sessions"][0], "absent, not null, on the wire")

        other_view = c.list_sessions(plain.token, MAC)
        self.assertEqual([s.current for s in other_view.sessions], [True, False], "current follows the caller")
        self.assertEqual([s.id for s in other_view.sessions], [s.id for s in listed.sessions])
        wire = json.dumps([r for r in self.raw if r.get("code") == 6])
        for token in (plain.token, with_device.token):
            self.assertNotIn(token[15:], wire, "session.list never shows a token")
        self.assertEqual(c.check(with_device.token, OTHER_MAC, "x").status, AUTHORIZED, "listing changed nothing")

    def test_logout_ends_the_callers_session_only(self) -> None:
        email = self.operator("leaver")
        c = self.connect()
        leaving = log_in(self, c, self.sink, email, MAC)
        staying = log_in(self, c, self.sink, email, OTHER_MAC, device=self.DEVICE)

        self.assertUnauthenticated(c.logout(staying.token, MAC), 4)  # another MAC: nothing ended
        done = c.logout(leaving.token, MAC)
        self.assertIsInstance(done, ht.SessionLogoutResponse, f"session.logout failed: {done}")
        self.assertEqual((done.status, done.code), (OK, 4))

        self.assertEqual(c.check(leaving.token, MAC, "x").status, UNAUTHORIZED, "the logged-out token")
        self.assertUnauthenticated(c.list_sessions(leaving.token, MAC), 6)
        self.assertUnauthenticated(c.logout(leaving.token, MAC), 4)
        self.assertUnauthenticated(c.logout_all(leaving.token, MAC), 5)

        self.assertEqual(c.check(staying.token, OTHER_MAC, "x").status, AUTHORIZED, "the other device is still logged in")
        left = c.list_sessions(staying.token, OTHER_MAC)
        self.assertEqual([(s.mac, s.device, s.current) for s in left.sessions], [(OTHER_MAC, self.DEVICE, True)])

    def test_logout_all_ends_every_session_of_the_operator_and_no_other(self) -> None:
        email, bystander = self.operator("everywhere"), self.operator("bystander")
        c = self.connect()
        first = log_in(self, c, self.sink, email, MAC)
        second = log_in(self, c, self.sink, email, OTHER_MAC, device=self.DEVICE)
        other = log_in(self, c, self.sink, bystander, MAC)

        done = c.logout_all(first.token, MAC)
        self.assertIsInstance(done, ht.SessionLogoutAllResponse, f"session.logout_all failed: {done}")
        self.assertEqual((done.status, done.code, done.ended), (OK, 5, 2), "both of the operator's sessions ended")

        self.assertEqual(c.check(first.token, MAC, "x").status, UNAUTHORIZED, "the caller's own token")
        self.assertEqual(c.check(second.token, OTHER_MAC, "x").status, UNAUTHORIZED, "the operator's other token")
        self.assertUnauthenticated(c.list_sessions(second.token, OTHER_MAC), 6)
        self.assertUnauthenticated(c.logout_all(first.token, MAC), 5)
        self.assertEqual(c.check(other.token, MAC, "x").status, AUTHORIZED, "another operator's session is untouched")


class TotpLoginTest(unittest.TestCase):
    """Protocol 1.5's authenticator [P-4.14]-[P-4.15]: enrolment, confirmation, and a login with a
    code this client computes itself (RFC 6238 with the standard library's hmac)."""

    @classmethod
    def setUpClass(cls) -> None:
        # Alert mails (a first login from a device) would come between the passcode mails read here.
        start_stack(cls, HELLWALL_ALERTS_DISABLED="all")

    @classmethod
    def tearDownClass(cls) -> None:
        stop_cleanly(cls.server)

    def test_enrol_confirm_and_log_in_with_a_code_computed_here(self) -> None:
        email = "totp@example.com"
        harness.add_user(self.data_dir, email=email)
        c = self.server.connect()
        self.addCleanup(c.close)
        c.hello()
        self.assertTrue(c.server_has_minor(5), "the server speaks 1.5 or later")
        session = log_in(self, c, self.sink, email, MAC)

        started = c.totp_enroll(session.token, MAC)
        self.assertIsInstance(started, ht.TotpEnrollResponse, f"totp.enroll failed: {started}")
        self.assertTrue(started.uri.startswith("otpauth://totp/"))
        self.assertIn(f"secret={started.secret}", started.uri)
        now = now_ms() / 1000
        confirmed = c.totp_confirm(session.token, MAC, hc.totp_code(started.secret, now))
        self.assertIsInstance(confirmed, ht.TotpConfirmResponse, f"totp.confirm failed: {confirmed}")
        self.assertEqual(len(confirmed.recovery_codes), 10)

        # From now on a login needs the code: without it, refused like any wrong factor.
        since = self.sink.count()
        c.request_passcode(email, PASSWORD, MAC)
        passcode = passcode_from(self.sink.wait_for(email, since))
        refused = c.login(email, PHONE, PASSWORD, passcode, MAC)
        self.assertIsInstance(refused, ht.ErrorResponse)
        self.assertEqual(refused.error, ht.ErrorCode.E_AUTH_FAILED)

        # The confirmation used this time step; the next step's code is within the allowed drift.
        code = hc.totp_code(started.secret, now + 30)
        since = self.sink.count()
        c.request_passcode(email, PASSWORD, MAC)
        passcode = passcode_from(self.sink.wait_for(email, since))
        ok = c.login(email, PHONE, PASSWORD, passcode, MAC, totp=code)
        self.assertIsInstance(ok, ht.PasscodeAuthResponse, f"login with the code failed: {ok}")
        self.assertEqual(c.check(ok.token, MAC, "x").status, AUTHORIZED)

        # The same code again is a replay: refused.
        since = self.sink.count()
        c.request_passcode(email, PASSWORD, MAC)
        passcode = passcode_from(self.sink.wait_for(email, since))
        replay = c.login(email, PHONE, PASSWORD, passcode, MAC, totp=code)
        self.assertIsInstance(replay, ht.ErrorResponse)
        self.assertEqual(replay.error, ht.ErrorCode.E_AUTH_FAILED)


class RenewalTest(unittest.TestCase):
    """[P-4.5] with a 2 s token life and a 1 s grace: renewal, rotation, the grace, reuse detection."""

    TTL_MS = 2000
    GRACE_MS = 1000

    @classmethod
    def setUpClass(cls) -> None:
        start_stack(cls, HELLWALL_TOKEN_TTL=str(cls.TTL_MS // 1000), HELLWALL_ROTATION_GRACE=str(cls.GRACE_MS // 1000))

    def test_renewal_rotation_grace_and_reuse(self) -> None:
        c = self.server.connect()
        self.addCleanup(c.close)
        session = log_in(self, c, self.sink)
        old = session.token
        self.assertEqual(c.check(old, MAC, "x").status, AUTHORIZED)

        sleep_until_ms(session.expires_at + 100)
        renewed = c.check(old, MAC, "x")
        self.assertEqual(renewed.status, RENEW, "an expired token inside the limits is renewed")
        new = renewed.token
        self.assertRegex(new, TOKEN_RE)
        self.assertNotEqual(new, old)
        self.assertEqual(renewed.user.email, EMAIL)
        self.assertEqual(renewed.renewable_until, session.renewable_until, "renewal does not move the absolute limit")
        self.assertGreater(renewed.expires_at, session.expires_at)
        # The server's own instants: it renewed at expires_at - TTL, so its grace ends at this.
        grace_until = renewed.expires_at - self.TTL_MS + self.GRACE_MS

        with c.batch():
            new_check = c.check(new, MAC, "x", wait=False)
            in_flight = c.check(old, MAC, "x", wait=False)
        sent_at = now_ms()
        self.assertEqual(new_check.result().status, AUTHORIZED, "the new token works")
        retry = in_flight.result()
        self.assertEqual(retry.status, RENEW, f"the old token within the grace (sent {grace_until - sent_at} ms before it ended)")
        self.assertEqual(retry.token, new, "within the grace the old token gets the SAME new token")
        self.assertEqual(retry.expires_at, renewed.expires_at)

        sleep_until_ms(grace_until + 200)
        self.assertLess(now_ms(), renewed.expires_at - 300, "too slow to check before the new token expires")
        with c.batch():
            still_good = c.check(new, MAC, "x", wait=False)
            reuse = c.check(old, MAC, "x", wait=False)
        self.assertEqual(still_good.result().status, AUTHORIZED, "the new token is valid up to the reuse")
        self.assertEqual(reuse.result().status, UNAUTHORIZED, "the old token after the grace")
        # [P-2.6] Pipelined requests are worked on concurrently: a request's effect is certain for
        # the requests sent after its answer arrived.
        after = c.check(new, MAC, "x")
        self.assertEqual(after.status, UNAUTHORIZED, "reuse after the grace revokes the whole session")

        c.close()
        stop_cleanly(self.server)
        with self.server._lock:
            events = [line.get("event") for line in self.server.lines]
        self.assertIn("token.reuse", events, "the server logged the reuse")


if __name__ == "__main__":
    unittest.main()
