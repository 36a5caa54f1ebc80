/*  =========================================================================
    herald_config - the broker's settings, from flags and a config file

    One table, s_options, describes every setting: its flag and file key,
    its kind, its limits, its default as text and one line of help.  The
    defaults, the usage text, the flag parser and the file parser all read
    that table, and every value (a default included) goes through the one
    setter, s_option_set, so a setting cannot be checked in one place and
    not in another, and the usage text cannot drift from the defaults.

    DESIGN
    Order: --help and --version are looked for first and win over anything
    else on the line, so a broken command line can still ask for help.
    Then the whole line is checked for syntax, the --config file is loaded,
    and the other flags are applied over it.  A flag's value is the next
    argument unless that starts with `--`: `--data-dir --api X` is a
    forgotten value, not a data directory named "--api" (which can still
    be given as `--data-dir=--api`).
    An error names the flag, or the file, line and key, and why; it never
    adds "see --help": heraldd prints that hint once after any of them (a
    message that carried it too printed it twice).

    The file has no quoting and no comments after a value: `#` starts a
    comment only at the start of a line, so a value is everything after
    the first `=`, trimmed.  Numbers are plain decimal digits; no sign, no
    suffix.  Waits are capped at one day, which keeps them in range of the
    int milliseconds that zmq_poll and zloop timers take.  The one amount
    of disk space, --min-free, takes a binary unit (B, KiB, MiB, GiB, TiB)
    or a percentage of the file system; a unit that could be read two ways
    (MB, G) is refused rather than guessed.
    =========================================================================
*/

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "herald_config.h"
#include "herald_text.h"

//  The defaults of an installed heraldd (configure --with-default-data-dir
//  and --with-default-config; the Debian package's /var/lib/herald and
//  /etc/herald/heraldd.conf).  A build from the source tree keeps
//  ./var/herald and reads no file unless --config names one.
#ifndef HERALD_DEFAULT_DATA_DIR
#   define HERALD_DEFAULT_DATA_DIR  "./var/herald"
#endif
#ifndef HERALD_DEFAULT_CONFIG
#   define HERALD_DEFAULT_CONFIG    ""
#endif

#define S_MS_MAX            86400000ULL         //  one day, for every wait
#define S_NODE_MAX          64                  //  bytes of a node id
//  A setter's reason, before its prefix: it quotes the value, which may be
//  a path (herald_text cuts a longer one in the middle, at words)
#define S_WHY_MAX           HERALD_ERROR_MESSAGE_MAX
#define S_PERCENT_MAX       99                  //  --min-free N%: at most this

typedef enum {
    S_TEXT,                 //  a non-empty string
    S_ENDPOINT,             //  tcp://, ipc:// or inproc:// and an address
    S_DURABILITY,           //  sync | async
    S_LEVEL,                //  error | warn | info | debug
    S_NODE,                 //  empty, or up to S_NODE_MAX printable bytes, no spaces
    S_U64,                  //  a number into a uint64_t field
    S_SIZE,                 //  a number into a size_t field
    S_SPACE,                //  bytes with a unit, or N%, into a herald_space_t
    S_ADDRESS,              //  empty, or HOST:PORT (a Raft address)
    S_PEER,                 //  NAME,RAFT_ADDR,API,FANOUT, appended to peers
    S_STATE,                //  new | existing, into a bool (new)
    S_PATH,                 //  a file, or empty for none
    S_THREADS,              //  auto (0) or a number within limits, into a size_t
    S_BOOL,                 //  true | false; the flag alone is true
    S_RETENTION             //  PREFIX=AGE, appended to retention
} s_kind_t;

typedef struct {
    const char *name;       //  the flag without "--", and the file key
    const char *arg;        //  the value's placeholder in the usage text
    s_kind_t kind;
    size_t offset;          //  of the field in herald_config_t
    uint64_t min;           //  numbers only: inclusive limits
    uint64_t max;
    const char *fallback;   //  the default, as it would be written
    const char *help;
} s_option_t;

#define S_FIELD(f)  offsetof (herald_config_t, f)

