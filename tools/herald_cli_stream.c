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
    seq order.

    DESIGN (tail across a lost broker)
    `examined` is where the output stands: every matching event with seq
    <= examined was printed (a replay's END `last` and a heartbeat's
    `head` move it too; a tail that starts live starts at the first
    heartbeat's head).  The broker is taken for lost when the SUB's
    monitor says its connection closed (the SUB does not reconnect by
    itself: what it would receive after a restart follows a gap), when the fanout is silent for max(--timeout, four
    heartbeat intervals), when a heartbeat names another epoch (a restart)
    or lineage, or, with no prefix (every seq reaches us), when a seq or a
    heartbeat's head skips one.  Then both sockets are dropped, with what
    they held, and s_tail_sync runs the steps above again with --from
    examined + 1, retried with a backoff of 0.1 .. 2 s until it succeeds
    (or --retry-for runs out).  A lineage that grew means events after the
    kept head (WELCOME's losses) were lost and their seqs given again: when
    examined is past it, tail says so and goes back to it.
    =========================================================================
*/

#include "herald_cli.h"

#include <stdarg.h>
#include <string.h>

static const char *s_replay_usage =
    "usage: herald replay [options]\n"
    "\n"
    "Print stored events in seq order, then exit (at the broker's head or --to).\n"
    "Exit 0 only when every event of the range was printed; a stream the broker\n"
    "ends with ERROR (data it cannot read) prints its message and exits 1, as does\n"
    "a range trimmed from the live log (herald trim): the message names the first\n"
    "seq still there; the rest is in the archive (--archive DIR --continue).\n"
    "\n"
    "  --from SEQ           first seq (default 1)\n"
    "  --from-ts TIME       first event with ts >= TIME\n"
    "  --to SEQ             last seq, inclusive\n"
    "  --until-ts TIME      last ts, inclusive\n"
    "  --prefix P           only topics beginning with P (repeatable)\n"
    "  --max N              stop after N events (N >= 1)\n"
    "  --credit N           events the broker may send ahead (default 1000)\n"
    "  --archive DIR        read the archive in DIR (herald archive) instead of\n"
    "                       the broker; same output, same filters\n"
    "  --continue           with --archive: after the archive's last seq, go on\n"
    "                       with the broker at --endpoint, to its head or --to\n"
    "                       (refused, nothing printed, when the broker's live log\n"
    "                       was trimmed past the archive's end: a gap)\n"
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
    "live with no gap and no duplicate.  Runs until --max events or Ctrl-C.\n"
    "When the broker is lost (its connection closes, or its fanout is silent for\n"
    "--timeout and at least four heartbeats), says so on stderr, reconnects, and\n"
    "catches up from the last seq printed: no event is missed or printed twice.\n"
    "\n"
    "  --from SEQ           catch up from this seq first\n"
    "  --from-ts TIME       catch up from this time first (2026-12-02T16:35:47Z,\n"
    "                       -1h, ...: the forms of herald replay --help)\n"
    "  --max N              exit after N events (N >= 1)\n"
    "  --fanout E           the fanout endpoint (default: asked with HELLO)\n"
    "  --credit N           replay window (default 1000)\n"
    "  --retry-for MS       exit 2 when a lost broker is not back within MS\n"
    "                       (default: keep reconnecting; 0: exit at once)\n";

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
    uint64_t end_lineage;           //  END's lineage
    bool ended;
    //  tail
    bool tail;
    bool catch_up;                  //  --from or --from-ts given
    const char *fanout_opt;         //  --fanout, normalized; NULL: from WELCOME
    bool scoped;                    //  WELCOME named a scope: the fanout carries only its
                                    //  events, so seqs skip (only heartbeats tell losses)
    const char *fanout;
    char fanout_buf [HERALD_CLI_ENDPOINT_MAX];
    char fanout_opt_buf [HERALD_CLI_ENDPOINT_MAX];
    zsock_t *sub;
    zsock_t *sub_watch;             //  the SUB's monitor
    zlist_t *buffered;              //  live zmsg_t's held during the replay
    uint64_t skip_through;          //  drop live events with seq <= this
    //  tail: where the output stands, and which broker it came from
    bool examined_known;
    uint64_t examined;              //  every matching event <= this is printed
    bool synced;                    //  caught up once: lineage is known
    uint64_t lineage;               //  the store's, as last seen
    bool epoch_known;
    uint64_t epoch;                 //  the broker's start, from $hb
    uint64_t last_hb_ts;
    int64_t hb_interval_ms;         //  measured between heartbeats
    int64_t retry_for_ms;           //  -1: reconnect forever
    bool quiet;                     //  reconnecting: failures go to why
    bool no_header;                 //  the table header was printed already
    char why [600];
} s_stream_t;

//  tail: the broker is gone (or changed); s_tail_reconnect takes over
#define S_LOST  (-1)

//  Note why the broker is taken for lost; returns S_LOST.
static int
s_lost (s_stream_t *self, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

static int
s_lost (s_stream_t *self, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    vsnprintf (self->why, sizeof self->why, format, args);
    va_end (args);
    return S_LOST;
}

//  Print one envelope, counting it.  Returns 0 or an exit code.
static int
s_emit (s_stream_t *self, const void *bytes, size_t len)
{
    int rc = herald_cli_print_envelope (self->opts->format, bytes, len);
    self->printed++;
    const char *topic;
    size_t topic_len;
    uint64_t seq, ver, ts;
    if (self->tail && herald_event_peek (bytes, len, &topic, &topic_len, &seq, &ver, &ts)) {
        self->examined = seq;
        self->examined_known = true;
    }
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

//  ERROR trimmed: what was asked for is no longer in the live log (herald
//  trim).  The broker's message, then where the live log starts and how
//  to read the rest; exit 1 (the events printed before it are right, and
//  none was skipped).
static int
s_trimmed (s_stream_t *self, const herald_cli_reply_t *reply)
{
    herald_cli_print_error (reply);
    const __typeof__ (reply->body.error) *error = &reply->body.error;
    if (!error->has_first)
        return HERALD_CLI_EXIT_FAIL;
    if (self->request.type == HERALD_MSG_READ) {
        herald_str_t topic = self->request.read.topic;
        fprintf (stderr, "herald: read: the versions of %.*s before %" PRIu64 " were trimmed "
                 "from the live log; its first version still there is %" PRIu64 " (herald read "
                 "%.*s --from-ver %" PRIu64 "); the older ones are in the archive, if one was "
                 "made: herald replay --archive DIR --prefix %.*s\n", (int) topic.len,
                 topic.ptr, error->first, error->first, (int) topic.len, topic.ptr,
                 error->first, (int) topic.len, topic.ptr);
        return HERALD_CLI_EXIT_FAIL;
    }
    const char *command = self->tail? "tail": "replay";
    if (self->printed)
        fprintf (stderr, "herald: %s: stopped after %" PRIu64 " event%s: the events after them "
                 "were trimmed from the live log while the stream ran (none was skipped)\n",
                 command, self->printed, self->printed == 1? "": "s");
    fprintf (stderr, "herald: %s: the first seq still in the live log for %s is %" PRIu64
             " (herald %s --from %" PRIu64 "); the events before it are in the archive, if one "
             "was made: herald replay --archive DIR --continue\n", command,
             self->request.replay.prefix_count? "these prefixes": "the whole log", error->first,
             command, error->first);
    return HERALD_CLI_EXIT_FAIL;
}

//  Handle one reply to the stream.  Returns 0 or an exit code; sets ended.
static int
s_on_reply (s_stream_t *self, herald_cli_reply_t *reply)
{
    if (reply->type == HERALD_MSG_ERROR && self->tail
    &&  reply->body.error.code == HERALD_ERR_OVERLOADED)
        return s_lost (self, "it is overloaded: %.*s", (int) reply->body.error.message.len,
                       reply->body.error.message.ptr ? reply->body.error.message.ptr : "");
    if (reply->type == HERALD_MSG_ERROR && reply->body.error.code == HERALD_ERR_TRIMMED)
        return s_trimmed (self, reply);
    if (reply->type == HERALD_MSG_ERROR)
        return herald_cli_print_error (reply);
    if (!reply->body.has_rid || reply->body.rid != self->request.rid)
        return 0;                   //  a late reply to something else
    if (reply->type == HERALD_MSG_END) {
        self->last = reply->body.end.last;
        self->end_lineage = reply->body.end.lineage;
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
        //  One envelope, or several back to back (we ask for `pack`; a
        //  broker that ignores it sends one per frame): credit counts events
        size_t offset = 0, len;
        const uint8_t *envelope;
        int more;
        while (!s_full (self)
           &&  (more = herald_msg_events_next (zframe_data (frame), zframe_size (frame),
                                               &offset, &envelope, &len)) != 0) {
            //  Not MessagePack: printed as the one bad event it is
            int rc = more < 0? s_emit (self, zframe_data (frame) + offset,
                                       zframe_size (frame) - offset)
                             : s_emit (self, envelope, len);
            if (rc)
                return rc;
            self->unacked++;
            if (more < 0)
                break;
        }
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

//  tail: true when the SUB's monitor says its connection closed.
static bool
s_sub_lost (s_stream_t *self)
{
    int event;
    bool lost = false;
    while ((event = herald_cli_watch_event (self->sub_watch)) != 0)
        if (event != ZMQ_EVENT_HANDSHAKE_SUCCEEDED)
            lost = true;
    return lost;
}

//  Send the request and print until END (or --max).  Under tail, live
//  messages arriving meanwhile are buffered.
static int
s_run_stream (s_stream_t *self)
{
    int rc = herald_cli_conn_send (self->conn, &self->request);
    zsock_t *conn_watch = herald_cli_conn_watch_sock (self->conn);
    zpoller_t *poller = zpoller_new (herald_cli_conn_sock (self->conn), conn_watch, NULL);
    if (!poller)
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "out of memory");
    if (self->sub)
        zpoller_add (poller, self->sub);
    if (self->sub_watch)
        zpoller_add (poller, self->sub_watch);
    int64_t deadline = zclock_mono () + self->opts->timeout_ms;
    while (rc == 0 && !self->ended) {
        int64_t wait = deadline - zclock_mono ();
        void *ready = zpoller_wait (poller, wait > 0 ? (int) wait : 0);
        if (ready == conn_watch) {
            if (!herald_cli_conn_check (self->conn))
                rc = herald_cli_conn_lost (self->conn);
        }
        else
        if (ready == self->sub_watch && self->sub_watch) {
            if (s_sub_lost (self))
                rc = s_lost (self, "it closed the fanout connection");
        }
        else
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
    int rc = herald_cli_conn_open (self->opts, &self->conn);
    if (rc)
        return rc;
    self->request.rid = herald_cli_conn_rid (self->conn);
    //  Packed EVENTS: fewer frames, much cheaper under CURVE; a broker
    //  that does not know the key sends one event per frame, as before
    if (self->request.type == HERALD_MSG_REPLAY) {
        self->request.replay.credit = self->credit;
        self->request.replay.pack = true;
    }
    else {
        self->request.read.credit = self->credit;
        self->request.read.pack = true;
    }
    if (!self->no_header)
        herald_cli_print_table_header (self->opts->format);
    rc = s_run_stream (self);
    herald_cli_conn_destroy (&self->conn);
    return rc;
}

//  replay --archive DIR [--continue]: the archive, then (--continue) the
//  broker from the seq after the archive's last.
static int
s_run_archive (s_stream_t *self, const char *dir, bool go_on)
{
    if (herald_cli_check_request ("replay", &self->request))
        return HERALD_CLI_EXIT_USAGE;
    //  An archive followed by a live log that starts after its end would
    //  print a log with a hole: refused before anything is printed
    int rc = go_on? herald_cli_trim_continue_check (self->opts, dir, &self->request): 0;
    if (rc)
        return rc;
    herald_cli_print_table_header (self->opts->format);
    self->no_header = true;
    uint64_t last = 0;
    bool finished = false, started = false;
    rc = herald_cli_archive_replay (self->opts, dir, &self->request, self->max,
                                    &self->printed, &last, &finished, &started);
    __typeof__ (self->request.replay) *replay = &self->request.replay;
    if (rc || finished || !go_on || (replay->has_to && replay->to <= last))
        return rc;
    //  The broker takes over after the archive's last seq; under --from-ts,
    //  once an archived event was at or after it, every later one is too
    //  (ts never decreases with seq)
    if (started || !replay->has_from_ts) {
        replay->has_from_ts = false;
        if (!replay->has_from || replay->from <= last) {
            replay->has_from = true;
            replay->from = last + 1;
        }
    }
    fflush (stdout);
    return s_run_simple (self);
}

int
herald_cli_replay (herald_cli_opts_t *opts, int argc, char **argv)
{
    s_stream_t self;
    s_stream_init (&self, opts, HERALD_MSG_REPLAY);
    __typeof__ (self.request.replay) *replay = &self.request.replay;
    const char *archive = NULL;
    bool go_on = false;
    int index = 1;
    bool bad = false;
    while (index < argc && !bad) {
        const char *value = NULL;
        if (strcmp (argv [index], "--help") == 0) {
            fputs (s_replay_usage, stdout);
            return HERALD_CLI_EXIT_OK;
        }
        if (strcmp (argv [index], "--continue") == 0) {
            go_on = true;
            index++;
        }
        else
        if (herald_cli_opt (argc, argv, &index, "--archive", &value, &bad))
            archive = value;
        else
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
    if (go_on && !archive)
        return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "replay: --continue goes with --archive "
                                "DIR (see herald replay --help)");
    if (archive)
        return s_run_archive (&self, archive, go_on);
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

#define S_HB_DEFAULT_MS     1000    //  heartbeat-ms's default, until measured
#define S_BACKOFF_MIN_MS    100
#define S_BACKOFF_MAX_MS    2000

//  How long the fanout may be silent before the broker is taken for lost:
//  --timeout, but never less than four heartbeat intervals (three missed
//  and some slack), so a short --timeout cannot cry wolf between beats.
static int
s_silence_ms (s_stream_t *self)
{
    int64_t beats = 4 * (self->hb_interval_ms ? self->hb_interval_ms : S_HB_DEFAULT_MS);
    int64_t limit = self->opts->timeout_ms > beats ? self->opts->timeout_ms : beats;
    return limit > INT32_MAX ? INT32_MAX : (int) limit;
}

//  A failure while (re)connecting: printed at the start, kept in why for
//  the reconnect loop later (which prints it once).  Returns code.
static int
s_tail_fail (s_stream_t *self, int code, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));

static int
s_tail_fail (s_stream_t *self, int code, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    vsnprintf (self->why, sizeof self->why, format, args);
    va_end (args);
    if (!self->quiet)
        herald_cli_fail (code, "%s", self->why);
    return code;
}

//  Drop the connections and whatever they held (it will be replayed).
static void
s_tail_close (s_stream_t *self)
{
    zmsg_t *msg;
    while (self->buffered && (msg = zlist_pop (self->buffered)) != NULL)
        zmsg_destroy (&msg);
    herald_cli_unwatch (self->sub, &self->sub_watch);
    zsock_destroy (&self->sub);
    herald_cli_conn_destroy (&self->conn);
}

//  The store's lineage from WELCOME (or END).  After a loss was accepted
//  with herald repair the seqs after the head it kept belong to new
//  events: say so, and when this tail printed some of them, go back to
//  the kept head so the events stored now under those seqs are printed.
static void
s_tail_lineage (s_stream_t *self, uint64_t lineage, const herald_loss_t *losses,
                size_t loss_count, uint64_t head)
{
    if (!self->synced) {
        self->lineage = lineage;
        return;
    }
    uint64_t kept = UINT64_MAX;
    size_t index;
    for (index = 0; index < loss_count; index++)
        if (losses [index].lineage > self->lineage && losses [index].lost_after < kept)
            kept = losses [index].lost_after;
    if (lineage != self->lineage) {
        if (kept != UINT64_MAX)
            fprintf (stderr, "herald: the broker's store lineage went %" PRIu64 " -> %" PRIu64
                     ": a loss of the events after seq %" PRIu64 " was accepted with "
                     "herald repair\n", self->lineage, lineage, kept);
        else
            fprintf (stderr, "herald: the broker's store lineage went %" PRIu64 " -> %" PRIu64
                     " (its store was replaced?)\n", self->lineage, lineage);
        self->lineage = lineage;
    }
    //  A log shorter than what was printed lost its tail too
    if (self->examined_known && head < self->examined && head < kept)
        kept = head;
    if (self->examined_known && kept < self->examined) {
        fprintf (stderr, "herald: seqs %" PRIu64 "..%" PRIu64 " printed above are not in the "
                 "broker's log any more; printing the events stored under them now\n",
                 kept + 1, self->examined);
        self->examined = kept;
    }
}

//  HELLO: the fanout endpoint (unless --fanout gave it) and the store's
//  lineage.  A broker bound to a wildcard address ("tcp://*:5581",
//  "tcp://0.0.0.0:5581") is reached on the host of the api endpoint.
//  Whether a WELCOME names a scope (a str `scope`: security on, a key that
//  reads one scope through its own fanout).
static bool
s_welcome_scoped (const herald_cli_reply_t *reply)
{
    zframe_t *body = zmsg_first (reply->msg)? zmsg_next (reply->msg): NULL;
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    bool scoped = false;
    if (body && msgpack_unpack_next (&unpacked, (const char *) zframe_data (body),
                                     zframe_size (body), NULL) == MSGPACK_UNPACK_SUCCESS
    &&  unpacked.data.type == MSGPACK_OBJECT_MAP)
        for (uint32_t index = 0; index < unpacked.data.via.map.size; index++) {
            const msgpack_object_kv *kv = &unpacked.data.via.map.ptr [index];
            if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 5
            &&  memcmp (kv->key.via.str.ptr, "scope", 5) == 0)
                scoped = kv->val.type == MSGPACK_OBJECT_STR;
        }
    msgpack_unpacked_destroy (&unpacked);
    return scoped;
}

static int
s_hello (s_stream_t *self)
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
    if (rc == 0 && !self->fanout_opt && herald_cli_secured () && !reply.body.welcome.fanout.len)
        rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "unauthorized: the broker at %s names no "
                              "fanout for this key: it may publish, not read the live stream",
                              self->opts->endpoint);
    if (rc == 0 && !self->fanout_opt) {
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
    if (rc == 0)
        self->scoped = s_welcome_scoped (&reply);
    if (rc == 0)
        s_tail_lineage (self, reply.body.welcome.lineage, reply.body.welcome.losses,
                        reply.body.welcome.loss_count, reply.body.welcome.head);
    herald_cli_reply_fini (&reply);
    return rc;
}

//  One heartbeat: a restarted broker or a new lineage is a reconnect; the
//  head says what was examined.  Returns 0 or S_LOST.
static int
s_on_heartbeat (s_stream_t *self, zframe_t *body)
{
    herald_msg_t beat;
    msgpack_zone zone;
    msgpack_zone_init (&zone, 256);
    herald_error_t err;
    int rc = 0;
    if (herald_msg_decode (&beat, HERALD_MSG_HEARTBEAT, zframe_data (body), zframe_size (body),
                           NULL, &zone, &err) == HERALD_OK) {
        const __typeof__ (beat.heartbeat) *hb = &beat.heartbeat;
        //  A tail that starts live starts at the first heartbeat's head
        if (!self->examined_known) {
            self->examined = hb->head;
            self->examined_known = true;
        }
        if (self->last_hb_ts && hb->ts > self->last_hb_ts
        &&  hb->ts - self->last_hb_ts < 24ULL * 3600 * 1000000000ULL)
            self->hb_interval_ms = (int64_t) ((hb->ts - self->last_hb_ts) / 1000000) + 1;
        self->last_hb_ts = hb->ts;
        if (self->epoch_known && hb->epoch != self->epoch)
            rc = s_lost (self, "it restarted (epoch %" PRIu64 " -> %" PRIu64 ")",
                         self->epoch, hb->epoch);
        else
        if (hb->lineage != self->lineage)
            rc = s_lost (self, "its store's lineage is now %" PRIu64, hb->lineage);
        else
        if (hb->head > self->examined && self->request.replay.prefix_count == 0
        &&  !self->scoped)
            //  Every event reaches an unfiltered SUB: one it did not get
            //  was dropped (the broker's send queue for us was full)
            rc = s_lost (self, "its heartbeat names seq %" PRIu64 ", the last event received "
                         "was seq %" PRIu64, hb->head, self->examined);
        else
        if (hb->head > self->examined)
            self->examined = hb->head;
        self->epoch = hb->epoch;
        self->epoch_known = true;
    }
    msgpack_zone_destroy (&zone);
    return rc;
}

//  One live message: print it unless it is a heartbeat or was printed
//  already.  Returns 0, S_LOST or an exit code.
static int
s_on_live (s_stream_t *self, zmsg_t *msg)
{
    zframe_t *topic = zmsg_first (msg);
    zframe_t *envelope = zmsg_next (msg);
    if (!topic || !envelope)
        return 0;
    if (zframe_size (topic) == 3 && memcmp (zframe_data (topic), "$hb", 3) == 0)
        return s_on_heartbeat (self, envelope);
    if (zframe_size (topic) >= 1 && zframe_data (topic)[0] == '$')
        return 0;
    const char *name;
    size_t name_len;
    uint64_t seq = 0, ver, ts;
    if (!herald_event_peek (zframe_data (envelope), zframe_size (envelope),
                            &name, &name_len, &seq, &ver, &ts))
        return s_emit (self, zframe_data (envelope), zframe_size (envelope));
    if (seq <= self->skip_through || (self->examined_known && seq <= self->examined))
        return 0;
    if (self->examined_known && seq > self->examined + 1
    &&  self->request.replay.prefix_count == 0 && !self->scoped)
        return s_lost (self, "seq %" PRIu64 " came after seq %" PRIu64 " (the events "
                       "between were dropped)", seq, self->examined);
    int rc = herald_cli_print_envelope (self->opts->format, zframe_data (envelope),
                                        zframe_size (envelope));
    self->printed++;
    self->examined = seq;
    self->examined_known = true;
    return rc;
}

//  Print live events until --max, a lost broker (S_LOST) or an error.
static int
s_tail_live (s_stream_t *self)
{
    int rc = s_sub_lost (self) ? s_lost (self, "it closed the fanout connection") : 0;
    zmsg_t *msg;
    while (rc == 0 && !s_full (self) && (msg = zlist_pop (self->buffered)) != NULL) {
        rc = s_on_live (self, msg);
        zmsg_destroy (&msg);
    }
    fflush (stdout);
    zpoller_t *poller = zpoller_new (self->sub, self->sub_watch, NULL);
    if (!poller)
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "out of memory");
    while (rc == 0 && !s_full (self)) {
        int silence = s_silence_ms (self);
        void *ready = zpoller_wait (poller, silence);
        if (!ready) {
            rc = zpoller_terminated (poller)
               ? herald_cli_fail (HERALD_CLI_EXIT_FAIL, "interrupted")
               : s_lost (self, "nothing arrived on its fanout %s for %d ms, not even a "
                         "heartbeat", self->fanout, silence);
            break;
        }
        if (ready == self->sub_watch && s_sub_lost (self)) {
            rc = s_lost (self, "it closed the fanout connection");
            break;
        }
        //  What is queued, without a poll per message (receives do not
        //  block: the SUB's receive timeout is 0)
        while (rc == 0 && !s_full (self) && (msg = zmsg_recv (self->sub)) != NULL) {
            rc = s_on_live (self, msg);
            zmsg_destroy (&msg);
        }
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
    char why [600];
    int rc = herald_cli_probe (self->fanout, self->opts->timeout_ms, why, sizeof why);
    if (rc)
        return s_tail_fail (self, rc == HERALD_CLI_EXIT_USAGE ? HERALD_CLI_EXIT_NO_ANSWER : rc,
                            "broker at %s answered, but its fanout does not: %s",
                            self->opts->endpoint, why);
    self->sub = zsock_new (ZMQ_SUB);
    if (self->sub)
        self->sub_watch = herald_cli_watch (self->sub);
    if (!self->sub || !self->sub_watch)
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "cannot create a socket");
    zsock_set_linger (self->sub, 0);
    zsock_set_rcvhwm (self->sub, 0);
    zsock_set_rcvtimeo (self->sub, 0);
    //  No reconnect by itself: after a restart, what a reconnected SUB
    //  receives follows a gap only a replay can fill, so a lost connection
    //  stays lost (the monitor says so) until s_tail_sync makes a new one
    zsock_set_reconnect_ivl (self->sub, -1);
    if (strncmp (self->fanout, "tcp://[", 7) == 0)
        zsock_set_ipv6 (self->sub, 1);
    herald_cli_secure (self->sub);
    size_t index, count = self->request.replay.prefix_count;
    for (index = 0; index < count; index++)
        zsock_set_subscribe (self->sub, self->prefixes [index].ptr);
    zsock_set_subscribe (self->sub, count ? "$hb" : "");
    if (zsock_connect (self->sub, "%s", self->fanout) != 0)
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "cannot connect to %s: %s",
                                self->fanout, zmq_strerror (zmq_errno ()));
    zpoller_t *poller = zpoller_new (self->sub, self->sub_watch, NULL);
    int silence = s_silence_ms (self);
    int64_t deadline = zclock_mono () + silence;
    bool ready = false;
    int failed = 0;
    //  A handshake the fanout refuses (a key not allowed there) is said
    //  at once, as such, not as silence
    while (!ready && !failed && zclock_mono () < deadline) {
        void *which = zpoller_wait (poller, (int) (deadline - zclock_mono ()));
        if (which == self->sub)
            ready = true;
        else
        if (which == self->sub_watch) {
            int event = herald_cli_watch_event (self->sub_watch);
            if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH
            ||  event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL
            ||  event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL)
                failed = event;
        }
        else
            break;
    }
    zpoller_destroy (&poller);
    char failure [600];
    int code = failed? herald_cli_handshake_failure (failed, self->fanout, failure,
                                                      sizeof failure): 0;
    if (code)
        return herald_cli_fail (code, "%s (fanout)", failure);
    if (!ready)
        return s_tail_fail (self, HERALD_CLI_EXIT_NO_ANSWER, "broker at %s did not answer: "
                            "nothing arrived on its fanout %s for %d ms, not even a heartbeat",
                            self->opts->endpoint, self->fanout, silence);
    return s_buffer_live (self);
}

