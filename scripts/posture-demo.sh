#!/usr/bin/env bash
# make demo, steps 29-31: posture. Usage: scripts/posture-demo.sh BIN_DIR WORK_DIR
set -euo pipefail
bin="${1:?usage: posture-demo.sh BIN_DIR WORK_DIR}"
work="${2:?usage: posture-demo.sh BIN_DIR WORK_DIR}"
holdfast="$bin/holdfast"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
fail() { echo "demo: $*" >&2; exit 1; }

step "29. Posture on this machine: every check with its status, strength and evidence (unknown is never fail)"
status=0; "$holdfast" posture --local > "$work/posture.txt" || status=$?
sed 's/^/   /' "$work/posture.txt"
[ "$status" -le 1 ] || fail "holdfast posture exited $status"
checks=$("$holdfast" posture --local --json | python3 -c 'import json,sys; r=json.load(sys.stdin); print(len([c for c in r["checks"] if c["status"] in ("pass","fail","unknown") and c["evidence"]]))' || true)
[ "${checks:-0}" -ge 15 ] || fail "expected at least 15 checks with a status and evidence, got ${checks:-0}"
echo "   $checks checks answered, each with a status and evidence"

step "30. The same checks on directory trees laid out like a root filesystem (--root): LUKS under LVM, then a plain partition"
mkdir -p "$work/luks-tree" "$work/plain-tree"
"$bin/holdfast-testkit" posture-tree luks "$work/luks-tree"
"$bin/holdfast-testkit" posture-tree plain "$work/plain-tree"
"$holdfast" posture --root "$work/luks-tree" --only disk-encryption,os-version,accounts-uid0 | sed 's/^/   /'
"$holdfast" posture --root "$work/luks-tree" --only disk-encryption | grep -c 'pass .*dm-crypt vda2_crypt (LUKS2)' > /dev/null || fail "the LUKS tree did not pass disk-encryption with its mapping name"
status=0; "$holdfast" posture --root "$work/plain-tree" --only disk-encryption > "$work/plain.txt" || status=$?
sed 's/^/   /' "$work/plain.txt"
[ "$status" -eq 1 ] && grep -q 'not encrypted' "$work/plain.txt" || fail "the plain tree should fail disk-encryption (exit 1)"

step "31. holdfastd signs its posture report with the device key (0600, created on first start); anyone can verify it with the public half"
agent="$work/posture-agent"; mkdir -p "$agent"; chmod 755 "$agent"
cat > "$agent/agent.conf" <<CONF
[agent]
state_dir = $agent/state
control_socket = $agent/run/control.sock
policy = $agent/policy.json
[usb]
enabled = no
[print]
enabled = no
[filewatch]
enabled = no
CONF
printf '{"version":1}\n' > "$agent/policy.json"; chmod 644 "$agent/agent.conf" "$agent/policy.json"
"$bin/holdfastd" --config "$agent/agent.conf" 2> "$agent/holdfastd.log" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do [ -S "$agent/run/control.sock" ] && break; sleep 0.1; done
status=0; "$holdfast" --socket "$agent/run/control.sock" posture --json > "$agent/report.json" || status=$?
[ "$status" -le 1 ] || fail "holdfast posture against holdfastd exited $status"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("   device %s, status %s, %d checks, %.1f ms; JWS %s…" % (r["device"], r["status"], len(r["checks"]), r["duration_ms"], r["jws"][:60]))' "$agent/report.json"
python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["jws"])' "$agent/report.json" > "$agent/report.jws"
stat -c '   %a %U %n' "$agent/state/device.key"
openssl pkey -in "$agent/state/device.key" -pubout -out "$agent/device.pub" 2>/dev/null
"$holdfast" verify --public-key "$agent/device.pub" --typ holdfast-posture+jws "$agent/report.jws" > /dev/null || fail "the signed report did not verify"
echo "   the report verifies against the device's public key"
kill -TERM "$pid"; wait "$pid" || true
trap - EXIT
