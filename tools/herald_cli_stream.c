/*  =========================================================================
    herald_cli_stream - the streaming commands: replay, read and tail

    replay and read send one REPLAY or READ and print EVENTS until END;
    an ERROR instead (the broker met data it cannot read) is printed and
    exits 1, so exit 0 always means the whole range was printed.
    Credit is a window: the tool grants `credit` events up front and tops
    it up with CREDIT each time it has printed half of that, so the broker
    never has more outstanding than the window and never stalls on us.

    DESIGN (tail --from)
    Going live without a gap or a duplicate needs the live stream to start
    before the replay's scan does:

        1. SUB to the prefixes (and `$hb`) on fanout; wait for the first
           message, which proves the subscription reached the broker
        2. REPLAY from --from / --from-ts; meanwhile every live message is
           read off the SUB and kept in a list (so the SUB's high-water
           mark never drops any)
        3. at END, `last` L says every matching event up to seq L was sent;
           flush the list dropping events with seq <= L, then go live,
           dropping the same

    Every event stored after step 1 reaches the SUB; every event up to L
    came from the replay; so the output is each matching event once, in
    seq order.  The fanout's silence for --timeout ms (heartbeats stop)
    ends the tool with exit 2, like an api that does not answer.
    =========================================================================
*/

#include "herald_cli.h"

#include <string.h>

static const char *s_replay_usage =
    "usage: herald replay [options]\n"
    "\n"
    "Print stored events in seq order, then exit (at the broker's head or --to).\n"
    "Exit 0 only when every event of the range was printed; a stream the broker\n"
    "ends with ERROR (data it cannot read) prints its message and exits 1.\n"
    "\n"
    "  --from SEQ           first seq (default 1)\n"
    "  --from-ts TIME       first event with ts >= TIME\n"
    "  --to SEQ             last seq, inclusive\n"
    "  --until-ts TIME      last ts, inclusive\n"
    "  --prefix P           only topics beginning with P (repeatable)\n"
    "  --max N              stop after N events (N >= 1)\n"
    "  --credit N           events the broker may send ahead (default 1000)\n"
    "\n"
    "TIME is RFC 3339 (2026-12-02T16:35:47Z, 2026-12-02T17:35:47.25+01:00), a date\n"
    "(2026-12-02, midnight UTC), now, a time ago (-30m, -1h, -2d, -1h30m) or Unix\n"
    "time with a unit (1796229347s, 1796229347123ms, ...us, ...ns); a bare number\n"
    "is refused as ambiguous.\n";

static const char *s_read_usage =
    "usage: herald read TOPIC [options]\n"
    "\n"
    "Print one topic's events in ver order, then exit.  Exit 1, with the broker's\n"
    "message, when the broker ends the stream with ERROR (data it cannot read).\n"
    "\n"
    "  --from-ver V         first version (default 1)\n"
    "  --to-ver V           last version, inclusive\n"
    "  --max N              stop after N events (N >= 1)\n"
    "  --credit N           events the broker may send ahead (default 1000)\n";

static const char *s_tail_usage =
    "usage: herald tail [PREFIX...] [options]\n"
    "\n"
    "Print live events whose topic begins with any PREFIX (default: all).  With\n"
    "--from or --from-ts, first replay stored events from there, then continue\n"
    "live with no gap and no duplicate.  Runs until --max events or Ctrl-C;\n"
    "exits 2 when the fanout is silent (no heartbeat) for --timeout ms.\n"
    "\n"
    "  --from SEQ           catch up from this seq first\n"
    "  --from-ts TIME       catch up from this time first (2026-12-02T16:35:47Z,\n"
    "                       -1h, ...: the forms of herald replay --help)\n"
    "  --max N              exit after N events (N >= 1)\n"
    "  --fanout E           the fanout endpoint (default: asked with HELLO)\n"
    "  --credit N           replay window (default 1000)\n";

typedef struct {
    herald_cli_opts_t *opts;
    herald_cli_conn_t *conn;
    herald_msg_t request;           //  the REPLAY or READ
    herald_str_t prefixes [HERALD_PREFIXES_MAX];
    uint64_t credit;
    uint64_t max;                   //  0: no limit
    //  Progress
    uint64_t printed;
    uint64_t unacked;               //  events printed since the last CREDIT
    uint64_t last;                  //  END's last
    bool ended;
    //  tail
    bool tail;
    bool catch_up;
    const char *fanout;
    char fanout_buf [256];
    zsock_t *sub;
    zlist_t *buffered;              //  live zmsg_t's held during the replay
    uint64_t skip_through;          //  drop live events with seq <= this
} s_stream_t;

