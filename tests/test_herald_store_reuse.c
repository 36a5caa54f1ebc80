/*  =========================================================================
    test_herald_store_reuse - an id reused for a different event is told
    from a retry (issue 11)

    The dedup index keeps a content hash (XXH64 of topic and data) beside
    each id.  A duplicate whose topic or data differ is still not stored,
    as before, but its append result says `reused`; a true retry stays a
    plain duplicate.  Stores written before the hash have 16-byte entries:
    their duplicates are plain ones, and `herald inspect` accepts them.
    Old stores are made here by rewriting a fresh store's "ids" entries to
    their first 16 bytes with RocksDB directly (the layout before hashes).
    =========================================================================
*/

#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <rocksdb/c.h>

#include "herald_hash.h"
#include "testutil.h"

static char *s_dir;                 //  the test's temporary directory
static char *s_db;                  //  s_dir/db, the store's directory
static herald_store_t *s_store;

static void
s_setup (void)
{
    s_dir = tu_tmpdir_new ("reuse");
    cr_assert_not_null (s_dir, "cannot make a temporary directory: %s", strerror (errno));
    s_db = tu_path (s_dir, "db");
    cr_assert_not_null (s_db);
}

static void
s_teardown (void)
{
    herald_store_destroy (&s_store);
    free (s_db);
    s_db = NULL;
    tu_tmpdir_destroy (&s_dir);
}

TestSuite (herald_store_reuse, .init = s_setup, .fini = s_teardown, .timeout = 120);

static void
s_open (void)
{
    herald_store_destroy (&s_store);
    herald_store_options_t options = { .durability = HERALD_DURABILITY_SYNC };
    herald_error_t err;
    memset (&err, 0, sizeof err);
    s_store = herald_store_open (s_db, &options, &err);
    cr_assert_not_null (s_store, "open %s: %s", s_db, err.message);
}

static void
s_append_ok (const herald_event_t *events, size_t count, herald_append_result_t *results)
{
    tu_append_info_t info;
    herald_err rc = tu_append (s_store, events, count, results, &info);
    cr_assert_eq (rc, HERALD_OK, "append: call %d, status %d: %s", info.call, info.status,
                  info.err.message);
}

//  How to rewrite a closed store's "ids" entries.
typedef enum { S_STRIP_HASHES, S_SPOIL_FIRST_HASH } s_rewrite_t;

//  Rewrite every "ids" value of the store at s_db (closed) as how says:
//  to its first 16 bytes (an entry from before hashes), or with the first
//  entry's hash changed.  Returns how many entries it rewrote.
static size_t
s_rewrite_ids (s_rewrite_t how)
{
    herald_store_destroy (&s_store);
    rocksdb_options_t *options = rocksdb_options_create ();
    char *error = NULL;
    size_t count = 0;
    char **names = rocksdb_list_column_families (options, s_db, &count, &error);
    cr_assert_null (error, "%s", error);
    rocksdb_column_family_handle_t **handles = calloc (count, sizeof *handles);
    const rocksdb_options_t **cf_options = calloc (count, sizeof *cf_options);
    int ids = -1;
    for (size_t index = 0; index < count; index++) {
        cf_options [index] = options;
        if (strcmp (names [index], "ids") == 0)
            ids = (int) index;
    }
    cr_assert_geq (ids, 0, "the store has no ids column family");
    rocksdb_t *db = rocksdb_open_column_families (options, s_db, (int) count,
                                                  (const char *const *) names, cf_options,
                                                  handles, &error);
    cr_assert_null (error, "%s", error);
    rocksdb_readoptions_t *read = rocksdb_readoptions_create ();
    rocksdb_writeoptions_t *write = rocksdb_writeoptions_create ();
    rocksdb_writeoptions_set_sync (write, 1);
    rocksdb_writebatch_t *batch = rocksdb_writebatch_create ();
    rocksdb_iterator_t *it = rocksdb_create_iterator_cf (db, read, handles [ids]);
    size_t rewritten = 0;
    for (rocksdb_iter_seek_to_first (it); rocksdb_iter_valid (it); rocksdb_iter_next (it)) {
        size_t key_len, len;
        const char *key = rocksdb_iter_key (it, &key_len);
        const char *value = rocksdb_iter_value (it, &len);
        cr_assert_eq (len, 24, "a fresh store's id entry has %zu bytes, not 24", len);
        char copy [24];
        memcpy (copy, value, 24);
        if (how == S_SPOIL_FIRST_HASH) {
            if (rewritten)
                break;
            copy [23] ^= 0x01;
        }
        rocksdb_writebatch_put_cf (batch, handles [ids], key, key_len, copy,
                                   how == S_STRIP_HASHES? 16: 24);
        rewritten++;
    }
    rocksdb_iter_destroy (it);
    rocksdb_write (db, write, batch, &error);
    cr_assert_null (error, "%s", error);
    rocksdb_writebatch_destroy (batch);
    rocksdb_writeoptions_destroy (write);
    rocksdb_readoptions_destroy (read);
    for (size_t index = 0; index < count; index++)
        rocksdb_column_family_handle_destroy (handles [index]);
    rocksdb_close (db);
    rocksdb_list_column_families_destroy (names, count);
    free (handles);
    free (cf_options);
    rocksdb_options_destroy (options);
    return rewritten;
}