//  Every setting but --config, in the order the usage text lists them.
//  The numeric defaults must equal HERALD_MAX_EVENT_BYTES and
//  HERALD_MAX_BATCH in herald_event.h; the tests check that they do.
static const s_option_t s_options [] = {
    { "data-dir", "DIR", S_TEXT, S_FIELD (data_dir), 0, 0,
      HERALD_DEFAULT_DATA_DIR, "directory of the event log, created if missing" },
    { "api", "ENDPOINT", S_ENDPOINT, S_FIELD (api), 0, 0,
      "tcp://127.0.0.1:5580", "ROUTER endpoint where clients send requests" },
    { "fanout", "ENDPOINT", S_ENDPOINT, S_FIELD (fanout), 0, 0,
      "tcp://127.0.0.1:5581", "PUB endpoint for every stored event and heartbeats" },
    { "durability", "sync|async", S_DURABILITY, S_FIELD (durability), 0, 0,
      "sync", "sync fsyncs before ACK; async survives kill -9 only" },
    { "heartbeat-ms", "N", S_U64, S_FIELD (heartbeat_ms), 1, S_MS_MAX,
      "1000", "ms between fanout heartbeats, up to 86400000" },
    { "max-event-bytes", "N", S_SIZE, S_FIELD (max_event_bytes), 1024, 64 * 1024 * 1024,
      "1048576", "largest encoded event accepted, 1024 to 67108864" },
    { "max-batch", "N", S_SIZE, S_FIELD (max_batch), 1, 100000,
      "1000", "most events in one PUBLISH, 1 to 100000" },
    { "stream-idle-ms", "N", S_U64, S_FIELD (stream_idle_ms), 1, S_MS_MAX,
      "60000", "ms a stream may wait for CREDIT, up to 86400000" },
    { "max-streams", "N", S_SIZE, S_FIELD (max_streams), 1, SIZE_MAX,
      "64", "concurrent REPLAY and READ streams" },
    { "max-queued", "N", S_SIZE, S_FIELD (max_queued), 1, SIZE_MAX,
      "10000", "PUBLISH requests queued before replying overloaded" },
    { "fanout-hwm", "N", S_SIZE, S_FIELD (fanout_hwm), 1, 10000000,
      "100000", "fanout messages queued per subscriber before it loses some" },
    { "client-hwm", "N", S_SIZE, S_FIELD (client_hwm), 1, 10000000,
      "100000", "replies queued per client connection before streams wait" },
    { "client-max-bytes", "N", S_SIZE, S_FIELD (client_max_bytes), 65536, 1ULL << 40,
      "16777216", "bytes of stream events queued per client before its streams wait" },
    { "idle-flush-ms", "N", S_U64, S_FIELD (idle_flush_ms), 0, S_MS_MAX,
      "1000", "ms without writes before memtables are flushed; 0: never" },
    { "write-buffer-mb", "N", S_SIZE, S_FIELD (write_buffer_mb), 1, 1024,
      "64", "MiB of RocksDB memtable for events, 1 to 1024" },
    { "min-free", "SIZE", S_SPACE, S_FIELD (min_free), 0, S_PERCENT_MAX,
      "auto", "refuse PUBLISH below this free space (512MiB, 5%, 0: off; auto: 1GiB or 10%)" },
    { "node", "ID", S_NODE, S_FIELD (node), 0, 0,
      "", "broker id (default: generated once and kept); a cluster node's --peer NAME" },
    { "log-level", "LEVEL", S_LEVEL, S_FIELD (log_level), 0, 0,
      "info", "error, warn, info or debug" },
    //  The cluster: no --peer is a standalone broker
    { "peer", "NAME,RAFT,API,FANOUT", S_PEER, S_FIELD (peers), 0, 0,
      "", "a cluster member, this node too (repeat; none: standalone)" },
    { "raft", "HOST:PORT", S_ADDRESS, S_FIELD (raft), 0, 0,
      "", "this node's Raft address (default and only: its --peer's)" },
    { "cluster-state", "new|existing", S_STATE, S_FIELD (cluster_new), 0, 0,
      "existing", "new: bootstrap with the pristine peers; existing: wait to be added" },
    { "election-ms", "N", S_U64, S_FIELD (election_ms), 50, 60000,
      "500", "Raft election timeout in ms, 50 to 60000" },
    { "raft-heartbeat-ms", "N", S_U64, S_FIELD (raft_heartbeat_ms), 5, 10000,
      "100", "ms between Raft heartbeats, less than --election-ms" },
    { "raft-insecure", "", S_BOOL, S_FIELD (raft_insecure), 0, 0,
      "false", "allow non-loopback Raft addresses (unprotected: use a VPN)" },
    //  Security (issue 14): none of it unless --curve-secret is given
    { "curve-secret", "FILE", S_PATH, S_FIELD (curve_secret), 0, 0,
      "", "the broker's CURVE secret key (mode 0600): security on" },
    { "acl", "FILE", S_PATH, S_FIELD (acl), 0, 0,
      "", "the ACL: who may connect, publish, read (docs/security.md)" },
    { "acl-check-ms", "N", S_U64, S_FIELD (acl_check_ms), 10, S_MS_MAX,
      "1000", "ms between checks of the ACL file (SIGHUP: at once)" },
    { "audit-log", "FILE", S_PATH, S_FIELD (audit_log), 0, 0,
      "-", "JSON-lines audit log (refusals, reloads); - is stderr" },
    { "handshake-ms", "N", S_U64, S_FIELD (handshake_ms), 100, 600000,
      "5000", "ms a CURVE handshake may take, 100 to 600000" },
    { "io-threads", "N", S_THREADS, S_FIELD (io_threads), 1, 64,
      "auto", "libzmq I/O threads (auto: 1, half the cores with security)" },
    { "max-streams-per-user", "N", S_SIZE, S_FIELD (max_streams_per_user), 1, SIZE_MAX,
      "16", "streams one user may run at once (ACL `streams` overrides)" },
    //  Consumer groups
    { "max-groups", "N", S_SIZE, S_FIELD (max_groups), 1, 1000000,
      "1024", "consumer groups kept, 1 to 1000000 (then: overloaded)" },
    { "max-group-members", "N", S_SIZE, S_FIELD (max_group_members), 1, 100000,
      "256", "live members per group, 1 to 100000 (then: overloaded)" },
    //  Metrics and health (issue 17, docs/metrics.md): off by default
    { "metrics", "HOST:PORT", S_ADDRESS, S_FIELD (metrics), 0, 0,
      "", "serve /metrics, /healthz, /readyz over HTTP there (none: off)" },
    { "ready-lag", "N", S_U64, S_FIELD (ready_lag), 1, 1ULL << 40,
      "10000", "/readyz: a cluster node this many Raft entries behind is not ready" },
    //  Retention (issue 17, docs/operations.md): none, every event kept for ever
    { "retention", "PREFIX=AGE", S_RETENTION, S_FIELD (retention), 0, 0,
      "", "delete the events of topics beginning with PREFIX older than AGE "
      "(90s, 30m, 12h, 7d; =AGE: every topic; repeat; none: keep for ever)" },
    { "retention-interval-ms", "N", S_U64, S_FIELD (retention_interval_ms), 10, S_MS_MAX,
      "60000", "ms between two applications of the retention policies" }
};
#define S_OPTION_COUNT (sizeof (s_options) / sizeof (s_options [0]))

static const char *s_levels [] = { "error", "warn", "info", "debug" };
#define S_LEVEL_COUNT (sizeof (s_levels) / sizeof (s_levels [0]))

static const char *s_schemes [] = { "tcp://", "ipc://", "inproc://" };
#define S_SCHEME_COUNT (sizeof (s_schemes) / sizeof (s_schemes [0]))


//  --------------------------------------------------------------------------
//  Values

//  The option named name[0..len), or NULL.  Not NUL-terminated because a
//  flag's name ends at its `=`.
static const s_option_t *
s_option_find (const char *name, size_t len)
{
    size_t index;
    for (index = 0; index < S_OPTION_COUNT; index++)
        if (strlen (s_options [index].name) == len
        &&  memcmp (s_options [index].name, name, len) == 0)
            return &s_options [index];
    return NULL;
}

//  Read text as a plain decimal number.  NULL on success, else why not,
//  telling a typo (not a number) from a value too big for any field.
static const char *
s_number_parse (const char *text, uint64_t *value)
{
    if (!*text)
        return "is not a number";
    const char *cursor;
    for (cursor = text; *cursor; cursor++)
        if (*cursor < '0' || *cursor > '9')
            return "is not a number";
    uint64_t result = 0;
    for (cursor = text; *cursor; cursor++) {
        unsigned digit = (unsigned) (*cursor - '0');
        if (result > (UINT64_MAX - digit) / 10)
            return "overflows a 64-bit number";
        result = result * 10 + digit;
    }
    *value = result;
    return NULL;
}

