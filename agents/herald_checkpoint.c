/*  =========================================================================
    herald_checkpoint - one subscription's position and dedup window, on disk

    DESIGN

    The file is mapped MAP_SHARED and updated by stores, so an update is
    in the page cache the moment it is made and survives kill -9 of the
    process; msync (every sync_interval_ms and on close) carries it to the
    disk.  Every update writes a whole slot; the two slots alternate, so
    the newer one can be torn (a kill between two stores, a power loss)
    while the older one stays intact.  Host byte order (a local file).

        offset 0     header, 64 bytes
                     "HRLDCKP1" | version u32 | window u32 | capacity u32
                     | reserved (44) | crc32c of bytes 0..59 u32
        offset 64    slot 0, 64 bytes
        offset 128   slot 1, 64 bytes
                     counter u64 | done u64 | intent_seq u64 | intent_id (16)
                     | ring_head u64 | lineage u64 | span u32
                     | crc32c of bytes 0..59
        offset 192   ring: capacity = window + 1 entries of 32 bytes
                     seq u64 | id (16) | reserved u32 | crc32c of bytes 0..27

    Delivering event (seq S, id I):
        intent:  ring[ring_head % capacity] = (S, I); slot = {done, S, I, ring_head}
        handler runs
        commit:  slot = {done = S, 0, -, ring_head + 1}
    A batch handler's events S1..Sn (herald_agent_deliver.c) keep a span:
    intent (S1, span Sn - S1) before the call; after it, per handled
    event Si: intent (Si, span Sn - Si), commit keeping span Sn - Si
    (intent 0).  On open, every seq up to intent (or done) + span is in
    doubt: a kill -9 anywhere in a batch flags each of its uncommitted
    events redelivered.  Written as 0 (was reserved) by single events.
    The window is the `window` entries before ring_head; the entry being
    written is never one of them (capacity = window + 1), so a crash
    between intent and commit cannot put the in-doubt id in the window.

    Recovery on open: the valid slot with the higher counter wins.  A slot
    of zeros was never written.  When one slot fails its CRC and the other
    is valid, the update was torn: the older slot is used and the event
    after it is treated as in doubt (the handler may have run).  Both slots
    bad, a bad header, a wrong size or a bad window entry: HERALD_ERR_CORRUPT,
    never guessed around.

    A reset (herald_checkpoint_reset, for `herald sub reset`) writes a
    slot with ring_head 0: the window is the entries before ring_head, so
    it is empty at once, in the same update as the new done; the old ring
    entries are overwritten as new events come.

    Versions: 2 adds `lineage` to the slot (the broker's count of accepted
    losses this position belongs to, docs/agent.md "When the broker lost
    events"), written with `done` in the same slot so that a rewind and its
    lineage are one update.  Version 1 files (written before) had zeros
    there, so they read as lineage 0, as the rule wants; they are opened,
    and keep their header, as they are (a version-1 agent ignores those
    bytes).  New files are version 2.

    In memory (herald_checkpoint_new_memory, for a subscription whose
    caller keeps its position: herald_subscribe_options_t.caller_position)
    the same bytes live in a malloc'd buffer instead of a mapped file: the
    same code runs, nothing is written anywhere, and it all goes with the
    process.

    The window is also kept in memory, in an open-addressing hash of ring
    indexes (linear probing, backward-shift deletion), for O(1) lookups.
    =========================================================================
*/

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "herald_checkpoint.h"
#include "herald_file.h"
#include "herald_crc.h"
#include "herald_text.h"

#define MAGIC           "HRLDCKP1"
#define FILE_VERSION         2          //  1: no lineage in the slot (read as 0)
#define HEADER_BYTES    64
#define SLOT_BYTES      64
#define ENTRY_BYTES     32
#define RING_OFFSET     (HEADER_BYTES + 2 * SLOT_BYTES)
#define WINDOW_MAX      (1u << 24)

