/*  =========================================================================
    herald_cli_inspect - `herald inspect`: check a data directory offline

    Opens the store the way the broker does (so a directory a running
    broker holds is refused with the store's own "locked" error) and checks
    what the protocol promises about the log:

        1. a full scan from seq 1 returns seq 1, 2, ... head with no gap
        2. every envelope decodes (herald_event_decode) and names its seq;
           ts never decreases along seq
        3. per topic, ver runs 1, 2, ... with no gap, in seq order
        4. the dedup index ("ids"): each event's id leads back to its own
           seq and ver (herald_store_lookup_id_hash, during the scan), with
           the content hash of its own topic and data where the entry keeps
           one (entries written before hashes were kept have none, and
           pass on seq and ver alone), and the index holds no other entry
           (herald_store_walk_ids)
        5. each topic's stream (herald_store_read) returns exactly the
           events the scan found for it, in ver order, and its ver is the
           store's cached topic ver
        6. the store's counters (head, events, topics, last ts) agree

    The first problem found is printed and the tool exits 1; a consistent
    store prints a summary and exits 0.  Memory: one seq (8 bytes) per
    event, kept per topic for check 5.

    Check 4 needs no id kept in memory: once every event's id has been
    found pointing at its own seq, those are as many distinct entries as
    events, so the index is clean exactly when it holds no more entries
    than that.  Only when it does hold more does a second walk read the
    events its entries name, to show the first stray one.  An entry naming
    a seq past the head is the trace of a log that lost its tail, which the
    scan alone cannot see; so check 4 runs before the streams and counters
    are compared.

    Inspect changes no byte of the directory (issue 11): the store is
    opened read-only (herald_store_options_t.read_only), which reads the
    WAL into memory instead of replaying it into new table files, writes
    no MANIFEST, and sends RocksDB's LOG to a directory of its own; it
    works on a directory it cannot write to.  A directory a broker holds is
    still refused.  What the broker would refuse to start on (a damaged WAL
    record, a missing WAL, a table file or MANIFEST that cannot be read)
    is reported as a problem, exit 1, as is a table block that fails its
    checksum during the scan.  The losses an operator accepted (herald
    repair) are shown, and are not a problem.

    A directory without a RocksDB CURRENT file is refused before opening:
    inspect must never write where there was none.

    A trimmed store (docs/operations.md, "Trimming and retention") is
    checked as it lies on disk (herald_store_walk_log): the log may start
    above seq 1 (reclaim deleted the runs below its first seq), hold holes
    (events reclaim cut out under a prefix trim point: their ids and ts
    stay, and are checked) and trimmed events not reclaimed yet (checked
    as any).  A topic's versions may then skip, but only over events its
    trim points cover; the topics' versions still add up to the head
    (every seq has one topic), the index still holds one id per seq, and
    each stream is read from its first ver still there.  The summary says
    what is trimmed.
    =========================================================================
*/

#include "herald_cli.h"
#include "herald_store.h"
#include "herald_hash.h"
#include "herald_uuid.h"

#include <string.h>
#include <stdarg.h>
#include <sys/stat.h>

static const char *s_inspect_usage =
    "usage: herald inspect --data-dir DIR\n"
    "\n"
    "Check a Herald data directory offline (stop the broker first): seq gapless\n"
    "from 1 (or the log's first seq, once trimmed) to head, every envelope decodes, every event's id leading back to it\n"
    "in the dedup index (with the hash of its topic and data, where the entry keeps\n"
    "one) and no other entry there, every topic's versions gapless\n"
    "and matching its stream, and the store's counters consistent.  Reports a\n"
    "damaged or missing write-ahead log, table file or MANIFEST as heraldd would\n"
    "refuse it.  Changes no byte of DIR (it is opened read-only, its write-ahead\n"
    "log read in memory).  Exits 0 and prints a summary when consistent, or\n"
    "prints the first problem and exits 1.\n";

typedef struct {
    uint64_t *seqs;                 //  seqs of the topic's events, in ver order
    uint64_t *vers;                 //  and their vers (gapless unless trimmed)
    size_t count;
    size_t cap;
    uint64_t ver;                   //  the store's ver of the topic
    bool listed;                    //  herald_store_walk_topics named it
} s_topic_t;

