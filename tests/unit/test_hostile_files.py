"""Files anyone with a pull request can write (keys/*.pub, role meta, defaults and argument specs)
and files the remote gate reads back: each goes through core.jsonio and ends in a ConfigError (or,
for the gate's evidence, an ExternalToolError) naming the file and the field, never a traceback."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

import factory.aws.remote_gate
from factory.aws.remote_gate import load_settings, parse_call, read_evidence
from factory.bake import roledoc, verify
from factory.bake.inputs import HashCache, role_dependencies
from factory.catalog import trust
from factory.core.config import Layout, load_image
from factory.core.errors import CommandFailed, ConfigError, ExternalToolError

from .conftest import KeyPair

DEEP = "[" * 100_000 + "]" * 100_000
LONG = "9" * 5000

# -- keys/*.pub ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words"),
    [
        pytest.param(DEEP, ["nested deeper than 64 levels"], id="deep"),
        pytest.param(
            f'{{"keyid": "k", "n": {LONG}}}', ["an integer of 5000 digits at character 20"], id="long-int"
        ),
        pytest.param('{"keyid": "k", "keyid": "j"}', ["duplicate key 'keyid'"], id="duplicate-key"),
        pytest.param('"a key"', ["a JSON object is expected, not str"], id="string"),
        pytest.param("[1]", ["a JSON object is expected, not list"], id="list"),
        pytest.param('{"keytype": "ed25519"}', ["keyid: a string is expected"], id="no-keyid"),
        pytest.param('{"keyid": 5}', ["keyid: a string is expected"], id="keyid-number"),
        pytest.param('{"keyid": "k"}', ["no 'keytype' field"], id="no-keytype"),
        pytest.param(
            '{"keyid": "k", "keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": 5}}',
            ["public key string required"],
            id="public-not-a-string",
        ),
    ],
)
def test_bad_public_key_file_is_refused_naming_it(keys_root: Path, text: str, words: list[str]) -> None:
    keys_root.mkdir(parents=True)
    (keys_root / "evil.pub").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        trust.trusted_keys(keys_root)
    assert caught.value.message.startswith(f"{keys_root / 'evil.pub'}: not a public key file: ")
    assert [w for w in words if w not in caught.value.message] == []


def test_public_key_file_not_utf8_names_the_byte(keys_root: Path) -> None:
    (keys_root / "local").mkdir(parents=True)
    (keys_root / "local" / "x.pub").write_bytes(b'{"keyid": "\xff"}')
    with pytest.raises(ConfigError, match=r"local/x\.pub: not a public key file: invalid UTF-8 at byte 11"):
        trust.trusted_keys(keys_root)


def test_public_key_path_that_is_a_folder_is_refused(keys_root: Path) -> None:
    (keys_root / "dir.pub").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"dir\.pub: not a public key file"):
        trust.trusted_keys(keys_root)


def test_written_public_key_reads_back(key_pair: KeyPair, keys_root: Path) -> None:
    assert [key.keyid for key in trust.trusted_keys(keys_root)] == [key_pair.signer.keyid]


# -- roles/<role>/meta/main.yml, defaults, argument specs ------------------------------------


def test_role_meta_dependencies(tmp_path: Path) -> None:
    meta = tmp_path / "main.yml"
    meta.write_text("dependencies:\n  - common\n  - role: hardening\n", encoding="utf-8")
    assert role_dependencies(meta) == ["common", "hardening"]
    assert role_dependencies(tmp_path / "missing.yml") == []


@pytest.mark.parametrize(
    ("text", "words"),
    [
        pytest.param("x: " + "[" * 100_000, ["not a valid YAML role meta file"], id="deep"),
        pytest.param(f"dependencies: [{LONG}]", ["more than 4300 digits (line 1)"], id="long-int"),
        pytest.param("- common\n", ["a mapping is expected, not list"], id="list"),
        pytest.param(
            "dependencies: common\n", ["dependencies: a list is expected, not str"], id="not-a-list"
        ),
        pytest.param(
            "dependencies:\n  - common\n  - src: x\n", ["dependencies[1]: a role name"], id="no-role"
        ),
        pytest.param("dependencies:\n  - 42\n", ["dependencies[0]: a role name"], id="number"),
    ],
)
def test_bad_role_meta_is_refused_naming_it(tmp_path: Path, text: str, words: list[str]) -> None:
    meta = tmp_path / "main.yml"
    meta.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        role_dependencies(meta)
    assert caught.value.message.startswith(f"{meta}: ")
    assert [w for w in words if w not in caught.value.message] == []


@pytest.mark.parametrize(
    "text",
    [DEEP, "[1, 2]", f'{{"a": {LONG}}}', '{"a": [1, 2], "b": "x", "c": [1, 2, 3]}', "\xff"],
    ids=["deep", "list", "long-int", "bad-entries", "not-utf8"],
)
def test_damaged_hash_cache_is_only_a_slower_run(tmp_path: Path, text: str) -> None:
    (tmp_path / "file-hashes.json").write_text(text, encoding="latin-1")
    assert HashCache(tmp_path / "file-hashes.json").entries == {}


def test_bakes_sharing_a_hash_cache_save_it_side_by_side(tmp_path: Path) -> None:
    # `factory rebuild -j 2` bakes two images at once with one FACTORY_CACHE: each save must write
    # a temporary file of its own (a shared name was renamed away under the other writer).
    path = tmp_path / "file-hashes.json"
    failures: list[BaseException] = []

    def save_often(key: str) -> None:
        cache = HashCache(path)
        try:
            for n in range(50):
                cache.entries[key] = [n, 1, "ab"]
                cache.dirty = True
                cache.save()
        except OSError as exc:
            failures.append(exc)

    writers = [threading.Thread(target=save_often, args=(key,)) for key in ("/a", "/b")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert (failures, sorted(p.name for p in tmp_path.iterdir())) == ([], ["file-hashes.json"])


def test_hash_cache_keeps_good_entries(tmp_path: Path) -> None:
    good = {"/a": [1, 2, "ab"]}
    (tmp_path / "file-hashes.json").write_text(json.dumps({**good, "/b": [1, "x", "y"]}), encoding="utf-8")
    assert HashCache(tmp_path / "file-hashes.json").entries == good


@pytest.mark.parametrize(
    ("rel", "text", "words"),
    [
        pytest.param("roles/common/defaults/main.yml", "x: " + "[" * 100_000, ["not valid YAML"], id="deep"),
        pytest.param("roles/common/defaults/main.yml", f"x: {LONG}\n", ["more than 4300"], id="long-int"),
        pytest.param("roles/common/defaults/main.yml", "- a\n", ["a mapping of variables"], id="list"),
        pytest.param(
            "inventory/group_vars/build.yml", "a: 2001-02-30\n", ["day is out of range"], id="date"
        ),
        pytest.param(
            "roles/common/tasks/main.yml", "- !!timestamp x\n", ["a value cannot be read"], id="tag"
        ),
    ],
)
def test_bad_role_yaml_is_refused_naming_it(layout: Layout, rel: str, text: str, words: list[str]) -> None:
    (layout.root / rel).write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        verify.role_written_files(load_image(layout, "base"), layout)
    assert caught.value.message.startswith(f"{layout.root / rel}: ")
    assert [w for w in words if w not in caught.value.message] == []


@pytest.mark.parametrize(
    ("text", "words"),
    [
        pytest.param("x: " + "[" * 100_000, ["not a valid YAML argument spec"], id="deep"),
        pytest.param(
            f"argument_specs: {{main: {{options: {{a: {{default: {LONG}}}}}}}}}", ["4300"], id="long-int"
        ),
        pytest.param(
            "argument_specs: {main: {options: {a: [1]}}}", ["no readable argument_specs.main"], id="list"
        ),
    ],
)
def test_bad_argument_spec_is_refused_by_the_readme_generator(
    tmp_path: Path, text: str, words: list[str]
) -> None:
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "argument_specs.yml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        roledoc.render_table(tmp_path)
    assert str(tmp_path / "meta" / "argument_specs.yml") in caught.value.message
    assert [w for w in words if w not in caught.value.message] == []


# -- the remote gate -------------------------------------------------------------------------

SETTINGS = {
    "root": "/r",
    "tests": ["t.py"],
    "junit": "j.xml",
    "image": "base",
    "version": "v",
    "commit": "c",
    "tracked_paths": ["/etc"],
    "packages_file": "p.json",
    "files_file": "f.json",
}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        pytest.param(DEEP, ["not readable gate settings: nested deeper than 64"], id="deep"),
        pytest.param('{"root": NaN}', ["NaN is not a JSON number"], id="nan"),
        pytest.param("[]", ["settings are not a JSON object"], id="list"),
        pytest.param(json.dumps({**SETTINGS, "tests": "t.py"}), ["tests: a list of strings"], id="tests"),
        pytest.param(json.dumps({**SETTINGS, "root": 1}), ["root: a string is expected"], id="root"),
    ],
)
def test_bad_gate_settings_are_refused_naming_them(tmp_path: Path, text: str, words: list[str]) -> None:
    (tmp_path / "gate.json").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path / "gate.json")
    assert caught.value.message.startswith(f"remote gate: {tmp_path / 'gate.json'}: ")
    assert [w for w in words if w not in caught.value.message] == []


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        pytest.param(
            "gate.json", DEEP, ["gate.json: not readable gate settings: nested"], id="settings-deep"
        ),
        pytest.param("packages.json", DEEP, ["packages.json: unreadable: not JSON: nested"], id="deep"),
        pytest.param(
            "packages.json", f"[[{LONG}, 1]]", ["packages.json: unreadable", "5000 digits"], id="long"
        ),
        pytest.param("files.json", '{"/a": 1e999}', ["files.json: unreadable", "too large"], id="float"),
    ],
)
def test_bad_gate_evidence_is_a_tool_error_naming_the_file(
    tmp_path: Path, name: str, text: str, words: list[str]
) -> None:
    paths = {"packages_file": str(tmp_path / "packages.json"), "files_file": str(tmp_path / "files.json")}
    (tmp_path / "gate.json").write_text(json.dumps({**SETTINGS, **paths}), encoding="utf-8")
    (tmp_path / "packages.json").write_text('[["bash", "5.2"]]', encoding="utf-8")
    (tmp_path / "files.json").write_text("{}", encoding="utf-8")
    (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(ExternalToolError) as caught:
        read_evidence(tmp_path)
    assert [w for w in words if w not in caught.value.message] == []


@pytest.mark.parametrize(
    ("inventory", "words"),
    [
        pytest.param("default ansible_host='127.0.0.1\n", ["No closing quotation"], id="unclosed-quote"),
        pytest.param("default ansible_port=22x\n", ["ansible_port '22x' is not a port number"], id="port"),
    ],
)
def test_bad_inventory_is_refused(tmp_path: Path, inventory: str, words: list[str]) -> None:
    (tmp_path / "inventory").write_text(inventory, encoding="utf-8")
    argv = ["-e", "ansible_ssh_private_key_file=/k", "-i", str(tmp_path / "inventory"), "gate.json"]
    with pytest.raises(ConfigError) as caught:
        parse_call(argv)
    assert [w for w in words if w not in caught.value.message] == []


def test_gate_error_from_the_instance_is_escaped(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the instance printed (a command's tail) reaches Packer's log only through safe()."""

    def fails(_argv: Any) -> Any:
        raise CommandFailed(["ssh", "gate"], 255, ["\x1b]0;owned\x07\x1b[2Jgone\rok \u202eevil"])

    monkeypatch.setattr(factory.aws.remote_gate, "parse_call", fails)
    assert factory.aws.remote_gate.main([]) == ExternalToolError.exit_code
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\r" not in err and "\u202e" not in err and "\x07" not in err
    assert "\\x1b]0;owned\\x07\\x1b[2Jgone\\x0dok \\u202eevil" in err
    assert err.startswith("remote gate: `ssh gate` exited with code 255")
    assert "hint: This error comes from a subprocess" in err


def test_gate_message_is_prefixed_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert factory.aws.remote_gate.main([]) == ConfigError.exit_code
    assert capsys.readouterr().err.startswith("remote gate: no arguments\n")
