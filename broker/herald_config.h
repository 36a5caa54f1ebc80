/*  =========================================================================
    herald_config - the broker's settings, from flags and a config file

    heraldd takes every setting as a long flag (`--max-batch 500` or
    `--max-batch=500`) and the same settings from a file of `key = value`
    lines, where a key is the flag without its `--`.  The file named by
    --config is read first, wherever the flag appears, and every other flag
    then overrides it, so an operator can keep a file and still change one
    setting on the command line.

    A herald_config_t is a plain value: the caller owns it and may read any
    field.  The config owns its strings (herald_config_destroy frees them);
    a caller that replaces one frees the old string and stores a malloc'd
    one.  Every value is checked as it is set, so a parsed config holds only
    values the broker can use.
    =========================================================================
*/

#ifndef HERALD_CONFIG_H_INCLUDED
#define HERALD_CONFIG_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "herald_event.h"
#include "herald_store.h"
#include "herald_raft.h"

//  An amount of free disk space: a number of bytes, or a percentage of the
//  size of the file system it is measured on, or (`auto`, the default) the
//  lesser of the two, so that a small file system is not refused whole.
#define HERALD_SPACE_AUTO_BYTES     (1ULL << 30)
#define HERALD_SPACE_AUTO_PERCENT   10

typedef struct {
    uint64_t bytes;                 //  when percent is 0, or lesser is set
    unsigned percent;               //  1 .. 99; 0: the amount is bytes
    bool lesser;                    //  `auto`: the lesser of bytes and percent
} herald_space_t;

//  A retention policy (docs/operations.md, "Trimming and retention"):
//  the events of the topics beginning with prefix ("" every topic) older
//  than age_ms are trimmed, without an archive's proof (they are deleted).
#define HERALD_RETENTION_MAX        64          //  policies a broker takes
typedef struct {
    char *prefix;                   //  "" is the whole log
    uint64_t age_ms;
    char age [24];                  //  as written ("7d"), for logs and the op's reason
} herald_retention_policy_t;

typedef struct {
    char *data_dir;                 //  where the event log lives
    char *api;                      //  ROUTER endpoint for requests
    char *fanout;                   //  PUB endpoint for live events and heartbeats
    herald_durability_t durability;
    uint64_t heartbeat_ms;          //  1 .. one day
    size_t max_event_bytes;         //  1 KiB .. 64 MiB
    size_t max_batch;               //  1 .. 100000 events per PUBLISH
    uint64_t stream_idle_ms;        //  1 .. one day; a stream without CREDIT ends after this
    size_t max_streams;             //  concurrent REPLAY/READ streams
    size_t max_queued;              //  queued PUBLISH requests before `overloaded`
    size_t fanout_hwm;              //  fanout messages queued per subscriber (PUB sndhwm)
    size_t client_hwm;              //  api messages queued per client (ROUTER sndhwm)
    size_t client_max_bytes;        //  stream bytes queued per client before its streams wait
    uint64_t idle_flush_ms;         //  0 .. one day; memtables are flushed after this idle; 0: never
    size_t write_buffer_mb;         //  1 .. 1024: RocksDB's memtable for events, in MiB
    herald_space_t min_free;        //  PUBLISH is refused below this free space; 0: never
    char *node;                     //  broker id; "" until the broker generates one
    char *log_level;                //  "error", "warn", "info" or "debug"
    //  The cluster (issue 13).  No --peer: standalone, exactly as before.
    //  With peers, herald_config_parse has checked that node is one of
    //  them (names unique, addresses well formed), defaulted raft, api and
    //  fanout to that peer's entry, and that raft equals it.
    char *raft;                     //  this node's Raft address HOST:PORT; "" standalone
    herald_peer_t *peers;           //  --peer, one per member, this node included
    size_t peer_count;
    bool cluster_new;               //  --cluster-state new (default existing)
    uint64_t election_ms;           //  Raft election timeout
    uint64_t raft_heartbeat_ms;     //  Raft heartbeat, less than election_ms
    bool raft_insecure;             //  Raft may use non-loopback addresses, unprotected
    //  Security (issue 14, docs/security.md).  curve_secret "" is security
    //  off: every socket exactly as before.  herald_config_parse has
    //  checked that curve_secret and acl come together, and that the
    //  secret file is private (no access for group or others).
    char *curve_secret;             //  the broker's zcert secret file; "" none
    char *acl;                      //  the ACL file; "" none
    uint64_t acl_check_ms;          //  how often the ACL file is stat()ed
    char *audit_log;                //  JSON-lines audit file, "-" for stderr
    uint64_t handshake_ms;          //  ZMQ_HANDSHAKE_IVL of the CURVE sockets
    size_t io_threads;              //  libzmq I/O threads; 0: auto (herald_config_io_threads)
    size_t max_streams_per_user;    //  a user's streams at once, unless its ACL says
    //  Consumer groups (docs/groups.md): a heartbeat that would make a
    //  group beyond max_groups, or a member beyond max_group_members, is
    //  refused `overloaded`, so that no client grows memory or disk at will
    size_t max_groups;              //  groups the store keeps
    size_t max_group_members;       //  live members of one group
    //  Metrics and health (docs/metrics.md): an HTTP endpoint HOST:PORT,
    //  "" off; /readyz says 503 for a node more than ready_lag entries behind
    char *metrics;
    uint64_t ready_lag;
    //  Retention (docs/operations.md): none by default (kept for ever);
    //  SIGHUP reloads both
    herald_retention_policy_t *retention;  //  --retention PREFIX=AGE, repeatable
    size_t retention_count;
    uint64_t retention_interval_ms; //  how often the policies are applied
    uint64_t given;                 //  private: bit i set when s_options [i] was given
    char *config_file;              //  the file loaded, or NULL when none was
    const char *default_config;     //  read when there is no --config and it exists:
                                    //  HERALD_DEFAULT_CONFIG (configure), static
    bool file_failed;               //  herald_config_parse failed in the --config file
                                    //  (heraldd exits 78), not on the command line (64)
} herald_config_t;

