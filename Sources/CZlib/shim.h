// CZlib: zlib as HoldfastCompression sees it (inflating PDF object streams to count pages, and
// gzip-compressed audit logs for replay). HoldfastCompression is the only module that imports this.
#ifndef HOLDFAST_CZLIB_SHIM_H
#define HOLDFAST_CZLIB_SHIM_H

#include <zlib.h>

/// inflateInit is a macro; Swift cannot call it.
static inline int holdfast_inflate_init(z_stream *stream) {
    return inflateInit(stream);
}

/// inflateInit2 with windowBits 15 + 32: zlib or gzip, told apart by the header.
static inline int holdfast_inflate_init_auto(z_stream *stream) {
    return inflateInit2(stream, 15 + 32);
}

#endif
