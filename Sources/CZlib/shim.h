// CZlib: zlib as PrintGuard sees it (inflating PDF object streams to count pages). PrintGuard is
// the only module that imports this.
#ifndef HOLDFAST_CZLIB_SHIM_H
#define HOLDFAST_CZLIB_SHIM_H

#include <zlib.h>

/// inflateInit is a macro; Swift cannot call it.
static inline int holdfast_inflate_init(z_stream *stream) {
    return inflateInit(stream);
}

#endif