//  A config holding the defaults (those herald_config_print_usage lists).
//  Caller owns it; NULL only when out of memory.
herald_config_t *
    herald_config_new (void);

//  Free the config and its strings; NULL-safe, clears *self_p.
void
    herald_config_destroy (herald_config_t **self_p);

//  Apply a command line (argv[0] is the program and is skipped).  The file
//  of --config FILE is loaded first, wherever the flag is; every other flag
//  then overrides it, the last of a repeated flag winning.  A flag's value
//  is the next argument unless that starts with `--`, or follows `=`.
//  --help (or -h) and --version print usage or "heraldd VERSION" to out (stdout
//  when NULL), set *exit_now and return HERALD_OK without reading anything
//  else.  Otherwise *exit_now is false, and an error (HERALD_ERR_INVALID
//  naming the flag, or FILE:LINE and the key; HERALD_ERR_NOMEM) fills err
//  and leaves self partly updated: the caller should not start on it;
//  file_failed then tells an error in the --config file from one on the
//  command line.  Messages carry no "see --help" hint (the caller adds one).
herald_err
    herald_config_parse (herald_config_t *self, int argc, char **argv, FILE *out,
                         bool *exit_now, herald_error_t *err);

//  Apply the config file at path (format above; `#` starts a comment line)
//  and record path in config_file.  A bad line fails with HERALD_ERR_INVALID
//  and "FILE:LINE: key: why" in err->message, the key in err->field; a file
//  that cannot be read fails naming the file and strerror.
herald_err
    herald_config_load (herald_config_t *self, const char *path, herald_error_t *err);

//  Print the usage text: every flag with its meaning and default.
void
    herald_config_print_usage (FILE *out);

//  True when the config makes this broker a cluster node (--peer given).
bool
    herald_config_clustered (const herald_config_t *self);

//  True when the config turns security on (--curve-secret).
bool
    herald_config_secure (const herald_config_t *self);

//  The I/O threads libzmq is to run: --io-threads, or with auto 1 when
//  security is off and half the cores (at least 1) when it is on, since
//  each connection's encryption runs on one I/O thread.
size_t
    herald_config_io_threads (const herald_config_t *self);

//  The settings whose values differ between a and b, by their flag names
//  without "--" ("log-level"), in the usage text's order: the first max
//  are stored in names (static strings); returns how many differ.
size_t
    herald_config_diff (const herald_config_t *a, const herald_config_t *b,
                        const char **names, size_t max);

//  Read one retention policy, PREFIX=AGE or PREFIX AGE (or AGE alone: the
//  whole log; AGE a number and s, m, h or d: 90s, 30m, 12h, 7d) into
//  *policy (its prefix malloc'd).  HERALD_ERR_INVALID with why filled.
herald_err
    herald_config_retention_parse (const char *text, herald_retention_policy_t *policy,
                                   char *why, size_t why_size);

//  This node's own entry among the peers; NULL when standalone.
const herald_peer_t *
    herald_config_self_peer (const herald_config_t *self);

#endif
