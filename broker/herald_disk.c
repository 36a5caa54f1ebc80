/*  =========================================================================
    herald_disk - the free-space guard of the data directory's file system

    DESIGN

    States, one bool (low) and the line it is measured against:

        ok   --- a measurement: free < line ----------------->  low
        low  --- a measurement: free >= line + line/32 ------>  ok

    The margin on the way back (1/32 of the line: 32 MiB for 1 GiB) keeps
    a broker that sits at the line from flapping, and from logging each
    flap: a transition is logged, a steady state is not.

    Measuring is statvfs, about the cost of two plain system calls (12 us
    on a loaded 2-core VM; docs/broker.md has the figures).  The timer measures every HERALD_DISK_POLL_MS whatever
    happens, for STATUS and to see space come back (or go: RocksDB's
    flushes and compactions, other processes).  A commit measures only
    when the estimate "free at the last measurement minus twice what was
    admitted since" would fall below the line with it: far from the line a
    commit costs a subtraction; near it, one statvfs.  Twice, because
    every byte committed is written once to the WAL now and once more to a
    table file when its memtable is flushed, before the WAL file goes.

    A statvfs that fails (it should not, on a directory the store holds
    open) keeps the last state and is logged once; the guard never refuses
    publishing for want of a measurement.
    =========================================================================
*/

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <czmq.h>
#include "herald_disk.h"
#include "herald_log.h"

struct _herald_disk_t {
    char *path;
    herald_space_t min_free;
    uint64_t free;                  //  bytes available at the last measurement
    uint64_t line;                  //  min_free in bytes at the last measurement
    uint64_t need;                  //  line + reserve: publishing stops below it
    uint64_t reserve;               //  unflushed memtable bytes at the last measurement
    herald_disk_reserve_fn *reserve_fn; //  asked for them (herald_disk_set_reserve)
    void *reserve_arg;
    uint64_t admitted;              //  bytes admitted since the last measurement
    bool low;                       //  PUBLISH refused for space
    bool measured;                  //  a statvfs succeeded at least once
    bool failing;                   //  the last statvfs failed (logged once)
    int64_t next_poll;              //  zclock_mono of the timer's next measurement
    uint64_t refused;
    uint64_t polls;
    char *message;                  //  the last refusal's text
    size_t message_size;
};

herald_disk_t *
herald_disk_new (const char *path, herald_space_t min_free)
{
    herald_disk_t *self = (herald_disk_t *) calloc (1, sizeof (herald_disk_t));
    if (!self)
        return NULL;
    self->path = strdup (path);
    self->message_size = strlen (path) + 256;
    self->message = (char *) malloc (self->message_size);
    if (!self->path || !self->message) {
        herald_disk_destroy (&self);
        return NULL;
    }
    self->min_free = min_free;
    herald_disk_poll (self);
    return self;
}

void
herald_disk_destroy (herald_disk_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    herald_disk_t *self = *self_p;
    free (self->path);
    free (self->message);
    free (self);
    *self_p = NULL;
}

