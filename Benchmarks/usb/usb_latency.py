#!/usr/bin/python3
"""USB decision latency, Holdfast's holdfastd against Debian's usbguard-daemon, under umockdev.

What is measured: for each plugged USB mass-storage stick, the time from the device description
appearing to the agent's write of `0` to that device's `authorized` attribute (its verdict:
block). Both agents get the same stick, the same kind of trigger and the same filesystem:

- holdfastd watches a umockdev testbed that this script owns. A plug is
  `tb.add_from_string(description)`, which creates the sysfs files and then sends the `add`
  uevent that holdfastd's libudev monitor receives. The clock starts just before that call.
- usbguard-daemon with `DeviceManagerBackend=umockdev` owns its testbed (it calls
  umockdev_testbed_new() itself) and watches `$USBGUARD_UMOCKDEV_DEVICEDIR` with inotify for
  IN_CREATE (and IN_DELETE). A plug is one `os.link()` of a complete description file into that
  directory (a rename would be IN_MOVED_TO, which it ignores; inotify(7)). The clock starts just
  before that call. usbguard then parses the file, creates the device in its testbed, sends
  itself the uevent and decides. Its inotify wake-up and that parse are on its side of the clock
  only: the backend's way of hearing of a device costs it a little (reported on stderr).

The write is seen with fanotify(7), not by polling: a notification group marks the whole private
tmpfs that holds every testbed (fanotify_mark(2), FAN_MARK_MOUNT) for FAN_MODIFY and
FAN_CLOSE_WRITE. Each event carries the writer's pid and an open descriptor of the file written
(fanotify_init(2), FAN_CLASS_NOTIF): the path comes from /proc/self/fd, the content through the
descriptor. A plug's decision is the first event written by the agent's pid, in that plug's device
directory, on `authorized` or on a temporary `authorized.XXXXXX` (umockdev_testbed_set_attribute
writes a temporary file and renames it), whose content is `0`. Its time is taken when the read(2)
of the fanotify descriptor that returned it comes back.

The agents' own state (holdfastd's journal, usbguard's rules and audit log) lives on a second,
unmarked tmpfs: both write to RAM, and their bookkeeping does not flood the fanotify queue.

Plugs are interleaved so that both agents share the machine's background noise: both daemons run
for the whole benchmark; each of ROUNDS rounds plugs PLUGS/ROUNDS sticks into holdfastd, then as
many into usbguard-daemon; each agent first gets WARMUP uncounted plugs. Only one agent is plugged
at a time. Each plug uses a new port (`usb1/1-1`, `1-2`, …) and serial. After the decision the
agent gets GAP ms to finish its bookkeeping, then holdfastd's stick is unplugged (`remove`
uevent, then the files go), then GAP ms more before the next plug. usbguard's sticks stay plugged
by default: it never redefines a sysfs path it has seen, so each plug needs a new port anyway.
With --usbguard-unplug the description file is unlinked instead, which Debian's 1.1.2 handles
(IN_DELETE) by removing the device from its testbed.

Run it through Benchmarks/usb/run, which starts it as root in fresh mount and network namespaces
under umockdev-wrapper: the script mounts tmpfs file systems and raises
net.unix.max_dgram_qlen, both of which must stay private to the benchmark.

stdout: one `USB-BENCH-JSON {...}` line, then one markdown table row. Progress goes to stderr.
"""

import argparse
import ctypes
import gc
import json
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

PRELOAD = "libumockdev-preload.so.0"
USBGUARD_DAEMON = "/usr/sbin/usbguard-daemon"

# The bus, as sysfs paths without /sys.
CONTROLLER = "/devices/pci0000:00/0000:00:14.0"
ROOT_HUB = CONTROLLER + "/usb1"

NS_PER_MS = 1_000_000


def log(message):
    print("usb-bench: " + message, file=sys.stderr, flush=True)


# MARK: fanotify (fanotify(7), fanotify_init(2), fanotify_mark(2); values from linux/fanotify.h)

FAN_CLASS_NOTIF = 0x0
FAN_CLOEXEC = 0x1
FAN_NONBLOCK = 0x2
FAN_MARK_ADD = 0x1
FAN_MARK_MOUNT = 0x10
FAN_MODIFY = 0x2
FAN_CLOSE_WRITE = 0x8
FAN_Q_OVERFLOW = 0x4000
FANOTIFY_METADATA_VERSION = 3
AT_FDCWD = -100
# The kernel's O_LARGEFILE (asm-generic/fcntl.h). Python's os.O_LARGEFILE is 0 on 64-bit builds,
# where the kernel sets it on event descriptors anyway.
O_LARGEFILE = 0o100000

