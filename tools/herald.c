/*  =========================================================================
    herald - the command-line client: publish, replay, read, tail, status,
    the offline check of a data directory, and a cluster's status

        herald [--endpoint E] [--timeout MS] [--format json|table]
               [--key FILE] [--server-key KEY|@FILE] COMMAND ...

    This file holds main(), the option helpers every command uses, and the
    two small commands, pub and status.  The streams (replay, read, tail)
    are in herald_cli_stream.c, printing in herald_cli_output.c, the api
    connection in herald_cli_conn.c, inspect in herald_cli_inspect.c, repair
    in herald_cli_repair.c, cluster status in herald_cli_cluster.c, cluster
    add/remove/transfer in herald_cli_members.c, keygen and acl check in
    herald_cli_security.c, sub in herald_cli_sub.c, groups and group in
    herald_cli_groups.c.

    DESIGN (pub)
    Events go out in PUBLISH batches through a window of requests in
    flight: the broker answers one client's PUBLISHes in the order they
    arrived, so the oldest outstanding batch is always the next reply, and
    a ring of `window` slots is all the bookkeeping needed.  A slot owns its
    events' ids and bytes until its ACK is printed.  The first ERROR ends
    the run (earlier batches stay stored; later ones may be stored too, as
    they were already sent - a rerun with the same ids is a safe retry).
    =========================================================================
*/

#include "herald_cli.h"
#include "herald_uuid.h"
#include "herald_exposition.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#define S_META_MAX          HERALD_META_MAX_ENTRIES
#define S_BATCH_BYTES_MAX   (4 * 1024 * 1024)

static const char *s_usage =
    "usage: herald [--endpoint E] [--timeout MS] [--format json|table]\n"
    "              [--key FILE] [--server-key KEY|@FILE] COMMAND [ARGS]\n"
    "\n"
    "Commands:\n"
    "  pub TOPIC [DATA]     publish DATA, or one event per stdin line\n"
    "  tail [PREFIX...]     print live events (optionally catching up first)\n"
    "  replay               print stored events in seq order, then exit\n"
    "  read TOPIC           print one topic's events in ver order, then exit\n"
    "  archive --until-seq N|--until-ts T --to DIR   copy events into archive files\n"
    "  archive verify DIR   check an archive's every checksum and envelope\n"
    "  status               print the broker's STATUS\n"
    "  inspect --data-dir D check a stopped broker's data directory offline\n"
    "  repair --data-dir D  report a damaged store; with --accept-loss, keep what\n"
    "                       is readable and record the loss for agents\n"
    "  cluster status       every node's role, term, head and log digest, compared\n"
    "  cluster add|remove|transfer  change a cluster's members, move its leadership\n"
    "  keygen NAME          make a CURVE keypair (NAME.key, NAME.key_secret)\n"
    "  acl check FILE       check an ACL file offline and print it normalised\n"
    "  acl reload|show      make the broker re-read its ACL now; print the ACL in force\n"
    "  whoami               who the broker takes this key for: user, scope, grants\n"
    "  groups               the broker's consumer groups: members, committed, lag\n"
    "  group show|reset|delete NAME  one group: members, partitions; rewind; forget\n"
    "  sub list|show|reset|delete --state-dir DIR  an agent's local subscriptions\n"
    "                       (its checkpoints, offline): list, show, rewind, remove\n"
    "  backup --to DIR      an online backup, written by the broker on its host\n"
    "  backup verify DIR    check a backup's manifest and every file's checksum\n"
    "  restore --from DIR --data-dir D  restore a backup offline, checked first\n"
    "  trim --archive DIR   remove archived events from the live log (proved by\n"
    "                       the archive's ids); trim --unarchived: without proof\n"
    "\n"
    "Common options (before or after the command):\n"
    "  --endpoint E         the broker's api endpoint (default " HERALD_CLI_ENDPOINT "):\n"
    "                       tcp://HOST:PORT, HOST:PORT, :PORT (this host) or ipc://PATH;\n"
    "                       a cluster's nodes: E1,E2,... (the first that answers;\n"
    "                       pub follows the leader a follower names)\n"
    "  --timeout MS         how long to wait for any reply (default 5000)\n"
    "  --format F           json (one object per line, default) or table\n"
    "  --key FILE           security: this client's secret key file (NAME.key_secret,\n"
    "                       mode 0600; default $HERALD_KEY); CURVE on every connection\n"
    "  --server-key K       the broker's public key: Z85, or @FILE (its public cert);\n"
    "                       NEW,OLD during a broker-key rotation (default\n"
    "                       $HERALD_SERVER_KEY)\n"
    "  -h, --help           this text; `herald help COMMAND` for a command's options\n"
    "\n"
    "Events print as {\"seq\",\"ver\",\"ts\",\"topic\",\"id\",\"type\",\"schema\",\"meta\",\"data\"};\n"
    "a payload that is not UTF-8 is given as \"data_b64\" instead of \"data\".\n"
    "Times (--from-ts, --until-ts): 2026-12-02T16:35:47Z, 2026-12-02, now, -1h,\n"
    "1796229347s (see herald replay --help); table output prints them that way.\n"
    "Exit status: 0 ok; 1 an error (printed as `herald: CODE: message`);\n"
    "2 no broker answered (nothing listens at E, said at once; or no reply within\n"
    "--timeout); 64 a usage error, found before anything is sent.  A key the\n"
    "broker refuses is exit 1: \"the broker at E refused this key (unknown, revoked\n"
    "or expired)\"; a request outside the key's grants is `herald: unauthorized: ...`.\n";

