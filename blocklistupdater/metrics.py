"""Prometheus metrics of the sync pipeline (default registry).

Defining metrics opens nothing; they are exported by whichever process
serves ``/metrics``: the API in embedded mode, the worker's own metrics port
(``BLOCKLIST_METRICS_PORT``) in distributed mode.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

SYNC_OUTCOMES = Counter(
    "blocklist_feed_syncs",
    "Feed sync attempts by outcome (updated, not_modified, refused, failed).",
    ["feed", "outcome"],
)
FEED_ENTRIES = Gauge("blocklist_feed_entries", "Entries in the feed's last good content.", ["feed"])
FEED_LAST_SUCCESS = Gauge(
    "blocklist_feed_last_success_timestamp_seconds",
    "When the feed was last fetched or confirmed unchanged.",
    ["feed"],
)
VERSION_PUBLISHED = Gauge("blocklist_published_version", "Number of the last published version.")
