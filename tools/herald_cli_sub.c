/*  =========================================================================
    herald_cli_sub - `herald sub`: an agent's local subscriptions, offline

        herald sub list --state-dir DIR
        herald sub show NAME --state-dir DIR
        herald sub reset NAME --state-dir DIR --to-seq N|--to-ts T|--to-start|--to-head
        herald sub delete NAME --state-dir DIR

    A local subscription's position is its checkpoint, DIR/subs/NAME.ckpt
    (agents/herald_checkpoint.c), read and written here through the
    checkpoint's own API, never parsed by hand.  Only --to-ts and --to-head
    ask a broker (where a time starts in the log, where its head is); the
    rest needs none.

    DESIGN
    An agent flock()s DIR/LOCK for as long as it runs and writes its
    checkpoints through a shared mapping, without a system call per event:
    a file changed under a running agent would be overwritten by its next
    event.  So reset and delete take that same lock themselves, without
    waiting, for the whole change, and refuse while an agent holds it
    (naming its pid, found in /proc/locks).  list and show only read, so
    they work beside a running agent; whether one runs is told from
    /proc/locks, without taking the lock even for a moment (an agent
    starting that moment would fail).  Its delivery thread may rewrite a
    window entry while it is being checked, so a check that fails on a
    live directory is read again a few times before it is called corrupt.

    A reset writes done (the seq before the first to deliver again) and an
    empty dedup window in one slot update: with the window kept, a rewound
    subscription would drop the events it is given again as duplicates.
    The lineage stays, except when the broker chose the position (--to-ts,
    --to-head): the seq is then one of the broker's log as it is now, so
    the broker's lineage goes with it (docs/agent.md, "When the broker lost
    events").
    =========================================================================
*/

#include "herald_cli.h"
#include "herald_checkpoint.h"
#include "herald_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define S_NAMES_MAX     4096        //  subscriptions listed (an agent has at most 64)
#define S_LIVE_READS    20          //  a live directory's check, read again

static const char *s_sub_usage =
    "usage: herald sub list --state-dir DIR [--format table|json]\n"
    "       herald sub show NAME --state-dir DIR [--format table|json]\n"
    "       herald sub reset NAME --state-dir DIR --to-seq N|--to-ts T|--to-start|--to-head\n"
    "       herald sub delete NAME --state-dir DIR\n"
    "\n"
    "An agent's local subscriptions: the checkpoints in DIR/subs (DIR is the\n"
    "agent's state_dir).  list and show read them, also beside a running agent;\n"
    "reset and delete change them, and refuse while an agent holds DIR: stop the\n"
    "service first.\n"
    "\n"
    "  list         every subscription: NAME, DONE (every event up to it was\n"
    "               handled), LINEAGE, IN_DOUBT (the event after DONE was being\n"
    "               handled when the process died: it is delivered again,\n"
    "               flagged), WINDOW (ids kept against duplicates), MODIFIED\n"
    "  show NAME    one subscription, with its file and how full its window is\n"
    "  reset NAME   move it; the next event delivered is the first after the new\n"
    "               DONE, and the window is emptied so that a rewind delivers\n"
    "               again (handlers must cope, as after any replay)\n"
    "      --to-seq N   deliver again from seq N (DONE = N - 1)\n"
    "      --to-ts T    from the first event at or after time T (asks the broker\n"
    "                   at --endpoint; times as for replay: 2026-12-02T16:35:47Z,\n"
    "                   -1h, ...)\n"
    "      --to-start   from seq 1\n"
    "      --to-head    skip everything stored now (asks the broker)\n"
    "  delete NAME  remove its checkpoint: the next subscribe under NAME starts\n"
    "               where its start says (also the way out of a corrupt file)\n"
    "\n"
    "Default format: table.  Exit status: 0 done; 1 refused or failed (an agent\n"
    "holds DIR, no such subscription, a corrupt checkpoint, a broker ERROR); 2 no\n"
    "broker answered (--to-ts, --to-head); 64 a usage error.\n";

