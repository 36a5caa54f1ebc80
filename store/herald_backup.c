/*  =========================================================================
    herald_backup - online backups of a store, checked and restored

    The manifest, herald-backup.manifest, is text, one "key value" per
    line, in this order:

        herald-backup 1                 the format
        node herald-1a2b3c4d5e6f        the broker's node id ("-": none)
        store_uuid 0190…                a cluster node's store identity ("-")
        lineage 0
        head 1000000                    the last seq, its ts, the counts
        head_ts 1796…
        events 1000000
        topics 12
        digest 1234…                    herald_store_digest at head
        raft_applied 0
        created 1796…                   Unix ns
        file 000012.sst 4123456 <sha256 hex>     one per file of store/
        files 7
        bytes 123456789
        sha256 <hex>                    of every byte before this line

    A reader refuses a manifest whose last line does not match, before it
    believes any other line.  Unknown keys before it are skipped (a later
    format can add some); a format above HERALD_BACKUP_FORMAT is refused.
    =========================================================================
*/

#include "herald_backup.h"

#include <assert.h>
#include <stdarg.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define S_CHUNK             (1u << 20)          //  read and copy in 1 MiB steps
#define S_PROGRESS_EVERY    (64ull << 20)       //  report at most every 64 MiB
#define S_MANIFEST_MAX      (16u << 20)         //  a manifest longer than this is damaged
#define S_FILES_MAX         1000000             //  files in a store/ directory
#define S_NAME_MAX          255

typedef struct {
    char name [S_NAME_MAX + 1];
    uint64_t size;
    char sha256 [crypto_hash_sha256_BYTES * 2 + 1];
} s_file_t;

typedef struct {
    herald_backup_info_t info;
    s_file_t *files;
    size_t count;
} s_manifest_t;

typedef struct {
    herald_backup_progress_fn *fn;
    void *arg;
    const char *phase;
    uint64_t done;
    uint64_t total;
    uint64_t reported;
} s_progress_t;

static void
s_progress (s_progress_t *progress, uint64_t bytes, bool last)
{
    progress->done += bytes;
    if (progress->fn && (last || progress->done - progress->reported >= S_PROGRESS_EVERY)) {
        progress->reported = progress->done;
        progress->fn (progress->phase, progress->done, progress->total, progress->arg);
    }
}

//  ---------------------------------------------------------------------
//  Files

//  A path made of parts (paths are checked for length where they come in;
//  one cut short here fails to open, it is never another file)
static void
s_join (char *out, size_t size, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    vsnprintf (out, size, format, args);
    va_end (args);
}

static herald_err
s_io_error (herald_error_t *err, const char *what, const char *path)
{
    int code = errno;
    return herald_error_set (err, HERALD_ERR_IO, "", "%s %s: %s%s", what, path, strerror (code),
                             code == ENOSPC? " (the disk is full)": "");
}

static int
s_remove_one (const char *path, const struct stat *info, int flag, struct FTW *ftw)
{
    (void) info, (void) flag, (void) ftw;
    remove (path);
    return 0;
}

