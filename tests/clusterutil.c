/*  =========================================================================
    clusterutil - run a real heraldd cluster on 127.0.0.1 and check its logs

    See clusterutil.h.  No criterion here: every failure is a return value.
    =========================================================================
*/

#include "clusterutil.h"
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <inttypes.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define CU_STATUS_MS    300         //  one STATUS poll while waiting for a state

static void
s_why (char *why, size_t why_size, const char *format, ...)
{
    if (!why || !why_size)
        return;
    va_list args;
    va_start (args, format);
    vsnprintf (why, why_size, format, args);
    va_end (args);
}

static uint64_t
s_deadline (int timeout_ms)
{
    return tu_mono_ns () + (uint64_t) (timeout_ms > 0? timeout_ms: 0) * 1000000ULL;
}

static int
s_left_ms (uint64_t deadline)
{
    uint64_t now = tu_mono_ns ();
    return now >= deadline? 0: (int) ((deadline - now) / 1000000ULL) + 1;
}

//  ---------------------------------------------------------------------
//  Cluster and nodes

cu_cluster_t *
cu_cluster_new (const char *tag, size_t count, const cu_options_t *options)
{
    if (count < 2 || count > CU_NODES_MAX)
        return NULL;
    cu_cluster_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->count = count;
    self->dir = tu_tmpdir_new (tag);
    self->binary = bu_heraldd_path ();
    if (options)
        self->options = *options;
    bool ok = self->dir && self->binary;
    size_t extra = 0;
    for (; ok && options && options->extra && options->extra [extra]; extra++)
        if (extra + 1 >= BU_MAX_ARGS || !(self->extra [extra] = strdup (options->extra [extra])))
            ok = false;
    self->options.extra = (const char *const *) self->extra;
    for (size_t hook = 0; ok && options && options->hooks && options->hooks [hook]; hook++)
        if (hook + 1 >= BU_MAX_ARGS || !(self->hooks [hook] = strdup (options->hooks [hook])))
            ok = false;
    self->options.hooks = (const char *const *) self->hooks;

    //  Every port distinct: 3 per node, chosen free now
    int ports [CU_NODES_MAX * 3];
    size_t port_count = 0;
    for (int tries = 0; ok && port_count < count * 3 && tries < 1000; tries++) {
        int port = bu_free_port ();
        bool fresh = port > 0;
        for (size_t at = 0; fresh && at < port_count; at++)
            fresh = ports [at] != port;
        if (fresh)
            ports [port_count++] = port;
    }
    ok = ok && port_count == count * 3;
    for (size_t index = 0; ok && index < count; index++) {
        cu_node_t *node = &self->nodes [index];
        snprintf (node->name, sizeof node->name, "n%zu", index + 1);
        node->dir = tu_path (self->dir, node->name);
        ok = node->dir && mkdir (node->dir, 0700) == 0;
        if (ok) {
            node->data_dir = tu_path (node->dir, "data");
            node->log = tu_path (node->dir, "heraldd.log");
            ok = node->data_dir && node->log;
        }
        snprintf (node->api, sizeof node->api, "tcp://127.0.0.1:%d", ports [index * 3]);
        snprintf (node->fanout, sizeof node->fanout, "tcp://127.0.0.1:%d", ports [index * 3 + 1]);
        snprintf (node->raft, sizeof node->raft, "127.0.0.1:%d", ports [index * 3 + 2]);
        if (ok)
            ok = (node->ctl = bu_dealer_new (node->api)) != NULL;
    }
    if (!ok)
        cu_cluster_destroy (&self);
    return self;
}

void
cu_cluster_destroy (cu_cluster_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cu_cluster_t *self = *self_p;
    for (size_t index = 0; index < self->count; index++)
        cu_node_kill (self, index);
    for (size_t from = 0; from < CU_NODES_MAX; from++)
        for (size_t to = 0; to < CU_NODES_MAX; to++)
            rp_proxy_destroy (&self->proxies [from][to]);
    for (size_t index = 0; index < CU_NODES_MAX; index++) {
        cu_node_t *node = &self->nodes [index];
        zsock_destroy (&node->ctl);
        free (node->dir);
        free (node->data_dir);
        free (node->log);
        free (node->connect_env);
    }
    const char *keep = getenv ("HERALD_KEEP_CLUSTER");
    if (keep && *keep && self->dir) {
        fprintf (stderr, "clusterutil: kept %s\n", self->dir);
        free (self->dir);
    }
    else
        tu_tmpdir_destroy (&self->dir);
    free (self->binary);
    for (size_t index = 0; index < BU_MAX_ARGS; index++) {
        free (self->extra [index]);
        free (self->hooks [index]);
    }
    free (self);
    *self_p = NULL;
}

