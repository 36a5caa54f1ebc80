/*  =========================================================================
    herald_broker - the broker actor: HWP/1 on a ROUTER and a PUB socket

    heraldd runs one of these.  It binds the api ROUTER and the fanout PUB
    of the config, serves every HWP/1 command against the store, sends
    heartbeats, and on $TERM commits and ACKs what it holds, then ends.
    =========================================================================
*/

#ifndef HERALD_BROKER_H_INCLUDED
#define HERALD_BROKER_H_INCLUDED

#include <czmq.h>
#include "herald_config.h"
#include "herald_store.h"

//  The actor function for zactor_new.  args is a herald_broker_args_t*,
//  borrowed: the caller keeps config and store alive until the actor is
//  destroyed.  The actor signals 0 once its sockets are bound, or -1 if
//  binding failed (after logging why).  If the store fails under it, it
//  logs, stops serving and sends "FATAL" on its pipe.
typedef struct {
    herald_config_t *config;
    herald_store_t *store;
} herald_broker_args_t;

void
    herald_broker_actor (zsock_t *pipe, void *args);

#endif
