#!/usr/bin/env bash
# make demo: runs what Holdfast can do today, for real, and says what happened.
# Usage: scripts/demo.sh BIN_DIR   (BIN_DIR holds holdfast, holdfast-broker, holdfastd)
set -euo pipefail
bin="${1:?usage: demo.sh BIN_DIR}"
holdfast="$bin/holdfast"
broker="$bin/holdfast-broker"
work="$(mktemp -d "${TMPDIR:-/tmp}/holdfast-demo-XXXXXX")"
trap 'rm -rf "$work"' EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
expect_refusal() {  # runs a command that must fail with exit 1 and shows why
    local output status=0
    output="$("$@" 2>&1)" || status=$?
    if [ "$status" -ne 1 ]; then
        echo "demo: expected a refusal (exit 1), got exit $status: $output" >&2
        exit 1
    fi
    echo "   refused as expected -> $output"
}

step "Holdfast $("$holdfast" --version | cut -d' ' -f2): signed documents, the journal, the daemon, USB and print enforcement, the audit trail, FileWatch, posture, the broker"

step "1. The broker makes its Ed25519 signing key (PKCS#8 PEM, mode 0600)"
"$broker" key generate --out "$work/broker.key"
stat -c '   %A %U %n' "$work/broker.key"

step "2. It publishes the public half as a JWK Set (what gateways and agents pin)"
"$broker" key public --key "$work/broker.key" | tee "$work/jwks.json"

step "3. It signs a policy document (JWS compact, alg EdDSA)"
printf '%s' '{"version":3,"usb":{"rules":[{"id":"issued-drives","match":{"vendor":"0951","product":"1666"},"action":"allow"}]}}' > "$work/policy.json"
"$broker" sign --key "$work/broker.key" --typ holdfast-policy+jws "$work/policy.json" | tee "$work/policy.jws"

step "4. The agent verifies it against the pinned keys and reads the exact signed bytes"
"$holdfast" verify --jwks "$work/jwks.json" --typ holdfast-policy+jws "$work/policy.jws"

step "5. A forged policy (payload swapped to audit-only: nothing blocked) is refused"
header="$(cut -d. -f1 "$work/policy.jws")"; signature="$(cut -d. -f3 "$work/policy.jws")"
forged_payload="$(printf '%s' '{"usb":{"mode":"audit-only"}}' | base64 -w0 | tr '+/' '-_' | tr -d '=')"
printf '%s.%s.%s\n' "$header" "$forged_payload" "$signature" > "$work/forged.jws"
expect_refusal "$holdfast" verify --jwks "$work/jwks.json" "$work/forged.jws"

step "6. An unsigned document (alg none) is refused"
none_header="$(printf '%s' '{"alg":"none"}' | base64 -w0 | tr '+/' '-_' | tr -d '=')"
printf '%s.%s.%s\n' "$none_header" "$forged_payload" "$signature" > "$work/none.jws"
expect_refusal "$holdfast" verify --jwks "$work/jwks.json" "$work/none.jws"

step "7. A short-lived access grant (JWT, 5 minutes) verifies for its audience only"
printf '%s' '{"posture":"compliant","user":"alice"}' |
    "$broker" sign --jwt --key "$work/broker.key" --iss holdfast-broker --sub device-17 --aud crm-gateway --expires 5m > "$work/grant.jwt"
"$holdfast" verify --jwt --aud crm-gateway --iss holdfast-broker --jwks "$work/jwks.json" --json "$work/grant.jwt"
expect_refusal "$holdfast" verify --jwt --aud payroll-gateway --jwks "$work/jwks.json" "$work/grant.jwt"

step "8. Events go into the journal (SQLite WAL, 0600) and come back in order"
state="$work/state"
"$holdfast" journal note --state-dir "$state" "demo: policy verified"
"$holdfast" journal note --state-dir "$state" "demo: forged policy refused"
"$holdfast" journal note --state-dir "$state" "demo: grant issued to alice"
"$holdfast" journal tail --state-dir "$state"
echo "   first event as stored (OCSF-shaped JSON):"
"$holdfast" journal tail --state-dir "$state" --lines 3 --json | sed -n 1p | sed 's/^/   /'
"$holdfast" journal stats --state-dir "$state" | sed 's/^/   /'
printf '   integrity: '; "$holdfast" journal check --state-dir "$state"
stat -c '   %A %U %n' "$state" "$state/journal.sqlite"

