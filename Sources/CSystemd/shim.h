// CSystemd: sd-bus from libsystemd, the D-Bus client HoldfastDBus speaks to logind (the sessions
// lockdown) and to a user's notification daemon with. Only its non-variadic calls are used
// (sd_bus_message_append_basic / read_basic and containers); HoldfastDBus is the only module that
// imports this.
#ifndef HOLDFAST_CSYSTEMD_SHIM_H
#define HOLDFAST_CSYSTEMD_SHIM_H

#include <systemd/sd-bus.h>

/// SD_BUS_ERROR_NULL is a macro (a compound initializer) Swift cannot see.
static inline sd_bus_error holdfast_bus_error_null(void) {
    sd_bus_error error = SD_BUS_ERROR_NULL;
    return error;
}

#endif