//  Print one envelope, counting it.  Returns 0 or an exit code.
static int
s_emit (s_stream_t *self, const void *bytes, size_t len)
{
    int rc = herald_cli_print_envelope (self->opts->format, bytes, len);
    self->printed++;
    return rc;
}

static bool
s_full (s_stream_t *self)
{
    return self->max && self->printed >= self->max;
}

static int
s_send_rid_msg (s_stream_t *self, herald_msg_type_t type, uint64_t credit)
{
    herald_msg_t msg = { .type = type, .has_rid = true, .rid = self->request.rid };
    msg.credit.credit = credit;
    return herald_cli_conn_send (self->conn, &msg);
}

//  Handle one reply to the stream.  Returns 0 or an exit code; sets ended.
static int
s_on_reply (s_stream_t *self, herald_cli_reply_t *reply)
{
    if (reply->type == HERALD_MSG_ERROR)
        return herald_cli_print_error (reply);
    if (!reply->body.has_rid || reply->body.rid != self->request.rid)
        return 0;                   //  a late reply to something else
    if (reply->type == HERALD_MSG_END) {
        self->last = reply->body.end.last;
        self->ended = true;
        return 0;
    }
    if (reply->type != HERALD_MSG_EVENTS)
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "unexpected %s reply to %s",
                                herald_msg_command (reply->type),
                                herald_msg_command (self->request.type));
    zframe_t *frame = zmsg_first (reply->msg);
    zmsg_next (reply->msg);
    while ((frame = zmsg_next (reply->msg)) != NULL && !s_full (self)) {
        int rc = s_emit (self, zframe_data (frame), zframe_size (frame));
        if (rc)
            return rc;
        self->unacked++;
    }
    if (s_full (self)) {
        self->ended = true;
        return s_send_rid_msg (self, HERALD_MSG_CANCEL, 0);
    }
    if (self->unacked >= (self->credit + 1) / 2) {
        int rc = s_send_rid_msg (self, HERALD_MSG_CREDIT, self->unacked);
        self->unacked = 0;
        return rc;
    }
    return 0;
}

//  Keep a live message for after the replay (tail --from).
static int
s_buffer_live (s_stream_t *self)
{
    zmsg_t *msg = zmsg_recv (self->sub);
    if (msg && zlist_append (self->buffered, msg) != 0) {
        zmsg_destroy (&msg);
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "out of memory");
    }
    return 0;
}

//  Send the request and print until END (or --max).  Under tail, live
//  messages arriving meanwhile are buffered.
static int
s_run_stream (s_stream_t *self)
{
    int rc = herald_cli_conn_send (self->conn, &self->request);
    zpoller_t *poller = zpoller_new (herald_cli_conn_sock (self->conn), NULL);
    if (!poller)
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "out of memory");
    if (self->sub)
        zpoller_add (poller, self->sub);
    int64_t deadline = zclock_mono () + self->opts->timeout_ms;
    while (rc == 0 && !self->ended) {
        int64_t wait = deadline - zclock_mono ();
        void *ready = zpoller_wait (poller, wait > 0 ? (int) wait : 0);
        if (ready == self->sub && self->sub)
            rc = s_buffer_live (self);
        else
        if (ready) {
            herald_cli_reply_t reply;
            rc = herald_cli_conn_recv (self->conn, &reply);
            if (rc == 0)
                rc = s_on_reply (self, &reply);
            herald_cli_reply_fini (&reply);
            deadline = zclock_mono () + self->opts->timeout_ms;
        }
        else
        if (zpoller_terminated (poller))
            rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "interrupted");
        //  Checked after a live message too: they must not hide a silent api
        if (rc == 0 && !self->ended && zclock_mono () >= deadline)
            rc = herald_cli_conn_no_answer (self->conn);
    }
    zpoller_destroy (&poller);
    return rc;
}

//  Parse the options the streams share; returns true when argv[*index]
//  was one (bad set on an invalid value).
static bool
s_stream_opt (s_stream_t *self, int argc, char **argv, int *index, bool *bad)
{
    const char *value = NULL;
    uint64_t number = 0;
    if (herald_cli_common_opt (self->opts, argc, argv, index, bad))
        return true;
    if (herald_cli_opt (argc, argv, index, "--max", &value, bad))
        *bad = *bad || !herald_cli_positive ("--max", value, &self->max);
    else
    if (herald_cli_opt (argc, argv, index, "--credit", &value, bad)) {
        *bad = *bad || !herald_cli_uint ("--credit", value, &number);
        if (!*bad && (number < 1 || number > HERALD_CREDIT_MAX)) {
            herald_cli_fail (HERALD_CLI_EXIT_USAGE, "--credit: give 1 .. %d", HERALD_CREDIT_MAX);
            *bad = true;
        }
        self->credit = number;
    }
    else
        return false;
    return true;
}

