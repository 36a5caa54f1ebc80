/*  =========================================================================
    herald_peers - a cluster node's member table: who is a member, under
    which name, at which raft, api and fanout addresses

    Split out of herald_raft.c, which owns one and replaces it when a
    node-table entry is applied; nothing here calls libraft.
    =========================================================================
*/

#ifndef HERALD_PEERS_H_INCLUDED
#define HERALD_PEERS_H_INCLUDED

#include <msgpack.h>
#include "herald_raft.h"

typedef struct _herald_peers_t herald_peers_t;

//  A table holding a copy of count peers (strings copied; api and fanout
//  may be NULL).
herald_peers_t *
    herald_peers_new (const herald_peer_t *peers, size_t count);

//  NULL-safe; clears the caller's pointer.
void
    herald_peers_destroy (herald_peers_t **self_p);

//  Decode a msgpack map {peers: [{node, raft_id, raft, api, fanout}, ...]}
//  (a node-table entry's table, or a manifest): a new table (caller owns),
//  or NULL when it is not a complete one (a peer without one of the five).
herald_peers_t *
    herald_peers_decode (const void *bytes, size_t len);

//  Encode the table as herald_peers_decode reads it.  -1 on a packer error.
int
    herald_peers_encode (herald_peers_t *self, msgpack_sbuffer *buffer);

//  Encode the table changed: with added (replacing any member of its name
//  or raft id), or without the member of raft id removed (0: none).
int
    herald_peers_encode_changed (herald_peers_t *self, const herald_peer_t *added,
                                 uint64_t removed, msgpack_sbuffer *buffer);

//  When the table lacks raft id but other has it, add a copy of other's
//  entry (a node removed from the table keeps knowing its own name).
void
    herald_peers_keep (herald_peers_t *self, const herald_peers_t *other, uint64_t id);

//  The member of raft id, or of name; NULL when none.  Borrowed.
const herald_peer_t *
    herald_peers_by_id (herald_peers_t *self, uint64_t id);
const herald_peer_t *
    herald_peers_by_name (herald_peers_t *self, const char *name);

//  The members as an array of herald_peers_size entries.  Borrowed.
const herald_peer_t *
    herald_peers_list (herald_peers_t *self);
size_t
    herald_peers_size (herald_peers_t *self);

//  A copy of the members into *peers (caller owns: herald_peers_free),
//  api and fanout "" where the table has none.  Returns the count.
size_t
    herald_peers_copy (herald_peers_t *self, herald_peer_t **peers);

//  Free an array of count peers and the strings it owns.
void
    herald_peers_free (herald_peer_t *peers, size_t count);

#endif
