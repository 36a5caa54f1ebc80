/*  =========================================================================
    herald_node - what makes a broker a cluster node: identity, bootstrap,
    its Raft node, and the cluster's keys of STATUS, WELCOME and $hb

    DESIGN

    Identity.  The raft id is herald_raft_digest ("NAME/STORE-UUID").  The
    uuid is a UUIDv7 made the first time a broker opens the store and kept
    in its meta (key "store.uuid"): a data directory wiped and made again
    has a new one, so the node gets a new raft id and can never vote as
    its old self with an empty log (the failure KIP-853 fixed in Kafka).

    Bootstrap.  A pristine node (no raft state, no event, no applied
    index) started with `new` asks every other peer's api STATUS, every
    PROBE_MS, and bootstraps when each has answered either
      - cluster_state "bootstrapping" (pristine and waiting too), or
      - "member", listing this node with this node's raft id among its
        peers: it bootstrapped a moment earlier with this node in its
        configuration, from the same answers, so the configurations are
        the same (the ids come from STATUS, never from names)
    and refuses to start when a peer is a member whose peers do not list
    this node's raft id: the cluster exists without this node as it is
    now.  Every node bootstraps the same configuration (libraft allows
    that): members in --peer order, each with the raft id it reported.
    The ids are kept in the store's meta ("raft.peers"): herald_raft
    needs every peer's (it names the leader by its id), and a member's
    STATUS lists them after a restart too.  A node that does not know
    them (one started with `existing` to be added) asks the peers' STATUS
    first, as in bootstrap, and starts once each has answered.

    While it waits the node serves STATUS (cluster_state bootstrapping,
    its raft_id) and refuses PUBLISH with not_leader, leader nil
    (herald_commit: no Raft node attached yet).
    =========================================================================
*/

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include "herald_node.h"
#include "herald_catchup.h"
#include "herald_log.h"
#include "herald_msg.h"
#include "herald_uuid.h"

#define PROBE_MS            100         //  between two STATUS to a peer not yet settled
#define WAIT_LOG_MS         5000        //  between two "still waiting" lines

#define S_REFUSAL   "the cluster exists already; this node's raft state is empty " \
                    "(a wiped disk?): start it with --cluster-state existing and add it " \
                    "with herald cluster add"

typedef enum {
    S_BOOTSTRAPPING,                    //  pristine, `new`: waits for pristine peers
    S_LEARNING,                         //  asks its peers their raft ids, then starts
    S_RUNNING                           //  Raft runs: member or joining (its role says)
} s_phase_t;

//  What one peer said to the last STATUS while bootstrapping.
typedef struct {
    zsock_t *dealer;                    //  NULL: this node itself
    bool answered;
    char state [16];                    //  its cluster_state
    uint64_t raft_id;
    bool lists_me;                      //  a member whose peers hold my raft id
    int64_t next_probe;
    uint64_t rid;
} s_probe_t;

struct _herald_node_t {
    herald_config_t *config;            //  borrowed
    herald_store_t *store;              //  borrowed
    char *uuid;                         //  the store's
    uint64_t raft_id;
    char *raft_dir;
    herald_peer_t *peers;               //  config's, with ids (strings borrowed)
    size_t self_index;
    s_phase_t phase;
    bool member;                        //  its raft directory held state at start
    herald_raft_t *raft;
    s_probe_t *probes;
    int64_t next_log;
    const char *stop_reason;
    //  For the log: what changed since the last turn
    herald_raft_role_t role;
    uint64_t term;
    char leader [64];
};


//  ---------------------------------------------------------------------
//  Identity and what is on disk

//  The store's uuid, made and kept the first time.
static char *
s_store_uuid (herald_store_t *store, herald_error_t *err)
{
    char *value = NULL;
    size_t len = 0;
    herald_err rc = herald_store_meta_get (store, "store.uuid", &value, &len);
    if (rc == HERALD_OK) {
        char *uuid = strndup (value, len);
        free (value);
        return uuid;
    }
    if (rc != HERALD_ERR_NOT_FOUND) {
        herald_error_set (err, rc, NULL, "cannot read the store's uuid: %s",
                          herald_strerror (rc));
        return NULL;
    }
    uint8_t id [16];
    herald_uuid_v7 (id);
    char text [HERALD_UUID_STR_LEN + 1];
    herald_uuid_format (id, text);
    if (herald_store_meta_put (store, "store.uuid", text, strlen (text)) != HERALD_OK) {
        herald_error_set (err, HERALD_ERR_IO, NULL, "cannot record the store's uuid");
        return NULL;
    }
    return strdup (text);
}

