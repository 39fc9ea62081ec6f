"""The record of the symbols an operator added and retired (``alphapulse symbols``), in the platform database.

Which symbols are active is the Dagster instance's dynamic partitions ``symbols`` (``symbols.py``); this
ledger records since when, by whom and why, so that ``alphapulse symbols list`` can say it and a retired
symbol is not re-added by the ``ALPHAPULSE_SYMBOLS`` seed. This module does not import Dagster.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa

from alphapulse_assets.platform_db import platform_engine

metadata = sa.MetaData()

symbols_table = sa.Table(
    "alphapulse_symbols",
    metadata,
    sa.Column("symbol", sa.String(32), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),  # active | retired
    sa.Column("since", sa.DateTime(timezone=True), nullable=False),  # of the current status
    sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("added_by", sa.String(128), nullable=False),
    sa.Column("retired_by", sa.String(128)),
    sa.Column("reason", sa.Text),
)

ACTIVE, RETIRED = "active", "retired"
# Exchange tickers and file names: upper-case letters and digits, optionally '-', '_' or '.' inside; the name is a
# partition key, a file name and a URL segment, so nothing else (no '|', '/', spaces).
_SYMBOL = re.compile(r"^[A-Z0-9](?:[A-Z0-9._-]{0,30}[A-Z0-9])?$")


def validate_symbol(name: str) -> str:
    """The symbol in upper case, or a ValueError naming the symbol and what a symbol may hold."""
    symbol = name.strip().upper()
    if not _SYMBOL.match(symbol):
        raise ValueError(
            f"symbol {name!r} is not valid: 1-32 letters and digits, with '-', '_' or '.' only inside (e.g. BTCUSDT)"
        )
    return symbol


@dataclass(frozen=True)
class SymbolRecord:
    symbol: str
    status: str
    since: datetime
    added_at: datetime
    added_by: str
    retired_by: str | None
    reason: str | None


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)  # SQLite returns naive datetimes


class SymbolLedger:
    def __init__(self, url: str):
        self.engine = platform_engine(url)

    def records(self) -> dict[str, SymbolRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(symbols_table).order_by(symbols_table.c.symbol)).mappings().all()
        return {
            r["symbol"]: SymbolRecord(
                r["symbol"],
                r["status"],
                _aware(r["since"]),
                _aware(r["added_at"]),
                r["added_by"],
                r["retired_by"],
                r["reason"],
            )
            for r in rows
        }

    def retired(self) -> set[str]:
        with self.engine.connect() as conn:
            return set(
                conn.execute(sa.select(symbols_table.c.symbol).where(symbols_table.c.status == RETIRED)).scalars()
            )

    def record_added(self, symbols: list[str], *, by: str, reason: str | None = None, at: datetime | None = None):
        at = at or datetime.now(timezone.utc)
        with self.engine.begin() as conn:
            known = set(
                conn.execute(sa.select(symbols_table.c.symbol).where(symbols_table.c.symbol.in_(symbols))).scalars()
            )
            for symbol in symbols:
                values = {"status": ACTIVE, "since": at, "added_at": at, "added_by": by, "retired_by": None}
                if symbol in known:
                    conn.execute(
                        symbols_table.update().where(symbols_table.c.symbol == symbol).values(**values, reason=reason)
                    )
                else:
                    conn.execute(symbols_table.insert().values(symbol=symbol, **values, reason=reason))

    def record_retired(self, symbol: str, *, by: str, reason: str, at: datetime | None = None) -> None:
        at = at or datetime.now(timezone.utc)
        with self.engine.begin() as conn:
            updated = conn.execute(
                symbols_table.update()
                .where(symbols_table.c.symbol == symbol)
                .values(status=RETIRED, since=at, retired_by=by, reason=reason)
            ).rowcount
            if not updated:  # added before the ledger existed (or by hand): recorded now
                conn.execute(
                    symbols_table.insert().values(
                        symbol=symbol,
                        status=RETIRED,
                        since=at,
                        added_at=at,
                        added_by="unknown",
                        retired_by=by,
                        reason=reason,
                    )
                )
