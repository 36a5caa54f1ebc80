/*  =========================================================================
    herald_cli - what the parts of the `herald` command-line tool share

    tools/herald.c            main, option parsing, pub, status, help
    tools/herald_cli_conn.c   the DEALER on api: send a request, await replies
    tools/herald_cli_stream.c replay, read and tail (REPLAY under credit, SUB)
    tools/herald_cli_output.c events and replies as JSON lines or a table
    tools/herald_cli_inspect.c  the offline consistency check of a data dir
    tools/herald_cli_repair.c   the offline repair of a damaged data dir
    tools/herald_cli_time.c   the times people type and read (RFC 3339, -1h)
    tools/herald_cli_check.c  what is refused before a request is sent
    tools/herald_cli_cluster.c  cluster status: every node's STATUS, compared
    tools/herald_cli_whoami.c   whoami: the user, scope and grants of this key
    tools/herald_cli_security.c keygen and acl check (offline)
    tools/herald_cli_sub.c    sub: an agent's local subscriptions (offline)
    tools/herald_cli_groups.c groups, group: the broker's consumer groups
    tools/herald_cli_backup.c backup, backup verify, restore
    tools/herald_cli_trim.c   trim: the live log up to an archive's proof

    Exit codes: 0 success; 1 an error reply, a failed check or a local
    failure; 2 no broker answered (nothing listens at the endpoint, it
    closed the connection, or it did not answer in time); 64 a usage
    error: all the tool can know is wrong before it sends
    (herald_cli_check.c).
    =========================================================================
*/

#ifndef HERALD_CLI_H_INCLUDED
#define HERALD_CLI_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <czmq.h>
#include <msgpack.h>
#include "herald.h"
#include "herald_event.h"
#include "herald_msg.h"

#define HERALD_CLI_EXIT_OK          0
#define HERALD_CLI_EXIT_FAIL        1
#define HERALD_CLI_EXIT_NO_ANSWER   2
#define HERALD_CLI_EXIT_USAGE       64

#define HERALD_CLI_ENDPOINT         "tcp://127.0.0.1:5580"
#define HERALD_CLI_TIMEOUT_MS       5000
#define HERALD_CLI_ENDPOINT_MAX     300

typedef enum {
    HERALD_CLI_JSON = 0,            //  one JSON object per line
    HERALD_CLI_TABLE                //  aligned columns for people
} herald_cli_format_t;

//  Options every command takes (before or after the command name).
typedef struct {
    const char *endpoint;           //  api endpoint, or a cluster's: comma-separated
    int timeout_ms;                 //  how long to wait for any one reply
    herald_cli_format_t format;
    char endpoint_buf [HERALD_CLI_ENDPOINT_MAX];   //  --endpoint, normalized
    bool format_set;                //  --format was given (a command's default may differ)
} herald_cli_opts_t;

//  ---------------------------------------------------------------------
//  Security (herald_cli_conn.c): --key FILE / HERALD_KEY and
//  --server-key KEY|@FILE / HERALD_SERVER_KEY, for every connection the
//  tool makes.  Loaded once, at the first connection.

//  Remember --key / --server-key (NULL: not given; the environment then).
void
    herald_cli_security_opt (const char *key_file, const char *server_key);

//  Load the keys (once): 0, or an exit code with why filled.
int
    herald_cli_security_load (char *why, size_t why_size);

//  Whether CURVE is on (after herald_cli_security_load).
bool
    herald_cli_secured (void);

//  Make sock a CURVE client when security is on; before zsock_connect.
void
    herald_cli_secure (zsock_t *sock);

//  What a failed handshake (a monitor event: ZMQ_EVENT_HANDSHAKE_FAILED_*)
//  at endpoint means, into why; returns the exit code (0: not a handshake
//  failure).
int
    herald_cli_handshake_failure (int event, const char *endpoint, char *why, size_t size);

//  ---------------------------------------------------------------------
//  herald_cli_conn: a DEALER on the broker's api.

typedef struct _herald_cli_conn_t herald_cli_conn_t;

//  One reply: the message (owned), its type, and its body decoded with
//  herald_msg_decode; the body's pointers borrow msg and zone.  For EVENTS
//  the envelopes are frames 2.. of msg.
typedef struct {
    zmsg_t *msg;
    herald_msg_type_t type;
    herald_msg_t body;
    msgpack_zone zone;
    bool zone_ready;
} herald_cli_reply_t;

