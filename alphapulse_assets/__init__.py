"""AlphaPulse retraining platform.

The Dagster features it relies on knowingly although marked beta or preview, and how their warnings are kept
off the console without touching the process's own warning filters: ``alphapulse_assets.dagster_previews``.
"""