//  Remove a directory this code made, with what it holds.
static void
s_remove_tree (const char *path)
{
    nftw (path, s_remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

static herald_err
s_fsync_path (const char *path, herald_error_t *err)
{
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return s_io_error (err, "cannot open", path);
    if (fsync (fd) != 0) {
        herald_err rc = s_io_error (err, "cannot sync", path);
        close (fd);
        return rc;
    }
    close (fd);
    return HERALD_OK;
}

//  0: path does not exist; 1: an empty directory; -1: anything else
//  (err says what).
static int
s_vacant (const char *path, const char *what, herald_error_t *err)
{
    struct stat info;
    if (lstat (path, &info) != 0) {
        if (errno == ENOENT)
            return 0;
        s_io_error (err, "cannot look at", path);
        return -1;
    }
    if (!S_ISDIR (info.st_mode)) {
        herald_error_set (err, HERALD_ERR_INVALID, "", "%s %s exists and is not a directory",
                          what, path);
        return -1;
    }
    DIR *handle = opendir (path);
    if (!handle) {
        s_io_error (err, "cannot list", path);
        return -1;
    }
    struct dirent *entry;
    const char *found = NULL;
    while (!found && (entry = readdir (handle)))
        if (strcmp (entry->d_name, ".") && strcmp (entry->d_name, ".."))
            found = entry->d_name;
    if (found)
        herald_error_set (err, HERALD_ERR_INVALID, "", "%s %s is not empty (it holds %s): "
                          "give a new or an empty directory", what, path, found);
    closedir (handle);
    return found? -1: 1;
}

//  The directory path is in, and its last part, into parent and name.
static void
s_split (const char *path, char *parent, char *name, size_t size)
{
    char copy [PATH_MAX];
    snprintf (copy, sizeof copy, "%s", path);
    //  "a/b/" is "a/b"
    size_t len = strlen (copy);
    while (len > 1 && copy [len - 1] == '/')
        copy [--len] = 0;
    char second [PATH_MAX];
    memcpy (second, copy, len + 1);
    snprintf (parent, size, "%s", dirname (copy));
    snprintf (name, size, "%s", basename (second));
}

static void
s_hex (const uint8_t *bytes, size_t len, char *out)
{
    static const char digits [] = "0123456789abcdef";
    for (size_t index = 0; index < len; index++) {
        out [2 * index] = digits [bytes [index] >> 4];
        out [2 * index + 1] = digits [bytes [index] & 15];
    }
    out [2 * len] = 0;
}

//  Read path whole, hashing it (and writing it to out_fd when >= 0, then
//  syncing that).  size: its length.  cancel, progress as the callers'.
static herald_err
s_hash_file (const char *path, int out_fd, const char *out_path, const volatile bool *cancel,
             s_progress_t *progress, uint64_t *size, char sha256 [65], herald_error_t *err)
{
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return herald_error_set (err, HERALD_ERR_CORRUPT, "", "%s is missing", path);
        return s_io_error (err, "cannot open", path);
    }
    uint8_t *buffer = malloc (S_CHUNK);
    if (!buffer) {
        close (fd);
        return herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
    }
    crypto_hash_sha256_state state;
    crypto_hash_sha256_init (&state);
    herald_err rc = HERALD_OK;
    *size = 0;
    while (rc == HERALD_OK) {
        if (cancel && *cancel) {
            rc = herald_error_set (err, HERALD_ERR_INTERNAL, "", "the backup was cancelled "
                                   "(the broker is stopping)");
            break;
        }
        ssize_t got = read (fd, buffer, S_CHUNK);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            rc = s_io_error (err, "cannot read", path);
            break;
        }
        if (got == 0)
            break;
        crypto_hash_sha256_update (&state, buffer, (unsigned long long) got);
        for (ssize_t written = 0; out_fd >= 0 && written < got && rc == HERALD_OK; ) {
            ssize_t put = write (out_fd, buffer + written, (size_t) (got - written));
            if (put < 0 && errno == EINTR)
                continue;
            if (put < 0)
                rc = s_io_error (err, "cannot write", out_path);
            else
                written += put;
        }
        *size += (uint64_t) got;
        s_progress (progress, (uint64_t) got, false);
    }
    if (rc == HERALD_OK && out_fd >= 0 && fsync (out_fd) != 0)
        rc = s_io_error (err, "cannot sync", out_path);
    uint8_t digest [crypto_hash_sha256_BYTES];
    crypto_hash_sha256_final (&state, digest);
    s_hex (digest, sizeof digest, sha256);
    free (buffer);
    close (fd);
    return rc;
}

static int
s_compare_names (const void *a, const void *b)
{
    return strcmp (((const s_file_t *) a)->name, ((const s_file_t *) b)->name);
}

//  The regular files of dir, sorted by name, into *files (caller frees).
//  Anything else there (a directory, a link) is refused: a checkpoint
//  holds none.
static herald_err
s_list (const char *dir, s_file_t **files, size_t *count, herald_error_t *err)
{
    *files = NULL;
    *count = 0;
    DIR *handle = opendir (dir);
    if (!handle) {
        if (errno == ENOENT)
            return herald_error_set (err, HERALD_ERR_CORRUPT, "", "%s is missing", dir);
        return s_io_error (err, "cannot list", dir);
    }
    size_t capacity = 0;
    herald_err rc = HERALD_OK;
    struct dirent *entry;
    while (rc == HERALD_OK && (entry = readdir (handle))) {
        if (!strcmp (entry->d_name, ".") || !strcmp (entry->d_name, ".."))
            continue;
        char path [PATH_MAX];
        s_join (path, sizeof path, "%s/%s", dir, entry->d_name);
        struct stat info;
        if (lstat (path, &info) != 0)
            rc = s_io_error (err, "cannot look at", path);
        else
        if (!S_ISREG (info.st_mode) || strlen (entry->d_name) > S_NAME_MAX
        ||  strpbrk (entry->d_name, " \t\n\r"))
            rc = herald_error_set (err, HERALD_ERR_CORRUPT, "", "%s is not a file a backup "
                                   "holds", path);
        else
        if (*count >= S_FILES_MAX)
            rc = herald_error_set (err, HERALD_ERR_CORRUPT, "", "%s holds too many files", dir);
        else {
            if (*count == capacity) {
                capacity = capacity? capacity * 2: 64;
                s_file_t *grown = realloc (*files, capacity * sizeof (s_file_t));
                if (!grown) {
                    rc = herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
                    break;
                }
                *files = grown;
            }
            s_file_t *file = &(*files) [(*count)++];
            memset (file, 0, sizeof *file);
            snprintf (file->name, sizeof file->name, "%s", entry->d_name);
            file->size = (uint64_t) info.st_size;
        }
    }
    closedir (handle);
    if (rc != HERALD_OK) {
        free (*files);
        *files = NULL;
        *count = 0;
        return rc;
    }
    if (*count)
        qsort (*files, *count, sizeof (s_file_t), s_compare_names);
    return HERALD_OK;
}

