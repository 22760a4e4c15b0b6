"""Settings: the BLOCKLIST_FEEDS syntax, durations and reading the environment."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from pydantic import ValidationError

from blocklist.errors import ConfigError
from blocklist.feedparsers import FeedFormat
from blocklist.settings import (
    PRESETS,
    FeedSpec,
    Settings,
    parse_duration,
    parse_feed_specs,
    parse_host_ports,
)

# --- parse_feed_specs ------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_name_alone_selects_its_url_and_format(name: str) -> None:
    (spec,) = parse_feed_specs(name)
    fmt, url = PRESETS[name]
    assert spec == FeedSpec(name, url, fmt)
    assert spec.is_http
    assert spec.format is not FeedFormat.AUTO


def test_several_presets_keep_their_order() -> None:
    specs = parse_feed_specs(" ipsum , spamhaus_drop,spamhaus_dropv6 ")
    assert [s.name for s in specs] == ["ipsum", "spamhaus_drop", "spamhaus_dropv6"]
    assert [s.format for s in specs] == [FeedFormat.IPSUM, FeedFormat.SPAMHAUS, FeedFormat.SPAMHAUS]


def test_name_equals_url_detects_the_format() -> None:
    (spec,) = parse_feed_specs("mine=https://example.com/list.txt")
    assert spec == FeedSpec("mine", "https://example.com/list.txt", FeedFormat.AUTO)
    assert spec.is_http


@pytest.mark.parametrize("fmt", ["ipsum", "netset", "spamhaus", "plain", "NETSET"])
def test_name_equals_format_colon_url_sets_the_format(fmt: str) -> None:
    (spec,) = parse_feed_specs(f"mine={fmt}:http://example.com/x.netset")
    assert spec.format is FeedFormat(fmt.lower())
    assert spec.source == "http://example.com/x.netset"


def test_file_url_source_is_kept_as_is() -> None:
    (spec,) = parse_feed_specs("local=file:///srv/feeds/drop.txt")
    assert spec == FeedSpec("local", "file:///srv/feeds/drop.txt", FeedFormat.AUTO)
    assert not spec.is_http


def test_file_url_with_explicit_format() -> None:
    (spec,) = parse_feed_specs("local=spamhaus:file:///srv/drop.txt")
    assert (spec.format, spec.source) == (FeedFormat.SPAMHAUS, "file:///srv/drop.txt")


@pytest.mark.parametrize("path", ["/srv/feeds/list.txt", "relative/list.txt", "./list.txt"])
def test_plain_path_source(path: str) -> None:
    (spec,) = parse_feed_specs(f"local={path}")
    assert spec.source == path
    assert not spec.is_http


def test_mixed_presets_and_custom_feeds() -> None:
    specs = parse_feed_specs("ipsum,mine=plain:/tmp/x.txt,other=https://example.com/y")
    assert [(s.name, s.format) for s in specs] == [
        ("ipsum", FeedFormat.IPSUM),
        ("mine", FeedFormat.PLAIN),
        ("other", FeedFormat.AUTO),
    ]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param("nosuchfeed", "unknown feed preset", id="unknown-preset"),
        pytest.param("ipsum,spamhaus", "unknown feed preset", id="unknown-preset-in-list"),
        pytest.param("x=gopher://example.com/list", "scheme 'gopher'", id="gopher"),
        pytest.param("x=ftp://example.com/list", "scheme 'ftp'", id="ftp"),
        pytest.param("x=javascript:alert(1)", "scheme 'javascript'", id="javascript"),
        pytest.param("x=plain:ftp://example.com/list", "scheme 'ftp'", id="ftp-with-format"),
        pytest.param("x=https://", "no host", id="url-without-host"),
        pytest.param("x=https:///path", "no host", id="url-with-empty-host"),
        pytest.param("x=", "empty feed source", id="empty-source"),
        pytest.param("x=netset:", "empty feed source", id="empty-source-after-format"),
        pytest.param("ipsum,ipsum", "unique", id="duplicate-presets"),
        pytest.param("a=/x,a=/y", "unique", id="duplicate-names"),
        pytest.param("ipsum=/x,ipsum", "unique", id="custom-shadows-preset"),
        pytest.param("", "no feeds", id="empty"),
        pytest.param(" , ,, ", "no feeds", id="only-commas"),
        pytest.param("Mine=/x", "bad feed name", id="uppercase-name"),
        pytest.param("=/x", "bad feed name", id="empty-name"),
        pytest.param("my feed=/x", "bad feed name", id="space-in-name"),
        pytest.param("_x=/x", "bad feed name", id="leading-underscore"),
        pytest.param("a" * 64 + "=/x", "bad feed name", id="name-too-long"),
    ],
)
def test_bad_feed_specs_are_config_errors(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        parse_feed_specs(text)


def test_longest_allowed_feed_name() -> None:
    (spec,) = parse_feed_specs("a" * 63 + "=/x")
    assert spec.name == "a" * 63


def test_single_letter_scheme_is_a_windows_drive_not_a_url() -> None:
    (spec,) = parse_feed_specs(r"win=C:\feeds\list.txt")
    assert spec.source == r"C:\feeds\list.txt"


# --- parse_duration --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("90s", 90.0),
        ("30m", 1800.0),
        ("24h", 86400.0),
        ("12h", 43200.0),
        ("1d", 86400.0),
        ("1.5h", 5400.0),
        (" 2 H ", 7200.0),
        ("0.5", 0.5),
        (90, 90.0),
        (2.5, 2.5),
    ],
)
def test_parse_duration_accepts_units(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["", "abc", "h", "5w", "1y", "-5", "-5m", "1 2h", "1h30m", "1e3", "1,5h", "5 minutes"],
)
def test_parse_duration_rejects_malformed_text(text: str) -> None:
    with pytest.raises(ConfigError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize("value", ["0", "0s", "0.0h", 0, -1.0])
def test_parse_duration_rejects_zero_and_negative(value: str | float) -> None:
    with pytest.raises(ConfigError, match="positive"):
        parse_duration(value)


# --- Settings from the environment -----------------------------------------


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A clean environment: no BLOCKLIST_* or REDIS_URL from the caller's shell."""
    for key in list(os.environ):
        if key.upper().startswith("BLOCKLIST_") or key.upper() == "REDIS_URL":
            monkeypatch.delenv(key)
    return monkeypatch


