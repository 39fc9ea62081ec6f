"""Dagster resources for market data: the source chain and the Parquet IO manager (thin wrappers)."""

from __future__ import annotations

import hashlib
import time

import dagster as dg
import pandas as pd
import pyarrow as pa

from alphapulse_assets.market_data.schema import CANDLE_COLUMNS, to_arrow
from alphapulse_assets.market_data.sources import FetchResult, build_chain
from alphapulse_assets.market_data.storage import ParquetPartitionStore
from alphapulse_assets.market_data.symbols import ensure_seeded
from alphapulse_assets.recovery.errors import DataValidationError
from alphapulse_assets.recovery.policies import classified_failures
from alphapulse_assets.settings import get_settings


class MarketDataResource(dg.ConfigurableResource):
    """Where candles come from. Defaults come from ``AlphaPulseSettings``; run config can override them."""

    sources: list[str] = list(get_settings().sources)
    # None: the instance's active symbols when the run starts (``symbols.py``); a list pins them for this run.
    symbols: list[str] | None = None
    base_timeframe: str = get_settings().base_timeframe
    files_dir: str | None = str(get_settings().files_dir) if get_settings().files_dir else None
    # Market calendar per symbol (crypto, fx, exchange) for the coverage check; a symbol not named here, or
    # ``auto`` (one day cannot tell), is judged as 24/7. From ALPHAPULSE_CALENDAR__MARKET / __BY_SYMBOL.
    calendars: dict[str, str] = {
        s: get_settings().calendar.for_symbol(s)
        for s in get_settings().symbols
        if get_settings().calendar.for_symbol(s) != "auto"
    }
    session_hours: float = get_settings().calendar.session_hours

    def calendar_for(self, symbol: str) -> str:
        chosen = self.calendars.get(symbol.upper()) or get_settings().calendar.for_symbol(symbol)
        return "crypto" if chosen == "auto" else chosen

    def symbols_for(self, instance: dg.DagsterInstance) -> list[str]:
        """The symbols a run fetches: those configured on the resource, else the instance's active symbols."""
        if self.symbols is not None:
            return [s.upper() for s in self.symbols]
        return ensure_seeded(instance)

    def fetch(self, start: pd.Timestamp, end: pd.Timestamp, symbols: list[str]) -> FetchResult:
        settings = get_settings().model_copy(
            update={
                "sources": tuple(self.sources),
                "symbols": tuple(s.upper() for s in symbols),
                "base_timeframe": self.base_timeframe,
                "files_dir": self.files_dir,
            }
        )
        return build_chain(settings.sources, settings).fetch(list(settings.symbols), start, end)


class CandleStoreResource(dg.ConfigurableResource):
    """Read access to the candle store for assets that need a window other than their own partition."""

    base_url: str = get_settings().candle_store_url

    @property
    def store(self) -> ParquetPartitionStore:
        return ParquetPartitionStore(self.base_url)


# The frame a step just stored, for the next step of the same run in the same process (the in-process
# executor): it reads what was written without a second trip through Parquet. One entry, so memory stays
# bounded; a step in another process, or a later run, reads the store as usual.
_last_written: dict[tuple[str, str, tuple[str, ...]], pd.DataFrame] = {}


