/*  =========================================================================
    trimclient - TRIM {unarchived: true} on a raw DEALER (trimclient.h)
    =========================================================================
*/

#include <criterion/criterion.h>
#include <string.h>

#include "brokerutil.h"
#include "trimclient.h"

uint64_t
tc_trim (const char *api, const char *prefix, uint64_t until, int timeout_ms)
{
    zsock_t *dealer = bu_dealer_new (api);
    cr_assert_not_null (dealer);
    msgpack_sbuffer body;
    msgpack_sbuffer_init (&body);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &body, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 4);
    msgpack_pack_str_with_body (&pk, "rid", 3);
    msgpack_pack_uint64 (&pk, 77);
    msgpack_pack_str_with_body (&pk, "prefix", 6);
    msgpack_pack_str_with_body (&pk, prefix, strlen (prefix));
    msgpack_pack_str_with_body (&pk, "until", 5);
    msgpack_pack_uint64 (&pk, until);
    msgpack_pack_str_with_body (&pk, "unarchived", 10);
    msgpack_pack_true (&pk);
    cr_assert_eq (bu_send_sbuf (dealer, "TRIM", &body), 0);
    msgpack_sbuffer_destroy (&body);
    zmsg_t *reply = bu_recv (dealer, timeout_ms);
    zsock_destroy (&dealer);
    cr_assert_not_null (reply, "no answer to TRIM");
    char *command = zmsg_popstr (reply);
    zframe_t *frame = zmsg_pop (reply);
    zmsg_destroy (&reply);
    bool trimmed = command && strcmp (command, "TRIM") == 0 && frame;
    uint64_t first = 0;
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    if (trimmed && msgpack_unpack_next (&unpacked, (const char *) zframe_data (frame),
                                        zframe_size (frame), NULL) == MSGPACK_UNPACK_SUCCESS
    &&  unpacked.data.type == MSGPACK_OBJECT_MAP) {
        const msgpack_object_map *map = &unpacked.data.via.map;
        for (uint32_t index = 0; index < map->size; index++)
            if (map->ptr [index].key.type == MSGPACK_OBJECT_STR
            &&  map->ptr [index].key.via.str.size == 5
            &&  memcmp (map->ptr [index].key.via.str.ptr, "first", 5) == 0
            &&  map->ptr [index].val.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                first = map->ptr [index].val.via.u64;
    }
    msgpack_unpacked_destroy (&unpacked);
    zframe_destroy (&frame);
    cr_assert (trimmed, "TRIM answered %s", command? command: "nothing");
    zstr_free (&command);
    return first;
}
