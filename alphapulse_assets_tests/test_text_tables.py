"""The one table renderer of the command line: whole cells, aligned columns, a dash for nothing."""

from alphapulse_assets.text_tables import render_table


def test_cells_are_whole_and_columns_line_up():
    reason = "rejected: log loss 0.6931 not below base rate 0.6930 (p=0.062 >= 0.05)"
    text = render_table(
        ["symbol", "bars", "verdict"],
        [["BTCUSDT", "1200", reason], ["ETH", "12", None]],
        align=["left", "right", "left"],
    )
    header, rule, first, second = text.splitlines()
    assert first.endswith(reason)  # never cut
    assert second.split() == ["ETH", "12", "-"]  # None is a dash
    # "bars" is right-aligned: the numbers end where the header ends
    end = header.index("bars") + len("bars")
    assert first[:end].endswith("1200") and second[:end].endswith("12")
    assert set(rule.replace(" ", "")) == {"-"}


def test_numbers_keep_the_digits_the_caller_chose():
    text = render_table(["log loss"], [["0.6900"], ["1e-05"]])
    assert "0.6900" in text and "1e-05" in text  # not re-parsed into 0.69 or 1e-5