class PartitionedParquetIOManager(dg.ConfigurableIOManager):
    """Stores day-partitioned frames as one Parquet file per day under ``base_url`` (path or fsspec URL).

    A run over a range of partitions (a backfill) writes all of its days from one frame, and a
    downstream asset that maps to many upstream days reads them back as one frame. Its errors are
    classified like the step's own: a permanent or system error (unknown URL scheme, permission denied,
    a partition never written, a full disk) fails the step at once instead of being retried.
    """

    base_url: str = get_settings().candle_store_url
    # "days": day partitions as segments (candles; a backfill run writes many days at once);
    # "keys": one file per partition key (training sets, weekly and monthly partitions).
    layout: str = "days"

    @property
    def store(self) -> ParquetPartitionStore:
        return ParquetPartitionStore(self.base_url)

    @staticmethod
    def _dataset(context: dg.OutputContext | dg.InputContext) -> str:
        return "/".join(context.asset_key.path)

    def _is_daily(self, context: dg.OutputContext | dg.InputContext) -> bool:
        pdef = context.asset_partitions_def
        return (
            self.layout == "days"
            and isinstance(pdef, dg.TimeWindowPartitionsDefinition)
            and pdef.cron_schedule.startswith("0 0 * * *")
        )

    @staticmethod
    def _key(context: dg.OutputContext | dg.InputContext) -> str:
        """The file name of the partition keys a step writes or reads: the same for the same set of keys.

        Sorted, because Dagster lists a time x symbol range in one order to the writing step and may list it in
        another to a reading step (the retry of a killed run read ``ETHUSDT..BTCUSDT`` as ``BTCUSDT..ETHUSDT``);
        with a digest of the whole set, because two ranges of symbols can share their first and last key.
        A time x symbol key "2024-05-26|BTCUSDT" is stored as "2024-05-26+BTCUSDT" ('|' is awkward in URLs)."""
        keys = PartitionedParquetIOManager._stored_keys(context)
        if len(keys) == 1:
            return keys[0]
        digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:10]
        return f"{keys[0]}..{keys[-1]}.{len(keys)}-{digest}"

    def _handoff_key(self, context: dg.OutputContext | dg.InputContext, run_id: str):
        return run_id, f"{self.base_url}/{self._dataset(context)}", tuple(sorted(context.asset_partition_keys))

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        if not context.has_asset_partitions:
            raise dg.DagsterInvariantViolationError("PartitionedParquetIOManager stores partitioned assets only")
        _last_written.clear()
        with classified_failures(f"storing {self._dataset(context)} {self._key(context)} in {self.base_url}"):
            self._store(context, obj)
        _last_written[self._handoff_key(context, context.run_id)] = obj

    def _store(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        started = time.perf_counter()
        if not self._is_daily(context):  # one file per partition key (or per key range, for a backfill run)
            path = self.store.write_key(
                self._dataset(context),
                self._key(context),
                pa.Table.from_pandas(obj, preserve_index=False),
                holds=self._stored_keys(context),
            )
            context.add_output_metadata(
                {"storage": dg.MetadataValue.path(path), "write_seconds": round(time.perf_counter() - started, 4)}
            )
            return
        # Candle frames are held to the exact canonical schema; other frames keep their own.
        table = (
            to_arrow(obj)
            if set(obj.columns) == set(CANDLE_COLUMNS)
            else pa.Table.from_pandas(obj, preserve_index=False)
        )
        counts = self.store.write_days(self._dataset(context), table, context.asset_partition_keys)
        keys = context.asset_partition_keys
        context.add_output_metadata(
            {
                "storage": dg.MetadataValue.path(self.store.url(self._dataset(context), keys[0])),
                "partitions_written": len(counts),
                "write_seconds": round(time.perf_counter() - started, 4),
            }
        )

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        try:
            run_id = context.step_context.run_id  # the key holds the writer's run: a hit is this run's output
        except Exception:  # an InputContext built outside a run (tests, direct calls)
            run_id = None
        written = _last_written.pop(self._handoff_key(context, run_id), None) if run_id else None
        if written is not None:  # stored a moment ago by the upstream step of this run, in this process
            return written
        with classified_failures(f"loading {self._dataset(context)} {self._key(context)} from {self.base_url}"):
            if not self._is_daily(context):
                return self._read_keys(context)
            return self.store.read_days(self._dataset(context), context.asset_partition_keys)

    @staticmethod
    def _stored_keys(context: dg.OutputContext | dg.InputContext) -> list[str]:
        return sorted(str(k).replace("|", "+") for k in context.asset_partition_keys)

    def _read_keys(self, context: dg.InputContext) -> pd.DataFrame:
        """The file of exactly these keys; else, for time x symbol keys, the rows of these symbols from the newest
        file written for the same time partitions and more symbols (a run over some of the symbols whose
        training set a run over all of them wrote: an operator re-running a few symbols' models from the UI)."""
        dataset = self._dataset(context)
        try:
            return self.store.read_key(dataset, self._key(context))
        except DataValidationError as exc:
            keys = self._stored_keys(context)
            if not isinstance(exc.__cause__, FileNotFoundError) or not all("+" in k for k in keys):
                raise  # unreadable, or not time x symbol keys
            times = {k.split("+", 1)[0] for k in keys}
            found = self.store.read_covering(dataset, keys, prefix=f"{min(times)}+")
            if found is None:
                raise
            frame, held = found
            if {k.split("+", 1)[0] for k in held} != times or "symbol" not in frame.columns:
                raise  # other windows' rows, or rows that do not say their symbol: not this input
            symbols = {k.split("+", 1)[1] for k in keys}
            return frame[frame["symbol"].isin(symbols)].reset_index(drop=True)