//  Run `herald inspect` on s_db (closed); its exit status, its output in out.
static int
s_inspect (char *out, size_t size)
{
    herald_store_destroy (&s_store);
    const char *builddir = getenv ("HERALD_BUILDDIR");
    char *log = tu_path (s_dir, "inspect.out");
    char command [4096];
    snprintf (command, sizeof command, "'%s/tools/herald' inspect --data-dir '%s' >'%s' 2>&1",
              builddir? builddir: ".", s_db, log);
    int status = system (command);
    FILE *file = fopen (log, "r");
    cr_assert_not_null (file);
    size_t len = fread (out, 1, size - 1, file);
    out [len] = '\0';
    fclose (file);
    free (log);
    cr_assert (WIFEXITED (status), "inspect did not exit: %s", out);
    return WEXITSTATUS (status);
}

//  ---------------------------------------------------------------------
//  The hash

Test (herald_store_reuse, hash_is_xxh64_as_specified)
{
    //  Reference values from xxHash's own library (libxxhash 0.8)
    cr_assert_eq (herald_hash64 ("", 0, 0), 0xef46db3751d8e999ull);
    cr_assert_eq (herald_hash64 ("abc", 3, 0), 0x44bc2cf5ad770999ull);
    uint8_t bytes [100];
    for (size_t index = 0; index < sizeof bytes; index++)
        bytes [index] = (uint8_t) (index * 7 + 3);
    cr_assert_eq (herald_hash64 (bytes, 100, 0), 0xa61f8d4c170fe531ull);
    cr_assert_eq (herald_hash64 (bytes, 100, 0x9E3779B185EBCA87ull), 0x9869d9ef85051be9ull);
}

Test (herald_store_reuse, content_hash_covers_topic_and_data_unambiguously)
{
    herald_event_t event = tu_event ("orders.1", "hello");
    cr_assert_eq (herald_hash_content (&event), 0x409e1ba7379d422aull,
                  "XXH64 of the data seeded with XXH64 of the topic");
    herald_event_t left = tu_event ("ab", "c");
    herald_event_t right = tu_event ("a", "bc");
    cr_assert_neq (herald_hash_content (&left), herald_hash_content (&right));
    herald_event_t typed = event;
    typed.type = "Other";
    typed.type_len = 5;
    cr_assert_eq (herald_hash_content (&typed), herald_hash_content (&event),
                  "type, meta and schema are not content");
}

//  ---------------------------------------------------------------------
//  Appending

Test (herald_store_reuse, a_retry_is_a_plain_duplicate)
{
    s_open ();
    herald_event_t event = tu_event ("orders.1", "hello");
    herald_append_result_t first, again;
    s_append_ok (&event, 1, &first);
    cr_assert_not (first.reused);
    s_append_ok (&event, 1, &again);
    cr_assert (again.dup);
    cr_assert_not (again.reused, "the same topic and data is a retry");
    cr_assert_eq (again.seq, first.seq);
}

