/*  =========================================================================
    raftproxy - a userspace TCP proxy for one directed Raft link (i -> j)

    See raftproxy.h.  One thread per proxy polls its listening socket, a
    wake-up eventfd and each connection pair; a pair is the accepted
    socket (from node i) and the one the proxy opened to node j, with one
    buffer per direction so that a slow side only pauses its direction.
    =========================================================================
*/

#include "raftproxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RP_PAIRS_MAX    16          //  libraft keeps one connection per link
#define RP_BUFFER       65536

//  One direction of a pair: bytes read from `from` not yet written to `to`.
typedef struct {
    uint8_t data [RP_BUFFER];
    size_t start;
    size_t end;
} s_pipe_t;

typedef struct {
    int fd [2];                     //  [0] accepted (node i), [1] to target (node j)
    s_pipe_t pipe [2];              //  [0]: fd[0] -> fd[1], [1]: fd[1] -> fd[0]
} s_pair_t;

struct _rp_proxy_t {
    struct sockaddr_in target;
    char address [32];
    int listener;
    int wake;                       //  eventfd: a mode change or the stop
    pthread_t thread;
    bool started;
    atomic_int mode;                //  wanted
    atomic_uint_fast64_t wanted;    //  generation of the wanted mode
    atomic_uint_fast64_t applied;   //  generation the thread has applied
    atomic_bool stop;
    atomic_uint_fast64_t accepted;
    atomic_uint_fast64_t bytes;
    s_pair_t *pairs [RP_PAIRS_MAX]; //  the thread's alone
};

const char *
rp_mode_name (rp_mode_t mode)
{
    return mode == RP_PASS? "pass": mode == RP_DROP? "drop": "stall";
}

static void
s_pair_close (rp_proxy_t *self, size_t index)
{
    s_pair_t *pair = self->pairs [index];
    if (!pair)
        return;
    for (int side = 0; side < 2; side++)
        if (pair->fd [side] >= 0)
            close (pair->fd [side]);
    free (pair);
    self->pairs [index] = NULL;
}

