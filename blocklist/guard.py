"""Sanity checks a freshly parsed feed must pass before it may replace the
last good one. Pure functions: the caller decides what to do on refusal
(keep serving the last good version, count and report the refusal).
"""

from __future__ import annotations

from blocklist.errors import FeedRefused
from blocklist.feedparsers import ParsedFeed


def check_feed(parsed: ParsedFeed, previous_entries: int | None, shrink_threshold: float) -> None:
    """Raise :class:`FeedRefused` if ``parsed`` looks wrong.

    Refused: a feed with no entries at all, or one with fewer than
    ``shrink_threshold`` times the entries of the last good version of the
    same feed (``previous_entries``; None when there is none yet).
    """
    if parsed.entries == 0:
        raise FeedRefused("feed has no entries")
    if previous_entries and parsed.entries < previous_entries * shrink_threshold:
        share = parsed.entries / previous_entries
        raise FeedRefused(
            f"feed shrank to {parsed.entries} entries, {share:.0%} of the last good "
            f"{previous_entries} (threshold {shrink_threshold:.0%})"
        )
