"""The process that owns the PKCS#11 token: `python -m hsm_adapter.worker`.

python-pkcs11 initialises the library as single-threaded (`C_Initialize(NULL)`), and
SoftHSM then runs without locks: two threads inside it at once crash the process.
So exactly one process talks to the token, one call at a time, and the relay feeds
it batches of calls over its stdin and takes batches of results from its stdout
(`hsm_adapter.wire` frames). A call that never returns blocks only this process,
which the lane can kill and replace; nothing in the relay waits on it unbounded.

Everything arrives on stdin, the PIN included: never on the command line (visible
to every user in `ps`) and never in the environment. The first frame says what to
do (`mode`):

- `serve`: open the token by label, log in once, find the keys, answer
  `{"ok": True}`, then answer batches `[(id, op, args), ...]` with
  `[(id, ok, value_or_error), ...]` until stdin closes;
- `init`: initialise the token if no token has the label (SO PIN, user PIN), and
  create the keys that are missing; idempotent;
- `status`: describe the token and its keys and run a live sign/verify.

Errors are reported as one line naming the token, key or mechanism, never the PIN.
"""

from __future__ import annotations

import ctypes
import hashlib
import itertools
import os
import select
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass, TokenFlag
from pkcs11 import exceptions as px
from pkcs11.util.ec import encode_named_curve_parameters

from hsm_adapter import wire

CURVE = "secp256r1"  # ECDSA P-256
FLUSH_EVERY = 16  # results per frame back to the lane (docs/performance.md)
AES_BITS = 256


class SetupError(Exception):
    """The token cannot be used as configured; the message is one line for the user."""


def describe(exc: BaseException, what: str) -> str:
    """One line for a PKCS#11 failure while doing `what` (exception names, no PIN)."""
    messages = {
        px.PinIncorrect: "wrong PIN",
        px.PinLenRange: "PIN has the wrong length",
        px.PinLocked: "PIN locked after too many attempts",
        px.NoSuchToken: "no such token",
        px.MechanismInvalid: "mechanism not supported by the token",
        px.NoSuchKey: "key not found",
        px.SignatureInvalid: "signature invalid",
        px.EncryptedDataInvalid: "ciphertext invalid",
        px.UserPinNotInitialized: "user PIN not initialised",
    }
    for kind, text in messages.items():
        if isinstance(exc, kind):
            return f"{what}: {text}"
    return f"{what}: {type(exc).__name__}"


def _load(module: str) -> Any:
    if not os.path.exists(module):
        raise SetupError(f"PKCS#11 library {module} not found (install Debian's softhsm2)")
    try:
        return pkcs11.lib(module)
    except (OSError, RuntimeError, px.PKCS11Error) as exc:
        raise SetupError(f"PKCS#11 library {module}: cannot load: {exc}") from None


def _token(lib: Any, label: str) -> Any:
    try:
        return lib.get_token(token_label=label)
    except px.NoSuchToken:
        raise SetupError(f"token {label!r}: no such token (run `relaysim hsm init`)") from None


def _open(token: Any, pin: str, *, rw: bool = False) -> Any:
    try:
        return token.open(user_pin=pin, rw=rw)
    except px.PKCS11Error as exc:
        raise SetupError(describe(exc, f"token {token.label!r}: login")) from None


def _mechanism(name: str) -> Mechanism:
    try:
        return Mechanism[name]
    except KeyError:
        raise SetupError(f"mechanism {name!r}: unknown PKCS#11 mechanism name") from None


