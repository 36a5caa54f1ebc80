/*  =========================================================================
    group_bench - what a consumer group costs and how it scales

    Runs broker/heraldd (its defaults) on free 127.0.0.1 ports and members
    that are tests/group_member processes (no state directory), each
    handler call costing --cost-us microseconds of nanosleep: an I/O-bound
    handler (a database write, a call to another service), the case a
    group is for.  Each member logs a line at each handler START and END
    (CLOCK_MONOTONIC, one write() each: a few microseconds beside the
    handler); the figures are read from those logs.  Parts:

      throughput  groups of 1, 2 and 4 members, events over 200 topics:
                  catch-up (--events stored before the members start) and
                  live (--events published at once while the group's
                  members hold every partition).  Events/s = events /
                  (last END - first START), beside the ideal n / mean
                  handler time.
      rebalance   two members, 500 events/s published over 200 topics;
                  one is killed with SIGKILL: from the kill to the first
                  event of its partitions handled by the survivor, with
                  the default session (3000 ms) and with 600 ms, --rounds
                  times each.
      commit      one member, --commit-events events caught up with
                  batch_max 1, 10 and 100, beside a local subscription
                  (herald_agent_subscribe with a state directory) with the
                  same handler in this process: the difference per event
                  is what the group's commits cost.

    Prints figures and asserts nothing; exit 1 only when a part could not
    run.
    =========================================================================
*/

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "agentutil.h"
#include "brokerutil.h"
#include "grouputil.h"
#include "testutil.h"

#define TOPICS          200
#define MEMBERS_MAX     16              //  started in one run (rebalance: 2 + rounds)

typedef struct {
    size_t events;
    size_t commit_events;
    unsigned cost_us;
    unsigned rounds;
    const char *parts;
} s_config_t;

static char *s_member;
static bool s_failed;

//  ---------------------------------------------------------------------
//  The members' logs

typedef struct {
    uint64_t first_start;
    uint64_t last_end;
    size_t ends;
    uint64_t busy_ns;               //  sum of END - START
} s_span_t;

static void
s_scan (const char *path, s_span_t *span)
{
    FILE *file = fopen (path, "r");
    if (!file)
        return;
    char line [512];
    uint64_t open_at = 0;
    while (fgets (line, sizeof line, file)) {
        uint64_t at;
        if (sscanf (line + 2, "%" SCNu64, &at) != 1)
            continue;
        if (line [0] == 'S') {
            open_at = at;
            if (span->first_start == 0 || at < span->first_start)
                span->first_start = at;
        }
        else
        if (line [0] == 'E') {
            span->ends++;
            if (at > span->last_end)
                span->last_end = at;
            if (open_at)
                span->busy_ns += at - open_at;
            open_at = 0;
        }
    }
    fclose (file);
}

//  The first START after t of an event in one of partitions (a mask).
static uint64_t
s_first_in (const char *path, uint64_t t, const bool *partitions)
{
    FILE *file = fopen (path, "r");
    if (!file)
        return 0;
    char line [512];
    uint64_t found = 0;
    while (!found && fgets (line, sizeof line, file)) {
        uint64_t at, seq;
        int pid, redelivered;
        unsigned partition;
        char topic [256];
        if (line [0] == 'S'
        &&  sscanf (line + 2, "%" SCNu64 " %d %" SCNu64 " %255s %u %d", &at, &pid, &seq, topic,
                    &partition, &redelivered) == 6
        &&  at > t && partition < GU_PARTITIONS_MAX && partitions [partition])
            found = at;
    }
    fclose (file);
    return found;
}

//  ---------------------------------------------------------------------
//  A broker and members

typedef struct {
    bu_broker_t *broker;
    pid_t pids [MEMBERS_MAX];
    char logs [MEMBERS_MAX][512];
    char outs [MEMBERS_MAX][512];
    size_t count;
} s_run_t;

static int
s_run_start (s_run_t *run, const char *tag)
{
    memset (run, 0, sizeof *run);
    run->broker = bu_broker_new (tag, NULL);
    if (!run->broker || bu_broker_start (run->broker, 10000)) {
        fprintf (stderr, "group_bench: heraldd did not start\n");
        bu_broker_destroy (&run->broker);
        return -1;
    }
    return 0;
}