//  True when path is missing or an empty directory.
static bool
s_dir_empty (const char *path)
{
    DIR *dir = opendir (path);
    if (!dir)
        return errno == ENOENT;
    struct dirent *entry;
    bool empty = true;
    while (empty && (entry = readdir (dir)))
        empty = strcmp (entry->d_name, ".") == 0 || strcmp (entry->d_name, "..") == 0;
    closedir (dir);
    return empty;
}

//  The raft ids of the bootstrap configuration, as kept in the store's
//  meta: "NAME ID\n" per peer.  Fills what it finds.
static void
s_ids_load (herald_node_t *self)
{
    char *value = NULL;
    size_t len = 0;
    if (herald_store_meta_get (self->store, "raft.peers", &value, &len) != HERALD_OK)
        return;
    char *text = strndup (value, len);
    free (value);
    char *saveptr = NULL;
    for (char *line = strtok_r (text, "\n", &saveptr); line;
         line = strtok_r (NULL, "\n", &saveptr)) {
        char *space = strchr (line, ' ');
        if (!space)
            continue;
        *space = 0;
        for (size_t index = 0; index < self->config->peer_count; index++)
            if (index != self->self_index && strcmp (self->peers [index].name, line) == 0)
                self->peers [index].raft_id = strtoull (space + 1, NULL, 10);
    }
    free (text);
}

static herald_err
s_ids_save (herald_node_t *self)
{
    char text [4096] = "";
    size_t used = 0;
    for (size_t index = 0; index < self->config->peer_count; index++)
        used += (size_t) snprintf (text + used, used < sizeof (text)? sizeof (text) - used: 0,
                                   "%s %" PRIu64 "\n", self->peers [index].name,
                                   self->peers [index].raft_id);
    if (used >= sizeof (text))
        return HERALD_ERR_INVALID;
    return herald_store_meta_put (self->store, "raft.peers", text, used);
}


//  ---------------------------------------------------------------------
//  Raft

static int
s_raft_start (herald_node_t *self, bool bootstrap)
{
    herald_raft_options_t options = {
        .node = self->config->node,
        .self_id = self->raft_id,
        .dir = self->raft_dir,
        .peers = self->peers,
        .peer_count = self->config->peer_count,
        .bootstrap = bootstrap,
        .election_ms = (unsigned) self->config->election_ms,
        .heartbeat_ms = (unsigned) self->config->raft_heartbeat_ms
    };
    herald_error_t err = { 0 };
    self->raft = herald_raft_new (&options, self->store, &err);
    if (!self->raft) {
        herald_log ("error", "cannot start the Raft node (state in %s): %s", self->raft_dir,
                    err.message);
        self->stop_reason = "its Raft node could not start";
        return -1;
    }
    self->phase = S_RUNNING;
    herald_log ("info", "raft: node %s (raft id %" PRIu64 ") %s, state in %s",
                self->config->node, self->raft_id,
                bootstrap? "bootstrapped the cluster of its --peer list": "started",
                self->raft_dir);
    return 0;
}

void
herald_node_stop_raft (herald_node_t *self)
{
    if (self->raft) {
        herald_raft_destroy (&self->raft);
        herald_log ("info", "raft: node %s stopped", self->config->node);
    }
}


//  ---------------------------------------------------------------------
//  Lifecycle

//  Ask every other peer STATUS from now on (herald_node_tick), to
//  bootstrap or to learn their raft ids.
static void
s_probes_new (herald_node_t *self, s_phase_t phase)
{
    self->phase = phase;
    self->probes = (s_probe_t *) zmalloc (self->config->peer_count * sizeof (s_probe_t));
    for (size_t index = 0; index < self->config->peer_count; index++) {
        if (index == self->self_index)
            continue;
        zsock_t *dealer = zsock_new (ZMQ_DEALER);
        assert (dealer);
        zsock_set_linger (dealer, 0);
        //  Answers that never come are not kept for ever
        zsock_set_sndhwm (dealer, 4);
        zsock_set_sndtimeo (dealer, 0);
        herald_catchup_apply_key (dealer);      //  security on: the cluster's key
        zsock_connect (dealer, "%s", self->config->peers [index].api);
        self->probes [index].dealer = dealer;
    }
    if (phase == S_BOOTSTRAPPING)
        herald_log ("info", "raft: node %s (raft id %" PRIu64 ") is pristine and waits for "
                    "its %zu peers to be pristine too before bootstrapping",
                    self->config->node, self->raft_id, self->config->peer_count - 1);
    else
        herald_log ("info", "raft: node %s (raft id %" PRIu64 ") asks its peers their raft "
                    "ids before it starts", self->config->node, self->raft_id);
    self->next_log = zclock_mono () + WAIT_LOG_MS;
}

