/*  =========================================================================
    herald_log - heraldd's log lines on stderr, filtered by --log-level

    "heraldd: LEVEL: message" per line.  When stderr is the systemd
    journal's stream (JOURNAL_STREAM names its device and inode, as
    systemd sets it for a service) each line starts with the level's
    syslog priority, "<3>" error, "<4>" warn, "<6>" info, "<7>" debug
    (sd-daemon(3)), so that journalctl -p filters them.  The level is set
    at start and again on SIGHUP (herald_daemon); it is an atomic that
    every thread reads.
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

//  The level in force, "error" .. "debug".
const char *
    herald_log_level (void);

//  True when lines carry a journald priority prefix: stderr is the stream
//  JOURNAL_STREAM names ("DEV:INODE").  Looked at on the first call (or
//  the first line) and kept.
bool
    herald_log_journal (void);

//  Write one unfiltered line as the error level would be, without the
//  level's name: "heraldd: message", with "<3>" first under the journal.
//  For the start-up refusals main() prints.
void
    herald_log_fatal (const char *format, ...)
    __attribute__ ((format (printf, 1, 2)));

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
