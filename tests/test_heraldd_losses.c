/*  =========================================================================
    test_heraldd_losses - a clean stop leaves nothing only in the WAL; a
    lost WAL stops the broker until an operator accepts the loss; the
    accepted loss is announced in $hb, WELCOME, STATUS and END (issue 11)

    On the real heraldd.  The loss is accepted the way `herald repair
    --accept-loss` does it (herald_store_open with accept_loss, then
    herald_store_accept_loss); tests/test_heraldd_faults.sh runs the
    command itself.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "brokertest.h"
#include "herald_store.h"

TestSuite (heraldd_losses, .init = bt_setup, .fini = bt_teardown, .timeout = 90);

//  Cut every non-empty WAL file to keep of its bytes (the newest is the
//  one with events after a kill -9 here: the others are empty).
static void
s_wal_cut (const char *dir, double keep)
{
    DIR *handle = opendir (dir);
    cr_assert_not_null (handle);
    struct dirent *entry;
    while ((entry = readdir (handle))) {
        size_t len = strlen (entry->d_name);
        if (len < 5 || strcmp (entry->d_name + len - 4, ".log") != 0)
            continue;
        char path [4200];
        snprintf (path, sizeof (path), "%s/%s", dir, entry->d_name);
        struct stat info;
        cr_assert_eq (stat (path, &info), 0);
        if (info.st_size > 0)
            cr_assert_eq (truncate (path, (off_t) ((double) info.st_size * keep)), 0);
    }
    closedir (handle);
}

//  The head named by the data directory's HERALD-ACKED (0 when absent).
static uint64_t
s_acked_head (const char *dir)
{
    char path [4200];
    snprintf (path, sizeof (path), "%s/HERALD-ACKED", dir);
    FILE *file = fopen (path, "rb");
    if (!file)
        return 0;
    uint8_t record [24];
    size_t got = fread (record, 1, sizeof (record), file);
    fclose (file);
    if (got != sizeof (record))
        return 0;
    uint64_t head = 0;
    for (int index = 0; index < 8; index++)
        head = head << 8 | record [8 + index];
    return head;
}

//  What `herald repair --accept-loss` does to the store.
static void
s_accept_loss (const char *dir, const char *reason)
{
    herald_store_options_t options = { .accept_loss = true };
    herald_error_t err;
    herald_store_t *store = herald_store_open (dir, &options, &err);
    cr_assert_not_null (store, "open for repair: %s", err.message);
    cr_assert_eq (herald_store_accept_loss (store, reason, &err), HERALD_OK, "%s", err.message);
    cr_assert_eq (herald_store_stop (store, &err), HERALD_OK, "%s", err.message);
    herald_store_destroy (&store);
}

Test (heraldd_losses, a_clean_stop_leaves_nothing_only_in_the_wal)
{
    bt_start ();
    zsock_t *client = bt_client ();
    bt_publish_twenty (client, NULL);
    bt_drop (&client);
    bt_stop_clean ();
    cr_assert_eq (tu_wal_bytes (bt_broker->data_dir, true), 0,
                  "after SIGTERM the WAL still holds events");
    cr_assert_eq (bu_broker_restart (bt_broker, BT_START_MS), 0, "no restart without the WAL");
    client = bt_client ();
    cr_assert_eq (bt_head (client), 20, "events were only in the WAL");
}

Test (heraldd_losses, a_wal_lost_after_kill9_stops_the_broker_until_the_loss_is_accepted)
{
    bt_start ();
    zsock_t *client = bt_client ();
    bt_publish_twenty (client, NULL);
    bt_drop (&client);
    bu_broker_kill (bt_broker);
    cr_assert_gt (tu_wal_bytes (bt_broker->data_dir, true), 0, "kill -9 left no WAL");

    //  Refused, naming the damage, and again on the next start (latched)
    for (int start = 0; start < 2; start++) {
        cr_assert_eq (bu_broker_restart (bt_broker, 2000), -1,
                      "start %d served a log without its WAL", start + 1);
        char log [4096];
        bu_broker_log_tail (bt_broker, log, sizeof (log));
        cr_assert (strstr (log, "write-ahead log deleted after an unclean stop"), "log: %s", log);
        cr_assert (strstr (log, "herald repair"), "log: %s", log);
    }
    s_accept_loss (bt_broker->data_dir, "test: WAL deleted");
    cr_assert_eq (bu_broker_restart (bt_broker, BT_START_MS), 0, "no start after the repair");
    client = bt_client ();
    bu_reply_t reply;
    bt_status (client, 7, &reply);
    cr_assert_eq (reply.body.status.lineage, 1);
    cr_assert_eq (reply.body.status.loss_count, 1);
    uint64_t kept = reply.body.status.losses [0].lost_after;
    cr_assert_eq (kept, reply.body.status.head);
    cr_assert_lt (kept, 20);
    bu_reply_fini (&reply);
}

//  A WAL cut short after a kill -9 looks like a write torn by the crash:
//  RocksDB keeps what is before the cut and says nothing.  The head the
//  broker recorded as acknowledged (HERALD-ACKED, once a second) tells.
Test (heraldd_losses, a_wal_cut_short_after_kill9_is_refused_naming_the_acknowledged_events)
{
    bt_start ();
    zsock_t *client = bt_client ();
    bt_publish_twenty (client, NULL);
    uint64_t deadline = tu_mono_ns () + 10ULL * 1000000000ULL;
    while (s_acked_head (bt_broker->data_dir) < 20) {
        cr_assert_lt (tu_mono_ns (), deadline, "HERALD-ACKED never named head 20");
        zclock_sleep (20);
    }
    bt_drop (&client);
    bu_broker_kill (bt_broker);
    cr_assert_gt (tu_wal_bytes (bt_broker->data_dir, false), 0, "kill -9 left no WAL");
    s_wal_cut (bt_broker->data_dir, 0.5);

    for (int start = 0; start < 2; start++) {
        cr_assert_eq (bu_broker_restart (bt_broker, 2000), -1,
                      "start %d served a log cut short as complete", start + 1);
        char log [4096];
        bu_broker_log_tail (bt_broker, log, sizeof (log));
        cr_assert (strstr (log, "but seq 20 had been acknowledged"), "log: %s", log);
    }
    s_accept_loss (bt_broker->data_dir, "test: WAL cut short");
    cr_assert_eq (bu_broker_restart (bt_broker, BT_START_MS), 0, "no start after the repair");
    client = bt_client ();
    bu_reply_t reply;
    bt_status (client, 7, &reply);
    cr_assert_eq (reply.body.status.lineage, 1);
    cr_assert_lt (reply.body.status.losses [0].lost_after, 20);
    bu_reply_fini (&reply);
}

Test (heraldd_losses, an_accepted_loss_is_announced_in_hb_welcome_status_and_end)
{
    bt_start ();
    zsock_t *client = bt_client ();
    bt_publish_twenty (client, NULL);
    bu_reply_t reply;
    bt_status (client, 1, &reply);
    cr_assert_eq (reply.body.status.lineage, 0, "a store that never lost anything");
    cr_assert_eq (reply.body.status.loss_count, 0);
    bu_reply_fini (&reply);
    bt_drop (&client);
    bt_stop_clean ();
    s_accept_loss (bt_broker->data_dir, "test: first");
    s_accept_loss (bt_broker->data_dir, "test: second");
    cr_assert_eq (bu_broker_restart (bt_broker, BT_START_MS), 0);

    client = bt_client ();
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    bu_pack_hello (&sbuf, 2, 1, "test");
    cr_assert_eq (bu_send (client, "HELLO", sbuf.data, sbuf.size), 0);
    msgpack_sbuffer_destroy (&sbuf);
    bt_recv (client, &reply);
    cr_assert_eq (reply.type, HERALD_MSG_WELCOME);
    cr_assert_eq (reply.body.welcome.lineage, 2);
    cr_assert_eq (reply.body.welcome.loss_count, 2);
    cr_assert_eq (reply.body.welcome.losses [0].lineage, 1);
    cr_assert_eq (reply.body.welcome.losses [1].lineage, 2);
    cr_assert_eq (reply.body.welcome.losses [1].lost_after, 20);
    cr_assert_geq (reply.body.welcome.losses [1].ts, reply.body.welcome.losses [0].ts);
    bu_reply_fini (&reply);

    bt_status (client, 3, &reply);
    cr_assert_eq (reply.body.status.lineage, 2);
    cr_assert_eq (reply.body.status.loss_count, 2);
    bu_reply_fini (&reply);

    bu_replay_t replay = { .has_from = true, .from = 1 };
    bt_send_replay (client, 4, &replay);
    bool ended = false;
    for (int index = 0; index < 100 && !ended; index++) {
        bt_recv (client, &reply);
        if (reply.type == HERALD_MSG_END) {
            ended = true;
            cr_assert_eq (reply.body.end.lineage, 2);
            cr_assert_eq (reply.body.end.last, 20);
        }
        else
            cr_assert_eq (reply.type, HERALD_MSG_EVENTS);
        bu_reply_fini (&reply);
    }
    cr_assert (ended, "no END");

    const char *prefixes [] = { "$hb", NULL };
    zsock_t *sub = bt_subscriber (prefixes);
    herald_msg_t hb;
    char node [128];
    bt_wait_heartbeat (sub, &hb, node, sizeof (node));
    cr_assert_eq (hb.heartbeat.lineage, 2);
}