herald_node_t *
herald_node_new (herald_config_t *config, herald_store_t *store, herald_error_t *err)
{
    assert (herald_config_clustered (config));
    herald_node_t *self = (herald_node_t *) zmalloc (sizeof (herald_node_t));
    self->config = config;
    self->store = store;
    self->uuid = s_store_uuid (store, err);
    if (!self->uuid) {
        herald_node_destroy (&self);
        return NULL;
    }
    char text [512];
    snprintf (text, sizeof (text), "%s/%s", config->node, self->uuid);
    self->raft_id = herald_raft_digest (text);
    if (asprintf (&self->raft_dir, "%s/raft", config->data_dir) < 0)
        self->raft_dir = NULL;
    self->peers = (herald_peer_t *) zmalloc (config->peer_count * sizeof (herald_peer_t));
    for (size_t index = 0; index < config->peer_count; index++) {
        self->peers [index] = config->peers [index];
        self->peers [index].raft_id = 0;
        if (strcmp (config->peers [index].name, config->node) == 0)
            self->self_index = index;
    }
    self->peers [self->self_index].raft_id = self->raft_id;
    s_ids_load (self);
    self->member = !s_dir_empty (self->raft_dir);
    if (self->member || !config->cluster_new) {
        //  A member (the raft directory holds its configuration), or not
        //  one yet (Raft runs and waits to be added): Raft starts once
        //  every peer's raft id is known, kept from the bootstrap or asked
        bool known = true;
        for (size_t index = 0; index < config->peer_count; index++)
            known = known && self->peers [index].raft_id != 0;
        if (!known)
            s_probes_new (self, S_LEARNING);
        else
        if (s_raft_start (self, false) != 0) {
            herald_error_set (err, HERALD_ERR_UNAVAILABLE, NULL, "the Raft node could not "
                              "start (see the log above)");
            herald_node_destroy (&self);
        }
        return self;
    }
    if (herald_store_head (store) != 0 || herald_store_applied_index (store) != 0) {
        herald_error_set (err, HERALD_ERR_INVALID, NULL, "--cluster-state new: the store in "
                          "%s holds events already (head %" PRIu64 ") but %s holds no raft "
                          "state; a node bootstraps only from a pristine data directory: "
                          "give it an empty --data-dir, or start it with --cluster-state "
                          "existing and add it with herald cluster add",
                          config->data_dir, herald_store_head (store), self->raft_dir);
        herald_node_destroy (&self);
        return NULL;
    }
    s_probes_new (self, S_BOOTSTRAPPING);
    return self;
}

void
herald_node_destroy (herald_node_t **self_p)
{
    herald_node_t *self = *self_p;
    if (!self)
        return;
    herald_node_stop_raft (self);
    if (self->probes)
        for (size_t index = 0; index < self->config->peer_count; index++)
            zsock_destroy (&self->probes [index].dealer);
    free (self->probes);
    free (self->peers);
    free (self->raft_dir);
    free (self->uuid);
    free (self);
    *self_p = NULL;
}


//  ---------------------------------------------------------------------
//  Bootstrap: the peers' STATUS

static bool
s_key_is (const msgpack_object *key, const char *name)
{
    return key->type == MSGPACK_OBJECT_STR && key->via.str.size == strlen (name)
        && memcmp (key->via.str.ptr, name, key->via.str.size) == 0;
}

