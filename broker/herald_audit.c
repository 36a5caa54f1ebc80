/*  =========================================================================
    herald_audit - the broker's audit log: one JSON object per line

    DESIGN

    The callers (the broker loop, the ZAP handler) must never wait for a
    disk, a full pipe or a stalled log shipper: an attacker who can make
    the broker refuse things must not be able to slow it down by doing so.
    So a line is formatted in the caller's thread and put in a bounded
    queue; one writer thread of this class takes lines off in batches and
    write(2)s them.  A full queue (HERALD_AUDIT_QUEUE_LINES lines or
    HERALD_AUDIT_QUEUE_BYTES bytes) drops the new line and counts it.

        caller --[flood check]--[format]--> queue (ring) --> writer --> fd
                       |                                        |
                    keys (event, who): window, passed,       every 250 ms:
                    suppressed                               summaries

    Flood control: each (event, who) key has a one-second window that
    starts with its first line; the first HERALD_AUDIT_LINES_PER_S lines of
    a window pass, the rest are counted.  When the window is over (seen by
    the next line of that key, or by the writer's tick, whichever comes
    first) the count goes out as one summary line and the key starts
    afresh.  Keys idle for two windows are forgotten; at most
    HERALD_AUDIT_KEYS_MAX are kept, and a key that finds the table full
    shares the key (event, "*"), so an attacker cycling through addresses
    still gets at most 100 lines a second per event kind.

    A reopen (SIGHUP, logrotate) is a marker in the queue, so the lines
    before it go to the old file and the lines after to the new one.

    Stopping: destroy lets the writer drain the queue for at most
    HERALD_AUDIT_FLUSH_MS; a writer stuck in write(2) (a FIFO nobody
    reads) is then cancelled.  The writer enables cancellation only around
    its write(2), where it holds no lock.

    Threads: path, fd (after new) and warned belong to the writer; the
    ring, the keys and the flags are under mutex; the counters are atomic.
    =========================================================================
*/

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <czmq.h>

#include "herald_audit.h"
#include "herald_log.h"

#define S_SECOND_NS     1000000000LL
#define S_TICK_MS       250
#define S_BATCH_BYTES   (64 * 1024)
#define S_EVENT_MAX     32

//  The marker of a reopen in the queue (never freed, never written)
static char s_reopen_marker [1];

typedef struct {
    int64_t start_ns;           //  monotonic start of the current window
    uint32_t passed;            //  lines written in this window
    uint64_t suppressed;        //  lines held back in this window
    char event [S_EVENT_MAX];
    char *who;
} s_key_t;

struct _herald_audit_t {
    char *path;                 //  NULL for stderr
    int fd;                     //  the writer's after new
    bool warned;                //  the writer's: one warning per failing file
    pthread_t thread;
    pthread_mutex_t mutex;
    pthread_cond_t wake;        //  the writer waits here for lines
    pthread_cond_t idle;        //  destroy waits here for the writer to finish
    //  Under mutex
    char **ring;                //  HERALD_AUDIT_QUEUE_LINES slots
    size_t head, count, bytes;
    bool stopping, done;
    zhashx_t *keys;             //  "event\nwho" -> s_key_t
    //  Atomic
    _Atomic uint64_t dropped;
    _Atomic uint64_t suppressed;
};

static int64_t
s_mono_ns (void)
{
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    return (int64_t) now.tv_sec * S_SECOND_NS + now.tv_nsec;
}

//  "2026-12-02T17:05:01.123Z": the wall clock, UTC, milliseconds.
static void
s_timestamp (char out [48])
{
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r (&now.tv_sec, &tm);
    snprintf (out, 48, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
              tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
              (int) (now.tv_nsec / 1000000));
}

//  Open path for appending without ever blocking: a FIFO with no reader
//  fails (ENXIO) rather than waiting for one.  Returns the fd or -1.
static int
s_open (const char *path)
{
    int fd = open (path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0640);
    if (fd < 0)
        return -1;
    int flags = fcntl (fd, F_GETFL);
    if (flags >= 0)
        fcntl (fd, F_SETFL, flags & ~O_NONBLOCK);
    return fd;
}