//  Read text as an amount of disk space: decimal digits, then optional
//  blanks and a unit (B, KiB, MiB, GiB, TiB, or % of the file system).
//  NULL on success, else why not.
static const char *
s_space_parse (const char *text, herald_space_t *space, uint64_t percent_max)
{
    static const struct {
        const char *name;
        unsigned shift;
    } units [] = { { "", 0 }, { "B", 0 }, { "KiB", 10 }, { "MiB", 20 }, { "GiB", 30 },
                   { "TiB", 40 } };
    if (strcmp (text, "auto") == 0) {
        space->bytes = HERALD_SPACE_AUTO_BYTES;
        space->percent = HERALD_SPACE_AUTO_PERCENT;
        space->lesser = true;
        return NULL;
    }
    const char *end = text;
    while (*end >= '0' && *end <= '9')
        end++;
    if (end == text)
        return "is not an amount of space (a number and a unit: 512MiB, 2GiB, 5%, or auto)";
    char digits [32];
    size_t len = (size_t) (end - text);
    if (len >= sizeof (digits))
        return "overflows a 64-bit number";
    memcpy (digits, text, len);
    digits [len] = 0;
    uint64_t number;
    const char *problem = s_number_parse (digits, &number);
    if (problem)
        return problem;
    while (*end == ' ' || *end == '\t')
        end++;
    if (strcmp (end, "%") == 0) {
        if (number > percent_max)
            return "is more than 99% of the file system";
        space->bytes = 0;
        space->percent = (unsigned) number;
        space->lesser = false;
        return NULL;
    }
    for (size_t index = 0; index < sizeof (units) / sizeof (units [0]); index++) {
        if (strcmp (end, units [index].name) != 0)
            continue;
        if (units [index].shift && number > (UINT64_MAX >> units [index].shift))
            return "overflows a 64-bit number of bytes";
        space->bytes = number << units [index].shift;
        space->percent = 0;
        space->lesser = false;
        return NULL;
    }
    return "has an unknown unit (use B, KiB, MiB, GiB, TiB or %)";
}

static bool
s_endpoint_valid (const char *text)
{
    size_t index;
    for (index = 0; index < S_SCHEME_COUNT; index++) {
        size_t len = strlen (s_schemes [index]);
        if (strncmp (text, s_schemes [index], len) == 0)
            return text [len] != 0;
    }
    return false;
}

//  HOST:PORT: a host of printable characters (no blank, no comma) and a
//  port 1 to 65535.
static bool
s_address_valid (const char *text)
{
    const char *colon = strrchr (text, ':');
    if (!colon || colon == text || strlen (text) > 255)
        return false;
    for (const char *cursor = text; cursor < colon; cursor++)
        if (*cursor <= ' ' || *cursor > '~' || *cursor == ',')
            return false;
    uint64_t port = 0;
    return s_number_parse (colon + 1, &port) == NULL && port >= 1 && port <= 65535;
}

static bool
s_node_valid (const char *text)
{
    if (strlen (text) > S_NODE_MAX)
        return false;
    for (; *text; text++)
        if (*text <= ' ' || *text > '~')
            return false;
    return true;
}

//  Replace the string at *field with a copy of value.  The old string is
//  freed only once the copy exists, so a failure leaves self whole.
static herald_err
s_string_set (char **field, const char *value, char *why, size_t why_size)
{
    char *copy = strdup (value);
    if (!copy) {
        herald_text_format (why, why_size, "out of memory");
        return HERALD_ERR_NOMEM;
    }
    free (*field);
    *field = copy;
    return HERALD_OK;
}

static void
s_peers_free (herald_config_t *self)
{
    for (size_t index = 0; index < self->peer_count; index++) {
        free (self->peers [index].name);
        free (self->peers [index].raft);
        free (self->peers [index].api);
        free (self->peers [index].fanout);
    }
    free (self->peers);
    self->peers = NULL;
    self->peer_count = 0;
}

//  Append one --peer NAME,RAFT_ADDR,API,FANOUT to self->peers, checked
//  whole and against the peers already given: a name, a Raft address or
//  an api endpoint twice would make two members one.
static herald_err
s_peer_add (herald_config_t *self, const char *value, char *why, size_t why_size)
{
    char *fields [4] = { NULL };
    char *copy = strdup (value);
    if (!copy) {
        herald_text_format (why, why_size, "out of memory");
        return HERALD_ERR_NOMEM;
    }
    size_t count = 0;
    char *cursor = copy;
    while (count < 4) {
        fields [count++] = cursor;
        char *comma = strchr (cursor, ',');
        if (!comma || count == 4)
            break;                          //  a comma in the last field: too many
        *comma = 0;
        cursor = comma + 1;
    }
    herald_err rc = HERALD_ERR_INVALID;
    if (count != 4 || strchr (fields [3], ','))
        herald_text_format (why, why_size, "'%s' is not NAME,RAFT_ADDR,API,FANOUT "
                            "(four fields, comma-separated)", value);
    else
    if (!*fields [0] || !s_node_valid (fields [0]))
        herald_text_format (why, why_size, "'%s': '%s' is not a node name (up to %d printable "
                            "characters, no spaces)", value, fields [0], S_NODE_MAX);
    else
    if (!s_address_valid (fields [1]))
        herald_text_format (why, why_size, "'%s': Raft address '%s' is not HOST:PORT (a port "
                            "1 to 65535)", value, fields [1]);
    else
    if (!s_endpoint_valid (fields [2]) || !s_endpoint_valid (fields [3]))
        herald_text_format (why, why_size, "'%s': '%s' is not an endpoint (tcp://, ipc:// or "
                            "inproc:// and an address)", value,
                            s_endpoint_valid (fields [2])? fields [3]: fields [2]);
    else
        rc = HERALD_OK;
    for (size_t index = 0; rc == HERALD_OK && index < self->peer_count; index++) {
        const herald_peer_t *peer = &self->peers [index];
        if (strcmp (peer->name, fields [0]) == 0)
            herald_text_format (why, why_size, "node '%s' is given twice (peer names are "
                                "unique)", fields [0]);
        else
        if (strcmp (peer->raft, fields [1]) == 0)
            herald_text_format (why, why_size, "'%s': Raft address %s is peer '%s''s already",
                                value, fields [1], peer->name);
        else
        if (strcmp (peer->api, fields [2]) == 0)
            herald_text_format (why, why_size, "'%s': api %s is peer '%s''s already",
                                value, fields [2], peer->name);
        else
            continue;
        rc = HERALD_ERR_INVALID;
    }
    if (rc == HERALD_OK) {
        herald_peer_t *peers = (herald_peer_t *) realloc (
            self->peers, (self->peer_count + 1) * sizeof (herald_peer_t));
        herald_peer_t peer = { strdup (fields [0]), strdup (fields [1]), strdup (fields [2]),
                               strdup (fields [3]) };
        if (peers)
            self->peers = peers;
        if (!peers || !peer.name || !peer.raft || !peer.api || !peer.fanout) {
            free (peer.name);
            free (peer.raft);
            free (peer.api);
            free (peer.fanout);
            herald_text_format (why, why_size, "out of memory");
            rc = HERALD_ERR_NOMEM;
        }
        else
            self->peers [self->peer_count++] = peer;
    }
    free (copy);
    return rc;
}

