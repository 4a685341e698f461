"""What an HSM call can fail with, as the relay sees it."""

from __future__ import annotations


class HsmError(Exception):
    """An HSM call failed; the message is one line, never a PIN."""


class HsmStuck(HsmError):
    """The call passed its deadline: the lane is declared stuck and is being replaced."""


class HsmLost(HsmError):
    """The worker owning the token exited (killed, or crashed) with the call in it;
    the lane is being replaced."""


class HsmUnavailable(HsmError):
    """The lane is not serving (starting, restarting after a stuck call, or failed)."""


class HsmOperationError(HsmError):
    """The token refused this one operation (bad ciphertext, unsupported mechanism...)."""


class HsmSetupError(HsmError):
    """The token cannot be opened as configured: wrong PIN, missing token or library."""
