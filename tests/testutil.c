/*  =========================================================================
    testutil - helpers shared by the store tests and the crash writer

    See testutil.h.  No criterion here: every failure is a return value.
    =========================================================================
*/

#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

char *
tu_tmpdir_new (const char *tag)
{
    const char *base = getenv ("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    size_t size = strlen (base) + strlen (tag) + 32;
    char *path = malloc (size);
    if (!path)
        return NULL;
    snprintf (path, size, "%s/herald-%s-XXXXXX", base, tag);
    if (!mkdtemp (path)) {
        free (path);
        return NULL;
    }
    return path;
}

static int
s_rm_entry (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st;
    (void) ftw;
    int rc = (flag == FTW_DP)? rmdir (path): unlink (path);
    if (rc != 0 && errno != ENOENT)
        return -1;
    return 0;
}

int
tu_rmtree (const char *path)
{
    struct stat st;
    if (lstat (path, &st) != 0)
        return errno == ENOENT? 0: -1;
    return nftw (path, s_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void
tu_tmpdir_destroy (char **path_p)
{
    if (!path_p || !*path_p)
        return;
    if (tu_rmtree (*path_p) != 0)
        fprintf (stderr, "testutil: cannot remove %s: %s\n", *path_p, strerror (errno));
    free (*path_p);
    *path_p = NULL;
}

char *
tu_path (const char *dir, const char *name)
{
    size_t size = strlen (dir) + strlen (name) + 2;
    char *path = malloc (size);
    if (path)
        snprintf (path, size, "%s/%s", dir, name);
    return path;
}

char *
tu_build_program (const char *relative)
{
    char path [PATH_MAX + 64];
    const char *builddir = getenv ("HERALD_BUILDDIR");
    if (builddir && *builddir) {
        snprintf (path, sizeof path, "%s/%s", builddir, relative);
        if (access (path, X_OK) == 0)
            return strdup (path);
    }
    const char *base = strrchr (relative, '/');
    base = base? base + 1: relative;
    char self [PATH_MAX];
    ssize_t len = readlink ("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0)
        return NULL;
    self [len] = 0;
    for (int up = 0; up < 4; up++) {
        char *slash = strrchr (self, '/');
        if (!slash)
            return NULL;
        *slash = 0;
        snprintf (path, sizeof path, "%s/%s", self, base);
        if (access (path, X_OK) == 0)
            return strdup (path);
        snprintf (path, sizeof path, "%s/%s", self, relative);
        if (access (path, X_OK) == 0)
            return strdup (path);
    }
    return NULL;
}

int
tu_write_file (const char *path, const void *bytes, size_t len)
{
    FILE *file = fopen (path, "wb");
    if (!file)
        return -1;
    size_t written = fwrite (bytes, 1, len, file);
    int rc = fclose (file);
    return (written == len && rc == 0)? 0: -1;
}

//  --------------------------------------------------------------------------
//  Directory snapshots.  nftw has no user pointer, so the walk collects into
//  file-scope state; tests take snapshots from one thread.

static struct {
    size_t root_len;
    char **lines;
    size_t count;
    size_t alloc;
    bool failed;
} s_snap;

static uint64_t
s_hash_file (const char *path)
{
    uint64_t hash = 1469598103934665603ULL;     //  FNV-1a
    int fd = open (path, O_RDONLY);
    if (fd < 0)
        return 0;
    uint8_t buffer [8192];
    ssize_t got;
    while ((got = read (fd, buffer, sizeof buffer)) > 0)
        for (ssize_t index = 0; index < got; index++) {
            hash ^= buffer [index];
            hash *= 1099511628211ULL;
        }
    close (fd);
    return hash;
}

static int
s_snap_entry (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) ftw;
    const char *relative = path + s_snap.root_len;
    char line [4096 + 64];
    if (flag == FTW_F && S_ISREG (st->st_mode))
        snprintf (line, sizeof line, "%s file %lld %016llx", relative,
                  (long long) st->st_size, (unsigned long long) s_hash_file (path));
    else
    if (flag == FTW_D || flag == FTW_DP)
        snprintf (line, sizeof line, "%s/ dir", relative);
    else
        snprintf (line, sizeof line, "%s other %o", relative, (unsigned) st->st_mode);
    if (s_snap.count == s_snap.alloc) {
        size_t alloc = s_snap.alloc? s_snap.alloc * 2: 64;
        char **lines = realloc (s_snap.lines, alloc * sizeof (char *));
        if (!lines) {
            s_snap.failed = true;
            return -1;
        }
        s_snap.lines = lines;
        s_snap.alloc = alloc;
    }
    s_snap.lines [s_snap.count] = strdup (line);
    if (!s_snap.lines [s_snap.count]) {
        s_snap.failed = true;
        return -1;
    }
    s_snap.count++;
    return 0;
}

static int
s_compare_lines (const void *a, const void *b)
{
    return strcmp (*(char * const *) a, *(char * const *) b);
}

char *
tu_dir_snapshot (const char *dir)
{
    memset (&s_snap, 0, sizeof s_snap);
    s_snap.root_len = strlen (dir);
    int rc = nftw (dir, s_snap_entry, 16, FTW_PHYS);
    char *result = NULL;
    if (rc == 0 && !s_snap.failed) {
        qsort (s_snap.lines, s_snap.count, sizeof (char *), s_compare_lines);
        size_t size = 1;
        for (size_t index = 0; index < s_snap.count; index++)
            size += strlen (s_snap.lines [index]) + 1;
        result = malloc (size);
        if (result) {
            char *cursor = result;
            for (size_t index = 0; index < s_snap.count; index++) {
                size_t len = strlen (s_snap.lines [index]);
                memcpy (cursor, s_snap.lines [index], len);
                cursor [len] = '\n';
                cursor += len + 1;
            }
            *cursor = 0;
        }
    }
    for (size_t index = 0; index < s_snap.count; index++)
        free (s_snap.lines [index]);
    free (s_snap.lines);
    memset (&s_snap, 0, sizeof s_snap);
    return result;
}

//  --------------------------------------------------------------------------
//  Events

void
tu_random_bytes (void *buffer, size_t len)
{
    uint8_t *cursor = buffer;
    while (len > 0) {
        ssize_t got = getrandom (cursor, len, 0);
        if (got <= 0) {
            if (got < 0 && errno == EINTR)
                continue;
            //  Fallback: /dev/urandom, and if even that fails, a clock mix
            FILE *file = fopen ("/dev/urandom", "rb");
            size_t read_len = file? fread (cursor, 1, len, file): 0;
            if (file)
                fclose (file);
            if (read_len == len)
                return;
            uint64_t state = tu_mono_ns () ^ ((uint64_t) getpid () << 32);
            for (size_t index = 0; index < len; index++)
                cursor [index] = (uint8_t) tu_rand (&state);
            return;
        }
        cursor += got;
        len -= (size_t) got;
    }
}

void
tu_random_id (uint8_t id [HERALD_ID_BYTES])
{
    tu_random_bytes (id, HERALD_ID_BYTES);
}

herald_event_t
tu_event_n (const char *topic, size_t topic_len, const void *data, size_t data_len)
{
    herald_event_t event;
    memset (&event, 0, sizeof event);
    tu_random_id (event.id);
    event.topic = topic;
    event.topic_len = topic_len;
    event.data = data;
    event.data_len = data_len;
    return event;
}

herald_event_t
tu_event (const char *topic, const char *data)
{
    return tu_event_n (topic, strlen (topic), data, data? strlen (data): 0);
}

herald_err
tu_append (herald_store_t *store, const herald_event_t *events, size_t count,
           herald_append_result_t *results, tu_append_info_t *info)
{
    herald_batch_t batch;
    memset (&batch, 0, sizeof batch);
    batch.events = events;
    batch.count = count;
    batch.results = results;
    batch.status = (herald_err) -1;         //  append must set it
    herald_error_t err;
    memset (&err, 0, sizeof err);
    herald_err call = herald_store_append (store, &batch, 1, &err);
    if (info) {
        memset (info, 0, sizeof *info);
        info->call = call;
        info->status = batch.status;
        info->conflict_index = batch.conflict_index;
        info->expected = batch.expected;
        info->actual = batch.actual;
        info->err = err;
    }
    return call != HERALD_OK? call: batch.status;
}

//  --------------------------------------------------------------------------
//  Decoding

herald_err
tu_decode (tu_decoded_t *self, const void *bytes, size_t len)
{
    memset (self, 0, sizeof *self);
    self->bytes = malloc (len? len: 1);
    if (!self->bytes)
        return HERALD_ERR_NOMEM;
    memcpy (self->bytes, bytes, len);
    self->len = len;
    if (!msgpack_zone_init (&self->zone, 2048))
        return HERALD_ERR_NOMEM;
    self->zone_ready = true;
    return herald_event_decode (&self->event, self->bytes, self->len, &self->zone, &self->err);
}

herald_err
tu_get (herald_store_t *store, uint64_t seq, tu_decoded_t *self)
{
    memset (self, 0, sizeof *self);
    uint8_t *envelope = NULL;
    size_t len = 0;
    herald_err rc = herald_store_get (store, seq, &envelope, &len, NULL);
    if (rc != HERALD_OK) {
        free (envelope);
        return rc;
    }
    rc = tu_decode (self, envelope, len);
    free (envelope);
    return rc;
}

void
tu_decoded_fini (tu_decoded_t *self)
{
    if (self->zone_ready)
        msgpack_zone_destroy (&self->zone);
    free (self->bytes);
    memset (self, 0, sizeof *self);
}

int
tu_envelope_keys (const void *bytes, size_t len, char *keys, size_t keys_size)
{
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    size_t offset = 0;
    int rc = -1;
    if (msgpack_unpack_next (&unpacked, bytes, len, &offset) == MSGPACK_UNPACK_SUCCESS
    &&  offset == len
    &&  unpacked.data.type == MSGPACK_OBJECT_MAP) {
        size_t used = 0;
        keys [0] = 0;
        rc = 0;
        for (uint32_t index = 0; index < unpacked.data.via.map.size; index++) {
            const msgpack_object *key = &unpacked.data.via.map.ptr [index].key;
            if (key->type != MSGPACK_OBJECT_STR) {
                rc = -1;
                break;
            }
            int wrote = snprintf (keys + used, keys_size - used, "%s%.*s",
                                  index? ",": "", (int) key->via.str.size, key->via.str.ptr);
            if (wrote < 0 || (size_t) wrote >= keys_size - used) {
                rc = -1;
                break;
            }
            used += (size_t) wrote;
        }
    }
    msgpack_unpacked_destroy (&unpacked);
    return rc;
}

//  --------------------------------------------------------------------------
//  Small things

void
tu_hex (const void *bytes, size_t len, char *out)
{
    static const char digits [] = "0123456789abcdef";
    const uint8_t *in = bytes;
    for (size_t index = 0; index < len; index++) {
        out [2 * index] = digits [in [index] >> 4];
        out [2 * index + 1] = digits [in [index] & 15];
    }
    out [2 * len] = 0;
}

static int
s_hex_digit (char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool
tu_unhex (const char *text, void *bytes, size_t len)
{
    uint8_t *out = bytes;
    for (size_t index = 0; index < len; index++) {
        int high = s_hex_digit (text [2 * index]);
        int low = s_hex_digit (text [2 * index + 1]);
        if (high < 0 || low < 0)
            return false;
        out [index] = (uint8_t) (high << 4 | low);
    }
    return true;
}

uint64_t
tu_now_ns (void)
{
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    return (uint64_t) now.tv_sec * 1000000000ULL + (uint64_t) now.tv_nsec;
}

uint64_t
tu_mono_ns (void)
{
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    return (uint64_t) now.tv_sec * 1000000000ULL + (uint64_t) now.tv_nsec;
}

uint64_t
tu_rand (uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

void
tu_put_be64 (uint8_t *out, uint64_t value)
{
    for (int index = 7; index >= 0; index--) {
        out [index] = (uint8_t) value;
        value >>= 8;
    }
}

uint64_t
tu_get_be64 (const uint8_t *in)
{
    uint64_t value = 0;
    for (int index = 0; index < 8; index++)
        value = value << 8 | in [index];
    return value;
}

int64_t
tu_wal_bytes (const char *dir, bool remove)
{
    DIR *handle = opendir (dir);
    if (!handle)
        return -1;
    int64_t total = 0;
    struct dirent *entry;
    while (total >= 0 && (entry = readdir (handle))) {
        size_t len = strlen (entry->d_name);
        if (len < 5 || strcmp (entry->d_name + len - 4, ".log") != 0)
            continue;
        char path [4200];
        snprintf (path, sizeof (path), "%s/%s", dir, entry->d_name);
        struct stat info;
        if (stat (path, &info) != 0 || (remove && unlink (path) != 0))
            total = -1;
        else
            total += (int64_t) info.st_size;
    }
    closedir (handle);
    return total;
}