typedef struct {
    const char *dir;
    char subs [4096];               //  DIR/subs
    herald_cli_format_t format;
    char holder [160];              //  "" or who holds DIR/LOCK, for messages
    bool live;                      //  an agent holds DIR/LOCK
} s_sub_t;

//  A name as the agent takes it: 1-128 bytes of [A-Za-z0-9._-].
static bool
s_name_ok (const char *name)
{
    size_t len = strlen (name);
    if (len == 0 || len > 128)
        return false;
    for (size_t at = 0; at < len; at++) {
        char c = name [at];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
           || c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static int
s_compare (const void *a, const void *b)
{
    return strcmp (*(char *const *) a, *(char *const *) b);
}

//  The subscriptions in DIR/subs, sorted; caller frees each and the array.
//  Returns the count (0 when there is no subs directory).
static size_t
s_names (s_sub_t *self, char ***names_p)
{
    *names_p = calloc (S_NAMES_MAX, sizeof (char *));
    DIR *dir = *names_p? opendir (self->subs): NULL;
    size_t count = 0;
    struct dirent *entry;
    while (dir && count < S_NAMES_MAX && (entry = readdir (dir))) {
        size_t len = strlen (entry->d_name);
        if (len > 5 && strcmp (entry->d_name + len - 5, ".ckpt") == 0) {
            char *name = strndup (entry->d_name, len - 5);
            if (name && s_name_ok (name))
                (*names_p) [count++] = name;
            else
                free (name);
        }
    }
    if (dir)
        closedir (dir);
    if (count)
        qsort (*names_p, count, sizeof (char *), s_compare);
    return count;
}

static void
s_names_free (char **names, size_t count)
{
    for (size_t at = 0; at < count; at++)
        free (names [at]);
    free (names);
}

//  "the ones there: a, b, c" or "it has none", for a name not found.
static void
s_names_text (s_sub_t *self, char *text, size_t size)
{
    char **names;
    size_t count = s_names (self, &names);
    size_t used = (size_t) snprintf (text, size, count? "the ones there: ": "it has none");
    for (size_t at = 0; at < count && used < size; at++)
        used += (size_t) snprintf (text + used, size - used, "%s%s", at? ", ": "", names [at]);
    s_names_free (names, count);
}

//  Whether a process holds an flock on the file (dev, ino), from
//  /proc/locks, and its pid (0 when it cannot be told: another pid
//  namespace).  False also when /proc/locks cannot be read.
static bool
s_lock_held (dev_t dev, ino_t ino, long *pid_p)
{
    FILE *locks = fopen ("/proc/locks", "r");
    char line [256];
    bool held = false;
    *pid_p = 0;
    while (locks && !held && fgets (line, sizeof line, locks)) {
        long pid;
        unsigned major, minor;
        unsigned long long inode;
        char kind [16];
        //  "1: FLOCK  ADVISORY  WRITE 4242 08:01:1234567 0 EOF"; a waiter's
        //  line has "->" after the number, and does not match
        if (sscanf (line, "%*d: %15s %*s %*s %ld %x:%x:%llu", kind, &pid, &major, &minor,
                    &inode) == 5
        &&  strcmp (kind, "FLOCK") == 0 && major == major (dev) && minor == minor (dev)
        &&  inode == (unsigned long long) ino) {
            held = true;
            *pid_p = pid;
        }
    }
    if (locks)
        fclose (locks);
    return held;
}

static void
s_holder (s_sub_t *self, long pid)
{
    self->live = true;
    if (pid > 0)
        snprintf (self->holder, sizeof self->holder, "a running agent (pid %ld)", pid);
    else
        snprintf (self->holder, sizeof self->holder, "a running agent");
}

//  Open DIR/LOCK and try its flock.  Returns the fd holding the lock, or
//  -1 with self->holder said (live set) when an agent holds it, or -2
//  after printing why the file cannot be opened.
static int
s_lock (s_sub_t *self, const char *verb)
{
    char path [4200];
    snprintf (path, sizeof path, "%s/LOCK", self->dir);
    //  As the agent opens it: a directory never used has none yet
    int fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        herald_cli_fail (HERALD_CLI_EXIT_FAIL, "sub %s: %s: %s", verb, path, strerror (errno));
        return -2;
    }
    if (flock (fd, LOCK_EX | LOCK_NB) == 0)
        return fd;
    int saved = errno;
    struct stat info;
    long pid = 0;
    if (fstat (fd, &info) == 0)
        s_lock_held (info.st_dev, info.st_ino, &pid);
    close (fd);
    if (saved != EWOULDBLOCK) {
        herald_cli_fail (HERALD_CLI_EXIT_FAIL, "sub %s: %s: %s", verb, path, strerror (saved));
        return -2;
    }
    s_holder (self, pid);
    return -1;
}

//  Whether an agent holds DIR now (for list and show, which only read).
//  Told from /proc/locks, without taking the lock even for a moment: an
//  agent starting at that moment would find the directory locked and fail.
static void
s_probe_live (s_sub_t *self)
{
    char path [4200];
    snprintf (path, sizeof path, "%s/LOCK", self->dir);
    struct stat info;
    long pid;
    if (stat (path, &info) == 0 && s_lock_held (info.st_dev, info.st_ino, &pid))
        s_holder (self, pid);
}

//  Open NAME's checkpoint (never creating it) into *checkpoint_p, with its
//  file's status.  Returns 0, or 1 after printing why (no such name: the
//  names there; a corrupt file: which and why).
static int
s_open (s_sub_t *self, const char *verb, const char *name, herald_checkpoint_t **checkpoint_p,
        struct stat *info)
{
    char path [4400];
    snprintf (path, sizeof path, "%s/%s.ckpt", self->subs, name);
    char message [HERALD_ERROR_MESSAGE_MAX];
    bool recovered;
    herald_err rc = HERALD_OK;
    //  Beside a running agent, a window entry may be rewritten as it is
    //  checked: read again before calling the file corrupt
    for (int attempt = 0; attempt < (self->live? S_LIVE_READS: 1); attempt++) {
        if (attempt)
            zclock_sleep (5);
        rc = herald_checkpoint_open (checkpoint_p, path, 1, false, 0, 0, &recovered, message,
                                     sizeof message);
        if (rc != HERALD_ERR_CORRUPT)
            break;
    }
    if (rc == HERALD_ERR_NOT_FOUND) {
        char names [2048];
        s_names_text (self, names, sizeof names);
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "sub %s: no subscription '%s' in %s (%s)",
                                verb, name, self->dir, names);
    }
    if (rc == HERALD_ERR_CORRUPT)
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "sub %s: %s (the agent refuses it too: "
                                "`herald sub delete %s --state-dir %s` starts it over)", verb,
                                message, name, self->dir);
    if (rc)
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "sub %s: %s", verb, message);
    if (stat (path, info) != 0)
        memset (info, 0, sizeof *info);
    return 0;
}

