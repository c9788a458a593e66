#!/usr/bin/env bash
# Installs what noops needs on a Debian 12 machine, only what is missing:
# Debian packages (Docker engine, NATS, PostgreSQL, ...) and the Python virtualenv in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v docker >/dev/null 2>&1 || need+=(docker.io)
command -v nats-server >/dev/null 2>&1 || need+=(nats-server)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
# The base image needs a statically linked busybox (it runs alone in an empty rootfs).
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || need+=(busybox-static)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v ethtool >/dev/null 2>&1 || need+=(ethtool)
# Fan-out sinks (issue 5): the load balancer, monitoring, whitelists.
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v nft >/dev/null 2>&1 || need+=(nftables)
# Containers as whole hosts (issue 3): DHCP server of the simulated switch, loop/LVM volumes,
# egress benchmarks, and the DOCKER-USER allowance for the switch.
command -v dnsmasq >/dev/null 2>&1 || need+=(dnsmasq-base)
command -v lvcreate >/dev/null 2>&1 || need+=(lvm2)
command -v iperf3 >/dev/null 2>&1 || need+=(iperf3)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v losetup >/dev/null 2>&1 || need+=(mount)
command -v mkfs.ext4 >/dev/null 2>&1 || need+=(e2fsprogs)
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
# noops image build compiles noops-init statically (gcc -static needs glibc's libc.a: libc6-dev).
command -v gcc >/dev/null 2>&1 || need+=(gcc)
dpkg-query -W -f='${Status}' libc6-dev 2>/dev/null | grep -q 'ok installed' || need+=(libc6-dev)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
# The cluster map's browser tests (tests/e2e/test_map.py) and bench/map_render.py: Playwright drives
# Debian's Chromium (never a browser Playwright downloads).
command -v chromium >/dev/null 2>&1 || need+=(chromium)

if [ ${#need[@]} -gt 0 ]; then
  mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
  echo "noops: installing Debian packages: ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # Debian starts services it installs where systemd runs; noops starts its own (devtools/infra.py).
fi

python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
  echo "noops: Python 3.11 or newer is needed (python3 is $(python3 --version))" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  echo "noops: creating the virtualenv in .venv" >&2
  python3 -m venv .venv
fi
stamp=".venv/.noops-installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "noops: installing Python dependencies into .venv" >&2
  .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
  rm -f .venv/.noops-installed-*
  touch "$stamp"
fi