//  Read a peer's STATUS reply into probe: cluster_state, raft_id, and
//  whether its peers list this node with this node's raft id.  The
//  decoder of herald_msg keeps only uint extras, so the map is read here.
static void
s_probe_read (herald_node_t *self, s_probe_t *probe, const void *body, size_t len)
{
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    if (msgpack_unpack_next (&unpacked, body, len, NULL) != MSGPACK_UNPACK_SUCCESS
    ||  unpacked.data.type != MSGPACK_OBJECT_MAP) {
        msgpack_unpacked_destroy (&unpacked);
        return;
    }
    char state [16] = "";
    uint64_t raft_id = 0;
    bool lists_me = false;
    const msgpack_object_map *map = &unpacked.data.via.map;
    for (uint32_t index = 0; index < map->size; index++) {
        const msgpack_object *key = &map->ptr [index].key, *value = &map->ptr [index].val;
        if (s_key_is (key, "cluster_state") && value->type == MSGPACK_OBJECT_STR)
            snprintf (state, sizeof (state), "%.*s", (int) value->via.str.size,
                      value->via.str.ptr);
        else
        if (s_key_is (key, "raft_id") && value->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            raft_id = value->via.u64;
        else
        if (s_key_is (key, "peers") && value->type == MSGPACK_OBJECT_ARRAY)
            for (uint32_t peer = 0; peer < value->via.array.size; peer++) {
                const msgpack_object *entry = &value->via.array.ptr [peer];
                if (entry->type != MSGPACK_OBJECT_MAP)
                    continue;
                bool named = false, same = false;
                for (uint32_t field = 0; field < entry->via.map.size; field++) {
                    const msgpack_object *k = &entry->via.map.ptr [field].key;
                    const msgpack_object *v = &entry->via.map.ptr [field].val;
                    if (s_key_is (k, "node") && v->type == MSGPACK_OBJECT_STR)
                        named = v->via.str.size == strlen (self->config->node)
                             && memcmp (v->via.str.ptr, self->config->node,
                                        v->via.str.size) == 0;
                    if (s_key_is (k, "raft_id") && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                        same = v->via.u64 == self->raft_id;
                }
                lists_me = lists_me || (named && same);
            }
    }
    msgpack_unpacked_destroy (&unpacked);
    if (!*state || !raft_id)
        return;                         //  not a cluster node's STATUS
    probe->answered = true;
    snprintf (probe->state, sizeof (probe->state), "%s", state);
    probe->raft_id = raft_id;
    probe->lists_me = lists_me;
}

//  Read what the peers answered, ask those due again, and decide: 1 to
//  bootstrap now, 0 to wait, -1 to refuse.
static int
s_probe (herald_node_t *self)
{
    int64_t now = zclock_mono ();
    bool all = true;
    for (size_t index = 0; index < self->config->peer_count; index++) {
        s_probe_t *probe = &self->probes [index];
        if (!probe->dealer)
            continue;
        while (zsock_events (probe->dealer) & ZMQ_POLLIN) {
            zmsg_t *msg = zmsg_recv (probe->dealer);
            if (!msg)
                break;
            zframe_t *command = zmsg_first (msg);
            zframe_t *body = zmsg_next (msg);
            if (command && body && zframe_streq (command, "STATUS"))
                s_probe_read (self, probe, zframe_data (body), zframe_size (body));
            zmsg_destroy (&msg);
        }
        if (self->phase == S_BOOTSTRAPPING
        &&  probe->answered && streq (probe->state, "member") && !probe->lists_me) {
            herald_log ("error", "peer %s (%s) is a member of the cluster, which does not "
                        "hold this node (%s, raft id %" PRIu64 "): %s",
                        self->peers [index].name, self->peers [index].api, self->config->node,
                        self->raft_id, S_REFUSAL);
            self->stop_reason = "the cluster exists already without this node";
            return -1;
        }
        bool settled = probe->answered && (self->phase == S_LEARNING
                                           || streq (probe->state, "bootstrapping")
                                           || streq (probe->state, "member"));
        all = all && settled;
        if (now >= probe->next_probe) {
            //  Asked again even once settled: a peer that bootstrapped
            //  meanwhile is a member now, and must still list this node
            msgpack_sbuffer buffer;
            msgpack_sbuffer_init (&buffer);
            herald_msg_t status = { .type = HERALD_MSG_STATUS, .has_rid = true,
                                    .rid = ++probe->rid };
            if (herald_msg_encode (&status, &buffer) == 0) {
                zmsg_t *msg = zmsg_new ();
                zmsg_addstr (msg, "STATUS");
                zmsg_addmem (msg, buffer.data, buffer.size);
                zmsg_send (&msg, probe->dealer);    //  never waits (sndtimeo 0)
                zmsg_destroy (&msg);
            }
            msgpack_sbuffer_destroy (&buffer);
            probe->next_probe = now + PROBE_MS;
        }
    }
    if (all)
        return 1;
    if (now >= self->next_log) {
        char waiting [512] = "";
        size_t used = 0;
        for (size_t index = 0; index < self->config->peer_count && used < sizeof (waiting);
             index++) {
            s_probe_t *probe = &self->probes [index];
            if (probe->dealer)
                used += (size_t) snprintf (waiting + used, sizeof (waiting) - used, "%s%s (%s)",
                                           used? ", ": "", self->peers [index].name,
                                           probe->answered? probe->state: "no answer");
        }
        herald_log ("info", "raft: still waiting to %s: %s", self->phase == S_BOOTSTRAPPING?
                    "bootstrap": "learn its peers' raft ids", waiting);
        self->next_log = now + WAIT_LOG_MS;
    }
    return 0;
}

int
herald_node_tick (herald_node_t *self)
{
    if (self->stop_reason)
        return -1;
    if (self->phase != S_RUNNING) {
        int decision = s_probe (self);
        if (decision < 0)
            return -1;
        if (decision == 0)
            return 0;
        for (size_t index = 0; index < self->config->peer_count; index++)
            if (self->probes [index].dealer)
                self->peers [index].raft_id = self->probes [index].raft_id;
        if (s_ids_save (self) != HERALD_OK) {
            herald_log ("error", "cannot record the peers' raft ids in the store");
            self->stop_reason = "the store failed";
            return -1;
        }
        for (size_t index = 0; index < self->config->peer_count; index++)
            zsock_destroy (&self->probes [index].dealer);
        if (s_raft_start (self, self->phase == S_BOOTSTRAPPING) != 0)
            return -1;
    }
    herald_raft_state_t state;
    herald_raft_state (self->raft, &state);
    if (state.role == HERALD_RAFT_STOPPED) {
        herald_log ("error", "raft: the Raft node stopped (see the log above); stopping");
        self->stop_reason = "its Raft node stopped";
        return -1;
    }
    if (state.role != self->role || state.term != self->term
    ||  strcmp (state.leader, self->leader) != 0) {
        static const char *roles [] = { "follower", "leader", "joining", "stopped" };
        herald_log ("info", "raft: term %" PRIu64 ", %s, leader %s", state.term,
                    roles [state.role], *state.leader? state.leader: "unknown");
        self->role = state.role;
        self->term = state.term;
        snprintf (self->leader, sizeof (self->leader), "%s", state.leader);
    }
    return 0;
}

int64_t
herald_node_wait (herald_node_t *self)
{
    //  Bootstrapping polls its peers; a running node notices a role change
    //  within a Raft heartbeat, for the log and for STOPPED
    return self->phase != S_RUNNING? PROBE_MS / 2: (int64_t) self->config->raft_heartbeat_ms;
}

herald_raft_t *
herald_node_raft (herald_node_t *self)
{
    return self->raft;
}

const char *
herald_node_stop_reason (herald_node_t *self)
{
    return self->stop_reason? self->stop_reason: "the cluster node failed";
}


//  ---------------------------------------------------------------------
//  What clients are told

void
herald_node_state (herald_node_t *self, herald_raft_state_t *state)
{
    if (self->raft)
        herald_raft_state (self->raft, state);
    else {
        memset (state, 0, sizeof (*state));
        state->role = HERALD_RAFT_FOLLOWER;
    }
    state->raft_id = self->raft_id;
}

const char *
herald_node_role (herald_node_t *self)
{
    herald_raft_state_t state;
    herald_node_state (self, &state);
    return state.role == HERALD_RAFT_LEADER? "leader": "follower";
}

static void
s_pack_str (msgpack_packer *pk, const char *text)
{
    size_t len = strlen (text);
    msgpack_pack_str (pk, len);
    msgpack_pack_str_body (pk, text, len);
}

//  text, or nil when empty.
static void
s_pack_str_nil (msgpack_packer *pk, const char *text)
{
    if (*text)
        s_pack_str (pk, text);
    else
        msgpack_pack_nil (pk);
}

static void
s_pack_uint (msgpack_packer *pk, const char *key, uint64_t value)
{
    s_pack_str (pk, key);
    msgpack_pack_uint64 (pk, value);
}

static size_t
s_pack_status (herald_node_t *self, msgpack_packer *pk)
{
    herald_raft_state_t state;
    herald_node_state (self, &state);
    const char *cluster_state = self->phase == S_BOOTSTRAPPING? "bootstrapping"
                              : self->phase == S_LEARNING? (self->member? "member": "joining")
                              : state.role == HERALD_RAFT_JOINING? "joining": "member";
    s_pack_str (pk, "cluster_state");
    s_pack_str (pk, cluster_state);
    s_pack_uint (pk, "raft_id", self->raft_id);
    s_pack_uint (pk, "term", state.term);
    s_pack_str (pk, "leader");
    s_pack_str_nil (pk, state.leader);
    s_pack_str (pk, "leader_api");
    s_pack_str_nil (pk, state.leader_api);
    s_pack_uint (pk, "commit_index", state.commit_index);
    s_pack_uint (pk, "applied_index", state.applied_index);
    s_pack_uint (pk, "last_index", state.last_index);
    s_pack_uint (pk, "voters", state.voters);
    //  The log digest at head: two nodes at one head with one digest hold
    //  the same log
    char digest [24];
    snprintf (digest, sizeof (digest), "%016" PRIx64, herald_store_digest (self->store));
    s_pack_str (pk, "digest");
    s_pack_str (pk, digest);
    s_pack_uint (pk, "apply_us_max", state.apply_us_max);
    s_pack_str (pk, "durability");
    s_pack_str (pk, "raft-majority");
    //  The member table: membership changes update it (herald_raft)
    herald_peer_t *peers = NULL;
    size_t count = herald_node_members (self, &peers);
    s_pack_str (pk, "peers");
    msgpack_pack_array (pk, count);
    for (size_t index = 0; index < count; index++) {
        const herald_peer_t *peer = &peers [index];
        msgpack_pack_map (pk, 4 + (peer->raft_id != 0));
        s_pack_str (pk, "node");
        s_pack_str (pk, peer->name);
        s_pack_str (pk, "raft");
        s_pack_str (pk, peer->raft);
        s_pack_str (pk, "api");
        s_pack_str (pk, peer->api);
        s_pack_str (pk, "fanout");
        s_pack_str (pk, peer->fanout);
        if (peer->raft_id)
            s_pack_uint (pk, "raft_id", peer->raft_id);
    }
    herald_raft_members_free (&peers, count);
    return 13;                          //  the pairs above
}

static size_t
s_pack_welcome (herald_node_t *self, msgpack_packer *pk)
{
    herald_raft_state_t state;
    herald_node_state (self, &state);
    s_pack_str (pk, "leader");
    s_pack_str_nil (pk, state.leader_api);
    return 1;
}

static size_t
s_pack_heartbeat (herald_node_t *self, msgpack_packer *pk)
{
    herald_raft_state_t state;
    herald_node_state (self, &state);
    s_pack_str (pk, "role");
    s_pack_str (pk, state.role == HERALD_RAFT_LEADER? "leader": "follower");
    s_pack_str (pk, "leader");
    s_pack_str_nil (pk, state.leader_api);
    return 2;
}

static herald_msg_raw_t
s_raw (herald_node_t *self, msgpack_sbuffer *buffer,
       size_t (*pack) (herald_node_t *, msgpack_packer *))
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, buffer, msgpack_sbuffer_write);
    size_t count = pack (self, &pk);
    return (herald_msg_raw_t) { buffer->data, buffer->size, count };
}