static uint64_t
s_mtime_ns (const struct stat *info)
{
    return (uint64_t) info->st_mtim.tv_sec * 1000000000ull + (uint64_t) info->st_mtim.tv_nsec;
}

//  One subscription as a JSON object, left open for more keys.
static void
s_json (s_sub_t *self, const char *name, herald_checkpoint_t *checkpoint,
        const struct stat *info)
{
    fputs ("{\"name\":", stdout);
    herald_cli_json_string (stdout, name, strlen (name));
    printf (",\"done\":%" PRIu64 ",\"lineage\":", herald_checkpoint_done (checkpoint));
    uint64_t lineage = herald_checkpoint_lineage (checkpoint);
    if (lineage == HERALD_LINEAGE_UNKNOWN)
        fputs ("null", stdout);
    else
        printf ("%" PRIu64, lineage);
    printf (",\"in_doubt\":%s,\"window\":%zu,\"window_fill\":%zu,\"modified\":%" PRIu64
            ",\"path\":", herald_checkpoint_in_doubt (checkpoint)? "true": "false",
            herald_checkpoint_window (checkpoint), herald_checkpoint_window_fill (checkpoint),
            s_mtime_ns (info));
    char path [4400];
    snprintf (path, sizeof path, "%s/%s.ckpt", self->subs, name);
    herald_cli_json_string (stdout, path, strlen (path));
}

