/*  =========================================================================
    herald_cli_archive - herald archive: copy the log into archive files

    DESIGN
    The archive is written by a client over the public protocol (HELLO for
    the store's node and lineage, then one REPLAY), so it works against a
    standalone broker or any node of a cluster.  The envelopes are written
    byte for byte as the broker sent them, so a replay of the archive
    prints exactly what a replay of the broker prints.

    A run continues the archive in DIR: it starts at the seq after the
    index's last, and refuses a --from-seq that would leave a gap or
    repeat seqs, or a store whose lineage changed (after an accepted loss,
    the seqs after the kept head name other events).  Every seq from the
    start to END's `last` must arrive, in order: a stream that skips one (a
    key that may read only some topics) is refused, not archived with a
    hole.

    Crash safety: a segment is complete (written, fsync'd, renamed) before
    the index names it, and the index is replaced atomically after each
    segment.  A run that dies (the broker lost, the tool killed) leaves the
    index naming only complete segments, and at most a temporary file,
    which the next run removes; it resumes after the index's last seq.
    =========================================================================
*/

#include "herald_cli.h"
#include "herald_archive.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *s_archive_usage =
    "usage: herald archive (--until-seq N | --until-ts TIME) --to DIR [options]\n"
    "       herald archive verify DIR\n"
    "\n"
    "Copy stored events, through REPLAY, into compressed, checksummed segment\n"
    "files in DIR, with an index (DIR/index.hwa).  A later run appends to DIR,\n"
    "starting after the last archived seq.  The live log is not changed.\n"
    "\n"
    "  --until-seq N        archive up to seq N (or the broker's head, if lower)\n"
    "  --until-ts TIME      archive up to the last event with ts <= TIME (the\n"
    "                       forms of herald replay --help)\n"
    "  --to DIR             the archive directory (created if missing)\n"
    "  --from-seq M         first seq: only for a new archive, or the seq after\n"
    "                       DIR's last (anything else is a gap or an overlap)\n"
    "  --segment-events N   events per segment file at most (default 1000000,\n"
    "                       at most 100000000)\n"
    "  --segment-bytes N    compressed bytes per segment file, about (default\n"
    "                       67108864: 64 MiB)\n"
    "  --credit N           events the broker may send ahead (default 1000)\n"
    "\n"
    "verify checks every checksum, the seq continuity against the index and\n"
    "every envelope; it names the first damaged file and offset and exits 1.\n"
    "Read an archive with herald replay --archive DIR.\n";

#define S_SEGMENT_EVENTS    1000000
#define S_SEGMENT_BYTES     (64ULL * 1024 * 1024)
#define S_SEGMENT_EVENTS_MAX    100000000

typedef struct {
    herald_cli_opts_t *opts;
    const char *dir;
    herald_cli_conn_t *conn;
    herald_archive_index_t index;
    herald_archive_writer_t *writer;
    char node [HERALD_ARCHIVE_NODE_MAX];
    uint64_t lineage;
    uint64_t from, next;            //  next: the seq expected next
    uint64_t segment_events, segment_bytes, credit, unacked;
    uint64_t archived, segments, bytes;
    uint64_t rid;
    bool ended;
    uint64_t end_last, end_lineage;
    bool tty;
    int64_t last_progress;
    msgpack_zone zone;
} s_archive_t;

static void
s_progress (s_archive_t *self, bool final)
{
    int64_t now = zclock_mono ();
    if (!final && self->last_progress
    &&  now - self->last_progress < (self->tty ? 200 : 10000))
        return;
    self->last_progress = now;
    fprintf (stderr, "%sherald: archived %" PRIu64 " events (to seq %" PRIu64 "), %" PRIu64
             " segment%s%s", self->tty ? "\r" : "", self->archived, self->next - 1,
             self->segments, self->segments == 1 ? "" : "s", self->tty && !final ? "" : "\n");
    fflush (stderr);
}

//  Commit the open segment and name it in the index.
static int
s_commit (s_archive_t *self)
{
    if (!self->writer)
        return 0;
    herald_archive_seg_t seg;
    if (herald_archive_writer_commit (&self->writer, &seg)) {
        herald_cli_fail (HERALD_CLI_EXIT_FAIL, "archive: %s",
                         herald_archive_writer_why (self->writer));
        herald_archive_writer_abort (&self->writer);
        return HERALD_CLI_EXIT_FAIL;
    }
    char why [HERALD_ARCHIVE_WHY_MAX];
    if (herald_archive_index_add (&self->index, &seg)
    ||  herald_archive_index_save (self->dir, &self->index, why, sizeof why))
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "archive: %s (%s is complete but not in "
                                "the index; the next run writes it again)", why, seg.name);
    self->segments++;
    self->bytes += seg.bytes;
    return 0;
}

