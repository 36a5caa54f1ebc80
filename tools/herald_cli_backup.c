/*  =========================================================================
    herald_cli_backup - `herald backup`, `herald backup verify`, `herald restore`

        herald backup --to DIR          ask the broker for an online backup
        herald backup verify DIR        check a backup's every checksum
        herald restore --from DIR --data-dir D    restore it, offline

    backup is one BACKUP request (HWP/1 addition, docs/protocol.md): the
    broker writes DIR on its own host, on a thread of its own, and answers
    once the backup is whole.  The CLI waits up to --wait seconds (default
    3600) for that answer, saying every 10 s that it still waits; a DIR
    given relative is made absolute from this shell's directory, which is
    only meaningful on the broker's host.

    verify and restore are local and read the backup whole (store/
    herald_backup.c); they report progress on stderr.  restore refuses a
    data directory that holds anything or that a broker holds, before it
    reads a byte.

    Exit status: 0 done; 1 refused or failed (the file named); 2 no broker
    answered (backup); 64 a usage error.
    =========================================================================
*/

#include "herald_cli.h"
#include "herald_backup.h"

#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_WAIT_S        3600        //  backup: how long to wait for the broker's answer
#define S_SAY_EVERY_MS  10000       //  ... saying it still waits this often

static const char *s_backup_usage =
    "usage: herald backup --to DIR [--wait SECONDS]\n"
    "       herald backup verify DIR\n"
    "\n"
    "backup: the broker writes an online backup of its store into DIR, on the\n"
    "broker's host, while it goes on serving (a consistent RocksDB checkpoint:\n"
    "every event acknowledged before the request, with a manifest of checksums).\n"
    "DIR must not exist or be empty, and its parent must exist.  A relative DIR is\n"
    "made absolute from this directory (meaningful when the broker runs here).\n"
    "Needs the grant admin = backup when security is on.\n"
    "  --wait S      how long to wait for the broker's answer (default 3600)\n"
    "\n"
    "verify: check DIR offline: its manifest and every file's size and SHA-256.\n"
    "\n"
    "Default format: table for verify, json for backup (--format table: a line).\n"
    "Exit status: 0 done, or the backup is whole; 1 refused, failed or damaged\n"
    "(the file is named); 2 no broker answered; 64 a usage error.\n";

static const char *s_restore_usage =
    "usage: herald restore --from DIR --data-dir D [--keep-lineage]\n"
    "\n"
    "Offline: restore the backup in DIR into the data directory D of a stopped\n"
    "broker.  D must not exist or be empty.  Every checksum is verified first;\n"
    "the files are copied (checked again), synced, opened as a store and checked\n"
    "against the manifest, then renamed into place: D appears whole or not at all.\n"
    "\n"
    "The restore is recorded in the store as an accepted loss after the backup's\n"
    "head (lineage + 1): events acknowledged after the backup was taken are not in\n"
    "it, and their seqs will be given to new events again, so agents are told\n"
    "(lineage and losses in $hb, WELCOME, STATUS and END), as after herald repair.\n"
    "  --keep-lineage  do not record it (a backup restored onto the broker it was\n"
    "                  taken from, which published nothing since)\n"
    "\n"
    "A cluster node's backup is restored as the seed of a NEW node instead: the\n"
    "store's identity is dropped (a new raft id at start), nothing is recorded as\n"
    "lost, and the node, started with --cluster-state existing and added with\n"
    "herald cluster add, applies only the Raft entries after the backup's.\n"
    "\n"
    "Exit status: 0 restored; 1 refused or failed (the file is named); 64 a usage\n"
    "error.\n";

//  ---------------------------------------------------------------------
//  Progress, on stderr

typedef struct {
    int64_t last;
    const char *phase;
} s_say_t;

static void
s_progress (const char *phase, uint64_t done, uint64_t total, void *arg)
{
    s_say_t *say = (s_say_t *) arg;
    int64_t now = zclock_mono ();
    bool new_phase = !say->phase || strcmp (say->phase, phase) != 0;
    if (!new_phase && now - say->last < 1000 && done < total)
        return;
    say->last = now;
    say->phase = phase;
    if (total)
        fprintf (stderr, "herald: %s: %.1f of %.1f MiB (%.0f%%)\n", phase,
                 (double) done / 1048576.0, (double) total / 1048576.0,
                 100.0 * (double) done / (double) total);
    else
        fprintf (stderr, "herald: %s: done\n", phase);
}

