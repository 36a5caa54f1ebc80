/*  =========================================================================
    herald_peers - a cluster node's member table: who is a member, under
    which name, at which raft, api and fanout addresses

    DESIGN

    The table is the list of herald_peer_t that herald_raft.c keeps: it
    starts as the --peer list, and is replaced whole whenever a node-table
    entry is applied (or a snapshot brings one).  On the wire (inside a
    node-table entry, herald_entry kind 2) and in the store's meta
    ("raft.table") it is one msgpack map:

        {peers: [{node: str, raft_id: uint, raft: str, api: str,
                  fanout: str}, ...]}

    A manifest carries a "peers" array of the same shape, so the decoder
    reads both; an older manifest lacks raft and fanout, and is then not a
    table (decode says NULL).  Unknown keys are ignored, so either may grow.

    A table is never changed in place once others read it: herald_raft.c
    builds a new one and swaps the pointer (under its mutex), which is why
    there is no setter here.  libraft keeps the configuration (ids, raft
    addresses, roles) itself; this table is what names a member and gives
    clients its api (STATUS peers, WELCOME cluster, not_leader's leader).
    =========================================================================
*/

#include "herald_peers.h"

struct _herald_peers_t {
    herald_peer_t *peers;               //  owned, every string too
    size_t count;
};

static herald_peers_t *
s_wrap (herald_peer_t *peers, size_t count)
{
    herald_peers_t *self = (herald_peers_t *) zmalloc (sizeof (herald_peers_t));
    self->peers = peers;
    self->count = count;
    return self;
}

herald_peers_t *
herald_peers_new (const herald_peer_t *peers, size_t count)
{
    herald_peer_t *copy = (herald_peer_t *) zmalloc (count * sizeof (herald_peer_t));
    size_t index;
    for (index = 0; index < count; index++) {
        const herald_peer_t *peer = &peers [index];
        copy [index].name = strdup (peer->name);
        copy [index].raft = strdup (peer->raft);
        copy [index].api = peer->api? strdup (peer->api): NULL;
        copy [index].fanout = peer->fanout? strdup (peer->fanout): NULL;
        copy [index].raft_id = peer->raft_id;
    }
    return s_wrap (copy, count);
}

void
herald_peers_destroy (herald_peers_t **self_p)
{
    if (self_p && *self_p) {
        herald_peers_free ((*self_p)->peers, (*self_p)->count);
        free (*self_p);
        *self_p = NULL;
    }
}

void
herald_peers_free (herald_peer_t *peers, size_t count)
{
    size_t index;
    for (index = 0; index < count; index++) {
        free (peers [index].name);
        free (peers [index].raft);
        free (peers [index].api);
        free (peers [index].fanout);
    }
    free (peers);
}

static char *
s_strdup_obj (const msgpack_object *value)
{
    if (value->type != MSGPACK_OBJECT_STR)
        return NULL;
    return strndup (value->via.str.ptr, value->via.str.size);
}

herald_peers_t *
herald_peers_decode (const void *bytes, size_t len)
{
    herald_peer_t *peers = NULL;
    size_t count = 0;
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    int rc = -1;
    if (msgpack_unpack_next (&unpacked, bytes, len, NULL) != MSGPACK_UNPACK_SUCCESS
    ||  unpacked.data.type != MSGPACK_OBJECT_MAP)
        goto done;
    const msgpack_object *list = NULL;
    uint32_t at;
    for (at = 0; at < unpacked.data.via.map.size; at++)
        if (herald_event_key_is (&unpacked.data.via.map.ptr [at].key, "peers"))
            list = &unpacked.data.via.map.ptr [at].val;
    if (!list || list->type != MSGPACK_OBJECT_ARRAY || list->via.array.size == 0)
        goto done;
    peers = (herald_peer_t *) zmalloc (list->via.array.size * sizeof (herald_peer_t));
    for (at = 0; at < list->via.array.size; at++) {
        const msgpack_object *map = &list->via.array.ptr [at];
        if (map->type != MSGPACK_OBJECT_MAP)
            goto done;
        herald_peer_t *peer = &peers [count];
        count++;
        uint32_t field;
        for (field = 0; field < map->via.map.size; field++) {
            const msgpack_object *key = &map->via.map.ptr [field].key;
            const msgpack_object *value = &map->via.map.ptr [field].val;
            char **into = herald_event_key_is (key, "node")? &peer->name
                        : herald_event_key_is (key, "raft")? &peer->raft
                        : herald_event_key_is (key, "api")? &peer->api
                        : herald_event_key_is (key, "fanout")? &peer->fanout
                        : NULL;
            if (into && !*into)
                *into = s_strdup_obj (value);
            if (herald_event_key_is (key, "raft_id")
            &&  value->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                peer->raft_id = value->via.u64;
        }
        if (!peer->name || !*peer->name || !peer->raft || !peer->api || !peer->fanout
        ||  peer->raft_id == 0)
            goto done;
    }
    rc = 0;
done:
    msgpack_unpacked_destroy (&unpacked);
    if (rc) {
        herald_peers_free (peers, count);
        return NULL;
    }
    return s_wrap (peers, count);
}

//  Pack count peers (strings borrowed) as the table map.
static int
s_encode (const herald_peer_t *peers, size_t count, msgpack_sbuffer *buffer)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, buffer, msgpack_sbuffer_write);
    int rc = msgpack_pack_map (&pk, 1);
    rc |= msgpack_pack_str_with_body (&pk, "peers", 5) | msgpack_pack_array (&pk, count);
    size_t index;
    for (index = 0; index < count; index++) {
        const herald_peer_t *peer = &peers [index];
        const char *api = peer->api? peer->api: "", *fanout = peer->fanout? peer->fanout: "";
        rc |= msgpack_pack_map (&pk, 5);
        rc |= msgpack_pack_str_with_body (&pk, "node", 4)
            | msgpack_pack_str_with_body (&pk, peer->name, strlen (peer->name));
        rc |= msgpack_pack_str_with_body (&pk, "raft_id", 7)
            | msgpack_pack_uint64 (&pk, peer->raft_id);
        rc |= msgpack_pack_str_with_body (&pk, "raft", 4)
            | msgpack_pack_str_with_body (&pk, peer->raft, strlen (peer->raft));
        rc |= msgpack_pack_str_with_body (&pk, "api", 3)
            | msgpack_pack_str_with_body (&pk, api, strlen (api));
        rc |= msgpack_pack_str_with_body (&pk, "fanout", 6)
            | msgpack_pack_str_with_body (&pk, fanout, strlen (fanout));
    }
    return rc? -1: 0;
}

