/*  =========================================================================
    herald_store_groups - consumer groups' positions in the store

    A group (docs/groups.md, docs/protocol.md "Consumer groups") is kept
    in the store beside the log, so that in a cluster it is replicated
    with it: every change is an op carried by a herald_batch_t (count 0,
    `op` set) through the same apply as PUBLISH (standalone: the writer;
    a cluster: a Raft entry), and decided at apply time, deterministically,
    from the store and the op alone (no clock: the op carries its ts).

    An op is one MessagePack map, str keys; every op has `op` (str) and
    `group` (str):

      create  {op, group, prefixes: [str], partitions: uint, session_ms: uint,
               from: uint (first seq), ts: uint (ns)}
              a group that does not exist is made, every partition at
              committed = delivered = from - 1, epoch 0; one that exists
              with the same prefixes (as a set) and partitions is left as
              it is (result created false); otherwise result ok false,
              error naming the group's own prefixes and partitions
      grant   {op, group, member: str, partitions: [uint]}
              each partition gets epoch = ++ the group's epoch counter;
              result assigned: [[partition, epoch, committed, delivered]]
      commit  {op, group, member: str,
               positions: [[partition, epoch, committed, delivered]]}
              each position whose epoch is the partition's current one is
              written; result fenced: [partition] (the others)
      reset   {op, group, to: uint (first seq to deliver again)}
              every partition: committed = delivered = to - 1, epoch = ++
              the counter; result epoch: the last one given
      delete  {op, group}
              the group is forgotten

    A result is one MessagePack map: {ok: bool, error: str (when not ok),
    and the keys above}.  An op on a group that does not exist (but
    create), a partition out of range, or an op that does not decode is
    ok false with an error, and writes nothing: it never fails the apply
    (the batches around it are applied; a follower applies what the
    leader did).
    =========================================================================
*/

#ifndef HERALD_STORE_GROUPS_H_INCLUDED
#define HERALD_STORE_GROUPS_H_INCLUDED

#include "herald_store.h"

#define HERALD_GROUP_PARTITIONS_MAX 1024
#define HERALD_GROUP_NAME_MAX       128

typedef struct {
    uint64_t committed;             //  every event of the partition up to it handled
    uint64_t delivered;             //  >= committed: up to it, maybe given to a handler
    uint64_t epoch;                 //  the grant it is held under (0: never granted)
} herald_group_position_t;

typedef struct {
    char *name;
    char **prefixes;                //  prefix_count of them, sorted
    size_t prefix_count;            //  0: every topic
    uint32_t partitions;
    uint32_t session_ms;
    uint64_t created;               //  ns, the create op's ts
    uint64_t epoch;                 //  the last epoch given
    herald_group_position_t *positions;     //  [partitions]
} herald_group_record_t;

//  Read group `name` into record (caller fini's it).  HERALD_ERR_NOT_FOUND
//  when there is none; a read that fails is HERALD_ERR_IO (err says what),
//  a record that does not decode HERALD_ERR_CORRUPT.  Any thread; it never
//  waits for a write to end unless the write tore the record: read while
//  ops are applied, the record may mix partitions' positions from before
//  and after an op (each partition's own values are always one op's).
herald_err
    herald_store_group_get (herald_store_t *self, const char *name,
                            herald_group_record_t *record, herald_error_t *err);

//  Every group's name, sorted: *names (caller frees each and the array)
//  and *count.  Any thread.
herald_err
    herald_store_group_names (herald_store_t *self, char ***names, size_t *count,
                              herald_error_t *err);

//  Free what a record holds and zero it.  NULL-safe.
void
    herald_group_record_fini (herald_group_record_t *record);

//  Every group, as one MessagePack array of records, appended to buffer:
//  what a cluster's snapshot manifest carries (herald_manifest.c).
herald_err
    herald_store_groups_export (herald_store_t *self, msgpack_sbuffer *buffer,
                                herald_error_t *err);

//  Replace every group with those of an export (a snapshot's restore), in
//  one write.  HERALD_ERR_CORRUPT when bytes are no export.
herald_err
    herald_store_groups_import (herald_store_t *self, const void *bytes, size_t len,
                                herald_error_t *err);

#endif
