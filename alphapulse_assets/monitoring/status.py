"""``alphapulse status``: one screen with health, breakers, cadences, champions, alerts and resources.

``collect_status`` gathers everything as a JSON-safe dict (what ``--json`` prints); ``render_status``
turns it into the screen; ``exit_code`` is 2 when health is critical, so the command serves as a probe.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone

import dagster as dg

from alphapulse_assets.market_data.symbols import active_symbols, ledger
from alphapulse_assets.monitoring import health as hl
from alphapulse_assets.monitoring import readers
from alphapulse_assets.monitoring.health import Status
from alphapulse_assets.monitoring.metrics import ResourceSampler, SampleStore
from alphapulse_assets.platform_db import platform_db_url
from alphapulse_assets.settings import get_settings
from alphapulse_assets.text_tables import render_table
from alphapulse_assets.training.assets import ModelRegistryResource

CRITICAL_EXIT = 2
# A stored sample older than this means the resource sensor is not running: show a live one instead.
SAMPLE_STALE_SECONDS = 300.0


def _champions(url: str) -> list[dict]:
    out = []
    for mv, since in ModelRegistryResource(db_url=url).get().champions_since():
        metrics = mv.info.get("metrics", {})
        out.append(
            {
                "symbol": mv.symbol,
                "cadence": mv.cadence,
                "version": mv.version,
                "since": since.isoformat(),
                "metrics": {
                    k: metrics[k]
                    for k in ("log_loss", "auc", "f1", "precision", "sharpe")
                    if isinstance(metrics.get(k), (int, float))
                },
            }
        )
    return out


def _symbols(instance, url: str) -> dict:
    """The active symbols (the instance's dynamic partitions) and the retired ones, with when and why."""
    retired = [
        {"symbol": r.symbol, "since": r.since.isoformat(), "by": r.retired_by, "reason": r.reason}
        for r in ledger(url).records().values()
        if r.status == "retired"
    ]
    return {"active": active_symbols(instance), "retired": retired}


def _resources(url: str, now: float, instance_home: str | None = None) -> dict | None:
    sample = SampleStore(url).latest()
    source = "stored by resource_metrics_sensor"
    if sample is None or now - sample.at > SAMPLE_STALE_SECONDS:
        ms = get_settings().monitoring
        sampler = ResourceSampler(ms.mount_points, ms.process_match, instance_home=instance_home)
        counters = sampler.counters(time.time())
        time.sleep(0.25)  # a command may wait a moment (a sensor never does): CPU % and rates need two readings
        sample, _ = sampler.sample(counters)
        source = "live (the resource sensor has not stored a recent sample)"
    return {**sample.to_dict(), "age_seconds": max(0.0, now - sample.at), "source": source}


def collect_status(
    instance: dg.DagsterInstance,
    code_location: Callable[[], tuple[bool, str, list]],
    *,
    now: float | None = None,
    check_sources: bool = True,
) -> dict:
    """``code_location()`` loads the definitions: (ok, text, check keys); the caller owns that import."""
    now = time.time() if now is None else now
    url = platform_db_url()
    ok, text, check_keys = code_location()
    report, facts = readers.collect_health(
        instance, now=now, code_location=(ok, text), db_url=url, check_sources=check_sources
    )
    status: dict = {
        "at": now,
        "health": report.to_dict(),
        "breakers": facts["breakers"],
        "open_alerts": facts["open_alerts"],
    }
    for name, reader in (
        ("symbols", lambda: _symbols(instance, url)),
        ("cadences", lambda: readers.last_runs(instance)),
        ("champions", lambda: _champions(url)),
        ("failed_checks", lambda: readers.latest_check_failures(instance, check_keys)),
        ("resources", lambda: _resources(url, now, instance.root_directory)),
    ):
        try:
            status[name] = reader()
        except Exception as exc:  # noqa: BLE001 - show what could be read
            status[name] = None
            status.setdefault("errors", []).append(f"{name}: {type(exc).__name__}: {exc}"[:300])
    return status


def unopenable_instance_status(exc: Exception, *, now: float | None = None) -> dict:
    """What ``status`` can still say when the Dagster instance cannot be opened at all (its disk is full, its
    database is unreachable or corrupt): critical, the classified reason, and what the platform database holds."""
    now = time.time() if now is None else now
    url = platform_db_url()
    checks = [readers.probe_failure("storage", "cannot open the Dagster instance", exc, Status.CRITICAL)]
    status: dict = {"at": now, "breakers": {}, "open_alerts": []}
    for name, reader in (
        ("breakers", lambda: readers.breaker_states(url)),
        ("open_alerts", lambda: readers.open_alerts(url)),
        ("champions", lambda: _champions(url)),
    ):
        try:
            status[name] = reader()
        except Exception as read_exc:  # noqa: BLE001 - show what could be read
            checks.append(readers.probe_failure(name, f"cannot read {name.replace('_', ' ')}", read_exc, detail=False))
            status.setdefault("errors", []).append(f"{name}: {type(read_exc).__name__}")
    status["health"] = hl.overall(checks, now).to_dict()
    return status


def exit_code(status: dict) -> int:
    return CRITICAL_EXIT if status["health"]["status"] == Status.CRITICAL.label else 0


def _ts(at: float | None) -> str:
    if not at:
        return "-"
    return datetime.fromtimestamp(at, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _num(v, fmt: str = "{:.3f}") -> str:
    return "-" if v is None else fmt.format(v)


def _table(headers, rows, align=None) -> list[str]:
    """A section's table, indented under its title."""
    return ["  " + line for line in render_table(headers, rows, align).splitlines()]


def render_status(status: dict) -> str:
    h = status["health"]
    lines = [f"AlphaPulse status at {_ts(status['at'])}: {h['status'].upper()}"]
    for reason in h["reasons"]:
        lines.append(f"  - {reason}")
    lines.append("")
    lines.append("Health checks")
    if h["checks"]:
        lines += _table(("status", "check", "reason"), [[c["status"], c["name"], c["reason"]] for c in h["checks"]])

    lines += ["", "Circuit breakers"]
    if not status["breakers"]:
        lines.append("  none recorded (all closed)")
    else:
        lines += _table(
            ("breaker", "state", "since", "half-open at", "reason"),
            [
                [name, b["state"].upper(), _ts(b["since"]), _ts(b.get("retry_at")), b["reason"]]
                for name, b in sorted(status["breakers"].items())
            ],
        )

    lines += ["", "Cadences (last run)"]
    cadences = status.get("cadences") or {}
    if cadences:
        rows = []
        for cadence, run in cadences.items():
            if run is None:
                rows.append([cadence, "never run", None, None, None, None])
                continue
            took = run.get("duration_seconds")
            rows.append(
                [
                    cadence,
                    run["status"],
                    run.get("partition"),
                    _ts(run.get("start")),
                    None if took is None else f"{took:.0f} s",
                    run["run_id"],
                ]
            )
        lines += _table(
            ("cadence", "status", "partition", "started", "took", "run"),
            rows,
            ("left", "left", "left", "left", "right", "left"),
        )

    symbols = status.get("symbols") or {}
    if symbols:
        active = symbols.get("active") or []
        lines += ["", f"Symbols: {len(active)} active ({', '.join(active) or 'none'})"]
        for r in symbols.get("retired") or []:
            lines.append(f"  retired {r['symbol']} since {r['since'][:16]} by {r['by']}: {r['reason']}")

    lines += ["", "Champions"]
    champions = status.get("champions") or []
    retired = {r["symbol"] for r in symbols.get("retired") or []}
    if not champions:
        lines.append("  none yet (no challenger has passed its gate)")
    else:
        lines += _table(
            ("symbol", "cadence", "version", "since", "log_loss", "auc", "f1", "sharpe"),
            [
                [
                    c["symbol"] + (" (retired)" if c["symbol"] in retired else ""),
                    c["cadence"],
                    f"v{c['version']}",
                    _ts(datetime.fromisoformat(c["since"]).timestamp()),
                    _num(c["metrics"].get("log_loss"), "{:.4f}"),
                    _num(c["metrics"].get("auc")),
                    _num(c["metrics"].get("f1")),
                    _num(c["metrics"].get("sharpe"), "{:.2f}"),
                ]
                for c in champions
            ],
            ("left", "left", "right", "left", "right", "right", "right", "right"),
        )

    lines += ["", "Failed checks (newest evaluation)"]
    failed = status.get("failed_checks") or []
    if not failed:
        lines.append("  none")
    else:
        lines += _table(
            ("asset", "check", "severity", "at", "description"),
            [[f["asset"], f["check"], f["severity"].lower(), _ts(f["at"]), f["description"]] for f in failed],
        )

    lines += ["", "Open alerts"]
    if not status["open_alerts"]:
        lines.append("  none")
    else:
        lines += _table(
            ("severity", "alert", "since", "inhibited", "title"),
            [
                [a["severity"].upper(), a["key"], _ts(a["first_at"]), "yes" if a["inhibited"] else "no", a["title"]]
                for a in status["open_alerts"]
            ],
        )

    lines += ["", "Resources"]
    r = status.get("resources")
    if r:
        disks = ", ".join(f"{m} {p:.1f}%" for m, p in r["disk_percent"].items()) or "-"
        net = (
            "-"
            if r.get("net_recv_bytes_per_s") is None
            else f"{r['net_recv_bytes_per_s'] / 1024:.1f} KiB/s in, {r['net_sent_bytes_per_s'] / 1024:.1f} KiB/s out"
        )
        rss = (
            "-"
            if r.get("dagster_rss_bytes") is None
            else f"{r['dagster_rss_bytes'] / 2**20:.0f} MiB in {r['dagster_processes']} processes"
        )
        lines.append(f"  {r['source']}, {r['age_seconds']:.0f} s old, host {r['host']}")
        lines.append(
            f"  cpu {_num(r.get('cpu_percent'), '{:.1f}%')}  memory {_num(r.get('memory_percent'), '{:.1f}%')}  "
            f"disk {disks}  load {_num(r.get('load1'), '{:.2f}')}"
        )
        lines.append(f"  network {net}  dagster {rss}")
    for err in status.get("errors", []):
        lines.append(f"  (could not read {err})")
    return "\n".join(lines)
