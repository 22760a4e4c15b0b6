"""Importing archived versions of a feed into history.

``python -m blocklistupdater import --feed NAME [--format F] [--at DATE] FILE...``
reads each file, dates it (:func:`file_date`), parses it with the feed's
format and records it with :func:`~blocklistupdater.historyrecorder.build_import`
in the store of the configured mode: the state directory's history without
Redis, Redis (under the publish lock) with it.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path

from blocklist.errors import FeedError
from blocklist.feedparsers import FeedFormat, decompress_if_gzip, parse_feed
from blocklist.history import iso_moment, parse_moment
from blocklist.historysqlite import SqliteHistory
from blocklist.settings import Settings
from blocklistupdater.historyrecorder import ImportFile, ImportResult, build_import
from blocklistupdater.statestore import StateStore

_HEADER_DATE = re.compile(r"(\d{4})[/-](\d{2})[/-](\d{2})")
_NAME_DATE = re.compile(r"(\d{4}-\d{2}-\d{2})")
_HEADER_BYTES = 4096


def file_date(path: Path, head: bytes, at: str | None) -> float:
    """When an archived file's version came into force (epoch seconds).

    In order: ``at``; a date in the file's first line when that line is a
    comment (Spamhaus: ``; Spamhaus DROP List 2018/02/01 - ...``); a
    ``YYYY-MM-DD`` in the file name. Raises :class:`ValueError` if none.
    """
    if at is not None:
        return parse_moment(at)
    first = head.decode("utf-8", errors="replace").lstrip("\ufeff").split("\n", 1)[0].strip()
    if first[:1] in {"#", ";"} and (match := _HEADER_DATE.search(first)):
        return parse_moment("-".join(match.groups()))
    if match := _NAME_DATE.search(path.name):
        return parse_moment(match[1])
    raise ValueError("no date: give --at, or a file with a dated header or a YYYY-MM-DD name")


@dataclass(frozen=True, slots=True)
class Refused:
    """A file that could not be read, dated or parsed."""

    name: str
    detail: str


def read_files(
    settings: Settings, paths: list[Path], fmt: FeedFormat, at: str | None
) -> tuple[list[ImportFile], list[Refused]]:
    """Read, date and parse each file; the unreadable ones are set aside with a reason."""
    files: list[ImportFile] = []
    refused: list[Refused] = []
    for path in paths:
        try:
            data = path.read_bytes()
            head = decompress_if_gzip(data, settings.max_download_bytes)[:_HEADER_BYTES]
            moment = file_date(path, head, at)
            parsed = parse_feed(data, fmt, max_size=settings.max_download_bytes)
        except (OSError, ValueError, FeedError) as exc:
            refused.append(Refused(str(path), str(exc)))
            continue
        files.append(ImportFile(str(path), moment, parsed, hashlib.sha256(data).hexdigest()))
    return files, refused


def import_embedded(settings: Settings, feed: str, files: list[ImportFile]) -> list[ImportResult]:
    """Record ``files`` in the state directory's history, in one transaction."""
    live = StateStore(settings.state_dir).load_version()
    first = live.number + 1 if live is not None else 1
    store = SqliteHistory(settings.state_dir)
    with store.writing() as reader:
        change, results = build_import(
            reader, settings, feed, files, first_number=first, recorded_at=time.time()
        )
        reader.apply(change)
    return results


def report_line(result: ImportResult | Refused) -> str:
    """One line of the import report."""
    if isinstance(result, Refused):
        return f"refused    {result.name}: {result.detail}"
    when = iso_moment(result.at)
    if result.outcome == "refused":
        return f"refused    {result.name} ({when}): {result.detail}"
    return f"{result.outcome:<10} {result.name} ({when}) as version {result.number}"
