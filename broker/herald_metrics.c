/*  =========================================================================
    herald_metrics - heraldd's HTTP endpoint: /metrics, /healthz, /readyz

    DESIGN

    heraldd binds the listening socket itself (herald_metrics_new, before
    the store is opened, as it binds api and fanout), so that a port in
    use is a clear error and exit 1, not a broker running without
    metrics; libmicrohttpd then serves it (MHD_OPTION_LISTEN_SOCKET) with
    a thread per connection, so that /healthz never waits behind a scrape
    that waits for the loop (poll, not select: heraldd holds more than
    FD_SETSIZE descriptors with a large store), at most CONNECTION_LIMIT
    connections, each dropped after CONNECTION_TIMEOUT_S idle.  The
    scrapes take the PAIR's end one at a time (the mutex).

    Reading the figures: the HTTP thread owns one end of an inproc PAIR,
    the broker's loop the other.  A scrape sends a rid; the loop answers
    a STATUS body with that rid, with ZMQ_DONTWAIT, between two of its
    turns.  The HTTP thread waits at most STATUS_WAIT_MS and skips any
    stale reply (an older rid).  A body younger than CACHE_MS is reused,
    so however often the endpoint is scraped the loop builds at most one
    STATUS every CACHE_MS for it (a STATUS costs the loop tens of µs plus
    a listing of the data directory for disk_bytes).  The loop never
    blocks on the HTTP thread, and the HTTP thread never reads the
    broker's memory: only the two atomics below.

    /readyz, from that STATUS and the atomics, 503 with the first reason:
      - the broker failed (stop_reason) or is stopping
      - its loop did not answer within STATUS_WAIT_MS
      - disk_low: the free-space guard refuses PUBLISH (docs/broker.md
        Disk space); with the guard off, under 4 MiB free (the least a
        store needs to open)
      - a cluster node: not a member yet (cluster_state), no leader known
        (cut off from the others, or an election under way), or its
        applied index more than --ready-lag entries behind its commit
        index
    =========================================================================
*/

#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdatomic.h>
#include <pthread.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <microhttpd.h>
#include "herald_event.h"
#include "herald_exposition.h"
#include "herald_metrics.h"
#include "herald_disk.h"
#include "herald_log.h"

#define STATUS_WAIT_MS          2000    //  for the loop's STATUS
#define CACHE_MS                100     //  a STATUS body reused this long
#define CONNECTION_LIMIT        64
#define CONNECTION_TIMEOUT_S    10
#define NEARLY_FULL_BYTES       (4u << 20)  //  guard off: not ready below this free

enum { S_SERVING, S_STOPPING, S_FAILED };

struct _herald_metrics_t {
    int fd;                             //  the listening socket, until MHD takes it
    int port;
    char address [300];
    uint64_t ready_lag;
    struct MHD_Daemon *daemon;
    zsock_t *loop;                      //  the broker loop's end
    zsock_t *http;                      //  the HTTP thread's end
    atomic_int state;
    _Atomic (const char *) reason;      //  static text, with S_FAILED
    pthread_mutex_t mutex;              //  below: one scrape at a time
    uint64_t rid;
    uint8_t *body;                      //  the last STATUS body, and when it came
    size_t body_len;
    int64_t body_at;
};

//  ---------------------------------------------------------------------
//  Binding

