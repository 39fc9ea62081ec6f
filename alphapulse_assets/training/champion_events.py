"""Champion changes as operators see them: on the champion asset in the UI, and as an alert when a file is refused.

The registry (``registry.py``, no Dagster) passes every champion change to one listener, built here:

- a rollback (automatic or by an operator), a fall-back, or a promotion by an operator (``approve``,
  ``promote-shadow``) is reported to the instance as a materialization of ``champions/<cadence>``, on the
  (time, symbol) partition of the version that serves now (an observation when no version serves any more),
  carrying the version, the previous version, who and why; the
  gate's promotions are materialized by the models step itself, with the same metadata
  (``champion_change_metadata``);
- a fall-back (the champion's file was tampered or missing) raises one critical alert,
  ``model_artifact:<SYMBOL>/<cadence>``, through the alert router; it resolves when a champion chosen by the
  gate or a rollback serves again;
- a hold (the gate's implausibility guard) raises one warning alert for review,
  ``model_held:<SYMBOL>/<cadence>``; it resolves when a version of that symbol and cadence is promoted
  (an approval, or a later challenger). A hold changes no champion and materializes nothing.
"""

from __future__ import annotations

import dagster as dg

from alphapulse_assets.alerting.alerts import Alert, build_router_from_env
from alphapulse_assets.market_data.symbols import multi_key
from alphapulse_assets.recovery.errors import Severity
from alphapulse_assets.training.display import champion_fields
from alphapulse_assets.training.metadata import as_metadata
from alphapulse_assets.training.registry import Decision, ModelVersion


def champion_key(cadence: str) -> dg.AssetKey:
    return dg.AssetKey(["champions", cadence])


def champion_partition(symbol: str, version: ModelVersion | None) -> str | None:
    """The (time, symbol) partition a champion change shows on: that of the run that trained the version."""
    trained_for = version.info.get("partition") if version is not None else None
    return str(multi_key(trained_for, symbol)) if trained_for else None


def artifact_alert_key(symbol: str, cadence: str) -> str:
    return f"model_artifact:{symbol}/{cadence}"


def held_alert_key(symbol: str, cadence: str) -> str:
    return f"model_held:{symbol}/{cadence}"


def champion_change_metadata(
    decision: Decision, version: ModelVersion | None = None, *, promotions_in_run: int | None = None
) -> dict:
    """What a champion change shows on the champion asset: version, previous version, who, why, when."""
    return as_metadata(
        champion_fields(
            decision.action,
            decision.version,
            decision.previous_champion,
            decision.by,
            decision.reason,
            decision.at.isoformat(timespec="seconds"),
            version.info.get("metrics", {}) if version else {},
            sha256=version.sha256 if version else None,
            promotions_in_run=promotions_in_run,
        )
    )


class ChampionChangeReporter:
    """The registry's ``on_change`` listener (see the module docstring)."""

    def __init__(self, instance: dg.DagsterInstance | None, db_url: str):
        self.instance = instance
        self.db_url = db_url
        self._resolver = None  # built on the first promotion, reused by the step's others (settings, engine)

    def __call__(self, decision: Decision, version: ModelVersion | None) -> None:
        if decision.action == "fell_back":
            with build_router_from_env(self.db_url) as router:
                router.raise_alert(
                    Alert(
                        key=artifact_alert_key(decision.symbol, decision.cadence),
                        severity=Severity.CRITICAL,
                        title=f"{decision.symbol} {decision.cadence}: champion model file refused",
                        body=decision.reason,
                        source="model-registry",
                    )
                )
        elif decision.action == "held":
            with build_router_from_env(self.db_url) as router:
                router.raise_alert(
                    Alert(
                        key=held_alert_key(decision.symbol, decision.cadence),
                        severity=Severity.WARNING,
                        title=f"{decision.symbol} {decision.cadence}: challenger v{decision.version} held for review",
                        body=f"{decision.reason}\nThe champion keeps serving. To promote it after review: "
                        f"alphapulse models approve {decision.symbol} {decision.cadence} {decision.version} "
                        '--reason "..."',
                        source="promotion-gate",
                    )
                )
            return
        else:  # a promotion or a rollback: a champion the gate or a rollback chose serves again
            if self._resolver is None:
                self._resolver = build_router_from_env(self.db_url)
            router = self._resolver
            keys = [artifact_alert_key(decision.symbol, decision.cadence)]
            if decision.action == "promoted":
                keys.append(held_alert_key(decision.symbol, decision.cadence))
            for key in keys:
                if router.store.open_alert(key) is not None:
                    router.resolve(key)
        if self.instance is None or (decision.action == "promoted" and decision.by == "promotion-gate"):
            return  # the gate's promotions: the models step materializes them itself
        key = champion_key(decision.cadence)
        metadata = {**champion_change_metadata(decision, version), "symbol": decision.symbol}
        partition = champion_partition(decision.symbol, version)  # None: a version no cadence run trained
        if version is None:
            event = dg.AssetObservation(asset_key=key, description=decision.reason, metadata=metadata)
        else:
            event = dg.AssetMaterialization(
                asset_key=key,
                description=decision.reason,
                metadata=metadata,
                partition=partition,
            )
        self.instance.report_runless_asset_event(event)
