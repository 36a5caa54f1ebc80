/*  =========================================================================
    curve_bench - what CURVE costs Herald, side by side in one run

    Each case runs WITHOUT and WITH CURVE, interleaved, on this machine:

    - raw libzmq, the method of SECURITY.md 1.4: server and client are two
      forked processes with a context each (1 I/O thread), so neither's
      crypto runs on the other's thread: PUB->SUB (8 B topic + 100 B),
      DEALER->ROUTER acked (100 B, 1000 in flight), the REPLAY shape (64
      frames of 100 B per message) and the same events packed (64 in one
      6,400 B frame), and handshakes (connect, one request, close, with a
      ZAP handler answering 200);
    - the real heraldd: publish (sync and async durability, batches of 100
      x 100 B), fanout to 1 and 8 subscribers, catch-up REPLAY of one log
      unpacked and packed (`pack: true`), and handshakes/s (a new DEALER,
      STATUS, close).  The CURVE broker runs with --curve-secret and an ACL
      whose one user (key made with zcert) may publish * and read *.

    Figures of one run: take the ratios over the absolute rates on a
    shared machine (the load average is printed at the start and the end).
    Each REPLAY and raw case runs `rounds` times (median shown).  A REPLAY
    client walks every envelope of every frame (herald_msg_events_next),
    packed or not, as the agent does.  It never asserts on a figure; the
    exit code is 1 only when a part could not run.
    =========================================================================
*/

#include "broker_bench.h"
#include "herald_msg.h"

#include <czmq.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define S_START_MS      15000
#define S_ROUNDS_MAX    9

typedef struct {
    double seconds;                     //  per case
    int rounds;                         //  REPLAY and raw cases
    uint64_t replay_events;
    bool skip_raw;
    bool skip_broker;
    bool replay_only;                   //  the broker's catch-up cases alone (profiling)
} s_config_t;

static bool s_failed;

//  ---------------------------------------------------------------------
//  Raw libzmq, in forked processes (no czmq in the children)

typedef enum { R_PUBSUB, R_REQREP, R_STREAM, R_PACKED, R_HANDSHAKE } s_raw_kind_t;

static const char *s_raw_names [] = {
    "PUB->SUB, 8 B topic + 100 B",
    "DEALER->ROUTER 100 B, acked, 1000 in flight",
    "REPLAY shape: 64 frames of 100 B a message",
    "the same 64 events in one 6,400 B frame",
    "handshakes: connect, 1 request, close (ZAP)"
};

typedef struct {
    char server_public [41], server_secret [41];
    char client_public [41], client_secret [41];
} s_keys_t;

static void
s_raw_secure (void *socket, const s_keys_t *keys, bool curve, bool server)
{
    if (!curve) {
        if (server)
            zmq_setsockopt (socket, ZMQ_ZAP_DOMAIN, "bench", 5);
        return;
    }
    if (server) {
        int on = 1;
        zmq_setsockopt (socket, ZMQ_CURVE_SERVER, &on, sizeof on);
        zmq_setsockopt (socket, ZMQ_CURVE_SECRETKEY, keys->server_secret, 40);
        zmq_setsockopt (socket, ZMQ_ZAP_DOMAIN, "bench", 5);
    }
    else {
        zmq_setsockopt (socket, ZMQ_CURVE_SERVERKEY, keys->server_public, 40);
        zmq_setsockopt (socket, ZMQ_CURVE_PUBLICKEY, keys->client_public, 40);
        zmq_setsockopt (socket, ZMQ_CURVE_SECRETKEY, keys->client_secret, 40);
    }
}

//  A ZAP handler that admits everyone (200): libzmq admits every key
//  without one, but Herald always runs one, so its round trip is counted.
static void *
s_zap (void *ctx)
{
    void *rep = zmq_socket (ctx, ZMQ_REP);
    if (zmq_bind (rep, "inproc://zeromq.zap.01") != 0)
        return NULL;
    while (true) {
        char frames [8][256];
        size_t sizes [8];
        int count = 0, more = 1;
        while (more) {
            int size = zmq_recv (rep, count < 8? frames [count]: frames [7], 256, 0);
            if (size < 0) {
                zmq_close (rep);
                return NULL;
            }
            if (count < 8)
                sizes [count++] = (size_t) (size > 256? 256: size);
            size_t len = sizeof more;
            zmq_getsockopt (rep, ZMQ_RCVMORE, &more, &len);
        }
        zmq_send (rep, "1.0", 3, ZMQ_SNDMORE);
        zmq_send (rep, frames [1], sizes [1], ZMQ_SNDMORE);     //  request id
        zmq_send (rep, "200", 3, ZMQ_SNDMORE);
        zmq_send (rep, "OK", 2, ZMQ_SNDMORE);
        zmq_send (rep, "bench", 5, ZMQ_SNDMORE);
        zmq_send (rep, "", 0, 0);
    }
}