static const char *s_pub_usage =
    "usage: herald pub TOPIC [DATA] [options]\n"
    "\n"
    "Publish DATA as one event to TOPIC; without DATA, publish one event per\n"
    "non-empty line of stdin (the newline is not part of the data): from a\n"
    "terminal, each line as you press Enter (Ctrl-D ends); from a pipe or a file,\n"
    "in batches.  Prints one line per event: {\"seq\",\"ver\",\"dup\",\"id\"}.\n"
    "\n"
    "  --type T             the events' type name\n"
    "  --schema N           the schema version of the data\n"
    "  --meta K=V           a meta entry (repeatable; K 1-64 bytes, each once)\n"
    "  --id UUID            the event id (one event only; default a fresh UUIDv7)\n"
    "  --expect N           the topic's version must be N before the first event;\n"
    "                       each further event expects one more (N+1, N+2, ...)\n"
    "  --count N            load test: publish N generated events (DATA, or\n"
    "                       {\"n\":I} when no DATA), print progress on stderr and\n"
    "                       a summary with events/s instead of one line per event\n"
    "  --batch N            events per PUBLISH (default 100, at most 1000; 1 when\n"
    "                       stdin is a terminal)\n"
    "  --window N           PUBLISH requests in flight (default 16; 1 without --count)\n"
    "\n"
    "A topic is 1-255 bytes of UTF-8, no NUL, not starting with $.  Give -- before\n"
    "DATA that starts with '-'.\n";

static const char *s_status_usage =
    "usage: herald status [--format json|table|prometheus|openmetrics]\n"
    "\n"
    "Print the broker's STATUS reply: head, topics, events, role, node, uptime_s,\n"
    "lineage and losses (the losses an operator accepted with herald repair),\n"
    "and the broker's other counters.  --format prometheus (or openmetrics) asks\n"
    "for the broker's histograms too and prints the text heraldd --metrics serves\n"
    "on /metrics (docs/metrics.md), for scraping without HTTP.\n";

int
herald_cli_fail (int code, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    fputs ("herald: ", stderr);
    vfprintf (stderr, format, args);
    fputc ('\n', stderr);
    va_end (args);
    return code;
}

bool
herald_cli_opt (int argc, char **argv, int *index, const char *name,
                const char **value, bool *bad)
{
    const char *arg = argv [*index];
    size_t len = strlen (name);
    if (strncmp (arg, name, len) != 0)
        return false;
    if (arg [len] == '=') {
        *value = arg + len + 1;
        (*index)++;
        return true;
    }
    if (arg [len] != 0)
        return false;
    if (*index + 1 >= argc) {
        herald_cli_fail (HERALD_CLI_EXIT_USAGE, "%s needs a value", name);
        *bad = true;
        (*index)++;
        return true;
    }
    *value = argv [*index + 1];
    *index += 2;
    return true;
}

//  text as a decimal uint64: digits only (strtoull alone would take " 5",
//  "+5" and "-5", the last as a huge number).  Prints nothing.
static bool
s_parse_uint (const char *text, uint64_t *value)
{
    char *end = NULL;
    if (*text < '0' || *text > '9')
        return false;
    errno = 0;
    unsigned long long parsed = strtoull (text, &end, 10);
    if (*end || errno)
        return false;
    *value = parsed;
    return true;
}

bool
herald_cli_uint (const char *option, const char *text, uint64_t *value)
{
    if (s_parse_uint (text, value))
        return true;
    herald_cli_fail (HERALD_CLI_EXIT_USAGE, "%s: '%s' is not a whole number", option, text);
    return false;
}

bool
herald_cli_positive (const char *option, const char *text, uint64_t *value)
{
    if (s_parse_uint (text, value) && *value > 0)
        return true;
    herald_cli_fail (HERALD_CLI_EXIT_USAGE, "%s: '%s' is not a whole number of at least 1%s",
                     option, text, strcmp (option, "--max") == 0 ? " (leave --max out for "
                     "no limit)" : "");
    return false;
}

