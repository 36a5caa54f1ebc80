/*  =========================================================================
    herald_archive - the archive format: segment files and their index

    The layout is in herald_archive.h.  Why it is so:
    - Segments are immutable: a run ends its last segment at the end of
      its range, and the next run starts a new one, so a file once named
      by the index never changes (a copy to cold storage stays valid).
    - The header is written last (pwrite at offset 0) because it holds
      the totals; until then the file lives under a temporary name, so a
      file under a segment's name is always complete.
    - Each block's checksum is checked before its content is used, so a
      reader never hands out an event from damaged bytes.
    =========================================================================
*/

#include "herald_archive.h"

#include <dirent.h>
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

#define S_MAGIC         "HRLDARC"   //  + NUL: 8 bytes
#define S_END_MAGIC     "HRLDEND"
#define S_ZSTD_LEVEL    3

static void
s_why (char *why, size_t size, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));

static void
s_why (char *why, size_t size, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    vsnprintf (why, size, format, args);
    va_end (args);
}

static void
s_put32 (uint8_t *at, uint32_t value)
{
    for (int i = 0; i < 4; i++)
        at [i] = (uint8_t) (value >> (8 * i));
}

static void
s_put64 (uint8_t *at, uint64_t value)
{
    for (int i = 0; i < 8; i++)
        at [i] = (uint8_t) (value >> (8 * i));
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

//  The 8-byte checksum of bytes (BLAKE2b with an 8-byte digest).
static uint64_t
s_hash8 (const void *bytes, size_t len)
{
    uint8_t out [8];
    crypto_generichash (out, sizeof out, bytes, len, NULL, 0);
    return s_get64 (out);
}

void
herald_archive_hex (const uint8_t *bytes, size_t len, char *out)
{
    static const char digits [] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out [2 * i] = digits [bytes [i] >> 4];
        out [2 * i + 1] = digits [bytes [i] & 15];
    }
    out [2 * len] = 0;
}

static bool
s_unhex (const char *text, uint8_t *bytes, size_t len)
{
    if (strlen (text) != 2 * len)
        return false;
    for (size_t i = 0; i < 2 * len; i++) {
        char c = text [i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v < 0)
            return false;
        bytes [i / 2] = (uint8_t) (i % 2 ? bytes [i / 2] | v : v << 4);
    }
    return true;
}

