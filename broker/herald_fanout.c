/*  =========================================================================
    herald_fanout - the fanout PUB sockets: the main one and one per scope

    herald_fanout.h says what; here, how.  Scope sockets are kept in the
    order of the current ACL table's scopes, so bit i of
    herald_acl_scopes_of is slot i.  A reload builds the new slots by
    scope name: a slot whose scope kept its prefixes, its endpoint and all
    its readers moves over with its socket and its prev; every other old
    socket is closed first, then the new ones are bound (a scope may take
    over the endpoint of another).
    =========================================================================
*/

#include <string.h>
#include <msgpack.h>
#include "herald_fanout.h"
#include "herald_log.h"

#define REBIND_MS       1000        //  EADDRINUSE: the old listener closes asynchronously
#define REBIND_STEP_MS  10
#define FANOUT_LINGER   1000
#define HELLO           "$hello"

typedef struct {
    const herald_acl_scope_t *scope;    //  in the current table
    zsock_t *pub;                       //  NULL: not bound (a bind failed)
    uint64_t prev;                      //  the scope's last seq sent; 0: none since bound
} s_slot_t;

struct _herald_fanout_t {
    const herald_config_t *config;      //  borrowed
    zsock_t *main;
    bool secure;
    uint8_t secret [32];
    int handshake_ms;
    const herald_acl_t *acl;            //  borrowed: the current table
    s_slot_t *slots;                    //  one per scope of acl
    size_t slot_count;
    int64_t expiry_checked;             //  Unix ns: keys expired up to here are handled
    uint64_t rebinds;
    uint8_t *frame0;                    //  scratch: topic NUL prev
    size_t frame0_size;
};

static int64_t
s_now_ns (void)
{
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    return (int64_t) now.tv_sec * 1000000000LL + now.tv_nsec;
}

herald_fanout_t *
herald_fanout_new (const herald_config_t *config, zsock_t **main_p)
{
    assert (config && main_p && *main_p);
    herald_fanout_t *self = (herald_fanout_t *) zmalloc (sizeof (herald_fanout_t));
    self->config = config;
    self->main = *main_p;
    *main_p = NULL;
    return self;
}

static void
s_slots_close (s_slot_t *slots, size_t count)
{
    for (size_t index = 0; index < count; index++)
        zsock_destroy (&slots [index].pub);
    free (slots);
}

void
herald_fanout_destroy (herald_fanout_t **self_p)
{
    herald_fanout_t *self = *self_p;
    if (!self)
        return;
    s_slots_close (self->slots, self->slot_count);
    zsock_destroy (&self->main);
    free (self->frame0);
    memset (self->secret, 0, sizeof self->secret);
    free (self);
    *self_p = NULL;
}

zsock_t *
herald_fanout_main (herald_fanout_t *self)
{
    return self->main;
}

uint64_t
herald_fanout_rebinds (herald_fanout_t *self)
{
    return self->rebinds;
}

//  ---------------------------------------------------------------------
//  Binding

//  A PUB with the fanout's options, bound to endpoint; domain is its ZAP
//  domain.  Retries EADDRINUSE for up to REBIND_MS: a socket just closed
//  on the same endpoint lets go of it a moment later.  NULL (logged) when
//  it cannot bind.
static zsock_t *
s_bind (herald_fanout_t *self, const char *endpoint, const char *domain)
{
    zsock_t *pub = zsock_new (ZMQ_PUB);
    if (!pub) {
        herald_log ("error", "fanout %s: cannot create a socket: %s", endpoint,
                    zmq_strerror (zmq_errno ()));
        return NULL;
    }
    zsock_set_sndhwm (pub, (int) self->config->fanout_hwm);
    zsock_set_linger (pub, FANOUT_LINGER);
    if (self->secure) {
        zsock_set_zap_domain (pub, domain);
        zsock_set_curve_server (pub, 1);
        zmq_setsockopt (zsock_resolve (pub), ZMQ_CURVE_SECRETKEY, self->secret, 32);
        if (self->handshake_ms > 0)
            zsock_set_handshake_ivl (pub, self->handshake_ms);
        zmq_setsockopt (zsock_resolve (pub), ZMQ_XPUB_WELCOME_MSG, HELLO, strlen (HELLO));
    }
    int64_t deadline = zclock_mono () + REBIND_MS;
    while (zsock_bind (pub, "%s", endpoint) < 0) {
        int code = zmq_errno ();
        if (code != EADDRINUSE || zclock_mono () >= deadline) {
            herald_log ("error", "fanout: cannot bind %s: %s", endpoint, zmq_strerror (code));
            zsock_destroy (&pub);
            return NULL;
        }
        zclock_sleep (REBIND_STEP_MS);
    }
    return pub;
}

