/*  =========================================================================
    brokertest - the criterion fixture of the heraldd tests

    tests/test_heraldd_*.c each start the real heraldd, talk to it and
    assert on what comes back.  What they share is here: the broker under
    test and everything a test makes (sockets, streams, memory), freed by
    bt_teardown also when an assertion ended the test early; and asserting
    wrappers over brokerutil's plain helpers, so that a test reads as the
    behaviour it checks.  Each test file declares

        TestSuite (heraldd_x, .init = bt_setup, .fini = bt_teardown, .timeout = 90);

    This file uses criterion (cr_assert) and is linked only into those
    tests; brokerutil.c stays criterion-free for the bench and other tools.
    =========================================================================
*/

#ifndef HERALD_BROKERTEST_H_INCLUDED
#define HERALD_BROKERTEST_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "brokerutil.h"
#include "testutil.h"

#define BT_WAIT_MS      5000        //  for one reply that must come
#define BT_START_MS     10000       //  for a broker to answer STATUS
#define BT_STOP_MS      10000       //  for a broker to exit on SIGTERM
#define BT_STREAM_MAX   20000       //  envelopes one bt_stream_t holds

//  The broker under test, and a second one when a test needs it; both
//  destroyed (killed, their directories removed) by bt_teardown.
extern bu_broker_t *bt_broker;
extern bu_broker_t *bt_second;

//  ---------------------------------------------------------------------
//  Fixture and broker

//  .init and .fini of every heraldd suite.
void
    bt_setup (void);
void
    bt_teardown (void);

//  Make bt_broker with extra flags (NULL-terminated, or NULL) unless it
//  exists, and start it; fails the test with the broker's log if it does
//  not answer STATUS within BT_START_MS.
void
    bt_start_with (const char *const *extra);

//  bt_start_with (NULL).
void
    bt_start (void);

//  Stop bt_broker with SIGTERM and require exit status 0.
void
    bt_stop_clean (void);

//  calloc that fails the test when out of memory; freed by bt_teardown.
void *
    bt_calloc (size_t count, size_t size);

//  ---------------------------------------------------------------------
//  Sockets and replies

//  Keep sock for teardown (the test fails when sock is NULL); returns it.
zsock_t *
    bt_keep (zsock_t *sock);

//  Destroy a kept socket now.
void
    bt_drop (zsock_t **sock_p);

//  A kept DEALER connected to bt_broker's api.
zsock_t *
    bt_client (void);

//  A kept SUB on bt_broker's fanout, subscribed to the NULL-terminated
//  prefixes.
zsock_t *
    bt_subscriber (const char *const *prefixes);

//  Send a PUBLISH of events[0..count) with rid.
void
    bt_send_publish (zsock_t *sock, uint64_t rid, const bu_event_t *events, size_t count);

//  Send [command, {rid}] (STATUS, CANCEL, or anything else with that body).
void
    bt_send_rid (zsock_t *sock, const char *command, uint64_t rid);

//  Send a REPLAY.
void
    bt_send_replay (zsock_t *sock, uint64_t rid, const bu_replay_t *replay);

//  Send a CREDIT.
void
    bt_send_credit (zsock_t *sock, uint64_t rid, uint64_t credit);

//  Receive one reply that must come within BT_WAIT_MS and decode cleanly.
//  bu_reply_fini it afterwards.
void
    bt_recv (zsock_t *sock, bu_reply_t *reply);

//  Check reply is an ACK for rid with count entries.
void
    bt_check_ack (bu_reply_t *reply, uint64_t rid, size_t count);

//  Check reply is an ERROR with code; rid nil when has_rid is false.
void
    bt_check_error (bu_reply_t *reply, herald_err code, bool has_rid, uint64_t rid);

//  Receive the next reply and check it is an ERROR as bt_check_error does.
void
    bt_expect_error (zsock_t *sock, herald_err code, bool has_rid, uint64_t rid);

