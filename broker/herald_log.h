/*  =========================================================================
    herald_log - heraldd's log lines on stderr, filtered by --log-level

    "heraldd: LEVEL: message" per line.  The level is set once at start,
    before the broker's threads run, and only read afterwards.
    =========================================================================
*/

#ifndef HERALD_LOG_H_INCLUDED
#define HERALD_LOG_H_INCLUDED

#include <stdbool.h>
#include <czmq.h>

//  Write lines of level and above: "error", "warn", "info" or "debug".
//  An unknown name leaves the level as it was (info).
void
    herald_log_set_level (const char *level);

//  True when debug lines are written: callers skip building them otherwise.
bool
    herald_log_debug (void);

//  Write one line at level, unless the level filters it out.
void
    herald_log (const char *level, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

//  A client connection's name in log lines, its ROUTER identity in hex,
//  written into out; returns out.
const char *
    herald_log_peer (zframe_t *identity, char out [24]);

#endif