static void
s_topic_destroy (void **item_p)
{
    s_topic_t *topic = *item_p;
    if (topic) {
        free (topic->seqs);
        free (topic->vers);
        free (topic);
    }
    *item_p = NULL;
}

typedef struct {
    const char *dir;
    herald_store_t *store;
    zhashx_t *topics;               //  topic name -> s_topic_t
    msgpack_zone zone;
    uint64_t events;
    uint64_t last_ts;
    uint64_t id_problems;           //  events whose id does not lead back to them
    char id_first [256];            //  the first of them, described
    uint64_t id_entries;            //  entries in the dedup index
    uint64_t id_unhashed;           //  events whose entry has no content hash (older)
    uint64_t id_strays;             //  of those, found naming a seq the log lacks
    char stray_first [256];         //  the first of those, described
    uint64_t start;                 //  the first seq stored (0: none)
    uint64_t holes;                 //  events reclaim cut out
    uint64_t id_below;              //  entries naming a seq below start
    int rc;                         //  the walk's first problem
} s_inspect_t;

//  Report the first problem; returns HERALD_CLI_EXIT_FAIL.
static int
s_problem (s_inspect_t *self, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

static int
s_problem (s_inspect_t *self, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    fprintf (stderr, "herald: inspect: %s: ", self->dir);
    vfprintf (stderr, format, args);
    fputc ('\n', stderr);
    va_end (args);
    return HERALD_CLI_EXIT_FAIL;
}

//  Record one scanned event under its topic, checking its ver.
static int
s_record (s_inspect_t *self, const herald_event_t *event)
{
    char name [HERALD_TOPIC_MAX + 1];
    memcpy (name, event->topic, event->topic_len);
    name [event->topic_len] = 0;
    s_topic_t *topic = zhashx_lookup (self->topics, name);
    if (!topic) {
        topic = calloc (1, sizeof *topic);
        if (!topic || zhashx_insert (self->topics, name, topic) != 0) {
            free (topic);
            return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "out of memory");
        }
    }
    uint64_t last_ver = topic->count? topic->vers [topic->count - 1]: 0;
    uint64_t last_seq = topic->count? topic->seqs [topic->count - 1]: 0;
    //  A skip is allowed over trimmed events only: the first one skipped
    //  comes after last_seq, so last_seq must be below the trim point
    if (event->ver <= last_ver
    ||  (event->ver != last_ver + 1
         && last_seq >= herald_store_topic_trimmed (self->store, event->topic,
                                                    event->topic_len)))
        return s_problem (self, "seq %" PRIu64 ": topic '%s' has ver %" PRIu64
                          ", expected %" PRIu64 " (versions must be gapless)",
                          event->seq, name, event->ver, last_ver + 1);
    if (topic->count == topic->cap) {
        size_t cap = topic->cap ? topic->cap * 2 : 8;
        uint64_t *grown = realloc (topic->seqs, cap * sizeof *grown);
        if (grown)
            topic->seqs = grown;
        uint64_t *grown_vers = grown? realloc (topic->vers, cap * sizeof *grown_vers): NULL;
        if (!grown_vers)
            return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "out of memory");
        topic->vers = grown_vers;
        topic->cap = cap;
    }
    topic->vers [topic->count] = event->ver;
    topic->seqs [topic->count++] = event->seq;
    return 0;
}

