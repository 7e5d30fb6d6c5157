"""Jobs and models of the service in SQLite (stdlib ``sqlite3``); the artifacts themselves lie on disk."""
from __future__ import annotations

import json
import sqlite3
import threading
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, state TEXT NOT NULL, phase TEXT NOT NULL,
    step INTEGER NOT NULL DEFAULT 0, total INTEGER NOT NULL DEFAULT 0, loss REAL, eta REAL, rate REAL,
    error TEXT NOT NULL DEFAULT '', device TEXT NOT NULL DEFAULT '', settings TEXT NOT NULL,
    created REAL NOT NULL, started REAL, finished REAL, seconds REAL NOT NULL DEFAULT 0,
    runs INTEGER NOT NULL DEFAULT 0, resumed_from INTEGER, cancel_requested INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS models (
    name TEXT PRIMARY KEY, path TEXT NOT NULL, job_id TEXT, info TEXT NOT NULL, created REAL NOT NULL);
"""
JOB_FIELDS = ("id", "name", "state", "phase", "step", "total", "loss", "eta", "rate", "error", "device",
              "settings", "created", "started", "finished", "seconds", "runs", "resumed_from", "cancel_requested")
ADDED_JOB_COLUMNS = {"cancel_requested": "INTEGER NOT NULL DEFAULT 0"}
"""Job columns newer than the first schema, added to older databases when opened."""


class Store:
    """One SQLite database shared by the service's threads (every write is one committed transaction).

    Parameters
    ----------
    path : the database file, created when missing.
    """

    def __init__(self, path: str):
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            self._db.executescript(SCHEMA)
            present = {row["name"] for row in self._db.execute("PRAGMA table_info(jobs)")}
            for column, declaration in ADDED_JOB_COLUMNS.items():
                if column not in present:
                    self._db.execute(f"ALTER TABLE jobs ADD COLUMN {column} {declaration}")

    def _write(self, sql: str, values: tuple) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(sql, values)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _read(self, sql: str, values: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, values).fetchall()

    # ------------------------------------------------------------------ jobs
    def add_job(self, job: dict[str, Any]) -> None:
        """Insert a job record (``settings`` as a dict)."""
        record = {**job, "settings": json.dumps(job["settings"])}
        keys = [key for key in JOB_FIELDS if key in record]
        self._write(f"INSERT INTO jobs ({', '.join(keys)}) VALUES ({', '.join('?' * len(keys))})",
                    tuple(record[key] for key in keys))

    def update_job(self, job_id: str, **fields: Any) -> None:
        """Set some fields of a job."""
        unknown = set(fields) - set(JOB_FIELDS) - {"settings"}
        if unknown:
            raise KeyError(f"unknown job fields {sorted(unknown)}")
        self._write(f"UPDATE jobs SET {', '.join(f'{key} = ?' for key in fields)} WHERE id = ?",
                    (*fields.values(), job_id))

    def job(self, job_id: str) -> dict[str, Any] | None:
        """One job record, or None."""
        rows = self._read("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return _job(rows[0]) if rows else None

    def jobs(self, *states: str) -> list[dict[str, Any]]:
        """Every job (or those in ``states``), oldest first."""
        if states:
            rows = self._read(f"SELECT * FROM jobs WHERE state IN ({', '.join('?' * len(states))}) "
                              "ORDER BY created, rowid", states)
        else:
            rows = self._read("SELECT * FROM jobs ORDER BY created, rowid")
        return [_job(row) for row in rows]

    # ------------------------------------------------------------------ models
    def put_model(self, name: str, path: str, info: dict[str, Any], job_id: str | None, created: float) -> None:
        """Add a model, or replace the one of the same name."""
        self._write("INSERT OR REPLACE INTO models (name, path, job_id, info, created) VALUES (?, ?, ?, ?, ?)",
                    (name, path, job_id, json.dumps(info), created))

    def delete_model(self, name: str) -> None:
        self._write("DELETE FROM models WHERE name = ?", (name,))

    def model(self, name: str) -> dict[str, Any] | None:
        """``name``, ``path``, ``job_id``, ``info`` and ``created`` of a model, or None."""
        rows = self._read("SELECT * FROM models WHERE name = ?", (name,))
        return _model(rows[0]) if rows else None

    def models(self) -> list[dict[str, Any]]:
        """Every model, oldest first."""
        return [_model(row) for row in self._read("SELECT * FROM models ORDER BY created, rowid")]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _job(row: sqlite3.Row) -> dict[str, Any]:
    return {**dict(row), "settings": json.loads(row["settings"])}


def _model(row: sqlite3.Row) -> dict[str, Any]:
    return {**dict(row), "info": json.loads(row["info"])}
