#!/usr/bin/python3
"""A fake USB bus for Holdfast's tests, over umockdev, that acts like the kernel where umockdev
does not.

Run it under umockdev's wrapper, with Debian's python3 (it has `gi`):

    HOLDFAST_HARNESS_NETNS=1 unshare --net umockdev-wrapper /usr/bin/python3 Tests/Harness/usb_testbed.py

(`unshare --net`: a network namespace of its own, where umockdev's uevent queue can be made long
enough; see private_queue.)

It speaks one JSON object per line: a command on stdin, one answer on stdout
(`{"ok": true, ...}` or `{"ok": false, "error": "..."}`). Paths in commands are sysfs paths as
the agent sees them (`/sys/devices/...`). Programs it spawns (holdfastd) run under umockdev's
preload library, so their libudev, their sysfs reads and writes and their uevent monitor all see
this testbed.

Kernel behaviour emulated here (umockdev keeps attributes as plain files and has no USB core):

1. A new USB device with `authorized=1` gets the interfaces of its active configuration (the
   first one in its `descriptors`, alternate setting 0 of each interface), named `DEV:C.N`, each
   with `authorized` equal to its root hub's `interface_authorized_default` at that moment, and an
   `add` uevent each, after the device's own (usb_set_configuration). Interface nodes present in a
   recorded description are dropped and made this way instead. Undecodable descriptors: no
   interfaces (the kernel would not configure the device).
2. Writing `authorized=0` to a device (anyone: the agent, a test) removes its interfaces with
   `remove` uevents (usb_deauthorize_device); writing `1` to a deauthorized device creates them
   again as in 1.
3. Writing `1` to an interface's `authorized` binds nothing by itself; writing the interface's
   name to `/sys/bus/usb/drivers_probe` binds a driver (a `bind` uevent) only if the interface is
   authorized at that moment — else the kernel refuses ("not authorized for usage"). Writing `0`
   to a bound interface unbinds it (an `unbind` uevent).
4. Which driver binds is the kernel's match: by class (03 usbhid, 09 hub, 01 snd-usb-audio, 0e
   uvcvideo, 08 usb-storage, 02 cdc_acm, e0 btusb), except for the devices in DRIVERS_BY_ID, which
   a driver claims by vendor and product whatever their class — as usb-storage's unusual_devs.h
   does (UNUSUAL_DEV matches USB_DEVICE_VER, not a class). A bound interface has a `driver` link
   to `/sys/bus/usb/drivers/NAME`.

Writes are seen through inotify on the node directories, so emulation follows any writer.

`udev` runs the real udev rules engine (`udevadm test`, systemd's own) on one node, in a private
mount namespace where the rules directories hold only the given rules: the way udevd would apply
the shipped rule, without a udevd.
"""

import ctypes
import json
import os
import re
import select
import signal
import struct
import subprocess
import sys
import time

import gi

gi.require_version("UMockdev", "1.0")
from gi.repository import UMockdev  # noqa: E402

libc = ctypes.CDLL("libc.so.6", use_errno=True)
IN_CLOSE_WRITE = 0x8
IN_MOVED_TO = 0x80
PRELOAD = "libumockdev-preload.so.0"

# The kernel's class matches (emulation 4).
DRIVERS_BY_CLASS = {0x01: "snd-usb-audio", 0x02: "cdc_acm", 0x03: "usbhid", 0x08: "usb-storage", 0x09: "hub", 0x0E: "uvcvideo", 0xE0: "btusb"}
# Drivers that match by vendor and product, whatever the class: usb-storage's unusual_devs.h has
# UNUSUAL_DEV(0x03eb, 0x2002, 0x0100, 0x0100, "ATMEL", "SND1 Storage", USB_SC_DEVICE,
# USB_PR_DEVICE, ...), and ASIX's ax88179 binds 0b95:1790 by USB_DEVICE.
DRIVERS_BY_ID = {(0x03EB, 0x2002): "usb-storage", (0x0B95, 0x1790): "ax88179_178a"}


class Inotify:
    def __init__(self):
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.paths = {}
        self.watches = {}

    def watch(self, directory):
        if directory in self.watches:
            return
        wd = libc.inotify_add_watch(self.fd, directory.encode(), IN_CLOSE_WRITE | IN_MOVED_TO)
        if wd >= 0:
            self.paths[wd] = directory
            self.watches[directory] = wd

    def forget(self, directory):
        wd = self.watches.pop(directory, None)
        if wd is not None:
            self.paths.pop(wd, None)
            libc.inotify_rm_watch(self.fd, wd)

    def read(self):
        events = []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return events
            offset = 0
            while offset < len(data):
                wd, mask, _cookie, length = struct.unpack_from("iIII", data, offset)
                name = data[offset + 16:offset + 16 + length].rstrip(b"\0").decode()
                offset += 16 + length
                if wd in self.paths:
                    events.append((self.paths[wd], name))