static void
s_retention_free (herald_config_t *self)
{
    for (size_t index = 0; index < self->retention_count; index++)
        free (self->retention [index].prefix);
    free (self->retention);
    self->retention = NULL;
    self->retention_count = 0;
}

//  AGE is never blank and holds no '=': the value splits at its last
//  blank, else at its last '=', so that any prefix can be written
herald_err
herald_config_retention_parse (const char *text, herald_retention_policy_t *policy,
                               char *why, size_t why_size)
{
    memset (policy, 0, sizeof (*policy));
    const char *split = NULL;
    for (const char *cursor = text; *cursor; cursor++)
        if (*cursor == ' ' || *cursor == '\t')
            split = cursor;
    if (!split)
        split = strrchr (text, '=');
    const char *age = split? split + 1: text;
    size_t prefix_len = split? (size_t) (split - text): 0;
    //  The blanks between PREFIX and AGE are not the prefix's
    while (split && prefix_len > 0 && (text [prefix_len - 1] == ' '
                                    || text [prefix_len - 1] == '\t'))
        prefix_len--;
    if (prefix_len > HERALD_TOPIC_MAX
    ||  (prefix_len && !herald_topic_valid (text, prefix_len))) {
        herald_text_format (why, why_size, "'%s': the prefix is not a topic prefix (0 to %d "
                            "bytes of UTF-8, not beginning with '$')", text, HERALD_TOPIC_MAX);
        return HERALD_ERR_INVALID;
    }
    static const struct {
        char unit;
        uint64_t ms;
    } units [] = { { 's', 1000 }, { 'm', 60000 }, { 'h', 3600000 }, { 'd', 86400000 } };
    size_t digits = 0;
    while (age [digits] >= '0' && age [digits] <= '9')
        digits++;
    uint64_t number = 0, unit_ms = 0;
    char number_text [24];
    if (digits > 0 && digits < sizeof (number_text) && age [digits] && !age [digits + 1]) {
        memcpy (number_text, age, digits);
        number_text [digits] = 0;
        for (size_t index = 0; index < sizeof (units) / sizeof (units [0]); index++)
            if (age [digits] == units [index].unit)
                unit_ms = units [index].ms;
        if (s_number_parse (number_text, &number) != NULL)
            unit_ms = 0;
    }
    //  At most 100 years: a longer one is a typo, and ms stay in range
    if (!unit_ms || number == 0 || number > 36500ULL * 86400000 / unit_ms) {
        herald_text_format (why, why_size, "'%s': the age '%s' is not a number of 1 or more "
                            "and a unit s, m, h or d (90s, 30m, 12h, 7d; at most 36500d); "
                            "write PREFIX=AGE, or =AGE for every topic", text, age);
        return HERALD_ERR_INVALID;
    }
    policy->prefix = strndup (text, prefix_len);
    if (!policy->prefix) {
        herald_text_format (why, why_size, "out of memory");
        return HERALD_ERR_NOMEM;
    }
    policy->age_ms = number * unit_ms;
    snprintf (policy->age, sizeof (policy->age), "%s", age);
    return HERALD_OK;
}

//  Append one --retention to self->retention; a prefix given twice is
//  refused (which of its ages would hold?).
static herald_err
s_retention_add (herald_config_t *self, const char *value, char *why, size_t why_size)
{
    herald_retention_policy_t policy;
    herald_err rc = herald_config_retention_parse (value, &policy, why, why_size);
    if (rc != HERALD_OK)
        return rc;
    for (size_t index = 0; index < self->retention_count; index++)
        if (strcmp (self->retention [index].prefix, policy.prefix) == 0) {
            herald_text_format (why, why_size, "'%s': prefix '%s' has a policy already (%s)",
                                value, policy.prefix, self->retention [index].age);
            free (policy.prefix);
            return HERALD_ERR_INVALID;
        }
    if (self->retention_count >= HERALD_RETENTION_MAX) {
        herald_text_format (why, why_size, "'%s': more than %d retention policies", value,
                            HERALD_RETENTION_MAX);
        free (policy.prefix);
        return HERALD_ERR_INVALID;
    }
    herald_retention_policy_t *grown = (herald_retention_policy_t *) realloc (
        self->retention, (self->retention_count + 1) * sizeof (herald_retention_policy_t));
    if (!grown) {
        free (policy.prefix);
        herald_text_format (why, why_size, "out of memory");
        return HERALD_ERR_NOMEM;
    }
    self->retention = grown;
    self->retention [self->retention_count++] = policy;
    return HERALD_OK;
}

