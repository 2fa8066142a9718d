// CUdev: libudev as DeviceGuard sees it. DeviceGuard is the only module that imports this.
// udev_list_entry_foreach is a macro; Swift walks the list with udev_list_entry_get_next instead.
#ifndef HOLDFAST_CUDEV_SHIM_H
#define HOLDFAST_CUDEV_SHIM_H

#include <libudev.h>

#endif