//  Check 4, first half: event's id leads back to its own seq and ver.
//  Problems are counted, and the first described, without stopping the
//  scan; only a RocksDB failure ends it.
static int
s_check_id (s_inspect_t *self, const herald_event_t *event)
{
    uint64_t seq, ver, hash;
    bool has_hash;
    herald_err code = herald_store_lookup_id_hash (self->store, event->id, &seq, &ver, &hash,
                                                   &has_hash);
    if (code == HERALD_ERR_IO)
        return s_problem (self, "seq %" PRIu64 ": cannot look its id up in the dedup index",
                          event->seq);
    bool leads_back = code == HERALD_OK && seq == event->seq && ver == event->ver;
    if (leads_back && !has_hash) {
        self->id_unhashed++;
        return 0;
    }
    uint64_t content = herald_hash_content (event);
    if (leads_back && hash == content)
        return 0;
    if (self->id_problems++ == 0) {
        char id [HERALD_UUID_STR_LEN + 1];
        herald_uuid_format (event->id, id);
        if (code == HERALD_ERR_NOT_FOUND)
            snprintf (self->id_first, sizeof self->id_first,
                      "seq %" PRIu64 ": its id %s is missing", event->seq, id);
        else
        if (leads_back)
            snprintf (self->id_first, sizeof self->id_first,
                      "seq %" PRIu64 ": the entry of its id %s keeps content hash %016" PRIx64
                      ", its topic and data hash to %016" PRIx64, event->seq, id, hash,
                      content);
        else
        if (code == HERALD_OK)
            snprintf (self->id_first, sizeof self->id_first,
                      "seq %" PRIu64 ": its id %s leads to seq %" PRIu64 " ver %" PRIu64
                      ", not to seq %" PRIu64 " ver %" PRIu64, event->seq, id, seq, ver,
                      event->seq, event->ver);
        else
            snprintf (self->id_first, sizeof self->id_first,
                      "seq %" PRIu64 ": the entry of its id %s is damaged (%s)", event->seq,
                      id, herald_strerror (code));
    }
    return 0;
}

//  A hole (an event reclaim cut out): its id leads back to its seq, its
//  ts keeps the order, and a prefix trim point covers it.
static int
s_check_hole (s_inspect_t *self, uint64_t seq, const uint8_t *bytes, size_t len)
{
    uint8_t id [HERALD_ID_BYTES];
    uint64_t ts, id_seq, ver, hash;
    bool has_hash;
    herald_store_hole_parse (bytes, len, id, &ts);
    if (ts < self->last_ts)
        return s_problem (self, "seq %" PRIu64 " (cut out by a trim): its ts is before the "
                          "previous one", seq);
    if (seq >= herald_store_first (self->store, NULL, 0))
        return s_problem (self, "seq %" PRIu64 " was cut out of the log, but no trim point "
                          "covers it", seq);
    herald_err code = herald_store_lookup_id_hash (self->store, id, &id_seq, &ver, &hash,
                                                   &has_hash);
    if (code == HERALD_ERR_IO)
        return s_problem (self, "seq %" PRIu64 ": cannot look its id up in the dedup index",
                          seq);
    if ((code != HERALD_OK || id_seq != seq) && self->id_problems++ == 0) {
        char text [HERALD_UUID_STR_LEN + 1];
        herald_uuid_format (id, text);
        snprintf (self->id_first, sizeof self->id_first,
                  "seq %" PRIu64 " (cut out by a trim): its id %s %s", seq, text,
                  code == HERALD_OK? "leads to another seq": "is missing");
    }
    self->holes++;
    self->last_ts = ts;
    return 0;
}

//  Checks 1-3 and the first half of 4, for one stored seq.
static int
s_check_event (uint64_t seq, const uint8_t *bytes, size_t len, bool hole, void *arg)
{
    s_inspect_t *self = arg;
    herald_event_t event;
    herald_error_t err;
    msgpack_zone_clear (&self->zone);
    int rc = 0;
    if (!self->start) {
        //  The log starts at 1, or (trimmed, reclaimed) at most at its first seq
        self->start = seq;
        if (seq != 1 && seq > herald_store_log_first (self->store))
            return self->rc = s_problem (self, "seq gap: the log starts at seq %" PRIu64
                                         ", its first seq is %" PRIu64, seq,
                                         herald_store_log_first (self->store));
    }
    if (hole)
        rc = s_check_hole (self, seq, bytes, len);
    else
    if (herald_event_decode (&event, bytes, len, &self->zone, &err) != HERALD_OK)
        rc = s_problem (self, "seq %" PRIu64 ": envelope does not decode: %s: %s",
                        seq, err.field, err.message);
    else
    if (event.seq != seq)
        rc = s_problem (self, "seq %" PRIu64 ": envelope says seq %" PRIu64, seq, event.seq);
    else
    if (event.ts < self->last_ts) {
        char ts [40], last [40];
        rc = s_problem (self, "seq %" PRIu64 ": ts %s is before the previous ts %s", seq,
                        herald_cli_time_format (event.ts, ts, sizeof ts),
                        herald_cli_time_format (self->last_ts, last, sizeof last));
    }
    else {
        rc = s_record (self, &event);
        if (rc == 0)
            rc = s_check_id (self, &event);
        self->last_ts = event.ts;
    }
    self->events = seq;
    return self->rc = rc;
}