//  fork and execve the node with argv and its environment (this process's
//  plus the test hooks), output appended to its log.  The environment is
//  built before fork: the child of a threaded parent must not allocate.
static pid_t
s_spawn (cu_cluster_t *self, cu_node_t *node, char *const *argv)
{
    size_t count = 0;
    while (environ [count])
        count++;
    char **envp = calloc (count + BU_MAX_ARGS + 3, sizeof *envp);
    if (!envp)
        return -1;
    size_t at = 0;
    for (size_t index = 0; index < count; index++)
        if (strncmp (environ [index], "HERALD_TEST_", 12) != 0)
            envp [at++] = environ [index];
    if (node->connect_env || self->hooks [0])
        envp [at++] = "HERALD_TEST_HOOKS=1";
    if (node->connect_env)
        envp [at++] = node->connect_env;
    for (size_t hook = 0; self->hooks [hook]; hook++)
        envp [at++] = self->hooks [hook];
    envp [at] = NULL;
    pid_t pid = bu_spawn_env (self->binary, argv, envp, node->log);
    free (envp);
    return pid;
}

int
cu_node_spawn (cu_cluster_t *self, size_t index, const char *state)
{
    if (index >= self->count || self->nodes [index].pid > 0)
        return -1;
    cu_node_t *node = &self->nodes [index];
    char peers [CU_NODES_MAX][320];
    char election [32], heartbeat [32];
    char *argv [BU_MAX_ARGS + 40];
    size_t argc = 0;
    argv [argc++] = self->binary;
    argv [argc++] = "--data-dir";
    argv [argc++] = node->data_dir;
    argv [argc++] = "--api";
    argv [argc++] = node->api;
    argv [argc++] = "--fanout";
    argv [argc++] = node->fanout;
    argv [argc++] = "--node";
    argv [argc++] = node->name;
    argv [argc++] = "--raft";
    argv [argc++] = node->raft;
    argv [argc++] = "--cluster-state";
    argv [argc++] = (char *) (state? state: "new");
    //  The disk guard measures the shared /tmp, which is not under test
    argv [argc++] = "--min-free";
    argv [argc++] = "0";
    for (size_t peer = 0; peer < self->count; peer++) {
        cu_node_t *other = &self->nodes [peer];
        snprintf (peers [peer], sizeof peers [peer], "%s,%s,%s,%s", other->name, other->raft,
                  other->api, other->fanout);
        argv [argc++] = "--peer";
        argv [argc++] = peers [peer];
    }
    if (self->options.election_ms) {
        snprintf (election, sizeof election, "%u", self->options.election_ms);
        argv [argc++] = "--election-ms";
        argv [argc++] = election;
    }
    if (self->options.raft_heartbeat_ms) {
        snprintf (heartbeat, sizeof heartbeat, "%u", self->options.raft_heartbeat_ms);
        argv [argc++] = "--raft-heartbeat-ms";
        argv [argc++] = heartbeat;
    }
    for (size_t at = 0; self->extra [at]; at++)
        argv [argc++] = self->extra [at];
    if (*node->metrics) {
        argv [argc++] = "--metrics";
        argv [argc++] = node->metrics;
    }
    argv [argc] = NULL;
    //  A line in the log between runs, so a reader sees where each began
    FILE *file = fopen (node->log, "a");
    if (file) {
        fprintf (file, "---- clusterutil: start %s --cluster-state %s%s\n", node->name,
                 state? state: "new", node->connect_env? " (raft links proxied)": "");
        fclose (file);
    }
    pid_t pid = s_spawn (self, node, argv);
    if (pid < 0)
        return -1;
    node->pid = pid;
    node->paused = false;
    return 0;
}

//  Reap node if it exited; true when it did.
static bool
s_reaped (cu_node_t *node)
{
    if (node->pid <= 0)
        return true;
    int status = 0;
    if (waitpid (node->pid, &status, WNOHANG) == node->pid) {
        node->status = status;
        node->pid = 0;
        node->paused = false;
        return true;
    }
    return false;
}

