// CAudit: libaudit and libauparse as FileWatch sees them. FileWatch is the only module that imports this.
#ifndef HOLDFAST_CAUDIT_SHIM_H
#define HOLDFAST_CAUDIT_SHIM_H

#include <libaudit.h>
#include <auparse.h>

#endif
