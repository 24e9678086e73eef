#!/usr/bin/env bash
# Debian packages the local cluster's real node and the image recipe run on, installed only when
# a command is missing (a warm machine runs no apt at all):
#   containerd + runc         the container runtime (Debian's 1.6 accepts kubelet 1.36's CRI)
#   containernetworking-plugins   bridge, host-local, loopback (pod networking)
#   nftables, iproute2        kube-proxy's nftables mode, the bridge and node address
#   mmdebstrap                Debian root filesystems for images built without Docker
set -euo pipefail

declare -A need=(
  [containerd]=containerd [ctr]=containerd [runc]=runc [nft]=nftables [ip]=iproute2
  [unshare]=util-linux [nsenter]=util-linux [mmdebstrap]=mmdebstrap
)
missing=()
for cmd in "${!need[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
[ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
mapfile -t packages < <(printf '%s\n' "${missing[@]}" | sort -u)
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${packages[*]} (run as root, or: sudo apt-get install ${packages[*]})" >&2
  exit 1
fi
echo "installing Debian packages: ${packages[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
# Debian's containerd package may start its own daemon where an init system runs; the node
# starts its own with its own configuration, so the packaged one must not hold the runtime.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet containerd 2>/dev/null; then
  systemctl disable --now containerd >/dev/null 2>&1 || true
fi
