"""Why a service refuses a request, in three kinds every surface maps the same way (the API: 404, 422, 400, 409)."""

from __future__ import annotations


class ServiceError(ValueError):
    """A request the service refuses: `not_found` (it names something that does not exist), `invalid` (it cannot
    be carried out as asked), otherwise a conflict with the current state (e.g. acknowledging a closed ticket)."""

    def __init__(
        self,
        message: str,
        *,
        not_found: bool = False,
        invalid: bool = False,
        malformed: bool = False,
        forbidden: bool = False,
    ) -> None:
        super().__init__(message)
        self.not_found = not_found
        self.invalid = invalid
        self.malformed = malformed  # the request itself is unreadable (e.g. a cursor this service did not issue)
        self.forbidden = forbidden  # the caller's role may not do this (whistle.access)


class NotFound(ServiceError):
    """The request names something that does not exist (or that the caller may not see)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, not_found=True)


class Malformed(ServiceError):
    """The request itself cannot be read (a cursor or an id this service did not issue)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, malformed=True)


class Invalid(ServiceError):
    """The request cannot be carried out as asked."""

    def __init__(self, message: str) -> None:
        super().__init__(message, invalid=True)


def uuid_text(value: str, what: str = "id") -> str:
    """`value` as a canonical UUID string, or Malformed (a 400, not a database error) naming `what`."""
    import uuid

    try:
        return str(uuid.UUID(str(value)))
    except (ValueError, AttributeError, TypeError) as exc:
        raise Malformed(f"{what} {str(value)[:40]!r} is not a UUID") from exc


class Forbidden(ServiceError):
    """The caller's role may not do this (what is outside their scope is NotFound instead)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, forbidden=True)