herald_metrics_t *
herald_metrics_new (const char *address, uint64_t ready_lag, herald_error_t *err)
{
    const char *colon = strrchr (address, ':');
    if (!colon || colon == address) {
        herald_error_set (err, HERALD_ERR_INVALID, "", "metrics: '%s' is not HOST:PORT",
                          address);
        return NULL;
    }
    char host [256];
    snprintf (host, sizeof (host), "%.*s", (int) (colon - address), address);
    //  [::1]:9100
    if (host [0] == '[' && host [strlen (host) - 1] == ']') {
        memmove (host, host + 1, strlen (host));
        host [strlen (host) - 1] = 0;
    }
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
    struct addrinfo *found = NULL;
    int rc = getaddrinfo (host, colon + 1, &hints, &found);
    if (rc != 0) {
        herald_error_set (err, HERALD_ERR_UNAVAILABLE, "", "cannot bind metrics %s: %s",
                          address, gai_strerror (rc));
        return NULL;
    }
    //  Anyone who reaches the port reads every figure: say so off loopback
    bool loopback = found->ai_family == AF_INET
        ? (ntohl (((struct sockaddr_in *) found->ai_addr)->sin_addr.s_addr) >> 24) == 127
        : found->ai_family == AF_INET6
        && IN6_IS_ADDR_LOOPBACK (&((struct sockaddr_in6 *) found->ai_addr)->sin6_addr);
    int fd = socket (found->ai_family, found->ai_socktype | SOCK_CLOEXEC, 0);
    int one = 1;
    int saved = 0;
    if (fd < 0
    ||  setsockopt (fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof (one)) != 0
    ||  bind (fd, found->ai_addr, found->ai_addrlen) != 0
    ||  listen (fd, 64) != 0) {
        saved = errno;
        if (fd >= 0)
            close (fd);
        fd = -1;
    }
    freeaddrinfo (found);
    if (fd < 0) {
        if (saved == EADDRINUSE)
            herald_error_set (err, HERALD_ERR_UNAVAILABLE, "", "cannot bind metrics %s: the "
                              "address is in use (is another heraldd running? choose another "
                              "--metrics HOST:PORT)", address);
        else
            herald_error_set (err, HERALD_ERR_UNAVAILABLE, "", "cannot bind metrics %s: %s",
                              address, strerror (saved));
        return NULL;
    }
    if (!loopback)
        herald_log ("warn", "metrics %s is not a loopback address: whoever reaches it reads "
                    "every STATUS figure, without a key (bind it to a monitoring network "
                    "only)", address);
    herald_metrics_t *self = (herald_metrics_t *) zmalloc (sizeof (herald_metrics_t));
    self->fd = fd;
    self->ready_lag = ready_lag;
    snprintf (self->address, sizeof (self->address), "%s", address);
    struct sockaddr_storage bound;
    socklen_t bound_len = sizeof (bound);
    if (getsockname (fd, (struct sockaddr *) &bound, &bound_len) == 0)
        self->port = ntohs (bound.ss_family == AF_INET6
                          ? ((struct sockaddr_in6 *) &bound)->sin6_port
                          : ((struct sockaddr_in *) &bound)->sin_port);
    atomic_init (&self->state, S_SERVING);
    atomic_init (&self->reason, NULL);
    pthread_mutex_init (&self->mutex, NULL);
    char endpoint [64];
    snprintf (endpoint, sizeof (endpoint), "inproc://herald-metrics-%p", (void *) self);
    self->loop = zsock_new (ZMQ_PAIR);
    self->http = zsock_new (ZMQ_PAIR);
    if (!self->loop || !self->http
    ||  zsock_bind (self->loop, "%s", endpoint) != 0
    ||  zsock_connect (self->http, "%s", endpoint) != 0) {
        herald_error_set (err, HERALD_ERR_NOMEM, "", "metrics: cannot make its inproc "
                          "channel to the broker");
        herald_metrics_destroy (&self);
        return NULL;
    }
    //  Never more than a few replies wait for the HTTP side
    zsock_set_sndhwm (self->loop, 4);
    zsock_set_linger (self->loop, 0);
    zsock_set_linger (self->http, 0);
    return self;
}

int
herald_metrics_port (herald_metrics_t *self)
{
    return self->port;
}

zsock_t *
herald_metrics_loop_sock (herald_metrics_t *self)
{
    return self->loop;
}

void
herald_metrics_set_stopping (herald_metrics_t *self)
{
    int serving = S_SERVING;
    atomic_compare_exchange_strong (&self->state, &serving, S_STOPPING);
}

void
herald_metrics_set_failed (herald_metrics_t *self, const char *reason)
{
    atomic_store (&self->reason, reason);
    atomic_store (&self->state, S_FAILED);
}

//  ---------------------------------------------------------------------
//  The broker's STATUS (HTTP thread, under the mutex)

