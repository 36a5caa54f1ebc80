/*  =========================================================================
    taprelay - a TCP relay that keeps every byte it passes to the client

    One thread polls the listener and up to PAIRS_MAX connection pairs
    (10 ms at most per poll); bytes from the broker side are appended to
    one buffer (under a lock, read by the test) before they are written
    to the client.
    =========================================================================
*/

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "taprelay.h"

#define PAIRS_MAX 32

struct _taprelay_t {
    int listener;
    int port;
    int target;
    atomic_bool stop;
    pthread_t thread;
    int pairs [PAIRS_MAX][2];           //  accepted (client), outbound (broker); -1 free
    pthread_mutex_t lock;
    uint8_t *kept;
    size_t kept_len;
    uint64_t bytes;
    size_t connections;
};

static void
s_close_pair (taprelay_t *self, int index)
{
    for (int side = 0; side < 2; side++)
        if (self->pairs [index][side] >= 0)
            close (self->pairs [index][side]);
    self->pairs [index][0] = self->pairs [index][1] = -1;
}

static int
s_connect (int port)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons (port) };
    address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    if (fd >= 0 && connect (fd, (struct sockaddr *) &address, sizeof (address)) != 0) {
        close (fd);
        fd = -1;
    }
    return fd;
}

static bool
s_write_all (int fd, const uint8_t *bytes, ssize_t len)
{
    while (len > 0) {
        ssize_t wrote = send (fd, bytes, (size_t) len, MSG_NOSIGNAL);
        if (wrote < 0 && errno == EINTR)
            continue;
        if (wrote <= 0)
            return false;
        bytes += wrote;
        len -= wrote;
    }
    return true;
}

static void
s_keep (taprelay_t *self, const uint8_t *bytes, size_t len)
{
    pthread_mutex_lock (&self->lock);
    self->bytes += len;
    size_t room = TAPRELAY_KEEP - self->kept_len;
    size_t take = len < room? len: room;
    memcpy (self->kept + self->kept_len, bytes, take);
    self->kept_len += take;
    pthread_mutex_unlock (&self->lock);
}

static void *
s_thread (void *args)
{
    taprelay_t *self = (taprelay_t *) args;
    static __thread uint8_t buffer [65536];
    while (!atomic_load (&self->stop)) {
        struct pollfd fds [1 + 2 * PAIRS_MAX];
        int map [1 + 2 * PAIRS_MAX];
        int count = 0;
        fds [count].fd = self->listener;
        fds [count].events = POLLIN;
        map [count++] = -1;
        for (int index = 0; index < PAIRS_MAX; index++)
            for (int side = 0; side < 2 && self->pairs [index][0] >= 0; side++) {
                fds [count].fd = self->pairs [index][side];
                fds [count].events = POLLIN;
                map [count++] = index * 2 + side;
            }
        if (poll (fds, (nfds_t) count, 10) <= 0)
            continue;
        for (int at = 0; at < count; at++) {
            if (!(fds [at].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            if (map [at] < 0) {
                int accepted = accept (self->listener, NULL, NULL);
                if (accepted < 0)
                    continue;
                int outbound = s_connect (self->target);
                int slot = -1;
                for (int index = 0; index < PAIRS_MAX && slot < 0; index++)
                    if (self->pairs [index][0] < 0)
                        slot = index;
                if (outbound < 0 || slot < 0) {
                    close (accepted);
                    if (outbound >= 0)
                        close (outbound);
                    continue;
                }
                self->pairs [slot][0] = accepted;
                self->pairs [slot][1] = outbound;
                pthread_mutex_lock (&self->lock);
                self->connections++;
                pthread_mutex_unlock (&self->lock);
                continue;
            }
            int index = map [at] / 2, side = map [at] % 2;
            if (self->pairs [index][side] < 0)
                continue;               //  closed earlier in this round
            ssize_t got = recv (self->pairs [index][side], buffer, sizeof (buffer), 0);
            if (got > 0 && side == 1)
                s_keep (self, buffer, (size_t) got);
            if (got <= 0 || !s_write_all (self->pairs [index][1 - side], buffer, got))
                s_close_pair (self, index);
        }
    }
    for (int index = 0; index < PAIRS_MAX; index++)
        s_close_pair (self, index);
    return NULL;
}

taprelay_t *
taprelay_new (int target)
{
    taprelay_t *self = (taprelay_t *) calloc (1, sizeof (taprelay_t));
    if (!self)
        return NULL;
    self->kept = (uint8_t *) malloc (TAPRELAY_KEEP);
    self->target = target;
    pthread_mutex_init (&self->lock, NULL);
    for (int index = 0; index < PAIRS_MAX; index++)
        self->pairs [index][0] = self->pairs [index][1] = -1;
    self->listener = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = 0 };
    address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    socklen_t len = sizeof (address);
    if (!self->kept || self->listener < 0
    ||  bind (self->listener, (struct sockaddr *) &address, sizeof (address)) != 0
    ||  listen (self->listener, 16) != 0
    ||  getsockname (self->listener, (struct sockaddr *) &address, &len) != 0
    ||  pthread_create (&self->thread, NULL, s_thread, self) != 0) {
        if (self->listener >= 0)
            close (self->listener);
        free (self->kept);
        free (self);
        return NULL;
    }
    self->port = ntohs (address.sin_port);
    return self;
}

void
taprelay_destroy (taprelay_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    taprelay_t *self = *self_p;
    atomic_store (&self->stop, true);
    pthread_join (self->thread, NULL);
    close (self->listener);
    pthread_mutex_destroy (&self->lock);
    free (self->kept);
    free (self);
    *self_p = NULL;
}

int
taprelay_port (taprelay_t *self)
{
    return self->port;
}

uint64_t
taprelay_bytes (taprelay_t *self)
{
    pthread_mutex_lock (&self->lock);
    uint64_t bytes = self->bytes;
    pthread_mutex_unlock (&self->lock);
    return bytes;
}

size_t
taprelay_connections (taprelay_t *self)
{
    pthread_mutex_lock (&self->lock);
    size_t connections = self->connections;
    pthread_mutex_unlock (&self->lock);
    return connections;
}

bool
taprelay_contains (taprelay_t *self, uint64_t from, const void *marker, size_t len)
{
    pthread_mutex_lock (&self->lock);
    bool found = from < self->kept_len
              && memmem (self->kept + from, self->kept_len - (size_t) from, marker, len) != NULL;
    pthread_mutex_unlock (&self->lock);
    return found;
}