int
cu_node_wait_up (cu_cluster_t *self, size_t index, int timeout_ms)
{
    cu_node_t *node = &self->nodes [index];
    uint64_t deadline = s_deadline (timeout_ms);
    while (true) {
        if (s_reaped (node))
            return -1;
        cu_status_t status;
        int left = s_left_ms (deadline);
        if (cu_status (self, index, &status, left < 200? left: 200) == 0)
            return 0;
        if (tu_mono_ns () >= deadline)
            return -1;
    }
}

int
cu_node_restart (cu_cluster_t *self, size_t index, const char *state, int timeout_ms)
{
    //  The ports were just released by the old process: retry a bind race
    for (int tries = 0; tries < 5; tries++) {
        if (cu_node_spawn (self, index, state) != 0)
            return -1;
        if (cu_node_wait_up (self, index, timeout_ms) == 0)
            return 0;
        cu_node_kill (self, index);
        zclock_sleep (200);
    }
    return -1;
}

void
cu_node_kill (cu_cluster_t *self, size_t index)
{
    cu_node_t *node = &self->nodes [index];
    if (node->pid <= 0)
        return;
    kill (node->pid, SIGKILL);
    if (node->paused)
        kill (node->pid, SIGCONT);
    int status = 0;
    while (waitpid (node->pid, &status, 0) < 0 && errno == EINTR)
        ;
    node->status = status;
    node->pid = 0;
    node->paused = false;
}

int
cu_node_pause (cu_cluster_t *self, size_t index)
{
    cu_node_t *node = &self->nodes [index];
    if (node->pid <= 0 || kill (node->pid, SIGSTOP) != 0)
        return -1;
    node->paused = true;
    return 0;
}

int
cu_node_resume (cu_cluster_t *self, size_t index)
{
    cu_node_t *node = &self->nodes [index];
    if (node->pid <= 0 || kill (node->pid, SIGCONT) != 0)
        return -1;
    node->paused = false;
    return 0;
}

int
cu_node_wait_exit (cu_cluster_t *self, size_t index, int timeout_ms)
{
    cu_node_t *node = &self->nodes [index];
    uint64_t deadline = s_deadline (timeout_ms);
    while (!s_reaped (node)) {
        if (tu_mono_ns () >= deadline)
            return -1;
        zclock_sleep (10);
    }
    return 0;
}

int
cu_node_term (cu_cluster_t *self, size_t index, int timeout_ms)
{
    cu_node_t *node = &self->nodes [index];
    if (node->pid <= 0)
        return 0;
    if (node->paused)
        cu_node_resume (self, index);
    kill (node->pid, SIGTERM);
    if (cu_node_wait_exit (self, index, timeout_ms) == 0)
        return 0;
    cu_node_kill (self, index);
    return -1;
}

int
cu_node_wipe (cu_cluster_t *self, size_t index)
{
    cu_node_t *node = &self->nodes [index];
    if (node->pid > 0)
        return -1;
    if (access (node->data_dir, F_OK) != 0)
        return 0;
    return tu_rmtree (node->data_dir);
}

bool
cu_node_live (cu_cluster_t *self, size_t index)
{
    cu_node_t *node = &self->nodes [index];
    return !s_reaped (node) && !node->paused;
}

void
cu_node_log_tail (cu_cluster_t *self, size_t index, char *out, size_t max)
{
    out [0] = 0;
    FILE *file = fopen (self->nodes [index].log, "r");
    if (!file)
        return;
    if (fseek (file, 0, SEEK_END) == 0) {
        long size = ftell (file);
        fseek (file, size > (long) max - 1? size - (long) max + 1: 0, SEEK_SET);
    }
    size_t got = fread (out, 1, max - 1, file);
    out [got] = 0;
    fclose (file);
}

int
cu_node_by_api (cu_cluster_t *self, const char *api, size_t len)
{
    for (size_t index = 0; api && index < self->count; index++)
        if (strlen (self->nodes [index].api) == len && !memcmp (self->nodes [index].api, api, len))
            return (int) index;
    return -1;
}

int
cu_node_by_name (cu_cluster_t *self, const char *name)
{
    for (size_t index = 0; name && index < self->count; index++)
        if (!strcmp (self->nodes [index].name, name))
            return (int) index;
    return -1;
}

