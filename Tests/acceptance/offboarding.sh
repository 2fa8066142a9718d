#!/bin/bash
# Acceptance for offboarding (issue "Offboarding and access review"): a network namespace of its
# own holding one broker (HTTPS on its loopback) and three enrolled holdfastd, the first on a fake
# USB bus (umockdev and the test harness). Offboard a user who holds a USB exception on one device
# and a grant from another: /v1/authz refuses the grant, the stick is deauthorized, the login
# check denies the user on all three (the third was stopped and applies it when it starts);
# reinstate lets them in again. Prints the measured time to full revocation. The driver is
# offboarding.py; everything it started is stopped, and the namespace removed, on exit.
# Usage: Tests/acceptance/offboarding.sh [BINDIR]   (default .build/debug; needs root, iproute2, umockdev, python3-gi, curl)
set -euo pipefail

BIN=$(cd "${1:-.build/debug}" && pwd)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WORK=$(mktemp -d /tmp/holdfast-offboarding-acceptance.XXXXXX)
chmod 0755 "$WORK"
NS="hf-off-a$$"
cleanup() {
    ip netns pids "$NS" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns delete "$NS" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "offboarding acceptance (namespace $NS: a broker, three agents, a fake USB bus)"
ip netns add "$NS"
ip -n "$NS" link set lo up
# In the namespace the harness may lengthen umockdev's uevent queue (a per-namespace setting).
ip netns exec "$NS" env HOLDFAST_HARNESS_NETNS=1 /usr/bin/umockdev-wrapper /usr/bin/python3 "$HERE/offboarding.py" "$BIN" "$WORK"
