"""Rendering: the Packer template, playbook and variables of a build, from the real definitions."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

import factory.bake.render
from factory.bake.render import BuildContext, ParentRef, extra_vars, playbook, render, render_template
from factory.core.config import ImageSpec, Layout, load_images
from factory.core.errors import ConfigError

COMMIT = "0123456789abcdef0123456789abcdef01234567"
VERSION = "20261129.084512-0123456789ab"
CREATED = "2026-11-29T08:45:12+00:00"
SOURCE = "https://git.example.invalid/image-factory.git"
IMAGES = ["base", "nginx"]


@pytest.fixture(scope="module")
def specs() -> dict[str, ImageSpec]:
    root = Path(__file__).resolve().parents[2]
    return load_images(Layout.discover(root, catalog="/nonexistent/catalog", cache="/nonexistent/cache"))


def _context(spec: ImageSpec) -> BuildContext:
    parent = ParentRef(
        ref="localhost/factory-bootstrap:bookworm-minbase-0123456789ab",
        artifact_id="sha256:" + "d" * 64,
        record={},
    )
    return BuildContext(
        image=spec, version=VERSION, commit=COMMIT, created=CREATED, source=SOURCE, parent=parent
    )


def _template(spec: ImageSpec, build_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(render_template(_context(spec), build_dir, Path("/repo/ansible.cfg")))
    return data


@pytest.fixture(params=IMAGES)
def template(request: pytest.FixtureRequest, specs: dict[str, ImageSpec], tmp_path: Path) -> dict[str, Any]:
    return _template(specs[request.param], tmp_path / "build")


def _provisioner(template: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = template["provisioners"][0]
    return found


# -- render_template -----------------------------------------------------------------------


@pytest.mark.parametrize("name", IMAGES)
def test_template_is_json(specs: dict[str, ImageSpec], tmp_path: Path, name: str) -> None:
    text = render_template(_context(specs[name]), tmp_path, tmp_path / "ansible.cfg")
    assert isinstance(json.loads(text), dict)


def test_one_docker_builder(template: dict[str, Any]) -> None:
    assert [b["type"] for b in template["builders"]] == ["docker"]


def test_builder_does_not_pull(template: dict[str, Any]) -> None:
    assert template["builders"][0]["pull"] is False


def test_builder_commits(template: dict[str, Any]) -> None:
    assert template["builders"][0]["commit"] is True


def test_builder_starts_from_parent_artifact(template: dict[str, Any]) -> None:
    assert template["builders"][0]["image"] == "sha256:" + "d" * 64


def test_build_container_runs_on_user_mode_networking_not_the_bridge(template: dict[str, Any]) -> None:
    """Packer's default run_command, plus the network: an image passed as Packer's own template."""
    assert template["builders"][0]["run_command"] == [
        "-d", "-i", "-t", "--network=slirp4netns", "--entrypoint=/bin/sh", "--", "{{.Image}}",
    ]  # fmt: skip


def test_entrypoint_is_reset(template: dict[str, Any]) -> None:
    assert "ENTRYPOINT []" in template["builders"][0]["changes"]


def test_revision_label_is_full_commit(template: dict[str, Any]) -> None:
    assert f'LABEL org.opencontainers.image.revision="{COMMIT}"' in template["builders"][0]["changes"]


def test_version_label(template: dict[str, Any]) -> None:
    assert f'LABEL org.opencontainers.image.version="{VERSION}"' in template["builders"][0]["changes"]


def test_base_name_label_is_parent_ref(template: dict[str, Any]) -> None:
    ref = "localhost/factory-bootstrap:bookworm-minbase-0123456789ab"
    label = f'LABEL org.opencontainers.image.base.name="{ref}"'
    assert label in template["builders"][0]["changes"]


@pytest.mark.parametrize(
    ("name", "cmd"), [("base", 'CMD ["/bin/bash"]'), ("nginx", 'CMD ["nginx", "-g", "daemon off;"]')]
)
def test_cmd_is_last_change(specs: dict[str, ImageSpec], tmp_path: Path, name: str, cmd: str) -> None:
    assert _template(specs[name], tmp_path)["builders"][0]["changes"][-1] == cmd


@pytest.mark.parametrize(("name", "expose"), [("base", []), ("nginx", ["EXPOSE 80"])])
def test_expose(specs: dict[str, ImageSpec], tmp_path: Path, name: str, expose: list[str]) -> None:
    changes = _template(specs[name], tmp_path)["builders"][0]["changes"]
    assert [c for c in changes if c.startswith("EXPOSE ")] == expose


def test_provisioner_is_ansible(template: dict[str, Any]) -> None:
    assert _provisioner(template)["type"] == "ansible"


def test_playbook_file_is_in_build_dir(specs: dict[str, ImageSpec], tmp_path: Path) -> None:
    assert _provisioner(_template(specs["base"], tmp_path))["playbook_file"] == f"{tmp_path}/playbook.yml"


def test_extra_vars_file_is_passed(specs: dict[str, ImageSpec], tmp_path: Path) -> None:
    args = _provisioner(_template(specs["base"], tmp_path))["extra_arguments"]
    assert args[:2] == ["--extra-vars", f"@{tmp_path}/vars.json"]


def test_ansible_reaches_the_build_container_through_runc_by_its_id(template: dict[str, Any]) -> None:
    """Not through Packer's SSH adapter: runc exec (plugins/connection/runc.py), by Packer's id."""
    args = _provisioner(template)["extra_arguments"]
    assert args[2:] == ["--connection", "runc", "--extra-vars", "ansible_host={{ build `ID` }}"]


def test_the_checkouts_connection_plugins_are_passed(template: dict[str, Any]) -> None:
    env = _provisioner(template)["ansible_env_vars"]
    assert "ANSIBLE_CONNECTION_PLUGINS=/repo/plugins/connection" in env
    assert not any(setting.startswith("ANSIBLE_SSH") for setting in env)


def test_ansible_config_is_passed(template: dict[str, Any]) -> None:
    assert "ANSIBLE_CONFIG=/repo/ansible.cfg" in _provisioner(template)["ansible_env_vars"]


@pytest.mark.parametrize("name", IMAGES)
def test_groups_name_the_image(specs: dict[str, ImageSpec], tmp_path: Path, name: str) -> None:
    assert _provisioner(_template(specs[name], tmp_path))["groups"] == ["build", name]


def test_manifest_post_processor_output(specs: dict[str, ImageSpec], tmp_path: Path) -> None:
    post = _template(specs["base"], tmp_path)["post-processors"][0]
    assert (post["type"], post["output"]) == ("manifest", f"{tmp_path}/packer-manifest.json")


def test_manifest_custom_data(specs: dict[str, ImageSpec], tmp_path: Path) -> None:
    custom = _template(specs["nginx"], tmp_path)["post-processors"][0]["custom_data"]
    assert custom == {"image": "nginx", "version": VERSION, "commit": COMMIT}


def test_quotes_in_description_stay_json(specs: dict[str, ImageSpec], tmp_path: Path) -> None:
    spec = dataclasses.replace(specs["base"], description='say "hi" & <bye>')
    assert 'say "hi" & <bye>' in _template(spec, tmp_path)["description"]


# -- StrictUndefined -----------------------------------------------------------------------


def _with_templates(monkeypatch: pytest.MonkeyPatch, templates: dict[str, str]) -> None:
    """Keep the factory's Environment (its ``undefined`` policy included), swap only its templates."""
    real = factory.bake.render._environment

    def environment() -> jinja2.Environment:
        # An overlay: the real environment is shared by the whole process and must stay untouched.
        return real().overlay(loader=jinja2.DictLoader(templates))

    monkeypatch.setattr(factory.bake.render, "_environment", environment)


