// CCups: libcups as PrintGuard sees it. PrintGuard is the only module that imports this.
// Debian 12 ships no cups.pc, so the module map links "cups" directly.
#ifndef HOLDFAST_CCUPS_SHIM_H
#define HOLDFAST_CCUPS_SHIM_H

#include <cups/cups.h>
#include <cups/ipp.h>
#include <sys/syscall.h>
#include <unistd.h>

/// An anonymous in-memory file (memfd_create with MFD_CLOEXEC) to stage cupsd.conf for GET/PUT.
static inline int holdfast_cups_memfd(void) {
    return (int)syscall(SYS_memfd_create, "holdfast-cups", 1u);
}

#endif