typedef struct {
    char magic [8];
    uint32_t version;
    uint32_t window;
    uint32_t capacity;
    uint8_t reserved [40];
    uint32_t crc;
} s_header_t;

typedef struct {
    uint64_t counter;
    uint64_t done;
    uint64_t intent_seq;
    uint8_t intent_id [16];
    uint64_t ring_head;
    uint64_t lineage;                       //  version 1: always 0
    //  Batch handlers: the events up to intent_seq + span are in doubt
    //  too (0 for a single event; was reserved, written as 0 before)
    uint32_t span;
    uint32_t crc;
} s_slot_t;

typedef struct {
    uint64_t seq;
    uint8_t id [16];
    uint32_t reserved;
    uint32_t crc;
} s_entry_t;

_Static_assert (sizeof (s_header_t) == HEADER_BYTES, "header layout");
_Static_assert (sizeof (s_slot_t) == SLOT_BYTES, "slot layout");
_Static_assert (sizeof (s_entry_t) == ENTRY_BYTES, "entry layout");

struct _herald_checkpoint_t {
    int fd;                                 //  -1 in memory
    bool memory;                            //  map is malloc'd: no file
    uint8_t *map;
    size_t map_size;
    s_slot_t *slots;
    s_entry_t *ring;
    uint32_t window;
    uint32_t capacity;
    //  The current state, as in the newest slot
    uint64_t counter;
    uint64_t done;
    uint64_t intent_seq;
    uint8_t intent_id [16];
    uint64_t ring_head;
    uint64_t lineage;
    bool in_doubt;
    uint32_t span;                          //  of the current intent
    uint64_t doubt_until;                   //  at open: the last seq in doubt (0: none)
    //  Hash of ring indexes + 1 (0: empty)
    uint32_t *hash;
    size_t hash_mask;
};

//  splitmix64's finaliser: every input bit reaches every output bit.
static uint64_t
s_mix (uint64_t h)
{
    h ^= h >> 30;
    h *= 0xBF58476D1CE4E5B9ULL;
    h ^= h >> 27;
    h *= 0x94D049BB133111EBULL;
    h ^= h >> 31;
    return h;
}

//  Ids need not be random (a publisher may use a prefix and a counter)
//  and the table is indexed by the low bits, so both halves are mixed in
//  turn: with a weaker hash such ids collided in long probe chains and
//  catch-up fell to 30k events/s.
static uint64_t
s_id_hash (const uint8_t id [16])
{
    uint64_t a, b;
    memcpy (&a, id, 8);
    memcpy (&b, id + 8, 8);
    return s_mix (s_mix (a) ^ b);
}

static void
s_hash_insert (herald_checkpoint_t *self, uint32_t index)
{
    size_t pos = s_id_hash (self->ring [index].id) & self->hash_mask;
    while (self->hash [pos])
        pos = (pos + 1) & self->hash_mask;
    self->hash [pos] = index + 1;
}

static void
s_hash_remove (herald_checkpoint_t *self, uint32_t index)
{
    size_t pos = s_id_hash (self->ring [index].id) & self->hash_mask;
    while (self->hash [pos] && self->hash [pos] != index + 1)
        pos = (pos + 1) & self->hash_mask;
    if (!self->hash [pos])
        return;
    //  Backward-shift deletion keeps every probe chain unbroken
    size_t hole = pos;
    size_t next = (hole + 1) & self->hash_mask;
    while (self->hash [next]) {
        size_t home = s_id_hash (self->ring [self->hash [next] - 1].id) & self->hash_mask;
        //  Move next into the hole when its home is not in (hole, next]
        bool between = hole <= next? (home > hole && home <= next)
                                   : (home > hole || home <= next);
        if (!between) {
            self->hash [hole] = self->hash [next];
            hole = next;
        }
        next = (next + 1) & self->hash_mask;
    }
    self->hash [hole] = 0;
}

