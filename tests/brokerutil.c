/*  =========================================================================
    brokerutil - run the real heraldd and talk to it as a third party would

    See brokerutil.h.  No criterion here: every failure is a return value.
    =========================================================================
*/

#include "brokerutil.h"
#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int
bu_free_port (void)
{
    //  Below the kernel's ephemeral range (32768 and up here): a node that
    //  is down for a while (killed, restarted) would otherwise see its port
    //  taken by some connect's source port, even by a peer's connect to that
    //  very port meeting itself (TCP simultaneous open), and could not
    //  listen again (seen: "cannot listen on the raft address ... in use"
    //  after a kill -9).  Random in 20000..32767, checked by a bind; the
    //  kernel's choice if 200 tries find none.
    static unsigned seed;
    if (!seed)
        seed = (unsigned) getpid () ^ (unsigned) tu_mono_ns ();
    for (int tries = 0; tries < 200; tries++) {
        int fd = socket (AF_INET, SOCK_STREAM, 0);
        if (fd < 0)
            return -1;
        struct sockaddr_in address;
        memset (&address, 0, sizeof address);
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
        int port = 20000 + (int) (rand_r (&seed) % 12768);
        address.sin_port = htons ((uint16_t) port);
        int rc = bind (fd, (struct sockaddr *) &address, sizeof address);
        close (fd);
        if (rc == 0)
            return port;
    }
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in address;
    memset (&address, 0, sizeof address);
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    address.sin_port = 0;
    socklen_t len = sizeof address;
    int port = -1;
    if (bind (fd, (struct sockaddr *) &address, sizeof address) == 0
    &&  getsockname (fd, (struct sockaddr *) &address, &len) == 0)
        port = ntohs (address.sin_port);
    close (fd);
    return port;
}

char *
bu_heraldd_path (void)
{
    //  tests/x, tests/.libs/x, bench/.libs/x or bench/compare/.libs/x:
    //  broker/ is up to four levels up
    return tu_build_program ("broker/heraldd");
}

//  A broker in dir (taken over: freed, and removed with everything under
//  it, by bu_broker_destroy), running binary (NULL: bu_heraldd_path).
static bu_broker_t *
s_broker_new_in_dir (char *dir, const char *binary, const char *const *extra)
{
    bu_broker_t *self = calloc (1, sizeof *self);
    if (!self) {
        tu_tmpdir_destroy (&dir);
        return NULL;
    }
    self->binary = binary? strdup (binary): bu_heraldd_path ();
    self->dir = dir;
    if (self->dir) {
        self->data_dir = tu_path (self->dir, "data");
        self->log = tu_path (self->dir, "heraldd.log");
    }
    size_t count = 0;
    bool ok = self->binary && self->dir && self->data_dir && self->log;
    for (; ok && extra && extra [count]; count++) {
        if (count + 1 >= BU_MAX_ARGS || !(self->extra [count] = strdup (extra [count])))
            ok = false;
    }
    if (!ok)
        bu_broker_destroy (&self);
    return self;
}

bu_broker_t *
bu_broker_new (const char *tag, const char *const *extra)
{
    return s_broker_new_in_dir (tu_tmpdir_new (tag), NULL, extra);
}

bu_broker_t *
bu_broker_new_in (const char *parent, const char *tag, const char *binary,
                  const char *const *extra)
{
    char *dir = tu_path (parent, tag);
    if (dir && mkdir (dir, 0700) != 0) {
        free (dir);                 //  not ours to remove: it was there
        return NULL;
    }
    return s_broker_new_in_dir (dir, binary, extra);
}

void
bu_broker_kill (bu_broker_t *self)
{
    if (!self || self->pid <= 0)
        return;
    kill (self->pid, SIGKILL);
    int status = 0;
    while (waitpid (self->pid, &status, 0) < 0 && errno == EINTR)
        ;
    self->status = status;
    self->pid = 0;
}

void
bu_broker_destroy (bu_broker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    bu_broker_t *self = *self_p;
    bu_broker_kill (self);
    tu_tmpdir_destroy (&self->dir);
    free (self->data_dir);
    free (self->log);
    free (self->binary);
    for (size_t index = 0; index < BU_MAX_ARGS; index++)
        free (self->extra [index]);
    free (self);
    *self_p = NULL;
}

pid_t
bu_spawn (const char *binary, char *const *argv, const char *log_path)
{
    return bu_spawn_env (binary, argv, NULL, log_path);
}

