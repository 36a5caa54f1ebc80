/*  =========================================================================
    test_herald_raft - three cluster nodes in one process (issue 13)

    Three herald_raft instances, each on its own real store in a temporary
    directory, talk libraft over real TCP on ports chosen at run time.
    They elect a leader; a proposal on it is applied by every node, whose
    stores then hold the same log byte for byte (and the same digest); the
    leader's record carries the proposal's cookie and results, a
    follower's none; a follower refuses to propose; a group commit bigger
    than an entry is cut into several; the leader's loss leaves the two
    others electing and going on; a node restarted on its directory
    catches up; a leader cut off from the others (through the test hook
    HERALD_TEST_RAFT_CONNECT and a TCP proxy per node) answers its
    proposal not_leader, and the log stays one.  Everything waits by
    polling with a deadline.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>

#include "herald_raft.h"
#include "herald_catchup.h"
#include "brokerutil.h"
#include "tcpproxy.h"
#include "testutil.h"
#include "raftnodes.h"

TestSuite (herald_raft, .init = s_setup, .fini = s_teardown, .timeout = 120);

Test (herald_raft, three_nodes_elect_and_replicate_one_log)
{
    for (int i = 0; i < NODES; i++)
        s_start (i, true);
    int leader = s_wait_leader (ELECT_MS);
    cr_assert_geq (leader, 0, "no single leader within %d ms", ELECT_MS);
    herald_raft_state_t state;
    herald_raft_state (s_nodes [leader].raft, &state);
    cr_assert_eq (state.voters, 3);
    cr_assert_str_eq (state.leader, s_nodes [leader].name);
    cr_assert_str_eq (state.leader_api, s_api [leader]);
    cr_assert_geq (state.term, 1);
    cr_assert_eq (state.raft_id, s_peers [leader].raft_id);
    cr_assert_geq (state.last_index, 2, "the configuration and the barrier");
    cr_assert_eq (state.commit_index, state.last_index);

    //  Two requests in one proposal: the second depends on the first
    herald_event_t first [2] = { tu_event ("orders/1", "a"), tu_event ("orders/1", "b") };
    herald_event_t second [1] = { tu_event ("orders/1", "c") };
    second [0].has_expect = true;
    second [0].expect = 2;
    herald_append_result_t r1 [2], r2 [1];
    herald_batch_t batches [2];
    s_batch (&batches [0], first, 2, r1);
    s_batch (&batches [1], second, 1, r2);
    int cookie;
    uint64_t ts = herald_store_now (s_nodes [leader].store);
    cr_assert_eq (herald_raft_propose (s_nodes [leader].raft, batches, 2, ts, &cookie),
                  HERALD_OK);
    cr_assert (s_wait_own (leader, 1, 10000), "the leader's record never came");
    cr_assert_eq (s_nodes [leader].last_cookie, &cookie);
    cr_assert_eq (s_nodes [leader].last_rc, HERALD_OK);
    cr_assert_eq (batches [0].status, HERALD_OK);
    cr_assert_eq (batches [1].status, HERALD_OK);
    cr_assert_eq (r1 [0].seq, 1);
    cr_assert_eq (r1 [1].seq, 2);
    cr_assert_eq (r2 [0].seq, 3);
    cr_assert_eq (r2 [0].ver, 3);
    cr_assert (s_wait_head (3, 10000), "the followers did not apply");

    //  Followers applied the same entry: records without cookie or batches
    for (int i = 0; i < NODES; i++) {
        if (i == leader)
            continue;
        //  (the store has the events a moment before the record is out)
        cr_assert (s_wait_records (i, 1, 10000), "no record on %s", s_nodes [i].name);
        cr_assert_eq (s_nodes [i].own_records, 0);
        cr_assert (!s_nodes [i].follower_record_had_batches);
        cr_assert_eq (s_role (i), HERALD_RAFT_FOLLOWER);
        //  and cannot propose
        cr_assert_eq (herald_raft_propose (s_nodes [i].raft, batches, 2, ts, &cookie),
                      HERALD_ERR_NOT_LEADER);
    }
    for (int i = 1; i < NODES; i++)
        s_assert_same_log (0, i);
    herald_raft_state (s_nodes [leader].raft, &state);
    cr_assert_gt (state.apply_us_max, 0);
    cr_assert_eq (state.applied_index, state.commit_index);
    cr_assert_eq (herald_store_applied_index (s_nodes [leader].store), state.last_index,
                  "the store holds the index of the last entry it applied");

    //  The same ids again: duplicates everywhere, nothing new
    herald_append_result_t again [2];
    s_batch (&batches [0], first, 2, again);
    cr_assert_eq (herald_raft_propose (s_nodes [leader].raft, batches, 1,
                                       herald_store_now (s_nodes [leader].store), &cookie),
                  HERALD_OK);
    cr_assert (s_wait_own (leader, 2, 10000));
    cr_assert (again [0].dup && again [1].dup);
    cr_assert_eq (again [1].seq, 2);
    for (int i = 0; i < NODES; i++)
        cr_assert_eq (herald_store_head (s_nodes [i].store), 3);
}

Test (herald_raft, a_group_commit_bigger_than_an_entry_is_cut_into_several)
{
    for (int i = 0; i < NODES; i++)
        s_start (i, true);
    int leader = s_wait_leader (ELECT_MS);
    cr_assert_geq (leader, 0);
    //  Three requests of 600 KiB: no two fit one 1 MiB entry
    size_t size = 600 * 1024;
    char *data = malloc (size + 1);
    memset (data, 'x', size);
    data [size] = 0;
    herald_event_t events [3];
    herald_append_result_t results [3];
    herald_batch_t batches [3];
    for (int i = 0; i < 3; i++) {
        events [i] = tu_event_n ("big", 3, data, size);
        s_batch (&batches [i], &events [i], 1, &results [i]);
    }
    int cookie;
    size_t before = s_nodes [leader].records;
    cr_assert_eq (herald_raft_propose (s_nodes [leader].raft, batches, 3,
                                       herald_store_now (s_nodes [leader].store), &cookie),
                  HERALD_OK);
    cr_assert (s_wait_own (leader, 1, 20000));
    cr_assert_eq (s_nodes [leader].last_rc, HERALD_OK);
    cr_assert_eq (s_nodes [leader].records - before, 3, "one record per entry");
    for (int i = 0; i < 3; i++)
        cr_assert_eq (results [i].seq, (uint64_t) i + 1);
    cr_assert (s_wait_head (3, 20000));
    for (int i = 1; i < NODES; i++)
        s_assert_same_log (0, i);
    free (data);
}

Test (herald_raft, the_others_go_on_without_the_leader_and_it_catches_up_on_restart)
{
    for (int i = 0; i < NODES; i++)
        s_start (i, true);
    int leader = s_wait_leader (ELECT_MS);
    cr_assert_geq (leader, 0);
    herald_event_t one [1] = { tu_event ("t", "1") };
    herald_append_result_t r1 [1];
    herald_batch_t batch;
    s_batch (&batch, one, 1, r1);
    int cookie;
    cr_assert_eq (herald_raft_propose (s_nodes [leader].raft, &batch, 1,
                                       herald_store_now (s_nodes [leader].store), &cookie),
                  HERALD_OK);
    cr_assert (s_wait_own (leader, 1, 10000));
    cr_assert (s_wait_head (1, 10000));

    //  The leader stops (handing over first); the other two go on
    int64_t stopped = zclock_mono ();
    herald_raft_destroy (&s_nodes [leader].raft);
    int next = s_wait_leader (ELECT_MS);
    cr_assert_geq (next, 0, "no new leader");
    cr_assert_neq (next, leader);
    cr_log_info ("new leader after %" PRId64 " ms", zclock_mono () - stopped);
    herald_event_t two [1] = { tu_event ("t", "2") };
    herald_append_result_t r2 [1];
    s_batch (&batch, two, 1, r2);
    size_t own = s_nodes [next].own_records;
    cr_assert_eq (herald_raft_propose (s_nodes [next].raft, &batch, 1,
                                       herald_store_now (s_nodes [next].store), &cookie),
                  HERALD_OK);
    cr_assert (s_wait_own (next, own + 1, 10000));
    cr_assert_eq (s_nodes [next].last_rc, HERALD_OK);
    cr_assert_eq (r2 [0].seq, 2);
    cr_assert_eq (r2 [0].ver, 2);

    //  The old leader restarts on its directory and catches up
    s_start (leader, false);
    cr_assert (s_wait_head (2, 20000), "the restarted node did not catch up");
    for (int i = 0; i < NODES; i++)
        if (i != next)
            s_assert_same_log (next, i);
    herald_raft_state_t state;
    herald_raft_state (s_nodes [leader].raft, &state);
    cr_assert_neq (state.role, HERALD_RAFT_STOPPED);
    cr_assert_neq (state.role, HERALD_RAFT_JOINING);
}

//  The leader is cut off: nothing reaches it (every node's connections to
//  it go through its proxy, by the test hook), so it hears no answer to
//  its AppendEntries and steps down after an election timeout.  Its
//  proposal in flight comes back not_leader (outcome unknown: the others
//  may have the entry and commit it); the others elect and go on; healed,
//  it rejoins and every store holds the same log.
Test (herald_raft, a_leader_cut_off_answers_not_leader_and_the_log_stays_one)
{
    tcpproxy_t *proxies [NODES];
    char spec [512] = "";
    int ports [NODES];                  //  the nodes' own: no proxy may take one
    for (int i = 0; i < NODES; i++)
        ports [i] = atoi (strrchr (s_raft_addr [i], ':') + 1);
    for (int i = 0; i < NODES; i++) {
        int port = ports [i];
        proxies [i] = tcpproxy_new_avoiding (port, ports, NODES);
        cr_assert_not_null (proxies [i]);
        char item [64];
        snprintf (item, sizeof (item), "%s%" PRIu64 "=127.0.0.1:%d", i? ",": "",
                  s_peers [i].raft_id, tcpproxy_port (proxies [i]));
        strcat (spec, item);
    }
    setenv ("HERALD_TEST_HOOKS", "1", 1);
    setenv ("HERALD_TEST_RAFT_CONNECT", spec, 1);
    for (int i = 0; i < NODES; i++)
        s_start (i, true);
    int leader = s_wait_leader (ELECT_MS);
    cr_assert_geq (leader, 0);
    herald_event_t one [1] = { tu_event ("t", "1") };
    herald_append_result_t r1 [1];
    herald_batch_t batch;
    s_batch (&batch, one, 1, r1);
    int cookie;
    cr_assert_eq (herald_raft_propose (s_nodes [leader].raft, &batch, 1,
                                       herald_store_now (s_nodes [leader].store), &cookie),
                  HERALD_OK);
    cr_assert (s_wait_own (leader, 1, 10000), "no record through the proxies");
    cr_assert_eq (s_nodes [leader].last_rc, HERALD_OK);

    tcpproxy_cut (proxies [leader], true);
    herald_event_t two [1] = { tu_event ("t", "2") };
    herald_append_result_t r2 [1];
    s_batch (&batch, two, 1, r2);
    int lost;
    herald_err rc = herald_raft_propose (s_nodes [leader].raft, &batch, 1,
                                         herald_store_now (s_nodes [leader].store), &lost);
    if (rc == HERALD_OK) {
        cr_assert (s_wait_own (leader, 2, 15000), "the cut-off leader never answered");
        cr_assert_eq (s_nodes [leader].last_cookie, &lost);
        cr_assert_eq (s_nodes [leader].last_rc, HERALD_ERR_NOT_LEADER);
    }
    else
        cr_assert_eq (rc, HERALD_ERR_NOT_LEADER);
    cr_assert_neq (s_role (leader), HERALD_RAFT_LEADER, "not_leader, yet STATUS says leader");
    int next = s_wait_leader_but (leader, ELECT_MS);
    cr_assert_geq (next, 0, "the others did not elect a leader");
    herald_event_t three [1] = { tu_event ("t", "3") };
    herald_append_result_t r3 [1];
    s_batch (&batch, three, 1, r3);
    size_t own = s_nodes [next].own_records;
    cr_assert_eq (herald_raft_propose (s_nodes [next].raft, &batch, 1,
                                       herald_store_now (s_nodes [next].store), &cookie),
                  HERALD_OK);
    cr_assert (s_wait_own (next, own + 1, 10000));
    cr_assert_eq (s_nodes [next].last_rc, HERALD_OK);

    tcpproxy_cut (proxies [leader], false);
    uint64_t head = herald_store_head (s_nodes [next].store);
    cr_assert (head == 2 || head == 3, "head %" PRIu64, head);
    cr_assert (s_wait_head (head, 20000), "the healed node did not catch up");
    for (int i = 0; i < NODES; i++)
        if (i != next)
            s_assert_same_log (next, i);
    cr_assert_eq (s_role (leader), HERALD_RAFT_FOLLOWER);
    for (int i = 0; i < NODES; i++)
        herald_raft_destroy (&s_nodes [i].raft);
    for (int i = 0; i < NODES; i++)
        tcpproxy_destroy (&proxies [i]);
}

//  A node with an empty raft directory that is not asked to bootstrap is
//  no member: it waits to be added, and says so.  A second bootstrap of
//  a directory, and a raft address in use, are refused with a reason.
Test (herald_raft, a_pristine_node_waits_and_bad_starts_are_refused)
{
    s_start (0, false);
    herald_raft_state_t state;
    herald_raft_state (s_nodes [0].raft, &state);
    cr_assert_eq (state.role, HERALD_RAFT_JOINING);
    cr_assert_eq (state.voters, 0);
    herald_batch_t batch = { 0 };
    cr_assert_eq (herald_raft_propose (s_nodes [0].raft, &batch, 1, 1, &batch),
                  HERALD_ERR_NOT_LEADER);
    herald_raft_destroy (&s_nodes [0].raft);

    s_start (1, true);
    herald_raft_destroy (&s_nodes [1].raft);
    char *dir = tu_path (s_nodes [1].dir, "raft");
    herald_raft_options_t options = {
        .node = s_nodes [1].name, .self_id = s_peers [1].raft_id, .dir = dir,
        .peers = s_peers, .peer_count = NODES, .bootstrap = true,
        .election_ms = 1000, .heartbeat_ms = 100
    };
    herald_error_t err = { 0 };
    cr_assert_null (herald_raft_new (&options, s_nodes [1].store, &err));
    cr_assert (strstr (err.message, "bootstrap"), "%s", err.message);

    //  Node 2's raft address taken by someone else
    zsock_t *squatter = zsock_new (ZMQ_STREAM);
    char endpoint [64];
    snprintf (endpoint, sizeof (endpoint), "tcp://%s", s_raft_addr [2]);
    cr_assert_neq (zsock_bind (squatter, "%s", endpoint), -1);
    free (dir);
    dir = tu_path (s_nodes [2].dir, "raft");
    options.node = s_nodes [2].name;
    options.self_id = s_peers [2].raft_id;
    options.dir = dir;
    memset (&err, 0, sizeof (err));
    cr_assert_null (herald_raft_new (&options, s_nodes [2].store, &err));
    cr_assert_neq (err.message [0], 0);
    cr_log_info ("address in use: %s", err.message);
    zsock_destroy (&squatter);
    //  and bad options
    options.election_ms = 50;
    cr_assert_null (herald_raft_new (&options, s_nodes [2].store, &err));
    cr_assert_eq (err.code, HERALD_ERR_INVALID);
    free (dir);
}

//  A node whose broker takes no records stops applying at 64 records out
//  (its raft thread waits), and goes on once they are released; the other
//  two commit meanwhile.
Test (herald_raft, records_not_taken_hold_the_apply_at_the_bound)
{
    for (int i = 0; i < NODES; i++)
        s_start (i, true);
    int leader = s_wait_leader (ELECT_MS);
    cr_assert_geq (leader, 0);
    int slow = (leader + 1) % NODES, other = (leader + 2) % NODES;
    s_nodes [slow].paused = true;
    static herald_event_t events [80];
    static herald_append_result_t results [80];
    for (int i = 0; i < 80; i++) {
        events [i] = tu_event ("bound", "x");
        herald_batch_t batch;
        s_batch (&batch, &events [i], 1, &results [i]);
        int cookie;
        size_t own = s_nodes [leader].own_records;
        cr_assert_eq (herald_raft_propose (s_nodes [leader].raft, &batch, 1,
                                           herald_store_now (s_nodes [leader].store), &cookie),
                      HERALD_OK);
        cr_assert (s_wait_own (leader, own + 1, 10000), "entry %d not committed", i);
    }
    int64_t deadline = zclock_mono () + 10000;
    while (herald_store_head (s_nodes [other].store) < 80 && zclock_mono () < deadline)
        zclock_sleep (10);
    cr_assert_eq (herald_store_head (s_nodes [other].store), 80);
    //  The slow node holds 64 records out and has written at most the
    //  entry whose record waits
    deadline = zclock_mono () + 5000;
    while (herald_store_head (s_nodes [slow].store) < 64 && zclock_mono () < deadline)
        zclock_sleep (10);
    zclock_sleep (200);                 //  a moment more in which it must not move
    uint64_t held = herald_store_head (s_nodes [slow].store);
    cr_assert (held == 64 || held == 65, "the slow node applied %" PRIu64, held);
    s_nodes [slow].paused = false;
    cr_assert (s_wait_head (80, 10000), "the slow node did not go on");
    cr_assert_eq (s_nodes [slow].records, 80);
    s_assert_same_log (leader, slow);
}

//  A damaged raft segment is not repaired by cutting the log (libraft's
//  auto-recovery is off): the node refuses to start, saying why.
Test (herald_raft, a_damaged_raft_segment_stops_the_start)
{
    for (int i = 0; i < NODES; i++)
        s_start (i, true);
    int leader = s_wait_leader (ELECT_MS);
    cr_assert_geq (leader, 0);
    herald_event_t one [1] = { tu_event ("t", "some data to damage") };
    herald_append_result_t r1 [1];
    herald_batch_t batch;
    s_batch (&batch, one, 1, r1);
    int cookie;
    cr_assert_eq (herald_raft_propose (s_nodes [leader].raft, &batch, 1,
                                       herald_store_now (s_nodes [leader].store), &cookie),
                  HERALD_OK);
    cr_assert (s_wait_head (1, 10000));
    int victim = (leader + 1) % NODES;
    herald_raft_destroy (&s_nodes [victim].raft);
    //  Its closed segments (START-END): flip a byte of the entry data
    char *dir = tu_path (s_nodes [victim].dir, "raft");
    DIR *listing = opendir (dir);
    cr_assert_not_null (listing);
    struct dirent *item;
    int damaged = 0;
    while ((item = readdir (listing))) {
        unsigned long long first, last;
        char tail;
        if (sscanf (item->d_name, "%llu-%llu%c", &first, &last, &tail) != 2 || last < 3)
            continue;
        char *path = tu_path (dir, item->d_name);
        FILE *file = fopen (path, "r+b");
        cr_assert_not_null (file);
        fseek (file, 0, SEEK_END);
        long size = ftell (file);
        //  The event's data sits near the end of the last entry
        char buffer [4096];
        long at = size > (long) sizeof (buffer)? size - (long) sizeof (buffer): 0;
        fseek (file, at, SEEK_SET);
        size_t got = fread (buffer, 1, sizeof (buffer), file);
        char *found = memmem (buffer, got, "some data", 9);
        cr_assert_not_null (found, "the entry's data is not in %s", path);
        fseek (file, at + (found - buffer), SEEK_SET);
        fputc ('S', file);
        fclose (file);
        free (path);
        damaged++;
    }
    closedir (listing);
    cr_assert_eq (damaged, 1, "one closed segment holds the entry");
    herald_raft_options_t options = {
        .node = s_nodes [victim].name, .self_id = s_peers [victim].raft_id, .dir = dir,
        .peers = s_peers, .peer_count = NODES, .election_ms = 1000, .heartbeat_ms = 100
    };
    herald_error_t err = { 0 };
    s_nodes [victim].raft = herald_raft_new (&options, s_nodes [victim].store, &err);
    cr_assert_null (s_nodes [victim].raft, "a damaged log was accepted");
    cr_log_info ("refused: %s", err.message);
    cr_assert_neq (err.message [0], 0);
    free (dir);
}

//  A follower away while the leader's log moves past a snapshot (one
//  every 4 entries here, by the test hook) gets InstallSnapshot on its
//  return: its store is behind the manifest, so it copies the missing
//  events from a peer over REPLAY, checks the digest, and applies the
//  log from there.  The events it copied come out as fan-out records.
Test (herald_raft, a_node_behind_a_snapshot_catches_up_over_replay)
{
    setenv ("HERALD_TEST_HOOKS", "1", 1);
    setenv ("HERALD_TEST_RAFT_SNAPSHOT", "4", 1);
    s_server_t servers [NODES];
    zactor_t *actors [NODES];
    for (int i = 0; i < NODES; i++) {
        servers [i] = (s_server_t) { .store = s_nodes [i].store, .endpoint = s_api [i] };
        actors [i] = zactor_new (s_replay_actor, &servers [i]);
        cr_assert_not_null (actors [i]);
    }
    for (int i = 0; i < NODES; i++)
        s_start (i, true);
    int leader = s_wait_leader (ELECT_MS);
    cr_assert_geq (leader, 0);
    int away = (leader + 1) % NODES;
    herald_raft_destroy (&s_nodes [away].raft);
    //  Twenty entries, one at a time: the leader's log is compacted
    static herald_event_t events [20];
    static herald_append_result_t results [20];
    static char data [20][8];
    for (int i = 0; i < 20; i++) {
        snprintf (data [i], sizeof (data [i]), "%d", i);
        events [i] = tu_event ("snap", data [i]);
        herald_batch_t batch;
        s_batch (&batch, &events [i], 1, &results [i]);
        int cookie;
        size_t own = s_nodes [leader].own_records;
        cr_assert_eq (herald_raft_propose (s_nodes [leader].raft, &batch, 1,
                                           herald_store_now (s_nodes [leader].store), &cookie),
                      HERALD_OK);
        cr_assert (s_wait_own (leader, own + 1, 10000));
        cr_assert_eq (s_nodes [leader].last_rc, HERALD_OK);
    }
    uint64_t head = herald_store_head (s_nodes [leader].store);
    cr_assert_eq (head, 20);
    cr_assert_eq (herald_store_head (s_nodes [away].store), 0);
    s_nodes [away].records = 0;
    s_start (away, false);
    cr_assert (s_wait_head (head, 20000), "the node away did not catch up");
    for (int i = 0; i < NODES; i++)
        if (i != leader)
            s_assert_same_log (leader, i);
    //  It got there over REPLAY (the log it missed is gone), and every
    //  event it copied came out in a record
    int replays = 0;
    for (int i = 0; i < NODES; i++) {
        zactor_destroy (&actors [i]);
        replays += servers [i].replays;
    }
    cr_assert_geq (replays, 1, "no REPLAY was asked: the snapshot path was not taken");
    //  Never of itself: its own api is behind, and at a start nobody
    //  serves it yet (each such try waited out the idle limit)
    cr_assert_eq (servers [away].replays, 0, "the node asked its own api to catch up");
    cr_assert (s_wait_records (away, 1, 5000));
    herald_raft_state_t state;
    herald_raft_state (s_nodes [away].raft, &state);
    cr_assert_neq (state.role, HERALD_RAFT_STOPPED);
}

//  A catch-up source whose port refuses the connection (a member that is
//  down) is given up at once, not after the idle limit: a restore that
//  tries every member listed, at a node's start, before it serves, must
//  not sit out five seconds per member that is down.
Test (herald_raft, a_catch_up_from_a_port_nothing_listens_on_gives_up_at_once)
{
    char dead [48];
    snprintf (dead, sizeof (dead), "tcp://127.0.0.1:%d", s_distinct_port ());
    herald_error_t err = { 0 };
    herald_err rc = herald_catchup_run (s_nodes [0].store, dead, 10, NULL, NULL, &err);
    cr_assert_eq (rc, HERALD_ERR_UNAVAILABLE, "rc %d: %s", rc, err.message);
    cr_assert_not_null (strstr (err.message, "connection refused"), "%s", err.message);
    cr_assert_eq (herald_store_head (s_nodes [0].store), 0);
}
