"""Test support: the generated types on sys.path, and real Hellwall processes (dist/main.js, dist/cli.js).

Nothing here builds anything: the caller has run `npm run build` and generated the Python types
(see README.md). Every process started here is registered so that it is killed even when a test
fails, the run is interrupted, or (on Linux) this Python process is killed outright.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List

ROOT = Path(os.environ.get("HELLWALL_ROOT") or Path(__file__).resolve().parents[2])
NODE = os.environ.get("HELLWALL_NODE") or shutil.which("node") or "node"
MAIN = ROOT / "dist" / "main.js"
CLI = ROOT / "dist" / "cli.js"
DEV_CERT_FILE = "dev-cert.pem"  # src/tls/tls-files.ts DEV_CERT_FILE

PASSWORD = "correct horse battery staple"
EMAIL = "ops@example.com"
PHONE = "+1 555 0100"
MAC = "00:1a:2b:3c:4d:5e"
START_TIMEOUT_S = 30.0  # two busy cores and other suites running: generous


def _setup_types() -> None:
    types_dir = os.environ.get("HELLWALL_TYPES_DIR")
    if not types_dir:
        raise RuntimeError(
            "HELLWALL_TYPES_DIR is not set: generate the types first, e.g.\n"
            "  node scripts/gen-clients.mjs --lang python --out build/clients\n"
            "  HELLWALL_TYPES_DIR=build/clients/python python3 -m unittest -v test_flow test_vectors"
        )
    if not (Path(types_dir) / "hellwall_types.py").is_file():
        raise RuntimeError(f"HELLWALL_TYPES_DIR={types_dir} holds no hellwall_types.py")
    sys.path.insert(0, str(Path(types_dir).resolve()))


_setup_types()
if not MAIN.is_file() or not CLI.is_file():
    raise RuntimeError(f"{MAIN} or {CLI} is missing: run `npm run build` first")

import hellwall_client  # noqa: E402  (needs the types on sys.path)
import schema_check  # noqa: E402

PROTOCOL = ROOT / "protocol"
SCHEMAS = schema_check.schemas(PROTOCOL)

# --- process hygiene --------------------------------------------------------------------------

_live: "set[subprocess.Popen]" = set()
_temp_dirs: "list[tempfile.TemporaryDirectory]" = []


def _kill_live() -> None:
    for proc in list(_live):
        if proc.poll() is None:
            proc.kill()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        _live.discard(proc)


atexit.register(_kill_live)


def _on_term(signum: int, _frame: object) -> None:
    # A runner that times out sends SIGTERM: take the servers and their data down with us, then
    # exit at once (unittest would otherwise record the interruption as one more test error).
    _kill_live()
    for d in _temp_dirs:
        shutil.rmtree(d.name, ignore_errors=True)
    os._exit(128 + signum)


if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGTERM, _on_term)


def _set_parent_death_signal(sig: int) -> None:
    """Linux: have the kernel send `sig` to the calling process when its parent dies."""
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig))
    except Exception:
        pass  # not Linux: the atexit and SIGTERM hooks have to do


def _die_with_parent() -> None:
    # Runs in each server before exec. If this Python process is SIGKILLed, no cleanup of ours
    # runs; the kernel then kills the server for us.
    _set_parent_death_signal(signal.SIGKILL)


if sys.platform.startswith("linux"):
    # And if whoever started us (the tap test) dies, we get SIGTERM and take the servers down.
    _set_parent_death_signal(signal.SIGTERM)


def base_env(data_dir: str, **more: str) -> Dict[str, str]:
    """A clean environment: nothing from the caller's HELLWALL_* settings leaks into a server."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), "HELLWALL_DATA_DIR": data_dir,
           # The health/metrics listener on a free port: 9464 may be taken by another test or server.
           "HELLWALL_OPS_PORT": "0",
           # The admin console likewise (default 7444).
           "HELLWALL_CONSOLE_PORT": "0",
           # One process (the default is one per core); the workers have tests of their own.
           "HELLWALL_WORKERS": "1",
           # Many logins from 127.0.0.1 within a minute; the limits have tests of their own.
           "HELLWALL_LIMIT_IP_PASSCODE_REQUESTS": "100000", "HELLWALL_LIMIT_IP_LOGINS": "100000",
           "HELLWALL_LIMIT_IP_FAILED_CHECKS": "100000",
           # The new-sign-in alert mails after a first login from a device, and may arrive after the
           # next passcode request; a test reading "the next mail" for its passcode would race it.
           "HELLWALL_ALERT_NEW_DEVICE": "false"}
    env.update(more)
    return env