pid_t
bu_spawn_env (const char *binary, char *const *argv, char *const *envp, const char *log_path)
{
    int log = open (log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (log < 0)
        return -1;
    fflush (NULL);
    pid_t parent = getpid ();
    pid_t pid = fork ();
    if (pid < 0) {
        close (log);
        return -1;
    }
    if (pid == 0) {
        //  If the test dies (a timeout, a crash), the child dies with it
        prctl (PR_SET_PDEATHSIG, SIGKILL);
        if (getppid () != parent)
            _exit (127);
        //  The criterion worker's signal mask and dispositions are not ours
        sigset_t none;
        sigemptyset (&none);
        sigprocmask (SIG_SETMASK, &none, NULL);
        signal (SIGTERM, SIG_DFL);
        signal (SIGINT, SIG_DFL);
        signal (SIGPIPE, SIG_DFL);
        int null = open ("/dev/null", O_RDONLY);
        if (null >= 0)
            dup2 (null, STDIN_FILENO);
        dup2 (log, STDOUT_FILENO);
        dup2 (log, STDERR_FILENO);
        execve (binary, argv, envp? envp: environ);
        _exit (127);
    }
    close (log);
    return pid;
}

//  Run heraldd on self's data dir, endpoints and extra flags.
static int
s_broker_exec (bu_broker_t *self)
{
    char *argv [BU_MAX_ARGS + 16];
    size_t argc = 0;
    argv [argc++] = self->binary;
    argv [argc++] = "--data-dir";
    argv [argc++] = self->data_dir;
    argv [argc++] = "--api";
    argv [argc++] = self->api;
    argv [argc++] = "--fanout";
    argv [argc++] = self->fanout;
    for (size_t index = 0; self->extra [index]; index++)
        argv [argc++] = self->extra [index];
    argv [argc] = NULL;
    pid_t pid = bu_spawn (self->binary, argv, self->log);
    if (pid < 0)
        return -1;
    self->pid = pid;
    return 0;
}

int
bu_broker_spawn (bu_broker_t *self)
{
    if (self->pid > 0)
        return -1;
    int api = bu_free_port ();
    int fanout = bu_free_port ();
    for (int tries = 0; fanout == api && tries < 10; tries++)
        fanout = bu_free_port ();
    if (api < 0 || fanout < 0 || api == fanout)
        return -1;
    snprintf (self->api, sizeof self->api, "tcp://127.0.0.1:%d", api);
    snprintf (self->fanout, sizeof self->fanout, "tcp://127.0.0.1:%d", fanout);
    return s_broker_exec (self);
}

int
bu_broker_wait (bu_broker_t *self, int timeout_ms)
{
    if (self->pid <= 0)
        return 0;
    uint64_t deadline = tu_mono_ns () + (uint64_t) timeout_ms * 1000000ULL;
    while (true) {
        int status = 0;
        pid_t rc = waitpid (self->pid, &status, WNOHANG);
        if (rc == self->pid) {
            self->status = status;
            self->pid = 0;
            return 0;
        }
        if (rc < 0 && errno != EINTR)
            return -1;
        if (tu_mono_ns () >= deadline)
            return -1;
        //  Sleep a little between checks; no SIGCHLD plumbing in tests
        zclock_sleep (10);
    }
}

int
bu_broker_stop (bu_broker_t *self, int timeout_ms)
{
    if (self->pid <= 0)
        return 0;
    kill (self->pid, SIGTERM);
    if (bu_broker_wait (self, timeout_ms) == 0)
        return 0;
    bu_broker_kill (self);
    return -1;
}

int
bu_broker_respawn (bu_broker_t *self)
{
    if (self->pid > 0)
        return -1;
    return s_broker_exec (self);
}

//  Wait up to timeout_ms for the running broker to answer STATUS.  Returns
//  0, or -1 when it did not (it is killed) or died (see its log).
static int
s_broker_ready (bu_broker_t *self, int timeout_ms)
{
    zsock_t *dealer = bu_dealer_new (self->api);
    if (!dealer) {
        bu_broker_kill (self);
        return -1;
    }
    //  A DEALER queues the request until the broker binds; resend now and
    //  then in case the first connect attempt was refused and backed off.
    uint64_t deadline = tu_mono_ns () + (uint64_t) timeout_ms * 1000000ULL;
    uint64_t rid = 1;
    int rc = -1;
    while (tu_mono_ns () < deadline && rc != 0) {
        msgpack_sbuffer sbuf;
        msgpack_sbuffer_init (&sbuf);
        bu_pack_rid (&sbuf, rid++);
        bu_send_sbuf (dealer, "STATUS", &sbuf);
        msgpack_sbuffer_destroy (&sbuf);
        for (int polls = 0; polls < 10 && rc != 0; polls++) {
            zmsg_t *msg = bu_recv (dealer, 50);
            if (msg) {
                rc = 0;
                zmsg_destroy (&msg);
            }
            else
            if (waitpid (self->pid, &self->status, WNOHANG) == self->pid) {
                self->pid = 0;          //  it died: see the log
                zsock_destroy (&dealer);
                return -1;
            }
        }
    }
    zsock_destroy (&dealer);
    if (rc != 0)
        bu_broker_kill (self);
    return rc;
}

//  True when the log, from offset on, says a bind found its address in use.
static bool
s_bind_raced (const bu_broker_t *self, long offset)
{
    FILE *file = fopen (self->log, "r");
    if (!file)
        return false;
    char text [4096];
    size_t got = 0;
    if (fseek (file, offset, SEEK_SET) == 0)
        got = fread (text, 1, sizeof text - 1, file);
    fclose (file);
    text [got] = 0;
    return strstr (text, "cannot bind") && strstr (text, "in use");
}

int
bu_broker_start (bu_broker_t *self, int timeout_ms)
{
    //  bu_free_port's port is free when it looks, not when heraldd binds it:
    //  another test running beside this one may take it meanwhile (seen:
    //  "cannot bind fanout ...: the address is in use").  A broker that
    //  exits for that gets new ports, a few times.
    for (int tries = 0; tries < 5; tries++) {
        struct stat info;
        long offset = stat (self->log, &info) == 0? (long) info.st_size: 0;
        if (bu_broker_spawn (self))
            return -1;
        if (s_broker_ready (self, timeout_ms) == 0)
            return 0;
        if (self->pid > 0 || !s_bind_raced (self, offset))
            return -1;              //  not a bind race: the caller reads the log
    }
    return -1;
}

int
bu_broker_restart (bu_broker_t *self, int timeout_ms)
{
    if (self->pid > 0)
        return -1;
    //  The ports were just released by the old process: retry a bind race
    for (int tries = 0; tries < 5; tries++) {
        if (s_broker_exec (self) != 0)
            return -1;
        if (s_broker_ready (self, timeout_ms) == 0)
            return 0;
        bu_broker_kill (self);
        zclock_sleep (200);
    }
    return -1;
}

//  max-1 bytes of the broker's log, from its start or up to its end.
static void
s_broker_log_read (const bu_broker_t *self, char *out, size_t max, bool tail)
{
    out [0] = 0;
    FILE *file = fopen (self->log, "r");
    if (!file)
        return;
    if (tail && fseek (file, 0, SEEK_END) == 0) {
        long size = ftell (file);
        fseek (file, size > (long) max - 1? size - (long) max + 1: 0, SEEK_SET);
    }
    size_t got = fread (out, 1, max - 1, file);
    out [got] = 0;
    fclose (file);
}

void
bu_broker_log (const bu_broker_t *self, char *out, size_t max)
{
    s_broker_log_read (self, out, max, false);
}

void
bu_broker_log_tail (const bu_broker_t *self, char *out, size_t max)
{
    s_broker_log_read (self, out, max, true);
}

//  ---------------------------------------------------------------------
//  Clients

zsock_t *
bu_dealer_new (const char *endpoint)
{
    zsock_t *sock = zsock_new (ZMQ_DEALER);
    if (!sock)
        return NULL;
    zsock_set_linger (sock, 0);
    zsock_set_sndhwm (sock, 100000);
    zsock_set_rcvhwm (sock, 100000);
    zsock_set_reconnect_ivl (sock, 20);
    zsock_set_reconnect_ivl_max (sock, 100);
    if (zsock_connect (sock, "%s", endpoint) != 0)
        zsock_destroy (&sock);
    return sock;
}

zsock_t *
bu_sub_new (const char *endpoint, const char *const *prefixes)
{
    zsock_t *sock = zsock_new (ZMQ_SUB);
    if (!sock)
        return NULL;
    zsock_set_linger (sock, 0);
    zsock_set_rcvhwm (sock, 100000);
    zsock_set_reconnect_ivl (sock, 20);
    zsock_set_reconnect_ivl_max (sock, 100);
    for (size_t index = 0; prefixes && prefixes [index]; index++)
        zsock_set_subscribe (sock, prefixes [index]);
    if (zsock_connect (sock, "%s", endpoint) != 0)
        zsock_destroy (&sock);
    return sock;
}

int
bu_send_frames (zsock_t *sock, const void *const *frames, const size_t *sizes, size_t count)
{
    void *handle = zsock_resolve (sock);
    for (size_t index = 0; index < count; index++) {
        int flags = index + 1 < count? ZMQ_SNDMORE: 0;
        if (zmq_send (handle, frames [index], sizes [index], flags) < 0)
            return -1;
    }
    return 0;
}

int
bu_send (zsock_t *sock, const char *command, const void *body, size_t len)
{
    const void *frames [2] = { command, body };
    size_t sizes [2] = { strlen (command), len };
    return bu_send_frames (sock, frames, sizes, 2);
}

int
bu_send_sbuf (zsock_t *sock, const char *command, msgpack_sbuffer *sbuf)
{
    int rc = bu_send (sock, command, sbuf->data, sbuf->size);
    msgpack_sbuffer_clear (sbuf);
    return rc;
}

zmsg_t *
bu_recv (zsock_t *sock, int timeout_ms)
{
    zmq_pollitem_t item = { zsock_resolve (sock), 0, ZMQ_POLLIN, 0 };
    uint64_t deadline = tu_mono_ns () + (uint64_t) (timeout_ms > 0? timeout_ms: 0) * 1000000ULL;
    while (true) {
        uint64_t now = tu_mono_ns ();
        long wait = now >= deadline? 0: (long) ((deadline - now) / 1000000ULL) + 1;
        int rc = zmq_poll (&item, 1, wait);
        if (rc > 0)
            return zmsg_recv (sock);
        if (rc < 0 && errno != EINTR)
            return NULL;
        if (tu_mono_ns () >= deadline)
            return NULL;
    }
}

int
bu_recv_reply (zsock_t *sock, bu_reply_t *self, int timeout_ms)
{
    memset (self, 0, sizeof *self);
    self->rc = HERALD_ERR_INTERNAL;
    self->msg = bu_recv (sock, timeout_ms);
    if (!self->msg || zmsg_size (self->msg) == 0)
        return -1;
    zframe_t *command = zmsg_first (self->msg);
    size_t len = zframe_size (command);
    if (len >= sizeof self->command)
        len = sizeof self->command - 1;
    memcpy (self->command, zframe_data (command), len);
    self->command [len] = 0;
    self->type = herald_msg_type_from_command (zframe_data (command), zframe_size (command), true);
    zframe_t *body = zmsg_next (self->msg);
    if (!body)
        return 0;
    if (!msgpack_zone_init (&self->zone, 2048))
        return -1;
    self->zone_ready = true;
    self->rc = herald_msg_decode (&self->body, self->type, zframe_data (body), zframe_size (body),
                                  NULL, &self->zone, &self->err);
    self->envelope_count = zmsg_size (self->msg) - 2;
    return 0;
}

zframe_t *
bu_reply_envelope (bu_reply_t *self, size_t index)
{
    if (!self->msg || index >= self->envelope_count)
        return NULL;
    zframe_t *frame = zmsg_first (self->msg);
    frame = zmsg_next (self->msg);
    for (size_t at = 0; frame && at <= index; at++)
        frame = zmsg_next (self->msg);
    return frame;
}

void
bu_reply_fini (bu_reply_t *self)
{
    zmsg_destroy (&self->msg);
    if (self->zone_ready)
        msgpack_zone_destroy (&self->zone);
    memset (self, 0, sizeof *self);
}

int
bu_status (zsock_t *sock, uint64_t rid, bu_reply_t *self, int timeout_ms)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    bu_pack_rid (&sbuf, rid);
    int rc = bu_send_sbuf (sock, "STATUS", &sbuf);
    msgpack_sbuffer_destroy (&sbuf);
    if (rc)
        return -1;
    uint64_t deadline = tu_mono_ns () + (uint64_t) timeout_ms * 1000000ULL;
    for (int skipped = 0; skipped < 10000; skipped++) {
        uint64_t now = tu_mono_ns ();
        if (now >= deadline)
            return -1;
        if (bu_recv_reply (sock, self, (int) ((deadline - now) / 1000000ULL) + 1)) {
            bu_reply_fini (self);
            return -1;
        }
        if (self->type == HERALD_MSG_STATUS_REPLY && self->rc == HERALD_OK
        &&  self->body.has_rid && self->body.rid == rid)
            return 0;
        bu_reply_fini (self);
    }
    return -1;
}