static int
s_member_start (s_run_t *run, const char *group, unsigned cost_us, unsigned batch_max,
                int session_ms)
{
    size_t index = run->count;
    if (index == MEMBERS_MAX)
        return -1;
    snprintf (run->logs [index], sizeof run->logs [index], "%s/member-%zu.log",
              run->broker->dir, index);
    snprintf (run->outs [index], sizeof run->outs [index], "%s/member-%zu.out",
              run->broker->dir, index);
    char session [16];
    snprintf (session, sizeof session, "%d", session_ms);
    const char *extra [] = { "--session-ms", session, NULL };
    pid_t pid = gu_member_spawn (s_member, run->broker->api, group, "g.", run->logs [index],
                                 cost_us, batch_max, session_ms? extra: NULL, run->outs [index]);
    if (pid <= 0)
        return -1;
    run->pids [index] = pid;
    run->count++;
    return 0;
}

static void
s_run_stop (s_run_t *run)
{
    for (size_t index = 0; index < run->count; index++)
        if (run->pids [index] > 0)
            gu_member_stop (run->pids [index], 15000);
    bu_broker_destroy (&run->broker);
}

//  Wait until GROUP show: members members, every partition held, and
//  committed >= head (when head is not 0).  0 or -1.
static int
s_wait_group (s_run_t *run, const char *group, size_t members, uint64_t head, int timeout_ms)
{
    uint64_t deadline = gu_mono_ns () + (uint64_t) timeout_ms * 1000000ULL;
    gu_show_t *show = malloc (sizeof *show);
    int rc = -1;
    while (show && gu_mono_ns () < deadline) {
        if (gu_group_show (run->broker->api, group, show, 2000) == 0
        &&  show->members == members && show->owned_count == show->partitions
        &&  show->partitions > 0 && (head == 0 || show->min_committed >= head)) {
            rc = 0;
            break;
        }
        usleep (20000);
    }
    free (show);
    return rc;
}

static void
s_spans (s_run_t *run, s_span_t *total)
{
    memset (total, 0, sizeof *total);
    for (size_t index = 0; index < run->count; index++) {
        s_span_t span = { 0 };
        s_scan (run->logs [index], &span);
        if (span.first_start && (total->first_start == 0 || span.first_start < total->first_start))
            total->first_start = span.first_start;
        if (span.last_end > total->last_end)
            total->last_end = span.last_end;
        total->ends += span.ends;
        total->busy_ns += span.busy_ns;
    }
}

static void
s_truncate_logs (s_run_t *run)
{
    for (size_t index = 0; index < run->count; index++)
        truncate (run->logs [index], 0);
}

//  ---------------------------------------------------------------------
//  Throughput

//  From the moment every member has started its first event: ENDs after
//  it, and the last END.  The joins' rebalances are behind it.
static void
s_formed (s_run_t *run, uint64_t *formed, size_t *after, uint64_t *last_end)
{
    *formed = 0;
    for (size_t index = 0; index < run->count; index++) {
        s_span_t one = { 0 };
        s_scan (run->logs [index], &one);
        if (one.first_start > *formed)
            *formed = one.first_start;
    }
    *after = 0;
    *last_end = 0;
    for (size_t index = 0; index < run->count; index++) {
        FILE *file = fopen (run->logs [index], "r");
        if (!file)
            continue;
        char line [512];
        while (fgets (line, sizeof line, file)) {
            uint64_t at;
            if (line [0] == 'E' && sscanf (line + 2, "%" SCNu64, &at) == 1 && at > *formed) {
                (*after)++;
                if (at > *last_end)
                    *last_end = at;
            }
        }
        fclose (file);
    }
}

static void
s_print_rate (const char *what, size_t members, size_t events, const s_span_t *span)
{
    double seconds = (double) (span->last_end - span->first_start) / 1e9;
    double mean_us = span->ends? (double) span->busy_ns / 1e3 / (double) span->ends: 0;
    double rate = seconds > 0? (double) events / seconds: 0;
    double ideal = mean_us > 0? (double) members * 1e6 / mean_us: 0;
    printf ("  %-9s %zu member%s  %8zu events in %6.2f s  %8.0f ev/s   handler %6.1f us/call"
            "  (n / handler: %7.0f ev/s, %3.0f %%)\n", what, members, members > 1? "s": " ",
            events, seconds, rate, mean_us, ideal, ideal > 0? 100 * rate / ideal: 0);
}