//  Start nodes in phases that cannot bootstrap (some peer is always
//  missing) to read every raft id, then stop them.  The ids are stable
//  from then on: they come from the store's uuid, made at this first start.
static int
s_learn_raft_ids (cu_cluster_t *self, int timeout_ms, char *why, size_t why_size)
{
    size_t phases [2][2] = { { 0, self->count - 1 }, { self->count - 1, self->count } };
    for (int phase = 0; phase < 2; phase++) {
        size_t first = phases [phase][0], end = phases [phase][1];
        for (size_t index = first; index < end; index++)
            if (cu_node_spawn (self, index, "new") != 0) {
                s_why (why, why_size, "cannot start %s", self->nodes [index].name);
                return -1;
            }
        for (size_t index = first; index < end; index++) {
            cu_node_t *node = &self->nodes [index];
            uint64_t deadline = s_deadline (timeout_ms);
            cu_status_t status = { .raft_id = 0 };
            while (!node->raft_id && tu_mono_ns () < deadline && !s_reaped (node)) {
                if (cu_status (self, index, &status, CU_STATUS_MS) == 0 && status.raft_id)
                    node->raft_id = status.raft_id;
                else
                    zclock_sleep (20);
            }
            if (!node->raft_id) {
                s_why (why, why_size, "%s gave no raft_id in STATUS while waiting to bootstrap",
                       node->name);
                return -1;
            }
            if (strcmp (status.cluster_state, "bootstrapping") != 0) {
                s_why (why, why_size, "%s says cluster_state \"%s\" with peers missing",
                       node->name, status.cluster_state);
                return -1;
            }
        }
        for (size_t index = first; index < end; index++)
            cu_node_term (self, index, 10000);
    }
    return 0;
}

//  The port at the end of an address ("...:PORT").
static int
s_port_of (const char *address)
{
    const char *colon = strrchr (address, ':');
    return colon? atoi (colon + 1): -1;
}

//  True when port is one a node of self listens on (or will, once
//  started): a proxy bound while the nodes are down could get it.
static bool
s_node_port (cu_cluster_t *self, int port)
{
    for (size_t index = 0; index < self->count; index++) {
        cu_node_t *node = &self->nodes [index];
        if (port == s_port_of (node->api) || port == s_port_of (node->fanout)
        ||  port == s_port_of (node->raft))
            return true;
    }
    return false;
}

//  A proxy to target on a port no node uses; NULL when none can be made.
//  (The kernel hands out a port of a stopped node as readily as any: seen
//  once, a node could not listen on its own Raft port, a proxy held it.)
static rp_proxy_t *
s_proxy_new (cu_cluster_t *self, const char *target)
{
    rp_proxy_t *rejected [8] = { NULL };
    rp_proxy_t *proxy = NULL;
    size_t tries;
    for (tries = 0; tries < 8; tries++) {
        proxy = rp_proxy_new (target);
        if (!proxy || !s_node_port (self, s_port_of (rp_proxy_address (proxy))))
            break;
        rejected [tries] = proxy;          //  held, so the next bind gets another
        proxy = NULL;
    }
    for (size_t index = 0; index < tries && index < 8; index++)
        rp_proxy_destroy (&rejected [index]);
    return proxy;
}

//  One proxy per directed link, and each node's connect map.
static int
s_make_proxies (cu_cluster_t *self)
{
    for (size_t from = 0; from < self->count; from++) {
        char map [CU_NODES_MAX * 64] = "";
        size_t used = 0;
        for (size_t to = 0; to < self->count; to++) {
            if (to == from)
                continue;
            rp_proxy_t *proxy = s_proxy_new (self, self->nodes [to].raft);
            if (!proxy)
                return -1;
            self->proxies [from][to] = proxy;
            used += (size_t) snprintf (map + used, sizeof map - used, "%s%" PRIu64 "=%s",
                                       used? ",": "", self->nodes [to].raft_id,
                                       rp_proxy_address (proxy));
        }
        cu_node_t *node = &self->nodes [from];
        free (node->connect_env);
        node->connect_env = malloc (strlen (map) + 32);
        if (!node->connect_env)
            return -1;
        sprintf (node->connect_env, "HERALD_TEST_RAFT_CONNECT=%s", map);
    }
    return 0;
}