static void
s_key_destroy (void **item_p)
{
    s_key_t *key = (s_key_t *) *item_p;
    if (key) {
        free (key->who);
        free (key);
        *item_p = NULL;
    }
}

//  Queue a line the caller allocated; takes ownership.  Under mutex.
static void
s_push (herald_audit_t *self, char *line)
{
    size_t len = line == s_reopen_marker? 0: strlen (line);
    if (self->count == HERALD_AUDIT_QUEUE_LINES
    ||  self->bytes + len > HERALD_AUDIT_QUEUE_BYTES) {
        if (line != s_reopen_marker) {
            atomic_fetch_add (&self->dropped, 1);
            free (line);
        }
        return;
    }
    self->ring [(self->head + self->count) % HERALD_AUDIT_QUEUE_LINES] = line;
    self->count++;
    self->bytes += len;
    pthread_cond_signal (&self->wake);
}

//  Format one line: {"ts":...,"event":...[,fields]}\n.  Caller owns.
static char *
s_line (const char *event, const char *fields)
{
    char ts [48];
    s_timestamp (ts);
    bool some = fields && *fields;
    size_t size = strlen (ts) + strlen (event) + (some? strlen (fields): 0) + 32;
    char *line = (char *) malloc (size);
    if (line)
        snprintf (line, size, "{\"ts\":\"%s\",\"event\":\"%s\"%s%s}\n", ts, event,
                  some? ",": "", some? fields: "");
    return line;
}

//  The summary of a window's suppressed lines.  Under mutex.
static void
s_summarise (herald_audit_t *self, s_key_t *key)
{
    size_t len = strlen (key->who);
    char *who = (char *) malloc (6 * len + 3);
    if (who) {
        herald_audit_escape (key->who, len, who, 6 * len + 3);
        char fields [64];
        snprintf (fields, sizeof fields, ",\"suppressed\":%" PRIu64, key->suppressed);
        char *both = zsys_sprintf ("\"who\":%s%s", who, fields);
        char *line = both? s_line (key->event, both): NULL;
        if (line)
            s_push (self, line);
        else
            atomic_fetch_add (&self->dropped, 1);
        zstr_free (&both);
        free (who);
    }
    else
        atomic_fetch_add (&self->dropped, 1);
    key->suppressed = 0;
}

//  Find or make the key of (event, who); NULL when out of memory.  Under
//  mutex.
static s_key_t *
s_key (herald_audit_t *self, const char *event, const char *who, int64_t now)
{
    char *name = zsys_sprintf ("%s\n%s", event, who);
    if (!name)
        return NULL;
    s_key_t *key = (s_key_t *) zhashx_lookup (self->keys, name);
    if (!key && zhashx_size (self->keys) >= HERALD_AUDIT_KEYS_MAX && strcmp (who, "*")) {
        zstr_free (&name);
        return s_key (self, event, "*", now);
    }
    if (!key) {
        key = (s_key_t *) calloc (1, sizeof (s_key_t));
        if (key)
            key->who = strdup (who);
        if (!key || !key->who) {
            void *item = key;
            s_key_destroy (&item);
            zstr_free (&name);
            return NULL;
        }
        snprintf (key->event, sizeof key->event, "%s", event);
        key->start_ns = now;
        zhashx_insert (self->keys, name, key);
    }
    zstr_free (&name);
    return key;
}

//  True when this line of (event, who) may be written now.  Under mutex.
static bool
s_admit (herald_audit_t *self, const char *event, const char *who, int64_t now)
{
    s_key_t *key = s_key (self, event, who, now);
    if (!key)
        return true;            //  no memory for flood control: let it through
    if (now - key->start_ns >= S_SECOND_NS) {
        if (key->suppressed)
            s_summarise (self, key);
        key->start_ns = now;
        key->passed = 0;
    }
    if (key->passed < HERALD_AUDIT_LINES_PER_S) {
        key->passed++;
        return true;
    }
    key->suppressed++;
    atomic_fetch_add (&self->suppressed, 1);
    return false;
}