//  ---------------------------------------------------------------------
//  The manifest

static herald_err
s_manifest_write (const char *path, const s_manifest_t *manifest, herald_error_t *err)
{
    const herald_backup_info_t *info = &manifest->info;
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream (&text, &len);
    if (!out)
        return herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
    fprintf (out, "herald-backup %u\nnode %s\nstore_uuid %s\nlineage %" PRIu64 "\n"
             "head %" PRIu64 "\nhead_ts %" PRIu64 "\nevents %" PRIu64 "\ntopics %" PRIu64 "\n"
             "digest %" PRIu64 "\nraft_applied %" PRIu64 "\ncreated %" PRIu64 "\n",
             info->format, *info->node? info->node: "-",
             *info->store_uuid? info->store_uuid: "-", info->lineage, info->head,
             info->head_ts, info->events, info->topics, info->digest, info->raft_applied,
             info->created);
    for (size_t index = 0; index < manifest->count; index++)
        fprintf (out, "file %s %" PRIu64 " %s\n", manifest->files [index].name,
                 manifest->files [index].size, manifest->files [index].sha256);
    fprintf (out, "files %" PRIu64 "\nbytes %" PRIu64 "\n", info->files, info->bytes);
    if (fclose (out) != 0 || !text)
        return herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
    uint8_t digest [crypto_hash_sha256_BYTES];
    crypto_hash_sha256 (digest, (const uint8_t *) text, len);
    char hex [sizeof digest * 2 + 1];
    s_hex (digest, sizeof digest, hex);

    herald_err rc = HERALD_OK;
    int fd = open (path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        rc = s_io_error (err, "cannot create", path);
    char tail [128];
    int tail_len = snprintf (tail, sizeof tail, "sha256 %s\n", hex);
    if (rc == HERALD_OK
    &&  (write (fd, text, len) != (ssize_t) len
      || write (fd, tail, (size_t) tail_len) != tail_len))
        rc = s_io_error (err, "cannot write", path);
    if (rc == HERALD_OK && fsync (fd) != 0)
        rc = s_io_error (err, "cannot sync", path);
    if (fd >= 0)
        close (fd);
    free (text);
    return rc;
}

static bool
s_uint (const char *text, uint64_t *value)
{
    if (!*text || *text < '0' || *text > '9')
        return false;
    char *end = NULL;
    errno = 0;
    unsigned long long parsed = strtoull (text, &end, 10);
    if (errno || *end)
        return false;
    *value = parsed;
    return true;
}

static herald_err
s_manifest_read (const char *dir, s_manifest_t *manifest, herald_error_t *err)
{
    memset (manifest, 0, sizeof *manifest);
    char path [PATH_MAX];
    s_join (path, sizeof path, "%s/%s", dir, HERALD_BACKUP_MANIFEST);
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            struct stat info;
            if (stat (dir, &info) != 0)
                return s_io_error (err, "cannot open", dir);
            return herald_error_set (err, HERALD_ERR_NOT_A_STORE, "", "%s is not a Herald "
                                     "backup: it has no %s", dir, HERALD_BACKUP_MANIFEST);
        }
        return s_io_error (err, "cannot open", path);
    }
    struct stat info;
    if (fstat (fd, &info) != 0 || info.st_size > S_MANIFEST_MAX) {
        close (fd);
        return herald_error_set (err, HERALD_ERR_CORRUPT, "", "%s is damaged: it is too long",
                                 path);
    }
    size_t len = (size_t) info.st_size;
    char *text = malloc (len + 1);
    if (!text) {
        close (fd);
        return herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
    }
    size_t got = 0;
    while (got < len) {
        ssize_t part = read (fd, text + got, len - got);
        if (part <= 0)
            break;
        got += (size_t) part;
    }
    close (fd);
    text [got] = 0;
    //  The last line: the checksum of everything before it
    herald_err rc = HERALD_OK;
    char *last = NULL;
    if (got != len || got < 2 || text [got - 1] != '\n' || strlen (text) != got)
        rc = herald_error_set (err, HERALD_ERR_CORRUPT, "", "%s is damaged: it is cut short "
                               "or not text", path);
    else {
        text [got - 1] = 0;
        last = strrchr (text, '\n');
        last = last? last + 1: text;
        uint8_t digest [crypto_hash_sha256_BYTES];
        crypto_hash_sha256 (digest, (const uint8_t *) text, (unsigned long long) (last - text));
        char hex [sizeof digest * 2 + 1];
        s_hex (digest, sizeof digest, hex);
        if (strncmp (last, "sha256 ", 7) != 0 || strcmp (last + 7, hex) != 0)
            rc = herald_error_set (err, HERALD_ERR_CORRUPT, "", "%s is damaged: its checksum "
                                   "(last line) does not match its contents", path);
    }
    herald_backup_info_t *out = &manifest->info;
    size_t capacity = 0, line_no = 0;
    bool files_seen = false, bytes_seen = false;
    for (char *line = text; rc == HERALD_OK && line < last; ) {
        char *end = strchr (line, '\n');
        *end = 0;
        line_no++;
        char *value = strchr (line, ' ');
        if (value)
            *value++ = 0;
        else
            value = line + strlen (line);
        bool ok = true;
        if (line_no == 1) {
            uint64_t format = 0;
            ok = strcmp (line, "herald-backup") == 0 && s_uint (value, &format);
            if (ok && (format == 0 || format > HERALD_BACKUP_FORMAT)) {
                rc = herald_error_set (err, HERALD_ERR_INVALID, "", "%s: backup format %"
                                       PRIu64 ", this version reads format %d: use a newer "
                                       "herald", path, format, HERALD_BACKUP_FORMAT);
                break;
            }
            out->format = (uint32_t) format;
        }
        else
        if (!strcmp (line, "node") || !strcmp (line, "store_uuid")) {
            char *target = *line == 'n'? out->node: out->store_uuid;
            size_t size = *line == 'n'? sizeof out->node: sizeof out->store_uuid;
            snprintf (target, size, "%s", strcmp (value, "-")? value: "");
        }
        else
        if (!strcmp (line, "lineage"))      ok = s_uint (value, &out->lineage);
        else if (!strcmp (line, "head"))    ok = s_uint (value, &out->head);
        else if (!strcmp (line, "head_ts")) ok = s_uint (value, &out->head_ts);
        else if (!strcmp (line, "events"))  ok = s_uint (value, &out->events);
        else if (!strcmp (line, "topics"))  ok = s_uint (value, &out->topics);
        else if (!strcmp (line, "digest"))  ok = s_uint (value, &out->digest);
        else if (!strcmp (line, "raft_applied")) ok = s_uint (value, &out->raft_applied);
        else if (!strcmp (line, "created")) ok = s_uint (value, &out->created);
        else if (!strcmp (line, "files"))   ok = (files_seen = s_uint (value, &out->files));
        else if (!strcmp (line, "bytes"))   ok = (bytes_seen = s_uint (value, &out->bytes));
        else
        if (!strcmp (line, "file")) {
            char name [S_NAME_MAX + 1], sha [80];
            uint64_t size;
            char size_text [32];
            ok = sscanf (value, "%255s %31s %79s", name, size_text, sha) == 3
              && s_uint (size_text, &size) && strlen (sha) == 64
              && strspn (sha, "0123456789abcdef") == 64 && !strchr (name, '/')
              && strcmp (name, ".") && strcmp (name, "..");
            if (ok && manifest->count == capacity) {
                capacity = capacity? capacity * 2: 64;
                s_file_t *grown = realloc (manifest->files, capacity * sizeof (s_file_t));
                if (!grown) {
                    rc = herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
                    break;
                }
                manifest->files = grown;
            }
            if (ok) {
                s_file_t *file = &manifest->files [manifest->count++];
                snprintf (file->name, sizeof file->name, "%s", name);
                file->size = size;
                memcpy (file->sha256, sha, 65);
            }
        }
        //  else: a key a later format added
        if (!ok)
            rc = herald_error_set (err, HERALD_ERR_CORRUPT, "", "%s is damaged: line %zu "
                                   "('%s') does not read", path, line_no, line);
        line = end + 1;
    }
    if (rc == HERALD_OK && (!out->format || !files_seen || !bytes_seen
                            || out->files != manifest->count))
        rc = herald_error_set (err, HERALD_ERR_CORRUPT, "", "%s is damaged: it lists %zu "
                               "files, its count says %" PRIu64, path, manifest->count,
                               out->files);
    free (text);
    if (rc != HERALD_OK) {
        free (manifest->files);
        manifest->files = NULL;
        manifest->count = 0;
    }
    return rc;
}

