"""The Parquet IO manager hands a frame it just stored to the next step of the same run in the same process
(no second trip through Parquet), and never serves it to anything else: another run reads the store."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pyarrow as pa

from alphapulse_assets.market_data.resources import PartitionedParquetIOManager
from alphapulse_assets.market_data.storage import ParquetPartitionStore

WEEKS = dg.WeeklyPartitionsDefinition(start_date="2024-01-07")
SEEN: dict[str, pd.DataFrame] = {}


@dg.asset(partitions_def=WEEKS, io_manager_key="frames")
def upstream_frame(context) -> pd.DataFrame:
    return pd.DataFrame({"week": [context.partition_key] * 3, "value": [1.0, 2.0, 3.0]})


@dg.asset(partitions_def=WEEKS, ins={"upstream_frame": dg.AssetIn(input_manager_key="frames")})
def downstream_sum(context, upstream_frame: pd.DataFrame) -> None:
    SEEN[context.run_id] = upstream_frame


def test_next_step_of_the_same_run_gets_the_stored_frame_without_reading_it(tmp_path, monkeypatch):
    io = PartitionedParquetIOManager(base_url=str(tmp_path / "store"), layout="keys")
    reads = []
    real_read = ParquetPartitionStore.read_key
    monkeypatch.setattr(ParquetPartitionStore, "read_key", lambda self, *a: reads.append(a) or real_read(self, *a))
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [upstream_frame, downstream_sum], partition_key="2024-01-14", instance=instance, resources={"frames": io}
        )
    assert result.success and reads == []  # handed over, not read back
    stored = ParquetPartitionStore(str(tmp_path / "store")).read_key("upstream_frame", "2024-01-14")
    pd.testing.assert_frame_equal(SEEN[result.run_id].reset_index(drop=True), stored)  # and it was stored


def test_a_later_run_reads_the_store_not_a_frame_kept_from_an_earlier_run(tmp_path):
    io = PartitionedParquetIOManager(base_url=str(tmp_path / "store"), layout="keys")
    with dg.instance_for_test() as instance:
        first = dg.materialize(
            [upstream_frame], partition_key="2024-01-14", instance=instance, resources={"frames": io}
        )
        assert first.success
        # Someone rewrites the partition (another process, a repair): the next run must see the file's content.
        changed = pd.DataFrame({"week": ["2024-01-14"], "value": [42.0]})
        ParquetPartitionStore(str(tmp_path / "store")).write_key(
            "upstream_frame", "2024-01-14", pa.Table.from_pandas(changed, preserve_index=False)
        )
        second = dg.materialize(
            [upstream_frame, downstream_sum],
            partition_key="2024-01-14",
            instance=instance,
            resources={"frames": io},
            selection=[downstream_sum],
        )
        assert second.success
    assert SEEN[second.run_id]["value"].tolist() == [42.0]