//  ---------------------------------------------------------------------
//  Packing

void
bu_pack_str (msgpack_packer *pk, const char *text)
{
    size_t len = strlen (text);
    msgpack_pack_str (pk, len);
    msgpack_pack_str_body (pk, text, len);
}

//  Start a request body in sbuf: a map of keys entries, the first rid.
static void
s_pack_request (msgpack_packer *pk, msgpack_sbuffer *sbuf, size_t keys, uint64_t rid)
{
    msgpack_packer_init (pk, sbuf, msgpack_sbuffer_write);
    msgpack_pack_map (pk, keys);
    bu_pack_str (pk, "rid");
    msgpack_pack_uint64 (pk, rid);
}

void
bu_event_init (bu_event_t *event, const char *topic, const char *data)
{
    memset (event, 0, sizeof *event);
    tu_random_id (event->id);
    event->topic = topic;
    event->data = data;
    event->data_len = data? strlen (data): 0;
}

void
bu_pack_publish (msgpack_sbuffer *sbuf, uint64_t rid, const bu_event_t *events, size_t count)
{
    msgpack_packer pk;
    s_pack_request (&pk, sbuf, 2, rid);
    bu_pack_str (&pk, "events");
    msgpack_pack_array (&pk, count);
    for (size_t index = 0; index < count; index++) {
        const bu_event_t *event = &events [index];
        msgpack_pack_map (&pk, event->has_expect? 4: 3);
        bu_pack_str (&pk, "id");
        msgpack_pack_bin (&pk, HERALD_ID_BYTES);
        msgpack_pack_bin_body (&pk, event->id, HERALD_ID_BYTES);
        bu_pack_str (&pk, "topic");
        bu_pack_str (&pk, event->topic);
        bu_pack_str (&pk, "data");
        msgpack_pack_bin (&pk, event->data_len);
        msgpack_pack_bin_body (&pk, event->data, event->data_len);
        if (event->has_expect) {
            bu_pack_str (&pk, "expect");
            msgpack_pack_uint64 (&pk, event->expect);
        }
    }
}

