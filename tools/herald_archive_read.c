/*  =========================================================================
    herald_archive_read - reading one segment, checking every byte

    The reader checks, in this order: the file's size against the index;
    the header (its checksum, then each field against the index's entry);
    the ids block (its checksums, then its digest against the index's
    `ids`); then, as it goes, each block's head and content checksums, its
    first seq, and the seq continuity of its envelopes; at the end the
    trailer and the body's digest.  A block is handed out only after its
    checksum matched, so no event comes from damaged bytes; the body's
    digest (one more check over the same bytes) is for verify and for a
    copy checked against the index.
    =========================================================================
*/

#include "herald_archive.h"
#include "herald_event.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sodium.h>
#include <zstd.h>

struct _herald_archive_reader_t {
    char path [4300];
    int fd;
    herald_archive_seg_t seg;
    uint64_t blocks, blocks_read;
    uint64_t ids_offset;
    uint64_t offset;                //  file offset of the next block
    crypto_generichash_state body;
    ZSTD_DCtx *dctx;
    uint8_t *packed;
    size_t packed_alloc;
    uint8_t *raw;                   //  the current block's content
    size_t raw_len, raw_alloc, raw_at;
    uint32_t raw_left;              //  events of the block not yet handed out
    uint8_t *ids;                   //  count * 16
    uint64_t ids_block_len;
    uint8_t *ids_packed;            //  the ids block as stored, for the body digest
    uint64_t handed;                //  events handed out
    uint64_t expect_seq;
    bool done;
    char *why;
    size_t why_size;
};

static int
s_fail (herald_archive_reader_t *self, uint64_t offset, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));

static int
s_fail (herald_archive_reader_t *self, uint64_t offset, const char *format, ...)
{
    char what [700];
    va_list args;
    va_start (args, format);
    vsnprintf (what, sizeof what, format, args);
    va_end (args);
    snprintf (self->why, self->why_size, "%s, offset %" PRIu64 ": %s", self->path, offset, what);
    return -1;
}

static uint32_t
s_get32 (const uint8_t *at)
{
    return (uint32_t) at [0] | (uint32_t) at [1] << 8 | (uint32_t) at [2] << 16
         | (uint32_t) at [3] << 24;
}

static uint64_t
s_get64 (const uint8_t *at)
{
    return (uint64_t) s_get32 (at) | (uint64_t) s_get32 (at + 4) << 32;
}

static uint64_t
s_hash8 (const void *bytes, size_t len)
{
    uint8_t out [8];
    crypto_generichash (out, sizeof out, bytes, len, NULL, 0);
    return s_get64 (out);
}

static int
s_read_at (herald_archive_reader_t *self, void *into, size_t len, uint64_t offset)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread (self->fd, (uint8_t *) into + done, len - done,
                           (off_t) (offset + done));
        if (n < 0)
            return s_fail (self, offset + done, "cannot read: %s", strerror (errno));
        if (n == 0)
            return s_fail (self, offset + done, "the file ends here (cut short)");
        done += (size_t) n;
    }
    return 0;
}

static int
s_grow (uint8_t **buffer, size_t *alloc, size_t need)
{
    if (need <= *alloc)
        return 0;
    uint8_t *grown = realloc (*buffer, need);
    if (!grown)
        return -1;
    *buffer = grown;
    *alloc = need;
    return 0;
}

//  Read and check the block at offset; its content into raw.  With body,
//  its bytes go into the body's digest.
static int
s_read_block (herald_archive_reader_t *self, uint64_t offset, const char *magic,
              uint8_t **raw, size_t *raw_alloc, size_t *raw_len, uint32_t *count,
              uint64_t *first_seq, uint64_t *stored)
{
    uint8_t head [HERALD_ARCHIVE_BLOCK_HEAD];
    if (offset + sizeof head > self->seg.bytes - HERALD_ARCHIVE_TRAILER_SIZE)
        return s_fail (self, offset, "a block runs into the trailer");
    if (s_read_at (self, head, sizeof head, offset))
        return -1;
    if (s_get64 (head + 32) != s_hash8 (head, 32))
        return s_fail (self, offset, "a block head fails its checksum");
    if (memcmp (head, magic, 4) != 0)
        return s_fail (self, offset, "a block of the wrong kind (not %s)", magic);
    uint32_t packed = s_get32 (head + 4), raw_size = s_get32 (head + 8);
    *count = s_get32 (head + 12);
    *first_seq = s_get64 (head + 16);
    if (offset + sizeof head + packed > self->seg.bytes - HERALD_ARCHIVE_TRAILER_SIZE)
        return s_fail (self, offset, "a block runs into the trailer");
    if (s_grow (&self->packed, &self->packed_alloc, packed ? packed : 1)
    ||  s_grow (raw, raw_alloc, raw_size ? raw_size : 1))
        return s_fail (self, offset, "out of memory");
    if (s_read_at (self, self->packed, packed, offset + sizeof head))
        return -1;
    if (s_get64 (head + 24) != s_hash8 (self->packed, packed))
        return s_fail (self, offset + sizeof head, "a block's content fails its checksum");
    size_t got = ZSTD_decompressDCtx (self->dctx, *raw, raw_size, self->packed, packed);
    if (ZSTD_isError (got) || got != raw_size)
        return s_fail (self, offset + sizeof head, "a block does not decompress: %s",
                       ZSTD_isError (got) ? ZSTD_getErrorName (got) : "wrong size");
    *raw_len = raw_size;
    *stored = sizeof head + packed;
    return 0;
}