//  Normalize an endpoint the user gave (option names it in errors) into
//  buf: tcp://HOST:PORT as given, HOST:PORT and [V6]:PORT as tcp://...,
//  :PORT as tcp://127.0.0.1:PORT, ipc:// and inproc:// as given.  Returns
//  false after printing a usage error.
bool
    herald_cli_endpoint (const char *option, const char *text, char *buf, size_t size);

//  Check that something accepts connections at endpoint (tcp:// or
//  ipc://; others pass), within timeout_ms.  Returns 0, or an exit code
//  with why filled: 2 nothing listens, unreachable, or no answer in time;
//  64 a host name that does not exist.
int
    herald_cli_probe (const char *endpoint, int timeout_ms, char *why, size_t why_size);

//  A monitor on sock: a PAIR that receives sock's DISCONNECTED and failed
//  handshake events.  Caller owns (herald_cli_unwatch); NULL on failure.
zsock_t *
    herald_cli_watch (zsock_t *sock);

//  The next event waiting on watch (ZMQ_EVENT_...), 0 when none; never
//  blocks.
int
    herald_cli_watch_event (zsock_t *watch);

//  Stop watching sock and destroy *watch_p.
void
    herald_cli_unwatch (zsock_t *sock, zsock_t **watch_p);

//  Connect to endpoint, after herald_cli_probe says something listens
//  there.  Quiet: every failure, now and later on this connection, is
//  written to why (why_size bytes) instead of stderr.  Returns 0 with
//  *self_p set (caller owns), or the exit code (2, 64 or 1).
int
    herald_cli_conn_open_to (const char *endpoint, int timeout_ms, char *why,
                             size_t why_size, herald_cli_conn_t **self_p);

//  Connect to opts->endpoint, after herald_cli_probe says something
//  listens there.  Returns 0 with *self_p set (caller owns), or prints why
//  and returns the exit code (2, 64 or 1).
int
    herald_cli_conn_open (const herald_cli_opts_t *opts, herald_cli_conn_t **self_p);

//  Failures on this connection go to stderr from now on (not to the why
//  buffer herald_cli_conn_open_to was given).
void
    herald_cli_conn_quiet_off (herald_cli_conn_t *self);

//  The endpoint a connection went to (one of a list).
const char *
    herald_cli_conn_endpoint (herald_cli_conn_t *self);

//  The endpoint after current in a comma-separated list (a cluster's
//  nodes), into buf; false when there is no other.
bool
    herald_cli_endpoint_next (const char *list, const char *current, char *buf, size_t size);

void
    herald_cli_conn_destroy (herald_cli_conn_t **self_p);

//  A fresh request id.
uint64_t
    herald_cli_conn_rid (herald_cli_conn_t *self);

//  The DEALER, for polling beside other sockets (borrowed).
zsock_t *
    herald_cli_conn_sock (herald_cli_conn_t *self);

//  Encode msg and send it as [command, body].  Returns 0, or prints why
//  and returns HERALD_CLI_EXIT_FAIL.
int
    herald_cli_conn_send (herald_cli_conn_t *self, const herald_msg_t *msg);

//  Receive and decode the next reply, waiting up to the timeout.  Returns
//  0; HERALD_CLI_EXIT_NO_ANSWER after printing "broker at E did not
//  answer" (or, at once, that it closed the connection); HERALD_CLI_EXIT_FAIL on an undecodable reply (printed).  Call
//  herald_cli_reply_fini afterwards in every case.
int
    herald_cli_conn_recv (herald_cli_conn_t *self, herald_cli_reply_t *reply);

//  Print "herald: broker at E did not answer"; returns HERALD_CLI_EXIT_NO_ANSWER.
int
    herald_cli_conn_no_answer (herald_cli_conn_t *self);

//  Read the DEALER's monitor: false when the connection was lost (the
//  broker closed it, or the handshake failed) and no reply is waiting.
bool
    herald_cli_conn_check (herald_cli_conn_t *self);

//  The monitor's PAIR, for polling beside the DEALER (borrowed).
zsock_t *
    herald_cli_conn_watch_sock (herald_cli_conn_t *self);

//  Print why the connection was lost (the broker closed it, or the
//  handshake failed: not a HWP api); returns HERALD_CLI_EXIT_NO_ANSWER.
int
    herald_cli_conn_lost (herald_cli_conn_t *self);

//  Print an ERROR reply as "herald: code: message" (plus the conflict's
//  details); returns HERALD_CLI_EXIT_FAIL.
int
    herald_cli_print_error (const herald_cli_reply_t *reply);

