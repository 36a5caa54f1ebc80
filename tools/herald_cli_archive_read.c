/*  =========================================================================
    herald_cli_archive_read - herald archive verify, and replay --archive

    Both read segments through herald_archive_reader, which hands out an
    envelope only from a block whose checksum matched.  replay --archive
    first checks the index and that every segment it will read is there
    with the size the index says, so a missing or cut segment is refused
    before anything is printed; damage inside a segment ends the output
    at the damage with exit 1, as a broker's stream ends with ERROR: the
    events printed before it are right, and none after it is printed.
    =========================================================================
*/

#include "herald_cli.h"
#include "herald_archive.h"

#include <dirent.h>
#include <string.h>
#include <sys/stat.h>

//  herald archive verify DIR
int herald_cli_archive_verify (herald_cli_opts_t *opts, int argc, char **argv);

int
herald_cli_archive_verify (herald_cli_opts_t *opts, int argc, char **argv)
{
    const char *dir = NULL;
    int index = 1;
    bool bad = false;
    while (index < argc && !bad) {
        if (strcmp (argv [index], "--help") == 0) {
            fputs ("usage: herald archive verify DIR\n"
                   "\n"
                   "Check an archive: the index's checksum and seq continuity, every\n"
                   "segment's header, block and file checksums, its ids against the index,\n"
                   "and that every envelope decodes with the seq, ts and id the archive says.\n"
                   "Exit 0 when all is right; 1 naming the first damaged file and offset.\n",
                   stdout);
            return HERALD_CLI_EXIT_OK;
        }
        if (herald_cli_common_opt (opts, argc, argv, &index, &bad))
            continue;
        if (argv [index][0] != '-' && !dir)
            dir = argv [index++];
        else
            return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "archive verify: unexpected '%s' "
                                    "(see herald archive verify --help)", argv [index]);
    }
    if (bad)
        return HERALD_CLI_EXIT_USAGE;
    if (!dir)
        return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "archive verify: give DIR");
    herald_archive_index_t archive;
    char why [HERALD_ARCHIVE_WHY_MAX];
    if (herald_archive_index_load (dir, false, &archive, why, sizeof why))
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "archive verify: %s", why);
    msgpack_zone zone;
    msgpack_zone_init (&zone, 4096);
    uint64_t events = 0, bytes = 0;
    int rc = 0;
    for (size_t at = 0; at < archive.count && rc == 0; at++) {
        herald_archive_reader_t *reader = herald_archive_reader_new (dir, &archive.segs [at],
                                                                     why, sizeof why);
        if (!reader) {
            rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "archive verify: %s", why);
            break;
        }
        const uint8_t *envelope;
        size_t len;
        uint64_t seq, ts;
        int more;
        while ((more = herald_archive_reader_next (reader, &envelope, &len, &seq, &ts)) > 0) {
            herald_event_t event;
            herald_error_t err;
            msgpack_zone_clear (&zone);
            if (herald_event_decode (&event, envelope, len, &zone, &err) != HERALD_OK) {
                rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "archive verify: %s/%s: the "
                                      "envelope of seq %" PRIu64 " does not decode: %s", dir,
                                      archive.segs [at].name, seq, err.message);
                break;
            }
            if (memcmp (event.id, herald_archive_reader_id (reader), HERALD_ID_BYTES) != 0) {
                rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "archive verify: %s/%s: the id of "
                                      "seq %" PRIu64 " differs from the ids block", dir,
                                      archive.segs [at].name, seq);
                break;
            }
            events++;
        }
        if (more < 0)
            rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "archive verify: %s", why);
        bytes += archive.segs [at].bytes;
        herald_archive_reader_destroy (&reader);
    }
    msgpack_zone_destroy (&zone);
    //  Segment files the index does not name: what a run that died between
    //  renaming a segment and saving the index leaves (the next run
    //  writes it again); said, not an error
    DIR *handle = rc == 0 ? opendir (dir) : NULL;
    struct dirent *entry;
    while (handle && (entry = readdir (handle)) != NULL) {
        if (strncmp (entry->d_name, "seg-", 4) != 0)
            continue;
        bool named = false;
        for (size_t at = 0; at < archive.count && !named; at++)
            named = strcmp (archive.segs [at].name, entry->d_name) == 0;
        if (!named)
            fprintf (stderr, "herald: archive verify: note: %s/%s is not in the index (left by "
                     "an interrupted run; not part of the archive)\n", dir, entry->d_name);
    }
    if (handle)
        closedir (handle);
    if (rc == 0 && archive.count)
        printf ("ok: %s holds seq %" PRIu64 "..%" PRIu64 " (%" PRIu64 " events, %zu segment%s, %"
                PRIu64 " bytes)\n", dir, archive.segs [0].first_seq,
                archive.segs [archive.count - 1].last_seq, events, archive.count,
                archive.count == 1 ? "" : "s", bytes);
    else
    if (rc == 0)
        printf ("ok: %s is an empty archive\n", dir);
    herald_archive_index_fini (&archive);
    return rc;
}

