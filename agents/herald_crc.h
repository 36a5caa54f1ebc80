/*  =========================================================================
    herald_crc - CRC32C (Castagnoli) for the agent's local state files

    Every record the agent writes to its state directory (checkpoint slots,
    dedup-window entries, outbox records, snapshots) carries a CRC32C, so
    a torn or damaged file is detected instead of trusted.  Uses the SSE4.2
    crc32 instruction when the CPU has it, else a table.
    =========================================================================
*/

#ifndef HERALD_CRC_H_INCLUDED
#define HERALD_CRC_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

//  CRC32C of bytes[0..len), continuing from crc (start with 0).
uint32_t
    herald_crc32c (uint32_t crc, const void *bytes, size_t len);

#endif
