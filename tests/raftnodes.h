/*  =========================================================================
    raftnodes - three herald_raft nodes in one process, for tests

    Each node on its own real store in a temporary directory, libraft over
    real TCP on ports chosen at run time; helpers that wait by polling
    with a deadline; a small REPLAY server on a node's api endpoint (a
    snapshot's catch-up source).  Shared by test_herald_raft and
    test_herald_raft_groups: include once, in one test file; the suite
    uses s_setup and s_teardown.
    =========================================================================
*/

#ifndef HERALD_RAFTNODES_H_INCLUDED
#define HERALD_RAFTNODES_H_INCLUDED

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "herald_raft.h"
#include "herald_catchup.h"
#include "brokerutil.h"
#include "testutil.h"

#define NODES 3
#define ELECT_MS 20000

typedef struct {
    char *dir;
    char name [16];
    herald_store_t *store;
    herald_raft_t *raft;
    size_t records;                 //  records taken
    size_t own_records;             //  of them with a cookie
    herald_err last_rc;
    void *last_cookie;
    uint64_t last_raft_index;
    bool follower_record_had_batches;
    bool paused;                    //  s_drain leaves its records alone
} s_node_t;

static char *s_root;
static s_node_t s_nodes [NODES];
static herald_peer_t s_peers [NODES];
static char s_raft_addr [NODES][32];
static char s_api [NODES][48];

//  A free port not returned before in this setup.
static int s_ports [2 * NODES + 1];
static size_t s_port_count;

static inline int
s_distinct_port (void)
{
    for (int tries = 0; tries < 100; tries++) {
        int port = bu_free_port ();
        cr_assert_gt (port, 0);
        bool taken = false;
        for (size_t index = 0; index < s_port_count; index++)
            taken = taken || s_ports [index] == port;
        if (!taken && s_port_count < 2 * NODES + 1) {
            s_ports [s_port_count++] = port;
            return port;
        }
    }
    cr_assert_fail ("no distinct free port in 100 tries");
    return -1;
}

static inline void
s_setup (void)
{
    s_port_count = 0;
    s_root = tu_tmpdir_new ("raft");
    cr_assert_not_null (s_root);
    for (int i = 0; i < NODES; i++) {
        s_node_t *node = &s_nodes [i];
        memset (node, 0, sizeof (*node));
        snprintf (node->name, sizeof (node->name), "n%d", i + 1);
        node->dir = tu_path (s_root, node->name);
        //  Free now, and not one taken for another node (nothing binds
        //  them until the nodes start, so two calls can return one port)
        int port = s_distinct_port ();
        snprintf (s_raft_addr [i], sizeof (s_raft_addr [i]), "127.0.0.1:%d", port);
        snprintf (s_api [i], sizeof (s_api [i]), "tcp://127.0.0.1:%d", s_distinct_port ());
        char text [64];
        snprintf (text, sizeof (text), "%s/uuid-%d", node->name, i);
        s_peers [i] = (herald_peer_t) {
            .name = node->name, .raft = s_raft_addr [i], .api = s_api [i],
            .fanout = s_api [i], .raft_id = herald_raft_digest (text)
        };
        char *path = tu_path (node->dir, "store");
        herald_store_options_t options = { .durability = HERALD_DURABILITY_ASYNC };
        herald_error_t err = { 0 };
        cr_assert_eq (mkdir (node->dir, 0755), 0);
        node->store = herald_store_open (path, &options, &err);
        cr_assert_not_null (node->store, "%s", err.message);
        free (path);
    }
}

static inline void
s_teardown (void)
{
    for (int i = 0; i < NODES; i++) {
        herald_raft_destroy (&s_nodes [i].raft);
        herald_store_destroy (&s_nodes [i].store);
        free (s_nodes [i].dir);
    }
    tu_tmpdir_destroy (&s_root);
}


static inline void
s_start (int i, bool bootstrap)
{
    s_node_t *node = &s_nodes [i];
    char *dir = tu_path (node->dir, "raft");
    herald_raft_options_t options = {
        .node = node->name, .self_id = s_peers [i].raft_id, .dir = dir,
        .peers = s_peers, .peer_count = NODES, .bootstrap = bootstrap,
        .election_ms = 1000, .heartbeat_ms = 100
    };
    herald_error_t err = { 0 };
    node->raft = herald_raft_new (&options, node->store, &err);
    cr_assert_not_null (node->raft, "%s: %s", node->name, err.message);
    free (dir);
}

