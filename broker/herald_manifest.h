/*  =========================================================================
    herald_manifest - a cluster node's Raft snapshot: a manifest, not data

    A Herald store is a function of its events, and events are identical
    on every node, so a Raft snapshot need not carry them (CLUSTER.md
    §3.6): it is a manifest of a few hundred bytes, MessagePack

        {format: 1, index: raft index, head: seq, last_ts, digest: the
         store's log digest at head, node, api: the snapshot's maker,
         peers: [{node, raft_id, raft, api, fanout}],
         trims: [{prefix, until, ts}] the trim points (herald_store_trims),
         groups: the consumer groups (herald_store_groups_export)}

    and restoring it means bringing the store to that head: nothing when
    the store is there already, else copying the missing events from a
    peer (herald_catchup) and checking the digest.  herald_raft's FSM
    calls these; libraft is not called here.
    =========================================================================
*/

#ifndef HERALD_MANIFEST_H_INCLUDED
#define HERALD_MANIFEST_H_INCLUDED

#include "herald_raft.h"
#include "herald_catchup.h"

#define HERALD_MANIFEST_FORMAT      1
#define HERALD_MANIFEST_APIS        16

typedef struct {
    uint64_t index;                 //  the raft index it was taken at
    uint64_t head;                  //  the store's head then
    uint64_t last_ts;
    uint64_t digest;                //  herald_store_digest at head
    char api [256];                 //  its maker's api endpoint ("" unknown)
    char apis [HERALD_MANIFEST_APIS][256];  //  the peers' api endpoints
    size_t api_count;
    //  The consumer groups at index (herald_store_groups_export), borrowed
    //  from the bytes decoded; NULL in a manifest from before groups
    const uint8_t *groups;
    size_t groups_len;
    //  The trim points at index, the msgpack array, borrowed likewise;
    //  NULL in a manifest from before trimming (none)
    const uint8_t *trims;
    size_t trims_len;
} herald_manifest_t;

//  Append the manifest of store as it is now, at raft index, to buffer;
//  node and api are this node's.  Returns 0, or -1 if out of memory.
int
    herald_manifest_encode (herald_store_t *store, uint64_t index, const char *node,
                            const char *api, const herald_peer_t *peers, size_t peer_count,
                            msgpack_sbuffer *buffer);

//  Decode bytes[0..len) (self->groups borrows them).  HERALD_ERR_CORRUPT
//  when it is no manifest of a format this build knows.
herald_err
    herald_manifest_decode (herald_manifest_t *self, const void *bytes, size_t len,
                            herald_error_t *err);

//  Bring store to the manifest: nothing when it holds the manifest's
//  index already; the applied index when it is at the head with the same
//  digest; else copy seqs head + 1 .. the manifest's head from the first
//  peer that has them (the maker first, then the manifest's peers, then
//  apis[0..count)), each tried once and never own_api (this node's own
//  api: it is behind, and at a start nobody serves it yet), calling
//  installed after each install, and check the digest; then, before the
//  applied index is written, replace the store's groups with the
//  manifest's (when it has them: an old manifest leaves the store's) and
//  raise its trim points to the manifest's (herald_store_trims_import).
//  A peer that has trimmed events this node lacks cannot serve them: the
//  error says to seed the node from a backup (docs/operations.md).
//  HERALD_ERR_CORRUPT when the logs diverged, no peer could serve, or the
//  groups are no export (err says which); the store's error when it fails.
herald_err
    herald_manifest_restore (const herald_manifest_t *self, herald_store_t *store,
                             const char *own_api, const char *const *apis, size_t count,
                             herald_catchup_fn *installed, void *arg, herald_error_t *err);

#endif
