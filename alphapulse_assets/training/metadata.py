"""Dagster metadata from ``training.display``'s plain values: the one place that maps them to metadata types."""

from __future__ import annotations

import dagster as dg

from alphapulse_assets.training.display import Markdown


def as_metadata(fields: dict) -> dict:
    """Tables as Markdown, numbers as numbers (the UI plots them), everything else as text."""
    out = {}
    for key, value in fields.items():
        if isinstance(value, Markdown):
            out[key] = dg.MetadataValue.md(str(value))
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            out[key] = dg.MetadataValue.text(str(value))
        else:
            out[key] = dg.MetadataValue.int(value) if isinstance(value, int) else dg.MetadataValue.float(value)
    return out