Test (herald_store_reuse, other_data_under_a_stored_id_is_reused_and_not_stored)
{
    s_open ();
    herald_event_t event = tu_event ("orders.1", "hello");
    herald_append_result_t first, again;
    s_append_ok (&event, 1, &first);
    herald_event_t other = tu_event ("orders.1", "goodbye");
    memcpy (other.id, event.id, HERALD_ID_BYTES);
    s_append_ok (&other, 1, &again);
    cr_assert (again.dup);
    cr_assert (again.reused, "another event under a stored id must be flagged");
    cr_assert_eq (again.seq, first.seq, "the seq its id was stored at");
    cr_assert_eq (again.ver, first.ver);
    cr_assert_eq (herald_store_head (s_store), 1, "the reused id's event was stored");
}

Test (herald_store_reuse, another_topic_under_a_stored_id_is_reused)
{
    s_open ();
    herald_event_t event = tu_event ("orders.1", "hello");
    herald_append_result_t first, again;
    s_append_ok (&event, 1, &first);
    herald_event_t other = tu_event ("orders.2", "hello");
    memcpy (other.id, event.id, HERALD_ID_BYTES);
    s_append_ok (&other, 1, &again);
    cr_assert (again.dup && again.reused);
    cr_assert_eq (herald_store_topic_count (s_store), 1);
}

Test (herald_store_reuse, reuse_within_one_batch_is_flagged)
{
    s_open ();
    herald_event_t events [4] = {
        tu_event ("t", "a"), tu_event ("t", "b"), tu_event ("t", "c"), tu_event ("t", "d")
    };
    memcpy (events [2].id, events [0].id, HERALD_ID_BYTES);  //  other data, same id
    events [3] = events [1];                                //  a true copy
    herald_append_result_t results [4];
    s_append_ok (events, 4, results);
    cr_assert_not (results [0].dup || results [1].dup);
    cr_assert (results [2].dup && results [2].reused, "in-batch reuse must be flagged");
    cr_assert_eq (results [2].seq, results [0].seq);
    cr_assert (results [3].dup);
    cr_assert_not (results [3].reused, "an in-batch copy is a plain duplicate");
    cr_assert_eq (herald_store_head (s_store), 2);
}

Test (herald_store_reuse, reuse_across_batches_of_one_call_is_flagged)
{
    s_open ();
    herald_event_t a = tu_event ("t", "a");
    herald_event_t b [2] = { tu_event ("t", "b"), tu_event ("t", "not a") };
    memcpy (b [1].id, a.id, HERALD_ID_BYTES);
    herald_append_result_t results_a, results_b [2];
    herald_batch_t batches [2] = {
        { .events = &a, .count = 1, .results = &results_a },
        { .events = b, .count = 2, .results = results_b },
    };
    herald_error_t err;
    memset (&err, 0, sizeof err);
    cr_assert_eq (herald_store_append (s_store, batches, 2, &err), HERALD_OK, "%s", err.message);
    cr_assert (results_b [1].dup && results_b [1].reused);
    cr_assert_eq (results_b [1].seq, results_a.seq);
    cr_assert_eq (herald_store_head (s_store), 2);
}

Test (herald_store_reuse, reuse_is_flagged_after_reopen)
{
    s_open ();
    herald_event_t event = tu_event ("orders.1", "hello");
    herald_append_result_t first, retry, reused;
    s_append_ok (&event, 1, &first);
    s_open ();
    s_append_ok (&event, 1, &retry);
    cr_assert (retry.dup);
    cr_assert_not (retry.reused);
    herald_event_t other = tu_event ("orders.1", "hellp");
    memcpy (other.id, event.id, HERALD_ID_BYTES);
    s_append_ok (&other, 1, &reused);
    cr_assert (reused.dup && reused.reused);
    uint64_t seq, ver, hash;
    bool has_hash;
    cr_assert_eq (herald_store_lookup_id_hash (s_store, event.id, &seq, &ver, &hash,
                                               &has_hash), HERALD_OK);
    cr_assert (has_hash);
    cr_assert_eq (hash, herald_hash_content (&event));
    cr_assert_eq (seq, 1);
}

//  ---------------------------------------------------------------------
//  Stores written before the hash

