/*  =========================================================================
    test_heraldd_memory - what the broker holds for clients that do not read

    A client that opens REPLAYs with huge credit and never reads used to
    have every event of them queued in the broker (libzmq's pipe holds up
    to client-hwm messages, each a slice of events): 42 MiB per unread
    replay of a 200k-event log, kept after the client left.  With
    --client-max-bytes the broker holds at most that much of a client's
    stream frames; its streams wait, lose nothing, and go on when it reads;
    when it goes, its streams and bytes are freed.  These tests read the
    broker's STATUS counters (stream_bytes, client_bytes_max,
    stream_clients, streams_waiting_bytes), never its timing; the RSS it
    saves is measured by bench/unread_streams.py (docs/broker.md).
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "brokertest.h"

TestSuite (heraldd_memory, .init = bt_setup, .fini = bt_teardown, .timeout = 120);

#define S_BOUND         1048576     //  --client-max-bytes of these tests
#define S_EVENTS        20000       //  events in the log: 1 KiB each, ~22 MB
#define S_REPLAYS       4           //  unread REPLAYs on one connection
//  One frame may go past the bound (it is checked before each event): a
//  1 KiB event's envelope and libzmq's 112 bytes per frame, rounded up.
#define S_SLACK         4096

//  Publish count events of 1 KiB on "mem.t" in batches of 100.
static void
s_publish_kib (zsock_t *client, size_t count)
{
    static char data [1024];
    memset (data, 'm', sizeof (data) - 1);
    bu_event_t batch [100];
    for (uint64_t rid = 1; rid <= count / 100; rid++) {
        for (size_t i = 0; i < 100; i++)
            bu_event_init (&batch [i], "mem.t", data);
        bu_reply_t reply = { 0 };
        bt_publish (client, 5000 + rid, batch, 100, &reply);
        bu_reply_fini (&reply);
    }
}

//  A DEALER that takes as little as it can off the wire: one message in
//  its own queue and a small fixed socket buffer, so that what it does
//  not read stays in the broker.  Kept (freed by teardown).
static zsock_t *
s_deaf_client (void)
{
    zsock_t *sock = zsock_new (ZMQ_DEALER);
    cr_assert_not_null (sock);
    zsock_set_linger (sock, 0);
    zsock_set_rcvhwm (sock, 1);
    zsock_set_rcvbuf (sock, 65536);
    cr_assert_eq (zsock_connect (sock, "%s", bt_broker->api), 0);
    return bt_keep (sock);
}

//  Start a broker bounding each client to S_BOUND bytes (and idle_ms, as
//  a string, for stream-idle-ms), fill the log, and open S_REPLAYS
//  REPLAYs from seq 1 with the most credit on a client that does not read.
//  Returns that client; *admin gets one that does.
static zsock_t *
s_start_unread (const char *idle_ms, zsock_t **admin)
{
    char bound [32];
    snprintf (bound, sizeof bound, "%d", S_BOUND);
    const char *extra [] = { "--client-max-bytes", bound, "--durability", "async",
                             "--stream-idle-ms", idle_ms, NULL };
    bt_start_with (extra);
    *admin = bt_client ();
    s_publish_kib (*admin, S_EVENTS);
    zsock_t *deaf = s_deaf_client ();
    bu_replay_t replay = { .has_from = true, .from = 1, .has_credit = true, .credit = 1000000 };
    for (uint64_t rid = 1; rid <= S_REPLAYS; rid++)
        bt_send_replay (deaf, rid, &replay);
    return deaf;
}

//  The extra counter name of a STATUS reply (0 when it has none).
static uint64_t
s_extra (const bu_reply_t *reply, const char *name)
{
    for (size_t i = 0; i < reply->body.status.extra_count; i++)
        if (bu_str_eq (reply->body.status.extra_keys [i], name))
            return reply->body.status.extra_values [i];
    return 0;
}

//  The broker holds back: what is queued for the client never goes past
//  the bound (checked in every STATUS), and once the socket buffers on the
//  way are full every stream of the client waits on it, with the client
//  holding the bound's worth.
static void
s_check_held_back (zsock_t *admin)
{
    uint64_t deadline = tu_mono_ns () + 30000 * 1000000ULL;
    uint64_t waiting = 0, client_max = 0;
    for (uint64_t rid = 700000; tu_mono_ns () < deadline; rid++) {
        bu_reply_t reply = { 0 };
        bt_status (admin, rid, &reply);
        waiting = s_extra (&reply, "streams_waiting_bytes");
        client_max = s_extra (&reply, "client_bytes_max");
        uint64_t total = s_extra (&reply, "stream_bytes");
        uint64_t streams = s_extra (&reply, "streams");
        uint64_t abandoned = s_extra (&reply, "streams_abandoned");
        bu_reply_fini (&reply);
        cr_assert_leq (client_max, S_BOUND + S_SLACK,
                       "the client holds %" PRIu64 " bytes, over the bound", client_max);
        cr_assert_eq (total, client_max, "stream_bytes %" PRIu64 " for one client holding %"
                      PRIu64, total, client_max);
        //  The REPLAYs come on another connection: they may not be open yet
        cr_assert_leq (streams, S_REPLAYS, "%" PRIu64 " streams run", streams);
        cr_assert_eq (abandoned, 0);
        if (waiting == S_REPLAYS && client_max >= S_BOUND)
            break;
        zclock_sleep (10);
    }
    cr_assert_eq (waiting, S_REPLAYS, "%" PRIu64 " of %d streams wait on the byte bound",
                  waiting, S_REPLAYS);
    cr_assert_geq (client_max, S_BOUND, "the client holds %" PRIu64 " bytes", client_max);
    cr_assert_eq (bt_status_extra (admin, 4, "stream_clients"), 1);
    cr_assert_eq (bt_status_extra (admin, 5, "streams"), S_REPLAYS);
}

//  Ask STATUS every 10 ms until no stream runs and nothing is held for any
//  client, for up to timeout_ms.  True when it got there.
static bool
s_wait_freed (zsock_t *admin, int timeout_ms)
{
    uint64_t deadline = tu_mono_ns () + (uint64_t) timeout_ms * 1000000ULL;
    for (uint64_t rid = 900000; tu_mono_ns () < deadline; rid++) {
        if (bt_status_extra (admin, rid, "streams") == 0
        &&  bt_status_extra (admin, rid, "stream_bytes") == 0
        &&  bt_status_extra (admin, rid, "stream_clients") == 0)
            return true;
        zclock_sleep (10);
    }
    return false;
}

//  What arrived for one of several streams read off one socket.
typedef struct {
    uint64_t count;                 //  events, each checked to be seq count + 1
    bool ended;
    uint64_t last;
    char reason [32];
} s_seen_t;

//  Read EVENTS and END of rids 1..count off sock into seen[rid - 1] until
//  every one ended or timeout_ms passed.  Events of each must come in seq
//  order from 1; anything else fails the test.
static void
s_read_all (zsock_t *sock, s_seen_t *seen, size_t count, int timeout_ms)
{
    uint64_t deadline = tu_mono_ns () + (uint64_t) timeout_ms * 1000000ULL;
    size_t ended = 0;
    while (ended < count && tu_mono_ns () < deadline) {
        bu_reply_t reply;
        int rc = bu_recv_reply (sock, &reply, BT_WAIT_MS);
        cr_assert_eq (rc, 0, "no reply within %d ms (%zu of %zu streams ended)", BT_WAIT_MS,
                      ended, count);
        cr_assert_eq (reply.rc, HERALD_OK, "a reply does not decode");
        uint64_t rid = reply.body.rid;
        cr_assert (rid >= 1 && rid <= count, "%s for rid %" PRIu64, reply.command, rid);
        s_seen_t *one = &seen [rid - 1];
        cr_assert (!one->ended, "%s for rid %" PRIu64 " after its END", reply.command, rid);
        if (reply.type == HERALD_MSG_EVENTS) {
            for (size_t index = 0; index < reply.envelope_count; index++) {
                tu_decoded_t decoded;
                bt_decode (bu_reply_envelope (&reply, index), &decoded);
                uint64_t seq = decoded.event.seq;
                tu_decoded_fini (&decoded);
                cr_assert_eq (seq, one->count + 1, "rid %" PRIu64 ": seq %" PRIu64
                              " after %" PRIu64 " events", rid, seq, one->count);
                one->count++;
            }
        }
        else {
            cr_assert_eq (reply.type, HERALD_MSG_END, "%s for rid %" PRIu64, reply.command,
                          rid);
            one->ended = true;
            one->last = reply.body.end.last;
            snprintf (one->reason, sizeof one->reason, "%.*s",
                      (int) reply.body.end.reason.len, reply.body.end.reason.ptr);
            ended++;
        }
        bu_reply_fini (&reply);
    }
}

//  Streams that wait on the bound lose nothing: once the client reads,
//  each REPLAY sends every event in order and ends `done`.
Test (heraldd_memory, unread_replays_wait_on_the_byte_bound_and_lose_nothing)
{
    zsock_t *admin;
    zsock_t *deaf = s_start_unread ("60000", &admin);
    s_check_held_back (admin);

    s_seen_t seen [S_REPLAYS] = { { 0 } };
    s_read_all (deaf, seen, S_REPLAYS, 60000);
    for (size_t index = 0; index < S_REPLAYS; index++) {
        cr_assert (seen [index].ended, "rid %zu: no END after %" PRIu64 " events", index + 1,
                   seen [index].count);
        cr_assert_eq (seen [index].count, S_EVENTS, "rid %zu: %" PRIu64 " events", index + 1,
                      seen [index].count);
        cr_assert_eq (seen [index].last, S_EVENTS);
        cr_assert_str_eq (seen [index].reason, "done");
    }
    cr_assert (s_wait_freed (admin, 20000), "the broker still holds streams or bytes");
    cr_assert_eq (bt_status_extra (admin, 7, "streams_abandoned"), 0);
}

//  A client that leaves with its streams waiting: they are abandoned and
//  everything held for it is freed; a well-behaved replay then gets the
//  whole log in order.
Test (heraldd_memory, a_gone_client_frees_its_streams_and_bytes)
{
    zsock_t *admin;
    zsock_t *deaf = s_start_unread ("60000", &admin);
    s_check_held_back (admin);

    bt_drop (&deaf);
    cr_assert (s_wait_freed (admin, 20000), "streams %" PRIu64 ", stream_bytes %" PRIu64
               " after the client left", bt_status_extra (admin, 8, "streams"),
               bt_status_extra (admin, 9, "stream_bytes"));
    cr_assert_eq (bt_status_extra (admin, 10, "streams_abandoned"), S_REPLAYS);

    zsock_t *reader = bt_client ();
    bu_replay_t replay = { .has_from = true, .from = 1, .has_credit = true, .credit = 1000000 };
    bt_send_replay (reader, 1, &replay);
    s_seen_t seen [1] = { { 0 } };
    s_read_all (reader, seen, 1, 60000);
    cr_assert (seen [0].ended);
    cr_assert_eq (seen [0].count, S_EVENTS);
    cr_assert_str_eq (seen [0].reason, "done");
}

//  A client that stays connected but takes nothing for stream_idle_ms has
//  its waiting streams abandoned, as on a full queue; what libzmq already
//  holds for it stays counted until it reads or leaves, and is then freed.
Test (heraldd_memory, a_client_that_never_reads_has_its_waiting_streams_abandoned)
{
    zsock_t *admin;
    zsock_t *deaf = s_start_unread ("500", &admin);
    uint64_t abandoned = bt_wait_status_extra (admin, "streams_abandoned", S_REPLAYS, 30000);
    cr_assert_eq (abandoned, S_REPLAYS, "%" PRIu64 " streams abandoned", abandoned);
    cr_assert_eq (bt_status_extra (admin, 2, "streams"), 0);
    uint64_t held = bt_status_extra (admin, 3, "stream_bytes");
    cr_assert_leq (held, S_BOUND + S_SLACK, "%" PRIu64 " bytes held", held);
    cr_assert_geq (held, S_BOUND, "%" PRIu64 " bytes held", held);
    cr_assert_eq (bt_status_extra (admin, 4, "stream_clients"), 1);

    bt_drop (&deaf);
    cr_assert (s_wait_freed (admin, 20000), "stream_bytes %" PRIu64 " after the client left",
               bt_status_extra (admin, 5, "stream_bytes"));
}
