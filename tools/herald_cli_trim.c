/*  =========================================================================
    herald_cli_trim - herald trim: remove archived (or expired) events from
    the live log

        herald trim --archive DIR [--until-seq N | --until-ts T] [--prefix P]
        herald trim --unarchived --prefix P (--until-seq N | --until-ts T)

    DESIGN
    A trim is one TRIM request (HWP/1 addition, docs/protocol.md,
    "Trimming").  With --archive the tool proves that the archive holds
    exactly the events it removes: it reads the broker's STATUS (`first`,
    the head, the trim points), reads and checks every segment that holds a
    seq of first..N (every checksum, every envelope decoded, its id against
    the ids block: what `herald archive verify` checks), and sends the
    BLAKE2b-256 of the ids of seqs first..N in seq order.  The broker
    computes the same digest from its own log and refuses on any
    difference, so an archive of another store, or one that lacks an
    event, never trims anything.  An archive that does not reach N, or
    starts after first, is refused here, naming the seqs it lacks.

    --until-ts T (with an archive) is the last archived seq whose ts is at
    most T: the archive's own ts, read while checking it.  Without an
    archive, it is found with one REPLAY {from_ts: T + 1, prefixes: [P],
    credit: 1}: the first event of P after T is at seq S, so every event
    of P up to S - 1 is at or before T (ts never decreases with seq); an
    END without an event says every event of P up to its `last` is.

    Nothing to trim (N at or below the prefix's trim point) is said and
    exits 0, so a timer may run archive, verify and trim every day.

    Exit status: 0 done (or nothing to trim); 1 refused (`herald: CODE:
    message`) or the archive is damaged or short; 2 no broker answered;
    64 a usage error.
    =========================================================================
*/

#include "herald_cli.h"
#include "herald_archive.h"

#include <sodium.h>
#include <string.h>
#include <sys/stat.h>

#define S_WAIT_S        3600        //  how long to wait for the TRIM's answer
#define S_SAY_EVERY_MS  10000       //  ... saying it still waits this often

static const char *s_trim_usage =
    "usage: herald trim --archive DIR [--until-seq N | --until-ts TIME] [--prefix P]\n"
    "       herald trim --unarchived --prefix P (--until-seq N | --until-ts TIME)\n"
    "\n"
    "Remove events from the broker's live log.  Their ids stay in the broker's\n"
    "dedup index for ever (a retry of a trimmed event is still a duplicate);\n"
    "REPLAY and READ of a trimmed range are refused (ERROR trimmed, naming the\n"
    "first seq still there); read them with herald replay --archive DIR.\n"
    "\n"
    "--archive DIR: trim up to what the archive (herald archive) holds.  The\n"
    "archive's segments holding the seqs to trim are checked as herald archive\n"
    "verify does, and the digest of their ids is sent as proof: the broker refuses\n"
    "unless its log holds exactly those ids (an archive of another store, or one\n"
    "with a gap, trims nothing).  The archive must hold every seq from the log's\n"
    "first (herald status) to N.\n"
    "  --until-seq N        trim up to seq N (default: the archive's last seq)\n"
    "  --until-ts TIME      up to the last archived seq with ts <= TIME (the\n"
    "                       forms of herald replay --help: -30d, 2026-11-01, ...)\n"
    "  --prefix P           only the topics beginning with P (default: all)\n"
    "\n"
    "--unarchived: trim without an archive (the events are then only in backups).\n"
    "--prefix is required (--prefix '' for the whole log), and one of --until-seq\n"
    "and --until-ts (the last event of P at or before TIME, found with a REPLAY).\n"
    "\n"
    "  --dry-run            print what would be trimmed; send nothing\n"
    "  --wait S             how long to wait for the broker's answer (default 3600:\n"
    "                       it reads the range to check the proof)\n"
    "\n"
    "Needs the grant admin = trim when security is on.  The disk is freed in the\n"
    "background after (STATUS reclaim_pending).  Default format json; --format\n"
    "table prints a sentence.  Exit status: 0 trimmed, or nothing to trim; 1\n"
    "refused (herald: CODE: message) or the archive is damaged or short; 2 no\n"
    "broker answered; 64 a usage error.\n";

