/*  =========================================================================
    replytest - criterion helpers for raw replies and hand-packed bodies

    For tests that speak to heraldd as a third-party client would: a body
    packed from a short format string, any reply received as its command
    and its body unpacked as a MessagePack object (for commands brokerutil's
    typed bu_reply_t does not know: GROUP, ACL, STATUS extras), lookups in
    it, and CURVE keypairs for the security tests.  Every check is a
    criterion assertion.
    =========================================================================
*/

#ifndef HERALD_REPLYTEST_H_INCLUDED
#define HERALD_REPLYTEST_H_INCLUDED

#include <msgpack.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <czmq.h>

//  A reply: its command and its body (one map) unpacked.
typedef struct {
    zmsg_t *msg;
    char command [32];
    msgpack_unpacked unpacked;
    const msgpack_object *body;
} rt_reply_t;

//  Receive a reply within timeout_ms: two frames, the body exactly one
//  map (asserted).
void
    rt_recv (zsock_t *sock, rt_reply_t *reply, int timeout_ms);

void
    rt_reply_fini (rt_reply_t *reply);

//  The value of key in map, or NULL (also when map is not a map).
const msgpack_object *
    rt_get (const msgpack_object *map, const char *key);

//  The uint at key (asserted present and a uint).
uint64_t
    rt_uint (const msgpack_object *map, const char *key);

//  value is the str text.
bool
    rt_str_is (const msgpack_object *value, const char *text);

//  message (a str) contains text.
bool
    rt_has (const msgpack_object *message, const char *text);

//  The reply is ERROR code to rid (has_rid false: rid nil) and its message
//  contains text (NULL: any).
void
    rt_check_error (const rt_reply_t *reply, const char *code, bool has_rid, uint64_t rid,
                    const char *text);

//  Pack by a format: M map (int count), A array (int count), s str,
//  u uint64_t, i int64_t, n nil, t true, f false; spaces are for the reader.
void
    rt_vpack (msgpack_packer *pk, const char *format, va_list args);

//  Send [command, body packed by format].
void
    rt_send (zsock_t *sock, const char *command, const char *format, ...);
void
    rt_vsend (zsock_t *sock, const char *command, const char *format, va_list args);

//  A CURVE keypair, in Z85.
typedef struct {
    char name [32];
    char public_txt [41];
    char secret_txt [41];
} rt_key_t;

//  A new keypair named name; saved (zcert, secret and public) as
//  dir/file when dir is not NULL.
void
    rt_key_make (rt_key_t *key, const char *name, const char *dir, const char *file);

#endif
