#!/usr/bin/env bash
# `systemd-analyze verify` on both units (the template as instance `ci`), failing on any
# complaint, also the ones systemd only warns about ("Unknown key ..., ignoring").
# systemd checks that ExecStart's binary exists, so the copies point at BINARY (default: the
# debug build) instead of /usr/local/bin/re_dms.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
binary="$(realpath "${1:-$here/../target/debug/re_dms}")"
[ -x "$binary" ] || { echo "systemd/verify.sh: $binary is not an executable (build first)" >&2; exit 1; }
command -v systemd-analyze >/dev/null || { echo "systemd/verify.sh: systemd-analyze not found (apt-get install systemd)" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
sed "s|/usr/local/bin/re_dms|$binary|g" "$here/re_dms.service" > "$tmp/re_dms.service"
sed "s|/usr/local/bin/re_dms|$binary|g" "$here/re_dms@.service" > "$tmp/re_dms@ci.service"
cd "$tmp"
out="$(SYSTEMD_LOG_LEVEL=notice systemd-analyze verify ./re_dms.service ./re_dms@ci.service 2>&1)" || {
    echo "$out" >&2; echo "systemd/verify.sh: systemd-analyze verify failed" >&2; exit 1; }
if [ -n "$out" ]; then
    echo "$out" >&2; echo "systemd/verify.sh: systemd-analyze verify complained" >&2; exit 1
fi
echo "systemd/verify.sh: re_dms.service and re_dms@.service verified"