typedef struct {
    herald_cli_opts_t *opts;
    herald_cli_conn_t *conn;
    const char *dir;                //  --archive; NULL with --unarchived
    const char *prefix;             //  "" : the whole log
    size_t prefix_len;
    bool has_until_seq, has_until_ts, dry_run;
    uint64_t until_seq, until_ts, wait_s;
    //  The broker's STATUS
    uint64_t head, first, lineage;
    bool has_first;
    uint64_t covered;               //  the trim point already in force for prefix
    const herald_msg_t *overlap;    //  continue check: the REPLAY whose prefixes count
    //  What is trimmed
    uint64_t from, until;           //  ids_from .. until (archive); until (unarchived)
    uint8_t ids [32];
    uint64_t segments_checked, events_checked;
} s_trim_t;

static bool
s_str_is (const msgpack_object *value, const char *text)
{
    return value && value->type == MSGPACK_OBJECT_STR
        && value->via.str.size == strlen (text)
        && memcmp (value->via.str.ptr, text, value->via.str.size) == 0;
}

static bool
s_uint (const msgpack_object *value, uint64_t *out)
{
    if (!value || value->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return false;
    *out = value->via.u64;
    return true;
}

//  Whether one of a and b begins with the other.
static bool
s_overlaps (const char *a, size_t a_len, const char *b, size_t b_len)
{
    size_t len = a_len < b_len? a_len: b_len;
    return memcmp (a, b, len) == 0;
}

//  ---------------------------------------------------------------------
//  STATUS: head, first, and the trim point that already covers prefix
//  (the greatest until among the trim points whose prefix begins it);
//  with overlap set, the greatest until among the trim points that
//  overlap one of its prefixes (all of them when it has none): 1 less than
//  the first seq a REPLAY of those prefixes may start at.

static int
s_status (s_trim_t *self)
{
    herald_msg_t request = { .type = HERALD_MSG_STATUS, .has_rid = true };
    request.rid = herald_cli_conn_rid (self->conn);
    int rc = herald_cli_conn_send (self->conn, &request);
    herald_cli_reply_t reply;
    memset (&reply, 0, sizeof reply);
    if (rc == 0)
        rc = herald_cli_conn_recv (self->conn, &reply);
    if (rc == 0 && reply.type == HERALD_MSG_ERROR)
        rc = herald_cli_print_error (&reply);
    else
    if (rc == 0 && reply.type != HERALD_MSG_STATUS_REPLY)
        rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "unexpected %s reply to STATUS",
                              herald_msg_command (reply.type));
    zframe_t *body = rc == 0 && zmsg_first (reply.msg)? zmsg_next (reply.msg): NULL;
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    if (rc == 0 && (!body || msgpack_unpack_next (&unpacked, (const char *) zframe_data (body),
                                                  zframe_size (body), NULL)
                             != MSGPACK_UNPACK_SUCCESS
                          || unpacked.data.type != MSGPACK_OBJECT_MAP))
        rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "the STATUS reply does not decode");
    if (rc == 0) {
        const msgpack_object *root = &unpacked.data;
        s_uint (herald_cli_map_get (root, "head"), &self->head);
        s_uint (herald_cli_map_get (root, "lineage"), &self->lineage);
        self->has_first = s_uint (herald_cli_map_get (root, "first"), &self->first);
        if (!self->has_first || self->first == 0)
            self->first = 1;        //  a broker from before trimming: never trimmed
        self->covered = self->first - 1;
        const msgpack_object *trims = herald_cli_map_get (root, "trims");
        if (trims && trims->type == MSGPACK_OBJECT_ARRAY)
            for (uint32_t at = 0; at < trims->via.array.size; at++) {
                const msgpack_object *trim = &trims->via.array.ptr [at];
                const msgpack_object *prefix = herald_cli_map_get (trim, "prefix");
                uint64_t until = 0;
                if (!prefix || prefix->type != MSGPACK_OBJECT_STR
                ||  !s_uint (herald_cli_map_get (trim, "until"), &until))
                    continue;
                bool counts;
                if (self->overlap) {
                    const __typeof__ (self->overlap->replay) *replay = &self->overlap->replay;
                    counts = replay->prefix_count == 0;
                    for (size_t index = 0; index < replay->prefix_count && !counts; index++)
                        counts = s_overlaps (prefix->via.str.ptr, prefix->via.str.size,
                                             replay->prefixes [index].ptr,
                                             replay->prefixes [index].len);
                }
                else
                    counts = prefix->via.str.size <= self->prefix_len
                          && memcmp (prefix->via.str.ptr, self->prefix,
                                     prefix->via.str.size) == 0;
                if (counts && until > self->covered)
                    self->covered = until;
            }
    }
    msgpack_unpacked_destroy (&unpacked);
    herald_cli_reply_fini (&reply);
    return rc;
}

