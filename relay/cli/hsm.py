"""`relaysim hsm init|status`: the SoftHSM2 token."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from relay.cli.options import (
    BadInput,
    cli,
)


@cli.group()
def hsm() -> None:
    """The real HSM: a SoftHSM2 token under the project's state folder.

    The PIN comes from RELAYSIM_HSM_PIN, or the file RELAYSIM_HSM_PIN_FILE names, or
    state/softhsm/user.pin (created by `init`); never from the command line.
    """


_TOKEN_OPTIONS = [
    click.option("--label", default="relaysim", show_default=True, help="Token label."),
    click.option("--module", help="PKCS#11 library (default: Debian's SoftHSM2)."),
    click.option(
        "--state",
        type=click.Path(path_type=Path, file_okay=False),
        help="State folder (default: $RELAYSIM_STATE or ./state).",
    ),
    click.option(
        "--mechanism", default="ECDSA", show_default=True, help="Signing mechanism (PKCS#11 name)."
    ),
]


def _token_options(fn: Any) -> Any:
    for option in reversed(_TOKEN_OPTIONS):
        fn = option(fn)
    return fn


def _token_config(label: str, module: str | None, state: Path | None, mechanism: str) -> Any:
    from hsm_adapter.token import TokenConfig

    extra: dict[str, Any] = {"mechanism": mechanism}
    if module:
        extra["module"] = module
    if state is not None:
        extra["state"] = state
    return TokenConfig(label=label, **extra)


def _print_token(doc: dict[str, Any]) -> None:
    click.echo(f"token {doc['token']!r} ({doc['manufacturer'].strip()} {doc['model'].strip()})")
    for obj in doc["objects"]:
        click.echo(f"  {obj}")
    live = "ok" if doc["sign_verify"] and doc["encrypt_decrypt"] else "FAILED"
    click.echo(f"live sign/verify and encrypt/decrypt: {live} ({doc['sign_verify_ms']} ms)")


@hsm.command("init")
@_token_options
def hsm_init(label: str, module: str | None, state: Path | None, mechanism: str) -> None:
    """Create the token and its keys if missing (idempotent), then check them live."""
    from hsm_adapter.token import TokenError, ensure

    cfg = _token_config(label, module, state, mechanism)
    try:
        doc = ensure(cfg)
    except TokenError as exc:
        raise BadInput(str(exc)) from None
    for what in doc["created"]:
        click.echo(f"created {what}")
    if not doc["created"]:
        click.echo("token and keys already present")
    _print_token(doc)


@hsm.command("status")
@_token_options
def hsm_status(label: str, module: str | None, state: Path | None, mechanism: str) -> None:
    """Report the token, its keys and a live sign/verify check."""
    from hsm_adapter.token import TokenError, status

    try:
        doc = status(_token_config(label, module, state, mechanism))
    except TokenError as exc:
        raise BadInput(str(exc)) from None
    _print_token(doc)
    if not (doc["sign_verify"] and doc["encrypt_decrypt"]):
        sys.exit(1)