static void
s_lineage_text (herald_checkpoint_t *checkpoint, char *text, size_t size)
{
    uint64_t lineage = herald_checkpoint_lineage (checkpoint);
    if (lineage == HERALD_LINEAGE_UNKNOWN)
        snprintf (text, size, "-");
    else
        snprintf (text, size, "%" PRIu64, lineage);
}

static int
s_list (s_sub_t *self)
{
    s_probe_live (self);
    char **names;
    size_t count = s_names (self, &names);
    if (!names)
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "out of memory");
    int width = 4;
    for (size_t at = 0; at < count; at++)
        if ((int) strlen (names [at]) > width)
            width = (int) strlen (names [at]);
    if (self->format == HERALD_CLI_TABLE && count)
        printf ("%-*s  %12s  %7s  %-8s  %8s  %s\n", width, "NAME", "DONE", "LINEAGE",
                "IN_DOUBT", "WINDOW", "MODIFIED");
    int rc = 0;
    size_t bad = 0;
    for (size_t at = 0; at < count; at++) {
        herald_checkpoint_t *checkpoint = NULL;
        struct stat info;
        if (s_open (self, "list", names [at], &checkpoint, &info) != 0) {
            rc = HERALD_CLI_EXIT_FAIL;
            bad++;
            if (self->format == HERALD_CLI_TABLE)
                printf ("%-*s  %12s  (unreadable: see stderr)\n", width, names [at], "?");
            continue;
        }
        if (self->format == HERALD_CLI_JSON) {
            s_json (self, names [at], checkpoint, &info);
            fputs ("}\n", stdout);
        }
        else {
            char lineage [24], when [48];
            s_lineage_text (checkpoint, lineage, sizeof lineage);
            printf ("%-*s  %12" PRIu64 "  %7s  %-8s  %8zu  %s\n", width, names [at],
                    herald_checkpoint_done (checkpoint), lineage,
                    herald_checkpoint_in_doubt (checkpoint)? "yes": "no",
                    herald_checkpoint_window (checkpoint),
                    herald_cli_time_format (s_mtime_ns (&info), when, sizeof when));
        }
        herald_checkpoint_destroy (&checkpoint);
    }
    if (self->format == HERALD_CLI_TABLE) {
        if (count)
            printf ("%zu subscription%s in %s%s%s\n", count, count == 1? "": "s", self->subs,
                    bad? ", unreadable: see stderr": "",
                    self->live? "; in use by a running agent: the figures move": "");
        else
            printf ("no subscriptions in %s%s\n", self->subs,
                    self->live? " (in use by a running agent)": "");
    }
    s_names_free (names, count);
    return rc;
}

static int
s_show (s_sub_t *self, const char *name)
{
    s_probe_live (self);
    herald_checkpoint_t *checkpoint = NULL;
    struct stat info;
    int rc = s_open (self, "show", name, &checkpoint, &info);
    if (rc)
        return rc;
    if (self->format == HERALD_CLI_JSON) {
        s_json (self, name, checkpoint, &info);
        printf (",\"in_use\":%s,\"holder\":", self->live? "true": "false");
        if (self->live)
            herald_cli_json_string (stdout, self->holder, strlen (self->holder));
        else
            fputs ("null", stdout);
        fputs ("}\n", stdout);
    }
    else {
        char lineage [24], when [48];
        s_lineage_text (checkpoint, lineage, sizeof lineage);
        uint64_t done = herald_checkpoint_done (checkpoint);
        printf ("%-10s %s\n", "name", name);
        printf ("%-10s %s/%s.ckpt\n", "path", self->subs, name);
        printf ("%-10s %" PRIu64 " (every matching event up to it was handled; the next "
                "delivered is the first after it)\n", "done", done);
        printf ("%-10s %s%s\n", "lineage", lineage, strcmp (lineage, "-") == 0
                ? " (new: the first broker lineage heard is adopted)": "");
        printf ("%-10s %s\n", "in_doubt", herald_checkpoint_in_doubt (checkpoint)
                ? "yes (the event after done was being handled when the process ended: it "
                  "is delivered again, flagged redelivered)": "no");
        printf ("%-10s %zu ids, %zu in it now\n", "window", herald_checkpoint_window (checkpoint),
                herald_checkpoint_window_fill (checkpoint));
        printf ("%-10s %s\n", "modified",
                herald_cli_time_format (s_mtime_ns (&info), when, sizeof when));
        printf ("%-10s %s%s\n", "in_use", self->live? "yes, by ": "no",
                self->live? self->holder: "");
    }
    herald_checkpoint_destroy (&checkpoint);
    return 0;
}

