/*  =========================================================================
    herald_backup_priv - what herald_backup.c and herald_backup_files.c share

    Not an API: the helpers of one class split in two files (the backup's
    files and manifest in herald_backup_files.c; create, verify and
    restore in herald_backup.c).
    =========================================================================
*/

#ifndef HERALD_BACKUP_PRIV_H_INCLUDED
#define HERALD_BACKUP_PRIV_H_INCLUDED

#include <sodium.h>
#include "herald_backup.h"

#define HERALD_BACKUP_NAME_MAX  255     //  a file name in store/

//  One file of a backup's store/: its name, size and SHA-256 (hex).
typedef struct {
    char name [HERALD_BACKUP_NAME_MAX + 1];
    uint64_t size;
    char sha256 [crypto_hash_sha256_BYTES * 2 + 1];
} herald_backup_file_t;

//  A manifest: what the backup holds, and its files sorted by name.
typedef struct {
    herald_backup_info_t info;
    herald_backup_file_t *files;        //  owned (free)
    size_t count;
} herald_backup_manifest_t;

//  Progress of one phase, reported to the caller's function at most every
//  64 MiB (and at the end: last).
typedef struct {
    herald_backup_progress_fn *fn;
    void *arg;
    const char *phase;
    uint64_t done;
    uint64_t total;
    uint64_t reported;
} herald_backup_meter_t;

void
    herald_backup_meter (herald_backup_meter_t *progress, uint64_t bytes, bool last);

//  vsnprintf into out: a path made of parts checked for length where they
//  came in (one cut short fails to open: it is never another file).
void
    herald_backup_join (char *out, size_t size, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));

//  err = HERALD_ERR_IO "WHAT PATH: strerror(errno)", saying so when the
//  disk is full.  Returns HERALD_ERR_IO.
herald_err
    herald_backup_io_error (herald_error_t *err, const char *what, const char *path);

//  Remove a directory this code made, with what it holds.
void
    herald_backup_remove_tree (const char *path);

//  fsync a file or a directory by path.
herald_err
    herald_backup_fsync (const char *path, herald_error_t *err);

//  0: path does not exist; 1: an empty directory; -1: anything else (err
//  says what; what names the path's role in the message).
int
    herald_backup_vacant (const char *path, const char *what, herald_error_t *err);

//  The directory path is in, and its last part, into parent and name
//  (size bytes each).
void
    herald_backup_split (const char *path, char *parent, char *name, size_t size);

//  Lower-case hex of bytes into out (2 * len + 1 bytes).
void
    herald_backup_hex (const uint8_t *bytes, size_t len, char *out);

//  Read path whole, hashing it (and writing it to out_fd when >= 0, then
//  syncing that); its length into size.  cancel (may be NULL) set: stop
//  with HERALD_ERR_INTERNAL.  A missing file is HERALD_ERR_CORRUPT.
herald_err
    herald_backup_hash_file (const char *path, int out_fd, const char *out_path,
                             const volatile bool *cancel, herald_backup_meter_t *progress,
                             uint64_t *size, char sha256 [65], herald_error_t *err);

//  The regular files of dir, sorted by name, into *files (caller frees);
//  anything else there is refused (HERALD_ERR_CORRUPT).
herald_err
    herald_backup_list (const char *dir, herald_backup_file_t **files, size_t *count,
                        herald_error_t *err);

//  Write manifest to path (created, never replaced), with its checksum
//  line, synced.
herald_err
    herald_backup_manifest_write (const char *path, const herald_backup_manifest_t *manifest,
                                  herald_error_t *err);

//  Read and check dir's manifest into manifest (files owned by it).
herald_err
    herald_backup_manifest_read (const char *dir, herald_backup_manifest_t *manifest,
                                 herald_error_t *err);

#endif