void
bu_pack_rid (msgpack_sbuffer *sbuf, uint64_t rid)
{
    msgpack_packer pk;
    s_pack_request (&pk, sbuf, 1, rid);
}

void
bu_pack_credit (msgpack_sbuffer *sbuf, uint64_t rid, uint64_t credit)
{
    msgpack_packer pk;
    s_pack_request (&pk, sbuf, 2, rid);
    bu_pack_str (&pk, "credit");
    msgpack_pack_uint64 (&pk, credit);
}

void
bu_pack_replay (msgpack_sbuffer *sbuf, uint64_t rid, const bu_replay_t *replay)
{
    size_t keys = 1 + replay->has_from + replay->has_to + (replay->prefixes != NULL)
                + replay->has_credit;
    msgpack_packer pk;
    s_pack_request (&pk, sbuf, keys, rid);
    if (replay->has_from) {
        bu_pack_str (&pk, "from");
        msgpack_pack_uint64 (&pk, replay->from);
    }
    if (replay->has_to) {
        bu_pack_str (&pk, "to");
        msgpack_pack_uint64 (&pk, replay->to);
    }
    if (replay->prefixes) {
        bu_pack_str (&pk, "prefixes");
        msgpack_pack_array (&pk, replay->prefix_count);
        for (size_t index = 0; index < replay->prefix_count; index++)
            bu_pack_str (&pk, replay->prefixes [index]);
    }
    if (replay->has_credit) {
        bu_pack_str (&pk, "credit");
        msgpack_pack_uint64 (&pk, replay->credit);
    }
}