bool
herald_cli_common_opt (herald_cli_opts_t *opts, int argc, char **argv, int *index,
                       bool *bad)
{
    const char *value = NULL;
    uint64_t number;
    if (herald_cli_opt (argc, argv, index, "--endpoint", &value, bad)) {
        if (value && herald_cli_endpoint ("--endpoint", value, opts->endpoint_buf,
                                          sizeof opts->endpoint_buf))
            opts->endpoint = opts->endpoint_buf;
        else
        if (value)
            *bad = true;
    }
    else
    if (herald_cli_opt (argc, argv, index, "--timeout", &value, bad)) {
        if (value && s_parse_uint (value, &number) && number > 0
        &&  number <= 24 * 3600 * 1000)
            opts->timeout_ms = (int) number;
        else
        if (value) {
            herald_cli_fail (HERALD_CLI_EXIT_USAGE, "--timeout: '%s' is not 1 .. 86400000 "
                             "(milliseconds)", value);
            *bad = true;
        }
    }
    else
    if (herald_cli_opt (argc, argv, index, "--key", &value, bad)) {
        if (value && !*value) {
            herald_cli_fail (HERALD_CLI_EXIT_USAGE, "--key: give the path of this client's "
                             "secret key file (NAME.key_secret)");
            *bad = true;
        }
        herald_cli_security_opt (value, NULL);
    }
    else
    if (herald_cli_opt (argc, argv, index, "--server-key", &value, bad)) {
        if (value && !*value) {
            herald_cli_fail (HERALD_CLI_EXIT_USAGE, "--server-key: give the broker's public "
                             "key (Z85) or @FILE");
            *bad = true;
        }
        herald_cli_security_opt (NULL, value);
    }
    else
    if (herald_cli_opt (argc, argv, index, "--format", &value, bad)) {
        if (value && strcmp (value, "json") == 0)
            opts->format = HERALD_CLI_JSON;
        else
        if (value && strcmp (value, "table") == 0)
            opts->format = HERALD_CLI_TABLE;
        else
        if (value) {
            herald_cli_fail (HERALD_CLI_EXIT_USAGE, "--format: '%s' is not json or table%s", value,
                             strcmp (value, "prometheus") == 0
                             || strcmp (value, "openmetrics") == 0
                             ? " (herald status --format prometheus|openmetrics takes it, after "
                               "the command name)": "");
            *bad = true;
        }
        opts->format_set = true;
    }
    else
        return false;
    return true;
}

//  ---------------------------------------------------------------------
//  pub

typedef struct {
    uint64_t rid;                   //  0: slot free
    herald_event_t *events;
    size_t count;
    char *bytes;                    //  the events' data (owned)
    size_t bytes_len;
    size_t bytes_cap;
} s_slot_t;

typedef struct {
    herald_cli_opts_t *opts;
    herald_cli_conn_t *conn;
    const char *topic;
    const char *data;               //  NULL: stdin lines (unless count)
    const char *type;
    bool has_schema;
    uint64_t schema;
    herald_kv_t meta [S_META_MAX];
    size_t meta_count;
    bool has_id;
    uint8_t id [HERALD_ID_BYTES];
    bool has_expect;
    uint64_t expect;                //  for the next event made
    bool load;                      //  --count given
    uint64_t count;
    size_t batch;
    size_t window;
    //  Progress
    uint64_t made;                  //  events put in batches
    uint64_t acked;
    uint64_t dups;
    bool input_done;
    bool typing;                    //  stdin is a terminal: one event per line, at once
    char *line;                     //  getline's buffer
    size_t line_cap;
    int64_t last_progress;
    bool tty;                       //  stderr is a terminal
    //  A cluster: where ERROR not_leader sends the batches in flight
    char move_to [HERALD_CLI_ENDPOINT_MAX];
    unsigned moves;                 //  since the last ACK
} s_pub_t;

#define S_MOVE          (-2)        //  s_await_ack: not the leader, go to move_to
#define S_MOVES_MAX     10          //  in a row, without an ACK

//  Append len bytes to the slot's storage; returns their offset, or -1.
static ssize_t
s_slot_store (s_slot_t *slot, const void *bytes, size_t len)
{
    if (slot->bytes_len + len > slot->bytes_cap) {
        size_t cap = slot->bytes_cap ? slot->bytes_cap : 4096;
        while (cap < slot->bytes_len + len)
            cap *= 2;
        char *grown = realloc (slot->bytes, cap);
        if (!grown)
            return -1;
        slot->bytes = grown;
        slot->bytes_cap = cap;
    }
    memcpy (slot->bytes + slot->bytes_len, bytes, len);
    slot->bytes_len += len;
    return (ssize_t) (slot->bytes_len - len);
}

//  The next event's data into *data, *len (stdin, DATA or generated).
//  Returns 1, 0 at the end of the input, -1 on a read error (printed).
static int
s_next_data (s_pub_t *self, char *scratch, size_t scratch_size, const char **data,
             size_t *len)
{
    if (self->load) {
        if (self->made >= self->count)
            return 0;
        if (self->data) {
            *data = self->data;
            *len = strlen (self->data);
        }
        else {
            *len = (size_t) snprintf (scratch, scratch_size, "{\"n\":%" PRIu64 "}",
                                      self->made + 1);
            *data = scratch;
        }
        return 1;
    }
    if (self->data) {
        if (self->made > 0)
            return 0;
        *data = self->data;
        *len = strlen (self->data);
        return 1;
    }
    while (true) {
        errno = 0;
        ssize_t got = getline (&self->line, &self->line_cap, stdin);
        if (got < 0) {
            if (errno && !feof (stdin))
                return herald_cli_fail (-1, "cannot read stdin: %s", strerror (errno));
            return 0;
        }
        while (got > 0 && (self->line [got - 1] == '\n' || self->line [got - 1] == '\r'))
            got--;
        if (got > 0) {
            *data = self->line;
            *len = (size_t) got;
            return 1;
        }
    }
}