//  The REPLAY options shared by replay and tail.
static bool
s_replay_opt (s_stream_t *self, int argc, char **argv, int *index, bool *bad)
{
    __typeof__ (self->request.replay) *replay = &self->request.replay;
    const char *value = NULL;
    if (herald_cli_opt (argc, argv, index, "--from-ts", &value, bad)) {
        *bad = *bad || !herald_cli_ts ("--from-ts", value, &replay->from_ts);
        replay->has_from_ts = true;
    }
    else
    if (herald_cli_opt (argc, argv, index, "--from", &value, bad)) {
        *bad = *bad || !herald_cli_positive ("--from", value, &replay->from);
        replay->has_from = true;
    }
    else
        return s_stream_opt (self, argc, argv, index, bad);
    return true;
}

static int
s_add_prefix (s_stream_t *self, const char *prefix)
{
    __typeof__ (self->request.replay) *replay = &self->request.replay;
    if (replay->prefix_count == HERALD_PREFIXES_MAX)
        return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "at most %d prefixes",
                                HERALD_PREFIXES_MAX);
    self->prefixes [replay->prefix_count++] = (herald_str_t) { prefix, strlen (prefix) };
    replay->prefixes = self->prefixes;
    return 0;
}

static void
s_stream_init (s_stream_t *self, herald_cli_opts_t *opts, herald_msg_type_t type)
{
    memset (self, 0, sizeof *self);
    self->opts = opts;
    self->credit = HERALD_CREDIT_DEFAULT;
    self->request.type = type;
    self->request.has_rid = true;
}

//  Connect, run the request to its end, clean up.
static int
s_run_simple (s_stream_t *self)
{
    if (herald_cli_check_request (self->request.type == HERALD_MSG_REPLAY ? "replay" : "read",
                                  &self->request))
        return HERALD_CLI_EXIT_USAGE;
    self->conn = herald_cli_conn_new (self->opts);
    if (!self->conn)
        return HERALD_CLI_EXIT_FAIL;
    self->request.rid = herald_cli_conn_rid (self->conn);
    if (self->request.type == HERALD_MSG_REPLAY)
        self->request.replay.credit = self->credit;
    else
        self->request.read.credit = self->credit;
    herald_cli_print_table_header (self->opts->format);
    int rc = s_run_stream (self);
    herald_cli_conn_destroy (&self->conn);
    return rc;
}

int
herald_cli_replay (herald_cli_opts_t *opts, int argc, char **argv)
{
    s_stream_t self;
    s_stream_init (&self, opts, HERALD_MSG_REPLAY);
    __typeof__ (self.request.replay) *replay = &self.request.replay;
    int index = 1;
    bool bad = false;
    while (index < argc && !bad) {
        const char *value = NULL;
        if (strcmp (argv [index], "--help") == 0) {
            fputs (s_replay_usage, stdout);
            return HERALD_CLI_EXIT_OK;
        }
        if (herald_cli_opt (argc, argv, &index, "--to", &value, &bad)) {
            bad = bad || !herald_cli_positive ("--to", value, &replay->to);
            replay->has_to = true;
        }
        else
        if (herald_cli_opt (argc, argv, &index, "--until-ts", &value, &bad)) {
            bad = bad || !herald_cli_ts ("--until-ts", value, &replay->until_ts);
            replay->has_until_ts = true;
        }
        else
        if (herald_cli_opt (argc, argv, &index, "--prefix", &value, &bad)) {
            if (!bad && s_add_prefix (&self, value))
                return HERALD_CLI_EXIT_USAGE;
        }
        else
        if (!s_replay_opt (&self, argc, argv, &index, &bad))
            return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "replay: unexpected '%s' "
                                                           "(see herald replay --help)",
                                    argv [index]);
    }
    if (bad)
        return HERALD_CLI_EXIT_USAGE;
    return s_run_simple (&self);
}