static zsock_t *
s_bind_scope (herald_fanout_t *self, const herald_acl_scope_t *scope)
{
    char domain [HERALD_ACL_NAME_MAX + 32];
    snprintf (domain, sizeof domain, "herald.fanout/%s", scope->name);
    return s_bind (self, scope->fanout, domain);
}

//  Close the main PUB and bind it again: every read-all subscriber
//  reconnects and is judged again.
static void
s_rebind_main (herald_fanout_t *self, const char *why)
{
    herald_log ("info", "fanout: re-binding the main fanout %s (%s)", self->config->fanout, why);
    zsock_destroy (&self->main);
    self->main = s_bind (self, self->config->fanout, "herald.fanout");
    self->rebinds++;
    if (!self->main)
        herald_log ("error", "fanout: the main fanout is not bound: read-all subscribers "
                    "receive nothing until a restart");
}

//  The slot of the current table's scope of that name, or NULL.
static s_slot_t *
s_slot (herald_fanout_t *self, const char *name)
{
    for (size_t index = 0; index < self->slot_count; index++)
        if (streq (self->slots [index].scope->name, name))
            return &self->slots [index];
    return NULL;
}

static void
s_rebind_slot (herald_fanout_t *self, s_slot_t *slot, const char *why)
{
    herald_log ("info", "fanout: re-binding scope %s at %s (%s)", slot->scope->name,
                slot->scope->fanout, why);
    zsock_destroy (&slot->pub);
    slot->pub = s_bind_scope (self, slot->scope);
    slot->prev = 0;
    self->rebinds++;
}

int
herald_fanout_secure (herald_fanout_t *self, const uint8_t *secret_key, int handshake_ms,
                      const herald_acl_t *acl, herald_error_t *err)
{
    assert (secret_key && acl);
    self->secure = true;
    memcpy (self->secret, secret_key, 32);
    self->handshake_ms = handshake_ms;
    self->acl = acl;
    self->expiry_checked = s_now_ns ();
    //  The welcome message is read as each pipe attaches: set now, it
    //  reaches every connection the main socket takes from here on
    zmq_setsockopt (zsock_resolve (self->main), ZMQ_XPUB_WELCOME_MSG, HELLO, strlen (HELLO));
    self->slot_count = herald_acl_scope_count (acl);
    self->slots = (s_slot_t *) zmalloc ((self->slot_count + 1) * sizeof (s_slot_t));
    for (size_t index = 0; index < self->slot_count; index++) {
        self->slots [index].scope = herald_acl_scope_at (acl, index);
        self->slots [index].pub = s_bind_scope (self, self->slots [index].scope);
        if (!self->slots [index].pub) {
            herald_error_set (err, HERALD_ERR_UNAVAILABLE, NULL, "cannot bind the fanout of "
                              "scope %s at %s: %s", self->slots [index].scope->name,
                              self->slots [index].scope->fanout, zmq_strerror (zmq_errno ()));
            return -1;
        }
    }
    return 0;
}

//  ---------------------------------------------------------------------
//  Sending

static void
s_send_scope (herald_fanout_t *self, s_slot_t *slot, const char *topic, size_t topic_len,
              uint64_t seq, zmq_msg_t *envelope)
{
    if (!slot->pub)
        return;
    size_t size = topic_len + 9;
    if (size > self->frame0_size) {
        uint8_t *bigger = (uint8_t *) realloc (self->frame0, size);
        if (!bigger)
            return;                     //  as a drop: prev names it, the agent replays
        self->frame0 = bigger;
        self->frame0_size = size;
    }
    memcpy (self->frame0, topic, topic_len);
    self->frame0 [topic_len] = 0;
    for (int byte = 0; byte < 8; byte++)
        self->frame0 [topic_len + 1 + byte] = (uint8_t) (slot->prev >> (56 - 8 * byte));
    zmq_msg_t copy;
    zmq_msg_init (&copy);
    //  A reference to the one envelope (libzmq counts references of
    //  messages over 33 bytes): no copy of its bytes per scope
    zmq_msg_copy (&copy, envelope);
    void *socket = zsock_resolve (slot->pub);
    zmq_send (socket, self->frame0, size, ZMQ_SNDMORE);
    if (zmq_msg_send (&copy, socket, 0) < 0)
        zmq_msg_close (&copy);
    slot->prev = seq;
}

