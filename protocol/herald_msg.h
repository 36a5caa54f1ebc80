/*  =========================================================================
    herald_msg - HWP/1 message bodies: encode, decode, validate

    Every message on the api socket is a command frame (upper-case ASCII)
    and a MessagePack map body (docs/protocol.md, "Messages on the api socket"); heartbeats
    on fanout are `$hb` and a map.  This class maps each body to a
    herald_msg_t and back.  It does no I/O: frames are the caller's.

    Direction matters because STATUS is both a request and its reply:
    herald_msg_type_from_command takes `reply` to tell them apart.

    Decoding validates every rule of docs/protocol.md ("The rules a decoder enforces") that a
    body alone can show, and fills a herald_error_t that names the field.
    A herald_msg_t is a plain value; its pointers borrow the body bytes and
    the msgpack zone given to decode, which must outlive it.  The caller
    clears or frees the zone between messages.
    =========================================================================
*/

#ifndef HERALD_MSG_H_INCLUDED
#define HERALD_MSG_H_INCLUDED

#include "herald_event.h"

#define HERALD_PROTO_VERSION        1
#define HERALD_CREDIT_DEFAULT       1000
#define HERALD_CREDIT_MAX           1000000
#define HERALD_PREFIXES_MAX         256         //  prefixes per REPLAY
#define HERALD_CLUSTER_MAX          64          //  endpoints in WELCOME

typedef enum {
    HERALD_MSG_INVALID = 0,
    //  client -> broker
    HERALD_MSG_PUBLISH,
    HERALD_MSG_REPLAY,
    HERALD_MSG_READ,
    HERALD_MSG_CREDIT,
    HERALD_MSG_CANCEL,
    HERALD_MSG_STATUS,
    HERALD_MSG_HELLO,
    HERALD_MSG_ACL,                 //  an addition: the ACL admin command (security)
    //  broker -> client
    HERALD_MSG_ACK,
    HERALD_MSG_EVENTS,              //  body {rid}; envelopes follow as frames
    HERALD_MSG_END,
    HERALD_MSG_STATUS_REPLY,        //  command frame "STATUS"
    HERALD_MSG_WELCOME,
    HERALD_MSG_ERROR,
    HERALD_MSG_ACL_REPLY,           //  command frame "ACL"
    //  fanout
    HERALD_MSG_HEARTBEAT            //  command frame "$hb"
} herald_msg_type_t;

//  What an ACL request asks (docs/protocol.md, "Security: the ACL command").
typedef enum {
    HERALD_MSG_ACL_RELOAD = 1,      //  re-read the ACL file now
    HERALD_MSG_ACL_SHOW             //  the table in force
} herald_msg_acl_op_t;

//  A borrowed string, not NUL-terminated.
typedef struct {
    const char *ptr;
    size_t len;
} herald_str_t;

//  One loss the store's operator accepted (`herald repair --accept-loss`),
//  as WELCOME and STATUS list them: events after seq lost_after may have
//  been lost, and their seqs were given again to new events.  lineage
//  counts the accepted losses: 1 for the first, 2 for the second, ...
typedef struct {
    uint64_t lineage;
    uint64_t lost_after;            //  the head seq kept
    uint64_t ts;                    //  when the loss was accepted, Unix ns
} herald_loss_t;

//  Limits a broker enforces while decoding PUBLISH.
typedef struct {
    size_t max_event_bytes;         //  HERALD_MAX_EVENT_BYTES by default
    size_t max_batch;               //  HERALD_MAX_BATCH by default
} herald_limits_t;

//  Key/value pairs already encoded as msgpack (count pairs in len bytes),
//  appended to the map of a STATUS reply, WELCOME or $hb: the cluster's
//  keys whose values are not uints (str, nil, arrays of maps).  Encode
//  only: decode ignores such keys, as it ignores every unknown key.
typedef struct {
    const void *data;
    size_t len;
    size_t count;
} herald_msg_raw_t;