# struct fanotify_event_metadata { __u32 event_len; __u8 vers; __u8 reserved;
#   __u16 metadata_len; __aligned_u64 mask; __s32 fd; __s32 pid; }
EVENT = struct.Struct("=IBBHQii")
assert EVENT.size == 24

libc = ctypes.CDLL(None, use_errno=True)
libc.fanotify_init.argtypes = [ctypes.c_uint, ctypes.c_uint]
libc.fanotify_init.restype = ctypes.c_int
libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]
libc.fanotify_mark.restype = ctypes.c_int
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
PR_SET_PDEATHSIG = 1  # linux/prctl.h


class Fanotify:
    """A notification-only fanotify group on one mount: every write to any file on it is
    reported, with the writer's pid, and the writers never wait for us."""

    def __init__(self, mountpoint):
        # FAN_NONBLOCK: reads never wait; waiting is select(2), with the plug's deadline.
        self.fd = libc.fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK, os.O_RDONLY | O_LARGEFILE)
        if self.fd < 0:
            error = ctypes.get_errno()
            raise OSError(error, "fanotify_init: " + os.strerror(error))
        if libc.fanotify_mark(self.fd, FAN_MARK_ADD | FAN_MARK_MOUNT, FAN_MODIFY | FAN_CLOSE_WRITE, AT_FDCWD, mountpoint.encode()) < 0:
            error = ctypes.get_errno()
            os.close(self.fd)
            raise OSError(error, "fanotify_mark %s: %s" % (mountpoint, os.strerror(error)))

    def read(self):
        """Every event queued now, as [(pid, fd, mask, read_at)], read_at being perf_counter_ns()
        right after the read(2) that returned the event. The caller closes every fd."""
        events = []
        while True:
            try:
                data = os.read(self.fd, EVENT.size * 256)
            except BlockingIOError:
                return events
            read_at = time.perf_counter_ns()
            offset = 0
            while offset + EVENT.size <= len(data):
                length, version, _reserved, _metadata_length, mask, fd, pid = EVENT.unpack_from(data, offset)
                problem = None
                if version != FANOTIFY_METADATA_VERSION or length < EVENT.size:
                    problem = "unexpected fanotify event layout (version %d, length %d)" % (version, length)
                elif mask & FAN_Q_OVERFLOW:
                    # More than 16384 events queued: a decision may have been lost unseen.
                    problem = "the fanotify queue overflowed; events were lost"
                if problem:
                    close_events(events)
                    raise RuntimeError(problem)
                offset += length
                if fd >= 0:
                    events.append((pid, fd, mask, read_at))

    def discard(self):
        """Drops what is queued: our own writes, an agent's bookkeeping of the previous plug."""
        close_events(self.read())

    def close(self):
        os.close(self.fd)


def close_events(events):
    for event in events:
        os.close(event[1])


def event_path(fd):
    try:
        return os.readlink("/proc/self/fd/%d" % fd)
    except OSError:
        return ""


def event_content(fd):
    try:
        return os.pread(fd, 16, 0)
    except OSError:
        return b""


# MARK: Device descriptions (umockdev-record's format: P: path, E: udev property, A: attribute,
# H: binary attribute in hex; a blank line between devices)


