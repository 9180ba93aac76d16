"""Properties every image built on the hardened base must keep: hardening and sanitisation."""

from __future__ import annotations

import shlex
from typing import Any

import pytest

SSHD_DROPIN = "/etc/ssh/sshd_config.d/00-hardening.conf"


@pytest.mark.parametrize("name", ["python3", "ca-certificates", "tzdata", "openssh-server"])
def test_package_installed(host: Any, name: str) -> None:
    assert host.package(name).is_installed


@pytest.mark.parametrize("field", ["IMAGE", "VERSION", "COMMIT"])
def test_image_release_records(
    host: Any, field: str, image_name: str, image_version: str, image_commit: str
) -> None:
    expected = {"IMAGE": image_name, "VERSION": image_version, "COMMIT": image_commit}[field]
    assert host.file("/etc/image-release").contains(f"^{field}={expected}$")


def test_image_release_commit_is_full(host: Any, image_commit: str) -> None:
    assert len(image_commit) == 40
    assert host.file("/etc/image-release").contains(f"^COMMIT={image_commit}$")


def test_no_ssh_host_keys(host: Any) -> None:
    assert host.run("find /etc/ssh -maxdepth 1 -name 'ssh_host_*'").stdout == ""


def test_machine_id_exists_and_is_empty(host: Any) -> None:
    machine_id = host.file("/etc/machine-id")
    assert machine_id.is_file and machine_id.size == 0


def test_no_dbus_machine_id(host: Any) -> None:
    assert not host.file("/var/lib/dbus/machine-id").exists


@pytest.mark.parametrize("path", ["/var/lib/apt/lists", "/var/cache/apt"])
def test_no_apt_lists_or_caches(host: Any, path: str) -> None:
    assert host.run(f"find {path} -type f ! -name lock").stdout == ""


def test_apt_fetches_no_translations(host: Any) -> None:
    dumped = host.run("apt-config dump Acquire::Languages").stdout.splitlines()
    languages = [line for line in dumped if line.startswith("Acquire::Languages::")]
    assert languages == ['Acquire::Languages:: "none";']


def test_apt_keeps_no_binary_caches(host: Any) -> None:
    """The image's setting, not the build's (which sanitize removed): apt writes no cache files."""
    dumped = set(host.run("apt-config dump Dir::Cache").stdout.splitlines())
    assert {'Dir::Cache::pkgcache "";', 'Dir::Cache::srcpkgcache "";'} <= dumped


@pytest.mark.parametrize(
    "path",
    [
        "/var/log/bootstrap.log",
        "/var/log/dpkg.log",
        "/var/log/alternatives.log",
        "/var/log/apt/history.log",
        "/var/log/apt/term.log",
    ],
)
def test_build_logs_are_empty(host: Any, path: str) -> None:
    log = host.file(path)
    assert not log.exists or log.size == 0


def test_no_shell_history(host: Any) -> None:
    found = host.run("find /root /home -maxdepth 2 -name '.*_history' -o -maxdepth 2 -name .lesshst")
    assert found.stdout == ""


@pytest.mark.parametrize(
    "path",
    [
        "/root/.ansible",
        "/root/.ssh/authorized_keys",
        "/root/.aws",
        "/root/.vault_pass",
        "/etc/apt/auth.conf",
    ],
)
def test_no_build_credentials(host: Any, path: str) -> None:
    assert not host.file(path).exists


@pytest.mark.parametrize("pattern", [".*_history", ".lesshst", ".viminfo", ".wget-hsts"])
def test_no_history_file_anywhere(host: Any, pattern: str) -> None:
    """Not only root's and /home's: a service account's home can be anywhere."""
    assert host.run(f"find / -xdev -name '{pattern}' -print").stdout == ""


@pytest.mark.parametrize("name", [".ansible", ".ansible_async", "ansible-tmp-*", "AnsiballZ_*"])
def test_no_ansible_leftovers_anywhere(host: Any, name: str) -> None:
    """Ansible's remote temp dirs and module payloads, wherever remote_tmp pointed."""
    assert host.run(f"find / -xdev -name '{name}' -print").stdout == ""


