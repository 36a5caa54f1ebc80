/*  =========================================================================
    herald_cli_repair - `herald repair`: accept the loss of a damaged store

    heraldd refuses to start on a store whose acknowledged events may be
    incomplete (a damaged write-ahead log record, a WAL gone after an
    unclean stop: herald_store_damage.c).  Serving what is left is the
    operator's decision, and this is how it is made:

        herald repair --data-dir DIR                 report, change nothing
        herald repair --data-dir DIR --accept-loss   keep what is readable

    Both first open the store as heraldd would, read-only, to find what is
    wrong, then read-only again with RocksDB's point-in-time recovery (the
    log up to its first unreadable record) to find what would be kept.
    --accept-loss then opens it read-write that way, which makes RocksDB
    drop what it could not read, and records the loss in the store's meta
    (`losses`, herald_store_accept_loss), synced and flushed.  The broker
    announces it to agents: lineage in $hb, WELCOME, STATUS and END, the
    list in WELCOME and STATUS (docs/protocol.md).

    Table file and MANIFEST damage is beyond it: point-in-time recovery
    cannot open such a store either, and repair says so (restore from a
    backup).  A directory a broker holds is refused.

    Exit status: 0 nothing wrong, or the loss accepted; 1 damage found and
    not accepted, or a store it cannot repair; 64 a usage error.
    =========================================================================
*/

#include "herald_cli.h"
#include "herald_store.h"

#include <string.h>
#include <sys/stat.h>

static const char *s_repair_usage =
    "usage: herald repair --data-dir DIR [--accept-loss]\n"
    "\n"
    "Offline, on a stopped broker's data directory: find what keeps heraldd from\n"
    "starting (a damaged write-ahead log record, a write-ahead log deleted after\n"
    "an unclean stop), and report which file, the head seq that would be kept, and\n"
    "that the events after it may be lost.  Without --accept-loss nothing is\n"
    "changed, and the exit status is 1 when damage was found.\n"
    "\n"
    "  --accept-loss   keep what is readable and record the loss in the store:\n"
    "                  the seqs after the kept head are given to new events again,\n"
    "                  and agents are told (lineage and losses in $hb, WELCOME,\n"
    "                  STATUS and END).  This cannot be undone.\n"
    "\n"
    "Damaged table files (.sst) and MANIFEST are not repaired: restore a backup.\n"
    "Exit status: 0 nothing wrong, or the loss accepted; 1 damage found and not\n"
    "accepted, or a store that cannot be repaired; 64 a usage error.\n";

//  The message without herald_error_set's "field: " prefix.
static const char *
s_reason (const herald_error_t *err)
{
    size_t field = strlen (err->field);
    if (field && strncmp (err->message, err->field, field) == 0
    &&  strncmp (err->message + field, ": ", 2) == 0)
        return err->message + field + 2;
    return err->message;
}

int
herald_cli_repair (herald_cli_opts_t *opts, int argc, char **argv)
{
    const char *dir = NULL;
    bool accept = false, bad = false;
    int index = 1;
    while (index < argc && !bad) {
        if (strcmp (argv [index], "--help") == 0) {
            fputs (s_repair_usage, stdout);
            return HERALD_CLI_EXIT_OK;
        }
        if (strcmp (argv [index], "--accept-loss") == 0) {
            accept = true;
            index++;
            continue;
        }
        if (!herald_cli_opt (argc, argv, &index, "--data-dir", &dir, &bad)
        &&  !herald_cli_common_opt (opts, argc, argv, &index, &bad))
            return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "repair: unexpected '%s' "
                                                           "(see herald repair --help)",
                                    argv [index]);
    }
    if (bad)
        return HERALD_CLI_EXIT_USAGE;
    if (!dir)
        return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "repair: give --data-dir DIR");
    struct stat info;
    if (stat (dir, &info) != 0 || !S_ISDIR (info.st_mode))
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "repair: %s is not a directory", dir);
    if (herald_store_locked (dir))
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "repair: data directory %s is in use by "
                                "another process (stop the broker first)", dir);

    //  1. What heraldd would say
    herald_error_t err;
    herald_store_options_t as_broker = { .read_only = true };
    herald_store_t *store = herald_store_open (dir, &as_broker, &err);
    if (store) {
        printf ("%s: no damage found: heraldd can start on it (head %" PRIu64 ", lineage %"
                PRIu64 "); `herald inspect` checks every event\n", dir,
                herald_store_head (store), herald_store_lineage (store));
        herald_store_destroy (&store);
        return HERALD_CLI_EXIT_OK;
    }
    char found [sizeof (err.message)];
    snprintf (found, sizeof (found), "%s", s_reason (&err));
    printf ("found: %s\n", found);

    //  2. What point-in-time recovery would keep
    herald_store_options_t keep = { .read_only = true, .accept_loss = true };
    store = herald_store_open (dir, &keep, &err);
    if (!store) {
        printf ("%s: cannot be repaired here: %s\n"
                "  (damaged table files or MANIFEST: restore the directory from a backup)\n",
                dir, s_reason (&err));
        return HERALD_CLI_EXIT_FAIL;
    }
    uint64_t head = herald_store_head (store);
    uint64_t lineage = herald_store_lineage (store);
    herald_store_destroy (&store);
    printf ("  would keep: seq 1..%" PRIu64 " (head %" PRIu64 ")\n"
            "  events published after seq %" PRIu64 " may be lost; their seqs will be given\n"
            "  to new events again\n"
            "  agents will be told: lineage %" PRIu64 " -> %" PRIu64 " in $hb, WELCOME, STATUS "
            "and END\n", head, head, head, lineage, lineage + 1);
    if (!accept) {
        printf ("nothing changed; run again with --accept-loss to accept this loss\n");
        return HERALD_CLI_EXIT_FAIL;
    }

    //  3. Accept it
    herald_store_options_t repair = { .accept_loss = true };
    store = herald_store_open (dir, &repair, &err);
    if (!store)
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "repair: %s", err.message);
    head = herald_store_head (store);
    if (herald_store_accept_loss (store, found, &err) != HERALD_OK) {
        herald_store_destroy (&store);
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "repair: %s", err.message);
    }
    lineage = herald_store_lineage (store);
    herald_error_t stop_err;
    herald_err rc = herald_store_stop (store, &stop_err);
    herald_store_destroy (&store);
    if (rc != HERALD_OK)
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "repair: %s", stop_err.message);
    printf ("accepted: lineage %" PRIu64 ", events after seq %" PRIu64 " lost; heraldd will "
            "start on %s\n", lineage, head, dir);
    return HERALD_CLI_EXIT_OK;
}