static void
s_set_nonblocking (int fd)
{
    int flags = fcntl (fd, F_GETFL, 0);
    if (flags >= 0)
        fcntl (fd, F_SETFL, flags | O_NONBLOCK);
    int one = 1;
    setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

//  Accept one connection; in drop mode close it at once (the link is
//  down), else connect it to the target (a refused connect closes it too:
//  node j is down, which node i must see the same way).
static void
s_accept (rp_proxy_t *self, rp_mode_t mode)
{
    int fd = accept4 (self->listener, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return;
    atomic_fetch_add (&self->accepted, 1);
    if (mode == RP_DROP) {
        close (fd);
        return;
    }
    size_t slot = 0;
    while (slot < RP_PAIRS_MAX && self->pairs [slot])
        slot++;
    int out = slot < RP_PAIRS_MAX? socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0): -1;
    //  A blocking connect on loopback: it succeeds or is refused at once
    if (out < 0 || connect (out, (struct sockaddr *) &self->target, sizeof self->target) != 0) {
        if (out >= 0)
            close (out);
        close (fd);
        return;
    }
    s_pair_t *pair = calloc (1, sizeof *pair);
    if (!pair) {
        close (out);
        close (fd);
        return;
    }
    s_set_nonblocking (fd);
    s_set_nonblocking (out);
    pair->fd [0] = fd;
    pair->fd [1] = out;
    self->pairs [slot] = pair;
}

//  Move bytes of pipe `dir` of a pair: read what fits, write what the
//  other side takes.  Returns false when the pair must close.
static bool
s_pump (rp_proxy_t *self, s_pair_t *pair, int dir, short in_events, short out_events)
{
    s_pipe_t *pipe = &pair->pipe [dir];
    int from = pair->fd [dir];
    int to = pair->fd [1 - dir];
    if ((in_events & (POLLIN | POLLHUP | POLLERR)) && pipe->end == pipe->start) {
        ssize_t got = read (from, pipe->data, RP_BUFFER);
        if (got == 0)
            return false;
        if (got < 0 && errno != EAGAIN && errno != EINTR)
            return false;
        if (got > 0) {
            pipe->start = 0;
            pipe->end = (size_t) got;
        }
    }
    (void) out_events;
    if (pipe->end > pipe->start) {
        ssize_t put = send (to, pipe->data + pipe->start, pipe->end - pipe->start,
                            MSG_NOSIGNAL);
        if (put < 0 && errno != EAGAIN && errno != EINTR)
            return false;
        if (put > 0) {
            pipe->start += (size_t) put;
            atomic_fetch_add (&self->bytes, (uint64_t) put);
        }
        if (pipe->start == pipe->end)
            pipe->start = pipe->end = 0;
    }
    return true;
}

static void *
s_proxy_thread (void *arg)
{
    rp_proxy_t *self = arg;
    while (!atomic_load (&self->stop)) {
        //  Apply the wanted mode first, then say so
        rp_mode_t mode = (rp_mode_t) atomic_load (&self->mode);
        uint64_t generation = atomic_load (&self->wanted);
        if (mode == RP_DROP)
            for (size_t index = 0; index < RP_PAIRS_MAX; index++)
                s_pair_close (self, index);
        atomic_store (&self->applied, generation);

        struct pollfd fds [2 + 2 * RP_PAIRS_MAX];
        size_t map [2 + 2 * RP_PAIRS_MAX];
        nfds_t count = 0;
        fds [count++] = (struct pollfd) { .fd = self->wake, .events = POLLIN };
        fds [count++] = (struct pollfd) { .fd = self->listener, .events = POLLIN };
        if (mode == RP_PASS)
            for (size_t index = 0; index < RP_PAIRS_MAX; index++) {
                s_pair_t *pair = self->pairs [index];
                if (!pair)
                    continue;
                for (int side = 0; side < 2; side++) {
                    //  Read from a side when its pipe is empty; write to it
                    //  when the other side's pipe holds bytes
                    short events = 0;
                    if (pair->pipe [side].end == pair->pipe [side].start)
                        events |= POLLIN;
                    if (pair->pipe [1 - side].end > pair->pipe [1 - side].start)
                        events |= POLLOUT;
                    map [count] = index * 2 + (size_t) side;
                    fds [count++] = (struct pollfd) { .fd = pair->fd [side], .events = events };
                }
            }
        int rc = poll (fds, count, 200);
        if (rc < 0 && errno != EINTR)
            break;
        if (rc <= 0)
            continue;
        if (fds [0].revents & POLLIN) {
            uint64_t value;
            if (read (self->wake, &value, sizeof value) < 0) {
                //  Nothing to do: the loop reads the mode anyway
            }
            continue;               //  a new mode: apply it before anything else
        }
        if (fds [1].revents & POLLIN)
            s_accept (self, mode);
        for (nfds_t at = 2; at + 1 < count; at += 2) {
            size_t index = map [at] / 2;
            s_pair_t *pair = self->pairs [index];
            if (!pair)
                continue;
            short events0 = fds [at].revents;
            short events1 = fds [at + 1].revents;
            if (!s_pump (self, pair, 0, events0, events1)
            ||  !s_pump (self, pair, 1, events1, events0))
                s_pair_close (self, index);
        }
    }
    for (size_t index = 0; index < RP_PAIRS_MAX; index++)
        s_pair_close (self, index);
    return NULL;
}

rp_proxy_t *
rp_proxy_new (const char *target)
{
    char host [64];
    int port = 0;
    const char *colon = target? strrchr (target, ':'): NULL;
    if (!colon || (size_t) (colon - target) >= sizeof host)
        return NULL;
    memcpy (host, target, (size_t) (colon - target));
    host [colon - target] = 0;
    port = atoi (colon + 1);
    if (port <= 0 || port > 65535)
        return NULL;

    rp_proxy_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->listener = -1;
    self->wake = -1;
    self->target.sin_family = AF_INET;
    self->target.sin_port = htons ((uint16_t) port);
    if (inet_pton (AF_INET, host, &self->target.sin_addr) != 1)
        goto fail;
    self->listener = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    self->wake = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (self->listener < 0 || self->wake < 0)
        goto fail;
    int one = 1;
    setsockopt (self->listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in address;
    memset (&address, 0, sizeof address);
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    socklen_t len = sizeof address;
    if (bind (self->listener, (struct sockaddr *) &address, sizeof address) != 0
    ||  listen (self->listener, 16) != 0
    ||  getsockname (self->listener, (struct sockaddr *) &address, &len) != 0)
        goto fail;
    snprintf (self->address, sizeof self->address, "127.0.0.1:%d", ntohs (address.sin_port));
    atomic_store (&self->mode, RP_PASS);
    if (pthread_create (&self->thread, NULL, s_proxy_thread, self) != 0)
        goto fail;
    self->started = true;
    return self;
fail:
    rp_proxy_destroy (&self);
    return NULL;
}

void
rp_proxy_destroy (rp_proxy_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    rp_proxy_t *self = *self_p;
    if (self->started) {
        atomic_store (&self->stop, true);
        uint64_t one = 1;
        if (write (self->wake, &one, sizeof one) < 0) {
            //  The thread polls with a timeout and sees stop anyway
        }
        pthread_join (self->thread, NULL);
    }
    if (self->listener >= 0)
        close (self->listener);
    if (self->wake >= 0)
        close (self->wake);
    free (self);
    *self_p = NULL;
}

const char *
rp_proxy_address (rp_proxy_t *self)
{
    return self->address;
}

int
rp_proxy_set_mode (rp_proxy_t *self, rp_mode_t mode)
{
    atomic_store (&self->mode, mode);
    uint64_t generation = atomic_fetch_add (&self->wanted, 1) + 1;
    uint64_t one = 1;
    if (write (self->wake, &one, sizeof one) < 0)
        return -1;
    //  Bounded: the thread applies a mode within one poll round
    for (int waited = 0; waited < 1000; waited++) {
        if (atomic_load (&self->applied) >= generation)
            return 0;
        nanosleep (&(struct timespec) { 0, 1000000 }, NULL);
    }
    return -1;
}

void
rp_proxy_stats (rp_proxy_t *self, uint64_t *accepted, uint64_t *bytes)
{
    if (accepted)
        *accepted = atomic_load (&self->accepted);
    if (bytes)
        *bytes = atomic_load (&self->bytes);
}