//  Connect (again): HELLO, subscribe, and catch up from where the output
//  stands (after a loss) or from --from (at the start), so that the live
//  stream continues it with no gap and no duplicate.  Quiet while
//  reconnecting.  Returns 0, S_LOST (why says why) or an exit code.
static int
s_tail_sync (s_stream_t *self)
{
    s_tail_close (self);
    self->last_hb_ts = 0;           //  the interval is measured on one connection
    char before [sizeof self->why];
    snprintf (before, sizeof before, "%s", self->why);
    int rc = self->quiet
           ? herald_cli_conn_open_to (self->opts->endpoint, self->opts->timeout_ms,
                                      self->why, sizeof self->why, &self->conn)
           : herald_cli_conn_open (self->opts, &self->conn);
    if (rc == 0)
        rc = s_hello (self);
    if (rc == 0)
        rc = s_subscribe (self);
    if (rc == 0 && !self->synced)
        herald_cli_print_table_header (self->opts->format);
    if (rc == 0 && (self->synced ? self->examined_known : self->catch_up)) {
        __typeof__ (self->request.replay) *replay = &self->request.replay;
        if (self->synced) {
            replay->has_from = true;
            replay->from = self->examined + 1;
            replay->has_from_ts = false;
        }
        self->request.rid = herald_cli_conn_rid (self->conn);
        replay->credit = self->credit;
        replay->pack = true;
        self->ended = false;
        self->unacked = 0;
        self->last = 0;
        self->end_lineage = self->lineage;
        rc = s_run_stream (self);
        if (rc == 0 && !s_full (self) && self->end_lineage != self->lineage)
            rc = s_lost (self, "its store's lineage is now %" PRIu64, self->end_lineage);
        if (rc == 0 && !s_full (self)) {
            //  Every matching event up to END's last was sent
            if (!self->examined_known || self->last > self->examined)
                self->examined = self->last;
            self->examined_known = true;
            self->skip_through = self->examined;
        }
    }
    if (rc == 0) {
        self->synced = true;
        self->epoch_known = false;  //  this broker's, from its next heartbeat
    }
    if (self->quiet && (rc == HERALD_CLI_EXIT_NO_ANSWER || rc == HERALD_CLI_EXIT_USAGE))
        rc = S_LOST;
    else
    //  Reconnecting, any other failure ends tail (a refused key: retrying
    //  will not help); the connection only wrote it into why: say it
    if (self->quiet && rc != 0 && rc != S_LOST && strcmp (before, self->why) != 0)
        fprintf (stderr, "herald: %s\n", self->why);
    return rc;
}