//  Fill slot with the next batch.  Returns the number of events (0 at the
//  end of input), or -1.
static int
s_fill (s_pub_t *self, s_slot_t *slot)
{
    slot->count = 0;
    slot->bytes_len = 0;
    //  Data offsets first: storage may move while it grows
    size_t offsets [HERALD_MAX_BATCH];
    char scratch [32];
    while (slot->count < self->batch && slot->bytes_len < S_BATCH_BYTES_MAX) {
        const char *data = NULL;
        size_t len = 0;
        int rc = s_next_data (self, scratch, sizeof scratch, &data, &len);
        if (rc < 0)
            return -1;
        if (rc == 0) {
            self->input_done = true;
            break;
        }
        ssize_t offset = s_slot_store (slot, data, len);
        if (offset < 0)
            return herald_cli_fail (-1, "out of memory");
        offsets [slot->count] = (size_t) offset;
        herald_event_t *event = &slot->events [slot->count];
        memset (event, 0, sizeof *event);
        if (self->has_id)
            memcpy (event->id, self->id, HERALD_ID_BYTES);
        else
            herald_uuid_v7 (event->id);
        event->topic = self->topic;
        event->topic_len = strlen (self->topic);
        if (self->type) {
            event->type = self->type;
            event->type_len = strlen (self->type);
        }
        event->has_schema = self->has_schema;
        event->schema = self->schema;
        if (self->meta_count) {
            event->meta = self->meta;
            event->meta_count = self->meta_count;
        }
        event->data_len = len;
        event->has_expect = self->has_expect;
        event->expect = self->expect++;
        slot->count++;
        self->made++;
    }
    size_t index;
    for (index = 0; index < slot->count; index++)
        slot->events [index].data = (const uint8_t *) slot->bytes + offsets [index];
    return (int) slot->count;
}

static int
s_send_slot (s_pub_t *self, s_slot_t *slot)
{
    herald_msg_t msg = { .type = HERALD_MSG_PUBLISH, .has_rid = true };
    msg.rid = slot->rid = herald_cli_conn_rid (self->conn);
    msg.publish.events = slot->events;
    msg.publish.count = slot->count;
    return herald_cli_conn_send (self->conn, &msg);
}

//  --count's progress on stderr.  A terminal gets one line rewritten in
//  place (\r) five times a second; a file or a pipe (a log, CI) gets a
//  plain line at the first ACK, every 10 s and at the end, so it reads as
//  text, not as one long line of carriage returns.
static void
s_progress (s_pub_t *self, bool final)
{
    int64_t now = zclock_mono ();
    if (!final && self->last_progress
    &&  now - self->last_progress < (self->tty ? 200 : 10000))
        return;
    self->last_progress = now;
    fprintf (stderr, "%sherald: published %" PRIu64 "/%" PRIu64 " events%s",
             self->tty ? "\r" : "", self->acked, self->count,
             self->tty && !final ? "" : "\n");
    fflush (stderr);
}

//  Print one line per event of an ACK (not under --count).
static void
s_print_ack (s_pub_t *self, const s_slot_t *slot, const herald_msg_t *ack)
{
    size_t index;
    for (index = 0; index < ack->ack.count && index < slot->count; index++) {
        char id [HERALD_UUID_STR_LEN + 1];
        herald_uuid_format (slot->events [index].id, id);
        bool reused = ack->ack.reused && ack->ack.reused [index];
        if (self->opts->format == HERALD_CLI_TABLE)
            printf ("seq %-8" PRIu64 " ver %-6" PRIu64 " %s%s\n", ack->ack.seq [index],
                    ack->ack.ver [index], id,
                    reused? " (id reused with other content: NOT stored)"
                          : ack->ack.dup [index] ? " (duplicate)" : "");
        else {
            //  No topic: a duplicate's ACK names where the id was first stored,
            //  which need not be the topic asked for
            printf ("{\"seq\":%" PRIu64 ",\"ver\":%" PRIu64 ",\"dup\":%s,%s\"id\":\"%s\"}\n",
                    ack->ack.seq [index], ack->ack.ver [index],
                    ack->ack.dup [index] ? "true" : "false",
                    reused? "\"reused\":true,": "", id);
        }
    }
    if (self->typing)
        fflush (stdout);
}

