#!/usr/bin/env bash
# Install the Debian packages named as arguments when their commands are missing.
# Only as root (apt-get); otherwise say what is missing and let the tests decide.
set -euo pipefail

declare -A probe=(
  [qemu-guest-agent]=/usr/sbin/qemu-ga
  [prometheus]=/usr/bin/promtool
  [docker-compose]=/usr/bin/docker-compose
  [systemd]=/usr/bin/systemd-analyze
  [rpm]=/usr/bin/rpm
  [spice-vdagent]=/usr/sbin/spice-vdagentd
  [xvfb]=/usr/bin/Xvfb
  [xclip]=/usr/bin/xclip
  [prometheus-alertmanager]=/usr/bin/prometheus-alertmanager
  [qemu-system-x86]=/usr/bin/qemu-system-x86_64
  [busybox-static]=/bin/busybox
  [cpio]=/usr/bin/cpio
  [e2fsprogs]=/usr/sbin/mkfs.ext4
  [libvirt-daemon-system]=/usr/sbin/libvirtd
  [libvirt-clients]=/usr/bin/virsh
  [pkg-config]=/usr/bin/pkg-config
)

missing=()
for pkg in "$@"; do
  path=${probe[$pkg]:-}
  if [ -n "$path" ]; then
    [ -x "$path" ] || missing+=("$pkg")
  else
    dpkg-query -W -f '${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  fi
done

[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages (not root, not installing): ${missing[*]}" >&2
  exit 0
fi

echo "installing Debian packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