def test_undefined_name_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, specs: dict[str, ImageSpec], tmp_path: Path
) -> None:
    _with_templates(monkeypatch, {"docker.json.j2": "{{ nope }}"})
    with pytest.raises(ConfigError) as caught:
        render_template(_context(specs["base"]), tmp_path, tmp_path / "ansible.cfg")
    assert "docker.json.j2" in caught.value.message
    assert "nope" in caught.value.message


def test_undefined_attribute_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, specs: dict[str, ImageSpec], tmp_path: Path
) -> None:
    _with_templates(monkeypatch, {"docker.json.j2": '{"x": "{{ image.colour }}"}'})
    with pytest.raises(ConfigError, match="colour"):
        render_template(_context(specs["base"]), tmp_path, tmp_path / "ansible.cfg")


def test_undefined_name_through_tojson_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, specs: dict[str, ImageSpec], tmp_path: Path
) -> None:
    _with_templates(monkeypatch, {"docker.json.j2": '{"x": {{ nope | tojson }}}'})
    with pytest.raises(ConfigError, match="nope"):
        render_template(_context(specs["base"]), tmp_path, tmp_path / "ansible.cfg")


def test_invalid_json_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, specs: dict[str, ImageSpec], tmp_path: Path
) -> None:
    _with_templates(monkeypatch, {"docker.json.j2": '{"x": {{ version }}}'})
    with pytest.raises(ConfigError, match="renders invalid JSON"):
        render_template(_context(specs["base"]), tmp_path, tmp_path / "ansible.cfg")