//  One message.  Only the member of the union named by type is meaningful.
//  `has_*` flags mark optional fields; absent fields are zero.
typedef struct {
    herald_msg_type_t type;
    bool has_rid;                   //  false only in ERROR (rid nil) and heartbeat
    uint64_t rid;
    union {
        struct {
            herald_event_t *events;
            size_t count;
        } publish;
        struct {
            bool has_from;          //  neither from nor from_ts: from = 1
            uint64_t from;
            bool has_from_ts;
            uint64_t from_ts;
            bool has_to;
            uint64_t to;
            bool has_until_ts;
            uint64_t until_ts;
            herald_str_t *prefixes;
            size_t prefix_count;
            uint64_t credit;        //  default and cap applied by decode
            bool pack;              //  packed EVENTS frames (an addition)
        } replay;
        struct {
            herald_str_t topic;
            uint64_t from_ver;      //  1 when absent
            bool has_to_ver;
            uint64_t to_ver;
            uint64_t credit;
            bool pack;              //  packed EVENTS frames (an addition)
        } read;
        struct {
            uint64_t credit;        //  cap applied by decode
        } credit;
        struct {
            uint64_t proto;
            herald_str_t client;    //  ptr NULL when absent
        } hello;
        struct {
            const uint64_t *seq;
            const uint64_t *ver;
            const bool *dup;
            //  Optional (an addition to HWP/1): true where a duplicate's
            //  topic or data differ from what its id was stored with.
            //  NULL: absent, all false.  Encode sends the key only when
            //  one entry is true.
            const bool *reused;
            size_t count;
        } ack;
        struct {
            uint64_t last;
            uint64_t head;
            herald_str_t reason;    //  "done", "cancelled", "expired"
            uint64_t lineage;       //  accepted losses of the store; absent: 0
        } end;
        struct {
            uint64_t head;
            uint64_t topics;
            uint64_t events;
            herald_str_t role;      //  "standalone", "leader", "follower"
            herald_str_t node;
            uint64_t uptime_s;
            //  The store's accepted losses (absent: 0 and none), oldest first
            uint64_t lineage;
            const herald_loss_t *losses;
            size_t loss_count;
            //  Extra operator figures: encoded after the fixed keys, as
            //  str -> uint pairs; decode fills them from unknown uint keys.
            const herald_str_t *extra_keys;
            const uint64_t *extra_values;
            size_t extra_count;
            herald_msg_raw_t raw;   //  more keys, any values (encode only; a STATUS
                                    //  request: its additions, histograms: true)
        } status;
        struct {
            uint64_t proto;
            herald_str_t node;
            uint64_t head;
            herald_str_t fanout;
            const herald_str_t *cluster;
            size_t cluster_count;
            //  The store's accepted losses (absent: 0 and none), oldest first
            uint64_t lineage;
            const herald_loss_t *losses;
            size_t loss_count;
            herald_msg_raw_t raw;   //  more keys, any values (encode only)
        } welcome;
        struct {
            herald_err code;
            herald_str_t message;
            //  conflict
            herald_str_t topic;
            uint64_t expected;
            uint64_t actual;
            //  not_leader: leader.ptr NULL means nil (unknown)
            herald_str_t leader;
            //  Optional with any code (sent with overloaded): ms after which
            //  a retry may succeed; 0 when absent
            uint64_t retry_ms;
            //  trimmed: the first seq (REPLAY) or ver (READ) still in the
            //  live log for what was asked; has_first false when absent
            bool has_first;
            uint64_t first;
        } error;
        struct {
            uint64_t head;
            uint64_t ts;
            herald_str_t node;
            uint64_t epoch;
            uint64_t lineage;       //  accepted losses of the store; absent: 0
            herald_msg_raw_t raw;   //  more keys, any values (encode only)
        } heartbeat;
        struct {
            herald_msg_acl_op_t op;
            //  The reply's other keys (acl_version, users, ...), encoded by
            //  the broker; decode leaves them to the caller's raw body
            herald_msg_raw_t raw;
        } acl;
    };
} herald_msg_t;

//  The command frame for type ("PUBLISH", "STATUS", "$hb", ...).
const char *
    herald_msg_command (herald_msg_type_t type);

//  The type for a command frame of len bytes.  reply selects STATUS's
//  meaning and which set of commands is known.  HERALD_MSG_INVALID when the
//  command is unknown in that direction.
herald_msg_type_t
    herald_msg_type_from_command (const void *command, size_t len, bool reply);

//  Decode body[0..len) as a message of type, validating it.  limits may be
//  NULL for the defaults.  On failure fills err (with the rid when it could
//  be read) and returns its code; never reads outside body[0..len).
herald_err
    herald_msg_decode (herald_msg_t *self, herald_msg_type_t type,
                       const void *body, size_t len, const herald_limits_t *limits,
                       msgpack_zone *zone, herald_error_t *err);

//  Append self's body to buffer (the command frame is herald_msg_command).
//  For PUBLISH, events are encoded as publisher maps (id, topic, data and
//  the optional fields, expect included).  Returns 0, or -1 if out of memory.
int
    herald_msg_encode (const herald_msg_t *self, msgpack_sbuffer *buffer);

//  A publisher's event map, as PUBLISH carries it: the envelope's publisher
//  fields plus expect; never seq, ver or ts, which the broker decides (also
//  what a Raft entry carries).  Returns msgpack-c's OR-ed write results.
int
    herald_msg_pack_publisher_event (msgpack_packer *pk, const herald_event_t *event);

//  Packed EVENTS (an addition to HWP/1: `pack: true` on REPLAY and READ).
//  An EVENTS frame after {rid} holds one stored envelope, or with pack
//  several back to back; this walks either.  Call with *offset 0 first:
//  returns 1 with envelope[0..*envelope_len) the next one and *offset past
//  it, 0 at the end of the frame, -1 when the rest is not one or more
//  complete MessagePack objects (an empty frame included: a frame holds
//  at least one event).  Never reads outside frame[0..size).
int
    herald_msg_events_next (const void *frame, size_t size, size_t *offset,
                            const uint8_t **envelope, size_t *envelope_len);

//  Append an ERROR body built from a decoder's err (rid nil unless
//  err->has_rid).  Returns 0, or -1 if out of memory.
int
    herald_msg_encode_error (const herald_error_t *err, msgpack_sbuffer *buffer);

#endif
