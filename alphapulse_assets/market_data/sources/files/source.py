"""``FileSource``: candles for symbols and a window from a folder of CSV / Parquet files."""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from alphapulse_assets.market_data.schema import (
    canonical_timeframe,
    check_timezone,
    empty_candles,
    timeframe_to_timedelta,
)
from alphapulse_assets.market_data.sources.base import CandleSource
from alphapulse_assets.market_data.sources.files import cache
from alphapulse_assets.market_data.sources.files.catalogue import (
    CSV_SUFFIXES,
    NAME_PERIOD_SLACK,
    SYNTHETIC_MARKER,
    Catalogue,
    DataFile,
    Window,
    catalogued,
    stem_of,
    suffix_of,
    symbol_from_top_level_name,
    timeframe_from_parts,
    visible,
    walk_symbol_dir,
)
from alphapulse_assets.market_data.sources.files.parsing import (
    Parsed,
    parse_csv,
    parse_parquet_group,
    row_groups_for,
    timeframe_label,
)
from alphapulse_assets.market_data.sources.files.sniffing import (
    has_symbol_column,
    read_failure,
)
from alphapulse_assets.recovery.errors import (
    AlphaPulseError,
    DataValidationError,
    PermanentError,
    TransientError,
    UnknownSymbolError,
)


