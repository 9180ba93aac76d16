"""The command line: argument parsing, exit codes, and what reaches the user."""

from __future__ import annotations

import copy
import io
import json
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import factory.__main__
import factory.cli.main
from factory.__main__ import main
from factory.catalog import lifecycle, provenance
from factory.catalog.changes import changes_of
from factory.catalog.trust import Signer, sign
from factory.cli import verbs
from factory.cli.main import find_root, named_verb, parse_args
from factory.core.clock import now_utc
from factory.core.errors import ConfigError
from tests.fixtures import tamper_v3
from tests.unit.conftest import DAY, Cli, World, catalog_files, version_id


def _main(repo_root: Path, catalog: Path, *args: str) -> int:
    return main([*args, "--root", str(repo_root), "--catalog", str(catalog)])


# -- parser --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["list", "-v"], id="after"),
        pytest.param(["resolve", "base", "--verbose"], id="after-long"),
        pytest.param(["-v", "list"], id="before"),
        pytest.param(["--verbose", "resolve", "base"], id="before-long"),
    ],
)
def test_verbose_before_or_after_verb(argv: list[str]) -> None:
    assert parse_args(argv).verbose is True


def test_verbose_defaults_to_false() -> None:
    assert parse_args(["list"]).verbose is False


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["catalog", "--catalog", "/c"], id="after"),
        pytest.param(["--catalog", "/c", "catalog"], id="before"),
    ],
)
def test_catalog_before_or_after_verb(argv: list[str]) -> None:
    assert parse_args(argv).catalog == "/c"


@pytest.mark.parametrize(
    ("argv", "verb"),
    [
        pytest.param(["bake", "base"], "bake", id="first"),
        pytest.param(["--catalog", "/c", "-v", "--debug", "promote"], "promote", id="after-options"),
        pytest.param(["--registry=http://127.0.0.1:5000/g", "bake"], "bake", id="after-option="),
        pytest.param(["--root", "bake", "list"], "list", id="an-option-value-is-no-verb"),
        pytest.param(["--cat", "/c", "resolve"], "resolve", id="abbreviated-option"),
        pytest.param(["--help"], None, id="help"),
        pytest.param(["--catalog"], None, id="an-option-without-its-value"),
        pytest.param([], None, id="nothing"),
    ],
)
def test_the_verb_is_read_past_the_global_options(argv: list[str], verb: str | None) -> None:
    assert named_verb(argv) == verb


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["--cat", "/c", "resolve", "base"], id="abbreviated-option"),
        pytest.param(["-v", "--root=/r", "resolve", "base"], id="option="),
    ],
)
def test_a_verb_parses_alike_with_every_verb_or_its_own(argv: list[str]) -> None:
    # named_verb either finds the verb, and the parser holds its module's verbs, or holds them all.
    assert (parse_args(argv).verb, parse_args(argv).channel) == ("resolve", "latest")


def test_an_unknown_verb_is_refused_naming_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        parse_args(["bak", "base"])
    assert caught.value.code == 2 and "invalid choice: 'bak'" in capsys.readouterr().err


def test_root_is_a_path() -> None:
    assert parse_args(["list", "--root", "/r"]).root == Path("/r")


