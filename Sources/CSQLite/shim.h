// CSQLite: SQLite as HoldfastStore sees it. HoldfastStore is the only module that imports this.
#ifndef HOLDFAST_CSQLITE_SHIM_H
#define HOLDFAST_CSQLITE_SHIM_H

#include <sqlite3.h>

// SQLITE_TRANSIENT is a macro casting -1 to a function pointer; Swift cannot spell it.
// "SQLite makes its own private copy of the data immediately, before the sqlite3_bind_*() routine returns."
static inline sqlite3_destructor_type holdfast_sqlite_transient(void) { return SQLITE_TRANSIENT; }

#endif