//  ---------------------------------------------------------------------
//  The archive: check the segments holding first..N, digest their ids.

static int
s_check_archive (s_trim_t *self)
{
    herald_archive_index_t archive;
    char why [HERALD_ARCHIVE_WHY_MAX];
    if (herald_archive_index_load (self->dir, false, &archive, why, sizeof why))
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "trim: %s", why);
    int rc = 0;
    uint64_t arch_first = archive.count? archive.segs [0].first_seq: 0;
    uint64_t arch_last = archive.count? archive.segs [archive.count - 1].last_seq: 0;
    uint64_t from = self->first;
    uint64_t limit = self->has_until_seq? self->until_seq: arch_last;
    self->from = from;
    self->until = 0;
    if (archive.count == 0)
        rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "trim: %s is an empty archive: nothing it "
                              "could prove (herald archive --to %s first)", self->dir,
                              self->dir);
    else
    if (arch_first > from)
        rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "trim: %s starts at seq %" PRIu64 "; the "
                              "live log starts at seq %" PRIu64 ": seqs %" PRIu64 "..%" PRIu64
                              " are not in it (a trim must start at the log's first seq)",
                              self->dir, arch_first, from, from, arch_first - 1);
    else
    if (self->has_until_seq && limit > arch_last)
        rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "trim: %s holds seqs %" PRIu64 "..%" PRIu64
                              "; seqs %" PRIu64 "..%" PRIu64 " are not archived (herald "
                              "archive --until-seq %" PRIu64 " --to %s first)", self->dir,
                              arch_first, arch_last, arch_last + 1, limit, limit, self->dir);
    else
    if (limit > self->head)
        rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "trim: %s holds seqs up to %" PRIu64 ", the "
                              "broker's head is %" PRIu64 ": is it an archive of this broker?",
                              self->dir, limit, self->head);
    if (rc || limit < from) {
        herald_archive_index_fini (&archive);
        return rc;                  //  limit < from: nothing left to trim (until stays 0)
    }
    crypto_generichash_state hash;
    crypto_generichash_init (&hash, NULL, 0, 32);
    msgpack_zone zone;
    msgpack_zone_init (&zone, 4096);
    bool done = false;
    int64_t next_say = zclock_mono () + S_SAY_EVERY_MS;
    for (size_t at = 0; at < archive.count && rc == 0 && !done; at++) {
        const herald_archive_seg_t *seg = &archive.segs [at];
        if (seg->last_seq < from)
            continue;
        if (seg->first_seq > limit || (self->has_until_ts && seg->first_ts > self->until_ts))
            break;
        herald_archive_reader_t *reader = herald_archive_reader_new (self->dir, seg, why,
                                                                     sizeof why);
        if (!reader) {
            rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "trim: %s", why);
            break;
        }
        //  Every event of the segment is checked, even past N: the segment
        //  is the unit the index proves
        const uint8_t *envelope;
        size_t len;
        uint64_t seq, ts;
        int more;
        while ((more = herald_archive_reader_next (reader, &envelope, &len, &seq, &ts)) > 0) {
            herald_event_t event;
            herald_error_t err;
            msgpack_zone_clear (&zone);
            const uint8_t *id = herald_archive_reader_id (reader);
            if (herald_event_decode (&event, envelope, len, &zone, &err) != HERALD_OK) {
                rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "trim: %s/%s: the envelope of seq %"
                                      PRIu64 " does not decode: %s", self->dir, seg->name, seq,
                                      err.message);
                break;
            }
            if (event.seq != seq || event.ts != ts
            ||  memcmp (event.id, id, HERALD_ID_BYTES) != 0) {
                rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "trim: %s/%s: the envelope of seq %"
                                      PRIu64 " differs from the archive's seq, ts or id",
                                      self->dir, seg->name, seq);
                break;
            }
            self->events_checked++;
            //  A large archive takes a while (about 400k events/s): say so
            if ((self->events_checked & 0xffff) == 0 && zclock_mono () >= next_say) {
                fprintf (stderr, "herald: trim: checking %s: at seq %" PRIu64 " of %" PRIu64
                         "..%" PRIu64 "\n", self->dir, seq, from, limit);
                next_say = zclock_mono () + S_SAY_EVERY_MS;
            }
            if (seq < from || seq > limit || done)
                continue;
            //  ts never decreases with seq: the first event after T ends it
            if (self->has_until_ts && ts > self->until_ts) {
                done = true;
                continue;
            }
            crypto_generichash_update (&hash, id, HERALD_ID_BYTES);
            self->until = seq;
        }
        if (rc == 0 && more < 0)
            rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "trim: %s", why);
        self->segments_checked++;
        herald_archive_reader_destroy (&reader);
    }
    msgpack_zone_destroy (&zone);
    crypto_generichash_final (&hash, self->ids, sizeof self->ids);
    if (rc == 0 && self->until && self->until < from)
        self->until = 0;
    if (rc == 0 && self->has_until_seq && self->until != limit)
        rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "trim: %s: read up to seq %" PRIu64 ", not "
                              "%" PRIu64 " as its index says", self->dir, self->until, limit);
    herald_archive_index_fini (&archive);
    return rc;
}