//  The writer's tick: summarise the windows that are over (all of them
//  when stopping), forget keys idle for two.  Under mutex.
static void
s_tick (herald_audit_t *self, int64_t now, bool stopping)
{
    zlistx_t *idle = NULL;
    for (s_key_t *key = (s_key_t *) zhashx_first (self->keys); key;
         key = (s_key_t *) zhashx_next (self->keys)) {
        int64_t age = now - key->start_ns;
        if ((age >= S_SECOND_NS || stopping) && key->suppressed) {
            s_summarise (self, key);
            key->start_ns = now;
            key->passed = 0;
        }
        else
        if (age >= 2 * S_SECOND_NS) {
            if (!idle)
                idle = zlistx_new ();
            if (idle)
                zlistx_add_end (idle, (void *) zhashx_cursor (self->keys));
        }
    }
    if (idle) {
        //  zhashx's cursor names stay valid until their item is deleted
        for (const char *name = (const char *) zlistx_first (idle); name;
             name = (const char *) zlistx_next (idle)) {
            char *copy = strdup (name);
            if (copy) {
                zhashx_delete (self->keys, copy);
                free (copy);
            }
        }
        zlistx_destroy (&idle);
    }
}

static void
s_write_cleanup (void *arg)
{
    free (arg);
}

//  Write len bytes of batch to the file; false when it failed.  The only
//  place the writer can be cancelled (destroy on a stalled file).
static bool
s_write_all (herald_audit_t *self, char *batch, size_t len)
{
    volatile bool ok = true;    //  pthread_cleanup_push may setjmp
    int state;
    pthread_cleanup_push (s_write_cleanup, batch);
    pthread_setcancelstate (PTHREAD_CANCEL_ENABLE, &state);
    size_t done = 0;
    while (done < len) {
        ssize_t wrote = write (self->fd, batch + done, len - done);
        if (wrote < 0 && errno == EINTR)
            continue;
        if (wrote <= 0) {
            ok = false;
            break;
        }
        done += (size_t) wrote;
    }
    pthread_setcancelstate (PTHREAD_CANCEL_DISABLE, &state);
    pthread_cleanup_pop (0);
    return ok;
}

static void
s_reopen_file (herald_audit_t *self)
{
    if (!self->path)
        return;                 //  stderr is not reopened
    int fd = s_open (self->path);
    if (fd < 0) {
        herald_log ("warn", "audit-log %s: cannot open again (%s): still writing to the "
                    "file opened before", self->path, strerror (errno));
        return;
    }
    close (self->fd);
    self->fd = fd;
    self->warned = false;
}

static void *
s_writer (void *arg)
{
    herald_audit_t *self = (herald_audit_t *) arg;
    int state;
    pthread_setcancelstate (PTHREAD_CANCEL_DISABLE, &state);
    char *batch = NULL;
    pthread_mutex_lock (&self->mutex);
    while (true) {
        s_tick (self, s_mono_ns (), self->stopping);
        if (self->count == 0) {
            if (self->stopping)
                break;
            struct timespec until;
            clock_gettime (CLOCK_MONOTONIC, &until);
            until.tv_nsec += S_TICK_MS * 1000000L;
            if (until.tv_nsec >= S_SECOND_NS) {
                until.tv_sec++;
                until.tv_nsec -= S_SECOND_NS;
            }
            pthread_cond_timedwait (&self->wake, &self->mutex, &until);
            continue;
        }
        //  Take lines up to a reopen marker or S_BATCH_BYTES, write them
        //  without the lock
        if (!batch)
            batch = (char *) malloc (S_BATCH_BYTES);
        size_t len = 0, lines = 0;
        bool reopen = false;
        while (self->count) {
            char *line = self->ring [self->head];
            if (line == s_reopen_marker) {
                if (len == 0) {
                    reopen = true;
                    self->head = (self->head + 1) % HERALD_AUDIT_QUEUE_LINES;
                    self->count--;
                }
                break;
            }
            size_t size = strlen (line);
            if (len && len + size > S_BATCH_BYTES)
                break;
            if (batch && size <= S_BATCH_BYTES) {
                memcpy (batch + len, line, size);
                len += size;
                lines++;
            }
            else
                atomic_fetch_add (&self->dropped, 1);
            free (line);
            self->head = (self->head + 1) % HERALD_AUDIT_QUEUE_LINES;
            self->count--;
            self->bytes -= size;
        }
        pthread_mutex_unlock (&self->mutex);
        if (reopen)
            s_reopen_file (self);
        else
        if (len && !s_write_all (self, batch, len)) {
            atomic_fetch_add (&self->dropped, lines);
            if (!self->warned)
                herald_log ("warn", "audit-log %s: write failed (%s): lines are dropped "
                            "and counted in audit_dropped", self->path? self->path: "-",
                            strerror (errno));
            self->warned = true;
        }
        pthread_mutex_lock (&self->mutex);
    }
    self->done = true;
    pthread_cond_signal (&self->idle);
    pthread_mutex_unlock (&self->mutex);
    free (batch);
    return NULL;
}