//  Whether topic[0..len) begins with one of the request's prefixes.
static bool
s_matches (const herald_msg_t *request, const char *topic, size_t len)
{
    size_t count = request->replay.prefix_count;
    if (count == 0)
        return true;
    for (size_t at = 0; at < count; at++) {
        herald_str_t prefix = request->replay.prefixes [at];
        if (prefix.len <= len && memcmp (prefix.ptr, topic, prefix.len) == 0)
            return true;
    }
    return false;
}

int
herald_cli_archive_replay (herald_cli_opts_t *opts, const char *dir, const herald_msg_t *request,
                           uint64_t max, uint64_t *printed, uint64_t *last, bool *finished,
                           bool *started_out)
{
    *finished = false;
    *started_out = false;
    herald_archive_index_t archive;
    char why [HERALD_ARCHIVE_WHY_MAX];
    *last = 0;
    if (herald_archive_index_load (dir, false, &archive, why, sizeof why))
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "replay --archive: %s", why);
    int rc = 0;
    if (archive.count == 0) {
        herald_archive_index_fini (&archive);
        return 0;
    }
    const herald_archive_seg_t *first = &archive.segs [0];
    *last = archive.segs [archive.count - 1].last_seq;
    __typeof__ (request->replay) const *replay = &request->replay;
    //  Without --from: from the archive's first seq (an archive started
    //  with --from-seq holds no earlier one to miss)
    uint64_t from = replay->has_from ? replay->from : first->first_seq;
    if (replay->has_from_ts && first->first_seq > 1 && first->first_ts >= replay->from_ts)
        rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "replay --archive: %s starts at seq %" PRIu64
                              " (ts %" PRIu64 "); earlier events, not in it, may match --from-ts",
                              dir, first->first_seq, first->first_ts);
    else
    if (!replay->has_from_ts && from < first->first_seq)
        rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "replay --archive: %s holds seq %" PRIu64
                              "..%" PRIu64 ", not seq %" PRIu64, dir, first->first_seq, *last,
                              from);
    //  Every segment there, at its size, before anything is printed
    for (size_t at = 0; at < archive.count && rc == 0; at++) {
        char path [4200];
        struct stat info;
        snprintf (path, sizeof path, "%s/%s", dir, archive.segs [at].name);
        if (stat (path, &info) != 0)
            rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "replay --archive: %s: missing (the "
                                  "index names it)", path);
        else
        if ((uint64_t) info.st_size != archive.segs [at].bytes)
            rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "replay --archive: %s is %" PRIu64
                                  " bytes, the index says %" PRIu64 " (cut short or grown)",
                                  path, (uint64_t) info.st_size, archive.segs [at].bytes);
    }
    bool started = !replay->has_from_ts;
    bool done = false;
    for (size_t at = 0; at < archive.count && rc == 0 && !done; at++) {
        const herald_archive_seg_t *seg = &archive.segs [at];
        if (seg->last_seq < from || (replay->has_from_ts && !started && seg->last_ts < replay->from_ts))
            continue;
        if ((replay->has_to && seg->first_seq > replay->to)
        ||  (replay->has_until_ts && seg->first_ts > replay->until_ts))
            break;
        herald_archive_reader_t *reader = herald_archive_reader_new (dir, seg, why, sizeof why);
        if (!reader) {
            rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "replay --archive: %s", why);
            break;
        }
        const uint8_t *envelope;
        size_t len;
        uint64_t seq, ts;
        int more;
        while (rc == 0 && (more = herald_archive_reader_next (reader, &envelope, &len, &seq,
                                                             &ts)) > 0) {
            if (seq < from)
                continue;
            if (!started && ts < replay->from_ts)
                continue;
            started = true;
            if ((replay->has_to && seq > replay->to)
            ||  (replay->has_until_ts && ts > replay->until_ts)) {
                done = true;
                break;
            }
            const char *topic;
            size_t topic_len;
            uint64_t pseq, ver, pts;
            herald_event_peek (envelope, len, &topic, &topic_len, &pseq, &ver, &pts);
            if (!s_matches (request, topic, topic_len))
                continue;
            rc = herald_cli_print_envelope (opts->format, envelope, len);
            (*printed)++;
            if (max && *printed >= max)
                done = true;
            if (done)
                break;
        }
        if (rc == 0 && !done && more < 0) {
            fflush (stdout);
            rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "replay --archive: %s", why);
        }
        herald_archive_reader_destroy (&reader);
    }
    *finished = done;
    *started_out = started;
    herald_archive_index_fini (&archive);
    return rc;
}
