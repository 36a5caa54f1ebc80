/*  =========================================================================
    tcpproxy - a TCP forwarder a test can cut, for network partitions

    Listens on 127.0.0.1 (a port chosen at run time) and forwards every
    connection to 127.0.0.1:target, both ways, on a thread of its own.
    Cut: every forwarded connection is closed and new ones are closed as
    soon as they are accepted (a peer sees its connection drop and its
    reconnects fail); heal: forwarding again.  Used with herald_raft's
    HERALD_TEST_RAFT_CONNECT hook.  Nothing here uses criterion.
    =========================================================================
*/

#ifndef HERALD_TCPPROXY_H_INCLUDED
#define HERALD_TCPPROXY_H_INCLUDED

#include <stdbool.h>

typedef struct _tcpproxy_t tcpproxy_t;

//  Start forwarding to 127.0.0.1:target.  NULL if it cannot listen.
tcpproxy_t *
    tcpproxy_new (int target);

//  Stop the thread, close everything, free.  NULL-safe.
void
    tcpproxy_destroy (tcpproxy_t **self_p);

//  The port it listens on.
int
    tcpproxy_port (tcpproxy_t *self);

//  Cut (true) or heal (false) the link.
void
    tcpproxy_cut (tcpproxy_t *self, bool cut);

#endif
