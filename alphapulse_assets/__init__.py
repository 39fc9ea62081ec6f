"""AlphaPulse retraining platform.

The platform relies knowingly on Dagster features marked beta or preview (``backfill_policy``: one run
per range of days, not per day). Their warnings say nothing an operator can act on, and they would be
printed by every command and process that imports the assets, so they are silenced here, once, before
any module of the package is imported (matched by text, so that this package does not import Dagster).
"""

import warnings

warnings.filterwarnings("ignore", message=r".* is currently in (beta|preview)\b")
