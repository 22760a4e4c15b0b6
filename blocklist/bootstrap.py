"""The dated ipsum snapshot bundled with the package.

A fresh install with no network answers from it until the first successful
sync; it is always reported as stale, with its date.
"""

from __future__ import annotations

from importlib import resources

#: Publication date of the bundled file (its "Last update" header).
BOOTSTRAP_DATE = "2026-08-22"
BOOTSTRAP_FEED = "ipsum"
_RESOURCE = f"ipsum-{BOOTSTRAP_DATE}.txt.gz"


def bootstrap_source() -> str:
    """A description of the bundled file, shown as the feed's source."""
    return f"bundled:{_RESOURCE}"


def read_bootstrap() -> bytes:
    """The bundled feed, gzip-compressed, as shipped in the package."""
    return resources.files("blocklist").joinpath("data", _RESOURCE).read_bytes()