//  Check value for option and store it in self.  On failure self is
//  unchanged and why says what was wrong, without naming the option: the
//  caller prefixes the flag, or the file, line and key.
static herald_err
s_option_set (herald_config_t *self, const s_option_t *option, const char *value,
              char *why, size_t why_size)
{
    void *field = (char *) self + option->offset;
    switch (option->kind) {
        case S_TEXT:
            if (!*value) {
                herald_text_format (why, why_size, "must not be empty");
                return HERALD_ERR_INVALID;
            }
            return s_string_set ((char **) field, value, why, why_size);

        case S_ENDPOINT:
            if (!s_endpoint_valid (value)) {
                herald_text_format (why, why_size, "'%s' is not an endpoint "
                          "(tcp://, ipc:// or inproc:// and an address)", value);
                return HERALD_ERR_INVALID;
            }
            return s_string_set ((char **) field, value, why, why_size);

        case S_DURABILITY:
            if (strcmp (value, "sync") == 0)
                *(herald_durability_t *) field = HERALD_DURABILITY_SYNC;
            else
            if (strcmp (value, "async") == 0)
                *(herald_durability_t *) field = HERALD_DURABILITY_ASYNC;
            else {
                herald_text_format (why, why_size, "'%s' is not sync or async", value);
                return HERALD_ERR_INVALID;
            }
            return HERALD_OK;

        case S_LEVEL: {
            size_t index;
            for (index = 0; index < S_LEVEL_COUNT; index++)
                if (strcmp (value, s_levels [index]) == 0)
                    return s_string_set ((char **) field, value, why, why_size);
            herald_text_format (why, why_size, "'%s' is not error, warn, info or debug", value);
            return HERALD_ERR_INVALID;
        }

        case S_NODE:
            if (!s_node_valid (value)) {
                herald_text_format (why, why_size, "'%s' is not a node id (up to %d printable "
                          "characters, no spaces)", value, S_NODE_MAX);
                return HERALD_ERR_INVALID;
            }
            return s_string_set ((char **) field, value, why, why_size);

        case S_U64:
        case S_SIZE: {
            uint64_t number = 0;
            const char *problem = s_number_parse (value, &number);
            if (problem) {
                herald_text_format (why, why_size, "'%s' %s", value, problem);
                return HERALD_ERR_INVALID;
            }
            if (number < option->min) {
                herald_text_format (why, why_size, "must be at least %" PRIu64 ", not %" PRIu64,
                          option->min, number);
                return HERALD_ERR_INVALID;
            }
            if (number > option->max) {
                herald_text_format (why, why_size, "must be at most %" PRIu64 ", not %" PRIu64,
                          option->max, number);
                return HERALD_ERR_INVALID;
            }
            if (option->kind == S_U64)
                *(uint64_t *) field = number;
            else
                *(size_t *) field = (size_t) number;
            return HERALD_OK;
        }

        case S_SPACE: {
            herald_space_t space = { 0 };
            const char *problem = s_space_parse (value, &space, option->max);
            if (problem) {
                snprintf (why, why_size, "'%s' %s", value, problem);
                return HERALD_ERR_INVALID;
            }
            *(herald_space_t *) field = space;
            return HERALD_OK;
        }

        case S_ADDRESS:
            if (*value && !s_address_valid (value)) {
                herald_text_format (why, why_size, "'%s' is not HOST:PORT (a port 1 to 65535)",
                                    value);
                return HERALD_ERR_INVALID;
            }
            return s_string_set ((char **) field, value, why, why_size);

        case S_PEER:
            return s_peer_add (self, value, why, why_size);

        case S_RETENTION:
            return s_retention_add (self, value, why, why_size);

        case S_PATH:
            return s_string_set ((char **) field, value, why, why_size);

        case S_THREADS:
            if (strcmp (value, "auto") == 0) {
                *(size_t *) field = 0;
                return HERALD_OK;
            }
            else {
                uint64_t number = 0;
                const char *problem = s_number_parse (value, &number);
                if (problem || number < option->min || number > option->max) {
                    herald_text_format (why, why_size, "'%s' is not auto or a number %" PRIu64
                                        " to %" PRIu64, value, option->min, option->max);
                    return HERALD_ERR_INVALID;
                }
                *(size_t *) field = (size_t) number;
                return HERALD_OK;
            }

        case S_BOOL:
            if (strcmp (value, "true") == 0)
                *(bool *) field = true;
            else
            if (strcmp (value, "false") == 0)
                *(bool *) field = false;
            else {
                herald_text_format (why, why_size, "'%s' is not true or false", value);
                return HERALD_ERR_INVALID;
            }
            return HERALD_OK;

        case S_STATE:
            if (strcmp (value, "new") == 0)
                *(bool *) field = true;
            else
            if (strcmp (value, "existing") == 0)
                *(bool *) field = false;
            else {
                herald_text_format (why, why_size, "'%s' is not new or existing", value);
                return HERALD_ERR_INVALID;
            }
            return HERALD_OK;
    }
    assert (false);
    return HERALD_ERR_INTERNAL;
}


//  --------------------------------------------------------------------------
//  Lifecycle

//  Every default goes through s_option_set, so the defaults are the table's
//  text and are checked like any value an operator writes.
herald_config_t *
herald_config_new (void)
{
    herald_config_t *self = (herald_config_t *) calloc (1, sizeof (herald_config_t));
    if (!self)
        return NULL;
    size_t index;
    for (index = 0; index < S_OPTION_COUNT; index++) {
        char why [S_WHY_MAX];
        if (s_options [index].kind == S_PEER || s_options [index].kind == S_RETENTION)
            continue;                       //  none by default: standalone, kept for ever
        herald_err rc = s_option_set (self, &s_options [index], s_options [index].fallback,
                                      why, sizeof (why));
        assert (rc != HERALD_ERR_INVALID);      //  a default the table rejects
        if (rc != HERALD_OK) {
            herald_config_destroy (&self);
            return NULL;
        }
    }
    self->default_config = HERALD_DEFAULT_CONFIG;
    return self;
}

//  Frees the strings the config owns along with it.
void
herald_config_destroy (herald_config_t **self_p)
{
    assert (self_p);
    herald_config_t *self = *self_p;
    if (!self)
        return;
    free (self->data_dir);
    free (self->api);
    free (self->fanout);
    free (self->node);
    free (self->log_level);
    free (self->raft);
    free (self->curve_secret);
    free (self->acl);
    free (self->audit_log);
    free (self->metrics);
    s_peers_free (self);
    s_retention_free (self);
    free (self->config_file);
    free (self);
    *self_p = NULL;
}


//  --------------------------------------------------------------------------
//  The config file

//  Trim whitespace (and the \r of a CRLF file) from both ends, in place.
static char *
s_trim (char *text)
{
    while (*text == ' ' || *text == '\t' || *text == '\r' || *text == '\n'
       ||  *text == '\f' || *text == '\v')
        text++;
    size_t len = strlen (text);
    while (len > 0 && strchr (" \t\r\n\f\v", text [len - 1]))
        text [--len] = 0;
    return text;
}

//  Fill err with "FILE:LINE: key: why" and the key as its field.
static herald_err
s_line_error (herald_error_t *err, herald_err code, const char *path, unsigned line,
              const char *key, const char *why)
{
    herald_error_set (err, code, NULL, "%s:%u: %s%s%s", path, line,
                      key, *key ? ": " : "", why);
    if (err)
        snprintf (err->field, sizeof (err->field), "%s", key);
    return code;
}

//  Apply one line of the file; comments and blank lines do nothing.
static herald_err
s_line_apply (herald_config_t *self, char *text, const char *path, unsigned line,
              herald_error_t *err)
{
    char why [S_WHY_MAX];
    char *key = s_trim (text);
    if (*key == 0 || *key == '#')
        return HERALD_OK;
    char *equals = strchr (key, '=');
    if (!equals) {
        herald_text_format (why, sizeof (why), "expected 'key = value', found '%s'", key);
        return s_line_error (err, HERALD_ERR_INVALID, path, line, "", why);
    }
    *equals = 0;
    key = s_trim (key);
    char *value = s_trim (equals + 1);
    if (*key == 0)
        return s_line_error (err, HERALD_ERR_INVALID, path, line, "",
                             "expected 'key = value', found no key");
    const s_option_t *option = s_option_find (key, strlen (key));
    if (!option) {
        if (strcmp (key, "config") == 0)
            return s_line_error (err, HERALD_ERR_INVALID, path, line, key,
                                 "a config file cannot name another");
        return s_line_error (err, HERALD_ERR_INVALID, path, line, key,
                             "unknown key");
    }
    herald_err rc = s_option_set (self, option, value, why, sizeof (why));
    if (rc != HERALD_OK)
        return s_line_error (err, rc, path, line, key, why);
    self->given |= 1ULL << (option - s_options);
    return HERALD_OK;
}