//  The next reply to rid on conn (others are skipped), into reply.
static int
s_recv (herald_cli_conn_t *conn, uint64_t rid, herald_cli_reply_t *reply)
{
    for (int count = 0; count < 64; count++) {
        herald_cli_reply_fini (reply);
        int rc = herald_cli_conn_recv (conn, reply);
        if (rc || reply->body.rid == rid || reply->type == HERALD_MSG_ERROR)
            return rc;
    }
    return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "no reply to request %" PRIu64, rid);
}

//  Ask the broker for a position: its head (STATUS), or with by_ts the seq
//  before the first event at or after ts (REPLAY from_ts, credit 1: one
//  event, or END at the head when there is none); and the lineage of its
//  log.  Returns 0 or the exit code (printed).
static int
s_resolve (herald_cli_opts_t *opts, bool by_ts, uint64_t ts, uint64_t *done,
           uint64_t *lineage)
{
    herald_cli_conn_t *conn = NULL;
    int rc = herald_cli_conn_open (opts, &conn);
    if (rc)
        return rc;
    herald_msg_t request = { .type = HERALD_MSG_STATUS, .has_rid = true };
    request.rid = herald_cli_conn_rid (conn);
    herald_cli_reply_t reply;
    memset (&reply, 0, sizeof reply);
    rc = herald_cli_conn_send (conn, &request);
    if (rc == 0)
        rc = s_recv (conn, request.rid, &reply);
    if (rc == 0 && reply.type == HERALD_MSG_ERROR)
        rc = herald_cli_print_error (&reply);
    else
    if (rc == 0 && reply.type != HERALD_MSG_STATUS_REPLY)
        rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "unexpected %s reply to STATUS",
                              herald_msg_command (reply.type));
    if (rc == 0) {
        *done = reply.body.status.head;
        *lineage = reply.body.status.lineage;
    }
    if (rc == 0 && by_ts) {
        memset (&request, 0, sizeof request);
        request.type = HERALD_MSG_REPLAY;
        request.has_rid = true;
        request.rid = herald_cli_conn_rid (conn);
        request.replay.has_from_ts = true;
        request.replay.from_ts = ts;
        request.replay.credit = 1;
        rc = herald_cli_conn_send (conn, &request);
        if (rc == 0)
            rc = s_recv (conn, request.rid, &reply);
        if (rc == 0 && reply.type == HERALD_MSG_ERROR)
            rc = herald_cli_print_error (&reply);
        else
        if (rc == 0 && reply.type == HERALD_MSG_END) {
            *done = reply.body.end.head;         //  nothing at or after ts yet
            *lineage = reply.body.end.lineage;
        }
        else
        if (rc == 0 && reply.type == HERALD_MSG_EVENTS) {
            zframe_t *frame = zmsg_first (reply.msg);
            frame = frame? zmsg_next (reply.msg): NULL;
            frame = frame? zmsg_next (reply.msg): NULL;
            const char *topic;
            size_t topic_len;
            uint64_t seq = 0, ver, at;
            if (!frame || !herald_event_peek (zframe_data (frame), zframe_size (frame), &topic,
                                              &topic_len, &seq, &ver, &at) || seq == 0)
                rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "an event from the broker does "
                                      "not decode");
            else
                *done = seq - 1;
        }
        else
        if (rc == 0)
            rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "unexpected %s reply to REPLAY",
                                  herald_msg_command (reply.type));
    }
    herald_cli_reply_fini (&reply);
    herald_cli_conn_destroy (&conn);
    return rc;
}