static void
s_print_info (herald_cli_format_t format, const char *what, const char *dir,
              const herald_backup_info_t *info)
{
    char created [48], head_ts [48];
    herald_cli_time_format (info->created, created, sizeof created);
    herald_cli_time_format (info->head_ts, head_ts, sizeof head_ts);
    if (format == HERALD_CLI_TABLE) {
        printf ("%s: %s\n  node %s, taken %s\n  head %" PRIu64 " (ts %s), %" PRIu64
                " events, %" PRIu64 " topics, lineage %" PRIu64 "\n  %" PRIu64 " files, %.1f "
                "MiB\n", what, dir, *info->node? info->node: "-", created, info->head,
                info->head? head_ts: "-", info->events, info->topics, info->lineage,
                info->files, (double) info->bytes / 1048576.0);
        return;
    }
    printf ("{\"%s\":", what);
    herald_cli_json_string (stdout, dir, strlen (dir));
    printf (",\"format\":%u,\"node\":", info->format);
    herald_cli_json_string (stdout, info->node, strlen (info->node));
    printf (",\"store_uuid\":");
    herald_cli_json_string (stdout, info->store_uuid, strlen (info->store_uuid));
    printf (",\"head\":%" PRIu64 ",\"head_ts\":%" PRIu64 ",\"events\":%" PRIu64 ",\"topics\":%"
            PRIu64 ",\"lineage\":%" PRIu64 ",\"digest\":%" PRIu64 ",\"raft_applied\":%" PRIu64
            ",\"created\":%" PRIu64 ",\"files\":%" PRIu64 ",\"bytes\":%" PRIu64 "}\n",
            info->head, info->head_ts, info->events, info->topics, info->lineage, info->digest,
            info->raft_applied, info->created, info->files, info->bytes);
}

//  ---------------------------------------------------------------------
//  herald backup verify DIR

static int
s_verify (herald_cli_opts_t *opts, const char *dir)
{
    s_say_t say = { 0 };
    herald_error_t err = { 0 };
    herald_backup_info_t info;
    if (herald_backup_verify (dir, s_progress, &say, &info, &err) != HERALD_OK)
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "backup verify: %s", err.message);
    s_print_info (opts->format_set? opts->format: HERALD_CLI_TABLE, "verified", dir, &info);
    return HERALD_CLI_EXIT_OK;
}

//  ---------------------------------------------------------------------
//  herald backup --to DIR

static const msgpack_object *
s_get (const msgpack_object *map, const char *key)
{
    return herald_cli_map_get (map, key);
}

