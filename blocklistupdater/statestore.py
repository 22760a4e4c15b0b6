"""Embedded mode's persistence: the last good body of every feed and the
last published version, kept in ``BLOCKLIST_STATE_DIR``.

Layout::

    <state_dir>/version.bin          last published version (snapshot codec)
    <state_dir>/status.json          the updater worker's feed status, for the others
    <state_dir>/feeds/<name>.body    last good bytes of a feed, as downloaded
    <state_dir>/feeds/<name>.json    its source, format, validators, fetch time

Every write goes to a temporary file in the same directory, is fsynced and
then renamed over the old file, so a crash leaves the old or the new file,
never a torn one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from blocklist.errors import SnapshotError
from blocklist.snapshot import Version, decode_version, encode_version

VERSION_FILE = "version.bin"
STATUS_FILE = "status.json"


@dataclass(frozen=True, slots=True)
class StoredFeed:
    """A feed's last good download as kept on disk."""

    name: str
    source: str
    format: str
    etag: str | None
    last_modified: str | None
    sha256: str | None
    fetched_at: float
    body: bytes


class StateStore:
    """Reads and atomically writes the embedded state directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._feeds = root / "feeds"

    @property
    def version_path(self) -> Path:
        """Path of the last published version file."""
        return self.root / VERSION_FILE

    def load_version(self) -> Version | None:
        """The last published version, or None if absent or unreadable."""
        try:
            return decode_version(self.version_path.read_bytes())
        except (OSError, SnapshotError):
            return None

    def save_version(self, version: Version) -> None:
        """Persist ``version`` as the last published one (atomic)."""
        _atomic_write(self.version_path, encode_version(version))

    def save_status(self, feeds: dict[str, Any]) -> None:
        """Share the updater's per-feed status with other workers (atomic)."""
        _atomic_write(self.root / STATUS_FILE, json.dumps(feeds).encode(), durable=False)

    def load_status(self) -> dict[str, Any] | None:
        """The per-feed status last shared by the updater, or None."""
        try:
            data = json.loads((self.root / STATUS_FILE).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def load_feed(self, name: str) -> StoredFeed | None:
        """The last good download of feed ``name``, or None."""
        try:
            meta = json.loads((self._feeds / f"{name}.json").read_text())
            body = (self._feeds / f"{name}.body").read_bytes()
            stored = StoredFeed(body=body, **meta)
        except (OSError, ValueError, TypeError):
            return None
        # Body and metadata are two renames: a crash between them leaves a
        # pair that does not match, which is treated as absent.
        if stored.sha256 != hashlib.sha256(body).hexdigest():
            return None
        return stored

    def save_feed(self, feed: StoredFeed) -> None:
        """Persist a feed's good download: body first, then its metadata."""
        meta = asdict(feed)
        body = meta.pop("body")
        _atomic_write(self._feeds / f"{feed.name}.body", body)
        _atomic_write(self._feeds / f"{feed.name}.json", json.dumps(meta).encode())


def _atomic_write(path: Path, data: bytes, *, durable: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
