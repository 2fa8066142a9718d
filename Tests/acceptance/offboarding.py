#!/usr/bin/python3
"""Offboarding acceptance, the driver (Tests/acceptance/offboarding.sh starts it inside a network
namespace of its own, under umockdev's wrapper): one broker over HTTPS on the namespace's
loopback, three enrolled holdfastd — each with its own configuration, state, control socket and
device key; only the first drives the fake USB bus, the others run with USB off. The user
`nobody` holds an approved USB exception on the first and an access grant from the second;
`holdfast-broker offboard nobody` must refuse the grant at /v1/authz, end the exception
(deauthorize the stick) and make the login check deny nobody on all three — on the third, stopped
while the offboarding was sent, once it starts again. `reinstate` must let nobody in again.
Prints each step and the measured time to full revocation. Exit 0 only when every step passed.

    HOLDFAST_HARNESS_NETNS=1 umockdev-wrapper /usr/bin/python3 offboarding.py BIN_DIR WORK_DIR
"""

import json
import os
import subprocess
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(here), "Harness"))
import usb_testbed  # noqa: E402
from usb_devices import HUB, ROOT_HUB, STICK  # noqa: E402

USER = "nobody"
STICK_PATH = HUB + "/1-2"


class Failed(Exception):
    pass


def step(text):
    print("  %-72s" % text, end="", flush=True)


def ok(text=""):
    print("ok " + text, flush=True)


def run(argv, env=None, user=None):
    if user:
        argv = ["runuser", "-u", user, "--"] + argv
    environment = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    environment.update(env or {})
    return subprocess.run(argv, capture_output=True, text=True, env=environment, timeout=60)