herald_audit_t *
herald_audit_new (const char *path, herald_error_t *err)
{
    assert (path);
    herald_audit_t *self = (herald_audit_t *) calloc (1, sizeof (herald_audit_t));
    if (!self) {
        herald_error_set (err, HERALD_ERR_NOMEM, "", "audit-log: out of memory");
        return NULL;
    }
    self->fd = -1;
    if (strcmp (path, "-") == 0)
        self->fd = STDERR_FILENO;
    else {
        self->path = strdup (path);
        if (self->path)
            self->fd = s_open (path);
        if (self->fd < 0) {
            herald_error_set (err, HERALD_ERR_IO, "", "audit-log %s: cannot open (%s)", path,
                              errno == ENXIO? "a FIFO with no reader": strerror (errno));
            free (self->path);
            free (self);
            return NULL;
        }
    }
    self->ring = (char **) calloc (HERALD_AUDIT_QUEUE_LINES, sizeof (char *));
    self->keys = zhashx_new ();
    if (self->keys)
        zhashx_set_destructor (self->keys, s_key_destroy);
    pthread_mutex_init (&self->mutex, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init (&attr);
    pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
    pthread_cond_init (&self->wake, &attr);
    pthread_cond_init (&self->idle, &attr);
    pthread_condattr_destroy (&attr);
    //  The writer takes no signal: SIGHUP and SIGTERM are the main
    //  thread's, and a reader that went away gives EPIPE, not SIGPIPE
    sigset_t all, old;
    sigfillset (&all);
    pthread_sigmask (SIG_SETMASK, &all, &old);
    int rc = self->ring && self->keys? pthread_create (&self->thread, NULL, s_writer, self): -1;
    pthread_sigmask (SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        herald_error_set (err, HERALD_ERR_NOMEM, "", "audit-log: cannot start its writer");
        self->done = true;      //  no thread to stop
        self->thread = pthread_self ();
        herald_audit_destroy (&self);
        return NULL;
    }
    return self;
}

void
herald_audit_destroy (herald_audit_t **self_p)
{
    assert (self_p);
    herald_audit_t *self = *self_p;
    if (!self)
        return;
    pthread_mutex_lock (&self->mutex);
    bool started = !self->done;
    if (started) {
        self->stopping = true;
        pthread_cond_signal (&self->wake);
        struct timespec until;
        clock_gettime (CLOCK_MONOTONIC, &until);
        until.tv_sec += HERALD_AUDIT_FLUSH_MS / 1000;
        until.tv_nsec += (HERALD_AUDIT_FLUSH_MS % 1000) * 1000000L;
        if (until.tv_nsec >= S_SECOND_NS) {
            until.tv_sec++;
            until.tv_nsec -= S_SECOND_NS;
        }
        while (!self->done)
            if (pthread_cond_timedwait (&self->idle, &self->mutex, &until) == ETIMEDOUT)
                break;
    }
    bool stuck = started && !self->done;
    pthread_mutex_unlock (&self->mutex);
    if (stuck)
        pthread_cancel (self->thread);      //  blocked in write(2): see DESIGN
    if (started)
        pthread_join (self->thread, NULL);
    while (self->ring && self->count) {
        char *line = self->ring [self->head];
        if (line != s_reopen_marker) {
            atomic_fetch_add (&self->dropped, 1);
            free (line);
        }
        self->head = (self->head + 1) % HERALD_AUDIT_QUEUE_LINES;
        self->count--;
    }
    if (self->path && self->fd >= 0)
        close (self->fd);
    zhashx_destroy (&self->keys);
    free (self->ring);
    free (self->path);
    pthread_cond_destroy (&self->wake);
    pthread_cond_destroy (&self->idle);
    pthread_mutex_destroy (&self->mutex);
    free (self);
    *self_p = NULL;
}

void
herald_audit_event (herald_audit_t *self, const char *event, const char *who,
                    const char *json_fields)
{
    if (!self)
        return;
    assert (event && strlen (event) < S_EVENT_MAX);
    int64_t now = s_mono_ns ();
    pthread_mutex_lock (&self->mutex);
    bool admit = s_admit (self, event, who? who: "", now);
    pthread_mutex_unlock (&self->mutex);
    if (!admit)
        return;
    char *line = s_line (event, json_fields);
    if (!line) {
        atomic_fetch_add (&self->dropped, 1);
        return;
    }
    pthread_mutex_lock (&self->mutex);
    s_push (self, line);
    pthread_mutex_unlock (&self->mutex);
}

void
herald_audit_reopen (herald_audit_t *self)
{
    if (!self)
        return;
    pthread_mutex_lock (&self->mutex);
    s_push (self, s_reopen_marker);
    pthread_mutex_unlock (&self->mutex);
}

uint64_t
herald_audit_dropped (herald_audit_t *self)
{
    return self? atomic_load (&self->dropped): 0;
}

uint64_t
herald_audit_suppressed (herald_audit_t *self)
{
    return self? atomic_load (&self->suppressed): 0;
}

//  Length of the valid UTF-8 sequence of two to four bytes at s (avail
//  bytes there), 0 when it is not one: no overlong forms, no surrogates,
//  nothing above U+10FFFF.
static size_t
s_utf8_len (const uint8_t *s, size_t avail)
{
    size_t len = s [0] >= 0xf0? 4: s [0] >= 0xe0? 3: 2;
    if (s [0] < 0xc2 || s [0] > 0xf4 || avail < len)
        return 0;
    uint32_t point = s [0] & (0x3f >> (len - 1));
    for (size_t i = 1; i < len; i++) {
        if ((s [i] & 0xc0) != 0x80)
            return 0;
        point = (point << 6) | (s [i] & 0x3f);
    }
    if ((len == 3 && (point < 0x800 || (point >= 0xd800 && point <= 0xdfff)))
    ||  (len == 4 && (point < 0x10000 || point > 0x10ffff)))
        return 0;
    return len;
}

//  The escaped form of the character at in[at]: written into piece
//  (8 bytes), its length returned, the input bytes it stands for in
//  *taken.
static size_t
s_piece (const uint8_t *in, size_t len, size_t at, char piece [8], size_t *taken)
{
    uint8_t byte = in [at];
    *taken = 1;
    if (byte == '"' || byte == '\\') {
        piece [0] = '\\';
        piece [1] = (char) byte;
        return 2;
    }
    if (byte >= 0x20 && byte < 0x7f) {
        piece [0] = (char) byte;
        return 1;
    }
    size_t utf8 = byte >= 0x80? s_utf8_len (in + at, len - at): 0;
    if (utf8) {
        memcpy (piece, in + at, utf8);
        *taken = utf8;
        return utf8;
    }
    snprintf (piece, 8, "\\u%04x", byte);
    return 6;
}

size_t
herald_audit_escape (const void *bytes, size_t len, char *out, size_t size)
{
    assert (size >= 6);         //  "..." and the quotes
    const uint8_t *in = (const uint8_t *) bytes;
    char piece [8];
    size_t taken;
    size_t whole = 2;
    for (size_t at = 0; at < len; at += taken)
        whole += s_piece (in, len, at, piece, &taken);
    bool cut = whole + 1 > size;
    size_t room = size - 1 - 1 - (cut? 3: 0);   //  NUL, closing quote, "..."
    size_t used = 0;
    out [used++] = '"';
    for (size_t at = 0; at < len; at += taken) {
        size_t plen = s_piece (in, len, at, piece, &taken);
        if (used + plen > room)
            break;
        memcpy (out + used, piece, plen);
        used += plen;
    }
    if (cut) {
        memcpy (out + used, "...", 3);
        used += 3;
    }
    out [used++] = '"';
    out [used] = 0;
    return used;
}