@pytest.mark.parametrize("name", ["authorized_keys", "authorized_keys2"])
def test_no_authorized_keys_anywhere(host: Any, name: str) -> None:
    """A key the build logged in with would let its holder into every instance."""
    assert host.run(f"find / -xdev -name {name} -print").stdout == ""


@pytest.mark.parametrize("name", ["id_rsa", "id_dsa", "id_ecdsa", "id_ed25519", "ansible-key*"])
def test_no_ssh_private_keys_anywhere(host: Any, name: str) -> None:
    """Neither a user's key nor the provisioner's (Packer's ansible-key*)."""
    assert host.run(f"find / -xdev -name '{name}' -print").stdout == ""


# The build's service management (common's tasks/services.yml), removed by sanitize: nothing of
# it may ship, and a real systemctl a package installed must be back in its place.
def test_no_policy_rc_d(host: Any) -> None:
    assert not host.file("/usr/sbin/policy-rc.d").exists


def test_no_systemctl_stand_in(host: Any) -> None:
    systemctl = host.file("/usr/bin/systemctl")
    assert not systemctl.exists or not systemctl.contains("factory build shim")


def test_systemctl_is_not_diverted(host: Any) -> None:
    assert "systemctl" not in host.run("dpkg-divert --list").stdout


def test_no_build_environment_marker(host: Any) -> None:
    assert not host.file("/run/factory-build-env").exists


def test_no_debconf_passwords(host: Any) -> None:
    assert host.file("/var/cache/debconf/passwords.dat").size == 0


@pytest.mark.parametrize("path", ["/tmp", "/var/tmp"])
def test_tmp_is_empty(host: Any, path: str) -> None:
    assert host.run(f"find {path} -mindepth 1").stdout == ""


def test_root_password_locked(host: Any) -> None:
    field = host.run("getent shadow root").stdout.split(":")[1]
    assert field.startswith(("!", "*"))


@pytest.mark.parametrize(
    "directive",
    [
        "PermitRootLogin no",
        "PasswordAuthentication no",
        "PermitEmptyPasswords no",
        "X11Forwarding no",
        "MaxAuthTries 4",
    ],
)
def test_sshd_hardening(host: Any, directive: str) -> None:
    assert host.file(SSHD_DROPIN).contains(f"^{directive}$")


@pytest.fixture(scope="module")
def sshd_effective(host: Any) -> set[str]:
    """What sshd would run with (`sshd -T`): a foreign sshd_config that drops the Include of the
    drop-in, or overrides it, shows here. The image has no host keys (sanitize), so a throwaway
    one is made for the check and removed with the privilege separation directory."""
    work = host.run("mktemp -d").stdout.strip()
    try:
        result = host.run(
            f"ssh-keygen -q -t ed25519 -N '' -f {work}/key && mkdir -p /run/sshd && "
            f"/usr/sbin/sshd -T -h {work}/key"
        )
        assert result.rc == 0, result.stderr
        return {line.strip().lower() for line in result.stdout.splitlines()}
    finally:
        host.run(f"rm -rf {work}; rmdir /run/sshd 2>/dev/null || true")


@pytest.mark.parametrize(
    "directive",
    [
        "permitrootlogin no",
        "passwordauthentication no",
        "permitemptypasswords no",
        "x11forwarding no",
        "maxauthtries 4",
    ],
)
def test_sshd_effective(sshd_effective: set[str], directive: str) -> None:
    assert directive in sshd_effective


def test_sshd_dropin_is_private(host: Any) -> None:
    assert host.file(SSHD_DROPIN).mode == 0o600


# The kernel settings the hardening role sets: in its own file, and in effect after every file
# procps reads (another role's file must not undo them).
HARDENED_SYSCTL = [
    ("kernel.randomize_va_space", "2"),
    ("fs.suid_dumpable", "0"),
    ("net.ipv4.ip_forward", "0"),
    ("net.ipv4.conf.all.accept_redirects", "0"),
    ("net.ipv4.tcp_syncookies", "1"),
]


@pytest.mark.parametrize(("key", "value"), HARDENED_SYSCTL)
def test_sysctl_hardening(host: Any, key: str, value: str) -> None:
    assert host.file("/etc/sysctl.d/90-hardening.conf").contains(f"^{key} = {value}$")