def parse_interfaces(descriptors):
    """(configuration value, [(number, class, subclass, protocol)]) of the first configuration,
    alternate setting 0, or None when the bytes do not decode."""
    try:
        if len(descriptors) < 18 or descriptors[1] != 1:
            return None
        offset = descriptors[0]
        if offset + 9 > len(descriptors) or descriptors[offset + 1] != 2:
            return None
        total = descriptors[offset + 2] | descriptors[offset + 3] << 8
        value = descriptors[offset + 5]
        end = offset + total
        if end > len(descriptors) or total < 9:
            return None
        interfaces = []
        position = offset + 9
        while position < end:
            length = descriptors[position]
            if length < 2 or position + length > end:
                return None
            if descriptors[position + 1] == 4 and length >= 9 and descriptors[position + 3] == 0:
                interfaces.append(tuple(descriptors[position + i] for i in (2, 5, 6, 7)))
            position += length
        return value, interfaces
    except IndexError:
        return None


def split_description(text):
    """Blocks of a umockdev description, without interface nodes (the kernel makes those) and
    without what hangs below interfaces in a recording (input, hidraw…: their drivers made them)."""
    kept = []
    for block in re.split(r"\n\s*\n", text.strip()):
        if not block.strip():
            continue
        if "E: DEVTYPE=usb_interface" in block.splitlines():
            continue
        parts = block.splitlines()[0][3:].strip().split("/")
        hubs = [i for i, part in enumerate(parts) if re.fullmatch(r"usb\d+", part)]
        if hubs and any(":" in part for part in parts[hubs[0] + 1:]):
            continue
        kept.append(block.strip())
    return kept


