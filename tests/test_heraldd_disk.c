/*  =========================================================================
    test_heraldd_disk - heraldd on a full disk: the free-space guard, and
    what happens when RocksDB itself meets ENOSPC

    The real heraldd runs with its data directory on a small file system
    made for the test: a 64 MiB tmpfs, and a 96 MiB ext4 image on a loop
    device.  A filler file takes the space away and gives it back.

    - With --min-free, PUBLISH is refused with `overloaded` (and a retry
      hint) before the disk is full; STATUS, REPLAY and `herald status`
      keep working and show it; deleting the filler lets publishing resume
      without a restart; every ACKed event is there after one.
    - With --min-free 0, RocksDB meets ENOSPC: every request in flight is
      answered, the broker says "disk full" in its log and exits 1 (never
      SIGABRT), and after space returns and a restart every ACKed event is
      there.

    Mounting needs root: each test moves into a mount namespace of its own
    first (so its mounts go with its process, even if it is killed), and
    skips, saying why, where it cannot mount.  The broker's log stays off
    the small file system so that it can always be read.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "brokertest.h"

#define MIB             (1024ULL * 1024ULL)
#define TMPFS_MIB       64
#define EXT4_MIB        96
#define GUARD_MIB       16          //  --min-free of the guard tests
#define DATA_BYTES      4000        //  per event
#define BATCH           20          //  events per PUBLISH
#define WINDOW          8           //  PUBLISH requests in flight
#define MAX_REQUESTS    4000
#define ANSWER_MS       15000       //  for every reply in flight
//  RocksDB reserves 1.1 x the write buffer for the live WAL file with
//  fallocate (ext4): the default 64 MiB would take most of a 96 MiB disk.
#define WRITE_BUFFER_MB "4"

static char *s_dir;                 //  the test's temporary directory
static char *s_mount;               //  the mount point in it
static char *s_image;               //  the ext4 image, when there is one
static char *s_filler;              //  the filler file on the mount
static bool s_mounted;

//  ---------------------------------------------------------------------
//  Mounting

static void
s_fini (void)
{
    bt_teardown ();                 //  the broker first: it holds files there
    if (s_filler)
        unlink (s_filler);
    if (s_mounted)
        umount2 (s_mount, MNT_DETACH);
    if (s_mount)
        rmdir (s_mount);
    if (s_image)
        unlink (s_image);
    if (s_dir)
        rmdir (s_dir);
    free (s_filler);
    free (s_mount);
    free (s_image);
    free (s_dir);
    s_filler = s_mount = s_image = s_dir = NULL;
    s_mounted = false;
}

TestSuite (heraldd_disk, .init = bt_setup, .fini = s_fini, .timeout = 180);

//  Run a shell command; its output goes to out.  Returns its exit status.
static int
s_run (char *out, size_t size, const char *format, ...)
{
    char command [1024];
    va_list args;
    va_start (args, format);
    vsnprintf (command, sizeof command, format, args);
    va_end (args);
    FILE *pipe = popen (command, "r");
    if (!pipe) {
        snprintf (out, size, "popen: %s", strerror (errno));
        return -1;
    }
    size_t used = fread (out, 1, size - 1, pipe);
    out [used] = 0;
    int status = pclose (pipe);
    return WIFEXITED (status)? WEXITSTATUS (status): -1;
}

static void
s_skip (const char *why)
{
    fprintf (stderr, "test_heraldd_disk: SKIPPED: %s\n", why);
    cr_log_warn ("SKIPPED: %s", why);
    cr_skip_test ("%s", why);
}

//  A private mount namespace, and a fresh empty mount point in it.
static void
s_prepare (void)
{
    if (unshare (CLONE_NEWNS) != 0) {
        char why [256];
        snprintf (why, sizeof why, "cannot make a mount namespace: %s (mounting a small "
                  "file system needs root)", strerror (errno));
        s_skip (why);
    }
    if (mount (NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
        char why [256];
        snprintf (why, sizeof why, "cannot make / private in the test's namespace: %s",
                  strerror (errno));
        s_skip (why);
    }
    s_dir = tu_tmpdir_new ("heraldd_disk");
    cr_assert_not_null (s_dir);
    s_mount = tu_path (s_dir, "mnt");
    cr_assert_eq (mkdir (s_mount, 0755), 0);
}

static void
s_mount_tmpfs (void)
{
    s_prepare ();
    char options [32];
    snprintf (options, sizeof options, "size=%dm", TMPFS_MIB);
    if (mount ("tmpfs", s_mount, "tmpfs", 0, options) != 0) {
        char why [256];
        snprintf (why, sizeof why, "cannot mount a %d MiB tmpfs: %s", TMPFS_MIB,
                  strerror (errno));
        s_skip (why);
    }
    s_mounted = true;
}

static void
s_mount_ext4 (void)
{
    s_prepare ();
    s_image = tu_path (s_dir, "ext4.img");
    char out [2048];
    int fd = open (s_image, O_CREAT | O_WRONLY, 0600);
    cr_assert_geq (fd, 0, "%s: %s", s_image, strerror (errno));
    cr_assert_eq (ftruncate (fd, (off_t) (EXT4_MIB * MIB)), 0);
    close (fd);
    if (s_run (out, sizeof out, "mkfs.ext4 -q -F '%s' 2>&1", s_image) != 0) {
        char why [2300];
        snprintf (why, sizeof why, "cannot make an ext4 image (mkfs.ext4): %s", out);
        s_skip (why);
    }
    if (s_run (out, sizeof out, "mount -o loop '%s' '%s' 2>&1", s_image, s_mount) != 0) {
        char why [2300];
        snprintf (why, sizeof why, "cannot mount an ext4 image on a loop device: %s", out);
        s_skip (why);
    }
    s_mounted = true;
}

//  Bytes free on the mount: what an unprivileged process may write
//  (avail), or what root may (bfree).
static uint64_t
s_free (bool root)
{
    struct statvfs info;
    cr_assert_eq (statvfs (s_mount, &info), 0, "statvfs: %s", strerror (errno));
    return (uint64_t) (root? info.f_bfree: info.f_bavail) * info.f_frsize;
}

//  Write a filler file so that `leave` bytes stay free (as s_free counts).
static void
s_fill (uint64_t leave, bool root)
{
    if (!s_filler)
        s_filler = tu_path (s_mount, "filler");
    uint64_t free_now = s_free (root);
    cr_assert_gt (free_now, leave, "only %" PRIu64 " bytes free before filling", free_now);
    uint64_t size = free_now - leave;
    int fd = open (s_filler, O_CREAT | O_WRONLY | O_APPEND, 0600);
    cr_assert_geq (fd, 0, "%s: %s", s_filler, strerror (errno));
    static char zeros [1 << 20];
    //  Byte counts drift a little on ext4 (metadata): write, then measure
    //  again, a few rounds.
    for (int round = 0; round < 8 && size > 0; round++) {
        while (size > 0) {
            size_t chunk = size < sizeof zeros? (size_t) size: sizeof zeros;
            ssize_t wrote = write (fd, zeros, chunk);
            cr_assert_gt (wrote, 0, "filler: %s", strerror (errno));
            size -= (uint64_t) wrote;
        }
        fsync (fd);
        free_now = s_free (root);
        size = free_now > leave + 65536? free_now - leave: 0;
    }
    close (fd);
    cr_log_info ("filler: %" PRIu64 " bytes free on %s", s_free (root), s_mount);
}

//  Restart bt_broker (same flags); a start that fails shows its log.
static void
s_restart (void)
{
    if (bu_broker_restart (bt_broker, BT_START_MS) != 0) {
        char log [4096] = "";
        bu_broker_log_tail (bt_broker, log, sizeof log);
        cr_assert_fail ("heraldd did not start again within %d ms; its log ends:\n%s",
                        BT_START_MS, log);
    }
}

//  Start bt_broker with its data directory on the mount and extra flags.
static void
s_start_on_mount (const char *const *extra)
{
    bt_broker = bu_broker_new ("heraldd", extra);
    cr_assert_not_null (bt_broker);
    free (bt_broker->data_dir);
    bt_broker->data_dir = tu_path (s_mount, "data");
    cr_assert_not_null (bt_broker->data_dir);
    bt_start_with (NULL);
}

//  ---------------------------------------------------------------------
//  Publishing until refused

typedef struct {
    uint8_t ids [MAX_REQUESTS][BATCH][HERALD_ID_BYTES];
    uint64_t seqs [MAX_REQUESTS][BATCH];
    bool acked [MAX_REQUESTS];
    bool answered [MAX_REQUESTS];
    herald_err code [MAX_REQUESTS];
    size_t sent, received, acks, refusals;
    char data [DATA_BYTES + 1];
    char first_error [512];
} s_load_t;

static s_load_t *
s_load_new (void)
{
    s_load_t *load = bt_calloc (1, sizeof (s_load_t));
    for (size_t index = 0; index < DATA_BYTES; index++)
        load->data [index] = (char) ('a' + rand () % 26);
    return load;
}

static void
s_send (zsock_t *client, s_load_t *load)
{
    cr_assert_lt (load->sent, MAX_REQUESTS, "the disk never filled");
    bu_event_t events [BATCH];
    size_t request = load->sent++;
    for (size_t index = 0; index < BATCH; index++) {
        bu_event_init (&events [index], "disk.events", load->data);
        memcpy (load->ids [request][index], events [index].id, HERALD_ID_BYTES);
    }
    bt_send_publish (client, request + 1, events, BATCH);
}

//  Receive one reply, which must come within ANSWER_MS, and book it.
//  Returns its code (HERALD_OK for an ACK).
static herald_err
s_receive (zsock_t *client, s_load_t *load)
{
    bu_reply_t reply = { 0 };
    int rc = bu_recv_reply (client, &reply, ANSWER_MS);
    if (rc != 0) {
        bu_reply_fini (&reply);
        char log [4096];
        bu_broker_log_tail (bt_broker, log, sizeof log);
        cr_assert_fail ("%zu of %zu PUBLISH requests were never answered; the broker's "
                        "log ends:\n%s", load->sent - load->received, load->sent, log);
    }
    cr_assert_eq (reply.rc, HERALD_OK, "a reply does not decode: %s", reply.err.message);
    cr_assert (reply.body.rid >= 1 && reply.body.rid <= load->sent, "rid %" PRIu64,
               reply.body.rid);
    size_t request = reply.body.rid - 1;
    cr_assert_not (load->answered [request], "rid %" PRIu64 " answered twice", reply.body.rid);
    load->answered [request] = true;
    load->received++;
    herald_err code;
    if (reply.type == HERALD_MSG_ACK) {
        bt_check_ack (&reply, reply.body.rid, BATCH);
        for (size_t index = 0; index < BATCH; index++)
            load->seqs [request][index] = reply.body.ack.seq [index];
        load->acked [request] = true;
        load->acks++;
        code = HERALD_OK;
    }
    else {
        cr_assert_eq (reply.type, HERALD_MSG_ERROR, "expected ACK or ERROR, got %s",
                      reply.command);
        code = reply.body.error.code;
        load->refusals++;
        if (!*load->first_error)
            snprintf (load->first_error, sizeof load->first_error, "%s (retry_ms %" PRIu64
                      "): %.*s", herald_err_code (code), reply.body.error.retry_ms,
                      (int) reply.body.error.message.len, reply.body.error.message.ptr);
        if (code == HERALD_ERR_OVERLOADED)
            cr_assert_gt (reply.body.error.retry_ms, 0, "overloaded without retry_ms: %.*s",
                          (int) reply.body.error.message.len, reply.body.error.message.ptr);
    }
    load->code [request] = code;
    bu_reply_fini (&reply);
    return code;
}

//  Pipeline PUBLISH requests until one is refused, then collect every reply
//  still owed.  Returns the number refused.
static size_t
s_publish_until_refused (zsock_t *client, s_load_t *load)
{
    size_t refused_before = load->refusals;
    while (load->refusals == refused_before) {
        while (load->sent - load->received < WINDOW)
            s_send (client, load);
        s_receive (client, load);
    }
    while (load->received < load->sent)
        s_receive (client, load);
    return load->refusals - refused_before;
}

//  ---------------------------------------------------------------------
//  Checking the log

//  REPLAY everything: the stream must end `done` at head, in seq order;
//  then every ACKed event must be at its ACKed seq.
static void
s_check_acked_kept (zsock_t *client, s_load_t *load)
{
    uint64_t head = bt_head (client);
    bt_stream_t *stream = bt_stream_new ();
    bu_replay_t replay = { .has_from = true, .from = 1, .has_credit = true, .credit = 1000000 };
    bt_send_replay (client, 77, &replay);
    bt_stream_read_to_end (client, 77, stream, 60000);
    cr_assert_str_eq (stream->reason, "done");
    cr_assert_eq (stream->count, head, "REPLAY sent %zu events, head %" PRIu64,
                  stream->count, head);
    uint8_t (*logged) [HERALD_ID_BYTES] = bt_calloc (head + 1, HERALD_ID_BYTES);
    for (size_t index = 0; index < stream->count; index++) {
        tu_decoded_t decoded;
        bt_decode (stream->envelopes [index], &decoded);
        cr_assert_eq (decoded.event.seq, index + 1);
        memcpy (logged [index + 1], decoded.event.id, HERALD_ID_BYTES);
        tu_decoded_fini (&decoded);
    }
    bt_stream_destroy (&stream);
    size_t checked = 0;
    for (size_t request = 0; request < load->sent; request++) {
        if (!load->acked [request])
            continue;
        for (size_t index = 0; index < BATCH; index++, checked++) {
            uint64_t seq = load->seqs [request][index];
            cr_assert (seq >= 1 && seq <= head, "ACKed seq %" PRIu64 " is lost (head %"
                       PRIu64 ")", seq, head);
            cr_assert_eq (memcmp (logged [seq], load->ids [request][index], HERALD_ID_BYTES),
                          0, "ACKed seq %" PRIu64 " holds another event", seq);
        }
    }
    cr_log_info ("%zu ACKed events checked, head %" PRIu64, checked, head);
}

static bool
s_log_has (const char *needle)
{
    static char log [1 << 16];
    bu_broker_log (bt_broker, log, sizeof log);
    return strstr (log, needle) != NULL;
}

//  ---------------------------------------------------------------------
//  The guard

static void
s_guard_test (void)
{
    const char *const extra [] = { "--min-free", "16MiB", "--idle-flush-ms", "200",
                                   "--write-buffer-mb", WRITE_BUFFER_MB, NULL };
    s_start_on_mount (extra);
    zsock_t *client = bt_client ();
    cr_assert_eq (bt_status_extra (client, 1, "min_free_bytes"), GUARD_MIB * MIB);
    cr_assert_eq (bt_status_extra (client, 2, "disk_low"), 0);
    s_load_t *load = s_load_new ();

    //  Space for a few MiB of events above the line; publish until refused.
    //  Refused for space, RocksDB's flush may give a little back and let
    //  publishing resume for a moment: then publish until refused again.
    s_fill ((GUARD_MIB + 6) * MIB, false);
    //  The guard sees another process's writes at its next measurement
    //  (every 100 ms), not sooner: publishing before it has seen the
    //  filler would race a fast publisher against that timer.
    uint64_t seen_deadline = tu_mono_ns () + 5ULL * 1000000000ULL;
    while (bt_status_extra (client, 2, "disk_free_bytes") > (GUARD_MIB + 7) * MIB) {
        cr_assert_lt (tu_mono_ns (), seen_deadline, "the broker did not see the filler "
                      "within 5 s");
        zclock_sleep (20);
    }
    uint64_t low = 0, refused = 0;
    for (int round = 0; round < 20 && !low; round++) {
        s_publish_until_refused (client, load);
        low = bt_status_extra (client, 3, "disk_low");
        refused = bt_status_extra (client, 4, "disk_refused");
    }
    cr_assert_eq (low, 1, "STATUS never showed disk_low while PUBLISH was refused");
    cr_assert_geq (refused, 1);
    cr_assert_gt (load->acks, 10, "only %zu PUBLISH ACKed before the guard", load->acks);
    //  Every refusal was the guard's: overloaded, saying so
    for (size_t request = 0; request < load->sent; request++)
        cr_assert (load->code [request] == HERALD_OK
                || load->code [request] == HERALD_ERR_OVERLOADED,
                   "rid %zu: %s", request + 1, herald_err_code (load->code [request]));
    cr_assert (strstr (load->first_error, "disk space low") && strstr (load->first_error, "min-free")
            && strstr (load->first_error, "resumes"), "refusal: %s", load->first_error);
    cr_log_info ("refused: %s", load->first_error);
    //  Refused before the disk was full: the free space is about the line
    uint64_t free_bytes = bt_status_extra (client, 5, "disk_free_bytes");
    cr_assert_gt (free_bytes, GUARD_MIB * MIB / 2, "only %" PRIu64 " bytes left", free_bytes);
    cr_assert (s_log_has ("disk space low"), "no 'disk space low' in the broker's log");

    //  Reads go on: REPLAY, STATUS, and the CLI's status
    s_check_acked_kept (client, load);
    char out [8192];
    int rc = s_run (out, sizeof out, "'%s/tools/herald' status --endpoint '%s' 2>&1",
                    getenv ("HERALD_BUILDDIR")? getenv ("HERALD_BUILDDIR"): ".",
                    bt_broker->api);
    cr_assert_eq (rc, 0, "herald status: %s", out);
    cr_assert (strstr (out, "\"disk_free_bytes\":") && strstr (out, "\"min_free_bytes\":16777216")
            && strstr (out, "\"disk_refused\":"), "herald status: %s", out);

    //  Space returns: publishing resumes without a restart
    cr_assert_eq (unlink (s_filler), 0);
    uint64_t deadline = tu_mono_ns () + 10ULL * 1000000000ULL;
    while (bt_status_extra (client, 6, "disk_low") != 0) {
        cr_assert_lt (tu_mono_ns (), deadline, "publishing did not resume within 10 s of "
                      "the filler's deletion");
        zclock_sleep (20);
    }
    size_t acks = load->acks;
    s_send (client, load);
    cr_assert_eq (s_receive (client, load), HERALD_OK, "PUBLISH after space returned: %s",
                  load->first_error);
    cr_assert_eq (load->acks, acks + 1);
    cr_assert (s_log_has ("publishing resumes"), "no 'publishing resumes' in the log");

    //  Every ACKed event survives a restart
    bt_stop_clean ();
    s_restart ();
    bt_drop (&client);
    client = bt_client ();
    s_check_acked_kept (client, load);
}

Test (heraldd_disk, guard_refuses_before_a_full_tmpfs_and_resumes)
{
    s_mount_tmpfs ();
    s_guard_test ();
}

//  The defaults on a small disk: min-free auto is 10% of a 64 MiB tmpfs, and
//  the memtables (64 MiB of write buffer, never flushed by idle-flush-ms 0)
//  are kept free above it.  Refused for them, the broker flushes them by
//  itself, their WAL goes, and publishing resumes with no one's help.
Test (heraldd_disk, default_guard_on_a_small_tmpfs_flushes_and_resumes_by_itself)
{
    s_mount_tmpfs ();
    const char *const extra [] = { "--idle-flush-ms", "0", NULL };
    s_start_on_mount (extra);
    zsock_t *client = bt_client ();
    uint64_t line = bt_status_extra (client, 1, "min_free_bytes");
    cr_assert (line > 5 * MIB && line < 7 * MIB, "auto on 64 MiB: %" PRIu64, line);
    s_load_t *load = s_load_new ();
    s_publish_until_refused (client, load);
    cr_assert_gt (load->acks, 50, "only %zu PUBLISH ACKed before the guard", load->acks);
    cr_assert (strstr (load->first_error, "memtables to flush"), "refusal: %s",
               load->first_error);
    //  No filler to delete, no restart: the broker frees the space itself
    uint64_t deadline = tu_mono_ns () + 15ULL * 1000000000ULL;
    size_t acks = load->acks;
    while (load->acks == acks) {
        if (tu_mono_ns () >= deadline) {
            char log [4096];
            bu_broker_log_tail (bt_broker, log, sizeof log);
            cr_assert_fail ("publishing did not resume by itself: %s; the broker's log "
                            "ends:\n%s", load->first_error, log);
        }
        s_send (client, load);
        if (s_receive (client, load) != HERALD_OK)
            zclock_sleep (100);
    }
    cr_assert (s_log_has ("flushing"), "no flush for disk space in the broker's log");
    cr_assert (s_log_has ("publishing resumes"), "no 'publishing resumes' in the log");
    s_check_acked_kept (client, load);
    bt_stop_clean ();
    s_restart ();
    bt_drop (&client);
    client = bt_client ();
    s_check_acked_kept (client, load);
}

Test (heraldd_disk, guard_refuses_before_a_full_ext4_and_resumes)
{
    s_mount_ext4 ();
    s_guard_test ();
}

//  ---------------------------------------------------------------------
//  No guard: RocksDB meets ENOSPC

//  write_buffer_mb: with 4 the disk fills under a memtable flush (a table
//  file's write fails, then the next commit) or a WAL append, whichever
//  comes first; with 64, on tmpfs, under the WAL append of a commit itself
//  (failing_file ".log"; NULL: either).
static void
s_enospc_test (const char *write_buffer_mb, const char *failing_file)
{
    const char *const extra [] = { "--min-free", "0", "--write-buffer-mb", write_buffer_mb,
                                   NULL };
    s_start_on_mount (extra);
    zsock_t *client = bt_client ();
    s_load_t *load = s_load_new ();
    s_fill (5 * MIB, true);
    s_publish_until_refused (client, load);
    cr_log_info ("%zu PUBLISH ACKed, %zu refused; first: %s", load->acks, load->refusals,
                 load->first_error);
    for (size_t request = 0; request < load->sent; request++)
        cr_assert (load->code [request] == HERALD_OK
                || load->code [request] == HERALD_ERR_INTERNAL
                || load->code [request] == HERALD_ERR_OVERLOADED,
                   "rid %zu: %s", request + 1, herald_err_code (load->code [request]));
    //  The broker stops loudly: exit 1, never a signal, having said why
    cr_assert_eq (bu_broker_wait (bt_broker, 20000), 0, "heraldd still runs after ENOSPC");
    char log [4096];
    bu_broker_log_tail (bt_broker, log, sizeof log);
    cr_assert (WIFEXITED (bt_broker->status) && WEXITSTATUS (bt_broker->status) == 1,
               "heraldd did not exit 1 (status 0x%x: %s %d); its log ends:\n%s",
               bt_broker->status, WIFSIGNALED (bt_broker->status)? "signal": "exit",
               WIFSIGNALED (bt_broker->status)? WTERMSIG (bt_broker->status)
                                              : WEXITSTATUS (bt_broker->status), log);
    cr_assert (s_log_has ("disk full"), "no 'disk full' in the log:\n%s", log);
    cr_assert (s_log_has ("No space left on device"), "no ENOSPC in the log:\n%s", log);
    if (failing_file)
        cr_assert (s_log_has (failing_file), "the log does not name a %s file:\n%s",
                   failing_file, log);
    bt_drop (&client);

    //  Space returns; after a restart every ACKed event is there
    cr_assert_eq (unlink (s_filler), 0);
    s_restart ();
    client = bt_client ();
    s_check_acked_kept (client, load);
    //  ...and the broker takes events again
    size_t acks = load->acks;
    s_send (client, load);
    cr_assert_eq (s_receive (client, load), HERALD_OK);
    cr_assert_eq (load->acks, acks + 1);
}

Test (heraldd_disk, enospc_on_tmpfs_answers_every_request_and_exits_1)
{
    s_mount_tmpfs ();
    s_enospc_test (WRITE_BUFFER_MB, NULL);
}

Test (heraldd_disk, enospc_in_the_wal_on_tmpfs_answers_every_request_and_exits_1)
{
    s_mount_tmpfs ();
    s_enospc_test ("64", ".log");
}

Test (heraldd_disk, enospc_on_ext4_answers_every_request_and_exits_1)
{
    s_mount_ext4 ();
    s_enospc_test (WRITE_BUFFER_MB, NULL);
}

//  ---------------------------------------------------------------------
//  Settings and STATUS on any disk

Test (heraldd_disk, status_shows_the_default_guard)
{
    bt_start ();
    zsock_t *client = bt_client ();
    //  auto: the lesser of 1 GiB and 10% of the file system
    struct statvfs info;
    cr_assert_eq (statvfs (bt_broker->data_dir, &info), 0);
    uint64_t unit = info.f_frsize? info.f_frsize: info.f_bsize;
    uint64_t tenth = (uint64_t) info.f_blocks / 100 * 10 * unit
                   + (uint64_t) info.f_blocks % 100 * 10 / 100 * unit;
    uint64_t line = tenth < (1ULL << 30)? tenth: 1ULL << 30;
    cr_assert_eq (bt_status_extra (client, 1, "min_free_bytes"), line);
    cr_assert_gt (bt_status_extra (client, 2, "disk_free_bytes"), 0);
    cr_assert_eq (bt_status_extra (client, 3, "disk_refused"), 0);
}

Test (heraldd_disk, percent_guard_refuses_publish_and_serves_reads)
{
    //  99% of the file system: refused on any disk that is not empty
    const char *const extra [] = { "--min-free", "99%", NULL };
    bt_start_with (extra);
    struct statvfs info;
    cr_assert_eq (statvfs (bt_broker->data_dir, &info), 0);
    uint64_t line = ((uint64_t) info.f_blocks / 100 * 99
                  + (uint64_t) info.f_blocks % 100 * 99 / 100) * info.f_frsize;
    zsock_t *client = bt_client ();
    cr_assert_eq (bt_status_extra (client, 1, "min_free_bytes"), line);
    cr_assert_eq (bt_status_extra (client, 2, "disk_low"), 1);
    bu_event_t event;
    bu_event_init (&event, "disk.events", "x");
    bt_send_publish (client, 3, &event, 1);
    bu_reply_t reply;
    bt_recv (client, &reply);
    bt_check_error (&reply, HERALD_ERR_OVERLOADED, true, 3);
    cr_assert_eq (reply.body.error.retry_ms, 1000);
    cr_assert (memmem (reply.body.error.message.ptr, reply.body.error.message.len,
                       "disk space low", 14), "message: %.*s",
               (int) reply.body.error.message.len, reply.body.error.message.ptr);
    bu_reply_fini (&reply);
    cr_assert_eq (bt_status_extra (client, 4, "disk_refused"), 1);
    cr_assert_eq (bt_head (client), 0);
}

//  The agent takes the broker's hint: refused for disk space with retry_ms
//  1000, it sends the event again no sooner than that (its own backoff
//  would start at 50 ms), and keeps it queued meanwhile.
Test (heraldd_disk, the_agent_waits_the_retry_hint_before_publishing_again)
{
    const char *const extra [] = { "--min-free", "99%", NULL };
    bt_start_with (extra);
    zsock_t *client = bt_client ();
    char *state = tu_tmpdir_new ("disk-agent");
    herald_agent_options_t options;
    herald_agent_options_init (&options);
    options.api = bt_broker->api;
    options.state_dir = state;
    herald_agent_t *agent = herald_agent_new ("disk", &options);
    cr_assert_not_null (agent, "%s", herald_agent_last_error ());
    herald_outgoing_t event = { .topic = "disk.hint", .data = "x", .data_len = 1 };
    cr_assert_eq (herald_agent_publish_async (agent, &event, NULL, NULL, NULL), HERALD_OK);
    cr_assert_eq (bt_wait_status_extra (client, "disk_refused", 1, 10000), 1);
    //  Not again for 900 ms (a slow machine only makes this later)
    uint64_t deadline = tu_mono_ns () + 900ULL * 1000000ULL;
    uint64_t early = 1;
    while (tu_mono_ns () < deadline && early == 1) {
        early = bt_status_extra (client, 2, "disk_refused");
        zclock_sleep (50);
    }
    //  ... but again, soon after
    uint64_t again = early == 1? bt_wait_status_extra (client, "disk_refused", 2, 10000): 0;
    herald_agent_stats_t stats;
    herald_agent_stats (agent, &stats);
    herald_agent_destroy (&agent);
    tu_tmpdir_destroy (&state);
    cr_assert_eq (early, 1, "the agent sent the refused event again before the retry hint "
                  "(%" PRIu64 " refusals within 900 ms)", early);
    cr_assert_geq (again, 2);
    cr_assert_eq (stats.outbox_depth, 1, "the refused event left the outbox");
}
