/*  =========================================================================
    herald_io_auth - the I/O actor's CURVE sockets after a refusal

    DESIGN

    libzmq 4.3.4 gives up on a connection whose key the broker's ZAP
    handler refused (HANDSHAKE_FAILED_AUTH, status 400 or 500): it never
    reconnects by itself [SECURITY.md exp 1b].  A key added to the ACL, or
    an expiry corrected, would then need the service restarted.  So the
    agent watches its DEALER and SUB (socket monitors, opened by
    herald_io_node.c with these events when CURVE is on) and after a
    refusal reconnects the socket itself, zsock_disconnect then
    zsock_connect (which makes a new connection with a new handshake),
    after 1 s, doubling to 30 s while it is refused again.  A handshake
    that succeeds resets the wait.  Each refusal counts in stats
    auth_refused; the log says it once per change of state (refused with
    this status, accepted again), not once per retry.

    A refusal on the SUB alone (the api still admits the key) means the
    key's read view moved: a reload put it in another scope, or made it
    read-all.  The agent sends HELLO again, and WELCOME names the fanout
    to use now (herald_io_node_welcome moves the SUB there).

    A handshake that fails without detail is what a client sees when the
    broker could not decrypt its HELLO: the broker holds another key than
    the one we gave (or it is not a CURVE broker).  libzmq retries those
    itself, with the same key; after NO_DETAIL_MAX in a row on the DEALER,
    and when server_key lists more than one key (a broker-key rotation,
    "NEW,OLD"), the agent moves to the next key: set on both sockets, each
    reconnected (libzmq copies the options at connect).
    =========================================================================
*/

#include <inttypes.h>
#include "herald_io.h"
#include "herald_say.h"

#define AUTH_BACKOFF_MIN_MS     1000
#define AUTH_BACKOFF_MAX_MS     30000
#define NO_DETAIL_MAX           2

//  Once per change of state: not rate-limited (a state change is rare,
//  and the one line that says why a service receives nothing must not be
//  lost to a limit).
static void
s_say (const char *format, ...) __attribute__ ((format (printf, 1, 2)));

static void
s_say (const char *format, ...)
{
    va_list args;
    va_start (args, format);
    herald_vsay (HERALD_LOG_WARNING, format, args);
    va_end (args);
}

static const char *
s_endpoint (herald_io_t *self, bool is_dealer)
{
    return is_dealer? self->nodes [self->node].api: self->nodes [self->node].fanout;
}

//  A new connection to the socket's endpoint: a new handshake.
static void
s_reconnect (herald_io_t *self, bool is_dealer)
{
    const char *endpoint = s_endpoint (self, is_dealer);
    zsock_t *sock = is_dealer? self->dealer: self->sub;
    if (!is_dealer && !self->fanout_connected)
        return;                     //  the SUB connects at the next WELCOME
    zsock_disconnect (sock, "%s", endpoint);
    if (zsock_connect (sock, "%s", endpoint) != 0)
        s_say ("cannot connect again to %s: %s", endpoint, zmq_strerror (zmq_errno ()));
    if (!is_dealer)
        self->live_next = 0;        //  position unknown until the next message
}

void
herald_io_auth_event (herald_io_t *self, bool is_dealer, int event, uint32_t value)
{
    herald_agent_t *agent = self->agent;
    herald_io_auth_t *auth = is_dealer? &self->auth_dealer: &self->auth_sub;
    const char *endpoint = s_endpoint (self, is_dealer);
    const char *what = is_dealer? "api": "fanout";
    if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
        if (is_dealer)
            atomic_store (&agent->key_refused, false);
        if (auth->logged_refused)
            s_say ("the broker at %s (%s) accepts this key again", endpoint, what);
        auth->refused = false;
        auth->logged_refused = false;
        auth->backoff_ms = 0;
        auth->retry_at = 0;
        auth->no_detail = 0;
        return;
    }
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
        atomic_fetch_add_explicit (&agent->auth_refused, 1, memory_order_relaxed);
        if ((!auth->logged_refused || auth->status != (int) value) && is_dealer)
            s_say ("the broker at %s (%s) refused this key (ZAP status %" PRIu32 ": unknown, "
                   "revoked or expired): retrying from 1 s to every 30 s", endpoint, what,
                   value);
        else
        if (!auth->logged_refused || auth->status != (int) value)
            s_say ("the broker at %s (%s) refused this key (ZAP status %" PRIu32 ": not "
                   "allowed there, or unknown, revoked or expired): asking again which "
                   "fanout it may use, retrying from 1 s to every 30 s", endpoint, what,
                   value);
        auth->logged_refused = true;
        auth->refused = true;
        auth->status = (int) value;
        auth->no_detail = 0;
        auth->backoff_ms = auth->backoff_ms? auth->backoff_ms * 2: AUTH_BACKOFF_MIN_MS;
        if (auth->backoff_ms > AUTH_BACKOFF_MAX_MS)
            auth->backoff_ms = AUTH_BACKOFF_MAX_MS;
        auth->retry_at = herald_agent_now_ms () + auth->backoff_ms;
        if (is_dealer) {
            self->dealer_up = false;        //  nothing can be sent on it
            atomic_store (&agent->key_refused, true);
        }
        else
            //  The fanout refuses a key the api admits: the key's read view
            //  may have moved (another scope, or read-all) by a reload.
            //  Ask again: WELCOME names the fanout it may use now
            herald_io_unwelcome (self);
        return;
    }
    if (event != ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL || !is_dealer)
        return;
    //  The broker could not read our HELLO: it holds another key
    if (++auth->no_detail < NO_DETAIL_MAX)
        return;
    auth->no_detail = 0;
    size_t count = herald_curve_server_count (agent->curve);
    if (count < 2) {
        if (!auth->logged_refused)
            s_say ("the broker at %s did not prove the key given by server_key (the CURVE "
                   "handshake failed without detail): is it the broker's public key?",
                   endpoint);
        auth->logged_refused = true;
        return;                     //  libzmq keeps trying with the same key
    }
    herald_curve_next (agent->curve);
    s_say ("the broker at %s did not prove server key #%zu: trying #%zu of %zu", endpoint,
           (herald_curve_server_index (agent->curve) + count - 1) % count + 1,
           herald_curve_server_index (agent->curve) + 1, count);
    herald_curve_apply_server (agent->curve, self->dealer);
    herald_curve_apply_server (agent->curve, self->sub);
    self->dealer_up = false;
    s_reconnect (self, true);
    s_reconnect (self, false);
}

void
herald_io_auth_tick (herald_io_t *self, int64_t now)
{
    if (!self->agent->curve)
        return;
    if (self->auth_dealer.retry_at && now >= self->auth_dealer.retry_at) {
        self->auth_dealer.retry_at = 0;
        s_reconnect (self, true);
    }
    if (self->auth_sub.retry_at && now >= self->auth_sub.retry_at) {
        self->auth_sub.retry_at = 0;
        s_reconnect (self, false);
    }
}

int64_t
herald_io_auth_due (herald_io_t *self)
{
    int64_t due = INT64_MAX;
    if (self->auth_dealer.retry_at && self->auth_dealer.retry_at < due)
        due = self->auth_dealer.retry_at;
    if (self->auth_sub.retry_at && self->auth_sub.retry_at < due)
        due = self->auth_sub.retry_at;
    return due;
}
