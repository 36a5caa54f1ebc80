/*  =========================================================================
    raftproxy - a userspace TCP proxy for one directed Raft link (i -> j)

    The cluster tests cut links without touching the host network: node i
    is started with HERALD_TEST_HOOKS=1 and HERALD_TEST_RAFT_CONNECT
    mapping node j's raft id to this proxy, so i's outbound Raft connection
    to j goes through it.  libraft sends every message (replies too) over
    the sender's own outbound connection, so the proxy (i -> j) carries
    exactly what i says to j; a partition is a set of proxies switched.

    Modes, switched from the test at any moment:
      pass   forward both ways
      drop   close every connection now and every new one at once (the
             link is down: the sender sees resets and reconnects in vain)
      stall  keep the sockets, forward nothing (the link hangs: nothing
             comes back, no error either); pass again forwards what waited

    Each proxy is a thread with its own poll loop on 127.0.0.1.  Nothing
    here uses criterion: failures are return values.
    =========================================================================
*/

#ifndef HERALD_RAFTPROXY_H_INCLUDED
#define HERALD_RAFTPROXY_H_INCLUDED

#include <stdint.h>

typedef enum {
    RP_PASS,
    RP_DROP,
    RP_STALL
} rp_mode_t;

typedef struct _rp_proxy_t rp_proxy_t;

//  A proxy listening on 127.0.0.1 (a free port) that forwards to target
//  ("HOST:PORT", a numeric IPv4 host), in pass mode.  NULL on failure.
rp_proxy_t *
    rp_proxy_new (const char *target);

//  Stop the thread, close every socket, free, clear *self_p.  NULL-safe.
void
    rp_proxy_destroy (rp_proxy_t **self_p);

//  "127.0.0.1:PORT" where the proxy listens (for the connect map).
const char *
    rp_proxy_address (rp_proxy_t *self);

//  Switch the mode; returns 0 once the proxy thread applies it (drop: the
//  connections are closed by then), -1 when it did not within a second.
int
    rp_proxy_set_mode (rp_proxy_t *self, rp_mode_t mode);

//  Connections accepted and bytes forwarded (both ways) since the start.
void
    rp_proxy_stats (rp_proxy_t *self, uint64_t *accepted, uint64_t *bytes);

//  "pass", "drop", "stall".
const char *
    rp_mode_name (rp_mode_t mode);

#endif