//  A STATUS body no older than CACHE_MS into self->body; false when the
//  loop did not answer within STATUS_WAIT_MS.
static bool
s_fetch (herald_metrics_t *self)
{
    int64_t now = zclock_mono ();
    if (self->body && now - self->body_at < CACHE_MS)
        return true;
    //  Replies to requests that timed out: dropped
    while (zsock_events (self->http) & ZMQ_POLLIN) {
        zframe_t *stale = zframe_recv (self->http);
        zframe_destroy (&stale);
    }
    uint64_t rid = ++self->rid;
    uint8_t bytes [8];
    for (int at = 0; at < 8; at++)
        bytes [at] = (uint8_t) (rid >> (56 - 8 * at));
    if (zmq_send (zsock_resolve (self->http), bytes, 8, ZMQ_DONTWAIT) != 8)
        return false;
    int64_t deadline = now + STATUS_WAIT_MS;
    while (zclock_mono () < deadline) {
        zmq_pollitem_t item = { zsock_resolve (self->http), 0, ZMQ_POLLIN, 0 };
        int ready = zmq_poll (&item, 1, (long) (deadline - zclock_mono ()));
        if (ready < 0 && zmq_errno () != EINTR)
            return false;
        if (ready <= 0)
            continue;
        zframe_t *frame = zframe_recv (self->http);
        if (!frame)
            return false;
        msgpack_zone zone;
        msgpack_zone_init (&zone, 4096);
        msgpack_object map;
        uint64_t got = 0;
        bool mine = herald_exposition_unpack (zframe_data (frame), zframe_size (frame), &zone,
                                              &map)
                 && herald_exposition_uint (&map, "rid", &got) && got == rid;
        msgpack_zone_destroy (&zone);
        if (mine) {
            free (self->body);
            self->body_len = zframe_size (frame);
            self->body = (uint8_t *) malloc (self->body_len);
            if (self->body)
                memcpy (self->body, zframe_data (frame), self->body_len);
            self->body_at = zclock_mono ();
            zframe_destroy (&frame);
            return self->body != NULL;
        }
        zframe_destroy (&frame);
    }
    return false;
}

//  ---------------------------------------------------------------------
//  Readiness

static bool
s_str_is (const msgpack_object *value, const char *text)
{
    return value && value->type == MSGPACK_OBJECT_STR
        && value->via.str.size == strlen (text)
        && memcmp (value->via.str.ptr, text, value->via.str.size) == 0;
}