class Keys:
    """The relay's keys on one logged-in session, and the operations on them."""

    def __init__(self, session: Any, sign_label: str, enc_label: str, mechanism: str) -> None:
        label = session.token.label
        try:
            self.priv = session.get_key(ObjectClass.PRIVATE_KEY, KeyType.EC, label=sign_label)
            self.pub = session.get_key(ObjectClass.PUBLIC_KEY, KeyType.EC, label=sign_label)
            self.aes = session.get_key(ObjectClass.SECRET_KEY, KeyType.AES, label=enc_label)
        except px.PKCS11Error as exc:
            raise SetupError(
                describe(exc, f"token {label!r}: keys {sign_label!r}/{enc_label!r}")
                + " (run `relaysim hsm init`)"
            ) from None
        self.mechanism = _mechanism(mechanism)
        try:  # a live check: a mechanism the token rejects fails here, not per request
            self.verify(b"relaysim", self.sign(b"relaysim"))
        except px.PKCS11Error as exc:
            raise SetupError(describe(exc, f"token {label!r}: sign with {mechanism}")) from None

    def sign(self, data: bytes) -> bytes:
        """ECDSA P-256 over the SHA-256 digest (SoftHSM 2.6 rejects ECDSA_SHA256)."""
        digest = hashlib.sha256(data).digest()
        return bytes(self.priv.sign(digest, mechanism=self.mechanism))

    def verify(self, data: bytes, signature: bytes) -> bool:
        """Whether `signature` is the relay key's signature of `data`."""
        digest = hashlib.sha256(data).digest()
        return bool(self.pub.verify(digest, signature, mechanism=self.mechanism))

    def encrypt(self, data: bytes) -> bytes:
        """AES-256-CBC with PKCS#7 padding; a fresh IV first."""
        iv = os.urandom(16)
        return iv + bytes(self.aes.encrypt(data, mechanism_param=iv))

    def decrypt(self, blob: bytes) -> bytes:
        """The inverse of `encrypt`."""
        return bytes(self.aes.decrypt(blob[16:], mechanism_param=blob[:16]))


def serve(init: dict[str, Any], arrivals: Iterable[list[Any]]) -> None:
    """Open the token and answer the batches of calls `arrivals` brings until it ends."""
    out = sys.stdout.buffer
    try:
        lib = _load(init["module"])
        session = _open(_token(lib, init["label"]), init["pin"])
        keys = Keys(session, init["sign_label"], init["enc_label"], init["mechanism"])
    except SetupError as exc:
        wire.write(out, {"ok": False, "error": str(exc)})
        return
    ops: dict[str, Callable[..., Any]] = {
        "sign": keys.sign,
        "verify": keys.verify,
        "encrypt": keys.encrypt,
        "decrypt": keys.decrypt,
    }
    wire.write(out, {"ok": True})
    label = init["label"]
    for frames in arrivals:
        batch = [call for frame in frames for call in frame]
        results = []
        for rid, op, args in batch:
            fn = ops.get(op)
            if fn is None:
                results.append((rid, False, f"unknown operation {op!r}"))
                continue
            try:
                results.append((rid, True, fn(*args)))
            except px.PKCS11Error as exc:
                results.append((rid, False, describe(exc, f"token {label!r}: {op}")))
            if len(results) >= FLUSH_EVERY:
                # Hand results back while the rest of the batch is worked on, so
                # their callers queue their next calls before this batch ends and
                # the token never waits for the relay.
                wire.write(out, results)
                results = []
        if results:
            wire.write(out, results)


def _arrivals(fd: int) -> Iterator[list[Any]]:
    """The frames on `fd` until it closes, in groups: each group is every frame
    complete once a blocking read returned and whatever else had already arrived.
    So calls that came in several small frames while the token was busy are worked
    as one batch and answered in few result frames (each a write and a wake-up on
    the relay's side)."""
    decoder = wire.Decoder()
    while data := os.read(fd, 1 << 16):
        frames = decoder.feed(data)
        while select.select([fd], [], [], 0)[0] and (data := os.read(fd, 1 << 16)):
            frames += decoder.feed(data)
        if frames:
            yield frames


