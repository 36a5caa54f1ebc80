/*  =========================================================================
    broker_bench - what broker_bench.c and broker_bench_raw.c share

    broker_bench.c runs heraldd and measures it as a client would;
    broker_bench_raw.c measures the raw limits of the parts it is built on
    (ZeroMQ PUB/SUB, DEALER/ROUTER, RocksDB batched puts) in the same run.
    Neither side knows the other's code; they share only these helpers.
    =========================================================================
*/

#ifndef BROKER_BENCH_H_INCLUDED
#define BROKER_BENCH_H_INCLUDED

#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "bench_util.h"
#include "brokerutil.h"

#define BB_POOL_BYTES       (4u << 20)      //  random payload bytes
#define BB_TOPICS           100             //  topics "bench.t<N>"
#define BB_WINDOW           64              //  requests in flight per client
#define BB_MAX_SAMPLES      (1u << 20)      //  latency samples kept per thread
#define BB_TICK_S           0.001           //  a paced publisher's send period
#define BB_PACE_GRACE_S     1.0             //  how late it may finish its schedule

//  Set by SIGINT/SIGTERM; every loop checks it and stops early.
extern volatile sig_atomic_t bb_interrupted;

//  Random payload bytes from a fixed seed, BB_POOL_BYTES long.
extern uint8_t *bb_pool;

//  What every run of these benches sets up first: bb_pool filled from a
//  fixed seed, and bb_base made as /tmp/herald-<dir_tag>-XXXXXX.  Returns
//  0, or -1 after printing why (as program).  The caller frees bb_pool and
//  removes bb_base at the end.
int
    bb_setup (const char *program, const char *dir_tag);

//  Bytes of the envelope Herald stores for one of our events with payload
//  bytes of data: the raw RocksDB values are this long, so both sides
//  write the same log bytes.
size_t
    bb_envelope_size (size_t payload);

//  Monotonic nanoseconds (the clock bench_now reads), for the send
//  timestamps embedded in payloads.
uint64_t
    bb_now_ns (void);

//  Latency samples in seconds.  The caller owns the struct; add stops
//  recording (and counts the loss) once cap samples are held.
typedef struct {
    double *values;
    size_t count;
    size_t cap;
    uint64_t skipped;
} bb_samples_t;

int
    bb_samples_init (bb_samples_t *self, size_t cap);
void
    bb_samples_add (bb_samples_t *self, double value);
//  Append from's samples to self (growing it); from is left as it was.
int
    bb_samples_merge (bb_samples_t *self, const bb_samples_t *from);
//  The p-th percentile (0..100) in seconds; sorts the samples.  0 when empty.
double
    bb_samples_percentile (bb_samples_t *self, double p);
void
    bb_samples_fini (bb_samples_t *self);

//  A paced publisher (a fixed offered rate, every system the same way)
//  sends this many events, at least 1, every bb_pace_batch (rate) / rate
//  seconds: rate * BB_TICK_S rounded up.  It sleeps to each send's
//  deadline and stamps the events with it, so a publisher held back (a
//  full window, a stalled server) cannot hide the wait from the latency;
//  and it sends every send due before its end, up to BB_PACE_GRACE_S
//  late, so each system is offered the same events.
size_t
    bb_pace_batch (double rate);

//  ---------------------------------------------------------------------
//  Raw limits (broker_bench_raw.c)

//  Batches of batch puts of value_len bytes into a fresh raw DB under
//  path (bench_raw_*), each write synced when sync; until seconds or
//  max_events.  Returns puts/s, or -1 after printing why.
double
    bb_raw_rocksdb (const char *path, bool sync, size_t value_len, size_t batch,
                    double seconds, uint64_t max_events, uint64_t *done);

//  One PUB (this thread) sending [topic, payload-byte message] as fast as
//  it can to subscribers SUB threads over TCP on 127.0.0.1, for seconds or
//  max_msgs sent.  Returns messages received per second, all subscribers
//  together, or -1.  sent and received are totals.
double
    bb_raw_pubsub (int subscribers, size_t payload, double seconds, uint64_t max_msgs,
                   uint64_t *sent, uint64_t *received);