void
herald_fanout_send (herald_fanout_t *self, const char *topic, size_t topic_len,
                    uint64_t seq, const void *envelope, size_t len)
{
    uint64_t scopes = self->slot_count
                    ? herald_acl_scopes_of (self->acl, topic, topic_len): 0;
    if (!scopes) {
        //  Today's path, byte for byte
        if (self->main) {
            zmq_send (zsock_resolve (self->main), topic, topic_len, ZMQ_SNDMORE);
            zmq_send (zsock_resolve (self->main), envelope, len, 0);
        }
        return;
    }
    zmq_msg_t message;
    if (zmq_msg_init_size (&message, len) != 0)
        return;
    memcpy (zmq_msg_data (&message), envelope, len);
    for (size_t index = 0; index < self->slot_count && index < 64; index++)
        if (scopes & (1ULL << index))
            s_send_scope (self, &self->slots [index], topic, topic_len, seq, &message);
    if (self->main) {
        zmq_send (zsock_resolve (self->main), topic, topic_len, ZMQ_SNDMORE);
        if (zmq_msg_send (&message, zsock_resolve (self->main), 0) == 0)
            return;
    }
    zmq_msg_close (&message);
}

static void
s_pack_str (msgpack_packer *pk, const char *text)
{
    size_t len = strlen (text);
    msgpack_pack_str (pk, len);
    msgpack_pack_str_body (pk, text, len);
}

void
herald_fanout_heartbeat (herald_fanout_t *self, herald_msg_t *beat, msgpack_sbuffer *buffer)
{
    herald_fanout_tick (self);
    buffer->size = 0;
    if (self->main && herald_msg_encode (beat, buffer) == 0) {
        zmq_send (zsock_resolve (self->main), "$hb", 3, ZMQ_SNDMORE);
        zmq_send (zsock_resolve (self->main), buffer->data, buffer->size, 0);
    }
    if (!self->slot_count)
        return;
    //  Each scope: the beat's own keys (the cluster's too), then scope and last
    herald_msg_raw_t given = beat->heartbeat.raw;
    msgpack_sbuffer raw;
    msgpack_sbuffer_init (&raw);
    for (size_t index = 0; index < self->slot_count; index++) {
        s_slot_t *slot = &self->slots [index];
        if (!slot->pub)
            continue;
        raw.size = 0;
        if (given.len)
            msgpack_sbuffer_write (&raw, (const char *) given.data, given.len);
        msgpack_packer pk;
        msgpack_packer_init (&pk, &raw, msgpack_sbuffer_write);
        s_pack_str (&pk, "scope");
        s_pack_str (&pk, slot->scope->name);
        s_pack_str (&pk, "last");
        msgpack_pack_uint64 (&pk, slot->prev);
        beat->heartbeat.raw = (herald_msg_raw_t) { raw.data, raw.size, given.count + 2 };
        buffer->size = 0;
        if (herald_msg_encode (beat, buffer) == 0) {
            zmq_send (zsock_resolve (slot->pub), "$hb", 3, ZMQ_SNDMORE);
            zmq_send (zsock_resolve (slot->pub), buffer->data, buffer->size, 0);
        }
    }
    beat->heartbeat.raw = given;
    msgpack_sbuffer_destroy (&raw);
}

//  ---------------------------------------------------------------------
//  Reload and expiry

static bool
s_prefixes_equal (const herald_acl_prefixes_t *a, const herald_acl_prefixes_t *b)
{
    if (a->all != b->all || a->count != b->count)
        return false;
    for (size_t index = 0; index < a->count; index++)
        if (a->prefixes [index].len != b->prefixes [index].len
        ||  memcmp (a->prefixes [index].ptr, b->prefixes [index].ptr, a->prefixes [index].len))
            return false;
    return true;
}

//  Every key of was is still one of now's.
static bool
s_keys_kept (const herald_acl_user_t *was, const herald_acl_user_t *now)
{
    for (size_t old = 0; old < was->key_count; old++) {
        bool kept = false;
        for (size_t key = 0; key < now->key_count && !kept; key++)
            kept = memcmp (was->keys [old].key, now->keys [key].key, HERALD_ACL_KEY_BYTES) == 0;
        if (!kept)
            return false;
    }
    return true;
}