void
bu_pack_read (msgpack_sbuffer *sbuf, uint64_t rid, const char *topic)
{
    msgpack_packer pk;
    s_pack_request (&pk, sbuf, 2, rid);
    bu_pack_str (&pk, "topic");
    bu_pack_str (&pk, topic);
}

void
bu_pack_hello (msgpack_sbuffer *sbuf, uint64_t rid, uint64_t proto, const char *client)
{
    msgpack_packer pk;
    s_pack_request (&pk, sbuf, 3, rid);
    bu_pack_str (&pk, "proto");
    msgpack_pack_uint64 (&pk, proto);
    bu_pack_str (&pk, "client");
    bu_pack_str (&pk, client);
}

bool
bu_str_eq (herald_str_t str, const char *text)
{
    return str.ptr && str.len == strlen (text) && !memcmp (str.ptr, text, str.len);
}

//  ---------------------------------------------------------------------
//  A cluster of heraldd nodes (issue 13)

bu_cluster_t *
bu_cluster_new (const char *tag, size_t count, const char *const *extra)
{
    if (count == 0 || count > BU_CLUSTER_MAX)
        return NULL;
    bu_cluster_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->count = count;
    //  Every port of every node first, all different: each node's flags
    //  name every member
    int ports [BU_CLUSTER_MAX * 3];
    size_t have = 0;
    for (int tries = 0; have < count * 3 && tries < 1000; tries++) {
        int port = bu_free_port ();
        bool fresh = port > 0;
        for (size_t index = 0; fresh && index < have; index++)
            fresh = ports [index] != port;
        if (fresh)
            ports [have++] = port;
    }
    if (have < count * 3) {
        free (self);
        return NULL;
    }
    char peers [BU_CLUSTER_MAX][160];
    for (size_t index = 0; index < count; index++) {
        snprintf (self->names [index], sizeof self->names [index], "n%zu", index + 1);
        snprintf (self->raft [index], sizeof self->raft [index], "127.0.0.1:%d",
                  ports [index * 3 + 2]);
        snprintf (peers [index], sizeof peers [index],
                  "%s,%s,tcp://127.0.0.1:%d,tcp://127.0.0.1:%d", self->names [index],
                  self->raft [index], ports [index * 3], ports [index * 3 + 1]);
    }
    for (size_t index = 0; index < count; index++) {
        const char *args [BU_MAX_ARGS];
        size_t argc = 0;
        args [argc++] = "--node";
        args [argc++] = self->names [index];
        for (size_t peer = 0; peer < count; peer++) {
            args [argc++] = "--peer";
            args [argc++] = peers [peer];
        }
        args [argc++] = "--cluster-state";
        args [argc++] = "new";
        for (size_t more = 0; extra && extra [more] && argc + 1 < BU_MAX_ARGS; more++)
            args [argc++] = extra [more];
        args [argc] = NULL;
        char name [64];
        snprintf (name, sizeof name, "%s_%s", tag, self->names [index]);
        self->nodes [index] = bu_broker_new (name, args);
        if (!self->nodes [index]) {
            bu_cluster_destroy (&self);
            return NULL;
        }
        snprintf (self->nodes [index]->api, sizeof self->nodes [index]->api,
                  "tcp://127.0.0.1:%d", ports [index * 3]);
        snprintf (self->nodes [index]->fanout, sizeof self->nodes [index]->fanout,
                  "tcp://127.0.0.1:%d", ports [index * 3 + 1]);
    }
    return self;
}

