"""Image names, channel names and version ids: one pattern each, checked by every verb that takes
them before anything is read; a bad one exits 2 naming the argument."""

from __future__ import annotations

import io
import json

import pytest

from factory.core import config, names
from factory.core.errors import ConfigError
from tests.unit.conftest import REPO_ROOT, Cli, catalog_files


def test_channel_pattern_is_the_settings_schema_pattern() -> None:
    schema = json.loads((REPO_ROOT / "factory" / "schemas" / "settings.schema.json").read_text())
    pattern = schema["properties"]["channels"]["properties"]["order"]["items"]["pattern"]
    assert f"^{names.CHANNEL_RE.pattern}$" == pattern


def test_image_pattern_is_the_definitions_pattern() -> None:
    assert names.IMAGE_RE is config.IMAGE_NAME_RE


@pytest.mark.parametrize("name", ["base", "nginx", "a", "web-2"])
def test_good_image_names(name: str) -> None:
    assert names.check_image(name) == name


@pytest.mark.parametrize("name", ["dev", "staging", "prod", "latest", "canary-2"])
def test_good_channel_names(name: str) -> None:
    assert names.check_channel(name) == name


BAD = ["../x", "x/../y", "", "Base", "-x", "x\n", "x\x1b[2J", "x y", "x\u202e", "a" * 64]


@pytest.mark.parametrize("name", BAD, ids=repr)
def test_bad_image_names(name: str) -> None:
    with pytest.raises(ConfigError, match=r"^IMAGE: .* is not an image name"):
        names.check_image(name)


@pytest.mark.parametrize("name", [*BAD[:-1], "a" * 33], ids=repr)
def test_bad_channel_names(name: str) -> None:
    with pytest.raises(ConfigError, match=r"^--channel: .* is not a channel name"):
        names.check_channel(name)


@pytest.mark.parametrize("name", ["x\x1b[2J", "x\u202e"], ids=repr)
def test_a_bad_name_is_quoted_safely(name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        names.check_image(name)
    assert "\x1b" not in caught.value.message and "\u202e" not in caught.value.message


# -- every verb -----------------------------------------------------------------------------

V = "{v}"  # base[3] of the world


def _cases() -> dict[str, tuple[list[str], str]]:
    """id -> (argv, the argument the message names)."""
    cases: dict[str, tuple[list[str], str]] = {
        "history-channel": (["history", "base", "--channel", "../x"], "--channel"),
        "history-channel-escape": (["history", "base", "--channel", "\x1b[2J"], "--channel"),
        "resolve-channel": (["resolve", "base", "--channel", "../x"], "--channel"),
        "promote-to": (["promote", "base", V, "--to", "../x"], "--to"),
        "rollback-channel": (["rollback", "base", "--channel", "../x"], "--channel"),
        "rollback-to": (["rollback", "base", "--channel", "dev", "--to", "../x"], "--to"),
        "query-channel": (["query", "--package", "bash", "--channel", "../x"], "--channel"),
        "deprecate-replacement": (["deprecate", "base", V, "--replacement", "../x"], "--replacement"),
        "diff-v1": (["diff", "base", "../x", V], "V1"),
        "diff-v2": (["diff", "base", V, "../x"], "V2"),
        "verify-version": (["verify", "base", "../x"], "VERSION"),
    }
    image_verbs = {
        "catalog": [],
        "resolve": [],
        "history": [],
        "diff": [V, V],
        "promote": [V, "--to", "dev"],
        "rollback": ["--channel", "dev"],
        "revoke": [V, "--reason", "x"],
        "restore": [V],
        "deprecate": [V],
        "distribute": [V],
        "render": [],
        "bake": [],
        "verify": [],
        "plan": [],
        "scan": [],
        "rebuild": [],
    }
    for verb, rest in image_verbs.items():
        for label, bad in (("dotdot", "../base"), ("escape", "base\x1b[2J")):
            cases[f"{verb}-image-{label}"] = ([verb, bad, *rest], "IMAGE")
    return cases


CASES = _cases()
ACTOR = {"promote", "rollback", "revoke", "restore", "deprecate", "distribute"}


def _run(cli: Cli, case: str) -> int:
    argv, _ = CASES[case]
    argv = [a.replace(V, cli.world.base[3]) for a in argv]
    return cli(*argv, *(["--actor", "alice"] if argv[0] in ACTOR else []))


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_name_exits_2(cli: Cli, console: io.StringIO, case: str) -> None:
    assert _run(cli, case) == 2


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_name_is_named(cli: Cli, console: io.StringIO, case: str) -> None:
    _run(cli, case)
    assert f"error: {CASES[case][1]}: " in console.getvalue()


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_name_changes_nothing(cli: Cli, console: io.StringIO, case: str) -> None:
    before = catalog_files(cli.world.catalog)
    _run(cli, case)
    assert catalog_files(cli.world.catalog) == before
