/*  =========================================================================
    herald_crc - CRC32C (Castagnoli) for the agent's local state files

    The table version is the classic byte-at-a-time reflected CRC with
    polynomial 0x82F63B78; on x86-64 with SSE4.2 the hardware instruction
    computes the same function 8 bytes at a time.  The choice is made once.
    =========================================================================
*/

#include <stdbool.h>
#include <string.h>
#include <pthread.h>
#include "herald_crc.h"

static uint32_t s_table [256];
static bool s_hardware;
static pthread_once_t s_once = PTHREAD_ONCE_INIT;

static void
s_init (void)
{
    for (uint32_t index = 0; index < 256; index++) {
        uint32_t crc = index;
        for (int bit = 0; bit < 8; bit++)
            crc = (crc >> 1) ^ (0x82F63B78U & (0U - (crc & 1)));
        s_table [index] = crc;
    }
#if defined (__x86_64__) && (defined (__GNUC__) || defined (__clang__))
    __builtin_cpu_init ();
    s_hardware = __builtin_cpu_supports ("sse4.2");
#endif
}

static uint32_t
s_software (uint32_t crc, const uint8_t *bytes, size_t len)
{
    while (len--)
        crc = s_table [(crc ^ *bytes++) & 0xFF] ^ (crc >> 8);
    return crc;
}

#if defined (__x86_64__) && (defined (__GNUC__) || defined (__clang__))
__attribute__ ((target ("sse4.2")))
static uint32_t
s_hardware_crc (uint32_t crc, const uint8_t *bytes, size_t len)
{
    uint64_t crc64 = crc;
    while (len >= 8) {
        uint64_t word;
        memcpy (&word, bytes, 8);
        crc64 = __builtin_ia32_crc32di (crc64, word);
        bytes += 8;
        len -= 8;
    }
    crc = (uint32_t) crc64;
    while (len--)
        crc = __builtin_ia32_crc32qi (crc, *bytes++);
    return crc;
}
#endif

uint32_t
herald_crc32c (uint32_t crc, const void *bytes, size_t len)
{
    pthread_once (&s_once, s_init);
    crc = ~crc;
#if defined (__x86_64__) && (defined (__GNUC__) || defined (__clang__))
    if (s_hardware)
        return ~s_hardware_crc (crc, (const uint8_t *) bytes, len);
#endif
    return ~s_software (crc, (const uint8_t *) bytes, len);
}
