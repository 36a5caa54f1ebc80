/*  =========================================================================
    herald_event - the event envelope: encode, decode, validate

    An event as stored, published and replayed is one MessagePack map
    (docs/protocol.md, "The event envelope").  This class turns a herald_event_t
    into envelope bytes and back, and validates every field the way the
    contract says.  It does no I/O and allocates only from the msgpack zone
    a caller passes in.

    A herald_event_t is a plain value: every pointer in it is borrowed, from
    the bytes it was decoded from, from the zone, or from the caller.
    =========================================================================
*/

#ifndef HERALD_EVENT_H_INCLUDED
#define HERALD_EVENT_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <msgpack.h>
#include "herald.h"

#define HERALD_ID_BYTES             16
#define HERALD_TOPIC_MAX            255
#define HERALD_TYPE_MAX             255
#define HERALD_META_MAX_ENTRIES     64
#define HERALD_META_KEY_MAX         64
#define HERALD_META_VALUE_MAX       4096
#define HERALD_MAX_EVENT_BYTES      (1024 * 1024)   //  default max_event_bytes
#define HERALD_MAX_BATCH            1000            //  default max_batch

//  One `meta` entry; both strings are borrowed and not NUL-terminated.
typedef struct {
    const char *key;
    size_t key_len;
    const char *value;
    size_t value_len;
} herald_kv_t;

//  An event.  Publishers set id, topic, data and the optional fields; the
//  broker sets seq, ver and ts.  Strings are not NUL-terminated.
typedef struct {
    uint8_t id [HERALD_ID_BYTES];
    const char *topic;              //  1..255 bytes of UTF-8, no NUL, not "$..."
    size_t topic_len;
    uint64_t seq;                   //  0 until stored
    uint64_t ver;                   //  0 until stored
    uint64_t ts;                    //  0 until stored
    const char *type;               //  NULL when absent
    size_t type_len;
    bool has_schema;                //  false: schema is absent, which means 1
    uint64_t schema;
    const herald_kv_t *meta;        //  NULL when absent
    size_t meta_count;
    const uint8_t *data;            //  may be NULL when data_len is 0
    size_t data_len;
    //  In a PUBLISH request only; never part of a stored envelope
    bool has_expect;
    uint64_t expect;
    //  Set by decoders: bytes of the event map as received
    size_t encoded_size;
} herald_event_t;

//  Room for a message naming a path of PATH_MAX (4096) bytes and what is
//  said about it (a RocksDB status, an errno string); a longer one is cut
//  in the middle, at words, with "…" (herald_text).
#define HERALD_ERROR_MESSAGE_MAX    4608

//  HERALD'S ONE INTERNAL ERROR CONVENTION (every library and program):
//
//  - A function that can fail returns herald_err (HERALD_OK = 0) and, below
//    the public API, fills a caller's herald_error_t with the code and a
//    message for people that names what was being done and why it failed
//    (a path, a seq, RocksDB's status, strerror).  The public API records
//    the message for the caller's thread (herald_agent_last_error).
//  - A failure is never turned into a normal answer: a lookup that fails is
//    an error, not "not found" or "version 0"; a scan that cannot read ends
//    with an error, not "the end of the log" (a stream then ends with ERROR
//    `internal`, never END `done`); an actor whose sockets failed does not
//    signal a good start; a full queue refuses (or blocks, bounded) and
//    counts, never drops in silence; an encoder checks every pack call.
//  - What no caller can be told (a background thread) is logged, rate-
//    limited, and counted in STATUS or the agent's stats.
//  - A store that failed after accepting writes stops the broker loudly,
//    after answering every request in flight.
//  - Messages are never cut mid-word: HERALD_ERROR_MESSAGE_MAX holds a path
//    of PATH_MAX and what is said of it; a fixed public field cuts in the
//    middle at a word, marked (herald_text_fit).
//
//  The store's part (HERALD_ERR_IO, _CORRUPT, _NOT_FOUND) is spelled out in
//  store/herald_store.c, the agent's in agents/herald_agent_priv.h.
//
//  What a decoder found wrong: the protocol error to reply with, the field
//  that failed (a static string such as "events[3].topic"), and a message
//  for people.  rid is the request id when it could be read.
typedef struct {
    herald_err code;
    char field [64];
    char message [HERALD_ERROR_MESSAGE_MAX];
    bool has_rid;
    uint64_t rid;
} herald_error_t;