//  Take every waiting record of every running node.
static inline void
s_drain (void)
{
    for (int i = 0; i < NODES; i++) {
        s_node_t *node = &s_nodes [i];
        if (!node->raft || node->paused)
            continue;
        herald_applied_t *record;
        while ((record = herald_raft_take (node->raft))) {
            node->records++;
            if (record->cookie) {
                node->own_records++;
                node->last_cookie = record->cookie;
                node->last_rc = record->rc;
            }
            else
            if (record->batches)
                node->follower_record_had_batches = true;
            if (record->raft_index)
                node->last_raft_index = record->raft_index;
            herald_raft_release (node->raft, &record);
        }
    }
}

static inline herald_raft_role_t
s_role (int i)
{
    herald_raft_state_t state;
    herald_raft_state (s_nodes [i].raft, &state);
    return state.role;
}

//  The one node that says LEADER and is not except, waited for up to
//  timeout_ms; -1 if none.
static inline int
s_wait_leader_but (int except, int64_t timeout_ms)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    while (zclock_mono () < deadline) {
        s_drain ();
        int leader = -1, leaders = 0;
        for (int i = 0; i < NODES; i++)
            if (s_nodes [i].raft && s_role (i) == HERALD_RAFT_LEADER) {
                leader = i;
                leaders++;
            }
        if (leaders == 1 && leader != except)
            return leader;
        zclock_sleep (20);
    }
    return -1;
}

static inline int
s_wait_leader (int64_t timeout_ms)
{
    return s_wait_leader_but (-1, timeout_ms);
}

//  Wait until every running node's store has head and the leader's own
//  records reached own; false on timeout.
static inline bool
s_wait_head (uint64_t head, int64_t timeout_ms)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    while (zclock_mono () < deadline) {
        s_drain ();
        bool all = true;
        for (int i = 0; i < NODES; i++) {
            if (s_nodes [i].raft && s_role (i) == HERALD_RAFT_STOPPED) {
                cr_log_error ("%s stopped", s_nodes [i].name);
                return false;           //  it never will
            }
            if (s_nodes [i].raft && herald_store_head (s_nodes [i].store) < head)
                all = false;
        }
        if (all)
            return true;
        zclock_sleep (10);
    }
    return false;
}

//  Wait until node i took at least count records.
static inline bool
s_wait_records (int i, size_t count, int64_t timeout_ms)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    while (zclock_mono () < deadline) {
        s_drain ();
        if (s_nodes [i].records >= count)
            return true;
        zclock_sleep (10);
    }
    return false;
}

static inline bool
s_wait_own (int i, size_t own, int64_t timeout_ms)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    while (zclock_mono () < deadline) {
        s_drain ();
        if (s_nodes [i].own_records >= own)
            return true;
        zclock_sleep (10);
    }
    return false;
}

//  The two stores hold the same log: the same envelopes, byte for byte,
//  and the same digest.
static inline void
s_assert_same_log (int a, int b)
{
    herald_store_t *x = s_nodes [a].store, *y = s_nodes [b].store;
    cr_assert_eq (herald_store_head (x), herald_store_head (y));
    cr_assert_eq (herald_store_digest (x), herald_store_digest (y),
                  "%s and %s differ in digest", s_nodes [a].name, s_nodes [b].name);
    herald_scan_spec_t spec = { .from = 1 };
    herald_error_t err = { 0 };
    herald_scan_t *sx = herald_store_scan (x, &spec, &err);
    herald_scan_t *sy = herald_store_scan (y, &spec, &err);
    cr_assert (sx && sy);
    size_t count = 0;
    while (true) {
        const uint8_t *ex, *ey;
        size_t lx, ly;
        uint64_t qx, qy;
        int rx = herald_scan_next (sx, &ex, &lx, &qx);
        int ry = herald_scan_next (sy, &ey, &ly, &qy);
        cr_assert_eq (rx, ry);
        if (rx != 1)
            break;
        cr_assert_eq (qx, qy);
        cr_assert_eq (lx, ly, "seq %" PRIu64 ": envelopes differ in size", qx);
        cr_assert_arr_eq (ex, ey, lx, "seq %" PRIu64 ": envelopes differ", qx);
        count++;
    }
    cr_assert_eq (count, herald_store_head (x));
    herald_scan_destroy (&sx);
    herald_scan_destroy (&sy);
}

