/*  =========================================================================
    tabledamage - find a stopped store's table files and damage them
    =========================================================================
*/

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <rocksdb/c.h>
#include "tabledamage.h"

int
td_largest_table (const char *data_dir, const char *cf, td_table_t *table, size_t *count)
{
    memset (table, 0, sizeof (*table));
    *count = 0;
    rocksdb_options_t *options = rocksdb_options_create ();
    char *error = NULL;
    size_t cf_count = 0;
    char **names = rocksdb_list_column_families (options, data_dir, &cf_count, &error);
    if (error) {
        fprintf (stderr, "tabledamage: %s: %s\n", data_dir, error);
        free (error);
        rocksdb_options_destroy (options);
        return -1;
    }
    const rocksdb_options_t **cf_options = calloc (cf_count, sizeof (*cf_options));
    rocksdb_column_family_handle_t **handles = calloc (cf_count, sizeof (*handles));
    for (size_t index = 0; index < cf_count; index++)
        cf_options [index] = options;
    rocksdb_t *db = rocksdb_open_for_read_only_column_families (
        options, data_dir, (int) cf_count, (const char *const *) names, cf_options, handles,
        0, &error);
    int rc = -1;
    if (error) {
        fprintf (stderr, "tabledamage: %s: %s\n", data_dir, error);
        free (error);
    }
    else {
        const rocksdb_livefiles_t *files = rocksdb_livefiles (db);
        for (int index = 0; index < rocksdb_livefiles_count (files); index++) {
            if (strcmp (rocksdb_livefiles_column_family_name (files, index), cf) != 0)
                continue;
            (*count)++;
            uint64_t size = rocksdb_livefiles_size (files, index);
            if (size > table->size) {
                table->size = size;
                table->level = rocksdb_livefiles_level (files, index);
                //  Names come as "/000012.sst"
                snprintf (table->path, sizeof (table->path), "%s%s", data_dir,
                          rocksdb_livefiles_name (files, index));
                rc = 0;
            }
        }
        rocksdb_livefiles_destroy (files);
        for (size_t index = 0; index < cf_count; index++)
            rocksdb_column_family_handle_destroy (handles [index]);
        rocksdb_close (db);
    }
    rocksdb_list_column_families_destroy (names, cf_count);
    free (cf_options);
    free (handles);
    rocksdb_options_destroy (options);
    return rc;
}

int
td_delete_run (const char *data_dir, uint64_t seq, uint64_t *first, uint64_t *last)
{
    *first = *last = 0;
    rocksdb_options_t *options = rocksdb_options_create ();
    char *error = NULL;
    size_t cf_count = 0;
    char **names = rocksdb_list_column_families (options, data_dir, &cf_count, &error);
    if (error) {
        fprintf (stderr, "tabledamage: %s: %s\n", data_dir, error);
        free (error);
        rocksdb_options_destroy (options);
        return -1;
    }
    const rocksdb_options_t **cf_options = calloc (cf_count, sizeof (*cf_options));
    rocksdb_column_family_handle_t **handles = calloc (cf_count, sizeof (*handles));
    int events = -1;
    for (size_t index = 0; index < cf_count; index++) {
        cf_options [index] = options;
        if (strcmp (names [index], "events") == 0)
            events = (int) index;
    }
    rocksdb_t *db = events < 0? NULL: rocksdb_open_column_families (
        options, data_dir, (int) cf_count, (const char *const *) names, cf_options, handles,
        &error);
    int rc = -1;
    if (db) {
        rocksdb_readoptions_t *read = rocksdb_readoptions_create ();
        rocksdb_iterator_t *it = rocksdb_create_iterator_cf (db, read, handles [events]);
        unsigned char key [8];
        for (int index = 0; index < 8; index++)
            key [index] = (unsigned char) (seq >> (56 - 8 * index));
        rocksdb_iter_seek (it, (const char *) key, 8);
        size_t key_len = 0, len = 0;
        const unsigned char *found = rocksdb_iter_valid (it)
            ? (const unsigned char *) rocksdb_iter_key (it, &key_len): NULL;
        const unsigned char *value = found
            ? (const unsigned char *) rocksdb_iter_value (it, &len): NULL;
        if (found && key_len == 8 && len >= 4) {
            for (int index = 0; index < 8; index++)
                *last = *last << 8 | found [index];
            uint32_t count = (uint32_t) value [0] << 24 | (uint32_t) value [1] << 16
                           | (uint32_t) value [2] << 8 | value [3];
            *first = *last - count + 1;
            rocksdb_writeoptions_t *write = rocksdb_writeoptions_create ();
            rocksdb_writeoptions_set_sync (write, 1);
            rocksdb_delete_cf (db, write, handles [events], (const char *) found, 8, &error);
            rocksdb_writeoptions_destroy (write);
            rc = error? -1: 0;
        }
        rocksdb_iter_destroy (it);
        rocksdb_readoptions_destroy (read);
        for (size_t index = 0; index < cf_count; index++)
            rocksdb_column_family_handle_destroy (handles [index]);
        rocksdb_close (db);
    }
    if (error) {
        fprintf (stderr, "tabledamage: %s: %s\n", data_dir, error);
        free (error);
    }
    rocksdb_list_column_families_destroy (names, cf_count);
    free (cf_options);
    free (handles);
    rocksdb_options_destroy (options);
    return rc;
}

int
td_flip (const char *path, uint64_t offset, size_t count)
{
    int fd = open (path, O_RDWR);
    if (fd < 0)
        return -1;
    unsigned char buffer [256];
    int rc = -1;
    if (count <= sizeof (buffer)
    &&  pread (fd, buffer, count, (off_t) offset) == (ssize_t) count) {
        for (size_t index = 0; index < count; index++)
            buffer [index] ^= 0xFF;
        if (pwrite (fd, buffer, count, (off_t) offset) == (ssize_t) count && fsync (fd) == 0)
            rc = 0;
    }
    close (fd);
    return rc;
}
