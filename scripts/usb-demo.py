#!/usr/bin/python3
"""make demo, USB part: holdfastd enforcing USB over a fake bus, and the udev rule without it.

There is no USB bus on a build machine: this runs holdfastd under umockdev with the test
harness's kernel emulation (Tests/Harness/usb_testbed.py says what is emulated). Started by
scripts/demo.sh as
    HOLDFAST_HARNESS_NETNS=1 unshare --net umockdev-wrapper /usr/bin/python3 scripts/usb-demo.py BIN_DIR WORK_DIR
"""

import json
import os
import socket
import subprocess
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(here)
sys.path.insert(0, os.path.join(root, "Tests", "Harness"))
import usb_testbed  # noqa: E402

from usb_devices import COMPOSITE, HUB, KEYBOARD, ROOT_HUB, STICK  # noqa: E402


def say(text):
    print("   " + text, flush=True)


def step(text):
    print("\n\033[1m== %s\033[0m" % text, flush=True)


def show(bus, *paths):
    state = bus.state()["nodes"]
    for path in paths:
        node = state.get(path)
        name = path.rsplit("/", 1)[-1]
        if node is None:
            say("%-10s (gone: the kernel removed it with its device)" % name)
            continue
        extra = ""
        if node.get("interface"):
            extra = ", driver bound" if node.get("bound") else ", no driver"
        say("%-10s authorized=%s%s" % (name, node["authorized"], extra))


def journal(holdfast, work, matches):
    """Prints the journaled events that match, one line each."""
    result = subprocess.run([holdfast, "journal", "tail", "--state-dir", work + "/state", "--lines", "100", "--json"], capture_output=True, text=True)
    for line in result.stdout.splitlines():
        event = json.loads(line)
        if matches(event):
            say("journal: %s %s: %s" % (event["severity"], event["holdfast"]["kind"], event["message"]))