def hub_description(ports):
    """A PCI xHCI controller and its USB 2.0 root hub with `ports` ports. usbguard needs the
    controller: it refuses a USB device whose parent it has no description of."""
    descriptors = (
        # Device: USB 2.0, class 09 (hub), protocol 01 (single TT), 64-byte EP0, 1d6b:0002 (Linux
        # Foundation 2.0 root hub), bcdDevice 6.01, strings 3/2/1, one configuration.
        "12010002090001406b1d0200010603020101"
        # Configuration: 25 bytes, one interface, value 1, self-powered with remote wake-up.
        "09021900010100e000"
        # Interface 0: 09:00:00 (hub), one endpoint; endpoint 0x81, interrupt, 4 bytes, every 12.
        "090400000109000000"
        "0705810304000c"
    )
    return "\n".join([
        "P: " + CONTROLLER,
        "E: DRIVER=xhci_hcd",
        "E: PCI_CLASS=C0330",
        "E: PCI_ID=8086:A36D",
        "E: SUBSYSTEM=pci",
        "A: class=0x0c0330",
        "A: device=0xa36d",
        "A: vendor=0x8086",
        "",
        "P: " + ROOT_HUB,
        "E: DEVTYPE=usb_device",
        "E: DRIVER=usb",
        "E: SUBSYSTEM=usb",
        "E: BUSNUM=001",
        "E: DEVNUM=001",
        "E: PRODUCT=1d6b/2/601",
        "A: authorized=1",
        "A: authorized_default=1",
        "A: interface_authorized_default=1",
        "A: bConfigurationValue=1",
        "A: bDeviceClass=09",
        "A: bDeviceProtocol=01",
        "A: bDeviceSubClass=00",
        "A: bMaxPacketSize0=64",
        "A: bNumConfigurations=1",
        "A: bNumInterfaces= 1",
        "A: bcdDevice=0601",
        "A: busnum=1",
        "H: descriptors=" + descriptors,
        "A: devnum=1",
        "A: devpath=0",
        "A: idProduct=0002",
        "A: idVendor=1d6b",
        "A: manufacturer=Linux 6.1.0 xhci-hcd",
        "A: maxchild=%d" % ports,
        "A: product=xHCI Host Controller",
        "A: serial=0000:00:14.0",
        "A: speed=480",
        "A: version= 2.00",
        "",
    ])


STICK_DESCRIPTORS = (
    # Device: USB 2.0, class per interface, 64-byte EP0, 0781:5567 (SanDisk Cruzer Blade),
    # bcdDevice 1.00, strings 1/2/3, one configuration.
    "120100020000004081076755000101020301"
    # Configuration: 32 bytes, one interface, value 1, bus-powered, 100 mA.
    "090220000101008032"
    # Interface 0: 08:06:50 (mass storage, SCSI, bulk-only), two endpoints.
    "090400000208065000"
    # Bulk IN 0x81 and bulk OUT 0x02, 512 bytes.
    "07058102000200"
    "07050202000200"
)


def stick_path(port):
    return "%s/1-%d" % (ROOT_HUB, port)


def stick_description(port):
    """A SanDisk Cruzer Blade on root hub port `port`, with a serial of its own."""
    devnum = 2 + (port - 1) % 126  # USB addresses are 1…127, and the root hub has 1
    return "\n".join([
        "P: " + stick_path(port),
        "E: DEVTYPE=usb_device",
        "E: DRIVER=usb",
        "E: SUBSYSTEM=usb",
        "E: BUSNUM=001",
        "E: DEVNUM=%03d" % devnum,
        "E: PRODUCT=781/5567/100",
        "A: authorized=1",
        "A: avoid_reset_quirk=0",
        "A: bConfigurationValue=1",
        "A: bDeviceClass=00",
        "A: bDeviceProtocol=00",
        "A: bDeviceSubClass=00",
        "A: bMaxPacketSize0=64",
        "A: bMaxPower=100mA",
        "A: bNumConfigurations=1",
        "A: bNumInterfaces= 1",
        "A: bcdDevice=0100",
        "A: bmAttributes=80",
        "A: busnum=1",
        "H: descriptors=" + STICK_DESCRIPTORS,
        "A: devnum=%d" % devnum,
        "A: devpath=%d" % port,
        "A: idProduct=5567",
        "A: idVendor=0781",
        "A: manufacturer=SanDisk",
        "A: maxchild=0",
        # Without it usbguard retries reading the port's connect type, ~35 ms per device.
        "A: port/connect_type=hotplug",
        "A: product=Cruzer Blade",
        "A: removable=removable",
        "A: serial=4C53%016d" % port,
        "A: speed=480",
        "A: version= 2.00",
        "",
    ])


# MARK: Processes


def clean_environment(extra):
    """The environment for a program we start: ours without umockdev's variables and TMPDIR
    (each daemon gets its own), plus `extra`."""
    environment = {key: value for key, value in os.environ.items() if key not in ("LD_PRELOAD", "UMOCKDEV_DIR", "TMPDIR")}
    environment.update(extra)
    return environment


def die_with_parent():
    """In the child before exec: SIGKILL when the benchmark dies, however it dies (prctl(2))."""
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def write_file(path, text, mode):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)  # whatever the umask
        os.write(fd, text.encode())
    finally:
        os.close(fd)


