/*  =========================================================================
    herald_outbox - the agent's durable queue of publishes not yet stored

    DESIGN

    An append-only file of checksummed records (host byte order):

        header, 16 bytes   "HRLDOBX1" | version u32 | crc32c of bytes 0..11 u32
        record             len u32 | type u8 | pad (3) | crc32c u32 | payload (len)
                           the crc covers len, type, pad and the payload
          EVENT (1)        number u64 | flags u8 (1: expect) | id (16) | publisher map
          DONE (2)         first u64 | last u64: numbers first..last are finished

    An append is one write() of one record, under the outbox lock, before
    the publish call returns: it survives kill -9 (the page cache holds
    it) and, with outbox_fsync, power loss.  When the broker answers, one
    DONE record per run of consecutive numbers is appended.  On open the
    records are read in order; pending = EVENTs without a DONE.

    A record that fails its checks and reaches the end of the file is a
    torn append (the process died inside write()): the publish never
    returned, so the tail is cut off and counted.  A bad record followed by
    more bytes is damage, not a crash: HERALD_ERR_CORRUPT.

    Compaction rewrites the file (temporary file, fsync, rename, fsync of
    the directory) with only the pending EVENTs: when nothing is pending
    and the file passed 1 MiB, or when it passed 16 MiB and is more than
    four times what is pending.

    With no path (an agent with no state_dir) the outbox is in memory
    only: the same queue, no file, so what is not yet acknowledged is lost
    with the process.

    Bounds: max_events and max_bytes pending; an append that finds the
    outbox full waits on the condition variable (every finish broadcasts)
    up to its timeout, then fails with HERALD_ERR_OVERLOADED.
    =========================================================================
*/

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "herald_outbox.h"
#include "herald_crc.h"
#include "herald_text.h"
#include "herald_file.h"
#include "herald_say.h"

#define MAGIC           "HRLDOBX1"
#define FILE_VERSION         1
#define HEADER_BYTES    16
#define RECORD_HEAD     12
#define TYPE_EVENT      1
#define TYPE_DONE       2
#define EVENT_HEAD      (8 + 1 + 16)
#define COMPACT_EMPTY   (1024 * 1024)
#define COMPACT_MIN     (16 * 1024 * 1024)
#define MAP_MAX         (16 * 1024 * 1024)

struct _herald_outbox_t {
    pthread_mutex_t lock;
    pthread_cond_t changed;             //  an item finished
    char *path;
    int fd;
    uint64_t file_size;
    bool fsync;
    size_t max_events;
    size_t max_bytes;
    uint64_t next_number;
    herald_outbox_item_t *head, *tail;  //  pending, in number order
    herald_outbox_item_t *cursor;       //  no unsent item before it (NULL: none at all)
    uint64_t count;
    uint64_t bytes;
    uint64_t owed;                      //  async completions finished here, not yet run
};

static void
s_item_free (herald_outbox_item_t *item)
{
    if (item) {
        free (item->map);
        free (item);
    }
}

static void
s_link (herald_outbox_t *self, herald_outbox_item_t *item)
{
    item->prev = self->tail;
    item->next = NULL;
    if (self->tail)
        self->tail->next = item;
    else
        self->head = item;
    self->tail = item;
    if (!self->cursor)
        self->cursor = item;
    self->count++;
    self->bytes += item->map_len;
}

static void
s_unlink (herald_outbox_t *self, herald_outbox_item_t *item)
{
    if (item->prev)
        item->prev->next = item->next;
    else
        self->head = item->next;
    if (item->next)
        item->next->prev = item->prev;
    else
        self->tail = item->prev;
    if (self->cursor == item)
        self->cursor = item->next;
    self->count--;
    self->bytes -= item->map_len;
}

static int
s_write_all (int fd, const void *bytes, size_t len)
{
    const uint8_t *p = bytes;
    while (len) {
        ssize_t rc = write (fd, p, len);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            return -1;
        p += rc;
        len -= (size_t) rc;
    }
    return 0;
}

//  Build one record (head + payload parts) into a malloc'd buffer.
static uint8_t *
s_record (uint8_t type, const void *part1, size_t len1, const void *part2, size_t len2,
          size_t *size_p)
{
    size_t len = len1 + len2;
    uint8_t *record = malloc (RECORD_HEAD + len);
    if (!record)
        return NULL;
    uint32_t len32 = (uint32_t) len;
    memcpy (record, &len32, 4);
    record [4] = type;
    record [5] = record [6] = record [7] = 0;
    memcpy (record + RECORD_HEAD, part1, len1);
    if (len2)
        memcpy (record + RECORD_HEAD + len1, part2, len2);
    uint32_t crc = herald_crc32c (0, record, 8);
    crc = herald_crc32c (crc, record + RECORD_HEAD, len);
    memcpy (record + 8, &crc, 4);
    *size_p = RECORD_HEAD + len;
    return record;
}

