/*  =========================================================================
    test_herald_io_sub - the subscription state machine, row by row

    agents/herald_io_sub.c draws its state table in a comment; this test
    drives it one row at a time, with no broker and no thread: an I/O
    actor's state made by hand, its DEALER a PAIR whose other end this test
    reads (the REPLAY requests), its delivery pipe a PAIR this test reads
    (the batches), and a "backlog" made of batches put in `pending`.  Each
    row sets a state up, gives one event, and checks the state after it,
    the REPLAY sent (if any, and from where) and the seqs passed on.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "herald_event.h"
#include "herald_io.h"

#define LIVE_BUFFER     4
#define NONE            UINT64_MAX

typedef enum {
    EV_START = 1,               //  herald_io_sub_new (the setup is ignored)
    EV_LIVE,                    //  a live event, seq = arg
    EV_COVERAGE,                //  the live stream contiguous from arg
    EV_HEARTBEAT,               //  head = arg
    EV_END,                     //  END with last = arg
    EV_ERROR,                   //  ERROR with code = arg
    EV_TICK,                    //  the timers
    EV_FLUSH,                   //  the end of a turn of the I/O loop
    EV_LINEAGE,                 //  a WELCOME: lineage 1, events lost after arg
    EV_UNWELCOME,               //  the lineage to be read again (then live event arg)
    EV_MOVED                    //  another node (then live event arg, coverage from it)
} s_event_t;

typedef struct {
    const char *name;
    //  The setup
    herald_io_state_t from;
    uint64_t examined;          //  forwarded = examined
    uint64_t buffer_from;
    uint64_t held [LIVE_BUFFER];
    size_t held_count;
    size_t backlog;             //  batches waiting in pending
    bool replay_running;
    bool went_live;
    uint64_t live_first;        //  before the event, in LIVE: forward seqs
    uint64_t live_last;         //  live_first..live_last (a batch being filled)
    //  The event, and then maybe: the backlog drains and the timers run
    s_event_t event;
    uint64_t arg;
    bool drain;
    //  Expected
    herald_io_state_t to;
    uint64_t replay_from;       //  0: no REPLAY sent
    uint64_t passed [8];        //  seqs handed to the delivery thread, in order
    size_t passed_count;
    size_t held_after;
    uint64_t buffer_from_after; //  NONE: not checked
    uint64_t gaps;              //  the subscription's gaps after
} s_row_t;

static const s_row_t s_rows [] = {
    { "start: replay from the checkpoint + 1",
      .event = EV_START, .to = HERALD_IO_REPLAYING, .replay_from = 6,
      .buffer_from_after = NONE },

    //  REPLAYING
    { "REPLAYING, live event: held",
      HERALD_IO_REPLAYING, 5, 6, .replay_running = true, .event = EV_LIVE, .arg = 7,
      .to = HERALD_IO_REPLAYING, .held_after = 1, .buffer_from_after = 6 },
    { "REPLAYING, live event, buffer full: all held dropped, covered from seq + 1",
      HERALD_IO_REPLAYING, 5, 6, { 6, 7, 8, 9 }, 4, .replay_running = true,
      .event = EV_LIVE, .arg = 10,
      .to = HERALD_IO_REPLAYING, .held_after = 0, .buffer_from_after = 11 },
    { "REPLAYING, coverage: held dropped, buffer_from = P, no second replay",
      HERALD_IO_REPLAYING, 5, 6, { 6, 7 }, 2, .replay_running = true,
      .event = EV_COVERAGE, .arg = 9,
      .to = HERALD_IO_REPLAYING, .held_after = 0, .buffer_from_after = 9 },
    { "REPLAYING, heartbeat: nothing",
      HERALD_IO_REPLAYING, 5, 6, .replay_running = true, .event = EV_HEARTBEAT, .arg = 9,
      .to = HERALD_IO_REPLAYING, .buffer_from_after = 6 },
    { "REPLAYING, END covered: held passed, LIVE",
      HERALD_IO_REPLAYING, 5, 9, { 9, 10 }, 2, .replay_running = true,
      .event = EV_END, .arg = 8,
      .to = HERALD_IO_LIVE, .passed = { 9, 10 }, .passed_count = 2,
      .buffer_from_after = NONE },
    { "REPLAYING, END, position unknown: WAITING, no replay",
      HERALD_IO_REPLAYING, 5, 0, .replay_running = true, .event = EV_END, .arg = 8,
      .to = HERALD_IO_WAITING, .buffer_from_after = 0 },
    { "REPLAYING, END not covered: replay from last + 1",
      HERALD_IO_REPLAYING, 5, 12, .replay_running = true, .event = EV_END, .arg = 8,
      .to = HERALD_IO_REPLAYING, .replay_from = 9, .buffer_from_after = 12 },
    { "REPLAYING, END covered with a backlog: WAITING, not LIVE",
      HERALD_IO_REPLAYING, 5, 9, { 9 }, 1, .backlog = 3, .replay_running = true,
      .event = EV_END, .arg = 8,
      .to = HERALD_IO_WAITING, .held_after = 1, .buffer_from_after = 9 },
    { "... and once the backlog drained: LIVE, no request",
      HERALD_IO_REPLAYING, 5, 9, { 9 }, 1, .backlog = 3, .replay_running = true,
      .event = EV_END, .arg = 8, .drain = true,
      .to = HERALD_IO_LIVE, .passed = { 9 }, .passed_count = 1,
      .buffer_from_after = NONE },
    { "REPLAYING, END not covered with a backlog: no replay yet",
      HERALD_IO_REPLAYING, 5, 12, .backlog = 3, .replay_running = true,
      .event = EV_END, .arg = 8,
      .to = HERALD_IO_WAITING, .buffer_from_after = 12 },
    { "... and once the backlog drained: ONE replay from last + 1",
      HERALD_IO_REPLAYING, 5, 12, .backlog = 3, .replay_running = true,
      .event = EV_END, .arg = 8, .drain = true,
      .to = HERALD_IO_REPLAYING, .replay_from = 9, .buffer_from_after = 12 },
    { "REPLAYING, ERROR overloaded: retried later, still REPLAYING",
      HERALD_IO_REPLAYING, 5, 6, .replay_running = true, .event = EV_ERROR,
      .arg = HERALD_ERR_OVERLOADED,
      .to = HERALD_IO_REPLAYING, .buffer_from_after = 6 },
    { "REPLAYING, ERROR bad_request: STOPPED",
      HERALD_IO_REPLAYING, 5, 6, .replay_running = true, .event = EV_ERROR,
      .arg = HERALD_ERR_BAD_REQUEST,
      .to = HERALD_IO_STOPPED, .buffer_from_after = 6 },
    { "REPLAYING, tick with no replay running: one is sent",
      HERALD_IO_REPLAYING, 5, 6, .event = EV_TICK,
      .to = HERALD_IO_REPLAYING, .replay_from = 6, .buffer_from_after = 6 },

    //  WAITING
    { "WAITING, position unknown, live event: held (the position stays unknown)",
      HERALD_IO_WAITING, 8, 0, .event = EV_LIVE, .arg = 9,
      .to = HERALD_IO_WAITING, .held_after = 1, .buffer_from_after = 0 },
    { "WAITING, coverage from the next seq (first $hb): LIVE at once",
      HERALD_IO_WAITING, 8, 0, .event = EV_COVERAGE, .arg = 9,
      .to = HERALD_IO_LIVE, .buffer_from_after = NONE },
    { "WAITING, coverage beyond: one replay from examined + 1",
      HERALD_IO_WAITING, 8, 0, .went_live = true, .event = EV_COVERAGE, .arg = 12,
      .to = HERALD_IO_REPLAYING, .replay_from = 9, .buffer_from_after = 12, .gaps = 1 },
    { "WAITING with a backlog, live event: held, no request",
      HERALD_IO_WAITING, 8, 9, { 9 }, 1, .backlog = 3, .event = EV_LIVE, .arg = 10,
      .to = HERALD_IO_WAITING, .held_after = 2, .buffer_from_after = 9 },
    { "WAITING with a backlog, buffer full: dropped; drained: one replay",
      HERALD_IO_WAITING, 8, 9, { 9, 10, 11, 12 }, 4, .backlog = 3, .went_live = true,
      .event = EV_LIVE, .arg = 13, .drain = true,
      .to = HERALD_IO_REPLAYING, .replay_from = 9, .buffer_from_after = 14, .gaps = 1 },

    //  LIVE
    { "LIVE, live event: passed",
      HERALD_IO_LIVE, 8, 9, .went_live = true, .event = EV_LIVE, .arg = 9,
      .to = HERALD_IO_LIVE, .passed = { 9 }, .passed_count = 1, .buffer_from_after = 9 },
    { "LIVE, live event already passed: dropped",
      HERALD_IO_LIVE, 8, 9, .went_live = true, .event = EV_LIVE, .arg = 8,
      .to = HERALD_IO_LIVE, .buffer_from_after = 9 },
    { "LIVE, coverage beyond examined + 1: a gap, one replay",
      HERALD_IO_LIVE, 8, 9, .went_live = true, .event = EV_COVERAGE, .arg = 12,
      .to = HERALD_IO_REPLAYING, .replay_from = 9, .buffer_from_after = 12, .gaps = 1 },
    { "LIVE, coverage from examined + 1: nothing",
      HERALD_IO_LIVE, 8, 9, .went_live = true, .event = EV_COVERAGE, .arg = 9,
      .to = HERALD_IO_LIVE, .buffer_from_after = 9 },
    { "LIVE, heartbeat: examined = head (a marker follows)",
      HERALD_IO_LIVE, 8, 9, .went_live = true, .event = EV_HEARTBEAT, .arg = 20,
      .to = HERALD_IO_LIVE, .buffer_from_after = 9 },
    { "LIVE, flush into a full backlog: the batch is held back, WAITING, no replay",
      HERALD_IO_LIVE, 8, 9, .backlog = HERALD_IO_PENDING_MAX, .went_live = true,
      .live_first = 9, .live_last = 11, .event = EV_FLUSH,
      .to = HERALD_IO_WAITING, .held_after = 3, .buffer_from_after = 9 },
    { "... and once the backlog drained: LIVE with the held batch, no request",
      HERALD_IO_LIVE, 8, 9, .backlog = HERALD_IO_PENDING_MAX, .went_live = true,
      .live_first = 9, .live_last = 11, .event = EV_FLUSH, .drain = true,
      .to = HERALD_IO_LIVE, .passed = { 9, 10, 11 }, .passed_count = 3,
      .buffer_from_after = NONE },

    //  The broker's lineage to be read again (reconnect, another lineage)
    { "LIVE, unwelcome: WAITING, live held from examined + 1",
      HERALD_IO_LIVE, 8, 9, .went_live = true, .event = EV_UNWELCOME,
      .to = HERALD_IO_WAITING, .buffer_from_after = 9 },
    { "... live events are held, not passed, until the WELCOME",
      HERALD_IO_LIVE, 8, 9, .went_live = true, .event = EV_UNWELCOME, .arg = 9,
      .to = HERALD_IO_WAITING, .held_after = 1, .buffer_from_after = 9 },
    { "... and after it: LIVE with them, no request",
      HERALD_IO_LIVE, 8, 9, .went_live = true, .event = EV_UNWELCOME, .arg = 9,
      .drain = true,
      .to = HERALD_IO_LIVE, .passed = { 9 }, .passed_count = 1, .buffer_from_after = NONE },

    //  Another node (a cluster's: the old one died, or is not the leader)
    { "REPLAYING, moved: the replay is gone, held dropped, position unknown, no request",
      HERALD_IO_REPLAYING, 5, 6, { 6, 7 }, 2, .replay_running = true, .event = EV_MOVED,
      .to = HERALD_IO_REPLAYING, .held_after = 0, .buffer_from_after = 0 },
    { "... after the new node's WELCOME: a replay from examined + 1 there",
      HERALD_IO_REPLAYING, 5, 6, { 6, 7 }, 2, .replay_running = true, .event = EV_MOVED,
      .drain = true,
      .to = HERALD_IO_REPLAYING, .replay_from = 6, .held_after = 0, .buffer_from_after = 0 },
    { "LIVE, moved: WAITING, position unknown",
      HERALD_IO_LIVE, 8, 9, .went_live = true, .event = EV_MOVED,
      .to = HERALD_IO_WAITING, .buffer_from_after = 0 },
    { "... the new node's stream from 12, before its WELCOME: held, no request",
      HERALD_IO_LIVE, 8, 9, .went_live = true, .event = EV_MOVED, .arg = 12,
      .to = HERALD_IO_WAITING, .held_after = 1, .buffer_from_after = 12 },
    { "... after its WELCOME: one replay from examined + 1, nothing passed yet",
      HERALD_IO_LIVE, 8, 9, .went_live = true, .event = EV_MOVED, .arg = 12, .drain = true,
      .to = HERALD_IO_REPLAYING, .replay_from = 9, .held_after = 1, .buffer_from_after = 12,
      .gaps = 1 },
    { "... a lagging node's stream from 7 (below examined): LIVE after its WELCOME, "
      "nothing passed twice",
      HERALD_IO_LIVE, 8, 9, .went_live = true, .event = EV_MOVED, .arg = 7, .drain = true,
      .to = HERALD_IO_LIVE, .buffer_from_after = NONE },

    //  A broker that lost events (lineage)
    { "LIVE, lineage with a loss after 6, examined 8: REPLAYING from 7",
      HERALD_IO_LIVE, 8, 9, .went_live = true, .event = EV_LINEAGE, .arg = 6,
      .to = HERALD_IO_REPLAYING, .replay_from = 7, .buffer_from_after = NONE, .gaps = 1 },
    { "LIVE, lineage with a loss after 10, examined 8: stays LIVE",
      HERALD_IO_LIVE, 8, 9, .went_live = true, .event = EV_LINEAGE, .arg = 10,
      .to = HERALD_IO_LIVE, .buffer_from_after = 9 },
    { "WAITING, lineage with a loss after 6, examined 8: held dropped, REPLAYING",
      HERALD_IO_WAITING, 8, 9, { 9 }, 1, .backlog = 0, .event = EV_LINEAGE, .arg = 6,
      .to = HERALD_IO_REPLAYING, .replay_from = 7, .held_after = 0,
      .buffer_from_after = NONE },
};

//  ---------------------------------------------------------------------
//  The fixture: an I/O actor's state made by hand

typedef struct {
    herald_agent_t *agent;
    herald_agent_sub_t *sub;
    herald_io_t *io;
    zsock_t *api;               //  the other end of io->dealer
    zsock_t *batches;           //  the other end of io->deliver
    size_t dummies;             //  backlog batches in io->pending
} s_fixture_t;

static void
s_on_error (const char *subscription, int code, const char *message, void *arg)
{
    (void) subscription, (void) code, (void) message, (void) arg;
}

static void
s_fixture_init (s_fixture_t *self, uint64_t start_done)
{
    static int serial;
    char endpoint [64];
    memset (self, 0, sizeof *self);
    self->agent = calloc (1, sizeof (herald_agent_t));
    self->agent->options.live_buffer = LIVE_BUFFER;
    self->agent->options.heartbeat_ms = 1000;
    self->agent->options.on_error = s_on_error;
    self->agent->wake_fd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    pthread_mutex_init (&self->agent->lock, NULL);
    self->sub = calloc (1, sizeof (herald_agent_sub_t));
    self->sub->name = "t";
    self->sub->start_done = start_done;
    atomic_store (&self->sub->state, HERALD_SUB_CATCHING_UP);
    self->io = calloc (1, sizeof (herald_io_t));
    herald_io_t *io = self->io;
    io->agent = self->agent;
    io->next_rid = 1;
    io->dealer_up = true;
    io->welcomed = true;
    msgpack_sbuffer_init (&io->buffer);
    msgpack_zone_init (&io->zone, 4096);
    io->pending = zlist_new ();
    snprintf (endpoint, sizeof endpoint, "inproc://io-sub-api-%d", ++serial);
    io->dealer = zsock_new (ZMQ_PAIR);
    zsock_bind (io->dealer, "%s", endpoint);
    self->api = zsock_new (ZMQ_PAIR);
    zsock_connect (self->api, "%s", endpoint);
    snprintf (endpoint, sizeof endpoint, "inproc://io-sub-deliver-%d", serial);
    io->deliver = zsock_new (ZMQ_PAIR);
    zsock_set_sndhwm (io->deliver, 10000);
    zsock_bind (io->deliver, "%s", endpoint);
    self->batches = zsock_new (ZMQ_PAIR);
    zsock_set_rcvhwm (self->batches, 10000);
    zsock_connect (self->batches, "%s", endpoint);
    cr_assert (io->dealer && self->api && io->deliver && self->batches);
}

//  Put n placeholder batches in pending: the delivery thread is behind.
static void
s_backlog (s_fixture_t *self, size_t n)
{
    for (size_t index = 0; index < n; index++) {
        herald_batch_t *dummy = calloc (1, sizeof *dummy);
        dummy->kind = HERALD_BATCH_COMPLETIONS;     //  count 0: nothing to run
        zlist_append (self->io->pending, dummy);
    }
    self->dummies += n;
}

//  The seqs of every EVENTS batch handed over (the pipe, then what waits
//  in pending), in order; placeholders are freed and not counted.
static size_t
s_passed (s_fixture_t *self, uint64_t *seqs, size_t max)
{
    size_t count = 0;
    herald_batch_t *batch;
    zsock_set_rcvtimeo (self->batches, 0);
    while (zmq_recv (zsock_resolve (self->batches), &batch, sizeof batch, ZMQ_DONTWAIT)
           == (int) sizeof batch) {
        for (size_t index = 0; index < batch->count && count < max; index++) {
            const char *topic;
            size_t topic_len;
            uint64_t ver, ts;
            herald_event_peek (zframe_data (batch->frames [index]),
                               zframe_size (batch->frames [index]), &topic, &topic_len,
                               &seqs [count++], &ver, &ts);
        }
        herald_batch_destroy (&batch);
    }
    while ((batch = zlist_pop (self->io->pending))) {
        for (size_t index = 0; batch->kind == HERALD_BATCH_EVENTS && index < batch->count
                               && count < max; index++) {
            const char *topic;
            size_t topic_len;
            uint64_t ver, ts;
            herald_event_peek (zframe_data (batch->frames [index]),
                               zframe_size (batch->frames [index]), &topic, &topic_len,
                               &seqs [count++], &ver, &ts);
        }
        herald_batch_destroy (&batch);
    }
    return count;
}

//  The `from` of the REPLAY requests sent since the last call (0: none);
//  asserts there was at most one.
static uint64_t
s_replay_sent (s_fixture_t *self)
{
    uint64_t from = 0;
    size_t count = 0;
    zmsg_t *msg;
    zsock_set_rcvtimeo (self->api, 0);
    while ((msg = zmsg_recv (self->api))) {
        zframe_t *command = zmsg_first (msg);
        zframe_t *body = zmsg_next (msg);
        if (zframe_streq (command, "REPLAY")) {
            herald_msg_t request;
            herald_error_t err;
            msgpack_zone zone;
            msgpack_zone_init (&zone, 1024);
            cr_assert_eq (herald_msg_decode (&request, HERALD_MSG_REPLAY, zframe_data (body),
                                             zframe_size (body), NULL, &zone, &err), HERALD_OK);
            from = request.replay.from;
            count++;
            msgpack_zone_destroy (&zone);
        }
        zmsg_destroy (&msg);
    }
    cr_assert_leq (count, 1, "%zu REPLAY requests at once", count);
    return from;
}

static zframe_t *
s_envelope (uint64_t seq)
{
    herald_event_t event;
    memset (&event, 0, sizeof event);
    memcpy (event.id, &seq, sizeof seq);        //  an id of its own per seq
    event.id [15] = 0x7e;
    event.topic = "t.1";
    event.topic_len = 3;
    event.data = (const uint8_t *) "d";
    event.data_len = 1;
    event.seq = seq;
    event.ver = seq;
    event.ts = seq;
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    cr_assert_eq (herald_event_encode (&event, &buffer), 0);
    zframe_t *frame = zframe_new (buffer.data, buffer.size);
    msgpack_sbuffer_destroy (&buffer);
    return frame;
}

static void
s_fixture_fini (s_fixture_t *self)
{
    herald_io_t *io = self->io;
    uint64_t seqs [64];
    s_passed (self, seqs, 64);
    zlist_destroy (&io->pending);
    zsock_destroy (&io->dealer);
    zsock_destroy (&io->deliver);
    zsock_destroy (&self->api);
    zsock_destroy (&self->batches);
    msgpack_sbuffer_destroy (&io->buffer);
    msgpack_zone_destroy (&io->zone);
    pthread_mutex_destroy (&self->agent->lock);
    close (self->agent->wake_fd);
    free (io);
    free (self->sub);
    free (self->agent);
}

//  ---------------------------------------------------------------------

static void
s_run_row (const s_row_t *row)
{
    s_fixture_t fixture;
    s_fixture_init (&fixture, 5);
    herald_io_t *io = fixture.io;
    herald_io_sub_t *self = herald_io_sub_new (io, fixture.sub);
    cr_assert_not_null (self);
    if (row->event != EV_START) {
        //  The setup: forget the start's replay, then the row's state
    //  ("drain" also means: a WELCOME came, for the unwelcome rows)
        s_replay_sent (&fixture);
        self->forwarded = self->examined = self->marked = row->examined;
        self->buffer_from = row->buffer_from;
        self->went_live = row->went_live;
        self->rid = row->replay_running? 99: 0;
        self->credit_left = row->replay_running? HERALD_IO_CREDIT: 0;
        self->activity = herald_agent_now_ms ();
        self->state = HERALD_IO_REPLAYING;          //  held events are taken there
        for (size_t index = 0; index < row->held_count; index++)
            herald_io_sub_live (io, self, row->held [index], s_envelope (row->held [index]));
        self->state = row->from;
        atomic_store (&fixture.sub->state, row->from == HERALD_IO_LIVE? HERALD_SUB_LIVE
                                                                     : HERALD_SUB_CATCHING_UP);
        for (uint64_t seq = row->live_first; seq && seq <= row->live_last; seq++)
            herald_io_sub_live (io, self, seq, s_envelope (seq));
        s_backlog (&fixture, row->backlog);
    }
    herald_msg_t reply;
    memset (&reply, 0, sizeof reply);
    reply.has_rid = true;
    reply.rid = 99;
    switch (row->event) {
        case EV_START:
            break;
        case EV_LIVE:
            herald_io_sub_live (io, self, row->arg, s_envelope (row->arg));
            break;
        case EV_COVERAGE:
            herald_io_sub_coverage (io, self, row->arg);
            break;
        case EV_HEARTBEAT:
            herald_io_sub_heartbeat (io, self, row->arg);
            cr_assert_eq (self->examined, row->arg > row->examined
                          && row->from == HERALD_IO_LIVE? row->arg: row->examined);
            break;
        case EV_END:
            reply.type = HERALD_MSG_END;
            reply.end.last = row->arg;
            reply.end.head = row->arg;
            reply.end.reason = (herald_str_t) { "done", 4 };
            herald_io_sub_end (io, self, &reply);
            break;
        case EV_ERROR:
            reply.type = HERALD_MSG_ERROR;
            reply.error.code = (herald_err) row->arg;
            reply.error.message = (herald_str_t) { "test", 4 };
            herald_io_sub_end (io, self, &reply);
            break;
        case EV_TICK:
            herald_io_sub_tick (io, self, herald_agent_now_ms ());
            break;
        case EV_FLUSH:
            herald_io_sub_flush (io, self);
            break;
        case EV_UNWELCOME:
            io->welcomed = false;
            herald_io_sub_unwelcome (io, self);
            if (row->arg)
                herald_io_sub_live (io, self, row->arg, s_envelope (row->arg));
            break;
        case EV_MOVED:
            io->welcomed = false;
            herald_io_sub_moved (io, self);
            if (row->arg) {
                //  What herald_io.c does with the new stream's first event
                herald_io_sub_coverage (io, self, row->arg);
                herald_io_sub_live (io, self, row->arg, s_envelope (row->arg));
            }
            break;
        case EV_LINEAGE: {
            herald_loss_t loss = { 1, row->arg, 1 };
            io->losses = &loss;
            io->loss_count = 1;
            io->lineage = 1;
            io->lineage_head = 20;
            io->have_lineage = true;
            herald_io_sub_lineage (io, self);
            io->losses = NULL;
            io->loss_count = 0;
            cr_assert_eq (self->lineage, 1);
            break;
        }
    }
    uint64_t passed [16];
    size_t passed_count = 0;
    if (row->drain) {
        //  What was handed over before is taken by the delivery thread
        passed_count = s_passed (&fixture, passed, 16);
        fixture.dummies = 0;
        io->welcomed = true;                        //  and a WELCOME came
        herald_io_sub_tick (io, self, herald_agent_now_ms ());
    }
    herald_io_sub_flush (io, self);                 //  the end of the loop's turn
    passed_count += s_passed (&fixture, passed + passed_count, 16 - passed_count);
    cr_assert_eq (self->state, row->to, "%s: state %d, expected %d", row->name, self->state,
                  row->to);
    cr_assert_eq (s_replay_sent (&fixture), row->replay_from, "%s: REPLAY from", row->name);
    cr_assert_eq (passed_count, row->passed_count, "%s: %zu passed, expected %zu", row->name,
                  passed_count, row->passed_count);
    for (size_t index = 0; index < passed_count; index++)
        cr_assert_eq (passed [index], row->passed [index], "%s: passed [%zu] = %" PRIu64,
                      row->name, index, passed [index]);
    cr_assert_eq (self->held_count, row->held_after, "%s: %zu held, expected %zu", row->name,
                  self->held_count, row->held_after);
    if (row->buffer_from_after != NONE)
        cr_assert_eq (self->buffer_from, row->buffer_from_after, "%s: buffer_from %" PRIu64,
                      row->name, self->buffer_from);
    cr_assert_eq (atomic_load (&fixture.sub->gaps), row->gaps, "%s: gaps", row->name);
    int public = atomic_load (&fixture.sub->state);
    if (row->to == HERALD_IO_LIVE)
        cr_assert_eq (public, HERALD_SUB_LIVE, "%s: public state", row->name);
    else
    if (row->to != HERALD_IO_STOPPED)
        cr_assert_eq (public, HERALD_SUB_CATCHING_UP, "%s: public state", row->name);
    self->rid = 0;                                  //  no CANCEL to read
    herald_io_sub_destroy (io, &self);
    s_fixture_fini (&fixture);
}

Test (herald_io_sub, every_row_of_the_state_table)
{
    zsys_handler_set (NULL);
    for (size_t index = 0; index < sizeof s_rows / sizeof s_rows [0]; index++)
        s_run_row (&s_rows [index]);
}