//  clients DEALER threads, each keeping BB_WINDOW requests of body_len
//  bytes in flight to one ROUTER thread that echoes them; for seconds or
//  max_msgs replies.  Returns replies/s and fills latency (round trips).
double
    bb_raw_reqrep (int clients, size_t body_len, double seconds, uint64_t max_msgs,
                   bb_samples_t *latency);

//  A ROUTER thread streaming frames frames of frame_len bytes to one
//  DEALER (this thread) as a REPLAY does on the wire: [identity, "EVENTS",
//  body, up to 256 frames] messages, then END; no log behind it.  Returns
//  frames received per second, or -1 (timeout s at most).
double
    bb_raw_stream (size_t frame_len, uint64_t frames, double timeout);

//  ---------------------------------------------------------------------
//  Herald over the wire (broker_bench_herald.c)

extern const char *bb_heraldd;          //  --heraldd, or NULL: look for it
extern char bb_base [PATH_MAX];         //  the run's temp dir
extern char bb_problems [4096];         //  broker problems seen, one a line

//  Called on every client socket these helpers make, before it connects
//  (curve_bench sets the CURVE keys there); NULL: none.
extern void (*bb_socket_hook) (zsock_t *sock);

//  Note a broker problem for the report's end.
void
    bb_problem (const char *format, ...) __attribute__ ((format (printf, 1, 2)));

//  One heraldd child, run by tests/brokerutil.c in bb_base/tag (data dir
//  and log inside); proc is NULL when it is not running.
typedef struct {
    char tag [32];
    bu_broker_t *proc;                  //  owned: api, fanout, pid
} bb_broker_t;

//  What bb_publish measured.
typedef struct {
    double rate;                        //  events ACKed per second
    double p50, p99;                    //  ACK latency, seconds
    uint64_t acked, errors;
} bb_result_t;

//  What bb_fanout measured.
typedef struct {
    double rate;                        //  delivered events/s, all subscribers
    double p50, p99, p999;              //  publish to deliver, seconds
    uint64_t published, delivered;
} bb_fan_result_t;

//  Start heraldd (fresh data dir, free ports, the durability given) and
//  wait until it answers STATUS.  Returns 0, or -1 after printing why.
int
    bb_broker_start (bb_broker_t *self, const char *tag, const char *durability);

//  SIGTERM, a bounded wait, SIGKILL as the last resort; remove the data
//  dir.  A non-zero exit or a kill is noted with bb_problem.
void
    bb_broker_stop (bb_broker_t *self);

//  threads publishers (each a DEALER, BB_WINDOW requests in flight) of
//  batch events of payload bytes per PUBLISH, for seconds or total_events,
//  at rate events/s in all (0: as fast as the broker ACKs).  With rate > 0
//  each publisher sleeps to its next request's deadline (bench_sleep_until
//  below the poll's 1 ms resolution, never a spin), and its events carry
//  that deadline as their send time; batch bb_pace_batch (rate) gives the
//  schedule bench/compare's peers keep.  Returns 0, or -1 when nothing was
//  ACKed.
int
    bb_publish (const char *api, int threads, size_t batch, size_t payload, double rate,
                double seconds, uint64_t total_events, bb_result_t *result);

//  bb_publish, also merging every publisher's ACK latency samples (seconds)
//  into latency, which the caller set up with bb_samples_init and owns.
int
    bb_publish_samples (const char *api, int threads, size_t batch, size_t payload,
                        double rate, double seconds, uint64_t total_events,
                        bb_result_t *result, bb_samples_t *latency);

//  subscribers SUB threads on the broker's fanout while one publisher sends
//  100 B events for seconds: batches of 100 as fast as BB_WINDOW requests
//  in flight allow (rate 0), or paced at rate events/s (bb_pace_batch
//  events per request).  Returns 0 or -1.
int
    bb_fanout (const bb_broker_t *broker, int subscribers, double seconds, double rate,
               bb_fan_result_t *result);

//  REPLAY from seq 1 with credit 1,000,000 refilled as events arrive, until
//  END or timeout seconds.  Returns events/s, or -1; *events the count.
double
    bb_replay (const bb_broker_t *broker, uint64_t rid, double timeout, uint64_t *events);

#endif