static int
s_throughput (const s_config_t *config, size_t members)
{
    s_run_t run;
    if (s_run_start (&run, "group-bench-tp"))
        return -1;
    int rc = -1;
    //  catch-up: the events are stored before any member starts
    if (au_publish (run.broker->api, "g.%zu", TOPICS, config->events, 120000)) {
        fprintf (stderr, "group_bench: could not publish the backlog\n");
        goto done;
    }
    uint64_t head = gu_head (run.broker->api, 5000);
    for (size_t index = 0; index < members; index++)
        if (s_member_start (&run, "tp", config->cost_us, 0, 0))
            goto done;
    if (s_wait_group (&run, "tp", members, head, 600000)) {
        fprintf (stderr, "group_bench: catch-up of %zu members did not finish\n", members);
        goto done;
    }
    s_span_t span;
    s_spans (&run, &span);
    s_print_rate ("catch-up", members, config->events, &span);
    uint64_t formed, last_end;
    size_t after;
    s_formed (&run, &formed, &after, &last_end);
    if (last_end > formed && members > 1)
        printf ("  %-9s %zu members  %8zu events in %6.2f s  %8.0f ev/s   (once every member "
                "had started: %.2f s after the first)\n", "  formed", members, after,
                (double) (last_end - formed) / 1e9,
                (double) after / ((double) (last_end - formed) / 1e9),
                (double) (formed - span.first_start) / 1e9);
    if (getenv ("GROUP_BENCH_DEBUG"))
        for (size_t index = 0; index < run.count; index++) {
            s_span_t one = { 0 };
            s_scan (run.logs [index], &one);
            fprintf (stderr, "    member %zu: %zu events, first START +%.3f s, last END +%.3f s\n",
                     index, one.ends, (double) (one.first_start - span.first_start) / 1e9,
                     (double) (one.last_end - span.first_start) / 1e9);
        }
    //  live: the same members, every partition held, a burst published
    s_truncate_logs (&run);
    if (au_publish (run.broker->api, "g.%zu", TOPICS, config->events, 120000)) {
        fprintf (stderr, "group_bench: could not publish the live burst\n");
        goto done;
    }
    head = gu_head (run.broker->api, 5000);
    if (s_wait_group (&run, "tp", members, head, 600000)) {
        fprintf (stderr, "group_bench: live run of %zu members did not finish\n", members);
        goto done;
    }
    s_spans (&run, &span);
    s_print_rate ("live", members, config->events, &span);
    rc = 0;
done:
    s_run_stop (&run);
    return rc;
}

//  ---------------------------------------------------------------------
//  Rebalance after a kill -9

static int
s_rebalance (const s_config_t *config, int session_ms)
{
    s_run_t run;
    if (s_run_start (&run, "group-bench-rb"))
        return -1;
    int rc = -1;
    gu_publisher_t *publisher = NULL;
    uint64_t *samples = calloc (config->rounds + 1, sizeof *samples);
    size_t sampled = 0;
    if (s_member_start (&run, "rb", config->cost_us, 0, session_ms)
    ||  s_member_start (&run, "rb", config->cost_us, 0, session_ms))
        goto done;
    if (s_wait_group (&run, "rb", 2, 0, 30000)) {
        fprintf (stderr, "group_bench: the rebalance group did not form\n");
        goto done;
    }
    //  A steady stream for the whole part
    size_t seconds = (size_t) config->rounds * (size_t) (session_ms * 2 + 4000) / 1000 + 10;
    publisher = gu_publisher_start (run.broker->api, "g.%zu", TOPICS, seconds * 500, 500);
    if (!publisher)
        goto done;
    for (unsigned round = 0; round < config->rounds; round++) {
        usleep (1000000);
        gu_show_t show;
        if (s_wait_group (&run, "rb", 2, 0, 30000)
        ||  gu_group_show (run.broker->api, "rb", &show, 2000)) {
            fprintf (stderr, "group_bench: round %u: the group did not settle\n", round);
            goto done;
        }
        //  The victim: the last member started; its partitions by name
        size_t victim = run.count - 1;
        char needle [32];
        snprintf (needle, sizeof needle, "-%d-", (int) run.pids [victim]);
        bool partitions [GU_PARTITIONS_MAX] = { false };
        size_t held = 0;
        for (size_t partition = 0; partition < show.partitions; partition++)
            if (show.owned [partition] && strstr (show.owner [partition], needle)) {
                partitions [partition] = true;
                held++;
            }
        if (held == 0) {
            fprintf (stderr, "group_bench: round %u: no partition names pid %d\n", round,
                     (int) run.pids [victim]);
            goto done;
        }
        uint64_t killed_at = gu_member_kill (run.pids [victim]);
        run.pids [victim] = 0;
        //  The survivors: every member but the victim
        uint64_t first = 0;
        uint64_t deadline = killed_at + (uint64_t) (session_ms * 4 + 10000) * 1000000ULL;
        while (!first && gu_mono_ns () < deadline) {
            for (size_t index = 0; index < run.count; index++)
                if (run.pids [index] > 0) {
                    uint64_t at = s_first_in (run.logs [index], killed_at, partitions);
                    if (at && (!first || at < first))
                        first = at;
                }
            if (!first)
                usleep (10000);
        }
        if (!first) {
            fprintf (stderr, "group_bench: round %u: nobody took the partitions over\n", round);
            goto done;
        }
        samples [sampled++] = first - killed_at;
        //  A replacement member for the next round
        if (s_member_start (&run, "rb", config->cost_us, 0, session_ms))
            goto done;
    }
    uint64_t min = UINT64_MAX, max = 0, sum = 0;
    for (size_t index = 0; index < sampled; index++) {
        min = samples [index] < min? samples [index]: min;
        max = samples [index] > max? samples [index]: max;
        sum += samples [index];
    }
    printf ("  session %5d ms: kill -9 -> first event of its partitions at the survivor: "
            "min %5.0f ms  mean %5.0f ms  max %5.0f ms  (%zu rounds)\n", session_ms,
            (double) min / 1e6, (double) sum / (double) sampled / 1e6, (double) max / 1e6,
            sampled);
    rc = 0;
done:
    gu_publisher_destroy (&publisher);
    free (samples);
    s_run_stop (&run);
    return rc;
}