//  One envelope of the stream.
static int
s_on_envelope (s_archive_t *self, const uint8_t *bytes, size_t len)
{
    herald_event_t event;
    herald_error_t err;
    msgpack_zone_clear (&self->zone);
    if (herald_event_decode (&event, bytes, len, &self->zone, &err) != HERALD_OK)
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "archive: the broker sent an envelope that "
                                "does not decode after seq %" PRIu64 ": %s", self->next - 1,
                                err.message);
    if (event.seq != self->next)
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "archive: the broker sent seq %" PRIu64
                                " where seq %" PRIu64 " was expected: every seq must be "
                                "archived (does this key read every topic?); nothing after "
                                "seq %" PRIu64 " was archived", event.seq, self->next,
                                self->next - 1);
    char why [HERALD_ARCHIVE_WHY_MAX];
    if (!self->writer) {
        self->writer = herald_archive_writer_new (self->dir, self->node, strlen (self->node),
                                                  self->lineage, why, sizeof why);
        if (!self->writer)
            return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "archive: %s", why);
    }
    if (herald_archive_writer_add (self->writer, bytes, len, event.seq, event.ts, event.id))
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "archive: %s",
                                herald_archive_writer_why (self->writer));
    self->next++;
    self->archived++;
    if (herald_archive_writer_count (self->writer) >= self->segment_events
    ||  herald_archive_writer_bytes (self->writer) >= self->segment_bytes) {
        int rc = s_commit (self);
        if (rc)
            return rc;
    }
    s_progress (self, false);
    return 0;
}

static int
s_on_reply (s_archive_t *self, herald_cli_reply_t *reply)
{
    if (reply->type == HERALD_MSG_ERROR)
        return herald_cli_print_error (reply);
    if (!reply->body.has_rid || reply->body.rid != self->rid)
        return 0;
    if (reply->type == HERALD_MSG_END) {
        self->ended = true;
        self->end_last = reply->body.end.last;
        self->end_lineage = reply->body.end.lineage;
        return 0;
    }
    if (reply->type != HERALD_MSG_EVENTS)
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "unexpected %s reply to REPLAY",
                                herald_msg_command (reply->type));
    zframe_t *frame = zmsg_first (reply->msg);
    zmsg_next (reply->msg);
    while ((frame = zmsg_next (reply->msg)) != NULL) {
        size_t offset = 0, len;
        const uint8_t *envelope;
        int more;
        while ((more = herald_msg_events_next (zframe_data (frame), zframe_size (frame),
                                               &offset, &envelope, &len)) != 0) {
            if (more < 0)
                return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "archive: an EVENTS frame that "
                                        "is not MessagePack after seq %" PRIu64, self->next - 1);
            int rc = s_on_envelope (self, envelope, len);
            if (rc)
                return rc;
            self->unacked++;
        }
    }
    if (self->unacked >= (self->credit + 1) / 2) {
        herald_msg_t msg = { .type = HERALD_MSG_CREDIT, .has_rid = true, .rid = self->rid };
        msg.credit.credit = self->unacked;
        self->unacked = 0;
        return herald_cli_conn_send (self->conn, &msg);
    }
    return 0;
}

//  HELLO: the store's node and lineage.
static int
s_hello (s_archive_t *self)
{
    herald_msg_t hello = { .type = HERALD_MSG_HELLO, .has_rid = true };
    hello.rid = herald_cli_conn_rid (self->conn);
    hello.hello.proto = HERALD_PROTO_VERSION;
    hello.hello.client = (herald_str_t) { "herald-archive", 14 };
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
        herald_str_t node = reply.body.welcome.node;
        snprintf (self->node, sizeof self->node, "%.*s", (int) node.len, node.ptr ? node.ptr : "");
        self->lineage = reply.body.welcome.lineage;
    }
    herald_cli_reply_fini (&reply);
    return rc;
}