class Daemon:
    """One agent process: its log, its memory, how to stop it."""

    name = "daemon"

    def __init__(self, log_path):
        self.log_path = log_path
        self.process = None
        self.root = None  # its testbed

    @property
    def pid(self):
        return self.process.pid

    def spawn(self, argv, environment):
        with open(self.log_path, "ab") as handle:
            self.process = subprocess.Popen(
                argv, env=environment, stdin=subprocess.DEVNULL, stdout=handle, stderr=handle,
                preexec_fn=die_with_parent,
            )

    def check_alive(self):
        if self.process.poll() is not None:
            raise RuntimeError("%s exited (status %s); its log:\n%s" % (self.name, self.process.returncode, self.log_tail()))

    def rss_kib(self):
        with open("/proc/%d/status" % self.pid) as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return None

    def stop(self):
        """SIGTERM, then SIGKILL after 5 s. Returns the exit status (None if killed)."""
        if self.process is None:
            return None
        if self.process.poll() is not None:
            return self.process.returncode
        self.process.terminate()
        try:
            return self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            log("%s did not stop within 5 s of SIGTERM; killing it" % self.name)
            self.process.kill()
            self.process.wait()
            return None

    def log_tail(self, lines=40):
        try:
            with open(self.log_path, errors="replace") as handle:
                return "".join(handle.readlines()[-lines:])
        except OSError:
            return "(no log)"

    def directory(self, port):
        """The stick's sysfs directory in this agent's testbed, as fanotify reports paths."""
        return self.root + "/sys" + stick_path(port)


class Holdfast(Daemon):
    """holdfastd on a umockdev testbed of ours."""

    name = "holdfastd"

    def __init__(self, binary, testbed, state, log_level):
        super().__init__(state + "/holdfastd.log")
        self.binary = binary
        self.testbed = testbed
        self.root = testbed.get_root_dir()
        self.state = state
        self.log_level = log_level

    def start(self, ports):
        # The bus before the agent: holdfastd decides what is present, then listens.
        self.testbed.add_from_string(hub_description(ports))
        directory = self.state + "/holdfast"
        os.mkdir(directory)
        os.chmod(directory, 0o755)
        config = directory + "/agent.conf"
        write_file(directory + "/policy.json", "{}\n", 0o644)
        write_file(config, "\n".join([
            "[agent]",
            "state_dir = %s/state" % directory,
            "control_socket = %s/run/control.sock" % directory,
            "policy = %s/policy.json" % directory,
            "log_level = notice",
            "[usb]",
            "rescan_interval = 1h",  # no rescan during the run: only uevents drive decisions
            "[print]",
            "enabled = no",
            # Kernel audit is machine-wide: a bench holdfastd leaves it alone.
            "[filewatch]",
            "enabled = no",
            "",
        ]), 0o644)
        # sd_notify(3)'s protocol: holdfastd sends READY=1 once every present device is decided
        # and its uevent monitor is listening.
        notify_path = directory + "/notify.sock"
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            notify.bind(notify_path)
            argv = [self.binary, "--config", config]
            if self.log_level:
                argv += ["--log-level", self.log_level]
            self.spawn(argv, clean_environment({
                "LD_PRELOAD": PRELOAD, "UMOCKDEV_DIR": self.root, "NOTIFY_SOCKET": notify_path,
            }))
            deadline = time.monotonic() + 20
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise RuntimeError("holdfastd sent no READY=1 within 20 s; its log:\n" + self.log_tail())
                readable, _, _ = select.select([notify], [], [], min(remaining, 0.1))
                self.check_alive()
                if readable and "READY=1" in notify.recv(4096).decode(errors="replace").splitlines():
                    return
        finally:
            notify.close()

    def prepare(self, port):
        return stick_description(port)

    def plug(self, prepared):
        # Creates the files, then sends the `add` uevent to every libudev monitor on the testbed.
        self.testbed.add_from_string(prepared)

    def unplug(self, port):
        path = "/sys" + stick_path(port)
        self.testbed.uevent(path, "remove")
        self.testbed.remove_device(path)


