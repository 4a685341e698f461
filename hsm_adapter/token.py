"""Where the relay's PKCS#11 token lives, how to reach it, and its PIN.

SoftHSM2 from Debian keeps its tokens under /var/lib/softhsm and reads
/etc/softhsm/softhsm2.conf unless `SOFTHSM2_CONF` says otherwise. relaysim keeps its
own: a config file and a token folder under the project's state folder (`state/`
by default, `RELAYSIM_STATE` to move it), handed to every process that loads the
library through `SOFTHSM2_CONF`, so nothing system-wide is read or written.

The user PIN comes from `RELAYSIM_HSM_PIN`, else the file named by
`RELAYSIM_HSM_PIN_FILE`, else `state/softhsm/user.pin`, which `relaysim hsm init`
creates (random, mode 0600) when neither is set. The SO PIN likewise
(`RELAYSIM_HSM_SO_PIN`, `RELAYSIM_HSM_SO_PIN_FILE`, `state/softhsm/so.pin`). A PIN
never goes on a command line and never into a log or an error message: `Pin`
hides it from `repr` and `str`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hsm_adapter import wire

#: Where Debian's softhsm2 package puts the module, newest layouts first.
MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
)


class TokenError(Exception):
    """The token cannot be set up or reached; the message is one line for the user."""


class Pin:
    """A PIN that never prints itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The PIN itself, for the one place that hands it to the token."""
        return self._value

    def __repr__(self) -> str:
        return "Pin(****)"

    __str__ = __repr__


def usable_state(folder: Path) -> Path:
    """`folder`, made if missing and checked by writing a file there; else TokenError
    in one line naming the folder and why (a file, a read-only file system, /proc)."""
    hint = "set RELAYSIM_STATE to a folder this user can write"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise TokenError(f"state folder {folder}: is a file, not a folder ({hint})") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise TokenError(f"state folder {folder}: cannot be made: {reason} ({hint})") from None
    try:  # os.access says yes to root on a read-only file system: write for real
        with tempfile.TemporaryFile(dir=folder, prefix=".relaysim-probe-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise TokenError(f"state folder {folder}: cannot be written: {reason} ({hint})") from None
    return folder


def default_module() -> str:
    """The PKCS#11 module: `RELAYSIM_PKCS11_MODULE`, else Debian's SoftHSM2."""
    chosen = os.environ.get("RELAYSIM_PKCS11_MODULE")
    if chosen:
        return chosen
    return next((m for m in MODULE_CANDIDATES if os.path.exists(m)), MODULE_CANDIDATES[0])


def default_state() -> Path:
    """The project's state folder: `RELAYSIM_STATE`; else `state/` of the checkout this
    package runs from, wherever the command is run (an absolute path: run from
    another folder, `relaysim hsm init` must not make a second token); else, for an
    installed package, `$XDG_STATE_HOME/relaysim` (~/.local/state/relaysim)."""
    chosen = os.environ.get("RELAYSIM_STATE")
    if chosen:
        return Path(chosen)
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file():
        return root / "state"
    home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(home) / "relaysim"


@dataclass(frozen=True)
class TokenConfig:
    """How to reach the relay's token and which keys and mechanism it uses."""

    label: str = "relaysim"
    module: str = field(default_factory=default_module)
    state: Path = field(default_factory=default_state)
    sign_label: str = "relay-sign"
    enc_label: str = "relay-enc"
    mechanism: str = "ECDSA"  # over a SHA-256 digest: SoftHSM 2.6 rejects ECDSA_SHA256

    @property
    def folder(self) -> Path:
        """The SoftHSM2 state of this project: its config and its token folder."""
        return self.state / "softhsm"

    @property
    def conf(self) -> Path:
        """The SoftHSM2 config file every process loading the module is pointed at."""
        return self.folder / "softhsm2.conf"

    def env(self) -> dict[str, str]:
        """The environment for a process that loads the module."""
        return {**os.environ, "SOFTHSM2_CONF": str(self.conf.resolve())}

    def prepare(self) -> None:
        """Write the SoftHSM2 config and the token folder if missing (idempotent)."""
        usable_state(self.state)
        tokens = self.folder / "tokens"
        tokens.mkdir(parents=True, exist_ok=True)
        text = (
            f"directories.tokendir = {tokens.resolve()}\n"
            "objectstore.backend = file\n"
            "log.level = ERROR\n"
            "slots.removable = false\n"
        )
        if not self.conf.exists() or self.conf.read_text() != text:
            self.conf.write_text(text)

    def pin(self, *, create: bool = False) -> Pin:
        """The user PIN (see the module doc); `create` makes the default file if needed."""
        return _pin("RELAYSIM_HSM_PIN", self.folder / "user.pin", create)

    def so_pin(self, *, create: bool = False) -> Pin:
        """The security officer's PIN, found like the user PIN."""
        return _pin("RELAYSIM_HSM_SO_PIN", self.folder / "so.pin", create)

    def request(self, mode: str, pin: Pin, **extra: Any) -> dict[str, Any]:
        """The first frame for a worker in `mode` (it carries the PIN: never log it)."""
        return {
            "mode": mode,
            "module": self.module,
            "label": self.label,
            "pin": pin.reveal(),
            "sign_label": self.sign_label,
            "enc_label": self.enc_label,
            "mechanism": self.mechanism,
            **extra,
        }


def _pin(env: str, default: Path, create: bool) -> Pin:
    if env in os.environ:
        return Pin(os.environ[env])
    named = os.environ.get(f"{env}_FILE")
    path = Path(named) if named else default
    if not path.exists():
        if named or not create:
            where = f"{env}_FILE={path}" if named else str(path)
            raise TokenError(f"PIN file {where} not found (set {env} or run `relaysim hsm init`)")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(8) + "\n")
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise TokenError(f"PIN file {path}: cannot read: {exc.strerror}") from None
    if not value:
        raise TokenError(f"PIN file {path} is empty")
    return Pin(value)


WORKER = [sys.executable, "-m", "hsm_adapter.worker"]


def run_worker(cfg: TokenConfig, request: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    """Run a one-shot worker (`init` or `status`) and return its answer."""
    cfg.prepare()
    try:
        proc = subprocess.run(
            WORKER,
            input=wire.encode(request),
            capture_output=True,
            env=cfg.env(),
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise TokenError(f"token {cfg.label!r}: no answer within {timeout:.0f} s") from None
    if not proc.stdout:
        last = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise TokenError(f"token {cfg.label!r}: worker failed: {last[0]}")
    answer: dict[str, Any] = wire.Decoder().feed(proc.stdout)[0]
    if not answer.get("ok"):
        raise TokenError(str(answer.get("error")))
    return answer


def ensure(cfg: TokenConfig) -> dict[str, Any]:
    """Initialise the token and create the keys if missing (idempotent); its status."""
    usable_state(cfg.state)
    check_module(cfg)
    pin, so_pin = cfg.pin(create=True), cfg.so_pin(create=True)
    return run_worker(cfg, cfg.request("init", pin, so_pin=so_pin.reveal()))


def status(cfg: TokenConfig) -> dict[str, Any]:
    """The token, its keys and a live sign/verify check."""
    usable_state(cfg.state)
    check_module(cfg)
    return run_worker(cfg, cfg.request("status", cfg.pin()))


def check_module(cfg: TokenConfig) -> None:
    """Fail with one line if the PKCS#11 module is missing."""
    if not os.path.exists(cfg.module):
        hint = "apt-get install softhsm2" if shutil.which("apt-get") else "install SoftHSM2"
        raise TokenError(f"PKCS#11 library {cfg.module} not found ({hint})")
