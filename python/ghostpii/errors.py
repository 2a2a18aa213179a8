"""Typed errors of ghostpii. Every error is a :class:`GhostError`."""

from __future__ import annotations

from typing import Any

from ghostpii._internal import CiphertextError, EncryptionError, GhostError

__all__ = [
    "AuthenticationError",
    "BudgetExhausted",
    "CiphertextError",
    "EncryptionError",
    "GhostError",
    "KeyhostError",
    "PermissionDenied",
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


_BY_REASON: dict[str, type[KeyhostError]] = {
    "unauthenticated": AuthenticationError,
    "token_expired": AuthenticationError,
    "token_revoked": AuthenticationError,
    "permission_denied": PermissionDenied,
    "min_rows": PermissionDenied,
    "unknown_rids": PermissionDenied,
    "audit_disclosure": PermissionDenied,
    "audit_limit": PermissionDenied,
    "budget_exhausted": BudgetExhausted,
}


def error_for(
    reason: str,
    message: str,
    *,
    status: int | None = None,
    missing_grant: dict[str, Any] | None = None,
) -> KeyhostError:
    """The typed error for a keyhost refusal ``reason``."""
    cls = _BY_REASON.get(reason, KeyhostError)
    if cls is KeyhostError and status in (401,):
        cls = AuthenticationError
    elif cls is KeyhostError and status == 403:
        cls = PermissionDenied
    return cls(message, reason=reason, status=status, missing_grant=missing_grant)
