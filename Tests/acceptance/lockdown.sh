#!/bin/bash
# Acceptance for remote lockdown (issue "Remote lockdown"): three network namespaces — an
# endpoint running holdfastd, a broker serving HTTPS, and "elsewhere" serving plain HTTP. Enroll,
# `holdfast-broker lockdown DEV --scope network`, then from the endpoint the broker answers and
# elsewhere does not, and `holdfast lockdown status --json` shows the scope; after `release` both
# answer. Everything is removed on exit (processes first, then the namespaces).
# Usage: Tests/acceptance/lockdown.sh [BINDIR]   (default .build/debug; needs root, iproute2, nft, curl)
set -euo pipefail

BIN=$(cd "${1:-.build/debug}" && pwd)
WORK=$(mktemp -d /tmp/holdfast-lockdown-acceptance.XXXXXX)
chmod 0755 "$WORK"
TAG="$$"
EP="hf-ep-a$TAG"; BR="hf-br-a$TAG"; EL="hf-el-a$TAG"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    for ns in "$EP" "$BR" "$EL"; do ip netns delete "$ns" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

step() { printf '  %-64s' "$1"; }
ok() { printf 'ok %s\n' "${1:-}"; }
fail() {
    printf 'FAILED: %s\n' "$1"
    echo "--- broker log"; tail -n 40 "$WORK/broker.log" 2>/dev/null || true
    echo "--- agent log"; tail -n 40 "$WORK/agent.log" 2>/dev/null || true
    echo "--- table"; ip netns exec "$EP" nft list table inet holdfast 2>&1 || true
    exit 1
}
wait_for() {
    local deadline=$((SECONDS + 30))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.2
    done
}
# The HTTP status the endpoint gets (000: nothing answered within 3 s).
from_endpoint() { ip netns exec "$EP" curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$@" || true; }
broker_answers() { [ "$(from_endpoint --cacert "$WORK/broker-etc/ca.pem" "$URL/v1/health")" = 200 ]; }
elsewhere_answers() { [ "$(from_endpoint "http://10.77.2.2:8080/")" = 200 ]; }
elsewhere_silent() { ! elsewhere_answers; }

BROKER="$BIN/holdfast-broker"
HOLDFAST="$BIN/holdfast"
URL="https://10.77.1.2:8443"

echo "lockdown acceptance (endpoint $EP, broker $URL in $BR, elsewhere 10.77.2.2 in $EL)"
step "three namespaces, endpoint wired to broker and elsewhere"
for ns in "$EP" "$BR" "$EL"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip -n "$EP" link add eb0 type veth peer name be0 netns "$BR"
ip -n "$EP" link add ee0 type veth peer name ex0 netns "$EL"
ip -n "$EP" addr add 10.77.1.1/24 dev eb0; ip -n "$BR" addr add 10.77.1.2/24 dev be0
ip -n "$EP" addr add 10.77.2.1/24 dev ee0; ip -n "$EL" addr add 10.77.2.2/24 dev ex0
for pair in "$EP eb0" "$EP ee0" "$BR be0" "$EL ex0"; do set -- $pair; ip -n "$1" link set "$2" up; done
ok

step "holdfast-broker init, admin, serve (HTTPS, broker namespace)"
"$BROKER" init --hostname 10.77.1.2 --dir "$WORK/broker-etc" >/dev/null || fail "init"
export HOLDFAST_ADMIN_TOKEN
HOLDFAST_ADMIN_TOKEN=$("$BROKER" admin add acceptance --state-dir "$WORK/broker-state" 2>/dev/null) || fail "admin add"
ip netns exec "$BR" "$BROKER" serve --url "$URL" --listen 10.77.1.2:8443 --dir "$WORK/broker-etc" --state-dir "$WORK/broker-state" 2>"$WORK/broker.log" &
PIDS+=($!)
mkdir -p "$WORK/www"; echo elsewhere >"$WORK/www/index.html"
ip netns exec "$EL" /usr/bin/python3 -m http.server 8080 --bind 10.77.2.2 --directory "$WORK/www" >/dev/null 2>&1 &
PIDS+=($!)
wait_for broker_answers || fail "the endpoint cannot reach the broker"
wait_for elsewhere_answers || fail "the endpoint cannot reach elsewhere"
ok "(both answer)"

step "holdfastd in the endpoint namespace"
mkdir -p "$WORK/run"
cat >"$WORK/agent.conf" <<CONF
[usb]
enabled = no
[print]
enabled = no
[filewatch]
enabled = no
[agent]
state_dir = $WORK/state
control_socket = $WORK/run/control.sock
policy = $WORK/policy.json
[broker]
policy_wait = 5s
CONF
echo '{"version": 1}' >"$WORK/policy.json"
chmod 0644 "$WORK/agent.conf" "$WORK/policy.json"
ip netns exec "$EP" "$BIN/holdfastd" --config "$WORK/agent.conf" 2>"$WORK/agent.log" &
PIDS+=($!)
export HOLDFAST_SOCKET="$WORK/run/control.sock"
wait_for "$HOLDFAST" status || fail "holdfastd did not start"
ok

step "holdfast enroll --token"
TOKEN=$("$BROKER" token create --url "$URL" --expires 1h --dir "$WORK/broker-etc" --state-dir "$WORK/broker-state" 2>/dev/null) || fail "token create"
ENROLLED=$("$HOLDFAST" enroll --token "$TOKEN" --json) || fail "enroll: $ENROLLED"
DEVICE=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["device_id"])' "$ENROLLED")
ok "($DEVICE)"

step "holdfast-broker lockdown $DEVICE --scope network"
"$BROKER" lockdown "$DEVICE" --scope network --reason "acceptance: isolate" --dir "$WORK/broker-etc" --state-dir "$WORK/broker-state" >/dev/null || fail "lockdown"
network_locked() { "$HOLDFAST" lockdown status --json | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["locked"] == ["network"] else 1)'; }
wait_for network_locked || fail "holdfast lockdown status --json does not show network: $("$HOLDFAST" lockdown status --json)"
ok

step "from the endpoint: elsewhere does not answer"
wait_for elsewhere_silent || fail "elsewhere still answers"
ok

step "from the endpoint: the broker answers"
broker_answers || fail "the broker does not answer through the lockdown"
ok

step "holdfast-broker release $DEVICE"
"$BROKER" release "$DEVICE" --reason "acceptance: done" --dir "$WORK/broker-etc" --state-dir "$WORK/broker-state" >/dev/null || fail "release"
network_open() { "$HOLDFAST" lockdown status --json | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["locked"] == [] else 1)'; }
wait_for network_open || fail "the lockdown was not released: $("$HOLDFAST" lockdown status --json)"
ok

step "from the endpoint: both answer"
wait_for elsewhere_answers || fail "elsewhere does not answer after the release"
broker_answers || fail "the broker does not answer after the release"
ok

echo "lockdown acceptance: all steps passed"