static int
s_check_scan (s_inspect_t *self)
{
    herald_error_t err;
    int rc = herald_store_walk_log (self->store, s_check_event, self, &err);
    if (rc < 0)
        return s_problem (self, "scan failed after seq %" PRIu64 ": %s", self->events,
                          err.message);
    return self->rc;
}

//  Describe an entry of the dedup index that leads to no event of the log.
static void
s_describe_stray (s_inspect_t *self, const uint8_t *id, uint64_t seq, uint64_t ver,
                  const char *why)
{
    char text [HERALD_UUID_STR_LEN + 1];
    herald_uuid_format (id, text);
    snprintf (self->stray_first, sizeof self->stray_first,
              "id %s names seq %" PRIu64 " ver %" PRIu64 ", %s", text, seq, ver, why);
}

//  Walk callback: count the entries, and note those naming a seq the log
//  does not hold (no event read: cheap).
static int
s_count_id (const uint8_t id [HERALD_ID_BYTES], uint64_t seq, uint64_t ver, void *arg)
{
    s_inspect_t *self = arg;
    self->id_entries++;
    if (seq && seq < self->start)
        self->id_below++;           //  its run was deleted by a trim's reclaim
    if (seq == 0 || seq > self->events) {
        if (self->id_strays++ == 0)
            s_describe_stray (self, id, seq, ver, seq? "past the head of the log"
                                                     : "which no event can have");
    }
    return 0;
}

//  Walk callback: stop at the first entry whose seq holds another event.
static int
s_find_stray (const uint8_t id [HERALD_ID_BYTES], uint64_t seq, uint64_t ver, void *arg)
{
    s_inspect_t *self = arg;
    uint8_t *bytes;
    size_t len;
    if (herald_store_get (self->store, seq, &bytes, &len, NULL) != HERALD_OK)
        return 0;                   //  the scan read every seq; not this walk's to report
    herald_event_t event;
    herald_error_t err;
    msgpack_zone_clear (&self->zone);
    int found = 0;
    if (herald_event_decode (&event, bytes, len, &self->zone, &err) == HERALD_OK
    &&  memcmp (event.id, id, HERALD_ID_BYTES) != 0) {
        char other [HERALD_UUID_STR_LEN + 1];
        herald_uuid_format (event.id, other);
        char why [96];
        snprintf (why, sizeof why, "where the log holds id %s", other);
        s_describe_stray (self, id, seq, ver, why);
        found = 1;
    }
    free (bytes);
    return found;
}

//  Check 4: the dedup index, both ways.
static int
s_check_ids (s_inspect_t *self)
{
    if (self->id_problems)
        return s_problem (self, "dedup index: %s (%" PRIu64 " event%s in all whose id does "
                          "not lead back to it)", self->id_first, self->id_problems,
                          self->id_problems == 1? "": "s");
    herald_error_t err;
    if (herald_store_walk_ids (self->store, s_count_id, self, &err) != 0)
        return s_problem (self, "dedup index: cannot read it: %s", err.message);
    //  One entry per seq, those of trimmed and reclaimed events too
    uint64_t below = self->start? self->start - 1: 0;
    if (self->id_entries == self->events && self->id_below == below)
        return 0;
    if (self->id_strays == 0 && self->id_entries > self->events) {
        int rc = herald_store_walk_ids (self->store, s_find_stray, self, &err);
        if (rc < 0)
            return s_problem (self, "dedup index: cannot read it: %s", err.message);
    }
    return s_problem (self, "dedup index: it holds %" PRIu64 " entries, the log %" PRIu64
                      " events%s%s", self->id_entries, self->events,
                      self->stray_first [0]? "; the first stray: ": "", self->stray_first);
}