static int
s_stream (s_archive_t *self, herald_msg_t *request)
{
    self->rid = request->rid = herald_cli_conn_rid (self->conn);
    request->replay.credit = self->credit;
    request->replay.pack = true;
    int rc = herald_cli_conn_send (self->conn, request);
    zsock_t *watch = herald_cli_conn_watch_sock (self->conn);
    zpoller_t *poller = zpoller_new (herald_cli_conn_sock (self->conn), watch, NULL);
    if (!poller)
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "out of memory");
    int64_t deadline = zclock_mono () + self->opts->timeout_ms;
    while (rc == 0 && !self->ended) {
        int64_t wait = deadline - zclock_mono ();
        void *ready = zpoller_wait (poller, wait > 0 ? (int) wait : 0);
        if (ready == watch) {
            if (!herald_cli_conn_check (self->conn))
                rc = herald_cli_conn_lost (self->conn);
        }
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
        if (rc == 0 && !self->ended && zclock_mono () >= deadline)
            rc = herald_cli_conn_no_answer (self->conn);
    }
    zpoller_destroy (&poller);
    return rc;
}

//  Open (create) DIR and take its lock: one run at a time per archive.
static int
s_lock (const char *dir, int *fd, bool *created)
{
    *created = mkdir (dir, 0755) == 0;
    if (!*created && errno != EEXIST)
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "archive: cannot create %s: %s", dir,
                                strerror (errno));
    char path [4200];
    snprintf (path, sizeof path, "%s/lock", dir);
    *fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (*fd < 0)
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "archive: cannot open %s: %s", path,
                                strerror (errno));
    if (flock (*fd, LOCK_EX | LOCK_NB) != 0)
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "archive: %s is in use by another "
                                "herald archive (%s is locked)", dir, path);
    return 0;
}

static int
s_run (s_archive_t *self, herald_msg_t *request, bool from_given, uint64_t from_seq)
{
    char why [HERALD_ARCHIVE_WHY_MAX];
    herald_archive_clean (self->dir);
    if (herald_archive_index_load (self->dir, true, &self->index, why, sizeof why))
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "archive: %s (check it with herald "
                                "archive verify)", why);
    herald_archive_index_t *index = &self->index;
    uint64_t last = index->count ? index->segs [index->count - 1].last_seq : 0;
    if (index->count && from_given && from_seq != last + 1)
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "archive: %s ends at seq %" PRIu64
                                "; --from-seq %" PRIu64 " would leave %s (give --from-seq %"
                                PRIu64 ", or leave it out)", self->dir, last, from_seq,
                                from_seq > last + 1 ? "a gap" : "an overlap", last + 1);
    self->from = self->next = index->count ? last + 1 : from_given ? from_seq : 1;
    if (request->replay.has_to && request->replay.to < self->from) {
        printf ("nothing to archive: %s holds up to seq %" PRIu64 "\n", self->dir, last);
        return 0;
    }
    int rc = herald_cli_conn_open (self->opts, &self->conn);
    if (rc == 0)
        rc = s_hello (self);
    if (rc == 0 && index->count && index->segs [index->count - 1].lineage != self->lineage)
        rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "archive: the store's lineage is %" PRIu64
                              ", %s was written at lineage %" PRIu64 ": a loss was accepted "
                              "since (herald repair), the seqs after it may name other "
                              "events; archive into a new directory", self->lineage, self->dir,
                              index->segs [index->count - 1].lineage);
    request->replay.has_from = true;
    request->replay.from = self->from;
    if (rc == 0)
        rc = s_stream (self, request);
    if (rc == 0 && self->end_lineage != self->lineage)
        rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "archive: the store's lineage changed "
                              "during the run (%" PRIu64 " -> %" PRIu64 ")", self->lineage,
                              self->end_lineage);
    if (rc == 0 && self->end_last + 1 != self->next)
        rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "archive: the broker ended at seq %" PRIu64
                              " but sent up to seq %" PRIu64 ": every seq must be archived "
                              "(does this key read every topic?)", self->end_last,
                              self->next - 1);
    if (rc == 0)
        rc = s_commit (self);
    herald_archive_writer_abort (&self->writer);
    herald_cli_conn_destroy (&self->conn);
    if (self->archived && self->tty)
        s_progress (self, true);    //  ends the line rewritten in place
    if (rc == 0 && self->archived)
        printf ("archived seq %" PRIu64 "..%" PRIu64 " (%" PRIu64 " events, %" PRIu64
                " segment%s, %" PRIu64 " bytes) to %s\n", self->from, self->next - 1,
                self->archived, self->segments, self->segments == 1 ? "" : "s", self->bytes,
                self->dir);
    else
    if (rc == 0)
        printf ("nothing to archive: %s holds up to seq %" PRIu64 "\n", self->dir,
                self->from - 1);
    return rc;
}

int herald_cli_archive_verify (herald_cli_opts_t *opts, int argc, char **argv);

