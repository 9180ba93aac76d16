"""bench/s3_catalog.py's pure parts: lost races counted from the writers' output, the check that no
update was lost, the table rows and their goals. No server, no processes (conftest.py refuses any)."""

from __future__ import annotations

from typing import Any

import pytest

from bench import run, s3_catalog
from bench.s3_catalog import RaceCheck, backoff_estimate_s, lost_races, op_rows, race_rows, ratios
from bench.world import indexed_entry

WRITER_STDERR = """\
s3://bench-catalog/race-0-concurrent/catalog.json: another writer committed first; re-applying (1)
s3://bench-catalog/race-0-concurrent/catalog.json: another writer committed first; re-applying (2)
some other note
s3://bench-catalog/race-0-concurrent/catalog.json: another writer committed first; re-applying (1)
"""

UPDATES = s3_catalog.WRITERS * s3_catalog.PER_WRITER * 2


def check_json(**changes: Any) -> dict[str, Any]:
    return {
        "updates": 64,
        "generation": 64,
        "missing_versions": [],
        "missing_promotions": [],
        "audit_problems": [],
    } | changes


def test_lost_races_counts_each_reapplying_note() -> None:
    assert lost_races(WRITER_STDERR) == 3


def test_lost_races_of_a_quiet_writer_is_zero() -> None:
    assert lost_races("w0 published\n") == 0


def test_lost_races_ignores_the_final_give_up() -> None:
    text = "error: s3://b/catalog.json: changed under this update 16 times in a row\n"
    assert lost_races(text) == 0


def test_backoff_estimate_grows_with_the_attempt() -> None:
    """Attempts 1, 2 and 1: half of 0.1, 0.2 and 0.1 s (the writer's exponential back-off)."""
    assert backoff_estimate_s(WRITER_STDERR) == pytest.approx(0.05 + 0.1 + 0.05)


def test_race_rows_add_the_backoff_per_writer_for_information() -> None:
    rows = race_rows([1.0], [1.0], [0], [0], [2.0])
    backoff = next(r for r in rows if "back-off" in r.figure)
    assert (backoff.summary.median, backoff.met) == (2.0 / s3_catalog.WRITERS, None)


def test_race_check_intact_when_everything_is_there() -> None:
    found = RaceCheck.from_json(check_json())
    assert (found.lost_updates, found.intact, found.problem()) == (0, True, "")


def test_race_check_counts_missing_versions_and_promotions_as_lost() -> None:
    found = RaceCheck.from_json(
        check_json(generation=61, missing_versions=["w1 v"], missing_promotions=["w2 a", "w2 b"])
    )
    assert found.lost_updates == 3


def test_race_check_counts_a_short_generation_as_lost() -> None:
    """Updates can vanish without a missing version (one promotion written over another)."""
    assert RaceCheck.from_json(check_json(generation=62)).lost_updates == 2


@pytest.mark.parametrize(
    ("changes", "failed", "fragment"),
    [
        ({"generation": 63}, 0, "generation 63, expected 64"),
        ({"generation": 65}, 0, "generation 65, expected 64"),
        ({"audit_problems": ["index.json: x"]}, 0, "1 audit problem"),
        ({}, 1, "1 writer(s) failed"),
        ({"missing_versions": ["w0 v"]}, 0, "1 version(s) missing"),
    ],
)
def test_race_check_names_why_it_is_not_intact(changes: dict[str, Any], failed: int, fragment: str) -> None:
    found = RaceCheck.from_json(check_json(**changes), failed_writers=failed)
    assert not found.intact
    assert fragment in found.problem()


def test_ratios_pair_by_pair() -> None:
    assert ratios([2.0, 3.0], [1.0, 2.0]) == [2.0, 1.5]


def test_ratios_refuse_unpaired_runs() -> None:
    with pytest.raises(ValueError, match="shorter"):
        ratios([1.0, 2.0], [1.0])


def op_times(factor: float) -> dict[str, list[float]]:
    return {
        "promote_local": [0.1, 0.2, 0.1],
        "promote_s3": [0.1 * factor, 0.2 * factor, 0.1 * factor],
        "resolve_local": [0.01, 0.01, 0.01],
        "resolve_s3": [0.01 * factor] * 3,
    }


def test_op_rows_check_goals_at_the_largest_size_only() -> None:
    rows = op_rows({100: op_times(10.0), 1000: op_times(1.2)})
    checked = {r.figure: r.met for r in rows if r.met is not None}
    assert checked == {
        "promote at 1,000 versions: S3 / local": True,
        "`resolve --json` at 1,000 versions: S3 / local": True,
    }


def test_op_rows_report_a_missed_goal() -> None:
    rows = op_rows({1000: op_times(s3_catalog.RESOLVE_GOAL + 0.5)})
    assert [r.met for r in rows if r.met is not None] == [False, False]


def test_op_rows_show_milliseconds() -> None:
    rows = op_rows({100: op_times(1.5)})
    assert rows[0].cells()[:3] == ("promote at 100 versions, local (in-process)", "100 ms", "100-200")


def test_race_rows_ratio_and_goal() -> None:
    rows = race_rows([6.0, 5.0, 7.0], [4.0, 5.0, 5.0], [3, 10, 5], [0, 0, 0, 0, 0, 0])
    ratio = next(r for r in rows if "/ 1 process" in r.figure)
    assert ratio.summary.median == 1.4
    assert ratio.met is (s3_catalog.RACE_GOAL >= 1.4)


def test_race_rows_a_single_lost_update_misses_the_goal() -> None:
    rows = race_rows([1.0], [1.0], [0], [0, 1])
    lost = next(r for r in rows if "lost updates" in r.figure)
    assert (lost.met, lost.cells()[1]) == (False, "0")  # the median hides it; the goal does not


def test_race_rows_name_the_number_of_updates() -> None:
    rows = race_rows([1.0], [1.0], [0], [0])
    assert f"{UPDATES} updates" in rows[0].figure


def test_entries_differ_per_image_and_grow_with_the_index() -> None:
    a1, a2, b1 = indexed_entry("w0", 1), indexed_entry("w0", 2), indexed_entry("w1", 1)
    assert a1.version < a2.version
    assert a1.version != b1.version
    assert a1.created < a2.created


def test_s3_is_a_section_of_make_bench() -> None:
    assert "s3" in run.SECTIONS
    assert "s3" in run.parse_args([]).only.split(",")
    assert run.parse_args(["--only", "s3"]).only == "s3"
