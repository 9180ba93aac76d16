"""The aws target: [aws] of image.toml, the amazon-ebs template, its manifest, and the remote gate."""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

import factory.aws.remote_gate
import factory.bake.packer
from factory.aws.remote_gate import (
    GateCall,
    load_settings,
    parse_call,
    parse_inventory,
    pytest_command,
    read_evidence,
    read_sources,
    remote_command,
)
from factory.bake.packer import PACKER_ENV, AmiArtifact, aws_env, build_ami, read_ami_manifest
from factory.bake.render import (
    AwsBuild,
    BuildContext,
    ParentRef,
    ami_tags,
    playbook,
    render,
    render_template,
    structural_sha256,
)
from factory.bake.verify import DPKG_QUERY, GATE_PYTEST_ENV, checksum_command, tracked_paths
from factory.core.aws_config import AmiSource
from factory.core.config import ImageSpec, Layout, Target, load_images
from factory.core.errors import CommandFailed, ConfigError, ExternalToolError
from factory.core.run import Result

WriteImage = Callable[[str, str], Path]

COMMIT = "0123456789abcdef0123456789abcdef01234567"
VERSION = "20261129.084512-0123456789ab"
SOURCE_AMI = "ami-0123456789abcdef0"
SECRET = "factory-unit-secret-7d1e0c9a"  # a marker to search for, not a secret

BASE_AWS = """\
[aws]
region = "us-east-1"
regions = ["us-east-1", "us-west-2"]
instance_type = "t3.small"
ssh_username = "admin"
volume_size_gb = 8
"""
DEBIAN = """
[aws.source]
owners = ["136693071363"]
name = "debian-12-amd64-*"
"""
BOOTSTRAPPED = """\
description = "a bootstrapped test image"
targets = ["docker", "aws"]
tests = ["test_base.py"]

[parent.bootstrap]
suite = "bookworm"

[[roles]]
name = "sanitize"

"""
CHILD = """\
description = "a child test image"
targets = ["docker", "aws"]
tests = ["test_base.py"]

[parent]
image = "base"

[[roles]]
name = "sanitize"

"""


@pytest.fixture(scope="module")
def specs() -> dict[str, ImageSpec]:
    root = Path(__file__).resolve().parents[2]
    return load_images(Layout.discover(root, catalog="/nonexistent/catalog", cache="/nonexistent/cache"))


def _context(spec: ImageSpec, aws: AwsBuild | None = None, target: Target = Target.AWS) -> BuildContext:
    return BuildContext(
        image=spec,
        version=VERSION,
        commit=COMMIT,
        created="2026-11-29T08:45:12+00:00",
        source="https://git.example.invalid/image-factory.git",
        parent=ParentRef(ref="parent", artifact_id="parent", record={}),
        target=target,
        aws=aws,
    )


def _template(spec: ImageSpec, aws: AwsBuild | None = None) -> dict[str, Any]:
    text = render_template(_context(spec, aws), Path("/build/base/v"), Path("/repo/ansible.cfg"))
    data: dict[str, Any] = json.loads(text)
    return data


