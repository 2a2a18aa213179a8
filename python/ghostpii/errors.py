"""Typed errors of ghostpii. Every error is a :class:`GhostError`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import polars as pl

from ghostpii._internal import CiphertextError, EncryptionError, GhostError, error_class

__all__ = [
    "AuthenticationError",
    "BudgetExhausted",
    "CiphertextError",
    "EncryptionError",
    "FitError",
    "GhostError",
    "KeyhostError",
    "PermissionDenied",
    "UnsupportedOperation",
    "ghost_errors",
]


class KeyhostError(GhostError):
    """The keyhost refused or failed a request; ``reason`` is its stable code."""

    def __init__(
        self,
        message: str,
        *,
        reason: str = "internal",
        status: int | None = None,
        missing_grant: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.status = status
        self.missing_grant = missing_grant


class AuthenticationError(KeyhostError):
    """The token is unknown to this keyhost, expired or revoked."""


class PermissionDenied(KeyhostError):
    """The identity lacks the grant for this answer key; the message names the grant."""


class BudgetExhausted(PermissionDenied):
    """The identity's privacy budget for the dataset is spent."""


# the class of each keyhost reason is decided in Rust (`_internal.error_class`), so kernels that
# relay a refusal and the Python session name the same class
_CLASSES: dict[str, type[KeyhostError]] = {
    "AuthenticationError": AuthenticationError,
    "PermissionDenied": PermissionDenied,
    "BudgetExhausted": BudgetExhausted,
    "KeyhostError": KeyhostError,
}


def error_for(
    reason: str,
    message: str,
    *,
    status: int | None = None,
    missing_grant: dict[str, Any] | None = None,
) -> KeyhostError:
    """The typed error for a keyhost refusal ``reason``."""
    cls = _CLASSES[error_class(reason, status)]
    return cls(message, reason=reason, status=status, missing_grant=missing_grant)


class UnsupportedOperation(GhostError):
    """An operation that ciphertext, or the facets of this column, cannot do; the message says
    what to use instead."""


class FitError(GhostError):
    """A model cannot be fitted from the revealed statistics (a singular system, a constant
    feature, too few rows); the message says what to change (e.g. ``alpha`` for a ridge)."""


# classes whose name may lead a message relayed through a Polars error ("ghostpii: NAME: text")
_RELAYED: dict[str, tuple[type[GhostError], str | None]] = {
    "BudgetExhausted": (BudgetExhausted, "budget_exhausted"),
    "PermissionDenied": (PermissionDenied, "permission_denied"),
    "AuthenticationError": (AuthenticationError, "unauthenticated"),
    "KeyhostError": (KeyhostError, None),
    "CiphertextError": (CiphertextError, None),
    "EncryptionError": (EncryptionError, None),
    "UnsupportedOperation": (UnsupportedOperation, None),
}
PREFIX = "ghostpii: "
# "Name: text", or "Name[reason]: text" where the class does not imply the keyhost's reason
_RELAY = re.compile(r"(\w+)(?:\[(\w+)\])?: ")


# Polars refuses `.str.*` on an extension dtype while resolving the plan, before any plugin
# runs: "expected String type, got: ext[ghost[string]]" (the extension's display name)
# (or, for functions whose output type does not look at the input, at run time: "expected
# `String`, got `ext[ghost[string]]`")
_STR_ON_CIPHERTEXT = re.compile(r"expected `?String`?(?: type)?, got:? `?ext\[ghost\[(\w+)\]\]")
_FAILED_EXPR = re.compile(r"This error occurred in the following expression:\s*\n\s*(.+)")


def string_op_error(e: BaseException) -> UnsupportedOperation | None:
    """The typed error for a Polars string function (``pl.col(c).str.*``) applied to an
    encrypted column, naming the ciphertext operations to use instead; ``None`` for any other error."""
    msg = str(e)
    m = _STR_ON_CIPHERTEXT.search(msg)
    if m is None:
        return None
    where = _FAILED_EXPR.search(msg)
    expr = f" ({where[1].strip()})" if where else ""
    return UnsupportedOperation(
        f"Polars string functions (.str.*) do not run on an encrypted column{expr}: it holds ciphertext, "
        f"not {m[1]} values. Use pl.col(name).ghost.starts_with / ghost.ends_with / ghost.contains (encrypt "
        f"with gp.text(prefix=..., suffix=..., substring=...), grant gp.allow.search), ghost.eq / ghost.is_in "
        f"for equality (match=True), gp.similarity for string similarity (fuzzy=True), or ghost.decrypt() "
        f"under a decrypt grant"
    )


def arithmetic_error(e: BaseException) -> UnsupportedOperation | None:
    """The typed error for plain Polars arithmetic or comparison between values on an encrypted
    column (Polars refuses the extension dtype), pointing to ``gp.compute``; ``None`` otherwise."""
    msg = str(e)
    if "ghost" not in msg or not (
        "operation not supported for dtype" in msg
        or "could not evaluate" in msg
        or "supertype" in msg
        or "arithmetic" in msg
    ):
        return None
    where = _FAILED_EXPR.search(msg)
    expr = f" ({where[1].strip()})" if where else ""
    return UnsupportedOperation(
        f"plain Polars arithmetic and comparisons do not run on an encrypted column{expr}: it holds ciphertext. "
        f"Compute per row under FHE with gp.compute(frame, expr, session=...) (grant gp.allow.compute; see "
        f"docs/rowwise.md), compare against constants with ghost.lt/le/gt/ge/between, or aggregate with "
        f"ghost.sum / gp.linear_sum"
    )


def from_polars(e: BaseException) -> GhostError | None:
    """The ghostpii error carried by a Polars error raised from a ghostpii kernel (its message
    holds ``ghostpii: ...``), or ``None`` for any other error."""
    msg = str(e)
    at = msg.find(PREFIX)
    if at < 0:
        return string_op_error(e) or arithmetic_error(e)
    text = msg[at + len(PREFIX) :].split("\n\n", 1)[0].strip()  # without Polars' plan context
    m = _RELAY.match(text)
    if m and m[1] in _RELAYED:
        cls, reason = _RELAYED[m[1]]
        text = text[m.end() :]
        if issubclass(cls, KeyhostError):
            return cls(text, reason=m[2] or reason or "internal")
        return cls(text)
    if any(w in text for w in ("is corrupt", "corrupt ciphertext", "no ghostpii metadata", "does not match")):
        return CiphertextError(text)
    # Polars reports every plugin error as a ComputeError: the message tells the kind. What is
    # left is a request the column cannot serve (no facet, wrong dtype, wrong constant, ...),
    # except failures to obtain tokens.
    if "session" in text or "token" in text:
        return GhostError(text)
    return UnsupportedOperation(text)


@contextmanager
def ghost_errors() -> Iterator[None]:
    """Re-raise Polars errors of ghostpii kernels as the matching :class:`GhostError` subclass
    (chained to the Polars error). ``lf.ghost.collect`` and ``gp.reveal`` run inside it; wrap a
    plain ``.collect()`` with it to get the same types there."""
    try:
        yield
    except pl.exceptions.PolarsError as e:
        err = from_polars(e)
        if err is None:
            raise
        raise err from e