static inline void
s_batch (herald_batch_t *batch, herald_event_t *events, size_t count,
         herald_append_result_t *results)
{
    memset (batch, 0, sizeof (*batch));
    batch->events = events;
    batch->count = count;
    batch->results = results;
}


//  ---------------------------------------------------------------------
//  Snapshots.  A node's REPLAY is heraldd's (the cluster node is built
//  on another branch); here a small server answers REPLAY from a node's
//  store on its api endpoint, as HWP/1 says: EVENTS with the stored
//  envelopes, then END.

typedef struct {
    herald_store_t *store;
    const char *endpoint;
    int replays;                    //  REPLAYs served (read after the actor ends)
} s_server_t;

static inline void
s_pack_uint (msgpack_packer *pk, const char *key, uint64_t value)
{
    msgpack_pack_str_with_body (pk, key, strlen (key));
    msgpack_pack_uint64 (pk, value);
}

static inline void
s_replay_actor (zsock_t *pipe, void *args)
{
    s_server_t *server = (s_server_t *) args;
    zsock_t *router = zsock_new_router (server->endpoint);
    zsock_signal (pipe, router? 0: 1);
    zpoller_t *poller = zpoller_new (pipe, router, NULL);
    while (router) {
        void *which = zpoller_wait (poller, 1000);
        if (which == pipe || zpoller_terminated (poller))
            break;
        if (which != router)
            continue;
        zmsg_t *msg = zmsg_recv (router);
        zframe_t *identity = zmsg_pop (msg);
        char *command = zmsg_popstr (msg);
        zframe_t *body = zmsg_pop (msg);
        if (command && streq (command, "REPLAY") && body) {
            msgpack_zone zone;
            msgpack_zone_init (&zone, 1024);
            herald_msg_t request;
            herald_error_t err;
            if (herald_msg_decode (&request, HERALD_MSG_REPLAY, zframe_data (body),
                                   zframe_size (body), NULL, &zone, &err) == HERALD_OK) {
                server->replays++;
                herald_scan_spec_t spec = { .from = request.replay.from,
                                            .has_to = request.replay.has_to,
                                            .to = request.replay.to };
                herald_scan_t *scan = herald_store_scan (server->store, &spec, &err);
                msgpack_sbuffer buffer;
                msgpack_sbuffer_init (&buffer);
                msgpack_packer pk;
                msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
                msgpack_pack_map (&pk, 1);
                s_pack_uint (&pk, "rid", request.rid);
                zmsg_t *events = zmsg_new ();
                zmsg_append (events, &(zframe_t *) { zframe_dup (identity) });
                zmsg_addstr (events, "EVENTS");
                zmsg_addmem (events, buffer.data, buffer.size);
                const uint8_t *envelope;
                size_t len;
                uint64_t seq;
                while (scan && herald_scan_next (scan, &envelope, &len, &seq) == 1)
                    zmsg_addmem (events, envelope, len);
                uint64_t last = scan? herald_scan_last (scan): 0;
                herald_scan_destroy (&scan);
                zmsg_send (&events, router);
                msgpack_sbuffer_clear (&buffer);
                msgpack_pack_map (&pk, 4);
                s_pack_uint (&pk, "rid", request.rid);
                s_pack_uint (&pk, "last", last);
                s_pack_uint (&pk, "head", herald_store_head (server->store));
                msgpack_pack_str_with_body (&pk, "reason", 6);
                msgpack_pack_str_with_body (&pk, "done", 4);
                zmsg_t *end = zmsg_new ();
                zmsg_append (end, &(zframe_t *) { zframe_dup (identity) });
                zmsg_addstr (end, "END");
                zmsg_addmem (end, buffer.data, buffer.size);
                zmsg_send (&end, router);
                msgpack_sbuffer_destroy (&buffer);
            }
            msgpack_zone_destroy (&zone);
        }
        zstr_free (&command);
        zframe_destroy (&identity);
        zframe_destroy (&body);
        zmsg_destroy (&msg);
    }
    zpoller_destroy (&poller);
    zsock_destroy (&router);
}

#endif