int
herald_peers_encode (herald_peers_t *self, msgpack_sbuffer *buffer)
{
    return s_encode (self->peers, self->count, buffer);
}

int
herald_peers_encode_changed (herald_peers_t *self, const herald_peer_t *added,
                             uint64_t removed, msgpack_sbuffer *buffer)
{
    herald_peer_t *peers = (herald_peer_t *) zmalloc ((self->count + 1)
                                                      * sizeof (herald_peer_t));
    size_t count = 0, index;
    for (index = 0; index < self->count; index++) {
        const herald_peer_t *peer = &self->peers [index];
        if (peer->raft_id == removed
        ||  (added && (peer->raft_id == added->raft_id || streq (peer->name, added->name))))
            continue;
        peers [count++] = *peer;        //  borrowed strings: encoded at once
    }
    if (added)
        peers [count++] = *added;
    int rc = s_encode (peers, count, buffer);
    free (peers);
    return rc;
}

void
herald_peers_keep (herald_peers_t *self, const herald_peers_t *other, uint64_t id)
{
    size_t index;
    for (index = 0; index < self->count; index++)
        if (self->peers [index].raft_id == id)
            return;
    const herald_peer_t *old = NULL;
    for (index = 0; index < other->count; index++)
        if (other->peers [index].raft_id == id) {
            old = &other->peers [index];
            break;
        }
    if (!old)
        return;
    herald_peer_t *peers = (herald_peer_t *) realloc (self->peers, (self->count + 1)
                                                                   * sizeof (herald_peer_t));
    assert (peers);
    peers [self->count].name = strdup (old->name);
    peers [self->count].raft = strdup (old->raft);
    peers [self->count].api = old->api? strdup (old->api): NULL;
    peers [self->count].fanout = old->fanout? strdup (old->fanout): NULL;
    peers [self->count].raft_id = old->raft_id;
    self->peers = peers;
    self->count++;
}

const herald_peer_t *
herald_peers_by_id (herald_peers_t *self, uint64_t id)
{
    size_t index;
    for (index = 0; index < self->count; index++)
        if (self->peers [index].raft_id == id)
            return &self->peers [index];
    return NULL;
}

const herald_peer_t *
herald_peers_by_name (herald_peers_t *self, const char *name)
{
    size_t index;
    for (index = 0; index < self->count; index++)
        if (streq (self->peers [index].name, name))
            return &self->peers [index];
    return NULL;
}

const herald_peer_t *
herald_peers_list (herald_peers_t *self)
{
    return self->peers;
}

size_t
herald_peers_size (herald_peers_t *self)
{
    return self->count;
}

size_t
herald_peers_copy (herald_peers_t *self, herald_peer_t **peers)
{
    size_t count = self->count, index;
    *peers = (herald_peer_t *) zmalloc ((count? count: 1) * sizeof (herald_peer_t));
    for (index = 0; index < count; index++) {
        const herald_peer_t *peer = &self->peers [index];
        (*peers) [index].name = strdup (peer->name);
        (*peers) [index].raft = strdup (peer->raft);
        (*peers) [index].api = strdup (peer->api? peer->api: "");
        (*peers) [index].fanout = strdup (peer->fanout? peer->fanout: "");
        (*peers) [index].raft_id = peer->raft_id;
    }
    return count;
}
