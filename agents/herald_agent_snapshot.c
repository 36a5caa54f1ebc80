/*  =========================================================================
    herald_agent_snapshot - a service's own state, saved at a seq

    A snapshot is an opaque blob the service makes of its state, with the
    seq it reflects; after a restart it loads the blob and subscribes from
    seq + 1, so it replays only what came after.  One file per name in
    state_dir/snapshots, replaced whole and atomically:

        "HRLDSNP1" | seq u64 | len u64 | crc32c u32 | reserved u32 | bytes (len)
        the crc covers the first 24 bytes and the bytes

    An agent with no state_dir has no snapshots: save and load are
    HERALD_ERR_INVALID.

    Save writes name.tmp, fsyncs it, renames it over name and fsyncs the
    directory: a crash leaves the old snapshot or the new one.
    =========================================================================
*/

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include "herald_agent_priv.h"
#include "herald_crc.h"
#include "herald_file.h"

#define MAGIC           "HRLDSNP1"
#define HEADER_BYTES    32

static herald_err
s_path (herald_agent_t *self, const char *name, char *path, size_t size, bool make_dir)
{
    if (!self || !herald_agent_name_valid (name))
        return herald_agent_set_error (HERALD_ERR_INVALID, "a snapshot name is 1-128 bytes of "
                                       "[A-Za-z0-9._-]");
    if (!self->state_dir)
        return herald_agent_set_error (HERALD_ERR_INVALID, "snapshots are kept in state_dir; "
                                       "this agent has none");
    snprintf (path, size, "%s/snapshots", self->state_dir);
    if (make_dir && mkdir (path, 0755) != 0 && errno != EEXIST)
        return herald_agent_set_error (HERALD_ERR_IO, "%s: %s", path, strerror (errno));
    snprintf (path, size, "%s/snapshots/%s", self->state_dir, name);
    return HERALD_OK;
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

herald_err
herald_agent_snapshot_save (herald_agent_t *self, const char *name, uint64_t seq,
                            const void *bytes, size_t len)
{
    char path [4096], tmp [4200];
    herald_err rc = s_path (self, name, path, sizeof path, true);
    if (rc)
        return rc;
    if (len && !bytes)
        return herald_agent_set_error (HERALD_ERR_INVALID, "bytes is NULL with a length");
    uint8_t header [HEADER_BYTES] = { 0 };
    memcpy (header, MAGIC, 8);
    uint64_t len64 = len;
    memcpy (header + 8, &seq, 8);
    memcpy (header + 16, &len64, 8);
    uint32_t crc = herald_crc32c (herald_crc32c (0, header, 24), bytes, len);
    memcpy (header + 24, &crc, 4);
    snprintf (tmp, sizeof tmp, "%s.tmp", path);
    int fd = open (tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    bool ok = fd >= 0 && s_write_all (fd, header, sizeof header) == 0
           && s_write_all (fd, bytes, len) == 0;
    if (!ok) {
        int saved = errno;
        if (fd >= 0) {
            close (fd);
            unlink (tmp);
        }
        return herald_agent_set_error (HERALD_ERR_IO, "%s: cannot write: %s", path,
                                       strerror (saved));
    }
    //  fsync, rename, fsync of the directory (herald_file.c)
    bool renamed = false;
    if (herald_file_replace (fd, tmp, path, &renamed) != 0)
        return herald_agent_set_error (HERALD_ERR_IO, renamed? "%s: written, but its directory "
                                       "cannot be synced: %s": "%s: cannot write: %s", path,
                                       strerror (errno));
    return HERALD_OK;
}

herald_err
herald_agent_snapshot_load (herald_agent_t *self, const char *name, uint64_t *seq_p,
                            void **bytes_p, size_t *len_p)
{
    *bytes_p = NULL;
    *len_p = 0;
    *seq_p = 0;
    char path [4096];
    herald_err rc = s_path (self, name, path, sizeof path, false);
    if (rc)
        return rc;
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT)
        return herald_agent_set_error (HERALD_ERR_NOT_FOUND, "no snapshot %s", name);
    struct stat st;
    if (fd < 0 || fstat (fd, &st) != 0) {
        if (fd >= 0)
            close (fd);
        return herald_agent_set_error (HERALD_ERR_IO, "%s: %s", path, strerror (errno));
    }
    size_t size = (size_t) st.st_size;
    uint8_t *file = malloc (size? size: 1);
    ssize_t got = file? pread (fd, file, size, 0): -1;
    close (fd);
    if (got != (ssize_t) size) {
        free (file);
        return herald_agent_set_error (HERALD_ERR_IO, "%s: cannot read", path);
    }
    uint64_t seq = 0, len = 0;
    uint32_t crc = 0;
    if (size >= HEADER_BYTES) {
        memcpy (&seq, file + 8, 8);
        memcpy (&len, file + 16, 8);
        memcpy (&crc, file + 24, 4);
    }
    if (size < HEADER_BYTES || memcmp (file, MAGIC, 8) != 0 || len != size - HEADER_BYTES
    ||  crc != herald_crc32c (herald_crc32c (0, file, 24), file + HEADER_BYTES, len)) {
        free (file);
        return herald_agent_set_error (HERALD_ERR_CORRUPT, "%s: corrupt snapshot: it fails "
                                       "its checks", path);
    }
    memmove (file, file + HEADER_BYTES, len);
    *bytes_p = file;
    *len_p = len;
    *seq_p = seq;
    return HERALD_OK;
}