def _builder(template: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = template["builders"][0]
    return found


EMULATED = AwsBuild(endpoint_url="http://127.0.0.1:5000", source_ami=SOURCE_AMI)


# -- [aws] of image.toml -------------------------------------------------------------------


def test_base_aws_settings(specs: dict[str, ImageSpec]) -> None:
    aws = specs["base"].aws
    assert aws is not None
    assert specs["base"].targets == (Target.DOCKER, Target.AWS)
    assert (aws.region, aws.regions) == ("us-east-1", ("us-east-1", "us-west-2"))
    assert (aws.instance_type, aws.ssh_username, aws.volume_size_gb) == ("t3.small", "admin", 8)
    assert aws.source == AmiSource(owners=("136693071363",), name="debian-12-amd64-*")
    assert aws.tags == {"team": "platform"}


def test_optional_keys_have_defaults(write_image: WriteImage, layout: Layout) -> None:
    write_image("vm", BOOTSTRAPPED + BASE_AWS + DEBIAN)
    aws = load_images(layout)["vm"].aws
    assert aws is not None
    assert aws.encrypted is True
    assert aws.associate_public_ip_address is True
    assert (aws.kms_key_id, aws.subnet_id, aws.vpc_id) == (None, None, None)
    assert aws.security_group_ids == aws.share_accounts == aws.share_organizations == ()
    assert aws.tags == {}


def test_empty_strings_mean_unset(write_image: WriteImage, layout: Layout) -> None:
    write_image("vm", BOOTSTRAPPED + BASE_AWS + 'kms_key_id = ""\nsubnet_id = ""\nvpc_id = ""\n' + DEBIAN)
    aws = load_images(layout)["vm"].aws
    assert aws is not None
    assert (aws.kms_key_id, aws.subnet_id, aws.vpc_id) == (None, None, None)


def test_ssm_parameter_source(write_image: WriteImage, layout: Layout) -> None:
    ssm = '\n[aws.source]\nssm_parameter = "/aws/service/debian/release/bookworm/latest/amd64"\n'
    write_image("vm", BOOTSTRAPPED + BASE_AWS + ssm)
    aws = load_images(layout)["vm"].aws
    assert aws is not None and aws.source is not None
    assert aws.source.ssm_parameter == "/aws/service/debian/release/bookworm/latest/amd64"
    assert aws.source.name is None


def test_child_without_source(write_image: WriteImage, layout: Layout) -> None:
    write_image("web", CHILD + BASE_AWS)
    aws = load_images(layout)["web"].aws
    assert aws is not None and aws.source is None


def test_image_without_aws_target_has_none(write_image: WriteImage, layout: Layout) -> None:
    write_image("box", BOOTSTRAPPED.replace('targets = ["docker", "aws"]', 'targets = ["docker"]'))
    assert load_images(layout)["box"].aws is None


def _docker_only(spec: ImageSpec) -> ImageSpec:
    """``spec`` as if its image.toml had no [aws] table (whatever the real definitions say)."""
    return dataclasses.replace(spec, aws=None, targets=(Target.DOCKER,))


def _error(write_image: WriteImage, layout: Layout, text: str, name: str = "vm") -> str:
    path = write_image(name, text)
    with pytest.raises(ConfigError) as caught:
        load_images(layout)
    assert str(path) in caught.value.message
    return caught.value.message


def test_aws_target_needs_aws_table(write_image: WriteImage, layout: Layout) -> None:
    assert "aws:" in _error(write_image, layout, BOOTSTRAPPED)


def test_regions_must_include_region(write_image: WriteImage, layout: Layout) -> None:
    text = BOOTSTRAPPED + BASE_AWS.replace('["us-east-1", "us-west-2"]', '["us-west-2"]') + DEBIAN
    assert "aws.regions:" in _error(write_image, layout, text)


def test_bootstrapped_image_needs_source(write_image: WriteImage, layout: Layout) -> None:
    assert "aws.source:" in _error(write_image, layout, BOOTSTRAPPED + BASE_AWS)


def test_child_must_not_have_source(write_image: WriteImage, layout: Layout) -> None:
    assert "aws.source:" in _error(write_image, layout, CHILD + BASE_AWS + DEBIAN, "web")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (('region = "us-east-1"', 'region = "US-EAST-1"'), "aws.region"),
        (('"us-west-2"]', '"us-west"]'), "aws.regions.1"),
        (("volume_size_gb = 8", 'volume_size_gb = "8"'), "aws.volume_size_gb"),
        (("volume_size_gb = 8", "volume_size_gb = 8\ncolour = 1"), "aws"),
        (("volume_size_gb = 8", 'volume_size_gb = 8\nshare_accounts = ["12345"]'), "aws.share_accounts.0"),
        (
            (
                "volume_size_gb = 8",
                'volume_size_gb = 8\nshare_organizations = ["arn:aws:organizations::1:o"]',
            ),
            "aws.share_organizations.0",
        ),
        (
            ("volume_size_gb = 8", 'volume_size_gb = 8\nshare_organizational_units = ["ou-abcd"]'),
            "aws.share_organizational_units.0",
        ),
        (('instance_type = "t3.small"\n', ""), "aws"),
    ],
)
def test_schema_errors_name_the_field(
    write_image: WriteImage, layout: Layout, change: tuple[str, str], field: str
) -> None:
    text = BOOTSTRAPPED + BASE_AWS.replace(*change) + DEBIAN
    assert f"  {field}:" in _error(write_image, layout, text)


def test_schema_accepts_valid_arns(write_image: WriteImage, layout: Layout) -> None:
    shares = (
        'share_organizations = ["arn:aws:organizations::111122223333:organization/o-exampleorgid"]\n'
        "share_organizational_units = "
        '["arn:aws:organizations::111122223333:ou/o-exampleorgid/ou-ab12-cdefgh34"]\n'
    )
    write_image("vm", BOOTSTRAPPED + BASE_AWS + shares + DEBIAN)
    aws = load_images(layout)["vm"].aws
    assert aws is not None and len(aws.share_organizational_units) == 1


def test_source_is_one_of_filter_or_ssm(write_image: WriteImage, layout: Layout) -> None:
    both = DEBIAN + 'ssm_parameter = "/aws/service/debian/release/bookworm/latest/amd64"\n'
    assert "  aws.source:" in _error(write_image, layout, BOOTSTRAPPED + BASE_AWS + both)