//  Await the reply to the oldest slot.  Returns 0 or an exit code.
static int
s_await_ack (s_pub_t *self, s_slot_t *slot)
{
    herald_cli_reply_t reply;
    int rc = herald_cli_conn_recv (self->conn, &reply);
    if (rc == 0) {
        const __typeof__ (reply.body.error) *error = &reply.body.error;
        //  A follower: publish to the leader it names, or while it knows
        //  none, to the next node of --endpoint's list (the ids are the
        //  client's: a batch stored before the leadership was lost comes
        //  back as duplicates with its seqs)
        if (reply.type == HERALD_MSG_ERROR && error->code == HERALD_ERR_NOT_LEADER
        &&  self->moves < S_MOVES_MAX
        &&  (error->leader.ptr
             ? snprintf (self->move_to, sizeof self->move_to, "%.*s", (int) error->leader.len,
                         error->leader.ptr) < (int) sizeof self->move_to
             : herald_cli_endpoint_next (self->opts->endpoint,
                                         herald_cli_conn_endpoint (self->conn),
                                         self->move_to, sizeof self->move_to)))
            rc = S_MOVE;
        else
        if (reply.type == HERALD_MSG_ERROR)
            rc = herald_cli_print_error (&reply);
        else
        if (reply.type != HERALD_MSG_ACK || reply.body.rid != slot->rid
        ||  reply.body.ack.count != slot->count)
            rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "unexpected %s reply to PUBLISH",
                                  herald_msg_command (reply.type));
        else {
            size_t index;
            for (index = 0; index < reply.body.ack.count; index++) {
                self->dups += reply.body.ack.dup [index];
                //  Not stored, and not a retry: never a silent success
                if (reply.body.ack.reused && reply.body.ack.reused [index]) {
                    char id [HERALD_UUID_STR_LEN + 1];
                    herald_uuid_format (slot->events [index].id, id);
                    rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "pub: id %s is already stored, "
                                          "at seq %" PRIu64 ", with another topic or data: "
                                          "this event was not stored", id,
                                          reply.body.ack.seq [index]);
                }
            }
            self->acked += slot->count;
            self->moves = 0;
            if (self->load)
                s_progress (self, false);
            else
                s_print_ack (self, slot, &reply.body);
            slot->rid = 0;
        }
    }
    herald_cli_reply_fini (&reply);
    return rc;
}

//  Connect to move_to and send every batch in flight there again, in
//  order, with the same ids.  A move to a node named by nobody (the
//  list's next) waits 50 ms, doubling to 1 s, while moves do not lead to
//  an ACK.
static int
s_move (s_pub_t *self, s_slot_t *slots, size_t head, size_t inflight)
{
    int wait_ms = 50 << (self->moves < 5 ? self->moves : 5);
    zclock_sleep (wait_ms > 1000 ? 1000 : wait_ms);
    self->moves++;
    herald_cli_conn_destroy (&self->conn);
    char why [600];
    int rc = herald_cli_conn_open_to (self->move_to, self->opts->timeout_ms, why, sizeof why,
                                      &self->conn);
    if (rc)
        return herald_cli_fail (rc, "pub: not the leader, and %s", why);
    herald_cli_conn_quiet_off (self->conn);
    for (size_t index = 0; rc == 0 && index < inflight; index++)
        rc = s_send_slot (self, &slots [(head + index) % self->window]);
    return rc;
}

//  The window loop: keep up to `window` batches in flight until the input
//  ends and every batch is acknowledged.
static int
s_pub_run (s_pub_t *self, s_slot_t *slots)
{
    size_t head = 0, inflight = 0;
    int rc = 0;
    while (rc == 0 && (!self->input_done || inflight > 0)) {
        while (rc == 0 && !self->input_done && inflight < self->window) {
            s_slot_t *slot = &slots [(head + inflight) % self->window];
            int filled = s_fill (self, slot);
            if (filled < 0)
                rc = HERALD_CLI_EXIT_FAIL;
            else
            if (filled > 0) {
                rc = s_send_slot (self, slot);
                inflight++;
            }
        }
        if (rc == 0 && inflight > 0) {
            rc = s_await_ack (self, &slots [head]);
            if (rc == S_MOVE)
                rc = s_move (self, slots, head, inflight);
            else {
                head = (head + 1) % self->window;
                inflight--;
            }
        }
    }
    return rc;
}