herald_msg_raw_t
herald_node_status_raw (herald_node_t *self, msgpack_sbuffer *buffer)
{
    return s_raw (self, buffer, s_pack_status);
}

herald_msg_raw_t
herald_node_welcome_raw (herald_node_t *self, msgpack_sbuffer *buffer)
{
    return s_raw (self, buffer, s_pack_welcome);
}

herald_msg_raw_t
herald_node_heartbeat_raw (herald_node_t *self, msgpack_sbuffer *buffer)
{
    return s_raw (self, buffer, s_pack_heartbeat);
}

uint64_t
herald_node_term (herald_node_t *self)
{
    herald_raft_state_t state;
    herald_node_state (self, &state);
    return state.term;
}

//  The members as this node knows them now: the replicated member table
//  once Raft runs (herald_raft_members), the --peer list before.  Free
//  with herald_raft_members_free.
size_t
herald_node_members (herald_node_t *self, herald_peer_t **peers)
{
    if (self->raft)
        return herald_raft_members (self->raft, peers);
    size_t count = self->config->peer_count;
    *peers = (herald_peer_t *) zmalloc (count * sizeof (herald_peer_t));
    for (size_t index = 0; index < count; index++) {
        const herald_peer_t *peer = &self->peers [index];
        (*peers) [index].name = strdup (peer->name);
        (*peers) [index].raft = strdup (peer->raft);
        (*peers) [index].api = strdup (peer->api? peer->api: "");
        (*peers) [index].fanout = strdup (peer->fanout? peer->fanout: "");
        (*peers) [index].raft_id = peer->raft_id;
    }
    return count;
}
