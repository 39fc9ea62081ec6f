"""The daily pipeline performance report, computed from plain records. Pure; no Dagster import.

Per cadence: runs, success and failure rate, failed runs by error class (the platform's one classifier,
``recovery.errors.classify_run``), p50/p95 run duration, retries. Per cadence and symbol, from what a cadence
run records (one step trains every symbol): whether the run trained the symbol's challenger (its
``models/<cadence>/<SYMBOL>`` materialization; a challenger rejected by its gate was trained: the pipeline did
its job), failed it (planned in a failed run but never materialized), and the promotions, rejections and
rollbacks the registry recorded that day. Breaker trips come from the breaker events table. ``report_alerts``
applies the failure-rate and duration threshold rules (defaults 10 % / 20 % and 1800 s / 3600 s) to the report.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from alphapulse_assets.monitoring.thresholds import DEFAULT_RULES, AlertEvent, RuleState, ThresholdRule, evaluate

REPORT_VERSION = 2  # 2: symbol rows from materializations (no per-symbol step durations)


@dataclass(frozen=True)
class StepRecord:
    step_key: str
    status: str  # success | failure | skipped | in_progress
    start: float | None
    end: float | None
    attempts: int = 1

    @property
    def duration(self) -> float | None:
        return None if self.start is None or self.end is None else max(0.0, self.end - self.start)


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    cadence: str
    status: str  # success | failure | canceled | ...
    start: float | None
    end: float | None
    is_retry: bool = False
    steps: tuple[StepRecord, ...] = field(default=())
    #: Symbols whose challenger the run was to train (planned ``models/<cadence>/<SYMBOL>``).
    planned: frozenset[str] = frozenset()
    #: Symbols whose challenger the run trained (materialized ``models/<cadence>/<SYMBOL>``).
    trained: frozenset[str] = frozenset()
    #: A failed run's class (transient | permanent | system), from ``recovery.errors.classify_run``.
    error_class: str | None = None

    @property
    def completed(self) -> bool:
        return self.status == "success"

    @property
    def duration(self) -> float | None:
        return None if self.start is None or self.end is None else max(0.0, self.end - self.start)


@dataclass(frozen=True)
class DecisionRecord:
    cadence: str
    symbol: str
    action: str  # promoted | rejected | rolled_back | kept
    at: float


@dataclass(frozen=True)
class TripRecord:
    breaker: str
    at: float
    reason: str


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default); None for no values."""
    xs = sorted(v for v in values if v is not None and math.isfinite(v))
    if not xs:
        return None
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _rate(part: int, whole: int) -> float | None:
    return None if whole == 0 else part / whole


def _symbol_outcome(run: RunRecord, symbol: str) -> str:
    """ok / failed / not_attempted for one symbol in one run."""
    if symbol in run.trained:
        return "ok"
    if symbol in run.planned and run.status == "failure":
        return "failed"  # the run was to train it and broke before it did
    return "not_attempted"


def build_report(
    day: str,
    window: tuple[float, float],
    cadences: Sequence[str],
    symbols: Sequence[str],
    runs: Iterable[RunRecord],
    decisions: Iterable[DecisionRecord] = (),
    trips: Iterable[TripRecord] = (),
    generated_at: float | None = None,
) -> dict:
    runs = [r for r in runs if r.status in ("success", "failure", "canceled")]
    decisions = [d for d in decisions if window[0] <= d.at < window[1]]
    trips = [t for t in trips if window[0] <= t.at < window[1]]
    by_cadence: dict[str, list[RunRecord]] = defaultdict(list)
    for r in runs:
        by_cadence[r.cadence].append(r)
    dec_count = Counter((d.cadence, d.symbol, d.action) for d in decisions)

    cadence_rows = []
    symbol_rows = []
    for cadence in cadences:
        rs = by_cadence.get(cadence, [])
        ok = sum(r.completed for r in rs)
        failed = len(rs) - ok
        durations = [r.duration for r in rs if r.duration is not None]
        cadence_rows.append(
            {
                "cadence": cadence,
                "runs": len(rs),
                "succeeded": ok,
                "failed": failed,
                "success_rate": _rate(ok, len(rs)),
                "failure_rate": _rate(failed, len(rs)),
                "failed_by_class": dict(
                    sorted(Counter(r.error_class for r in rs if r.status == "failure" and r.error_class).items())
                ),
                "p50_seconds": percentile(durations, 50),
                "p95_seconds": percentile(durations, 95),
                "step_retries": sum(max(0, s.attempts - 1) for r in rs for s in r.steps),
                "run_retries": sum(r.is_retry for r in rs),
                "promotions": sum(v for (c, _s, a), v in dec_count.items() if c == cadence and a == "promoted"),
                "rejections": sum(v for (c, _s, a), v in dec_count.items() if c == cadence and a == "rejected"),
            }
        )
        for symbol in symbols:
            outcomes = [_symbol_outcome(r, symbol) for r in rs]
            n_ok, n_failed = outcomes.count("ok"), outcomes.count("failed")
            attempted = n_ok + n_failed
            symbol_rows.append(
                {
                    "cadence": cadence,
                    "symbol": symbol,
                    "attempted": attempted,
                    "succeeded": n_ok,
                    "failed": n_failed,
                    "success_rate": _rate(n_ok, attempted),
                    "failure_rate": _rate(n_failed, attempted),
                    "promotions": dec_count[(cadence, symbol, "promoted")],
                    "rejections": dec_count[(cadence, symbol, "rejected")],
                    "rollbacks": dec_count[(cadence, symbol, "rolled_back")],
                }
            )

    trip_count = Counter(t.breaker for t in trips)
    all_durations = [r.duration for r in runs if r.duration is not None]
    total_ok = sum(r.completed for r in runs)
    return {
        "version": REPORT_VERSION,
        "day": day,
        "window": {"start": window[0], "end": window[1]},
        "generated_at": generated_at,
        "totals": {
            "runs": len(runs),
            "succeeded": total_ok,
            "failed": len(runs) - total_ok,
            "success_rate": _rate(total_ok, len(runs)),
            "failure_rate": _rate(len(runs) - total_ok, len(runs)),
            "p50_seconds": percentile(all_durations, 50),
            "p95_seconds": percentile(all_durations, 95),
            "breaker_trips": len(trips),
            "promotions": sum(d.action == "promoted" for d in decisions),
            "rejections": sum(d.action == "rejected" for d in decisions),
            "rollbacks": sum(d.action == "rolled_back" for d in decisions),
        },
        "cadences": cadence_rows,
        "symbols": symbol_rows,
        "breaker_trips": [{"breaker": name, "trips": n} for name, n in sorted(trip_count.items())],
    }


