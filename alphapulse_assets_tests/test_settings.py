"""Settings come from the environment, in the forms people type them, with clear errors."""

import pytest
from pydantic import ValidationError

from alphapulse_assets.settings import AlphaPulseSettings


def test_defaults_are_the_design_guide_defaults(monkeypatch):
    for key in list(__import__("os").environ):
        if key.startswith("ALPHAPULSE_"):
            monkeypatch.delenv(key)
    s = AlphaPulseSettings()
    assert s.symbols == ("BTCUSDT", "ETHUSDT", "ADAUSDT", "DOTUSDT", "LINKUSDT")
    assert (s.nightly.cron, s.weekly.cron, s.monthly.cron) == ("0 2 * * *", "0 3 * * 0", "0 3 1 * *")
    assert (s.weekly.timeframe, s.weekly.window_days, s.monthly.timeframe, s.monthly.window_days) == (
        "1h",
        70,
        "4h",
        548,
    )
    assert s.quality.max_missing_fraction == 0.05 and s.retry.max_retries == 3


@pytest.mark.parametrize("value", ["btcusdt, ETHUSDT", '["BTCUSDT", "ethusdt"]'])
def test_symbols_from_a_shell_list_or_json(monkeypatch, value):
    monkeypatch.setenv("ALPHAPULSE_SYMBOLS", value)
    assert AlphaPulseSettings().symbols == ("BTCUSDT", "ETHUSDT")


def test_nested_values_and_sources(monkeypatch):
    monkeypatch.setenv("ALPHAPULSE_SOURCES", "exchange,postgres")
    monkeypatch.setenv("ALPHAPULSE_QUALITY__MAX_MISSING_FRACTION", "0.02")
    monkeypatch.setenv("ALPHAPULSE_WEEKLY__WINDOW_DAYS", "35")
    s = AlphaPulseSettings()
    assert s.sources == ("exchange", "postgres") and s.quality.max_missing_fraction == 0.02
    assert s.weekly.window_days == 35 and s.weekly.cron == "0 3 * * 0"


def test_bad_values_name_the_field(monkeypatch):
    monkeypatch.setenv("ALPHAPULSE_QUALITY__MAX_MISSING_FRACTION", "2")
    with pytest.raises(ValidationError, match="max_missing_fraction"):
        AlphaPulseSettings()
    monkeypatch.delenv("ALPHAPULSE_QUALITY__MAX_MISSING_FRACTION")
    monkeypatch.setenv("ALPHAPULSE_SYMBOLS", " , ")
    with pytest.raises(ValidationError, match="at least one symbol"):
        AlphaPulseSettings()
