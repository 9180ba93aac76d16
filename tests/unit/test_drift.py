"""`factory drift`: target URLs, the host's answers, the comparison, and the files recorded at bake."""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from factory.bake import verify
from factory.catalog import publishing
from factory.catalog.store import Catalog
from factory.catalog.trust import Signer
from factory.cli.drift import cmd_drift
from factory.core.config import Layout, load_image, load_images
from factory.core.errors import ConfigError, ExternalToolError
from factory.core.roles import RoleRef
from factory.loop import drift

from .conftest import ACTOR, REPO_ROOT, VERSION, WriteImage, make_entry, make_manifest

SHA_A, SHA_B = "a" * 64, "b" * 64


# -- target URLs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "scheme", "name"),
    [
        ("podman://web-1", "podman", "web-1"),
        ("ssh://deploy@web-1.example.org:2222", "ssh", "deploy@web-1.example.org:2222"),
        ("ssh://web-1?sudo=true", "ssh", "web-1"),
        ("ansible://web", "ansible", "web"),
        ("ansible://web?ansible_inventory=/etc/ansible/hosts", "ansible", "web"),
    ],
)
def test_target_parsed(url: str, scheme: str, name: str) -> None:
    assert drift.parse_target(url) == drift.Target(url=url, scheme=scheme, name=name)


@pytest.mark.parametrize("url", ["http://web-1", "docker://web-1", "local://", "web-1", "", "podman:/web-1"])
def test_unknown_scheme_is_a_config_error_naming_target(url: str) -> None:
    with pytest.raises(ConfigError, match="--target") as caught:
        drift.parse_target(url)
    assert caught.value.exit_code == 2


@pytest.mark.parametrize("url", ["podman://", "ssh://", "ansible://", "ssh:///etc", "podman://web-1/extra"])
def test_empty_host_is_a_config_error_naming_target(url: str) -> None:
    with pytest.raises(ConfigError, match="--target"):
        drift.parse_target(url)


# -- what the host says --------------------------------------------------------------------

RELEASE = """\
# Ansible managed
# What this image is and where it came from (shell-sourceable).
IMAGE=nginx
VERSION=20261129.084512-0123456789ab
COMMIT=0123456789abcdef0123456789abcdef01234567
CREATED=2026-11-29T08:45:12+00:00
PARENT='localhost/base:20261129.080000-0123456789ab'
"""


def test_release_file_parsed() -> None:
    assert drift.parse_release(RELEASE) == {
        "IMAGE": "nginx",
        "VERSION": "20261129.084512-0123456789ab",
        "COMMIT": "0123456789abcdef0123456789abcdef01234567",
        "CREATED": "2026-11-29T08:45:12+00:00",
        "PARENT": "localhost/base:20261129.080000-0123456789ab",
    }


def test_release_template_keys_are_the_ones_drift_reads() -> None:
    template = (REPO_ROOT / "roles/common/templates/etc/image-release.j2").read_text(encoding="utf-8")
    assert {"IMAGE", "VERSION"} <= set(re.findall(r"^([A-Z]+)=", template, re.MULTILINE))


def test_packages_parsed_installed_only() -> None:
    out = "ii \tbash\t5.2.15-2+b7\nrc \told-lib\t1.0-1\nhi \theld\t2.0\niU \thalf\t3.0\n\nnoise\n"
    assert verify.parse_packages(out) == (("bash", "5.2.15-2+b7"), ("held", "2.0"))


def test_checksums_parsed_without_per_machine_files() -> None:
    out = f"{SHA_A}  /etc/ssh/sshd_config\n{SHA_B}  /etc/machine-id\n{SHA_B} */etc/sudoers\nfind: oops\n"
    assert verify.parse_checksums(out) == {"/etc/ssh/sshd_config": SHA_A, "/etc/sudoers": SHA_B}