static uint32_t
s_entry_crc (const s_entry_t *entry)
{
    return herald_crc32c (0, entry, offsetof (s_entry_t, crc));
}

static uint32_t
s_slot_crc (const s_slot_t *slot)
{
    return herald_crc32c (0, slot, offsetof (s_slot_t, crc));
}

static bool
s_all_zero (const void *bytes, size_t len)
{
    const uint8_t *p = bytes;
    for (size_t index = 0; index < len; index++)
        if (p [index])
            return false;
    return true;
}

//  Write the current state into the older slot.
static void
s_write_slot (herald_checkpoint_t *self)
{
    self->counter++;
    s_slot_t *slot = &self->slots [self->counter & 1];
    s_slot_t next;
    memset (&next, 0, sizeof next);
    next.counter = self->counter;
    next.done = self->done;
    next.intent_seq = self->intent_seq;
    memcpy (next.intent_id, self->intent_id, 16);
    next.ring_head = self->ring_head;
    next.lineage = self->lineage;
    next.span = self->span;
    next.crc = s_slot_crc (&next);
    //  The ring entry written before must not be reordered after the slot
    atomic_signal_fence (memory_order_seq_cst);
    memcpy (slot, &next, sizeof next);
}

static size_t
s_file_size (uint32_t capacity)
{
    return RING_OFFSET + (size_t) capacity * ENTRY_BYTES;
}

//  A new checkpoint's bytes (malloc'd, s_file_size of window + 1), or NULL.
static uint8_t *
s_image (uint32_t window, uint64_t done, uint64_t lineage)
{
    uint8_t *bytes = calloc (1, s_file_size (window + 1));
    if (!bytes)
        return NULL;
    s_header_t *header = (s_header_t *) bytes;
    memcpy (header->magic, MAGIC, 8);
    header->version = FILE_VERSION;
    header->window = window;
    header->capacity = window + 1;
    header->crc = herald_crc32c (0, header, offsetof (s_header_t, crc));
    s_slot_t *slot = (s_slot_t *) (bytes + HEADER_BYTES + SLOT_BYTES);
    slot->counter = 1;
    slot->done = done;
    slot->lineage = lineage;
    slot->crc = s_slot_crc (slot);
    return bytes;
}

