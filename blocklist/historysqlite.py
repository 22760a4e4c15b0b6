"""The history store of embedded mode: one SQLite file in the state directory.

SQLite in WAL mode with ``synchronous=FULL``: a :class:`Change` is applied
in one transaction, so a crash (kill -9, power loss) at any moment leaves
the file at the state before or after it, never in between, and readers in
other processes see whole changes only. ``secure_delete`` overwrites what
is deleted and a purge checkpoints and truncates the WAL, so purged data
does not linger in free pages or the log.

Connections are opened per call and used in one thread: callers run these
methods in a worker thread (``asyncio.to_thread``), never on the event loop.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from blocklist.history import (
    Catalog,
    Change,
    Interval,
    Member,
    VersionRecord,
    decode_intervals,
    encode_intervals,
)

FILENAME = "history.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (key BLOB, feed TEXT, intervals BLOB, PRIMARY KEY (key, feed))
    WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_feed ON records (feed);
CREATE TABLE IF NOT EXISTS opens (feed TEXT, key BLOB, label TEXT, score INTEGER, PRIMARY KEY (feed, key))
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bounds (feed TEXT, at REAL, key BLOB, PRIMARY KEY (feed, at, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS versions (number INTEGER PRIMARY KEY, doc BLOB);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value REAL);
"""
#: SQLite's default limit on bound parameters is far above this.
_CHUNK = 500


class SqliteHistory:
    """History in ``<state_dir>/history.sqlite``; see the module docstring."""

    def __init__(self, state_dir: Path | str) -> None:
        self.path = Path(state_dir) / FILENAME

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=FULL")
            con.execute("PRAGMA secure_delete=ON")
            con.executescript(_SCHEMA)
            yield con
        finally:
            con.close()

    @contextmanager
    def writing(self) -> Iterator[SqliteReader]:
        """A write transaction: read through the yielded reader, then :meth:`SqliteReader.apply`.

        ``BEGIN IMMEDIATE`` takes the write lock first, so what is read
        cannot change (another process's import, say) before it is applied.
        """
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield SqliteReader(con)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    @contextmanager
    def reading(self) -> Iterator[SqliteReader]:
        """A consistent read-only view (one read transaction)."""
        with self._connect() as con:
            con.execute("BEGIN")
            try:
                yield SqliteReader(con)
            finally:
                con.execute("ROLLBACK")

    def compact(self) -> None:
        """Fold the WAL into the file and truncate it (after a purge)."""
        with self._connect() as con:
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")


class SqliteReader:
    """Reads (and, in a write transaction, the one write) on an open connection."""

    def __init__(self, con: sqlite3.Connection) -> None:
        self._con = con

    def catalog(self) -> Catalog:
        """Every version and the horizon."""
        rows = self._con.execute("SELECT doc FROM versions").fetchall()
        horizon = self._con.execute("SELECT value FROM meta WHERE name = 'horizon'").fetchone()
        return Catalog([VersionRecord.decode(doc) for (doc,) in rows], horizon[0] if horizon else None)

    def opens(self, feed: str) -> dict[bytes, Member]:
        """What history holds as listed now by ``feed``."""
        rows = self._con.execute("SELECT key, label, score FROM opens WHERE feed = ?", (feed,))
        return {key: (label, score) for key, label, score in rows}

    def records(self, feed: str, keys: Sequence[bytes]) -> dict[bytes, list[Interval]]:
        """The records of ``feed`` at ``keys`` (absent keys are left out)."""
        out: dict[bytes, list[Interval]] = {}
        for i in range(0, len(keys), _CHUNK):
            chunk = keys[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT key, intervals FROM records WHERE feed = ? AND key IN ({marks})"  # noqa: S608
            out.update(
                (key, decode_intervals(data)) for key, data in self._con.execute(query, (feed, *chunk))
            )
        return out

    def feed_records(self, feed: str) -> dict[bytes, list[Interval]]:
        """Every record of ``feed``."""
        rows = self._con.execute("SELECT key, intervals FROM records WHERE feed = ?", (feed,))
        return {key: decode_intervals(data) for key, data in rows}

    def lookup(self, keys: Sequence[bytes]) -> dict[str, dict[bytes, list[Interval]]]:
        """Per feed, the records at ``keys`` (an address's keys): one indexed query."""
        marks = ",".join("?" * len(keys))
        query = f"SELECT feed, key, intervals FROM records WHERE key IN ({marks})"  # noqa: S608
        out: dict[str, dict[bytes, list[Interval]]] = {}
        for feed, key, data in self._con.execute(query, tuple(keys)):
            out.setdefault(feed, {})[key] = decode_intervals(data)
        return out

    def changed_keys(self, feed: str, after: float, upto: float) -> list[bytes]:
        """Keys of ``feed`` whose record changes at a moment in ``(after, upto]``."""
        rows = self._con.execute(
            "SELECT DISTINCT key FROM bounds WHERE feed = ? AND at > ? AND at <= ?", (feed, after, upto)
        )
        return [key for (key,) in rows]

    def apply(self, change: Change) -> None:
        """Write ``change`` (inside :meth:`SqliteHistory.writing`)."""
        con = self._con
        con.executemany(
            "DELETE FROM records WHERE key = ? AND feed = ?",
            [(key, feed) for (feed, key), v in change.records.items() if v is None],
        )
        con.executemany(
            "INSERT OR REPLACE INTO records VALUES (?, ?, ?)",
            [(key, feed, encode_intervals(v)) for (feed, key), v in change.records.items() if v is not None],
        )
        con.executemany(
            "DELETE FROM opens WHERE feed = ? AND key = ?",
            [(feed, key) for (feed, key), m in change.opens.items() if m is None],
        )
        con.executemany(
            "INSERT OR REPLACE INTO opens VALUES (?, ?, ?, ?)",
            [(feed, key, m[0], m[1]) for (feed, key), m in change.opens.items() if m is not None],
        )
        con.executemany("DELETE FROM bounds WHERE feed = ? AND at = ? AND key = ?", sorted(change.bounds_del))
        con.executemany("INSERT OR IGNORE INTO bounds VALUES (?, ?, ?)", sorted(change.bounds_add))
        con.executemany(
            "DELETE FROM versions WHERE number = ?", [(n,) for n, v in change.versions.items() if v is None]
        )
        con.executemany(
            "INSERT OR REPLACE INTO versions VALUES (?, ?)",
            [(n, v.encode()) for n, v in change.versions.items() if v is not None],
        )
        if change.horizon is not None:
            con.execute("INSERT OR REPLACE INTO meta VALUES ('horizon', ?)", (change.horizon,))
