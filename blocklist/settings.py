"""Typed settings, read once from the environment (prefix ``BLOCKLIST_``).

Build one :class:`Settings` at process start and pass it down; nothing in the
project reads the environment anywhere else.

Feeds are given as ``BLOCKLIST_FEEDS``: comma-separated items, each either a
preset name (see :data:`PRESETS`) or ``name=source`` / ``name=format:source``
where source is an ``http(s)://`` URL, a ``file://`` URL or a plain path.
"""

from __future__ import annotations

import math
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import platformdirs
from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from blocklist.errors import ConfigError
from blocklist.feedparsers import FeedFormat
from blocklist.reputation import Policy, Violation, parse_violations

#: Well-known feeds selectable by name alone, with their format.
PRESETS: dict[str, tuple[FeedFormat, str]] = {
    "ipsum": (
        FeedFormat.IPSUM,
        "https://raw.githubusercontent.com/stamparm/ipsum/master/ipsum.txt",
    ),
    "spamhaus_drop": (FeedFormat.SPAMHAUS, "https://www.spamhaus.org/drop/drop.txt"),
    "spamhaus_edrop": (FeedFormat.SPAMHAUS, "https://www.spamhaus.org/drop/edrop.txt"),
    "spamhaus_dropv6": (FeedFormat.SPAMHAUS, "https://www.spamhaus.org/drop/dropv6.txt"),
    "firehol_level1": (
        FeedFormat.NETSET,
        "https://raw.githubusercontent.com/firehol/blocklist-ipsets/master/firehol_level1.netset",
    ),
    "firehol_level2": (
        FeedFormat.NETSET,
        "https://raw.githubusercontent.com/firehol/blocklist-ipsets/master/firehol_level2.netset",
    ),
}
ALLOWED_SCHEMES = ("http", "https", "file")
DEFAULT_VIOLATIONS = "failed_login:5:50,spam:20:0,scan:40:0"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", re.ASCII)
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True, slots=True)
class FeedSpec:
    """One configured feed: a unique name, where to get it, how to read it."""

    name: str
    source: str
    format: FeedFormat = FeedFormat.AUTO
    interval: float | None = None

    @property
    def is_http(self) -> bool:
        """True if the source is fetched over HTTP(S)."""
        return self.source.lower().startswith(("http://", "https://"))


def parse_duration(text: str | float) -> float:
    """Seconds from ``90``, ``90s``, ``30m``, ``24h`` or ``1d``; must be > 0."""
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        match = _DURATION.match(text.lower())
        if not match:
            raise ConfigError(f"not a duration: {text!r} (use e.g. 90s, 30m, 24h, 1d)")
        seconds = float(match[1]) * _UNIT_SECONDS[match[2]]
    if not (0 < seconds < math.inf):
        raise ConfigError(f"duration must be positive and finite: {text!r}")
    return seconds


def parse_feed_specs(text: str) -> tuple[FeedSpec, ...]:
    """Parse the ``BLOCKLIST_FEEDS`` syntax; raises :class:`ConfigError`."""
    specs: list[FeedSpec] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if "=" not in item:
            if item not in PRESETS:
                known = ", ".join(PRESETS)
                raise ConfigError(f"unknown feed preset {item!r} (known: {known})")
            fmt, url = PRESETS[item]
            specs.append(FeedSpec(item, url, fmt))
            continue
        name, _, rest = (s.strip() for s in item.partition("="))
        if not _NAME.match(name):
            raise ConfigError(f"bad feed name {name!r}: use lowercase letters, digits, _ . -")
        fmt = FeedFormat.AUTO
        prefix, sep, after = rest.partition(":")
        if sep and prefix.lower() in FeedFormat.__members__.values():
            fmt, rest = FeedFormat(prefix.lower()), after
        specs.append(FeedSpec(name, _check_source(rest), fmt))
    if not specs:
        raise ConfigError("no feeds configured")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"feed names must be unique: {names}")
    return tuple(specs)


