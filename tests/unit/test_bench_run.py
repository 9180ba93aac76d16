"""bench/run.py's pure parts: statistics, the step-line parser, the Markdown table. No timings,
no processes (the autouse guard in conftest.py refuses any)."""

from __future__ import annotations

import pytest

from bench.run import Row, Summary, markdown_table, parse_args, parse_steps, step_seconds, summarize

BAKE_STDERR = """\
▶ Rendering base 20261129.120425-46a31737732c
✓ Rendering base 20261129.120425-46a31737732c (0.0s)
▶ packer validate
✓ packer validate (0.7s)
▶ packer build (base FROM localhost/factory-bootstrap:bookworm-minbase-3054a93f1a61)
  ==> docker: Creating a temporary directory for sharing data...
✓ packer build (base FROM localhost/factory-bootstrap:bookworm-minbase-3054a93f1a61) (125.9s)
✓ Testinfra gate (test_base.py) (28.6s)
✗ Tagging localhost/base:x (0.2s)
"""


def test_summary_median_of_odd_count() -> None:
    assert summarize([3.0, 1.0, 2.0]).median == 2.0


def test_summary_median_of_even_count_is_the_mean_of_the_middle_two() -> None:
    assert summarize([1.0, 2.0, 4.0, 10.0]).median == 3.0


def test_summary_spread_is_max_minus_min() -> None:
    assert summarize([1.5, 1.0, 1.25]).spread == 0.5


def test_summary_counts_runs() -> None:
    assert summarize(x for x in (1.0, 2.0, 3.0)).runs == 3


def test_summary_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no measurements"):
        summarize([])


def test_parse_steps_reads_each_finished_step() -> None:
    assert parse_steps(BAKE_STDERR)["packer validate"] == 0.7


def test_parse_steps_keeps_titles_with_parentheses() -> None:
    steps = parse_steps(BAKE_STDERR)
    assert (
        steps["packer build (base FROM localhost/factory-bootstrap:bookworm-minbase-3054a93f1a61)"] == 125.9
    )


def test_parse_steps_ignores_started_failed_and_child_lines() -> None:
    assert sorted(parse_steps(BAKE_STDERR)) == [
        "Rendering base 20261129.120425-46a31737732c",
        "Testinfra gate (test_base.py)",
        "packer build (base FROM localhost/factory-bootstrap:bookworm-minbase-3054a93f1a61)",
        "packer validate",
    ]


def test_parse_steps_sums_a_repeated_title() -> None:
    assert parse_steps("✓ packer validate (0.5s)\n✓ packer validate (0.25s)\n") == {"packer validate": 0.75}


def test_step_seconds_sums_by_prefix() -> None:
    assert (
        step_seconds(
            {"packer build (a)": 2.0, "packer build (b)": 3.0, "packer validate": 1.0}, "packer build"
        )
        == 5.0
    )


def test_step_seconds_of_a_missing_step_is_zero() -> None:
    assert step_seconds({"packer validate": 1.0}, "Publishing") == 0.0


def row(**kwargs: object) -> Row:
    fields: dict[str, object] = {
        "figure": "ratio",
        "summary": Summary(median=1.02, low=1.0, high=1.05, runs=3),
    }
    return Row(**(fields | kwargs))  # type: ignore[arg-type]


def test_markdown_table_has_header_rule_and_one_line_per_row() -> None:
    lines = markdown_table([row(), row()]).splitlines()
    assert [lines[0].count("|"), len(lines)] == [6, 4]


def test_markdown_table_cells_show_median_spread_goal_and_verdict() -> None:
    line = markdown_table([row(goal="≤ 1.03", met=True)]).splitlines()[2]
    assert line == "| ratio | 1.02 | 1.00-1.05 | ≤ 1.03 | yes |"


def test_markdown_table_marks_a_missed_goal() -> None:
    assert markdown_table([row(goal="≤ 1.0", met=False)]).splitlines()[2].endswith("| **no** |")


def test_markdown_table_leaves_the_verdict_empty_without_a_goal() -> None:
    assert markdown_table([row()]).splitlines()[2].endswith("|  |  |")


def test_markdown_table_shows_the_unit_after_the_median() -> None:
    line = markdown_table([row(unit="MiB", digits=1)]).splitlines()[2]
    assert "| 1.0 MiB |" in line


def test_markdown_table_escapes_pipes_in_cells() -> None:
    assert r"a \| b" in markdown_table([row(figure="a | b")])


def test_markdown_table_says_when_there_was_one_run() -> None:
    single = Summary(median=2.0, low=2.0, high=2.0, runs=1)
    assert "(1 run)" in markdown_table([row(summary=single)])


# -- bench/registry_swap.py's rows (issue 14): ratios taken run by run, goals checked --------

SWAP_RUNS = {
    "with": [0.6, 0.9],
    "without": [0.5, 0.5],
    "verify": [0.1, 0.3],
    "startup": [0.4, 0.4],
    "yardstick": [0.5, 0.3],
}


def test_the_registry_swap_is_a_section_of_make_bench() -> None:
    assert "registry" in parse_args([]).only.split(",")
    assert parse_args(["--only", "registry"]).only == "registry"


def test_the_swap_ratios_pair_the_runs_measured_side_by_side() -> None:
    from bench.registry_swap import ratios  # noqa: PLC0415 -- imports the factory and the registry fixture

    found = ratios(SWAP_RUNS)
    assert found["swap_over_yardstick"] == pytest.approx([1.2, 3.0])
    assert found["with_over_without"] == pytest.approx([1.2, 1.8])
    assert found["verify_over_startup"] == pytest.approx([0.25, 0.75])


def test_the_swap_rows_check_each_goal_on_the_median_ratio() -> None:
    from bench.registry_swap import GOALS, rows  # noqa: PLC0415

    checked = {row.goal: row.met for row in rows(SWAP_RUNS) if row.met is not None}
    # medians: swap 2.1 yardsticks, with/without 1.5, verify/startup 0.5
    assert checked == {
        f"≤ {GOALS['swap_over_yardstick']}": True,
        f"≤ {GOALS['with_over_without']}": True,
        f"≤ {GOALS['verify_over_startup']}": True,
    }
    broken = dict(SWAP_RUNS, verify=[0.3, 0.5])
    assert [row.met for row in rows(broken) if "verify-image` /" in row.figure] == [False]