def _init_token(lib: Any, module: str, label: str, so_pin: str, pin: str) -> bool:
    """Initialise a free slot's token as `label` with its PINs; False if it exists."""
    try:
        lib.get_token(token_label=label)
        return False
    except px.NoSuchToken:
        pass
    free = [
        s
        for s in lib.get_slots(token_present=True)
        if not s.get_token().flags & TokenFlag.TOKEN_INITIALIZED
    ]
    if not free:
        raise SetupError(f"token {label!r}: no free slot to initialise it in")
    # python-pkcs11 does not wrap C_InitToken; the library is already initialised in
    # this process by python-pkcs11, so calling the exported symbol is enough.
    cdll = ctypes.CDLL(module)
    cdll.C_InitToken.argtypes = [ctypes.c_ulong, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    so = so_pin.encode()
    rv = cdll.C_InitToken(free[0].slot_id, so, len(so), label.encode().ljust(32)[:32])
    if rv != 0:
        raise SetupError(f"token {label!r}: C_InitToken failed with code {rv:#x}")
    token = lib.get_token(token_label=label)
    with token.open(so_pin=so_pin, rw=True) as session:
        session.init_pin(pin)
    return True


def init(req: dict[str, Any]) -> dict[str, Any]:
    """Make sure the token and both keys exist; report what was created."""
    lib = _load(req["module"])
    label = req["label"]
    created = []
    if _init_token(lib, req["module"], label, req["so_pin"], req["pin"]):
        created.append(f"token {label}")
    with _open(_token(lib, label), req["pin"], rw=True) as session:
        sign, enc = req["sign_label"], req["enc_label"]
        if not list(session.get_objects({Attribute.LABEL: sign, Attribute.KEY_TYPE: KeyType.EC})):
            params = session.create_domain_parameters(
                KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(CURVE)}, local=True
            )
            params.generate_keypair(store=True, label=sign)
            created.append(f"EC P-256 key pair {sign}")
        if not list(session.get_objects({Attribute.LABEL: enc, Attribute.KEY_TYPE: KeyType.AES})):
            session.generate_key(KeyType.AES, AES_BITS, store=True, label=enc)
            created.append(f"AES-{AES_BITS} key {enc}")
    return {"ok": True, "created": created, **status(req)}


def status(req: dict[str, Any]) -> dict[str, Any]:
    """The token, its keys, and a live sign/verify with its time."""
    lib = _load(req["module"])
    token = _token(lib, req["label"])
    with _open(token, req["pin"]) as session:
        objects = [
            f"{o[Attribute.LABEL]} ({ObjectClass(o[Attribute.CLASS]).name.lower()})"
            for o in session.get_objects({Attribute.TOKEN: True})
        ]
        keys = Keys(session, req["sign_label"], req["enc_label"], req["mechanism"])
        t0 = time.perf_counter()
        ok = keys.verify(b"status", keys.sign(b"status"))
        sign_ms = (time.perf_counter() - t0) * 1000.0
        roundtrip = keys.decrypt(keys.encrypt(b"status")) == b"status"
    return {
        "ok": True,
        "token": token.label,
        "slot": token.slot.slot_id,
        "manufacturer": token.manufacturer_id,
        "model": token.model,
        "objects": sorted(objects),
        "sign_verify": ok,
        "encrypt_decrypt": roundtrip,
        "sign_verify_ms": round(sign_ms, 3),
    }


def main() -> None:
    """Read the first frame and act on its mode."""
    arrivals = _arrivals(sys.stdin.fileno())
    first, *rest = next(arrivals, [None])
    if not isinstance(first, dict):
        raise SystemExit("hsm worker: expected a request frame on stdin")
    mode = first.get("mode")
    if mode == "serve":
        serve(first, itertools.chain([rest] if rest else [], arrivals))
        return
    try:
        if mode == "init":
            answer = init(first)
        elif mode == "status":
            answer = status(first)
        else:
            answer = {"ok": False, "error": f"unknown mode {mode!r}"}
    except SetupError as exc:
        answer = {"ok": False, "error": str(exc)}
    except px.PKCS11Error as exc:
        answer = {"ok": False, "error": describe(exc, f"token {first.get('label')!r}")}
    wire.write(sys.stdout.buffer, answer)


if __name__ == "__main__":
    main()