//  ---------------------------------------------------------------------
//  Commit cost

typedef struct {
    unsigned cost_us;
    uint64_t first;
    uint64_t last;
    size_t count;
    size_t target;
} s_local_t;

static int
s_local_handler (const herald_delivery_t *event, void *arg)
{
    (void) event;
    s_local_t *local = arg;
    uint64_t now = gu_mono_ns ();
    if (local->first == 0)
        local->first = now;
    struct timespec pause = { 0, (long) local->cost_us * 1000L };
    nanosleep (&pause, NULL);
    local->last = gu_mono_ns ();
    __atomic_add_fetch (&local->count, 1, __ATOMIC_SEQ_CST);
    return HERALD_OK;
}

static int
s_commit (const s_config_t *config)
{
    s_run_t run;
    if (s_run_start (&run, "group-bench-cc"))
        return -1;
    int rc = -1;
    char *state = NULL;
    herald_agent_t *agent = NULL;
    if (au_publish (run.broker->api, "g.%zu", TOPICS, config->commit_events, 120000))
        goto done;
    uint64_t head = gu_head (run.broker->api, 5000);
    //  The local subscription: its checkpoint on the local disk
    state = tu_tmpdir_new ("group-bench-local");
    herald_agent_options_t options;
    herald_agent_options_init (&options);
    options.api = run.broker->api;
    options.state_dir = state;
    agent = herald_agent_new ("group-bench-local", &options);
    s_local_t local = { .cost_us = config->cost_us, .target = config->commit_events };
    const char *prefixes [] = { "g.", NULL };
    if (!agent || herald_agent_subscribe (agent, "local", prefixes,
                                          (herald_start_t) { HERALD_START_BEGINNING, 0 },
                                          s_local_handler, &local) != HERALD_OK)
        goto done;
    uint64_t deadline = gu_mono_ns () + 600000ULL * 1000000ULL;
    while (__atomic_load_n (&local.count, __ATOMIC_SEQ_CST) < config->commit_events
    &&     gu_mono_ns () < deadline)
        usleep (10000);
    herald_agent_destroy (&agent);
    if (local.count < config->commit_events)
        goto done;
    double local_us = (double) (local.last - local.first) / 1e3 / (double) config->commit_events;
    printf ("  %-28s %8zu events  %7.1f us/event\n", "local subscription", config->commit_events,
            local_us);
    const unsigned batches [] = { 1, 10, 100 };
    for (size_t at = 0; at < 3; at++) {
        char group [16];
        snprintf (group, sizeof group, "cc%u", batches [at]);
        size_t first = run.count;
        if (s_member_start (&run, group, config->cost_us, batches [at], 0)
        ||  s_wait_group (&run, group, 1, head, 600000)) {
            fprintf (stderr, "group_bench: commit run with batch_max %u did not finish\n",
                     batches [at]);
            goto done;
        }
        s_span_t span = { 0 };
        s_scan (run.logs [first], &span);
        double per_us = (double) (span.last_end - span.first_start) / 1e3
                      / (double) config->commit_events;
        char what [40];
        snprintf (what, sizeof what, "group, batch_max %u", batches [at]);
        printf ("  %-28s %8zu events  %7.1f us/event  (commit cost %+6.1f us/event)\n", what,
                config->commit_events, per_us, per_us - local_us);
        gu_member_stop (run.pids [first], 15000);
        run.pids [first] = 0;
    }
    rc = 0;
done:
    herald_agent_destroy (&agent);
    tu_tmpdir_destroy (&state);
    s_run_stop (&run);
    return rc;
}