//  Reads the whole file line by line; stops at the first bad line.  A file
//  that cannot be opened is the operator's mistake (INVALID); one that
//  fails while being read is the system's (IO).
herald_err
herald_config_load (herald_config_t *self, const char *path, herald_error_t *err)
{
    assert (self);
    assert (path);
    FILE *file = fopen (path, "r");
    herald_err rc = HERALD_OK;
    if (!file)
        rc = herald_error_set (err, HERALD_ERR_INVALID, NULL, "%s: %s", path,
                               strerror (errno));
    else {
        struct stat status;
        if (fstat (fileno (file), &status) == 0 && S_ISDIR (status.st_mode))
            rc = herald_error_set (err, HERALD_ERR_INVALID, NULL, "%s: %s", path,
                                   strerror (EISDIR));
    }
    if (rc != HERALD_OK) {
        if (err)
            snprintf (err->field, sizeof (err->field), "config");
        if (file)
            fclose (file);
        return rc;
    }
    char *text = NULL;
    size_t capacity = 0;
    ssize_t length;
    unsigned line = 0;
    while (rc == HERALD_OK && (length = getline (&text, &capacity, file)) != -1) {
        line++;
        if (strlen (text) != (size_t) length)
            rc = s_line_error (err, HERALD_ERR_INVALID, path, line, "", "NUL byte in line");
        else
            rc = s_line_apply (self, text, path, line, err);
    }
    if (rc == HERALD_OK && ferror (file)) {
        rc = herald_error_set (err, HERALD_ERR_IO, NULL, "%s: %s", path, strerror (errno));
        if (err)
            snprintf (err->field, sizeof (err->field), "config");
    }
    free (text);
    fclose (file);
    if (rc == HERALD_OK) {
        char why [S_WHY_MAX];
        if (s_string_set (&self->config_file, path, why, sizeof (why)) != HERALD_OK)
            rc = herald_error_set (err, HERALD_ERR_NOMEM, "config", "out of memory");
    }
    return rc;
}


//  --------------------------------------------------------------------------
//  The command line

//  One flag of the command line, as split by s_flag_next.
typedef struct {
    const char *name;               //  after "--", up to '=' or the end
    size_t name_len;
    const char *value;              //  points into argv
    const s_option_t *option;       //  NULL for --config
    char label [72];                //  "--name", for messages
} s_flag_t;

//  Split the flag at argv[*index] and take its value, moving *index past
//  what it used.  Fails on a positional argument, an unknown flag or a
//  missing value, naming it.
static herald_err
s_flag_next (int argc, char **argv, int *index, s_flag_t *flag, herald_error_t *err)
{
    const char *arg = argv [*index];
    if (strncmp (arg, "--", 2) != 0)
        return herald_error_set (err, HERALD_ERR_INVALID, arg,
                                 "unexpected argument (flags start with --)");
    flag->name = arg + 2;
    const char *equals = strchr (flag->name, '=');
    flag->name_len = equals ? (size_t) (equals - flag->name) : strlen (flag->name);
    herald_text_format (flag->label, sizeof (flag->label), "--%.*s", (int) flag->name_len,
                        flag->name);
    flag->option = s_option_find (flag->name, flag->name_len);
    bool is_config = flag->name_len == 6 && memcmp (flag->name, "config", 6) == 0;
    if (!flag->option && !is_config) {
        if ((flag->name_len == 4 && memcmp (flag->name, "help", 4) == 0)
        ||  (flag->name_len == 7 && memcmp (flag->name, "version", 7) == 0))
            return herald_error_set (err, HERALD_ERR_INVALID, flag->label, "takes no value");
        return herald_error_set (err, HERALD_ERR_INVALID, flag->label,
                                 "unknown flag");
    }
    if (equals)
        flag->value = equals + 1;
    else
    if (flag->option && flag->option->kind == S_BOOL)
        flag->value = "true";               //  a switch: never takes the next argument
    else
    if (*index + 1 < argc && strncmp (argv [*index + 1], "--", 2) != 0)
        flag->value = argv [++*index];
    else
        return herald_error_set (err, HERALD_ERR_INVALID, flag->label, "missing value");
    return HERALD_OK;
}

static uint64_t
s_bit (const char *name)
{
    const s_option_t *option = s_option_find (name, strlen (name));
    assert (option);
    return 1ULL << (option - s_options);
}

//  True when HOST:PORT names a loopback host (127.0.0.0/8, ::1, localhost).
static bool
s_loopback (const char *address)
{
    const char *colon = strrchr (address, ':');
    size_t len = colon? (size_t) (colon - address): strlen (address);
    return (len >= 4 && strncmp (address, "127.", 4) == 0)
        || (len == 9 && strncmp (address, "localhost", 9) == 0)
        || (len == 3 && strncmp (address, "::1", 3) == 0)
        || (len == 5 && strncmp (address, "[::1]", 5) == 0);
}

//  The flags the security check looks at.
static uint64_t
s_security_bits (void)
{
    return s_bit ("curve-secret") | s_bit ("acl");
}

//  --curve-secret and --acl come together (security on needs both: a
//  key without an ACL would admit nobody, an ACL without a key would
//  protect nothing), and the secret file is private: a key readable by
//  others is a key others may hold.
static herald_err
s_security_check (herald_config_t *self, herald_error_t *err)
{
    if (*self->curve_secret && !*self->acl)
        return herald_error_set (err, HERALD_ERR_INVALID, "--curve-secret", "needs --acl FILE: "
                                 "with security on, everything not granted in the ACL is "
                                 "refused (docs/security.md)");
    if (*self->acl && !*self->curve_secret)
        return herald_error_set (err, HERALD_ERR_INVALID, "--acl", "needs --curve-secret FILE: "
                                 "an ACL is enforced only on CURVE sockets (make a key with "
                                 "herald keygen)");
    if (!*self->curve_secret)
        return HERALD_OK;
    struct stat status;
    if (stat (self->curve_secret, &status) != 0)
        return herald_error_set (err, HERALD_ERR_INVALID, "--curve-secret", "'%s': %s",
                                 self->curve_secret, strerror (errno));
    if (!S_ISREG (status.st_mode))
        return herald_error_set (err, HERALD_ERR_INVALID, "--curve-secret", "'%s' is not a "
                                 "file", self->curve_secret);
    if (status.st_mode & (S_IRWXG | S_IRWXO))
        return herald_error_set (err, HERALD_ERR_INVALID, "--curve-secret", "'%s' is open to "
                                 "group or others (mode %04o): a secret key must be private; "
                                 "chmod 600 it", self->curve_secret,
                                 (unsigned) (status.st_mode & 07777));
    return HERALD_OK;
}

