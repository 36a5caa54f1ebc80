/*  =========================================================================
    herald_uuid - UUIDv7 event ids for publishers

    Layout (RFC 9562, section 5.7), big-endian:

        0                   1                   2                   3
        +-------------------------------+-------------------------------+
        |                    unix_ts_ms (48 bits)                       |
        +---------------+---------------+-------+-----------------------+
        |  ... ts_ms    | ver=7 | rand_a: 12-bit counter                |
        +---+-----------+-----------------------------------------------+
        |var| rand_b: 62 random bits                                    |
        +---+-----------------------------------------------------------+

    DESIGN
    Ids must be strictly increasing within a process, also when thousands
    are made in one millisecond.  The state (last millisecond, counter) sits
    behind one mutex.  Each new millisecond reseeds the counter with 11
    random bits, so at least 2048 more ids fit before it overflows; on
    overflow the timestamp moves one millisecond ahead of the clock (and
    stays there until the clock catches up), as RFC 9562 6.2 allows.  A
    clock that steps back is treated the same way: the last millisecond is
    kept.  Random bytes come from getrandom() through a small pool so one id
    costs no system call most of the time.
    =========================================================================
*/

#include <pthread.h>
#include <string.h>
#include <time.h>
#include <sys/random.h>
#include "herald_uuid.h"

#define S_POOL_SIZE 256

static pthread_mutex_t s_mutex = PTHREAD_MUTEX_INITIALIZER;
static uint64_t s_last_ms;          //  timestamp of the last id made
static uint16_t s_counter;          //  its 12-bit counter
static uint8_t s_pool [S_POOL_SIZE];
static size_t s_pool_used = S_POOL_SIZE;

//  Copy n random bytes from the pool, refilling it from getrandom().  If
//  the kernel has no entropy to give (never, after early boot) fall back to
//  the clock so ids stay unique by their counter; their randomness is only
//  collision insurance across processes.  Called with s_mutex held.
static void
s_random (uint8_t *out, size_t n)
{
    if (S_POOL_SIZE - s_pool_used < n) {
        size_t filled = 0;
        while (filled < S_POOL_SIZE) {
            ssize_t rc = getrandom (s_pool + filled, S_POOL_SIZE - filled, 0);
            if (rc <= 0)
                break;
            filled += (size_t) rc;
        }
        if (filled < S_POOL_SIZE) {
            struct timespec now;
            clock_gettime (CLOCK_MONOTONIC, &now);
            size_t index;
            for (index = filled; index < S_POOL_SIZE; index++)
                s_pool [index] = (uint8_t) ((uint64_t) now.tv_nsec >> (index % 8 * 8))
                               ^ (uint8_t) index;
        }
        s_pool_used = 0;
    }
    memcpy (out, s_pool + s_pool_used, n);
    s_pool_used += n;
}

static uint64_t
s_now_ms (void)
{
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    return (uint64_t) now.tv_sec * 1000 + (uint64_t) now.tv_nsec / 1000000;
}

void
herald_uuid_v7 (uint8_t id [16])
{
    uint8_t random [10];
    pthread_mutex_lock (&s_mutex);
    s_random (random, sizeof (random));
    uint64_t ms = s_now_ms ();
    if (ms > s_last_ms) {
        s_last_ms = ms;
        s_counter = (uint16_t) (((random [0] << 8) | random [1]) & 0x07ff);
    }
    else
    if (s_counter < 0x0fff)
        s_counter++;
    else {
        s_last_ms++;
        s_counter = (uint16_t) (((random [0] << 8) | random [1]) & 0x07ff);
    }
    ms = s_last_ms;
    uint16_t counter = s_counter;
    pthread_mutex_unlock (&s_mutex);

    int index;
    for (index = 0; index < 6; index++)
        id [index] = (uint8_t) (ms >> (40 - 8 * index));
    id [6] = (uint8_t) (0x70 | (counter >> 8));
    id [7] = (uint8_t) counter;
    memcpy (id + 8, random + 2, 8);
    id [8] = (uint8_t) (0x80 | (id [8] & 0x3f));
}

void
herald_uuid_format (const uint8_t id [16], char out [HERALD_UUID_STR_LEN + 1])
{
    static const char hex [] = "0123456789abcdef";
    size_t index, pos = 0;
    for (index = 0; index < 16; index++) {
        if (index == 4 || index == 6 || index == 8 || index == 10)
            out [pos++] = '-';
        out [pos++] = hex [id [index] >> 4];
        out [pos++] = hex [id [index] & 0x0f];
    }
    out [pos] = '\0';
}

static int
s_hex (char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

//  Either case is accepted; dashes only at the canonical places, so "a-b"
//  typos are refused rather than silently read as another id.  id is left
//  untouched when text is refused.
bool
herald_uuid_parse (const char *text, size_t len, uint8_t id [16])
{
    bool dashed = len == HERALD_UUID_STR_LEN;
    if (!text || (!dashed && len != 32))
        return false;
    uint8_t out [16];
    size_t pos = 0, index;
    for (index = 0; index < 16; index++) {
        if (dashed && (index == 4 || index == 6 || index == 8 || index == 10)) {
            if (text [pos] != '-')
                return false;
            pos++;
        }
        int hi = s_hex (text [pos]);
        int lo = s_hex (text [pos + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out [index] = (uint8_t) (hi << 4 | lo);
        pos += 2;
    }
    memcpy (id, out, 16);
    return true;
}

uint64_t
herald_uuid_v7_ms (const uint8_t id [16])
{
    uint64_t ms = 0;
    int index;
    for (index = 0; index < 6; index++)
        ms = (ms << 8) | id [index];
    return ms;
}