//  Free what herald_cli_conn_recv made; reply may be zeroed.
void
    herald_cli_reply_fini (herald_cli_reply_t *reply);

//  ---------------------------------------------------------------------
//  herald_cli_output: how events and replies are printed (to stdout).

//  Print one stored envelope.  Returns 0, or HERALD_CLI_EXIT_FAIL when the
//  envelope does not decode (printed on stderr).
int
    herald_cli_print_envelope (herald_cli_format_t format, const void *bytes, size_t len);

//  Print a decoded event.
void
    herald_cli_print_event (herald_cli_format_t format, const herald_event_t *event);

//  Print the header line of the event table (table format only).
void
    herald_cli_print_table_header (herald_cli_format_t format);

//  Print a STATUS reply: its decoded fields, then every other key of its
//  raw body (size bytes; NULL: none) as JSON values.
void
    herald_cli_print_status (herald_cli_format_t format, const herald_msg_t *status,
                             const void *body, size_t size);

//  Write s[0..len) as a JSON string, quotes included, to out.  Invalid
//  UTF-8 is written as U+FFFD.
void
    herald_cli_json_string (FILE *out, const char *s, size_t len);

//  Write a MessagePack value (a reply's raw body, or part of it) as JSON to
//  out: str, integers, floats, bool, nil, arrays and maps (nested at most 8
//  deep); NULL (an absent key) as null.
void
    herald_cli_json_object (FILE *out, const msgpack_object *value);

//  The value of the str key in a MessagePack map, NULL when absent or when
//  map is NULL or no map.
const msgpack_object *
    herald_cli_map_get (const msgpack_object *map, const char *key);

//  Write bytes as standard base64 (with padding) to out.
void
    herald_cli_base64 (FILE *out, const void *bytes, size_t len);

//  ---------------------------------------------------------------------
//  Commands.  Each takes its own argv (argv[0] is the command name),
//  returns an exit code, and prints its own --help.

//  opts holds the common options given before the command; a command may
//  update it from common options given after its name.

int herald_cli_replay (herald_cli_opts_t *opts, int argc, char **argv);
int herald_cli_read (herald_cli_opts_t *opts, int argc, char **argv);
int herald_cli_tail (herald_cli_opts_t *opts, int argc, char **argv);
int herald_cli_inspect (herald_cli_opts_t *opts, int argc, char **argv);

//  herald cluster status (herald_cli_cluster.c): every node's STATUS side
//  by side, and whether they agree; returns the exit status.
int herald_cli_cluster (herald_cli_opts_t *opts, int argc, char **argv);
//  herald whoami (herald_cli_whoami.c): who the broker takes this key for.
int herald_cli_whoami (herald_cli_opts_t *opts, int argc, char **argv);
//  herald cluster add|remove|transfer (herald_cli_members.c): membership
//  changes and leadership transfer; argv[0] is the subcommand.
int herald_cli_members (herald_cli_opts_t *opts, int argc, char **argv);
void herald_cli_members_usage (FILE *out);

//  herald sub list|show|reset|delete (herald_cli_sub.c): an agent's local
//  subscriptions (the checkpoints of a state directory).
int herald_cli_sub (herald_cli_opts_t *opts, int argc, char **argv);

//  herald groups, herald group show|reset|delete (herald_cli_groups.c):
//  the broker's consumer groups (HWP/1 GROUP); argv[0] is "groups" or
//  "group".
int herald_cli_groups (herald_cli_opts_t *opts, int argc, char **argv);

//  herald archive, herald archive verify (herald_cli_archive.c,
//  herald_cli_archive_read.c): copy the log into checksummed segment files.
int herald_cli_archive (herald_cli_opts_t *opts, int argc, char **argv);

//  replay --archive DIR: print the events of the archive that request (a
//  REPLAY) selects, at most max (0: no limit) in all, counting *printed.
//  *last is the archive's last seq (0: empty), *finished true when the
//  range (--to, --until-ts, --max) ended inside the archive, *started true
//  when --from-ts was reached in it.  Returns an exit code; refuses (1) a
//  damaged index or a missing segment before printing anything.
int herald_cli_archive_replay (herald_cli_opts_t *opts, const char *dir,
                               const herald_msg_t *request, uint64_t max, uint64_t *printed,
                               uint64_t *last, bool *finished, bool *started);

