/*  =========================================================================
    herald_audit - the broker's audit log: one JSON object per line

    Who was refused, what was refused and why (SECURITY.md §3.10;
    docs/security.md "The audit log"):

        {"ts":"2026-12-02T17:05:01.123Z","event":"auth_refused",...}

    The caller gives the event name, the flood-control key (`who`: a user
    name or an IP) and the rest of the object's members, already escaped;
    this class adds `ts` and `event`.  It never blocks the caller: lines go
    into a bounded queue that a thread of its own writes; a full queue
    drops the line and counts it (herald_audit_dropped, STATUS
    `audit_dropped`).  At most HERALD_AUDIT_LINES_PER_S lines a second pass
    per (event, who); the rest are counted and summarised once a second:

        {"ts":"...","event":"unauthorized","who":"inventory","suppressed":1234}

    Nothing secret goes in: public key prefixes only
    (HERALD_AUDIT_KEY_PREFIX Z85 characters), never payloads.

    Every function may be called from any thread (the broker loop and the
    ZAP handler both write); one mutex guards the queue and the keys and
    is never held across I/O.
    =========================================================================
*/

#ifndef HERALD_AUDIT_H_INCLUDED
#define HERALD_AUDIT_H_INCLUDED

#include <stddef.h>
#include <stdint.h>
#include "herald_event.h"

#define HERALD_AUDIT_LINES_PER_S    100     //  per (event, who)
#define HERALD_AUDIT_QUEUE_LINES    4096    //  lines waiting for the writer
#define HERALD_AUDIT_QUEUE_BYTES    (1024 * 1024)
#define HERALD_AUDIT_KEYS_MAX       1024    //  (event, who) pairs tracked at once
#define HERALD_AUDIT_FLUSH_MS       1000    //  what destroy waits for a stalled file
#define HERALD_AUDIT_KEY_PREFIX     10      //  Z85 characters of a key shown

typedef struct _herald_audit_t herald_audit_t;

//  Open (append, create 0640) the audit log at path, "-" for stderr, and
//  start its writer.  NULL with err filled (HERALD_ERR_IO, naming the
//  path) when it cannot be opened.  Caller owns.
herald_audit_t *
    herald_audit_new (const char *path, herald_error_t *err);

//  Write what is queued (waiting at most HERALD_AUDIT_FLUSH_MS for a file
//  that does not take it), stop the writer, close the file.  NULL-safe;
//  clears *self_p.
void
    herald_audit_destroy (herald_audit_t **self_p);

//  Queue one line: {"ts":NOW,"event":EVENT,JSON_FIELDS}.  event is a
//  plain name ([a-z_]); who keys flood control with it (NULL: "");
//  json_fields are members `"key":value,...` without braces, already
//  escaped (herald_audit_escape), or NULL/"" for none.  Never blocks on
//  I/O; a line that does not fit the queue is dropped and counted.
void
    herald_audit_event (herald_audit_t *self, const char *event, const char *who,
                        const char *json_fields);

//  Close and open the file again at its path (after logrotate moved it;
//  the broker calls this on SIGHUP).  Done by the writer in queue order:
//  lines queued before go to the old file, lines after to the new one.  A
//  file that cannot be opened again leaves the old one in use (warned).
void
    herald_audit_reopen (herald_audit_t *self);

//  Lines dropped because the queue was full, since new.
uint64_t
    herald_audit_dropped (herald_audit_t *self);

//  Lines suppressed by flood control (each is in some summary line).
uint64_t
    herald_audit_suppressed (herald_audit_t *self);

//  Write bytes[0..len) as a JSON string literal, quotes included, into out
//  (size bytes, NUL-terminated).  Printable ASCII and valid UTF-8 pass as
//  they are, `"` and `\` are escaped, control bytes and DEL become
//  \u00XX, and so does each byte of invalid UTF-8 (the byte's value, as
//  the broker's s_printable shows bytes).  Input that does not fit is cut
//  at a character and marked with "..." inside the quotes.  Returns the
//  length written.  size >= 6 * len + 3 never cuts; a topic (255 bytes)
//  needs HERALD_AUDIT_TOPIC_MAX.
#define HERALD_AUDIT_TOPIC_MAX      (6 * 255 + 3)
size_t
    herald_audit_escape (const void *bytes, size_t len, char *out, size_t size);

#endif
