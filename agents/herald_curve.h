/*  =========================================================================
    herald_curve - a client's CURVE identity and the broker keys it trusts

    Internal to libherald (the agent and the herald tool).  Built from the
    agent's `key_file` and `server_key` options, or the tool's --key and
    --server-key: a zcert secret file (NAME.key_secret, mode 0600) and one
    or more broker public keys (Z85, or @FILE of a zcert public cert),
    comma-separated for a broker-key rotation.  The current broker key is
    the one applied to new sockets; herald_curve_next moves to the next one
    (the agent does when the handshake keeps failing without detail: the
    broker could not decrypt our HELLO, so it holds another key).
    =========================================================================
*/

#ifndef HERALD_CURVE_H_INCLUDED
#define HERALD_CURVE_H_INCLUDED

#include <czmq.h>

#define HERALD_CURVE_SERVERS_MAX    8

typedef struct _herald_curve_t herald_curve_t;

//  Load key_file and parse server_key.  NULL with a message in why (the
//  caller reports HERALD_ERR_INVALID) when either is missing, unreadable,
//  not a key, or when key_file is readable by group or others.
herald_curve_t *
    herald_curve_new (const char *key_file, const char *server_key, char *why, size_t size);

void
    herald_curve_destroy (herald_curve_t **self_p);

//  Make sock a CURVE client: our keypair and the current broker key.
//  Before zsock_connect (libzmq copies the options at connect).
void
    herald_curve_apply (herald_curve_t *self, zsock_t *sock);

//  Set the current broker key on sock (a reconnect after herald_curve_next).
void
    herald_curve_apply_server (herald_curve_t *self, zsock_t *sock);

//  How many broker keys; which one is current (from 0); move to the next.
size_t
    herald_curve_server_count (herald_curve_t *self);
size_t
    herald_curve_server_index (herald_curve_t *self);
void
    herald_curve_next (herald_curve_t *self);

//  The current broker key, and our public key (Z85, 40 characters).
const char *
    herald_curve_server (herald_curve_t *self);
const char *
    herald_curve_public (herald_curve_t *self);

#endif
