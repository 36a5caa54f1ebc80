/*  =========================================================================
    herald_broker_bind - the broker's api ROUTER and fanout PUB, bound

    herald_broker_bind (herald_broker.h), in a file of its own so that
    herald_broker.c keeps to the loop: heraldd binds before it opens the
    store, and the actor takes the sockets over.
    =========================================================================
*/

#include "herald_auth.h"
#include "herald_broker.h"
#include "herald_log.h"

//  Requests waiting per client connection before libzmq stops reading its
//  TCP stream: a pipelining client is slowed by TCP, and what waits in the
//  broker stays bounded per connection.
#define ROUTER_RCVHWM       1000

//  True when a tcp:// endpoint is on a loopback address; ipc:// and
//  inproc:// are local too.
static bool
s_endpoint_local (const char *endpoint)
{
    if (strncmp (endpoint, "tcp://", 6) != 0)
        return true;
    const char *host = endpoint + 6;
    return strncmp (host, "127.", 4) == 0 || strncmp (host, "localhost:", 10) == 0
        || strncmp (host, "[::1]:", 6) == 0;
}

//  With --curve-secret: the broker's key on both sockets, each a CURVE
//  server in its ZAP domain, a handshake bounded by handshake-ms.  The
//  ZAP handler (herald_auth) is bound already: without it libzmq would
//  admit every key.
static herald_err
s_secure (const herald_config_t *config, zsock_t *router, zsock_t *pub, herald_error_t *err)
{
    zcert_t *cert = zcert_load (config->curve_secret);
    static const uint8_t zero [32] = { 0 };
    if (!cert || memcmp (zcert_secret_key (cert), zero, 32) == 0) {
        zcert_destroy (&cert);
        return herald_error_set (err, HERALD_ERR_INVALID, NULL, "--curve-secret %s is not a "
                                 "CURVE secret key file (make one with herald keygen)",
                                 config->curve_secret);
    }
    zsock_t *sockets [] = { router, pub };
    const char *domains [] = { HERALD_AUTH_API, HERALD_AUTH_FANOUT };
    for (size_t index = 0; index < 2; index++) {
        zsock_set_zap_domain (sockets [index], domains [index]);
        zsock_set_curve_server (sockets [index], 1);
        zcert_apply (cert, sockets [index]);
        zsock_set_handshake_ivl (sockets [index], (int) config->handshake_ms);
    }
    herald_log ("info", "security on: CURVE public key %s (clients pin it with "
                "--server-key)", zcert_public_txt (cert));
    zcert_destroy (&cert);
    return HERALD_OK;
}

herald_err
herald_broker_bind (const herald_config_t *config, zsock_t **router_p, zsock_t **pub_p,
                    herald_error_t *err)
{
    assert (config && router_p && pub_p);
    *router_p = NULL;
    *pub_p = NULL;
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    zsock_t *pub = zsock_new (ZMQ_PUB);
    if (!router || !pub) {
        zsock_destroy (&router);
        zsock_destroy (&pub);
        return herald_error_set (err, HERALD_ERR_NOMEM, NULL, "cannot create the broker's "
                                 "sockets: %s", zmq_strerror (zmq_errno ()));
    }
    //  Mandatory routing: a message the client's queue cannot take is
    //  refused (herald_reply_begin) instead of dropped unseen, so a stream
    //  waits rather than loses events, and a reply that cannot go is counted.
    zsock_set_router_mandatory (router, 1);
    zsock_set_sndhwm (router, (int) config->client_hwm);
    //  --fanout-hwm, 100,000 by default: one group commit publishes up to
    //  DRAIN_EVENTS events at once, and more in a burst of commits, and
    //  libzmq's default of 1000 dropped events even for subscribers keeping
    //  up.  A subscriber that falls further behind loses messages (and its
    //  agent replays); its cost to the broker stays bounded.
    zsock_set_sndhwm (pub, (int) config->fanout_hwm);
    zsock_set_rcvhwm (router, ROUTER_RCVHWM);
    //  The largest legal PUBLISH, plus room for its framing; a larger frame
    //  makes libzmq drop the connection rather than allocate it.
    uint64_t max_body = (uint64_t) config->max_batch * config->max_event_bytes
                      + (1u << 20);
    zsock_set_maxmsgsize (router, max_body > INT64_MAX? -1: (int64_t) max_body);
    zsock_set_linger (router, 1000);
    zsock_set_linger (pub, 1000);
    if (herald_config_secure (config)) {
        herald_err rc = s_secure (config, router, pub, err);
        if (rc != HERALD_OK) {
            zsock_destroy (&router);
            zsock_destroy (&pub);
            return rc;
        }
    }
    else {
        const char *names [] = { "api", "fanout" };
        const char *endpoints [] = { config->api, config->fanout };
        for (size_t index = 0; index < 2; index++)
            if (!s_endpoint_local (endpoints [index]))
                herald_log ("warn", "--%s %s is not a loopback address and security is off: "
                            "anyone who reaches it can publish and read everything. Turn "
                            "security on (--curve-secret, --acl: docs/security.md)",
                            names [index], endpoints [index]);
    }
    const char *which = "api", *endpoint = config->api;
    bool bound = zsock_bind (router, "%s", endpoint) >= 0;
    if (bound) {
        which = "fanout";
        endpoint = config->fanout;
        bound = zsock_bind (pub, "%s", endpoint) >= 0;
    }
    if (!bound) {
        int code = zmq_errno ();
        zsock_destroy (&router);
        zsock_destroy (&pub);
        //  The usual case: a broker already runs on the defaults
        if (code == EADDRINUSE)
            return herald_error_set (err, HERALD_ERR_UNAVAILABLE, NULL, "cannot bind %s "
                                     "%s: the address is in use (is another heraldd "
                                     "running? stop it, or give --%s another endpoint)",
                                     which, endpoint, which);
        return herald_error_set (err, HERALD_ERR_UNAVAILABLE, NULL, "cannot bind %s %s: %s",
                                 which, endpoint, zmq_strerror (code));
    }
    *router_p = router;
    *pub_p = pub;
    return HERALD_OK;
}