# What `sysctl --system` applies at boot: the files of these directories merged by file name (a name
# in an earlier directory hides the same name in a later one), read in name order, then
# /etc/sysctl.conf; the last value of a key wins. A container shows the host kernel's values, so
# the effective configuration is computed from the image's files, as procps does it.
SYSCTL_EFFECTIVE = r"""
import glob, os, sys
files = {}
dirs = ("/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d", "/lib/sysctl.d")
for folder in dirs:
    for path in glob.glob(folder + "/*.conf"):
        files.setdefault(os.path.basename(path), path)
ordered = [files[name] for name in sorted(files)] + ["/etc/sysctl.conf"]
values = {}
for path in ordered:
    if not os.path.isfile(path):
        continue
    for line in open(path):
        line = line.strip()
        if line and line[0] not in "#;" and "=" in line:
            key, value = line.lstrip("-").split("=", 1)
            values[key.strip().replace("/", ".")] = value.strip()
print(values.get(sys.argv[1], "(unset)"))
"""


@pytest.mark.parametrize(("key", "value"), HARDENED_SYSCTL)
def test_sysctl_effective(host: Any, key: str, value: str) -> None:
    result = host.run(f"python3 -c {shlex.quote(SYSCTL_EFFECTIVE)} {key}")
    assert result.stdout.strip() == value, result.stderr


BACKUPS = "\\( -name '*~' -o -name '*.dpkg-*' -o -name '*.orig' -o -name '*.bak' \\)"


def test_no_backup_files_under_etc(host: Any) -> None:
    found = host.run(f"find /etc -xdev -type f {BACKUPS} -print")
    assert found.stdout == ""


@pytest.mark.parametrize(
    ("key", "value"), [("PASS_MAX_DAYS", "365"), ("PASS_MIN_DAYS", "1"), ("UMASK", "027")]
)
def test_login_defs(host: Any, key: str, value: str) -> None:
    assert host.file("/etc/login.defs").contains(f"^{key}\t{value}$")


# World-writable files, and world-writable directories without the sticky bit (cf. /tmp).
WORLD_WRITABLE = "\\( \\( -type f -perm -0002 \\) -o \\( -type d -perm -0002 ! -perm -1000 \\) \\) -print"


def test_no_world_writable_files_in_system_dirs(host: Any) -> None:
    found = host.run(f"find /bin /sbin /usr /etc /lib -xdev {WORLD_WRITABLE}")
    assert found.stdout == ""


@pytest.mark.parametrize("path", ["/var", "/opt", "/srv", "/boot", "/root", "/home"])
def test_no_world_writable_files_under(host: Any, path: str) -> None:
    assert host.run(f"find {path} -xdev {WORLD_WRITABLE}").stdout == ""


def test_timezone_is_utc(host: Any) -> None:
    assert host.file("/etc/localtime").linked_to == "/usr/share/zoneinfo/Etc/UTC"


def test_default_locale(host: Any) -> None:
    assert host.file("/etc/default/locale").contains("^LANG=C.UTF-8$")


def test_no_pending_security_updates(host: Any) -> None:
    """Baked today from today's mirror: nothing from the security suite is left to install."""
    # Lists in a private directory, removed afterwards: on the aws target this gate runs on the build
    # instance before the AMI is made, and must not leave anything in it. apt's binary cache goes
    # there too, made once by the update instead of again by the simulation; gzip lists unpack in
    # less CPU than xz.
    work = host.run("mktemp -d").stdout.strip()
    apt = (
        f"-o Dir::State::Lists={work}/lists -o Dir::Cache::pkgcache={work}/pkgcache.bin"
        f" -o Dir::Cache::srcpkgcache={work}/srcpkgcache.bin -o Acquire::CompressionTypes::Order::=gz"
    )
    try:
        # An update that failed would leave no lists and so no pending updates: it must succeed.
        host.run_expect(
            [0],
            f"chmod 755 {work} && mkdir -m 755 {work}/lists"
            f" && timeout 300 apt-get update -qq -o Acquire::Languages=none {apt}",
        )
        simulated = host.run(f"apt-get -s upgrade {apt}").stdout
    finally:
        host.run(f"rm -rf {work}")
    pending = [line for line in simulated.splitlines() if line.startswith("Inst ") and "Security" in line]
    assert pending == []