def wait_until(bus, condition, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        bus.pump()
        if condition():
            return True
        time.sleep(0.01)
    raise SystemExit("usb-demo: timed out waiting for the expected outcome")


def main():
    bin_dir, work = sys.argv[1], sys.argv[2]
    holdfast = os.path.join(bin_dir, "holdfast")
    usb_testbed.private_queue()
    bus = usb_testbed.Bus()
    os.makedirs(work, exist_ok=True)
    os.chmod(work, 0o755)
    config, policy, sock = work + "/agent.conf", work + "/policy.json", work + "/run/control.sock"
    with open(config, "w") as handle:
        handle.write("[agent]\nstate_dir = %s/state\ncontrol_socket = %s\npolicy = %s\n[usb]\nrescan_interval = 1h\nmarks_dir = %s/run\n[print]\nenabled = no\n[filewatch]\nenabled = no\n" % (work, sock, policy, work))
    with open(policy, "w") as handle:
        handle.write('{"usb": {"max_exception": "1h"}}\n')
    os.chmod(config, 0o644)
    os.chmod(policy, 0o644)

    def cli(*arguments):
        result = subprocess.run([holdfast, "--socket", sock, *arguments], capture_output=True, text=True)
        for line in (result.stdout + result.stderr).rstrip().splitlines():
            say(line)
        return result

    try:
        step("12. holdfastd enforces USB over a fake bus (umockdev; the kernel's side emulated)")
        bus.add(ROOT_HUB)
        notify_path = work + "/notify.sock"
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(notify_path)
        notify.settimeout(30)
        pid = bus.spawn([os.path.join(bin_dir, "holdfastd"), "--config", config], {"NOTIFY_SOCKET": notify_path}, work + "/holdfastd.log")
        while b"READY=1" not in notify.recv(4096):
            pass
        say("holdfastd is READY; the root hub now starts new interfaces unauthorized:")
        say("usb1 interface_authorized_default=%s" % bus.read_attribute(HUB, "interface_authorized_default"))

        say("plugging a keyboard (1-1), a USB stick (1-2), a keyboard with a card reader (1-3)")
        bus.add(KEYBOARD("1") + "\n" + STICK("2", "4C530001230512110413") + "\n" + COMPOSITE("3"))
        wait_until(bus, lambda: bus.read_attribute(HUB + "/1-2", "authorized") == "0" and "1-3:1.0" in bus.bound and "1-1:1.1" in bus.bound)
        show(bus, HUB + "/1-1/1-1:1.0", HUB + "/1-1/1-1:1.1", HUB + "/1-2", HUB + "/1-2/1-2:1.0", HUB + "/1-3/1-3:1.0", HUB + "/1-3/1-3:1.1")
        cli("usb", "devices")

        step("13. An exception: root allows the stick for 3 seconds; a timer takes it away, still plugged in")
        granted = time.monotonic()
        cli("usb", "allow", "1-2", "--for", "3s", "--reason", "TICKET-4711: vendor firmware update")
        wait_until(bus, lambda: "1-2:1.0" in bus.bound)
        show(bus, HUB + "/1-2", HUB + "/1-2/1-2:1.0")
        say("an unprivileged user may look but not grant:")
        result = subprocess.run(["runuser", "-u", "nobody", "--", holdfast, "--socket", sock, "usb", "allow", "1-2", "--for", "1h", "--reason", "please"], capture_output=True, text=True)
        say("nobody: exit %d, %s" % (result.returncode, result.stderr.strip()))
        wait_until(bus, lambda: bus.read_attribute(HUB + "/1-2", "authorized") == "0")
        say("%.1f s after the grant, the timer deauthorized it:" % (time.monotonic() - granted))
        show(bus, HUB + "/1-2", HUB + "/1-2/1-2:1.0")

        step("14. Someone else turns the stick on (as a second USB tool would): reported and undone")
        bus.set(HUB + "/1-2", "authorized", "1")
        say("something wrote 1-2 authorized=1; the kernel configured it again")
        wait_until(bus, lambda: bus.read_attribute(HUB + "/1-2", "authorized") == "0" and bus.known.get(HUB + "/1-2") == "0")
        show(bus, HUB + "/1-2")
        journal(holdfast, work, lambda event: event["holdfast"]["kind"] == "usb.tamper")

        step("15. holdfastd is killed; the shipped udev rule alone keeps a new stick off and a new keyboard on")
        bus.signal(pid, 9)
        bus.wait(pid, 10)
        say("holdfastd killed (SIGKILL); plugging a stick at 1-4 and a keyboard at 1-5")
        bus.add(STICK("4", "AA0000000001") + "\n" + KEYBOARD("5"))
        rules = work + "/rules"
        os.makedirs(rules, exist_ok=True)
        with open(os.path.join(root, "Packaging", "udev", "70-holdfast-usb.rules")) as source, open(rules + "/70-holdfast-usb.rules", "w") as copy:
            copy.write(source.read())
        say("udev's own rules engine (udevadm test) applies the shipped rule to each new node, in a")
        say("private mount namespace where the rules directory holds only that file:")
        for node in [HUB + "/1-4", HUB + "/1-4/1-4:1.0", HUB + "/1-5", HUB + "/1-5/1-5:1.0", HUB + "/1-5/1-5:1.1"]:
            for write in bus.udev(node, rules):
                say("udev: " + write.split(": ", 1)[-1].split("rules.d/", 1)[-1])
        show(bus, HUB + "/1-4/1-4:1.0", HUB + "/1-5/1-5:1.0", HUB + "/1-5/1-5:1.1")

        step("16. The journal: every USB decision, the exception and its refusal for nobody, the tamper")
        result = subprocess.run([holdfast, "journal", "tail", "--state-dir", work + "/state", "--lines", "40"], capture_output=True, text=True)
        for line in result.stdout.splitlines():
            if "\tusb." in line or "\tcontrol.denied" in line:
                say(line)
        result = subprocess.run([holdfast, "journal", "tail", "--state-dir", work + "/state", "--lines", "40", "--json"], capture_output=True, text=True)
        for line in result.stdout.splitlines():
            event = json.loads(line)
            if event["holdfast"]["kind"] == "usb.decision" and event["holdfast"]["details"].get("path") == "1-2":
                say("the stick's first decision as stored (OCSF Peripheral Activity):")
                say(json.dumps(event, sort_keys=True)[:400] + " …")
                break
    finally:
        bus.stop_all()


if __name__ == "__main__":
    main()
