"""The suite's tiers are honest: what a selected test starts is what its marks say (README, "Tests")."""

from __future__ import annotations

from alphapulse_assets_tests.conftest import TIER_FIXTURES


def test_tests_using_a_tier_fixture_carry_its_mark(request):
    unmarked = [
        (item.nodeid, mark)
        for item in request.session.items
        for fixture, mark in TIER_FIXTURES.items()
        if fixture in getattr(item, "fixturenames", ()) and item.get_closest_marker(mark) is None
    ]
    assert unmarked == []