//  The broker is gone: say so, then try again with a bounded backoff until
//  it is back and caught up (0), or --retry-for ran out (2).
static int
s_tail_reconnect (s_stream_t *self)
{
    const char *api = self->opts->endpoint;
    s_tail_close (self);
    if (self->retry_for_ms == 0)
        return herald_cli_fail (HERALD_CLI_EXIT_NO_ANSWER, "broker at %s gone: %s", api,
                                self->why);
    fprintf (stderr, "herald: broker at %s gone (%s); reconnecting...\n", api, self->why);
    char said [sizeof self->why];
    snprintf (said, sizeof said, "%s", self->why);
    int64_t started = zclock_mono ();
    int64_t backoff = S_BACKOFF_MIN_MS;
    uint64_t from = self->examined + 1, printed = self->printed;
    self->quiet = true;
    int rc = S_LOST;
    while (rc == S_LOST) {
        rc = s_tail_sync (self);
        if (rc != S_LOST)
            break;
        if (strcmp (said, self->why) != 0) {
            fprintf (stderr, "herald: still reconnecting to %s: %s\n", api, self->why);
            snprintf (said, sizeof said, "%s", self->why);
        }
        int64_t waited = zclock_mono () - started;
        if (self->retry_for_ms > 0 && waited >= self->retry_for_ms) {
            rc = herald_cli_fail (HERALD_CLI_EXIT_NO_ANSWER, "broker at %s gone for %" PRId64
                                  " ms, giving up (--retry-for): %s", api, waited, self->why);
            break;
        }
        int64_t pause = backoff;
        if (self->retry_for_ms > 0 && pause > self->retry_for_ms - waited)
            pause = self->retry_for_ms - waited;
        zclock_sleep ((int) pause);
        backoff = backoff * 2 > S_BACKOFF_MAX_MS ? S_BACKOFF_MAX_MS : backoff * 2;
    }
    self->quiet = false;
    if (rc == 0)
        fprintf (stderr, "herald: reconnected to %s; caught up from seq %" PRIu64
                 " (%" PRIu64 " event%s), live again\n", api,
                 from <= self->examined + 1 ? from : self->examined + 1,
                 self->printed - printed, self->printed - printed == 1 ? "" : "s");
    return rc;
}