void
bu_cluster_destroy (bu_cluster_t **self_p)
{
    bu_cluster_t *self = *self_p;
    if (!self)
        return;
    for (size_t index = 0; index < self->count; index++)
        bu_broker_destroy (&self->nodes [index]);
    free (self);
    *self_p = NULL;
}

int
bu_cluster_start (bu_cluster_t *self, int timeout_ms)
{
    for (size_t index = 0; index < self->count; index++)
        if (bu_broker_respawn (self->nodes [index]) != 0)
            return -1;
    for (size_t index = 0; index < self->count; index++)
        if (s_broker_ready (self->nodes [index], timeout_ms) != 0)
            return -1;
    return 0;
}

static bool
s_key_is (const msgpack_object *key, const char *name)
{
    return key->type == MSGPACK_OBJECT_STR && key->via.str.size == strlen (name)
        && memcmp (key->via.str.ptr, name, key->via.str.size) == 0;
}

//  A str value into out (size bytes), "" for nil or another type.
static void
s_copy_str (const msgpack_object *value, char *out, size_t size)
{
    out [0] = 0;
    if (value->type == MSGPACK_OBJECT_STR)
        snprintf (out, size, "%.*s", (int) value->via.str.size, value->via.str.ptr);
}

int
bu_node_status (const char *api, bu_node_status_t *status, int timeout_ms)
{
    memset (status, 0, sizeof *status);
    zsock_t *dealer = bu_dealer_new (api);
    if (!dealer)
        return -1;
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    bu_pack_rid (&sbuf, 1);
    bu_send_sbuf (dealer, "STATUS", &sbuf);
    msgpack_sbuffer_destroy (&sbuf);
    zmsg_t *msg = bu_recv (dealer, timeout_ms);
    zsock_destroy (&dealer);
    if (!msg || zmsg_size (msg) != 2) {
        zmsg_destroy (&msg);
        return -1;
    }
    zframe_t *body = zmsg_last (msg);
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    int rc = -1;
    if (msgpack_unpack_next (&unpacked, (const char *) zframe_data (body), zframe_size (body),
                             NULL) == MSGPACK_UNPACK_SUCCESS
    &&  unpacked.data.type == MSGPACK_OBJECT_MAP) {
        rc = 0;
        const msgpack_object_map *map = &unpacked.data.via.map;
        for (uint32_t index = 0; index < map->size; index++) {
            const msgpack_object *key = &map->ptr [index].key;
            const msgpack_object *value = &map->ptr [index].val;
            uint64_t number = value->type == MSGPACK_OBJECT_POSITIVE_INTEGER? value->via.u64: 0;
            if (s_key_is (key, "head"))
                status->head = number;
            else if (s_key_is (key, "role"))
                s_copy_str (value, status->role, sizeof status->role);
            else if (s_key_is (key, "node"))
                s_copy_str (value, status->node, sizeof status->node);
            else if (s_key_is (key, "cluster_state"))
                s_copy_str (value, status->cluster_state, sizeof status->cluster_state);
            else if (s_key_is (key, "raft_id"))
                status->raft_id = number;
            else if (s_key_is (key, "term"))
                status->term = number;
            else if (s_key_is (key, "leader"))
                s_copy_str (value, status->leader, sizeof status->leader);
            else if (s_key_is (key, "leader_api"))
                s_copy_str (value, status->leader_api, sizeof status->leader_api);
            else if (s_key_is (key, "commit_index"))
                status->commit_index = number;
            else if (s_key_is (key, "applied_index"))
                status->applied_index = number;
            else if (s_key_is (key, "last_index"))
                status->last_index = number;
            else if (s_key_is (key, "apply_us_max"))
                status->apply_us_max = number;
            else if (s_key_is (key, "voters"))
                status->voters = number;
            else if (s_key_is (key, "digest"))
                s_copy_str (value, status->digest, sizeof status->digest);
            else if (s_key_is (key, "durability"))
                s_copy_str (value, status->durability, sizeof status->durability);
            else if (s_key_is (key, "peers") && value->type == MSGPACK_OBJECT_ARRAY)
                status->peer_count = value->via.array.size;
        }
    }
    msgpack_unpacked_destroy (&unpacked);
    zmsg_destroy (&msg);
    return rc;
}

