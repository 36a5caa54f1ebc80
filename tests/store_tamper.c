/*  =========================================================================
    store_tamper - damage a stopped broker's store on purpose, for tests

        store_tamper DIR CF             print CF's keys in hex, one a line
        store_tamper DIR CF KEYHEX      delete that key from CF

    tests/test_herald_cli.sh uses it to make the damage `herald inspect`
    must catch: a record gone from an index ("streams", "topics") while
    the log is intact, or a run gone from the log ("events"); the key
    layouts are drawn in store/herald_store_priv.h.  It opens the RocksDB
    directory itself, with every column family the directory lists (read-
    only to list), and never creates one: none of the store's code stands
    between the test and the damage.  Exit status: 0 done; 1 no such key,
    or RocksDB refused (printed); 64 a usage error.
    =========================================================================
*/

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <rocksdb/c.h>

//  Parse hex text into out (at most size bytes); returns the length, or -1.
static long
s_unhex (const char *text, unsigned char *out, size_t size)
{
    size_t len = strlen (text);
    if (len % 2 || len / 2 > size)
        return -1;
    for (size_t index = 0; index < len / 2; index++) {
        unsigned int byte;
        if (sscanf (text + 2 * index, "%2x", &byte) != 1)
            return -1;
        out [index] = (unsigned char) byte;
    }
    return (long) (len / 2);
}

//  Print CF's keys in hex, one a line.
static int
s_list (rocksdb_t *db, rocksdb_column_family_handle_t *cf)
{
    rocksdb_readoptions_t *read = rocksdb_readoptions_create ();
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf (db, read, cf);
    for (rocksdb_iter_seek_to_first (it); rocksdb_iter_valid (it); rocksdb_iter_next (it)) {
        size_t len;
        const unsigned char *key = (const unsigned char *) rocksdb_iter_key (it, &len);
        for (size_t index = 0; index < len; index++)
            printf ("%02x", key [index]);
        putchar ('\n');
    }
    char *error = NULL;
    rocksdb_iter_get_error (it, &error);
    rocksdb_iter_destroy (it);
    rocksdb_readoptions_destroy (read);
    if (error) {
        fprintf (stderr, "store_tamper: iterating: %s\n", error);
        rocksdb_free (error);
        return 1;
    }
    return 0;
}

//  Delete key from CF, synced.  1 when it was not there.
static int
s_delete (rocksdb_t *db, rocksdb_column_family_handle_t *cf, const char *hex)
{
    unsigned char key [1024];
    long len = s_unhex (hex, key, sizeof key);
    if (len <= 0) {
        fprintf (stderr, "store_tamper: '%s' is not a hex key\n", hex);
        return 64;
    }
    rocksdb_readoptions_t *read = rocksdb_readoptions_create ();
    char *error = NULL;
    size_t value_len = 0;
    char *value = rocksdb_get_cf (db, read, cf, (const char *) key, (size_t) len, &value_len,
                                  &error);
    rocksdb_readoptions_destroy (read);
    bool found = value != NULL;
    rocksdb_free (value);
    if (!error && found) {
        rocksdb_writeoptions_t *write = rocksdb_writeoptions_create ();
        rocksdb_writeoptions_set_sync (write, 1);
        rocksdb_delete_cf (db, write, cf, (const char *) key, (size_t) len, &error);
        rocksdb_writeoptions_destroy (write);
    }
    if (error) {
        fprintf (stderr, "store_tamper: %s\n", error);
        rocksdb_free (error);
        return 1;
    }
    if (!found) {
        fprintf (stderr, "store_tamper: no key %s\n", hex);
        return 1;
    }
    return 0;
}

int
main (int argc, char *argv [])
{
    if (argc < 3 || argc > 4) {
        fprintf (stderr, "usage: store_tamper DIR CF [KEYHEX]\n");
        return 64;
    }
    const char *dir = argv [1], *name = argv [2];
    rocksdb_options_t *options = rocksdb_options_create ();
    char *error = NULL;
    size_t count = 0;
    char **names = rocksdb_list_column_families (options, dir, &count, &error);
    rocksdb_t *db = NULL;
    rocksdb_column_family_handle_t **handles = NULL;
    const rocksdb_options_t **cf_options = NULL;
    int rc = 1, which = -1;
    if (!error) {
        handles = calloc (count, sizeof *handles);
        cf_options = calloc (count, sizeof *cf_options);
        for (size_t index = 0; index < count; index++) {
            cf_options [index] = options;
            if (strcmp (names [index], name) == 0)
                which = (int) index;
        }
        //  Listing opens read-only, so it leaves the directory as it was
        if (handles && cf_options && which >= 0 && argc == 3)
            db = rocksdb_open_for_read_only_column_families (
                options, dir, (int) count, (const char *const *) names, cf_options, handles,
                0, &error);
        else
        if (handles && cf_options && which >= 0)
            db = rocksdb_open_column_families (options, dir, (int) count,
                                               (const char *const *) names, cf_options,
                                               handles, &error);
    }
    if (error)
        fprintf (stderr, "store_tamper: %s: %s\n", dir, error);
    else
    if (which < 0)
        fprintf (stderr, "store_tamper: %s has no column family '%s'\n", dir, name);
    else
    if (db)
        rc = argc == 4? s_delete (db, handles [which], argv [3]): s_list (db, handles [which]);
    rocksdb_free (error);
    for (size_t index = 0; db && index < count; index++)
        rocksdb_column_family_handle_destroy (handles [index]);
    if (db)
        rocksdb_close (db);
    if (names)
        rocksdb_list_column_families_destroy (names, count);
    free (handles);
    free (cf_options);
    rocksdb_options_destroy (options);
    return rc;
}
