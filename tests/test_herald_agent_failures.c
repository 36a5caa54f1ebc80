/*  =========================================================================
    test_herald_agent_failures - no failure of the agent turns into success

    Issue 11 item 7, the agent's parts, one test per path:
    - the I/O actor without its sockets fails herald_agent_new (it used to
      signal a good start, and the agent then never sent or delivered);
    - an event the encoder cannot pack is refused, not published as a
      different, shorter event;
    - the three atomic file replacements (a new checkpoint, a snapshot,
      the outbox's compaction) fsync the file, then its directory: this
      binary interposes fsync (libherald's calls reach it through the
      PLT) and records what was synced;
    - the command queue: a failed subscription stopped again and again
      queues one UNSUBSCRIBE, so the bound holds and later subscriptions
      still start.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agenttest.h"
#include "testutil.h"

#define WAIT_MS         20000

//  ---------------------------------------------------------------------
//  fsync, recorded

typedef struct {
    bool is_dir;
    dev_t dev;
    ino_t ino;
} s_synced_t;

static pthread_mutex_t s_synced_lock = PTHREAD_MUTEX_INITIALIZER;
static s_synced_t s_synced [8192];
static size_t s_synced_count;

int
fsync (int fd)
{
    struct stat st;
    if (fstat (fd, &st) == 0) {
        pthread_mutex_lock (&s_synced_lock);
        if (s_synced_count < sizeof s_synced / sizeof s_synced [0])
            s_synced [s_synced_count++] = (s_synced_t) { S_ISDIR (st.st_mode), st.st_dev,
                                                         st.st_ino };
        pthread_mutex_unlock (&s_synced_lock);
    }
    return (int) syscall (SYS_fsync, fd);
}

//  Index+1 of the first fsync of path's current inode (as a file or a
//  directory) at or after index from, or 0.
static size_t
s_synced_at (const char *path, bool is_dir, size_t from)
{
    struct stat st;
    cr_assert_eq (stat (path, &st), 0, "%s: %s", path, strerror (errno));
    size_t found = 0;
    pthread_mutex_lock (&s_synced_lock);
    for (size_t index = from; index < s_synced_count && !found; index++)
        if (s_synced [index].is_dir == is_dir && s_synced [index].dev == st.st_dev
        &&  s_synced [index].ino == st.st_ino)
            found = index + 1;
    pthread_mutex_unlock (&s_synced_lock);
    return found;
}

//  path (a file) was fsynced, and its directory after that.
static void
s_expect_replaced_durably (const char *path, const char *dir)
{
    size_t file = s_synced_at (path, false, 0);
    cr_assert (file, "%s was never fsynced", path);
    cr_assert (s_synced_at (dir, true, file), "%s was fsynced, but not its directory %s "
               "after it: the rename may not survive a power loss", path, dir);
}

//  An agent on at_state whose broker is at_broker, or (no_broker) at
//  ports where nothing listens.
static herald_agent_t *
s_new_agent (bool no_broker)
{
    herald_agent_options_t options;
    char api [64], fanout [64];
    if (no_broker) {
        herald_agent_options_init (&options);
        options.state_dir = at_state;
        snprintf (api, sizeof api, "tcp://127.0.0.1:%d", bu_free_port ());
        snprintf (fanout, sizeof fanout, "tcp://127.0.0.1:%d", bu_free_port ());
        options.api = api;
        options.fanout = fanout;
    }
    else
        au_options (&options, at_broker, at_state);
    herald_agent_t *agent = herald_agent_new ("failures", &options);
    cr_assert_not_null (agent, "herald_agent_new: %s", herald_agent_last_error ());
    return agent;
}

static void
s_setup (void)
{
    at_setup ("agent-failures", "agent-failures");
}

TestSuite (herald_agent_failures, .init = s_setup, .fini = at_teardown, .timeout = 60);

//  ---------------------------------------------------------------------

static int
s_record_nothing (const herald_delivery_t *event, void *arg)
{
    (void) event;
    (void) arg;
    return HERALD_OK;
}

Test (herald_agent_failures, a_new_checkpoint_is_fsynced_then_its_directory)
{
    at_agent = s_new_agent (true);
    const char *prefixes [] = { "c.", NULL };
    herald_start_t start = { HERALD_START_BEGINNING, 0 };
    cr_assert_eq (herald_agent_subscribe (at_agent, "durable", prefixes, start,
                                          s_record_nothing, NULL), HERALD_OK, "%s",
                  herald_agent_last_error ());
    char *path = tu_path (at_state, "subs/durable.ckpt");
    char *dir = tu_path (at_state, "subs");
    s_expect_replaced_durably (path, dir);
    free (path);
    free (dir);
}

Test (herald_agent_failures, a_snapshot_is_fsynced_then_its_directory)
{
    at_agent = s_new_agent (true);
    cr_assert_eq (herald_agent_snapshot_save (at_agent, "stock", 7, "state", 5), HERALD_OK,
                  "%s", herald_agent_last_error ());
    char *path = tu_path (at_state, "snapshots/stock");
    char *dir = tu_path (at_state, "snapshots");
    s_expect_replaced_durably (path, dir);
    free (path);
    free (dir);
}

Test (herald_agent_failures, the_compacted_outbox_is_fsynced_then_its_directory)
{
    at_agent = s_new_agent (false);
    //  Past 1 MiB with nothing pending: the outbox is rewritten
    static char data [8000];
    memset (data, 'o', sizeof data);
    for (int index = 0; index < 200; index++) {
        herald_outgoing_t event = { .topic = "o.1", .data = data, .data_len = sizeof data };
        cr_assert_eq (herald_agent_publish_async (at_agent, &event, NULL, NULL, NULL),
                      HERALD_OK, "%s", herald_agent_last_error ());
    }
    cr_assert_eq (herald_agent_flush (at_agent, WAIT_MS), HERALD_OK, "%s",
                  herald_agent_last_error ());
    char *path = tu_path (at_state, "outbox");
    struct stat st;
    cr_assert_eq (stat (path, &st), 0);
    cr_assert_lt (st.st_size, 1024 * 1024, "the outbox was not compacted (%lld bytes)",
                  (long long) st.st_size);
    s_expect_replaced_durably (path, at_state);
    free (path);
}

//  ---------------------------------------------------------------------

Test (herald_agent_failures, an_event_the_encoder_cannot_pack_is_refused)
{
#if defined (__SANITIZE_ADDRESS__)
    cr_skip_test ("ASan aborts on the oversized allocation this test makes fail");
#endif
    at_agent = s_new_agent (true);
    //  The buffer's realloc for 2^62 bytes of data fails: the packer says
    //  so, and a bin32 header of (2^62 mod 2^32) = 0 is already written.
    //  The bytes are never read.
    herald_outgoing_t event = { .topic = "p.1", .data = "x", .data_len = (size_t) 1 << 62 };
    uint8_t id [16];
    herald_err rc = herald_agent_publish_async (at_agent, &event, NULL, NULL, id);
    cr_assert_neq (rc, HERALD_OK, "an event whose data could not be packed was queued "
                   "(it would be published with empty data)");
    cr_assert_eq (rc, HERALD_ERR_NOMEM, "%d: %s", rc, herald_agent_last_error ());
    cr_assert (strstr (herald_agent_last_error (), "nothing was queued"), "%s",
               herald_agent_last_error ());
    herald_agent_stats_t stats;
    herald_agent_stats (at_agent, &stats);
    cr_assert_eq (stats.outbox_depth, 0);
}

//  ---------------------------------------------------------------------

static int
s_fail (const herald_delivery_t *event, void *arg)
{
    (void) event;
    (void) arg;
    return HERALD_ERR_INTERNAL;
}

Test (herald_agent_failures, a_failed_subscription_stopped_again_and_again_queues_once)
{
    cr_assert_eq (au_publish (at_broker->api, "q.%zu", 1, 10, WAIT_MS), 0);
    at_agent = s_new_agent (false);
    const char *prefixes [] = { "q.", NULL };
    herald_start_t start = { HERALD_START_BEGINNING, 0 };
    cr_assert_eq (herald_agent_subscribe (at_agent, "bad", prefixes, start, s_fail, NULL),
                  HERALD_OK);
    herald_sub_status_t status = { 0 };
    uint64_t deadline = tu_mono_ns () + WAIT_MS * 1000000ULL;
    while (tu_mono_ns () < deadline) {
        cr_assert_eq (herald_agent_sub_status (at_agent, "bad", &status), HERALD_OK);
        if (status.state == HERALD_SUB_FAILED)
            break;
        usleep (2000);
    }
    cr_assert_eq (status.state, HERALD_SUB_FAILED);
    //  Far more stops than the queue has room for, faster than the I/O
    //  thread takes them: each must be a no-op, not a queued command
    for (int index = 0; index < 5000; index++)
        cr_assert_eq (herald_agent_unsubscribe (at_agent, "bad"), HERALD_OK, "%s",
                      herald_agent_last_error ());
    //  Every other subscription the agent may have still starts
    for (int index = 0; index < 8; index++) {
        char name [32];
        snprintf (name, sizeof name, "good%d", index);
        cr_assert_eq (herald_agent_subscribe (at_agent, name, prefixes, start, au_record,
                                              at_recorder), HERALD_OK, "%s: %s", name,
                      herald_agent_last_error ());
    }
    cr_assert_eq (au_wait_count (at_recorder, 80, WAIT_MS), 80, "%zu of 80 deliveries",
                  at_recorder->count);
}

//  ---------------------------------------------------------------------
//  Without a broker, and before any ZeroMQ socket exists in the process

Test (herald_agent_start, an_io_thread_without_its_sockets_fails_herald_agent_new,
      .timeout = 30)
{
    //  The I/O thread binds the delivery pipe at inproc://herald-deliver-N,
    //  N the agent's serial in this process (1 for the first).  Holding
    //  those names in the same ZeroMQ context (czmq's, which the agent
    //  shares) makes its bind fail, deterministically: the I/O thread must
    //  say so, and herald_agent_new must fail with the reason.
    zsock_t *squatters [4];
    for (int index = 0; index < 4; index++) {
        squatters [index] = zsock_new (ZMQ_PAIR);
        cr_assert_not_null (squatters [index]);
        cr_assert_eq (zsock_bind (squatters [index], "inproc://herald-deliver-%d", index + 1), 0);
    }
    char *state = tu_tmpdir_new ("agent-start");
    herald_agent_options_t options;
    herald_agent_options_init (&options);
    options.state_dir = state;
    options.api = "tcp://127.0.0.1:1";
    options.fanout = "tcp://127.0.0.1:2";
    herald_agent_t *agent = herald_agent_new ("start", &options);
    bool started = agent != NULL;
    herald_err code = herald_agent_last_errcode ();
    char message [512];
    snprintf (message, sizeof message, "%s", herald_agent_last_error ());
    herald_agent_destroy (&agent);
    for (int index = 0; index < 4; index++)
        zsock_destroy (&squatters [index]);
    tu_tmpdir_destroy (&state);
    cr_assert (!started, "the agent started without its sockets");
    cr_assert_eq (code, HERALD_ERR_IO, "%d: %s", code, message);
    cr_assert (strstr (message, "I/O thread"), "%s", message);
    cr_assert (strstr (message, "inproc://herald-deliver-1"), "%s", message);
}