//  ---------------------------------------------------------------------
//  --unarchived --until-ts T: the seq before P's first event after T.

static int
s_resolve_ts (s_trim_t *self)
{
    herald_msg_t request = { .type = HERALD_MSG_REPLAY, .has_rid = true };
    herald_str_t prefix = { self->prefix, self->prefix_len };
    request.rid = herald_cli_conn_rid (self->conn);
    request.replay.has_from_ts = true;
    request.replay.from_ts = self->until_ts + 1;
    request.replay.credit = 1;
    if (self->prefix_len) {
        request.replay.prefixes = &prefix;
        request.replay.prefix_count = 1;
    }
    int rc = herald_cli_conn_send (self->conn, &request);
    bool resolved = false;
    while (rc == 0 && !resolved) {
        herald_cli_reply_t reply;
        memset (&reply, 0, sizeof reply);
        rc = herald_cli_conn_recv (self->conn, &reply);
        if (rc == 0 && (!reply.body.has_rid || reply.body.rid != request.rid)
        &&  reply.type != HERALD_MSG_ERROR) {
            herald_cli_reply_fini (&reply);
            continue;
        }
        if (rc == 0 && reply.type == HERALD_MSG_ERROR
        &&  reply.body.error.code == HERALD_ERR_TRIMMED) {
            //  The first event after T is trimmed already, for P or for a
            //  prefix overlapping it (P "" overlaps every trim point)
            uint64_t first = reply.body.error.has_first? reply.body.error.first: 0;
            if (first && first - 1 <= self->covered) {
                self->until = 0;            //  nothing left to trim
                resolved = true;
            }
            else
                rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "trim: --until-ts: the events after "
                                      "it are trimmed for a prefix overlapping '%s' (the first "
                                      "seq still there for it is %" PRIu64 "), so its seq cannot "
                                      "be found: give --until-seq", self->prefix, first);
        }
        else
        if (rc == 0 && reply.type == HERALD_MSG_ERROR)
            rc = herald_cli_print_error (&reply);
        else
        if (rc == 0 && reply.type == HERALD_MSG_END) {
            self->until = reply.body.end.last;
            resolved = true;
        }
        else
        if (rc == 0 && reply.type == HERALD_MSG_EVENTS) {
            zmsg_first (reply.msg);
            zmsg_next (reply.msg);
            zframe_t *frame = zmsg_next (reply.msg);
            size_t offset = 0, len = 0;
            const uint8_t *envelope = NULL;
            const char *topic;
            size_t topic_len;
            uint64_t seq = 0, ver, ts;
            if (!frame || herald_msg_events_next (zframe_data (frame), zframe_size (frame),
                                                  &offset, &envelope, &len) <= 0
            ||  !herald_event_peek (envelope, len, &topic, &topic_len, &seq, &ver, &ts)
            ||  seq == 0)
                rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "trim: --until-ts: an event from "
                                      "the broker does not decode");
            else {
                self->until = seq - 1;
                resolved = true;
            }
            herald_msg_t cancel = { .type = HERALD_MSG_CANCEL, .has_rid = true,
                                    .rid = request.rid };
            herald_cli_conn_send (self->conn, &cancel);
        }
        else
        if (rc == 0)
            rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "unexpected %s reply to REPLAY",
                                  herald_msg_command (reply.type));
        herald_cli_reply_fini (&reply);
    }
    return rc;
}