//  ---------------------------------------------------------------------
//  Create

herald_err
herald_backup_create (herald_store_t *store, const char *dir, const char *node,
                      const volatile bool *cancel, herald_backup_progress_fn *progress_fn,
                      void *arg, herald_backup_info_t *info_out, herald_error_t *err)
{
    assert (store);
    assert (dir);
    if (sodium_init () < 0)
        return herald_error_set (err, HERALD_ERR_INTERNAL, "", "libsodium failed to start");
    if (*dir != '/')
        return herald_error_set (err, HERALD_ERR_INVALID, "", "%s is not an absolute path: "
                                 "give the directory on the broker's host as /PATH", dir);
    if (strlen (dir) > PATH_MAX - 64)
        return herald_error_set (err, HERALD_ERR_INVALID, "", "the path is too long");
    if (s_vacant (dir, "backup directory", err) < 0)
        return err->code;
    char parent [PATH_MAX], name [PATH_MAX];
    s_split (dir, parent, name, sizeof parent);
    struct stat info;
    if (stat (parent, &info) != 0 || !S_ISDIR (info.st_mode))
        return herald_error_set (err, HERALD_ERR_INVALID, "", "%s: its parent directory %s "
                                 "does not exist", dir, parent);
    //  Not inside the store itself: RocksDB would find it among its files
    char real_parent [PATH_MAX], real_store [PATH_MAX];
    if (realpath (parent, real_parent) && realpath (herald_store_path (store), real_store)) {
        size_t len = strlen (real_store);
        if (strncmp (real_parent, real_store, len) == 0
        &&  (real_parent [len] == 0 || real_parent [len] == '/'))
            return herald_error_set (err, HERALD_ERR_INVALID, "", "%s is inside the data "
                                     "directory %s: give a directory outside it", dir,
                                     real_store);
    }
    //  Built under a name no reader takes for a backup, renamed at the end
    char temp [PATH_MAX];
    s_join (temp, sizeof temp, "%s/.%s.partial-XXXXXX", parent, name);
    if (!mkdtemp (temp))
        return s_io_error (err, "cannot create", temp);
    char store_dir [PATH_MAX], path [PATH_MAX];
    s_join (store_dir, sizeof store_dir, "%s/%s", temp, HERALD_BACKUP_STORE);
    s_manifest_t manifest = { .info = { .format = HERALD_BACKUP_FORMAT } };
    herald_backup_info_t *out = &manifest.info;
    s_progress_t progress = { progress_fn, arg, "checkpoint", 0, 0, 0 };
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    out->created = (uint64_t) now.tv_sec * 1000000000ull + (uint64_t) now.tv_nsec;
    snprintf (out->node, sizeof out->node, "%s", node? node: "");

    herald_err rc = herald_store_checkpoint (store, store_dir, err);
    if (rc == HERALD_OK)
        s_progress (&progress, 0, true);
    //  What it holds, read from the checkpoint itself (never from the
    //  running store, which has moved on).  The checkpoint is a store that
    //  was running: its clean-stop marker says so, and the WAL that marker
    //  names was flushed away before the copy (herald_store_damage.c would
    //  take that for a lost WAL).  So it is opened once without that check,
    //  its copied WAL (the appends after the flush) recovered, and stopped
    //  cleanly, which writes every table file and clears the marker; then
    //  opened read-only, as heraldd and herald inspect open a store, to
    //  prove that it opens and holds what it held.
    if (rc == HERALD_OK) {
        herald_store_options_t seal = { .accept_loss = true };
        herald_store_t *copy = herald_store_open (store_dir, &seal, err);
        if (!copy)
            rc = err->code;
        else {
            out->head = herald_store_head (copy);
            out->head_ts = herald_store_last_ts (copy);
            out->events = herald_store_event_count (copy);
            out->topics = herald_store_topic_count (copy);
            out->lineage = herald_store_lineage (copy);
            out->digest = herald_store_digest (copy);
            out->raft_applied = herald_store_applied_index (copy);
            char *value = NULL;
            size_t len = 0;
            if (herald_store_meta_get (copy, "store.uuid", &value, &len) == HERALD_OK) {
                snprintf (out->store_uuid, sizeof out->store_uuid, "%.*s", (int) len, value);
                free (value);
            }
            if (!*out->node && herald_store_meta_get (copy, "node", &value, &len) == HERALD_OK) {
                snprintf (out->node, sizeof out->node, "%.*s", (int) len, value);
                free (value);
            }
            rc = herald_store_stop (copy, err);
            herald_store_destroy (&copy);
        }
    }
    if (rc == HERALD_OK) {
        herald_store_options_t as_broker = { .read_only = true };
        herald_store_t *copy = herald_store_open (store_dir, &as_broker, err);
        if (!copy)
            rc = err->code;
        else
        if (herald_store_head (copy) != out->head || herald_store_digest (copy) != out->digest)
            rc = herald_error_set (err, HERALD_ERR_INTERNAL, "", "%s: the checkpoint reads "
                                   "head %" PRIu64 " once stopped, %" PRIu64 " before",
                                   store_dir, herald_store_head (copy), out->head);
        herald_store_destroy (&copy);
    }
    //  A name or id with a space would not read back
    if (rc == HERALD_OK && (strpbrk (out->node, " \n") || strpbrk (out->store_uuid, " \n")))
        rc = herald_error_set (err, HERALD_ERR_INVALID, "", "the node id '%s' has a space",
                               out->node);
    if (rc == HERALD_OK)
        rc = s_list (store_dir, &manifest.files, &manifest.count, err);
    progress.phase = "checksums";
    for (size_t index = 0; rc == HERALD_OK && index < manifest.count; index++)
        progress.total += manifest.files [index].size;
    for (size_t index = 0; rc == HERALD_OK && index < manifest.count; index++) {
        s_file_t *file = &manifest.files [index];
        s_join (path, sizeof path, "%s/%s", store_dir, file->name);
        //  A hard-linked table file is synced already; a copied one (the
        //  WAL, MANIFEST, OPTIONS) is synced here
        int fd = open (path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fsync (fd) != 0)
            rc = s_io_error (err, "cannot sync", path);
        if (fd >= 0)
            close (fd);
        if (rc == HERALD_OK)
            rc = s_hash_file (path, -1, NULL, cancel, &progress, &file->size, file->sha256,
                              err);
        out->bytes += file->size;
    }
    if (rc == HERALD_OK)
        s_progress (&progress, 0, true);
    out->files = manifest.count;
    if (rc == HERALD_OK)
        rc = s_fsync_path (store_dir, err);
    if (rc == HERALD_OK) {
        s_join (path, sizeof path, "%s/%s", temp, HERALD_BACKUP_MANIFEST);
        rc = s_manifest_write (path, &manifest, err);
    }
    if (rc == HERALD_OK)
        rc = s_fsync_path (temp, err);
    if (rc == HERALD_OK && cancel && *cancel)
        rc = herald_error_set (err, HERALD_ERR_INTERNAL, "", "the backup was cancelled (the "
                               "broker is stopping)");
    //  The backup appears whole or not at all (rename replaces an empty
    //  directory; one that was filled meanwhile makes it fail)
    if (rc == HERALD_OK && rename (temp, dir) != 0)
        rc = s_io_error (err, "cannot rename the finished backup to", dir);
    if (rc == HERALD_OK)
        rc = s_fsync_path (parent, err);
    else
        s_remove_tree (temp);
    if (rc == HERALD_OK && info_out)
        *info_out = manifest.info;
    free (manifest.files);
    return rc;
}