def test_checksum_command_lists_each_path_once_sorted() -> None:
    command = verify.checksum_command(["/etc/sysctl.d", "/etc/login.defs", "/etc/sysctl.d"])
    assert command[:4] == ("find", "/etc/login.defs", "/etc/sysctl.d", "-maxdepth")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class FakeHost:
    """A Testinfra host in memory: answers cat, dpkg-query and find/sha256sum like Debian would."""

    files: dict[str, bytes]
    packages: dict[str, str]
    reachable: bool = True
    unreadable: frozenset[str] = frozenset()
    backend: Any = field(default_factory=lambda: SimpleNamespace(hostname="web-1"))

    def run(self, command: str, *args: str) -> SimpleNamespace:
        if not self.reachable:
            return SimpleNamespace(rc=125, stdout="", stderr="Error: no such container")
        if command.startswith("cat"):
            data = self.files.get(args[0])
            if data is None:
                return SimpleNamespace(rc=1, stdout="", stderr=f"cat: {args[0]}: No such file or directory")
            return SimpleNamespace(rc=0, stdout=data.decode(), stderr="")
        if args[0] == "dpkg-query":
            rows = "".join(f"ii \t{n}\t{v}\n" for n, v in self.packages.items())
            return SimpleNamespace(rc=0, stdout=rows, stderr="")
        assert args[0] == "find"
        out: list[str] = []
        err: list[str] = []
        for path in args[1 : args.index("-maxdepth")]:
            below = sorted(p for p in self.files if p.rpartition("/")[0] == path)
            found = [path] if path in self.files else below
            if not found:
                err.append(f"find: '{path}': No such file or directory")
            for name in found:
                if name in self.unreadable:
                    err.append(f"sha256sum: {name}: Permission denied")
                else:
                    out.append(f"{_sha(self.files[name])}  {name}\n")
        return SimpleNamespace(rc=1 if err else 0, stdout="".join(out), stderr="\n".join(err))


IMAGE_FILES = {
    "/etc/image-release": f"IMAGE=base\nVERSION={VERSION}\n".encode(),
    "/etc/ssh/sshd_config": b"Include /etc/ssh/sshd_config.d/*.conf\n",
    "/etc/ssh/sshd_config.d/00-hardening.conf": b"PermitRootLogin no\n",
    "/etc/sysctl.d/90-hardening.conf": b"kernel.kptr_restrict = 2\n",
    "/etc/login.defs": b"UMASK\t027\n",
    "/var/www/html/index.html": b"<h1>base</h1>\n",  # outside TRACKED_PATHS: read because recorded
    "/etc/machine-id": b"",
}
IMAGE_PACKAGES = {"bash": "5.2.15-2+b7", "openssh-server": "1:9.2p1-2+deb12u7"}


def recorded() -> dict[str, str]:
    return {p: _sha(data) for p, data in IMAGE_FILES.items() if p != "/etc/machine-id"}


def test_release_read() -> None:
    assert drift.read_release(FakeHost(dict(IMAGE_FILES), {}))["VERSION"] == VERSION


def test_missing_release_file_is_a_config_error() -> None:
    files = {k: v for k, v in IMAGE_FILES.items() if k != "/etc/image-release"}
    with pytest.raises(ConfigError, match="/etc/image-release"):
        drift.read_release(FakeHost(files, {}))


def test_unreachable_host_is_an_external_tool_error() -> None:
    with pytest.raises(ExternalToolError, match="no such container"):
        drift.read_release(FakeHost(dict(IMAGE_FILES), {}, reachable=False))


def test_observed_files_include_recorded_ones_outside_tracked_paths() -> None:
    observed = drift.observe(FakeHost(dict(IMAGE_FILES), IMAGE_PACKAGES), recorded())
    assert observed.files == recorded()


def test_unreadable_tracked_file_is_an_error_not_missing() -> None:
    host = FakeHost(dict(IMAGE_FILES), {}, unreadable=frozenset({"/etc/login.defs"}))
    with pytest.raises(ExternalToolError, match="Permission denied"):
        drift.observe(host, recorded())


# -- the comparison ------------------------------------------------------------------------


