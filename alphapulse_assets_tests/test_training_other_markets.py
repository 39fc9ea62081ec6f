"""The same pipeline on history a user brings through the files source: daily, hourly and 15m bars."""

from datetime import date

import pytest

from alphapulse_assets.cli import main
from alphapulse_assets.market_data.sources.files import export_sample


@pytest.mark.slow
@pytest.mark.parametrize(
    "timeframe, start, end",
    [
        ("1d", date(2021, 1, 1), date(2025, 6, 30)),  # daily bars (equities-like history)
        ("1h", date(2024, 1, 1), date(2024, 6, 30)),  # hourly (FX-like)
        ("15m", date(2024, 5, 1), date(2024, 6, 15)),
    ],  # 15m crypto
)
def test_evaluate_reports_metrics_against_baselines_on_any_bar_size(tmp_path, capsys, timeframe, start, end):
    export_sample(tmp_path, ["SPYUSD", "EURUSD"], start, end, layout="per-symbol", timeframe=timeframe)
    code = main(
        [
            "evaluate",
            "--files",
            str(tmp_path),
            "--timeframe",
            timeframe,
            "--start",
            str(start),
            "--end",
            str(end),
            "--splits",
            "3",
            "--min-train-bars",
            "200",
            "--min-validation",
            "300",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    lines = [ln for ln in out.splitlines() if ln.startswith(("SPYUSD", "EURUSD"))]
    assert len(lines) == 2, out
    for line in lines:
        fields = line.split()
        log_loss, base, persist = float(fields[3]), float(fields[4]), float(fields[5])
        assert 0.3 < log_loss < 1.5 and 0.6 < base < 0.75 and 0.3 < persist < 1.0
        assert "would be" in line


def test_evaluate_names_a_bar_size_mismatch(tmp_path, capsys):
    export_sample(tmp_path, ["EURUSD"], date(2024, 1, 1), date(2024, 2, 1), layout="per-symbol", timeframe="1h")
    code = main(
        ["evaluate", "--files", str(tmp_path), "--timeframe", "15m", "--start", "2024-01-01", "--end", "2024-02-01"]
    )
    captured = capsys.readouterr()
    (row,) = [line for line in captured.out.splitlines() if line.startswith("EURUSD")]  # said in the symbol's row
    assert "unreadable" in row and "1h bars" in row and "ALPHAPULSE_BASE_TIMEFRAME" in row
    assert code == 1 and "nothing could be evaluated" in captured.err