//  True when ready; else why, one line.
static bool
s_ready (herald_metrics_t *self, bool answered, char *why, size_t size)
{
    int state = atomic_load (&self->state);
    if (state == S_FAILED) {
        const char *reason = atomic_load (&self->reason);
        snprintf (why, size, "the broker failed (%s) and is stopping; see its log",
                  reason? reason: "see its log");
        return false;
    }
    if (state == S_STOPPING) {
        snprintf (why, size, "the broker is stopping");
        return false;
    }
    if (!answered) {
        snprintf (why, size, "the broker's loop did not answer STATUS within %d ms",
                  STATUS_WAIT_MS);
        return false;
    }
    msgpack_zone zone;
    msgpack_zone_init (&zone, 4096);
    msgpack_object root;
    bool ready = false;
    if (!herald_exposition_unpack (self->body, self->body_len, &zone, &root)) {
        snprintf (why, size, "the broker's STATUS could not be read");
        msgpack_zone_destroy (&zone);
        return false;
    }
    const msgpack_object *map = &root;
    uint64_t low = 0, free_bytes = 0, line = 0, reserve = 0;
    herald_exposition_uint (map, "disk_low", &low);
    bool measured = herald_exposition_uint (map, "disk_free_bytes", &free_bytes);
    herald_exposition_uint (map, "min_free_bytes", &line);
    herald_exposition_uint (map, "disk_reserve_bytes", &reserve);
    char free_text [32], line_text [32], reserve_text [32];
    herald_disk_format (free_bytes, free_text, sizeof (free_text));
    herald_disk_format (line, line_text, sizeof (line_text));
    herald_disk_format (reserve, reserve_text, sizeof (reserve_text));
    const msgpack_object *state_key = herald_exposition_get (map, "cluster_state");
    const msgpack_object *leader = herald_exposition_get (map, "leader");
    uint64_t commit_index = 0, applied_index = 0;
    herald_exposition_uint (map, "commit_index", &commit_index);
    herald_exposition_uint (map, "applied_index", &applied_index);
    if (low)
        snprintf (why, size, "disk space low: %s free on the data directory's file system, "
                  "below min-free %s plus %s of memtables; PUBLISH is refused", free_text,
                  line_text, reserve_text);
    else
    if (line == 0 && measured && free_bytes < NEARLY_FULL_BYTES)
        snprintf (why, size, "disk nearly full: %s free on the data directory's file system "
                  "(the min-free guard is off)", free_text);
    else
    if (state_key && !s_str_is (state_key, "member"))
        snprintf (why, size, "not a cluster member yet: cluster_state %.*s",
                  state_key->type == MSGPACK_OBJECT_STR? (int) state_key->via.str.size: 0,
                  state_key->type == MSGPACK_OBJECT_STR? state_key->via.str.ptr: "");
    else
    if (state_key && (!leader || leader->type != MSGPACK_OBJECT_STR))
        snprintf (why, size, "no leader known: this node is cut off from the cluster's "
                  "majority, or an election is under way");
    else
    if (state_key && commit_index > applied_index
    &&  commit_index - applied_index > self->ready_lag)
        snprintf (why, size, "lagging: applied index %" PRIu64 " is %" PRIu64 " entries "
                  "behind commit index %" PRIu64 " (--ready-lag %" PRIu64 ")", applied_index,
                  commit_index - applied_index, commit_index, self->ready_lag);
    else
        ready = true;
    msgpack_zone_destroy (&zone);
    return ready;
}

//  ---------------------------------------------------------------------
//  HTTP (the MHD thread)

