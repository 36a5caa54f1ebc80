/*  =========================================================================
    tcpproxy - a TCP forwarder a test can cut, for network partitions

    One thread polls the listening socket, a wake-up pipe and up to
    PAIRS_MAX connection pairs; bytes read on one side are written to the
    other (blocking: loopback, small messages).  Bounded: a poll waits at
    most 10 ms, and tcpproxy_cut returns once the thread has acted on it
    (no byte is forwarded after a cut returns).
    =========================================================================
*/

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
#include "tcpproxy.h"

#define PAIRS_MAX 16

struct _tcpproxy_t {
    int listener;
    int port;
    int target;
    atomic_bool cut;
    atomic_bool stop;
    atomic_int asked;                   //  cut/heal requests made
    atomic_int done;                    //  and seen by the thread
    pthread_t thread;
    int pairs [PAIRS_MAX][2];           //  accepted, outbound; -1 when free
};

static void
s_close_pair (tcpproxy_t *self, int index)
{
    if (self->pairs [index][0] >= 0)
        close (self->pairs [index][0]);
    if (self->pairs [index][1] >= 0)
        close (self->pairs [index][1]);
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
s_write_all (int fd, const char *bytes, ssize_t len)
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

static void *
s_thread (void *args)
{
    tcpproxy_t *self = (tcpproxy_t *) args;
    char buffer [65536];
    while (!atomic_load (&self->stop)) {
        int asked = atomic_load (&self->asked);
        struct pollfd fds [1 + 2 * PAIRS_MAX];
        int map [1 + 2 * PAIRS_MAX];
        int count = 0;
        fds [count].fd = self->listener;
        fds [count].events = POLLIN;
        map [count++] = -1;
        bool cut = atomic_load (&self->cut);
        for (int index = 0; index < PAIRS_MAX; index++) {
            if (self->pairs [index][0] < 0)
                continue;
            if (cut) {
                s_close_pair (self, index);
                continue;
            }
            for (int side = 0; side < 2; side++) {
                fds [count].fd = self->pairs [index][side];
                fds [count].events = POLLIN;
                map [count++] = index * 2 + side;
            }
        }
        atomic_store (&self->done, asked);
        if (poll (fds, (nfds_t) count, 10) <= 0)
            continue;
        for (int at = 0; at < count; at++) {
            if (!(fds [at].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            if (map [at] < 0) {
                int accepted = accept (self->listener, NULL, NULL);
                if (accepted < 0)
                    continue;
                int outbound = cut? -1: s_connect (self->target);
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
                continue;
            }
            int index = map [at] / 2, side = map [at] % 2;
            if (self->pairs [index][side] < 0)
                continue;               //  closed earlier in this round
            ssize_t got = recv (self->pairs [index][side], buffer, sizeof (buffer), 0);
            if (got <= 0 || !s_write_all (self->pairs [index][1 - side], buffer, got))
                s_close_pair (self, index);
        }
    }
    for (int index = 0; index < PAIRS_MAX; index++)
        s_close_pair (self, index);
    return NULL;
}

tcpproxy_t *
tcpproxy_new (int target)
{
    tcpproxy_t *self = (tcpproxy_t *) calloc (1, sizeof (tcpproxy_t));
    self->target = target;
    for (int index = 0; index < PAIRS_MAX; index++)
        self->pairs [index][0] = self->pairs [index][1] = -1;
    self->listener = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = 0 };
    address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    socklen_t len = sizeof (address);
    if (self->listener < 0
    ||  bind (self->listener, (struct sockaddr *) &address, sizeof (address)) != 0
    ||  listen (self->listener, 16) != 0
    ||  getsockname (self->listener, (struct sockaddr *) &address, &len) != 0) {
        if (self->listener >= 0)
            close (self->listener);
        free (self);
        return NULL;
    }
    self->port = ntohs (address.sin_port);
    if (pthread_create (&self->thread, NULL, s_thread, self) != 0) {
        close (self->listener);
        free (self);
        return NULL;
    }
    return self;
}

void
tcpproxy_destroy (tcpproxy_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    tcpproxy_t *self = *self_p;
    atomic_store (&self->stop, true);
    pthread_join (self->thread, NULL);
    close (self->listener);
    free (self);
    *self_p = NULL;
}

int
tcpproxy_port (tcpproxy_t *self)
{
    return self->port;
}

void
tcpproxy_cut (tcpproxy_t *self, bool cut)
{
    atomic_store (&self->cut, cut);
    int asked = atomic_fetch_add (&self->asked, 1) + 1;
    //  Return once the thread has acted on it (a poll round is <= 10 ms)
    for (int wait = 0; wait < 2000 && atomic_load (&self->done) < asked; wait++)
        usleep (1000);
}
