"""The one place tests touch a store file below moat's commands.

Tests read what moat says about its store through `moat store info --json`, `moat store audit --json` and
the other commands (see `audit()` and `generation()`). What no command shows, and what a hostile local user
or time would do to the file (change a row without the master key, age a CRL, hold the write lock, make
another application's database), goes through the functions here, so raw SQL against the store lives in
this file only.
"""
import contextlib
import json
import sqlite3


def tamper_store(store_path, sql, params=()):
    """Change the store file directly, as someone who can write it but has no master key would.

    <sql> is one statement run with <params>, or, without params, a script of several. Returns the number
    of rows the statement changed (-1 for a script)."""
    con = sqlite3.connect(store_path)
    try:
        if params or sql.strip().rstrip(";").count(";") == 0:
            n = con.execute(sql, params).rowcount
        else:
            con.executescript(sql)
            n = -1
        con.commit()
        return n
    finally:
        con.close()


def peek_store(store_path, sql, params=()):
    """The rows of a read-only query, for what no moat command shows (the raw CRL a server re-signed, a
    backup file's rows). Opened read-only: peeking never changes the file."""
    con = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def dump(store_path):
    """Every row of the store as text: two dumps differ iff the store changed."""
    con = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True)
    try:
        return "\n".join(con.iterdump())
    finally:
        con.close()


def integrity(store_path):
    """SQLite's own verdict on the file ("ok" when intact). Opened for writing, as the sqlite3 shell opens
    it, so that a write-ahead log a killed writer left is recovered first, as moat's next open would."""
    con = sqlite3.connect(store_path)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


@contextlib.contextmanager
def held_open(store_path, write_lock=False):
    """The store held open by another process, as a running server holds it (its shared-memory index
    exists); with write_lock, inside an uncommitted write transaction, as a busy writer holds it. Yields
    the connection (usable from another thread)."""
    con = sqlite3.connect(store_path, isolation_level=None, check_same_thread=False)
    try:
        if write_lock:
            con.execute("BEGIN IMMEDIATE")
        else:
            con.execute("select count(*) from sqlite_master").fetchall()
        yield con
    finally:
        con.close()


def foreign_database(path, sql="CREATE TABLE t (x)"):
    """Another application's SQLite database at <path> (not a moat store), mode 0600."""
    con = sqlite3.connect(path)
    try:
        con.executescript(sql)
        con.commit()
    finally:
        con.close()
    path.chmod(0o600)
    return path


def audit(moat, action=None):
    """The store's audit entries as `moat store audit --json` gives them, oldest first, optionally those of
    one action."""
    rows = json.loads(moat.ok("store", "audit", "--json").stdout)
    rows.reverse()
    return [r for r in rows if action is None or r["action"] == action]


def generation(moat):
    """The store's generation, as `moat store info --json` says."""
    return json.loads(moat.ok("--json", "store", "info").stdout)["generation"]