static int
s_fsync_dir (const char *dir)
{
    int fd = open (dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return -1;
    int rc = fsync (fd);
    close (fd);
    return rc;
}

//  ---------------------------------------------------------------------
//  The index

int
herald_archive_index_add (herald_archive_index_t *index, const herald_archive_seg_t *seg)
{
    if (index->count == index->alloc) {
        size_t alloc = index->alloc ? index->alloc * 2 : 16;
        herald_archive_seg_t *segs = realloc (index->segs, alloc * sizeof *segs);
        if (!segs)
            return -1;
        index->segs = segs;
        index->alloc = alloc;
    }
    index->segs [index->count++] = *seg;
    return 0;
}

void
herald_archive_index_fini (herald_archive_index_t *index)
{
    free (index->segs);
    memset (index, 0, sizeof *index);
}

static int
s_format_seg (char *line, size_t size, const herald_archive_seg_t *seg)
{
    char body [65], ids [65];
    herald_archive_hex (seg->body, 32, body);
    herald_archive_hex (seg->ids, 32, ids);
    return snprintf (line, size, "segment %s first_seq %" PRIu64 " last_seq %" PRIu64
                     " first_ts %" PRIu64 " last_ts %" PRIu64 " count %" PRIu64
                     " lineage %" PRIu64 " bytes %" PRIu64 " body %s ids %s\n",
                     seg->name, seg->first_seq, seg->last_seq, seg->first_ts, seg->last_ts,
                     seg->count, seg->lineage, seg->bytes, body, ids);
}

int
herald_archive_index_load (const char *dir, bool missing_ok, herald_archive_index_t *index,
                           char *why, size_t size)
{
    memset (index, 0, sizeof *index);
    char path [4200];
    snprintf (path, sizeof path, "%s/%s", dir, HERALD_ARCHIVE_INDEX);
    FILE *file = fopen (path, "r");
    if (!file) {
        if (errno == ENOENT && missing_ok)
            return 0;
        s_why (why, size, "cannot open %s: %s", path, strerror (errno));
        return -1;
    }
    crypto_generichash_state state;
    crypto_generichash_init (&state, NULL, 0, 16);
    char line [1024];
    size_t number = 0;
    bool ended = false;
    int rc = 0;
    while (rc == 0 && fgets (line, sizeof line, file)) {
        number++;
        size_t len = strlen (line);
        if (ended) {
            s_why (why, size, "%s line %zu: text after the end line", path, number);
            rc = -1;
            break;
        }
        if (len == 0 || line [len - 1] != '\n') {
            s_why (why, size, "%s line %zu: cut short (no newline)", path, number);
            rc = -1;
            break;
        }
        if (number == 1) {
            if (strcmp (line, "herald-archive 1\n") != 0) {
                s_why (why, size, "%s line 1: not a herald archive index of version 1", path);
                rc = -1;
            }
            crypto_generichash_update (&state, (const uint8_t *) line, len);
            continue;
        }
        herald_archive_seg_t seg;
        memset (&seg, 0, sizeof seg);
        char body [80], ids [80], check [sizeof line];
        int consumed = 0;
        if (sscanf (line, "segment %31s first_seq %" SCNu64 " last_seq %" SCNu64
                    " first_ts %" SCNu64 " last_ts %" SCNu64 " count %" SCNu64
                    " lineage %" SCNu64 " bytes %" SCNu64 " body %79s ids %79s%n",
                    seg.name, &seg.first_seq, &seg.last_seq, &seg.first_ts, &seg.last_ts,
                    &seg.count, &seg.lineage, &seg.bytes, body, ids, &consumed) == 10
        &&  (size_t) consumed == len - 1
        &&  s_unhex (body, seg.body, 32) && s_unhex (ids, seg.ids, 32)) {
            //  The line must be exactly what we would write
            s_format_seg (check, sizeof check, &seg);
            uint64_t expect = index->count ? index->segs [index->count - 1].last_seq + 1 : 0;
            if (strcmp (check, line) != 0 || seg.first_seq == 0 || seg.last_seq < seg.first_seq
            ||  seg.count != seg.last_seq - seg.first_seq + 1) {
                s_why (why, size, "%s line %zu: a segment line that does not add up", path, number);
                rc = -1;
            }
            else
            if (expect && seg.first_seq != expect) {
                s_why (why, size, "%s line %zu: %s starts at seq %" PRIu64 ", expected %" PRIu64
                       " (a gap or an overlap)", path, number, seg.name, seg.first_seq, expect);
                rc = -1;
            }
            else
            if (herald_archive_index_add (index, &seg)) {
                s_why (why, size, "out of memory");
                rc = -1;
            }
            crypto_generichash_update (&state, (const uint8_t *) line, len);
            continue;
        }
        uint64_t segments = 0, last_seq = 0;
        char hash [80];
        consumed = 0;
        if (sscanf (line, "end segments %" SCNu64 " last_seq %" SCNu64 " hash %79s%n",
                    &segments, &last_seq, hash, &consumed) == 3
        &&  (size_t) consumed == len - 1) {
            uint8_t want [16], got [16];
            crypto_generichash_final (&state, got, sizeof got);
            uint64_t last = index->count ? index->segs [index->count - 1].last_seq : 0;
            if (!s_unhex (hash, want, sizeof want) || memcmp (want, got, sizeof got) != 0) {
                s_why (why, size, "%s line %zu: the checksum does not match the lines above "
                       "(the index is damaged)", path, number);
                rc = -1;
            }
            else
            if (segments != index->count || last_seq != last) {
                s_why (why, size, "%s line %zu: the end line names %" PRIu64 " segments to seq %"
                       PRIu64 ", the lines above %zu to seq %" PRIu64, path, number, segments,
                       last_seq, index->count, last);
                rc = -1;
            }
            ended = true;
            continue;
        }
        s_why (why, size, "%s line %zu: not a line of an archive index", path, number);
        rc = -1;
    }
    if (rc == 0 && ferror (file)) {
        s_why (why, size, "cannot read %s: %s", path, strerror (errno));
        rc = -1;
    }
    if (rc == 0 && !ended) {
        s_why (why, size, "%s: no end line (the index is cut short)", path);
        rc = -1;
    }
    fclose (file);
    if (rc)
        herald_archive_index_fini (index);
    return rc;
}

//  Write len bytes to a new file dir/name atomically.
static int
s_write_atomic (const char *dir, const char *name, const char *text, size_t len, char *why,
                size_t size)
{
    char path [4200], temp [4200];
    snprintf (path, sizeof path, "%s/%s", dir, name);
    snprintf (temp, sizeof temp, "%s/.%s.tmp", dir, name);
    int fd = open (temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        s_why (why, size, "cannot create %s: %s", temp, strerror (errno));
        return -1;
    }
    size_t done = 0;
    while (done < len) {
        ssize_t n = write (fd, text + done, len - done);
        if (n <= 0) {
            s_why (why, size, "cannot write %s: %s", temp, strerror (errno));
            close (fd);
            unlink (temp);
            return -1;
        }
        done += (size_t) n;
    }
    if (fsync (fd) != 0 || close (fd) != 0) {
        s_why (why, size, "cannot sync %s: %s", temp, strerror (errno));
        unlink (temp);
        return -1;
    }
    if (rename (temp, path) != 0 || s_fsync_dir (dir) != 0) {
        s_why (why, size, "cannot rename %s to %s: %s", temp, path, strerror (errno));
        unlink (temp);
        return -1;
    }
    return 0;
}

int
herald_archive_index_save (const char *dir, const herald_archive_index_t *index, char *why,
                           size_t size)
{
    size_t cap = 200 + index->count * 400, len = 0;
    char *text = malloc (cap);
    if (!text) {
        s_why (why, size, "out of memory");
        return -1;
    }
    len += (size_t) snprintf (text + len, cap - len, "herald-archive 1\n");
    for (size_t at = 0; at < index->count; at++)
        len += (size_t) s_format_seg (text + len, cap - len, &index->segs [at]);
    uint8_t hash [16];
    char hex [33];
    crypto_generichash (hash, sizeof hash, (const uint8_t *) text, len, NULL, 0);
    herald_archive_hex (hash, sizeof hash, hex);
    len += (size_t) snprintf (text + len, cap - len, "end segments %zu last_seq %" PRIu64
                              " hash %s\n", index->count,
                              index->count ? index->segs [index->count - 1].last_seq : 0, hex);
    int rc = s_write_atomic (dir, HERALD_ARCHIVE_INDEX, text, len, why, size);
    free (text);
    return rc;
}

int
herald_archive_clean (const char *dir)
{
    DIR *handle = opendir (dir);
    if (!handle)
        return 0;
    int removed = 0;
    struct dirent *entry;
    while ((entry = readdir (handle)) != NULL) {
        size_t len = strlen (entry->d_name);
        if (entry->d_name [0] == '.' && len > 5 && strcmp (entry->d_name + len - 4, ".tmp") == 0) {
            char path [4200];
            snprintf (path, sizeof path, "%s/%s", dir, entry->d_name);
            if (unlink (path) == 0)
                removed++;
        }
    }
    closedir (handle);
    return removed;
}

//  ---------------------------------------------------------------------
//  Writer

struct _herald_archive_writer_t {
    char dir [4096];
    char temp [4200];
    int fd;
    uint8_t header [HERALD_ARCHIVE_HEADER_SIZE];
    herald_archive_seg_t seg;
    uint64_t blocks;
    uint64_t offset;                //  file offset of the next block
    crypto_generichash_state body;
    crypto_generichash_state ids_hash;
    ZSTD_CCtx *cctx;
    uint8_t *raw;                   //  the block being filled
    size_t raw_len, raw_alloc;
    uint32_t raw_count;
    uint64_t raw_first;
    uint8_t *ids;                   //  every id, seq order
    size_t ids_len, ids_alloc;
    uint8_t *out;
    size_t out_alloc;
    char why [HERALD_ARCHIVE_WHY_MAX];
};

static int
s_grow (uint8_t **buffer, size_t *alloc, size_t need)
{
    if (need <= *alloc)
        return 0;
    size_t next = *alloc ? *alloc : 4096;
    while (next < need)
        next *= 2;
    uint8_t *grown = realloc (*buffer, next);
    if (!grown)
        return -1;
    *buffer = grown;
    *alloc = next;
    return 0;
}

static int
s_write_all (herald_archive_writer_t *self, const void *bytes, size_t len)
{
    const uint8_t *at = bytes;
    while (len) {
        ssize_t n = write (self->fd, at, len);
        if (n <= 0) {
            s_why (self->why, sizeof self->why, "cannot write %s: %s", self->temp,
                   n < 0 ? strerror (errno) : "no progress");
            return -1;
        }
        at += n;
        len -= (size_t) n;
    }
    return 0;
}

herald_archive_writer_t *
herald_archive_writer_new (const char *dir, const char *node, size_t node_len,
                           uint64_t lineage, char *why, size_t size)
{
    herald_archive_writer_t *self = calloc (1, sizeof *self);
    if (!self) {
        s_why (why, size, "out of memory");
        return NULL;
    }
    snprintf (self->dir, sizeof self->dir, "%s", dir);
    self->seg.lineage = lineage;
    memcpy (self->header + 80, node, node_len < HERALD_ARCHIVE_NODE_MAX - 1
                                     ? node_len : HERALD_ARCHIVE_NODE_MAX - 1);
    self->cctx = ZSTD_createCCtx ();
    snprintf (self->temp, sizeof self->temp, "%s/.segment-%d.tmp", dir, (int) getpid ());
    self->fd = self->cctx ? open (self->temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) : -1;
    if (self->fd < 0) {
        s_why (why, size, "cannot create %s: %s", self->temp,
               self->cctx ? strerror (errno) : "out of memory");
        if (self->cctx)
            ZSTD_freeCCtx (self->cctx);
        free (self);
        return NULL;
    }
    crypto_generichash_init (&self->body, NULL, 0, 32);
    crypto_generichash_init (&self->ids_hash, NULL, 0, 32);
    //  Room for the header, written at commit
    self->offset = HERALD_ARCHIVE_HEADER_SIZE;
    if (s_write_all (self, self->header, HERALD_ARCHIVE_HEADER_SIZE)) {
        s_why (why, size, "%s", self->why);
        herald_archive_writer_abort (&self);
        return NULL;
    }
    return self;
}

//  Compress and write one block of raw[0..raw_len).
static int
s_write_block (herald_archive_writer_t *self, const char *magic, const uint8_t *raw,
               size_t raw_len, uint32_t count, uint64_t first_seq)
{
    if (raw_len > UINT32_MAX) {
        s_why (self->why, sizeof self->why, "a block of %zu bytes: more than a block holds",
               raw_len);
        return -1;
    }
    size_t bound = ZSTD_compressBound (raw_len);
    if (s_grow (&self->out, &self->out_alloc, bound)) {
        s_why (self->why, sizeof self->why, "out of memory");
        return -1;
    }
    size_t packed = ZSTD_compressCCtx (self->cctx, self->out, bound, raw, raw_len, S_ZSTD_LEVEL);
    if (ZSTD_isError (packed) || packed > UINT32_MAX) {
        s_why (self->why, sizeof self->why, "cannot compress a block: %s",
               ZSTD_getErrorName (packed));
        return -1;
    }
    uint8_t head [HERALD_ARCHIVE_BLOCK_HEAD];
    memcpy (head, magic, 4);
    s_put32 (head + 4, (uint32_t) packed);
    s_put32 (head + 8, (uint32_t) raw_len);
    s_put32 (head + 12, count);
    s_put64 (head + 16, first_seq);
    s_put64 (head + 24, s_hash8 (self->out, packed));
    s_put64 (head + 32, s_hash8 (head, 32));
    crypto_generichash_update (&self->body, head, sizeof head);
    crypto_generichash_update (&self->body, self->out, packed);
    if (s_write_all (self, head, sizeof head) || s_write_all (self, self->out, packed))
        return -1;
    self->offset += sizeof head + packed;
    return 0;
}

static int
s_flush (herald_archive_writer_t *self)
{
    if (!self->raw_count)
        return 0;
    int rc = s_write_block (self, "HBLK", self->raw, self->raw_len, self->raw_count,
                            self->raw_first);
    self->blocks++;
    self->raw_len = 0;
    self->raw_count = 0;
    return rc;
}

int
herald_archive_writer_add (herald_archive_writer_t *self, const void *envelope, size_t len,
                           uint64_t seq, uint64_t ts, const uint8_t id [16])
{
    herald_archive_seg_t *seg = &self->seg;
    if (seg->count && seq != seg->last_seq + 1) {
        s_why (self->why, sizeof self->why, "seq %" PRIu64 " after seq %" PRIu64
               " (the stream skipped or repeated seqs)", seq, seg->last_seq);
        return -1;
    }
    if (len > UINT32_MAX / 2
    ||  s_grow (&self->raw, &self->raw_alloc, self->raw_len + 4 + len)
    ||  s_grow (&self->ids, &self->ids_alloc, self->ids_len + 16)) {
        s_why (self->why, sizeof self->why, "out of memory");
        return -1;
    }
    if (!self->raw_count)
        self->raw_first = seq;
    s_put32 (self->raw + self->raw_len, (uint32_t) len);
    memcpy (self->raw + self->raw_len + 4, envelope, len);
    self->raw_len += 4 + len;
    self->raw_count++;
    memcpy (self->ids + self->ids_len, id, 16);
    self->ids_len += 16;
    if (!seg->count) {
        seg->first_seq = seq;
        seg->first_ts = ts;
    }
    seg->last_seq = seq;
    seg->last_ts = ts;
    seg->count++;
    if (self->raw_len >= HERALD_ARCHIVE_BLOCK_RAW)
        return s_flush (self);
    return 0;
}

uint64_t
herald_archive_writer_count (herald_archive_writer_t *self)
{
    return self->seg.count;
}

uint64_t
herald_archive_writer_bytes (herald_archive_writer_t *self)
{
    return self->offset + self->raw_len / 4;   //  the open block, guessed at 4:1
}

const char *
herald_archive_writer_why (herald_archive_writer_t *self)
{
    return self->why;
}

static void
s_writer_free (herald_archive_writer_t *self)
{
    if (self->fd >= 0)
        close (self->fd);
    ZSTD_freeCCtx (self->cctx);
    free (self->raw);
    free (self->ids);
    free (self->out);
    free (self);
}

void
herald_archive_writer_abort (herald_archive_writer_t **self_p)
{
    herald_archive_writer_t *self = *self_p;
    if (!self)
        return;
    unlink (self->temp);
    s_writer_free (self);
    *self_p = NULL;
}

int
herald_archive_writer_commit (herald_archive_writer_t **self_p, herald_archive_seg_t *seg)
{
    herald_archive_writer_t *self = *self_p;
    herald_archive_seg_t *mine = &self->seg;
    int rc = mine->count ? s_flush (self) : -1;
    if (!mine->count)
        s_why (self->why, sizeof self->why, "an empty segment");
    uint64_t ids_offset = self->offset;
    if (rc == 0)
        rc = s_write_block (self, "HIDS", self->ids, self->ids_len, (uint32_t) mine->count,
                            mine->first_seq);
    crypto_generichash (mine->ids, 32, self->ids, self->ids_len, NULL, 0);
    uint8_t trailer [HERALD_ARCHIVE_TRAILER_SIZE];
    memset (trailer, 0, sizeof trailer);
    memcpy (trailer, S_END_MAGIC, 8);
    s_put64 (trailer + 8, self->blocks);
    s_put64 (trailer + 16, mine->count);
    s_put64 (trailer + 24, mine->last_seq);
    crypto_generichash_final (&self->body, mine->body, 32);
    memcpy (trailer + 32, mine->body, 32);
    if (rc == 0)
        rc = s_write_all (self, trailer, sizeof trailer);
    uint8_t *h = self->header;
    memcpy (h, S_MAGIC, 8);
    s_put32 (h + 8, HERALD_ARCHIVE_VERSION);
    s_put32 (h + 12, HERALD_ARCHIVE_HEADER_SIZE);
    s_put64 (h + 16, mine->first_seq);
    s_put64 (h + 24, mine->last_seq);
    s_put64 (h + 32, mine->first_ts);
    s_put64 (h + 40, mine->last_ts);
    s_put64 (h + 48, mine->count);
    s_put64 (h + 56, mine->lineage);
    s_put64 (h + 64, self->blocks);
    s_put64 (h + 72, ids_offset);
    s_put64 (h + 120, s_hash8 (h, 120));
    if (rc == 0 && pwrite (self->fd, h, HERALD_ARCHIVE_HEADER_SIZE, 0)
                   != HERALD_ARCHIVE_HEADER_SIZE) {
        s_why (self->why, sizeof self->why, "cannot write %s: %s", self->temp, strerror (errno));
        rc = -1;
    }
    if (rc == 0 && fsync (self->fd) != 0) {
        s_why (self->why, sizeof self->why, "cannot sync %s: %s", self->temp, strerror (errno));
        rc = -1;
    }
    snprintf (mine->name, sizeof mine->name, "seg-%020" PRIu64 ".hwa", mine->first_seq);
    mine->bytes = self->offset + HERALD_ARCHIVE_TRAILER_SIZE;
    char path [4300];
    snprintf (path, sizeof path, "%s/%s", self->dir, mine->name);
    if (rc == 0 && (rename (self->temp, path) != 0 || s_fsync_dir (self->dir) != 0)) {
        s_why (self->why, sizeof self->why, "cannot rename %s to %s: %s", self->temp, path,
               strerror (errno));
        rc = -1;
    }
    if (rc == 0) {
        *seg = *mine;
        s_writer_free (self);
        *self_p = NULL;
    }
    return rc;                      //  on failure the caller reads why, then aborts
}