def test_root_before_verb_is_used(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # An empty --root given before the verb must make `list` fail, not list the checkout found from cwd.
    (tmp_path / "images").mkdir()
    main(["--root", str(tmp_path), "list", "--json"])
    assert json.loads(capsys.readouterr().out) == []


V = version_id(0)
MINIMAL_ARGS: dict[str, list[str]] = {
    "advisories": ["import", "feed.json"],
    "list": [],
    "deps": ["install"],
    "render": ["base"],
    "bake": ["base"],
    "distribute": ["base", "20260101.000000-0123456789ab"],
    "verify": ["base"],
    "catalog": [],
    "resolve": ["base"],
    "promote": ["base", V, "--to", "dev"],
    "rollback": ["base", "--channel", "dev"],
    "history": ["base"],
    "revoke": ["base", V, "--reason", "CVE"],
    "restore": ["base", V],
    "deprecate": ["base", V],
    "gc": ["--keep", "3"],
    "keygen": [],
    "verify-catalog": [],
    "site": ["public"],
    "plan": [],
    "diff": ["base", V, V],
    "scan": [],
    "rebuild": [],
    "query": ["--package", "openssl"],
    "drift": ["--target", "podman://web-1"],
    "signal": ["alert.json"],
    "serve": [],
    "trust": ["reset", ".factory/catalog", "--reason", "restored"],
    "verify-image": ["127.0.0.1:5000/golden/nginx:prod", "--key", "keys/team.pub"],
}


def test_minimal_args_cover_every_verb() -> None:
    assert set(verbs()) <= set(MINIMAL_ARGS)


@pytest.mark.parametrize("verb", list(verbs()))
def test_every_verb_is_accepted(verb: str) -> None:
    assert parse_args([verb, *MINIMAL_ARGS.get(verb, [])]).verb == verb


@pytest.mark.parametrize("verb", list(verbs()))
def test_every_verb_has_an_example_in_help(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args([verb, "--help"])
    example = verbs()[verb].example
    assert f"example:\n  {example}" in capsys.readouterr().out


@pytest.mark.parametrize("verb", list(verbs()))
def test_every_example_uses_its_verb(verb: str) -> None:
    example = verbs()[verb].example
    assert example.startswith(f"factory {verb}")


@pytest.mark.parametrize("verb", list(verbs()))
def test_help_exits_0(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        parse_args([verb, "--help"])
    assert caught.value.code == 0


def test_resolve_channel_defaults_to_latest() -> None:
    assert parse_args(["resolve", "base"]).channel == "latest"


def test_resolve_takes_a_channel() -> None:
    assert parse_args(["resolve", "base", "--channel", "prod"]).channel == "prod"


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param([], id="no-verb"),
        pytest.param(["frobnicate"], id="unknown-verb"),
        pytest.param(["resolve"], id="resolve-without-image"),
        pytest.param(["bake"], id="bake-without-image"),
        pytest.param(["resolve", "base", "--format", "yaml"], id="bad-format"),
        pytest.param(["promote", "base", V], id="promote-without-to"),
        pytest.param(["rollback", "base"], id="rollback-without-channel"),
        pytest.param(["revoke", "base", V], id="revoke-without-reason"),
        pytest.param(["deprecate", "base", V, "--state", "gone"], id="deprecate-bad-state"),
        pytest.param(["gc"], id="gc-without-keep"),
        pytest.param(["gc", "--keep", "many"], id="gc-keep-not-a-number"),
        pytest.param(["site"], id="site-without-outdir"),
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        parse_args(argv)
    assert caught.value.code == 2


def test_find_root_from_a_subdirectory(repo_root: Path) -> None:
    assert find_root(repo_root / "roles" / "common" / "tasks") == repo_root


def test_find_root_outside_a_checkout(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not inside an image factory checkout"):
        find_root(tmp_path)


# -- main, against the real checkout and an empty catalog ----------------------------------


def test_unknown_image_exits_2(repo_root: Path, tmp_path: Path, console: io.StringIO) -> None:
    assert _main(repo_root, tmp_path, "resolve", "nope") == 2


def test_unknown_image_is_named(repo_root: Path, tmp_path: Path, console: io.StringIO) -> None:
    _main(repo_root, tmp_path, "resolve", "nope")
    assert "error: unknown image 'nope'" in console.getvalue()


def test_unknown_image_gets_a_hint(repo_root: Path, tmp_path: Path, console: io.StringIO) -> None:
    _main(repo_root, tmp_path, "resolve", "nope")
    assert "hint: defined images: base, nginx" in console.getvalue()


def test_errors_go_to_stderr_not_stdout(
    repo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _main(repo_root, tmp_path, "resolve", "nope")
    captured = capsys.readouterr()
    assert (captured.out, "nope" in captured.err) == ("", True)


@pytest.fixture
def corrupt_catalog(tmp_path: Path) -> Path:
    """A catalog whose catalog.json (the v3 head every reader starts from) is cut short."""
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    (catalog / "catalog.json").write_text('{"schema_version": 3, "envelope"', encoding="utf-8")
    return catalog


CORRUPT_READERS = [
    ["resolve", "base"],
    ["resolve", "base", "--channel", "prod"],
    ["catalog"],
    ["catalog", "base", "--json"],
    ["history", "base"],
    ["verify-catalog"],
]


@pytest.mark.parametrize("args", CORRUPT_READERS, ids=" ".join)
def test_corrupt_catalog_exits_2(
    repo_root: Path, corrupt_catalog: Path, console: io.StringIO, args: list[str]
) -> None:
    assert _main(repo_root, corrupt_catalog, *args) == 2


def test_corrupt_catalog_has_no_traceback(
    repo_root: Path, corrupt_catalog: Path, console: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    _main(repo_root, corrupt_catalog, "resolve", "base")
    assert "Traceback" not in console.getvalue() + capsys.readouterr().err


def test_corrupt_catalog_names_index(repo_root: Path, corrupt_catalog: Path, console: io.StringIO) -> None:
    _main(repo_root, corrupt_catalog, "resolve", "base")
    assert f"{corrupt_catalog / 'catalog.json'}: not a readable v3 catalog file" in console.getvalue()


def test_list_json_names_both_images(
    repo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _main(repo_root, tmp_path, "list", "--json")
    assert [row["name"] for row in json.loads(capsys.readouterr().out)] == ["base", "nginx"]


def test_list_json_exits_0(repo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(repo_root, tmp_path, "list", "--json") == 0


def test_list_json_parents(repo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _main(repo_root, tmp_path, "list", "--json")
    rows = json.loads(capsys.readouterr().out)
    assert {row["name"]: row["parent"] for row in rows} == {"base": "bootstrap:bookworm", "nginx": "base"}


def test_catalog_json_of_empty_catalog(
    repo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _main(repo_root, tmp_path, "catalog", "--json")
    assert json.loads(capsys.readouterr().out) == {}


def test_resolve_unpublished_image_exits_2(repo_root: Path, tmp_path: Path, console: io.StringIO) -> None:
    assert _main(repo_root, tmp_path, "resolve", "base") == 2


def test_resolve_unpublished_image_hints_bake(repo_root: Path, tmp_path: Path, console: io.StringIO) -> None:
    _main(repo_root, tmp_path, "resolve", "base")
    assert "factory bake base" in console.getvalue()


def test_debug_shows_traceback(
    repo_root: Path, tmp_path: Path, console: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    _main(repo_root, tmp_path, "resolve", "nope", "--debug")
    assert "Traceback" in capsys.readouterr().err


def test_interrupt_exits_130(monkeypatch: pytest.MonkeyPatch, console: io.StringIO) -> None:
    def interrupted(argv: Any) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(factory.cli.main, "main_inner", interrupted)
    monkeypatch.setattr(factory.__main__, "main_inner", interrupted, raising=False)
    assert main(["list"]) == 130


# -- main, against a catalog with versions -------------------------------------------------


def _out(capsys: pytest.CaptureFixture[str]) -> str:
    return capsys.readouterr().out


def _json(capsys: pytest.CaptureFixture[str]) -> Any:
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("ref", lambda w: f"localhost/nginx:{w.nginx[3]}"),
        ("id", lambda w: w.catalog.find("nginx", w.nginx[3])["artifact"]["id"]),
        ("digest", lambda w: w.catalog.find("nginx", w.nginx[3])["artifact"]["id"]),
        ("version", lambda w: w.nginx[3]),
    ],
)
def test_resolve_format(cli: Cli, capsys: pytest.CaptureFixture[str], field: str, expected: Any) -> None:
    cli("resolve", "nginx", "--format", field)
    assert _out(capsys) == f"{expected(cli.world)}\n"


def test_resolve_json_is_the_entry(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    cli("resolve", "nginx", "--json")
    body = _json(capsys)
    entry = {k: v for k, v in cli.world.catalog.find("nginx", cli.world.nginx[3]).items() if k != "envelope"}
    assert {k: body[k] for k in entry} == entry


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("channel", lambda w: "latest"),
        ("state", lambda w: {"status": "active"}),
        ("signature", lambda w: {"verified": True, "keyid": w.signer.keyid, "format": "dsse/in-toto"}),
    ],
)
def test_resolve_json_adds(cli: Cli, capsys: pytest.CaptureFixture[str], key: str, expected: Any) -> None:
    cli("resolve", "nginx", "--json")
    assert _json(capsys)[key] == expected(cli.world)


def test_resolve_json_has_no_envelope(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    cli("resolve", "nginx", "--json")
    assert "envelope" not in _json(capsys)


def test_resolve_channel(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    cli.world.promote("nginx", cli.world.nginx[1], "dev")
    cli("resolve", "nginx", "--channel", "dev", "--format", "version")
    assert _out(capsys) == f"{cli.world.nginx[1]}\n"


def test_resolve_empty_channel_is_refused_with_exit_5(cli: Cli, console: io.StringIO) -> None:
    assert cli("resolve", "nginx", "--channel", "prod") == 5


def test_resolve_empty_channel_hints_promote(cli: Cli, console: io.StringIO) -> None:
    cli("resolve", "nginx", "--channel", "prod")
    assert "factory promote nginx VERSION --to prod" in console.getvalue()


@pytest.fixture
def came_due(cli: Cli) -> Cli:
    """nginx[1] is on dev; its revocation was scheduled an hour ago and no transaction ran since."""
    cli.world.promote("nginx", cli.world.nginx[1], "dev")
    with cli.world.change(now_utc() - timedelta(hours=2)) as txn:
        lifecycle.revoke(
            txn,
            cli.world.catalog,
            "nginx",
            cli.world.nginx[1],
            reason="CVE-1",
            at=now_utc() - timedelta(hours=1),
        )
    return cli


def test_resolve_refuses_a_revocation_that_came_due(came_due: Cli, console: io.StringIO) -> None:
    assert came_due("resolve", "nginx", "--channel", "dev") == 5


def test_resolve_says_why_a_version_is_refused(came_due: Cli, console: io.StringIO) -> None:
    came_due("resolve", "nginx", "--channel", "dev")
    assert f"nginx {came_due.world.nginx[1]} (channel 'dev') was revoked at" in console.getvalue()


def test_resolve_deprecated_warns(
    cli: Cli, console: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    cli.world.deprecate("nginx", cli.world.nginx[3], "deprecated", cli.world.nginx[2])
    cli("resolve", "nginx", "--format", "version")
    assert f"warning: nginx {cli.world.nginx[3]} is deprecated" in console.getvalue()


def test_catalog_json_shape(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    cli("catalog", "--json")
    assert {name: sorted(body) for name, body in _json(capsys).items()} == {
        "base": ["channels", "follow_up_pending", "versions"],
        "nginx": ["channels", "follow_up_pending", "versions"],
    }


def test_catalog_json_has_no_pending_follow_up_by_default(
    cli: Cli, capsys: pytest.CaptureFixture[str]
) -> None:
    cli("catalog", "--json")
    assert _json(capsys)["base"]["follow_up_pending"] is None


def test_catalog_json_channels(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    cli.world.promote("base", cli.world.base[2], "dev")
    cli("catalog", "--json")
    assert _json(capsys)["base"]["channels"] == {"dev": cli.world.base[2], "latest": cli.world.base[3]}


def test_catalog_json_versions_newest_first(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    cli("catalog", "--json")
    assert [row["version"] for row in _json(capsys)["nginx"]["versions"]] == list(reversed(cli.world.nginx))


def test_catalog_json_of_one_image(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    cli("catalog", "base", "--json")
    assert sorted(_json(capsys)) == ["channels", "follow_up_pending", "versions"]


@pytest.mark.parametrize(
    ("key", "expected"),
    [("status", "active"), ("state", {"status": "active"}), ("channels", ["latest"])],
)
def test_catalog_json_row(cli: Cli, capsys: pytest.CaptureFixture[str], key: str, expected: Any) -> None:
    cli("catalog", "base", "--json")
    assert _json(capsys)["versions"][0][key] == expected


def test_catalog_json_row_has_no_envelope(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    cli("catalog", "base", "--json")
    assert "envelope" not in _json(capsys)["versions"][0]


def test_catalog_text_lists_channels(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    cli("catalog", "base")
    assert f"base: 4 version(s); channels: latest={cli.world.base[3]}" in _out(capsys)


# -- the changing verbs --------------------------------------------------------------------


def test_promote_exits_0(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("promote", "base", cli.world.base[1], "--to", "dev", "--actor", "alice") == 0


def test_promote_says_what_moved(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    cli("promote", "base", cli.world.base[1], "--to", "dev", "--actor", "alice")
    assert _out(capsys) == f"base: dev (none) -> {cli.world.base[1]}\n"


def test_promote_records_the_actor(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    cli("promote", "base", cli.world.base[1], "--to", "dev", "--actor", "alice")
    capsys.readouterr()
    cli("history", "base", "--channel", "dev", "--json")
    assert [(r["actor"], r["to"]) for r in _json(capsys)] == [("alice", cli.world.base[1])]


def test_promote_twice_says_so(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    cli.world.promote("base", cli.world.base[1], "dev")
    cli("promote", "base", cli.world.base[1], "--to", "dev", "--actor", "alice")
    assert "already points to" in _out(capsys)


def test_rollback_says_what_moved(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    for version in cli.world.base[1:3]:
        cli.world.promote("base", version, "dev")
    cli("rollback", "base", "--channel", "dev", "--actor", "alice")
    assert _out(capsys) == f"base: dev {cli.world.base[2]} -> {cli.world.base[1]}\n"


def test_revoke_lists_what_it_revoked(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    cli("revoke", "base", cli.world.base[3], "--reason", "CVE", "--actor", "alice")
    assert _out(capsys).splitlines()[:2] == [
        f"revoked base {cli.world.base[3]} (now)",
        f"revoked nginx {cli.world.nginx[3]} (now)",
    ]


def test_revoke_at_says_when(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    cli(
        "revoke",
        "base",
        cli.world.base[3],
        "--reason",
        "CVE",
        "--at",
        "2099-01-01T00:00:00+00:00",
        "--actor",
        "a",
    )
    assert f"revoked base {cli.world.base[3]} (from 2099-01-01T00:00:00+00:00)" in _out(capsys)


def test_restore_says_channels_stay(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    cli.world.revoke("nginx", cli.world.nginx[3])
    cli("restore", "nginx", cli.world.nginx[3], "--actor", "alice")
    assert "channels were not moved back" in _out(capsys)


def test_deprecate_says_the_state(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    cli("deprecate", "base", cli.world.base[0], "--replacement", cli.world.base[3], "--actor", "alice")
    assert _out(capsys) == f"base {cli.world.base[0]}: deprecated, replacement {cli.world.base[3]}\n"


def test_an_emptied_catalog_is_not_listed_as_empty(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    """No catalog lists empty only where this reader never saw one (CatalogV3.absent): a catalog
    removed after this reader (the layout's cache) saw it is refused."""
    assert cli("resolve", "base") == 0
    shutil.rmtree(cli.layout.catalog)
    cli.layout.catalog.mkdir()
    code = cli("catalog", "--json")
    assert (code, "empty" in capsys.readouterr().err) == (2, True)


def test_gc_dry_run_changes_nothing(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    before = catalog_files(cli.world.catalog)
    cli("gc", "--keep", "1", "--dry-run")
    assert catalog_files(cli.world.catalog) == before


def test_gc_dry_run_counts(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    cli("gc", "--keep", "1", "--dry-run")
    assert _out(capsys).splitlines()[-1] == "6 version(s) would be removed, 2 kept"


def test_verify_catalog_passes(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("verify-catalog") == 0


def test_verify_catalog_json(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    cli("verify-catalog", "--json")
    assert _json(capsys) == {"ok": True, "problems": [], "versions": 8, "records": 16}


def _change_package_count(cli: Cli) -> str:
    """Edit base[0]'s entry file in place; returns its path (its name is its former sha256)."""
    root = cli.world.catalog.root
    rel = tamper_v3.entry_file(root, "base", cli.world.base[0])
    tamper_v3.edit(root, rel, lambda entry: entry.update(package_count=12))
    return str(root / rel)


def test_verify_catalog_of_a_changed_entry_exits_2(cli: Cli, console: io.StringIO) -> None:
    _change_package_count(cli)
    assert cli("verify-catalog") == 2


def test_verify_catalog_names_a_changed_entry(cli: Cli, console: io.StringIO) -> None:
    path = _change_package_count(cli)
    cli("verify-catalog")
    err = console.getvalue()
    assert f"{path}: sha256 is " in err and "changed after it was written" in err


def test_verify_catalog_names_a_field_changed_after_signing(cli: Cli, console: io.StringIO) -> None:
    """A writer holding the key commits an entry whose package_count changed after it was signed
    (a copy of base[0] as a new version): its file's sha256 is right, its signature is not."""
    with cli.world.change() as change:
        entry: Any = copy.deepcopy(changes_of(change).entry("base", cli.world.base[0]))
        entry["version"] = version_id(8 * DAY)
        entry["envelope"] = sign(cli.world.signer, provenance.statement_for(entry))
        entry["package_count"] = 12
        change.publish(entry)
    cli("verify-catalog")
    rel = tamper_v3.entry_file(cli.world.catalog.root, "base", entry["version"])
    assert f"{rel}: fields changed after signing: package_count" in console.getvalue()


def test_verify_catalog_of_a_forged_entry_names_catalog_json(cli: Cli, console: io.StringIO) -> None:
    """The entry edited, re-hashed and its sha256 carried up to catalog.json by someone without the
    key: only catalog.json's signature tells."""
    root = cli.world.catalog.root
    tamper_v3.rechain(
        root, tamper_v3.entry_file(root, "base", cli.world.base[0]), lambda e: e.update(package_count=12)
    )
    cli("verify-catalog")
    assert f"{root / 'catalog.json'}: envelope: signature does not verify" in console.getvalue()


def _change_sbom(cli: Cli) -> str:
    """Rename a package in the SBOM of base[0]; returns the file's catalog-relative path."""
    rel: str = cli.world.catalog.find("base", cli.world.base[0])["sbom"]["path"]
    path = cli.layout.catalog / rel
    path.write_bytes(path.read_bytes().replace(b'"bash"', b'"dash"'))
    return rel


def test_verify_catalog_of_a_changed_sbom_exits_2(cli: Cli, console: io.StringIO) -> None:
    _change_sbom(cli)
    assert cli("verify-catalog") == 2


def test_verify_catalog_names_a_changed_sbom(cli: Cli, console: io.StringIO) -> None:
    rel = _change_sbom(cli)
    cli("verify-catalog")
    assert f"images.base.versions[{cli.world.base[0]}]: {rel} is changed after signing" in console.getvalue()


def test_history_text(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    cli("history", "base", "--channel", "latest")
    assert f"promote   latest: (none) -> {cli.world.base[0]}" in _out(capsys)


def test_history_of_a_configured_channel_never_moved_is_empty(
    cli: Cli, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("history", "base", "--channel", "prod", "--json") == 0
    assert _json(capsys) == []


@pytest.mark.parametrize(
    "args",
    [
        ["history", "base", "--channel", "qa"],
        ["resolve", "base", "--channel", "qa"],
        ["rollback", "base", "--channel", "qa", "--actor", "alice"],
        ["promote", "base", "20261129.084512-0123456789ab", "--to", "qa", "--actor", "alice"],
        ["query", "--package", "bash", "--channel", "qa"],
    ],
    ids=lambda args: args[0],
)
def test_every_channel_option_lists_the_configured_channels(
    cli: Cli, console: io.StringIO, args: list[str]
) -> None:
    assert cli(*args) == 2
    shown = console.getvalue()
    assert "unknown channel 'qa'" in shown
    assert "channels (factory.toml [channels] order): dev, staging, prod, and latest" in shown


def test_site_writes_html_json_and_sboms(
    cli: Cli, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli("site", str(tmp_path / "public"))
    assert sorted(p.name for p in (tmp_path / "public").iterdir()) == ["index.html", "index.json", "sbom"]


def test_keygen_if_missing_keeps_the_key(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    cli("keygen", "--local", "--if-missing")
    assert _out(capsys).startswith("kept ")


def test_keygen_makes_a_trusted_key(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FACTORY_SIGNING_KEY", str(tmp_path / "new" / "key.pem"))
    cli("keygen", "--local")
    assert len(list((cli.layout.keys / "local").glob("*.pub"))) == 1


def test_keygen_private_key_is_0600(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACTORY_SIGNING_KEY", str(tmp_path / "new" / "key.pem"))
    cli("keygen")
    assert (tmp_path / "new" / "key.pem").stat().st_mode & 0o777 == 0o600


# -- bad input to the new verbs: exit 2, a message, no traceback ---------------------------

MALFORMED = "20261129-nope"
UNKNOWN = version_id(99 * 24 * 60)


def _bad_input(w: World) -> dict[str, tuple[list[str], str]]:
    """name → (arguments, what the error message must say)."""
    b0, b3 = w.base[0], w.base[3]
    return {
        "promote-unknown-channel": (["promote", "base", b3, "--to", "qa"], "--to: unknown channel 'qa'"),
        "promote-latest": (["promote", "base", b3, "--to", "latest"], "managed by the factory"),
        "promote-unknown-version": (["promote", "base", UNKNOWN, "--to", "dev"], f"no version {UNKNOWN!r}"),
        "promote-malformed-version": (
            ["promote", "base", MALFORMED, "--to", "dev"],
            "is not a factory version id",
        ),
        "promote-unknown-image": (
            ["promote", "debian", b3, "--to", "dev"],
            "no published versions of 'debian'",
        ),
        "promote-out-of-order": (["promote", "base", b3, "--to", "prod"], "has not been on 'staging'"),
        "promote-skip-without-reason": (
            ["promote", "base", b3, "--to", "prod", "--skip-order"],
            "needs --reason",
        ),
        "rollback-empty-channel": (
            ["rollback", "base", "--channel", "prod"],
            "there is nothing to roll back",
        ),
        "rollback-unknown-channel": (
            ["rollback", "base", "--channel", "qa"],
            "--channel: unknown channel 'qa'",
        ),
        "rollback-malformed-to": (["rollback", "base", "--channel", "dev", "--to", MALFORMED], "version id"),
        "rollback-unknown-to": (["rollback", "base", "--channel", "dev", "--to", UNKNOWN], "no version"),
        "rollback-latest": (["rollback", "base", "--channel", "latest"], "managed by the factory"),
        "revoke-unknown-version": (["revoke", "base", UNKNOWN, "--reason", "x"], "no version"),
        "revoke-malformed-version": (
            ["revoke", "base", MALFORMED, "--reason", "x"],
            "is not a factory version id",
        ),
        "revoke-at-without-timezone": (
            ["revoke", "base", b3, "--reason", "x", "--at", "2026-12-01T06:00:00"],
            "has no timezone",
        ),
        "revoke-at-not-a-time": (
            ["revoke", "base", b3, "--reason", "x", "--at", "tomorrow"],
            "not an ISO 8601 time",
        ),
        "restore-active": (["restore", "base", b0], "is not revoked"),
        "restore-malformed-version": (["restore", "base", MALFORMED], "is not a factory version id"),
        "deprecate-without-replacement": (["deprecate", "base", b0], "--replacement VERSION is required"),
        "deprecate-itself": (["deprecate", "base", b0, "--replacement", b0], "cannot replace itself"),
        "deprecate-unknown-replacement": (["deprecate", "base", b0, "--replacement", UNKNOWN], "no version"),
        "gc-keep-0": (["gc", "--keep", "0"], "--keep: 0 must be at least 1"),
        "gc-keep-negative": (["gc", "--keep", "-1", "--dry-run"], "must be at least 1"),
        "history-unknown-image": (["history", "debian"], "unknown image 'debian'"),
        # well-formed, but not in factory.toml: an empty listing and exit 0 would say "no changes"
        "history-unknown-channel": (
            ["history", "base", "--channel", "qa"],
            "--channel: unknown channel 'qa'",
        ),
        "keygen-existing": (["keygen"], "a signing key already exists"),
        "resolve-unknown-channel": (
            ["resolve", "base", "--channel", "qa"],
            "--channel: unknown channel 'qa'",
        ),
    }


BAD_INPUT = [
    "promote-unknown-channel",
    "promote-latest",
    "promote-unknown-version",
    "promote-malformed-version",
    "promote-unknown-image",
    "promote-out-of-order",
    "promote-skip-without-reason",
    "rollback-empty-channel",
    "rollback-unknown-channel",
    "rollback-malformed-to",
    "rollback-unknown-to",
    "rollback-latest",
    "revoke-unknown-version",
    "revoke-malformed-version",
    "revoke-at-without-timezone",
    "revoke-at-not-a-time",
    "restore-active",
    "restore-malformed-version",
    "deprecate-without-replacement",
    "deprecate-itself",
    "deprecate-unknown-replacement",
    "gc-keep-0",
    "gc-keep-negative",
    "history-unknown-image",
    "history-unknown-channel",
    "keygen-existing",
    "resolve-unknown-channel",
]
CHANGING = {"promote", "rollback", "revoke", "restore", "deprecate", "gc"}


def _run_bad(cli: Cli, name: str) -> int:
    args, _ = _bad_input(cli.world)[name]
    return cli(*args, *(["--actor", "alice"] if args[0] in CHANGING else []))


def test_bad_input_cases_are_all_listed(cli: Cli) -> None:
    assert sorted(_bad_input(cli.world)) == sorted(BAD_INPUT)


def test_bad_input_covers_every_new_verb() -> None:
    new = {"promote", "rollback", "history", "revoke", "restore", "deprecate", "gc", "keygen", "resolve"}
    assert {name.split("-")[0] for name in BAD_INPUT} == new


@pytest.mark.parametrize("name", BAD_INPUT)
def test_bad_input_exits_2(cli: Cli, console: io.StringIO, name: str) -> None:
    assert _run_bad(cli, name) == 2


@pytest.mark.parametrize("name", BAD_INPUT)
def test_bad_input_says_what_is_wrong(cli: Cli, console: io.StringIO, name: str) -> None:
    _run_bad(cli, name)
    _, message = _bad_input(cli.world)[name]
    assert "error:" in console.getvalue() and message in console.getvalue()


@pytest.mark.parametrize("name", BAD_INPUT)
def test_bad_input_has_no_traceback(
    cli: Cli, console: io.StringIO, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    _run_bad(cli, name)
    assert "Traceback" not in console.getvalue() + capsys.readouterr().err


@pytest.mark.parametrize("name", BAD_INPUT)
def test_bad_input_changes_nothing(cli: Cli, console: io.StringIO, name: str) -> None:
    before = catalog_files(cli.world.catalog)
    _run_bad(cli, name)
    assert catalog_files(cli.world.catalog) == before


def test_revoke_without_reason_exits_2(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli("revoke", "base", cli.world.base[3], "--actor", "alice")
    assert caught.value.code == 2


def test_revoke_without_reason_names_the_option(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli("revoke", "base", cli.world.base[3], "--actor", "alice")
    assert "the following arguments are required: --reason" in capsys.readouterr().err


def test_missing_signing_key_exits_2(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, console: io.StringIO
) -> None:
    monkeypatch.setenv("FACTORY_SIGNING_KEY", str(tmp_path / "absent.pem"))
    assert cli("promote", "base", cli.world.base[3], "--to", "dev", "--actor", "alice") == 2


def test_missing_signing_key_hints_keygen(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, console: io.StringIO
) -> None:
    monkeypatch.setenv("FACTORY_SIGNING_KEY", str(tmp_path / "absent.pem"))
    cli("promote", "base", cli.world.base[3], "--to", "dev", "--actor", "alice")
    assert "factory keygen" in console.getvalue()


def _promote_with_an_untrusted_key(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("FACTORY_SIGNING_KEY", str(tmp_path / "untrusted" / "signing-key.pem"))
    return cli("promote", "base", cli.world.base[3], "--to", "dev", "--actor", "mallory")


def test_untrusted_signing_key_exits_2(
    cli: Cli, untrusted_signer: Signer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, console: io.StringIO
) -> None:
    assert _promote_with_an_untrusted_key(cli, tmp_path, monkeypatch) == 2


def test_untrusted_signing_key_is_named(
    cli: Cli, untrusted_signer: Signer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, console: io.StringIO
) -> None:
    _promote_with_an_untrusted_key(cli, tmp_path, monkeypatch)
    assert f"signing key {untrusted_signer.keyid[:16]} is not among the trusted keys" in console.getvalue()


def test_untrusted_signing_key_leaves_the_catalog_alone(
    cli: Cli, untrusted_signer: Signer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, console: io.StringIO
) -> None:
    """A write signed by a key that readers do not trust would lock every reader and writer out."""
    before = catalog_files(cli.world.catalog)
    _promote_with_an_untrusted_key(cli, tmp_path, monkeypatch)
    assert catalog_files(cli.world.catalog) == before


def test_site_into_a_file_exits_2(cli: Cli, tmp_path: Path, console: io.StringIO) -> None:
    (tmp_path / "public").write_text("not a directory\n")
    assert cli("site", str(tmp_path / "public")) == 2


def test_site_into_a_file_names_the_path(cli: Cli, tmp_path: Path, console: io.StringIO) -> None:
    (tmp_path / "public").write_text("not a directory\n")
    cli("site", str(tmp_path / "public"))
    assert f"{tmp_path / 'public'}: cannot write the site there" in console.getvalue()