@pytest.mark.parametrize("key", ["factory:commit", "aws:cloudformation", "Name"])
def test_user_tags_cannot_shadow_factory_tags(write_image: WriteImage, layout: Layout, key: str) -> None:
    text = BOOTSTRAPPED + BASE_AWS + DEBIAN + f'\n[aws.tags]\n"{key}" = "x"\n'
    assert "  aws.tags:" in _error(write_image, layout, text)


# -- the real template ---------------------------------------------------------------------


def test_real_builder(specs: dict[str, ImageSpec]) -> None:
    builder = _builder(_template(specs["base"]))
    assert builder["type"] == "amazon-ebs"
    assert builder["region"] == "us-east-1"
    assert builder["communicator"] == "ssh"
    assert builder["ssh_username"] == "admin"
    assert builder["ami_name"] == f"base-{VERSION}"
    assert builder["encrypt_boot"] is True
    assert "kms_key_id" not in builder
    (disk,) = builder["launch_block_device_mappings"]
    assert disk == disk | {
        "device_name": "/dev/xvda",
        "volume_size": 8,
        "volume_type": "gp3",
        "encrypted": True,
    }
    assert not {"ami_regions", "ami_users", "ami_groups", "custom_endpoint_ec2"} & set(builder)


def test_real_source_is_the_debian_filter(specs: dict[str, ImageSpec]) -> None:
    builder = _builder(_template(specs["base"]))
    assert "source_ami" not in builder
    assert builder["source_ami_filter"] == {
        "filters": {
            "name": "debian-12-amd64-*",
            "virtualization-type": "hvm",
            "root-device-type": "ebs",
            "architecture": "x86_64",
        },
        "owners": ["136693071363"],
        "most_recent": True,
    }


def test_explicit_source_ami(specs: dict[str, ImageSpec]) -> None:
    builder = _builder(_template(specs["base"], AwsBuild(source_ami=SOURCE_AMI)))
    assert builder["source_ami"] == SOURCE_AMI
    assert "source_ami_filter" not in builder


@pytest.mark.parametrize(
    "ami", ["ami-123", "AMI-0123456789abcdef0", "0123456789abcdef0", "ami-0123456789abcdef0 "]
)
def test_bad_source_ami_is_refused(specs: dict[str, ImageSpec], ami: str) -> None:
    with pytest.raises(ConfigError, match="not an AMI id"):
        _template(specs["base"], AwsBuild(source_ami=ami))


def test_child_needs_an_explicit_source(specs: dict[str, ImageSpec]) -> None:
    child = dataclasses.replace(specs["base"], aws=dataclasses.replace(specs["base"].aws, source=None))  # type: ignore[type-var]
    with pytest.raises(ConfigError, match=r"aws\.source"):
        _template(child)
    assert _builder(_template(child, AwsBuild(source_ami=SOURCE_AMI)))["source_ami"] == SOURCE_AMI


def test_image_without_aws_table_cannot_render_aws(specs: dict[str, ImageSpec]) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"{specs['nginx'].definition}: aws")):
        _template(_docker_only(specs["nginx"]), AwsBuild(source_ami=SOURCE_AMI))


def test_tags_carry_full_commit_everywhere(specs: dict[str, ImageSpec]) -> None:
    builder = _builder(_template(specs["base"]))
    expected = {
        "Name": f"base-{VERSION}",
        "factory:image": "base",
        "factory:version": VERSION,
        "factory:commit": COMMIT,
        "factory:source": "https://git.example.invalid/image-factory.git",
        "team": "platform",
    }
    for key in ("tags", "snapshot_tags", "run_tags", "run_volume_tags"):
        assert builder[key] == expected, key
    assert ami_tags(_context(specs["base"])) == expected


def test_optional_network_and_kms_settings(specs: dict[str, ImageSpec]) -> None:
    aws = dataclasses.replace(
        specs["base"].aws,  # type: ignore[type-var]
        kms_key_id="alias/factory",
        subnet_id="subnet-0123abcd",
        vpc_id="vpc-0123abcd",
        security_group_ids=("sg-0123abcd",),
        associate_public_ip_address=False,
    )
    builder = _builder(_template(dataclasses.replace(specs["base"], aws=aws)))
    assert (
        builder["kms_key_id"] == builder["launch_block_device_mappings"][0]["kms_key_id"] == "alias/factory"
    )
    assert (builder["subnet_id"], builder["vpc_id"]) == ("subnet-0123abcd", "vpc-0123abcd")
    assert builder["security_group_ids"] == ["sg-0123abcd"]
    assert builder["associate_public_ip_address"] is False
    assert builder["ssh_interface"] == "private_ip"


def test_unencrypted(specs: dict[str, ImageSpec]) -> None:
    aws = dataclasses.replace(specs["base"].aws, encrypted=False, kms_key_id="alias/x")  # type: ignore[type-var]
    builder = _builder(_template(dataclasses.replace(specs["base"], aws=aws)))
    assert "encrypt_boot" not in builder and "kms_key_id" not in builder
    assert builder["launch_block_device_mappings"][0]["encrypted"] is False


