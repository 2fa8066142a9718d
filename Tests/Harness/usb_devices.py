"""USB devices as umockdev descriptions for the harness (usb_testbed.py): a root hub, a keyboard, a
stick, a keyboard with a card reader — their sysfs attributes and real descriptor bytes. Shared by
the USB demo (scripts/usb-demo.py) and the offboarding acceptance (Tests/acceptance/offboarding.py).
"""

CONTROLLER = "/devices/pci0000:00/0000:00:14.0"
HUB = "/sys" + CONTROLLER + "/usb1"


def descriptors(vendor, product, interfaces, device_class=(0, 0, 0)):
    """Device descriptor + one configuration with the given (number, class, subclass, protocol)."""
    body = b""
    for number, code, subclass, protocol in interfaces:
        body += bytes([9, 4, number, 0, 1, code, subclass, protocol, 0, 7, 5, 0x81, 2, 0, 2, 0])
    total = 9 + len(body)
    config = bytes([9, 2, total & 0xFF, total >> 8, len(interfaces), 1, 0, 0x80, 50]) + body
    device = bytes([18, 1, 0, 2, *device_class, 64, vendor & 0xFF, vendor >> 8, product & 0xFF, product >> 8, 0, 1, 1, 2, 3, 1])
    return (device + config).hex().upper()


def block(port, vendor, product, name, interfaces, serial=None, device_class=(0, 0, 0)):
    path = CONTROLLER + ("/usb1" if port is None else "/usb1/1-" + port)
    lines = [
        "P: " + path, "E: DEVTYPE=usb_device", "E: SUBSYSTEM=usb", "A: authorized=1",
        "A: bDeviceClass=%02x" % device_class[0], "A: idVendor=%04x" % vendor, "A: idProduct=%04x" % product,
        "A: product=" + name, "A: speed=480", "H: descriptors=" + descriptors(vendor, product, interfaces, device_class),
    ]
    if port is None:
        lines += ["A: authorized_default=1", "A: interface_authorized_default=1"]
    else:
        lines.append("A: port/connect_type=hotplug")
    if serial:
        lines.append("A: serial=" + serial)
    return "\n".join(lines) + "\n"


ROOT_HUB = block(None, 0x1D6B, 0x0002, "xHCI Host Controller", [(0, 9, 0, 0)], device_class=(9, 0, 1))
KEYBOARD = lambda port: block(port, 0x046D, 0xC31C, "USB Keyboard", [(0, 3, 1, 1), (1, 3, 0, 0)])  # noqa: E731
STICK = lambda port, serial: block(port, 0x0781, 0x5567, "Cruzer Blade", [(0, 8, 6, 0x50)], serial)  # noqa: E731
COMPOSITE = lambda port: block(port, 0x04F2, 0x0833, "Keyboard with card reader", [(0, 3, 1, 1), (1, 8, 6, 0x50)])  # noqa: E731