//  The flags a cluster check looks at.
static uint64_t
s_cluster_bits (void)
{
    return s_bit ("peer") | s_bit ("node") | s_bit ("raft") | s_bit ("cluster-state")
         | s_bit ("election-ms") | s_bit ("raft-heartbeat-ms");
}

//  The settings that only make sense together, once every flag is in:
//  with --peer, --node names one of the peers, and raft, api and fanout
//  default to that peer's entry; without, no cluster flag is given.
static herald_err
s_cluster_check (herald_config_t *self, herald_error_t *err)
{
    if (self->peer_count == 0) {
        const char *names [] = { "raft", "cluster-state", "election-ms", "raft-heartbeat-ms" };
        for (size_t index = 0; index < sizeof (names) / sizeof (names [0]); index++)
            if (self->given & s_bit (names [index])) {
                char label [40];
                snprintf (label, sizeof (label), "--%s", names [index]);
                return herald_error_set (err, HERALD_ERR_INVALID, label, "is for a cluster "
                                         "node: give every member with --peer "
                                         "NAME,RAFT_ADDR,API,FANOUT");
            }
        return HERALD_OK;
    }
    if (!*self->node)
        return herald_error_set (err, HERALD_ERR_INVALID, "--peer", "a cluster node needs "
                                 "--node NAME, its own name among the --peer entries");
    const herald_peer_t *own = herald_config_self_peer (self);
    if (!own) {
        char names [256] = "";
        size_t used = 0;
        for (size_t index = 0; index < self->peer_count && used < sizeof (names); index++)
            used += (size_t) snprintf (names + used, sizeof (names) - used, "%s%s",
                                       index? ", ": "", self->peers [index].name);
        return herald_error_set (err, HERALD_ERR_INVALID, "--node", "'%s' is not one of the "
                                 "--peer names (%s): every member, this node included, has "
                                 "a --peer entry", self->node, names);
    }
    if (self->raft_heartbeat_ms >= self->election_ms)
        return herald_error_set (err, HERALD_ERR_INVALID, "--raft-heartbeat-ms", "must be "
                                 "less than --election-ms (%" PRIu64 "), not %" PRIu64,
                                 self->election_ms, self->raft_heartbeat_ms);
    //  herald_raft binds the address the peers are told: another --raft
    //  would be silently ignored, so it is refused
    if (*self->raft && strcmp (self->raft, own->raft) != 0)
        return herald_error_set (err, HERALD_ERR_INVALID, "--raft", "'%s' is not this node's "
                                 "--peer Raft address %s (the one its peers reach it on)",
                                 self->raft, own->raft);
    //  libraft's TCP is cleartext and unauthenticated (the CURVE transport
    //  is not built yet): off loopback only when the operator says the
    //  network is trusted
    for (size_t index = 0; index < self->peer_count && !self->raft_insecure; index++)
        if (!s_loopback (self->peers [index].raft))
            return herald_error_set (err, HERALD_ERR_INVALID, "--peer", "Raft address %s "
                                     "(peer '%s') is not loopback. Raft traffic is neither "
                                     "authenticated nor encrypted: run it over a network you "
                                     "trust, e.g. WireGuard, and say so with --raft-insecure",
                                     self->peers [index].raft, self->peers [index].name);
    char why [S_WHY_MAX];
    if (s_string_set (&self->raft, own->raft, why, sizeof (why)) != HERALD_OK
    ||  (!(self->given & s_bit ("api"))
        && s_string_set (&self->api, own->api, why, sizeof (why)) != HERALD_OK)
    ||  (!(self->given & s_bit ("fanout"))
        && s_string_set (&self->fanout, own->fanout, why, sizeof (why)) != HERALD_OK))
        return herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
    return HERALD_OK;
}

bool
herald_config_secure (const herald_config_t *self)
{
    return self->curve_secret && *self->curve_secret;
}

size_t
herald_config_io_threads (const herald_config_t *self)
{
    if (self->io_threads)
        return self->io_threads;
    if (!herald_config_secure (self))
        return 1;
    long cores = sysconf (_SC_NPROCESSORS_ONLN);
    return cores >= 4? (size_t) cores / 2: 1;
}

bool
herald_config_clustered (const herald_config_t *self)
{
    return self->peer_count > 0;
}

const herald_peer_t *
herald_config_self_peer (const herald_config_t *self)
{
    for (size_t index = 0; index < self->peer_count; index++)
        if (strcmp (self->peers [index].name, self->node) == 0)
            return &self->peers [index];
    return NULL;
}