class FileSource(CandleSource):
    """Candles from a folder of CSV / Parquet files (layout in the module docstring)."""

    name = "files"

    def __init__(self, root: Path, timeframe: str = "15m", source_timezone: str | None = None):
        self.root = Path(root).expanduser()
        self.source_timezone = source_timezone
        where = f"files source {self.root}"
        try:
            self.timeframe = canonical_timeframe(timeframe)
            self._bar = timeframe_to_timedelta(timeframe)
        except ValueError as exc:
            raise DataValidationError(str(exc), where=where) from exc
        if source_timezone is not None:
            check_timezone(source_timezone, where)
        self.synthetic = (self.root / SYNTHETIC_MARKER).exists()
        # Files whose rows disagree with the year(s) in their name, by path: what was read instead.
        self.notes: dict[str, str] = {}

    # -- catalogue --------------------------------------------------------------------------------

    def check_reachable(self) -> None:
        if not self.root.exists():  # a folder that disappears (unmounted, being replaced) is an outage
            raise TransientError(
                f"the market-data folder does not exist: {self.root} (removed or not mounted? "
                "ALPHAPULSE_FILES_DIR must name a folder of CSV/Parquet files)",
                where=str(self.root),
            )
        if not self.root.is_dir():
            raise PermanentError(f"{self.root} is a file, not a folder of CSV/Parquet files", where=str(self.root))
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise PermanentError(f"the market-data folder is not readable: {self.root}", where=str(self.root))
        try:
            with os.scandir(self.root) as it:
                next(it, None)
        except PermissionError as exc:
            raise PermanentError(
                f"the market-data folder is not readable: {exc.strerror}", where=str(self.root)
            ) from exc

    def _catalogue(self) -> Catalogue:
        self.check_reachable()
        by_symbol: dict[str, list[DataFile]] = {}
        shared: list[DataFile] = []
        with os.scandir(self.root) as it:
            entries = sorted((e for e in it if visible(e)), key=lambda e: e.name)
        for entry in entries:
            path = Path(entry.path)
            if entry.is_dir():
                files = walk_symbol_dir(path, entry.name.upper())
                if files:
                    by_symbol.setdefault(entry.name.upper(), []).extend(files)
                continue
            if suffix_of(path) is None:
                continue
            stem = stem_of(path)
            candidate = catalogued(path, None, timeframe_from_parts([stem]))
            try:
                shared_file = has_symbol_column(candidate)
            except AlphaPulseError:
                # A broken file must not stop the other symbols: file it under its name, and let reading
                # it raise the same error when (and only when) that symbol is asked for.
                shared_file = False
            if shared_file:
                shared.append(candidate)
            else:
                symbol, tf = symbol_from_top_level_name(stem)
                by_symbol.setdefault(symbol, []).append(catalogued(path, symbol, tf))
        return Catalogue(by_symbol, shared)

    def _select_bar_size(self, symbol: str, files: list[DataFile]) -> list[DataFile]:
        """Keep the files whose name says they hold the configured bar size, when names say so."""
        named = {f.timeframe for f in files if f.timeframe is not None}
        if not named:
            return files
        matching = {tf for tf in named if timeframe_to_timedelta(tf) == self._bar}
        if matching:
            return [f for f in files if f.timeframe is None or f.timeframe in matching]
        if any(f.timeframe is None for f in files):
            return [f for f in files if f.timeframe is None]
        found = ", ".join(sorted(named, key=timeframe_to_timedelta))
        raise DataValidationError(
            f"the files for {symbol} hold {found} bars (by their names), but the configured bar size is "
            f"{self.timeframe}: set ALPHAPULSE_BASE_TIMEFRAME={sorted(named, key=timeframe_to_timedelta)[0]} "
            f"to use them, or add {self.timeframe} files",
            where=str(files[0].path.parent),
        )

    # -- reading ----------------------------------------------------------------------------------

    def _load(self, data_file: DataFile, window: Window | None) -> list[tuple[str, Parsed]]:
        """(where, parsed) for the parts of one file that can hold the window (all parts when None)."""
        if data_file.period is not None and window is not None:
            first, end = data_file.period
            if first - NAME_PERIOD_SLACK >= window[1] or end + NAME_PERIOD_SLACK <= window[0]:
                return []
        try:
            key = (*data_file.key(), data_file.symbol, self.source_timezone)
        except OSError as exc:
            raise read_failure(data_file.path, exc) from exc
        if suffix_of(data_file.path) in CSV_SUFFIXES:
            parsed = cache.PARSED.get(key)
            if parsed is None:
                parsed = parse_csv(data_file, self.source_timezone)
                cache.PARSED.put(key, parsed, parsed.nbytes())
            self._check_name(data_file, str(data_file.path), parsed)  # type: ignore[arg-type]
            return [(str(data_file.path), parsed)]  # type: ignore[list-item]
        try:
            pf, groups = row_groups_for(data_file.path, window)
        except Exception as exc:
            raise read_failure(data_file.path, exc) from exc
        out = []
        for g in groups:
            parsed = cache.PARSED.get((*key, g))
            if parsed is None:
                parsed = parse_parquet_group(data_file, pf, g, self.source_timezone)
                cache.PARSED.put((*key, g), parsed, parsed.nbytes())
            where = str(data_file.path) if pf.metadata.num_row_groups == 1 else f"{data_file.path} (row group {g})"
            self._check_name(data_file, where, parsed)  # type: ignore[arg-type]
            out.append((where, parsed))  # type: ignore[arg-type]
        return out

    def _check_name(self, data_file: DataFile, where: str, parsed: Parsed) -> None:
        """A month or day in the name that the rows contradict is refused (such files are skipped for windows
        outside that period, which would drop the other rows unseen); years in the name are only a note."""
        spans = [(int(ns[0]), int(ns[-1])) for ns in parsed.times.values() if len(ns)]
        if not spans:
            return
        first = pd.Timestamp(min(a for a, _ in spans), tz="UTC")
        last = pd.Timestamp(max(b for _, b in spans), tz="UTC")
        held = f"{first:%Y-%m-%d %H:%M} .. {last:%Y-%m-%d %H:%M} UTC"
        if data_file.period is not None:
            start, end = data_file.period
            if first < start - NAME_PERIOD_SLACK or last >= end + NAME_PERIOD_SLACK:
                raise DataValidationError(
                    f"the file's name says it holds {_period_text(start, end)}, but its rows run {held}: a file "
                    "named by month or day is read only for windows in that period, so the other rows would be "
                    "skipped. Rename the file (drop the date from its name) or split it by month",
                    where=where,
                )
        if data_file.name_years is not None:
            start, end = data_file.name_years
            if first < start - NAME_PERIOD_SLACK or last >= end + NAME_PERIOD_SLACK:
                self.notes[str(data_file.path)] = (
                    f"{data_file.path.name}: the name says {_period_text(start, end)}, the rows run {held}; "
                    "all of them were read"
                )

    def _check_bar_size(self, where: str, symbol: str, step: pd.Timedelta | None) -> None:
        if step is None or step == self._bar:
            return
        label = timeframe_label(step)
        hint = (
            f"set ALPHAPULSE_BASE_TIMEFRAME={label} to use these files as they are"
            if label[-1] in "mhdw"
            else f"resample them to {self.timeframe} bars first"
        )
        raise DataValidationError(
            f"the file holds {label} bars for {symbol} (median spacing between rows {step}), but the configured "
            f"bar size is {self.timeframe}: {hint}, or provide {self.timeframe} bars",
            where=where,
        )

    def _known_symbols(self, catalogue: Catalogue, errors: list[tuple[str, Exception]] | None = None) -> set[str]:
        known = set(catalogue.by_symbol)
        for data_file in catalogue.shared:
            try:
                parts = self._load(data_file, None)
            except AlphaPulseError as exc:
                if errors is None:
                    raise
                errors.append((str(data_file.path), exc))
                continue
            for _, parsed in parts:
                known.update(parsed.frames)
        return known

    def _unknown(self, symbol: str, known: set[str]) -> UnknownSymbolError:
        listed = (", ".join(sorted(known)[:30]) + (" ..." if len(known) > 30 else "")) if known else "none"
        return UnknownSymbolError(
            f"no file for symbol {symbol!r} in {self.root}; symbols found there: {listed}. Name a file "
            f"<SYMBOL>.csv or a folder <SYMBOL>/, or add a 'symbol' column (see the files source docs)",
            where=str(self.root),
        )

    def fetch(
        self, symbols: Sequence[str], start: pd.Timestamp, end: pd.Timestamp, *, skip_files: Collection[str] = ()
    ) -> pd.DataFrame:
        """The candles of ``symbols`` in [start, end). ``skip_files``: shared files (paths) already reported as
        unreadable, left out rather than failing every symbol again."""
        start, end = _utc(start), _utc(end)
        window = (start, end)
        catalogue = self._catalogue()
        if skip_files:
            catalogue.shared = [f for f in catalogue.shared if str(f.path) not in skip_files]
        wanted = [s.upper() for s in symbols]
        if not catalogue.shared:  # unknown symbols fail before any file is read
            for symbol in wanted:
                if symbol not in catalogue.by_symbol:
                    raise self._unknown(symbol, set(catalogue.by_symbol))
        shared_parts = [part for f in catalogue.shared for part in self._load(f, window)]
        in_shared = {sym for _, parsed in shared_parts for sym in parsed.frames}
        absent = [s for s in wanted if s not in catalogue.by_symbol and s not in in_shared]
        if absent:
            # Not in the shared files that can hold the window: only now read them all, to tell an unknown
            # symbol from one that merely has no rows in this window.
            known = self._known_symbols(catalogue)
            for symbol in absent:
                if symbol not in known:
                    raise self._unknown(symbol, known)
        frames: list[pd.DataFrame] = []
        for symbol in wanted:
            parts = [
                part
                for f in self._select_bar_size(symbol, catalogue.by_symbol.get(symbol, []))
                for part in self._load(f, window)
            ]
            parts += [p for p in shared_parts if symbol in p[1].frames]
            for where, parsed in parts:
                if symbol not in parsed.frames:
                    continue
                self._check_bar_size(where, symbol, parsed.spacing[symbol])
                ns = parsed.times[symbol]
                lo, hi = np.searchsorted(ns, start.value, "left"), np.searchsorted(ns, end.value, "left")
                if hi > lo:
                    frames.append(parsed.frames[symbol].iloc[lo:hi])
        if not frames:
            return empty_candles()
        out = pd.concat(frames, ignore_index=True)
        # Several files may serve one symbol: order by time, keeping duplicates for the quality check.
        return out.sort_values(["symbol", "timestamp"], kind="stable").reset_index(drop=True)

    def symbols(self, errors: list[tuple[str, Exception]] | None = None) -> list[str]:
        """Every symbol the folder holds (reads shared multi-symbol files, once). With ``errors``, a shared file
        that cannot be read is appended there as (path, error) instead of raising."""
        return sorted(self._known_symbols(self._catalogue(), errors))

    def describe(self) -> str:
        tz = f", naive times in {self.source_timezone}" if self.source_timezone else ""
        synthetic = ", SYNTHETIC sample export" if self.synthetic else ""
        return f"files ({self.root}, {self.timeframe} bars{tz}{synthetic})"


def _period_text(start: pd.Timestamp, end: pd.Timestamp) -> str:
    if end - start <= pd.Timedelta(days=1):
        return f"{start:%Y-%m-%d}"
    if end - start <= pd.Timedelta(days=31):
        return f"{start:%Y-%m}"
    last_year = (end - pd.Timedelta(days=1)).year
    return str(start.year) if last_year == start.year else f"{start.year}-{last_year}"


def _utc(ts: pd.Timestamp) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