int
herald_cli_archive (herald_cli_opts_t *opts, int argc, char **argv)
{
    if (argc > 1 && strcmp (argv [1], "verify") == 0)
        return herald_cli_archive_verify (opts, argc - 1, argv + 1);
    s_archive_t self;
    memset (&self, 0, sizeof self);
    self.opts = opts;
    self.segment_events = S_SEGMENT_EVENTS;
    self.segment_bytes = S_SEGMENT_BYTES;
    self.credit = HERALD_CREDIT_DEFAULT;
    self.tty = isatty (STDERR_FILENO);
    self.last_progress = zclock_mono ();    //  a short run says only its summary
    herald_msg_t request = { .type = HERALD_MSG_REPLAY, .has_rid = true };
    uint64_t from_seq = 0;
    bool from_given = false, bad = false;
    int index = 1;
    while (index < argc && !bad) {
        const char *value = NULL;
        if (strcmp (argv [index], "--help") == 0) {
            fputs (s_archive_usage, stdout);
            return HERALD_CLI_EXIT_OK;
        }
        if (herald_cli_common_opt (opts, argc, argv, &index, &bad))
            continue;
        if (herald_cli_opt (argc, argv, &index, "--until-seq", &value, &bad)) {
            bad = bad || !herald_cli_positive ("--until-seq", value, &request.replay.to);
            bad = bad || (request.replay.has_to
                          && herald_cli_fail (HERALD_CLI_EXIT_USAGE, "--until-seq given twice"));
            request.replay.has_to = true;
        }
        else
        if (herald_cli_opt (argc, argv, &index, "--until-ts", &value, &bad)) {
            bad = bad || !herald_cli_ts ("--until-ts", value, &request.replay.until_ts);
            request.replay.has_until_ts = true;
        }
        else
        if (herald_cli_opt (argc, argv, &index, "--to", &value, &bad))
            self.dir = value;
        else
        if (herald_cli_opt (argc, argv, &index, "--from-seq", &value, &bad)) {
            bad = bad || !herald_cli_positive ("--from-seq", value, &from_seq);
            from_given = true;
        }
        else
        if (herald_cli_opt (argc, argv, &index, "--segment-events", &value, &bad)) {
            bad = bad || !herald_cli_positive ("--segment-events", value, &self.segment_events);
            //  A segment's ids block (16 bytes an event) must fit its u32 size
            if (!bad && self.segment_events > S_SEGMENT_EVENTS_MAX) {
                herald_cli_fail (HERALD_CLI_EXIT_USAGE, "--segment-events: give 1 .. %d",
                                 S_SEGMENT_EVENTS_MAX);
                bad = true;
            }
        }
        else
        if (herald_cli_opt (argc, argv, &index, "--segment-bytes", &value, &bad)) {
            bad = bad || !herald_cli_positive ("--segment-bytes", value, &self.segment_bytes);
            if (!bad && self.segment_bytes < 4096) {
                herald_cli_fail (HERALD_CLI_EXIT_USAGE, "--segment-bytes: give at least 4096");
                bad = true;
            }
        }
        else
        if (herald_cli_opt (argc, argv, &index, "--credit", &value, &bad)) {
            bad = bad || !herald_cli_positive ("--credit", value, &self.credit);
            if (!bad && self.credit > HERALD_CREDIT_MAX) {
                herald_cli_fail (HERALD_CLI_EXIT_USAGE, "--credit: give 1 .. %d",
                                 HERALD_CREDIT_MAX);
                bad = true;
            }
        }
        else
            return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "archive: unexpected '%s' (see "
                                    "herald archive --help)", argv [index]);
    }
    if (bad)
        return HERALD_CLI_EXIT_USAGE;
    if (request.replay.has_to == request.replay.has_until_ts)
        return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "archive: give one of --until-seq and "
                                "--until-ts (see herald archive --help)");
    if (!self.dir || !*self.dir)
        return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "archive: give --to DIR (see herald "
                                "archive --help)");
    int lock = -1;
    bool created = false;
    int rc = s_lock (self.dir, &lock, &created);
    if (rc == 0) {
        msgpack_zone_init (&self.zone, 4096);
        rc = s_run (&self, &request, from_given, from_seq);
        msgpack_zone_destroy (&self.zone);
    }
    herald_archive_index_fini (&self.index);
    if (lock >= 0)
        close (lock);
    if (created && self.segments == 0) {
        //  A run that wrote nothing leaves nothing behind
        char path [4200];
        snprintf (path, sizeof path, "%s/lock", self.dir);
        unlink (path);
        rmdir (self.dir);
    }
    return rc;
}
