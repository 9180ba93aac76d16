"""The nightly CI workflow (.github/workflows/nightly.yml): GitHub's own schema, how its jobs are
wired together, and the step that turns `factory plan --json` into the rebuild matrix, run for
real (in-process with runpy, since unit tests start no process: see conftest.py).
"""

from __future__ import annotations

import json
import re
import runpy
import shlex
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema.validators import validator_for

from factory.core.config import Layout, load_images
from factory.loop import plan

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "nightly.yml"
RUNNER = ["self-hosted", "linux", "image-factory"]
UPLOAD = "actions/upload-artifact@"
JUNIT = "build/*/*/junit.xml"  # factory/bake/verify.py: build/<image>/<version>/junit.xml
BOOL = "tag:yaml.org,2002:bool"
INSTALL_KEY = "Install the signing key"
SETUP = "Set up (system packages, venv, trusted keys)"


class Yaml12Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans (true/false only): PyYAML's YAML 1.1 reads the key `on`
    as True, which is not what GitHub reads and would fail the schema for the wrong reason."""


Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12Loader.add_implicit_resolver(BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def load_workflow() -> dict[str, Any]:
    data = yaml.load(WORKFLOW.read_text(encoding="utf-8"), Loader=Yaml12Loader)
    assert isinstance(data, dict)
    return data


WF = load_workflow()
JOBS: dict[str, dict[str, Any]] = WF["jobs"]
STEPS = [(job, step) for job, body in JOBS.items() for step in body["steps"]]
RUN_STEPS = [(job, step) for job, step in STEPS if "run" in step]
USES_STEPS = [(job, step) for job, step in STEPS if "uses" in step]


def step_id(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("id") or value.get("name") or value.get("uses"))
    return str(value)


def github_schema() -> dict[str, Any]:
    # check-jsonschema vendors SchemaStore's github-workflow schema: no download at test time.
    text = (
        resources.files("check_jsonschema.builtin_schemas.vendor")
        .joinpath("github-workflows.json")
        .read_text(encoding="utf-8")
    )
    schema = json.loads(text)
    assert isinstance(schema, dict)
    return schema


def schema_errors(instance: Any) -> list[str]:
    schema = github_schema()
    cls = validator_for(schema)  # draft-07, from the schema's own $schema
    cls.check_schema(schema)
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    return sorted(
        f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
        for e in validator.iter_errors(instance)
    )


def needs(job: str) -> list[str]:
    value = JOBS[job].get("needs", [])
    return [value] if isinstance(value, str) else list(value)


def step(job: str, ident: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [s for s in JOBS[job]["steps"] if s.get("id") == ident]
    assert len(found) == 1, f"{job}: no single step with id {ident!r}"
    return found[0]


def commands(run: str) -> Iterator[list[str]]:
    """The argv of each line of a bash `run:` script (quotes removed, as bash would)."""
    for line in run.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            yield shlex.split(line, comments=True)


def strings(node: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every string in the document, with its path (keys included: they may hold expressions too)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*path, str(key)), str(key)
            yield from strings(value, (*path, str(key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from strings(value, (*path, index))
    elif isinstance(node, str):
        yield path, node


# --- GitHub's schema -------------------------------------------------------------------------


def test_workflow_matches_github_schema() -> None:
    assert schema_errors(WF) == []


def test_schema_rejects_a_job_without_runs_on() -> None:
    """The schema has teeth: the test above would catch a broken job."""
    broken = json.loads(json.dumps(WF))
    del broken["jobs"]["plan"]["runs-on"]
    assert schema_errors(broken) != []


# --- Triggers, permissions, concurrency, runners ---------------------------------------------

CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))  # minute hour day-of-month month weekday
CRON_ITEM = re.compile(r"(?:\*|(\d+)(?:-(\d+))?)(?:/(\d+))?")


def cron_ok(expression: str) -> bool:
    fields = expression.split()
    if len(fields) != len(CRON_RANGES):
        return False
    for field, (low, high) in zip(fields, CRON_RANGES, strict=True):
        for item in field.split(","):
            match = CRON_ITEM.fullmatch(item)
            if match is None or (match[3] is not None and int(match[3]) == 0):
                return False
            if match[1] is not None:
                start = int(match[1])
                end = int(match[2]) if match[2] is not None else start
                if not low <= start <= end <= high:
                    return False
    return True


@pytest.mark.parametrize("cron", [entry["cron"] for entry in WF["on"]["schedule"]])
def test_schedule_is_a_valid_five_field_cron(cron: str) -> None:
    assert cron_ok(cron), cron


@pytest.mark.parametrize(
    "cron", ["60 2 * * *", "17 24 * * *", "17 2 * *", "0 0 * * * *", "5-1 * * * *", "*/0 * * * *"]
)
def test_cron_check_rejects(cron: str) -> None:
    assert not cron_ok(cron)


def test_can_be_started_by_hand() -> None:
    assert "workflow_dispatch" in WF["on"]


def test_nothing_can_write_to_the_repository() -> None:
    maps = [WF["permissions"], *(body["permissions"] for body in JOBS.values() if "permissions" in body)]
    assert all(isinstance(m, dict) and set(m.values()) <= {"read", "none"} for m in maps), maps


def test_two_nightlies_never_overlap() -> None:
    concurrency = WF["concurrency"]
    # A fixed group (no ${{ }}): a run by hand on another branch queues behind the nightly too.
    assert "${{" not in concurrency["group"]
    assert concurrency["cancel-in-progress"] is False


@pytest.mark.parametrize("job", sorted(JOBS))
def test_job_has_a_timeout(job: str) -> None:
    assert isinstance(JOBS[job].get("timeout-minutes"), int)


@pytest.mark.parametrize("job", sorted(JOBS))
def test_job_runs_on_the_factory_runner(job: str) -> None:
    assert JOBS[job]["runs-on"] == RUNNER


@pytest.mark.parametrize(("job", "entry"), USES_STEPS, ids=[f"{j}:{s['uses']}" for j, s in USES_STEPS])
def test_action_is_pinned_to_a_major_version(job: str, entry: dict[str, Any]) -> None:
    assert re.fullmatch(r"actions/[a-z-]+@v\d+", entry["uses"])


# --- plan -> rebuild -> summary --------------------------------------------------------------


def test_rebuild_matrix_comes_from_the_plan_output() -> None:
    assert "plan" in needs("rebuild")
    assert JOBS["rebuild"]["strategy"]["matrix"]["branch"] == "${{ fromJSON(needs.plan.outputs.branches) }}"
    assert JOBS["plan"]["outputs"]["branches"] == "${{ steps.matrix.outputs.branches }}"
    assert step("plan", "matrix")


def test_plan_decides_by_the_same_policy_as_the_rebuild() -> None:
    found = [
        argv
        for entry in JOBS["plan"]["steps"]
        for argv in commands(entry.get("run", ""))
        if argv[:2] == [".venv/bin/factory", "plan"]
    ]
    assert len(found) == 1, found
    assert {"--security-only", "--json"} <= set(found[0])


def test_rebuild_is_skipped_when_there_is_nothing_to_do() -> None:
    assert JOBS["rebuild"]["if"] == "needs.plan.outputs.any == 'true'"
    assert JOBS["plan"]["outputs"]["any"] == "${{ steps.matrix.outputs.any }}"


def test_rebuild_fail_fast_is_off() -> None:
    assert JOBS["rebuild"]["strategy"]["fail-fast"] is False


def test_rebuild_step_runs_a_security_only_rebuild_of_the_branch() -> None:
    found = [
        (entry, argv)
        for entry in JOBS["rebuild"]["steps"]
        for argv in commands(entry.get("run", ""))
        if argv[:3] == [".venv/bin/factory", "rebuild", "--security-only"]
    ]
    assert len(found) == 1, found
    entry, argv = found[0]
    # The branch's images, split by bash into separate arguments.
    assert entry["env"]["BRANCH_IMAGES"] == "${{ join(matrix.branch, ' ') }}"
    assert argv[-1] == "${images[@]}"


def test_junit_results_are_uploaded_even_when_a_rebuild_fails() -> None:
    uploads = [s for s in JOBS["rebuild"]["steps"] if s.get("uses", "").startswith(UPLOAD)]
    assert [(s["if"], s["with"]["path"].splitlines()[0]) for s in uploads] == [("always()", JUNIT)]


def test_summary_runs_whatever_the_rebuild_did() -> None:
    assert "rebuild" in needs("summary")
    assert JOBS["summary"]["if"] == "always()"


def test_summary_writes_the_catalog_to_the_step_summary() -> None:
    runs = [s["run"] for s in JOBS["summary"]["steps"] if "$(.venv/bin/factory catalog)" in s.get("run", "")]
    assert len(runs) == 1
    assert '>>"$GITHUB_STEP_SUMMARY"' in runs[0]


def test_the_snapshot_is_re_signed_every_night_before_the_key_goes() -> None:
    """Even a night that rebuilt nothing re-signs the catalog, so that it never expires under
    readers while the factory runs."""
    runs = [s.get("run", "").strip() for s in JOBS["summary"]["steps"]]
    refresh = runs.index(".venv/bin/factory catalog refresh")
    assert refresh < next(i for i, r in enumerate(runs) if r.startswith('rm -f "${FACTORY_SIGNING_KEY'))


# --- The signing key -------------------------------------------------------------------------


def test_secrets_reach_steps_only_through_env() -> None:
    uses = [path for path, text in strings(WF) if re.search(r"\$\{\{[^}]*\bsecrets\.", text)]
    assert uses, "the signing key secret is used somewhere"
    assert all(len(p) == 6 and (p[0], p[2], p[4]) == ("jobs", "steps", "env") for p in uses), uses


@pytest.mark.parametrize(("job", "entry"), RUN_STEPS, ids=[f"{j}:{step_id(s)}" for j, s in RUN_STEPS])
def test_run_script_interpolates_no_expression(job: str, entry: dict[str, Any]) -> None:
    """Values reach scripts through env, never pasted into the script (no echoed secrets, no
    script injection through an image name)."""
    assert "${{" not in entry["run"]


@pytest.mark.parametrize("job", sorted(JOBS))
def test_signing_key_is_installed_before_setup(job: str) -> None:
    names = [s.get("name") for s in JOBS[job]["steps"]]
    assert names.index(INSTALL_KEY) < names.index(SETUP)


@pytest.mark.parametrize("job", sorted(JOBS))
def test_signing_key_file_is_removed_whatever_happens(job: str) -> None:
    removals = [s for s in JOBS[job]["steps"] if s.get("run") == 'rm -f "${FACTORY_SIGNING_KEY:-}"']
    assert [s["if"] for s in removals] == ["always()"]


# --- The matrix step, run for real -----------------------------------------------------------


def test_matrix_step_is_a_python_script() -> None:
    assert step("plan", "matrix")["shell"] == "python3 {0}"


def run_matrix_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, doc: dict[str, Any]) -> list[str]:
    """Run the shipped step as GitHub does (`python3 {0}` on the script), in-process."""
    script = tmp_path / "matrix.py"
    script.write_text(step("plan", "matrix")["run"], encoding="utf-8")
    plan_json = tmp_path / "plan.json"
    plan_json.write_text(json.dumps(doc), encoding="utf-8")
    output = tmp_path / "github-output"
    output.touch()
    monkeypatch.setenv("PLAN_JSON", str(plan_json))
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    runpy.run_path(str(script), run_name="__main__")
    return output.read_text(encoding="utf-8").splitlines()


FORCED = {"code": "forced", "text": "--force", "files": []}


def sample_plan(branches: list[list[str]]) -> dict[str, Any]:
    images = [
        {"image": name, "action": "rebuild", "current": None, "reasons": [FORCED]}
        for branch in branches
        for name in branch
    ]
    return {"schema_version": 1, "images": images, "branches": branches}


@pytest.mark.parametrize(
    ("branches", "expected"),
    [
        ([["base", "nginx"], ["x"]], ['branches=[["base","nginx"],["x"]]', "any=true"]),
        ([], ["branches=[]", "any=false"]),
    ],
    ids=["two-branches", "nothing-to-do"],
)
def test_matrix_step_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, branches: list[list[str]], expected: list[str]
) -> None:
    assert run_matrix_step(tmp_path, monkeypatch, sample_plan(branches)) == expected


def test_matrix_step_reads_what_factory_plan_emits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The contract with factory/loop/plan.py: its real JSON, for this repo's images, goes through."""
    specs = load_images(Layout.discover(REPO))
    decisions = [plan.Decision(image=name, action="rebuild", current=None) for name in ("base", "nginx")]
    doc = plan.as_json(decisions, specs)
    assert run_matrix_step(tmp_path, monkeypatch, doc) == ['branches=[["base","nginx"]]', "any=true"]


@pytest.mark.parametrize("name", ["a b", "-rf", "$(id)", "x\ny", ""])
def test_matrix_step_refuses_a_name_bash_could_split_or_misread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    with pytest.raises(SystemExit, match="not an image name"):
        run_matrix_step(tmp_path, monkeypatch, sample_plan([["base", name]]))


def test_matrix_step_writes_nothing_for_a_bad_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit):
        run_matrix_step(tmp_path, monkeypatch, sample_plan([["base", "a b"]]))
    assert (tmp_path / "github-output").read_text(encoding="utf-8") == ""


def test_matrix_step_refuses_an_unknown_plan_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit, match="schema_version 2"):
        run_matrix_step(tmp_path, monkeypatch, {**sample_plan([["base"]]), "schema_version": 2})