int
herald_cli_read (herald_cli_opts_t *opts, int argc, char **argv)
{
    s_stream_t self;
    s_stream_init (&self, opts, HERALD_MSG_READ);
    __typeof__ (self.request.read) *read = &self.request.read;
    const char *topic = NULL;
    int index = 1;
    bool bad = false;
    while (index < argc && !bad) {
        const char *value = NULL;
        if (strcmp (argv [index], "--help") == 0) {
            fputs (s_read_usage, stdout);
            return HERALD_CLI_EXIT_OK;
        }
        if (argv [index][0] != '-' && !topic)
            topic = argv [index++];
        else
        if (herald_cli_opt (argc, argv, &index, "--from-ver", &value, &bad))
            bad = bad || !herald_cli_positive ("--from-ver", value, &read->from_ver);
        else
        if (herald_cli_opt (argc, argv, &index, "--to-ver", &value, &bad)) {
            bad = bad || !herald_cli_positive ("--to-ver", value, &read->to_ver);
            read->has_to_ver = true;
        }
        else
        if (!s_stream_opt (&self, argc, argv, &index, &bad))
            return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "read: unexpected '%s' "
                                                           "(see herald read --help)",
                                    argv [index]);
    }
    if (bad)
        return HERALD_CLI_EXIT_USAGE;
    if (!topic)
        return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "read: give a TOPIC (see herald read --help)");
    read->topic = (herald_str_t) { topic, strlen (topic) };
    return s_run_simple (&self);
}

//  ---------------------------------------------------------------------
//  tail

//  The fanout endpoint from HELLO/WELCOME.  A broker bound to a wildcard
//  address ("tcp://*:5581", "tcp://0.0.0.0:5581") is reached on the host
//  of the api endpoint instead.
static int
s_learn_fanout (s_stream_t *self)
{
    herald_msg_t hello = { .type = HERALD_MSG_HELLO, .has_rid = true };
    hello.rid = herald_cli_conn_rid (self->conn);
    hello.hello.proto = HERALD_PROTO_VERSION;
    hello.hello.client = (herald_str_t) { "herald-cli", 10 };
    int rc = herald_cli_conn_send (self->conn, &hello);
    herald_cli_reply_t reply;
    memset (&reply, 0, sizeof reply);
    if (rc == 0)
        rc = herald_cli_conn_recv (self->conn, &reply);
    if (rc == 0 && reply.type == HERALD_MSG_ERROR)
        rc = herald_cli_print_error (&reply);
    else
    if (rc == 0 && reply.type != HERALD_MSG_WELCOME)
        rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "unexpected %s reply to HELLO",
                              herald_msg_command (reply.type));
    if (rc == 0) {
        herald_str_t fanout = reply.body.welcome.fanout;
        const char *api = self->opts->endpoint;
        const char *port = memrchr (fanout.ptr, ':', fanout.len);
        const char *api_host = strstr (api, "://");
        const char *api_port = strrchr (api, ':');
        bool wildcard = (fanout.len > 8 && memcmp (fanout.ptr, "tcp://*:", 8) == 0)
                     || (fanout.len > 14 && memcmp (fanout.ptr, "tcp://0.0.0.0:", 14) == 0);
        if (wildcard && port && api_host && api_port && api_port > api_host + 3)
            snprintf (self->fanout_buf, sizeof self->fanout_buf, "%.*s%.*s",
                      (int) (api_port - api), api,
                      (int) (fanout.ptr + fanout.len - port), port);
        else
            snprintf (self->fanout_buf, sizeof self->fanout_buf, "%.*s",
                      (int) fanout.len, fanout.ptr);
        self->fanout = self->fanout_buf;
    }
    herald_cli_reply_fini (&reply);
    return rc;
}

//  One live message: print it unless it is a heartbeat or was replayed.
//  Returns 0 or an exit code.
static int
s_on_live (s_stream_t *self, zmsg_t *msg)
{
    zframe_t *topic = zmsg_first (msg);
    zframe_t *envelope = zmsg_next (msg);
    if (!topic || !envelope || (zframe_size (topic) >= 1 && zframe_data (topic)[0] == '$'))
        return 0;
    const char *name;
    size_t name_len;
    uint64_t seq = 0, ver, ts;
    if (herald_event_peek (zframe_data (envelope), zframe_size (envelope),
                           &name, &name_len, &seq, &ver, &ts)
    &&  seq <= self->skip_through)
        return 0;
    return s_emit (self, zframe_data (envelope), zframe_size (envelope));
}

