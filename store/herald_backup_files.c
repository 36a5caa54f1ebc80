/*  =========================================================================
    herald_backup_files - what herald_backup.c builds on: the files of a
    backup (listed, hashed, synced, removed) and its manifest (written,
    read and checked)

    The manifest's format is described in herald_backup.c.  Every helper
    names the path it failed on in err, with the reason (a full disk
    says so), so a refusal always tells the operator which file.
    =========================================================================
*/

#include "herald_backup_priv.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
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

void
herald_backup_meter (herald_backup_meter_t *progress, uint64_t bytes, bool last)
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
void
herald_backup_join (char *out, size_t size, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    vsnprintf (out, size, format, args);
    va_end (args);
}

herald_err
herald_backup_io_error (herald_error_t *err, const char *what, const char *path)
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
void
herald_backup_remove_tree (const char *path)
{
    nftw (path, s_remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

herald_err
herald_backup_fsync (const char *path, herald_error_t *err)
{
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return herald_backup_io_error (err, "cannot open", path);
    if (fsync (fd) != 0) {
        herald_err rc = herald_backup_io_error (err, "cannot sync", path);
        close (fd);
        return rc;
    }
    close (fd);
    return HERALD_OK;
}

//  0: path does not exist; 1: an empty directory; -1: anything else
//  (err says what).
int
herald_backup_vacant (const char *path, const char *what, herald_error_t *err)
{
    struct stat info;
    if (lstat (path, &info) != 0) {
        if (errno == ENOENT)
            return 0;
        herald_backup_io_error (err, "cannot look at", path);
        return -1;
    }
    if (!S_ISDIR (info.st_mode)) {
        herald_error_set (err, HERALD_ERR_INVALID, "", "%s %s exists and is not a directory",
                          what, path);
        return -1;
    }
    DIR *handle = opendir (path);
    if (!handle) {
        herald_backup_io_error (err, "cannot list", path);
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
void
herald_backup_split (const char *path, char *parent, char *name, size_t size)
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

void
herald_backup_hex (const uint8_t *bytes, size_t len, char *out)
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
herald_err
herald_backup_hash_file (const char *path, int out_fd, const char *out_path,
                         const volatile bool *cancel, herald_backup_meter_t *progress,
                         uint64_t *size, char sha256 [65], herald_error_t *err)
{
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return herald_error_set (err, HERALD_ERR_CORRUPT, "", "%s is missing", path);
        return herald_backup_io_error (err, "cannot open", path);
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
            rc = herald_backup_io_error (err, "cannot read", path);
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
                rc = herald_backup_io_error (err, "cannot write", out_path);
            else
                written += put;
        }
        *size += (uint64_t) got;
        herald_backup_meter (progress, (uint64_t) got, false);
    }
    if (rc == HERALD_OK && out_fd >= 0 && fsync (out_fd) != 0)
        rc = herald_backup_io_error (err, "cannot sync", out_path);
    uint8_t digest [crypto_hash_sha256_BYTES];
    crypto_hash_sha256_final (&state, digest);
    herald_backup_hex (digest, sizeof digest, sha256);
    free (buffer);
    close (fd);
    return rc;
}

static int
s_compare_names (const void *a, const void *b)
{
    const herald_backup_file_t *first = a, *second = b;
    return strcmp (first->name, second->name);
}

//  The regular files of dir, sorted by name, into *files (caller frees).
//  Anything else there (a directory, a link) is refused: a checkpoint
//  holds none.
herald_err
herald_backup_list (const char *dir, herald_backup_file_t **files, size_t *count,
                    herald_error_t *err)
{
    *files = NULL;
    *count = 0;
    DIR *handle = opendir (dir);
    if (!handle) {
        if (errno == ENOENT)
            return herald_error_set (err, HERALD_ERR_CORRUPT, "", "%s is missing", dir);
        return herald_backup_io_error (err, "cannot list", dir);
    }
    size_t capacity = 0;
    herald_err rc = HERALD_OK;
    struct dirent *entry;
    while (rc == HERALD_OK && (entry = readdir (handle))) {
        if (!strcmp (entry->d_name, ".") || !strcmp (entry->d_name, ".."))
            continue;
        char path [PATH_MAX];
        herald_backup_join (path, sizeof path, "%s/%s", dir, entry->d_name);
        struct stat info;
        if (lstat (path, &info) != 0)
            rc = herald_backup_io_error (err, "cannot look at", path);
        else
        if (!S_ISREG (info.st_mode) || strlen (entry->d_name) > HERALD_BACKUP_NAME_MAX
        ||  strpbrk (entry->d_name, " \t\n\r"))
            rc = herald_error_set (err, HERALD_ERR_CORRUPT, "", "%s is not a file a backup "
                                   "holds", path);
        else
        if (*count >= S_FILES_MAX)
            rc = herald_error_set (err, HERALD_ERR_CORRUPT, "", "%s holds too many files", dir);
        else {
            if (*count == capacity) {
                capacity = capacity? capacity * 2: 64;
                herald_backup_file_t *grown = realloc (*files, capacity * sizeof **files);
                if (!grown) {
                    rc = herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
                    break;
                }
                *files = grown;
            }
            herald_backup_file_t *file = &(*files) [(*count)++];
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
        qsort (*files, *count, sizeof (herald_backup_file_t), s_compare_names);
    return HERALD_OK;
}

//  ---------------------------------------------------------------------
//  The manifest

herald_err
herald_backup_manifest_write (const char *path, const herald_backup_manifest_t *manifest,
                              herald_error_t *err)
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
    herald_backup_hex (digest, sizeof digest, hex);

    herald_err rc = HERALD_OK;
    int fd = open (path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        rc = herald_backup_io_error (err, "cannot create", path);
    char tail [128];
    int tail_len = snprintf (tail, sizeof tail, "sha256 %s\n", hex);
    if (rc == HERALD_OK
    &&  (write (fd, text, len) != (ssize_t) len
      || write (fd, tail, (size_t) tail_len) != tail_len))
        rc = herald_backup_io_error (err, "cannot write", path);
    if (rc == HERALD_OK && fsync (fd) != 0)
        rc = herald_backup_io_error (err, "cannot sync", path);
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

herald_err
herald_backup_manifest_read (const char *dir, herald_backup_manifest_t *manifest,
                             herald_error_t *err)
{
    memset (manifest, 0, sizeof *manifest);
    char path [PATH_MAX];
    herald_backup_join (path, sizeof path, "%s/%s", dir, HERALD_BACKUP_MANIFEST);
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            struct stat info;
            if (stat (dir, &info) != 0)
                return herald_backup_io_error (err, "cannot open", dir);
            return herald_error_set (err, HERALD_ERR_NOT_A_STORE, "", "%s is not a Herald "
                                     "backup: it has no %s", dir, HERALD_BACKUP_MANIFEST);
        }
        return herald_backup_io_error (err, "cannot open", path);
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
        herald_backup_hex (digest, sizeof digest, hex);
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
            char name [HERALD_BACKUP_NAME_MAX + 1], sha [80];
            uint64_t size;
            char size_text [32];
            ok = sscanf (value, "%255s %31s %79s", name, size_text, sha) == 3
              && s_uint (size_text, &size) && strlen (sha) == 64
              && strspn (sha, "0123456789abcdef") == 64 && !strchr (name, '/')
              && strcmp (name, ".") && strcmp (name, "..");
            if (ok && manifest->count == capacity) {
                capacity = capacity? capacity * 2: 64;
                herald_backup_file_t *grown = realloc (manifest->files,
                                                       capacity * sizeof *manifest->files);
                if (!grown) {
                    rc = herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
                    break;
                }
                manifest->files = grown;
            }
            if (ok) {
                herald_backup_file_t *file = &manifest->files [manifest->count++];
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