Test (herald_store_reuse, an_entry_without_a_hash_gives_a_plain_duplicate)
{
    s_open ();
    herald_event_t events [3] = {
        tu_event ("t", "a"), tu_event ("t", "b"), tu_event ("u", "c")
    };
    herald_append_result_t results [3];
    s_append_ok (events, 3, results);
    cr_assert_eq (s_rewrite_ids (S_STRIP_HASHES), 3);
    s_open ();
    uint64_t seq, ver, hash;
    bool has_hash = true;
    cr_assert_eq (herald_store_lookup_id_hash (s_store, events [1].id, &seq, &ver, &hash,
                                               &has_hash), HERALD_OK);
    cr_assert_not (has_hash);
    cr_assert_eq (seq, 2);
    herald_event_t other = tu_event ("t", "not b");
    memcpy (other.id, events [1].id, HERALD_ID_BYTES);
    herald_append_result_t again [2];
    herald_event_t batch [2] = { other, events [2] };
    s_append_ok (batch, 2, again);
    cr_assert (again [0].dup && again [1].dup);
    cr_assert_not (again [0].reused, "an old entry cannot tell: a plain duplicate");
    cr_assert_eq (again [0].seq, 2);
    cr_assert_eq (herald_store_head (s_store), 3);

    //  New events beside old entries get hashes
    herald_event_t fresh = tu_event ("t", "d");
    herald_append_result_t stored, reused;
    s_append_ok (&fresh, 1, &stored);
    herald_event_t impostor = tu_event ("t", "e");
    memcpy (impostor.id, fresh.id, HERALD_ID_BYTES);
    s_append_ok (&impostor, 1, &reused);
    cr_assert (reused.dup && reused.reused);
}

static int
s_count (const uint8_t id [HERALD_ID_BYTES], uint64_t seq, uint64_t ver, void *arg)
{
    (void) id;
    (void) ver;
    cr_assert_gt (seq, 0);
    (*(size_t *) arg)++;
    return 0;
}

Test (herald_store_reuse, walk_ids_reads_entries_with_and_without_hashes)
{
    s_open ();
    herald_event_t events [2] = { tu_event ("t", "a"), tu_event ("t", "b") };
    herald_append_result_t results [2];
    s_append_ok (events, 2, results);
    s_rewrite_ids (S_STRIP_HASHES);
    s_open ();
    herald_event_t more = tu_event ("t", "c");
    s_append_ok (&more, 1, results);
    size_t count = 0;
    herald_error_t err;
    cr_assert_eq (herald_store_walk_ids (s_store, s_count, &count, &err), 0, "%s", err.message);
    cr_assert_eq (count, 3);
}

//  ---------------------------------------------------------------------
//  herald inspect

Test (herald_store_reuse, inspect_passes_a_store_with_hashes)
{
    s_open ();
    herald_event_t events [3] = { tu_event ("t", "a"), tu_event ("u", "b"), tu_event ("t", "c") };
    herald_append_result_t results [3];
    s_append_ok (events, 3, results);
    char out [4096];
    cr_assert_eq (s_inspect (out, sizeof out), 0, "inspect: %s", out);
    cr_assert (strstr (out, "\"consistent\":true"), "%s", out);
    cr_assert (strstr (out, "\"ids\":3,\"ids_unhashed\":0"), "%s", out);
}

Test (herald_store_reuse, inspect_passes_a_store_without_hashes)
{
    s_open ();
    herald_event_t events [3] = { tu_event ("t", "a"), tu_event ("u", "b"), tu_event ("t", "c") };
    herald_append_result_t results [3];
    s_append_ok (events, 3, results);
    s_rewrite_ids (S_STRIP_HASHES);
    s_open ();
    herald_event_t more = tu_event ("t", "d");      //  a mixed store: old and new entries
    s_append_ok (&more, 1, results);
    char out [4096];
    cr_assert_eq (s_inspect (out, sizeof out), 0, "inspect: %s", out);
    cr_assert (strstr (out, "\"ids\":4,\"ids_unhashed\":3"), "%s", out);
}

Test (herald_store_reuse, inspect_fails_an_entry_whose_hash_is_not_its_events)
{
    s_open ();
    herald_event_t events [2] = { tu_event ("t", "a"), tu_event ("t", "b") };
    herald_append_result_t results [2];
    s_append_ok (events, 2, results);
    cr_assert_eq (s_rewrite_ids (S_SPOIL_FIRST_HASH), 1);
    char out [4096];
    cr_assert_eq (s_inspect (out, sizeof out), 1, "inspect: %s", out);
    cr_assert (strstr (out, "keeps content hash"), "%s", out);
}