//  ---------------------------------------------------------------------

static bool
s_part (const s_config_t *config, const char *name)
{
    return !config->parts || strstr (config->parts, name) != NULL;
}

static int
s_parse (int argc, char **argv, s_config_t *config)
{
    static const struct option options [] = {
        { "events", required_argument, NULL, 'e' },
        { "commit-events", required_argument, NULL, 'c' },
        { "cost-us", required_argument, NULL, 'u' },
        { "rounds", required_argument, NULL, 'r' },
        { "parts", required_argument, NULL, 'p' },
        { NULL, 0, NULL, 0 }
    };
    *config = (s_config_t) { .events = 50000, .commit_events = 5000, .cost_us = 100,
                             .rounds = 3, .parts = NULL };
    int option;
    while ((option = getopt_long (argc, argv, "", options, NULL)) != -1) {
        if (option == 'p') {
            config->parts = optarg;
            continue;
        }
        if (option == '?')
            return -1;
        char *end;
        unsigned long value = strtoul (optarg, &end, 10);
        if (*end || value == 0) {
            fprintf (stderr, "group_bench: a number above 0 is needed, not '%s'\n", optarg);
            return -1;
        }
        if (option == 'e')
            config->events = value;
        else
        if (option == 'c')
            config->commit_events = value;
        else
        if (option == 'u')
            config->cost_us = (unsigned) value;
        else
            config->rounds = value < MEMBERS_MAX - 2? (unsigned) value: MEMBERS_MAX - 2;
    }
    if (optind < argc) {
        fprintf (stderr, "group_bench: unexpected argument '%s'\n", argv [optind]);
        return -1;
    }
    return 0;
}

int
main (int argc, char *argv [])
{
    s_config_t config;
    if (s_parse (argc, argv, &config)) {
        fprintf (stderr, "usage: group_bench [--events N] [--commit-events N] [--cost-us N] "
                 "[--rounds N] [--parts throughput,rebalance,commit]\n");
        return 2;
    }
    signal (SIGPIPE, SIG_IGN);
    //  The local subscription's handler sleeps as group_member's does
    prctl (PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    s_member = gu_member_path ();
    if (!s_member) {
        fprintf (stderr, "group_bench: tests/group_member not found (make builds it)\n");
        return 1;
    }
    char load [64] = "?";
    FILE *file = fopen ("/proc/loadavg", "r");
    if (file) {
        if (!fgets (load, sizeof load, file))
            snprintf (load, sizeof load, "?");
        fclose (file);
        load [strcspn (load, "\n")] = 0;
    }
    printf ("group_bench: handler = nanosleep (%u us) per event (I/O-bound), %ld cores, "
            "load average %s at the start\n\n", config.cost_us, sysconf (_SC_NPROCESSORS_ONLN),
            load);
    if (s_part (&config, "throughput")) {
        printf ("throughput: members are processes, 32 partitions, batch_max 100, "
                "%d topics\n", TOPICS);
        const size_t sizes [] = { 1, 2, 4 };
        for (size_t at = 0; at < 3; at++)
            if (s_throughput (&config, sizes [at]))
                s_failed = true;
        printf ("\n");
    }
    if (s_part (&config, "rebalance")) {
        printf ("rebalance: 2 members, 500 events/s; one killed with SIGKILL\n");
        if (s_rebalance (&config, 3000) || s_rebalance (&config, 600))
            s_failed = true;
        printf ("\n");
    }
    if (s_part (&config, "commit")) {
        printf ("commit cost: 1 member catching up, beside a local subscription "
                "(its checkpoint in a state directory)\n");
        if (s_commit (&config))
            s_failed = true;
        printf ("\n");
    }
    file = fopen ("/proc/loadavg", "r");
    if (file) {
        if (fgets (load, sizeof load, file))
            load [strcspn (load, "\n")] = 0;
        fclose (file);
    }
    printf ("load average %s at the end\n", load);
    free (s_member);
    return s_failed? 1: 0;
}