static void
s_header (uint8_t header [HEADER_BYTES])
{
    memcpy (header, MAGIC, 8);
    uint32_t version = FILE_VERSION;
    memcpy (header + 8, &version, 4);
    uint32_t crc = herald_crc32c (0, header, 12);
    memcpy (header + 12, &crc, 4);
}

static uint8_t *
s_event_record (const herald_outbox_item_t *item, size_t *size_p)
{
    uint8_t head [EVENT_HEAD];
    memcpy (head, &item->number, 8);
    head [8] = item->has_expect? 1: 0;
    memcpy (head + 9, item->id, 16);
    return s_record (TYPE_EVENT, head, sizeof head, item->map, item->map_len, size_p);
}

//  Rewrite the file with only the pending events (temporary file, fsync,
//  rename, fsync of the directory: herald_file.c).  Called under the lock.
static int
s_compact (herald_outbox_t *self)
{
    size_t path_len = strlen (self->path);
    char *tmp = malloc (path_len + 5);
    if (!tmp)
        return -1;
    snprintf (tmp, path_len + 5, "%s.tmp", self->path);
    int fd = open (tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    uint8_t header [HEADER_BYTES];
    s_header (header);
    int rc = fd >= 0 && s_write_all (fd, header, sizeof header) == 0? 0: -1;
    uint64_t size = HEADER_BYTES;
    for (herald_outbox_item_t *item = self->head; item && rc == 0; item = item->next) {
        size_t record_size;
        uint8_t *record = s_event_record (item, &record_size);
        rc = record && s_write_all (fd, record, record_size) == 0? 0: -1;
        size += record_size;
        free (record);
    }
    if (rc != 0) {
        if (fd >= 0) {
            close (fd);
            unlink (tmp);
        }
        free (tmp);
        return -1;
    }
    //  Renamed, the new file is the outbox even if the directory's fsync
    //  failed (appends must go to it); after a power loss the old file may
    //  be back, which holds the same pending events and more DONEs
    bool renamed = false;
    rc = herald_file_replace (fd, tmp, self->path, &renamed);
    free (tmp);
    if (!renamed)
        return -1;
    close (self->fd);
    self->fd = open (self->path, O_WRONLY | O_APPEND | O_CLOEXEC);
    self->file_size = size;
    return self->fd >= 0? rc: -1;
}

//  Read the file: pending items, next number; cut a torn tail.
static herald_err
s_load (herald_outbox_t *self, uint64_t *recovered, char *message, size_t size)
{
    int fd = open (self->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        //  A new outbox: just the header
        fd = open (self->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        uint8_t header [HEADER_BYTES];
        s_header (header);
        if (fd < 0 || s_write_all (fd, header, sizeof header) != 0 || fsync (fd) != 0) {
            herald_text_format (message, size, "%s: cannot create: %s", self->path, strerror (errno));
            if (fd >= 0)
                close (fd);
            return HERALD_ERR_IO;
        }
        close (fd);
        self->file_size = HEADER_BYTES;
        return HERALD_OK;
    }
    struct stat st;
    if (fd < 0 || fstat (fd, &st) != 0) {
        herald_text_format (message, size, "%s: cannot open: %s", self->path, strerror (errno));
        if (fd >= 0)
            close (fd);
        return HERALD_ERR_IO;
    }
    size_t file_size = (size_t) st.st_size;
    uint8_t *bytes = malloc (file_size + 1);
    ssize_t got = bytes? pread (fd, bytes, file_size, 0): -1;
    close (fd);
    if (got != (ssize_t) file_size) {
        free (bytes);
        herald_text_format (message, size, "%s: cannot read: %s", self->path, strerror (errno));
        return HERALD_ERR_IO;
    }
    uint8_t header [HEADER_BYTES];
    s_header (header);
    if (file_size < HEADER_BYTES || memcmp (bytes, header, HEADER_BYTES) != 0) {
        free (bytes);
        herald_text_format (message, size, "%s: corrupt outbox: bad header", self->path);
        return HERALD_ERR_CORRUPT;
    }
    herald_err rc = HERALD_OK;
    size_t offset = HEADER_BYTES;
    while (offset < file_size && rc == HERALD_OK) {
        bool whole = file_size - offset >= RECORD_HEAD;
        uint32_t len = 0, crc = 0;
        if (whole) {
            memcpy (&len, bytes + offset, 4);
            memcpy (&crc, bytes + offset + 8, 4);
            whole = len <= file_size - offset - RECORD_HEAD;
        }
        bool good = whole
            && crc == herald_crc32c (herald_crc32c (0, bytes + offset, 8),
                                     bytes + offset + RECORD_HEAD, len);
        if (!good) {
            if (!whole || offset + RECORD_HEAD + len >= file_size) {
                //  A torn append at the tail: cut it off
                (*recovered)++;
                if (truncate (self->path, (off_t) offset) != 0) {
                    herald_text_format (message, size, "%s: cannot truncate a torn record: %s",
                              self->path, strerror (errno));
                    rc = HERALD_ERR_IO;
                }
                file_size = offset;
                break;
            }
            herald_text_format (message, size, "%s: corrupt outbox: record at offset %zu fails its "
                      "check", self->path, offset);
            rc = HERALD_ERR_CORRUPT;
            break;
        }
        const uint8_t *payload = bytes + offset + RECORD_HEAD;
        uint8_t type = bytes [offset + 4];
        if (type == TYPE_EVENT && len > EVENT_HEAD) {
            herald_outbox_item_t *item = calloc (1, sizeof *item);
            if (item)
                item->map = malloc (len - EVENT_HEAD);
            if (!item || !item->map) {
                s_item_free (item);
                rc = HERALD_ERR_NOMEM;
                break;
            }
            memcpy (&item->number, payload, 8);
            item->has_expect = payload [8] & 1;
            memcpy (item->id, payload + 9, 16);
            item->map_len = len - EVENT_HEAD;
            memcpy (item->map, payload + EVENT_HEAD, item->map_len);
            s_link (self, item);
            if (item->number >= self->next_number)
                self->next_number = item->number + 1;
        }
        else
        if (type == TYPE_DONE && len == 16) {
            uint64_t first, last;
            memcpy (&first, payload, 8);
            memcpy (&last, payload + 8, 8);
            herald_outbox_item_t *item = self->head;
            while (item) {
                herald_outbox_item_t *next = item->next;
                if (item->number >= first && item->number <= last) {
                    s_unlink (self, item);
                    s_item_free (item);
                }
                item = next;
            }
        }
        else {
            herald_text_format (message, size, "%s: corrupt outbox: unknown record type %u at offset "
                      "%zu", self->path, type, offset);
            rc = HERALD_ERR_CORRUPT;
        }
        offset += RECORD_HEAD + len;
    }
    free (bytes);
    self->file_size = file_size;
    return rc;
}

herald_err
herald_outbox_open (herald_outbox_t **self_p, const char *path, size_t max_events,
                    size_t max_bytes, bool fsync, uint64_t *recovered,
                    char *message, size_t message_size)
{
    *self_p = NULL;
    message [0] = 0;
    herald_outbox_t *self = calloc (1, sizeof *self);
    if (!self)
        return HERALD_ERR_NOMEM;
    pthread_mutex_init (&self->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init (&attr);
    pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
    pthread_cond_init (&self->changed, &attr);
    pthread_condattr_destroy (&attr);
    self->fd = -1;
    self->fsync = fsync;
    self->max_events = max_events;
    self->max_bytes = max_bytes;
    self->next_number = 1;
    if (!path) {
        *self_p = self;             //  in memory only
        return HERALD_OK;
    }
    self->path = strdup (path);
    herald_err rc = self->path? s_load (self, recovered, message, message_size): HERALD_ERR_NOMEM;
    if (rc == HERALD_OK) {
        self->fd = open (path, O_WRONLY | O_APPEND | O_CLOEXEC);
        if (self->fd < 0) {
            herald_text_format (message, message_size, "%s: cannot open: %s", path, strerror (errno));
            rc = HERALD_ERR_IO;
        }
    }
    if (rc) {
        herald_outbox_destroy (&self);
        return rc;
    }
    *self_p = self;
    return HERALD_OK;
}

void
herald_outbox_destroy (herald_outbox_t **self_p)
{
    herald_outbox_t *self = *self_p;
    if (!self)
        return;
    while (self->head) {
        herald_outbox_item_t *item = self->head;
        s_unlink (self, item);
        s_item_free (item);
    }
    if (self->fd >= 0)
        close (self->fd);
    pthread_cond_destroy (&self->changed);
    pthread_mutex_destroy (&self->lock);
    free (self->path);
    free (self);
    *self_p = NULL;
}

//  An absolute CLOCK_MONOTONIC deadline timeout_ms from now.
static struct timespec
s_deadline (int timeout_ms)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long) (timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

herald_err
herald_outbox_append (herald_outbox_t *self, const uint8_t id [16], bool has_expect,
                      const void *map, size_t len, herald_publish_fn *done, void *arg,
                      herald_outbox_waiter_t *waiter, int timeout_ms)
{
    herald_outbox_item_t *item = calloc (1, sizeof *item);
    if (item)
        item->map = malloc (len? len: 1);
    if (!item || !item->map) {
        s_item_free (item);
        return HERALD_ERR_NOMEM;
    }
    memcpy (item->id, id, 16);
    item->has_expect = has_expect;
    memcpy (item->map, map, len);
    item->map_len = len;
    item->done = done;
    item->arg = arg;
    item->waiter = waiter;
    if (waiter)
        waiter->done = false;

    pthread_mutex_lock (&self->lock);
    struct timespec deadline = s_deadline (timeout_ms);
    //  An outbox with nothing pending always takes one event, whatever its size
    while (self->count > 0
       && (self->count >= self->max_events || self->bytes + len > self->max_bytes)) {
        if (pthread_cond_timedwait (&self->changed, &self->lock, &deadline) == ETIMEDOUT)
            break;
    }
    if (self->count > 0
    && (self->count >= self->max_events || self->bytes + len > self->max_bytes)) {
        pthread_mutex_unlock (&self->lock);
        s_item_free (item);
        return HERALD_ERR_OVERLOADED;
    }
    item->number = self->next_number;
    size_t record_size = 0;
    uint8_t *record = self->path? s_event_record (item, &record_size): NULL;
    if (self->path && (!record || s_write_all (self->fd, record, record_size) != 0
    ||  (self->fsync && fdatasync (self->fd) != 0))) {
        //  A partial record is cut off when the file is next opened; cut
        //  it now so later appends are not stranded behind it
        if (ftruncate (self->fd, (off_t) self->file_size) != 0)
            self->file_size += record? record_size: 0;
        pthread_mutex_unlock (&self->lock);
        free (record);
        s_item_free (item);
        return HERALD_ERR_IO;
    }
    free (record);
    self->next_number++;
    self->file_size += record_size;
    s_link (self, item);
    pthread_mutex_unlock (&self->lock);
    return HERALD_OK;
}

bool
herald_outbox_wait (herald_outbox_t *self, herald_outbox_waiter_t *waiter, int timeout_ms)
{
    pthread_mutex_lock (&self->lock);
    struct timespec deadline = s_deadline (timeout_ms);
    while (!waiter->done)
        if (pthread_cond_timedwait (&self->changed, &self->lock, &deadline) == ETIMEDOUT)
            break;
    bool done = waiter->done;
    if (!done) {
        for (herald_outbox_item_t *item = self->head; item; item = item->next)
            if (item->waiter == waiter)
                item->waiter = NULL;
    }
    pthread_mutex_unlock (&self->lock);
    return done;
}

bool
herald_outbox_drain (herald_outbox_t *self, int timeout_ms, bool completions)
{
    pthread_mutex_lock (&self->lock);
    struct timespec deadline = s_deadline (timeout_ms);
    while (self->count > 0 || (completions && self->owed > 0))
        if (pthread_cond_timedwait (&self->changed, &self->lock, &deadline) == ETIMEDOUT)
            break;
    bool empty = self->count == 0 && (!completions || self->owed == 0);
    pthread_mutex_unlock (&self->lock);
    return empty;
}

void
herald_outbox_completed (herald_outbox_t *self, size_t count)
{
    pthread_mutex_lock (&self->lock);
    self->owed = count < self->owed? self->owed - count: 0;
    if (self->owed == 0)
        pthread_cond_broadcast (&self->changed);
    pthread_mutex_unlock (&self->lock);
}

size_t
herald_outbox_abandon (herald_outbox_t *self, herald_completion_t **completions_p)
{
    *completions_p = NULL;
    pthread_mutex_lock (&self->lock);
    size_t count = 0;
    for (herald_outbox_item_t *item = self->head; item; item = item->next)
        count += item->done != NULL;
    herald_completion_t *completions = count? calloc (count, sizeof *completions): NULL;
    size_t taken = 0;
    for (herald_outbox_item_t *item = self->head; completions && item; item = item->next) {
        if (!item->done)
            continue;
        herald_completion_t *completion = &completions [taken++];
        completion->done = item->done;
        completion->arg = item->arg;
        memcpy (completion->result.id, item->id, 16);
        completion->result.err = HERALD_ERR_TIMEOUT;
        //  Without a state directory nothing outlives the agent: say so,
        //  rather than promise a next agent that will never see it
        snprintf (completion->result.message, sizeof completion->result.message, "%s",
                  self->path? "not acknowledged before the agent was destroyed: queued in "
                              "the outbox, will be sent by the next agent on this state "
                              "directory"
                            : "not acknowledged before the agent was destroyed: this agent "
                              "has no state directory, so the event is not kept (it may "
                              "have been stored: publish it again with the same id to know)");
        item->done = NULL;
    }
    pthread_mutex_unlock (&self->lock);
    if (count && !completions)
        herald_say (HERALD_LOG_ERROR, "out of memory: %zu publish completions are not "
                    "called (their events stay queued in the outbox)", count);
    *completions_p = completions;
    return taken;
}

void
herald_outbox_depth (herald_outbox_t *self, uint64_t *events, uint64_t *bytes)
{
    pthread_mutex_lock (&self->lock);
    *events = self->count;
    *bytes = self->bytes;
    pthread_mutex_unlock (&self->lock);
}

size_t
herald_outbox_take (herald_outbox_t *self, herald_outbox_item_t **items, size_t max_items,
                    size_t max_bytes)
{
    pthread_mutex_lock (&self->lock);
    herald_outbox_item_t *item = self->cursor;
    while (item && item->inflight)
        item = item->next;
    self->cursor = item;
    size_t count = 0, bytes = 0;
    while (item && count < max_items) {
        if (!item->inflight) {
            bool alone = item->has_expect || item->solo;
            if (count > 0 && (alone || bytes + item->map_len > max_bytes))
                break;
            item->inflight = true;
            items [count++] = item;
            bytes += item->map_len;
            if (alone) {
                item = item->next;
                break;
            }
        }
        item = item->next;
    }
    //  Everything before item is in flight now: the next take starts there
    self->cursor = item;
    pthread_mutex_unlock (&self->lock);
    return count;
}

void
herald_outbox_requeue (herald_outbox_t *self, herald_outbox_item_t **items, size_t count,
                       bool solo)
{
    pthread_mutex_lock (&self->lock);
    for (size_t index = 0; index < count; index++) {
        items [index]->inflight = false;
        if (solo)
            items [index]->solo = true;
    }
    self->cursor = self->head;
    pthread_mutex_unlock (&self->lock);
}

void
herald_outbox_requeue_all (herald_outbox_t *self)
{
    pthread_mutex_lock (&self->lock);
    for (herald_outbox_item_t *item = self->head; item; item = item->next)
        item->inflight = false;
    self->cursor = self->head;
    pthread_mutex_unlock (&self->lock);
}

size_t
herald_outbox_finish (herald_outbox_t *self, herald_outbox_item_t **items,
                      const herald_publish_result_t *results, size_t count,
                      herald_completion_t *completions)
{
    size_t completed = 0;
    pthread_mutex_lock (&self->lock);
    size_t index = self->path? 0: count;
    while (index < count) {
        //  One DONE record per run of consecutive numbers
        size_t end = index + 1;
        while (end < count && items [end]->number == items [end - 1]->number + 1)
            end++;
        uint64_t range [2] = { items [index]->number, items [end - 1]->number };
        size_t record_size;
        uint8_t *record = s_record (TYPE_DONE, range, sizeof range, NULL, 0, &record_size);
        //  A DONE that cannot be written only means a resend after a
        //  restart, which the broker's dedup absorbs
        if (record && s_write_all (self->fd, record, record_size) == 0)
            self->file_size += record_size;
        free (record);
        index = end;
    }
    for (index = 0; index < count; index++) {
        herald_outbox_item_t *item = items [index];
        if (item->waiter) {
            item->waiter->result = results [index];
            item->waiter->done = true;
        }
        else
        if (item->done) {
            completions [completed].done = item->done;
            completions [completed].arg = item->arg;
            completions [completed].result = results [index];
            completed++;
        }
        s_unlink (self, item);
        s_item_free (item);
    }
    self->owed += completed;
    if (self->path && ((self->count == 0 && self->file_size > COMPACT_EMPTY)
    ||  (self->file_size > COMPACT_MIN && self->file_size > 4 * (self->bytes + self->count * 64))))
        s_compact (self);
    pthread_cond_broadcast (&self->changed);
    pthread_mutex_unlock (&self->lock);
    return completed;
}
