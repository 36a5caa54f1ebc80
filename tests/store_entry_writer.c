/*  =========================================================================
    store_entry_writer - applies raft entries to a store forever, reporting
    each one

    The other half of test_herald_store_cluster's crash test: the test
    starts this program, reads the indexes it reports, and kills it with
    SIGKILL mid-apply.

        store_entry_writer DIR sync|async

    Opens the store in DIR and applies entries applied + 1, applied + 2,
    ... (tests/store_entries.h says what each holds) with
    herald_store_apply_entry or, for a barrier, herald_store_set_applied.
    Only once the call has returned does it print "<index>\n" and flush.
    Exits 2 when the store will not open, 3 when an apply fails.
    =========================================================================
*/

#include <stdlib.h>
#include "store_entries.h"

int
main (int argc, char *argv [])
{
    if (argc != 3 || (strcmp (argv [2], "sync") && strcmp (argv [2], "async"))) {
        fprintf (stderr, "usage: store_entry_writer DIR sync|async\n");
        return 1;
    }
    herald_store_options_t options = {
        .durability = strcmp (argv [2], "sync")? HERALD_DURABILITY_ASYNC: HERALD_DURABILITY_SYNC
    };
    herald_error_t err = { 0 };
    herald_store_t *store = herald_store_open (argv [1], &options, &err);
    if (!store) {
        fprintf (stderr, "store_entry_writer: open %s: %s\n", argv [1], err.message);
        return 2;
    }
    static se_entry_t entry;
    for (uint64_t index = herald_store_applied_index (store) + 1; ; index++) {
        if (se_apply_entry (store, index, &entry, &err) != HERALD_OK) {
            fprintf (stderr, "store_entry_writer: entry %" PRIu64 ": %s\n", index, err.message);
            return 3;
        }
        printf ("%" PRIu64 "\n", index);
        if (fflush (stdout) != 0)
            return 3;
    }
}
