#!/usr/bin/env bash
# Install the Debian packages the test suite runs as real servers, only if missing.
# Needs root (as on CI and the dev machines) or passwordless sudo.
set -euo pipefail
missing=()
for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo_cmd=""
[ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
echo "installing Debian packages: ${missing[*]}"
$sudo_cmd apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Packaged services must not run system-wide: the tests start their own instances.
for pkg in "${missing[@]}"; do
    if command -v systemctl >/dev/null 2>&1; then $sudo_cmd systemctl disable --now "$pkg" >/dev/null 2>&1 || true; fi
done