def parse_host_ports(text: str) -> tuple[tuple[str, int], ...]:
    """``host:port,host:port`` (IPv6 hosts in brackets) as pairs; raises ConfigError."""
    pairs: list[tuple[str, int]] = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        host, sep, port = item.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"not host:port: {item!r}")
        pairs.append((host, int(port)))
    return tuple(pairs)


def _check_source(source: str) -> str:
    if not source:
        raise ConfigError("empty feed source")
    scheme = urlsplit(source).scheme.lower()
    if scheme and len(scheme) > 1 and scheme not in ALLOWED_SCHEMES:
        raise ConfigError(f"feed scheme {scheme!r} not allowed (use http, https, file or a path)")
    if scheme in ("http", "https") and not urlsplit(source).netloc:
        raise ConfigError(f"feed URL has no host: {source!r}")
    return source


class Settings(BaseSettings):
    """Settings of both processes. Environment variables: ``BLOCKLIST_<NAME>``.

    ``REDIS_URL`` (no prefix) selects distributed mode; unset means embedded.
    """

    model_config = SettingsConfigDict(env_prefix="BLOCKLIST_", frozen=True, extra="ignore")

    feeds: Annotated[tuple[FeedSpec, ...], NoDecode] = Field(
        default=parse_feed_specs("ipsum"),
        description="Comma-separated presets or name=[format:]source items.",
    )
    feed_intervals: Annotated[dict[str, float], NoDecode] = Field(
        default_factory=dict, description="Per-feed refresh, e.g. 'ipsum=12h,spamhaus_drop=1h'."
    )
    refresh_interval: float = Field(default=24 * 3600.0, description="Default refresh, seconds.")
    state_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_state_dir("blocklist", appauthor=False)),
        description="Where embedded mode keeps the last good feeds and version.",
    )
    shrink_threshold: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Refuse a feed below this share of its last size."
    )
    bootstrap: bool = Field(default=True, description="Serve the bundled snapshot until a sync.")
    min_score: int = Field(default=0, ge=0, description="Drop scored entries below this score.")
    broadest_prefix_v4: int = Field(
        default=8, ge=0, le=32, description="Refuse a feed with a broader IPv4 entry (0: allow any)."
    )
    broadest_prefix_v6: int = Field(
        default=16, ge=0, le=128, description="Refuse a feed with a broader IPv6 entry (0: allow any)."
    )
    max_download_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    build_process: bool = Field(
        default=True,
        description=(
            "Embedded mode: parse feeds and compile versions in a child process, so a rebuild never "
            "stalls answers; off: in a thread of the API process."
        ),
    )
    http_timeout: float = Field(default=30.0, gt=0, description="Per-operation HTTP timeout, s.")
    download_timeout: float = Field(default=300.0, gt=0, description="Whole-download limit, s.")
    retry_attempts: int = Field(default=5, ge=1, description="Fetch attempts per sync.")
    retry_max_seconds: float = Field(default=300.0, gt=0, description="Give up retrying after.")
    retry_initial_wait: float = Field(default=1.0, ge=0, description="First backoff wait, s.")
    retry_max_wait: float = Field(default=60.0, ge=0, description="Longest single backoff, s.")
    user_agent: str = "blocklist-service/0.1 (+https://github.com/stamparm/ipsum)"
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "BLOCKLIST_REDIS_URL")
    )
    redis_read_url: str | None = Field(
        default=None, description="Redis to read from (a replica); defaults to REDIS_URL."
    )
    redis_timeout: float = Field(default=2.0, gt=0, description="Redis connect/command timeout, s.")
    redis_sentinels: Annotated[tuple[tuple[str, int], ...], NoDecode] = Field(
        default=(), description="Sentinels 'host:port,host:port'; when set, they name the primary."
    )
    redis_sentinel_service: str = Field(default="mymaster", description="Service the sentinels monitor.")
    redis_password: SecretStr | None = Field(
        default=None, description="Password of Redis servers found through the sentinels."
    )
    redis_sentinel_password: SecretStr | None = Field(default=None, description="Password of the sentinels.")
    lookup: Literal["local", "live"] = Field(
        default="local", description="API replicas: answer from memory (local) or ask Redis (live)."
    )
    live_timeout: float = Field(default=0.05, gt=0, description="Live mode: Redis deadline per lookup, s.")
    redis_max_connections: int = Field(
        default=64, ge=1, description="Live mode: connections per API process to Redis."
    )
    worker_id: str = Field(
        default_factory=socket.gethostname, min_length=1, description="Names this worker's heartbeat key."
    )
    metrics_port: int | None = Field(
        default=None, ge=1, le=65535, description="Worker: serve Prometheus /metrics on this port."
    )
    metrics_host: str = Field(default="127.0.0.1", description="Worker: address the metrics port binds.")
    publish_lock_ttl: float = Field(default=120.0, gt=0, description="Publish lock lifetime, s.")
    publish_lock_wait: float = Field(
        default=30.0, ge=0, description="How long a second updater waits for the lock, s."
    )
    temp_key_ttl: float = Field(
        default=600.0, ge=1, description="Lifetime of a version's keys until swapped in, s."
    )
    version_poll_interval: float = Field(
        default=5.0, gt=0, description="Fallback poll of the live version number, s."
    )
    keep_versions: int = Field(default=5, ge=1, description="Versions kept in Redis for history.")
    history_retention: Annotated[dict[str, float], NoDecode] = Field(
        default_factory=lambda: {"": 90 * 86400.0},
        description=(
            "How long history (intervals, diffs, versions, labels) is kept after it ends: a duration "
            "('90d'; '0' keeps everything), optionally with per-feed overrides ('90d,ipsum=30d')."
        ),
    )
    history_purge_interval: float = Field(default=3600.0, gt=0, description="How often history is purged, s.")
    heartbeat_ttl: float = Field(default=60.0, gt=0, description="Worker heartbeat lifetime, s.")
    log_level: str = "INFO"
    access_log: bool = Field(default=False, description="One log line per request (costly).")
    cache_max_age: int = Field(
        default=300, ge=0, description="Cache-Control max-age of /check_ip answers, s (0: no-cache)."
    )
    server: Literal["uvicorn", "granian"] = Field(
        default="uvicorn", description="HTTP server of python -m ipchecking (--server overrides)."
    )
    api_keys: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="SHA-256 hex digests of the accepted API keys, comma-separated."
    )
    protect: Literal["none", "status", "all"] = Field(
        default="none",
        description="Endpoints behind an API key: status (status, metrics, docs) or all (also check_ip).",
    )
    violations: Annotated[tuple[Violation, ...], NoDecode] = Field(
        default=parse_violations(DEFAULT_VIOLATIONS),
        description="Report kinds, 'name:penalty:decrease_limit,...' (as in iprepd).",
    )
    reputation_decay_points: int = Field(
        default=1, ge=1, le=100, description="Points recovered per interval."
    )
    reputation_decay_interval: float = Field(default=60.0, gt=0, description="Recovery interval, s.")
    reputation_block_below: int = Field(
        default=50, ge=0, le=101, description="An address is blocked while its reputation is below this."
    )
    reputation_ipv6_prefix: int = Field(
        default=64,
        ge=1,
        le=128,
        description="IPv6 reports count against the address's network of this length.",
    )
    control_wait_timeout: float = Field(
        default=1.0, ge=0, description="Distributed: how long a change waits for a replica to have it, s."
    )

    @field_validator("feeds", mode="before")
    @classmethod
    def _parse_feeds(cls, value: object) -> object:
        return parse_feed_specs(value) if isinstance(value, str) else value

    @field_validator("redis_sentinels", mode="before")
    @classmethod
    def _parse_sentinels(cls, value: object) -> object:
        return parse_host_ports(value) if isinstance(value, str) else value

    @field_validator("feed_intervals", mode="before")
    @classmethod
    def _parse_intervals(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        out: dict[str, float] = {}
        for item in filter(None, (p.strip() for p in value.split(","))):
            name, sep, duration = item.partition("=")
            if not sep:
                raise ConfigError(f"feed interval {item!r} is not name=duration")
            out[name.strip()] = parse_duration(duration)
        return out

    @field_validator("history_retention", mode="before")
    @classmethod
    def _parse_retention(cls, value: object) -> object:
        if isinstance(value, int | float):
            value = str(value)
        if not isinstance(value, str):
            return value
        out: dict[str, float] = {"": 90 * 86400.0}
        for item in filter(None, (p.strip() for p in value.split(","))):
            name, _, duration = item.rpartition("=")
            out[name.strip()] = 0.0 if duration.strip() in {"0", "0s", "0d"} else parse_duration(duration)
        return out

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_api_keys(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        digests = tuple(
            filter(None, (item.strip().lower().removeprefix("sha256:") for item in value.split(",")))
        )
        for digest in digests:
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                # Never echo the value: it may be a key pasted by mistake.
                raise ConfigError("BLOCKLIST_API_KEYS holds SHA-256 hex digests of keys, not keys")
        return digests

    @field_validator("violations", mode="before")
    @classmethod
    def _parse_violations(cls, value: object) -> object:
        return parse_violations(value) if isinstance(value, str) else value

    @field_validator("refresh_interval", "history_purge_interval", "reputation_decay_interval", mode="before")
    @classmethod
    def _parse_refresh(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str | int | float) else value

    @model_validator(mode="after")
    def _check_interval_names(self) -> Settings:
        unknown = set(self.feed_intervals) - {f.name for f in self.feeds}
        if unknown:
            raise ConfigError(f"feed intervals name unknown feeds: {sorted(unknown)}")
        unknown = set(self.history_retention) - {f.name for f in self.feeds} - {""}
        if unknown:
            raise ConfigError(f"history retention names unknown feeds: {sorted(unknown)}")
        return self

    @property
    def embedded(self) -> bool:
        """True when no Redis is configured: one self-contained process."""
        return not (self.redis_url or self.redis_sentinels)

    def retention_for(self, feed: str) -> float:
        """How long ``feed``'s history is kept, seconds; 0 keeps everything."""
        return self.history_retention.get(feed, self.history_retention.get("", 0.0))

    @property
    def reputation_policy(self) -> Policy:
        """How reported reputation recovers and blocks."""
        return Policy(
            self.reputation_decay_points,
            max(1, round(self.reputation_decay_interval * 1000)),
            self.reputation_block_below,
            self.reputation_ipv6_prefix,
        )

    @property
    def personal_retention_ms(self) -> int:
        """How long report comments, reputation state and the audit log are kept, ms (0: no limit).

        The default history retention: they are personal data, kept no longer than history.
        """
        return round(self.history_retention.get("", 0.0) * 1000)

    def violation(self, name: str) -> Violation | None:
        """The configured violation called ``name``."""
        return next((v for v in self.violations if v.name == name), None)

    def interval_for(self, feed: FeedSpec) -> float:
        """Refresh interval of one feed, seconds."""
        return self.feed_intervals.get(feed.name, feed.interval or self.refresh_interval)


def load_settings() -> Settings:
    """Settings from the environment; any invalid value raises :class:`ConfigError`.

    pydantic reports bad values as ``ValidationError``; entry points catch
    one error type and print it.
    """
    try:
        return Settings()
    except ValidationError as exc:
        # Without the rejected values: one may be a secret (a key, a password).
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}"
            for e in exc.errors(include_input=False)
        )
        raise ConfigError(problems) from None
