"""External roles and collections without ansible-galaxy: a lock and its installed folder written
here by hand, as `factory deps install` leaves them (tests/integration/test_deps_e2e.py makes
real ones)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from factory.bake import deps, verify
from factory.bake.inputs import fingerprint, used_dependencies
from factory.bake.render import BuildContext, ParentRef, render_template, structural_sha256
from factory.catalog import diff, model, publishing
from factory.catalog.store import Catalog
from factory.catalog.trust import Signer
from factory.core import galaxy
from factory.core.config import Layout, load_image, load_images
from factory.core.errors import CatalogError, ConfigError
from factory.core.galaxy import COLLECTION, ROLE, Lock, Locked
from tests.unit.conftest import JUNIT, WriteImage, make_entry, make_manifest, version_id

ROLE_DEFAULTS = "---\ngitconfig_packages: [git]\ngitconfig_default_branch: main\n"


def _install(layout: Layout, *, motd_default: str = "hello", version: str = "1.0.0") -> Lock:
    """A role acme.gitconfig (no argument_specs) and a collection fixture.tools with role motd,
    installed where Finder looks, and the lock that pins them."""
    staging = layout.cache / "staging"
    role = staging / "roles" / "acme.gitconfig"
    (role / "tasks").mkdir(parents=True)
    (role / "tasks" / "main.yml").write_text(
        "---\n- name: Git configuration\n  ansible.builtin.copy:\n    dest: /etc/gitconfig\n    content: x\n"
    )
    (role / "defaults").mkdir()
    (role / "defaults" / "main.yml").write_text(ROLE_DEFAULTS)
    (role / "meta").mkdir()
    (role / "meta" / ".galaxy_install_info").write_text("install_date: today\nversion: v1.2.0\n")
    coll = staging / "collections" / "ansible_collections" / "fixture" / "tools"
    motd = coll / "roles" / "motd"
    (motd / "tasks").mkdir(parents=True)
    (motd / "tasks" / "main.yml").write_text(
        "---\n- name: Motd\n  ansible.builtin.copy:\n    dest: /etc/{{ motd_file }}\n    content: x\n"
        "- name: Facts\n  ansible.builtin.copy:\n    dest: /etc/{{ ansible_facts.fqdn }}\n    content: x\n"
    )
    (motd / "defaults").mkdir()
    (motd / "defaults" / "main.yml").write_text(f"---\nmotd_text: {motd_default}\nmotd_file: motd\n")
    (motd / "meta").mkdir()
    (motd / "meta" / "argument_specs.yml").write_text(
        "---\nargument_specs:\n  main:\n    options:\n      motd_text:\n        type: str\n"
    )
    (coll / "MANIFEST.json").write_text(json.dumps({"collection_info": {"version": version}}))
    (layout.root / galaxy.REQUIREMENTS).write_text("---\nroles: []\ncollections: []\n")
    lock = Lock(
        requirements_sha256=galaxy.requirements_sha256(layout.root),
        deps=(
            Locked(kind=COLLECTION, name="fixture.tools", version=version, source="t.tar.gz", type="file",
                   sha256=galaxy.content_sha256(coll, COLLECTION)),
            Locked(kind=ROLE, name="acme.gitconfig", version="v1.2.0", source="git+file:///r", type="git",
                   sha256=galaxy.content_sha256(role, ROLE)),
        )
    )  # fmt: skip
    (layout.root / galaxy.LOCK).write_text(galaxy.lock_text(lock))
    target = layout.cache / "galaxy" / lock.key
    target.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(target)
    return lock


TOOLS = """description = "tools"
tests = ["test_base.py"]
[parent]
image = "base"
[[roles]]
name = "acme.gitconfig"
{role_vars}
[[roles]]
name = "fixture.tools.motd"
[roles.vars]
motd_text = "hi"
[[roles]]
name = "sanitize"
"""


def test_dotted_and_collection_names_resolve_to_the_installed_lock(
    layout: Layout, write_image: WriteImage
) -> None:
    lock = _install(layout)
    write_image("tools", TOOLS.format(role_vars='[roles.vars]\ngitconfig_default_branch = "trunk"'))
    spec = load_image(layout, "tools")
    installed = layout.cache / "galaxy" / lock.key
    assert spec.roles[0].path == installed / "roles" / "acme.gitconfig"
    assert spec.roles[1].path == installed / "collections/ansible_collections/fixture/tools/roles/motd"
    assert [d.name for d in used_dependencies(spec)] == ["fixture.tools", "acme.gitconfig"]


def test_unknown_var_of_a_role_without_spec_suggests_the_closest_default(
    layout: Layout, write_image: WriteImage
) -> None:
    _install(layout)
    path = write_image("tools", TOOLS.format(role_vars='[roles.vars]\ngitconfig_default_brnch = "trunk"'))
    with pytest.raises(ConfigError) as err:
        load_images(layout)
    assert f"{path}: roles.0.vars.gitconfig_default_brnch" in err.value.message
    assert "did you mean 'gitconfig_default_branch'?" in (err.value.hint or "")


def test_vars_unchecked_passes_an_unknown_var_and_changes_the_fingerprint(
    layout: Layout, write_image: WriteImage
) -> None:
    _install(layout)
    write_image("tools", TOOLS.format(role_vars="vars_unchecked = true\n[roles.vars]\nfrom_elsewhere = 1"))
    spec = load_image(layout, "tools")
    assert spec.roles[0].vars_unchecked
    checked = replace(spec, roles=(replace(spec.roles[0], vars_unchecked=False), *spec.roles[1:]))
    assert fingerprint(spec, {}, parent={}, template_sha256="t") != fingerprint(
        checked, {}, parent={}, template_sha256="t"
    )


def test_role_with_spec_in_a_collection_is_checked_by_its_spec(
    layout: Layout, write_image: WriteImage
) -> None:
    _install(layout)
    write_image("tools", TOOLS.format(role_vars="").replace('motd_text = "hi"', "motd_text = 3"))
    with pytest.raises(ConfigError, match=r"roles\.1\.vars: variables do not match .*argument_specs"):
        load_images(layout)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("acme.other", "the role acme.other is not in"),
        ("fixture.other.motd", "the collection fixture.other is not in"),
        ("fixture.tools.nothing", "has no role 'nothing'"),
        ("Bad Name", "roles.0.name: 'Bad Name' does not match"),
    ],
)
def test_unknown_external_names_exit_2_naming_the_field(
    layout: Layout, write_image: WriteImage, name: str, message: str
) -> None:
    _install(layout)
    path = write_image("tools", TOOLS.format(role_vars="").replace('"acme.gitconfig"', json.dumps(name)))
    with pytest.raises(ConfigError) as err:
        load_images(layout)
    assert err.value.exit_code == 2
    assert str(path) in err.value.message and message in err.value.message


def test_locked_but_not_installed_says_install(layout: Layout, write_image: WriteImage) -> None:
    lock = _install(layout)
    (layout.cache / "galaxy" / lock.key).rename(layout.cache / "elsewhere")
    write_image("tools", TOOLS.format(role_vars=""))
    with pytest.raises(ConfigError) as err:
        load_images(layout)
    assert err.value.hint == "factory deps install"


def test_install_metadata_is_not_content(tmp_path: Path) -> None:
    role = tmp_path / "role"
    (role / "meta").mkdir(parents=True)
    (role / "tasks").mkdir()
    (role / "tasks" / "main.yml").write_text("---\n")
    (role / "meta" / ".galaxy_install_info").write_text("install_date: monday\n")
    before = galaxy.content_sha256(role, ROLE)
    (role / "meta" / ".galaxy_install_info").write_text("install_date: tuesday\n")
    assert galaxy.content_sha256(role, ROLE) == before
    (role / "tasks" / "main.yml").write_text("---\n# changed\n")
    assert galaxy.content_sha256(role, ROLE) != before


def test_installed_content_that_differs_from_the_lock_exits_2_naming_it(layout: Layout) -> None:
    lock = _install(layout)
    installed = layout.cache / "galaxy" / lock.key
    (installed / "roles" / "acme.gitconfig" / "defaults" / "main.yml").write_text("---\nx: 1\n")
    with pytest.raises(ConfigError) as err:
        deps.install(layout.root, layout.cache)
    assert "role acme.gitconfig v1.2.0: content sha256" in err.value.message


def test_installed_lock_that_matches_is_used_as_it_is(layout: Layout) -> None:
    lock = _install(layout)
    assert deps.install(layout.root, layout.cache) == (lock, layout.cache / "galaxy" / lock.key, False)


@pytest.mark.parametrize(
    ("old", "new", "line"),
    [
        ("1.0.0", "1.0.1", "collection fixture.tools 1.0.0 → 1.0.1"),
        ("1.0.0", "1.0.0", "collection fixture.tools 1.0.0: content changed"),
    ],
)
def test_dependency_changes_name_the_dependency(old: str, new: str, line: str) -> None:
    recorded = [{"kind": COLLECTION, "name": "fixture.tools", "version": old, "sha256": "a" * 64}]
    now = Locked(
        kind=COLLECTION, name="fixture.tools", version=new, source="s", type="file", sha256="b" * 64
    )
    assert galaxy.dependency_changes(recorded, [now.to_json()]) == [line]


def test_same_dependencies_are_no_change() -> None:
    dep = Locked(kind=ROLE, name="a.b", version="1", source="s", type="git", sha256="c" * 64)
    assert galaxy.dependency_changes([dep.to_json()], [dep.to_json()]) == []


def test_images_without_dependencies_render_as_before(real_layout: Layout) -> None:
    spec = load_image(real_layout, "nginx")
    ctx = BuildContext(
        image=spec,
        version="v",
        commit="c",
        created="t",
        source="",
        parent=ParentRef(ref="p", artifact_id="p", record={}),
    )
    plain = render_template(ctx, Path("/b"), Path("/a.cfg"))
    assert "ANSIBLE_ROLES_PATH" not in plain
    assert structural_sha256(spec)  # unchanged path: no galaxy folder for an image without deps


def test_images_with_dependencies_get_the_installed_lock_on_their_paths(
    layout: Layout, write_image: WriteImage
) -> None:
    _install(layout)
    write_image("tools", TOOLS.format(role_vars=""))
    spec = load_image(layout, "tools")
    ctx = BuildContext(
        image=spec,
        version="v",
        commit="c",
        created="t",
        source="",
        parent=ParentRef(ref="p", artifact_id="p", record={}),
    )
    text = json.loads(render_template(ctx, Path("/b"), Path("/r/ansible.cfg"), Path("/g")))
    env = text["provisioners"][0]["ansible_env_vars"]
    assert "ANSIBLE_ROLES_PATH=/r/roles:/g/roles" in env and "ANSIBLE_COLLECTIONS_PATH=/g/collections" in env


def test_entry_dependencies_are_signed(catalog: Catalog, signer: Signer, tmp_path: Path) -> None:
    dep = {"kind": "role", "name": "a.b", "version": "1", "source": "s", "type": "git", "sha256": "d" * 64}
    entry = replace(make_entry("base"), dependencies=(dep,), vars_unchecked=("a.b",))
    junit = tmp_path / "junit.xml"
    junit.write_text(JUNIT.format(image="base", version=entry.version))
    published = publishing.publish(
        catalog, entry, make_manifest("base", entry.version), junit, signer=signer, actor="t"
    )
    assert published["dependencies"] == [dep] and published["vars_unchecked"] == ["a.b"]
    assert model.Entry.from_json(published).dependencies == (dep,)
    catalog.verify_entry(published)
    tampered = {**published, "dependencies": [{**dep, "sha256": "e" * 64}]}
    with pytest.raises(CatalogError):
        catalog.verify_entry(tampered)  # type: ignore[arg-type]


def test_diff_lists_changed_dependencies(catalog: Catalog, signer: Signer, tmp_path: Path) -> None:
    dep = {"kind": "collection", "name": "fixture.tools", "version": "1.0.0", "source": "s", "type": "file",
           "sha256": "d" * 64}  # fmt: skip
    versions = [version_id(1), version_id(2)]
    for version, dependency in zip(
        versions, [dep, {**dep, "version": "1.0.1", "sha256": "e" * 64}], strict=True
    ):
        junit = tmp_path / f"{version}.xml"
        junit.write_text(JUNIT.format(image="base", version=version))
        entry = replace(make_entry("base", version), dependencies=(dependency,))
        publishing.publish(catalog, entry, make_manifest("base", version), junit, signer=signer, actor="t")
    found = diff.diff(catalog, catalog.load(), "base", *versions)
    assert found["dependencies_changed"] == ["collection fixture.tools 1.0.0 → 1.0.1"]


def test_drift_tracks_what_external_roles_write(layout: Layout, write_image: WriteImage) -> None:
    _install(layout)
    write_image("tools", TOOLS.format(role_vars=""))
    written = verify.role_written_files(load_image(layout, "tools"), layout)
    assert {"/etc/gitconfig", "/etc/motd"} <= set(written)  # the facts-based destination is left out


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("{", "requirements.lock: not a valid lock file"),
        ('{"lock_version": 2, "dependencies": []}', "requirements.lock: lock_version: 1 is expected"),
        ('{"lock_version": 1, "dependencies": [{"kind": "role"}]}', "requirements.lock: dependencies.0:"),
    ],
)
def test_bad_lock_exits_2_naming_the_field(layout: Layout, text: str, field: str) -> None:
    (layout.root / galaxy.LOCK).write_text(text)
    with pytest.raises(ConfigError) as err:
        deps.install(layout.root, layout.cache)
    assert err.value.exit_code == 2 and field in err.value.message
    assert not (layout.cache / "galaxy").exists()  # nothing written


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("roles: {}\n", "requirements.yml: roles: a list is expected"),
        ("collections: [3]\n", "requirements.yml: collections.0: a name or a mapping is expected"),
        ("plugins: []\n", "requirements.yml: a mapping with roles: and collections: is expected"),
    ],
)
def test_bad_requirements_exit_2_naming_the_field(layout: Layout, text: str, field: str) -> None:
    (layout.root / galaxy.REQUIREMENTS).write_text(text)
    with pytest.raises(ConfigError) as err:
        deps.lock(layout.root, layout.cache)
    assert err.value.exit_code == 2 and field in err.value.message
    assert not (layout.root / galaxy.LOCK).exists()


def test_requirements_edited_without_a_new_lock_exit_2(layout: Layout, write_image: WriteImage) -> None:
    _install(layout)
    write_image("tools", TOOLS.format(role_vars=""))
    (layout.root / galaxy.REQUIREMENTS).write_text("---\nroles: [geerlingguy.git]\n")
    with pytest.raises(ConfigError) as err:
        load_images(layout)
    assert f"{layout.root / galaxy.REQUIREMENTS}: changed since" in err.value.message
    assert "factory deps lock" in (err.value.hint or "")