class Usbguard(Daemon):
    """usbguard-daemon with its umockdev backend, on a testbed it makes itself."""

    name = "usbguard-daemon"

    def __init__(self, binary, measured, state, debug, unplug):
        super().__init__(state + "/usbguard-daemon.log")
        self.binary = binary
        self.devices = measured + "/usbguard-devices"
        self.staging = measured + "/usbguard-staging"
        self.tmpdir = measured + "/usbguard-tmp"
        self.state = state
        self.debug = debug
        self.unplugs = unplug

    def start(self, ports):
        for directory in (self.devices, self.staging, self.tmpdir):
            os.mkdir(directory, 0o700)
        # The backend loads every file of the directory at start.
        write_file(self.devices + "/bus.umockdev", hub_description(ports), 0o644)
        directory = self.state + "/usbguard"
        os.mkdir(directory, 0o700)
        rules = directory + "/rules.conf"
        config = directory + "/usbguard-daemon.conf"
        # usbguard-rules.conf(5): hubs and HID pass; everything else meets the implicit target.
        write_file(rules, "allow with-interface one-of { 03:*:* 09:*:* }\n", 0o600)
        # usbguard-daemon.conf(5).
        write_file(config, "\n".join([
            "RuleFile=" + rules,
            "ImplicitPolicyTarget=block",
            "PresentDevicePolicy=apply-policy",
            "PresentControllerPolicy=keep",
            "InsertedDevicePolicy=apply-policy",
            "DeviceManagerBackend=umockdev",
            "IPCAllowedUsers=root",
            "AuditBackend=FileAudit",
            "AuditFilePath=" + directory + "/audit.log",
            "",
        ]), 0o600)
        # usbguard-daemon(8): -K no console logging, -P no permission check of our files.
        argv = [self.binary, "-K", "-c", config, "-P"]
        if self.debug:
            argv += ["-d", "-l", self.state + "/usbguard-debug.log"]
        self.spawn(argv, clean_environment({
            "LD_PRELOAD": PRELOAD, "USBGUARD_UMOCKDEV_DEVICEDIR": self.devices,
            # umockdev_testbed_new() makes its umockdev.XXXXXX here, on the measured tmpfs.
            "TMPDIR": self.tmpdir,
        }))
        self.wait_ready()

    def wait_ready(self):
        """Ready: its testbed holds the root hub, and its IPC lists the root hub (the daemon
        answers once the devices present at start are decided)."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            self.check_alive()
            if self.root is None:
                made = [name for name in os.listdir(self.tmpdir) if name.startswith("umockdev.")]
                if len(made) == 1:
                    self.root = self.tmpdir + "/" + made[0]
            if self.root and os.path.exists(self.root + "/sys" + ROOT_HUB + "/authorized"):
                listed = subprocess.run(
                    ["usbguard", "list-devices"], env=clean_environment({}), capture_output=True, text=True, timeout=10,
                )
                if listed.returncode == 0 and "1d6b:0002" in listed.stdout:
                    time.sleep(0.2)  # whatever follows its start-up scan
                    return
            time.sleep(0.05)
        raise RuntimeError("usbguard-daemon was not ready within 20 s; its log:\n" + self.log_tail())

    def prepare(self, port):
        # Written completely before the clock starts, on the file system of the watched
        # directory, so that the plug is one link(2).
        name = "stick-%d.umockdev" % port
        write_file(self.staging + "/" + name, stick_description(port), 0o644)
        return name

    def plug(self, prepared):
        os.link(self.staging + "/" + prepared, self.devices + "/" + prepared)

    def unplug(self, port):
        # usbguard never redefines a sysfs path it has seen, so every plug takes a new port
        # either way; unlinking only spares it the sticks that piled up.
        if self.unplugs:
            os.unlink(self.devices + "/stick-%d.umockdev" % port)


# MARK: Measuring


class Plug:
    """What one plug gave, in nanoseconds from the trigger."""

    def __init__(self):
        self.decision = None  # the agent's write of authorized=0
        self.returned = None  # the trigger call (add_from_string, link) returned
        self.first_write = None  # the agent's first write in the device's directory


class Bench:
    def __init__(self, fanotify, deadline_ms, gap_ms):
        self.fanotify = fanotify
        self.deadline_ns = deadline_ms * NS_PER_MS
        self.gap = gap_ms / 1000
        self.ports = {}

    def plug(self, agent, traced=False):
        port = self.ports[agent.name] = self.ports.get(agent.name, 0) + 1
        directory = agent.directory(port)
        prepared = agent.prepare(port)
        result = Plug()
        trace = []
        self.fanotify.discard()
        started = time.perf_counter_ns()
        agent.plug(prepared)
        result.returned = time.perf_counter_ns() - started
        while result.decision is None:
            remaining = started + self.deadline_ns - time.perf_counter_ns()
            if remaining <= 0:
                break
            readable, _, _ = select.select([self.fanotify.fd], [], [], remaining / 1e9)
            if not readable:
                continue
            events = self.fanotify.read()
            try:
                for pid, fd, mask, read_at in events:
                    # Other writers (this script making holdfastd's stick) are not looked at.
                    if pid != agent.pid or result.decision is not None:
                        continue
                    path = event_path(fd)
                    if os.path.dirname(path) != directory and not path.startswith(directory + "/"):
                        continue
                    if result.first_write is None:
                        result.first_write = read_at - started
                    if traced:
                        trace.append((read_at - started, mask, path[len(agent.root):], event_content(fd)))
                    if is_decision(path, fd, directory):
                        result.decision = read_at - started
            finally:
                close_events(events)
        if traced:
            # Printed after the plug, so that printing does not delay reading.
            log("trace %s port %d: trigger returned at +%.3f ms, decision at %s" % (
                agent.name, port, result.returned / NS_PER_MS,
                "none" if result.decision is None else "+%.3f ms" % (result.decision / NS_PER_MS),
            ))
            for offset, mask, path, content in trace:
                kinds = "+".join(name for bit, name in ((FAN_MODIFY, "MODIFY"), (FAN_CLOSE_WRITE, "CLOSE_WRITE")) if mask & bit)
                log("  +%.3f ms %s %s %r" % (offset / NS_PER_MS, kinds, path, content))
        if result.decision is None:
            agent.check_alive()
            log("%s: no authorized=0 on port %d within %d ms" % (agent.name, port, self.deadline_ns // NS_PER_MS))
        # The agent's work does not end with its write: holdfastd reads the device again and
        # journals the decision, usbguard audits it and handles its second `add`. Unplugging at
        # once would cut that short (holdfastd then drops the decision unjournaled: "device left
        # during its decision"), and the next plug would meet the rest. A stick stays in a while,
        # and the next comes later: the agent gets time after the decision and after the unplug.
        time.sleep(self.gap)
        agent.unplug(port)
        time.sleep(self.gap)
        return result


def is_decision(path, fd, directory):
    """The agent wrote `0` to the device's `authorized`, or to the temporary file that
    umockdev_testbed_set_attribute renames onto it."""
    if os.path.dirname(path) != directory:
        return False
    name = os.path.basename(path)
    if name != "authorized" and not name.startswith("authorized."):
        return False
    return event_content(fd).strip() == b"0"


def percentile(values, fraction):
    """Linear interpolation between the closest ranks (numpy's default) of sorted `values`."""
    if not values:
        return None
    position = (len(values) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


def ms(value):
    return None if value is None else round(value / NS_PER_MS, 3)


def summary(plugs, rss_kib):
    values = sorted(plug.decision for plug in plugs if plug.decision is not None)
    return {
        "p50_ms": ms(percentile(values, 0.50)),
        "p99_ms": ms(percentile(values, 0.99)),
        "mean_ms": ms(sum(values) / len(values)) if values else None,
        "max_ms": ms(values[-1]) if values else None,
        "timeouts": sum(1 for plug in plugs if plug.decision is None),
        "rss_kib": rss_kib,
    }


def median_of(plugs, attribute):
    return ms(percentile(sorted(getattr(plug, attribute) for plug in plugs if getattr(plug, attribute) is not None), 0.5))


def usbguard_version():
    """usbguard-daemon has no version option: the upstream version of Debian's package."""
    try:
        version = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", "usbguard"], env=clean_environment({}),
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "(unknown version)"
    match = re.match(r"(?:\d+:)?([0-9][0-9.]*)", version)
    return match.group(1) if match else "(unknown version)"


# MARK: Isolation


def same_namespace_as_init(kind):
    try:
        return os.stat("/proc/self/ns/" + kind).st_ino == os.stat("/proc/1/ns/" + kind).st_ino
    except OSError:
        return False


def private_uevent_queue():
    """umockdev delivers uevents over a Unix datagram socket, and a sender facing a full queue
    fails (a kernel netlink socket would drop and report ENOBUFS instead). The queue holds
    net.unix.max_dgram_qlen datagrams, 10 by default. The setting is per network namespace:
    raising it in ours leaves the machine's as it is."""
    with open("/proc/sys/net/unix/max_dgram_qlen", "w") as handle:
        handle.write("4096")


def mount_tmpfs(path):
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "mode=0755,nosuid,nodev,size=512m", "holdfast-usb-bench", path],
        env=clean_environment({}), check=True,
    )