//  The server side, until killed.
static void
s_raw_server (s_raw_kind_t kind, bool curve, const s_keys_t *keys, int port)
{
    void *ctx = zmq_ctx_new ();
    pthread_t zap;
    pthread_create (&zap, NULL, s_zap, ctx);
    char endpoint [64];
    snprintf (endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", port);
    void *socket = zmq_socket (ctx, kind == R_PUBSUB? ZMQ_PUB: ZMQ_ROUTER);
    int hwm = 100000, on = 1;
    zmq_setsockopt (socket, ZMQ_SNDHWM, &hwm, sizeof hwm);
    if (kind == R_PUBSUB)
        zmq_setsockopt (socket, ZMQ_XPUB_NODROP, &on, sizeof on);
    else
        zmq_setsockopt (socket, ZMQ_ROUTER_MANDATORY, &on, sizeof on);
    s_raw_secure (socket, keys, curve, true);
    if (zmq_bind (socket, endpoint) != 0)
        _exit (2);
    uint8_t payload [6400];
    memset (payload, 'x', sizeof payload);
    if (kind == R_PUBSUB)
        while (true) {
            zmq_send (socket, "bench.t1", 8, ZMQ_SNDMORE);
            zmq_send (socket, payload, 100, 0);
        }
    uint8_t id [256];
    char body [256];
    while (true) {
        int id_len = zmq_recv (socket, id, sizeof id, 0);
        int len = zmq_recv (socket, body, sizeof body, 0);
        if (id_len <= 0 || len < 0)
            continue;
        if (kind == R_REQREP || kind == R_HANDSHAKE) {
            zmq_send (socket, id, (size_t) id_len, ZMQ_SNDMORE);
            zmq_send (socket, "acked..!", 8, 0);
            continue;
        }
        //  R_STREAM, R_PACKED: stream to this client until it is gone
        while (true) {
            if (zmq_send (socket, id, (size_t) id_len, ZMQ_SNDMORE) < 0)
                break;
            zmq_send (socket, "EVENTS", 6, ZMQ_SNDMORE);
            zmq_send (socket, "\x81\xa3rid\x01", 6, ZMQ_SNDMORE);
            if (kind == R_PACKED)
                zmq_send (socket, payload, 6400, 0);
            else
                for (int index = 0; index < 64; index++)
                    zmq_send (socket, payload, 100, index < 63? ZMQ_SNDMORE: 0);
        }
    }
}

static double
s_cpu_s (void)
{
    struct rusage usage;
    getrusage (RUSAGE_SELF, &usage);
    return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec
         + (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

//  The client side: counts messages (events for the REPLAY shapes) for
//  seconds after the first; writes "count elapsed cpu" to fd.
static void
s_raw_client (s_raw_kind_t kind, bool curve, const s_keys_t *keys, int port, double seconds,
              int fd)
{
    void *ctx = zmq_ctx_new ();
    char endpoint [64];
    snprintf (endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", port);
    uint64_t count = 0;
    double start = 0, cpu = 0;
    uint8_t buffer [8192];
    if (kind == R_HANDSHAKE) {
        start = bench_now ();
        cpu = s_cpu_s ();
        while (bench_now () - start < seconds) {
            void *dealer = zmq_socket (ctx, ZMQ_DEALER);
            int zero = 0, wait = 2000;
            zmq_setsockopt (dealer, ZMQ_LINGER, &zero, sizeof zero);
            zmq_setsockopt (dealer, ZMQ_RCVTIMEO, &wait, sizeof wait);
            s_raw_secure (dealer, keys, curve, false);
            zmq_connect (dealer, endpoint);
            zmq_send (dealer, "x", 1, 0);
            if (zmq_recv (dealer, buffer, sizeof buffer, 0) >= 0)
                count++;
            zmq_close (dealer);
        }
    }
    else {
        void *socket = zmq_socket (ctx, kind == R_PUBSUB? ZMQ_SUB: ZMQ_DEALER);
        int hwm = 100000, wait = 100;
        zmq_setsockopt (socket, ZMQ_RCVHWM, &hwm, sizeof hwm);
        zmq_setsockopt (socket, ZMQ_SNDHWM, &hwm, sizeof hwm);
        zmq_setsockopt (socket, ZMQ_RCVTIMEO, &wait, sizeof wait);
        if (kind == R_PUBSUB)
            zmq_setsockopt (socket, ZMQ_SUBSCRIBE, "", 0);
        s_raw_secure (socket, keys, curve, false);
        zmq_connect (socket, endpoint);
        if (kind == R_STREAM || kind == R_PACKED)
            zmq_send (socket, "go", 2, 0);
        uint64_t inflight = 0;
        double deadline = bench_now () + seconds + 10;
        while (bench_now () < deadline) {
            if (kind == R_REQREP)
                while (inflight < 1000) {
                    zmq_send (socket, buffer, 100, 0);
                    inflight++;
                }
            int size = zmq_recv (socket, buffer, sizeof buffer, 0);
            if (size < 0)
                continue;
            if (!start) {
                start = bench_now ();
                cpu = s_cpu_s ();
            }
            int more = 0;
            size_t len = sizeof more;
            zmq_getsockopt (socket, ZMQ_RCVMORE, &more, &len);
            uint64_t frames = 0;
            while (more) {
                zmq_recv (socket, buffer, sizeof buffer, 0);
                frames++;
                zmq_getsockopt (socket, ZMQ_RCVMORE, &more, &len);
            }
            if (kind == R_STREAM)
                count += frames - 1;            //  the frames after {rid}
            else
            if (kind == R_PACKED)
                count += 64;
            else
                count++;
            if (kind == R_REQREP)
                inflight--;
            if (bench_now () - start >= seconds)
                break;
        }
        zmq_close (socket);
    }
    double elapsed = start? bench_now () - start: 0;
    cpu = start? s_cpu_s () - cpu: 0;
    char line [128];
    int len = snprintf (line, sizeof line, "%" PRIu64 " %f %f\n", count, elapsed, cpu);
    if (write (fd, line, (size_t) len) != len)
        _exit (3);
    _exit (0);
}

//  One raw case: rate (per second) and the client's CPU us per unit; -1 when
//  it could not run.
static double
s_raw_run (s_raw_kind_t kind, bool curve, const s_keys_t *keys, double seconds,
           double *cpu_us)
{
    int port = bu_free_port ();
    int fds [2];
    if (port < 0 || pipe (fds) != 0)
        return -1;
    fflush (NULL);
    pid_t server = fork ();
    if (server == 0) {
        close (fds [0]);
        close (fds [1]);            //  the parent reads to the client's end
        s_raw_server (kind, curve, keys, port);
        _exit (0);
    }
    pid_t client = fork ();
    if (client == 0) {
        close (fds [0]);
        s_raw_client (kind, curve, keys, port, seconds, fds [1]);
    }
    close (fds [1]);
    char line [128] = "";
    ssize_t got = 0, size;
    while ((size = read (fds [0], line + got, sizeof line - 1 - (size_t) got)) > 0)
        got += size;
    close (fds [0]);
    int status;
    waitpid (client, &status, 0);
    kill (server, SIGKILL);
    waitpid (server, &status, 0);
    uint64_t count = 0;
    double elapsed = 0, cpu = 0;
    if (sscanf (line, "%" SCNu64 " %lf %lf", &count, &elapsed, &cpu) != 3 || elapsed <= 0
    ||  count == 0)
        return -1;
    *cpu_us = cpu * 1e6 / (double) count;
    return (double) count / elapsed;
}

static int
s_cmp_double (const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return x < y? -1: x > y;
}

static double
s_median (double *values, int count)
{
    qsort (values, (size_t) count, sizeof (double), s_cmp_double);
    return count? values [count / 2]: -1;
}

//  ---------------------------------------------------------------------
//  Rows of the table

typedef struct {
    char name [64];
    double plain, curve;                //  per second; < 0: did not run
    char note [96];
} s_row_t;

#define S_MAX_ROWS  32
static s_row_t s_rows [S_MAX_ROWS];
static size_t s_row_count;

static s_row_t *
s_row (const char *name, double plain, double curve)
{
    if (s_row_count == S_MAX_ROWS)
        return NULL;
    s_row_t *row = &s_rows [s_row_count++];
    memset (row, 0, sizeof *row);
    snprintf (row->name, sizeof row->name, "%s", name);
    row->plain = plain;
    row->curve = curve;
    if (plain < 0 || curve < 0)
        s_failed = true;
    return row;
}

static void
s_run_raw (const s_config_t *config, const s_keys_t *keys)
{
    for (int kind = R_PUBSUB; kind <= R_HANDSHAKE && !bb_interrupted; kind++) {
        double rates [2][S_ROUNDS_MAX], cpus [2][S_ROUNDS_MAX];
        for (int round = 0; round < config->rounds && !bb_interrupted; round++)
            for (int curve = 0; curve < 2; curve++)
                rates [curve][round] = s_raw_run ((s_raw_kind_t) kind, curve, keys,
                                                  config->seconds, &cpus [curve][round]);
        s_row_t *row = s_row (s_raw_names [kind], s_median (rates [0], config->rounds),
                              s_median (rates [1], config->rounds));
        if (row)
            snprintf (row->note, sizeof row->note, "client CPU %.2f -> %.2f us",
                      s_median (cpus [0], config->rounds), s_median (cpus [1], config->rounds));
        fprintf (stderr, "curve_bench: raw %-46s %10.0f %10.0f /s\n", s_raw_names [kind],
                 row? row->plain: -1, row? row->curve: -1);
    }
}

//  ---------------------------------------------------------------------
//  The real broker

static zcert_t *s_broker_cert;          //  the CURVE broker's
static zcert_t *s_user_cert;            //  the bench user's
static bool s_curve_on;                 //  the hook applies the keys

static void
s_hook (zsock_t *sock)
{
    if (!s_curve_on)
        return;
    zcert_apply (s_user_cert, sock);
    zsock_set_curve_serverkey (sock, zcert_public_txt (s_broker_cert));
}

//  A client socket to the broker (keys when CURVE), connected.
static zsock_t *
s_dealer (const char *api)
{
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    if (!dealer)
        return NULL;
    s_hook (dealer);
    zsock_set_linger (dealer, 0);
    zsock_set_rcvhwm (dealer, 100000);
    if (zsock_connect (dealer, "%s", api) != 0)
        zsock_destroy (&dealer);
    return dealer;
}

//  STATUS on a fresh connection: 0 when answered within timeout_ms.
static int
s_status_once (const char *api, int timeout_ms, uint64_t *head)
{
    zsock_t *dealer = s_dealer (api);
    if (!dealer)
        return -1;
    bu_reply_t reply = { 0 };
    int rc = bu_status (dealer, 1, &reply, timeout_ms);
    if (rc == 0 && head)
        *head = reply.body.status.head;
    bu_reply_fini (&reply);
    zsock_destroy (&dealer);
    return rc;
}

static char s_secret_path [PATH_MAX], s_acl_path [PATH_MAX];

//  Keys (zcert) and the ACL in bb_base: the bench user may publish and
//  read everything.
static int
s_make_keys (void)
{
    s_broker_cert = zcert_new ();
    s_user_cert = zcert_new ();
    char public_path [PATH_MAX];
    bench_join (public_path, bb_base, "broker.key");
    bench_join (s_secret_path, bb_base, "broker.key_secret");
    if (!s_broker_cert || !s_user_cert || zcert_save (s_broker_cert, public_path) != 0
    ||  chmod (s_secret_path, 0600) != 0)
        return -1;
    bench_join (s_acl_path, bb_base, "acl");
    FILE *file = fopen (s_acl_path, "w");
    if (!file)
        return -1;
    fprintf (file, "[user bench]\nkey = %s\npublish = *\nread = *\nadmin = status\n",
             zcert_public_txt (s_user_cert));
    return fclose (file);
}

static int
s_start (bb_broker_t *broker, const char *tag, const char *durability, bool curve)
{
    memset (broker, 0, sizeof *broker);
    snprintf (broker->tag, sizeof broker->tag, "%s", tag);
    const char *plain [] = { "--durability", durability, NULL };
    const char *secure [] = { "--durability", durability, "--curve-secret", s_secret_path,
                              "--acl", s_acl_path, NULL };
    broker->proc = bu_broker_new_in (bb_base, tag, bb_heraldd, curve? secure: plain);
    if (!broker->proc || bu_broker_spawn (broker->proc) != 0) {
        fprintf (stderr, "curve_bench: cannot start heraldd (%s)\n", tag);
        bu_broker_destroy (&broker->proc);
        return -1;
    }
    s_curve_on = curve;
    double deadline = bench_now () + S_START_MS / 1000.0;
    while (bench_now () < deadline && !bb_interrupted)
        if (s_status_once (broker->proc->api, 200, NULL) == 0) {
            fprintf (stderr, "curve_bench: heraldd (%s) pid %d on %s\n", tag,
                     (int) broker->proc->pid, broker->proc->api);
            return 0;
        }
    fprintf (stderr, "curve_bench: heraldd (%s) did not answer STATUS\n", tag);
    bb_problem ("heraldd (%s) did not answer STATUS within %d ms", tag, S_START_MS);
    bu_broker_destroy (&broker->proc);
    return -1;
}

//  CPU seconds (user + system) process pid has used, from /proc; 0 if
//  unreadable.
static double
s_proc_cpu (pid_t pid)
{
    char path [64], text [1024];
    snprintf (path, sizeof path, "/proc/%d/stat", (int) pid);
    FILE *file = fopen (path, "r");
    if (!file)
        return 0;
    size_t size = fread (text, 1, sizeof text - 1, file);
    fclose (file);
    text [size] = 0;
    char *after = strrchr (text, ')');          //  the command may hold spaces
    unsigned long utime = 0, stime = 0;
    if (!after || sscanf (after + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
                          &utime, &stime) != 2)
        return 0;
    return (double) (utime + stime) / (double) sysconf (_SC_CLK_TCK);
}

//  REPLAY seqs 1..to from a fresh connection, credit 1,000,000 refilled,
//  every envelope of every frame walked.  Returns events/s or -1.
static double
s_replay (const bb_broker_t *broker, bool pack, uint64_t to, uint64_t *events,
          uint64_t *frames_p)
{
    *events = 0;
    zsock_t *dealer = s_dealer (broker->proc->api);
    if (!dealer)
        return -1;
    void *handle = zsock_resolve (dealer);
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    herald_msg_t request = { .type = HERALD_MSG_REPLAY, .has_rid = true, .rid = 7 };
    request.replay.has_from = true;
    request.replay.from = 1;
    request.replay.has_to = true;
    request.replay.to = to;
    request.replay.credit = 1000000;
    request.replay.pack = pack;
    herald_msg_encode (&request, &sbuf);
    double start = bench_now (), last = start;
    zmq_send (handle, "REPLAY", 6, ZMQ_SNDMORE);
    zmq_send (handle, sbuf.data, sbuf.size, 0);
    zmq_msg_t frame;
    zmq_msg_init (&frame);
    zmq_pollitem_t item = { handle, 0, ZMQ_POLLIN, 0 };
    uint64_t count = 0, frames = 0, unrefilled = 0;
    bool ended = false, bad = false;
    char command [8] = "";
    while (!ended && !bb_interrupted && bench_now () - start < 300) {
        if (zmq_poll (&item, 1, 100) <= 0)
            continue;
        while (zmq_msg_recv (&frame, handle, ZMQ_DONTWAIT) >= 0) {
            size_t len = zmq_msg_size (&frame);
            memset (command, 0, sizeof command);
            memcpy (command, zmq_msg_data (&frame), len < 7? len: 7);
            bool is_events = streq (command, "EVENTS");
            int index = 0;
            while (zmq_msg_more (&frame) && zmq_msg_recv (&frame, handle, 0) >= 0) {
                if (!is_events || index++ == 0)
                    continue;           //  the body
                size_t offset = 0, envelope_len;
                const uint8_t *envelope;
                int rc;
                while ((rc = herald_msg_events_next (zmq_msg_data (&frame),
                                                     zmq_msg_size (&frame), &offset,
                                                     &envelope, &envelope_len)) == 1) {
                    count++;
                    unrefilled++;
                }
                bad |= rc < 0;
                frames++;
            }
            if (!is_events) {
                ended = true;           //  END, or an ERROR
                break;
            }
            if (unrefilled >= 100000)
                break;
        }
        last = bench_now ();
        if (!ended && unrefilled >= 100000) {
            herald_msg_t credit = { .type = HERALD_MSG_CREDIT, .has_rid = true, .rid = 7 };
            credit.credit.credit = unrefilled;
            sbuf.size = 0;
            herald_msg_encode (&credit, &sbuf);
            zmq_send (handle, "CREDIT", 6, ZMQ_SNDMORE);
            zmq_send (handle, sbuf.data, sbuf.size, 0);
            unrefilled = 0;
        }
    }
    zmq_msg_close (&frame);
    msgpack_sbuffer_destroy (&sbuf);
    zsock_destroy (&dealer);
    *events = count;
    *frames_p = frames;
    if (bad)
        bb_problem ("REPLAY (pack %d): a frame that does not split into envelopes", pack);
    if (!ended || !streq (command, "END")) {
        bb_problem ("REPLAY (pack %d) ended with %s after %" PRIu64 " events", pack,
                    ended? command: "nothing", count);
        return -1;
    }
    return last > start? (double) count / (last - start): -1;
}

//  Sequential handshakes for seconds: connect, STATUS, close.
static double
s_handshakes (const bb_broker_t *broker, double seconds)
{
    double start = bench_now ();
    uint64_t count = 0, failed = 0;
    while (bench_now () - start < seconds && !bb_interrupted && failed < 10)
        if (s_status_once (broker->proc->api, 2000, NULL) == 0)
            count++;
        else
            failed++;
    if (failed)
        bb_problem ("%" PRIu64 " handshakes got no STATUS", failed);
    double elapsed = bench_now () - start;
    return count && !failed? (double) count / elapsed: -1;
}

typedef struct {
    double publish [2];                 //  sync, async
    double fanout [2];                  //  1, 8 subscribers
    double replay [2][S_ROUNDS_MAX];    //  unpacked, packed
    double replay_cpu [2][S_ROUNDS_MAX];//  the broker's CPU us per event
    uint64_t replay_frames [2];
    double handshakes;
    uint64_t replayed;
} s_broker_figures_t;

static void
s_run_broker (const s_config_t *config, bool curve, s_broker_figures_t *out)
{
    const char *kind = curve? "curve": "plain";
    char tag [32];
    for (int sync = 1; sync >= 0 && !bb_interrupted; sync--) {
        bb_broker_t broker;
        snprintf (tag, sizeof tag, "%s-%s", kind, sync? "sync": "async");
        out->publish [!sync] = -1;
        if (sync && config->replay_only)
            continue;
        if (s_start (&broker, tag, sync? "sync": "async", curve))
            continue;
        bb_result_t result;
        if (bb_publish (broker.proc->api, 4, 100, 100, 0, config->seconds, 100000000,
                        &result) == 0)
            out->publish [!sync] = result.rate;
        fprintf (stderr, "curve_bench: %s publish %s: %.0f ev/s\n", kind,
                 sync? "sync": "async", out->publish [!sync]);
        if (sync) {
            bb_broker_stop (&broker);
            continue;
        }
        //  The async broker goes on: fanout, the replay log, handshakes
        static const int fans [2] = { 1, 8 };
        for (int f = 0; f < 2 && !bb_interrupted && !config->replay_only; f++) {
            bb_fan_result_t fan;
            out->fanout [f] = bb_fanout (&broker, fans [f], config->seconds, 0, &fan) == 0
                            ? fan.rate: -1;
            fprintf (stderr, "curve_bench: %s fanout to %d: %.0f ev/s delivered\n", kind,
                     fans [f], out->fanout [f]);
        }
        uint64_t head = 0;
        s_status_once (broker.proc->api, 5000, &head);
        if (head < config->replay_events)
            bb_publish (broker.proc->api, 2, 100, 100, 0, 3600,
                        config->replay_events - head, &result);
        s_status_once (broker.proc->api, 5000, &head);
        uint64_t to = config->replay_events < head? config->replay_events: head;
        out->replayed = to;
        for (int round = 0; round < config->rounds && !bb_interrupted; round++)
            for (int pack = 0; pack < 2; pack++) {
                uint64_t events = 0;
                double cpu = s_proc_cpu (broker.proc->pid);
                out->replay [pack][round] = s_replay (&broker, pack, to, &events,
                                                      &out->replay_frames [pack]);
                out->replay_cpu [pack][round] = events
                    ? (s_proc_cpu (broker.proc->pid) - cpu) * 1e6 / (double) events: 0;
                if (events != to)
                    bb_problem ("%s REPLAY (pack %d) sent %" PRIu64 " of %" PRIu64 " events",
                                kind, pack, events, to);
                fprintf (stderr, "curve_bench: %s replay %s round %d: %.0f ev/s "
                         "(%" PRIu64 " frames)\n", kind, pack? "packed": "unpacked",
                         round + 1, out->replay [pack][round], out->replay_frames [pack]);
            }
        out->handshakes = config->replay_only? 0: s_handshakes (&broker, config->seconds);
        fprintf (stderr, "curve_bench: %s handshakes: %.0f /s\n", kind, out->handshakes);
        bb_broker_stop (&broker);
    }
    s_curve_on = false;
}

//  ---------------------------------------------------------------------

static void
s_print (const s_config_t *config)
{
    printf ("%-50s %12s %12s %8s\n", "case", "plaintext/s", "CURVE/s", "CURVE %");
    for (size_t index = 0; index < s_row_count; index++) {
        s_row_t *row = &s_rows [index];
        if (!row->name [0]) {
            printf ("\n");
            continue;
        }
        if (row->plain == 0 && row->curve == 0) {
            printf ("%s\n", row->name);
            continue;
        }
        char ratio [16] = "-";
        if (row->plain > 0 && row->curve > 0)
            snprintf (ratio, sizeof ratio, "%.0f %%", 100 * row->curve / row->plain);
        printf ("%-50s %12.0f %12.0f %8s%s%s\n", row->name, row->plain, row->curve, ratio,
                row->note [0]? "  ": "", row->note);
    }
    (void) config;
}

static void
s_usage (FILE *out)
{
    fprintf (out,
        "usage: curve_bench [--seconds S] [--rounds N] [--replay-events N] [--quick]\n"
        "                   [--no-raw] [--no-broker] [--replay-only] [--heraldd PATH]\n"
        "Publish, fanout, catch-up REPLAY (unpacked and packed) and handshakes of the real\n"
        "heraldd, each without and with CURVE, beside raw libzmq NULL/CURVE figures.\n");
}

int
main (int argc, char *argv [])
{
    s_config_t config = { .seconds = 3, .rounds = 3, .replay_events = 1000000 };
    static const struct option options [] = {
        { "seconds", required_argument, NULL, 's' },
        { "rounds", required_argument, NULL, 'r' },
        { "replay-events", required_argument, NULL, 'e' },
        { "quick", no_argument, NULL, 'q' },
        { "no-raw", no_argument, NULL, 'R' },
        { "no-broker", no_argument, NULL, 'B' },
        { "replay-only", no_argument, NULL, 'P' },
        { "heraldd", required_argument, NULL, 'H' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    int option;
    while ((option = getopt_long (argc, argv, "", options, NULL)) != -1) {
        switch (option) {
            case 's': config.seconds = atof (optarg); break;
            case 'r': config.rounds = atoi (optarg); break;
            case 'e': config.replay_events = strtoull (optarg, NULL, 10); break;
            case 'q': config.seconds = 1; config.rounds = 1;
                      config.replay_events = 100000; break;
            case 'R': config.skip_raw = true; break;
            case 'B': config.skip_broker = true; break;
            case 'P': config.replay_only = true; config.skip_raw = true; break;
            case 'H': bb_heraldd = optarg; break;
            case 'h': s_usage (stdout); return 0;
            default: s_usage (stderr); return 1;
        }
    }
    if (config.seconds <= 0 || config.rounds < 1 || config.rounds > S_ROUNDS_MAX
    ||  config.replay_events == 0) {
        s_usage (stderr);
        return 1;
    }
    setvbuf (stdout, NULL, _IOLBF, 0);
    signal (SIGPIPE, SIG_IGN);
    //  The raw part forks before czmq makes its context
    if (bb_setup ("curve_bench", "curve-bench"))
        return 1;
    char load [64];
    bench_loadavg (load, sizeof load);
    double started = bench_now ();
    printf ("curve_bench: %.1f s a case, %d rounds (median) for raw and REPLAY cases; "
            "libzmq %d.%d.%d; load avg at the start: %s\n", config.seconds, config.rounds,
            ZMQ_VERSION_MAJOR, ZMQ_VERSION_MINOR, ZMQ_VERSION_PATCH, load);
    if (!config.skip_raw) {
        s_keys_t keys;
        zmq_curve_keypair (keys.server_public, keys.server_secret);
        zmq_curve_keypair (keys.client_public, keys.client_secret);
        s_row ("raw libzmq (SECURITY.md 1.4), 1 I/O thread a side", 0, 0);
        s_run_raw (&config, &keys);
    }
    if (!config.skip_broker && !bb_interrupted) {
        zsys_handler_set (NULL);
        bb_socket_hook = s_hook;
        if (s_make_keys () != 0) {
            fprintf (stderr, "curve_bench: cannot write the keys and ACL in %s\n", bb_base);
            return 1;
        }
        s_broker_figures_t figures [2];
        memset (figures, 0, sizeof figures);
        s_run_broker (&config, false, &figures [0]);
        s_run_broker (&config, true, &figures [1]);
        if (s_row_count)
            s_row ("", 0, 0);
        s_row ("heraldd, 100 B events, --io-threads default", 0, 0);
        s_row ("publish 100 B x100, 4 pub, sync", figures [0].publish [0],
               figures [1].publish [0]);
        s_row ("publish 100 B x100, 4 pub, async", figures [0].publish [1],
               figures [1].publish [1]);
        s_row ("fanout to 1 SUB (events delivered)", figures [0].fanout [0],
               figures [1].fanout [0]);
        s_row ("fanout to 8 SUB (events delivered, all)", figures [0].fanout [1],
               figures [1].fanout [1]);
        double unpacked [2], packed [2], cpu [2][2];
        for (int c = 0; c < 2; c++) {
            unpacked [c] = s_median (figures [c].replay [0], config.rounds);
            packed [c] = s_median (figures [c].replay [1], config.rounds);
            for (int p = 0; p < 2; p++)
                cpu [c][p] = s_median (figures [c].replay_cpu [p], config.rounds);
        }
        char name [64];
        snprintf (name, sizeof name, "catch-up REPLAY %" PRIu64 " ev, unpacked",
                  figures [0].replayed);
        s_row_t *row = s_row (name, unpacked [0], unpacked [1]);
        if (row)
            snprintf (row->note, sizeof row->note, "%" PRIu64 " frames; broker CPU %.2f -> "
                      "%.2f us/ev", figures [0].replay_frames [0], cpu [0][0], cpu [1][0]);
        snprintf (name, sizeof name, "catch-up REPLAY %" PRIu64 " ev, pack: true",
                  figures [0].replayed);
        row = s_row (name, packed [0], packed [1]);
        if (row)
            snprintf (row->note, sizeof row->note, "%" PRIu64 " frames; broker CPU %.2f -> "
                      "%.2f us/ev", figures [0].replay_frames [1], cpu [0][1], cpu [1][1]);
        row = s_row ("catch-up: CURVE packed vs plaintext unpacked", unpacked [0], packed [1]);
        if (row)
            snprintf (row->note, sizeof row->note, "the goal: >= 50 %%");
        s_row ("handshakes: connect, STATUS, close", figures [0].handshakes,
               figures [1].handshakes);
    }
    printf ("\n");
    s_print (&config);
    bench_loadavg (load, sizeof load);
    printf ("\nload avg at the end: %s; run took %.0f s\n", load, bench_now () - started);
    if (*bb_problems)
        printf ("\nProblems seen:\n%s", bb_problems);
    bench_remove_tree (bb_base);
    free (bb_pool);
    zcert_destroy (&s_broker_cert);
    zcert_destroy (&s_user_cert);
    zsys_shutdown ();
    return s_failed || bb_interrupted? 1: 0;
}
