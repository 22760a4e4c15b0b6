"""The exception tree the API and updater rely on to map errors."""

from __future__ import annotations

import pytest

from blocklist import errors


@pytest.mark.parametrize(
    "exc",
    [
        errors.ConfigError,
        errors.InvalidAddress,
        errors.NoData,
        errors.BackendUnavailable,
        errors.FeedError,
        errors.FetchError,
        errors.FeedParseError,
        errors.FeedRefused,
        errors.SnapshotError,
    ],
)
def test_every_error_derives_from_blocklist_error(exc: type[Exception]) -> None:
    assert issubclass(exc, errors.BlocklistError)


@pytest.mark.parametrize("exc", [errors.FetchError, errors.FeedParseError, errors.FeedRefused])
def test_feed_failures_are_feed_errors(exc: type[Exception]) -> None:
    """The updater records any FeedError per feed and keeps the last good list."""
    assert issubclass(exc, errors.FeedError)


def test_config_and_address_errors_are_value_errors() -> None:
    assert issubclass(errors.ConfigError, ValueError)
    assert issubclass(errors.InvalidAddress, ValueError)
    assert not issubclass(errors.FeedError, ValueError)


def test_invalid_address_carries_its_reason() -> None:
    exc = errors.InvalidAddress("empty address")
    assert exc.reason == "empty address"
    assert str(exc) == "empty address"