herald_archive_reader_t *
herald_archive_reader_new (const char *dir, const herald_archive_seg_t *seg, char *why,
                           size_t size)
{
    herald_archive_reader_t *self = calloc (1, sizeof *self);
    if (!self) {
        snprintf (why, size, "out of memory");
        return NULL;
    }
    self->why = why;
    self->why_size = size;
    self->seg = *seg;
    self->expect_seq = seg->first_seq;
    snprintf (self->path, sizeof self->path, "%s/%s", dir, seg->name);
    self->fd = open (self->path, O_RDONLY | O_CLOEXEC);
    self->dctx = ZSTD_createDCtx ();
    crypto_generichash_init (&self->body, NULL, 0, 32);
    struct stat info;
    uint8_t h [HERALD_ARCHIVE_HEADER_SIZE];
    int rc = 0;
    if (self->fd < 0) {
        snprintf (why, size, "%s: %s (the index names it)", self->path,
                  errno == ENOENT ? "missing" : strerror (errno));
        rc = -1;
    }
    else
    if (!self->dctx)
        rc = s_fail (self, 0, "out of memory");
    else
    if (fstat (self->fd, &info) != 0 || (uint64_t) info.st_size != seg->bytes)
        rc = s_fail (self, (uint64_t) info.st_size, "the file is %" PRIu64 " bytes, the index "
                     "says %" PRIu64 " (cut short or grown)", (uint64_t) info.st_size,
                     seg->bytes);
    else
    if (seg->bytes < HERALD_ARCHIVE_HEADER_SIZE + HERALD_ARCHIVE_TRAILER_SIZE)
        rc = s_fail (self, 0, "too small to be a segment");
    else
    if (s_read_at (self, h, sizeof h, 0) == 0) {
        if (memcmp (h, "HRLDARC", 8) != 0)
            rc = s_fail (self, 0, "not a herald archive segment (bad magic)");
        else
        if (s_get64 (h + 120) != s_hash8 (h, 120))
            rc = s_fail (self, 0, "the header fails its checksum");
        else
        if (s_get32 (h + 8) != HERALD_ARCHIVE_VERSION)
            rc = s_fail (self, 8, "format version %u (this herald reads %d)", s_get32 (h + 8),
                         HERALD_ARCHIVE_VERSION);
        else
        if (s_get64 (h + 16) != seg->first_seq || s_get64 (h + 24) != seg->last_seq
        ||  s_get64 (h + 32) != seg->first_ts || s_get64 (h + 40) != seg->last_ts
        ||  s_get64 (h + 48) != seg->count || s_get64 (h + 56) != seg->lineage)
            rc = s_fail (self, 16, "the header does not match the index");
        self->blocks = s_get64 (h + 64);
        self->ids_offset = s_get64 (h + 72);
    }
    else
        rc = -1;
    //  The ids, first: their digest is the index's proof of what is here
    uint32_t count = 0;
    uint64_t first = 0;
    size_t ids_alloc = 0, ids_len = 0;
    if (rc == 0)
        rc = s_read_block (self, self->ids_offset, "HIDS", &self->ids, &ids_alloc, &ids_len,
                           &count, &first, &self->ids_block_len);
    if (rc == 0 && (count != seg->count || ids_len != seg->count * 16 || first != seg->first_seq))
        rc = s_fail (self, self->ids_offset, "the ids block holds %u ids, the index says %"
                     PRIu64, count, seg->count);
    uint8_t digest [32];
    if (rc == 0) {
        crypto_generichash (digest, sizeof digest, self->ids, ids_len, NULL, 0);
        if (memcmp (digest, seg->ids, 32) != 0)
            rc = s_fail (self, self->ids_offset, "the ids do not match the index's digest");
    }
    if (rc == 0) {
        self->ids_packed = malloc (self->ids_block_len);
        rc = self->ids_packed ? s_read_at (self, self->ids_packed, self->ids_block_len,
                                           self->ids_offset)
                              : s_fail (self, 0, "out of memory");
    }
    self->offset = HERALD_ARCHIVE_HEADER_SIZE;
    if (rc) {
        self->why = NULL;
        herald_archive_reader_destroy (&self);
    }
    return self;
}