step "9. holdfastd runs on a temporary configuration; holdfast talks to it over the control socket"
daemon="$bin/holdfastd"
agent="$work/agent"; mkdir -p "$agent"; chmod 755 "$work" "$agent"
cat > "$agent/agent.conf" <<CONF
# A demo configuration: everything under one temporary directory
[agent]
state_dir = $agent/state
control_socket = $agent/run/control.sock
policy = $agent/policy.json
log_level = info
# This holdfastd runs on the real machine: its USB enforcement stays off (step 12 enforces over a
# fake USB bus).
[usb]
enabled = no
# Print enforcement is shown against a private cupsd later in the demo, never the machine's own.
[print]
enabled = no
# FileWatch is shown later against a private auditd, never the machine's own.
[filewatch]
enabled = no
CONF
cp "$work/policy.json" "$agent/policy.json"; chmod 644 "$agent/agent.conf" "$agent/policy.json"
"$daemon" --check-config "$agent/agent.conf"
printf '[agent]\nstat_dir = /var/lib/holdfast\n' > "$agent/bad.conf"
expect_refusal "$daemon" --check-config "$agent/bad.conf"
"$daemon" --config "$agent/agent.conf" 2> "$agent/holdfastd.log" &
daemon_pid=$!
trap 'kill "$daemon_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do [ -S "$agent/run/control.sock" ] && break; sleep 0.1; done
"$holdfast" --socket "$agent/run/control.sock" status
if command -v runuser >/dev/null && id nobody >/dev/null 2>&1; then
    echo "   as nobody (read verbs are for everyone):"
    runuser -u nobody -- "$holdfast" --socket "$agent/run/control.sock" status --json | cut -c1-120 | sed 's/^/   /'
    echo "   reload as nobody (admin verbs are root's; the refusal is journaled):"
    status=0; runuser -u nobody -- "$holdfast" --socket "$agent/run/control.sock" reload 2>&1 | sed 's/^/   /' || status=$?
fi

step "10. A broken policy on reload is refused; the one in force stays"
printf '%s' '{"usb": "allow everything"}' > "$agent/policy.json"
kill -HUP "$daemon_pid"; sleep 0.5
"$holdfast" --socket "$agent/run/control.sock" status | grep -E '^policy'

step "11. SIGTERM stops it cleanly; its journal tells the story"
start_ns=$(date +%s%N); kill -TERM "$daemon_pid"; wait "$daemon_pid" || true
echo "   stopped in $(( ($(date +%s%N) - start_ns) / 1000000 )) ms"
"$holdfast" journal tail --state-dir "$agent/state" --lines 50
echo "   holdfastd's log (stderr, with journald priority prefixes):"
sed 's/^/   /' "$agent/holdfastd.log"

HOLDFAST_HARNESS_NETNS=1 unshare --net /usr/bin/umockdev-wrapper /usr/bin/python3 "$(dirname "${BASH_SOURCE[0]}")/usb-demo.py" "$bin" "$work/usb"

# Steps 17-23: print enforcement against a private cupsd and a real IPP printer (the machine's own
# cupsd is never touched); the demo user is created for the run and removed after it.
"$bin/holdfast-testkit" print-demo "$bin"

step "24. The audit trail: six raw records of a cp onto a stick become one event (holdfast audit parse)"
copy_log="$(dirname "${BASH_SOURCE[0]}")/../Tests/Fixtures/audit/cp-to-stick.log"
"$holdfast" audit parse "$copy_log" 2>&1 | sed 's/^/   /'
"$holdfast" audit parse --json "$copy_log" 2>/dev/null | sed 's/^/   /'   # one line per event, as a SIEM takes it
echo "   a generated 100,000-record log with garbage lines mixed in; records + malformed + blank = its lines:"
"$bin/holdfast-testkit" audit-log --records 100000 --seed 1 --garbage-every 500 2>/dev/null > "$work/generated.log"
echo "   $(wc -l < "$work/generated.log") lines"
start_ns=$(date +%s%N)
"$holdfast" audit parse --count "$work/generated.log" | sed 's/^/   /'
echo "   in $(( ($(date +%s%N) - start_ns) / 1000000 )) ms (a debug build; make bench measures the release one)"

# Steps 25-28: FileWatch over the real kernel audit and a private auditd with the Holdfast plugin.
"$(dirname "${BASH_SOURCE[0]}")/filewatch-demo.sh" "$bin" "$work"

# Steps 29-31: posture on this machine, on fixture trees, and holdfastd's signed report.
"$(dirname "${BASH_SOURCE[0]}")/posture-demo.sh" "$bin" "$work"

# Steps 32-38: the broker on loopback over HTTPS, an enrolled holdfastd, grants and /v1/authz, lockdown, offboarding.
"$(dirname "${BASH_SOURCE[0]}")/broker-demo.sh" "$bin" "$work"

step "Done: signed, verified, forged and refused, journaled and read back; the daemon served, refused, reloaded and stopped; USB enforced with and without it; printing gated, counted, locked down, extra pages asked for, approved on a broker, used and revoked; the audit trail parsed; a bulk copy against a learned baseline alerted and blocked; posture attested, signed and verified; a device enrolled, attested to the broker, granted access and refused it when the policy tightened; a user offboarded (grant refused, login denied, the access review) and reinstated."