def report_alerts(
    report: dict, rules: dict[str, ThresholdRule] | None = None
) -> list[tuple[str, str, AlertEvent | None]]:
    """For each cadence with runs, (alert key, metric, event or None) for failure rate and p95 duration.

    The report is one aggregate, so each rule is evaluated from a fresh state with ``for_seconds`` 0
    (the defaults): an event is "firing" at warning or critical, None means within limits (resolve).
    An event is stamped with the end of the report's day, or the time the report was built if that is
    earlier (today's report so far), never in the future.
    """
    rules = rules or DEFAULT_RULES
    at = float(report["window"]["end"])
    if report.get("generated_at") is not None:
        at = min(at, float(report["generated_at"]))
    out: list[tuple[str, str, AlertEvent | None]] = []
    for row in report["cadences"]:
        if not row["runs"]:
            continue
        checks = [("pipeline_failure_rate_percent", 100.0 * row["failure_rate"])]
        if row["p95_seconds"] is not None:
            checks.append(("run_duration_seconds", row["p95_seconds"]))
        for metric, value in checks:
            rule = rules[metric]
            _state, events = evaluate(rule, RuleState(), value, at)
            firing = next((e for e in events if e.status == "firing"), None)
            out.append((f"report:{metric}:{row['cadence']}", metric, firing))
    return out


def _fmt(value, kind: str = "") -> str:
    if value is None:
        return "-"
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if kind == "s":
        return f"{value:.1f}"
    return str(value)


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _failed_cell(row: dict) -> str:
    by_class = row.get("failed_by_class") or {}
    detail = ", ".join(f"{n} {cls}" for cls, n in by_class.items())
    return f"{row['failed']} ({detail})" if detail else str(row["failed"])


def render_markdown(report: dict) -> dict[str, str]:
    """Markdown tables: per cadence, per cadence and symbol, and breaker trips."""
    cad = _table(
        [
            "cadence",
            "runs",
            "ok",
            "failed",
            "success",
            "failure",
            "p50 s",
            "p95 s",
            "step retries",
            "run retries",
            "promoted",
            "rejected",
        ],
        (
            [
                r["cadence"],
                str(r["runs"]),
                str(r["succeeded"]),
                _failed_cell(r),
                _fmt(r["success_rate"], "pct"),
                _fmt(r["failure_rate"], "pct"),
                _fmt(r["p50_seconds"], "s"),
                _fmt(r["p95_seconds"], "s"),
                str(r["step_retries"]),
                str(r["run_retries"]),
                str(r["promotions"]),
                str(r["rejections"]),
            ]
            for r in report["cadences"]
        ),
    )
    sym = _table(
        [
            "cadence",
            "symbol",
            "attempted",
            "trained",
            "failed",
            "success",
            "failure",
            "promoted",
            "rejected",
            "rolled back",
        ],
        (
            [
                r["cadence"],
                r["symbol"],
                str(r["attempted"]),
                str(r["succeeded"]),
                str(r["failed"]),
                _fmt(r["success_rate"], "pct"),
                _fmt(r["failure_rate"], "pct"),
                str(r["promotions"]),
                str(r["rejections"]),
                str(r["rollbacks"]),
            ]
            for r in report["symbols"]
            if r["attempted"] or r["promotions"] or r["rejections"] or r["rollbacks"]
        ),
    )
    trips = (
        _table(["breaker", "trips"], ([t["breaker"], str(t["trips"])] for t in report["breaker_trips"]))
        if report["breaker_trips"]
        else "No breaker tripped."
    )
    return {"cadences": cad, "symbols": sym, "breaker_trips": trips}


__all__ = [
    "DecisionRecord",
    "RunRecord",
    "StepRecord",
    "TripRecord",
    "build_report",
    "percentile",
    "render_markdown",
    "report_alerts",
]