//  Check 5 for one topic.
static int
s_check_topic (s_inspect_t *self, const char *name, const s_topic_t *topic)
{
    size_t name_len = strlen (name);
    uint64_t ver;
    herald_error_t ver_err;
    if (herald_store_topic_ver (self->store, name, name_len, &ver, &ver_err) != HERALD_OK)
        return s_problem (self, "topic '%s': cannot read its version: %s", name,
                          ver_err.message);
    uint64_t last_ver = topic->count? topic->vers [topic->count - 1]: 0;
    uint64_t last_seq = topic->count? topic->seqs [topic->count - 1]: 0;
    uint64_t trimmed = herald_store_topic_trimmed (self->store, name, name_len);
    //  Its last events may be trimmed and cut out: then its ver is above
    //  the last one found, over trimmed events only
    if (ver < last_ver || (ver > last_ver && last_seq >= trimmed))
        return s_problem (self, "topic '%s': the store says ver %" PRIu64 ", the log holds %"
                          PRIu64, name, ver, last_ver);
    herald_error_t err;
    uint64_t first_ver = 1;
    if (trimmed
    &&  herald_store_topic_first_ver (self->store, name, name_len, &first_ver, &err)
            != HERALD_OK)
        return s_problem (self, "topic '%s': cannot find its first ver: %s", name,
                          err.message);
    size_t index = 0;
    while (index < topic->count && topic->vers [index] < first_ver)
        index++;
    if (first_ver > ver)
        return 0;                   //  every event of it is trimmed
    herald_scan_t *read = herald_store_read (self->store, name, name_len, first_ver, 0, &err);
    if (!read)
        return s_problem (self, "topic '%s': cannot read its stream: %s", name, err.message);
    int rc = 0, more;
    const uint8_t *bytes;
    size_t len;
    uint64_t seq;
    while (rc == 0 && (more = herald_scan_next (read, &bytes, &len, &seq)) == 1) {
        herald_event_t event;
        msgpack_zone_clear (&self->zone);
        if (herald_event_decode (&event, bytes, len, &self->zone, &err) != HERALD_OK)
            rc = s_problem (self, "topic '%s' ver %zu: envelope does not decode: %s: %s",
                            name, index + 1, err.field, err.message);
        else
        if (index >= topic->count)
            rc = s_problem (self, "topic '%s': its stream holds more than the %zu events "
                            "the log holds", name, topic->count);
        else
        if (event.ver != topic->vers [index] || event.seq != topic->seqs [index]
        ||  event.topic_len != name_len || memcmp (event.topic, name, name_len) != 0)
            rc = s_problem (self, "topic '%s' ver %zu: its stream gives seq %" PRIu64 " ver %"
                            PRIu64 ", the log has it at seq %" PRIu64, name, index + 1,
                            event.seq, event.ver, topic->seqs [index]);
        index++;
    }
    if (rc == 0 && more < 0)
        rc = s_problem (self, "topic '%s': read failed: %s", name,
                        herald_scan_error (read)->message);
    if (rc == 0 && index != topic->count)
        rc = s_problem (self, "topic '%s': its stream holds %zu events, the log %zu",
                        name, index, topic->count);
    herald_scan_destroy (&read);
    return rc;
}

//  herald_store_walk_topics callback: note the topic and its ver; one the
//  scan did not meet must have every event trimmed.
static int
s_list_topic (const char *name, size_t len, uint64_t ver, void *arg)
{
    s_inspect_t *self = arg;
    char key [HERALD_TOPIC_MAX + 1];
    memcpy (key, name, len);
    key [len] = 0;
    s_topic_t *topic = zhashx_lookup (self->topics, key);
    if (!topic) {
        if (ver == 0 || herald_store_topic_trimmed (self->store, name, len) == 0)
            return self->rc = s_problem (self, "topic '%s' (ver %" PRIu64 ") has no event in "
                                         "the log and none is trimmed", key, ver);
        topic = calloc (1, sizeof *topic);
        if (!topic || zhashx_insert (self->topics, key, topic) != 0) {
            free (topic);
            return self->rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "out of memory");
        }
    }
    topic->listed = true;
    topic->ver = ver;
    return 0;
}

