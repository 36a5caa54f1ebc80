/*  =========================================================================
    herald.h - the public API of libherald

    Herald is an event-sourcing message bus: a broker (heraldd) keeps an
    ordered log of MessagePack events in RocksDB and fans it out over ZeroMQ;
    this library is what a service embeds to talk to it.

    This header holds what every part of Herald shares: the error enum and
    version.  The agent API (subscribe, publish, replay) joins it with the
    agent itself.
    =========================================================================
*/

#ifndef HERALD_H_INCLUDED
#define HERALD_H_INCLUDED

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HERALD_VERSION_MAJOR 0
#define HERALD_VERSION_MINOR 1
#define HERALD_VERSION_PATCH 0

//  Every runtime failure in Herald is one of these.  The first block maps
//  one-to-one to the `code` strings of HWP/1 ERROR replies (PROTOCOL.md);
//  the second block is local to a process and never sent on the wire.
//  Bindings map each to one exception class.
typedef enum {
    HERALD_OK = 0,
    //  Protocol error codes, in the order PROTOCOL.md lists them
    HERALD_ERR_BAD_REQUEST = 1,         //  bad_request
    HERALD_ERR_TOO_LARGE = 2,           //  too_large
    HERALD_ERR_CONFLICT = 3,            //  conflict
    HERALD_ERR_NOT_LEADER = 4,          //  not_leader
    HERALD_ERR_UNAUTHORIZED = 5,        //  unauthorized
    HERALD_ERR_OVERLOADED = 6,          //  overloaded
    HERALD_ERR_UNKNOWN_COMMAND = 7,     //  unknown_command
    HERALD_ERR_UNSUPPORTED = 8,         //  unsupported
    HERALD_ERR_INTERNAL = 9,            //  internal
    //  Local conditions
    HERALD_ERR_IO = 20,                 //  the operating system or RocksDB failed
    HERALD_ERR_LOCKED = 21,             //  a data directory is in use by another process
    HERALD_ERR_NOT_A_STORE = 22,        //  a directory holds something that is not a Herald store
    HERALD_ERR_CORRUPT = 23,            //  stored or local data failed a check
    HERALD_ERR_NOT_FOUND = 24,          //  no such event, topic or stream
    HERALD_ERR_NOMEM = 25,              //  an allocation failed
    HERALD_ERR_TIMEOUT = 26,            //  no answer in time
    HERALD_ERR_UNAVAILABLE = 27,        //  the broker cannot be reached
    HERALD_ERR_INVALID = 28             //  a caller passed arguments the API does not accept
} herald_err;

//  A short, static English description of err ("bad request", ...).
const char *
    herald_strerror (herald_err err);

//  The HWP/1 `code` string for a protocol error ("bad_request", ...), or
//  NULL for HERALD_OK and for local conditions, which have no wire form.
const char *
    herald_err_code (herald_err err);

//  The herald_err for an HWP/1 `code` string of len bytes.  An unknown code
//  (from a newer broker) maps to HERALD_ERR_INTERNAL.
herald_err
    herald_err_from_code (const char *code, size_t len);

//  The library's version, "MAJOR.MINOR.PATCH".
const char *
    herald_version (void);

#ifdef __cplusplus
}
#endif

#endif