//  At the end of the blocks: the ids block must follow, then the trailer.
static int
s_finish (herald_archive_reader_t *self)
{
    if (self->offset != self->ids_offset)
        return s_fail (self, self->offset, "the blocks end here, the header says the ids "
                       "start at %" PRIu64, self->ids_offset);
    if (self->handed != self->seg.count)
        return s_fail (self, self->offset, "%" PRIu64 " events, the index says %" PRIu64,
                       self->handed, self->seg.count);
    crypto_generichash_update (&self->body, self->ids_packed, self->ids_block_len);
    uint64_t at = self->ids_offset + self->ids_block_len;
    if (at != self->seg.bytes - HERALD_ARCHIVE_TRAILER_SIZE)
        return s_fail (self, at, "bytes between the ids and the trailer");
    uint8_t trailer [HERALD_ARCHIVE_TRAILER_SIZE], digest [32];
    if (s_read_at (self, trailer, sizeof trailer, at))
        return -1;
    crypto_generichash_final (&self->body, digest, sizeof digest);
    if (memcmp (trailer, "HRLDEND", 8) != 0 || s_get64 (trailer + 8) != self->blocks
    ||  s_get64 (trailer + 16) != self->seg.count || s_get64 (trailer + 24) != self->seg.last_seq)
        return s_fail (self, at, "the trailer is damaged");
    if (memcmp (trailer + 32, digest, 32) != 0 || memcmp (self->seg.body, digest, 32) != 0)
        return s_fail (self, at + 32, "the file's checksum does not match");
    self->done = true;
    return 0;
}

int
herald_archive_reader_next (herald_archive_reader_t *self, const uint8_t **envelope,
                            size_t *len, uint64_t *seq, uint64_t *ts)
{
    if (self->done)
        return 0;
    while (self->raw_left == 0) {
        if (self->blocks_read == self->blocks)
            return s_finish (self) ? -1 : 0;
        uint32_t count;
        uint64_t first, stored;
        if (s_read_block (self, self->offset, "HBLK", &self->raw, &self->raw_alloc,
                          &self->raw_len, &count, &first, &stored))
            return -1;
        if (first != self->expect_seq || count == 0)
            return s_fail (self, self->offset, "a block starts at seq %" PRIu64 ", expected %"
                           PRIu64, first, self->expect_seq);
        //  The body digest covers head and content as stored
        uint8_t head [HERALD_ARCHIVE_BLOCK_HEAD];
        if (s_read_at (self, head, sizeof head, self->offset))
            return -1;
        crypto_generichash_update (&self->body, head, sizeof head);
        crypto_generichash_update (&self->body, self->packed, stored - sizeof head);
        self->offset += stored;
        self->blocks_read++;
        self->raw_left = count;
        self->raw_at = 0;
    }
    uint64_t block_offset = self->offset;
    if (self->raw_at + 4 > self->raw_len
    ||  s_get32 (self->raw + self->raw_at) > self->raw_len - self->raw_at - 4)
        return s_fail (self, block_offset, "a block's events overrun its content");
    if (self->handed >= self->seg.count)
        return s_fail (self, block_offset, "more events than the index says");
    *len = s_get32 (self->raw + self->raw_at);
    *envelope = self->raw + self->raw_at + 4;
    self->raw_at += 4 + *len;
    self->raw_left--;
    if (self->raw_left == 0 && self->raw_at != self->raw_len)
        return s_fail (self, block_offset, "bytes after a block's last event");
    const char *topic;
    size_t topic_len;
    uint64_t ver;
    if (!herald_event_peek (*envelope, *len, &topic, &topic_len, seq, &ver, ts))
        return s_fail (self, block_offset, "the envelope of seq %" PRIu64 " does not decode",
                       self->expect_seq);
    if (*seq != self->expect_seq)
        return s_fail (self, block_offset, "an envelope of seq %" PRIu64 " where seq %" PRIu64
                       " belongs", *seq, self->expect_seq);
    if ((*seq == self->seg.first_seq && *ts != self->seg.first_ts)
    ||  (*seq == self->seg.last_seq && *ts != self->seg.last_ts))
        return s_fail (self, block_offset, "seq %" PRIu64 " has a ts the index does not say",
                       *seq);
    self->expect_seq++;
    self->handed++;
    return 1;
}

const uint8_t *
herald_archive_reader_id (herald_archive_reader_t *self)
{
    return self->handed ? self->ids + (self->handed - 1) * 16 : NULL;
}

uint64_t
herald_archive_reader_bytes (herald_archive_reader_t *self)
{
    return self->offset;
}

void
herald_archive_reader_destroy (herald_archive_reader_t **self_p)
{
    herald_archive_reader_t *self = *self_p;
    if (!self)
        return;
    if (self->fd >= 0)
        close (self->fd);
    ZSTD_freeDCtx (self->dctx);
    free (self->packed);
    free (self->raw);
    free (self->ids);
    free (self->ids_packed);
    free (self);
    *self_p = NULL;
}