//  Checks 5 and 6.
static int
s_check_totals (s_inspect_t *self)
{
    uint64_t head = herald_store_head (self->store);
    if (head != self->events)
        return s_problem (self, "the store's head is %" PRIu64 " but the log ends at seq %"
                          PRIu64, head, self->events);
    //  The events from the log's first seq (herald_store.h)
    uint64_t first = herald_store_log_first (self->store);
    uint64_t live = self->events >= first? self->events - first + 1: 0;
    if (herald_store_event_count (self->store) != live)
        return s_problem (self, "the store counts %" PRIu64 " events, the log holds %" PRIu64,
                          herald_store_event_count (self->store), live);
    //  Every topic the store knows, those whose events are all trimmed
    //  too: their vers add up to the head (each seq has one topic)
    herald_error_t err;
    self->rc = 0;
    if (herald_store_walk_topics (self->store, s_list_topic, self, &err) < 0)
        return s_problem (self, "cannot list the topics: %s", err.message);
    if (self->rc)
        return self->rc;
    if (herald_store_topic_count (self->store) != zhashx_size (self->topics))
        return s_problem (self, "the store counts %" PRIu64 " topics, the log holds %zu",
                          herald_store_topic_count (self->store), zhashx_size (self->topics));
    uint64_t vers = 0;
    s_topic_t *listed;
    for (listed = zhashx_first (self->topics); listed; listed = zhashx_next (self->topics)) {
        if (!listed->listed)
            return s_problem (self, "topic '%s' is in the log but not in the store's topics",
                              (const char *) zhashx_cursor (self->topics));
        vers += listed->ver;
    }
    if (vers != self->events)
        return s_problem (self, "the topics' versions add up to %" PRIu64 ", the log holds %"
                          PRIu64 " seqs", vers, self->events);
    if (herald_store_last_ts (self->store) != self->last_ts) {
        char stored [40], at_head [40];
        return s_problem (self, "the store's last ts is %s, the head event's %s",
                          herald_cli_time_format (herald_store_last_ts (self->store), stored,
                                                  sizeof stored),
                          herald_cli_time_format (self->last_ts, at_head, sizeof at_head));
    }
    s_topic_t *topic;
    for (topic = zhashx_first (self->topics); topic; topic = zhashx_next (self->topics)) {
        int rc = s_check_topic (self, zhashx_cursor (self->topics), topic);
        if (rc)
            return rc;
    }
    return 0;
}