def wait_for(bus, condition, what, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        bus.pump()
        if condition():
            return
        time.sleep(0.02)
    raise Failed("timed out after %d s waiting for %s" % (timeout, what))


class Agent:
    def __init__(self, bus, bin_dir, work, name, usb):
        self.bus, self.bin_dir, self.name = bus, bin_dir, name
        self.dir = os.path.join(work, name)
        os.makedirs(self.dir + "/run", exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.config, self.socket, self.pid = self.dir + "/agent.conf", self.dir + "/run/control.sock", None
        with open(self.dir + "/policy.json", "w") as handle:
            handle.write("{}\n")
        with open(self.config, "w") as handle:
            handle.write(
                "[agent]\nstate_dir = %s/state\ncontrol_socket = %s\npolicy = %s/policy.json\n"
                "[usb]\nenabled = %s\nrescan_interval = 1h\nmarks_dir = %s/run\n[print]\nenabled = no\n[filewatch]\nenabled = no\n"
                "[broker]\nattest_interval = 5m\npolicy_wait = 2s\n" % (self.dir, self.socket, self.dir, "yes" if usb else "no", self.dir))
        for path in (self.config, self.dir + "/policy.json"):
            os.chmod(path, 0o644)

    def start(self):
        self.pid = self.bus.spawn([os.path.join(self.bin_dir, "holdfastd"), "--config", self.config], {}, self.dir + "/holdfastd.log")
        wait_for(self.bus, lambda: self.cli("status").returncode == 0, "%s to answer" % self.name)

    def stop(self):
        self.bus.signal(self.pid, 15)
        self.bus.wait(self.pid, 10)
        self.pid = None

    def cli(self, *arguments, user=None):
        return run([os.path.join(self.bin_dir, "holdfast"), "--socket", self.socket, *arguments], user=user)

    def login_allowed(self):
        """holdfast login-check for nobody, as PAM's account phase runs it: (allowed, what nobody saw)."""
        result = run([os.path.join(self.bin_dir, "holdfast"), "login-check", "--socket", self.socket, "--user", USER, "--config", self.config],
                     env={"PAM_TYPE": "account", "PAM_SERVICE": "sshd", "PAM_TTY": "ssh", "PAM_RHOST": "10.1.2.3"})
        return result.returncode == 0, (result.stdout + result.stderr).strip()

    def log(self):
        with open(self.dir + "/holdfastd.log") as handle:
            return handle.read()[-3000:]


def main():
    bin_dir, work = sys.argv[1], sys.argv[2]
    broker_bin = os.path.join(bin_dir, "holdfast-broker")
    usb_testbed.private_queue()
    bus = usb_testbed.Bus()
    broker = None
    try:
        step("a broker over HTTPS on the namespace's loopback")
        etc, state, url = work + "/broker-etc", work + "/broker-state", "https://localhost:8443"
        if run([broker_bin, "init", "--hostname", "localhost", "--dir", etc]).returncode != 0:
            raise Failed("holdfast-broker init")
        added = run([broker_bin, "admin", "add", "acceptance", "--state-dir", state])
        if added.returncode != 0:
            raise Failed("admin add: " + added.stderr)
        admin = {"HOLDFAST_ADMIN_TOKEN": added.stdout.strip()}
        broker = subprocess.Popen([broker_bin, "serve", "--url", url, "--listen", "127.0.0.1:8443", "--dir", etc, "--state-dir", state, "--threads", "2"],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(work + "/broker.log", "wb"), preexec_fn=usb_testbed.die_with_parent)

        def broker_cli(*arguments):
            return run([broker_bin, *arguments, "--state-dir", state], env=admin)

        def authz(grant):
            result = run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "--cacert", etc + "/ca.pem",
                          "-H", "Authorization: Bearer " + grant, url + "/v1/authz"])
            return result.stdout
        wait_for(bus, lambda: run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", etc + "/ca.pem", url + "/v1/health"]).stdout == "200", "the broker")
        ok()

        step("three holdfastd (only the first on the USB bus), each enrolled")
        bus.add(ROOT_HUB)
        agents = [Agent(bus, bin_dir, work, "desk-%d" % number, usb=number == 1) for number in (1, 2, 3)]
        devices = []
        for agent in agents:
            agent.start()
            token = broker_cli("token", "create", "--url", url, "--expires", "1h", "--dir", etc).stdout.strip()
            enrolled = agent.cli("enroll", "--token", token, "--json")
            if enrolled.returncode != 0:
                raise Failed("enroll %s: %s" % (agent.name, enrolled.stderr))
            devices.append(json.loads(enrolled.stdout)["device_id"])
        first, second, third = agents
        ok("(%s)" % ", ".join(devices))

        step("nobody asks for the stick on desk-1; approved; the stick works")
        bus.add(STICK("2", "4C530001230512110413"))
        wait_for(bus, lambda: bus.read_attribute(STICK_PATH, "authorized") == "0", "the stick to be blocked")
        asked = first.cli("request", "usb", "--device", "1-2", "--for", "2h", "--reason", "TICKET-90 audit export", "--json", user=USER)
        if asked.returncode != 0:
            raise Failed("request usb: " + asked.stderr)

        def number():
            listed = json.loads(broker_cli("requests", "--json").stdout or "[]")
            return listed[0]["number"] if listed else None
        wait_for(bus, lambda: number() is not None, "the request at the broker")
        if broker_cli("approve", str(number()), "--for", "2h", "--dir", etc).returncode != 0:
            raise Failed("approve")
        wait_for(bus, lambda: bus.read_attribute(STICK_PATH, "authorized") == "1", "the stick to be allowed")
        ok()

        step("nobody holds an access grant from desk-2 (/v1/authz: 200); logins pass")
        granted = second.cli("grant", "--fresh", "--user", USER, "--json")
        if granted.returncode != 0:
            raise Failed("grant: " + granted.stderr)
        grant = json.loads(granted.stdout)["grant"]
        if authz(grant) != "200":
            raise Failed("authz before: " + authz(grant))
        for agent in agents:
            allowed, said = agent.login_allowed()
            if not allowed:
                raise Failed("%s denied nobody before the offboarding: %s" % (agent.name, said))
        ok()

        step("desk-3 is stopped")
        third.stop()
        ok()

        step("holdfast-broker offboard nobody")
        started = time.monotonic()
        offboarded = broker_cli("offboard", USER, "--reason", "left the company (HR-2231)", "--dir", etc)
        if offboarded.returncode != 0:
            raise Failed("offboard: " + offboarded.stderr)
        ok()

        def applied():
            status = json.loads(broker_cli("offboard-status", USER, "--json").stdout or "{}")
            return {row["device"]: row["state"] for row in status.get("devices", [])}

        step("/v1/authz refuses nobody's grant")
        wait_for(bus, lambda: authz(grant) == "403", "authz to refuse the grant")
        refused_at = time.monotonic() - started
        ok("(%.2f s)" % refused_at)

        step("desk-1 and desk-2 applied it; the stick is deauthorized")
        wait_for(bus, lambda: applied().get(devices[0]) == "applied" and applied().get(devices[1]) == "applied", "the running devices to apply it")
        wait_for(bus, lambda: bus.read_attribute(STICK_PATH, "authorized") == "0", "the stick to be deauthorized")
        running_at = time.monotonic() - started
        ok("(%.2f s)" % running_at)

        step("the login check denies nobody on desk-1 and desk-2")
        for agent in (first, second):
            allowed, said = agent.login_allowed()
            if allowed or "access was revoked" not in said:
                raise Failed("%s: %s" % (agent.name, said))
        ok()

        step("desk-3 starts, applies it, and denies nobody")
        pending = applied().get(devices[2])
        if pending != "pending":
            raise Failed("desk-3 shows %s while stopped" % pending)
        stopped_for = time.monotonic() - started
        third.start()
        wait_for(bus, lambda: applied().get(devices[2]) == "applied", "desk-3 to apply it")
        allowed, said = third.login_allowed()
        if allowed or "access was revoked" not in said:
            raise Failed("desk-3: " + said)
        everywhere_at = time.monotonic() - started
        ok("(%.2f s after it started)" % (everywhere_at - stopped_for))

        step("holdfast-broker reinstate nobody: logins pass again on all three")
        if broker_cli("reinstate", USER, "--reason", "rehired (HR-2290)", "--dir", etc).returncode != 0:
            raise Failed("reinstate")
        for agent in agents:
            wait_for(bus, lambda: agent.login_allowed()[0], "%s to let nobody in again" % agent.name)
        ok()

        print("offboarding acceptance: all steps passed")
        print("time to full revocation on the running devices: %.2f s (grant refused at authz after %.2f s); "
              "the stopped device: %.2f s after it started" % (running_at, refused_at, everywhere_at - stopped_for))
        return 0
    except (Failed, subprocess.TimeoutExpired, KeyError, ValueError) as error:
        print("FAILED: %s" % error)
        for name in ("desk-1", "desk-2", "desk-3"):
            path = os.path.join(work, name, "holdfastd.log")
            if os.path.exists(path):
                print("--- %s log" % name)
                with open(path) as handle:
                    print(handle.read()[-2000:])
        if os.path.exists(work + "/broker.log"):
            print("--- broker log")
            with open(work + "/broker.log") as handle:
                print(handle.read()[-2000:])
        return 1
    finally:
        bus.stop_all()
        if broker is not None:
            broker.terminate()
            broker.wait(10)


if __name__ == "__main__":
    sys.exit(main())