//  ---------------------------------------------------------------------
//  TRIM: send, wait for the answer (saying it still waits), print it.

static void
s_print_plan (s_trim_t *self, const char *verb)
{
    char hex [65];
    herald_archive_hex (self->ids, sizeof self->ids, hex);
    if (self->opts->format == HERALD_CLI_TABLE) {
        printf ("%s seqs %" PRIu64 "..%" PRIu64 " of ", verb, self->dir? self->from:
                self->covered + 1, self->until);
        if (self->prefix_len) {
            printf ("the topics beginning with ");
            herald_cli_json_string (stdout, self->prefix, self->prefix_len);
        }
        else
            printf ("the whole log");
        if (self->dir)
            printf (": archived in %s (%" PRIu64 " segment%s checked, ids %s)\n", self->dir,
                    self->segments_checked, self->segments_checked == 1? "": "s", hex);
        else
            printf (", unarchived\n");
        return;
    }
    printf ("{\"dry_run\":true,\"prefix\":");
    herald_cli_json_string (stdout, self->prefix, self->prefix_len);
    printf (",\"until\":%" PRIu64, self->until);
    if (self->dir) {
        printf (",\"ids_from\":%" PRIu64 ",\"ids\":\"%s\",\"archive\":", self->from, hex);
        herald_cli_json_string (stdout, self->dir, strlen (self->dir));
        printf (",\"segments_checked\":%" PRIu64 ",\"events_checked\":%" PRIu64,
                self->segments_checked, self->events_checked);
    }
    else
        printf (",\"unarchived\":true");
    printf (",\"first\":%" PRIu64 ",\"head\":%" PRIu64 "}\n", self->first, self->head);
}

static zmsg_t *
s_request (s_trim_t *self, uint64_t rid)
{
    msgpack_sbuffer body;
    msgpack_sbuffer_init (&body);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &body, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, self->dir? 5: 4);
    msgpack_pack_str_with_body (&pk, "rid", 3);
    msgpack_pack_uint64 (&pk, rid);
    msgpack_pack_str_with_body (&pk, "prefix", 6);
    msgpack_pack_str_with_body (&pk, self->prefix, self->prefix_len);
    msgpack_pack_str_with_body (&pk, "until", 5);
    msgpack_pack_uint64 (&pk, self->until);
    if (self->dir) {
        msgpack_pack_str_with_body (&pk, "ids_from", 8);
        msgpack_pack_uint64 (&pk, self->from);
        msgpack_pack_str_with_body (&pk, "ids", 3);
        msgpack_pack_bin_with_body (&pk, self->ids, sizeof self->ids);
    }
    else {
        msgpack_pack_str_with_body (&pk, "unarchived", 10);
        msgpack_pack_true (&pk);
    }
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, "TRIM");
    zmsg_addmem (msg, body.data, body.size);
    msgpack_sbuffer_destroy (&body);
    return msg;
}

