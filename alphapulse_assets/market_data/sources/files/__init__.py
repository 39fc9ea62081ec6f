"""The ``files`` source: candles from a folder of CSV or Parquet files, any market, any bar size.

Point ``ALPHAPULSE_FILES_DIR`` at a folder laid out in one of these ways (they may be mixed):

1. One file per symbol, named after it::

       <root>/BTCUSDT.csv        (also .csv.gz, .csv.zip, .zip, .parquet)
       <root>/EURUSD.parquet

2. One folder per symbol holding many files, for example one per month as Binance's public data dumps
   (data.binance.vision) are laid out. Sub-folders are searched too, so a mirrored
   ``BTCUSDT/15m/BTCUSDT-15m-2024-01.zip`` tree works as it is::

       <root>/BTCUSDT/BTCUSDT-15m-2024-01.csv
       <root>/BTCUSDT/BTCUSDT-15m-2024-02.zip
       <root>/ETHUSDT/2024-01.parquet

   Top-level files named like Binance's, ``<SYMBOL>-<bar size>-<YYYY-MM[-DD]>.<ext>``, are grouped under
   that symbol as well.

3. Files with a ``symbol`` column (also ``ticker``, ``pair``, ``instrument``, ``asset``) holding several
   symbols, e.g. ``<root>/candles.csv``. A top-level file with such a column is read as this layout
   whatever its name.

File names are upper-cased to give the symbol (``btcusdt.csv`` serves ``BTCUSDT``); dates, years and bar
sizes at the end of a top-level name are not part of it (``spx_daily_2012_2019.csv`` serves ``SPX``,
``btc_2021.csv`` serves ``BTC``). A file whose name ends in a month or day (``...-2024-01``,
``...-2024-01-31``, as Binance's dumps are named) is opened only for windows in that period (UTC, give or take
a day), and is refused, naming it, when its rows fall outside it; years in a name (``_2021``, ``_2012_2019``)
never skip a file: it is read whole, and when its rows run outside those years ``FileSource.notes`` says so
(``alphapulse evaluate`` prints it). Parquet files are also skipped row group by row group from their
timestamp statistics. A bar-size token in a name (``-15m-``, ``/1h/``, ``_daily_``) selects the files of the
configured bar size when several are present.

Files written by pandas with their index are read as they are: ``df.to_csv(path)`` of a DatetimeIndex (an
unnamed first column), ``index_label=...`` variants and ``df.to_parquet(path)``; an unnamed column of row
numbers (a RangeIndex) is never taken as time.

Columns and timestamp formats are those :func:`~alphapulse_assets.market_data.schema.normalize_candles`
accepts, which covers the exports people actually have:

- Binance kline dumps, with or without a header (12 numeric columns; open time in ms, or in µs as the
  2025+ spot dumps use);
- Yahoo Finance CSV (``Date,Open,High,Low,Close,Adj Close,Volume``; ``Adj Close`` is ignored);
- Dukascopy / MetaTrader exports (``Gmt time`` as ``01.01.2024 00:00:00.000``, day first; ``Local time``
  with ``GMT+0200``; MetaTrader 5's tab-separated ``<DATE> <TIME> <OPEN> ...`` with separate date and time
  columns; MetaTrader 4's header-less ``2024.01.02,00:00,open,high,low,close,volume``);
- TradingView exports (``time`` as unix seconds, or ISO strings);
- ISO 8601 strings with or without an offset (``2024-01-01T00:00:00+02:00``), ``,``/``;``/tab/``|``
  separators.

Timestamps without an offset are read in ``source_timezone`` (UTC when not given); strings with an offset
and epoch numbers are already unambiguous and ignore it. Times are bar OPEN times.

Errors are classified (``alphapulse_assets.recovery.errors``) and name the file and, where it applies,
the row and line: no file for a symbol raises ``UnknownSymbolError`` listing the symbols that exist; an
empty file, missing columns, text in a price column, unparseable timestamps, local times that do not
exist in ``source_timezone``, an unknown zone name and files holding another bar size than the
configured one raise ``DataValidationError``. Duplicated timestamps are NOT rejected here: they are
passed through unchanged so that the data-quality check reports them with the rest.

Modules: ``catalogue`` (what the folder holds), ``sniffing`` (formats), ``parsing`` (reading, Parquet pruning),
``cache``, ``source`` (``FileSource``), ``export`` (``export_sample``).

Parsed files are cached in-process, keyed by (path, modification time, size, time zone) and bounded in
memory, so daily partitions do not re-read a month file, or a whole folder, once per day.
"""

from alphapulse_assets.market_data.sources.files.cache import cache_info, clear_cache
from alphapulse_assets.market_data.sources.files.catalogue import SYNTHETIC_MARKER
from alphapulse_assets.market_data.sources.files.export import (
    EXPORT_FORMATS,
    EXPORT_LAYOUTS,
    export_sample,
)
from alphapulse_assets.market_data.sources.files.source import FileSource

__all__ = [
    "EXPORT_FORMATS",
    "EXPORT_LAYOUTS",
    "SYNTHETIC_MARKER",
    "FileSource",
    "cache_info",
    "clear_cache",
    "export_sample",
]
