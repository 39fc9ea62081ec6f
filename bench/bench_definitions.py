"""Benchmark (d): loading the definitions with 5, 50 and 500 symbols: time and asset / check counts.

Each load is a fresh Python process (as the daemon, the web UI's code server and every run worker load them):
the time is measured inside it, from before `import alphapulse_assets.definitions` until the asset graph is
resolved. The sizes are interleaved and repeated, and each is reported as a ratio to the 5-symbol load of the
same round. With ``--compare DIR`` the same loads run against another checkout (e.g. the code before symbols were
partitions, with its own virtualenv in DIR/.venv) for the before / after counts.

    .venv/bin/python bench/bench_definitions.py --repeat 5
    .venv/bin/python bench/bench_definitions.py --repeat 3 --compare /path/to/older/checkout
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIZES = (5, 50, 500)
LOAD = textwrap.dedent(
    """
    import json, time
    t0 = time.perf_counter()
    from alphapulse_assets.definitions import defs
    graph = defs.resolve_asset_graph()
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "assets": len(list(graph.get_all_asset_keys())),
                      "checks": len(list(graph.asset_check_keys))}))
    """
)


def symbols(n: int) -> list[str]:
    defaults = ["BTCUSDT", "ETHUSDT", "ADAUSDT", "DOTUSDT", "LINKUSDT"]
    return defaults[:n] + [f"S{i:03d}USDT" for i in range(max(0, n - len(defaults)))]


def load(checkout: Path, n: int, home: str) -> dict:
    python = checkout / ".venv" / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPHAPULSE_", "DAGSTER_"))}
    env |= {"ALPHAPULSE_SYMBOLS": ",".join(symbols(n)), "DAGSTER_HOME": home, "ALPHAPULSE_HOME": f"{home}/ap"}
    done = subprocess.run(
        [str(python), "-c", LOAD], cwd=checkout, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"loading the definitions of {checkout} with {n} symbols failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(checkout: Path, repeat: int) -> dict[int, dict]:
    seconds: dict[int, list[float]] = {n: [] for n in SIZES}
    ratios: dict[int, list[float]] = {n: [] for n in SIZES}
    counts: dict[int, tuple[int, int]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-definitions-") as home:
        Path(home, "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        for _ in range(repeat):
            round_ = {n: load(checkout, n, home) for n in SIZES}
            for n, r in round_.items():
                seconds[n].append(r["seconds"])
                ratios[n].append(r["seconds"] / round_[SIZES[0]]["seconds"])
                counts[n] = (r["assets"], r["checks"])
    return {
        n: {
            "median_s": statistics.median(seconds[n]),
            "max_s": max(seconds[n]),
            "ratio": statistics.median(ratios[n]),
            "assets": counts[n][0],
            "checks": counts[n][1],
        }
        for n in SIZES
    }


def table(title: str, results: dict[int, dict]) -> str:
    lines = [f"### {title}", "", "| symbols | assets | checks | load s (median) | load s (max) | ratio to 5 |"]
    lines.append("|---|---|---|---|---|---|")
    for n, r in results.items():
        lines.append(
            f"| {n} | {r['assets']} | {r['checks']} | {r['median_s']:.2f} | {r['max_s']:.2f} | {r['ratio']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--compare", type=Path, default=None, help="another checkout with its own .venv")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", file=sys.stderr)
    print(table("this checkout", measure(ROOT, args.repeat)))
    if args.compare:
        print()
        print(table(f"{args.compare}", measure(args.compare.resolve(), args.repeat)))


if __name__ == "__main__":
    main()