//  The broker's answer, printed: 0, or the exit code.
static int
s_answer (s_trim_t *self, zframe_t *command, const msgpack_object *root)
{
    const msgpack_object *code = herald_cli_map_get (root, "code");
    const msgpack_object *message = herald_cli_map_get (root, "message");
    if (zframe_streq (command, "ERROR")) {
        if (s_str_is (code, "unknown_command"))
            return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "this broker does not support "
                                    "trimming (HWP/1 TRIM): upgrade it");
        bool has_code = code && code->type == MSGPACK_OBJECT_STR;
        bool has_message = message && message->type == MSGPACK_OBJECT_STR;
        //  A cluster's follower: TRIM goes to the leader, which it names
        const msgpack_object *leader = herald_cli_map_get (root, "leader");
        bool has_leader = s_str_is (code, "not_leader") && leader
                       && leader->type == MSGPACK_OBJECT_STR && leader->via.str.size;
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "%.*s: %.*s%s%.*s%s",
                                has_code? (int) code->via.str.size: 8,
                                has_code? code->via.str.ptr: "internal",
                                has_message? (int) message->via.str.size: 0,
                                has_message? message->via.str.ptr: "",
                                has_leader? " (leader: ": "",
                                has_leader? (int) leader->via.str.size: 0,
                                has_leader? leader->via.str.ptr: "",
                                has_leader? "; give its api with --endpoint)": "");
    }
    if (!zframe_streq (command, "TRIM"))
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "unexpected reply to TRIM");
    uint64_t until = self->until, first = 0, trimmed_ms = 0;
    s_uint (herald_cli_map_get (root, "until"), &until);
    s_uint (herald_cli_map_get (root, "first"), &first);
    s_uint (herald_cli_map_get (root, "trimmed_ms"), &trimmed_ms);
    if (self->opts->format == HERALD_CLI_TABLE) {
        printf ("trimmed seqs up to %" PRIu64 " of ", until);
        if (self->prefix_len) {
            printf ("the topics beginning with ");
            herald_cli_json_string (stdout, self->prefix, self->prefix_len);
        }
        else
            printf ("the whole log");
        printf (" (%s); the first seq still there for it is %" PRIu64 " (%" PRIu64 " ms)\n",
                self->dir? self->dir: "unarchived", first, trimmed_ms);
        return HERALD_CLI_EXIT_OK;
    }
    printf ("{\"trimmed\":true,\"prefix\":");
    herald_cli_json_string (stdout, self->prefix, self->prefix_len);
    printf (",\"until\":%" PRIu64 ",\"first\":%" PRIu64 ",\"trimmed_ms\":%" PRIu64, until, first,
            trimmed_ms);
    if (self->dir) {
        printf (",\"ids_from\":%" PRIu64 ",\"archive\":", self->from);
        herald_cli_json_string (stdout, self->dir, strlen (self->dir));
    }
    else
        printf (",\"unarchived\":true");
    printf ("}\n");
    return HERALD_CLI_EXIT_OK;
}

static int
s_send_trim (s_trim_t *self)
{
    uint64_t rid = herald_cli_conn_rid (self->conn);
    zmsg_t *msg = s_request (self, rid);
    zsock_t *dealer = herald_cli_conn_sock (self->conn);
    if (zmsg_send (&msg, dealer) != 0) {
        zmsg_destroy (&msg);
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "trim: cannot send the request");
    }
    zpoller_t *poller = zpoller_new (dealer, herald_cli_conn_watch_sock (self->conn), NULL);
    int64_t started = zclock_mono ();
    int64_t deadline = started + (int64_t) self->wait_s * 1000;
    int64_t next_say = started + S_SAY_EVERY_MS;
    int rc = -1;
    while (rc < 0) {
        int64_t now = zclock_mono ();
        if (now >= deadline) {
            rc = herald_cli_fail (HERALD_CLI_EXIT_NO_ANSWER, "trim: broker at %s did not "
                                  "answer within %" PRIu64 " s (--wait); the trim may still be "
                                  "applied: herald status shows its trim points",
                                  herald_cli_conn_endpoint (self->conn), self->wait_s);
            break;
        }
        if (now >= next_say) {
            fprintf (stderr, "herald: trim: the broker is checking seqs %" PRIu64 "..%" PRIu64
                     " (%" PRId64 " s)\n", self->dir? self->from: self->covered + 1,
                     self->until, (now - started) / 1000);
            next_say = now + S_SAY_EVERY_MS;
        }
        int64_t step = (next_say < deadline? next_say: deadline) - now;
        void *which = zpoller_wait (poller, (int) (step > 0? step: 1));
        if (!which) {
            if (zpoller_terminated (poller))
                rc = HERALD_CLI_EXIT_FAIL;
            continue;
        }
        if (which != dealer) {
            if (!herald_cli_conn_check (self->conn))
                rc = herald_cli_conn_lost (self->conn);
            continue;
        }
        zmsg_t *answer = zmsg_recv (dealer);
        zframe_t *command = answer? zmsg_first (answer): NULL;
        zframe_t *frame = command? zmsg_next (answer): NULL;
        msgpack_unpacked unpacked;
        msgpack_unpacked_init (&unpacked);
        if (frame && msgpack_unpack_next (&unpacked, (const char *) zframe_data (frame),
                                          zframe_size (frame), NULL) == MSGPACK_UNPACK_SUCCESS
        &&  unpacked.data.type == MSGPACK_OBJECT_MAP) {
            const msgpack_object *got = herald_cli_map_get (&unpacked.data, "rid");
            bool error = zframe_streq (command, "ERROR");
            uint64_t got_rid = 0;
            bool ours = s_uint (got, &got_rid) && got_rid == rid;
            if (ours || (error && !got))
                rc = s_answer (self, command, &unpacked.data);
        }
        msgpack_unpacked_destroy (&unpacked);
        zmsg_destroy (&answer);
    }
    zpoller_destroy (&poller);
    return rc;
}

