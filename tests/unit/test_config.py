"""Image definitions: the real ones load; a bad one fails naming its file and the field."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from factory.core.config import ImageSpec, Layout, build_order, lineage, load_image, load_images
from factory.core.errors import ConfigError

WriteImage = Callable[[str, str], Path]

HEADER = """\
description = "a test image"
tests = ["test_base.py"]

[parent]
image = "base"
"""
SANITIZE = """
[[roles]]
name = "sanitize"
"""


@pytest.fixture(scope="module")
def specs() -> dict[str, ImageSpec]:
    root = Path(__file__).resolve().parents[2]
    return load_images(Layout.discover(root, catalog="/nonexistent/catalog", cache="/nonexistent/cache"))


# -- the real definitions ------------------------------------------------------------------


def test_real_images_are_base_and_nginx(specs: dict[str, ImageSpec]) -> None:
    assert sorted(specs) == ["base", "nginx"]


def test_base_is_bootstrapped_from_bookworm(specs: dict[str, ImageSpec]) -> None:
    assert specs["base"].bootstrap is not None
    assert specs["base"].bootstrap.suite == "bookworm"


def test_base_bootstrap_includes_python3_apt(specs: dict[str, ImageSpec]) -> None:
    assert specs["base"].bootstrap is not None
    assert specs["base"].bootstrap.include == ("python3", "python3-apt")


def test_nginx_is_built_from_base(specs: dict[str, ImageSpec]) -> None:
    assert specs["nginx"].parent_image == "base"


def test_nginx_lineage(specs: dict[str, ImageSpec]) -> None:
    assert lineage(specs, "nginx") == ["nginx", "base"]


@pytest.mark.parametrize(
    ("name", "roles"),
    [
        ("base", ["common", "hardening", "sanitize"]),
        ("nginx", ["common", "nginx", "hardening", "sanitize"]),
    ],
)
def test_roles_keep_their_order(specs: dict[str, ImageSpec], name: str, roles: list[str]) -> None:
    assert [r.name for r in specs[name].roles] == roles


def test_base_role_vars_are_read(specs: dict[str, ImageSpec]) -> None:
    assert specs["base"].roles[0].vars == {
        "common_packages": ["ca-certificates", "tzdata", "openssh-server"]
    }


@pytest.mark.parametrize(
    ("name", "tests"), [("base", ("test_base.py",)), ("nginx", ("test_base.py", "test_nginx.py"))]
)
def test_tests_are_read(specs: dict[str, ImageSpec], name: str, tests: tuple[str, ...]) -> None:
    assert specs[name].tests == tests


@pytest.mark.parametrize(
    ("name", "cmd"), [("base", ("sleep", "infinity")), ("nginx", ("nginx", "-g", "daemon off;"))]
)
def test_verification_cmd(specs: dict[str, ImageSpec], name: str, cmd: tuple[str, ...]) -> None:
    assert specs[name].container.verification_cmd == cmd


def test_nginx_exposes_port_80(specs: dict[str, ImageSpec]) -> None:
    assert specs["nginx"].container.expose == (80,)


def test_definition_path(specs: dict[str, ImageSpec]) -> None:
    assert specs["nginx"].definition == specs["nginx"].path / "image.toml"


def test_image_spec_is_frozen(specs: dict[str, ImageSpec]) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        specs["base"].name = "other"  # type: ignore[misc]


def test_load_image_returns_the_named_spec(real_layout: Layout) -> None:
    assert load_image(real_layout, "nginx").name == "nginx"


def test_load_image_unknown_name(real_layout: Layout) -> None:
    with pytest.raises(ConfigError, match="unknown image 'nope'"):
        load_image(real_layout, "nope")


def test_load_images_without_images_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no images directory"):
        load_images(Layout(root=tmp_path, catalog_location=str(tmp_path / "c"), cache=tmp_path / "k"))


def test_copied_tree_loads(layout: Layout) -> None:
    assert sorted(load_images(layout)) == ["base", "nginx"]


# -- bad definitions -----------------------------------------------------------------------

BAD_DEFINITIONS = [
    pytest.param('description = "unterminated\n', ["not valid TOML"], id="not-toml"),
    pytest.param('colour = "blue"\n' + HEADER + SANITIZE, ["(top level)", "'colour'"], id="unknown-key"),
    pytest.param(
        'roles = "sanitize"\n' + HEADER, ["roles:", "is not of type 'array'"], id="roles-not-a-list"
    ),
    pytest.param(
        HEADER + '[[roles]]\nname = "nosuch"\n' + SANITIZE,
        ["roles.0.name", "unknown role 'nosuch'"],
        id="unknown-role",
    ),
    pytest.param(
        HEADER + '[[roles]]\nname = "common"\nvars = { common_colour = "blue" }\n' + SANITIZE,
        ["roles.0.vars", "common_colour", "argument_specs.yml"],
        id="role-var-not-in-spec",
    ),
    pytest.param(
        HEADER + '[[roles]]\nname = "common"\nvars = { common_packages = "x" }\n' + SANITIZE,
        ["roles.0.vars", "common_packages", "is not of type 'array'"],
        id="role-var-wrong-type",
    ),
    pytest.param(
        HEADER
        + '[[roles]]\nname = "hardening"\nvars = { hardening_sshd_permit_root_login = "yes" }\n'
        + SANITIZE,
        ["roles.0.vars", "hardening_sshd_permit_root_login"],
        id="role-var-not-a-choice",
    ),
    pytest.param(
        HEADER + '[[roles]]\nname = "common"\n',
        ["roles:", "the last role must be 'sanitize'", "'common'"],
        id="last-role-not-sanitize",
    ),
    pytest.param(
        HEADER + '[[roles]]\nname = "sanitize"\n' + SANITIZE,
        ["roles.0.name", "'sanitize' is listed twice"],
        id="role-twice",
    ),
    pytest.param(
        HEADER.replace('image = "base"', 'image = "nosuch"') + SANITIZE,
        ["parent.image", "unknown image 'nosuch'"],
        id="unknown-parent",
    ),
    pytest.param(
        HEADER.replace('image = "base"', 'image = "base"\nbootstrap = { suite = "bookworm" }') + SANITIZE,
        ["parent:"],
        id="two-parents",
    ),
    pytest.param(
        HEADER.replace("test_base.py", "test_missing.py") + SANITIZE,
        ["tests.0", "test_missing.py does not exist"],
        id="missing-test-file",
    ),
]


@pytest.mark.parametrize(("text", "fragments"), BAD_DEFINITIONS)
def test_bad_definition_names_file_and_field(
    layout: Layout, write_image: WriteImage, text: str, fragments: list[str]
) -> None:
    path = write_image("bad", text)
    with pytest.raises(ConfigError) as caught:
        load_images(layout)
    for fragment in [str(path), *fragments]:
        assert fragment in caught.value.message


@pytest.mark.parametrize(("text", "fragments"), BAD_DEFINITIONS)
def test_bad_definition_exits_2(
    layout: Layout, write_image: WriteImage, text: str, fragments: list[str]
) -> None:
    write_image("bad", text)
    with pytest.raises(ConfigError) as caught:
        load_images(layout)
    assert caught.value.exit_code == 2


def test_good_definition_in_tmp_tree_loads(layout: Layout, write_image: WriteImage) -> None:
    write_image(
        "web", HEADER + '[[roles]]\nname = "nginx"\nvars = { nginx_packages = ["nginx"] }\n' + SANITIZE
    )
    assert load_images(layout)["web"].roles[0].vars == {"nginx_packages": ["nginx"]}


def test_default_test_file_is_named_after_the_image(layout: Layout, write_image: WriteImage) -> None:
    write_image("web-app", HEADER.replace('tests = ["test_base.py"]\n', "") + SANITIZE)
    (layout.image_tests / "test_web_app.py").write_text("", encoding="utf-8")
    assert load_images(layout)["web-app"].tests == ("test_web_app.py",)


def _parent_only(parent: str) -> str:
    return HEADER.replace('image = "base"', f'image = "{parent}"') + SANITIZE


def test_parent_cycle_names_the_chain(layout: Layout, write_image: WriteImage) -> None:
    write_image("a", _parent_only("b"))
    write_image("b", _parent_only("a"))
    with pytest.raises(ConfigError, match="a -> b -> a"):
        load_images(layout)


def test_parent_cycle_names_file_and_field(layout: Layout, write_image: WriteImage) -> None:
    path = write_image("a", _parent_only("b"))
    write_image("b", _parent_only("a"))
    with pytest.raises(ConfigError) as caught:
        load_images(layout)
    assert f"{path}: parent.image" in caught.value.message


def test_self_parent_is_a_cycle(layout: Layout, write_image: WriteImage) -> None:
    write_image("a", _parent_only("a"))
    with pytest.raises(ConfigError, match="a -> a"):
        load_images(layout)


def test_image_name_the_catalog_refuses_is_a_config_error(layout: Layout, write_image: WriteImage) -> None:
    write_image("Web_App", HEADER + SANITIZE)
    with pytest.raises(ConfigError, match="Web_App"):
        load_images(layout)


def test_build_order_puts_parents_before_children(
    layout: Layout, write_image: Callable[[str, str], Path]
) -> None:
    # "aardvark" sorts before its parent "nginx", which sorts after its own parent "base".
    write_image(
        "aardvark",
        'description = "x"\ntests = ["test_base.py"]\n[parent]\nimage = "nginx"\n'
        '[[roles]]\nname = "sanitize"\n',
    )
    assert build_order(load_images(layout)) == ["base", "nginx", "aardvark"]