def test_template_syntax_error_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, specs: dict[str, ImageSpec], tmp_path: Path
) -> None:
    _with_templates(monkeypatch, {"docker.json.j2": "{% if %}"})
    with pytest.raises(ConfigError, match=r"docker\.json\.j2"):
        render_template(_context(specs["base"]), tmp_path, tmp_path / "ansible.cfg")


# -- playbook and extra_vars ---------------------------------------------------------------


@pytest.mark.parametrize("name", IMAGES)
def test_playbook_keeps_role_order(specs: dict[str, ImageSpec], name: str) -> None:
    roles = [r["role"] for r in playbook(_context(specs[name]))[0]["roles"]]
    assert roles == [r.name for r in specs[name].roles]


def test_playbook_runs_on_all_hosts(specs: dict[str, ImageSpec]) -> None:
    assert playbook(_context(specs["base"]))[0]["hosts"] == "all"


def test_playbook_ends_with_sanitize(specs: dict[str, ImageSpec]) -> None:
    assert playbook(_context(specs["nginx"]))[0]["roles"][-1] == {"role": "sanitize"}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("factory_commit", COMMIT),
        ("factory_version", VERSION),
        ("factory_image", "base"),
        ("factory_created", CREATED),
        ("factory_source", SOURCE),
        ("factory_parent", "localhost/factory-bootstrap:bookworm-minbase-0123456789ab"),
    ],
)
def test_extra_vars_carry_build_facts(specs: dict[str, ImageSpec], key: str, value: str) -> None:
    assert extra_vars(_context(specs["base"]))[key] == value


def test_extra_vars_carry_role_vars(specs: dict[str, ImageSpec]) -> None:
    assert extra_vars(_context(specs["base"]))["common_packages"] == [
        "ca-certificates",
        "tzdata",
        "openssh-server",
    ]


# -- render() into a throw-away tree -------------------------------------------------------


@pytest.fixture
def rendered(layout: Layout) -> factory.bake.render.Rendered:
    return render(_context(load_images(layout)["nginx"]), layout)


def test_render_writes_into_build_image_version(
    layout: Layout, rendered: factory.bake.render.Rendered
) -> None:
    assert rendered.build_dir == layout.build / "nginx" / VERSION


@pytest.mark.parametrize("name", ["packer.json", "playbook.yml", "vars.json", "context.json", "inventory"])
def test_render_writes_file(rendered: factory.bake.render.Rendered, name: str) -> None:
    assert (rendered.build_dir / name).exists()


def test_rendered_template_sha256(rendered: factory.bake.render.Rendered) -> None:
    assert rendered.template_sha256 == hashlib.sha256(rendered.template.read_bytes()).hexdigest()


def test_rendered_template_points_at_build_dir(rendered: factory.bake.render.Rendered) -> None:
    data = json.loads(rendered.template.read_text(encoding="utf-8"))
    assert data["provisioners"][0]["playbook_file"] == str(rendered.playbook)


def test_rendered_vars_file_is_extra_vars(layout: Layout, rendered: factory.bake.render.Rendered) -> None:
    expected = extra_vars(_context(load_images(layout)["nginx"]))
    assert json.loads(rendered.vars_file.read_text(encoding="utf-8")) == expected


def test_rendered_playbook_is_yaml(rendered: factory.bake.render.Rendered) -> None:
    book = yaml.safe_load(rendered.playbook.read_text(encoding="utf-8"))
    assert [r["role"] for r in book[0]["roles"]] == ["common", "nginx", "hardening", "sanitize"]


def test_rendered_inventory_is_a_copy(layout: Layout, rendered: factory.bake.render.Rendered) -> None:
    copied = rendered.build_dir / "inventory" / "group_vars" / "build.yml"
    assert copied.read_bytes() == (layout.inventory / "group_vars" / "build.yml").read_bytes()


def test_render_replaces_previous_output(layout: Layout, rendered: factory.bake.render.Rendered) -> None:
    (rendered.build_dir / "stale.txt").write_text("old", encoding="utf-8")
    render(_context(load_images(layout)["nginx"]), layout)
    assert not (rendered.build_dir / "stale.txt").exists()


def test_packer_manifest_path(rendered: factory.bake.render.Rendered) -> None:
    assert rendered.packer_manifest == rendered.build_dir / "packer-manifest.json"
