#!/usr/bin/env bash
# Debian packages that hack/images.py (and the `node` test tier) need, installed only when a
# tool is missing, so a second run changes nothing and needs no network:
#
#   mmdebstrap   builds the Debian base rootfs (--mode=unshare; no recommends needed as root)
#   containerd   the content store images are imported into, and `ctr` to import and run them
#   runc         what `ctr run` starts containers with (a dependency of containerd as well)
#
# util-linux (unshare, mount, chroot), tar and coreutils are essential packages, always there.
# Needs root (apt-get); Debian bookworm or a release with the same package names.
set -euo pipefail

declare -A wanted=([mmdebstrap]=mmdebstrap [containerd]=containerd [ctr]=containerd [runc]=runc)
packages=()
for tool in "${!wanted[@]}"; do
    command -v "$tool" > /dev/null || packages+=("${wanted[$tool]}")
done
if [ ${#packages[@]} -eq 0 ]; then
    exit 0
fi
mapfile -t packages < <(printf '%s\n' "${packages[@]}" | sort -u)
if [ "$(id -u)" -ne 0 ]; then
    echo "install-packages.sh: ${packages[*]} missing; run this script as root" >&2
    exit 1
fi
echo "install-packages.sh: installing ${packages[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${packages[@]}"
