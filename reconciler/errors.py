"""The exception tree of typeform-reconciler.

Every error the tool raises on purpose is a ``ReconcileError``; the CLI maps those to exit code 1
and anything else to exit code 3 ("please report this"). Each class says whether retrying the same
operation could succeed (``transient``), which is what the client's retry loop and the watch loop's
back-off read. Messages are written for the person at the terminal: they name the form / tag /
file involved and what to do, and never contain a token, a secret or request headers.

::

    ReconcileError                          (terminal unless noted)
    ├── ManifestError                       bad desired state: carries every Diagnostic found
    ├── ConfigError                         bad flags / environment (missing token, bad --api-url)
    ├── SecretResolutionError               {env: NAME} unset, {file: PATH} unreadable
    ├── StateError                          state file unreadable or from a newer version
    │   └── LockHeldError                   another apply / watch --heal holds the lock
    ├── PlanError                           a plan refused before any write
    │   ├── StalePlanError                  saved plan no longer matches live webhooks
    │   └── UnsafePlanError                 too many deletions, or would empty an account
    ├── ApplyError                          one or more writes failed (the results are attached)
    ├── LocalWriteError                     state or records could not be written after API writes
    ├── RefreshError        (from the accounts) drift could not read every account
    └── APIError                            anything the Typeform API (or the way to it) said
        ├── AuthenticationError  systemic   401 / 403: token missing, wrong, or lacking scope
        ├── NotFoundError
        │   ├── FormNotFoundError           unknown form, or not readable with this token
        │   └── WebhookNotFoundError        no webhook with that tag on the form
        ├── ValidationAPIError              400: the API rejected the request body
        ├── RateLimitedError    transient   429 still returned after every retry
        ├── ServerError         transient   5xx / 408 still returned after every retry
        ├── UnexpectedAPIError              any other status
        └── TransportError      transient   connection refused / reset, timeouts, TLS errors
                                (systemic when nothing could connect: refused, DNS)

    Interrupted (BaseException, not an error)  SIGINT / SIGTERM stopped the run cleanly
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconciler.models import Diagnostic

__all__ = [
    "APIError",
    "ApplyError",
    "AuthenticationError",
    "ConfigError",
    "FormNotFoundError",
    "Interrupted",
    "LocalWriteError",
    "LockHeldError",
    "ManifestError",
    "NotFoundError",
    "PlanError",
    "RateLimitedError",
    "ReconcileError",
    "RefreshError",
    "SecretResolutionError",
    "ServerError",
    "StalePlanError",
    "StateError",
    "TransportError",
    "UnexpectedAPIError",
    "UnsafePlanError",
    "ValidationAPIError",
    "WebhookNotFoundError",
]


class ReconcileError(Exception):
    """Base of every error the tool raises deliberately. ``str(err)`` is the user-facing message.

    ``transient``: the same operation may succeed later (back off and retry). ``systemic``: the
    failure is about the whole account (bad token, API unreachable), so asking again for the next
    form is pointless: its run stops at the first such error.
    """

    transient: bool = False
    systemic: bool = False


class ManifestError(ReconcileError):
    """The manifests are invalid; ``diagnostics`` holds every problem found, not just the first."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = tuple(diagnostics)
        lines = [d.render() for d in self.diagnostics]
        super().__init__("\n".join(lines) if lines else "invalid manifests")


class ConfigError(ReconcileError):
    """A flag, environment variable or account setting is missing or malformed."""


class SecretResolutionError(ReconcileError):
    """A secret reference could not be resolved. The message names the reference, never a value."""


class StateError(ReconcileError):
    """The state file cannot be read or written."""


class LockHeldError(StateError):
    """Another process holds the apply lock of this state file."""


class PlanError(ReconcileError):
    """A plan was refused before anything was written."""


class StalePlanError(PlanError):
    """A saved plan was made against live webhooks that have changed since."""


class UnsafePlanError(PlanError):
    """A plan would delete more than allowed, or every managed webhook of an account."""


class ApplyError(ReconcileError):
    """Some writes of an apply failed; the others ran. ``results`` are the operation records."""

    def __init__(self, message: str, results: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.results = tuple(results)


class RefreshError(ReconcileError):
    """Some accounts could not be refreshed, so no complete report can be made.

    ``transient`` and ``retry_after`` summarise the accounts' errors: ``watch`` backs off and
    tries again when every failure may pass, and stops when one cannot (a refused token).
    """

    def __init__(
        self, message: str, *, transient: bool, systemic: bool, retry_after: float | None
    ) -> None:
        super().__init__(message)
        self.transient = transient
        self.systemic = systemic
        self.retry_after = retry_after


class LocalWriteError(ReconcileError):
    """Writing the state or the records failed after API writes landed; further writes stopped."""


class Interrupted(BaseException):
    """A signal (SIGINT, SIGTERM) stopped the run after cleaning up; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum


class APIError(ReconcileError):
    """An error answered by the Typeform API, or met on the way to it.

    ``status`` is the HTTP status (``None`` for transport errors); ``code``, ``description`` and
    ``details`` are Typeform's error body fields when it sent one; ``attempts`` how many times the
    request was sent before giving up (for operation records).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        description: str | None = None,
        details: Sequence[Any] = (),
        form_id: str | None = None,
        tag: str | None = None,
        attempts: int = 1,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.retry_after = retry_after
        self.status = status
        self.code = code
        self.description = description
        self.details = tuple(details)
        self.form_id = form_id
        self.tag = tag


class AuthenticationError(APIError):
    """401 or 403: the token is missing, invalid, or lacks the webhooks scopes."""

    systemic = True


class NotFoundError(APIError):
    """404 of some kind."""


class FormNotFoundError(NotFoundError):
    """The form does not exist, or this token cannot read it."""


class WebhookNotFoundError(NotFoundError):
    """The form has no webhook with this tag."""


class ValidationAPIError(APIError):
    """400: the API rejected the request body."""


class RateLimitedError(APIError):
    """429 still returned after every retry."""

    transient = True


class ServerError(APIError):
    """5xx (or 408) still returned after every retry."""

    transient = True


class UnexpectedAPIError(APIError):
    """A status the client has no specific meaning for."""


class TransportError(APIError):
    """No HTTP answer at all: refused, reset, timed out, TLS failure.

    ``systemic`` when no connection could be made at all (refused, DNS): then the account's API
    is unreachable, not one request unlucky.
    """

    transient = True

    def __init__(self, message: str, *, unreachable: bool = False, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.systemic = unreachable
