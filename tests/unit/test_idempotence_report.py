"""The bake's idempotence report: two Ansible runs in the Packer template of an image with external
roles (one for the others), the report built from the runs' change files, a role of roles/ that
changes something again rejected, and the report published as signed evidence."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from factory.bake import deps, idempotence
from factory.bake.render import BuildContext, ParentRef, render_template
from factory.catalog import audit, publishing
from factory.catalog.store import Catalog
from factory.catalog.trust import Signer
from factory.core.config import ImageSpec, Layout, load_image
from factory.core.errors import CatalogError, ExternalToolError, VerificationFailed
from tests.unit.conftest import JUNIT, WriteImage, make_entry, make_manifest
from tests.unit.test_deps import TOOLS, _install


def _context(spec: ImageSpec) -> BuildContext:
    parent = ParentRef(ref="p", artifact_id="p", record={})
    return BuildContext(image=spec, version="v", commit="c", created="t", source="", parent=parent)


def _provisioners(spec: ImageSpec, galaxy: Path | None) -> list[dict[str, Any]]:
    text = render_template(_context(spec), Path("/b"), Path("/r/ansible.cfg"), galaxy)
    return list(json.loads(text)["provisioners"])


@pytest.fixture
def tools(layout: Layout, write_image: WriteImage) -> ImageSpec:
    _install(layout)
    write_image("tools", TOOLS.format(role_vars=""))
    return load_image(layout, "tools")


def test_an_image_with_external_roles_runs_its_playbook_twice(tools: ImageSpec) -> None:
    runs = _provisioners(tools, Path("/g"))
    assert [p["playbook_file"] for p in runs] == ["/b/playbook.yml", "/b/playbook.yml"]


@pytest.mark.parametrize("run", [1, 2])
def test_each_run_writes_its_own_change_report(tools: ImageSpec, run: int) -> None:
    env = _provisioners(tools, Path("/g"))[run - 1]["ansible_env_vars"]
    assert f"FACTORY_CHANGES_REPORT=/b/changes-{run}.json" in env
    assert "ANSIBLE_CALLBACKS_ENABLED=factory_changes" in env
    assert "ANSIBLE_CALLBACK_PLUGINS=/r/plugins/callback" in env


def test_an_image_without_external_roles_runs_it_once_without_a_report(real_layout: Layout) -> None:
    (run,) = _provisioners(load_image(real_layout, "nginx"), None)
    assert not any(setting.startswith("FACTORY_CHANGES_REPORT") for setting in run["ansible_env_vars"])


def test_the_callback_plugin_is_where_the_template_points(real_layout: Layout) -> None:
    assert (real_layout.root / "plugins" / "callback" / "factory_changes.py").is_file()


def _run(**changed: int) -> dict[str, Any]:
    return {
        "roles": {name: {"ok": 1, "changed": n} for name, n in changed.items()},
        "changed_tasks": [{"role": name, "task": f"{name} task"} for name, n in changed.items() if n],
    }


SECOND_RUNS = {
    "idempotent": _run(**{"acme.gitconfig": 0, "fixture.tools.motd": 0, "sanitize": 0}),
    "external changed": _run(**{"acme.gitconfig": 2, "fixture.tools.motd": 0, "sanitize": 0}),
}


def test_report_lists_every_role_of_the_image_with_its_counts(tools: ImageSpec) -> None:
    first = _run(**{"acme.gitconfig": 3, "fixture.tools.motd": 1, "sanitize": 4})
    doc = idempotence.report(tools, "v1", [first, SECOND_RUNS["external changed"]])
    assert [(r["name"], r["external"], r["changed"]) for r in doc["roles"]] == [
        ("acme.gitconfig", True, [3, 2]),
        ("fixture.tools.motd", True, [1, 0]),
        ("sanitize", False, [4, 0]),
    ]


def test_an_external_role_changing_again_is_reported_not_failed(tools: ImageSpec, tmp_path: Path) -> None:
    first = _run(**{"acme.gitconfig": 3})
    runs = tmp_path / "1.json", tmp_path / "2.json"
    for path, run in zip(runs, [first, SECOND_RUNS["external changed"]], strict=True):
        path.write_text(json.dumps(run))
    doc = idempotence.collect(tools, "v1", runs, tmp_path / "idempotence.json")
    assert json.loads((tmp_path / "idempotence.json").read_text()) == doc
    assert idempotence.summary(doc) == ["acme.gitconfig (external): changed 2 again: acme.gitconfig task"]


def test_a_role_of_roles_changing_again_fails_the_bake_naming_the_task(tools: ImageSpec) -> None:
    doc = idempotence.report(tools, "v1", [_run(sanitize=4), _run(sanitize=1)])
    with pytest.raises(VerificationFailed) as err:
        idempotence.check(doc)
    assert err.value.exit_code == 3
    assert "sanitize: sanitize task" in err.value.message


def test_the_hint_names_external_roles_that_changed_again_too(tools: ImageSpec) -> None:
    second = _run(**{"acme.gitconfig": 1, "sanitize": 1})
    with pytest.raises(VerificationFailed) as err:
        idempotence.check(idempotence.report(tools, "v1", [_run(sanitize=4), second]))
    assert err.value.hint is not None and "acme.gitconfig changed something again too" in err.value.hint


def test_a_missing_change_report_names_the_file(tools: ImageSpec, tmp_path: Path) -> None:
    with pytest.raises(ExternalToolError) as err:
        idempotence.collect(tools, "v1", [tmp_path / "changes-1.json"], tmp_path / "out.json")
    assert str(tmp_path / "changes-1.json") in err.value.message
    assert not (tmp_path / "out.json").exists()


@pytest.fixture
def published(catalog: Catalog, signer: Signer, tmp_path: Path) -> dict[str, Any]:
    entry = make_entry("base")
    junit = tmp_path / "junit.xml"
    junit.write_text(JUNIT.format(image="base", version=entry.version))
    report = tmp_path / "idempotence.json"
    report.write_text('{"roles": []}\n')
    return dict(
        publishing.publish(
            catalog,
            entry,
            make_manifest("base", entry.version),
            junit,
            signer=signer,
            actor="t",
            idempotence=report,
        )
    )


def test_report_is_published_beside_the_junit_with_its_sha256(
    catalog: Catalog, published: dict[str, Any]
) -> None:
    path = published["idempotence"]["path"]
    assert path == f"evidence/base/{published['version']}/idempotence.json"
    assert hashlib.sha256(catalog.read_file(path)).hexdigest() == published["idempotence"]["sha256"]


def test_report_hash_is_signed(catalog: Catalog, published: dict[str, Any]) -> None:
    catalog.verify_entry(published)  # type: ignore[arg-type]
    tampered = {**published, "idempotence": {**published["idempotence"], "sha256": "e" * 64}}
    with pytest.raises(CatalogError):
        catalog.verify_entry(tampered)  # type: ignore[arg-type]


def test_audit_finds_a_changed_report(catalog: Catalog, published: dict[str, Any]) -> None:
    Path(catalog.describe(published["idempotence"]["path"])).write_bytes(b"{}\n")
    problems = audit.audit(catalog, catalog.load())
    assert any("idempotence.json" in p for p in problems)


def test_a_collection_bundled_with_ansible_is_locked_from_its_folder() -> None:
    folder = "/venv/site-packages/ansible_collections/community/zabbix"
    wanted = [{"name": folder, "type": "dir"}]
    assert deps._collection_source("community.zabbix", "4.1.1", wanted) == (folder, "dir")


def test_entry_without_a_report_has_no_idempotence_field(
    catalog: Catalog, signer: Signer, tmp_path: Path
) -> None:
    entry = make_entry("base")
    junit = tmp_path / "junit.xml"
    junit.write_text(JUNIT.format(image="base", version=entry.version))
    done = publishing.publish(
        catalog, entry, make_manifest("base", entry.version), junit, signer=signer, actor="t"
    )
    assert "idempotence" not in done