static int
s_backup (herald_cli_opts_t *opts, const char *to, uint64_t wait_s)
{
    char absolute [PATH_MAX];
    if (*to != '/') {
        char here [PATH_MAX];
        if (!getcwd (here, sizeof here)
        ||  snprintf (absolute, sizeof absolute, "%s/%s", here, to) >= (int) sizeof absolute)
            return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "backup: --to: the path is too "
                                    "long");
        to = absolute;
    }
    herald_cli_conn_t *conn = NULL;
    int rc = herald_cli_conn_open (opts, &conn);
    if (rc)
        return rc;
    uint64_t rid = herald_cli_conn_rid (conn);
    msgpack_sbuffer body;
    msgpack_sbuffer_init (&body);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &body, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 2);
    msgpack_pack_str_with_body (&pk, "rid", 3);
    msgpack_pack_uint64 (&pk, rid);
    msgpack_pack_str_with_body (&pk, "to", 2);
    msgpack_pack_str_with_body (&pk, to, strlen (to));
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, "BACKUP");
    zmsg_addmem (msg, body.data, body.size);
    msgpack_sbuffer_destroy (&body);
    zsock_t *dealer = herald_cli_conn_sock (conn);
    if (zmsg_send (&msg, dealer) != 0) {
        zmsg_destroy (&msg);
        herald_cli_conn_destroy (&conn);
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "backup: cannot send the request");
    }
    //  The broker answers once the backup is whole: minutes for a large
    //  store.  Say so while waiting.
    zpoller_t *poller = zpoller_new (dealer, herald_cli_conn_watch_sock (conn), NULL);
    int64_t started = zclock_mono ();
    int64_t deadline = started + (int64_t) wait_s * 1000;
    int64_t next_say = started + S_SAY_EVERY_MS;
    zmsg_t *answer = NULL;
    rc = -1;
    while (rc < 0) {
        int64_t now = zclock_mono ();
        if (now >= deadline) {
            rc = herald_cli_fail (HERALD_CLI_EXIT_NO_ANSWER, "backup: broker at %s did not "
                                  "answer within %" PRIu64 " s (--wait); the backup may still "
                                  "be running there: its log says when it ends",
                                  herald_cli_conn_endpoint (conn), wait_s);
            break;
        }
        if (now >= next_say) {
            fprintf (stderr, "herald: backup: the broker is writing %s (%" PRId64 " s)\n", to,
                     (now - started) / 1000);
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
            if (!herald_cli_conn_check (conn))
                rc = herald_cli_conn_lost (conn);
            continue;
        }
        answer = zmsg_recv (dealer);
        zframe_t *command = answer? zmsg_first (answer): NULL;
        zframe_t *frame = command? zmsg_next (answer): NULL;
        msgpack_unpacked unpacked;
        msgpack_unpacked_init (&unpacked);
        if (!frame || msgpack_unpack_next (&unpacked, (const char *) zframe_data (frame),
                                           zframe_size (frame), NULL) != MSGPACK_UNPACK_SUCCESS
        ||  unpacked.data.type != MSGPACK_OBJECT_MAP) {
            msgpack_unpacked_destroy (&unpacked);
            zmsg_destroy (&answer);
            continue;
        }
        const msgpack_object *root = &unpacked.data;
        const msgpack_object *got = s_get (root, "rid");
        bool error = zframe_streq (command, "ERROR");
        bool ours = got && got->type == MSGPACK_OBJECT_POSITIVE_INTEGER && got->via.u64 == rid;
        if (!ours && !(error && !got)) {
            msgpack_unpacked_destroy (&unpacked);
            zmsg_destroy (&answer);
            continue;
        }
        if (error) {
            const msgpack_object *code = s_get (root, "code");
            const msgpack_object *message = s_get (root, "message");
            bool unknown = code && code->type == MSGPACK_OBJECT_STR
                        && code->via.str.size == 15
                        && memcmp (code->via.str.ptr, "unknown_command", 15) == 0;
            if (unknown)
                rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "this broker does not support "
                                      "online backups (HWP/1 BACKUP): upgrade it");
            else
                rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "%.*s: %.*s",
                                      code && code->type == MSGPACK_OBJECT_STR
                                          ? (int) code->via.str.size: 8,
                                      code && code->type == MSGPACK_OBJECT_STR
                                          ? code->via.str.ptr: "internal",
                                      message && message->type == MSGPACK_OBJECT_STR
                                          ? (int) message->via.str.size: 0,
                                      message && message->type == MSGPACK_OBJECT_STR
                                          ? message->via.str.ptr: "");
        }
        else {
            herald_backup_info_t info = { 0 };
            struct { const char *key; uint64_t *value; } keys [] = {
                { "head", &info.head }, { "head_ts", &info.head_ts },
                { "events", &info.events }, { "topics", &info.topics },
                { "lineage", &info.lineage }, { "digest", &info.digest },
                { "raft_applied", &info.raft_applied }, { "created", &info.created },
                { "files", &info.files }, { "bytes", &info.bytes }
            };
            for (size_t index = 0; index < sizeof keys / sizeof keys [0]; index++) {
                const msgpack_object *value = s_get (root, keys [index].key);
                if (value && value->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                    *keys [index].value = value->via.u64;
            }
            const msgpack_object *value = s_get (root, "format");
            info.format = value && value->type == MSGPACK_OBJECT_POSITIVE_INTEGER
                        ? (uint32_t) value->via.u64: 0;
            value = s_get (root, "node");
            if (value && value->type == MSGPACK_OBJECT_STR)
                snprintf (info.node, sizeof info.node, "%.*s", (int) value->via.str.size,
                          value->via.str.ptr);
            s_print_info (opts->format, "backup", to, &info);
            rc = HERALD_CLI_EXIT_OK;
        }
        msgpack_unpacked_destroy (&unpacked);
        zmsg_destroy (&answer);
    }
    zpoller_destroy (&poller);
    herald_cli_conn_destroy (&conn);
    return rc;
}