typedef enum { S_TO_NONE, S_TO_SEQ, S_TO_TS, S_TO_START, S_TO_HEAD } s_to_t;

static int
s_reset (s_sub_t *self, herald_cli_opts_t *opts, const char *name, s_to_t to, uint64_t value)
{
    int lock = s_lock (self, "reset");
    if (lock == -1)
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "sub reset: state directory %s is in "
                                "use by %s: stop the service first", self->dir, self->holder);
    if (lock < 0)
        return HERALD_CLI_EXIT_FAIL;
    herald_checkpoint_t *checkpoint = NULL;
    struct stat info;
    int rc = s_open (self, "reset", name, &checkpoint, &info);
    uint64_t before = rc? 0: herald_checkpoint_done (checkpoint);
    uint64_t lineage = rc? 0: herald_checkpoint_lineage (checkpoint);
    size_t fill = rc? 0: herald_checkpoint_window_fill (checkpoint);
    uint64_t done = to == S_TO_SEQ? value - 1: 0;
    if (rc == 0 && (to == S_TO_TS || to == S_TO_HEAD))
        rc = s_resolve (opts, to == S_TO_TS, value, &done, &lineage);
    if (rc == 0) {
        herald_checkpoint_reset (checkpoint, done, lineage);
        if (herald_checkpoint_sync (checkpoint) != 0)
            rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "sub reset: %s/%s.ckpt: cannot sync: %s",
                                  self->subs, name, strerror (errno));
    }
    if (rc == 0 && self->format == HERALD_CLI_JSON) {
        fputs ("{\"name\":", stdout);
        herald_cli_json_string (stdout, name, strlen (name));
        printf (",\"done_before\":%" PRIu64 ",\"done\":%" PRIu64 ",\"next\":%" PRIu64
                ",\"lineage\":", before, done, done + 1);
        if (lineage == HERALD_LINEAGE_UNKNOWN)
            fputs ("null", stdout);
        else
            printf ("%" PRIu64, lineage);
        printf (",\"window_cleared\":%zu}\n", fill);
    }
    else
    if (rc == 0)
        printf ("subscription %s in %s: done %" PRIu64 " -> %" PRIu64 ": delivery resumes at "
                "the first event after seq %" PRIu64 "; its dedup window emptied (%zu ids)\n",
                name, self->dir, before, done, done, fill);
    herald_checkpoint_destroy (&checkpoint);
    close (lock);
    return rc;
}

static int
s_delete (s_sub_t *self, const char *name)
{
    int lock = s_lock (self, "delete");
    if (lock == -1)
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "sub delete: state directory %s is in "
                                "use by %s: stop the service first", self->dir, self->holder);
    if (lock < 0)
        return HERALD_CLI_EXIT_FAIL;
    char path [4400];
    snprintf (path, sizeof path, "%s/%s.ckpt", self->subs, name);
    int rc = 0;
    //  Its position, for the record; a corrupt file is deleted all the
    //  same (deleting is how one starts over from it)
    herald_checkpoint_t *checkpoint = NULL;
    char message [HERALD_ERROR_MESSAGE_MAX], was [HERALD_ERROR_MESSAGE_MAX + 40];
    bool recovered;
    herald_err opened = herald_checkpoint_open (&checkpoint, path, 1, false, 0, 0, &recovered,
                                                message, sizeof message);
    if (opened == HERALD_ERR_NOT_FOUND) {
        char names [2048];
        s_names_text (self, names, sizeof names);
        rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "sub delete: no subscription '%s' in %s "
                              "(%s)", name, self->dir, names);
    }
    else
    if (opened == HERALD_OK)
        snprintf (was, sizeof was, "it was at done %" PRIu64,
                  herald_checkpoint_done (checkpoint));
    else
        snprintf (was, sizeof was, "it could not be read: %s", message);
    herald_checkpoint_destroy (&checkpoint);
    if (rc == 0 && (unlink (path) != 0 || herald_file_sync_dir (self->subs) != 0))
        rc = herald_cli_fail (HERALD_CLI_EXIT_FAIL, "sub delete: %s: %s", path,
                              strerror (errno));
    if (rc == 0)
        printf ("subscription %s deleted from %s (%s); the next subscribe under that name "
                "starts where its start says\n", name, self->dir, was);
    close (lock);
    return rc;
}

