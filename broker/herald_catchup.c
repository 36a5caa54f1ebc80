/*  =========================================================================
    herald_catchup - copy a peer's events into the store over HWP/1 REPLAY

    DESIGN
    One DEALER, one REPLAY {rid 1, from head + 1, to, credit CREDIT}, then
    EVENTS messages (one envelope per frame, seq order) until END or
    ERROR; each EVENTS message is installed as it comes (one WriteBatch,
    herald_store_install checks seq = head + 1, ver, ts, id) and its
    events are given back as CREDIT, so at most CREDIT events are in
    flight and memory stays bounded whatever the gap.  A peer silent for
    CATCHUP_IDLE_MS is given up (the caller tries another); one whose
    port refuses the connection (a node that is down) at once, as the
    socket's monitor tells, so that a restore tried against the members
    that are down costs nothing per dead member.  Installed
    batches stay installed: a later run resumes from the new head.
    =========================================================================
*/

#include <inttypes.h>
#include <stdatomic.h>
#include "herald_catchup.h"

#define CREDIT              2000
#define CATCHUP_IDLE_MS     5000

static int
s_send (zsock_t *dealer, const char *command, msgpack_sbuffer *body)
{
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, command);
    zmsg_addmem (msg, body->data, body->size);
    return zmsg_send (&msg, dealer);
}

static void
s_pack_key_uint (msgpack_packer *pk, const char *key, uint64_t value)
{
    msgpack_pack_str_with_body (pk, key, strlen (key));
    msgpack_pack_uint64 (pk, value);
}

//  The message an ERROR body holds, for err; *trimmed when its code is
//  `trimmed` (the peer no longer has the events asked for).
static void
s_error_text (zframe_t *body, char *text, size_t size, bool *trimmed)
{
    snprintf (text, size, "(unreadable)");
    *trimmed = false;
    if (!body)
        return;
    msgpack_zone zone;
    msgpack_zone_init (&zone, 512);
    msgpack_object root;
    herald_error_t ignored;
    herald_field_t fields [] = { { "code" }, { "message" } };
    if (herald_event_unpack (zframe_data (body), zframe_size (body), &zone, &root, "",
                             &ignored) == HERALD_OK
    &&  root.type == MSGPACK_OBJECT_MAP
    &&  herald_event_fields (&root, fields, 2, &zone, "", &ignored) == HERALD_OK
    &&  fields [1].value && fields [1].value->type == MSGPACK_OBJECT_STR)
        snprintf (text, size, "%.*s", (int) fields [1].value->via.str.size,
                  fields [1].value->via.str.ptr);
    *trimmed = fields [0].value && fields [0].value->type == MSGPACK_OBJECT_STR
            && fields [0].value->via.str.size == 7
            && memcmp (fields [0].value->via.str.ptr, "trimmed", 7) == 0;
    msgpack_zone_destroy (&zone);
}

//  Watch dealer's connection: a PAIR reading its monitor (connected and
//  refused), or NULL when it cannot be set up (then only the idle limit
//  ends a wait).
static zsock_t *
s_watch (zsock_t *dealer)
{
    static atomic_uint_fast64_t watches;
    char endpoint [96];
    snprintf (endpoint, sizeof (endpoint), "inproc://herald-catchup-%d-%" PRIu64,
              (int) getpid (), (uint64_t) atomic_fetch_add (&watches, 1));
    if (zmq_socket_monitor (zsock_resolve (dealer), endpoint,
                            ZMQ_EVENT_CONNECTED | ZMQ_EVENT_CONNECT_RETRIED) != 0)
        return NULL;
    zsock_t *watch = zsock_new (ZMQ_PAIR);
    if (watch && zsock_connect (watch, "%s", endpoint) != 0)
        zsock_destroy (&watch);
    if (!watch)
        zmq_socket_monitor (zsock_resolve (dealer), NULL, 0);
    return watch;
}

//  The event the monitor sent (ZMQ_EVENT_...), 0 when unreadable.
static int
s_watch_event (zsock_t *watch)
{
    zmsg_t *msg = zmsg_recv (watch);
    zframe_t *frame = msg? zmsg_first (msg): NULL;
    int event = 0;
    if (frame && zframe_size (frame) >= 2) {
        uint16_t value;
        memcpy (&value, zframe_data (frame), 2);
        event = value;
    }
    zmsg_destroy (&msg);
    return event;
}

static zcert_t *s_cert;                 //  security on: the broker's key

void
herald_catchup_set_cert (zcert_t *cert)
{
    zcert_destroy (&s_cert);
    s_cert = cert? zcert_dup (cert): NULL;
}

void
herald_catchup_apply_key (zsock_t *dealer)
{
    if (s_cert) {
        zsock_set_curve_serverkey (dealer, zcert_public_txt (s_cert));
        zcert_apply (s_cert, dealer);
    }
}