const char *
herald_disk_format (uint64_t bytes, char *buffer, size_t size)
{
    static const char *units [] = { "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
    if (bytes < 1024) {
        snprintf (buffer, size, "%" PRIu64 " B", bytes);
        return buffer;
    }
    double value = (double) bytes / 1024.0;
    int unit = 0;
    while (value >= 1024.0 && unit < 5) {
        value /= 1024.0;
        unit++;
    }
    snprintf (buffer, size, "%.1f %s", value, units [unit]);
    return buffer;
}

//  "1.0 GiB", or "1.0 GiB + 12.3 MiB of memtables to flush" with a reserve.
static void
s_line_text (herald_disk_t *self, char *buffer, size_t size)
{
    char line [32], reserve [32];
    herald_disk_format (self->line, line, sizeof (line));
    if (self->need > self->line) {
        herald_disk_format (self->need - self->line, reserve, sizeof (reserve));
        snprintf (buffer, size, "%s + %s of memtables to flush", line, reserve);
    }
    else
        snprintf (buffer, size, "%s", line);
}

bool
herald_disk_poll (herald_disk_t *self)
{
    self->polls++;
    self->next_poll = zclock_mono () + HERALD_DISK_POLL_MS;
    struct statvfs info;
    if (statvfs (self->path, &info) != 0) {
        if (!self->failing)
            herald_log ("warn", "cannot measure free space on %s: %s; the disk space "
                        "guard keeps its last state", self->path, strerror (errno));
        self->failing = true;
        return false;
    }
    if (self->failing)
        herald_log ("info", "free space on %s can be measured again", self->path);
    self->failing = false;
    self->measured = true;
    self->admitted = 0;
    uint64_t unit = info.f_frsize? info.f_frsize: info.f_bsize;
    self->free = (uint64_t) info.f_bavail * unit;
    if (self->min_free.percent) {
        //  Whole blocks first: a petabyte's bytes times 99 would overflow.
        uint64_t blocks = (uint64_t) info.f_blocks / 100 * self->min_free.percent
                        + (uint64_t) info.f_blocks % 100 * self->min_free.percent / 100;
        self->line = blocks * unit;
        if (self->min_free.lesser && self->min_free.bytes < self->line)
            self->line = self->min_free.bytes;
    }
    else
        self->line = self->min_free.bytes;
    //  What the memtables hold is written again as table files when they
    //  are flushed, before the WAL that holds it now can go: keep room for
    //  it above the line, or a flush would be the write that fills the disk.
    //  Measured with free space, also when a commit asks (herald_disk_admit):
    //  the commits admitted since the last measurement grew the memtables
    //  as much as the WAL.
    self->reserve = self->reserve_fn? self->reserve_fn (self->reserve_arg): 0;
    self->need = self->line;
    if (self->line && self->line <= UINT64_MAX - self->reserve)
        self->need = self->line + self->reserve;

    bool low = self->low;
    if (self->line == 0)
        low = false;
    else
    if (!self->low)
        low = self->free < self->need;
    else        //  free < line + line/32, without overflowing near 2^64
        low = self->free < self->need || self->free - self->need < self->line / 32;
    if (low == self->low)
        return false;
    self->low = low;
    char free_text [32], line_text [96];
    herald_disk_format (self->free, free_text, sizeof (free_text));
    s_line_text (self, line_text, sizeof (line_text));
    if (low)
        herald_log ("warn", "disk space low: %s free on %s, below min-free %s; "
                    "PUBLISH is refused (overloaded) until space returns; reads go on",
                    free_text, self->path, line_text);
    else
        herald_log ("info", "disk space back: %s free on %s (min-free %s); "
                    "publishing resumes", free_text, self->path, line_text);
    return true;
}

void
herald_disk_set_reserve (herald_disk_t *self, herald_disk_reserve_fn *fn, void *arg)
{
    self->reserve_fn = fn;
    self->reserve_arg = arg;
}

bool
herald_disk_due (herald_disk_t *self, int64_t now_ms, int64_t *wait_ms)
{
    int64_t wait = self->next_poll - now_ms;
    *wait_ms = wait > 0? wait: 0;
    return wait <= 0;
}

bool
herald_disk_admit (herald_disk_t *self, size_t bytes)
{
    if (self->low)
        return false;
    //  No line, or no measurement to estimate from: nothing to guard.
    if (self->line == 0 || !self->measured)
        return true;
    uint64_t spent = 2 * (self->admitted + (uint64_t) bytes);
    if (self->free < spent || self->free - spent < self->need) {
        herald_disk_poll (self);
        if (self->low)
            return false;
    }
    self->admitted += bytes;
    return true;
}

bool
herald_disk_low (herald_disk_t *self)
{
    return self->low;
}

const char *
herald_disk_refusal (herald_disk_t *self)
{
    self->refused++;
    char free_text [32], line_text [96];
    herald_disk_format (self->free, free_text, sizeof (free_text));
    s_line_text (self, line_text, sizeof (line_text));
    snprintf (self->message, self->message_size,
              "disk space low: %s free on %s, below min-free %s; "
              "publishing resumes when space returns", free_text, self->path, line_text);
    return self->message;
}

uint64_t
herald_disk_free (herald_disk_t *self)
{
    return self->free;
}

uint64_t
herald_disk_threshold (herald_disk_t *self)
{
    return self->line;
}

uint64_t
herald_disk_reserve (herald_disk_t *self)
{
    return self->need - self->line;
}

uint64_t
herald_disk_refused (herald_disk_t *self)
{
    return self->refused;
}

uint64_t
herald_disk_polls (herald_disk_t *self)
{
    return self->polls;
}