def unmount(path):
    result = subprocess.run(["umount", path], env=clean_environment({}), capture_output=True)
    if result.returncode != 0:
        # umockdev's testbed keeps a listening Unix socket bound in its directory (its ioctl
        # server, `ioctl/_default`) until this process exits, which keeps the mount busy: detach
        # it now (umount(8) -l); the kernel frees it when that socket goes.
        subprocess.run(["umount", "-l", path], env=clean_environment({}), check=True)


def copy_logs(state, destination):
    os.makedirs(destination, exist_ok=True)
    for name in ("holdfastd.log", "usbguard-daemon.log", "usbguard-debug.log", "usbguard/audit.log"):
        if os.path.exists(state + "/" + name):
            shutil.copy(state + "/" + name, destination + "/" + os.path.basename(name))


# MARK: Main


def arguments():
    parser = argparse.ArgumentParser(description="USB decision latency: holdfastd against usbguard-daemon under umockdev.")
    parser.add_argument("--holdfastd", required=True, help="the release holdfastd")
    parser.add_argument("--usbguard-daemon", default=USBGUARD_DAEMON)
    parser.add_argument("--plugs", type=int, default=1000, help="counted plugs per agent (default 1000)")
    parser.add_argument("--warmup", type=int, default=20, help="uncounted plugs per agent first (default 20)")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds (default 10)")
    parser.add_argument("--deadline-ms", type=int, default=2000, help="a plug without a decision by then is a timeout (default 2000)")
    parser.add_argument("--gap-ms", type=float, default=10, help="pause after each decision and after each unplug (default 10)")
    parser.add_argument("--usbguard-unplug", action="store_true", help="unlink each description after its decision, so usbguard drops the stick")
    parser.add_argument("--holdfast-log-level", help="holdfastd's --log-level (e.g. debug)")
    parser.add_argument("--usbguard-debug", action="store_true", help="usbguard-daemon -d, logged to a file")
    parser.add_argument("--trace", type=int, default=0, help="print the agents' writes during their first N counted plugs")
    parser.add_argument("--log-dir", help="copy the daemons' logs there at the end")
    options = parser.parse_args()
    if options.plugs < 1 or options.rounds < 1 or options.warmup < 0:
        parser.error("--plugs and --rounds must be positive, --warmup not negative")
    options.rounds = min(options.rounds, options.plugs)
    return options