def test_defaults_are_embedded_ipsum_daily(env: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert [f.name for f in settings.feeds] == ["ipsum"]
    assert settings.feeds[0].format is FeedFormat.IPSUM
    assert settings.refresh_interval == 86400.0
    assert settings.embedded is True
    assert settings.redis_url is None
    assert settings.feed_intervals == {}
    assert 0.0 <= settings.shrink_threshold <= 1.0
    assert settings.interval_for(settings.feeds[0]) == 86400.0


def test_feeds_come_from_blocklist_feeds(env: pytest.MonkeyPatch) -> None:
    env.setenv("BLOCKLIST_FEEDS", "ipsum,spamhaus_drop,mine=netset:file:///srv/x.netset")
    settings = Settings()
    assert [f.name for f in settings.feeds] == ["ipsum", "spamhaus_drop", "mine"]
    assert settings.feeds[2] == FeedSpec("mine", "file:///srv/x.netset", FeedFormat.NETSET)


def test_refresh_interval_accepts_a_duration(env: pytest.MonkeyPatch) -> None:
    env.setenv("BLOCKLIST_REFRESH_INTERVAL", "12h")
    settings = Settings()
    assert settings.refresh_interval == 43200.0
    assert settings.interval_for(settings.feeds[0]) == 43200.0


def test_refresh_interval_in_plain_seconds(env: pytest.MonkeyPatch) -> None:
    env.setenv("BLOCKLIST_REFRESH_INTERVAL", "600")
    assert Settings().refresh_interval == 600.0


def test_per_feed_intervals_override_the_default(env: pytest.MonkeyPatch) -> None:
    env.setenv("BLOCKLIST_FEEDS", "ipsum,spamhaus_drop")
    env.setenv("BLOCKLIST_FEED_INTERVALS", "spamhaus_drop=1h, ipsum = 30m")
    env.setenv("BLOCKLIST_REFRESH_INTERVAL", "1d")
    settings = Settings()
    assert settings.feed_intervals == {"spamhaus_drop": 3600.0, "ipsum": 1800.0}
    ipsum, drop = settings.feeds
    assert settings.interval_for(ipsum) == 1800.0
    assert settings.interval_for(drop) == 3600.0


def test_feed_interval_for_an_unknown_feed_is_an_error(env: pytest.MonkeyPatch) -> None:
    env.setenv("BLOCKLIST_FEEDS", "ipsum")
    env.setenv("BLOCKLIST_FEED_INTERVALS", "ipsum=1h,spamhaus_drop=1h")
    with pytest.raises(ValidationError, match=r"unknown feeds: \['spamhaus_drop'\]"):
        Settings()


@pytest.mark.parametrize("value", ["ipsum", "ipsum=soon", "ipsum=0"])
def test_malformed_feed_intervals_are_errors(env: pytest.MonkeyPatch, value: str) -> None:
    env.setenv("BLOCKLIST_FEED_INTERVALS", value)
    with pytest.raises(ValidationError, match="feed_intervals"):
        Settings()


def test_bad_feed_spec_in_environment_is_an_error(env: pytest.MonkeyPatch) -> None:
    env.setenv("BLOCKLIST_FEEDS", "x=gopher://example.com/list")
    with pytest.raises(ValidationError, match="gopher"):
        Settings()


def test_bad_refresh_interval_is_an_error(env: pytest.MonkeyPatch) -> None:
    env.setenv("BLOCKLIST_REFRESH_INTERVAL", "daily")
    with pytest.raises(ValidationError, match="refresh_interval"):
        Settings()


@pytest.mark.parametrize("variable", ["REDIS_URL", "BLOCKLIST_REDIS_URL"])
def test_redis_url_switches_to_distributed_mode(env: pytest.MonkeyPatch, variable: str) -> None:
    env.setenv(variable, "redis://localhost:6379/0")
    settings = Settings()
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.embedded is False


def test_empty_redis_url_stays_embedded(env: pytest.MonkeyPatch) -> None:
    env.setenv("REDIS_URL", "")
    assert Settings().embedded is True


def test_scalar_settings_from_environment(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.setenv("BLOCKLIST_STATE_DIR", str(tmp_path))
    env.setenv("BLOCKLIST_SHRINK_THRESHOLD", "0.8")
    env.setenv("BLOCKLIST_MIN_SCORE", "3")
    env.setenv("BLOCKLIST_BOOTSTRAP", "false")
    settings = Settings()
    assert settings.state_dir == tmp_path
    assert settings.shrink_threshold == 0.8
    assert settings.min_score == 3
    assert settings.bootstrap is False


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("BLOCKLIST_SHRINK_THRESHOLD", "1.5"),
        ("BLOCKLIST_SHRINK_THRESHOLD", "-0.1"),
        ("BLOCKLIST_MIN_SCORE", "-1"),
        ("BLOCKLIST_MAX_DOWNLOAD_BYTES", "0"),
        ("BLOCKLIST_RETRY_ATTEMPTS", "0"),
    ],
)
def test_out_of_range_settings_are_rejected(env: pytest.MonkeyPatch, variable: str, value: str) -> None:
    env.setenv(variable, value)
    with pytest.raises(ValidationError):
        Settings()