//  ---------------------------------------------------------------------
//  Verify

//  Check every file of manifest in dir/store (and copy each into
//  copy_dir when not NULL, synced), and that store/ holds nothing else.
static herald_err
s_check_files (const char *dir, const s_manifest_t *manifest, const char *copy_dir,
               s_progress_t *progress, herald_error_t *err)
{
    char store_dir [PATH_MAX];
    s_join (store_dir, sizeof store_dir, "%s/%s", dir, HERALD_BACKUP_STORE);
    s_file_t *present = NULL;
    size_t count = 0;
    herald_err rc = s_list (store_dir, &present, &count, err);
    //  Both lists are sorted: a walk finds what is missing or extra
    for (size_t listed = 0, found = 0; rc == HERALD_OK && (listed < manifest->count
                                                          || found < count); ) {
        int order = listed == manifest->count? 1: found == count? -1
                  : strcmp (manifest->files [listed].name, present [found].name);
        if (order < 0)
            rc = herald_error_set (err, HERALD_ERR_CORRUPT, "", "%s/%s is missing",
                                   store_dir, manifest->files [listed].name);
        else
        if (order > 0)
            rc = herald_error_set (err, HERALD_ERR_CORRUPT, "", "%s/%s is not in the "
                                   "manifest", store_dir, present [found].name);
        else
        if (present [found].size != manifest->files [listed].size)
            rc = herald_error_set (err, HERALD_ERR_CORRUPT, "", "%s/%s is damaged: %" PRIu64
                                   " bytes, the manifest says %" PRIu64, store_dir,
                                   present [found].name, present [found].size,
                                   manifest->files [listed].size);
        listed++, found++;
    }
    free (present);
    for (size_t index = 0; rc == HERALD_OK && index < manifest->count; index++) {
        const s_file_t *file = &manifest->files [index];
        char path [PATH_MAX], out_path [PATH_MAX] = "";
        s_join (path, sizeof path, "%s/%s", store_dir, file->name);
        int out_fd = -1;
        if (copy_dir) {
            s_join (out_path, sizeof out_path, "%s/%s", copy_dir, file->name);
            out_fd = open (out_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
            if (out_fd < 0) {
                rc = s_io_error (err, "cannot create", out_path);
                break;
            }
        }
        uint64_t size = 0;
        char sha256 [65];
        rc = s_hash_file (path, out_fd, out_path, NULL, progress, &size, sha256, err);
        if (out_fd >= 0)
            close (out_fd);
        if (rc == HERALD_OK && (size != file->size || strcmp (sha256, file->sha256) != 0))
            rc = herald_error_set (err, HERALD_ERR_CORRUPT, "", "%s is damaged: its SHA-256 "
                                   "does not match the manifest's", path);
    }
    if (rc == HERALD_OK)
        s_progress (progress, 0, true);
    return rc;
}

herald_err
herald_backup_verify (const char *dir, herald_backup_progress_fn *progress_fn, void *arg,
                      herald_backup_info_t *info, herald_error_t *err)
{
    assert (dir);
    if (sodium_init () < 0)
        return herald_error_set (err, HERALD_ERR_INTERNAL, "", "libsodium failed to start");
    s_manifest_t manifest;
    herald_err rc = s_manifest_read (dir, &manifest, err);
    if (rc != HERALD_OK)
        return rc;
    s_progress_t progress = { progress_fn, arg, "verify", 0, manifest.info.bytes, 0 };
    rc = s_check_files (dir, &manifest, NULL, &progress, err);
    if (rc == HERALD_OK && info)
        *info = manifest.info;
    free (manifest.files);
    return rc;
}

//  ---------------------------------------------------------------------
//  Restore

static herald_err
s_mkdirs (const char *path, herald_error_t *err)
{
    char copy [PATH_MAX];
    snprintf (copy, sizeof copy, "%s", path);
    for (char *at = copy + 1; *at; at++)
        if (*at == '/') {
            *at = 0;
            if (mkdir (copy, 0755) != 0 && errno != EEXIST)
                return s_io_error (err, "cannot create", copy);
            *at = '/';
        }
    if (mkdir (copy, 0755) != 0 && errno != EEXIST)
        return s_io_error (err, "cannot create", copy);
    return HERALD_OK;
}

herald_err
herald_backup_restore (const char *dir, const char *data_dir, bool keep_lineage,
                       herald_backup_progress_fn *progress_fn, void *arg,
                       herald_backup_info_t *info, herald_error_t *err)
{
    assert (dir);
    assert (data_dir);
    if (sodium_init () < 0)
        return herald_error_set (err, HERALD_ERR_INTERNAL, "", "libsodium failed to start");
    if (strlen (data_dir) > PATH_MAX - 64 || strlen (dir) > PATH_MAX - 64)
        return herald_error_set (err, HERALD_ERR_INVALID, "", "the path is too long");
    //  The target first: refusing it costs nothing, verifying reads it all
    struct stat status;
    if (stat (data_dir, &status) == 0 && S_ISDIR (status.st_mode)
    &&  herald_store_locked (data_dir))
        return herald_error_set (err, HERALD_ERR_LOCKED, "", "data directory %s is in use by "
                                 "another process (a running broker): stop it, and restore "
                                 "into a new or an empty directory", data_dir);
    if (s_vacant (data_dir, "data directory", err) < 0)
        return err->code;
    s_manifest_t manifest;
    herald_err rc = s_manifest_read (dir, &manifest, err);
    if (rc != HERALD_OK)
        return rc;
    s_progress_t progress = { progress_fn, arg, "verify", 0, manifest.info.bytes, 0 };
    rc = s_check_files (dir, &manifest, NULL, &progress, err);
    if (rc != HERALD_OK) {
        free (manifest.files);
        return rc;
    }
    char parent [PATH_MAX], name [PATH_MAX], temp [PATH_MAX];
    s_split (data_dir, parent, name, sizeof parent);
    rc = s_mkdirs (parent, err);
    s_join (temp, sizeof temp, "%s/.%s.restore-XXXXXX", parent, name);
    if (rc == HERALD_OK && !mkdtemp (temp))
        rc = s_io_error (err, "cannot create", temp);
    if (rc != HERALD_OK) {
        free (manifest.files);
        return rc;
    }
    //  Copied and checked again on the way: the backup may have changed
    //  since it was verified
    progress = (s_progress_t) { progress_fn, arg, "copy", 0, manifest.info.bytes, 0 };
    rc = s_check_files (dir, &manifest, temp, &progress, err);
    if (rc == HERALD_OK)
        rc = s_fsync_path (temp, err);
    //  Open it as the broker would, and check it is what the manifest says
    if (rc == HERALD_OK) {
        progress = (s_progress_t) { progress_fn, arg, "open", 0, 0, 0 };
        herald_store_t *store = herald_store_open (temp, NULL, err);
        if (!store)
            rc = err->code;
        else
        if (herald_store_head (store) != manifest.info.head
        ||  herald_store_digest (store) != manifest.info.digest
        ||  herald_store_lineage (store) != manifest.info.lineage)
            rc = herald_error_set (err, HERALD_ERR_CORRUPT, "", "%s: the restored store has "
                                   "head %" PRIu64 " (digest %" PRIu64 ", lineage %" PRIu64 "), "
                                   "the manifest says head %" PRIu64 " (digest %" PRIu64
                                   ", lineage %" PRIu64 ")", dir, herald_store_head (store),
                                   herald_store_digest (store), herald_store_lineage (store),
                                   manifest.info.head, manifest.info.digest,
                                   manifest.info.lineage);
        bool seed = *manifest.info.store_uuid || manifest.info.raft_applied;
        if (rc == HERALD_OK && seed)
            if (herald_store_meta_delete (store, "store.uuid") != HERALD_OK
            ||  herald_store_meta_delete (store, "raft.peers") != HERALD_OK)
                rc = herald_error_set (err, HERALD_ERR_IO, "", "%s: cannot drop the cluster "
                                       "node's identity from the restored store", temp);
        if (rc == HERALD_OK && !seed && !keep_lineage) {
            char reason [PATH_MAX + 128], taken [32] = "?";
            time_t seconds = (time_t) (manifest.info.created / 1000000000ull);
            struct tm utc;
            if (gmtime_r (&seconds, &utc))
                strftime (taken, sizeof taken, "%Y-%m-%dT%H:%M:%SZ", &utc);
            snprintf (reason, sizeof reason, "restored from the backup %s (head %" PRIu64
                      ", taken %s)", dir, manifest.info.head, taken);
            rc = herald_store_accept_loss (store, reason, err);
        }
        if (store) {
            herald_error_t stop_err = { 0 };
            if (herald_store_stop (store, &stop_err) != HERALD_OK && rc == HERALD_OK) {
                *err = stop_err;
                rc = stop_err.code;
            }
            herald_store_destroy (&store);
        }
        s_progress (&progress, 0, true);
    }
    //  Into place: rename replaces an empty directory
    if (rc == HERALD_OK && rename (temp, data_dir) != 0)
        rc = s_io_error (err, "cannot rename the restored store to", data_dir);
    if (rc == HERALD_OK)
        rc = s_fsync_path (parent, err);
    else
        s_remove_tree (temp);
    if (rc == HERALD_OK && info)
        *info = manifest.info;
    free (manifest.files);
    return rc;
}