def main():
    options = arguments()
    if os.geteuid() != 0:
        sys.exit("usb-bench: must run as root (mounts, usbguard-daemon)")
    if same_namespace_as_init("net") or same_namespace_as_init("mnt"):
        sys.exit("usb-bench: run me through Benchmarks/usb/run (in fresh mount and network namespaces)")
    if PRELOAD not in os.environ.get("LD_PRELOAD", ""):
        sys.exit("usb-bench: run me under umockdev-wrapper (through Benchmarks/usb/run)")
    for binary in (options.holdfastd, options.usbguard_daemon):
        if not os.access(binary, os.X_OK):
            sys.exit("usb-bench: %s is not an executable" % binary)
    private_uevent_queue()
    # SIGTERM unwinds through the finally below, as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    began = time.monotonic()
    base = os.path.realpath(tempfile.mkdtemp(prefix="holdfast-usb-bench."))
    measured, state = base + "/measured", base + "/state"
    mounted = []
    agents = []
    fanotify = None
    testbed = None
    try:
        for path in (measured, state):
            os.mkdir(path, 0o755)
            mount_tmpfs(path)
            mounted.append(path)

        # umockdev_testbed_new() makes its directory in $TMPDIR, which must be on the measured
        # tmpfs; GLib reads TMPDIR once, so it is set before gi is loaded.
        os.environ["TMPDIR"] = measured
        import gi
        gi.require_version("UMockdev", "1.0")
        from gi.repository import UMockdev

        testbed = UMockdev.Testbed.new()
        if not testbed.get_root_dir().startswith(measured + "/"):
            raise RuntimeError("the testbed is at %s, not on the measured tmpfs" % testbed.get_root_dir())
        fanotify = Fanotify(measured)

        ports = options.warmup + options.plugs
        holdfast = Holdfast(os.path.realpath(options.holdfastd), testbed, state, options.holdfast_log_level)
        usbguard = Usbguard(options.usbguard_daemon, measured, state, options.usbguard_debug, options.usbguard_unplug)
        for agent in (holdfast, usbguard):
            agents.append(agent)
            log("starting %s" % agent.name)
            agent.start(ports)
        log("both agents ready (holdfastd pid %d, usbguard-daemon pid %d); %d warm-up plugs each, then %d plugs each in %d rounds" % (
            holdfast.pid, usbguard.pid, options.warmup, options.plugs, options.rounds))

        bench = Bench(fanotify, options.deadline_ms, options.gap_ms)
        for agent in agents:
            warm = [bench.plug(agent) for _ in range(options.warmup)]
            lost = sum(1 for plug in warm if plug.decision is None)
            if lost:
                log("%s: %d of %d warm-up plugs timed out" % (agent.name, lost, options.warmup))
        plugs = {agent.name: [] for agent in agents}
        for round_index in range(options.rounds):
            # A remainder goes to the first rounds.
            count = options.plugs // options.rounds + (1 if round_index < options.plugs % options.rounds else 0)
            for agent in agents:
                done = plugs[agent.name]
                for _ in range(count):
                    done.append(bench.plug(agent, traced=len(done) < options.trace))
            log("round %d/%d: %s" % (round_index + 1, options.rounds, "; ".join(
                "%s p50 %s ms" % (agent.name, median_of(plugs[agent.name][-count:], "decision")) for agent in agents
            )))

        for agent in agents:
            agent.check_alive()
        rss = {agent.name: agent.rss_kib() for agent in agents}
        elapsed = time.monotonic() - began
        results = {
            "plugs": options.plugs,
            "holdfast": summary(plugs[holdfast.name], rss[holdfast.name]),
            "usbguard": summary(plugs[usbguard.name], rss[usbguard.name]),
            "warmup": options.warmup,
            "rounds": options.rounds,
            "usbguard_version": usbguard_version(),
            "elapsed_s": round(elapsed, 1),
        }
        # Where the time goes (medians): what is umockdev's, what is the agent's.
        log("holdfastd: add_from_string (umockdev, in this script) returned at %s ms; decision %s ms" % (
            median_of(plugs[holdfast.name], "returned"), results["holdfast"]["p50_ms"]))
        log("usbguard-daemon: first write to its testbed (after inotify and parsing the file) at %s ms; decision %s ms" % (
            median_of(plugs[usbguard.name], "first_write"), results["usbguard"]["p50_ms"]))
        log("finished in %.1f s" % elapsed)
    finally:
        for agent in reversed(agents):
            status = agent.stop()
            if status not in (0, None):
                log("%s exited with status %s; its log:\n%s" % (agent.name, status, agent.log_tail()))
        if fanotify is not None:
            fanotify.close()
        # The testbed's finalizer removes its directory (and aborts the process if it is gone
        # already): let it run now, while the tmpfs is mounted.
        for agent in agents:
            agent.testbed = None
        testbed = None
        gc.collect()
        if options.log_dir and os.path.isdir(state):
            copy_logs(state, options.log_dir)
        for path in reversed(mounted):
            unmount(path)
        shutil.rmtree(base, ignore_errors=True)

    print_results(results)


