/*  =========================================================================
    herald_err - Herald's one error enum, its names and its wire codes

    Every runtime failure in Herald is a herald_err.  The protocol block
    (1..10) maps one-to-one to the `code` strings of HWP/1 ERROR replies; the
    local block (20..) never leaves the process.  Keeping both tables in one
    place means a new code is added once, and bindings map each value to
    one exception class.
    =========================================================================
*/

#include <string.h>
#include "herald.h"

#define S_STRINGIFY2(x) #x
#define S_STRINGIFY(x)  S_STRINGIFY2 (x)

//  Wire codes, indexed by the protocol block of herald_err.  The order is
//  docs/protocol.md's, which is also the enum's.
static const char *s_codes [] = {
    NULL,
    "bad_request",
    "too_large",
    "conflict",
    "not_leader",
    "unauthorized",
    "overloaded",
    "unknown_command",
    "unsupported",
    "internal",
    "trimmed"                       //  an addition to HWP/1 (docs/protocol.md, "Trimming")
};
#define S_CODE_COUNT (sizeof (s_codes) / sizeof (s_codes [0]))

//  A short description for people; static, never NULL, so a caller can
//  print it without checking.
const char *
herald_strerror (herald_err err)
{
    switch (err) {
        case HERALD_OK:                     return "success";
        case HERALD_ERR_BAD_REQUEST:        return "bad request";
        case HERALD_ERR_TOO_LARGE:          return "too large";
        case HERALD_ERR_CONFLICT:           return "version conflict";
        case HERALD_ERR_NOT_LEADER:         return "not the leader";
        case HERALD_ERR_UNAUTHORIZED:       return "unauthorized";
        case HERALD_ERR_OVERLOADED:         return "overloaded";
        case HERALD_ERR_UNKNOWN_COMMAND:    return "unknown command";
        case HERALD_ERR_UNSUPPORTED:        return "unsupported";
        case HERALD_ERR_INTERNAL:           return "internal error";
        case HERALD_ERR_TRIMMED:            return "trimmed from the log";
        case HERALD_ERR_IO:                 return "input/output error";
        case HERALD_ERR_LOCKED:             return "data directory in use";
        case HERALD_ERR_NOT_A_STORE:        return "not a Herald store";
        case HERALD_ERR_CORRUPT:            return "corrupt data";
        case HERALD_ERR_NOT_FOUND:          return "not found";
        case HERALD_ERR_NOMEM:              return "out of memory";
        case HERALD_ERR_TIMEOUT:            return "timed out";
        case HERALD_ERR_UNAVAILABLE:        return "broker unavailable";
        case HERALD_ERR_INVALID:            return "invalid argument";
        case HERALD_ERR_DATA_LOST:          return "events lost by the broker";
        case HERALD_ERR_ID_REUSED:          return "event id reused with different content";
    }
    return "unknown error";
}

//  The wire code of a protocol error; local conditions have none, so the
//  caller decides what to send instead (herald_msg sends `internal`).
const char *
herald_err_code (herald_err err)
{
    if (err > HERALD_OK && (size_t) err < S_CODE_COUNT)
        return s_codes [err];
    return NULL;
}

//  Reverse of herald_err_code.  A code this build does not know came from a
//  newer peer; `internal` is the only safe reading of it.
herald_err
herald_err_from_code (const char *code, size_t len)
{
    if (code) {
        size_t index;
        for (index = 1; index < S_CODE_COUNT; index++)
            if (strlen (s_codes [index]) == len
            &&  memcmp (s_codes [index], code, len) == 0)
                return (herald_err) index;
    }
    return HERALD_ERR_INTERNAL;
}

//  Built from the header's macros so the string cannot drift from them.
const char *
herald_version (void)
{
    return S_STRINGIFY (HERALD_VERSION_MAJOR) "."
           S_STRINGIFY (HERALD_VERSION_MINOR) "."
           S_STRINGIFY (HERALD_VERSION_PATCH);
}