def test_real_provisioners_are_ansible_then_the_gate(specs: dict[str, ImageSpec]) -> None:
    ansible, gate = _template(specs["base"])["provisioners"]
    assert ansible["type"] == "ansible"
    assert ansible["user"] == "admin"
    assert ansible["playbook_file"] == "/build/base/v/playbook.yml"
    assert "ANSIBLE_SSH_TRANSFER_METHOD=piped" in ansible["ansible_env_vars"]
    assert any("ssh-rsa" in arg for arg in ansible["extra_arguments"])
    assert gate["type"] == "ansible"
    assert gate["command"] == "/build/base/v/remote-gate"
    assert gate["playbook_file"] == "/build/base/v/gate.json"
    assert gate["use_proxy"] is True  # the gate rides on Packer's connection (see the template)


def test_aws_playbook_becomes_root(specs: dict[str, ImageSpec]) -> None:
    assert playbook(_context(specs["base"]))[0]["become"] is True
    assert "become" not in playbook(_context(specs["base"], target=Target.DOCKER))[0]


def test_manifest_post_processor(specs: dict[str, ImageSpec]) -> None:
    (post,) = _template(specs["base"])["post-processors"]
    assert post["type"] == "manifest"
    assert post["output"] == "/build/base/v/packer-manifest.json"
    assert post["custom_data"] == {"image": "base", "version": VERSION, "commit": COMMIT}


# -- EMULATED ------------------------------------------------------------------------------


def test_emulated_template(specs: dict[str, ImageSpec]) -> None:
    template = _template(specs["base"], EMULATED)
    builder = _builder(template)
    assert "EMULATED" in template["description"]
    assert template["provisioners"] == []
    assert builder["communicator"] == "none"
    assert "ssh_username" not in builder
    assert builder["custom_endpoint_ec2"] == "http://127.0.0.1:5000"
    for option in ("skip_region_validation", "skip_metadata_api_check", "skip_credential_validation"):
        assert builder[option] is True
    assert builder["tags"]["factory:commit"] == COMMIT


def test_real_template_is_not_emulated(specs: dict[str, ImageSpec]) -> None:
    template = _template(specs["base"])
    assert "EMULATED" not in template["description"]
    assert not any(key.startswith("skip_") for key in _builder(template))


@pytest.mark.parametrize("url", ["http://127.0.0.1:5000", "http://localhost:1/", "https://[::1]:443"])
def test_loopback_endpoints(specs: dict[str, ImageSpec], url: str) -> None:
    assert _builder(_template(specs["base"], AwsBuild(endpoint_url=url)))["custom_endpoint_ec2"] == url


@pytest.mark.parametrize(
    "url",
    [
        "https://ec2.us-east-1.amazonaws.com",
        "http://10.0.0.1:5000",
        "http://127.0.0.1.example.com:5000",
        "http://user@example.com@127.0.0.2",
        "ftp://127.0.0.1:5000",
        "127.0.0.1:5000",
        "http://127.0.0.1:notaport",
        "",
    ],
)
def test_other_endpoints_are_refused(specs: dict[str, ImageSpec], url: str) -> None:
    with pytest.raises(ConfigError, match="AWS endpoint"):
        _template(specs["base"], AwsBuild(endpoint_url=url))


# -- structural hash, docker unchanged -----------------------------------------------------


def test_structural_sha256_for_aws(specs: dict[str, ImageSpec]) -> None:
    first = structural_sha256(specs["base"], Target.AWS)
    assert first == structural_sha256(specs["base"], Target.AWS)
    assert first != structural_sha256(specs["base"], Target.DOCKER)
    bigger = dataclasses.replace(specs["base"].aws, volume_size_gb=16)  # type: ignore[type-var]
    assert structural_sha256(dataclasses.replace(specs["base"], aws=bigger), Target.AWS) != first


def test_structural_sha256_for_a_child_uses_a_fixed_ami(specs: dict[str, ImageSpec]) -> None:
    child = dataclasses.replace(specs["base"], aws=dataclasses.replace(specs["base"].aws, source=None))  # type: ignore[type-var]
    assert re.fullmatch(r"[0-9a-f]{64}", structural_sha256(child, Target.AWS))


def test_structural_sha256_needs_aws_table(specs: dict[str, ImageSpec]) -> None:
    with pytest.raises(ConfigError):
        structural_sha256(_docker_only(specs["nginx"]), Target.AWS)


def test_docker_rendering_ignores_aws_settings(specs: dict[str, ImageSpec], tmp_path: Path) -> None:
    base = specs["base"]
    without = dataclasses.replace(base, aws=None, targets=(Target.DOCKER,))
    assert structural_sha256(base) == structural_sha256(without)
    ctx = _context(base, target=Target.DOCKER)
    assert render_template(ctx, tmp_path, tmp_path / "a.cfg") == render_template(
        dataclasses.replace(ctx, image=without), tmp_path, tmp_path / "a.cfg"
    )