int
herald_cli_sub (herald_cli_opts_t *opts, int argc, char **argv)
{
    if (argc < 2 || strcmp (argv [1], "--help") == 0) {
        fputs (s_sub_usage, argc < 2? stderr: stdout);
        return argc < 2? HERALD_CLI_EXIT_USAGE: HERALD_CLI_EXIT_OK;
    }
    const char *verb = argv [1];
    bool list = strcmp (verb, "list") == 0, show = strcmp (verb, "show") == 0;
    bool reset = strcmp (verb, "reset") == 0, delete = strcmp (verb, "delete") == 0;
    if (!list && !show && !reset && !delete)
        return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "sub: unknown command '%s': give list, "
                                "show, reset or delete (see herald sub --help)", verb);
    s_sub_t self = { .dir = NULL };
    const char *name = NULL;
    s_to_t to = S_TO_NONE;
    uint64_t value = 0;
    int index = 2;
    bool bad = false;
    while (index < argc && !bad) {
        const char *arg = argv [index], *text = NULL;
        s_to_t given = S_TO_NONE;
        if (herald_cli_opt (argc, argv, &index, "--state-dir", &self.dir, &bad)
        ||  herald_cli_common_opt (opts, argc, argv, &index, &bad))
            continue;
        if (reset && herald_cli_opt (argc, argv, &index, "--to-seq", &text, &bad)) {
            given = S_TO_SEQ;
            if (text && !herald_cli_positive ("--to-seq", text, &value))
                bad = true;
        }
        else
        if (reset && herald_cli_opt (argc, argv, &index, "--to-ts", &text, &bad)) {
            given = S_TO_TS;
            if (text && !herald_cli_ts ("--to-ts", text, &value))
                bad = true;
        }
        else
        if (reset && (strcmp (arg, "--to-start") == 0 || strcmp (arg, "--to-head") == 0)) {
            given = arg [5] == 's'? S_TO_START: S_TO_HEAD;
            index++;
        }
        else
        if (arg [0] == '-' && arg [1])
            return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "sub %s: unknown option '%s' (see "
                                    "herald sub --help)", verb, arg);
        else
        if (!list && !name) {
            name = arg;
            index++;
        }
        else
            return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "sub %s: unexpected '%s' (see "
                                    "herald sub --help)", verb, arg);
        if (given != S_TO_NONE && to != S_TO_NONE && !bad)
            return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "sub reset: give one of --to-seq, "
                                    "--to-ts, --to-start, --to-head");
        if (given != S_TO_NONE)
            to = given;
    }
    if (bad)
        return HERALD_CLI_EXIT_USAGE;
    if (!self.dir || !*self.dir)
        return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "sub %s: give --state-dir DIR (the "
                                "agent's state directory)", verb);
    if (!list && !name)
        return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "sub %s: give the subscription's NAME",
                                verb);
    if (name && !s_name_ok (name))
        return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "sub %s: '%s' is not a subscription "
                                "name: 1-128 bytes of [A-Za-z0-9._-]", verb, name);
    if (reset && to == S_TO_NONE)
        return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "sub reset: give where to: --to-seq N, "
                                "--to-ts T, --to-start or --to-head");
    struct stat info;
    bool missing = stat (self.dir, &info) != 0;
    if (missing || !S_ISDIR (info.st_mode))
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "sub %s: %s is not a directory%s", verb,
                                self.dir, missing? " (it does not exist)": "");
    snprintf (self.subs, sizeof self.subs, "%s/subs", self.dir);
    self.format = opts->format_set? opts->format: HERALD_CLI_TABLE;
    if (list)
        return s_list (&self);
    if (show)
        return s_show (&self, name);
    if (reset)
        return s_reset (&self, opts, name, to, value);
    return s_delete (&self, name);
}
