/*  =========================================================================
    herald_disk - the free-space guard of the data directory's file system

    The broker refuses PUBLISH with `overloaded` while the file system that
    holds the data directory has less free space than --min-free, so that
    RocksDB never meets a full disk in normal operation: a write that fails
    half-way leaves the broker unable to say what was stored, and RocksDB
    needs room of its own to flush memtables and compact.  Reads go on.

    Free space is measured with statvfs on a timer (herald_disk_poll, every
    HERALD_DISK_POLL_MS) and, when the line is close, before each commit
    (herald_disk_admit).  Between measurements the guard counts what it
    admitted, twice (the WAL now, a table file at the next flush), so it
    measures again before an estimate could cross the line.  Publishing
    resumes by itself once free space is back above the line plus a small
    margin, so that a broker at the line does not flap.

    One thread owns a herald_disk_t: the broker loop.
    =========================================================================
*/

#ifndef HERALD_DISK_H_INCLUDED
#define HERALD_DISK_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "herald_config.h"

#define HERALD_DISK_POLL_MS     100     //  between two timed measurements
#define HERALD_DISK_RETRY_MS    1000    //  the retry hint of a refusal

typedef struct _herald_disk_t herald_disk_t;

//  A guard for the file system holding path (copied), refusing below
//  min_free (0 bytes or 0%: never).  Measures once before it returns.
//  Caller owns; NULL when out of memory.
herald_disk_t *
    herald_disk_new (const char *path, herald_space_t min_free);

//  Free the guard; NULL-safe, clears *self_p.
void
    herald_disk_destroy (herald_disk_t **self_p);

//  Measure free space now and update the state, logging when publishing
//  stops or resumes.  Returns true when the state changed.
bool
    herald_disk_poll (herald_disk_t *self);

//  What RocksDB will write on its own soon (the memtables, at their next
//  flush): fn (arg) is asked at every measurement, and the line is then
//  min_free plus its answer, so that a flush never meets a full disk.
typedef uint64_t (herald_disk_reserve_fn) (void *arg);
void
    herald_disk_set_reserve (herald_disk_t *self, herald_disk_reserve_fn *fn, void *arg);

//  True when the timer's next measurement is due (now_ms from zclock_mono);
//  *wait_ms gets the ms until it (0 when due).
bool
    herald_disk_due (herald_disk_t *self, int64_t now_ms, int64_t *wait_ms);

//  Before a commit of bytes: measures first when the estimate is near the
//  line.  True when the commit may be written; false when publishing is
//  refused for space (the caller refuses the commit's requests).
bool
    herald_disk_admit (herald_disk_t *self, size_t bytes);

//  True while PUBLISH is refused for space.
bool
    herald_disk_low (herald_disk_t *self);

//  Count one PUBLISH refused for space and return the ERROR's message for
//  it, whole however long the path (borrowed: valid until the next call).
const char *
    herald_disk_refusal (herald_disk_t *self);

//  Bytes available on the file system at the last measurement (df's
//  Avail: what an unprivileged process may still write).
uint64_t
    herald_disk_free (herald_disk_t *self);

//  The line in bytes (a percentage converted at the last measurement);
//  0 when the guard is off.
uint64_t
    herald_disk_threshold (herald_disk_t *self);

//  The memtable bytes kept free above the line at the last measurement.
uint64_t
    herald_disk_reserve (herald_disk_t *self);

//  PUBLISH requests refused for space since start.
uint64_t
    herald_disk_refused (herald_disk_t *self);

//  statvfs calls made (timer and commits), for the cost figures.
uint64_t
    herald_disk_polls (herald_disk_t *self);

//  Write a size for people: "812.4 MiB", "3 B".  Returns buffer.
const char *
    herald_disk_format (uint64_t bytes, char *buffer, size_t size);

#endif
