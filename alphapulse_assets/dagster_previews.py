"""The Dagster features this platform relies on knowingly although Dagster marks them beta or preview, and the
one place their warnings are silenced.

- ``backfill_policy`` (beta): a backfill of many days runs as a few runs, not one per day;
- ``partitions_def`` on an ``AssetCheckSpec`` (preview): each day's quality verdict and each gate verdict land
  on their own partition (tested in test_bad_data.py and the cadence tests).

Their warnings say nothing an operator can act on, and every command and process that imports the assets would
print them. ``known_previews()`` silences exactly these warnings, only while the definitions that use them are
made: the process's warning filters are the same afterwards, so a user's own warnings, and the warning of a beta
feature the platform did not choose knowingly, still show.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

KNOWN_PREVIEWS: tuple[tuple[type[Warning], str], ...] = (
    (dg.BetaWarning, r"Parameter `backfill_policy` of function `\w+` is currently in beta"),
    (dg.PreviewWarning, re.escape("Specifying a partitions_def on an AssetCheckSpec is currently in preview")),
)


@contextmanager
def known_previews() -> Iterator[None]:
    """Silence the warnings of ``KNOWN_PREVIEWS`` inside the block (at import time: ``catch_warnings`` restores
    the process's filters on exit, and is not meant for threads running at the same time)."""
    with warnings.catch_warnings():
        for category, message in KNOWN_PREVIEWS:
            warnings.filterwarnings("ignore", message=message, category=category)
        yield
