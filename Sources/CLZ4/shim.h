// CLZ4: liblz4's frame API as HoldfastCompression sees it. apt stores its package lists as
// `*_Packages.lz4` (LZ4 frames) on Debian images; Posture reads the security lists through it.
// HoldfastCompression is the only module that imports this.
#ifndef HOLDFAST_CLZ4_SHIM_H
#define HOLDFAST_CLZ4_SHIM_H

#include <lz4frame.h>

/// LZ4F_VERSION is a macro; Swift imports it, but say it once here with the reason.
static inline unsigned holdfast_lz4f_version(void) {
    return LZ4F_VERSION;
}

#endif