//  ---------------------------------------------------------------------

static int
s_run (s_trim_t *self)
{
    int rc = herald_cli_conn_open (self->opts, &self->conn);
    if (rc == 0)
        rc = s_status (self);
    if (rc == 0 && self->dir)
        rc = s_check_archive (self);
    else
    if (rc == 0 && self->has_until_ts)
        rc = s_resolve_ts (self);
    else
    if (rc == 0)
        self->until = self->until_seq;
    if (rc == 0 && self->until <= self->covered) {
        //  The prefix is trimmed that far already: a timer's second run
        if (self->opts->format == HERALD_CLI_TABLE) {
            printf ("nothing to trim: ");
            if (self->prefix_len)
                herald_cli_json_string (stdout, self->prefix, self->prefix_len);
            else
                printf ("the log");
            printf (" is trimmed up to seq %" PRIu64 " already\n", self->covered);
        }
        else {
            printf ("{\"trimmed\":false,\"prefix\":");
            herald_cli_json_string (stdout, self->prefix, self->prefix_len);
            printf (",\"until\":%" PRIu64 ",\"first\":%" PRIu64 "}\n", self->covered,
                    self->covered + 1);
        }
    }
    else
    if (rc == 0 && self->dry_run)
        s_print_plan (self, "would trim");
    else
    if (rc == 0)
        rc = s_send_trim (self);
    herald_cli_conn_destroy (&self->conn);
    return rc;
}

