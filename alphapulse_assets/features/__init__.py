"""Indicators, labels, user features and the look-ahead check (pure; no Dagster).

``from alphapulse_assets.features import feature`` is the decorator a user's own feature function carries
(see ``features/user.py``).
"""

from alphapulse_assets.features.user import feature

__all__ = ["feature"]