# -- render(): files, the gate, no credentials ---------------------------------------------


def test_render_writes_the_gate(layout: Layout) -> None:
    rendered = render(_context(load_images(layout)["base"]), layout)
    assert rendered.gate == rendered.build_dir / "gate.json"
    settings = json.loads(rendered.gate.read_text(encoding="utf-8"))
    assert settings == {
        "root": str(layout.root),
        "tests": [str(layout.image_tests / "test_base.py")],
        "junit": str(rendered.build_dir / "junit.xml"),
        "image": "base",
        "version": VERSION,
        "commit": COMMIT,
        "sudo": True,
        "tracked_paths": list(tracked_paths(load_images(layout)["base"], layout)),
        "packages_file": str(rendered.build_dir / "packages.json"),
        "files_file": str(rendered.build_dir / "files.json"),
    }
    shim = rendered.build_dir / "remote-gate"
    assert shim.stat().st_mode & stat.S_IXUSR
    assert "from factory.aws.remote_gate import main" in shim.read_text(encoding="utf-8")


def test_gate_tracks_what_verify_tracks(layout: Layout) -> None:
    """Resolved at render time: the gate has no image definitions, only these paths."""
    rendered = render(_context(load_images(layout)["base"]), layout)
    assert rendered.gate is not None
    paths = json.loads(rendered.gate.read_text(encoding="utf-8"))["tracked_paths"]
    assert {"/etc/ssh/sshd_config", "/etc/sysctl.d", "/etc/image-release"} <= set(paths)
    assert "/etc/machine-id" not in paths  # per machine by design (verify.PER_MACHINE)


def test_render_vars_name_the_build_user(layout: Layout) -> None:
    """What the sanitize role needs to remove the build user's authorized_keys."""
    rendered = render(_context(load_images(layout)["base"]), layout)
    extra = json.loads(rendered.vars_file.read_text(encoding="utf-8"))
    assert (extra["factory_target"], extra["factory_build_user"]) == ("aws", "admin")


def test_emulated_and_docker_renders_write_no_gate(layout: Layout) -> None:
    base = load_images(layout)["base"]
    for ctx in (_context(base, EMULATED), _context(base, target=Target.DOCKER)):
        rendered = render(ctx, layout)
        assert rendered.gate is None
        assert not (rendered.build_dir / "remote-gate").exists()


