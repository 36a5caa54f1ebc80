/*  =========================================================================
    herald_fanout - the fanout PUB sockets: the main one and one per scope

    The main fanout carries every stored event and the heartbeats, as it
    always did.  With security on (docs/security.md, "Read ACLs on the
    fanout"; ../shared/design/SECURITY.md §3.6), every ACL scope gets a PUB
    of its own, bound to the scope's `fanout` endpoint, CURVE server, ZAP
    domain `herald.fanout/<name>`: a scope socket is never handed an event
    outside its scope, so no subscriber on it can receive one, whatever it
    subscribes to.  XPUB_MANUAL (one socket, narrowed per peer) is never
    used: libzmq 4.3.4 applies a subscription to a dead pipe and leaks.

    On a scope socket frame 0 is `topic NUL prev`, prev the seq (8 bytes,
    big-endian) of the scope's previous event, 0 for none since the socket
    was bound; `$hb` adds `scope` and `last` (the scope's last seq at or
    before head).  A subscriber of the whole scope sees every loss at the
    next message (the agent's rule, herald_io.c).  Every fanout socket has
    the welcome message `$hello` with security on: the first message of
    each connection, in-band, ordered with the data.

    A reload re-binds what lost readers: a scope whose prefixes or
    endpoint changed or that was removed, the socket a revoked user read
    through (the main one for a `read = *` user).  Every subscriber on it
    reconnects and passes ZAP again under the new table.
    =========================================================================
*/

#ifndef HERALD_FANOUT_H_INCLUDED
#define HERALD_FANOUT_H_INCLUDED

#include <czmq.h>
#include "herald_acl.h"
#include "herald_config.h"
#include "herald_msg.h"

typedef struct _herald_fanout_t herald_fanout_t;

//  Takes over the main PUB, bound already (herald_broker_bind), and
//  clears *main_p.  Security is off until herald_fanout_secure.
herald_fanout_t *
    herald_fanout_new (const herald_config_t *config, zsock_t **main_p);

//  NULL-safe; closes every socket it owns.
void
    herald_fanout_destroy (herald_fanout_t **self_p);

//  The main PUB (borrowed).  It may change at a re-bind.
zsock_t *
    herald_fanout_main (herald_fanout_t *self);

//  Turn security on: secret_key (32 bytes) serves CURVE on every socket
//  bound from now on (the main one was bound with it already); `$hello`
//  on every socket; one PUB per scope of acl (borrowed: it must live
//  until the next herald_fanout_reload).  handshake_ms: ZMQ_HANDSHAKE_IVL.
//  -1 with err when a scope endpoint cannot be bound.
int
    herald_fanout_secure (herald_fanout_t *self, const uint8_t *secret_key,
                          int handshake_ms, const herald_acl_t *acl, herald_error_t *err);

//  One stored event, in seq order: on the main socket as [topic,
//  envelope], on each matching scope as [topic NUL prev, envelope].
void
    herald_fanout_send (herald_fanout_t *self, const char *topic, size_t topic_len,
                        uint64_t seq, const void *envelope, size_t len);

//  `$hb`: beat as given on the main socket; on each scope with `scope`
//  and `last` added.  buffer: scratch.  Also re-binds the sockets of keys
//  that expired since the last heartbeat.
void
    herald_fanout_heartbeat (herald_fanout_t *self, herald_msg_t *beat,
                             msgpack_sbuffer *buffer);

//  The ACL was reloaded: old is still alive, acl is the new table
//  (borrowed from now on).  Re-binds what lost readers (above), binds new
//  scopes.  Returns the number of sockets re-bound or bound.
int
    herald_fanout_reload (herald_fanout_t *self, const herald_acl_t *old,
                          const herald_acl_t *acl);

//  Re-bind the sockets through which keys expired in (since, now_ns] were
//  read (checked with every heartbeat; exposed for the ACL check timer).
int
    herald_fanout_expire (herald_fanout_t *self, int64_t since_ns, int64_t now_ns);

//  herald_fanout_expire since the last check, up to now.
int
    herald_fanout_tick (herald_fanout_t *self);

//  Counters: re-binds done, bind failures.
uint64_t
    herald_fanout_rebinds (herald_fanout_t *self);

#endif