int
bu_cluster_leader (bu_cluster_t *self, int timeout_ms)
{
    uint64_t deadline = tu_mono_ns () + (uint64_t) timeout_ms * 1000000ULL;
    for (int rounds = 0; rounds < 100000; rounds++) {
        int leader = -1;
        bool agreed = true;
        bu_node_status_t status [BU_CLUSTER_MAX];
        bool answered [BU_CLUSTER_MAX] = { false };
        for (size_t index = 0; index < self->count; index++) {
            if (self->nodes [index]->pid <= 0)
                continue;
            answered [index] = bu_node_status (self->nodes [index]->api, &status [index],
                                               500) == 0;
            if (answered [index] && strcmp (status [index].role, "leader") == 0) {
                if (leader >= 0 && status [leader].term == status [index].term)
                    agreed = false;     //  two leaders in one term: never
                if (leader < 0 || status [index].term > status [leader].term)
                    leader = (int) index;
            }
        }
        //  Every running node names it (a follower that knows no leader
        //  yet would answer not_leader with nil)
        for (size_t index = 0; leader >= 0 && index < self->count; index++)
            if (self->nodes [index]->pid > 0
            &&  (!answered [index] || strcmp (status [index].leader,
                                              self->names [leader]) != 0))
                agreed = false;
        if (leader >= 0 && agreed)
            return leader;
        if (tu_mono_ns () >= deadline)
            return -1;
        zclock_sleep (50);
    }
    return -1;
}
