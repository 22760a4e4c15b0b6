"""Operator control data of embedded mode: ``control.sqlite`` in the state directory.

WAL with ``synchronous=FULL``: a change is acknowledged only after its
transaction is on disk, so it survives kill -9 and power loss. Each change
is one ``BEGIN IMMEDIATE`` transaction that also appends to the ``changes``
table, the log every worker process of the state directory polls to keep
its lookups in step. One connection per store, used by one thread at a time
(a lock), always off the event loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from blocklist.control import (
    ApiKey,
    AuditEntry,
    ChangeEntry,
    Conflict,
    OverrideDraft,
    Page,
    ReportItem,
    Snapshot,
    decode_state,
    encode_state,
    override_audit,
)
from blocklist.overrides import Action, Override
from blocklist.reputation import (
    Policy,
    State,
    Violation,
    apply_violation,
    block_end,
    drop_old_notes,
    expires_at,
)

FILENAME = "control.sqlite"
#: Log entries older than this are trimmed; a process that fell further behind reloads.
LOG_KEEP_SECONDS = 3600.0
#: How often an idle follower looks at the log again.
POLL_SECONDS = 0.2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS overrides (id INTEGER PRIMARY KEY AUTOINCREMENT, action TEXT NOT NULL,
    expires_at REAL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS reputation (key TEXT PRIMARY KEY, doc TEXT NOT NULL, blocked_until INTEGER,
    expires_at INTEGER NOT NULL, oldest_note INTEGER) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS reputation_expiry ON reputation (expires_at);
CREATE INDEX IF NOT EXISTS reputation_blocked ON reputation (blocked_until);
CREATE INDEX IF NOT EXISTS reputation_notes ON reputation (oldest_note);
CREATE TABLE IF NOT EXISTS keys (name TEXT PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at);
CREATE TABLE IF NOT EXISTS changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL,
    kind TEXT NOT NULL, key TEXT NOT NULL, data TEXT);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
"""
T = TypeVar("T")


