// CCups: libcups as PrintGuard sees it. PrintGuard is the only module that imports this.
// Debian 12 ships no cups.pc, so the module map links "cups" directly.
#ifndef HOLDFAST_CCUPS_SHIM_H
#define HOLDFAST_CCUPS_SHIM_H

#include <cups/cups.h>
#include <cups/ipp.h>

#endif