//  Parse pub's options into self.  Returns 0 or an exit code.
static int
s_pub_parse (s_pub_t *self, int argc, char **argv)
{
    const char *positional [2] = { NULL, NULL };
    size_t positional_count = 0;
    bool bad = false, no_more_options = false;
    int index = 1;
    while (index < argc && !bad) {
        const char *value = NULL;
        uint64_t number = 0;
        const char *arg = argv [index];
        if (no_more_options || arg [0] != '-' || arg [1] == 0) {
            if (positional_count == 2)
                return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "pub: unexpected '%s' "
                                                               "(see herald pub --help)", arg);
            positional [positional_count++] = arg;
            index++;
        }
        else
        if (strcmp (arg, "--") == 0) {
            no_more_options = true;
            index++;
        }
        else
        if (strcmp (arg, "--help") == 0) {
            fputs (s_pub_usage, stdout);
            exit (HERALD_CLI_EXIT_OK);
        }
        else
        if (herald_cli_common_opt (self->opts, argc, argv, &index, &bad))
            ;
        else
        if (herald_cli_opt (argc, argv, &index, "--type", &value, &bad))
            self->type = value;
        else
        if (herald_cli_opt (argc, argv, &index, "--schema", &value, &bad)) {
            bad = bad || !herald_cli_uint ("--schema", value, &self->schema);
            self->has_schema = true;
        }
        else
        if (herald_cli_opt (argc, argv, &index, "--meta", &value, &bad)) {
            const char *equals = value ? strchr (value, '=') : NULL;
            if (!bad && !herald_cli_meta_ok (value, equals))
                return HERALD_CLI_EXIT_USAGE;
            if (!bad && self->meta_count == S_META_MAX)
                return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "--meta: at most %d entries",
                                        S_META_MAX);
            size_t key_len = equals ? (size_t) (equals - value) : 0, other;
            for (other = 0; !bad && other < self->meta_count; other++)
                if (self->meta [other].key_len == key_len
                &&  memcmp (self->meta [other].key, value, key_len) == 0)
                    return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "--meta: key '%.*s' given "
                                            "twice", (int) key_len, value);
            if (!bad)
                self->meta [self->meta_count++] = (herald_kv_t) {
                    value, key_len, equals + 1, strlen (equals + 1) };
        }
        else
        if (herald_cli_opt (argc, argv, &index, "--id", &value, &bad)) {
            if (!bad && !herald_uuid_parse (value, strlen (value), self->id))
                return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "--id: '%s' is not a UUID", value);
            self->has_id = true;
        }
        else
        if (herald_cli_opt (argc, argv, &index, "--expect", &value, &bad)) {
            bad = bad || !herald_cli_uint ("--expect", value, &self->expect);
            self->has_expect = true;
        }
        else
        if (herald_cli_opt (argc, argv, &index, "--count", &value, &bad)) {
            bad = bad || !herald_cli_uint ("--count", value, &self->count);
            self->load = true;
        }
        else
        if (herald_cli_opt (argc, argv, &index, "--batch", &value, &bad)) {
            bad = bad || !herald_cli_uint ("--batch", value, &number);
            if (!bad && (number < 1 || number > HERALD_MAX_BATCH))
                return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "--batch: give 1 .. %d",
                                        HERALD_MAX_BATCH);
            self->batch = (size_t) number;
        }
        else
        if (herald_cli_opt (argc, argv, &index, "--window", &value, &bad)) {
            bad = bad || !herald_cli_uint ("--window", value, &number);
            if (!bad && (number < 1 || number > 1024))
                return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "--window: give 1 .. 1024");
            self->window = (size_t) number;
        }
        else
            return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "pub: unknown option '%s' "
                                                           "(see herald pub --help)", arg);
    }
    if (bad)
        return HERALD_CLI_EXIT_USAGE;
    if (!positional [0])
        return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "pub: give a TOPIC (see herald pub --help)");
    self->topic = positional [0];
    self->data = positional [1];
    if (!herald_cli_topic_ok ("pub", self->topic))
        return HERALD_CLI_EXIT_USAGE;
    if (self->type && (strlen (self->type) > HERALD_TYPE_MAX
                   ||  !herald_utf8_valid (self->type, strlen (self->type))))
        return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "--type: a type must be 0-%d bytes "
                                "of UTF-8 (this one is %zu bytes%s)", HERALD_TYPE_MAX,
                                strlen (self->type), strlen (self->type) > HERALD_TYPE_MAX
                                ? "" : ", not UTF-8");
    if (self->has_id && (self->load || !self->data))
        return herald_cli_fail (HERALD_CLI_EXIT_USAGE,
                                "pub: --id names one event; give DATA and no --count");
    if (self->load && self->count == 0)
        return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "--count: give at least 1");
    if (self->window == 0)
        self->window = self->load ? 16 : 1;
    //  Lines typed at a terminal go out as they are typed; a pipe or a
    //  file is read in batches
    self->typing = !self->data && !self->load && isatty (STDIN_FILENO);
    if (self->batch == 0)
        self->batch = self->typing ? 1 : 100;
    return 0;
}

