#!/bin/bash
# Acceptance for the broker (issue "Broker I"): start holdfast-broker over HTTPS on loopback,
# create a one-time token, enroll a local holdfastd, get 200 from /v1/authz with the grant
# `holdfast grant` prints, then 403 once `holdfast-broker policy set` requires a check this machine
# fails. Everything runs under one temporary directory and is stopped on exit.
# Usage: Tests/acceptance/broker.sh [BINDIR]   (default .build/debug; needs root and curl)
set -euo pipefail

BIN=$(cd "${1:-.build/debug}" && pwd)
WORK=$(mktemp -d /tmp/holdfast-broker-acceptance.XXXXXX)
chmod 0755 "$WORK"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

step() { printf '  %-58s' "$1"; }
ok() { printf 'ok %s\n' "${1:-}"; }
fail() {
    printf 'FAILED: %s\n' "$1"
    echo "--- broker log"; cat "$WORK/broker.log" 2>/dev/null || true
    echo "--- agent log"; tail -n 40 "$WORK/agent.log" 2>/dev/null || true
    exit 1
}
# Polls a command until it succeeds, at most 30 s.
wait_for() {
    local deadline=$((SECONDS + 30))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.2
    done
}

BROKER="$BIN/holdfast-broker"
HOLDFAST="$BIN/holdfast"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL="https://localhost:$PORT"

echo "broker acceptance ($URL)"
step "holdfast-broker init --hostname localhost"
"$BROKER" init --hostname localhost --dir "$WORK/broker-etc" >/dev/null || fail "init"
ok

step "holdfast-broker admin add"
export HOLDFAST_ADMIN_TOKEN
HOLDFAST_ADMIN_TOKEN=$("$BROKER" admin add acceptance --state-dir "$WORK/broker-state" 2>/dev/null) || fail "admin add"
ok

step "holdfast-broker serve (HTTPS, loopback)"
"$BROKER" serve --url "$URL" --listen "127.0.0.1:$PORT" --dir "$WORK/broker-etc" --state-dir "$WORK/broker-state" 2>"$WORK/broker.log" &
PIDS+=($!)
wait_for curl -sf --cacert "$WORK/broker-etc/ca.pem" "$URL/v1/health" || fail "the broker did not answer on $URL"
ok

step "holdfastd (USB, print, FileWatch off; posture on)"
mkdir -p "$WORK/run"
cat >"$WORK/agent.conf" <<CONF
# acceptance agent
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
CONF
echo '{"version": 1, "usb": {}}' >"$WORK/policy.json"
chmod 0644 "$WORK/agent.conf" "$WORK/policy.json"
"$BIN/holdfastd" --config "$WORK/agent.conf" 2>"$WORK/agent.log" &
PIDS+=($!)
export HOLDFAST_SOCKET="$WORK/run/control.sock"
wait_for "$HOLDFAST" status || fail "holdfastd did not start"
ok

step "holdfast-broker token create --expires 1h"
TOKEN=$("$BROKER" token create --url "$URL" --expires 1h --label acceptance --dir "$WORK/broker-etc" --state-dir "$WORK/broker-state" 2>/dev/null) || fail "token create"
ok

step "holdfast enroll --token"
ENROLLED=$("$HOLDFAST" enroll --token "$TOKEN" --json) || fail "enroll: $ENROLLED"
DEVICE=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["device_id"])' "$ENROLLED")
ok "($DEVICE)"

step "enrolling again is refused (already enrolled)"
if "$HOLDFAST" enroll --token "$TOKEN" >/dev/null 2>&1; then fail "a second enrollment succeeded"; fi
ok

step "holdfast grant (after the first attestation)"
wait_for "$HOLDFAST" grant || fail "no grant within 30 s: $("$HOLDFAST" grant 2>&1 || true)"
GRANT=$("$HOLDFAST" grant)
ok

step "GET /v1/authz with the grant -> 200"
CODE=$(curl -s -o "$WORK/authz.json" -w '%{http_code}' --cacert "$WORK/broker-etc/ca.pem" -H "Authorization: Bearer $GRANT" "$URL/v1/authz")
[ "$CODE" = 200 ] || fail "authz answered $CODE: $(cat "$WORK/authz.json")"
ok

step "GET /v1/authz without a grant -> 401"
CODE=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$WORK/broker-etc/ca.pem" "$URL/v1/authz")
[ "$CODE" = 401 ] || fail "authz without a grant answered $CODE"
ok

# A check this machine fails, from the agent's own report; a check id no agent reports counts
# as failing too (missing), so the step holds on a fully compliant machine.
FAILING=$({ "$HOLDFAST" posture --json || true; } | python3 -c 'import json,sys; r=json.load(sys.stdin); print(next((c["id"] for c in r["checks"] if c["status"]=="fail"), "no-such-check"))')
step "holdfast-broker policy set (block $FAILING)"
printf '{"checks": {"%s": "block"}}\n' "$FAILING" >"$WORK/compliance.json"
"$BROKER" policy set "$WORK/compliance.json" --state-dir "$WORK/broker-state" >/dev/null || fail "policy set"
ok

step "GET /v1/authz with the same grant -> 403"
CODE=$(curl -s -o "$WORK/authz.json" -w '%{http_code}' --cacert "$WORK/broker-etc/ca.pem" -H "Authorization: Bearer $GRANT" "$URL/v1/authz")
[ "$CODE" = 403 ] || fail "authz answered $CODE after the policy change: $(cat "$WORK/authz.json")"
grep -q "\"$FAILING\"" "$WORK/authz.json" || fail "the 403 does not name $FAILING: $(cat "$WORK/authz.json")"
ok

echo "broker acceptance: all steps passed"
