"""Market-data sources behind one interface (``CandleSource``), chosen by name from configuration.

- ``sample``: the bundled SYNTHETIC market (the default);
- ``files``: a folder of CSV or Parquet files (see ``files.py`` for the layout);
- ``postgres``: an AlphaPulse ``ohlcv`` table, URL from an environment variable;
- ``exchange``: a crypto exchange through ccxt (``pip install alphapulse-assets[exchange]``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from alphapulse_assets.market_data.sources.base import CandleSource, FetchResult
from alphapulse_assets.market_data.sources.fallback import FallbackChain
from alphapulse_assets.recovery.errors import PermanentError
from alphapulse_assets.settings import AlphaPulseSettings

SOURCE_NAMES = ("sample", "files", "postgres", "exchange")

# Sources added by name at run time: a user's own feed, or a test's fault-injecting source.
_REGISTERED: dict[str, Callable[[AlphaPulseSettings], CandleSource]] = {}


def register_source(name: str, factory: Callable[[AlphaPulseSettings], CandleSource]) -> None:
    """Make ``name`` usable in ``ALPHAPULSE_SOURCES`` / the resource's ``sources`` list."""
    _REGISTERED[name] = factory


def known_source_names() -> tuple[str, ...]:
    """The built-in sources and those registered in this process."""
    return (*SOURCE_NAMES, *_REGISTERED)


def build_source(name: str, settings: AlphaPulseSettings) -> CandleSource:
    """One source by name, configured from settings. Raises PermanentError for an unknown name."""
    # Each source is imported when it is built: all four at module top make this module 1.1 s slower to
    # import (0.4 -> 1.5 s, mostly scipy for the sample), and the start-up configuration check imports it.
    if name in _REGISTERED:
        return _REGISTERED[name](settings)
    if name == "sample":
        from alphapulse_assets.market_data.sources.sample import SampleSource

        return SampleSource(settings.base_timeframe)
    if name == "files":
        from alphapulse_assets.market_data.sources.files import FileSource

        if settings.files_dir is None:
            raise PermanentError(
                "the files source needs ALPHAPULSE_FILES_DIR (a folder of CSV/Parquet files)", where="settings"
            )
        return FileSource(
            settings.files_dir, timeframe=settings.base_timeframe, source_timezone=settings.files_timezone
        )
    if name == "postgres":
        from alphapulse_assets.market_data.sources.postgres import PostgresSource

        return PostgresSource.from_env(settings.postgres_url_env, timeout_seconds=settings.source_timeout_seconds)
    if name == "exchange":
        from alphapulse_assets.market_data.sources.exchange import ExchangeSource

        return ExchangeSource.from_settings(settings)
    raise PermanentError(
        f"unknown market-data source {name!r}; choose from {', '.join(known_source_names())}", where="settings"
    )


def build_chain(names: Sequence[str], settings: AlphaPulseSettings) -> FallbackChain:
    return FallbackChain([build_source(n, settings) for n in names])


__all__ = [
    "CandleSource",
    "FetchResult",
    "FallbackChain",
    "SOURCE_NAMES",
    "build_source",
    "build_chain",
    "known_source_names",
    "register_source",
]