static int
s_cmd_pub (herald_cli_opts_t *opts, int argc, char **argv)
{
    s_pub_t self = { .opts = opts, .tty = isatty (STDERR_FILENO) };
    int rc = s_pub_parse (&self, argc, argv);
    if (rc)
        return rc;
    rc = herald_cli_conn_open (opts, &self.conn);
    if (rc)
        return rc;
    if (self.typing)
        fprintf (stderr, "herald: reading events for %s from stdin, one per line, each "
                 "published when you press Enter; Ctrl-D ends\n", self.topic);
    s_slot_t *slots = calloc (self.window, sizeof *slots);
    size_t index;
    for (index = 0; slots && index < self.window; index++)
        if (!(slots [index].events = calloc (self.batch, sizeof (herald_event_t))))
            break;
    int64_t started = zclock_usecs ();
    if (!slots || index < self.window)
        rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "out of memory");
    else {
        rc = s_pub_run (&self, slots);
        if (self.load)
            s_progress (&self, true);
    }
    double seconds = (double) (zclock_usecs () - started) / 1e6;
    if (rc == 0 && self.load) {
        double rate = seconds > 0 ? (double) self.acked / seconds : 0;
        if (opts->format == HERALD_CLI_TABLE)
            printf ("published %" PRIu64 " events (%" PRIu64 " duplicates) in %.3f s: "
                    "%.0f events/s\n", self.acked, self.dups, seconds, rate);
        else
            printf ("{\"events\":%" PRIu64 ",\"duplicates\":%" PRIu64 ",\"seconds\":%.6f,"
                    "\"events_per_s\":%.1f}\n", self.acked, self.dups, seconds, rate);
    }
    for (index = 0; slots && index < self.window; index++) {
        free (slots [index].events);
        free (slots [index].bytes);
    }
    free (slots);
    free (self.line);
    herald_cli_conn_destroy (&self.conn);
    return rc;
}

//  ---------------------------------------------------------------------
//  status

//  --format prometheus / openmetrics (status only) at argv[*index]: true
//  and *exposition set, *index past it.
static bool
s_exposition_opt (int argc, char **argv, int *index, int *exposition)
{
    const char *value = NULL;
    int used = 1;
    if (strncmp (argv [*index], "--format=", 9) == 0)
        value = argv [*index] + 9;
    else
    if (strcmp (argv [*index], "--format") == 0 && *index + 1 < argc) {
        value = argv [*index + 1];
        used = 2;
    }
    if (!value)
        return false;
    if (strcmp (value, "prometheus") == 0)
        *exposition = HERALD_EXPOSITION_PROMETHEUS;
    else
    if (strcmp (value, "openmetrics") == 0)
        *exposition = HERALD_EXPOSITION_OPENMETRICS;
    else
        return false;
    *index += used;
    return true;
}

//  The STATUS body as exposition text (herald_exposition, as /metrics).
static int
s_print_exposition (int exposition, zframe_t *body)
{
    size_t len = 0;
    char *text = body? herald_exposition_text (zframe_data (body), zframe_size (body),
                                               (herald_exposition_format_t) exposition, &len)
                     : NULL;
    if (!text)
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "the STATUS reply could not be turned "
                                                      "into %s text", exposition
                                                      == HERALD_EXPOSITION_OPENMETRICS
                                                      ? "OpenMetrics": "Prometheus");
    fwrite (text, 1, len, stdout);
    free (text);
    return HERALD_CLI_EXIT_OK;
}

static int
s_cmd_status (herald_cli_opts_t *opts, int argc, char **argv)
{
    int index = 1;
    bool bad = false;
    int exposition = -1;                //  --format prometheus|openmetrics
    while (index < argc && !bad) {
        if (strcmp (argv [index], "--help") == 0) {
            fputs (s_status_usage, stdout);
            return HERALD_CLI_EXIT_OK;
        }
        if (s_exposition_opt (argc, argv, &index, &exposition))
            continue;
        if (!herald_cli_common_opt (opts, argc, argv, &index, &bad))
            return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "status: unexpected '%s' "
                                                           "(see herald status --help)",
                                    argv [index]);
    }
    if (bad)
        return HERALD_CLI_EXIT_USAGE;
    herald_cli_conn_t *conn = NULL;
    int rc = herald_cli_conn_open (opts, &conn);
    if (rc)
        return rc;
    herald_msg_t request = { .type = HERALD_MSG_STATUS, .has_rid = true };
    request.rid = herald_cli_conn_rid (conn);
    //  The histograms too (an addition: a broker before it leaves them out)
    static const char histograms [] = "\xaahistograms\xc3";
    if (exposition >= 0)
        request.status.raw = (herald_msg_raw_t) { histograms, sizeof (histograms) - 1, 1 };
    rc = herald_cli_conn_send (conn, &request);
    herald_cli_reply_t reply;
    memset (&reply, 0, sizeof reply);
    if (rc == 0)
        rc = herald_cli_conn_recv (conn, &reply);
    if (rc == 0) {
        if (reply.type == HERALD_MSG_ERROR)
            rc = herald_cli_print_error (&reply);
        else
        if (reply.type != HERALD_MSG_STATUS_REPLY || reply.body.rid != request.rid)
            rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "unexpected %s reply to STATUS",
                                  herald_msg_command (reply.type));
        else {
            //  The whole body too: a cluster node's STATUS has str, nil and
            //  array values the decoder does not keep (leader, digest, peers)
            zframe_t *body = zmsg_first (reply.msg)? zmsg_next (reply.msg): NULL;
            if (exposition >= 0)
                rc = s_print_exposition (exposition, body);
            else
                herald_cli_print_status (opts->format, &reply.body,
                                         body? zframe_data (body): NULL,
                                         body? zframe_size (body): 0);
        }
    }
    herald_cli_reply_fini (&reply);
    herald_cli_conn_destroy (&conn);
    return rc;
}