class Bus:
    def __init__(self):
        self.testbed = UMockdev.Testbed.new()
        self.root = self.testbed.get_root_dir()
        os.makedirs(self.root + "/sys/bus/usb", exist_ok=True)
        # drivers_probe is a FIFO here, so that every write is seen (a regular file keeps only the
        # last one, and inotify merges their events). Writers end each name with a newline, as
        # `echo NAME > drivers_probe` does; the kernel ignores it.
        self.probe_file = self.root + "/sys/bus/usb/drivers_probe"
        os.mkfifo(self.probe_file, 0o600)
        self.probe_fd = os.open(self.probe_file, os.O_RDONLY | os.O_NONBLOCK)
        # A writer of ours, so the read end never sees end-of-file between writers.
        self.probe_keepalive = os.open(self.probe_file, os.O_WRONLY | os.O_NONBLOCK)
        self.probe_buffer = b""
        self.inotify = Inotify()
        # Last value seen per `authorized` file, to tell a write from our own bookkeeping.
        self.known = {}
        # Every value each `authorized` file took, in order: [path, value].
        self.history = []
        self.bound = set()
        self.probes = []
        self.children = {}
        self.processes = {}

    # paths: sysfs ("/sys/devices/...") ⇄ testbed files
    def file(self, path, attribute=None):
        full = self.root + path
        return full + "/" + attribute if attribute else full

    def read_attribute(self, path, attribute):
        try:
            with open(self.file(path, attribute), "rb") as handle:
                return handle.read().decode(errors="replace").strip()
        except FileNotFoundError:
            return None

    def exists(self, path):
        return os.path.isdir(self.file(path))

    def root_hub(self, path):
        parts = path.split("/")
        for index in range(len(parts), 0, -1):
            if re.fullmatch(r"usb\d+", parts[index - 1]):
                return "/".join(parts[:index])
        return None

    def descriptors(self, path):
        try:
            with open(self.file(path, "descriptors"), "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return b""

    # devices
    def add(self, text):
        added = []
        blocks = split_description(text)
        for block in blocks:
            if not block.splitlines()[0].startswith("P: "):
                raise ValueError("a device block must start with 'P: /devices/...'")
        # Parents first, as the kernel adds them (recordings list a device before its parents).
        blocks.sort(key=lambda block: block.splitlines()[0].count("/"))
        for block in blocks:
            path = "/sys" + block.splitlines()[0][3:].strip()
            if self.exists(path):
                if self.is_usb_device(block):
                    raise ValueError(path + " is already plugged in")
                continue
            lines = block.splitlines()
            if re.fullmatch(r"usb\d+", os.path.basename(path)):
                # Recordings older than kernel 4.4 lack these root hub attributes; the kernel
                # this emulates has them, at their defaults.
                for attribute in ("authorized_default", "interface_authorized_default"):
                    if not any(line.startswith("A: %s=" % attribute) for line in lines):
                        lines.append("A: %s=1" % attribute)
            if not self.testbed.add_from_string("\n".join(lines) + "\n"):
                raise ValueError("umockdev refused the block for " + path)
            if not self.is_usb_device(block):
                continue
            added.append(path)
            # The kernel configures a device while enumerating it, before anyone (udev, an agent)
            # hears of it: interfaces follow the description's `authorized`, not whatever an agent
            # fast enough may have written since; such a write is then applied after (it removes
            # them again, as deauthorizing does).
            initial = next((line[len("A: authorized="):].strip() for line in lines if line.startswith("A: authorized=")), "1")
            self.inotify.watch(self.file(path))
            self.known[path] = initial
            self.history.append([path, initial])
            self.configure(path, initial)
            self.written(path)
        return added

    def is_usb_device(self, block):
        return "E: DEVTYPE=usb_device" in block.splitlines()

    def configure(self, path, authorized=None):
        """The kernel configuring an authorized device: its interfaces appear (emulation 1)."""
        if (authorized or self.read_attribute(path, "authorized")) != "1":
            return []
        parsed = parse_interfaces(self.descriptors(path))
        if parsed is None:
            return []
        configuration, interfaces = parsed
        hub = self.root_hub(path)
        default = self.read_attribute(hub, "interface_authorized_default") if hub else "1"
        name = os.path.basename(path)
        # A root hub's interfaces are named after its bus and port 0: usb1 → 1-0:1.0.
        hub_name = re.fullmatch(r"usb(\d+)", name)
        if hub_name:
            name = hub_name.group(1) + "-0"
        made = []
        for number, code, subclass, protocol in interfaces:
            interface = "%s/%s:%d.%d" % (path, name, configuration, number)
            block = "\n".join([
                "P: " + interface[len("/sys"):],
                "E: DEVTYPE=usb_interface",
                "E: SUBSYSTEM=usb",
                "E: INTERFACE=%d/%d/%d" % (code, subclass, protocol),
                "A: authorized=" + ("0" if default == "0" else "1"),
                "A: bAlternateSetting= 0",
                "A: bInterfaceClass=%02x" % code,
                "A: bInterfaceNumber=%02x" % number,
                "A: bInterfaceProtocol=%02x" % protocol,
                "A: bInterfaceSubClass=%02x" % subclass,
                "A: bNumEndpoints=01",
            ]) + "\n"
            self.testbed.add_from_string(block)
            # Its first value is the one the kernel gave it: an agent quick enough may already
            # have written another, which is then taken as its write.
            initial = "0" if default == "0" else "1"
            self.inotify.watch(self.file(interface))
            self.known[interface] = initial
            self.history.append([interface, initial])
            made.append(interface)
            if default != "0":
                # Authorized from the start: the kernel binds a driver as it adds the interface.
                self.bind(interface)
            self.written(interface)
        self.children[path] = made
        return made

    def deconfigure(self, path):
        """The kernel deauthorizing a device: its interfaces go (emulation 2)."""
        for interface in reversed(self.children.pop(path, [])):
            self.remove_node(interface)

    def remove_node(self, path):
        if not self.exists(path):
            return
        self.testbed.uevent(path, "remove")
        self.inotify.forget(self.file(path))
        self.known.pop(path, None)
        self.bound.discard(os.path.basename(path))
        self.testbed.remove_device(path)

    def remove(self, path):
        """Unplugging: every node below, deepest first, then the device."""
        below = []
        for directory, _dirs, _files in os.walk(self.file(path)):
            node = directory[len(self.root):]
            if node != path and os.path.exists(directory + "/uevent"):
                below.append(node)
        for node in sorted(below, key=lambda p: -p.count("/")):
            self.children.pop(node, None)
            self.remove_node(node)
        self.children.pop(path, None)
        self.remove_node(path)

    # writes by anyone
    def pump(self, complete=False):
        self.probe(complete)
        for directory, name in self.inotify.read():
            if name != "authorized":
                continue
            path = directory[len(self.root):]
            self.written(path)

    def written(self, path):
        value = self.read_attribute(path, "authorized")
        previous = self.known.get(path)
        # Empty: a writer's open(O_TRUNC) caught before its write(); its close comes next.
        if not value or value == previous:
            return
        self.known[path] = value
        self.history.append([path, value])
        name = os.path.basename(path)
        if ":" in name:
            if value == "0" and name in self.bound:
                self.unbind(path)
            return
        if value == "0":
            self.deconfigure(path)
        elif value == "1":
            self.configure(path)

    def probe(self, complete=False):
        """Names written to drivers_probe: bind each authorized one (emulation 3). With
        `complete`, a last name without a newline counts too (its writer has finished)."""
        while True:
            try:
                chunk = os.read(self.probe_fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            self.probe_buffer += chunk
        names = self.probe_buffer.split(b"\n")
        self.probe_buffer = b"" if complete else names.pop()
        for raw in names:
            name = raw.decode(errors="replace").strip()
            if not name:
                continue
            self.probes.append(name)
            for interfaces in self.children.values():
                for interface in interfaces:
                    if os.path.basename(interface) != name:
                        continue
                    # Take in its authorization first (its inotify event may still be queued),
                    # so that a write of 0 after the bind is seen as the change it is.
                    self.written(interface)
                    if self.known.get(interface) == "1" and name not in self.bound:
                        self.bind(interface)

    def driver_for(self, interface):
        """The driver the kernel would bind (emulation 4), or None."""
        device = os.path.dirname(interface)
        try:
            vendor = int(self.read_attribute(device, "idVendor") or "", 16)
            product = int(self.read_attribute(device, "idProduct") or "", 16)
        except ValueError:
            vendor = product = None
        if (vendor, product) in DRIVERS_BY_ID:
            return DRIVERS_BY_ID[(vendor, product)]
        try:
            code = int(self.read_attribute(interface, "bInterfaceClass") or "", 16)
        except ValueError:
            return None
        return DRIVERS_BY_CLASS.get(code)

    def bind(self, interface):
        driver = self.driver_for(interface)
        if driver is None:
            return
        drivers = self.root + "/sys/bus/usb/drivers/" + driver
        os.makedirs(drivers, exist_ok=True)
        link = self.file(interface, "driver")
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(os.path.relpath(drivers, self.file(interface)), link)
        self.bound.add(os.path.basename(interface))
        self.testbed.uevent(interface, "bind")

    def unbind(self, interface):
        link = self.file(interface, "driver")
        if os.path.lexists(link):
            os.unlink(link)
        self.bound.discard(os.path.basename(interface))
        self.testbed.uevent(interface, "unbind")

    def set(self, path, attribute, value):
        with open(self.file(path, attribute), "w") as handle:
            handle.write(value)
        if attribute == "authorized":
            self.written(path)

    def state(self):
        nodes = {}
        for directory, _dirs, files in os.walk(self.root + "/sys/devices"):
            if "uevent" not in files:
                continue
            path = directory[len(self.root):]
            name = os.path.basename(path)
            interface = ":" in name and self.root_hub(path) is not None
            entry = {"authorized": self.read_attribute(path, "authorized"), "interface": interface}
            if interface:
                entry["bound"] = name in self.bound
                link = self.file(path, "driver")
                entry["driver"] = os.path.basename(os.readlink(link)) if os.path.islink(link) else None
            default = self.read_attribute(path, "interface_authorized_default")
            if default is not None:
                entry["interface_authorized_default"] = default
            nodes[path] = entry
        return {"nodes": nodes, "probes": self.probes, "history": self.history}

    # udev's rules, applied by udev itself
    def udev(self, path, rules, action="add"):
        script = (
            'set -e\n'
            'for d in /etc/udev/rules.d /run/udev/rules.d /usr/lib/udev/rules.d /lib/udev/rules.d /usr/local/lib/udev/rules.d; do\n'
            '  if [ -d "$d" ] && [ ! -L "$d" ]; then mount --bind "$1" "$d"; fi\n'
            'done\n'
            'exec udevadm test --action="$2" "$3"\n'
        )
        env = dict(os.environ, LD_PRELOAD=PRELOAD, UMOCKDEV_DIR=self.root)
        result = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "udev-rules", rules, action, path],
            env=env, capture_output=True, text=True, timeout=60,
        )
        if result.returncode != 0:
            raise RuntimeError("udevadm test failed: " + result.stderr[-2000:])
        # What the rules wrote, as the kernel would take it.
        self.written(path)
        self.pump(complete=True)
        writes = [line.strip() for line in result.stdout.splitlines() + result.stderr.splitlines() if "writing" in line]
        return writes

    # programs under the preload
    def spawn(self, argv, env, log):
        environment = dict(os.environ)
        environment.update(env)
        environment["LD_PRELOAD"] = PRELOAD
        environment["UMOCKDEV_DIR"] = self.root
        handle = open(log, "ab")
        process = subprocess.Popen(
            argv, env=environment, stdin=subprocess.DEVNULL, stdout=handle, stderr=handle, preexec_fn=die_with_parent
        )
        handle.close()
        self.processes[process.pid] = process
        return process.pid

    def signal(self, pid, number):
        process = self.processes.get(pid)
        if process is None:
            raise ValueError("no process %d started here" % pid)
        if process.poll() is None:
            process.send_signal(number)

    def wait(self, pid, timeout):
        process = self.processes.get(pid)
        if process is None:
            raise ValueError("no process %d started here" % pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pump()
            if process.poll() is not None:
                self.processes.pop(pid, None)
                return process.returncode
            time.sleep(0.005)
        return None

    def stop_all(self):
        for process in list(self.processes.values()):
            if process.poll() is None:
                process.kill()
                process.wait()


def die_with_parent():
    """In the child before exec: SIGKILL it when the harness dies, however the harness dies
    (prctl(2) PR_SET_PDEATHSIG), so a crashed harness leaves no agent behind."""
    PR_SET_PDEATHSIG = 1
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def answer(payload):
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def serve(bus):
    buffered = b""
    stdin = sys.stdin.fileno()
    while True:
        readable, _, _ = select.select([stdin, bus.inotify.fd, bus.probe_fd], [], [], 0.5)
        if bus.inotify.fd in readable or bus.probe_fd in readable:
            bus.pump()
        if stdin not in readable:
            continue
        chunk = os.read(stdin, 65536)
        if not chunk:
            return
        buffered += chunk
        while b"\n" in buffered:
            line, buffered = buffered.split(b"\n", 1)
            if not line.strip():
                continue
            bus.pump()
            try:
                command = json.loads(line)
                answer(dict(ok=True, **run(bus, command)))
            except Exception as error:  # every failure is an answer, never a dead harness
                answer({"ok": False, "error": "%s: %s" % (type(error).__name__, error)})
            bus.pump()


def run(bus, command):
    op = command.get("op")
    if op == "root":
        return {"root": bus.root}
    if op == "add":
        paths = bus.add(command["text"])
        bus.pump()
        return {"paths": paths, "interfaces": [i for p in paths for i in bus.children.get(p, [])]}
    if op == "remove":
        bus.remove(command["path"])
        return {}
    if op == "attr":
        return {"value": bus.read_attribute(command["path"], command["name"])}
    if op == "set":
        bus.set(command["path"], command["name"], command["value"])
        return {}
    if op == "state":
        return bus.state()
    if op == "udev":
        return {"writes": bus.udev(command["path"], command["rules"], command.get("action", "add"))}
    if op == "spawn":
        return {"pid": bus.spawn(command["argv"], command.get("env", {}), command["log"])}
    if op == "signal":
        bus.signal(command["pid"], command.get("signal", signal.SIGTERM))
        return {}
    if op == "wait":
        return {"status": bus.wait(command["pid"], command.get("timeout", 10))}
    if op == "sleep":
        deadline = time.monotonic() + command.get("seconds", 0.1)
        while time.monotonic() < deadline:
            bus.pump()
            time.sleep(0.005)
        return {}
    raise ValueError("unknown op %r" % op)


def private_queue():
    """umockdev delivers uevents over a Unix datagram socket, and a sender facing a full queue
    fails (the kernel's netlink would instead drop and tell the reader, ENOBUFS). The queue is
    `net.unix.max_dgram_qlen` datagrams long, 10 by default: too short for a dock plugged in at
    once. Inside a network namespace of our own (the tests start us with `unshare --net`) the
    setting is ours to raise; the machine's stays as it is."""
    if os.environ.get("HOLDFAST_HARNESS_NETNS") != "1":
        return
    with open("/proc/sys/net/unix/max_dgram_qlen", "w") as handle:
        handle.write("4096")


def main():
    # The test runner's threads block most signals and Foundation's Process passes the mask on:
    # unblock them, or SIGTERM never reaches the handler below.
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    private_queue()
    bus = Bus()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        answer({"ok": True, "ready": True, "root": bus.root})
        serve(bus)
    finally:
        bus.stop_all()


if __name__ == "__main__":
    main()