//  Fill err with code, field and a printf-style message ("field: message"
//  when field is not empty), cut as herald_text cuts if it is too long;
//  returns code.
herald_err
    herald_error_set (herald_error_t *err, herald_err code, const char *field,
                      const char *format, ...) __attribute__ ((format (printf, 4, 5)));

//  Append the stored envelope of event (id, topic, seq, ver, ts, and type,
//  schema, meta, data when present; never expect) to buffer.  Keys are
//  written in this fixed order so herald_event_peek can read the head of
//  the envelope without a full decode.  Returns 0, or -1 if out of memory.
int
    herald_event_encode (const herald_event_t *event, msgpack_sbuffer *buffer);

//  Exact size herald_event_encode would write for event.
size_t
    herald_event_encoded_size (const herald_event_t *event);

//  Decode and validate a stored envelope: every field of docs/protocol.md's
//  table, with seq, ver and ts required.  Pointers in event borrow bytes
//  and zone (meta entries live in zone).  Unknown keys are ignored.
//  Returns HERALD_OK, or fills err (HERALD_ERR_BAD_REQUEST naming the
//  field) and returns its code.  Never reads outside bytes[0..len).
herald_err
    herald_event_decode (herald_event_t *event, const void *bytes, size_t len,
                         msgpack_zone *zone, herald_error_t *err);

//  Validate a publisher's event map, already parsed by msgpack-c, into
//  event (seq, ver, ts left 0; expect read when present).  field_prefix
//  names the event in errors ("events[3]").  Used by PUBLISH decoding.
herald_err
    herald_event_from_object (herald_event_t *event, const msgpack_object *object,
                              msgpack_zone *zone, const char *field_prefix,
                              herald_error_t *err);

//  The same, but leaves encoded_size 0: for a caller that measured the
//  event's bytes as received (PUBLISH decoding), which saves packing the
//  object again only to count its size.
herald_err
    herald_event_from_object_unsized (herald_event_t *event, const msgpack_object *object,
                                      msgpack_zone *zone, const char *field_prefix,
                                      herald_error_t *err);

//  Read topic, seq, ver and ts from the head of an envelope written by
//  herald_event_encode, without allocating.  Returns true when the bytes
//  have that layout; false otherwise (then use herald_event_decode).
bool
    herald_event_peek (const void *bytes, size_t len, const char **topic,
                       size_t *topic_len, uint64_t *seq, uint64_t *ver, uint64_t *ts);

//  True when topic[0..len) is a valid topic: 1..255 bytes, UTF-8, no NUL,
//  not beginning with '$'.
bool
    herald_topic_valid (const char *topic, size_t len);

//  True when s[0..len) is well-formed UTF-8 (no overlongs, no surrogates).
bool
    herald_utf8_valid (const char *s, size_t len);

//  ---------------------------------------------------------------------
//  Codec helpers shared with herald_msg (internal to protocol/; not part of
//  the agent API).

//  One key a decoder looks for in a map.  herald_event_fields sets value to
//  the key's value (nil included), or NULL when the key is absent.
typedef struct {
    const char *name;
    const msgpack_object *value;
} herald_field_t;

//  Advance *offset past one complete MessagePack object in bytes[0..len),
//  checking every length against the bytes left and nesting against a
//  depth limit.  Returns false on truncated, malformed or too deep input.
bool
    herald_event_skip (const void *bytes, size_t len, size_t *offset);

//  Unpack bytes[0..len) as exactly one MessagePack object into object
//  (str and bin borrow bytes; arrays and maps live in zone).  Empty input,
//  malformed input and trailing bytes are HERALD_ERR_BAD_REQUEST naming
//  field; a failed allocation is HERALD_ERR_NOMEM.
herald_err
    herald_event_unpack (const void *bytes, size_t len, msgpack_zone *zone,
                         msgpack_object *object, const char *field,
                         herald_error_t *err);

//  True when key is the str name (a map key, as a body's keys are read).
bool
    herald_event_key_is (const msgpack_object *key, const char *name);

//  Find fields[0..count) in map (a MSGPACK_OBJECT_MAP) by their str keys.
//  Non-str keys and unknown keys are ignored; a str key present twice is
//  HERALD_ERR_BAD_REQUEST, named with prefix ("events[3].topic").
herald_err
    herald_event_fields (const msgpack_object *map, herald_field_t *fields,
                         size_t count, msgpack_zone *zone, const char *prefix,
                         herald_error_t *err);

#endif
