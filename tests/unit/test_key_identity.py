"""Key identity: a public key is trusted under the keyid of its own material, never the keyid its
file states, and a private signing key others could read or write is refused (as ssh refuses it).
Each refusal exits 2 naming the file and writes nothing."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest

from factory.__main__ import main
from factory.catalog import trust
from factory.catalog.docs_types import EnvelopeDoc
from factory.catalog.store import Catalog
from factory.catalog.trust import Signer
from factory.core.config import Layout
from factory.core.errors import ConfigError

from .conftest import KeyPair, World, new_key


def snapshot_tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` and its bytes: proof that nothing was written."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# -- keyids are computed ---------------------------------------------------------------------


def test_keygen_keyid_is_the_computed_one(key_pair: KeyPair) -> None:
    """Keys made before keyids were checked keep theirs: keygen's keyid is the computed one."""
    (key,) = trust.trusted_keys(key_pair.public.parent)
    assert (trust.keyid_of(key), key.keyid) == (key_pair.signer.keyid, key_pair.signer.keyid)


def _lie(pub: Path, keyid: str, to: Path) -> Path:
    """A copy of the public key file ``pub`` that states ``keyid`` instead of its own."""
    data = json.loads(pub.read_text())
    data["keyid"] = keyid
    to.parent.mkdir(parents=True, exist_ok=True)
    to.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return to


@pytest.fixture
def mallory(tmp_path: Path) -> KeyPair:
    """A fresh key whose public half is not trusted (yet)."""
    return new_key(tmp_path / "mallory" / "signing-key.pem", tmp_path / "mallory" / "keys")


def test_key_under_the_team_keyid_is_refused(key_pair: KeyPair, mallory: KeyPair, keys_root: Path) -> None:
    evil = _lie(mallory.public, key_pair.signer.keyid, keys_root / "evil.pub")
    with pytest.raises(ConfigError) as caught:
        trust.trusted_keys(keys_root)
    assert (caught.value.exit_code, caught.value.message) == (
        2,
        f"{evil}: states keyid {key_pair.signer.keyid!r}, but its key material has keyid "
        f"{mallory.signer.keyid!r}",
    )


def test_lying_keyid_hint_says_what_to_do(key_pair: KeyPair, mallory: KeyPair, keys_root: Path) -> None:
    _lie(mallory.public, key_pair.signer.keyid, keys_root / "local" / "evil.pub")
    with pytest.raises(ConfigError) as caught:
        trust.trusted_keys(keys_root)
    assert "remove the file" in (caught.value.hint or "")


def test_long_stated_keyid_is_cut_short(mallory: KeyPair, keys_root: Path) -> None:
    _lie(mallory.public, "a" * 100_000, keys_root / "evil.pub")
    with pytest.raises(ConfigError) as caught:
        trust.trusted_keys(keys_root)
    assert len(caught.value.message) < 400


def test_same_key_in_keys_and_keys_local_is_trusted_once(key_pair: KeyPair, keys_root: Path) -> None:
    """A machine key also committed as a team key: the same material, so the same computed keyid."""
    (keys_root / "local").mkdir()
    shutil.copy(key_pair.public, keys_root / "local" / "copy.pub")
    assert [key.keyid for key in trust.trusted_keys(keys_root)] == [key_pair.signer.keyid]


# -- envelopes report the keyid that verified ------------------------------------------------


def _forged_first(envelope: EnvelopeDoc, keyid: str) -> EnvelopeDoc:
    """``envelope`` with a bad signature under ``keyid`` put before its real one."""
    signatures = envelope["signatures"]
    assert isinstance(signatures, list)
    return {**envelope, "signatures": [{"keyid": keyid, "sig": "00" * 64}, *signatures]}


def test_envelope_reports_the_keyid_whose_signature_verified(key_pair: KeyPair, mallory: KeyPair) -> None:
    both = [*trust.trusted_keys(key_pair.public.parent), *trust.trusted_keys(mallory.public.parent)]
    envelope = trust.sign(mallory.signer, trust.statement([], "t", {}))
    forged = _forged_first(envelope, key_pair.signer.keyid)
    assert trust.open_signed(forged, both)[1] == mallory.signer.keyid


def test_verify_entry_reports_the_keyid_whose_signature_verified(
    world: World, keys_root: Path, mallory: KeyPair
) -> None:
    shutil.copy(mallory.public, keys_root / "mallory.pub")
    entry = world.catalog.find("base", world.base[0])
    entry["envelope"] = _forged_first(
        trust.sign(mallory.signer, trust.open_envelope(entry["envelope"], world.catalog.keys())),
        world.signer.keyid,
    )
    assert world.catalog.verify_entry(entry) == mallory.signer.keyid


# -- through the CLI: exit 2, the file named, nothing written --------------------------------


def _promote(layout: Layout, world: World) -> int:
    argv = ["promote", "base", world.base[3], "--to", "dev", "--actor", "alice"]
    return main([*argv, "--root", str(layout.root), "--catalog", str(layout.catalog)])


