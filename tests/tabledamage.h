/*  =========================================================================
    tabledamage - find a stopped store's table files and damage them

    For the tests of what Herald does with data RocksDB cannot read: find
    the table files (.sst) a column family of a stopped store lives in,
    with RocksDB's own list of live files, and flip bytes inside one, as a
    failing disk or a stray write would.  A flipped byte inside a data
    block makes every read of that block fail its checksum ("Corruption:
    block checksum mismatch"); the table still opens, because opening
    reads only its footer, index and filter blocks, which sit at its end.

    Nothing here uses criterion; every helper returns 0 or -1.
    =========================================================================
*/

#ifndef HERALD_TABLEDAMAGE_H_INCLUDED
#define HERALD_TABLEDAMAGE_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

//  One table file of a column family.
typedef struct {
    char path [4200];               //  data_dir/NNNNNN.sst
    uint64_t size;
    int level;
} td_table_t;

//  The largest live table of column family cf ("events", "ids", "streams",
//  "topics": store/herald_store_priv.h) in the stopped store data_dir, and
//  how many tables cf has.  Opens the store read-only (RocksDB writes only
//  its info LOG).  Returns 0, or -1 when it cannot be read or cf has none.
int
    td_largest_table (const char *data_dir, const char *cf, td_table_t *table,
                      size_t *count);

//  Delete, in the stopped store data_dir, the run of events holding seq
//  (its "events" key: store/herald_store_priv.h), leaving a hole in the
//  log; *first and *last get the seqs it held.  Returns 0 or -1.
int
    td_delete_run (const char *data_dir, uint64_t seq, uint64_t *first, uint64_t *last);

//  Invert count bytes of the file at path from offset on.  Returns 0 or -1.
int
    td_flip (const char *path, uint64_t offset, size_t count);

#endif