//  Three passes over argv: --help/--version, then syntax and --config,
//  then every other flag over what the file set.
herald_err
herald_config_parse (herald_config_t *self, int argc, char **argv, FILE *out,
                     bool *exit_now, herald_error_t *err)
{
    assert (self);
    assert (exit_now);
    *exit_now = false;
    self->file_failed = false;
    if (!out)
        out = stdout;
    int index;
    for (index = 1; index < argc; index++) {
        if (strcmp (argv [index], "--help") == 0 || strcmp (argv [index], "-h") == 0) {
            herald_config_print_usage (out);
            *exit_now = true;
            return HERALD_OK;
        }
        if (strcmp (argv [index], "--version") == 0) {
            fprintf (out, "heraldd %s\n", herald_version ());
            *exit_now = true;
            return HERALD_OK;
        }
    }
    s_flag_t flag;
    const char *config_path = NULL;
    for (index = 1; index < argc; index++) {
        herald_err rc = s_flag_next (argc, argv, &index, &flag, err);
        if (rc != HERALD_OK)
            return rc;
        if (!flag.option)
            config_path = flag.value;       //  the last --config wins
    }
    //  No --config: the installed default, when there is one and it exists
    if (!config_path && self->default_config && *self->default_config
    &&  access (self->default_config, F_OK) == 0)
        config_path = self->default_config;
    if (config_path) {
        if (!*config_path)
            return herald_error_set (err, HERALD_ERR_INVALID, "--config", "must not be empty");
        herald_err rc = herald_config_load (self, config_path, err);
        if (rc != HERALD_OK) {
            self->file_failed = true;
            return rc;
        }
    }
    uint64_t line_given = 0;
    for (index = 1; index < argc; index++) {
        herald_err rc = s_flag_next (argc, argv, &index, &flag, err);
        assert (rc == HERALD_OK);           //  the pass above checked the syntax
        if (!flag.option)
            continue;
        uint64_t bit = 1ULL << (flag.option - s_options);
        //  --peer repeats: the command line's list replaces the file's whole
        if (flag.option->kind == S_PEER && !(line_given & bit))
            s_peers_free (self);
        if (flag.option->kind == S_RETENTION && !(line_given & bit))
            s_retention_free (self);        //  as --peer's

        char why [S_WHY_MAX];
        rc = s_option_set (self, flag.option, flag.value, why, sizeof (why));
        if (rc != HERALD_OK)
            return herald_error_set (err, rc, flag.label, "%s", why);
        line_given |= bit;
    }
    self->given |= line_given;
    herald_err rc = s_cluster_check (self, err);
    //  What only the file set is the file's mistake (exit 78)
    if (rc != HERALD_OK && config_path && !(line_given & (s_cluster_bits ()
                                                          | s_bit ("raft-insecure"))))
        self->file_failed = true;
    if (rc == HERALD_OK) {
        rc = s_security_check (self, err);
        if (rc != HERALD_OK && config_path && !(line_given & s_security_bits ()))
            self->file_failed = true;
    }
    return rc;
}

//  Generated from s_options, so every flag is listed with its real default.
void
herald_config_print_usage (FILE *out)
{
    fprintf (out,
        "Usage: heraldd [--flag VALUE | --flag=VALUE]...\n"
        "\n"
        "Herald's broker: keeps the event log in the data directory, answers\n"
        "requests on the api endpoint and publishes every stored event on the\n"
        "fanout endpoint.  Every flag can also be set in the --config file as a\n"
        "`flag = value` line (the flag without its --; # starts a comment line).\n"
        "The file is read first; flags on the command line override it.\n"
        "\n"
        "A cluster node (Raft, state in DATA_DIR/raft) has --node NAME and one\n"
        "--peer NAME,RAFT_ADDR,API,FANOUT per member, itself included: its Raft\n"
        "HOST:PORT and the api and fanout endpoints clients are told (a `peer =`\n"
        "line each in the file; --peer on the command line replaces the file's\n"
        "list).  Its own --api and --fanout default to its --peer entry.\n"
        "\n"
        "Security (docs/security.md): --curve-secret FILE and --acl FILE make\n"
        "every socket CURVE; keys not in the ACL are refused, and everything not\n"
        "granted is denied.\n"
        "\n"
        "Retention (docs/operations.md): --retention PREFIX=AGE deletes the events\n"
        "of the topics beginning with PREFIX once older than AGE (no archive keeps\n"
        "them); none: every event is kept for ever.\n"
        "\n"
        "SIGHUP reloads the log level (from --config), the retention policies and\n"
        "the ACL; other settings take effect at the next start.  Under systemd,\n"
        "READY=1 once it serves.\n"
        "\n");
    size_t index;
    for (index = 0; index < S_OPTION_COUNT; index++) {
        const s_option_t *option = &s_options [index];
        char left [40];
        snprintf (left, sizeof (left), "--%s%s%s", option->name, *option->arg? " ": "",
                  option->arg);
        if (strlen (left) > 24)
            fprintf (out, "  %s\n  %-24s %s\n", left, "", option->help);
        else
            fprintf (out, "  %-24s %s\n", left, option->help);
        if (*option->fallback)
            fprintf (out, "  %-24s (default %s)\n", "", option->fallback);
    }
    fprintf (out,
        "  %-24s %s\n  %-24s %s\n  %-24s %s\n",
        "--config FILE", *HERALD_DEFAULT_CONFIG
            ? "read settings from FILE first (default " HERALD_DEFAULT_CONFIG ", if it exists)"
            : "read settings from FILE first (default none)",
        "--help, -h", "print this text and exit",
        "--version", "print the version and exit");
}

//  --------------------------------------------------------------------------
//  What differs between two configs (heraldd's SIGHUP, herald_daemon)

static bool
s_string_same (const char *a, const char *b)
{
    return strcmp (a? a: "", b? b: "") == 0;
}

static bool
s_option_same (const herald_config_t *a, const herald_config_t *b, const s_option_t *option)
{
    const void *left = (const char *) a + option->offset;
    const void *right = (const char *) b + option->offset;
    switch (option->kind) {
        case S_TEXT: case S_ENDPOINT: case S_LEVEL: case S_NODE: case S_ADDRESS: case S_PATH:
            return s_string_same (*(char * const *) left, *(char * const *) right);
        case S_DURABILITY:
            return *(const herald_durability_t *) left == *(const herald_durability_t *) right;
        case S_U64:
            return *(const uint64_t *) left == *(const uint64_t *) right;
        case S_SIZE: case S_THREADS:
            return *(const size_t *) left == *(const size_t *) right;
        case S_SPACE: {
            const herald_space_t *l = left, *r = right;
            return l->bytes == r->bytes && l->percent == r->percent && l->lesser == r->lesser;
        }
        case S_BOOL: case S_STATE:
            return *(const bool *) left == *(const bool *) right;
        case S_PEER: {
            if (a->peer_count != b->peer_count)
                return false;
            for (size_t index = 0; index < a->peer_count; index++) {
                const herald_peer_t *l = &a->peers [index], *r = &b->peers [index];
                if (!s_string_same (l->name, r->name) || !s_string_same (l->raft, r->raft)
                ||  !s_string_same (l->api, r->api) || !s_string_same (l->fanout, r->fanout))
                    return false;
            }
            return true;
        }
        case S_RETENTION: {
            if (a->retention_count != b->retention_count)
                return false;
            for (size_t index = 0; index < a->retention_count; index++)
                if (!s_string_same (a->retention [index].prefix, b->retention [index].prefix)
                ||  a->retention [index].age_ms != b->retention [index].age_ms)
                    return false;
            return true;
        }
    }
    return false;
}

size_t
herald_config_diff (const herald_config_t *a, const herald_config_t *b,
                    const char **names, size_t max)
{
    assert (a && b);
    size_t count = 0;
    for (size_t index = 0; index < S_OPTION_COUNT; index++)
        if (!s_option_same (a, b, &s_options [index])) {
            if (count < max)
                names [count] = s_options [index].name;
            count++;
        }
    return count;
}