int
herald_cli_tail (herald_cli_opts_t *opts, int argc, char **argv)
{
    s_stream_t self;
    s_stream_init (&self, opts, HERALD_MSG_REPLAY);
    self.tail = true;
    self.retry_for_ms = -1;
    int index = 1;
    bool bad = false;
    while (index < argc && !bad) {
        const char *value = NULL;
        uint64_t number = 0;
        if (strcmp (argv [index], "--help") == 0) {
            fputs (s_tail_usage, stdout);
            return HERALD_CLI_EXIT_OK;
        }
        if (argv [index][0] != '-') {
            if (s_add_prefix (&self, argv [index++]))
                return HERALD_CLI_EXIT_USAGE;
        }
        else
        if (herald_cli_opt (argc, argv, &index, "--fanout", &value, &bad)) {
            if (value && herald_cli_endpoint ("--fanout", value, self.fanout_opt_buf,
                                              sizeof self.fanout_opt_buf))
                self.fanout = self.fanout_opt = self.fanout_opt_buf;
            else
                bad = true;
        }
        else
        if (herald_cli_opt (argc, argv, &index, "--retry-for", &value, &bad)) {
            bad = bad || !herald_cli_uint ("--retry-for", value, &number);
            if (!bad && number > INT64_MAX / 2) {
                herald_cli_fail (HERALD_CLI_EXIT_USAGE, "--retry-for: too large");
                bad = true;
            }
            self.retry_for_ms = (int64_t) number;
        }
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
    if (rc == 0)
        rc = s_tail_sync (&self);
    if (rc == S_LOST)               //  (not while quiet: cannot happen at the start)
        rc = herald_cli_fail (HERALD_CLI_EXIT_NO_ANSWER, "broker at %s: %s",
                              opts->endpoint, self.why);
    //  A catch-up at the start that had reached --max prints the rest of it
    while (rc == 0 && !s_full (&self)) {
        rc = s_tail_live (&self);
        if (rc == S_LOST)
            rc = s_tail_reconnect (&self);
    }
    s_tail_close (&self);
    zlist_destroy (&self.buffered);
    return rc;
}
