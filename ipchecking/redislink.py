"""What an API process knows of its Redis: reachable or not, why, and the
number of the version Redis holds. Shared by both distributed runtimes and
read by ``/status``, ``/readyz`` and ``/metrics``.
"""

from __future__ import annotations

import logging
from typing import Any

from blocklist.redisclient import RedisConnector

log = logging.getLogger(__name__)


class RedisLink:
    """Reachability bookkeeping for one process's Redis connector.

    State changes are logged once per transition, not once per failure, so
    an outage under load does not flood the log.
    """

    def __init__(self, connector: RedisConnector) -> None:
        self.connector = connector
        self.reachable = False
        self.last_error: str | None = None
        self.redis_version: int | None = None
        self.errors = 0

    def mark_up(self) -> None:
        """A command succeeded."""
        if not self.reachable:
            log.info("redis reachable", extra={"redis": self.connector.describe()})
        self.reachable = True
        self.last_error = None

    def mark_down(self, exc: BaseException, consequence: str) -> None:
        """A command failed with ``exc``; ``consequence`` says what the process does now."""
        self.errors += 1
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if self.reachable or self.last_error is None:
            log.warning(f"redis unreachable; {consequence}", extra={"error": error})
        self.reachable = False
        self.last_error = error

    def status(self) -> dict[str, Any]:
        """The ``redis`` object of ``/status``."""
        return {
            "url": self.connector.describe(),
            "reachable": self.reachable,
            "last_error": self.last_error,
            "version": self.redis_version,
            "errors": self.errors,
        }