def expected(files: dict[str, str] | None = None, packages: dict[str, str] | None = None) -> drift.Expected:
    return drift.Expected(
        image="base",
        version=VERSION,
        commit="0123456789ab" + "0" * 28,
        channel="prod",
        packages=IMAGE_PACKAGES if packages is None else packages,
        files=files,
    )


def observed(packages: dict[str, str], files: dict[str, str]) -> drift.Observed:
    return drift.Observed(host="web-1", packages=tuple(sorted(packages.items())), files=files)


def test_identical_host_has_no_drift() -> None:
    found = drift.compare("podman://web-1", observed(IMAGE_PACKAGES, recorded()), expected(recorded()))
    assert not found.drifted


def test_package_added_removed_and_changed() -> None:
    live = {"bash": "5.2.15-2+b8", "tree": "2.1.0-1"}
    found = drift.compare("podman://web-1", observed(live, recorded()), expected(recorded()))
    assert found.as_json()["packages"] == {
        "added": {"tree": "2.1.0-1"},
        "removed": {"openssh-server": "1:9.2p1-2+deb12u7"},
        "changed": {"bash": {"from": "5.2.15-2+b7", "to": "5.2.15-2+b8"}},
    }


def test_file_changed_missing_and_added() -> None:
    live = {**recorded(), "/etc/login.defs": SHA_A, "/etc/sudoers.d/90-oops": SHA_B}
    del live["/etc/sysctl.d/90-hardening.conf"]
    found = drift.compare("podman://web-1", observed(IMAGE_PACKAGES, live), expected(recorded()))
    assert found.as_json()["files"] == {
        "changed": {"/etc/login.defs": {"from": recorded()["/etc/login.defs"], "to": SHA_A}},
        "missing": {"/etc/sysctl.d/90-hardening.conf": recorded()["/etc/sysctl.d/90-hardening.conf"]},
        "added": {"/etc/sudoers.d/90-oops": SHA_B},
    }


def test_manifest_without_files_compares_packages_only() -> None:
    found = drift.compare(
        "podman://web-1", observed(IMAGE_PACKAGES, {"/etc/sudoers": SHA_A}), expected(None)
    )
    assert (found.drifted, found.as_json()["files_recorded"]) == (False, False)


def test_json_has_the_documented_keys() -> None:
    found = drift.compare("podman://web-1", observed(IMAGE_PACKAGES, recorded()), expected(recorded()))
    assert set(found.as_json()) >= {"target", "image", "version", "packages", "files", "drift", "hint"}


def test_hint_says_redeploy_from_the_image() -> None:
    found = drift.compare("podman://web-1", observed({}, {}), expected(recorded()))
    assert found.as_json()["hint"] == (
        "fix: redeploy from the image (factory resolve base --channel prod), never patch the host"
    )


def test_no_hint_without_drift() -> None:
    found = drift.compare("podman://web-1", observed(IMAGE_PACKAGES, recorded()), expected(recorded()))
    assert found.as_json()["hint"] is None


def test_text_report_ends_with_the_hint_on_drift() -> None:
    found = drift.compare(
        "podman://web-1", observed({**IMAGE_PACKAGES, "tree": "2.1.0-1"}, {}), expected({})
    )
    lines = drift.report_lines(found)
    assert (lines[-1], any("tree" in line and "2.1.0-1" in line for line in lines)) == (found.hint, True)


def test_text_report_says_no_drift() -> None:
    found = drift.compare("podman://web-1", observed(IMAGE_PACKAGES, recorded()), expected(recorded()))
    assert "no drift" in drift.report_lines(found)[-1]


# -- the command, against a real catalog and a fake host ------------------------------------


def publish_base(catalog: Catalog, signer: Signer, junit: Path, files: dict[str, str] | None) -> None:
    manifest = make_manifest("base", VERSION)
    manifest["packages"] = [{"name": n, "version": v} for n, v in IMAGE_PACKAGES.items()]
    if files is not None:
        manifest["files"] = files
    publishing.publish(catalog, make_entry("base", VERSION), manifest, junit, signer=signer, actor=ACTOR)


