"""Errors a person can cause (an operator at the CLI, a reviewer on a page, a script on the API).

One definition for every use case: the admin app maps `status` to the HTTP status and the
message to `{"error": message}`, the CLI prints the message and exits non-zero. Use cases
raise these; nothing else needs to know about HTTP."""

from __future__ import annotations


class UserError(Exception):
    """Base of the errors a caller can fix; `status` is the HTTP status it maps to."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Invalid(UserError):
    status = 400


class NotFound(UserError):
    status = 404


class Conflict(UserError):
    """The request is valid but the state forbids it (decided twice, sent twice)."""

    status = 409