class SqliteControl:
    """Control data in ``<state_dir>/control.sqlite``; see the module docstring.

    ``retention_ms`` (0: keep) bounds how long report comments, reputation
    state and audit entries are kept.
    """

    def __init__(
        self,
        state_dir: Path | str,
        policy: Policy,
        retention_ms: int,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(state_dir) / FILENAME
        self.policy = policy
        self.retention_ms = retention_ms
        self._clock = clock
        self._con: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    # -- plumbing ---------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._con is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=FULL")
            con.execute("PRAGMA secure_delete=ON")
            con.executescript(_SCHEMA)
            self._con = con
        return self._con

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        con = self._connection()
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    async def _run(self, fn: Callable[[], T]) -> T:
        def locked() -> T:
            with self._lock:
                return fn()

        return await asyncio.to_thread(locked)

    def _log(self, con: sqlite3.Connection, change: ChangeEntry) -> None:
        con.execute(
            "INSERT INTO changes (at, kind, key, data) VALUES (?, ?, ?, ?)",
            (self._clock(), change.kind, change.key, change.data),
        )

    @staticmethod
    def _audit(con: sqlite3.Connection, entry: AuditEntry) -> None:
        con.execute("INSERT INTO audit (at, doc) VALUES (?, ?)", (entry.at, entry.encode()))

    async def settle(self) -> None:
        """Nothing to wait for: a commit is on disk when the write returns."""

    async def aclose(self) -> None:
        """Close the connection."""

        def close() -> None:
            if self._con is not None:
                self._con.close()
                self._con = None

        await self._run(close)

    # -- overrides ----------------------------------------------------------

    async def add_override(self, draft: OverrideDraft, actor: str, now: float) -> Override:
        """See :class:`~blocklist.control.ControlStore`."""

        def add() -> Override:
            with self._write() as con:
                cur = con.execute(
                    "INSERT INTO overrides (action, expires_at, doc) VALUES (?, ?, '')",
                    (draft.action, draft.expires_at),
                )
                assert cur.lastrowid is not None
                item = Override(
                    cur.lastrowid, draft.network, draft.action, draft.reason, now, draft.expires_at, actor
                )
                doc = item.encode()
                con.execute("UPDATE overrides SET doc = ? WHERE id = ?", (doc, item.id))
                self._log(con, ChangeEntry("override", str(item.id), doc))
                self._audit(con, override_audit(item, actor, now, "override.create"))
                return item

        return await self._run(add)

    async def delete_override(self, override_id: int, actor: str, now: float) -> Override | None:
        """See :class:`~blocklist.control.ControlStore`."""

        def delete() -> Override | None:
            with self._write() as con:
                row = con.execute("SELECT doc FROM overrides WHERE id = ?", (override_id,)).fetchone()
                if row is None:
                    return None
                con.execute("DELETE FROM overrides WHERE id = ?", (override_id,))
                self._log(con, ChangeEntry("override", str(override_id), None))
                item = Override.decode(row[0])
                self._audit(con, override_audit(item, actor, now, "override.delete"))
                return item

        return await self._run(delete)

    async def get_override(self, override_id: int) -> Override | None:
        """See :class:`~blocklist.control.ControlStore`."""

        def get() -> Override | None:
            con = self._connection()
            row = con.execute("SELECT doc FROM overrides WHERE id = ?", (override_id,)).fetchone()
            return Override.decode(row[0]) if row else None

        return await self._run(get)

    async def list_overrides(self, action: Action | None, offset: int, limit: int) -> Page:
        """See :class:`~blocklist.control.ControlStore`."""

        def listing() -> Page:
            con = self._connection()
            # NULL matches every action.
            total = con.execute(
                "SELECT count(*) FROM overrides WHERE coalesce(?, action) = action", (action,)
            ).fetchone()[0]
            rows = con.execute(
                "SELECT doc FROM overrides WHERE coalesce(?, action) = action ORDER BY id LIMIT ? OFFSET ?",
                (action, limit, offset),
            ).fetchall()
            return Page(total, [Override.decode(r[0]) for r in rows])

        return await self._run(listing)

    # -- reputation -----------------------------------------------------------

    async def report(self, items: Sequence[ReportItem], now_ms: int) -> list[State]:
        """See :class:`~blocklist.control.ControlStore`."""

        def report() -> list[State]:
            out: list[State] = []
            with self._write() as con:
                for item in items:
                    row = con.execute(
                        "SELECT doc, blocked_until FROM reputation WHERE key = ?", (item.key,)
                    ).fetchone()
                    state = decode_state(row[0]) if row else None
                    violation = Violation(item.violation, item.penalty, item.decrease_limit)
                    new = apply_violation(state, violation, item.note, self.policy, item.suppress_ms)
                    if self.retention_ms > 0:
                        new = drop_old_notes(new, now_ms - self.retention_ms)
                    self._store_state(con, item.key, new, row[1] if row else None, now_ms)
                    out.append(new)
            return out

        return await self._run(report)

    def _store_state(
        self, con: sqlite3.Connection, key: str, state: State | None, was_blocked: int | None, now_ms: int
    ) -> None:
        """Write (or delete) one state, logging a change when its block changes."""
        until: int | None = None
        if state is not None and self.retention_ms > 0:
            state = drop_old_notes(state, now_ms - self.retention_ms)
        expiry = expires_at(state, self.policy, self.retention_ms) if state is not None else now_ms
        if state is None or expiry <= now_ms:
            con.execute("DELETE FROM reputation WHERE key = ?", (key,))
        else:
            until = block_end(state, now_ms, self.policy, self.retention_ms)
            oldest = min((n.at for n in state.notes), default=None)
            con.execute(
                "INSERT OR REPLACE INTO reputation (key, doc, blocked_until, expires_at, oldest_note)"
                " VALUES (?, ?, ?, ?, ?)",
                (key, encode_state(state), until, expiry, oldest),
            )
        if until != was_blocked:
            self._log(con, ChangeEntry("blocked", key, None if until is None else str(until)))

    async def reputation(self, key: str) -> State | None:
        """See :class:`~blocklist.control.ControlStore`."""

        def get() -> State | None:
            row = self._connection().execute("SELECT doc FROM reputation WHERE key = ?", (key,)).fetchone()
            return decode_state(row[0]) if row else None

        return await self._run(get)

    async def set_reputation(self, key: str, state: State | None, actor: str, now: float) -> None:
        """See :class:`~blocklist.control.ControlStore`."""

        def put() -> None:
            with self._write() as con:
                row = con.execute("SELECT blocked_until FROM reputation WHERE key = ?", (key,)).fetchone()
                self._store_state(con, key, state, row[0] if row else None, int(now * 1000))
                detail = {"score": state.score, "reviewed": state.reviewed} if state else {}
                action = "reputation.set" if state else "reputation.delete"
                self._audit(con, AuditEntry("", now, actor, action, key, detail))

        await self._run(put)

    # -- keys ---------------------------------------------------------------

    async def create_key(self, key: ApiKey, actor: str) -> None:
        """See :class:`~blocklist.control.ControlStore`."""

        def create() -> None:
            with self._write() as con:
                try:
                    con.execute("INSERT INTO keys (name, doc) VALUES (?, ?)", (key.name, key.encode()))
                except sqlite3.IntegrityError:
                    raise Conflict(f"a key named {key.name!r} exists") from None
                self._log(con, ChangeEntry("keys", key.name, key.encode()))
                detail = {"scope": key.scope}
                self._audit(con, AuditEntry("", key.created_at, actor, "key.create", key.name, detail))

        await self._run(create)

    async def revoke_key(self, name: str, actor: str, now: float) -> bool:
        """See :class:`~blocklist.control.ControlStore`."""

        def revoke() -> bool:
            with self._write() as con:
                if con.execute("DELETE FROM keys WHERE name = ?", (name,)).rowcount == 0:
                    return False
                self._log(con, ChangeEntry("keys", name, None))
                self._audit(con, AuditEntry("", now, actor, "key.revoke", name))
                return True

        return await self._run(revoke)

    async def list_keys(self) -> list[ApiKey]:
        """See :class:`~blocklist.control.ControlStore`."""

        def listing() -> list[ApiKey]:
            rows = self._connection().execute("SELECT doc FROM keys ORDER BY name").fetchall()
            return [ApiKey.decode(r[0]) for r in rows]

        return await self._run(listing)

    # -- audit, snapshot, changes, purge -----------------------------------------

    async def audit(self, before: str | None, limit: int) -> list[AuditEntry]:
        """See :class:`~blocklist.control.ControlStore`."""

        def listing() -> list[AuditEntry]:
            if before is not None and not (before.isascii() and before.isdigit() and len(before) < 19):
                raise ValueError("before is not an audit entry id")
            bound = int(before) if before else 1 << 62
            rows = (
                self._connection()
                .execute("SELECT id, doc FROM audit WHERE id < ? ORDER BY id DESC LIMIT ?", (bound, limit))
                .fetchall()
            )
            return [AuditEntry.decode(str(r[0]), r[1]) for r in rows]

        return await self._run(listing)

    async def snapshot(self, now_ms: int) -> Snapshot:
        """See :class:`~blocklist.control.ControlStore`."""

        def read() -> Snapshot:
            con = self._connection()
            con.execute("BEGIN")
            try:
                cursor = con.execute("SELECT coalesce(max(seq), 0) FROM changes").fetchone()[0]
                trimmed = con.execute("SELECT value FROM meta WHERE name = 'trimmed'").fetchone()
                cursor = max(cursor, trimmed[0] if trimmed else 0)
                overrides = [Override.decode(r[0]) for r in con.execute("SELECT doc FROM overrides")]
                blocked = con.execute(
                    "SELECT key, blocked_until FROM reputation WHERE blocked_until > ?", (now_ms,)
                ).fetchall()
                keys = [ApiKey.decode(r[0]) for r in con.execute("SELECT doc FROM keys")]
            finally:
                con.execute("COMMIT")
            return Snapshot(str(cursor), overrides, [(k, int(u)) for k, u in blocked], keys)

        return await self._run(read)

    async def changes(self, cursor: str, wait: float) -> tuple[str, list[ChangeEntry]] | None:
        """See :class:`~blocklist.control.ControlStore`; an idle log is looked at every 0.2 s."""

        def read() -> tuple[str, list[ChangeEntry]] | None:
            con = self._connection()
            seen = int(cursor)
            con.execute("BEGIN")  # one read snapshot: a purge in another process cannot cut in
            try:
                trimmed = con.execute("SELECT value FROM meta WHERE name = 'trimmed'").fetchone()
                last = con.execute("SELECT coalesce(max(seq), 0) FROM changes").fetchone()[0]
                if (trimmed and seen < trimmed[0]) or seen > max(last, trimmed[0] if trimmed else 0):
                    return None
                rows = con.execute(
                    "SELECT seq, kind, key, data FROM changes WHERE seq > ? ORDER BY seq LIMIT 10000", (seen,)
                ).fetchall()
            finally:
                con.execute("COMMIT")
            if not rows:
                return cursor, []
            return str(rows[-1][0]), [ChangeEntry(r[1], r[2], r[3]) for r in rows]

        result = await self._run(read)
        if result is not None and not result[1]:
            await asyncio.sleep(min(wait, POLL_SECONDS))
        return result

    async def purge(self, now: float) -> int:
        """See :class:`~blocklist.control.ControlStore`."""
        return await self._run(lambda: self._purge(now))

    def _purge(self, now: float) -> int:
        now_ms = int(now * 1000)
        done = 0
        with self._write() as con:
            expired = con.execute(
                "SELECT doc FROM overrides WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,)
            ).fetchall()
            for (doc,) in expired:
                item = Override.decode(doc)
                con.execute("DELETE FROM overrides WHERE id = ?", (item.id,))
                self._log(con, ChangeEntry("override", str(item.id), None))
                self._audit(con, override_audit(item, "service", now, "override.expire"))
            done += len(expired)
            gone = con.execute(
                "SELECT key, blocked_until FROM reputation WHERE expires_at <= ?", (now_ms,)
            ).fetchall()
            for key, until in gone:
                con.execute("DELETE FROM reputation WHERE key = ?", (key,))
                if until is not None and until > now_ms:
                    self._log(con, ChangeEntry("blocked", key, None))
            done += len(gone)
            if self.retention_ms > 0:
                horizon = now_ms - self.retention_ms
                for key, doc, until in con.execute(
                    "SELECT key, doc, blocked_until FROM reputation WHERE oldest_note < ?", (horizon,)
                ).fetchall():
                    self._store_state(con, key, drop_old_notes(decode_state(doc), horizon), until, now_ms)
                    done += 1
                done += con.execute("DELETE FROM audit WHERE at < ?", (horizon / 1000,)).rowcount
            cut = con.execute(
                "SELECT max(seq) FROM changes WHERE at < ?", (now - LOG_KEEP_SECONDS,)
            ).fetchone()[0]
            if cut is not None:
                con.execute("DELETE FROM changes WHERE seq <= ?", (cut,))
                con.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('trimmed', ?)", (cut,))
        return done