def print_results(results):
    holdfast, usbguard = results["holdfast"], results["usbguard"]
    print("USB-BENCH-JSON " + json.dumps(results, sort_keys=True), flush=True)

    def number(value, digits=2):
        return "n/a" if value is None else "%.*f" % (digits, value)

    ratio = "n/a"
    if holdfast["p99_ms"] is not None and usbguard["p99_ms"]:
        ratio = "%.2f" % (holdfast["p99_ms"] / usbguard["p99_ms"])
    rss_mib = None if holdfast["rss_kib"] is None else holdfast["rss_kib"] / 1024
    print(
        "| USB decision, device appears → authorized=0 ({plugs:,} plugs, umockdev) "
        "| p50 {hp50} ms, p99 {hp99} ms; holdfastd RSS {rss} MiB "
        "| usbguard-daemon {version}, umockdev backend, same trigger "
        "| p50 {up50} ms, p99 {up99} ms "
        "| p99 {ratio}× the anchor's |".format(
            plugs=results["plugs"], hp50=number(holdfast["p50_ms"]), hp99=number(holdfast["p99_ms"]),
            rss=number(rss_mib, 1), version=results["usbguard_version"],
            up50=number(usbguard["p50_ms"]), up99=number(usbguard["p99_ms"]), ratio=ratio,
        ),
        flush=True,
    )


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        log("interrupted; both daemons stopped, the tmpfs unmounted")
        sys.exit(130)
    except (RuntimeError, OSError, subprocess.SubprocessError) as error:
        log("error: %s" % error)
        sys.exit(1)
