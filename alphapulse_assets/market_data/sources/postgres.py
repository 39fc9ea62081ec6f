"""The ``postgres`` source: candles from an AlphaPulse-style ``ohlcv`` table.

Expected table (any numeric type for the prices; extra columns are ignored)::

    ohlcv(time timestamptz, symbol text, open, high, low, close, volume numeric | double precision)

Values only ever travel as query parameters; the table name is validated as an identifier and quoted
by psycopg, never pasted into SQL. Each call opens its own short connection with a connect timeout and
a statement timeout, so a stopped or hung server fails fast and the next call (after a retry) simply
reconnects. Failures are mapped onto the platform's classification:

- server down, connection refused or reset, timeouts: ``TransientError``;
- wrong password or unknown role: ``AuthenticationError`` (permanent);
- missing database, table or column: ``PermanentError`` naming it;
- a symbol with no rows at all in the table: ``UnknownSymbolError``;
- text in a numeric column: ``DataValidationError`` from ``normalize_candles``.

The URL's password never appears in ``describe()`` or in any message this module raises.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence

import pandas as pd
import sqlalchemy as sa

from alphapulse_assets.market_data.schema import CANDLE_COLUMNS, empty_candles, normalize_candles
from alphapulse_assets.market_data.sources.base import CandleSource
from alphapulse_assets.platform_db import redact
from alphapulse_assets.recovery.errors import (
    AuthenticationError,
    PermanentError,
    TransientError,
    UnknownSymbolError,
)

_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_TABLE_COLUMNS = ("time", "symbol", "open", "high", "low", "close", "volume")
_AUTH_PATTERNS = (
    "password authentication failed",
    "no password supplied",
    "authentication failed",
    "pg_hba.conf",
)
_ROLE_MISSING = re.compile(r'role "[^"]*" does not exist')
_DB_MISSING = re.compile(r'database "[^"]*" does not exist')


def parse_table_name(table: str) -> tuple[str, ...]:
    """``"ohlcv"`` or ``"schema.ohlcv"`` -> identifier parts; raises PermanentError for anything else."""
    parts = tuple(table.split(".")) if isinstance(table, str) else ()
    if not 1 <= len(parts) <= 2 or not all(_IDENT_RE.match(p) for p in parts):
        raise PermanentError(
            f"invalid table name {table!r}: use letters, digits and underscores (optionally schema.table)",
            where="postgres source",
        )
    return parts


def _connect_kwargs(url: str, timeout_seconds: float, where: str) -> dict:
    """psycopg keyword arguments from a SQLAlchemy-style URL (postgresql[+driver]://user:pw@host:port/db)."""
    try:
        u = sa.engine.make_url(url)
    except Exception:
        raise PermanentError("the market database URL cannot be parsed", where=where) from None
    if not u.drivername.startswith("postgres"):
        raise PermanentError(f"the market database URL must be a postgresql:// URL, not {u.drivername}://", where=where)
    kwargs: dict = {k: v for k, v in u.query.items() if isinstance(v, str)}  # e.g. sslmode
    for key, value in (
        ("host", u.host),
        ("port", u.port),
        ("user", u.username),
        ("password", u.password),
        ("dbname", u.database),
    ):
        if value is not None:
            kwargs[key] = value
    # libpq wants whole seconds (and treats 1 as 2); the statement timeout is in milliseconds.
    kwargs["connect_timeout"] = max(2, math.ceil(timeout_seconds))
    kwargs["options"] = f"-c statement_timeout={max(1, int(timeout_seconds * 1000))} -c TimeZone=UTC"
    kwargs["application_name"] = "alphapulse-postgres-source"
    return kwargs


def _utc(ts: pd.Timestamp):
    ts = pd.Timestamp(ts)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.to_pydatetime(warn=False)


class PostgresSource(CandleSource):
    """Candles from a PostgreSQL ``ohlcv`` table (see the module docstring)."""

    name = "postgres"
    serves_many_at_once = True  # one query (``symbol = ANY(...)``) and one connection for every symbol

    def __init__(self, url: str, table: str = "ohlcv", timeout_seconds: float = 30):
        if timeout_seconds <= 0:
            raise PermanentError(f"timeout_seconds must be positive, got {timeout_seconds}", where="postgres source")
        self._table_parts = parse_table_name(table)
        self.table = table
        self.timeout_seconds = float(timeout_seconds)
        self._url = url
        self._redacted = redact(url)
        self._password = self._password_of(url)
        self._kwargs = _connect_kwargs(url, self.timeout_seconds, where=self._where())

    @classmethod
    def from_env(cls, env_var: str, timeout_seconds: float = 30, table: str = "ohlcv") -> PostgresSource:
        url = os.environ.get(env_var, "").strip()
        if not url:
            raise PermanentError(
                f"the postgres source needs the environment variable {env_var} set to a database URL "
                "(postgresql+psycopg://user:password@host:5432/dbname)",
                where="postgres source",
            )
        return cls(url, table=table, timeout_seconds=timeout_seconds)

    # -- CandleSource --------------------------------------------------------------------------------
    def describe(self) -> str:
        return f"postgres table {self.table} at {self._redacted}"

    def check_reachable(self) -> None:
        with self._connect() as conn:
            self._execute(conn, "SELECT 1")

    def fetch(self, symbols: Sequence[str], start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        from psycopg import sql

        symbols = [str(s).strip() for s in symbols]
        if not symbols:
            return empty_candles()
        table = sql.Identifier(*self._table_parts)
        query = sql.SQL(
            "SELECT time, symbol, open, high, low, close, volume FROM {} "
            "WHERE symbol = ANY(%s) AND time >= %s AND time < %s ORDER BY symbol, time"
        ).format(table)
        with self._connect() as conn:
            rows = self._execute(conn, query, (symbols, _utc(start), _utc(end)))
            found = {r[1] for r in rows}
            missing = [s for s in symbols if s not in found]
            if missing:
                # No rows in the window: tell "never heard of it" apart from "nothing in this window".
                known = self._execute(
                    conn,
                    sql.SQL(
                        "SELECT s FROM unnest(%s::text[]) AS s WHERE EXISTS (SELECT 1 FROM {} WHERE symbol = s)"
                    ).format(table),
                    (missing,),
                )
                unknown = sorted(set(missing) - {r[0] for r in known})
                if unknown:
                    raise UnknownSymbolError(
                        f"unknown symbol(s) {', '.join(unknown)}: table {self.table} has no rows for them",
                        where=self._where(),
                    )
        if not rows:
            return empty_candles()
        frame = pd.DataFrame(rows, columns=list(_TABLE_COLUMNS))
        out = normalize_candles(frame, where=self._where())
        return out[list(CANDLE_COLUMNS)]

    # -- internals -----------------------------------------------------------------------------------
    def _where(self) -> str:
        return f"postgres source ({self.table} at {self._redacted})"

    @staticmethod
    def _password_of(url: str) -> str | None:
        try:
            return sa.engine.make_url(url).password
        except Exception:
            return None

    def _scrub(self, text: str) -> str:
        if self._password:
            text = text.replace(self._password, "***")
        return text

    def _connect(self):
        import psycopg
        from psycopg.types.numeric import FloatLoader

        try:
            conn = psycopg.connect(**self._kwargs, autocommit=True)
        except psycopg.Error as exc:
            raise self._classify(exc, connecting=True) from exc
        except OSError as exc:  # e.g. DNS failure surfaces as OSError on some platforms
            raise TransientError(
                f"cannot reach the market database: {self._scrub(str(exc))}", where=self._where()
            ) from exc
        # numeric comes back as float, not Decimal; a text column still comes back as text, for the check.
        conn.adapters.register_loader("numeric", FloatLoader)
        return conn

    def _execute(self, conn, query, params=None) -> list[tuple]:
        import psycopg

        try:
            with conn.cursor() as cur:
                cur.execute(query, params)
                return cur.fetchall()
        except psycopg.Error as exc:
            raise self._classify(exc, connecting=False) from exc

    def _classify(self, exc, *, connecting: bool) -> Exception:
        """A classified platform error for a psycopg error; the message never carries the password."""
        import psycopg
        from psycopg import errors as pe

        # The server's primary message, without the "LINE 1: ..." context psycopg appends.
        primary = getattr(getattr(exc, "diag", None), "message_primary", None)
        raw = " ".join((primary or str(exc)).split())
        detail = self._scrub(raw)  # match on the raw text, show the scrubbed one
        where = self._where()
        if isinstance(exc, (pe.InvalidPassword, pe.InvalidAuthorizationSpecification)) or (
            connecting and (any(p in raw for p in _AUTH_PATTERNS) or _ROLE_MISSING.search(raw))
        ):
            return AuthenticationError(f"the market database refused the credentials: {detail}", where=where)
        if isinstance(exc, pe.InvalidCatalogName) or (connecting and _DB_MISSING.search(raw)):
            return PermanentError(f"the market database does not exist: {detail}", where=where)
        if isinstance(exc, pe.UndefinedTable):
            return PermanentError(
                f"table {self.table} does not exist in the market database ({detail}); "
                "create it or seed it with write_ohlcv",
                where=where,
            )
        if isinstance(exc, pe.UndefinedColumn):
            return PermanentError(
                f"table {self.table} lacks a required column ({detail}); it needs {', '.join(_TABLE_COLUMNS)}",
                where=where,
            )
        if isinstance(exc, pe.QueryCanceled):
            return TransientError(
                f"query on table {self.table} exceeded the {self.timeout_seconds:g} s statement timeout", where=where
            )
        if isinstance(exc, pe.InsufficientPrivilege):
            return AuthenticationError(f"no permission to read table {self.table}: {detail}", where=where)
        if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
            return TransientError(f"cannot reach the market database: {detail}", where=where)
        if isinstance(exc, (pe.InvalidTextRepresentation, pe.DatatypeMismatch, pe.UndefinedFunction)):
            return PermanentError(f"table {self.table} has unexpected column types: {detail}", where=where)
        return PermanentError(f"query on table {self.table} failed: {type(exc).__name__}: {detail}", where=where)


def write_ohlcv(url: str, frame: pd.DataFrame, table: str = "ohlcv", timeout_seconds: float = 60) -> int:
    """Insert candles into ``table`` (created if missing, keyed by symbol and time); returns rows written.

    Any frame ``normalize_candles`` accepts will do. Rows already present for the same (symbol, time) are
    replaced, so seeding twice is harmless. Used by tests and the demo to seed a database.
    """
    from psycopg import sql

    source = PostgresSource(url, table=table, timeout_seconds=timeout_seconds)
    candles = normalize_candles(frame, where=f"write_ohlcv into {table}")
    ident = sql.Identifier(*source._table_parts)
    create = sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (time timestamptz NOT NULL, symbol text NOT NULL, "
        "open double precision, high double precision, low double precision, close double precision, "
        "volume double precision, PRIMARY KEY (symbol, time))"
    ).format(ident)
    upsert = sql.SQL(
        "INSERT INTO {} (time, symbol, open, high, low, close, volume) "
        "SELECT time, symbol, open, high, low, close, volume FROM _alphapulse_load "
        "ON CONFLICT (symbol, time) DO UPDATE SET open = EXCLUDED.open, high = EXCLUDED.high, "
        "low = EXCLUDED.low, close = EXCLUDED.close, volume = EXCLUDED.volume"
    ).format(ident)
    with source._connect() as conn:
        import psycopg

        try:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(create)
                if candles.empty:
                    return 0
                cur.execute(
                    "CREATE TEMP TABLE _alphapulse_load (time timestamptz, symbol text, open float8, "
                    "high float8, low float8, close float8, volume float8) ON COMMIT DROP"
                )
                # COPY is an order of magnitude faster than row INSERTs for a seed of months of bars.
                with cur.copy(
                    "COPY _alphapulse_load (time, symbol, open, high, low, close, volume) FROM STDIN"
                ) as copy:
                    times = candles["timestamp"].dt.tz_convert("UTC").dt.to_pydatetime()
                    cols = [candles[c].to_numpy() for c in ("open", "high", "low", "close", "volume")]
                    for i, (ts, sym) in enumerate(zip(times, candles["symbol"], strict=True)):
                        copy.write_row((ts, sym, *(None if math.isnan(c[i]) else float(c[i]) for c in cols)))
                cur.execute(upsert)
        except psycopg.Error as exc:
            raise source._classify(exc, connecting=False) from exc
    return len(candles)
