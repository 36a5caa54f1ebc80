/*  =========================================================================
    membertest - a cluster whose membership changes, for the criterion
    tests of herald cluster add/remove and of a backup seeding a node
    (see membertest.h)
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdarg.h>
#include <string.h>
#include <sys/wait.h>
#include "membertest.h"

bu_cluster_t *mt_cluster;
char mt_peer [MT_ALL][160];

static const char *mt_flags [] = { "--election-ms", "500", "--raft-heartbeat-ms", "50",
                                   "--heartbeat-ms", "200", "--idle-flush-ms", "0", NULL };

void
mt_fail_with_logs (const char *what)
{
    char text [12000] = "";
    size_t used = 0;
    for (size_t index = 0; mt_cluster && index < mt_cluster->count; index++) {
        char log [2500];
        bu_broker_log_tail (mt_cluster->nodes [index], log, sizeof log);
        used += (size_t) snprintf (text + used, used < sizeof text? sizeof text - used: 0,
                                   "--- %s:\n%s\n", mt_cluster->names [index], log);
    }
    cr_assert_fail ("%s\n%s", what, text);
}

//  Remove the pair "--peer SPEC" from node's flags.
void
mt_drop_peer (bu_broker_t *node, const char *spec)
{
    size_t count = 0;
    while (node->extra [count])
        count++;
    for (size_t index = 0; index + 1 < count; index++)
        if (streq (node->extra [index], "--peer") && streq (node->extra [index + 1], spec)) {
            free (node->extra [index]);
            free (node->extra [index + 1]);
            memmove (&node->extra [index], &node->extra [index + 2],
                     (count - index - 1) * sizeof (char *));
            node->extra [count - 1] = NULL;     //  moved: freed once, by destroy
            return;
        }
}

void
mt_add_flags (bu_broker_t *node, const char *flag, const char *value)
{
    size_t count = 0;
    while (node->extra [count])
        count++;
    cr_assert_lt (count + 2, BU_MAX_ARGS);
    node->extra [count] = strdup (flag);
    node->extra [count + 1] = strdup (value);
    node->extra [count + 2] = NULL;
}

//  Wait until node answers STATUS with cluster_state state.
bu_node_status_t
mt_wait_state (size_t index, const char *state)
{
    bu_node_status_t status;
    memset (&status, 0, sizeof status);
    uint64_t deadline = tu_mono_ns () + (uint64_t) MT_ELECT_MS * 1000000ULL;
    for (int rounds = 0; rounds < 10000 && tu_mono_ns () < deadline; rounds++) {
        if (bu_node_status (mt_cluster->nodes [index]->api, &status, 1000) == 0
        &&  streq (status.cluster_state, state) && status.raft_id)
            return status;
        zclock_sleep (50);
    }
    char what [128];
    snprintf (what, sizeof what, "%s is not %s", mt_cluster->names [index], state);
    mt_fail_with_logs (what);
    return status;
}

//  Wait until node index's Raft runs (a joining node first learns its
//  peers' raft ids, saying joining already; only then can it be added).
void
mt_wait_raft (size_t index)
{
    char want [64], log [20000];
    snprintf (want, sizeof want, "raft: node %s (raft id", mt_cluster->names [index]);
    uint64_t deadline = tu_mono_ns () + (uint64_t) MT_ELECT_MS * 1000000ULL;
    for (int rounds = 0; rounds < 10000 && tu_mono_ns () < deadline; rounds++) {
        bu_broker_log (mt_cluster->nodes [index], log, sizeof log);
        const char *line = strstr (log, want);
        while (line && !strstr (line, ") started, state in"))
            line = strstr (line + 1, want);
        if (line && strstr (line, ") started, state in"))
            return;
        zclock_sleep (50);
    }
    mt_fail_with_logs ("a joining node's Raft did not start");
}

//  Three members n1..n3 bootstrapped; n4 made (ports chosen, not
//  started) to join later with --cluster-state existing.
void
mt_cluster_up (void)
{
    mt_cluster = bu_cluster_new ("members", MT_ALL, mt_flags);
    cr_assert_not_null (mt_cluster, "cannot set up the nodes (is broker/heraldd built?)");
    for (size_t index = 0; index < MT_ALL; index++)
        snprintf (mt_peer [index], sizeof mt_peer [index], "%s,%s,%s,%s",
                  mt_cluster->names [index], mt_cluster->raft [index],
                  mt_cluster->nodes [index]->api, mt_cluster->nodes [index]->fanout);
    for (size_t index = 0; index < MT_MEMBERS; index++)
        mt_drop_peer (mt_cluster->nodes [index], mt_peer [MT_ALL - 1]);
    mt_add_flags (mt_cluster->nodes [MT_ALL - 1], "--cluster-state", "existing");
    mt_cluster->count = MT_MEMBERS;
    int rc = bu_cluster_start (mt_cluster, BT_START_MS);
    mt_cluster->count = MT_ALL;
    if (rc != 0)
        mt_fail_with_logs ("the three members did not start");
}

//  The leader as every running member agrees (joining or removed nodes
//  know no leader, and are left out); -1 after timeout_ms.
int
mt_leader_within (int timeout_ms)
{
    uint64_t deadline = tu_mono_ns () + (uint64_t) timeout_ms * 1000000ULL;
    for (int rounds = 0; rounds < 100000; rounds++) {
        bu_node_status_t status [MT_ALL];
        bool member [MT_ALL] = { false };
        int leader = -1;
        bool agreed = true;
        for (size_t index = 0; index < mt_cluster->count; index++) {
            if (mt_cluster->nodes [index]->pid <= 0)
                continue;
            member [index] = bu_node_status (mt_cluster->nodes [index]->api, &status [index],
                                             500) == 0
                          && streq (status [index].cluster_state, "member");
            if (member [index] && streq (status [index].role, "leader")) {
                if (leader >= 0)
                    agreed = false;
                leader = (int) index;
            }
        }
        for (size_t index = 0; leader >= 0 && index < mt_cluster->count; index++)
            if (member [index] && !streq (status [index].leader, mt_cluster->names [leader]))
                agreed = false;
        if (leader >= 0 && agreed)
            return leader;
        if (tu_mono_ns () >= deadline)
            break;
        zclock_sleep (50);
    }
    return -1;
}

int
mt_leader (void)
{
    int leader = mt_leader_within (MT_ELECT_MS);
    if (leader < 0)
        mt_fail_with_logs ("no leader that every member names");
    return leader;
}

//  "E1,E2,..." of the nodes in order, starting with first.
void
mt_endpoints (size_t first, char *out, size_t size)
{
    size_t used = 0;
    for (size_t step = 0; step < MT_MEMBERS; step++) {
        size_t index = (first + step) % MT_MEMBERS;
        used += (size_t) snprintf (out + used, size - used, "%s%s", used? ",": "",
                                   mt_cluster->nodes [index]->api);
    }
}

//  Run `herald ARGS`; its stdout and stderr into out; returns its exit
//  status (-1 when it did not exit).
int
mt_herald (char *out, size_t size, const char *format, ...)
{
    char *heraldd = bu_heraldd_path ();
    cr_assert_not_null (heraldd);
    char *slash = strrchr (heraldd, '/');
    *slash = 0;
    char command [4096];
    int used = snprintf (command, sizeof command, "'%s/../tools/herald' ", heraldd);
    free (heraldd);
    va_list args;
    va_start (args, format);
    vsnprintf (command + used, sizeof command - (size_t) used, format, args);
    va_end (args);
    strncat (command, " 2>&1", sizeof command - strlen (command) - 1);
    FILE *pipe = popen (command, "r");
    cr_assert_not_null (pipe);
    size_t got = fread (out, 1, size - 1, pipe);
    out [got] = 0;
    int status = pclose (pipe);
    return WIFEXITED (status)? WEXITSTATUS (status): -1;
}

//  A PUBLISH of count events on topic to node index; the reply, decoded.
void
mt_publish_once (size_t index, const char *topic, size_t count, uint64_t rid,
                 bu_reply_t *reply)
{
    zsock_t *client = bt_keep (bu_dealer_new (mt_cluster->nodes [index]->api));
    bu_event_t events [16];
    for (size_t event = 0; event < count; event++)
        bu_event_init (&events [event], topic, "member event");
    bt_send_publish (client, rid, events, count);
    bt_recv (client, reply);
    bt_drop (&client);
}

//  count batches of 5 to node index, each ACKed; the last seq.
uint64_t
mt_publish (size_t index, const char *topic, size_t count, uint64_t first_rid)
{
    uint64_t last = 0;
    for (size_t batch = 0; batch < count; batch++) {
        bu_reply_t reply;
        mt_publish_once (index, topic, 5, first_rid + batch, &reply);
        if (reply.type == HERALD_MSG_ERROR)
            cr_assert_fail ("PUBLISH to %s: ERROR %s: %.*s", mt_cluster->names [index],
                            herald_err_code (reply.body.error.code),
                            (int) reply.body.error.message.len, reply.body.error.message.ptr);
        bt_check_ack (&reply, first_rid + batch, 5);
        last = reply.body.ack.seq [4];
        bu_reply_fini (&reply);
    }
    return last;
}
