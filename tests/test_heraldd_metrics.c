/*  =========================================================================
    test_heraldd_metrics - heraldd --metrics: /metrics, /healthz, /readyz
    (issue 17), on real heraldd processes over real HTTP on 127.0.0.1

    - off by default: without --metrics heraldd listens on api and fanout
      only (its sockets in /proc), with it on one more port;
    - /metrics parses strictly (tests/promtext.h) as Prometheus 0.0.4, and
      as OpenMetrics when the Accept header asks; every STATUS key is
      there with STATUS's value; the histograms count what was published;
      `herald status --format prometheus` prints the same text;
    - bad requests: unknown paths 404, methods other than GET/HEAD 405
      (with Allow), HEAD without a body, garbage answered and the server
      serving on; a port in use stops heraldd with exit 1 and nothing
      made; the key in a --config file;
    - under load: a thread scrapes as fast as it can while publishes go
      on; every publish is ACKed, every counter never decreases between
      two scrapes, and the last scrape counts every event (counts, never
      times);
    - /readyz follows the free-space guard (a tmpfs filled and emptied,
      needs root to mount), to 503 with its reason and back to 200 (a
      cluster's /readyz: tests/test_heraldd_metrics_cluster.c).
    Not here (each a window of a few hundred ms in a real broker, seen by
    hand): /readyz saying "stopping" between SIGTERM and the exit, and
    "the broker failed" between a store failure and the exit 1; their
    rules, and lagging, are tests/test_herald_metrics_unit.c's.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "brokertest.h"
#include "metricstest.h"

#define MIB             (1024ULL * 1024ULL)

TestSuite (heraldd_metrics, .init = bt_setup, .fini = bt_teardown, .timeout = 120);

//  ---------------------------------------------------------------------
//  Helpers

//  bt_broker started with --metrics 127.0.0.1:PORT and the extra flags;
//  returns PORT.
static int
s_start_metrics (const char *const *more)
{
    int port = bu_free_port ();
    cr_assert_gt (port, 0);
    static char address [32];
    snprintf (address, sizeof address, "127.0.0.1:%d", port);
    const char *extra [16] = { "--metrics", address, "--min-free", "0" };
    size_t count = 4;
    for (size_t index = 0; more && more [index] && count < 15; index++)
        extra [count++] = more [index];
    extra [count] = NULL;
    bt_start_with (extra);
    return port;
}

//  The value of STATUS key name in reply (fixed key or uint extra), into
//  *value: true when there.
static bool
s_status_value (const bu_reply_t *reply, const char *name, uint64_t *value)
{
    const __typeof__ (reply->body.status) *status = &reply->body.status;
    struct { const char *key; uint64_t value; } fixed [] = {
        { "head", status->head }, { "topics", status->topics }, { "events", status->events },
        { "uptime_s", status->uptime_s }, { "lineage", status->lineage }
    };
    for (size_t index = 0; index < 5; index++)
        if (strcmp (fixed [index].key, name) == 0) {
            *value = fixed [index].value;
            return true;
        }
    for (size_t index = 0; index < status->extra_count; index++)
        if (bu_str_eq (status->extra_keys [index], name)) {
            *value = status->extra_values [index];
            return true;
        }
    return false;
}

//  Every uint key of STATUS reply `before` is in text as herald_KEY or
//  herald_KEY_total, its value between before's and after's (the broker
//  is quiet; uptime and disk figures may move).
static void
s_check_status_keys (const pt_text_t *text, const bu_reply_t *before, const bu_reply_t *after)
{
    const char *fixed [] = { "head", "topics", "events", "uptime_s", "lineage" };
    size_t total = 5 + before->body.status.extra_count;
    for (size_t index = 0; index < total; index++) {
        char key [128];
        if (index < 5)
            snprintf (key, sizeof key, "%s", fixed [index]);
        else {
            herald_str_t name = before->body.status.extra_keys [index - 5];
            snprintf (key, sizeof key, "%.*s", (int) name.len, name.ptr);
        }
        uint64_t low = 0, high = 0;
        cr_assert (s_status_value (before, key, &low) && s_status_value (after, key, &high),
                   "STATUS key %s missing from the second STATUS", key);
        if (low > high) {
            uint64_t swap = low;
            low = high;
            high = swap;
        }
        char name [160], counter [170];
        snprintf (name, sizeof name, "herald_%s", key);
        if (strcmp (key, "first") == 0)
            snprintf (name, sizeof name, "herald_first_seq");   //  named for what it is
        snprintf (counter, sizeof counter, "%s_total", name);
        const pt_sample_t *sample = pt_find (text, name, "");
        if (!sample)
            sample = pt_find (text, counter, "");
        cr_assert_not_null (sample, "STATUS key %s is not in /metrics (as %s or %s)", key,
                            name, counter);
        cr_assert (sample->whole, "%s is not a whole number", sample->name);
        if (strcmp (key, "disk_free_bytes") == 0)
            continue;                   //  the shared disk: other processes write to it
        cr_assert (sample->integer >= low && sample->integer <= high, "%s is %" PRIu64
                   " in /metrics, STATUS said %" PRIu64 " then %" PRIu64, sample->name,
                   sample->integer, low, high);
    }
}

//  The TCP ports pid listens on (from /proc), into ports; returns how many.
static size_t
s_listening (pid_t pid, int *ports, size_t max)
{
    //  Listening sockets' inodes and ports, IPv4 and IPv6
    unsigned long inodes [256];
    int inode_ports [256];
    size_t known = 0;
    const char *tables [] = { "/proc/net/tcp", "/proc/net/tcp6" };
    for (size_t table = 0; table < 2; table++) {
        FILE *file = fopen (tables [table], "r");
        if (!file)
            continue;
        char line [512];
        while (fgets (line, sizeof line, file) && known < 256) {
            char local [64];
            unsigned state = 0;
            unsigned long inode = 0;
            if (sscanf (line, " %*d: %63s %*s %x %*s %*s %*s %*s %*s %lu", local, &state,
                        &inode) != 3 || state != 0x0A)
                continue;
            char *colon = strrchr (local, ':');
            if (!colon)
                continue;
            inodes [known] = inode;
            inode_ports [known++] = (int) strtol (colon + 1, NULL, 16);
        }
        fclose (file);
    }
    char path [64];
    snprintf (path, sizeof path, "/proc/%d/fd", (int) pid);
    DIR *dir = opendir (path);
    cr_assert_not_null (dir, "%s: %s", path, strerror (errno));
    size_t count = 0;
    struct dirent *entry;
    while ((entry = readdir (dir))) {
        char link [400], target [128];
        snprintf (link, sizeof link, "%s/%s", path, entry->d_name);
        ssize_t len = readlink (link, target, sizeof target - 1);
        if (len <= 0)
            continue;
        target [len] = 0;
        unsigned long inode = 0;
        if (sscanf (target, "socket:[%lu]", &inode) != 1)
            continue;
        for (size_t index = 0; index < known; index++)
            if (inodes [index] == inode && count < max)
                ports [count++] = inode_ports [index];
    }
    closedir (dir);
    return count;
}

static int
s_port_of (const char *endpoint)
{
    const char *colon = strrchr (endpoint, ':');
    return colon? atoi (colon + 1): -1;
}

//  ---------------------------------------------------------------------
//  Off by default, on when asked

Test (heraldd_metrics, off_by_default)
{
    const char *extra [] = { "--min-free", "0", NULL };
    bt_start_with (extra);
    int ports [8];
    size_t count = s_listening (bt_broker->pid, ports, 8);
    cr_assert_eq (count, 2, "heraldd without --metrics listens on %zu ports, not 2 (api and "
                  "fanout)", count);
    for (size_t index = 0; index < count; index++)
        cr_assert (ports [index] == s_port_of (bt_broker->api)
                   || ports [index] == s_port_of (bt_broker->fanout),
                   "heraldd listens on port %d, neither api nor fanout", ports [index]);
    bu_broker_destroy (&bt_broker);
    //  The same way of counting sees the metrics port when it is on
    int port = s_start_metrics (NULL);
    count = s_listening (bt_broker->pid, ports, 8);
    cr_assert_eq (count, 3, "heraldd --metrics listens on %zu ports, not 3", count);
    bool found = false;
    for (size_t index = 0; index < count; index++)
        found = found || ports [index] == port;
    cr_assert (found, "heraldd --metrics does not listen on %d", port);
}

//  ---------------------------------------------------------------------
//  What /metrics says

Test (heraldd_metrics, matches_status)
{
    int port = s_start_metrics (NULL);
    zsock_t *client = bt_client ();
    //  12 PUBLISH requests of 5 events, each ACKed before the next
    for (uint64_t rid = 1; rid <= 12; rid++) {
        bu_event_t events [5];
        for (size_t index = 0; index < 5; index++)
            bu_event_init (&events [index], "metrics.a", "{\"n\":1}");
        bu_reply_t reply;
        bt_publish (client, rid, events, 5, &reply);
        bu_reply_fini (&reply);
    }
    //  A REPLAY of the 60 events, to its END
    bu_replay_t replay = { .has_credit = true, .credit = 1000 };
    bt_send_replay (client, 50, &replay);
    for (int replies = 0; replies < 100; replies++) {
        bu_reply_t reply;
        bt_recv (client, &reply);
        bool end = reply.type == HERALD_MSG_END;
        bu_reply_fini (&reply);
        if (end)
            break;
    }
    //  The scrape between two STATUS: every key, with its value
    bu_reply_t before, after;
    bt_status (client, 60, &before);
    zclock_sleep (150);                 //  past the endpoint's 100 ms cache of STATUS
    pt_text_t text;
    mt_scrape (port, false, &text);
    bt_status (client, 61, &after);
    s_check_status_keys (&text, &before, &after);
    //  Counters as _total, gauges as they are
    cr_assert_eq (mt_value (&text, "herald_published_total", ""), 60);
    cr_assert_eq (mt_value (&text, "herald_head", ""), 60);
    cr_assert_eq (mt_value (&text, "herald_stream_events_total", ""), 60);
    cr_assert_null (pt_find (&text, "herald_published", ""));
    cr_assert_eq (strcmp (text.families [pt_find (&text, "herald_head", "")->family].type,
                          "gauge"), 0);
    const pt_sample_t *info = pt_find (&text, "herald_node_info", "");
    cr_assert_null (info, "herald_node_info has no labels");
    bool standalone = false;
    for (size_t index = 0; index < text.count; index++)
        if (strcmp (text.samples [index].name, "herald_node_info") == 0)
            standalone = strstr (text.samples [index].labels, "role=\"standalone\"") != NULL;
    cr_assert (standalone, "herald_node_info has no role=\"standalone\"");
    //  The histograms: 12 ACKs, 60 events over the commits
    cr_assert_eq (mt_value (&text, "herald_ack_seconds_count", ""), 12);
    cr_assert_eq (mt_value (&text, "herald_ack_seconds_bucket", "le=\"+Inf\""), 12);
    cr_assert_eq (mt_value (&text, "herald_commit_events_sum", ""), 60);
    uint64_t commits = mt_value (&text, "herald_commit_seconds_count", "");
    cr_assert (commits >= 1 && commits <= 12, "%" PRIu64 " commits for 12 requests", commits);
    cr_assert_eq (mt_value (&text, "herald_commit_events_count", ""), commits);
    //  herald status --format prometheus: the same text, through STATUS
    char *herald = bu_heraldd_path ();
    cr_assert_not_null (herald);
    char *at = strstr (herald, "broker/heraldd");
    cr_assert_not_null (at);
    strcpy (at, "tools/herald");
    char command [1024];
    snprintf (command, sizeof command, "'%s' status --format prometheus --endpoint %s", herald,
              bt_broker->api);
    free (herald);
    FILE *pipe = popen (command, "r");
    cr_assert_not_null (pipe);
    static char output [1 << 20];
    size_t len = fread (output, 1, sizeof output - 1, pipe);
    output [len] = 0;
    cr_assert_eq (pclose (pipe), 0, "%s failed: %s", command, output);
    pt_text_t cli;
    char why [PT_WHY_MAX];
    cr_assert_eq (pt_parse (output, len, false, &cli, why, sizeof why), 0,
                  "herald status --format prometheus: %s", why);
    cr_assert_eq (cli.count, text.count, "herald status printed %zu samples, /metrics %zu",
                  cli.count, text.count);
    for (size_t index = 0; index < text.count; index++) {
        const pt_sample_t *sample = &text.samples [index];
        const pt_sample_t *same = pt_find (&cli, sample->name, sample->labels);
        cr_assert_not_null (same, "%s{%s} is in /metrics, not in herald status", sample->name,
                            sample->labels);
        bool moves = strstr (sample->name, "uptime") || strstr (sample->name, "disk_");
        cr_assert (moves || same->value == sample->value, "%s: %g in /metrics, %g in herald "
                   "status", sample->name, sample->value, same->value);
    }
    pt_text_fini (&cli);
    pt_text_fini (&text);
    bu_reply_fini (&before);
    bu_reply_fini (&after);
}

Test (heraldd_metrics, openmetrics)
{
    int port = s_start_metrics (NULL);
    zsock_t *client = bt_client ();
    bt_publish_many (client, "metrics.om", 3, 1);
    pt_text_t text;
    mt_scrape (port, true, &text);
    cr_assert_eq (mt_value (&text, "herald_published_total", ""), 3);
    //  A counter's family is named without _total, an info family as such
    long published = -1, node = -1;
    for (size_t index = 0; index < text.family_count; index++) {
        if (strcmp (text.families [index].name, "herald_published") == 0)
            published = (long) index;
        if (strcmp (text.families [index].name, "herald_node") == 0)
            node = (long) index;
    }
    cr_assert (published >= 0 && strcmp (text.families [published].type, "counter") == 0);
    cr_assert (node >= 0 && strcmp (text.families [node].type, "info") == 0);
    pt_text_fini (&text);
    //  Without the Accept header: 0.0.4 again
    mt_scrape (port, false, &text);
    pt_text_fini (&text);
}

//  ---------------------------------------------------------------------
//  Bad input

Test (heraldd_metrics, bad_requests)
{
    int port = s_start_metrics (NULL);
    pt_response_t response;
    const char *paths [] = { "/", "/metric", "/metrics/x", "/healthz/", "/READYZ", "/../etc",
                             NULL };
    for (size_t index = 0; paths [index]; index++) {
        mt_get (port, paths [index], NULL, &response);
        cr_assert_eq (response.status, 404, "GET %s: %d", paths [index], response.status);
        pt_response_fini (&response);
    }
    const char *methods [] = { "POST", "PUT", "DELETE", "PATCH", "OPTIONS", NULL };
    for (size_t index = 0; methods [index]; index++) {
        cr_assert_eq (pt_http (port, methods [index], "/metrics", NULL, &response, MT_HTTP_MS), 0);
        cr_assert_eq (response.status, 405, "%s /metrics: %d", methods [index],
                      response.status);
        cr_assert_str_eq (response.allow, "GET, HEAD");
        pt_response_fini (&response);
    }
    //  HEAD: the headers of GET, no body
    cr_assert_eq (pt_http (port, "HEAD", "/metrics", NULL, &response, MT_HTTP_MS), 0);
    cr_assert_eq (response.status, 200);
    cr_assert_eq (response.body_len, 0);
    pt_response_fini (&response);
    //  A query string is not part of the path
    mt_get (port, "/metrics?x=1", NULL, &response);
    cr_assert_eq (response.status, 200);
    pt_response_fini (&response);
    mt_get (port, "/healthz", NULL, &response);
    cr_assert_eq (response.status, 200);
    cr_assert_str_eq (response.body, "ok\n");
    pt_response_fini (&response);
    mt_get (port, "/readyz", NULL, &response);
    cr_assert_eq (response.status, 200, "/readyz: %s", response.body);
    pt_response_fini (&response);
    //  Garbage: answered (or the connection closed), and the server serves on
    const char *garbage [] = { "\r\n\r\nGET\r\n\r\n", "GET\r\n\r\n", "GET /metrics HTTP/9.9\r\n\r\n",
                               "\x01\x02\x03 / HTTP/1.1\r\n\r\n", NULL };
    for (size_t index = 0; garbage [index]; index++) {
        if (pt_http_raw (port, garbage [index], strlen (garbage [index]), &response,
                         MT_HTTP_MS) == 0)
            cr_assert (response.status >= 400, "garbage %zu answered %d", index,
                       response.status);
        pt_response_fini (&response);
    }
    pt_text_t text;
    mt_scrape (port, false, &text);
    pt_text_fini (&text);
    cr_assert_eq (bu_broker_stop (bt_broker, BT_STOP_MS), 0);
    cr_assert_eq (WEXITSTATUS (bt_broker->status), 0);
}

Test (heraldd_metrics, port_in_use)
{
    //  A listener of this test's on the port heraldd is told to use
    int port = bu_free_port ();
    cr_assert_gt (port, 0);
    int listener = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) port) };
    address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    cr_assert_eq (bind (listener, (struct sockaddr *) &address, sizeof address), 0);
    cr_assert_eq (listen (listener, 4), 0);
    char metrics [32];
    snprintf (metrics, sizeof metrics, "127.0.0.1:%d", port);
    const char *extra [] = { "--metrics", metrics, "--min-free", "0", NULL };
    bt_broker = bu_broker_new ("heraldd", extra);
    cr_assert_not_null (bt_broker);
    cr_assert_eq (bu_broker_spawn (bt_broker), 0);
    int rc = bu_broker_wait (bt_broker, BT_START_MS);
    close (listener);
    cr_assert_eq (rc, 0, "heraldd did not exit with its metrics port in use");
    cr_assert (WIFEXITED (bt_broker->status) && WEXITSTATUS (bt_broker->status) == 1,
               "exit status %d, not 1", bt_broker->status);
    char log [4096];
    bu_broker_log (bt_broker, log, sizeof log);
    char want [96];
    snprintf (want, sizeof want, "cannot bind metrics 127.0.0.1:%d: the address is in use",
              port);
    cr_assert (strstr (log, want), "the log does not say '%s':\n%s", want, log);
    struct stat info;
    cr_assert_neq (stat (bt_broker->data_dir, &info), 0, "a data directory was made");
}

Test (heraldd_metrics, config_file_key)
{
    int port = bu_free_port ();
    cr_assert_gt (port, 0);
    bt_broker = bu_broker_new ("heraldd", NULL);
    cr_assert_not_null (bt_broker);
    char *path = tu_path (bt_broker->dir, "heraldd.conf");
    FILE *file = fopen (path, "w");
    cr_assert_not_null (file);
    fprintf (file, "# metrics and health\nmetrics = 127.0.0.1:%d\nready-lag = 5\nmin-free = 0\n",
             port);
    fclose (file);
    //  Its only flag: --config in its own directory
    bt_broker->extra [0] = strdup ("--config");
    bt_broker->extra [1] = path;
    bt_broker->extra [2] = NULL;
    bt_start_with (NULL);
    pt_response_t response;
    mt_get (port, "/readyz", NULL, &response);
    cr_assert_eq (response.status, 200, "%s", response.body);
    pt_response_fini (&response);
}

//  Security on: the endpoint shows the operator's figures (security's
//  counters, the ACL's version), which a STATUS without `admin = status`
//  does not; it needs no key (docs/metrics.md: bind it privately).
Test (heraldd_metrics, security_on)
{
    bt_broker = bu_broker_new ("heraldd", NULL);
    cr_assert_not_null (bt_broker);
    zcert_t *server = zcert_new (), *ops = zcert_new ();
    cr_assert (server && ops);
    char *key = tu_path (bt_broker->dir, "broker.key");
    cr_assert_eq (zcert_save (server, key), 0);
    char *secret = zsys_sprintf ("%s_secret", key);
    chmod (secret, 0600);
    char *acl = tu_path (bt_broker->dir, "acl");
    char *text = zsys_sprintf ("[user ops]\nkey     = %s\nread    = *\nadmin   = status\n",
                               zcert_public_txt (ops));
    cr_assert_eq (tu_write_file (acl, text, strlen (text)), 0);
    chmod (acl, 0600);
    int port = bu_free_port ();
    cr_assert_gt (port, 0);
    char *metrics = zsys_sprintf ("127.0.0.1:%d", port);
    const char *flags [] = { "--curve-secret", secret, "--acl", acl, "--metrics", metrics,
                             "--min-free", "0", NULL };
    for (size_t index = 0; flags [index]; index++)
        bt_broker->extra [index] = strdup (flags [index]);
    zstr_free (&text);
    zstr_free (&secret);
    zstr_free (&metrics);
    free (acl);
    free (key);
    zcert_destroy (&server);
    zcert_destroy (&ops);
    cr_assert_eq (bu_broker_spawn (bt_broker), 0);
    //  A plain client gets no STATUS from it: /readyz says when it serves
    free (mt_wait_ready (port, 200, "ready"));
    pt_text_t scraped;
    mt_scrape (port, false, &scraped);
    cr_assert_eq (mt_value (&scraped, "herald_unauthorized_total", ""), 0);
    cr_assert_eq (mt_value (&scraped, "herald_acl_reloads_total", ""), 0);
    bool version = false;
    for (size_t index = 0; index < scraped.count; index++)
        if (strcmp (scraped.samples [index].name, "herald_node_info") == 0)
            version = strstr (scraped.samples [index].labels, "acl_version=\"") != NULL;
    cr_assert (version, "herald_node_info has no acl_version label");
    pt_text_fini (&scraped);
}

//  ---------------------------------------------------------------------
//  Under load

typedef struct {
    int port;
    volatile bool stop;
    size_t scrapes;
    char failure [PT_WHY_MAX + 256];
    uint64_t first_published, last_published;
} s_scraper_t;

//  Scrape until told to stop; every counter (and histogram count) never
//  below the scrape before.
static void *
s_scraper (void *arg)
{
    s_scraper_t *self = (s_scraper_t *) arg;
    pt_text_t last = { 0 };
    while (!self->stop && !*self->failure && self->scrapes < 100000) {
        pt_response_t response;
        if (pt_http (self->port, "GET", "/metrics", NULL, &response, MT_HTTP_MS) != 0
        ||  response.status != 200) {
            snprintf (self->failure, sizeof self->failure, "scrape %zu failed (%d)",
                      self->scrapes, response.status);
            pt_response_fini (&response);
            break;
        }
        pt_text_t text;
        char why [PT_WHY_MAX];
        if (pt_parse (response.body, response.body_len, false, &text, why, sizeof why) != 0) {
            snprintf (self->failure, sizeof self->failure, "scrape %zu: %s", self->scrapes,
                      why);
            pt_text_fini (&text);
            pt_response_fini (&response);
            break;
        }
        pt_response_fini (&response);
        for (size_t index = 0; index < last.count && !*self->failure; index++) {
            const pt_sample_t *before = &last.samples [index];
            const char *type = last.families [before->family].type;
            if (strcmp (type, "counter") != 0 && strcmp (type, "histogram") != 0)
                continue;
            const pt_sample_t *now = pt_find (&text, before->name, before->labels);
            if (!now || now->value < before->value)
                snprintf (self->failure, sizeof self->failure, "scrape %zu: %s{%s} went from "
                          "%g to %g", self->scrapes, before->name, before->labels,
                          before->value, now? now->value: -1.0);
        }
        const pt_sample_t *published = pt_find (&text, "herald_published_total", "");
        if (published) {
            if (self->scrapes == 0)
                self->first_published = published->integer;
            self->last_published = published->integer;
        }
        pt_text_fini (&last);
        last = text;
        self->scrapes++;
    }
    pt_text_fini (&last);
    return NULL;
}

Test (heraldd_metrics, scrape_under_load)
{
    int port = s_start_metrics (NULL);
    zsock_t *client = bt_client ();
    s_scraper_t scraper = { .port = port };
    pthread_t thread;
    cr_assert_eq (pthread_create (&thread, NULL, s_scraper, &scraper), 0);
    //  Publishes go on while the scraper runs: at least 400 requests and
    //  until it has scraped 20 times (a bound of 50,000 requests)
    uint64_t rid = 0;
    while ((rid < 400 || scraper.scrapes < 20) && rid < 50000 && !*scraper.failure) {
        rid++;
        bu_event_t events [10];
        for (size_t index = 0; index < 10; index++)
            bu_event_init (&events [index], "metrics.load", "{\"n\":2}");
        bu_reply_t reply;
        bt_publish (client, rid, events, 10, &reply);
        bu_reply_fini (&reply);
    }
    size_t scrapes_during = scraper.scrapes;
    scraper.stop = true;
    pthread_join (thread, NULL);
    cr_assert_str_empty (scraper.failure, "%s", scraper.failure);
    cr_log_info ("%" PRIu64 " PUBLISH requests ACKed while %zu scrapes were made", rid,
                 scrapes_during);
    cr_assert_geq (scrapes_during, 20, "the scraper made %zu scrapes in %" PRIu64 " publishes",
                   scrapes_during, rid);
    cr_assert_geq (rid, 400);
    //  Every event counted once the load is over
    zclock_sleep (150);
    pt_text_t text;
    mt_scrape (port, false, &text);
    cr_assert_eq (mt_value (&text, "herald_published_total", ""), rid * 10);
    cr_assert_eq (mt_value (&text, "herald_ack_seconds_count", ""), rid);
    cr_assert_eq (mt_value (&text, "herald_commit_events_sum", ""), rid * 10);
    pt_text_fini (&text);
}

//  ---------------------------------------------------------------------
//  /readyz and the free-space guard (a tmpfs; needs root)

static char *s_mnt_dir, *s_mount, *s_filler;
static bool s_mounted;

static void
s_fini_mount (void)
{
    bt_teardown ();
    if (s_filler)
        unlink (s_filler);
    if (s_mounted)
        umount2 (s_mount, MNT_DETACH);
    if (s_mount)
        rmdir (s_mount);
    if (s_mnt_dir)
        rmdir (s_mnt_dir);
    free (s_filler);
    free (s_mount);
    free (s_mnt_dir);
    s_filler = s_mount = s_mnt_dir = NULL;
    s_mounted = false;
}

static void
s_skip (const char *why)
{
    fprintf (stderr, "test_heraldd_metrics: SKIPPED: %s\n", why);
    cr_skip_test ("%s", why);
}

static uint64_t
s_free_on_mount (void)
{
    struct statvfs info;
    cr_assert_eq (statvfs (s_mount, &info), 0);
    return (uint64_t) info.f_bavail * info.f_frsize;
}

//  A filler file leaving about leave bytes free on the mount.
static void
s_fill (uint64_t leave)
{
    if (!s_filler)
        s_filler = tu_path (s_mount, "filler");
    int fd = open (s_filler, O_CREAT | O_WRONLY | O_APPEND, 0600);
    cr_assert_geq (fd, 0);
    static char zeros [1 << 20];
    for (int round = 0; round < 8; round++) {
        uint64_t free_now = s_free_on_mount ();
        if (free_now <= leave + 65536)
            break;
        uint64_t size = free_now - leave;
        while (size > 0) {
            size_t chunk = size < sizeof zeros? (size_t) size: sizeof zeros;
            ssize_t wrote = write (fd, zeros, chunk);
            cr_assert_gt (wrote, 0, "filler: %s", strerror (errno));
            size -= (uint64_t) wrote;
        }
        fsync (fd);
    }
    close (fd);
}

Test (heraldd_metrics, readyz_disk_guard, .init = bt_setup, .fini = s_fini_mount)
{
    if (unshare (CLONE_NEWNS) != 0 || mount (NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        s_skip ("cannot make a mount namespace (mounting a small file system needs root)");
    s_mnt_dir = tu_tmpdir_new ("metrics_disk");
    cr_assert_not_null (s_mnt_dir);
    s_mount = tu_path (s_mnt_dir, "mnt");
    cr_assert_eq (mkdir (s_mount, 0755), 0);
    if (mount ("tmpfs", s_mount, "tmpfs", 0, "size=64m") != 0)
        s_skip ("cannot mount a 64 MiB tmpfs");
    s_mounted = true;
    int port = bu_free_port ();
    cr_assert_gt (port, 0);
    char metrics [32];
    snprintf (metrics, sizeof metrics, "127.0.0.1:%d", port);
    const char *extra [] = { "--metrics", metrics, "--min-free", "16MiB", "--write-buffer-mb",
                             "4", NULL };
    bt_broker = bu_broker_new ("heraldd", extra);
    cr_assert_not_null (bt_broker);
    free (bt_broker->data_dir);
    bt_broker->data_dir = tu_path (s_mount, "data");
    bt_start_with (NULL);
    free (mt_wait_ready (port, 200, "ready"));
    //  Below the line: not ready, saying why, and /metrics says disk_low
    s_fill (8 * MIB);
    free (mt_wait_ready (port, 503, "disk space low"));
    pt_text_t text;
    mt_scrape (port, false, &text);
    cr_assert_eq (mt_value (&text, "herald_disk_low", ""), 1);
    pt_text_fini (&text);
    //  Space back: ready again, without a restart
    cr_assert_eq (unlink (s_filler), 0);
    free (mt_wait_ready (port, 200, "ready"));
    mt_scrape (port, false, &text);
    cr_assert_eq (mt_value (&text, "herald_disk_low", ""), 0);
    pt_text_fini (&text);
}
