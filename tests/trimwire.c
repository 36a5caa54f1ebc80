/*  =========================================================================
    trimwire - helpers of the trimming tests (test_heraldd_trim*.c)
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <sodium.h>
#include <string.h>
#include "brokertest.h"
#include "trimwire.h"

static void
s_key (msgpack_packer *pk, const char *key)
{
    msgpack_pack_str_with_body (pk, key, strlen (key));
}

void
tw_send_trim (zsock_t *sock, uint64_t rid, const tw_trim_t *trim)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 1 + trim->has_prefix + trim->has_until + trim->has_ids_from
                          + (trim->ids != NULL) + trim->has_unarchived);
    s_key (&pk, "rid");
    msgpack_pack_uint64 (&pk, rid);
    if (trim->has_prefix) {
        s_key (&pk, "prefix");
        msgpack_pack_str_with_body (&pk, trim->prefix, strlen (trim->prefix));
    }
    if (trim->has_until) {
        s_key (&pk, "until");
        msgpack_pack_uint64 (&pk, trim->until);
    }
    if (trim->has_ids_from) {
        s_key (&pk, "ids_from");
        msgpack_pack_uint64 (&pk, trim->ids_from);
    }
    if (trim->ids) {
        s_key (&pk, "ids");
        msgpack_pack_bin_with_body (&pk, trim->ids, trim->ids_len);
    }
    if (trim->has_unarchived) {
        s_key (&pk, "unarchived");
        if (trim->unarchived)
            msgpack_pack_true (&pk);
        else
            msgpack_pack_false (&pk);
    }
    cr_assert_eq (bu_send_sbuf (sock, "TRIM", &sbuf), 0);
    msgpack_sbuffer_destroy (&sbuf);
}

static const msgpack_object *
s_get (const tw_reply_t *reply, const char *key)
{
    if (!reply->ok)
        return NULL;
    const msgpack_object *map = &reply->unpacked.data;
    for (uint32_t index = 0; index < map->via.map.size; index++) {
        const msgpack_object_kv *kv = &map->via.map.ptr [index];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen (key)
        &&  memcmp (kv->key.via.str.ptr, key, kv->key.via.str.size) == 0)
            return &kv->val;
    }
    return NULL;
}

uint64_t
tw_uint (const tw_reply_t *reply, const char *key)
{
    const msgpack_object *value = s_get (reply, key);
    return value && value->type == MSGPACK_OBJECT_POSITIVE_INTEGER? value->via.u64: 0;
}

bool
tw_has (const tw_reply_t *reply, const char *key)
{
    return s_get (reply, key) != NULL;
}

void
tw_str (const tw_reply_t *reply, const char *key, char *out, size_t size)
{
    const msgpack_object *value = s_get (reply, key);
    *out = 0;
    if (value && value->type == MSGPACK_OBJECT_STR)
        snprintf (out, size, "%.*s", (int) value->via.str.size, value->via.str.ptr);
}

void
tw_recv (zsock_t *sock, uint64_t rid, tw_reply_t *reply, int timeout_ms)
{
    memset (reply, 0, sizeof *reply);
    msgpack_unpacked_init (&reply->unpacked);
    int64_t deadline = zclock_mono () + timeout_ms;
    while (zclock_mono () < deadline) {
        zmsg_t *msg = bu_recv (sock, (int) (deadline - zclock_mono ()));
        if (!msg)
            break;
        zframe_t *command = zmsg_first (msg);
        zframe_t *body = zmsg_next (msg);
        msgpack_unpacked_destroy (&reply->unpacked);
        msgpack_unpacked_init (&reply->unpacked);
        reply->ok = body && msgpack_unpack_next (&reply->unpacked,
                                                 (const char *) zframe_data (body),
                                                 zframe_size (body), NULL)
                              == MSGPACK_UNPACK_SUCCESS
                 && reply->unpacked.data.type == MSGPACK_OBJECT_MAP;
        if (reply->ok && tw_uint (reply, "rid") == rid) {
            snprintf (reply->command, sizeof reply->command, "%.*s",
                      (int) zframe_size (command), (const char *) zframe_data (command));
            reply->msg = msg;
            return;
        }
        zmsg_destroy (&msg);
    }
    char log [4096] = "";
    if (bt_broker)
        bu_broker_log_tail (bt_broker, log, sizeof log);
    cr_assert_fail ("no reply to rid %" PRIu64 " within %d ms\n%s", rid, timeout_ms, log);
}

void
tw_reply_fini (tw_reply_t *reply)
{
    msgpack_unpacked_destroy (&reply->unpacked);
    zmsg_destroy (&reply->msg);
}

void
tw_trim_refused (zsock_t *sock, uint64_t rid, const tw_trim_t *trim, const char *code,
                 const char *field)
{
    tw_send_trim (sock, rid, trim);
    tw_reply_t reply;
    tw_recv (sock, rid, &reply, BT_WAIT_MS);
    char got [32], message [1024];
    tw_str (&reply, "code", got, sizeof got);
    tw_str (&reply, "message", message, sizeof message);
    cr_assert_str_eq (reply.command, "ERROR", "rid %" PRIu64 ": %s, not ERROR %s", rid,
                      reply.command, code);
    cr_assert_str_eq (got, code, "rid %" PRIu64 ": %s: %s", rid, got, message);
    if (field)
        cr_assert_not_null (strstr (message, field), "rid %" PRIu64 ": '%s' does not name %s",
                            rid, message, field);
    tw_reply_fini (&reply);
}

uint64_t
tw_trim_ok (zsock_t *sock, uint64_t rid, const tw_trim_t *trim, int timeout_ms)
{
    tw_send_trim (sock, rid, trim);
    tw_reply_t reply;
    tw_recv (sock, rid, &reply, timeout_ms);
    char message [1024], prefix [300];
    tw_str (&reply, "message", message, sizeof message);
    cr_assert_str_eq (reply.command, "TRIM", "%s: %s", reply.command, message);
    tw_str (&reply, "prefix", prefix, sizeof prefix);
    cr_assert_str_eq (prefix, trim->has_prefix? trim->prefix: "");
    cr_assert_eq (tw_uint (&reply, "until"), trim->until);
    cr_assert (tw_has (&reply, "trimmed_ms"));
    uint64_t first = tw_uint (&reply, "first");
    tw_reply_fini (&reply);
    return first;
}

uint64_t
tw_status_trims (zsock_t *sock, char *out, size_t size)
{
    static uint64_t rid = 900000;
    rid++;
    bt_send_rid (sock, "STATUS", rid);
    tw_reply_t reply;
    tw_recv (sock, rid, &reply, BT_WAIT_MS);
    cr_assert_str_eq (reply.command, "STATUS");
    cr_assert (tw_has (&reply, "first"), "STATUS has no first");
    uint64_t first = tw_uint (&reply, "first");
    const msgpack_object *trims = s_get (&reply, "trims");
    cr_assert (trims && trims->type == MSGPACK_OBJECT_ARRAY, "STATUS has no trims array");
    size_t used = 0;
    *out = 0;
    for (uint32_t index = 0; index < trims->via.array.size && used < size; index++) {
        tw_reply_t one = { .ok = true };
        one.unpacked.data = trims->via.array.ptr [index];
        char prefix [300];
        tw_str (&one, "prefix", prefix, sizeof prefix);
        cr_assert (tw_uint (&one, "ts") > 0, "a trim point without ts");
        used += (size_t) snprintf (out + used, size - used, "%s%s:%" PRIu64, index? ",": "",
                                   prefix, tw_uint (&one, "until"));
    }
    tw_reply_fini (&reply);
    return first;
}

bool
tw_wait_trims (zsock_t *sock, const char *want, int timeout_ms)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    char text [4096];
    while (true) {
        tw_status_trims (sock, text, sizeof text);
        if (strstr (text, want))
            return true;
        if (zclock_mono () >= deadline)
            return false;
        zclock_sleep (20);
    }
}

void
tw_send_replay (zsock_t *sock, uint64_t rid, uint64_t from, const char *const *prefixes,
                size_t count, uint64_t credit)
{
    bu_replay_t replay = { .has_from = from > 0, .from = from, .prefixes = prefixes,
                           .prefix_count = count, .has_credit = true, .credit = credit };
    bt_send_replay (sock, rid, &replay);
}

void
tw_send_read (zsock_t *sock, uint64_t rid, const char *topic, uint64_t from_ver,
              uint64_t credit)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 4);
    s_key (&pk, "rid");
    msgpack_pack_uint64 (&pk, rid);
    s_key (&pk, "topic");
    msgpack_pack_str_with_body (&pk, topic, strlen (topic));
    s_key (&pk, "from_ver");
    msgpack_pack_uint64 (&pk, from_ver);
    s_key (&pk, "credit");
    msgpack_pack_uint64 (&pk, credit);
    cr_assert_eq (bu_send_sbuf (sock, "READ", &sbuf), 0);
    msgpack_sbuffer_destroy (&sbuf);
}

void
tw_stream_read (zsock_t *sock, uint64_t rid, tw_stream_t *stream, size_t want,
                int timeout_ms)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    size_t had = stream->count;
    while (!*stream->ended && (want == 0 || stream->count - had < want)
       &&  zclock_mono () < deadline) {
        tw_reply_t reply;
        tw_recv (sock, rid, &reply, (int) (deadline - zclock_mono ()));
        if (streq (reply.command, "EVENTS")) {
            zframe_t *frame = zmsg_first (reply.msg);
            zmsg_next (reply.msg);              //  the body
            while ((frame = zmsg_next (reply.msg))) {
                cr_assert_lt (stream->count, 4096);
                tu_decoded_t decoded = { 0 };
                cr_assert_eq (tu_decode (&decoded, zframe_data (frame), zframe_size (frame)),
                              HERALD_OK);
                stream->seqs [stream->count] = decoded.event.seq;
                stream->vers [stream->count] = decoded.event.ver;
                memcpy (stream->ids [stream->count], decoded.event.id, 16);
                stream->count++;
                tu_decoded_fini (&decoded);
            }
        }
        else
        if (streq (reply.command, "END")) {
            snprintf (stream->ended, sizeof stream->ended, "END");
            tw_str (&reply, "reason", stream->reason, sizeof stream->reason);
        }
        else {
            snprintf (stream->ended, sizeof stream->ended, "%.7s", reply.command);
            tw_str (&reply, "code", stream->reason, sizeof stream->reason);
            tw_str (&reply, "message", stream->message, sizeof stream->message);
            stream->has_first = tw_has (&reply, "first");
            stream->first = tw_uint (&reply, "first");
        }
        tw_reply_fini (&reply);
    }
}

void
tw_replay (zsock_t *sock, uint64_t rid, uint64_t from, const char *const *prefixes,
           size_t count, tw_stream_t *stream)
{
    memset (stream, 0, sizeof *stream);
    tw_send_replay (sock, rid, from, prefixes, count, 100000);
    tw_stream_read (sock, rid, stream, 0, 20000);
    cr_assert (*stream->ended, "REPLAY rid %" PRIu64 " did not end", rid);
}

void
tw_read (zsock_t *sock, uint64_t rid, const char *topic, uint64_t from_ver,
         tw_stream_t *stream)
{
    memset (stream, 0, sizeof *stream);
    tw_send_read (sock, rid, topic, from_ver, 100000);
    tw_stream_read (sock, rid, stream, 0, 20000);
    cr_assert (*stream->ended, "READ rid %" PRIu64 " did not end", rid);
}

void
tw_ids_digest (zsock_t *sock, uint64_t rid, uint64_t from, uint64_t to, uint8_t digest [32])
{
    tw_stream_t *stream = (tw_stream_t *) bt_calloc (1, sizeof (tw_stream_t));
    tw_replay (sock, rid, from, NULL, 0, stream);
    cr_assert_str_eq (stream->ended, "END", "%s %s: %s", stream->ended, stream->reason,
                      stream->message);
    crypto_generichash_state state;
    crypto_generichash_init (&state, NULL, 0, 32);
    size_t hashed = 0;
    for (size_t index = 0; index < stream->count; index++)
        if (stream->seqs [index] >= from && stream->seqs [index] <= to) {
            crypto_generichash_update (&state, stream->ids [index], 16);
            hashed++;
        }
    cr_assert_eq (hashed, to - from + 1, "the REPLAY gave %zu of seqs %" PRIu64 "..%" PRIu64,
                  hashed, from, to);
    crypto_generichash_final (&state, digest, 32);
}