def test_credentials_are_never_rendered(layout: Layout, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID"):
        monkeypatch.setenv(name, SECRET + name)
    base = load_images(layout)["base"]
    for aws in (None, EMULATED):
        rendered = render(_context(base, aws), layout)
        for path in rendered.build_dir.rglob("*"):
            if path.is_file():
                assert SECRET not in path.read_text(encoding="utf-8", errors="replace"), path


# -- the manifest and the build's environment ----------------------------------------------


def _manifest(path: Path, artifact_id: str, builder: str = "amazon-ebs") -> Path:
    builds = [
        {"builder_type": builder, "artifact_id": "us-east-1:ami-00000000", "packer_run_uuid": "old"},
        {"builder_type": builder, "artifact_id": artifact_id, "packer_run_uuid": "new"},
    ]
    path.write_text(json.dumps({"builds": builds, "last_run_uuid": "new"}), encoding="utf-8")
    return path


def test_read_ami_manifest(tmp_path: Path) -> None:
    artifact = read_ami_manifest(_manifest(tmp_path / "m.json", "us-west-2:ami-0123abcd"))
    assert artifact == AmiArtifact(region="us-west-2", ami_id="ami-0123abcd", builder="amazon-ebs")
    assert artifact.id == "us-west-2:ami-0123abcd"


@pytest.mark.parametrize(
    ("artifact_id", "builder"),
    [
        ("sha256:" + "a" * 64, "docker"),
        ("us-east-1:ami-0123abcd,us-west-2:ami-0456abcd", "amazon-ebs"),
        ("ami-0123abcd", "amazon-ebs"),
        ("us-east-1:ami-xyz", "amazon-ebs"),
    ],
)
def test_read_ami_manifest_refuses(tmp_path: Path, artifact_id: str, builder: str) -> None:
    with pytest.raises(ExternalToolError):
        read_ami_manifest(_manifest(tmp_path / "m.json", artifact_id, builder))


def test_read_ami_manifest_missing(tmp_path: Path) -> None:
    with pytest.raises(ExternalToolError, match="usable manifest"):
        read_ami_manifest(tmp_path / "none.json")


def test_aws_env_keeps_only_the_credential_chain() -> None:
    environ = {"AWS_ACCESS_KEY_ID": "a", "AWS_PROFILE": "p", "AWS_ENDPOINT_URL": "u", "HOME": "/root"}
    assert aws_env(environ) == {"AWS_ACCESS_KEY_ID": "a", "AWS_PROFILE": "p"}


def test_build_ami_passes_credentials_to_packer_only(
    monkeypatch: pytest.MonkeyPatch, layout: Layout, tmp_path: Path
) -> None:
    rendered = render(_context(load_images(layout)["base"], EMULATED), layout)
    calls: list[tuple[Sequence[str], dict[str, Any]]] = []

    def packer(cmd: Sequence[str], **kwargs: Any) -> Result:
        calls.append((cmd, kwargs))
        _manifest(rendered.packer_manifest, "us-east-1:ami-0123abcd")
        return Result(cmd=tuple(cmd), returncode=0, stdout="", tail=())

    monkeypatch.setattr(factory.bake.packer, "run", packer)
    monkeypatch.setattr("factory.bake.packer.shutil.which", lambda *_a, **_k: "/usr/bin/packer")
    artifact = build_ami(rendered, env={"AWS_SECRET_ACCESS_KEY": SECRET, "PATH": "/evil"})
    assert artifact.ami_id == "ami-0123abcd"
    (cmd, kwargs) = calls[0]
    assert list(cmd) == ["packer", "build", str(rendered.template)]
    assert kwargs["env"] == {**PACKER_ENV, "AWS_SECRET_ACCESS_KEY": SECRET}


# -- factory.aws.remote_gate -------------------------------------------------------------------

INVENTORY = """\
default ansible_host=127.0.0.1 ansible_user=admin ansible_port=40211
[build]
default ansible_host=127.0.0.1 ansible_user=admin ansible_port=40211
"""


def _packer_argv(tmp_path: Path, inventory: str = INVENTORY) -> list[str]:
    """What Packer 1.6.6's ansible provisioner passed in a real run (factory's docker experiment)."""
    inv = tmp_path / "packer-provisioner-ansible123"
    inv.write_text(inventory, encoding="utf-8")
    return [
        "-e", 'packer_build_name="amazon-ebs"', "-e", "packer_builder_type=amazon-ebs",
        "-e", "ansible_ssh_private_key_file=/tmp/ansible-key42", "-i", str(inv), str(tmp_path / "gate.json"),
    ]  # fmt: skip


def test_parse_call(tmp_path: Path) -> None:
    call = parse_call(_packer_argv(tmp_path))
    assert call == GateCall(
        host="127.0.0.1",
        port=40211,
        user="admin",
        key=Path("/tmp/ansible-key42"),
        settings=tmp_path / "gate.json",
    )


def test_parse_inventory_v1_names() -> None:
    assert parse_inventory(
        "# c\n\ndefault ansible_ssh_host=::1 ansible_ssh_port=2 ansible_ssh_user=u\n"
    ) == {
        "ansible_ssh_host": "::1",
        "ansible_ssh_port": "2",
        "ansible_ssh_user": "u",
    }


def test_parse_inventory_without_host() -> None:
    with pytest.raises(ConfigError):
        parse_inventory("[build]\n")


@pytest.mark.parametrize("drop", ["-i", "-e"])
def test_parse_call_needs_inventory_and_key(tmp_path: Path, drop: str) -> None:
    argv = _packer_argv(tmp_path)
    index = max(i for i, arg in enumerate(argv) if arg == drop)
    del argv[index : index + 2]
    with pytest.raises(ConfigError, match="expected -i INVENTORY"):
        parse_call(argv)


# The remote gate's settings file, as the bake writes it for base.
GATE_SETTINGS = {
    "tests": ["/r/gates/test_base.py"],
    "junit": "/b/junit.xml",
    "image": "base",
    "version": VERSION,
    "commit": COMMIT,
    "root": "/r",
}


def test_pytest_command(tmp_path: Path) -> None:
    call = parse_call(_packer_argv(tmp_path))
    settings = dict(GATE_SETTINGS)
    cmd = pytest_command(call, settings, tmp_path / "ssh_config")
    assert cmd[1:4] == ["-m", "pytest", "/r/gates/test_base.py"]
    for arg in ("--hosts=ssh://gate", "--sudo", "--junitxml=/b/junit.xml", f"--image-commit={COMMIT}"):
        assert arg in cmd
    assert "--sudo" not in pytest_command(call, settings | {"sudo": False}, tmp_path / "c")


def test_the_remote_gate_loads_only_testinfra(tmp_path: Path) -> None:
    # Run with GATE_PYTEST_ENV (no plugin autoload), the gate's plugins are the ones it names.
    cmd = pytest_command(parse_call(_packer_argv(tmp_path)), GATE_SETTINGS, tmp_path / "ssh_config")
    plugins = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "-p"]
    assert (plugins, GATE_PYTEST_ENV) == (
        ["testinfra.plugin", "no:cacheprovider"],
        {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )


# dpkg-query's status, name, version, source and source version (verify.DPKG_QUERY); bash is a binNMU.
DPKG_OUT = (
    "ii \tbash\t5.2.15-2+b7\t\t5.2.15-2\n"
    "rc \told\t1.0\t\t\n"
    "ii \topenssh-server\t1:9.2p1-2+deb12u3\topenssh\t\n"
)
SUM_A, SUM_B = "a" * 64, "b" * 64
SHA_OUT = (  # /etc/machine-id is per machine: not recorded
    f"{SUM_B}  /etc/sysctl.d/90-hardening.conf\n{SUM_A}  /etc/ssh/sshd_config\n{'c' * 64}  /etc/machine-id\n"
)
TRACKED = ["/etc/ssh/sshd_config", "/etc/sysctl.d", "/etc/missing"]


def _gate_settings(tmp_path: Path) -> dict[str, Any]:
    return {
        "root": str(tmp_path),
        "tests": ["t.py"],
        "junit": "j.xml",
        "image": "base",
        "version": VERSION,
        "commit": COMMIT,
        "tracked_paths": TRACKED,
        "packages_file": str(tmp_path / "packages.json"),
        "files_file": str(tmp_path / "files.json"),
    }


class FakeInstance:
    """factory.core.run.run for the gate: pytest exits ``pytest_code``; ssh answers dpkg-query and find."""

    def __init__(self, pytest_code: int = 0, ssh_error: bool = False) -> None:
        self.pytest_code = pytest_code
        self.ssh_error = ssh_error
        self.calls: list[tuple[list[str], dict[str, Any]]] = []
        self.config = ""
        self.mode = 0

    def __call__(self, cmd: Sequence[str], **kwargs: Any) -> Result:
        argv = [str(a) for a in cmd]
        self.calls.append((argv, kwargs))
        if argv[0] == "ssh":
            if self.ssh_error:
                raise CommandFailed(argv, 255, ("ssh: connect to host 127.0.0.1 port 40211: refused",))
            out = DPKG_OUT if "dpkg-query" in argv[-1] else SHA_OUT
            return Result(cmd=tuple(argv), returncode=1 if out is SHA_OUT else 0, stdout=out, tail=())
        config = Path(next(a for a in argv if a.startswith("--ssh-config=")).partition("=")[2])
        self.config = config.read_text(encoding="utf-8")
        self.mode = stat.S_IMODE(config.stat().st_mode)
        return Result(cmd=tuple(argv), returncode=self.pytest_code, stdout="", tail=())


def _run_gate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake: FakeInstance) -> int:
    (tmp_path / "gate.json").write_text(json.dumps(_gate_settings(tmp_path)), encoding="utf-8")
    monkeypatch.setattr(factory.aws.remote_gate, "run", fake)
    return factory.aws.remote_gate.main(_packer_argv(tmp_path))