//  Publish and wait for its ACK (checked); reply holds it (bu_reply_fini).
void
    bt_publish (zsock_t *sock, uint64_t rid, const bu_event_t *events, size_t count,
                bu_reply_t *reply);

//  Publish count single-event requests on topic (rids first_rid...), each
//  waited for and checked as an ACK.
void
    bt_publish_many (zsock_t *sock, const char *topic, size_t count, uint64_t first_rid);

//  The topic of seq n in bt_publish_twenty's log: BT_TOPICS[n % 3].
extern const char *const BT_TOPICS [3];

//  Publish 20 events in four batches of five (rids 100-103): seq n has
//  topic BT_TOPICS[n % 3]; their ids go to ids[1..20] unless ids is NULL.
void
    bt_publish_twenty (zsock_t *sock, uint8_t ids [21][HERALD_ID_BYTES]);

//  STATUS that must be answered within BT_WAIT_MS (bu_reply_fini reply).
void
    bt_status (zsock_t *sock, uint64_t rid, bu_reply_t *reply);

//  The broker's head, from a STATUS.
uint64_t
    bt_head (zsock_t *sock);

//  The extra counter name of a STATUS reply (0 when the reply has none).
uint64_t
    bt_status_extra (zsock_t *sock, uint64_t rid, const char *name);

//  Ask STATUS every 10 ms until the extra counter name is at least want or
//  timeout_ms have passed; returns its last value.
uint64_t
    bt_wait_status_extra (zsock_t *sock, const char *name, uint64_t want, int timeout_ms);

//  Decode envelope frame into decoded (tu_decoded_fini afterwards).
void
    bt_decode (zframe_t *frame, tu_decoded_t *decoded);

//  Wait for the next `$hb` on sub (other messages are skipped, at most
//  1000): it also proves the subscription is live.  hb gets the decoded
//  heartbeat with its node copied into node and hb->heartbeat.node cleared.
void
    bt_wait_heartbeat (zsock_t *sub, herald_msg_t *hb, char *node, size_t node_size);

//  Start bt_broker with `--heartbeat-ms 100`, subscribe to prefixes (which
//  must take in "$hb") and wait for the first heartbeat, as
//  bt_wait_heartbeat does.  Returns the kept SUB.
zsock_t *
    bt_start_heartbeats (const char *const *prefixes, herald_msg_t *hb, char *node,
                         size_t node_size);

//  ---------------------------------------------------------------------
//  Streams: what arrives for one REPLAY or READ

typedef struct {
    zframe_t *envelopes [BT_STREAM_MAX];    //  copies, owned
    size_t count;
    bool ended;                             //  END came; then:
    uint64_t last;
    uint64_t head;
    char reason [32];
} bt_stream_t;

//  A new empty stream, freed by bt_teardown if the test does not.
bt_stream_t *
    bt_stream_new (void);

//  Free a stream now; NULL-safe.
void
    bt_stream_destroy (bt_stream_t **self_p);

//  Receive EVENTS and END for rid until want more envelopes arrived, the
//  stream ended, or timeout_ms passed.  Any other reply fails the test.
void
    bt_stream_read (zsock_t *sock, uint64_t rid, bt_stream_t *self, size_t want,
                    int timeout_ms);

//  Read the whole stream for rid, which must END within timeout_ms.
void
    bt_stream_read_to_end (zsock_t *sock, uint64_t rid, bt_stream_t *self, int timeout_ms);

//  Check the stream ENDed with reason after count envelopes, with END's
//  last and head as given.
void
    bt_stream_check_end (const bt_stream_t *self, size_t count, uint64_t last, uint64_t head,
                         const char *reason);

//  Check envelopes[0..count) decode and hold seqs first, first + 1, ...
void
    bt_stream_check_seqs (const bt_stream_t *self, size_t count, uint64_t first);

//  REPLAY from 1 at api (a node called name in messages): require head
//  events in seq order and return every envelope, length-prefixed, in one
//  buffer of *len bytes (caller frees).
uint8_t *
    bt_replay_bytes (const char *api, const char *name, uint64_t head, size_t *len);

#endif
