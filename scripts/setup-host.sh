#!/usr/bin/env bash
# Idempotent host set-up for the image factory (Debian, root).
# Installs the system tools, writes the podman configuration this VM needs and nothing else:
# the Python venv is made by the Makefile. Does nothing when everything is already in place.
set -euo pipefail

# Tools the factory drives, and the Debian packages that bring them.
declare -A PKG=(
  [packer]=packer [podman]=podman [docker]=podman-docker [runc]=runc
  [debootstrap]=debootstrap [git]=git [make]=make [aws]=awscli
  # The catalog site's tests drive Debian's Chromium headless (no browser download).
  [chromium]=chromium
  # The registry target: skopeo pushes, tags and reads; the tests and the bench run their own
  # loopback registry (distribution 2.8) as a process, never the package's service.
  [skopeo]=skopeo [docker-registry]=docker-registry
  # factory scan runs apt in a container on user-mode networking (see factory/loop/scan.py).
  [slirp4netns]=slirp4netns
)
missing=()
for tool in "${!PKG[@]}"; do
  # /usr/bin first: a real Docker CLI in /usr/local/bin must not count as the podman shim.
  PATH=/usr/sbin:/usr/bin:/sbin:/bin command -v "$tool" >/dev/null 2>&1 || missing+=("${PKG[$tool]}")
done
python3_venv_ok=1
/usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null || python3_venv_ok=0
[ "$python3_venv_ok" = 1 ] || missing+=(python3-venv)

if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  if [ "$(id -u)" != 0 ]; then
    echo "setup: root is needed to install ${missing[*]} (apt-get)" >&2
    exit 2
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# podman on this VM works only with runc and explicit low ulimits (no CAP_SYS_RESOURCE; crun
# fails on cgroups). We own /etc/containers/containers.conf only when it is ours or absent.
conf=/etc/containers/containers.conf
marker="# managed by the image factory (scripts/setup-host.sh)"
want="$marker
[containers]
default_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]

[engine]
runtime = \"runc\"
"
if [ ! -e "$conf" ] || grep -qF "$marker" "$conf"; then
  if [ ! -e "$conf" ] || [ "$(cat "$conf")" != "$(printf '%s' "$want")" ]; then
    mkdir -p /etc/containers
    tmp=$(mktemp /etc/containers/.containers.conf.XXXXXX)
    printf '%s' "$want" >"$tmp"
    chmod 0644 "$tmp"
    mv -f "$tmp" "$conf"
    echo "setup: wrote $conf"
  fi
elif ! grep -q '^runtime *= *"runc"' "$conf" || ! grep -q '^default_ulimits' "$conf"; then
  echo "setup: $conf exists and is not ours; it needs runtime = \"runc\" under [engine] and" >&2
  echo "       default_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"] under [containers]" >&2
  exit 2
fi

# podman-docker prints a notice on every call unless this file exists.
[ -e /etc/containers/nodocker ] || touch /etc/containers/nodocker