int
herald_cli_trim (herald_cli_opts_t *opts, int argc, char **argv)
{
    s_trim_t self;
    memset (&self, 0, sizeof self);
    self.opts = opts;
    self.wait_s = S_WAIT_S;
    const char *wait_text = NULL;
    bool unarchived = false, bad = false;
    int index = 1;
    while (index < argc && !bad) {
        const char *value = NULL;
        if (strcmp (argv [index], "--help") == 0) {
            fputs (s_trim_usage, stdout);
            return HERALD_CLI_EXIT_OK;
        }
        if (strcmp (argv [index], "--unarchived") == 0) {
            unarchived = true;
            index++;
        }
        else
        if (strcmp (argv [index], "--dry-run") == 0) {
            self.dry_run = true;
            index++;
        }
        else
        if (herald_cli_opt (argc, argv, &index, "--archive", &value, &bad))
            self.dir = value;
        else
        if (herald_cli_opt (argc, argv, &index, "--prefix", &value, &bad)) {
            bad = bad || (self.prefix && herald_cli_fail (HERALD_CLI_EXIT_USAGE, "trim: --prefix "
                                                          "given twice (one prefix a trim)"));
            self.prefix = value;
        }
        else
        if (herald_cli_opt (argc, argv, &index, "--until-seq", &value, &bad)) {
            bad = bad || !herald_cli_positive ("--until-seq", value, &self.until_seq);
            self.has_until_seq = true;
        }
        else
        if (herald_cli_opt (argc, argv, &index, "--until-ts", &value, &bad)) {
            bad = bad || !herald_cli_ts ("--until-ts", value, &self.until_ts);
            self.has_until_ts = true;
        }
        else
        if (herald_cli_opt (argc, argv, &index, "--wait", &value, &bad))
            wait_text = value;
        else
        if (!herald_cli_common_opt (opts, argc, argv, &index, &bad))
            return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "trim: unexpected '%s' (see herald "
                                    "trim --help)", argv [index]);
    }
    if (bad)
        return HERALD_CLI_EXIT_USAGE;
    if (!self.dir == !unarchived)
        return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "trim: give --archive DIR (the proof of "
                                "what is trimmed) or --unarchived (see herald trim --help)");
    if (self.dir && !*self.dir)
        return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "trim: --archive: give a directory");
    if (self.has_until_seq && self.has_until_ts)
        return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "trim: give --until-seq or --until-ts, "
                                "not both");
    if (unarchived && !self.prefix)
        return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "trim: --unarchived needs --prefix P "
                                "(--prefix '' for the whole log)");
    if (unarchived && !self.has_until_seq && !self.has_until_ts)
        return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "trim: --unarchived needs --until-seq N "
                                "or --until-ts TIME");
    if (!self.prefix)
        self.prefix = "";
    self.prefix_len = strlen (self.prefix);
    if (self.prefix [0] == '$')
        return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "trim: --prefix: '%s' starts with $ (the "
                                "broker's own topics are not trimmed)", self.prefix);
    herald_msg_t check = { .type = HERALD_MSG_REPLAY };
    herald_str_t prefix = { self.prefix, self.prefix_len };
    check.replay.prefixes = &prefix;
    check.replay.prefix_count = 1;
    if (herald_cli_check_request ("trim", &check))
        return HERALD_CLI_EXIT_USAGE;
    if (wait_text && !herald_cli_positive ("--wait", wait_text, &self.wait_s))
        return HERALD_CLI_EXIT_USAGE;
    if (self.wait_s > 7 * 24 * 3600)
        return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "trim: --wait: at most a week");
    return s_run (&self);
}

//  ---------------------------------------------------------------------
//  replay --archive DIR --continue: no hole between the archive and the
//  live log.

int
herald_cli_trim_continue_check (herald_cli_opts_t *opts, const char *dir,
                                const herald_msg_t *request)
{
    herald_archive_index_t archive;
    char why [HERALD_ARCHIVE_WHY_MAX];
    //  A damaged index is refused by the archive's reader, with its reason
    if (herald_archive_index_load (dir, false, &archive, why, sizeof why))
        return 0;
    uint64_t last = archive.count? archive.segs [archive.count - 1].last_seq: 0;
    herald_archive_index_fini (&archive);
    const __typeof__ (request->replay) *replay = &request->replay;
    uint64_t next = last + 1;       //  where the broker takes over
    if (replay->has_from && replay->from > next)
        next = replay->from;
    if (replay->has_to && replay->to < next)
        return 0;                   //  the archive holds the whole range
    s_trim_t self;
    memset (&self, 0, sizeof self);
    self.opts = opts;
    self.prefix = "";
    int rc = herald_cli_conn_open (opts, &self.conn);
    if (rc)
        return rc;
    //  The first seq the live log holds for the request's prefixes: 1 +
    //  the greatest until among the trim points overlapping one of them
    self.overlap = request;
    rc = s_status (&self);
    uint64_t first = self.covered + 1;
    herald_cli_conn_destroy (&self.conn);
    if (rc == 0 && first > next) {
        uint64_t missing_to = replay->has_to && replay->to < first - 1? replay->to: first - 1;
        rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "replay --continue: seqs %" PRIu64 "..%" PRIu64
                              " are neither in %s (%s%" PRIu64 ") nor in the broker's live log "
                              "(trimmed: its first seq for %s is %" PRIu64 "); nothing printed, "
                              "rather than a log with a hole", next, missing_to, dir,
                              last? "it ends at seq ": "empty: ", last,
                              replay->prefix_count? "these prefixes": "the whole log", first);
    }
    return rc;
}