//  herald repair (herald_cli_repair.c): report a damaged data dir, or accept
//  its loss; returns the exit status.
int herald_cli_repair (herald_cli_opts_t *opts, int argc, char **argv);

//  herald keygen, herald acl check (herald_cli_security.c): CURVE key files
//  and the ACL file, offline; return the exit status.
int herald_cli_keygen (herald_cli_opts_t *opts, int argc, char **argv);
int herald_cli_acl (herald_cli_opts_t *opts, int argc, char **argv);
//  herald backup [verify], herald restore (herald_cli_backup.c): online
//  backups, their check, and the offline restore; return the exit status.
int herald_cli_backup (herald_cli_opts_t *opts, int argc, char **argv);
int herald_cli_restore (herald_cli_opts_t *opts, int argc, char **argv);
//  herald trim (herald_cli_trim.c): TRIM the live log up to what an archive
//  proves it holds, or unarchived; returns the exit status.
int herald_cli_trim (herald_cli_opts_t *opts, int argc, char **argv);
//  replay --archive DIR --continue: before anything is printed, check that
//  the broker's live log goes on where the archive ends for request's
//  range and prefixes (no trimmed seqs between them: STATUS `trims`).
//  Returns 0, or prints which seqs are in neither and returns the exit
//  code (1; 2 when no broker answered).
int herald_cli_trim_continue_check (herald_cli_opts_t *opts, const char *dir,
                                    const herald_msg_t *request);

//  ---------------------------------------------------------------------
//  Option helpers shared by the commands (defined in herald.c).

//  If argv[*index] is --name VALUE or --name=VALUE, set *value, advance
//  *index past it and return true.  A missing value prints an error and
//  sets *bad.
bool
    herald_cli_opt (int argc, char **argv, int *index, const char *name,
                    const char **value, bool *bad);

//  If argv[*index] is a common option (--endpoint, --timeout, --format),
//  apply it to opts, advance *index and return true; sets *bad on a bad
//  value (printed).
bool
    herald_cli_common_opt (herald_cli_opts_t *opts, int argc, char **argv, int *index,
                           bool *bad);

//  Parse text as a decimal uint64 into *value; prints an error naming the
//  option and returns false when it is not one.
bool
    herald_cli_uint (const char *option, const char *text, uint64_t *value);

//  Parse text as a decimal uint64 of at least 1 (a seq, a version, a
//  count); prints an error naming the option and returns false otherwise.
bool
    herald_cli_positive (const char *option, const char *text, uint64_t *value);

//  Print "herald: " and a formatted message to stderr; returns code.
int
    herald_cli_fail (int code, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

//  ---------------------------------------------------------------------
//  herald_cli_time: times as options take them and as people read them.

//  Parse text (RFC 3339, a date, now, -1h30m, 1796229347s/ms/us/ns; see
//  herald_cli_time.c) into Unix ns, relative forms counted back from
//  now_ns.  Returns false, with why[0..why_size) saying why, when it is
//  not one of those forms, names no real date, or does not fit a uint64.
bool
    herald_cli_time_parse (const char *text, uint64_t now_ns, uint64_t *ns, char *why,
                           size_t why_size);

//  This machine's clock, Unix ns.
uint64_t
    herald_cli_time_now (void);

//  Parse an option's time into *ns; prints the reason and the accepted
//  forms (exit 64 is the caller's) and returns false when it is not one.
bool
    herald_cli_ts (const char *option, const char *text, uint64_t *ns);

//  ns as RFC 3339 UTC with nine digits (2026-12-02T16:35:47.250000000Z)
//  in buffer (40 bytes are enough); returns buffer.
char *
    herald_cli_time_format (uint64_t ns, char *buffer, size_t size);

//  ---------------------------------------------------------------------
//  herald_cli_check: usage errors found before sending (printed; exit 64).

//  True when topic is valid; otherwise prints "herald: COMMAND: topic 'T'
//  <reason>: <the rule>" and returns false.
bool
    herald_cli_topic_ok (const char *command, const char *topic);

//  A REPLAY's or READ's range and names: 0, or HERALD_CLI_EXIT_USAGE
//  after printing what is wrong (both --from and --from-ts, --to before
//  --from, an invalid topic or prefix...).
int
    herald_cli_check_request (const char *command, const herald_msg_t *request);

//  True when text (equals: its first '=', or NULL) is a valid --meta
//  KEY=VALUE; otherwise prints why and returns false.
bool
    herald_cli_meta_ok (const char *text, const char *equals);

#endif
