/*  =========================================================================
    compare - Herald, NATS JetStream and Redis Streams, side by side

    bench/compare/compare runs the same workloads against heraldd,
    nats-server (JetStream, file storage) and redis-server (Streams, AOF),
    each started here on free 127.0.0.1 ports with a fresh data directory
    and stopped here, beside the raw limits of Herald's parts (raw ZeroMQ
    PUB/SUB and DEALER/ROUTER, raw RocksDB batched puts, iteration and
    point reads).  It writes one CSV row per figure; bench/compare/run.sh
    repeats it and turns the rows into a table and charts (see
    docs/benchmarks.md).

    One system is one cmp_system_t: a table of functions over a
    cmp_server_t, so compare.c runs every workload the same way on each.
    Clients are threads of this process, each with its own connection.
    =========================================================================
*/

#ifndef CMP_COMPARE_H_INCLUDED
#define CMP_COMPARE_H_INCLUDED

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "broker_bench.h"

#define CMP_WINDOW          6400        //  events in flight per publisher, every system
#define CMP_BATCH           100         //  Herald: events per PUBLISH; Redis: XADDs per flush
#define CMP_SPARSE          1000        //  events of the sparse topic in the log
#define CMP_SPARSE_TOPIC    "rare.one"
#define CMP_START_MS        15000       //  a server's start to its first answer
#define CMP_STOP_MS         15000       //  SIGTERM to SIGKILL

//  One server under test.  The caller owns the struct (compare.c keeps it
//  on its stack); start fills it, stop empties it.
typedef struct {
    const char *system;                 //  "herald", "nats", "redis"
    char durability [16];               //  as the CSV names it
    char dir [PATH_MAX];                //  bb_base/<system>-<tag>: data and log
    char url [128];                     //  what clients connect to
    int port;
    pid_t pid;                          //  0 when not running
    bb_broker_t herald;                 //  heraldd only
    uint64_t peak_rss;                  //  VmHWM in bytes, read just before stop
} cmp_server_t;

//  Publish figures: events ACKed per second, ACK latency in seconds.
typedef struct {
    double rate;
    double p50, p99, p999;
    uint64_t acked, errors;
} cmp_pub_t;

//  Fanout figures: events delivered per second (all subscribers together),
//  publish-to-deliver latency in seconds.
typedef struct {
    double rate;
    double p50, p99, p999;
    uint64_t published, delivered;
} cmp_fan_t;

//  What one system does for each workload.  Every function returns 0 (or
//  a figure >= 0) on success and -1 after printing why.
typedef struct {
    const char *name;
    //  The durabilities this system offers, NULL-terminated, each with its
    //  class: "sync" (fsync before the ACK) or "async" (ACK, fsync later).
    const char *const *durabilities;
    const char *const *classes;
    const char *relaxed;                //  the one fanout and the log run with
    int (*start) (cmp_server_t *self, const char *tag, const char *durability);
    void (*stop) (cmp_server_t *self);
    //  threads publishers of payload-byte events with a dedup id each,
    //  CMP_WINDOW in flight each, for seconds or max_events.
    int (*publish) (cmp_server_t *self, int threads, size_t payload, double seconds,
                    uint64_t max_events, cmp_pub_t *result);
    //  The same with one event per request and one ACK each, as NATS's
    //  client publishes, when the system's own publish batches (Herald:
    //  CMP_BATCH events per PUBLISH); NULL when publish already sends one
    //  event per request.  Rows: workloads publish_one and cpu_one.
    int (*publish_one) (cmp_server_t *self, int threads, size_t payload, double seconds,
                        uint64_t max_events, cmp_pub_t *result);
    //  subscribers live readers while one publisher publishes 100 B events
    //  for seconds: as fast as its CMP_WINDOW allows (rate 0), or paced at
    //  rate events/s (cmp_pacer_t; Herald's publisher paces the same way).
    int (*fanout) (cmp_server_t *self, int subscribers, double seconds, double rate,
                   cmp_fan_t *result);
    //  Append events 100 B events, topics from cmp_topic: the log that
    //  catchup and sparse read.  Returns events/s or -1.
    double (*build) (cmp_server_t *self, uint64_t events);
    //  Read the whole log from its first event.  Returns events/s or -1;
    //  *count the events read.
    double (*catchup) (cmp_server_t *self, double timeout, uint64_t *count);
    //  Read the CMP_SPARSE events of CMP_SPARSE_TOPIC.  Returns ms or -1;
    //  *count the events read.  variant 0 is the system's natural way;
    //  variant 1, when the system has a second way (else -2), another.
    double (*sparse) (cmp_server_t *self, int variant, double timeout, uint64_t *count);
    const char *sparse_names [2];       //  what each variant is, for the CSV
} cmp_system_t;

extern const cmp_system_t cmp_herald;
extern const cmp_system_t cmp_nats;
extern const cmp_system_t cmp_redis;

//  ---------------------------------------------------------------------
//  Events, the same for every system (compare.c)

//  The event id of counter: 8 bytes of this run's nonce, 8 of the counter
//  (big-endian), as Herald's bench makes them.  hex (33 bytes) gets the
//  same id as text, for NATS's Nats-Msg-Id; either may be NULL.
void
    cmp_event_id (uint64_t counter, uint8_t id [16], char *hex);

//  A fresh counter for an event id (atomic; unique in this process).
uint64_t
    cmp_next_counter (void);

