"""Request and lookup metrics kept as plain counters, exported at scrape time.

``prometheus_client`` metric objects take a lock per update; on the hot path
that costs more than the lookup, so requests are counted in plain Python
objects touched only by the event-loop thread, and :class:`RequestStats`
turns them into Prometheus families when ``/metrics`` is scraped.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ipchecking.controlsync import ControlSync
from ipchecking.holder import VersionHolder
from ipchecking.redislink import RedisLink

#: Upper bounds (seconds) of the latency histogram buckets; +Inf is implied.
LATENCY_BOUNDS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
LOOKUP_RESULTS = ("blocked", "allowed", "invalid", "unavailable")


class RouteStats:
    """Count, total and bucketed latency of one (route, method, status)."""

    __slots__ = ("buckets", "count", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.buckets = [0] * (len(LATENCY_BOUNDS) + 1)

    def observe(self, seconds: float) -> None:
        """Record one request that took ``seconds``. O(log buckets)."""
        self.count += 1
        self.total += seconds
        self.buckets[bisect_left(LATENCY_BOUNDS, seconds)] += 1


class RequestStats(Collector):
    """Per-route request counters and lookup results of one app instance."""

    def __init__(self) -> None:
        self._routes: dict[tuple[str, str, str], RouteStats] = {}
        self.lookups = dict.fromkeys(LOOKUP_RESULTS, 0)

    def route(self, route: str, method: str, status: int) -> RouteStats:
        """The stats record of one (route, method, status), created on first use."""
        key = (route, method, str(status))
        stats = self._routes.get(key)
        if stats is None:
            stats = self._routes[key] = RouteStats()
        return stats

    def collect(self) -> Iterator[Metric]:
        """Prometheus families for requests, latency and lookups."""
        labels = ["route", "method", "status"]
        requests = CounterMetricFamily(
            "blocklist_http_requests", "HTTP requests by route and status.", labels=labels
        )
        latency = HistogramMetricFamily(
            "blocklist_http_request_duration_seconds",
            "Time to answer, by route and status.",
            labels=labels,
        )
        for key, stats in list(self._routes.items()):
            requests.add_metric(list(key), stats.count)
            cumulative, running = [], 0
            for bound, count in zip((*LATENCY_BOUNDS, float("inf")), stats.buckets, strict=True):
                running += count
                cumulative.append((_bound_label(bound), running))
            latency.add_metric(list(key), cumulative, stats.total)
        lookups = CounterMetricFamily("blocklist_lookups", "check_ip answers by result.", labels=["result"])
        for result, count in self.lookups.items():
            lookups.add_metric([result], count)
        yield from (requests, latency, lookups)


class VersionCollector(Collector):
    """Served version number, its age and each feed's data age, read at scrape."""

    def __init__(self, holder: VersionHolder, clock: Callable[[], float] = time.time) -> None:
        self._holder = holder
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        """Gauges describing the served version (none before one is loaded)."""
        version = self._holder.version
        loaded = GaugeMetricFamily("blocklist_version_loaded", "1 once a version is served.")
        loaded.add_metric([], 1 if version else 0)
        yield loaded
        if version is None:
            return
        now = self._clock()
        number = GaugeMetricFamily("blocklist_version", "Number of the served version.")
        number.add_metric([], version.number)
        age = GaugeMetricFamily("blocklist_version_age_seconds", "Age of the served version.")
        age.add_metric([], now - version.built_at)
        ranges = GaugeMetricFamily("blocklist_ranges", "Disjoint ranges in the served version.")
        ranges.add_metric([], version.index.ranges)
        feed_age = GaugeMetricFamily(
            "blocklist_feed_age_seconds",
            "Time since the served data of each feed was fetched.",
            labels=["feed"],
        )
        for feed in version.feeds:
            if feed.fetched_at is not None:
                feed_age.add_metric([feed.name], now - feed.fetched_at)
        yield from (number, age, ranges, feed_age)


class ControlCollector(Collector):
    """What this process holds of overrides and reputation, and whether it follows the store."""

    def __init__(self, sync: ControlSync) -> None:
        self._sync = sync

    def collect(self) -> Iterator[Metric]:
        """Gauges read from the process's view at scrape."""
        view = self._sync.view
        now = view.clock()
        overrides = GaugeMetricFamily(
            "blocklist_overrides", "Active overrides held for lookups, by action.", labels=["action"]
        )
        active = [o for o in view.overrides.values() if o.active(now)]
        for action in ("allow", "block"):
            overrides.add_metric([action], sum(1 for o in active if o.action == action))
        now_ms = now * 1000
        blocked = GaugeMetricFamily(
            "blocklist_reputation_blocked", "Reputation keys (addresses, IPv6 networks) blocked now."
        )
        blocked.add_metric(
            [], sum(1 for t in (view.blocked4, view.blocked6) for u in t.values() if u > now_ms)
        )
        following = GaugeMetricFamily(
            "blocklist_control_up", "1 while overrides, reputation and keys are followed without error."
        )
        status = self._sync.status()
        following.add_metric([], 1 if status["loaded"] and status["last_error"] is None else 0)
        yield from (overrides, blocked, following)


class RedisCollector(Collector):
    """Distributed mode: is Redis reachable, which version it holds, errors seen."""

    def __init__(self, link: RedisLink) -> None:
        self._link = link

    def collect(self) -> Iterator[Metric]:
        """Gauges and a counter read from the process's :class:`RedisLink`."""
        link = self._link
        up = GaugeMetricFamily("blocklist_redis_up", "1 if the last Redis command succeeded.")
        up.add_metric([], 1 if link.reachable else 0)
        errors = CounterMetricFamily("blocklist_redis_errors", "Failed Redis commands and timeouts.")
        errors.add_metric([], link.errors)
        yield from (up, errors)
        if link.redis_version is not None:
            number = GaugeMetricFamily("blocklist_redis_version", "Number of the version Redis holds.")
            number.add_metric([], link.redis_version)
            yield number


def _bound_label(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)
