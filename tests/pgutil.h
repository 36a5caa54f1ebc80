/*  =========================================================================
    pgutil - a real PostgreSQL server for a C test (tests/pgserver.sh)

    pgu_server_start makes a fresh directory in /tmp, starts a server
    there on a free port (127.0.0.1 only) and a watcher (pgserver.sh
    watch) that stops it and removes the directory when this process
    ends in any way, a crash or a kill -9 included; pgu_server_destroy
    does the same at once.  In between, the test may stop, kill -9 and
    start the server again: same data, same port, same conninfo.

    Nothing here uses criterion (a child program may link it): every
    helper returns 0 or -1 and fills self->error.  Needs libpq.
    =========================================================================
*/

#ifndef HERALD_PGUTIL_H_INCLUDED
#define HERALD_PGUTIL_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct {
    char dir [128];             //  the server's directory
    char conninfo [256];        //  "host=127.0.0.1 port=N dbname=herald user=herald"
    int port;
    bool running;
    pid_t watcher;              //  pgserver.sh watch DIR
    int watch_fd;               //  the write end of its stdin (-1: none)
    char error [512];
} pgu_server_t;

//  Start a server in a fresh directory.  Returns 0, or -1 with
//  self->error (the script's own words).  Bounded (~30 s).
int
    pgu_server_start (pgu_server_t *self);

//  Stop it cleanly (killed after 10 s), keeping its data.  0 or -1.
int
    pgu_server_stop (pgu_server_t *self);

//  kill -9 the postmaster and its backends (a crash): the next start
//  recovers from the WAL.  0 or -1.
int
    pgu_server_kill (pgu_server_t *self);

//  Start it again after stop or kill, on the same data and port.  0 or -1.
int
    pgu_server_restart (pgu_server_t *self);

//  Stop it, remove its directory, reap the watcher.  Safe to call twice
//  and on a server whose start failed.
void
    pgu_server_destroy (pgu_server_t *self);

//  A fresh database name on the server (dropped first when it exists)
//  and its conninfo in conninfo.  0 or -1.
int
    pgu_database_new (pgu_server_t *self, const char *name, char *conninfo, size_t size);

//  Run sql (any number of statements) on conninfo; with out, the first
//  column of the first row of the last result (or "" when none).  0, or
//  -1 with the server's message in error (when given).
int
    pgu_exec (const char *conninfo, const char *sql, char *out, size_t out_size,
              char *error, size_t error_size);

//  Every row of query on conninfo as text, one line per row, columns
//  separated by '|', NULL as \N: for comparing two read models row for
//  row (order the query).  malloc'd, caller frees; NULL with error.
char *
    pgu_dump (const char *conninfo, const char *query, char *error, size_t error_size);

#endif