int
herald_cli_inspect (herald_cli_opts_t *opts, int argc, char **argv)
{
    const char *dir = NULL;
    int index = 1;
    bool bad = false;
    while (index < argc && !bad) {
        if (strcmp (argv [index], "--help") == 0) {
            fputs (s_inspect_usage, stdout);
            return HERALD_CLI_EXIT_OK;
        }
        if (!herald_cli_opt (argc, argv, &index, "--data-dir", &dir, &bad)
        &&  !herald_cli_common_opt (opts, argc, argv, &index, &bad))
            return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "inspect: unexpected '%s' "
                                                           "(see herald inspect --help)",
                                    argv [index]);
    }
    if (bad)
        return HERALD_CLI_EXIT_USAGE;
    if (!dir)
        return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "inspect: give --data-dir DIR");

    struct stat info;
    char current [4096];
    snprintf (current, sizeof current, "%s/CURRENT", dir);
    if (stat (dir, &info) != 0 || !S_ISDIR (info.st_mode))
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "inspect: %s is not a directory", dir);
    if (stat (current, &info) != 0)
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "inspect: %s holds no Herald store%s",
                                dir, herald_store_wal_files (dir, NULL, 0, NULL)
                                     ? " (it holds RocksDB files but no CURRENT file: damaged)"
                                     : "");

    s_inspect_t self = { .dir = dir };
    herald_error_t err;
    herald_store_options_t options = { .read_only = true };
    self.store = herald_store_open (dir, &options, &err);
    if (!self.store)
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "inspect: %s", err.message);
    self.topics = zhashx_new ();
    if (!self.topics) {
        herald_store_destroy (&self.store);
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "out of memory");
    }
    zhashx_set_destructor (self.topics, s_topic_destroy);
    msgpack_zone_init (&self.zone, 4096);

    int rc = s_check_scan (&self);
    if (rc == 0)
        rc = s_check_ids (&self);
    if (rc == 0)
        rc = s_check_totals (&self);
    size_t loss_count;
    const herald_loss_t *losses = herald_store_losses (self.store, &loss_count);
    //  What is trimmed, for the summary
    herald_trim_t *trims = calloc (HERALD_TRIMS_MAX, sizeof (herald_trim_t));
    size_t trim_count = trims? herald_store_trims (self.store, trims, HERALD_TRIMS_MAX): 0;
    if (rc == 0) {
        //  Times for people are RFC 3339 UTC, as in the event table; the
        //  JSON keeps Unix ns (last_ts, ts), the machine's field
        if (opts->format == HERALD_CLI_TABLE) {
            char ts [40];
            printf ("%s: consistent\n  events  %" PRIu64 " (seq %" PRIu64 "..%" PRIu64
                    ", gapless)\n"
                    "  topics  %zu (versions gapless, streams match)\n"
                    "  ids     %" PRIu64 " (each leads back to its event; %" PRIu64
                    " from before content hashes)\n"
                    "  last ts %s\n  lineage %zu (accepted losses)\n", dir,
                    herald_store_event_count (self.store),
                    self.start > herald_store_log_first (self.store)
                    ? self.start: herald_store_log_first (self.store), self.events,
                    zhashx_size (self.topics), self.id_entries,
                    self.id_unhashed, self.events ? herald_cli_time_format (self.last_ts, ts,
                    sizeof ts) : "- (no event)", loss_count);
            for (size_t loss = 0; loss < loss_count; loss++)
                printf ("    %" PRIu64 ": events after seq %" PRIu64 " lost, accepted at %s: "
                        "%s\n", losses [loss].lineage, losses [loss].lost_after,
                        herald_cli_time_format (losses [loss].ts, ts, sizeof ts),
                        herald_store_loss_reason (self.store, loss));
            if (trim_count) {
                printf ("  trimmed first seq %" PRIu64 "; %zu trim point%s; %" PRIu64
                        " event%s cut out, %" PRIu64 " seq%s reclaimed whole\n",
                        herald_store_log_first (self.store), trim_count,
                        trim_count == 1? "": "s", self.holes, self.holes == 1? "": "s",
                        self.start? self.start - 1: 0,
                        self.start == 2? "": "s");
                for (size_t i = 0; i < trim_count; i++)
                    printf ("    \"%.*s\" until %" PRIu64 ", at %s\n",
                            (int) trims [i].prefix_len, trims [i].prefix, trims [i].until,
                            herald_cli_time_format (trims [i].ts, ts, sizeof ts));
            }
        }
        else {
            fputs ("{\"data_dir\":", stdout);
            herald_cli_json_string (stdout, dir, strlen (dir));
            printf (",\"consistent\":true,\"first\":%" PRIu64 ",\"holes\":%" PRIu64
                    ",\"trims\":[", herald_store_log_first (self.store), self.holes);
            for (size_t i = 0; i < trim_count; i++) {
                printf ("%s{\"prefix\":", i? ",": "");
                herald_cli_json_string (stdout, trims [i].prefix, trims [i].prefix_len);
                printf (",\"until\":%" PRIu64 ",\"ts\":%" PRIu64 "}", trims [i].until,
                        trims [i].ts);
            }
            printf ("],\"head\":%" PRIu64 ",\"events\":%" PRIu64
                    ",\"topics\":%zu,\"ids\":%" PRIu64 ",\"ids_unhashed\":%" PRIu64
                    ",\"last_ts\":%" PRIu64
                    ",\"lineage\":%zu,\"losses\":[", self.events,
                    herald_store_event_count (self.store),
                    zhashx_size (self.topics), self.id_entries, self.id_unhashed,
                    self.last_ts, loss_count);
            for (size_t loss = 0; loss < loss_count; loss++) {
                const char *reason = herald_store_loss_reason (self.store, loss);
                printf ("%s{\"lineage\":%" PRIu64 ",\"lost_after\":%" PRIu64 ",\"ts\":%"
                        PRIu64 ",\"reason\":", loss? ",": "", losses [loss].lineage,
                        losses [loss].lost_after, losses [loss].ts);
                herald_cli_json_string (stdout, reason, strlen (reason));
                fputc ('}', stdout);
            }
            fputs ("]}\n", stdout);
        }
    }
    free (trims);
    msgpack_zone_destroy (&self.zone);
    zhashx_destroy (&self.topics);
    herald_store_destroy (&self.store);
    return rc;
}