static int
s_tail_live (s_stream_t *self)
{
    int rc = 0;
    zmsg_t *msg;
    while (rc == 0 && !s_full (self) && (msg = zlist_pop (self->buffered)) != NULL) {
        rc = s_on_live (self, msg);
        zmsg_destroy (&msg);
    }
    fflush (stdout);
    zpoller_t *poller = zpoller_new (self->sub, NULL);
    while (rc == 0 && !s_full (self)) {
        if (!zpoller_wait (poller, self->opts->timeout_ms)) {
            rc = zpoller_terminated (poller)
               ? herald_cli_fail (HERALD_CLI_EXIT_FAIL, "interrupted")
               : herald_cli_fail (HERALD_CLI_EXIT_NO_ANSWER, "broker at %s did not answer",
                                  self->fanout);
            break;
        }
        msg = zmsg_recv (self->sub);
        if (msg)
            rc = s_on_live (self, msg);
        zmsg_destroy (&msg);
        fflush (stdout);
    }
    zpoller_destroy (&poller);
    return rc;
}

//  Subscribe, and wait for the first message: from then on every stored
//  event reaches us.  Prefixes go first and `$hb` last, so its arrival
//  proves the others are in place too.
static int
s_subscribe (s_stream_t *self)
{
    self->sub = zsock_new (ZMQ_SUB);
    if (!self->sub)
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "cannot create a socket");
    zsock_set_linger (self->sub, 0);
    zsock_set_rcvhwm (self->sub, 0);
    size_t index, count = self->request.replay.prefix_count;
    for (index = 0; index < count; index++)
        zsock_set_subscribe (self->sub, self->prefixes [index].ptr);
    zsock_set_subscribe (self->sub, count ? "$hb" : "");
    if (zsock_connect (self->sub, "%s", self->fanout) != 0)
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "cannot connect to %s: %s",
                                self->fanout, zmq_strerror (zmq_errno ()));
    zpoller_t *poller = zpoller_new (self->sub, NULL);
    bool ready = zpoller_wait (poller, self->opts->timeout_ms) != NULL;
    zpoller_destroy (&poller);
    if (!ready)
        return herald_cli_fail (HERALD_CLI_EXIT_NO_ANSWER, "broker at %s did not answer",
                                self->fanout);
    return s_buffer_live (self);
}

int
herald_cli_tail (herald_cli_opts_t *opts, int argc, char **argv)
{
    s_stream_t self;
    s_stream_init (&self, opts, HERALD_MSG_REPLAY);
    self.tail = true;
    int index = 1;
    bool bad = false;
    while (index < argc && !bad) {
        const char *value = NULL;
        if (strcmp (argv [index], "--help") == 0) {
            fputs (s_tail_usage, stdout);
            return HERALD_CLI_EXIT_OK;
        }
        if (argv [index][0] != '-') {
            if (s_add_prefix (&self, argv [index++]))
                return HERALD_CLI_EXIT_USAGE;
        }
        else
        if (herald_cli_opt (argc, argv, &index, "--fanout", &value, &bad))
            self.fanout = value;
        else
        if (!s_replay_opt (&self, argc, argv, &index, &bad))
            return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "tail: unexpected '%s' "
                                                           "(see herald tail --help)",
                                    argv [index]);
    }
    if (bad)
        return HERALD_CLI_EXIT_USAGE;
    if (herald_cli_check_request ("tail", &self.request))
        return HERALD_CLI_EXIT_USAGE;
    self.catch_up = self.request.replay.has_from || self.request.replay.has_from_ts;
    self.buffered = zlist_new ();
    int rc = self.buffered ? 0 : herald_cli_fail (HERALD_CLI_EXIT_FAIL, "out of memory");
    if (rc == 0 && (self.catch_up || !self.fanout)) {
        self.conn = herald_cli_conn_new (opts);
        if (!self.conn)
            rc = HERALD_CLI_EXIT_FAIL;
    }
    if (rc == 0 && !self.fanout)
        rc = s_learn_fanout (&self);
    if (rc == 0)
        rc = s_subscribe (&self);
    if (rc == 0)
        herald_cli_print_table_header (opts->format);
    if (rc == 0 && self.catch_up) {
        self.request.rid = herald_cli_conn_rid (self.conn);
        self.request.replay.credit = self.credit;
        rc = s_run_stream (&self);
        self.skip_through = self.last;
    }
    if (rc == 0)
        rc = s_tail_live (&self);
    zmsg_t *msg;
    while (self.buffered && (msg = zlist_pop (self.buffered)) != NULL)
        zmsg_destroy (&msg);
    zlist_destroy (&self.buffered);
    zsock_destroy (&self.sub);
    herald_cli_conn_destroy (&self.conn);
    return rc;
}