@pytest.fixture
def signs(layout: Layout, world: World, session_key: KeyPair, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A 0600 copy of the world's signing key, which the CLI signs with: tests change its mode."""
    key = layout.root.parent / "secret" / "copy.pem"
    key.parent.mkdir()
    shutil.copyfile(session_key.private, key)
    key.chmod(0o600)
    monkeypatch.setenv("FACTORY_SIGNING_KEY", str(key))
    return key


def test_promote_with_a_private_key_of_mode_0600_works(layout: Layout, world: World, signs: Path) -> None:
    assert (_promote(layout, world), world.channel("base", "dev")) == (0, world.base[3])


def test_promote_with_a_read_only_private_key_works(layout: Layout, world: World, signs: Path) -> None:
    signs.chmod(0o400)
    assert _promote(layout, world) == 0


EXPOSED = [
    pytest.param(0o644, "readable", id="world-readable"),
    pytest.param(0o640, "readable", id="group-readable"),
    pytest.param(0o604, "readable", id="others-readable"),
    pytest.param(0o620, "writable", id="group-writable"),
    pytest.param(0o602, "writable", id="others-writable"),
    pytest.param(0o610, "accessible", id="group-executable"),
]


@pytest.mark.parametrize(("mode", "word"), EXPOSED)
def test_exposed_private_key_is_refused_naming_it(
    layout: Layout, world: World, signs: Path, console: io.StringIO, mode: int, word: str
) -> None:
    signs.chmod(mode)
    before = snapshot_tree(layout.catalog)
    code = _promote(layout, world)
    expected = (
        2,
        f"error: {signs}: private key is {word} by others (mode {mode:04o})\nhint: chmod 600 {signs}\n",
    )
    assert (code, console.getvalue(), snapshot_tree(layout.catalog)) == (*expected, before)


def test_exposed_private_key_is_refused_by_keygen_if_missing(
    layout: Layout, signs: Path, console: io.StringIO
) -> None:
    signs.chmod(0o644)
    assert main(["keygen", "--local", "--if-missing", "--root", str(layout.root)]) == 2
    assert not (layout.keys / "local").exists()


def test_exposed_private_key_is_refused_when_loaded(signs: Path) -> None:
    signs.chmod(0o644)
    with pytest.raises(ConfigError, match=r"private key is readable by others \(mode 0644\)"):
        trust.load_signer(signs)


@pytest.fixture
def lying(keys_root: Path, world: World, mallory: KeyPair) -> Path:
    """Mallory's public key file with the team's keyid pasted in, committed beside the team's."""
    return _lie(mallory.public, world.signer.keyid, keys_root / "mallory.pub")


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["verify-catalog"], id="verify-catalog"),
        pytest.param(["resolve", "base"], id="resolve"),
        pytest.param(["promote", "base", "{v}", "--to", "dev", "--actor", "alice"], id="promote"),
    ],
)
def test_lying_key_file_is_refused_by_the_cli(
    layout: Layout,
    world: World,
    signs: Path,
    lying: Path,
    mallory: KeyPair,
    console: io.StringIO,
    argv: list[str],
) -> None:
    before = snapshot_tree(layout.catalog)
    args = [a.format(v=world.base[3]) for a in argv]
    code = main([*args, "--root", str(layout.root), "--catalog", str(layout.catalog)])
    words = [str(lying), f"states keyid {world.signer.keyid!r}", f"has keyid {mallory.signer.keyid!r}"]
    shown = console.getvalue()
    assert (code, [w for w in words if w not in shown], snapshot_tree(layout.catalog)) == (2, [], before)


def test_mallory_cannot_sign_as_the_team(world: World, lying: Path, mallory: KeyPair) -> None:
    """Mallory's own signature under the team's keyid: refused, since her file is."""
    envelope = trust.sign(mallory.signer, trust.statement([], "t", {}))
    envelope["signatures"][0]["keyid"] = world.signer.keyid
    with pytest.raises(ConfigError, match="states keyid"):
        trust.open_signed(envelope, world.catalog.keys())


def test_untrusted_signer_is_still_refused_by_writers(world: World, untrusted_signer: Signer) -> None:
    with pytest.raises(ConfigError, match="is not among the trusted keys"):
        Catalog(world.catalog.root, world.catalog.keys_root).check_signer(untrusted_signer)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("payloadType", None),
        ("payload", 7),
        ("signatures", None),
        ("signatures", [{"keyid": None, "sig": "00"}]),
        ("signatures", ["not an object"]),
    ],
)
def test_a_malformed_envelope_is_a_bad_signature_not_a_crash(
    key_pair: KeyPair, field: str, value: object
) -> None:
    """Found by test_fuzz: securesystemslib trusts the envelope's shape (a null payloadType raised
    AttributeError, a traceback); the shape is checked first and refused by name."""
    envelope = {**trust.sign(key_pair.signer, trust.statement([], "t", {})), field: value}
    with pytest.raises(trust.BadSignature, match="must be"):
        trust.open_signed(envelope, trust.trusted_keys(key_pair.public.parent))