//  The topic of the index-th event of a log of total events: CMP_SPARSE
//  of them, spread evenly, are CMP_SPARSE_TOPIC; the rest "bench.t<N>"
//  (total 0: always "bench.t<N>").  Returns the length written to out.
int
    cmp_topic (uint64_t index, uint64_t total, char *out, size_t size);

//  Fill out with payload bytes: a slice of bb_pool chosen by counter, its
//  last 8 the send time (native order) when payload >= 16: stamp (ns on
//  bb_now_ns's clock; a paced publisher's deadline), or now when 0.
void
    cmp_payload (uint64_t counter, uint8_t *out, size_t payload, uint64_t stamp);

//  The send time in the last 8 bytes of a payload, or 0 when too short.
uint64_t
    cmp_payload_stamp (const void *data, size_t size);

//  ---------------------------------------------------------------------
//  The peers' publisher threads and readers (cmp_publish.c)

//  One publisher thread of a peer (cmp_nats.c, cmp_redis.c): its settings,
//  set by cmp_run_publishers, and its results.  The mutex and condition
//  variable are for a client whose ACK handler runs on another thread.
typedef struct {
    const cmp_server_t *server;
    size_t payload;
    double start, deadline;
    uint64_t max_events;                //  this thread's budget
    double rate;                        //  events/s, paced (cmp_pacer_t); 0: unpaced
    atomic_uint_fast64_t *log_index;    //  building the log: the next index; else NULL
    uint64_t log_total;
    pthread_mutex_t mutex;
    pthread_cond_t space;
    uint64_t inflight;                  //  under mutex, for the thread's own use
    //  Results
    uint64_t acked, errors;
    char error [96];
    double finished;                    //  bench_now of the last ACK
    bb_samples_t latency;               //  seconds
} cmp_publisher_t;

//  threads threads of body (its argument a cmp_publisher_t *) for seconds
//  or max_events in all, events of payload bytes, rate events/s in all
//  (0: as fast as the window allows); log_total > 0 builds the log of that
//  many events instead (max_events ignored).  Fills result (errors are
//  noted with bb_problem, naming what).  Returns events/s, or -1 when
//  nothing was ACKed.
double
    cmp_run_publishers (const cmp_server_t *server, const char *what, void *(*body) (void *),
                        int threads, size_t payload, double seconds, uint64_t max_events,
                        uint64_t log_total, double rate, cmp_pub_t *result);

//  A paced publisher's schedule: a tick of bb_pace_batch (rate) events
//  every bb_pace_batch (rate) / rate seconds from start until end, the
//  schedule Herald's publisher (bb_publish) keeps.  Late ticks are not
//  skipped: a publisher held back catches up one tick at a time, within
//  its window, up to BB_PACE_GRACE_S after end, and its events carry
//  their ticks' deadlines, so the wait is counted.
typedef struct {
    double next;                        //  the next tick's deadline
    double interval;
    double end;
    size_t batch;
} cmp_pacer_t;

void
    cmp_pacer_init (cmp_pacer_t *self, double start, double rate, double end);

//  True while ticks remain to be sent.
bool
    cmp_pacer_more (const cmp_pacer_t *self);

//  Sleep until the next tick is due (at once when late), take it: returns
//  its deadline (bench_now's clock), *batch its events.
double
    cmp_pacer_wait (cmp_pacer_t *self, size_t *batch);

//  The next event of a publisher: a fresh counter (for the id and the
//  payload), and its topic into topic (the log's topic when building the
//  log).  Returns the topic's length, or -1 when the log is complete.
int
    cmp_next_event (cmp_publisher_t *self, uint64_t *counter, char *topic, size_t size);

//  Wait until the counters add up to expected, or stop moving for 0.5 s,
//  or 10 s pass: a fanout's subscribers draining what was published.
void
    cmp_wait_delivered (atomic_uint_fast64_t *const *counters, int count, uint64_t expected);

//  ---------------------------------------------------------------------
//  Processes (cmp_proc.c)

//  fork/exec argv (argv[0] looked up in PATH), stdout and stderr to log,
//  dying with this process (PR_SET_PDEATHSIG).  Returns the pid or -1.
pid_t
    cmp_proc_spawn (char *const argv [], const char *log);

//  Wait until 127.0.0.1:port accepts a TCP connection, up to timeout_ms,
//  and pid still runs.  Returns 0 or -1.
int
    cmp_proc_wait_port (pid_t pid, int port, int timeout_ms);

//  Send signum (the server's clean-shutdown signal: nats-server exits 1
//  on SIGTERM, 0 on SIGINT), wait up to timeout_ms, SIGKILL as the last
//  resort, reap.  Returns 0 when it exited by itself with status 0, -1
//  otherwise (noted with bb_problem, naming what).
int
    cmp_proc_stop (pid_t pid, int signum, const char *what, int timeout_ms);

//  VmHWM (peak resident set) of pid in bytes, 0 when unknown.
uint64_t
    cmp_proc_peak_rss (pid_t pid);

//  CPU time pid has used (all its threads, user and system), in seconds;
//  -1 when unknown.
double
    cmp_proc_cpu_seconds (pid_t pid);

//  Write text to path.  Returns 0 or -1.
int
    cmp_write_file (const char *path, const char *text);

//  Print the last bytes of a log file to stderr.
void
    cmp_log_tail (const char *path);

//  Percentiles of samples into p50/p99/p999 (seconds); sorts them.
void
    cmp_percentiles (bb_samples_t *samples, double *p50, double *p99, double *p999);

#endif