def test_settings_are_frozen(env: pytest.MonkeyPatch) -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.min_score = 5


def test_uppercase_scheme_is_fetched_over_http() -> None:
    (spec,) = parse_feed_specs("x=HTTPS://example.org/list.txt")
    assert spec.is_http


@pytest.mark.parametrize("text", ["\u0661h", "nan", "inf"])
def test_duration_rejects_non_ascii_digits_and_non_finite(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_duration(text)


def test_sentinels_switch_to_distributed_mode(env: pytest.MonkeyPatch) -> None:
    env.setenv("BLOCKLIST_REDIS_SENTINELS", "10.0.0.1:26379, sentinel-2:26380,[::1]:26381")
    env.setenv("BLOCKLIST_REDIS_SENTINEL_SERVICE", "blocklist")
    settings = Settings()
    assert settings.redis_sentinels == (("10.0.0.1", 26379), ("sentinel-2", 26380), ("::1", 26381))
    assert settings.redis_sentinel_service == "blocklist"
    assert settings.embedded is False


@pytest.mark.parametrize("value", ["sentinel", "host:", ":26379", "host:port", "host:0", "host:70000"])
def test_malformed_sentinels_are_errors(value: str) -> None:
    with pytest.raises(ConfigError, match="host:port"):
        parse_host_ports(value)


def test_lookup_mode_and_live_timeout(env: pytest.MonkeyPatch) -> None:
    assert Settings().lookup == "local"
    assert Settings().live_timeout == 0.05
    env.setenv("BLOCKLIST_LOOKUP", "live")
    env.setenv("BLOCKLIST_LIVE_TIMEOUT", "0.1")
    settings = Settings()
    assert (settings.lookup, settings.live_timeout) == ("live", 0.1)
    env.setenv("BLOCKLIST_LOOKUP", "sometimes")
    with pytest.raises(ValidationError, match="lookup"):
        Settings()


def test_worker_id_defaults_to_the_host_name(env: pytest.MonkeyPatch) -> None:
    assert Settings().worker_id == socket.gethostname()
    env.setenv("BLOCKLIST_WORKER_ID", "updater-0")
    assert Settings().worker_id == "updater-0"


def test_passwords_are_not_shown_in_settings_repr(env: pytest.MonkeyPatch) -> None:
    env.setenv("BLOCKLIST_REDIS_PASSWORD", "hunter2")
    settings = Settings()
    assert "hunter2" not in repr(settings)
    assert settings.redis_password is not None
    assert settings.redis_password.get_secret_value() == "hunter2"
