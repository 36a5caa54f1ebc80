/*  =========================================================================
    test_herald_uuid - UUIDv7 ids: layout, order, text form
    =========================================================================
*/

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "herald_uuid.h"

static uint64_t
s_now_ms (void)
{
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    return (uint64_t) now.tv_sec * 1000 + (uint64_t) now.tv_nsec / 1000000;
}

Test (herald_uuid, version_is_7_and_variant_is_rfc)
{
    int index;
    for (index = 0; index < 1000; index++) {
        uint8_t id [16];
        herald_uuid_v7 (id);
        cr_assert_eq (id [6] >> 4, 7);
        cr_assert_eq (id [8] >> 6, 2);
    }
}

Test (herald_uuid, timestamp_is_the_current_unix_millisecond)
{
    uint64_t before = s_now_ms ();
    uint8_t id [16];
    herald_uuid_v7 (id);
    uint64_t after = s_now_ms ();
    uint64_t ms = herald_uuid_v7_ms (id);
    cr_assert_geq (ms, before);
    //  Up to a few ms ahead when earlier tests exhausted a counter
    cr_assert_leq (ms, after + 100);
}

Test (herald_uuid, ids_strictly_increase_over_100k)
{
    const int count = 100000;
    uint8_t previous [16], id [16];
    herald_uuid_v7 (previous);
    int index;
    for (index = 0; index < count; index++) {
        herald_uuid_v7 (id);
        cr_assert_gt (memcmp (id, previous, 16), 0, "id %d not after its predecessor", index);
        memcpy (previous, id, 16);
    }
}

#define S_THREADS 4
#define S_PER_THREAD 20000

static void *
s_maker (void *args)
{
    uint8_t *ids = (uint8_t *) args;
    int index;
    for (index = 0; index < S_PER_THREAD; index++)
        herald_uuid_v7 (ids + 16 * index);
    return NULL;
}

static int
s_compare (const void *a, const void *b)
{
    return memcmp (a, b, 16);
}

Test (herald_uuid, ids_are_unique_across_threads)
{
    uint8_t *ids = malloc (S_THREADS * S_PER_THREAD * 16);
    pthread_t threads [S_THREADS];
    int index;
    for (index = 0; index < S_THREADS; index++)
        pthread_create (&threads [index], NULL, s_maker, ids + index * S_PER_THREAD * 16);
    for (index = 0; index < S_THREADS; index++)
        pthread_join (threads [index], NULL);
    //  Each thread's own ids increase
    for (index = 1; index < S_THREADS * S_PER_THREAD; index++)
        if (index % S_PER_THREAD)
            cr_assert_gt (memcmp (ids + 16 * index, ids + 16 * (index - 1), 16), 0);
    qsort (ids, S_THREADS * S_PER_THREAD, 16, s_compare);
    for (index = 1; index < S_THREADS * S_PER_THREAD; index++)
        cr_assert_neq (memcmp (ids + 16 * index, ids + 16 * (index - 1), 16), 0);
    free (ids);
}

Test (herald_uuid, format_writes_lower_case_with_dashes)
{
    static const uint8_t id [16] = {
        0x01, 0x8f, 0xAB, 0xCD, 0xEF, 0x01, 0x72, 0x34,
        0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67
    };
    char text [HERALD_UUID_STR_LEN + 1];
    herald_uuid_format (id, text);
    cr_assert_str_eq (text, "018fabcd-ef01-7234-89ab-cdef01234567");
}

Test (herald_uuid, parse_reads_dashed_and_plain_forms_in_either_case)
{
    static const uint8_t expected [16] = {
        0x01, 0x8f, 0xab, 0xcd, 0xef, 0x01, 0x72, 0x34,
        0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67
    };
    uint8_t id [16];
    cr_assert (herald_uuid_parse ("018fabcd-ef01-7234-89ab-cdef01234567", 36, id));
    cr_assert_eq (memcmp (id, expected, 16), 0);
    cr_assert (herald_uuid_parse ("018FABCDEF01723489ABCDEF01234567", 32, id));
    cr_assert_eq (memcmp (id, expected, 16), 0);
}

Test (herald_uuid, parse_refuses_malformed_text)
{
    uint8_t id [16];
    cr_assert_not (herald_uuid_parse ("018fabcd-ef01-7234-89ab-cdef0123456", 35, id));
    cr_assert_not (herald_uuid_parse ("018fabcdef01-7234-89ab-cdef01234567-", 36, id));
    cr_assert_not (herald_uuid_parse ("018fabcd-ef01-7234-89ab-cdef0123456g", 36, id));
    cr_assert_not (herald_uuid_parse ("018fabcd_ef01_7234_89ab_cdef01234567", 36, id));
    cr_assert_not (herald_uuid_parse ("", 0, id));
    cr_assert_not (herald_uuid_parse (NULL, 36, id));
}

Test (herald_uuid, format_and_parse_round_trip)
{
    uint8_t id [16], back [16];
    char text [HERALD_UUID_STR_LEN + 1];
    herald_uuid_v7 (id);
    herald_uuid_format (id, text);
    cr_assert_eq (strlen (text), HERALD_UUID_STR_LEN);
    cr_assert (herald_uuid_parse (text, strlen (text), back));
    cr_assert_eq (memcmp (id, back, 16), 0);
}

Test (herald_uuid, v7_ms_reads_the_top_48_bits)
{
    static const uint8_t id [16] = { 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x70 };
    cr_assert_eq (herald_uuid_v7_ms (id), 0x010203040506ULL);
}
