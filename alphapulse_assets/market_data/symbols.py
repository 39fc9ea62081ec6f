"""Symbols are data: the instance's dynamic partitions ``symbols``, added and retired by a command.

Every per-symbol asset (training sets, models, champions, drift, live scores) is ONE asset partitioned by
``symbols`` (with the cadence's time partitions: a time x symbol grid in the UI), so the definitions do not grow
with the symbol list and adding a symbol needs no redeploy. The active set is read from the instance when a run
or a tick needs it, never at import. ``ALPHAPULSE_SYMBOLS`` is the seed: added when the instance has no symbols
yet (``alphapulse run/demo/ingest``) or by ``alphapulse symbols sync``; a retired symbol is never re-added by it.

Retiring deletes the symbol's dynamic partition, so no schedule or run asks for it again (a run over the active
symbols is one contiguous range); its materializations, check verdicts and model versions stay in the event log
and the registry, and the ledger (``symbol_ledger.py``) records who retired it, when and why.
"""

from __future__ import annotations

import dagster as dg

from alphapulse_assets.market_data.symbol_ledger import SymbolLedger, validate_symbol
from alphapulse_assets.platform_db import platform_db_url
from alphapulse_assets.settings import get_settings

SYMBOLS_NAME = "symbols"
SYMBOLS = dg.DynamicPartitionsDefinition(name=SYMBOLS_NAME)
TIME_DIM, SYMBOL_DIM = "date", "symbol"  # a multi key reads "<date>|<symbol>" (dimensions sort by name)


class UnknownSymbol(ValueError):
    """A symbol that is not active: never added, or retired (the message says which, and what to do)."""


def time_by_symbol(time_partitions: dg.PartitionsDefinition) -> dg.MultiPartitionsDefinition:
    return dg.MultiPartitionsDefinition({TIME_DIM: time_partitions, SYMBOL_DIM: SYMBOLS})


def multi_key(time_key: str, symbol: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({TIME_DIM: time_key, SYMBOL_DIM: symbol})


def split_keys(partition_keys) -> tuple[list[str], list[str]]:
    """(time keys, symbols) of a run's partition keys, each in order and once: the run's rectangle."""
    times, symbols = {}, {}
    for key in partition_keys:
        by_dim = key.keys_by_dimension if isinstance(key, dg.MultiPartitionKey) else _parse(key)
        times.setdefault(by_dim[TIME_DIM], None)
        symbols.setdefault(by_dim[SYMBOL_DIM], None)
    return list(times), list(symbols)


def _parse(key: str) -> dict[str, str]:
    time_key, symbol = key.split("|")
    return {TIME_DIM: time_key, SYMBOL_DIM: symbol}


def active_symbols(instance: dg.DagsterInstance) -> list[str]:
    """The active symbols, in the order they were added (a run's range of symbols follows this order)."""
    return list(instance.get_dynamic_partitions(SYMBOLS_NAME))


def ledger(db_url: str | None = None) -> SymbolLedger:
    return SymbolLedger(db_url or platform_db_url())


def sync_seed(instance: dg.DagsterInstance, *, by: str = "seed (ALPHAPULSE_SYMBOLS)", db_url: str | None = None):
    """Add every ``ALPHAPULSE_SYMBOLS`` symbol that is neither active nor retired; returns those added."""
    book = ledger(db_url)
    active, retired = set(active_symbols(instance)), book.retired()
    new = [s for s in get_settings().symbols if s not in active and s not in retired]
    if new:
        instance.add_dynamic_partitions(SYMBOLS_NAME, new)
        book.record_added(new, by=by)
    return new


def ensure_seeded(instance: dg.DagsterInstance, db_url: str | None = None) -> list[str]:
    """The active symbols; an instance that has none yet gets the seed first."""
    active = active_symbols(instance)
    if not active:
        sync_seed(instance, db_url=db_url)
        active = active_symbols(instance)
    return active


def add_symbols(
    instance: dg.DagsterInstance, names: list[str], *, by: str, reason: str | None = None, db_url: str | None = None
) -> tuple[list[str], list[str]]:
    """Validate and add symbols (a retired one comes back); returns (added, already active)."""
    symbols = list(dict.fromkeys(validate_symbol(n) for n in names))
    active = set(ensure_seeded(instance, db_url))  # the seed first: adding one symbol does not replace it
    new = [s for s in symbols if s not in active]
    if new:
        instance.add_dynamic_partitions(SYMBOLS_NAME, new)
        ledger(db_url).record_added(new, by=by, reason=reason)
    return new, [s for s in symbols if s in active]


def retire_symbol(instance: dg.DagsterInstance, name: str, *, by: str, reason: str, db_url: str | None = None) -> str:
    """Stop training and serving a symbol; its history stays. Raises UnknownSymbol for one that is not active."""
    symbol = validate_symbol(name)
    require_active(instance, symbol, db_url=db_url)
    if not reason.strip():
        raise ValueError("retiring a symbol needs a reason (--reason)")
    instance.delete_dynamic_partition(SYMBOLS_NAME, symbol)
    ledger(db_url).record_retired(symbol, by=by, reason=reason)
    return symbol


def require_active(instance: dg.DagsterInstance, name: str, db_url: str | None = None) -> str:
    """The symbol when it is active; else UnknownSymbol saying it was retired (when, by whom, why) or never added."""
    symbol = name.strip().upper()
    active = active_symbols(instance)
    if symbol in active:
        return symbol
    record = ledger(db_url).records().get(symbol)
    if record is not None and record.status == "retired":
        raise UnknownSymbol(
            f"symbol {symbol} was retired on {record.since:%Y-%m-%d %H:%M} UTC by {record.retired_by}: "
            f"{record.reason} (its history stays readable; to trade it again: alphapulse symbols add {symbol})"
        )
    raise UnknownSymbol(
        f"symbol {symbol} is not an active symbol (active: {', '.join(active) or 'none'}); "
        f"add it with: alphapulse symbols add {symbol}"
    )


def symbol_ranges(symbols: list[str], per_run: int) -> list[tuple[str, str]]:
    """Contiguous (first, last) ranges of ``symbols``, ``per_run`` each (0: one range of all)."""
    if not symbols:
        return []
    size = per_run or len(symbols)
    return [(symbols[i], symbols[min(i + size, len(symbols)) - 1]) for i in range(0, len(symbols), size)]


def range_tags(time_start: str, time_end: str, first: str, last: str) -> dict[str, str]:
    """The tags of a run over the rectangle [time_start, time_end] x [first, last]."""
    return {
        "dagster/asset_partition_range_start": str(multi_key(time_start, first)),
        "dagster/asset_partition_range_end": str(multi_key(time_end, last)),
    }


def symbol_range_tags(first: str, last: str) -> dict[str, str]:
    """The tags of a run over the symbols [first, last] of an asset partitioned by symbol only."""
    return {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}
