/*  =========================================================================
    replytest - criterion helpers for raw replies and hand-packed bodies
    (see replytest.h)
    =========================================================================
*/

#include <criterion/criterion.h>
#include <inttypes.h>
#include <string.h>
#include "brokerutil.h"
#include "replytest.h"

void
rt_recv (zsock_t *sock, rt_reply_t *reply, int timeout_ms)
{
    memset (reply, 0, sizeof *reply);
    msgpack_unpacked_init (&reply->unpacked);
    reply->msg = bu_recv (sock, timeout_ms);
    cr_assert_not_null (reply->msg, "no reply within %d ms", timeout_ms);
    zframe_t *command = zmsg_first (reply->msg);
    zframe_t *body = zmsg_next (reply->msg);
    cr_assert (command && body, "a reply is two frames: command and body");
    snprintf (reply->command, sizeof reply->command, "%.*s", (int) zframe_size (command),
              (const char *) zframe_data (command));
    size_t offset = 0;
    cr_assert_eq (msgpack_unpack_next (&reply->unpacked, (const char *) zframe_data (body),
                                       zframe_size (body), &offset), MSGPACK_UNPACK_SUCCESS);
    cr_assert_eq (offset, zframe_size (body), "a reply body is one map, nothing after it");
    cr_assert_eq (reply->unpacked.data.type, MSGPACK_OBJECT_MAP);
    reply->body = &reply->unpacked.data;
}

void
rt_reply_fini (rt_reply_t *reply)
{
    msgpack_unpacked_destroy (&reply->unpacked);
    zmsg_destroy (&reply->msg);
}

const msgpack_object *
rt_get (const msgpack_object *map, const char *key)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t at = 0; at < map->via.map.size; at++) {
        const msgpack_object *name = &map->via.map.ptr [at].key;
        if (name->type == MSGPACK_OBJECT_STR && name->via.str.size == strlen (key)
        &&  memcmp (name->via.str.ptr, key, name->via.str.size) == 0)
            return &map->via.map.ptr [at].val;
    }
    return NULL;
}

uint64_t
rt_uint (const msgpack_object *map, const char *key)
{
    const msgpack_object *value = rt_get (map, key);
    cr_assert (value && value->type == MSGPACK_OBJECT_POSITIVE_INTEGER, "%s: not a uint", key);
    return value->via.u64;
}

bool
rt_str_is (const msgpack_object *value, const char *text)
{
    return value && value->type == MSGPACK_OBJECT_STR && value->via.str.size == strlen (text)
        && memcmp (value->via.str.ptr, text, value->via.str.size) == 0;
}

bool
rt_has (const msgpack_object *message, const char *text)
{
    if (!message || message->type != MSGPACK_OBJECT_STR)
        return false;
    char buffer [2048];
    snprintf (buffer, sizeof buffer, "%.*s", (int) message->via.str.size,
              message->via.str.ptr);
    return strstr (buffer, text) != NULL;
}

void
rt_check_error (const rt_reply_t *reply, const char *code, bool has_rid, uint64_t rid,
                const char *text)
{
    const msgpack_object *message = rt_get (reply->body, "message");
    int shown = message && message->type == MSGPACK_OBJECT_STR? (int) message->via.str.size: 0;
    const char *words = shown? message->via.str.ptr: "";
    cr_assert_str_eq (reply->command, "ERROR", "expected ERROR %s, got %s: %.*s", code,
                      reply->command, shown, words);
    cr_assert (rt_str_is (rt_get (reply->body, "code"), code), "expected code %s: %.*s", code,
               shown, words);
    const msgpack_object *got = rt_get (reply->body, "rid");
    if (has_rid)
        cr_assert (got && got->type == MSGPACK_OBJECT_POSITIVE_INTEGER && got->via.u64 == rid,
                   "expected rid %" PRIu64, rid);
    else
        cr_assert (got && got->type == MSGPACK_OBJECT_NIL, "rid must be nil");
    if (text)
        cr_assert (rt_has (message, text), "message '%.*s' does not name '%s'", shown, words,
                   text);
}

void
rt_vpack (msgpack_packer *pk, const char *format, va_list args)
{
    for (const char *at = format; *at; at++) {
        switch (*at) {
            case 'M': msgpack_pack_map (pk, (size_t) va_arg (args, int)); break;
            case 'A': msgpack_pack_array (pk, (size_t) va_arg (args, int)); break;
            case 's': bu_pack_str (pk, va_arg (args, const char *)); break;
            case 'u': msgpack_pack_uint64 (pk, va_arg (args, uint64_t)); break;
            case 'i': msgpack_pack_int64 (pk, va_arg (args, int64_t)); break;
            case 'n': msgpack_pack_nil (pk); break;
            case 't': msgpack_pack_true (pk); break;
            case 'f': msgpack_pack_false (pk); break;
            case ' ': break;
            default: cr_assert_fail ("rt_vpack: unknown format letter %c", *at);
        }
    }
}

void
rt_vsend (zsock_t *sock, const char *command, const char *format, va_list args)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    rt_vpack (&pk, format, args);
    cr_assert_eq (bu_send_sbuf (sock, command, &sbuf), 0);
    msgpack_sbuffer_destroy (&sbuf);
}

void
rt_send (zsock_t *sock, const char *command, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    rt_vsend (sock, command, format, args);
    va_end (args);
}

void
rt_key_make (rt_key_t *key, const char *name, const char *dir, const char *file)
{
    zcert_t *cert = zcert_new ();
    cr_assert_not_null (cert);
    snprintf (key->name, sizeof key->name, "%s", name);
    snprintf (key->public_txt, sizeof key->public_txt, "%s", zcert_public_txt (cert));
    snprintf (key->secret_txt, sizeof key->secret_txt, "%s", zcert_secret_txt (cert));
    if (dir) {
        char path [1024];
        snprintf (path, sizeof path, "%s/%s", dir, file);
        cr_assert_eq (zcert_save (cert, path), 0, "cannot save %s", path);
    }
    zcert_destroy (&cert);
}