def run_drift(
    monkeypatch: pytest.MonkeyPatch, layout: Layout, hosts: list[FakeHost], url: str = "podman://web-1"
) -> int:
    monkeypatch.setattr(drift, "connect", lambda target, layout: hosts)
    return cmd_drift(argparse.Namespace(target=url, json=True), layout)


def test_cli_exit_0_without_drift(
    monkeypatch: pytest.MonkeyPatch,
    layout: Layout,
    catalog: Catalog,
    signer: Signer,
    junit: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    publish_base(catalog, signer, junit, recorded())
    code = run_drift(monkeypatch, layout, [FakeHost(dict(IMAGE_FILES), IMAGE_PACKAGES)])
    assert (code, json.loads(capsys.readouterr().out)["drift"]) == (0, False)


def test_cli_exit_1_with_drift_and_channel_latest(
    monkeypatch: pytest.MonkeyPatch,
    layout: Layout,
    catalog: Catalog,
    signer: Signer,
    junit: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    publish_base(catalog, signer, junit, recorded())
    host = FakeHost({**IMAGE_FILES, "/etc/login.defs": b"UMASK\t022\n"}, IMAGE_PACKAGES)
    code = run_drift(monkeypatch, layout, [host])
    data = json.loads(capsys.readouterr().out)
    assert (code, list(data["files"]["changed"]), "--channel latest" in data["hint"]) == (
        1,
        ["/etc/login.defs"],
        True,
    )


def test_cli_group_reports_each_host(
    monkeypatch: pytest.MonkeyPatch,
    layout: Layout,
    catalog: Catalog,
    signer: Signer,
    junit: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    publish_base(catalog, signer, junit, recorded())
    clean = FakeHost(dict(IMAGE_FILES), IMAGE_PACKAGES, backend=SimpleNamespace(hostname="web-1"))
    patched = FakeHost(dict(IMAGE_FILES), {}, backend=SimpleNamespace(hostname="web-2"))
    code = run_drift(monkeypatch, layout, [clean, patched], "ansible://web")
    data = json.loads(capsys.readouterr().out)
    assert (code, [(d["host"], d["drift"]) for d in data]) == (1, [("web-1", False), ("web-2", True)])


def test_cli_old_manifest_without_files(
    monkeypatch: pytest.MonkeyPatch,
    layout: Layout,
    catalog: Catalog,
    signer: Signer,
    junit: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    publish_base(catalog, signer, junit, None)
    code = run_drift(monkeypatch, layout, [FakeHost(dict(IMAGE_FILES), IMAGE_PACKAGES)])
    assert (code, json.loads(capsys.readouterr().out)["files_recorded"]) == (0, False)


def test_cli_version_not_in_catalog_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, layout: Layout, catalog: Catalog, signer: Signer, junit: Path
) -> None:
    publish_base(catalog, signer, junit, recorded())
    files = {**IMAGE_FILES, "/etc/image-release": b"IMAGE=base\nVERSION=20200101.000000-000000000000\n"}
    with pytest.raises(ConfigError, match="does not have") as caught:
        run_drift(monkeypatch, layout, [FakeHost(files, IMAGE_PACKAGES)])
    assert caught.value.exit_code == 2


def test_cli_bad_target_is_a_config_error(layout: Layout) -> None:
    with pytest.raises(ConfigError, match="--target"):
        cmd_drift(argparse.Namespace(target="ftp://web-1", json=False), layout)


# -- the files recorded at bake time ------------------------------------------------------

WRITER = re.compile(
    r"^\s*(?:-\s+)?(?:ansible\.(?:builtin|legacy)\.)?(template|copy|lineinfile|blockinfile|replace):"
)
TASK_FILES = sorted(REPO_ROOT.glob("roles/*/tasks/*.yml"))
ROLES = sorted(p.name for p in (REPO_ROOT / "roles").iterdir() if (p / "tasks").is_dir())
REAL = Layout.discover(REPO_ROOT)


@pytest.mark.parametrize("task_file", TASK_FILES, ids=lambda p: str(p.relative_to(REPO_ROOT / "roles")))
def test_every_file_writing_task_is_found(task_file: Path) -> None:
    """A plain text count of template/copy/lineinfile/… tasks equals what the discovery yields."""
    text = task_file.read_text(encoding="utf-8")
    written = list(verify.written_paths(yaml.safe_load(text)))
    assert len(written) == sum(1 for line in text.splitlines() if WRITER.match(line))


@pytest.mark.parametrize("image", sorted(load_images(REAL)))
def test_every_written_file_of_an_image_is_tracked(image: str) -> None:
    spec = load_image(REAL, image)
    tracked = set(verify.tracked_paths(spec, REAL))
    assert set(verify.role_written_files(spec, REAL)) - verify.PER_MACHINE <= tracked


def test_written_files_of_the_roles() -> None:
    """The files the roles write today, resolved from their defaults: update when a role changes."""
    base = load_image(REAL, "base")
    everything = {
        path
        for name in ROLES
        for path in verify.role_written_files(replace(base, roles=(RoleRef(name=name),)), REAL)
    }
    assert everything == {
        "/bin/systemctl",  # common's build-time stand-in: sanitize removes it (the gate checks)
        "/etc/apt/apt.conf.d/90-image-factory",
        "/etc/apt/apt.conf.d/99-image-factory-build",  # common's build-time apt settings: the same
        "/etc/default/locale",
        "/etc/image-release",
        "/etc/login.defs",
        "/etc/machine-id",
        "/etc/nginx/conf.d/00-hardening.conf",
        "/etc/ssh/sshd_config.d/00-hardening.conf",
        "/etc/sysctl.d/90-hardening.conf",
        "/etc/timezone",
        "/usr/sbin/policy-rc.d",  # the same
        "/var/www/html/index.html",
    }


def test_fixed_paths_are_tracked_for_every_image() -> None:
    spec = load_image(REAL, "base")
    assert set(verify.TRACKED_PATHS) <= set(verify.tracked_paths(spec, REAL))


def test_per_machine_files_are_not_tracked() -> None:
    spec = load_image(REAL, "base")
    assert not verify.PER_MACHINE & set(verify.tracked_paths(spec, REAL))


def test_child_image_tracks_its_parents_files(layout: Layout, write_image: WriteImage) -> None:
    write_image("web", 'description = "x"\n[parent]\nimage = "base"\n[[roles]]\nname = "sanitize"\n')
    (layout.image_tests / "test_web.py").write_text("", encoding="utf-8")
    tracked = verify.tracked_paths(load_image(layout, "web"), layout)
    assert "/etc/ssh/sshd_config.d/00-hardening.conf" in tracked


def test_image_vars_override_role_defaults(layout: Layout) -> None:
    definition = layout.images / "base" / "image.toml"
    text = definition.read_text(encoding="utf-8").replace(
        '[[roles]]\nname = "hardening"\n',
        '[[roles]]\nname = "hardening"\n[roles.vars]\n'
        'hardening_sysctl_file = "/etc/sysctl.d/80-site.conf"\n',
    )
    definition.write_text(text, encoding="utf-8")
    assert "/etc/sysctl.d/80-site.conf" in verify.role_written_files(load_image(layout, "base"), layout)


def test_block_tasks_are_searched() -> None:
    tasks = [{"name": "b", "block": [{"ansible.builtin.template": {"src": "x.j2", "dest": "/etc/x"}}]}]
    assert list(verify.written_paths(tasks)) == ["/etc/x"]


def test_free_form_arguments_are_refused() -> None:
    with pytest.raises(ConfigError, match="without a dest"):
        list(verify.written_paths([{"name": "t", "copy": "src=a dest=/etc/a"}]))


def test_unresolvable_destination_is_a_config_error(layout: Layout) -> None:
    task_file = layout.roles / "common" / "tasks" / "extra.yml"
    task_file.write_text(
        '---\n- name: X\n  ansible.builtin.copy:\n    dest: "{{ nowhere_defined }}"\n    content: x\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="nowhere_defined"):
        verify.role_written_files(load_image(layout, "base"), layout)
