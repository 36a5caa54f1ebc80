/*  =========================================================================
    test_heraldd_cluster_harness - the cluster fault harness checked on its own

    tests/test_heraldd_cluster_faults.c proves the cluster's invariant only
    if its tools work: the proxy must really cut a link, and each log check
    must really catch its violation.  Here, without any heraldd: the
    proxy's modes on plain sockets, and every check on logs made by hand.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clusterlog.h"
#include "testutil.h"

//  Read what comes on fd within timeout_ms: bytes read, 0 on EOF, -1 on
//  an error, -2 when nothing came.
static ssize_t
s_read_within (int fd, char *buffer, size_t size, int timeout_ms)
{
    struct pollfd item = { .fd = fd, .events = POLLIN };
    if (poll (&item, 1, timeout_ms) <= 0)
        return -2;
    return read (fd, buffer, size);
}

static int
s_connect (const char *address)
{
    int port = atoi (strrchr (address, ':') + 1);
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) port) };
    to.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    if (fd >= 0 && connect (fd, (struct sockaddr *) &to, sizeof to) != 0) {
        close (fd);
        fd = -1;
    }
    return fd;
}

Test (cluster_harness, raftproxy_modes)
{
    int port = bu_free_port ();
    cr_assert_gt (port, 0);
    int listener = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) port) };
    address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    cr_assert_eq (bind (listener, (struct sockaddr *) &address, sizeof address), 0);
    cr_assert_eq (listen (listener, 4), 0);
    char target [32];
    snprintf (target, sizeof target, "127.0.0.1:%d", port);
    rp_proxy_t *proxy = rp_proxy_new (target);
    cr_assert_not_null (proxy);

    //  pass: both ways
    int client = s_connect (rp_proxy_address (proxy));
    cr_assert_geq (client, 0);
    int server = accept (listener, NULL, NULL);
    cr_assert_geq (server, 0);
    char buffer [64];
    cr_assert_eq (write (client, "hello", 5), 5);
    cr_assert_eq (s_read_within (server, buffer, sizeof buffer, 2000), 5);
    cr_assert_eq (write (server, "back", 4), 4);
    cr_assert_eq (s_read_within (client, buffer, sizeof buffer, 2000), 4);

    //  stall: nothing passes, nothing breaks; pass again delivers it
    cr_assert_eq (rp_proxy_set_mode (proxy, RP_STALL), 0);
    cr_assert_eq (write (client, "held", 4), 4);
    cr_assert_eq (s_read_within (server, buffer, sizeof buffer, 300), -2);
    cr_assert_eq (rp_proxy_set_mode (proxy, RP_PASS), 0);
    cr_assert_eq (s_read_within (server, buffer, sizeof buffer, 2000), 4);
    cr_assert_eq (memcmp (buffer, "held", 4), 0);

    //  drop: the connection is closed on both sides, a new one too
    cr_assert_eq (rp_proxy_set_mode (proxy, RP_DROP), 0);
    cr_assert_leq (s_read_within (client, buffer, sizeof buffer, 2000), 0);
    cr_assert_leq (s_read_within (server, buffer, sizeof buffer, 2000), 0);
    close (client);
    close (server);
    client = s_connect (rp_proxy_address (proxy));
    if (client >= 0) {
        cr_assert_leq (s_read_within (client, buffer, sizeof buffer, 2000), 0);
        close (client);
    }
    //  pass again: a new connection works
    cr_assert_eq (rp_proxy_set_mode (proxy, RP_PASS), 0);
    client = s_connect (rp_proxy_address (proxy));
    cr_assert_geq (client, 0);
    server = accept (listener, NULL, NULL);
    cr_assert_geq (server, 0);
    cr_assert_eq (write (client, "again", 5), 5);
    cr_assert_eq (s_read_within (server, buffer, sizeof buffer, 2000), 5);
    //  The counter moves just after the bytes: poll it, bounded
    uint64_t accepted = 0, bytes = 0;
    for (int tries = 0; tries < 100 && bytes < 5 + 4 + 4 + 5; tries++) {
        rp_proxy_stats (proxy, &accepted, &bytes);
        zclock_sleep (10);
    }
    cr_assert_eq (accepted, 3);
    cr_assert_eq (bytes, 5 + 4 + 4 + 5);
    close (client);
    close (server);
    close (listener);
    rp_proxy_destroy (&proxy);
}

//  A log of count entries on topics "a" and "b" alternating, made by hand.
static void
s_fake_log (cu_log_t *log, size_t count, uint8_t ids [][HERALD_ID_BYTES])
{
    memset (log, 0, sizeof *log);
    log->entries = calloc (count, sizeof *log->entries);
    cr_assert_not_null (log->entries);
    log->count = log->size = count;
    log->head = count;
    for (size_t index = 0; index < count; index++) {
        cu_entry_t *entry = &log->entries [index];
        entry->seq = index + 1;
        entry->ver = index / 2 + 1;
        entry->ts = 1000 + index;
        tu_random_id (ids [index]);
        memcpy (entry->id, ids [index], HERALD_ID_BYTES);
        entry->topic = strdup (index % 2? "b": "a");
        entry->topic_len = 1;
        entry->bytes = malloc (8);
        entry->len = 8;
        tu_put_be64 (entry->bytes, entry->seq);
    }
}

Test (cluster_harness, checks_catch_violations)
{
    uint8_t ids [6][HERALD_ID_BYTES];
    cu_log_t good, bad;
    char why [CU_WHY_MAX];
    s_fake_log (&good, 6, ids);
    cu_idset_t published;
    cr_assert_eq (cu_idset_init (&published, 6), 0);
    for (size_t index = 0; index < 6; index++)
        cu_idset_add (&published, ids [index]);
    cr_assert_eq (cu_check_log_shape (&good, &published, NULL, why, sizeof why), 0, "%s", why);

    //  Each violation alone, in a copy of the good log
    struct { const char *what; int field; } cases [] = {
        { "seq gap", 0 }, { "ver gap", 1 }, { "ts back", 2 }, { "id twice", 3 },
        { "unknown id", 4 }, { "bytes differ", 5 }, { "shorter", 6 } };
    for (size_t at = 0; at < sizeof cases / sizeof cases [0]; at++) {
        uint8_t copy_ids [6][HERALD_ID_BYTES];
        s_fake_log (&bad, 6, copy_ids);
        for (size_t index = 0; index < 6; index++) {
            memcpy (bad.entries [index].id, ids [index], HERALD_ID_BYTES);
            memcpy (bad.entries [index].bytes, good.entries [index].bytes, 8);
        }
        switch (cases [at].field) {
            case 0: bad.entries [3].seq = 5; break;
            case 1: bad.entries [4].ver = 4; break;
            case 2: bad.entries [4].ts = 1000; break;
            case 3: memcpy (bad.entries [5].id, ids [1], HERALD_ID_BYTES); break;
            case 4: tu_random_id (bad.entries [2].id); break;
            case 5: bad.entries [2].bytes [0] ^= 1; break;
            case 6: bad.count = 5; bad.head = 5; break;
        }
        int shape = cu_check_log_shape (&bad, &published, NULL, why, sizeof why);
        int same = cu_compare_logs (&good, &bad, why, sizeof why);
        cr_assert (shape != 0 || same != 0, "%s not caught", cases [at].what);
        if (cases [at].field <= 4)
            cr_assert_neq (shape, 0, "%s passed the shape check", cases [at].what);
        cu_log_fini (&bad);
    }
    //  An id nobody was told was ACKed nor refused is fine when its
    //  outcome is unknown (maybe), and only then
    uint8_t other_ids [6][HERALD_ID_BYTES];
    s_fake_log (&bad, 6, other_ids);
    for (size_t index = 0; index < 6; index++)
        if (index != 2)
            memcpy (bad.entries [index].id, ids [index], HERALD_ID_BYTES);
    cu_idset_t maybe;
    cr_assert_eq (cu_idset_init (&maybe, 6), 0);
    cr_assert_neq (cu_check_log_shape (&bad, &published, &maybe, why, sizeof why), 0);
    cu_idset_add (&maybe, other_ids [2]);
    cr_assert_eq (cu_check_log_shape (&bad, &published, &maybe, why, sizeof why), 0, "%s", why);
    cu_log_fini (&bad);

    //  ACKed events: at their seq, or caught
    cu_acked_t acked [2] = { { .seq = 2, .ver = 1 }, { .seq = 7, .ver = 4 } };
    memcpy (acked [0].id, good.entries [1].id, HERALD_ID_BYTES);
    cr_assert_eq (cu_check_acked (&good, acked, 1, why, sizeof why), 0, "%s", why);
    acked [0].seq = 3;
    cr_assert_neq (cu_check_acked (&good, acked, 1, why, sizeof why), 0);
    cr_assert_neq (cu_check_acked (&good, acked + 1, 1, why, sizeof why), 0);

    //  Terms: two nodes exact in one term caught; inexact ones ignored
    cu_term_ack_t terms [4] = { { 0, 3, 3 }, { 1, 4, 4 }, { 1, 3, 4 }, { 0, 3, 3 } };
    size_t exact = 0;
    cr_assert_eq (cu_check_terms (terms, 4, &exact, why, sizeof why), 0, "%s", why);
    cr_assert_eq (exact, 3);
    terms [2] = (cu_term_ack_t) { 1, 3, 3 };
    cr_assert_neq (cu_check_terms (terms, 4, &exact, why, sizeof why), 0);
    cu_idset_fini (&maybe);
    cu_idset_fini (&published);
    cu_log_fini (&good);
}

