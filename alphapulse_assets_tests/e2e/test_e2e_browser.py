"""The web UI in headless Chromium (Debian's package, driven by Playwright) against the live deployment.

Screenshots of every page an assertion is made on go to ``$ALPHAPULSE_TEST_ARTIFACTS`` (default
``<tmp>/alphapulse-test-artifacts/``), named after the test, so a failed CI run shows what the operator saw.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import dagster as dg
import pytest

from alphapulse_assets_tests.dagster_harness import RunSummary, cadence_tags
from alphapulse_assets_tests.e2e.conftest import SYMBOLS

pytestmark = [pytest.mark.browser, pytest.mark.postgres, pytest.mark.slow]

CHROMIUM = Path(os.environ.get("ALPHAPULSE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
CADENCES = ("nightly", "weekly", "monthly")
UI_TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        message = f"Chromium not found at {CHROMIUM}: apt-get install chromium (.ci/run does)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser, live_deployment):
    context = browser.new_context(viewport={"width": 1600, "height": 1000}, base_url=live_deployment.base_url)
    context.set_default_timeout(UI_TIMEOUT_MS)
    p = context.new_page()
    yield p
    context.close()


@pytest.fixture(scope="module")
def cadence_runs(deployment):
    """One run of every cadence for its newest partition, launched through the queue (module scope)."""
    instance = deployment.instance()
    runs = {}
    for name in CADENCES:
        done = [r for r in instance.get_runs(filters=dg.RunsFilter(job_name=f"{name}_cadence")) if r.is_finished]
        if done:
            runs[name] = done[0].run_id
            continue
        key = deployment.latest_key(name)
        runs[name] = deployment.submit(f"{name}_cadence", tags=cadence_tags(instance, key, SYMBOLS))
    for run_id in runs.values():
        deployment.wait_for_run(run_id, timeout=300)
    return runs


def _shot(page, artifacts_dir: Path, name: str) -> None:
    page.screenshot(path=str(artifacts_dir / f"{name}.png"), full_page=True)


def test_asset_graph_shows_lineage_from_candles_to_models_and_champions(page, cadence_runs, artifacts_dir):
    for name in CADENCES:
        champion = f"champions/{name}"  # one asset for every symbol (its partitions are time x symbol)
        page.goto(f"/assets/{champion}?view=lineage&lineageScope=upstream&lineageDepth=5")
        candles = "market_candles" if name == "nightly" else "candles_1h"
        expected = [f"models/{name}", f"training_sets/{name}", candles]
        if candles != "market_candles":
            expected.append("market_candles")
        # Each upstream asset is a node in the champion's upstream graph, linking to its own page.
        for key in expected:
            page.locator(f'a[href^="/assets/{key}?"]').first.wait_for(state="attached")
        # And no other cadence's assets leak into this cadence's lineage.
        others = [c for c in CADENCES if c != name]
        hrefs = page.eval_on_selector_all("a[href^='/assets/']", "els => els.map(e => e.getAttribute('href'))")
        assert not [h for h in hrefs if any(f"/{o}" in h for o in others)], hrefs
        _shot(page, artifacts_dir, f"lineage_{name}")


def test_operator_launches_a_materialization_from_the_ui_and_sees_it_succeed(page, live_deployment, artifacts_dir):
    page.goto("/assets/market_candles")
    page.get_by_role("button", name="Materialize…").first.click()
    dialog = page.locator("[role=dialog]")
    dialog.get_by_text("Latest", exact=True).click()
    _shot(page, artifacts_dir, "materialize_dialog")
    dialog.get_by_role("button", name="Launch 1 run").click()
    toast = page.get_by_text(re.compile(r"Launched run [0-9a-f]{8}"))
    toast.wait_for()
    short_id = re.search(r"[0-9a-f]{8}", toast.inner_text()).group(0)
    page.get_by_role("link", name="View").first.click()
    page.wait_for_url(re.compile(rf"/runs/{short_id}"))
    run_id = page.url.rsplit("/runs/", 1)[1].split("?")[0]
    # The run page shows the final status once the daemon has dequeued and run it.
    page.get_by_text("Success", exact=True).first.wait_for(timeout=120_000)
    _shot(page, artifacts_dir, "materialize_run_succeeded")
    assert live_deployment.run_status(run_id) == "SUCCESS"
    summary = RunSummary(live_deployment.instance(), run_id)
    assert summary.went_through_queue
    # "Latest" is yesterday's partition; only the asset the operator chose was materialized.
    assert [a for a, _p in summary.materialized] == ["market_candles"]
    assert summary.run.tags["dagster/partition"] == summary.materialized[0][1]


def test_failed_gate_check_is_visible_on_the_model_page(page, cadence_runs, live_deployment, artifacts_dir):
    # The e2e weekly gate asks for more validation rows than exist, so this check always fails.
    page.goto("/assets/models/weekly?view=checks")  # one asset for every symbol: its gate, per partition
    row = page.get_by_text("promotion_gate", exact=True).first
    row.wait_for()
    row.click()
    # The rule that failed and why, as the operator reads it on the check.
    page.get_by_text(re.compile(r"enough_validation_samples: .*out-of-sample rows \(need 1000000\)")).first.wait_for()
    assert page.get_by_text("Failed", exact=True).count() >= 1
    _shot(page, artifacts_dir, "failed_check_model_page")
    # A rejection is not a failure: the run that produced it succeeded, and red stays for what broke.
    page.goto(f"/runs/{cadence_runs['weekly']}")
    page.get_by_text("Success", exact=True).first.wait_for(timeout=60_000)
    assert live_deployment.run_status(cadence_runs["weekly"]) == "SUCCESS"
    _shot(page, artifacts_dir, "failed_check_run_page")


BREAKER_QUERY = """
query { assetNodeOrError(assetKey: {path: ["platform", "breakers"]}) { __typename } }
"""


def test_open_breaker_is_visible_on_the_breakers_asset(page, live_deployment, artifacts_dir):
    found = live_deployment.graphql(BREAKER_QUERY)["assetNodeOrError"]["__typename"] == "AssetNode"
    if not found:
        pytest.skip("breaker wiring (issue 4) has not landed in the definitions: no platform/breakers asset to show")
    import dagster as dg

    from alphapulse_assets.recovery.breaker_store import BreakerStore

    d = live_deployment
    store = BreakerStore(d.database_url)
    opened_at = time.time()
    store.force_open("market_data", by="operator-e2e", reason="browser test: exchange maintenance")
    try:
        # The breaker sensor observes platform/breakers after every breaker event (within its interval).
        def observed_open():
            records = d.instance().fetch_observations(dg.AssetKey(["platform", "breakers"]), limit=1).records
            if records and records[0].timestamp >= opened_at:
                meta = records[0].asset_observation.metadata
                return meta.get("market_data/state") and meta["market_data/state"].value == "forced_open"
            return False

        d.wait_until(observed_open, timeout=120, what="the breaker sensor to observe the open breaker", interval=2)
        page.goto("/assets/platform/breakers?view=events")
        page.get_by_text("forced_open").first.wait_for()
        _shot(page, artifacts_dir, "breaker_open_events")
        page.goto("/assets/platform/breakers")
        page.get_by_text("forced_open").first.wait_for()
        _shot(page, artifacts_dir, "breaker_open_overview")
    finally:
        store.reset("market_data", by="operator-e2e", reason="browser test finished")


def _partitions_selected(page) -> int:
    """The count the asset's Partitions tab shows over its time x symbol grid ("336 Partitions Selected")."""
    text = page.get_by_text(re.compile(r"^[\d,]+ Partitions Selected$")).first.inner_text()
    return int(text.split()[0].replace(",", ""))


