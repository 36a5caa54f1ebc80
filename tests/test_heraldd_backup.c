/*  =========================================================================
    test_heraldd_backup - online backup (BACKUP, herald backup) and restore

    The real heraldd and the real `herald` CLI, RocksDB underneath.  Each
    test tries to break one promise of docs/operations.md:

    - a backup taken while a publisher runs and a REPLAY streams (both
      served while it runs) holds every event acknowledged before the
      request, restores into a store that `herald inspect`
      passes, and a broker on it serves exactly the events up to the
      manifest's head (envelopes compared byte for byte over REPLAY);
    - a damaged, missing or extra file (or a damaged manifest) makes
      verify and restore refuse, naming the file, with nothing written;
    - restore refuses a non-empty data directory and a running broker's,
      changing nothing;
    - with security on, only `admin = backup` may ask;
    - a broker killed (kill -9) in the middle of a backup leaves no DIR:
      only its temporary directory, which verify refuses; one stopped
      (SIGTERM) abandons it, removes what it wrote and exits 0; a restore
      killed in the middle leaves no data directory, and runs again;
    - a full disk (a small tmpfs, in a mount namespace of the test's own:
      needs root) fails the backup and the restore cleanly, leaving
      nothing on it, and the broker serves on; on a roomier tmpfs the
      backup (its files copied, not linked) is whole.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "brokertest.h"

#define S_PAYLOAD       2048        //  bytes of data per event: a store of a few MiB
#define S_BATCH         10
#define S_LOAD_MAX      15000       //  the publisher stops here at the latest (< BT_STREAM_MAX)
#define S_BACKUP_MS     120000      //  a backup's answer
#define S_KILL_TRIES    8

static void s_setup (void);
static void s_teardown (void);
TestSuite (heraldd_backup, .init = s_setup, .fini = s_teardown, .timeout = 240);

static char *s_dir;                 //  backups and restores go here
static char *s_herald;              //  the CLI
static char *s_mount;               //  the full-disk tests' tmpfs
static bool s_mounted;

static void
s_setup (void)
{
    bt_setup ();
    s_dir = tu_tmpdir_new ("backup");
    cr_assert_not_null (s_dir);
    s_herald = tu_build_program ("tools/herald");
    cr_assert_not_null (s_herald, "tools/herald is not built");
}

static void
s_teardown (void)
{
    bt_teardown ();
    if (s_mounted)
        umount2 (s_mount, MNT_DETACH);
    s_mounted = false;
    free (s_mount);
    s_mount = NULL;
    tu_tmpdir_destroy (&s_dir);
    free (s_herald);
    s_herald = NULL;
}

//  Run the CLI with the words of format (a shell line: paths have no
//  spaces), stdout and stderr into out.  Returns its exit status.
static int
s_cli (char *out, size_t size, const char *format, ...)
{
    char args [2048], command [4096];
    va_list list;
    va_start (list, format);
    vsnprintf (args, sizeof args, format, list);
    va_end (list);
    snprintf (command, sizeof command, "%s %s 2>&1", s_herald, args);
    FILE *pipe = popen (command, "r");
    cr_assert_not_null (pipe);
    size_t used = fread (out, 1, size - 1, pipe);
    out [used] = 0;
    int status = pclose (pipe);
    return WIFEXITED (status)? WEXITSTATUS (status): -1;
}

static bool
s_exists (const char *path)
{
    struct stat info;
    return lstat (path, &info) == 0;
}

//  ---------------------------------------------------------------------
//  BACKUP by hand, as a third-party client would send it

static void
s_send_backup (zsock_t *sock, uint64_t rid, const char *to)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, to? 2: 1);
    bu_pack_str (&pk, "rid");
    msgpack_pack_uint64 (&pk, rid);
    if (to) {
        bu_pack_str (&pk, "to");
        bu_pack_str (&pk, to);
    }
    cr_assert_eq (bu_send_sbuf (sock, "BACKUP", &sbuf), 0);
    msgpack_sbuffer_destroy (&sbuf);
}

typedef struct {
    char command [16];
    char code [32];
    char message [1024];
    uint64_t head;
    uint64_t files;
} s_answer_t;

static uint64_t
s_map_uint (const msgpack_object *map, const char *key)
{
    for (uint32_t index = 0; index < map->via.map.size; index++) {
        const msgpack_object_kv *kv = &map->via.map.ptr [index];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen (key)
        &&  memcmp (kv->key.via.str.ptr, key, kv->key.via.str.size) == 0
        &&  kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            return kv->val.via.u64;
    }
    return 0;
}

static void
s_map_str (const msgpack_object *map, const char *key, char *out, size_t size)
{
    *out = 0;
    for (uint32_t index = 0; index < map->via.map.size; index++) {
        const msgpack_object_kv *kv = &map->via.map.ptr [index];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen (key)
        &&  memcmp (kv->key.via.str.ptr, key, kv->key.via.str.size) == 0
        &&  kv->val.type == MSGPACK_OBJECT_STR)
            snprintf (out, size, "%.*s", (int) kv->val.via.str.size, kv->val.via.str.ptr);
    }
}

//  The reply to rid (other replies, ACKs of a publisher on the same
//  socket, are skipped), within timeout_ms.
static void
s_recv_answer (zsock_t *sock, uint64_t rid, s_answer_t *answer, int timeout_ms)
{
    memset (answer, 0, sizeof *answer);
    int64_t deadline = zclock_mono () + timeout_ms;
    while (zclock_mono () < deadline) {
        zmsg_t *msg = bu_recv (sock, (int) (deadline - zclock_mono ()));
        if (!msg)
            break;
        zframe_t *command = zmsg_first (msg);
        zframe_t *body = zmsg_next (msg);
        msgpack_unpacked unpacked;
        msgpack_unpacked_init (&unpacked);
        bool mine = false;
        if (body && msgpack_unpack_next (&unpacked, (const char *) zframe_data (body),
                                         zframe_size (body), NULL) == MSGPACK_UNPACK_SUCCESS
        &&  unpacked.data.type == MSGPACK_OBJECT_MAP
        &&  s_map_uint (&unpacked.data, "rid") == rid) {
            mine = true;
            snprintf (answer->command, sizeof answer->command, "%.*s",
                      (int) zframe_size (command), (const char *) zframe_data (command));
            s_map_str (&unpacked.data, "code", answer->code, sizeof answer->code);
            s_map_str (&unpacked.data, "message", answer->message, sizeof answer->message);
            answer->head = s_map_uint (&unpacked.data, "head");
            answer->files = s_map_uint (&unpacked.data, "files");
        }
        msgpack_unpacked_destroy (&unpacked);
        zmsg_destroy (&msg);
        if (mine)
            return;
    }
    cr_assert_fail ("no answer to BACKUP rid %" PRIu64 " within %d ms", rid, timeout_ms);
}

//  ---------------------------------------------------------------------
//  A publisher on a thread of its own: batches of S_BATCH events, each
//  waited for, until told to stop or S_LOAD_MAX events.  No criterion
//  call here: the test reads what it counted.

typedef struct {
    char api [64];
    atomic_bool stop;
    atomic_uint_fast64_t acked;     //  the highest seq acknowledged
    atomic_uint_fast64_t events;    //  events acknowledged
    atomic_int failed;              //  a reply that was not an ACK, or none
    pthread_t thread;
} s_load_t;

static void *
s_load_run (void *arg)
{
    s_load_t *load = (s_load_t *) arg;
    zsock_t *sock = bu_dealer_new (load->api);
    if (!sock) {
        load->failed = 1;
        return NULL;
    }
    //  Random payloads: RocksDB compresses repeated ones to nothing
    static const char letters [] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    static char payloads [S_BATCH][S_PAYLOAD];
    int64_t deadline = zclock_mono () + 60000;
    for (uint64_t rid = 1; !load->stop && load->events < S_LOAD_MAX
                        && zclock_mono () < deadline; rid++) {
        bu_event_t events [S_BATCH];
        for (size_t index = 0; index < S_BATCH; index++) {
            tu_random_bytes (payloads [index], S_PAYLOAD - 1);
            for (size_t at = 0; at < S_PAYLOAD - 1; at++)
                payloads [index][at] = letters [(uint8_t) payloads [index][at] % 62];
            payloads [index][S_PAYLOAD - 1] = 0;
            bu_event_init (&events [index], "load.orders", payloads [index]);
        }
        msgpack_sbuffer sbuf;
        msgpack_sbuffer_init (&sbuf);
        bu_pack_publish (&sbuf, rid, events, S_BATCH);
        bu_send_sbuf (sock, "PUBLISH", &sbuf);
        msgpack_sbuffer_destroy (&sbuf);
        bu_reply_t reply = { 0 };
        if (bu_recv_reply (sock, &reply, BT_WAIT_MS) != 0 || reply.type != HERALD_MSG_ACK
        ||  reply.body.rid != rid || reply.body.ack.count != S_BATCH) {
            bu_reply_fini (&reply);
            load->failed = 1;
            break;
        }
        uint64_t last = reply.body.ack.seq [S_BATCH - 1];
        bu_reply_fini (&reply);
        load->acked = last;
        load->events += S_BATCH;
    }
    zsock_destroy (&sock);
    return NULL;
}

static s_load_t *
s_load_start (const char *api)
{
    s_load_t *load = bt_calloc (1, sizeof (s_load_t));
    snprintf (load->api, sizeof load->api, "%s", api);
    cr_assert_eq (pthread_create (&load->thread, NULL, s_load_run, load), 0);
    return load;
}

static void
s_load_wait (s_load_t *load, uint64_t events)
{
    int64_t deadline = zclock_mono () + 60000;
    while (load->events < events && !load->failed && zclock_mono () < deadline)
        zclock_sleep (5);
    cr_assert_geq (load->events, events, "the publisher acknowledged %" PRIu64 " events "
                   "(failed %d)", (uint64_t) load->events, (int) load->failed);
}

static void
s_load_stop (s_load_t *load)
{
    load->stop = true;
    pthread_join (load->thread, NULL);
    cr_assert_eq (load->failed, 0, "the publisher got a reply that was not its ACK");
}

//  Publish count events of S_PAYLOAD bytes (a store worth backing up).
static void
s_fill (size_t count)
{
    s_load_t *load = s_load_start (bt_broker->api);
    s_load_wait (load, count);
    s_load_stop (load);
}

//  ---------------------------------------------------------------------
//  Replays compared

//  REPLAY 1..to at api: the envelopes, in order, into stream.
static bt_stream_t *
s_replay (const char *api, uint64_t to)
{
    zsock_t *client = bt_keep (bu_dealer_new (api));
    bu_replay_t replay = { .has_from = true, .from = 1, .has_to = true, .to = to,
                           .has_credit = true, .credit = 100000 };
    bt_send_replay (client, 7, &replay);
    bt_stream_t *stream = bt_stream_new ();
    bt_stream_read_to_end (client, 7, stream, 30000);
    bt_drop (&client);
    return stream;
}

//  ---------------------------------------------------------------------
//  Tests

Test (heraldd_backup, under_load_restores_exactly_the_events_up_to_its_head)
{
    bt_start ();
    s_load_t *load = s_load_start (bt_broker->api);
    s_load_wait (load, 2000);
    //  Every event acknowledged before the request must be in the backup
    uint64_t acked_before = load->acked;
    uint64_t events_before = load->events;
    char *to = tu_path (s_dir, "b1");
    zsock_t *admin = bt_client ();
    s_send_backup (admin, 1, to);
    //  A REPLAY from the start runs beside it: what it receives before the
    //  backup's answer was served while the backup ran
    zsock_t *reader = bt_client ();
    bu_replay_t replay = { .has_from = true, .from = 1, .has_credit = true, .credit = 100000 };
    bt_send_replay (reader, 9, &replay);
    bt_stream_t *stream = bt_stream_new ();
    zpoller_t *poller = zpoller_new (admin, reader, NULL);
    cr_assert_not_null (poller);
    s_answer_t answer = { 0 };
    int64_t deadline = zclock_mono () + S_BACKUP_MS;
    while (!*answer.command && zclock_mono () < deadline) {
        void *which = zpoller_wait (poller, 100);
        if (which == reader)
            bt_stream_read (reader, 9, stream, 1, BT_WAIT_MS);
        else
        if (which == admin)
            s_recv_answer (admin, 1, &answer, BT_WAIT_MS);
    }
    zpoller_destroy (&poller);
    cr_assert (*answer.command, "no answer to BACKUP");
    uint64_t events_during = load->events - events_before;
    size_t replayed_during = stream->count;
    bt_stream_read_to_end (reader, 9, stream, 30000);
    bt_stream_check_seqs (stream, stream->count, 1);
    cr_assert_gt (replayed_during, 0, "no REPLAY event was sent while the backup ran");
    s_load_wait (load, load->events + 500);
    s_load_stop (load);
    cr_assert_str_eq (answer.command, "BACKUP", "%s: %s", answer.code, answer.message);
    cr_assert_geq (answer.head, acked_before, "the backup's head %" PRIu64 " is below seq %"
                   PRIu64 ", acknowledged before it was asked for", answer.head, acked_before);
    cr_assert_gt (events_during, 0, "no PUBLISH was acknowledged while the backup ran");
    cr_assert_gt (answer.files, 0);
    cr_log_info ("backup head %" PRIu64 " (acknowledged before: %" PRIu64 ", during: %" PRIu64
                 "; replayed during: %zu)", answer.head, acked_before, events_during,
                 replayed_during);

    char out [8192];
    cr_assert_eq (s_cli (out, sizeof out, "backup verify %s --format json", to), 0, "%s", out);
    char expect [64];
    snprintf (expect, sizeof expect, "\"head\":%" PRIu64 ",", answer.head);
    cr_assert_not_null (strstr (out, expect), "%s", out);

    //  Restore into the data directory of a second broker, not yet started
    const char *extra [] = { NULL };
    bt_second = bu_broker_new ("backup-restored", extra);
    cr_assert_not_null (bt_second);
    cr_assert_eq (s_cli (out, sizeof out, "restore --from %s --data-dir %s", to,
                         bt_second->data_dir), 0, "%s", out);
    cr_assert_eq (s_cli (out, sizeof out, "inspect --data-dir %s", bt_second->data_dir), 0,
                  "%s", out);
    cr_assert_not_null (strstr (out, "\"consistent\":true"), "%s", out);
    cr_assert_not_null (strstr (out, expect), "%s", out);
    cr_assert_eq (bu_broker_start (bt_second, BT_START_MS), 0);

    //  The same events, byte for byte, up to the head; nothing after it
    bt_stream_t *original = s_replay (bt_broker->api, answer.head);
    bt_stream_t *restored = s_replay (bt_second->api, answer.head);
    cr_assert_eq (original->count, answer.head);
    cr_assert_eq (restored->count, answer.head);
    cr_assert_eq (restored->head, answer.head, "the restored broker's head");
    bt_stream_check_seqs (restored, restored->count, 1);
    for (size_t index = 0; index < answer.head; index++)
        cr_assert (zframe_eq (original->envelopes [index], restored->envelopes [index]),
                   "seq %zu differs", index + 1);
    //  The restore is announced as a loss after the head (lineage 1)
    zsock_t *client = bt_keep (bu_dealer_new (bt_second->api));
    bu_reply_t status;
    bt_status (client, 3, &status);
    cr_assert_eq (status.body.status.lineage, 1);
    bu_reply_fini (&status);
    free (to);
}

Test (heraldd_backup, a_damaged_backup_is_refused_naming_the_file)
{
    bt_start ();
    s_fill (1000);
    char *to = tu_path (s_dir, "b2");
    char out [8192];
    cr_assert_eq (s_cli (out, sizeof out, "--endpoint %s backup --to %s", bt_broker->api, to),
                  0, "%s", out);
    //  A copy to damage: the backup's table files are hard links of the
    //  broker's own
    char *copy = tu_path (s_dir, "b2copy");
    char command [1024], name [300] = "";
    snprintf (command, sizeof command, "cp -r %s %s", to, copy);
    cr_assert_eq (system (command), 0);
    //  The largest table file
    char *store = tu_path (copy, "store");
    DIR *dir = opendir (store);
    cr_assert_not_null (dir);
    off_t largest = 0;
    struct dirent *entry;
    while ((entry = readdir (dir))) {
        char *path = tu_path (store, entry->d_name);
        struct stat info;
        if (strstr (entry->d_name, ".sst") && stat (path, &info) == 0
        &&  info.st_size > largest) {
            largest = info.st_size;
            snprintf (name, sizeof name, "%s", entry->d_name);
        }
        free (path);
    }
    closedir (dir);
    cr_assert (largest > 0);
    char *victim = tu_path (store, name);
    int fd = open (victim, O_RDWR);
    cr_assert_geq (fd, 0);
    uint8_t byte;
    cr_assert_eq (pread (fd, &byte, 1, largest / 2), 1);
    byte ^= 0x20;
    cr_assert_eq (pwrite (fd, &byte, 1, largest / 2), 1);
    close (fd);

    cr_assert_eq (s_cli (out, sizeof out, "backup verify %s", copy), 1, "%s", out);
    cr_assert_not_null (strstr (out, victim), "%s", out);
    char *target = tu_path (s_dir, "r2");
    cr_assert_eq (s_cli (out, sizeof out, "restore --from %s --data-dir %s", copy, target), 1,
                  "%s", out);
    cr_assert_not_null (strstr (out, victim), "%s", out);
    cr_assert (!s_exists (target), "restore made %s", target);
    //  Nothing left beside it either
    char *listing = tu_dir_snapshot (s_dir);
    cr_assert_null (strstr (listing, ".r2.restore"), "%s", listing);
    free (listing);

    //  A file gone, a file added, the manifest changed
    cr_assert_eq (pwrite (open (victim, O_RDWR), &(uint8_t) { byte ^ 0x20 }, 1, largest / 2), 1);
    cr_assert_eq (s_cli (out, sizeof out, "backup verify %s", copy), 0, "%s", out);
    char *moved = tu_path (s_dir, "moved.sst");
    cr_assert_eq (rename (victim, moved), 0);
    cr_assert_eq (s_cli (out, sizeof out, "backup verify %s", copy), 1, "%s", out);
    cr_assert_not_null (strstr (out, "is missing"), "%s", out);
    cr_assert_not_null (strstr (out, name), "%s", out);
    cr_assert_eq (rename (moved, victim), 0);
    char *extra_file = tu_path (store, "000999.sst");
    cr_assert_eq (tu_write_file (extra_file, "x", 1), 0);
    cr_assert_eq (s_cli (out, sizeof out, "backup verify %s", copy), 1, "%s", out);
    cr_assert_not_null (strstr (out, "000999.sst is not in the manifest"), "%s", out);
    unlink (extra_file);
    char *manifest = tu_path (copy, "herald-backup.manifest");
    fd = open (manifest, O_RDWR);
    cr_assert_geq (fd, 0);
    cr_assert_eq (pwrite (fd, "9", 1, 20), 1);
    close (fd);
    cr_assert_eq (s_cli (out, sizeof out, "restore --from %s --data-dir %s", copy, target), 1,
                  "%s", out);
    cr_assert_not_null (strstr (out, "herald-backup.manifest is damaged"), "%s", out);
    cr_assert (!s_exists (target));
    //  The original backup was never touched
    cr_assert_eq (s_cli (out, sizeof out, "backup verify %s", to), 0, "%s", out);
    free (manifest);
    free (extra_file);
    free (moved);
    free (target);
    free (victim);
    free (store);
    free (copy);
    free (to);
}

Test (heraldd_backup, restore_refuses_a_non_empty_or_running_data_dir)
{
    bt_start ();
    s_fill (100);
    char *to = tu_path (s_dir, "b3");
    char out [8192];
    cr_assert_eq (s_cli (out, sizeof out, "--endpoint %s backup --to %s", bt_broker->api, to),
                  0, "%s", out);
    char *target = tu_path (s_dir, "r3");
    cr_assert_eq (mkdir (target, 0755), 0);
    char *keep = tu_path (target, "notes.txt");
    cr_assert_eq (tu_write_file (keep, "mine", 4), 0);
    char *before = tu_dir_snapshot (s_dir);
    cr_assert_eq (s_cli (out, sizeof out, "restore --from %s --data-dir %s", to, target), 1,
                  "%s", out);
    cr_assert_not_null (strstr (out, "is not empty"), "%s", out);
    char *after = tu_dir_snapshot (s_dir);
    cr_assert_str_eq (before, after, "restore wrote something");
    //  The running broker's own directory
    cr_assert_eq (s_cli (out, sizeof out, "restore --from %s --data-dir %s", to,
                         bt_broker->data_dir), 1, "%s", out);
    cr_assert_not_null (strstr (out, "in use by another process"), "%s", out);
    //  An empty directory is taken
    unlink (keep);
    cr_assert_eq (s_cli (out, sizeof out, "restore --from %s --data-dir %s", to, target), 0,
                  "%s", out);
    cr_assert_eq (s_cli (out, sizeof out, "inspect --data-dir %s", target), 0, "%s", out);
    //  BACKUP refuses a directory that holds anything, and a relative path
    zsock_t *admin = bt_client ();
    char *full = tu_dir_snapshot (target);
    s_send_backup (admin, 5, target);
    s_answer_t answer;
    s_recv_answer (admin, 5, &answer, BT_WAIT_MS);
    cr_assert_str_eq (answer.command, "ERROR");
    cr_assert_str_eq (answer.code, "bad_request");
    cr_assert_not_null (strstr (answer.message, "is not empty"), "%s", answer.message);
    s_send_backup (admin, 6, "relative/dir");
    s_recv_answer (admin, 6, &answer, BT_WAIT_MS);
    cr_assert_str_eq (answer.code, "bad_request");
    char *inside = tu_path (bt_broker->data_dir, "backup");
    s_send_backup (admin, 8, inside);
    s_recv_answer (admin, 8, &answer, BT_WAIT_MS);
    cr_assert_str_eq (answer.code, "bad_request");
    cr_assert_not_null (strstr (answer.message, "inside the data directory"), "%s",
                        answer.message);
    cr_assert (!s_exists (inside));
    free (inside);
    s_send_backup (admin, 7, NULL);
    s_recv_answer (admin, 7, &answer, BT_WAIT_MS);
    cr_assert_str_eq (answer.code, "bad_request");
    char *full_after = tu_dir_snapshot (target);
    cr_assert_str_eq (full, full_after);
    free (full);
    free (full_after);
    free (before);
    free (after);
    free (keep);
    free (target);
    free (to);
}

//  ---------------------------------------------------------------------
//  Security: admin = backup

static void
s_key (zcert_t **cert, const char *save_in, const char *name)
{
    *cert = zcert_new ();
    cr_assert_not_null (*cert);
    if (save_in) {
        char *path = tu_path (save_in, name);
        cr_assert_eq (zcert_save (*cert, path), 0);
        free (path);
    }
}

static zsock_t *
s_secure_client (zcert_t *server, zcert_t *key)
{
    zsock_t *sock = zsock_new (ZMQ_DEALER);
    cr_assert_not_null (sock);
    zsock_set_linger (sock, 0);
    zsock_set_curve_serverkey (sock, zcert_public_txt (server));
    zsock_set_curve_publickey (sock, zcert_public_txt (key));
    zsock_set_curve_secretkey (sock, zcert_secret_txt (key));
    cr_assert_eq (zsock_connect (sock, "%s", bt_broker->api), 0);
    return bt_keep (sock);
}

Test (heraldd_backup, only_the_backup_grant_may_ask)
{
    zcert_t *server, *admin_key, *user_key;
    s_key (&server, s_dir, "broker.key");
    s_key (&admin_key, NULL, NULL);
    s_key (&user_key, NULL, NULL);
    char *acl = tu_path (s_dir, "acl");
    char text [1024];
    snprintf (text, sizeof text, "[user ops]\nkey = %s\nread = *\npublish = *\n"
              "admin = backup\n\n[user app]\nkey = %s\nread = *\npublish = *\n"
              "admin = status acl cluster groups trim\n", zcert_public_txt (admin_key),
              zcert_public_txt (user_key));
    cr_assert_eq (tu_write_file (acl, text, strlen (text)), 0);
    chmod (acl, 0644);
    char *secret = tu_path (s_dir, "broker.key_secret");
    const char *extra [] = { "--curve-secret", secret, "--acl", acl, NULL };
    bt_broker = bu_broker_new ("backup-acl", extra);
    cr_assert_not_null (bt_broker);
    cr_assert_eq (bu_broker_spawn (bt_broker), 0);
    zsock_t *app = s_secure_client (server, user_key);
    //  Wait until it answers
    bool ready = false;
    for (uint64_t rid = 100; !ready && rid < 200; rid++) {
        bt_send_rid (app, "STATUS", rid);
        zmsg_t *msg = bu_recv (app, 100);
        ready = msg != NULL;
        zmsg_destroy (&msg);
    }
    cr_assert (ready, "the secure broker did not answer");

    char *to = tu_path (s_dir, "b4");
    s_send_backup (app, 1, to);
    s_answer_t answer;
    s_recv_answer (app, 1, &answer, BT_WAIT_MS);
    cr_assert_str_eq (answer.command, "ERROR");
    cr_assert_str_eq (answer.code, "unauthorized", "%s", answer.message);
    cr_assert_not_null (strstr (answer.message, "backup"), "%s", answer.message);
    cr_assert (!s_exists (to), "an unauthorized BACKUP wrote %s", to);

    zsock_t *ops = s_secure_client (server, admin_key);
    s_send_backup (ops, 2, to);
    s_recv_answer (ops, 2, &answer, S_BACKUP_MS);
    cr_assert_str_eq (answer.command, "BACKUP", "%s: %s", answer.code, answer.message);
    char out [4096];
    cr_assert_eq (s_cli (out, sizeof out, "backup verify %s", to), 0, "%s", out);
    zcert_destroy (&server);
    zcert_destroy (&admin_key);
    zcert_destroy (&user_key);
    free (to);
    free (secret);
    free (acl);
}

//  ---------------------------------------------------------------------
//  kill -9 in the middle

//  Whatever a backup to s_dir/name made so far (name itself, or a
//  temporary directory named after it): its path into found; false when
//  there is nothing yet.
static bool
s_partial (const char *name, char *found, size_t size)
{
    char prefix [128];
    snprintf (prefix, sizeof prefix, ".%s.", name);
    DIR *dir = opendir (s_dir);
    if (!dir)
        return false;
    struct dirent *entry;
    bool seen = false;
    while (!seen && (entry = readdir (dir)))
        if (strcmp (entry->d_name, name) == 0
        ||  strncmp (entry->d_name, prefix, strlen (prefix)) == 0) {
            snprintf (found, size, "%s/%s", s_dir, entry->d_name);
            seen = true;
        }
    closedir (dir);
    return seen;
}

Test (heraldd_backup, kill_9_during_a_backup_leaves_no_backup_that_verifies)
{
    bt_start ();
    s_fill (3000);
    uint64_t head = 0;
    size_t midway = 0;
    for (int attempt = 0; attempt < S_KILL_TRIES && midway < 2; attempt++) {
        char name [32], out [8192], partial [512];
        snprintf (name, sizeof name, "k%d", attempt);
        char *to = tu_path (s_dir, name);
        zsock_t *admin = bt_keep (bu_dealer_new (bt_broker->api));
        head = bt_head (admin);
        s_send_backup (admin, 1, to);
        //  Kill it as soon as anything of it shows (bounded)
        bool seen = false;
        for (int spin = 0; spin < 200000 && !seen; spin++) {
            seen = s_partial (name, partial, sizeof partial);
            if (!seen)
                sched_yield ();
        }
        bu_broker_kill (bt_broker);
        bt_drop (&admin);
        if (s_exists (to)) {
            //  It finished first, or wrote DIR itself: then it must be whole
            cr_assert_eq (s_cli (out, sizeof out, "backup verify %s", to), 0, "%s", out);
        }
        else {
            midway++;
            cr_assert (seen, "no temporary directory, no backup");
            cr_assert_eq (s_cli (out, sizeof out, "backup verify %s", to), 1, "%s", out);
            //  What it left (its temporary directory) is not a backup either
            cr_assert_neq (s_cli (out, sizeof out, "backup verify %s", partial), 0, "%s", out);
        }
        //  The broker starts again on its store, every event there
        cr_assert_eq (bu_broker_restart (bt_broker, BT_START_MS), 0);
        zsock_t *client = bt_keep (bu_dealer_new (bt_broker->api));
        cr_assert_eq (bt_head (client), head);
        bt_drop (&client);
        free (to);
    }
    cr_assert_geq (midway, 1, "no kill landed in the middle of a backup in %d tries",
                   S_KILL_TRIES);
}

//  SIGTERM in the middle: the broker abandons the backup, removes what
//  it wrote, and exits 0
Test (heraldd_backup, sigterm_during_a_backup_abandons_it_and_leaves_nothing)
{
    bt_start ();
    s_fill (3000);
    size_t midway = 0;
    for (int attempt = 0; attempt < S_KILL_TRIES && midway < 1; attempt++) {
        char name [32], partial [512];
        snprintf (name, sizeof name, "t%d", attempt);
        char *to = tu_path (s_dir, name);
        zsock_t *admin = bt_keep (bu_dealer_new (bt_broker->api));
        s_send_backup (admin, 1, to);
        bool seen = false;
        for (int spin = 0; spin < 200000 && !seen; spin++) {
            seen = s_partial (name, partial, sizeof partial);
            if (!seen)
                sched_yield ();
        }
        cr_assert_eq (bu_broker_stop (bt_broker, BT_STOP_MS), 0, "no exit within %d ms",
                      BT_STOP_MS);
        cr_assert (WIFEXITED (bt_broker->status) && WEXITSTATUS (bt_broker->status) == 0,
                   "heraldd did not exit 0 (status %d)", bt_broker->status);
        bt_drop (&admin);
        if (s_exists (to)) {
            char out [8192];
            cr_assert_eq (s_cli (out, sizeof out, "backup verify %s", to), 0, "%s", out);
        }
        else {
            midway++;
            cr_assert (!s_partial (name, partial, sizeof partial),
                       "the abandoned backup left %s", partial);
        }
        cr_assert_eq (bu_broker_restart (bt_broker, BT_START_MS), 0);
        free (to);
    }
    cr_assert_geq (midway, 1, "no SIGTERM landed in the middle of a backup in %d tries",
                   S_KILL_TRIES);
}

//  kill -9 of `herald restore` in the middle: no data directory appears,
//  and a restore run again into it succeeds
Test (heraldd_backup, kill_9_during_a_restore_leaves_no_data_dir)
{
    bt_start ();
    s_fill (3000);
    char *to = tu_path (s_dir, "b6");
    char out [8192];
    cr_assert_eq (s_cli (out, sizeof out, "--endpoint %s backup --to %s", bt_broker->api, to),
                  0, "%s", out);
    size_t midway = 0;
    char *target = tu_path (s_dir, "r6");
    for (int attempt = 0; attempt < S_KILL_TRIES && midway < 1; attempt++) {
        char *argv [] = { s_herald, "restore", "--from", to, "--data-dir", target, NULL };
        char *log = tu_path (s_dir, "restore.log");
        pid_t pid = bu_spawn (s_herald, argv, log);
        cr_assert_gt (pid, 0);
        bool seen = false;
        char partial [512];
        for (int spin = 0; spin < 200000 && !seen; spin++) {
            seen = s_partial ("r6", partial, sizeof partial) && strstr (partial, ".restore-");
            if (!seen)
                sched_yield ();
        }
        kill (pid, SIGKILL);
        int status = 0;
        while (waitpid (pid, &status, 0) < 0 && errno == EINTR)
            ;
        free (log);
        if (s_exists (target)) {
            //  It finished first: a whole store
            cr_assert_eq (s_cli (out, sizeof out, "inspect --data-dir %s", target), 0, "%s",
                          out);
            cr_assert_eq (tu_rmtree (target), 0);
        }
        else
            midway++;
    }
    cr_assert_geq (midway, 1, "no kill landed in the middle of a restore in %d tries",
                   S_KILL_TRIES);
    //  What it left beside is no obstacle
    cr_assert_eq (s_cli (out, sizeof out, "restore --from %s --data-dir %s", to, target), 0,
                  "%s", out);
    cr_assert_eq (s_cli (out, sizeof out, "inspect --data-dir %s", target), 0, "%s", out);
    free (target);
    free (to);
}

//  ---------------------------------------------------------------------
//  A full disk: a 1 MiB tmpfs (needs root and a mount namespace)

static void
s_mount_tiny (void)
{
    if (unshare (CLONE_NEWNS) != 0 || mount (NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
        fprintf (stderr, "test_heraldd_backup: SKIPPED: cannot make a mount namespace: %s "
                 "(mounting a small file system needs root)\n", strerror (errno));
        cr_skip_test ("cannot make a mount namespace (needs root)");
    }
    s_mount = tu_path (s_dir, "tiny");
    cr_assert_eq (mkdir (s_mount, 0755), 0);
    if (mount ("tmpfs", s_mount, "tmpfs", 0, "size=1m") != 0) {
        fprintf (stderr, "test_heraldd_backup: SKIPPED: cannot mount a tmpfs: %s\n",
                 strerror (errno));
        cr_skip_test ("cannot mount a tmpfs (needs root)");
    }
    s_mounted = true;
}

static size_t
s_entries (const char *path)
{
    DIR *dir = opendir (path);
    cr_assert_not_null (dir);
    size_t count = 0;
    struct dirent *entry;
    while ((entry = readdir (dir)))
        count += strcmp (entry->d_name, ".") && strcmp (entry->d_name, "..");
    closedir (dir);
    return count;
}

Test (heraldd_backup, a_full_disk_fails_backup_and_restore_leaving_nothing)
{
    s_mount_tiny ();
    bt_start ();
    s_fill (2000);                  //  about 4 MiB: more than the tmpfs holds
    char *to = tu_path (s_mount, "b5");
    zsock_t *admin = bt_client ();
    s_send_backup (admin, 1, to);
    s_answer_t answer;
    s_recv_answer (admin, 1, &answer, S_BACKUP_MS);
    cr_assert_str_eq (answer.command, "ERROR");
    cr_assert_str_eq (answer.code, "internal", "%s", answer.message);
    cr_assert_not_null (strstr (answer.message, "No space left"), "%s", answer.message);
    cr_assert_eq (s_entries (s_mount), 0, "the failed backup left something on the disk");
    //  The broker serves on
    uint64_t head = bt_head (admin);
    bt_publish_many (admin, "after.full", 3, 10);
    cr_assert_eq (bt_head (admin), head + 3);

    //  A whole backup elsewhere, restored onto the tiny disk
    char *whole = tu_path (s_dir, "b5whole");
    char out [8192];
    cr_assert_eq (s_cli (out, sizeof out, "--endpoint %s backup --to %s", bt_broker->api,
                         whole), 0, "%s", out);
    char *target = tu_path (s_mount, "r5");
    cr_assert_eq (s_cli (out, sizeof out, "restore --from %s --data-dir %s", whole, target), 1,
                  "%s", out);
    cr_assert_not_null (strstr (out, "No space left"), "%s", out);
    cr_assert_eq (s_entries (s_mount), 0, "the failed restore left something on the disk");

    //  With room, a backup on another file system (files copied, not
    //  linked) is whole too
    char *roomy = tu_path (s_dir, "roomy");
    cr_assert_eq (mkdir (roomy, 0755), 0);
    cr_assert_eq (mount ("tmpfs", roomy, "tmpfs", 0, "size=64m"), 0, "%s", strerror (errno));
    char *copied = tu_path (roomy, "b5");
    cr_assert_eq (s_cli (out, sizeof out, "--endpoint %s backup --to %s", bt_broker->api,
                         copied), 0, "%s", out);
    cr_assert_eq (s_cli (out, sizeof out, "backup verify %s", copied), 0, "%s", out);
    char *restored = tu_path (s_dir, "r5");
    cr_assert_eq (s_cli (out, sizeof out, "restore --from %s --data-dir %s", copied,
                         restored), 0, "%s", out);
    cr_assert_eq (s_cli (out, sizeof out, "inspect --data-dir %s", restored), 0, "%s", out);
    umount2 (roomy, MNT_DETACH);
    free (restored);
    free (copied);
    free (roomy);
    free (target);
    free (whole);
    free (to);
}