herald_err
herald_catchup_run (herald_store_t *store, const char *api, uint64_t to,
                    herald_catchup_fn *installed, void *arg, herald_error_t *err)
{
    uint64_t head = herald_store_head (store);
    if (head >= to)
        return HERALD_OK;
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    if (!dealer)
        return herald_error_set (err, HERALD_ERR_IO, "catchup", "cannot open a socket");
    zsock_set_linger (dealer, 0);
    zsock_t *watch = s_watch (dealer);
    bool connected = false;
    herald_catchup_apply_key (dealer);      //  security on: the cluster's key
    if (zsock_connect (dealer, "%s", api) != 0) {
        if (watch)
            zmq_socket_monitor (zsock_resolve (dealer), NULL, 0);
        zsock_destroy (&watch);
        zsock_destroy (&dealer);
        return herald_error_set (err, HERALD_ERR_UNAVAILABLE, "catchup",
                                 "cannot connect to %s", api);
    }
    msgpack_sbuffer body;
    msgpack_sbuffer_init (&body);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &body, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 4);
    s_pack_key_uint (&pk, "rid", 1);
    s_pack_key_uint (&pk, "from", head + 1);
    s_pack_key_uint (&pk, "to", to);
    s_pack_key_uint (&pk, "credit", CREDIT);
    herald_err rc = HERALD_OK;
    if (s_send (dealer, "REPLAY", &body) != 0)
        rc = herald_error_set (err, HERALD_ERR_UNAVAILABLE, "catchup",
                               "cannot send REPLAY to %s", api);
    bool ended = false;
    while (rc == HERALD_OK && !ended) {
        zmq_pollitem_t items [2] = { { zsock_resolve (dealer), 0, ZMQ_POLLIN, 0 },
                                     { watch? zsock_resolve (watch): NULL, 0, ZMQ_POLLIN, 0 } };
        int ready = zmq_poll (items, watch? 2: 1, CATCHUP_IDLE_MS);
        if (ready < 0 && zmq_errno () == EINTR)
            continue;
        if (ready > 0 && watch && (items [1].revents & ZMQ_POLLIN)) {
            int event = s_watch_event (watch);
            if (event == ZMQ_EVENT_CONNECTED)
                connected = true;
            else
            if (event == ZMQ_EVENT_CONNECT_RETRIED && !connected) {
                rc = herald_error_set (err, HERALD_ERR_UNAVAILABLE, "catchup",
                                       "nothing listens at %s (connection refused)", api);
                break;
            }
            if (!(items [0].revents & ZMQ_POLLIN))
                continue;
        }
        if (ready <= 0) {
            rc = herald_error_set (err, HERALD_ERR_UNAVAILABLE, "catchup",
                                   "%s sent nothing for %d ms (head %" PRIu64 ", want %"
                                   PRIu64 ")", api, CATCHUP_IDLE_MS,
                                   herald_store_head (store), to);
            break;
        }
        zmsg_t *msg = zmsg_recv (dealer);
        if (!msg)
            continue;
        char *command = zmsg_popstr (msg);
        zframe_t *reply = zmsg_pop (msg);
        if (command && streq (command, "EVENTS")) {
            size_t count = zmsg_size (msg);
            const uint8_t **envelopes = (const uint8_t **) calloc (count + 1, sizeof (void *));
            size_t *lens = (size_t *) calloc (count + 1, sizeof (size_t));
            zframe_t *frame = zmsg_first (msg);
            size_t index = 0;
            while (frame && index < count) {
                envelopes [index] = zframe_data (frame);
                lens [index] = zframe_size (frame);
                index++;
                frame = zmsg_next (msg);
            }
            if (count) {
                herald_error_t install = { 0 };
                herald_err done = herald_store_install (store, envelopes, lens, count, 0,
                                                        &install);
                if (done != HERALD_OK)
                    rc = herald_error_set (err, done == HERALD_ERR_IO? done:
                                           HERALD_ERR_CORRUPT, "catchup",
                                           "events from %s do not install: %s", api,
                                           install.message);
                else
                if (installed)
                    installed (arg);
            }
            free (envelopes);
            free (lens);
            if (rc == HERALD_OK && count) {
                msgpack_sbuffer_clear (&body);
                msgpack_pack_map (&pk, 2);
                s_pack_key_uint (&pk, "rid", 1);
                s_pack_key_uint (&pk, "credit", count);
                s_send (dealer, "CREDIT", &body);
            }
        }
        else
        if (command && streq (command, "END"))
            ended = true;
        else {
            char text [256];
            bool trimmed = false;
            s_error_text (reply, text, sizeof (text), &trimmed);
            rc = herald_error_set (err, trimmed? HERALD_ERR_TRIMMED: HERALD_ERR_UNAVAILABLE,
                                   "catchup", "%s answered %s: %s", api,
                                   command? command: "?", text);
        }
        zstr_free (&command);
        zframe_destroy (&reply);
        zmsg_destroy (&msg);
    }
    msgpack_sbuffer_destroy (&body);
    if (watch)
        zmq_socket_monitor (zsock_resolve (dealer), NULL, 0);
    zsock_destroy (&watch);
    zsock_destroy (&dealer);
    if (rc == HERALD_OK && herald_store_head (store) < to)
        rc = herald_error_set (err, HERALD_ERR_UNAVAILABLE, "catchup",
                               "%s ended its replay at seq %" PRIu64 ", before %" PRIu64, api,
                               herald_store_head (store), to);
    return rc;
}