def test_a_symbol_added_by_command_is_a_new_row_of_every_grid_and_retired_leaves_it(
    page, live_deployment, artifacts_dir
):
    """Symbols are data: `alphapulse symbols add` puts the symbol in the symbol column of each cadence asset's
    time x symbol grid (Partitions tab) with no redeploy or reload; `alphapulse symbols retire` takes it out."""
    d, new = live_deployment, "SOLUSDT"
    page.goto("/assets/models/nightly?view=partitions")
    page.get_by_placeholder(re.compile("Filter by symbol")).wait_for()
    for symbol in SYMBOLS:
        page.get_by_text(symbol, exact=True).first.wait_for()
    before = _partitions_selected(page)
    assert page.get_by_text(new, exact=True).count() == 0
    added = d.cli("symbols", "add", new, "--reason", "browser test: a new market")
    assert added.returncode == 0, added.stdout + added.stderr
    try:
        for asset in ("training_sets/monthly", "champions/weekly", "models/nightly"):
            page.goto(f"/assets/{asset}?view=partitions")
            page.get_by_text(new, exact=True).first.wait_for()
        # One more row: the grid has a cell for every time partition of the new symbol.
        assert _partitions_selected(page) == before // len(SYMBOLS) * (len(SYMBOLS) + 1)
        _shot(page, artifacts_dir, "grid_symbol_added")
    finally:
        retired = d.cli("symbols", "retire", new, "--reason", "browser test finished")
    assert retired.returncode == 0, retired.stdout + retired.stderr
    page.goto("/assets/models/nightly?view=partitions")
    page.get_by_text(SYMBOLS[0], exact=True).first.wait_for()
    assert page.get_by_text(new, exact=True).count() == 0
    assert _partitions_selected(page) == before
    _shot(page, artifacts_dir, "grid_symbol_retired")