int
cu_cluster_start (cu_cluster_t *self, int timeout_ms, char *why, size_t why_size)
{
    if (self->options.proxies) {
        if (s_learn_raft_ids (self, timeout_ms, why, why_size) != 0)
            return -1;
        if (s_make_proxies (self) != 0) {
            s_why (why, why_size, "cannot make the proxies");
            return -1;
        }
    }
    for (size_t index = 0; index < self->count; index++)
        if (cu_node_spawn (self, index, "new") != 0) {
            s_why (why, why_size, "cannot start %s", self->nodes [index].name);
            return -1;
        }
    int leader = cu_wait_leader (self, 0, timeout_ms);
    if (leader < 0) {
        char line [256] = "";
        size_t used = 0;
        for (size_t index = 0; index < self->count; index++) {
            cu_status_t status;
            if (!cu_node_live (self, index))
                used += (size_t) snprintf (line + used, sizeof line - used, " %s: exited %d;",
                                           self->nodes [index].name,
                                           WIFEXITED (self->nodes [index].status)
                                           ? WEXITSTATUS (self->nodes [index].status): -1);
            else
            if (cu_status (self, index, &status, CU_STATUS_MS) == 0)
                used += (size_t) snprintf (line + used, sizeof line - used,
                                           " %s: %s/%s term %" PRIu64 " leader '%s';",
                                           status.node, status.role, status.cluster_state,
                                           status.term, status.leader);
            else
                used += (size_t) snprintf (line + used, sizeof line - used, " %s: no STATUS;",
                                           self->nodes [index].name);
            if (used >= sizeof line)
                break;
        }
        s_why (why, why_size, "no leader within %d ms:%s", timeout_ms, line);
    }
    return leader;
}

//  ---------------------------------------------------------------------
//  STATUS

static const msgpack_object *
s_map_get (const msgpack_object *map, const char *key)
{
    if (map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t len = strlen (key);
    for (uint32_t index = 0; index < map->via.map.size; index++) {
        const msgpack_object_kv *kv = &map->via.map.ptr [index];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == len
        &&  !memcmp (kv->key.via.str.ptr, key, len))
            return &kv->val;
    }
    return NULL;
}

static uint64_t
s_map_uint (const msgpack_object *map, const char *key)
{
    const msgpack_object *value = s_map_get (map, key);
    return value && value->type == MSGPACK_OBJECT_POSITIVE_INTEGER? value->via.u64: 0;
}

static void
s_map_str (const msgpack_object *map, const char *key, char *out, size_t size)
{
    out [0] = 0;
    const msgpack_object *value = s_map_get (map, key);
    if (value && value->type == MSGPACK_OBJECT_STR) {
        size_t len = value->via.str.size < size - 1? value->via.str.size: size - 1;
        memcpy (out, value->via.str.ptr, len);
        out [len] = 0;
    }
}

//  The rid of a reply body (0 when absent), and whether it parsed.
static bool
s_body_rid (const void *body, size_t len, uint64_t *rid)
{
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    bool ok = msgpack_unpack_next (&unpacked, body, len, NULL) == MSGPACK_UNPACK_SUCCESS
           && unpacked.data.type == MSGPACK_OBJECT_MAP;
    if (ok)
        *rid = s_map_uint (&unpacked.data, "rid");
    msgpack_unpacked_destroy (&unpacked);
    return ok;
}

int
cu_status_parse (const void *body, size_t len, cu_status_t *status)
{
    memset (status, 0, sizeof *status);
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    int rc = -1;
    if (msgpack_unpack_next (&unpacked, body, len, NULL) == MSGPACK_UNPACK_SUCCESS
    &&  unpacked.data.type == MSGPACK_OBJECT_MAP) {
        const msgpack_object *map = &unpacked.data;
        s_map_str (map, "role", status->role, sizeof status->role);
        s_map_str (map, "node", status->node, sizeof status->node);
        s_map_str (map, "cluster_state", status->cluster_state, sizeof status->cluster_state);
        s_map_str (map, "leader", status->leader, sizeof status->leader);
        s_map_str (map, "leader_api", status->leader_api, sizeof status->leader_api);
        s_map_str (map, "digest", status->digest, sizeof status->digest);
        status->head = s_map_uint (map, "head");
        status->term = s_map_uint (map, "term");
        status->raft_id = s_map_uint (map, "raft_id");
        status->commit_index = s_map_uint (map, "commit_index");
        status->applied_index = s_map_uint (map, "applied_index");
        status->last_index = s_map_uint (map, "last_index");
        status->voters = s_map_uint (map, "voters");
        rc = 0;
    }
    msgpack_unpacked_destroy (&unpacked);
    return rc;
}

