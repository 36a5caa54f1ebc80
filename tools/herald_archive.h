/*  =========================================================================
    herald_archive - the archive format: segment files and their index

    An archive is a directory of immutable segment files and one index.
    Every byte is covered by a checksum (BLAKE2b, libsodium); every event
    is the stored envelope exactly as the broker sent it.

    seg-<first seq, 20 digits>.hwa (all integers little-endian):
        header   128 bytes: "HRLDARC\0", u32 version 1, u32 header size,
                 u64 first_seq, last_seq, first_ts, last_ts, count, lineage,
                 blocks, ids_offset, char node[40], u64 hash of bytes 0..120
        blocks   each a 40-byte head: "HBLK", u32 compressed size, u32 raw
                 size, u32 events, u64 first_seq, u64 hash of the compressed
                 bytes, u64 hash of head bytes 0..32; then one zstd frame
                 whose content is, per event, u32 length + envelope
        ids      one block of the same layout with magic "HIDS": the 16-byte
                 id of every event in seq order
        trailer  64 bytes: "HRLDEND\0", u64 blocks, u64 count, u64 last_seq,
                 32-byte BLAKE2b of every byte from the first block to the
                 trailer (the body)
    index.hwa, text, one record a line:
        herald-archive 1
        segment NAME first_seq F last_seq L first_ts T last_ts T count N
                lineage G bytes B body HEX64 ids HEX64
        end segments S last_seq L hash HEX32    (BLAKE2b-128 of the lines above)

    `ids` is the BLAKE2b-256 of the segment's ids in seq order: a compact
    proof, kept in the index, of exactly which ids a segment holds.
    Files are written under temporary names (.NAME.tmp), fsync'd, renamed,
    and the directory fsync'd; a segment is renamed before the index names
    it, so the index only ever names complete segments.
    =========================================================================
*/

#ifndef HERALD_ARCHIVE_H_INCLUDED
#define HERALD_ARCHIVE_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HERALD_ARCHIVE_VERSION      1
#define HERALD_ARCHIVE_INDEX        "index.hwa"
#define HERALD_ARCHIVE_HEADER_SIZE  128
#define HERALD_ARCHIVE_BLOCK_HEAD   40
#define HERALD_ARCHIVE_TRAILER_SIZE 64
#define HERALD_ARCHIVE_NAME_MAX     32
#define HERALD_ARCHIVE_NODE_MAX     40
#define HERALD_ARCHIVE_BLOCK_RAW    (1024 * 1024)   //  raw bytes a block aims at
#define HERALD_ARCHIVE_WHY_MAX      1200

//  One segment as the index names it.
typedef struct {
    char name [HERALD_ARCHIVE_NAME_MAX];
    uint64_t first_seq, last_seq, first_ts, last_ts, count, lineage, bytes;
    uint8_t body [32];              //  BLAKE2b-256 of the body
    uint8_t ids [32];               //  BLAKE2b-256 of the ids in seq order
} herald_archive_seg_t;

typedef struct {
    herald_archive_seg_t *segs;
    size_t count;
    size_t alloc;
} herald_archive_index_t;

//  Load DIR's index into *index (empty when DIR has no index.hwa and
//  missing_ok).  Returns 0, or -1 with why naming the file and the line.
int
    herald_archive_index_load (const char *dir, bool missing_ok,
                               herald_archive_index_t *index, char *why, size_t size);

//  Write index atomically (temporary name, fsync, rename, fsync DIR).
int
    herald_archive_index_save (const char *dir, const herald_archive_index_t *index,
                               char *why, size_t size);

//  Append seg; -1 when out of memory.
int
    herald_archive_index_add (herald_archive_index_t *index, const herald_archive_seg_t *seg);

void
    herald_archive_index_fini (herald_archive_index_t *index);

//  Remove the temporary files an interrupted run left in dir.  Returns how
//  many were removed.
int
    herald_archive_clean (const char *dir);

//  ---------------------------------------------------------------------
//  Writing one segment.

typedef struct _herald_archive_writer_t herald_archive_writer_t;

//  Start a segment in dir (under a temporary name).  NULL with why filled.
herald_archive_writer_t *
    herald_archive_writer_new (const char *dir, const char *node, size_t node_len,
                               uint64_t lineage, char *why, size_t size);

//  Add one envelope (its seq, ts and id already read from it).
int
    herald_archive_writer_add (herald_archive_writer_t *self, const void *envelope,
                               size_t len, uint64_t seq, uint64_t ts, const uint8_t id [16]);

//  Events and bytes (compressed, so far) written.
uint64_t
    herald_archive_writer_count (herald_archive_writer_t *self);
uint64_t
    herald_archive_writer_bytes (herald_archive_writer_t *self);

//  Finish: flush, header, trailer, fsync, rename to its name, fsync dir;
//  fills seg for the index and destroys the writer.  On failure (-1) the
//  writer stays: read herald_archive_writer_why, then abort it.
int
    herald_archive_writer_commit (herald_archive_writer_t **self_p, herald_archive_seg_t *seg);

//  Give up: remove the temporary file.
void
    herald_archive_writer_abort (herald_archive_writer_t **self_p);

//  The error of the last failed call.
const char *
    herald_archive_writer_why (herald_archive_writer_t *self);

//  ---------------------------------------------------------------------
//  Reading one segment, checking everything: the header against the
//  index's entry, every block's checksums and seq continuity, the ids,
//  the trailer and the body's digest.  An envelope is handed out only
//  from a block whose checksum matched.

typedef struct _herald_archive_reader_t herald_archive_reader_t;

herald_archive_reader_t *
    herald_archive_reader_new (const char *dir, const herald_archive_seg_t *seg,
                               char *why, size_t size);

//  The next envelope: 1 with *envelope (borrowed until the next call),
//  *len, *seq and *ts; 0 at the end, after every end check passed; -1
//  with why naming the file and the offset of the damage.
int
    herald_archive_reader_next (herald_archive_reader_t *self, const uint8_t **envelope,
                                size_t *len, uint64_t *seq, uint64_t *ts);

//  The id (16 bytes) the ids block gives the envelope next returned last.
const uint8_t *
    herald_archive_reader_id (herald_archive_reader_t *self);

//  Compressed bytes read so far.
uint64_t
    herald_archive_reader_bytes (herald_archive_reader_t *self);

void
    herald_archive_reader_destroy (herald_archive_reader_t **self_p);

//  hex of bytes[0..len) into out (2 * len + 1).
void
    herald_archive_hex (const uint8_t *bytes, size_t len, char *out);

#endif