def test_gate_runs_pytest_over_the_adapter(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = FakeInstance()
    assert _run_gate(monkeypatch, tmp_path, fake) == 0
    (_pytest, kwargs) = fake.calls[0]
    assert kwargs["cwd"] == str(tmp_path) and kwargs["ok_codes"] == (0, 1)
    assert fake.mode == 0o600
    for line in ("Port 40211", "User admin", "IdentityFile /tmp/ansible-key42", "StrictHostKeyChecking no"):
        assert line in fake.config


def test_passed_gate_records_packages_and_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert _run_gate(monkeypatch, tmp_path, FakeInstance()) == 0
    assert json.loads((tmp_path / "packages.json").read_text(encoding="utf-8")) == [
        ["bash", "5.2.15-2+b7"],
        ["openssh-server", "1:9.2p1-2+deb12u3"],
    ]
    assert json.loads((tmp_path / "files.json").read_text(encoding="utf-8")) == {
        "/etc/ssh/sshd_config": SUM_A,
        "/etc/sysctl.d/90-hardening.conf": SUM_B,
    }
    packages, files = read_evidence(tmp_path)
    assert packages == (("bash", "5.2.15-2+b7"), ("openssh-server", "1:9.2p1-2+deb12u3"))
    assert files == (("/etc/ssh/sshd_config", SUM_A), ("/etc/sysctl.d/90-hardening.conf", SUM_B))
    assert read_evidence(tmp_path / "gate.json") == (packages, files)


def test_passed_gate_records_each_packages_source(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert _run_gate(monkeypatch, tmp_path, FakeInstance()) == 0
    assert read_sources(tmp_path) == (
        ("bash", "bash", "5.2.15-2"),
        ("openssh-server", "openssh", "1:9.2p1-2+deb12u3"),
    )


def test_a_gate_of_an_older_factory_recorded_no_sources(tmp_path: Path) -> None:
    assert read_sources(_evidence(tmp_path, '[["bash", "5.2"]]', "{}")) == ()


def test_evidence_comes_through_the_same_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = FakeInstance()
    _run_gate(monkeypatch, tmp_path, fake)
    (dpkg, dpkg_kw), (find, find_kw) = fake.calls[1:]
    assert dpkg[:2] == find[:2] == ["ssh", "-F"] and dpkg[3] == find[3] == "gate"
    assert Path(dpkg[2]).name == "ssh_config"  # the file pytest's --ssh-config named
    assert shlex.split(dpkg[4]) == ["sudo", *DPKG_QUERY]
    assert shlex.split(find[4]) == ["sudo", *checksum_command(TRACKED)]
    assert dpkg_kw["capture"] and find_kw["capture"]
    assert find_kw["ok_codes"] == (0, 1)  # find exits 1 for a tracked path the image lacks


def test_remote_command_quotes_for_the_remote_shell(tmp_path: Path) -> None:
    cmd = remote_command(tmp_path / "c", ["printf", "%s\n", "a b", "$HOME"], sudo=False)
    assert cmd == ["ssh", "-F", str(tmp_path / "c"), "gate", "printf '%s\n' 'a b' '$HOME'"]


def test_failed_tests_write_no_evidence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("packages.json", "files.json"):  # an earlier run's, in the same build dir
        (tmp_path / name).write_text("[]", encoding="utf-8")
    fake = FakeInstance(pytest_code=1)
    assert _run_gate(monkeypatch, tmp_path, fake) == 1
    assert len(fake.calls) == 1  # nothing is collected from a rejected instance
    assert not (tmp_path / "packages.json").exists() and not (tmp_path / "files.json").exists()
    with pytest.raises(ExternalToolError, match=r"packages\.json: missing"):
        read_evidence(tmp_path)


def test_failed_collection_fails_the_build(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run_gate(monkeypatch, tmp_path, FakeInstance(ssh_error=True)) == ExternalToolError.exit_code
    assert "remote gate:" in capsys.readouterr().err
    assert not (tmp_path / "packages.json").exists() and not (tmp_path / "files.json").exists()


def test_settings_must_name_the_evidence(tmp_path: Path) -> None:
    settings = _gate_settings(tmp_path)
    del settings["files_file"]
    (tmp_path / "gate.json").write_text(json.dumps(settings), encoding="utf-8")
    with pytest.raises(ConfigError, match="files_file"):
        load_settings(tmp_path / "gate.json")


def _evidence(tmp_path: Path, packages: str, files: str) -> Path:
    (tmp_path / "gate.json").write_text(json.dumps(_gate_settings(tmp_path)), encoding="utf-8")
    (tmp_path / "packages.json").write_text(packages, encoding="utf-8")
    (tmp_path / "files.json").write_text(files, encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(
    ("packages", "files", "bad"),
    [
        ('[["bash", "5.2"]', "{}", "packages.json: unreadable"),
        ('{"bash": "5.2"}', "{}", "packages.json: malformed"),
        ('[["bash"]]', "{}", "packages.json: malformed"),
        ('[["bash", 5]]', "{}", "packages.json: malformed"),
        ("[]", "{}", "packages.json: no installed package"),
        ('[["bash", "5.2"]]', '[["/etc/a", "x"]]', "files.json: malformed"),
        ('[["bash", "5.2"]]', '{"/etc/a": null}', "files.json: malformed"),
        ('[["bash", "5.2"]]', '{"/etc/a": "not-a-sha"}', "files.json: not an absolute path"),
        ('[["bash", "5.2"]]', f'{{"etc/a": "{SUM_A}"}}', "files.json: not an absolute path"),
    ],
)
def test_read_evidence_refuses(tmp_path: Path, packages: str, files: str, bad: str) -> None:
    with pytest.raises(ExternalToolError, match=re.escape(bad)):
        read_evidence(_evidence(tmp_path, packages, files))


def test_read_evidence_sorts(tmp_path: Path) -> None:
    source = _evidence(tmp_path, '[["zlib", "1"], ["bash", "5.2"]]', f'{{"/z": "{SUM_A}", "/a": "{SUM_B}"}}')
    assert read_evidence(source) == ((("bash", "5.2"), ("zlib", "1")), (("/a", SUM_B), ("/z", SUM_A)))


@pytest.mark.parametrize("text", [None, "{", '{"packages_file": "p"}', "[]"])
def test_read_evidence_needs_gate_settings(tmp_path: Path, text: str | None) -> None:
    if text is not None:
        (tmp_path / "gate.json").write_text(text, encoding="utf-8")
    with pytest.raises(ExternalToolError, match=re.escape(str(tmp_path / "gate.json"))):
        read_evidence(tmp_path)


def test_gate_reports_bad_input_as_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert factory.aws.remote_gate.main([]) == ConfigError.exit_code
    assert "remote gate:" in capsys.readouterr().err