def add_user(data_dir: str, email: str = EMAIL, phone: str = PHONE, password: str = PASSWORD, role: str = "user") -> str:
    r = subprocess.run(
        [NODE, str(CLI), "user", "add", "--email", email, "--phone", phone, "--role", role],
        env=base_env(data_dir, HELLWALL_PASSWORD=password),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if r.returncode != 0:
        raise RuntimeError(f"user add exited {r.returncode}: {r.stderr.strip()}")
    return r.stdout


class Server:
    """`node dist/main.js` with its own data directory, on a free port of 127.0.0.1.

    The port comes from the server itself (HELLWALL_PORT=0 and its `hellwall listening` log
    line), so there is no window in which another process could take a port picked in advance.
    stdout (pino JSON lines) is read continuously on a thread: a full pipe would stall the server.
    """

    def __init__(self, data_dir: str, **env: str) -> None:
        self.data_dir = data_dir
        self.lines: List[dict] = []
        self.stderr = ""
        self.port = 0
        self._listening = threading.Event()
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            [NODE, str(MAIN)],
            env=base_env(data_dir, HELLWALL_HOST="127.0.0.1", HELLWALL_PORT="0", **env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        _live.add(self.proc)
        self._threads = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for t in self._threads:
            t.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._listening.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"server did not start (exit {self.proc.returncode}):\n{self.log_text()}\n{self.stderr}")

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                line = json.loads(raw)
            except ValueError:
                line = {"msg": "(not JSON)", "raw": raw.decode("utf-8", "replace")}
            with self._lock:
                self.lines.append(line)
            if line.get("msg") == "hellwall listening" and isinstance(line.get("port"), int):
                self.port = line["port"]
                self._listening.set()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.stderr += raw.decode("utf-8", "replace")

    @property
    def cafile(self) -> str:
        return os.path.join(self.data_dir, DEV_CERT_FILE)

    def connect(self, **kw) -> "hellwall_client.HellwallClient":
        """A client trusting this server's dev certificate, in strict mode, that checks every
        response against its JSON Schema: any response outside protocol/schemas fails the test."""
        kw.setdefault("strict", True)
        kw.setdefault("observer", SCHEMAS.validate_response)
        return hellwall_client.HellwallClient.connect("127.0.0.1", self.port, self.cafile, **kw)

    def log_text(self) -> str:
        with self._lock:
            return "\n".join(json.dumps(line) for line in self.lines)

    def logged(self, msg: str) -> bool:
        with self._lock:
            return any(line.get("msg") == msg for line in self.lines)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then the exit code (the server answers what it has and exits 0 [P-2.7])."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            self.kill()
        for t in self._threads:
            t.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        _live.discard(self.proc)


def other_certificate() -> str:
    """A fresh self-signed certificate for 127.0.0.1 and localhost, made like the server's dev
    certificate (with the project's own `selfsigned` dependency) but with another key."""
    script = (
        "import { generate } from 'selfsigned';"
        "const p = await generate([{ name: 'commonName', value: 'not-hellwall' }], { keyType: 'ec', curve: 'P-256', algorithm: 'sha256',"
        " extensions: [{ name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }] }] });"
        "process.stdout.write(p.cert);"
    )
    r = subprocess.run([NODE, "--input-type=module", "-e", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    if r.returncode != 0 or "BEGIN CERTIFICATE" not in r.stdout:
        raise RuntimeError(f"could not generate a certificate: {r.stderr.strip()}")
    return r.stdout


def temp_dir(prefix: str) -> tempfile.TemporaryDirectory:
    d = tempfile.TemporaryDirectory(prefix=prefix)
    _temp_dirs.append(d)
    return d


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def sleep_until_ms(t_ms: int) -> None:
    left = (t_ms - now_ms()) / 1000
    if left > 0:
        time.sleep(left)