int
herald_fanout_reload (herald_fanout_t *self, const herald_acl_t *old, const herald_acl_t *acl)
{
    assert (acl);
    if (!self->secure) {
        self->acl = acl;
        return 0;
    }
    size_t count = herald_acl_scope_count (acl);
    s_slot_t *slots = (s_slot_t *) zmalloc ((count + 1) * sizeof (s_slot_t));
    //  What lost readers: old scopes by name (a bit each), and the main fanout
    uint64_t lost = 0;
    bool main_lost = false;
    const char *main_why = NULL;
    for (size_t index = 0; old && index < herald_acl_user_count (old); index++) {
        const herald_acl_user_t *was = herald_acl_user_at (old, index);
        const herald_acl_user_t *now = herald_acl_user (acl, was->name);
        bool revoked = !now || !s_keys_kept (was, now);
        if (was->read_all && (revoked || !now->read_all)) {
            main_lost = true;
            main_why = was->name;
        }
        if (was->scope && (revoked || !now->scope || !streq (now->scope->name, was->scope->name)))
            lost |= 1ULL << (was->scope->index & 63);
    }
    //  Keep the sockets of unchanged scopes that lost no reader
    for (size_t index = 0; index < count; index++) {
        const herald_acl_scope_t *scope = herald_acl_scope_at (acl, index);
        slots [index].scope = scope;
        s_slot_t *was = s_slot (self, scope->name);
        if (was && was->pub && streq (was->scope->fanout, scope->fanout)
        &&  s_prefixes_equal (&was->scope->read, &scope->read)
        &&  !(lost & (1ULL << (was->scope->index & 63)))) {
            slots [index].pub = was->pub;
            slots [index].prev = was->prev;
            was->pub = NULL;
        }
    }
    //  Close what goes (all before any bind: an endpoint may change hands)
    int changed = 0;
    for (size_t index = 0; index < self->slot_count; index++)
        if (self->slots [index].pub) {
            herald_log ("info", "fanout: closing scope %s at %s (its readers or its "
                        "prefixes changed, or it is gone)", self->slots [index].scope->name,
                        self->slots [index].scope->fanout);
            zsock_destroy (&self->slots [index].pub);
        }
    s_slots_close (self->slots, self->slot_count);
    self->slots = slots;
    self->slot_count = count;
    self->acl = acl;
    for (size_t index = 0; index < count; index++)
        if (!slots [index].pub) {
            slots [index].pub = s_bind_scope (self, slots [index].scope);
            if (slots [index].pub)
                herald_log ("info", "fanout: scope %s bound at %s", slots [index].scope->name,
                            slots [index].scope->fanout);
            slots [index].prev = 0;
            self->rebinds++;
            changed++;
        }
    if (main_lost) {
        s_rebind_main (self, main_why);
        changed++;
    }
    return changed;
}

int
herald_fanout_expire (herald_fanout_t *self, int64_t since_ns, int64_t now_ns)
{
    if (!self->secure || !self->acl)
        return 0;
    bool main_lost = false;
    uint64_t lost = 0;
    int changed = 0;
    for (size_t index = 0; index < herald_acl_user_count (self->acl); index++) {
        const herald_acl_user_t *user = herald_acl_user_at (self->acl, index);
        bool expired = false;
        for (size_t key = 0; key < user->key_count; key++)
            if (user->keys [key].until_ns > since_ns && user->keys [key].until_ns <= now_ns)
                expired = true;
        if (!expired)
            continue;
        if (user->read_all)
            main_lost = true;
        else
        if (user->scope)
            lost |= 1ULL << (user->scope->index & 63);
    }
    for (size_t index = 0; index < self->slot_count; index++)
        if (lost & (1ULL << (self->slots [index].scope->index & 63))) {
            s_rebind_slot (self, &self->slots [index], "a key expired");
            changed++;
        }
    if (main_lost) {
        s_rebind_main (self, "a key expired");
        changed++;
    }
    self->expiry_checked = now_ns;
    return changed;
}

int
herald_fanout_tick (herald_fanout_t *self)
{
    return self->secure? herald_fanout_expire (self, self->expiry_checked, s_now_ns ()): 0;
}
