/*  =========================================================================
    herald_broker - the broker actor: HWP/1 on a ROUTER and a PUB socket

    heraldd runs one of these.  It binds the api ROUTER and the fanout PUB
    of the config, serves every HWP/1 command against the store, sends
    heartbeats, and on $TERM commits and ACKs what it holds, then ends.
    With --peer in its config it is a cluster node (herald_node): Raft
    applies, only the leader takes PUBLISH, and on $TERM it hands
    leadership over and answers what it holds not_leader.
    =========================================================================
*/

#ifndef HERALD_BROKER_H_INCLUDED
#define HERALD_BROKER_H_INCLUDED

#include <czmq.h>
#include "herald_auth.h"
#include "herald_config.h"
#include "herald_metrics.h"
#include "herald_store.h"

//  The actor function for zactor_new.  args is a herald_broker_args_t*,
//  borrowed: the caller keeps config and store alive until the actor is
//  destroyed.  The actor signals 0 once its sockets are bound, or -1 if
//  binding failed (after logging why).  If the store fails under it, it
//  logs, stops serving and sends "FATAL" on its pipe.  router and pub,
//  when set, are sockets herald_broker_bind already bound: the actor takes
//  them over (the caller no longer uses or destroys them) instead of
//  binding its own.  auth, with security on, is the ZAP handler heraldd
//  bound before those sockets (herald_auth_new): the actor takes it over
//  too, and polls it in its loop.  metrics, with --metrics, is the HTTP
//  endpoint (herald_metrics): the loop answers its STATUS requests and
//  tells it when it stops or fails; the caller destroys it after the actor.
typedef struct {
    herald_config_t *config;
    herald_store_t *store;
    zsock_t *router;
    zsock_t *pub;
    herald_auth_t *auth;
    herald_metrics_t *metrics;      //  --metrics: its STATUS channel (borrowed), or NULL
} herald_broker_args_t;

void
    herald_broker_actor (zsock_t *pipe, void *args);

//  Create the api ROUTER and the fanout PUB of config, with their options,
//  and bind them.  heraldd calls this before it opens (and perhaps
//  creates) the data directory, so that a port in use stops it before it
//  has made anything.  On failure nothing stays bound and err says which
//  endpoint and why (HERALD_ERR_UNAVAILABLE; HERALD_ERR_NOMEM).
herald_err
    herald_broker_bind (const herald_config_t *config, zsock_t **router_p, zsock_t **pub_p,
                        herald_error_t *err);

#endif