int
herald_cli_backup (herald_cli_opts_t *opts, int argc, char **argv)
{
    const char *to = NULL, *wait_text = NULL, *operands [2] = { NULL };
    int operand_count = 0;
    bool bad = false;
    int index = 1;
    while (index < argc && !bad) {
        if (strcmp (argv [index], "--help") == 0) {
            fputs (s_backup_usage, stdout);
            return HERALD_CLI_EXIT_OK;
        }
        if (herald_cli_opt (argc, argv, &index, "--to", &to, &bad)
        ||  herald_cli_opt (argc, argv, &index, "--wait", &wait_text, &bad)
        ||  herald_cli_common_opt (opts, argc, argv, &index, &bad))
            continue;
        if (argv [index][0] == '-' || operand_count == 2)
            return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "backup: unexpected '%s' (see "
                                    "herald backup --help)", argv [index]);
        operands [operand_count++] = argv [index++];
    }
    if (bad)
        return HERALD_CLI_EXIT_USAGE;
    if (operand_count && strcmp (operands [0], "verify") == 0) {
        if (operand_count != 2 || to || wait_text)
            return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "backup verify: give one "
                                    "directory: herald backup verify DIR");
        return s_verify (opts, operands [1]);
    }
    if (operand_count)
        return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "backup: unexpected '%s' (herald "
                                "backup --to DIR, or herald backup verify DIR)", operands [0]);
    if (!to || !*to)
        return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "backup: give --to DIR (a directory "
                                "on the broker's host)");
    uint64_t wait_s = S_WAIT_S;
    if (wait_text && !herald_cli_positive ("--wait", wait_text, &wait_s))
        return HERALD_CLI_EXIT_USAGE;
    if (wait_s > 7 * 24 * 3600)
        return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "backup: --wait: at most a week");
    return s_backup (opts, to, wait_s);
}

//  ---------------------------------------------------------------------
//  herald restore --from DIR --data-dir D

int
herald_cli_restore (herald_cli_opts_t *opts, int argc, char **argv)
{
    const char *from = NULL, *data_dir = NULL;
    bool bad = false, keep_lineage = false;
    int index = 1;
    while (index < argc && !bad) {
        if (strcmp (argv [index], "--help") == 0) {
            fputs (s_restore_usage, stdout);
            return HERALD_CLI_EXIT_OK;
        }
        if (strcmp (argv [index], "--keep-lineage") == 0) {
            keep_lineage = true;
            index++;
            continue;
        }
        if (!herald_cli_opt (argc, argv, &index, "--from", &from, &bad)
        &&  !herald_cli_opt (argc, argv, &index, "--data-dir", &data_dir, &bad)
        &&  !herald_cli_common_opt (opts, argc, argv, &index, &bad))
            return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "restore: unexpected '%s' (see "
                                    "herald restore --help)", argv [index]);
    }
    if (bad)
        return HERALD_CLI_EXIT_USAGE;
    if (!from || !data_dir || !*from || !*data_dir)
        return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "restore: give --from DIR and "
                                "--data-dir D");
    s_say_t say = { 0 };
    herald_error_t err = { 0 };
    herald_backup_info_t info;
    //  Whether data_dir was there before: the message says what became of it
    struct stat before;
    bool existed = stat (data_dir, &before) == 0;
    if (herald_backup_restore (from, data_dir, keep_lineage, s_progress, &say, &info, &err)
        != HERALD_OK) {
        struct stat after;
        bool placed = !existed && stat (data_dir, &after) == 0;
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "restore: %s; %s %s", err.message,
                                placed? "the restored store is in place, but not synced:":
                                "nothing was written to", data_dir);
    }
    s_print_info (opts->format_set? opts->format: HERALD_CLI_TABLE, "restored", data_dir,
                  &info);
    if (*info.store_uuid || info.raft_applied)
        fprintf (stderr, "herald: restore: a cluster node's backup, restored as the seed of a "
                 "NEW node: it takes a new raft identity and is added with herald cluster add "
                 "(start heraldd --data-dir %s --cluster-state existing, its own --node, and "
                 "--peer lines for the members and itself); it applies only the Raft entries "
                 "after index %" PRIu64 "\n", data_dir, info.raft_applied);
    else
    if (!keep_lineage)
        fprintf (stderr, "herald: restore: recorded as lineage %" PRIu64 " (events after seq %"
                 PRIu64 " may have been acknowledged before and are not in it); start "
                 "heraldd --data-dir %s\n", info.lineage + 1, info.head, data_dir);
    return HERALD_CLI_EXIT_OK;
}
