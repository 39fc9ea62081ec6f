"""``alphapulse breaker ...``: the operator's controls over the circuit breakers.

    alphapulse breaker list                                  every breaker, its state, since, retry_at, reason
    alphapulse breaker history [NAME] [--limit N]            recent transitions, oldest first
    alphapulse breaker force-open NAME --reason TEXT         hold it open (schedules skip) until reset
    alphapulse breaker disable NAME --reason TEXT            switch it off (never trips) until reset
    alphapulse breaker reset NAME --reason TEXT              back to CLOSED

Actions are recorded with ``by`` = ``$USER`` and the reason, in the breaker's events (the breaker sensor
alerts on them and shows them in the UI). Names are the protected dependencies of the recovery
configuration (``market_data``, ``training`` by default) or breakers already stored; anything else is
refused so that a typo does not create a breaker nobody reads. The arguments are parsed by ``alphapulse_assets.cli``
(building the parser imports nothing of the platform, so ``alphapulse --help`` answers at once).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable

from alphapulse_assets.alerting.alerts import iso_utc
from alphapulse_assets.recovery import breaker as bk
from alphapulse_assets.recovery.config import load_recovery_config
from alphapulse_assets.recovery.gating import default_store
from alphapulse_assets.text_tables import print_table


def _operator() -> str:
    user = os.environ.get("USER") or os.environ.get("USERNAME")
    if user:
        return user
    try:
        return getpass.getuser()
    except Exception:  # pragma: no cover - no passwd entry in a container
        return "unknown"


def _known_names(store, config) -> list[str]:
    return sorted(set(config.dependencies) | set(config.breakers) | set(store.all()))


def cmd_breaker(
    args: argparse.Namespace, prepare: Callable[[], object] | None = None, *, out=None, now: float | None = None
) -> int:
    out = out or sys.stdout
    if prepare is not None:
        prepare()

    store = default_store()
    config = load_recovery_config()
    now = store.clock() if now is None else now
    command = args.breaker_command
    if command == "list":
        stored = store.all()
        rows = []
        for name in _known_names(store, config):
            if name in stored:
                state = bk.current(stored[name], config.breaker(name), now)[0]
                since, reason = iso_utc(state.since), state.reason
            else:
                state, since, reason = bk.initial_state(now), None, "no outcome recorded yet"
            retry = iso_utc(state.retry_at) if state.retry_at is not None else None
            rows.append([name, state.state.value, since, retry, state.successes, state.failures, reason])
        print_table(
            ("breaker", "state", "since", "retry_at", "ok", "fail", "reason"),
            rows,
            ("left", "left", "left", "left", "right", "right", "left"),
            out=out,
        )
        return 0
    name = args.name
    if name is not None and name not in _known_names(store, config):
        print(f"alphapulse: unknown breaker {name!r}; known: {', '.join(_known_names(store, config))}", file=sys.stderr)
        return 2
    if command == "history":
        events = store.events(name=name, limit=args.limit)
        if events:
            print_table(
                ("when (UTC)", "breaker", "from", "to", "reason"),
                [[iso_utc(ev.at), ev.name, ev.from_state, ev.to_state, ev.reason] for ev in events],
                out=out,
            )
        else:
            print(
                f"no transitions recorded yet{f' for {name}' if name else ''}: "
                f"{'it has' if name else 'every breaker has'} been closed since it was created",
                file=out,
            )
        return 0
    reason = args.reason.strip()
    if not reason:
        print("alphapulse: --reason must not be empty", file=sys.stderr)
        return 2
    by = _operator()
    action = {"force-open": store.force_open, "disable": store.disable, "reset": store.reset}[command]
    state = action(name, by, reason, now)
    print(f"{name}: {state.state.value} ({state.reason})", file=out)
    return 0


__all__ = ["cmd_breaker"]