//  Create the file at path atomically (temporary file, fsync, rename,
//  fsync of the directory: herald_file.c).
static herald_err
s_create (const char *path, uint32_t window, uint64_t done, uint64_t lineage, char *message,
          size_t size)
{
    size_t file_size = s_file_size (window + 1);
    uint8_t *bytes = s_image (window, done, lineage);
    if (!bytes)
        return HERALD_ERR_NOMEM;

    char tmp [4096];
    snprintf (tmp, sizeof tmp, "%s.tmp", path);
    herald_err rc = HERALD_OK;
    int fd = open (tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ssize_t wrote = fd >= 0? write (fd, bytes, file_size): -1;
    if (wrote >= 0 && wrote != (ssize_t) file_size)
        errno = ENOSPC;                 //  a short write: the disk is full
    bool renamed = false;
    if (wrote != (ssize_t) file_size) {
        int saved = errno;
        if (fd >= 0) {
            close (fd);
            unlink (tmp);
        }
        herald_text_format (message, size, "%s: cannot create: %s", path, strerror (saved));
        rc = HERALD_ERR_IO;
    }
    else
    if (herald_file_replace (fd, tmp, path, &renamed) != 0) {
        herald_text_format (message, size, renamed? "%s: created, but its directory cannot be synced: %s"
                                        : "%s: cannot create: %s", path, strerror (errno));
        rc = HERALD_ERR_IO;
    }
    free (bytes);
    return rc;
}

bool
herald_checkpoint_exists (const char *path)
{
    struct stat st;
    return stat (path, &st) == 0;
}

//  Check the mapped file and load its state into self.
static herald_err
s_load (herald_checkpoint_t *self, const char *path, bool *recovered, char *message,
        size_t size)
{
    const s_header_t *header = (const s_header_t *) self->map;
    if (self->map_size < RING_OFFSET
    ||  memcmp (header->magic, MAGIC, 8) != 0
    ||  header->crc != herald_crc32c (0, header, offsetof (s_header_t, crc))) {
        herald_text_format (message, size, "%s: corrupt checkpoint: bad header", path);
        return HERALD_ERR_CORRUPT;
    }
    if ((header->version != FILE_VERSION && header->version != 1)
    ||  header->capacity != header->window + 1
    ||  header->window > WINDOW_MAX
    ||  self->map_size != s_file_size (header->capacity)) {
        herald_text_format (message, size, "%s: corrupt checkpoint: version %" PRIu32 ", window %" PRIu32
                  ", size %zu do not agree", path, header->version, header->window,
                  self->map_size);
        return HERALD_ERR_CORRUPT;
    }
    self->window = header->window;
    self->capacity = header->capacity;
    self->slots = (s_slot_t *) (self->map + HEADER_BYTES);
    self->ring = (s_entry_t *) (self->map + RING_OFFSET);

    bool valid [2], empty [2];
    for (int index = 0; index < 2; index++) {
        const s_slot_t *slot = &self->slots [index];
        empty [index] = s_all_zero (slot, sizeof *slot);
        valid [index] = !empty [index] && slot->crc == s_slot_crc (slot)
                     && slot->counter != 0 && (slot->counter & 1) == (uint64_t) index;
    }
    int best = -1;
    if (valid [0] && valid [1])
        best = self->slots [0].counter > self->slots [1].counter? 0: 1;
    else
    if (valid [0] || valid [1])
        best = valid [0]? 0: 1;
    if (best < 0) {
        herald_text_format (message, size, "%s: corrupt checkpoint: no valid slot", path);
        return HERALD_ERR_CORRUPT;
    }
    const s_slot_t *slot = &self->slots [best];
    self->counter = slot->counter;
    self->done = slot->done;
    self->intent_seq = slot->intent_seq;
    memcpy (self->intent_id, slot->intent_id, 16);
    self->ring_head = slot->ring_head;
    self->lineage = slot->lineage;
    self->in_doubt = self->intent_seq > self->done
                  || (self->intent_seq == 0 && slot->span > 0);
    //  The other slot is torn (not merely older, nor never written)
    if (!valid [1 - best] && !empty [1 - best]) {
        *recovered = true;
        self->in_doubt = true;
    }
    if (self->in_doubt)
        self->doubt_until = self->intent_seq > self->done? self->intent_seq + slot->span
                          : self->intent_seq == 0 && slot->span? self->done + slot->span
                          : self->done + 1;

    //  The window: the `window` entries before ring_head, all checked
    size_t hash_size = 16;
    while (hash_size < (size_t) self->window * 2)
        hash_size *= 2;
    self->hash = calloc (hash_size, sizeof (uint32_t));
    if (!self->hash)
        return HERALD_ERR_NOMEM;
    self->hash_mask = hash_size - 1;
    uint64_t count = self->ring_head < self->window? self->ring_head: self->window;
    for (uint64_t n = self->ring_head - count; n < self->ring_head; n++) {
        uint32_t index = (uint32_t) (n % self->capacity);
        if (self->ring [index].crc != s_entry_crc (&self->ring [index])) {
            herald_text_format (message, size, "%s: corrupt checkpoint: window entry %" PRIu64
                      " fails its check", path, n);
            return HERALD_ERR_CORRUPT;
        }
        s_hash_insert (self, index);
    }
    return HERALD_OK;
}

herald_err
herald_checkpoint_open (herald_checkpoint_t **self_p, const char *path, size_t window,
                        bool create, uint64_t start_done, uint64_t start_lineage,
                        bool *recovered, char *message, size_t message_size)
{
    *self_p = NULL;
    *recovered = false;
    message [0] = 0;
    if (window == 0 || window > WINDOW_MAX)
        window = window? WINDOW_MAX: 1;
    if (!herald_checkpoint_exists (path)) {
        if (!create) {
            herald_text_format (message, message_size, "%s: no such checkpoint", path);
            return HERALD_ERR_NOT_FOUND;
        }
        herald_err rc = s_create (path, (uint32_t) window, start_done, start_lineage, message,
                                  message_size);
        if (rc)
            return rc;
    }
    herald_checkpoint_t *self = calloc (1, sizeof *self);
    if (!self)
        return HERALD_ERR_NOMEM;
    self->fd = open (path, O_RDWR | O_CLOEXEC);
    struct stat st;
    if (self->fd < 0 || fstat (self->fd, &st) != 0) {
        herald_text_format (message, message_size, "%s: cannot open: %s", path, strerror (errno));
        herald_checkpoint_destroy (&self);
        return HERALD_ERR_IO;
    }
    self->map_size = (size_t) st.st_size;
    if (self->map_size < RING_OFFSET) {
        herald_text_format (message, message_size, "%s: corrupt checkpoint: %zu bytes, truncated",
                  path, self->map_size);
        herald_checkpoint_destroy (&self);
        return HERALD_ERR_CORRUPT;
    }
    self->map = mmap (NULL, self->map_size, PROT_READ | PROT_WRITE, MAP_SHARED, self->fd, 0);
    if (self->map == MAP_FAILED) {
        self->map = NULL;
        herald_text_format (message, message_size, "%s: cannot map: %s", path, strerror (errno));
        herald_checkpoint_destroy (&self);
        return HERALD_ERR_IO;
    }
    herald_err rc = s_load (self, path, recovered, message, message_size);
    if (rc) {
        herald_checkpoint_destroy (&self);
        return rc;
    }
    *self_p = self;
    return HERALD_OK;
}

herald_err
herald_checkpoint_new_memory (herald_checkpoint_t **self_p, size_t window,
                              uint64_t start_done, uint64_t start_lineage)
{
    *self_p = NULL;
    if (window == 0 || window > WINDOW_MAX)
        window = window? WINDOW_MAX: 1;
    herald_checkpoint_t *self = calloc (1, sizeof *self);
    if (!self)
        return HERALD_ERR_NOMEM;
    self->fd = -1;
    self->memory = true;
    self->map_size = s_file_size ((uint32_t) window + 1);
    self->map = s_image ((uint32_t) window, start_done, start_lineage);
    bool recovered = false;
    char message [256];
    if (!self->map || s_load (self, "(memory)", &recovered, message, sizeof message)) {
        herald_checkpoint_destroy (&self);
        return HERALD_ERR_NOMEM;            //  s_load only fails on its allocation here
    }
    *self_p = self;
    return HERALD_OK;
}

void
herald_checkpoint_destroy (herald_checkpoint_t **self_p)
{
    herald_checkpoint_t *self = *self_p;
    if (!self)
        return;
    if (self->map && self->memory)
        free (self->map);
    else
    if (self->map) {
        msync (self->map, self->map_size, MS_SYNC);
        munmap (self->map, self->map_size);
    }
    if (self->fd >= 0)
        close (self->fd);
    free (self->hash);
    free (self);
    *self_p = NULL;
}

uint64_t
herald_checkpoint_done (herald_checkpoint_t *self)
{
    return self->done;
}

bool
herald_checkpoint_in_doubt (herald_checkpoint_t *self)
{
    return self->in_doubt;
}

bool
herald_checkpoint_seen (herald_checkpoint_t *self, const uint8_t id [16])
{
    size_t pos = s_id_hash (id) & self->hash_mask;
    while (self->hash [pos]) {
        if (memcmp (self->ring [self->hash [pos] - 1].id, id, 16) == 0)
            return true;
        pos = (pos + 1) & self->hash_mask;
    }
    return false;
}

//  Intent for seq, id with the events up to seq + span in doubt too.
static void
s_intent (herald_checkpoint_t *self, uint64_t seq, const uint8_t id [16], uint32_t span)
{
    s_entry_t *entry = &self->ring [self->ring_head % self->capacity];
    s_entry_t next;
    memset (&next, 0, sizeof next);
    next.seq = seq;
    memcpy (next.id, id, 16);
    next.crc = s_entry_crc (&next);
    memcpy (entry, &next, sizeof next);
    self->intent_seq = seq;
    memcpy (self->intent_id, id, 16);
    self->span = span;
    s_write_slot (self);
}

void
herald_checkpoint_intent (herald_checkpoint_t *self, uint64_t seq, const uint8_t id [16])
{
    s_intent (self, seq, id, 0);
}

void
herald_checkpoint_intent_span (herald_checkpoint_t *self, uint64_t seq, const uint8_t id [16],
                               uint64_t last)
{
    uint64_t span = last > seq? last - seq: 0;
    s_intent (self, seq, id, span > UINT32_MAX? UINT32_MAX: (uint32_t) span);
}

uint64_t
herald_checkpoint_doubt_until (herald_checkpoint_t *self)
{
    return self->doubt_until;
}

void
herald_checkpoint_commit (herald_checkpoint_t *self)
{
    herald_checkpoint_commit_span (self, 0);
}

void
herald_checkpoint_commit_span (herald_checkpoint_t *self, uint64_t last)
{
    uint32_t index = (uint32_t) (self->ring_head % self->capacity);
    self->ring_head++;
    self->done = self->intent_seq;
    self->intent_seq = 0;
    self->in_doubt = false;
    uint64_t span = last > self->done? last - self->done: 0;
    self->span = span > UINT32_MAX? UINT32_MAX: (uint32_t) span;
    s_write_slot (self);
    //  The entry now at ring_head % capacity leaves the window
    if (self->ring_head > self->window)
        s_hash_remove (self, (uint32_t) (self->ring_head % self->capacity));
    s_hash_insert (self, index);
}

void
herald_checkpoint_advance (herald_checkpoint_t *self, uint64_t seq)
{
    if (seq <= self->done)
        return;
    self->done = seq;
    self->intent_seq = 0;
    self->in_doubt = false;
    self->span = 0;
    s_write_slot (self);
}

int
herald_checkpoint_sync (herald_checkpoint_t *self)
{
    return self->memory? 0: msync (self->map, self->map_size, MS_SYNC);
}

uint64_t
herald_checkpoint_lineage (herald_checkpoint_t *self)
{
    return self->lineage;
}

void
herald_checkpoint_rewind (herald_checkpoint_t *self, uint64_t seq, uint64_t lineage)
{
    if (seq < self->done)
        self->done = seq;
    self->intent_seq = 0;
    self->in_doubt = false;
    self->doubt_until = 0;
    self->span = 0;
    self->lineage = lineage;
    s_write_slot (self);
}

size_t
herald_checkpoint_window (herald_checkpoint_t *self)
{
    return self->window;
}

size_t
herald_checkpoint_window_fill (herald_checkpoint_t *self)
{
    return self->ring_head < self->window? (size_t) self->ring_head: self->window;
}

void
herald_checkpoint_reset (herald_checkpoint_t *self, uint64_t done, uint64_t lineage)
{
    self->done = done;
    self->lineage = lineage;
    self->intent_seq = 0;
    memset (self->intent_id, 0, 16);
    self->in_doubt = false;
    self->doubt_until = 0;
    self->span = 0;
    self->ring_head = 0;
    s_write_slot (self);
    memset (self->hash, 0, (self->hash_mask + 1) * sizeof (uint32_t));
}
