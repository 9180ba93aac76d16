"""The registry target without a registry: its URL rules, the evidence layout, references, the
typed entry with a digest, and the publication that records it (tests/integration/
test_registry_e2e.py drives a real registry)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest

from factory.__main__ import main
from factory.catalog import hooks, model, provenance, publishing
from factory.catalog.store import Catalog
from factory.catalog.trust import Signer
from factory.core.config import Layout, load_settings, registry_of
from factory.core.errors import CommandFailed, ConfigError
from factory.core.registry_config import parse
from factory.registry import attach, skopeo, verify
from tests.unit.conftest import ACTOR, make_entry, make_manifest

DIGEST = "sha256:" + "d" * 64


@pytest.mark.parametrize(
    ("url", "host", "prefix", "tls"),
    [
        ("http://127.0.0.1:5000/golden", "127.0.0.1:5000", "golden", False),
        ("http://localhost:5000", "localhost:5000", "", False),
        ("https://registry.example.com/platform/golden", "registry.example.com", "platform/golden", True),
        ("https://registry.example.com:8443/golden/", "registry.example.com:8443", "golden", True),
    ],
)
def test_a_registry_url_names_host_prefix_and_tls(url: str, host: str, prefix: str, tls: bool) -> None:
    reg = parse(url, source="--registry")
    assert (reg.host, reg.prefix, reg.tls) == (host, prefix, tls)
    assert reg.repository("nginx") == "/".join(p for p in (host, prefix, "nginx") if p)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://registry.example.com/golden", "not loopback"),
        ("http://10.0.0.5:5000/golden", "not loopback"),
        ("ftp://127.0.0.1/golden", "not a registry URL"),
        ("127.0.0.1:5000/golden", "not a registry URL"),
        ("https://user:pw@registry.example.com/golden", "no credentials"),
        ("https://registry.example.com/Golden", "prefix component 'Golden'"),
        ("https://registry.example.com:99999/golden", "not a registry URL"),
        ("http://[::1]:5000/golden", "not a host name"),  # image references cannot hold it plainly
    ],
)
def test_a_bad_registry_url_is_refused_naming_its_source(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse(url, source="factory.toml: registry.url")
    assert caught.value.exit_code == 2
    assert caught.value.message.startswith("factory.toml: registry.url: ")


def test_no_registry_configured_means_none(layout: Layout) -> None:
    assert load_settings(layout).registry_url is None
    assert registry_of(layout) is None


def test_factory_toml_registry_is_read_and_checked(layout: Layout) -> None:
    settings = layout.settings
    settings.write_text(settings.read_text() + '\n[registry]\nurl = "http://127.0.0.1:5000/golden"\n')
    reg = registry_of(layout)
    assert reg is not None and reg.repository("base") == "127.0.0.1:5000/golden/base"
    settings.write_text(settings.read_text().replace("127.0.0.1:5000", "registry.example.com"))
    with pytest.raises(ConfigError, match=r"factory.toml: registry.url: .*not loopback"):
        registry_of(layout)


def test_the_flag_wins_over_factory_toml(layout: Layout) -> None:
    settings = layout.settings
    settings.write_text(settings.read_text() + '\n[registry]\nurl = "http://127.0.0.1:5000/golden"\n')
    reg = registry_of(replace(layout, registry="https://r.example.com/team"))
    assert reg is not None and reg.repository("base") == "r.example.com/team/base"


def test_an_unknown_registry_key_is_refused(layout: Layout) -> None:
    settings = layout.settings
    settings.write_text(settings.read_text() + '\n[registry]\nurl = "http://127.0.0.1:5000"\nuser = "x"\n')
    with pytest.raises(ConfigError, match=r"factory\.toml"):
        load_settings(layout)


def test_env_registry_reaches_the_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACTORY_REGISTRY", "http://127.0.0.1:5000/golden")
    assert Layout.discover(tmp_path).registry == "http://127.0.0.1:5000/golden"
    assert Layout.discover(tmp_path, registry="https://r.example.com").registry == "https://r.example.com"


def test_a_non_loopback_http_flag_exits_2_before_anything_runs(
    real_layout: Layout, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--catalog", str(real_layout.catalog), "--registry", "http://10.1.2.3/golden", "catalog"])
    # `catalog` reads only; a verb that changes the catalog or bakes refuses the URL first.
    assert code == 0
    code = main([
        "--catalog", str(real_layout.catalog), "--registry", "http://10.1.2.3/golden",
        "verify-image", "nginx:prod", "--key", "keys/none.pub",
    ])  # fmt: skip
    assert code == 2
    assert "not loopback" in capsys.readouterr().err
    assert not real_layout.catalog.exists()


# -- the evidence as an OCI layout ---------------------------------------------------------------


def test_an_attachment_layout_is_a_consistent_oci_layout(tmp_path: Path) -> None:
    subject = attach.Subject(digest=DIGEST, media_type=attach.OCI_MANIFEST, size=123)
    item = attach.Attachment(kind="att", payload=b'{"payload":"x"}', annotations={"a": "b"})
    digest = attach.layout(tmp_path / "l", subject, item)
    blobs = tmp_path / "l" / "blobs" / "sha256"
    for blob in blobs.iterdir():  # every blob is stored under its own digest
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    index = json.loads((tmp_path / "l" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == digest
    manifest = json.loads((blobs / digest.removeprefix("sha256:")).read_bytes())
    assert manifest["subject"] == {"mediaType": attach.OCI_MANIFEST, "digest": DIGEST, "size": 123}
    assert manifest["artifactType"] == attach.ENVELOPE_TYPE
    layer = manifest["layers"][0]
    assert layer["mediaType"] == attach.ENVELOPE_TYPE
    assert (blobs / layer["digest"].removeprefix("sha256:")).read_bytes() == b'{"payload":"x"}'
    assert json.loads((tmp_path / "l" / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}


def test_the_same_evidence_gives_the_same_digest(tmp_path: Path) -> None:
    subject = attach.Subject(digest=DIGEST, media_type=attach.OCI_MANIFEST, size=1)
    item = attach.Attachment(kind="sbom", payload=b"{}", annotations={})
    assert attach.layout(tmp_path / "a", subject, item) == attach.layout(tmp_path / "b", subject, item)


def test_the_fallback_tags_are_cosigns() -> None:
    assert attach.tag_of(DIGEST, "att") == "sha256-" + "d" * 64 + ".att"
    assert attach.tag_of(DIGEST, "sbom") == "sha256-" + "d" * 64 + ".sbom"
    assert attach.is_attachment_tag(attach.tag_of(DIGEST, "sbom"))
    assert not attach.is_attachment_tag("prod")


# -- references and skopeo's answers -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "repo", "reference"),
    [
        ("127.0.0.1:5000/golden/nginx:prod", "127.0.0.1:5000/golden/nginx", "prod"),
        (f"127.0.0.1:5000/golden/nginx@{DIGEST}", "127.0.0.1:5000/golden/nginx", DIGEST),
        ("registry.example.com/a/b/base:20261201.000000-0123456789ab", "registry.example.com/a/b/base",
         "20261201.000000-0123456789ab"),
        ("localhost:5000/nginx:dev", "localhost:5000/nginx", "dev"),
    ],
)  # fmt: skip
def test_a_full_reference_names_its_registry(text: str, repo: str, reference: str) -> None:
    ref = verify.parse_ref(text, None)
    assert ref.registry.repository(ref.image) == repo
    assert ref.reference == reference
    assert ref.registry.tls == ("example.com" in text)


def test_a_short_reference_uses_the_configured_registry() -> None:
    ref = verify.parse_ref("nginx:prod", parse("http://127.0.0.1:5000/golden", source="x"))
    assert ref.describe() == "127.0.0.1:5000/golden/nginx:prod"


@pytest.mark.parametrize(
    "text", ["nginx", "127.0.0.1:5000/golden/nginx", "NGINX:prod", "nginx:prod@sha256:12"]
)
def test_a_bad_reference_is_refused(text: str) -> None:
    with pytest.raises(ConfigError):
        verify.parse_ref(text, parse("http://127.0.0.1:5000", source="x"))


def test_a_short_reference_without_a_registry_is_refused() -> None:
    with pytest.raises(ConfigError, match="names no registry"):
        verify.parse_ref("nginx:prod", None)


def test_skopeos_answer_is_its_message_without_the_log_prefix() -> None:
    failed = CommandFailed(
        ("skopeo", "inspect"),
        1,
        ('time="2026-12-01T04:35:42Z" level=fatal msg="Error reading manifest prod in 127.0.0.1:5/x: '
         'received unexpected HTTP status: 500 Internal Server Error"',),
    )  # fmt: skip
    assert skopeo.answer(failed).endswith("received unexpected HTTP status: 500 Internal Server Error")
    assert skopeo.answer(CommandFailed(("skopeo",), 1, ())) == "skopeo exited 1"


# -- the entry and its publication ---------------------------------------------------------------


def test_a_pushed_entry_survives_a_trip_to_json_and_back() -> None:
    entry = replace(
        make_entry(),
        artifact=model.PodmanImage(
            id="sha256:" + "a" * 64, ref=f"127.0.0.1:5000/golden/base@{DIGEST}", digest=DIGEST
        ),
    )
    assert model.Entry.from_json(entry.to_json()) == entry
    assert "digest" not in model.PodmanImage(id="sha256:" + "a" * 64, ref="localhost/base:v").to_json()


def test_the_digest_is_signed_with_the_entry(catalog: Catalog, signer: Signer, junit: Path) -> None:
    built = make_entry()
    pushed = replace(
        built,
        artifact=model.PodmanImage(
            id=built.artifact.id, ref=f"127.0.0.1:5000/golden/base@{DIGEST}", digest=DIGEST
        ),
    )
    entry = publishing.publish(catalog, pushed, make_manifest(), junit, signer=signer, actor=ACTOR)
    assert entry["artifact"]["digest"] == DIGEST
    assert entry["artifact"]["ref"] == f"127.0.0.1:5000/golden/base@{DIGEST}"
    catalog.verify_entry(entry)  # the envelope signs the entry, digest included
    swapped = json.loads(json.dumps(entry))
    swapped["artifact"]["digest"] = "sha256:" + "e" * 64
    assert provenance.differences(provenance.statement_for(entry), swapped) == ["artifact"]


def test_push_asks_the_registered_target_and_none_answers_none(
    layout: Layout, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hooks, "_FOLLOWERS", {})
    assert hooks.push(layout, "base", "v", "localhost/base:v") is None
    seen: list[tuple[str, str, str]] = []

    def pusher(lay: Layout, image: str, version: str, ref: str) -> hooks.Pushed:
        seen.append((image, version, ref))
        return hooks.Pushed(digest=DIGEST, ref=f"r/base@{DIGEST}")

    hooks.register(hooks.Follower(name="test-push", check=lambda *a: None, follow=lambda c: [], push=pusher))
    pushed = hooks.push(layout, "base", "v", "localhost/base:v")
    assert pushed == hooks.Pushed(digest=DIGEST, ref=f"r/base@{DIGEST}")
    assert seen == [("base", "v", "localhost/base:v")]