static enum MHD_Result
s_respond (struct MHD_Connection *connection, unsigned int code, const char *type,
           char *text, size_t len, bool owned)
{
    struct MHD_Response *response = MHD_create_response_from_buffer (
        len, text, owned? MHD_RESPMEM_MUST_FREE: MHD_RESPMEM_MUST_COPY);
    if (!response) {
        if (owned)
            free (text);
        return MHD_NO;
    }
    MHD_add_response_header (response, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header (response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (code == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header (response, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result rc = MHD_queue_response (connection, code, response);
    MHD_destroy_response (response);
    return rc;
}

static enum MHD_Result
s_line (struct MHD_Connection *connection, unsigned int code, const char *format, ...)
{
    char text [1024];
    va_list args;
    va_start (args, format);
    int len = vsnprintf (text, sizeof (text) - 1, format, args);
    va_end (args);
    if (len < 0)
        len = 0;
    if ((size_t) len > sizeof (text) - 2)
        len = (int) sizeof (text) - 2;
    text [len++] = '\n';
    text [len] = 0;
    return s_respond (connection, code, "text/plain; charset=utf-8", text, (size_t) len,
                      false);
}

static enum MHD_Result
s_handle (void *cls, struct MHD_Connection *connection, const char *url, const char *method,
          const char *version, const char *upload_data, size_t *upload_data_size,
          void **request)
{
    (void) version;
    (void) upload_data;
    herald_metrics_t *self = (herald_metrics_t *) cls;
    //  A body (POST ...) is not read: the answer is 405 either way
    *upload_data_size = 0;
    (void) request;
    bool head = strcmp (method, MHD_HTTP_METHOD_HEAD) == 0;
    bool known = strcmp (url, "/metrics") == 0 || strcmp (url, "/healthz") == 0
              || strcmp (url, "/readyz") == 0;
    if (!known)
        return s_line (connection, MHD_HTTP_NOT_FOUND, "not found: heraldd serves /metrics, "
                       "/healthz and /readyz");
    if (!head && strcmp (method, MHD_HTTP_METHOD_GET) != 0)
        return s_line (connection, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed: GET "
                       "or HEAD");
    if (strcmp (url, "/healthz") == 0)
        return s_line (connection, MHD_HTTP_OK, "ok");
    //  A broker that failed answers no STATUS, one stopping soon none: said
    //  at once, not after a wait
    char why [600];
    int state = atomic_load (&self->state);
    if (state == S_FAILED || (state == S_STOPPING && strcmp (url, "/readyz") == 0)) {
        s_ready (self, false, why, sizeof (why));
        return s_line (connection, MHD_HTTP_SERVICE_UNAVAILABLE, "%s%s",
                       strcmp (url, "/readyz") == 0? "not ready: ": "", why);
    }
    pthread_mutex_lock (&self->mutex);
    bool answered = s_fetch (self);
    enum MHD_Result rc;
    if (strcmp (url, "/readyz") == 0) {
        if (s_ready (self, answered, why, sizeof (why)))
            rc = s_line (connection, MHD_HTTP_OK, "ready");
        else
            rc = s_line (connection, MHD_HTTP_SERVICE_UNAVAILABLE, "not ready: %s", why);
    }
    else
    if (!answered)
        rc = s_line (connection, MHD_HTTP_SERVICE_UNAVAILABLE, "the broker's loop did not "
                     "answer STATUS within %d ms", STATUS_WAIT_MS);
    else {
        const char *accept = MHD_lookup_connection_value (connection, MHD_HEADER_KIND,
                                                          MHD_HTTP_HEADER_ACCEPT);
        herald_exposition_format_t format =
            accept && strstr (accept, "application/openmetrics-text")
            ? HERALD_EXPOSITION_OPENMETRICS: HERALD_EXPOSITION_PROMETHEUS;
        size_t len = 0;
        char *text = herald_exposition_text (self->body, self->body_len, format, &len);
        if (text)
            rc = s_respond (connection, MHD_HTTP_OK, herald_exposition_content_type (format),
                            text, len, true);
        else
            rc = s_line (connection, MHD_HTTP_INTERNAL_SERVER_ERROR, "the broker's STATUS "
                         "could not be turned into text");
    }
    pthread_mutex_unlock (&self->mutex);
    return rc;
}

//  libmicrohttpd's complaints (a malformed request, a client gone) are a
//  client's doing: at debug level only, so no client writes the log at will.
static void
s_mhd_log (void *cls, const char *format, va_list args)
{
    (void) cls;
    if (!herald_log_debug ())
        return;
    char line [512];
    vsnprintf (line, sizeof (line), format, args);
    size_t len = strlen (line);
    while (len && (line [len - 1] == '\n' || line [len - 1] == '\r'))
        line [--len] = 0;
    herald_log ("debug", "metrics: %s", line);
}

int
herald_metrics_start (herald_metrics_t *self, herald_error_t *err)
{
    self->daemon = MHD_start_daemon (
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL
        | MHD_USE_ERROR_LOG, 0, NULL, NULL, s_handle, self,
        MHD_OPTION_EXTERNAL_LOGGER, s_mhd_log, (void *) self,
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket) self->fd,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int) CONNECTION_LIMIT,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) CONNECTION_TIMEOUT_S,
        MHD_OPTION_END);
    if (!self->daemon) {
        herald_error_set (err, HERALD_ERR_UNAVAILABLE, "", "cannot serve metrics on %s "
                          "(libmicrohttpd would not start)", self->address);
        return -1;
    }
    self->fd = -1;                      //  libmicrohttpd's now
    return 0;
}

void
herald_metrics_destroy (herald_metrics_t **self_p)
{
    herald_metrics_t *self = *self_p;
    if (!self)
        return;
    if (self->daemon)
        MHD_stop_daemon (self->daemon);     //  joins its thread, closes the socket
    if (self->fd >= 0)
        close (self->fd);
    zsock_destroy (&self->http);
    zsock_destroy (&self->loop);
    pthread_mutex_destroy (&self->mutex);
    free (self->body);
    free (self);
    *self_p = NULL;
}