//  ---------------------------------------------------------------------

//  True when -h or --help comes before any "--": every command then prints
//  its own help, as `herald help COMMAND` does, whatever else is given.
static bool
s_wants_help (int argc, char **argv)
{
    int index;
    for (index = 1; index < argc && strcmp (argv [index], "--") != 0; index++)
        if (strcmp (argv [index], "-h") == 0 || strcmp (argv [index], "--help") == 0)
            return true;
    return false;
}

int
main (int argc, char **argv)
{
    herald_cli_opts_t opts = {
        .endpoint = HERALD_CLI_ENDPOINT,
        .timeout_ms = HERALD_CLI_TIMEOUT_MS,
        .format = HERALD_CLI_JSON
    };
    //  czmq must not install its SIGINT handler: Ctrl-C ends the tool
    zsys_handler_set (NULL);
    int index = 1;
    bool bad = false;
    while (index < argc && argv [index][0] == '-' && !bad) {
        if (strcmp (argv [index], "--help") == 0 || strcmp (argv [index], "-h") == 0) {
            fputs (s_usage, stdout);
            return HERALD_CLI_EXIT_OK;
        }
        if (strcmp (argv [index], "--version") == 0) {
            printf ("herald %s\n", herald_version ());
            return HERALD_CLI_EXIT_OK;
        }
        if (!herald_cli_common_opt (&opts, argc, argv, &index, &bad))
            return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "unknown option '%s' (see herald --help)",
                                    argv [index]);
    }
    if (bad)
        return HERALD_CLI_EXIT_USAGE;
    if (index >= argc) {
        fputs (s_usage, stderr);
        return HERALD_CLI_EXIT_USAGE;
    }
    const char *command = argv [index];
    int sub_argc = argc - index;
    char **sub_argv = argv + index;
    //  `herald help pub`, `herald pub -h`: run the command as `pub --help`
    bool help = false;
    if (strcmp (command, "help") == 0 && sub_argc > 1 && sub_argv [1][0] != '-') {
        command = sub_argv [1];
        help = true;
    }
    else
    if (strcmp (command, "help") != 0)
        help = s_wants_help (sub_argc, sub_argv);
    char *help_argv [3] = { (char *) command, "--help", NULL };
    if (help) {
        sub_argc = 2;
        sub_argv = help_argv;
    }
    int rc;
    if (strcmp (command, "pub") == 0)
        rc = s_cmd_pub (&opts, sub_argc, sub_argv);
    else
    if (strcmp (command, "tail") == 0)
        rc = herald_cli_tail (&opts, sub_argc, sub_argv);
    else
    if (strcmp (command, "replay") == 0)
        rc = herald_cli_replay (&opts, sub_argc, sub_argv);
    else
    if (strcmp (command, "read") == 0)
        rc = herald_cli_read (&opts, sub_argc, sub_argv);
    else
    if (strcmp (command, "status") == 0)
        rc = s_cmd_status (&opts, sub_argc, sub_argv);
    else
    if (strcmp (command, "inspect") == 0)
        rc = herald_cli_inspect (&opts, sub_argc, sub_argv);
    else
    if (strcmp (command, "repair") == 0)
        rc = herald_cli_repair (&opts, sub_argc, sub_argv);
    else
    if (strcmp (command, "archive") == 0)
        rc = herald_cli_archive (&opts, sub_argc, sub_argv);
    else
    if (strcmp (command, "cluster") == 0)
        rc = herald_cli_cluster (&opts, sub_argc, sub_argv);
    else
    if (strcmp (command, "whoami") == 0)
        rc = herald_cli_whoami (&opts, sub_argc, sub_argv);
    else
    if (strcmp (command, "keygen") == 0)
        rc = herald_cli_keygen (&opts, sub_argc, sub_argv);
    else
    if (strcmp (command, "acl") == 0)
        rc = herald_cli_acl (&opts, sub_argc, sub_argv);
    else
    if (strcmp (command, "sub") == 0)
        rc = herald_cli_sub (&opts, sub_argc, sub_argv);
    else
    if (strcmp (command, "groups") == 0 || strcmp (command, "group") == 0)
        rc = herald_cli_groups (&opts, sub_argc, sub_argv);
    else
    if (strcmp (command, "backup") == 0)
        rc = herald_cli_backup (&opts, sub_argc, sub_argv);
    else
    if (strcmp (command, "restore") == 0)
        rc = herald_cli_restore (&opts, sub_argc, sub_argv);
    else
    if (strcmp (command, "trim") == 0)
        rc = herald_cli_trim (&opts, sub_argc, sub_argv);
    else
    if (strcmp (command, "help") == 0) {
        fputs (s_usage, stdout);
        rc = HERALD_CLI_EXIT_OK;
    }
    else
        rc = herald_cli_fail (HERALD_CLI_EXIT_USAGE, "unknown command '%s' (see herald --help)",
                              command);
    fflush (stdout);
    if (ferror (stdout) && rc == 0)
        rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "cannot write output");
    return rc;
}