int
cu_status (cu_cluster_t *self, size_t index, cu_status_t *status, int timeout_ms)
{
    cu_node_t *node = &self->nodes [index];
    uint64_t rid = ++node->rid;
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    bu_pack_rid (&sbuf, rid);
    int rc = bu_send_sbuf (node->ctl, "STATUS", &sbuf);
    msgpack_sbuffer_destroy (&sbuf);
    if (rc)
        return -1;
    //  Replies to earlier requests (a STATUS that timed out) are skipped
    uint64_t deadline = s_deadline (timeout_ms);
    for (int skipped = 0; skipped < 10000; skipped++) {
        zmsg_t *msg = bu_recv (node->ctl, s_left_ms (deadline));
        if (!msg)
            return -1;
        zframe_t *command = zmsg_first (msg);
        zframe_t *body = zmsg_next (msg);
        uint64_t got = 0;
        bool match = command && body && zframe_streq (command, "STATUS")
                  && s_body_rid (zframe_data (body), zframe_size (body), &got) && got == rid;
        if (match)
            rc = cu_status_parse (zframe_data (body), zframe_size (body), status);
        zmsg_destroy (&msg);
        if (match)
            return rc;
    }
    return -1;
}

int
cu_wait_leader (cu_cluster_t *self, uint32_t exclude, int timeout_ms)
{
    uint64_t deadline = s_deadline (timeout_ms);
    while (true) {
        cu_status_t status [CU_NODES_MAX];
        int leader = -1;
        size_t leaders = 0;
        bool all = true;
        size_t asked = 0;
        for (size_t index = 0; index < self->count && all; index++) {
            if ((exclude >> index & 1) || !cu_node_live (self, index))
                continue;
            asked++;
            if (cu_status (self, index, &status [index], CU_STATUS_MS) != 0) {
                all = false;
                break;
            }
            if (!strcmp (status [index].role, "leader")) {
                leader = (int) index;
                leaders++;
            }
        }
        if (all && asked && leaders == 1) {
            bool agree = true;
            for (size_t index = 0; index < self->count && agree; index++) {
                if ((exclude >> index & 1) || !cu_node_live (self, index) || (int) index == leader)
                    continue;
                agree = !strcmp (status [index].leader, self->nodes [leader].name)
                     && status [index].term == status [leader].term;
            }
            if (agree)
                return leader;
        }
        if (tu_mono_ns () >= deadline)
            return -1;
        zclock_sleep (20);
    }
}

int
cu_wait_converged (cu_cluster_t *self, uint32_t mask, int timeout_ms, char *why,
                   size_t why_size)
{
    uint64_t deadline = s_deadline (timeout_ms);
    uint64_t last_head = UINT64_MAX;
    char line [CU_WHY_MAX] = "";
    while (true) {
        cu_status_t status [CU_NODES_MAX];
        bool same = true;
        int first = -1;
        size_t used = 0;
        line [0] = 0;
        for (size_t index = 0; index < self->count; index++) {
            if (!(mask >> index & 1))
                continue;
            if (!cu_node_live (self, index) || cu_status (self, index, &status [index],
                                                          CU_STATUS_MS) != 0) {
                used += (size_t) snprintf (line + used, sizeof line - used, " %s: no STATUS;",
                                           self->nodes [index].name);
                same = false;
                continue;
            }
            cu_status_t *at = &status [index];
            if (used < sizeof line)
                used += (size_t) snprintf (line + used, sizeof line - used,
                                           " %s: %s head %" PRIu64 " digest %s commit %" PRIu64
                                           " applied %" PRIu64 " term %" PRIu64 ";",
                                           at->node, at->role, at->head, at->digest,
                                           at->commit_index, at->applied_index, at->term);
            if (used > sizeof line)
                used = sizeof line;
            if (at->applied_index != at->commit_index)
                same = false;
            if (first < 0)
                first = (int) index;
            else
            //  Not the digest: logs that differ are shown entry by entry by
            //  the REPLAY comparison, which says more than two digests
            if (at->head != status [first].head)
                same = false;
        }
        if (same && first >= 0) {
            if (status [first].head == last_head)
                return 0;
            last_head = status [first].head;
        }
        else
            last_head = UINT64_MAX;
        if (tu_mono_ns () >= deadline) {
            s_why (why, why_size, "not converged within %d ms:%s", timeout_ms, line);
            return -1;
        }
        zclock_sleep (50);
    }
}

int
cu_isolate (cu_cluster_t *self, size_t index, rp_mode_t mode)
{
    for (size_t other = 0; other < self->count; other++) {
        if (other == index)
            continue;
        if (!self->proxies [index][other] || !self->proxies [other][index])
            return -1;
        if (rp_proxy_set_mode (self->proxies [index][other], mode) != 0
        ||  rp_proxy_set_mode (self->proxies [other][index], mode) != 0)
            return -1;
    }
    return 0;
}
