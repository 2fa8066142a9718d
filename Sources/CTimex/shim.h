// CTimex: adjtimex(2) from glibc's <sys/timex.h>, which Swift's Glibc module does not include.
// Posture reads the kernel clock's synchronization state through it (the clock-sync check).
// Posture is the only module that imports this.
#ifndef HOLDFAST_CTIMEX_SHIM_H
#define HOLDFAST_CTIMEX_SHIM_H

#include <sys/timex.h>

/// A read-only query (modes = 0): the return value is the clock state (TIME_OK … TIME_ERROR) or
/// -1 with errno; `status`, `maxerror` and `esterror` are copied out.
static inline int holdfast_adjtimex_query(int *status, long *maxerror, long *esterror) {
    struct timex value = { 0 };
    int state = adjtimex(&value);
    *status = value.status;
    *maxerror = value.maxerror;
    *esterror = value.esterror;
    return state;
}

#endif
