"""The project's exception tree: every error it raises on purpose derives from
:class:`BlocklistError`.

The API maps these to HTTP statuses at its edge (``InvalidAddress`` -> 422,
``NoData`` / ``BackendUnavailable`` -> 503); the updater records
``FeedError`` subclasses per feed and keeps serving the last good version.
"""

from __future__ import annotations


class BlocklistError(Exception):
    """Root of all errors raised deliberately by this project."""


class ConfigError(BlocklistError, ValueError):
    """A setting is malformed (bad feed spec, unknown format, bad duration)."""


class InvalidAddress(BlocklistError, ValueError):
    """A client-supplied string is not one plain IPv4 or IPv6 address.

    ``reason`` is a short, safe, human-readable explanation; it never echoes
    the raw input, so it can be logged and returned as is.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NoData(BlocklistError):
    """No blocklist version is loaded yet, so no answer can be given."""


class BackendUnavailable(BlocklistError):
    """The storage backend needed to answer is unreachable or too slow."""


class FeedError(BlocklistError):
    """A feed could not be turned into a usable list; the last good one stays."""


class FetchError(FeedError):
    """Downloading or reading a feed failed (network, HTTP status, size cap)."""


class FeedParseError(FeedError):
    """The feed's content is not a list of addresses (e.g. mostly malformed)."""


class FeedRefused(FeedError):
    """The feed parsed, but failed a sanity check (empty, shrank too much)."""


class SnapshotError(BlocklistError):
    """A serialized snapshot is truncated, corrupt or of an unknown format."""
