"""The errors every Tardis component raises, each with a one-line message for users.

Cores raise these; the gRPC adapters turn them into status codes and the gRPC clients
turn the codes back into the same classes, so callers see one behaviour either way.
"""

from __future__ import annotations


class TardisError(Exception):
    """Base of all expected failures: the message is shown to the user as one line."""

    grpc_code = "INTERNAL"
    exit_code = 1


class NotFound(TardisError):
    grpc_code = "NOT_FOUND"


class AlreadyExists(TardisError):
    grpc_code = "ALREADY_EXISTS"


class InvalidArgument(TardisError):
    grpc_code = "INVALID_ARGUMENT"


class Conflict(TardisError):
    """A precondition does not hold: a held lease, a stale fence, a completed set."""

    grpc_code = "FAILED_PRECONDITION"


class VersionMismatch(TardisError):
    grpc_code = "FAILED_PRECONDITION"


class Unavailable(TardisError):
    grpc_code = "UNAVAILABLE"


class PermissionDenied(TardisError):
    grpc_code = "PERMISSION_DENIED"


class Unauthenticated(TardisError):
    """No valid login: a wrong password, a missing, expired or forged token."""

    grpc_code = "UNAUTHENTICATED"


class Throttled(TardisError):
    """Too many failed logins in a row: the caller must wait before trying again."""

    grpc_code = "RESOURCE_EXHAUSTED"


class Corrupt(TardisError):
    grpc_code = "DATA_LOSS"


class ConfigError(TardisError):
    exit_code = 2


class NoSpace(TardisError):
    """A disk the repository lives on is full (ENOSPC, EDQUOT, SQLite's "database or disk is full")."""

    grpc_code = "RESOURCE_EXHAUSTED"


# Status code name -> class used when no class marker travels with the status.
BY_CODE: dict[str, type[TardisError]] = {
    "NOT_FOUND": NotFound,
    "ALREADY_EXISTS": AlreadyExists,
    "INVALID_ARGUMENT": InvalidArgument,
    "FAILED_PRECONDITION": Conflict,
    "UNAVAILABLE": Unavailable,
    "PERMISSION_DENIED": PermissionDenied,
    "UNAUTHENTICATED": Unauthenticated,
    "RESOURCE_EXHAUSTED": Throttled,
    "DATA_LOSS": Corrupt,
}

BY_NAME: dict[str, type[TardisError]] = {
    cls.__name__: cls
    for cls in (
        TardisError,
        NotFound,
        AlreadyExists,
        InvalidArgument,
        Conflict,
        VersionMismatch,
        Unavailable,
        PermissionDenied,
        Unauthenticated,
        Throttled,
        Corrupt,
        ConfigError,
        NoSpace,
    )
}
