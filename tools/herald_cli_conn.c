/*  =========================================================================
    herald_cli_conn - the herald tool's DEALER on the broker's api

    One request id counter and one socket per run.  Every wait for a reply
    is bounded by --timeout: a broker that does not answer in time is
    reported once, as "broker at E did not answer", and the tool exits 2.
    The tool never retries on its own; a PUBLISH retry is safe (ids are
    the idempotency key) but is the operator's call.

    DESIGN (saying at once that nothing listens)
    ZeroMQ connects in the background and retries a refused connect every
    100 ms in silence, so a stopped broker or a wrong port would cost the
    whole --timeout and read like a broker that hangs.  Before the DEALER
    connects, herald_cli_probe makes one plain connect to the endpoint
    (non-blocking, bounded by --timeout): "connection refused" there is
    said at once, with the endpoint the user gave; a probe that connects is
    closed again at once (the broker sees a connection without a greeting,
    which ZeroMQ drops quietly).  That costs one round trip per command.
    While a reply is awaited, a monitor on the DEALER reports a connection
    the broker closed (it stopped, or the endpoint is not a HWP api, whose
    handshake fails) at once instead of at the timeout.  Every one of
    these exits 2, like a broker that does not answer.
    =========================================================================
*/

#include "herald_cli.h"
#include "herald_curve.h"

#include <errno.h>
#include <stdarg.h>
#include <netdb.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

struct _herald_cli_conn_t {
    zsock_t *dealer;
    zsock_t *watch;                 //  the DEALER's monitor (PAIR)
    bool handshaken;                //  a HWP/ZMTP handshake succeeded
    int failed;                     //  the handshake failure seen (monitor event), or 0
    char *why;                      //  quiet: failures go here, not stderr
    size_t why_size;
    char *endpoint;
    int timeout_ms;
    uint64_t next_rid;
};

//  ---------------------------------------------------------------------
//  Endpoints

static bool
s_endpoint_one (const char *option, const char *text, char *buf, size_t size);

//  A cluster's nodes: a comma-separated list, each item normalized alone.
bool
herald_cli_endpoint (const char *option, const char *text, char *buf, size_t size)
{
    if (!strchr (text, ','))
        return s_endpoint_one (option, text, buf, size);
    size_t used = 0;
    const char *at = text;
    while (true) {
        const char *end = strchr (at, ',');
        size_t len = end ? (size_t) (end - at) : strlen (at);
        char item [HERALD_CLI_ENDPOINT_MAX];
        char normal [HERALD_CLI_ENDPOINT_MAX];
        if (len == 0 || len >= sizeof item) {
            herald_cli_fail (HERALD_CLI_EXIT_USAGE, "%s: '%s': %s", option, text,
                             len ? "an endpoint is too long"
                                 : "an empty endpoint in the list (give E1,E2,...)");
            return false;
        }
        memcpy (item, at, len);
        item [len] = 0;
        if (!s_endpoint_one (option, item, normal, sizeof normal))
            return false;
        int written = snprintf (buf + used, size - used, "%s%s", used ? "," : "", normal);
        if (written < 0 || (size_t) written >= size - used) {
            herald_cli_fail (HERALD_CLI_EXIT_USAGE, "%s: '%s': the list is too long (at most "
                             "%zu bytes)", option, text, size - 1);
            return false;
        }
        used += (size_t) written;
        if (!end)
            return true;
        at = end + 1;
    }
}

static bool
s_endpoint_one (const char *option, const char *text, char *buf, size_t size)
{
    const char *rest = text;
    if (strncmp (text, "ipc://", 6) == 0 || strncmp (text, "inproc://", 9) == 0) {
        if (strlen (text) > (size_t) (text [0] == 'i' && text [1] == 'p' ? 6 : 9)
        &&  strlen (text) < size) {
            strcpy (buf, text);
            return true;
        }
    }
    else {
        if (strncmp (text, "tcp://", 6) == 0)
            rest = text + 6;
        else
        if (strstr (text, "://")) {
            herald_cli_fail (HERALD_CLI_EXIT_USAGE, "%s: '%s': only tcp://, ipc:// and "
                             "inproc:// endpoints reach a broker", option, text);
            return false;
        }
        //  HOST:PORT, [V6]:PORT or :PORT; the port is the text after the
        //  last colon (an IPv6 literal's colons are inside brackets)
        const char *colon = strrchr (rest, ':');
        const char *close = strrchr (rest, ']');
        size_t host_len = colon ? (size_t) (colon - rest) : 0;
        const char *port = colon ? colon + 1 : "";
        bool port_ok = *port && strlen (port) <= 5 && strspn (port, "0123456789") == strlen (port)
                    && atoi (port) >= 1 && atoi (port) <= 65535;
        bool host_ok = colon && (!close || close < colon)
                    && strcspn (rest, "/ \t*") >= host_len
                    && (rest [0] == '[') == (close != NULL)
                    && (close == NULL || close == colon - 1);
        if (port_ok && host_ok) {
            int written = host_len
                        ? snprintf (buf, size, "tcp://%.*s:%s", (int) host_len, rest, port)
                        : snprintf (buf, size, "tcp://127.0.0.1:%s", port);
            if (written > 0 && (size_t) written < size)
                return true;
        }
    }
    herald_cli_fail (HERALD_CLI_EXIT_USAGE, "%s: '%s' is not an endpoint: give "
                     "tcp://HOST:PORT, HOST:PORT, :PORT (this host) or ipc://PATH",
                     option, text);
    return false;
}

//  A non-blocking connect to one address, bounded by deadline (zclock_mono).
//  Returns 0 when it connected, else an errno (ETIMEDOUT at the deadline).
static int
s_connect_one (int family, const struct sockaddr *address, socklen_t address_len,
               int64_t deadline)
{
    int fd = socket (family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return errno;
    int error = 0;
    if (connect (fd, address, address_len) != 0) {
        error = errno;
        if (error == EINPROGRESS) {
            struct pollfd item = { .fd = fd, .events = POLLOUT };
            int64_t wait;
            int ready = 0;
            do {
                wait = deadline - zclock_mono ();
                ready = poll (&item, 1, wait > 0 ? (int) wait : 0);
            } while (ready < 0 && errno == EINTR);
            socklen_t error_len = sizeof error;
            if (ready == 0)
                error = ETIMEDOUT;
            else
            if (ready < 0)
                error = errno;
            else
            if (getsockopt (fd, SOL_SOCKET, SO_ERROR, &error, &error_len) != 0)
                error = errno;
        }
    }
    close (fd);
    return error;
}

int
herald_cli_probe (const char *endpoint, int timeout_ms, char *why, size_t why_size)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    int error = 0;
    if (strncmp (endpoint, "ipc://", 6) == 0) {
        struct sockaddr_un address = { .sun_family = AF_UNIX };
        if (strlen (endpoint + 6) >= sizeof address.sun_path)
            return 0;               //  let ZeroMQ say what it thinks of it
        strcpy (address.sun_path, endpoint + 6);
        error = s_connect_one (AF_UNIX, (struct sockaddr *) &address, sizeof address, deadline);
        if (error == ENOENT)
            error = ECONNREFUSED;
    }
    else
    if (strncmp (endpoint, "tcp://", 6) == 0) {
        //  tcp://HOST:PORT as herald_cli_endpoint made it; IPv4 unless the
        //  host is a bracketed IPv6 literal, as ZeroMQ resolves it
        const char *host = endpoint + 6;
        const char *colon = strrchr (host, ':');
        char name [256];
        bool v6 = host [0] == '[';
        size_t host_len = (size_t) (colon - host);
        if (v6)
            host_len = host_len >= 2 ? host_len - 2 : 0;
        snprintf (name, sizeof name, "%.*s", (int) host_len, host + (v6 ? 1 : 0));
        struct addrinfo hints = { .ai_family = v6 ? AF_INET6 : AF_INET,
                                  .ai_socktype = SOCK_STREAM };
        struct addrinfo *found = NULL;
        int gai = getaddrinfo (name, colon + 1, &hints, &found);
        if (gai != 0) {
            snprintf (why, why_size, "cannot resolve '%s' (in %s): %s", name, endpoint,
                      gai == EAI_SYSTEM ? strerror (errno) : gai_strerror (gai));
            return gai == EAI_NONAME ? HERALD_CLI_EXIT_USAGE : HERALD_CLI_EXIT_NO_ANSWER;
        }
        //  Any address that accepts will do; refused wins over other errors
        struct addrinfo *item;
        error = EADDRNOTAVAIL;
        for (item = found; item; item = item->ai_next) {
            int this_error = s_connect_one (item->ai_family, item->ai_addr,
                                            item->ai_addrlen, deadline);
            if (this_error == 0 || error == EADDRNOTAVAIL || this_error == ECONNREFUSED)
                error = this_error;
            if (error == 0)
                break;
        }
        freeaddrinfo (found);
    }
    if (error == 0)
        return 0;
    if (error == ECONNREFUSED)
        snprintf (why, why_size, "nothing listens at %s (connection refused): is heraldd "
                  "running there? (./run.sh starts one on the default endpoints)", endpoint);
    else
    if (error == ETIMEDOUT)
        snprintf (why, why_size, "broker at %s did not answer (no connection within %d ms)",
                  endpoint, timeout_ms);
    else
        snprintf (why, why_size, "cannot reach %s: %s", endpoint, strerror (error));
    return HERALD_CLI_EXIT_NO_ANSWER;
}

zsock_t *
herald_cli_watch (zsock_t *sock)
{
    static unsigned int counter = 0;
    char endpoint [64];
    snprintf (endpoint, sizeof endpoint, "inproc://herald-cli-watch-%d-%u",
              (int) getpid (), ++counter);
    if (zmq_socket_monitor (zsock_resolve (sock), endpoint,
                            ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED
                            | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL
                            | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
                            | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) != 0)
        return NULL;
    zsock_t *watch = zsock_new (ZMQ_PAIR);
    if (watch && zsock_connect (watch, "%s", endpoint) != 0)
        zsock_destroy (&watch);
    if (!watch)
        zmq_socket_monitor (zsock_resolve (sock), NULL, 0);
    return watch;
}

int
herald_cli_watch_event (zsock_t *watch)
{
    if (!watch || !(zsock_events (watch) & ZMQ_POLLIN))
        return 0;
    zmsg_t *msg = zmsg_recv (watch);
    zframe_t *frame = msg ? zmsg_first (msg) : NULL;
    uint16_t event = 0;
    if (frame && zframe_size (frame) >= 2)
        memcpy (&event, zframe_data (frame), 2);
    zmsg_destroy (&msg);
    return event;
}

void
herald_cli_unwatch (zsock_t *sock, zsock_t **watch_p)
{
    if (*watch_p && sock)
        zmq_socket_monitor (zsock_resolve (sock), NULL, 0);
    zsock_destroy (watch_p);
}

//  ---------------------------------------------------------------------
//  Security: one CURVE identity for the whole run

static const char *s_key_opt;       //  --key, --server-key as given
static const char *s_server_key_opt;
static herald_curve_t *s_curve;
static bool s_loaded;
static int s_load_rc;
static char s_load_why [600];

void
herald_cli_security_opt (const char *key_file, const char *server_key)
{
    if (key_file)
        s_key_opt = key_file;
    if (server_key)
        s_server_key_opt = server_key;
}

static void
s_security_free (void)
{
    herald_curve_destroy (&s_curve);
}

int
herald_cli_security_load (char *why, size_t why_size)
{
    if (!s_loaded) {
        s_loaded = true;
        //  The variables hold paths (a key itself for HERALD_SERVER_KEY,
        //  which is public): never a secret in the environment
        const char *key_file = s_key_opt? s_key_opt: getenv ("HERALD_KEY");
        const char *server_key = s_server_key_opt? s_server_key_opt
                                                 : getenv ("HERALD_SERVER_KEY");
        if (key_file && !*key_file)
            key_file = NULL;
        if (server_key && !*server_key)
            server_key = NULL;
        if (key_file || server_key) {
            char message [500];
            s_curve = herald_curve_new (key_file, server_key, message, sizeof message);
            if (s_curve)
                atexit (s_security_free);
            else {
                //  Name what the user set: the option, or the variable
                const char *key_name = s_key_opt ? "--key" : "HERALD_KEY";
                const char *server_name = s_server_key_opt ? "--server-key"
                                                           : "HERALD_SERVER_KEY";
                s_load_rc = HERALD_CLI_EXIT_USAGE;
                if (!key_file)
                    snprintf (s_load_why, sizeof s_load_why, "%s is given without --key (or "
                              "HERALD_KEY): CURVE needs this client's secret key file too",
                              server_name);
                else
                if (!server_key)
                    snprintf (s_load_why, sizeof s_load_why, "%s is given without --server-key "
                              "(or HERALD_SERVER_KEY): give the broker's public key (Z85, or "
                              "@FILE), learned out of band", key_name);
                else
                if (strncmp (message, "server_key", 10) == 0)
                    //  (the library's message names its option: say ours)
                    snprintf (s_load_why, sizeof s_load_why, "%s: %s", server_name,
                              message + 10 + strspn (message + 10, ": "));
                else
                    snprintf (s_load_why, sizeof s_load_why, "%s: %s", key_name, message);
            }
        }
    }
    if (s_load_rc && why)
        snprintf (why, why_size, "%s", s_load_why);
    return s_load_rc;
}

bool
herald_cli_secured (void)
{
    return s_curve != NULL;
}

void
herald_cli_secure (zsock_t *sock)
{
    if (s_curve)
        herald_curve_apply (s_curve, sock);
}

//  The security mechanism the peer at endpoint names in its ZMTP 3
//  greeting ("NULL", "CURVE", ...) into mechanism; false when it could not
//  be read within timeout_ms.  A failed handshake alone does not say
//  whether the broker wanted CURVE, or held another key: when one side
//  closes first, libzmq reports no detail.  The greeting does.
static bool
s_peer_mechanism (const char *endpoint, int timeout_ms, char *mechanism, size_t size)
{
    zsock_t *raw = zsock_new (ZMQ_STREAM);
    if (!raw)
        return false;
    zsock_set_linger (raw, 0);
    //  Ours: the signature and major version 3 only.  The peer answers with
    //  its whole greeting; given ours whole, it would find the mechanisms
    //  differ and close before its own left its buffer
    const uint8_t greeting [11] = { 0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0x7F, 3 };
    uint8_t peer [64];
    size_t got = 0;
    zframe_t *id = NULL;
    int64_t deadline = zclock_mono () + timeout_ms;
    zpoller_t *poller = zsock_connect (raw, "%s", endpoint) == 0? zpoller_new (raw, NULL)
                                                                 : NULL;
    while (poller && got < sizeof peer && zclock_mono () < deadline) {
        if (!zpoller_wait (poller, (int) (deadline - zclock_mono ())))
            break;
        zmsg_t *msg = zmsg_recv (raw);
        zframe_t *from = msg? zmsg_pop (msg): NULL;
        zframe_t *data = msg? zmsg_pop (msg): NULL;
        if (from && data && !id && zframe_size (data) == 0) {
            id = zframe_dup (from);         //  connected: send our greeting
            zmsg_t *out = zmsg_new ();
            zmsg_append (out, &from);
            zmsg_addmem (out, greeting, sizeof greeting);
            zmsg_send (&out, raw);
        }
        else
        if (data && zframe_size (data) == 0)
            got = 0, poller = (zpoller_destroy (&poller), NULL);    //  it closed
        else
        if (data) {
            size_t take = zframe_size (data) < sizeof peer - got? zframe_size (data)
                                                                 : sizeof peer - got;
            memcpy (peer + got, zframe_data (data), take);
            got += take;
        }
        zframe_destroy (&from);
        zframe_destroy (&data);
        zmsg_destroy (&msg);
    }
    zpoller_destroy (&poller);
    zframe_destroy (&id);
    zsock_destroy (&raw);
    if (got < 32 || peer [0] != 0xFF || peer [9] != 0x7F || peer [10] < 3)
        return false;
    snprintf (mechanism, size, "%.*s", (int) strnlen ((const char *) peer + 12, 20),
              (const char *) peer + 12);
    return true;
}

int
herald_cli_handshake_failure (int event, const char *endpoint, char *why, size_t size)
{
    char mechanism [24] = "";
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL
    ||  event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL)
        s_peer_mechanism (endpoint, 1000, mechanism, sizeof mechanism);
    bool peer_curve = streq (mechanism, "CURVE");
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
        snprintf (why, size, "the broker at %s refused this key (unknown, revoked or expired)",
                  endpoint);
    else
    if (event != ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL
    &&  event != ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL)
        return 0;
    else
    if (s_curve && (peer_curve || !*mechanism))
        snprintf (why, size, "the broker at %s did not prove the key given by --server-key "
                  "(HERALD_SERVER_KEY): it holds another key%s", endpoint,
                  *mechanism? "": ", or it is not a CURVE broker");
    else
    if (s_curve)
        snprintf (why, size, "the broker at %s does not speak CURVE (its security is off): "
                  "leave out --key and --server-key (HERALD_KEY, HERALD_SERVER_KEY)", endpoint);
    else
    if (peer_curve)
        snprintf (why, size, "the broker at %s requires CURVE: give --key FILE and "
                  "--server-key KEY|@FILE (or HERALD_KEY, HERALD_SERVER_KEY)", endpoint);
    else
        return 0;                   //  not a key matter: herald_cli_conn_lost says what
    return HERALD_CLI_EXIT_FAIL;
}

//  ---------------------------------------------------------------------
//  The connection

//  Print "herald: ..." (or, when quiet, keep it in self->why); returns code.
static int
s_fail (herald_cli_conn_t *self, int code, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));

static int
s_fail (herald_cli_conn_t *self, int code, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    if (self->why)
        vsnprintf (self->why, self->why_size, format, args);
    else {
        fputs ("herald: ", stderr);
        vfprintf (stderr, format, args);
        fputc ('\n', stderr);
    }
    va_end (args);
    return code;
}

static int
    s_open_one (const char *endpoint, int timeout_ms, char *why, size_t why_size,
                herald_cli_conn_t **self_p);

//  A list: the first endpoint that answers the probe, in order.
int
herald_cli_conn_open_to (const char *endpoint, int timeout_ms, char *why, size_t why_size,
                         herald_cli_conn_t **self_p)
{
    *self_p = NULL;
    int loaded = herald_cli_security_load (why, why_size);
    if (loaded)
        return loaded;
    if (!strchr (endpoint, ','))
        return s_open_one (endpoint, timeout_ms, why, why_size, self_p);
    int rc = HERALD_CLI_EXIT_NO_ANSWER;
    const char *at = endpoint;
    while (at) {
        const char *end = strchr (at, ',');
        char item [HERALD_CLI_ENDPOINT_MAX];
        snprintf (item, sizeof item, "%.*s", (int) (end ? end - at : (long) strlen (at)), at);
        rc = s_open_one (item, timeout_ms, why, why_size, self_p);
        if (rc == 0)
            return 0;
        at = end ? end + 1 : NULL;
    }
    return rc;                      //  the last one's reason
}

//  The next endpoint of list after current (the first when current is not
//  in it) into buf; false when the list has no other.
bool
herald_cli_endpoint_next (const char *list, const char *current, char *buf, size_t size)
{
    size_t count = 0;
    const char *items [64];
    size_t lens [64];
    for (const char *at = list; at && count < 64; ) {
        const char *end = strchr (at, ',');
        items [count] = at;
        lens [count++] = end ? (size_t) (end - at) : strlen (at);
        at = end ? end + 1 : NULL;
    }
    size_t next = 0;
    for (size_t index = 0; index < count; index++)
        if (lens [index] == strlen (current) && memcmp (items [index], current, lens [index]) == 0)
            next = (index + 1) % count;
    if (count < 2 || lens [next] >= size)
        return false;
    memcpy (buf, items [next], lens [next]);
    buf [lens [next]] = 0;
    return true;
}

const char *
herald_cli_conn_endpoint (herald_cli_conn_t *self)
{
    return self->endpoint;
}

void
herald_cli_conn_quiet_off (herald_cli_conn_t *self)
{
    self->why = NULL;
}

static int
    s_open_socket (const char *endpoint, int timeout_ms, char *why, size_t why_size,
                   herald_cli_conn_t **self_p);

//  The first handshake's outcome on a new connection: the monitor event
//  (HANDSHAKE_SUCCEEDED or a failure), or 0 at the deadline.
static int
s_await_handshake (herald_cli_conn_t *self, int64_t deadline)
{
    zpoller_t *poller = zpoller_new (self->watch, NULL);
    int outcome = 0;
    while (!outcome && poller && zclock_mono () < deadline) {
        if (!zpoller_wait (poller, (int) (deadline - zclock_mono ())))
            break;
        int event = herald_cli_watch_event (self->watch);
        if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
            self->handshaken = true;
            outcome = event;
        }
        else
        if (event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL
        ||  event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
        ||  event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
            outcome = self->failed = event;
    }
    zpoller_destroy (&poller);
    return outcome;
}

static int
s_open_one (const char *endpoint, int timeout_ms, char *why, size_t why_size,
            herald_cli_conn_t **self_p)
{
    *self_p = NULL;
    herald_cli_conn_t quiet = { .why = why, .why_size = why_size };
    char probe_why [512];
    int rc = herald_cli_probe (endpoint, timeout_ms, probe_why, sizeof probe_why);
    if (rc)
        return s_fail (&quiet, rc, "%s", probe_why);
    //  A broker-key rotation (--server-key NEW,OLD): the first key whose
    //  handshake the broker completes.  A broker that holds another key
    //  cannot read our HELLO, which the monitor reports without detail
    size_t keys = s_curve? herald_curve_server_count (s_curve): 1;
    int64_t deadline = zclock_mono () + timeout_ms;
    for (size_t tried = 1; keys > 1 && tried < keys; tried++) {
        rc = s_open_socket (endpoint, timeout_ms, why, why_size, self_p);
        if (rc || s_await_handshake (*self_p, deadline) != ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL)
            return rc;
        herald_cli_conn_destroy (self_p);
        herald_curve_next (s_curve);
    }
    return s_open_socket (endpoint, timeout_ms, why, why_size, self_p);
}

static int
s_open_socket (const char *endpoint, int timeout_ms, char *why, size_t why_size,
               herald_cli_conn_t **self_p)
{
    herald_cli_conn_t quiet = { .why = why, .why_size = why_size };
    int rc;
    herald_cli_conn_t *self = calloc (1, sizeof *self);
    if (!self)
        return s_fail (&quiet, HERALD_CLI_EXIT_FAIL, "out of memory");
    self->why = why;
    self->why_size = why_size;
    self->endpoint = strdup (endpoint);
    self->timeout_ms = timeout_ms;
    self->next_rid = 1;
    self->dealer = zsock_new (ZMQ_DEALER);
    if (self->dealer)
        self->watch = herald_cli_watch (self->dealer);
    if (!self->endpoint || !self->dealer || !self->watch) {
        herald_cli_conn_destroy (&self);
        return s_fail (&quiet, HERALD_CLI_EXIT_FAIL, "cannot create a socket");
    }
    //  Unsent requests are dropped at exit rather than holding it up
    zsock_set_linger (self->dealer, 0);
    zsock_set_sndhwm (self->dealer, 0);
    zsock_set_rcvhwm (self->dealer, 0);
    //  A send never waits: with no HWM it can fail only when the DEALER
    //  has no pipe, i.e. its connection is gone for good (a refused
    //  handshake is never retried), and a blocking send would then wait
    //  forever (seen: herald status without a key at a secure broker, when
    //  the refusal came before the request was queued)
    zsock_set_sndtimeo (self->dealer, 0);
    if (strncmp (self->endpoint, "tcp://[", 7) == 0)
        zsock_set_ipv6 (self->dealer, 1);
    herald_cli_secure (self->dealer);
    if (zsock_connect (self->dealer, "%s", self->endpoint) != 0) {
        rc = s_fail (self, HERALD_CLI_EXIT_FAIL, "cannot connect to %s: %s",
                     self->endpoint, zmq_strerror (zmq_errno ()));
        herald_cli_conn_destroy (&self);
        return rc;
    }
    *self_p = self;
    return 0;
}

int
herald_cli_conn_open (const herald_cli_opts_t *opts, herald_cli_conn_t **self_p)
{
    char why [600];
    int rc = herald_cli_security_load (why, sizeof why);
    if (rc)
        return herald_cli_fail (rc, "%s", why);
    rc = herald_cli_conn_open_to (opts->endpoint, opts->timeout_ms, why, sizeof why, self_p);
    if (rc)
        return herald_cli_fail (rc, "%s%s", rc == HERALD_CLI_EXIT_USAGE ? "--endpoint: " : "",
                                why);
    (*self_p)->why = NULL;          //  from now on, failures are printed
    return 0;
}

void
herald_cli_conn_destroy (herald_cli_conn_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    herald_cli_conn_t *self = *self_p;
    herald_cli_unwatch (self->dealer, &self->watch);
    zsock_destroy (&self->dealer);
    free (self->endpoint);
    free (self);
    *self_p = NULL;
}

uint64_t
herald_cli_conn_rid (herald_cli_conn_t *self)
{
    return self->next_rid++;
}

zsock_t *
herald_cli_conn_sock (herald_cli_conn_t *self)
{
    return self->dealer;
}

int
herald_cli_conn_send (herald_cli_conn_t *self, const herald_msg_t *msg)
{
    msgpack_sbuffer body;
    msgpack_sbuffer_init (&body);
    int rc = herald_msg_encode (msg, &body);
    bool gone = false;
    if (rc == 0) {
        const char *command = herald_msg_command (msg->type);
        zmsg_t *out = zmsg_new ();
        if (!out
        ||  zmsg_addmem (out, command, strlen (command)) != 0
        ||  zmsg_addmem (out, body.data, body.size) != 0
        ||  zmsg_send (&out, self->dealer) != 0) {
            gone = out && zmq_errno () == EAGAIN;
            zmsg_destroy (&out);
            rc = -1;
        }
    }
    msgpack_sbuffer_destroy (&body);
    if (gone)
        return herald_cli_conn_lost (self);     //  says why, as a receive would
    if (rc != 0)
        return s_fail (self, HERALD_CLI_EXIT_FAIL, "cannot send %s to %s",
                                herald_msg_command (msg->type), self->endpoint);
    return 0;
}

int
herald_cli_conn_no_answer (herald_cli_conn_t *self)
{
    return s_fail (self, HERALD_CLI_EXIT_NO_ANSWER, "broker at %s did not answer",
                            self->endpoint);
}

int
herald_cli_conn_lost (herald_cli_conn_t *self)
{
    //  A refused key, a broker key not proven, CURVE on one side only:
    //  said as such, never as a broker that went away (exit 1: retrying
    //  will not help)
    //  The monitor may say DISCONNECTED before the handshake's failure:
    //  a closed connection that never completed a handshake waits a
    //  moment for the reason
    int64_t deadline = zclock_mono () + 200;
    while (!self->failed && !self->handshaken && zclock_mono () < deadline) {
        zpoller_t *poller = zpoller_new (self->watch, NULL);
        bool ready = poller && zpoller_wait (poller, (int) (deadline - zclock_mono ()));
        zpoller_destroy (&poller);
        if (!ready)
            break;
        herald_cli_conn_check (self);
    }
    char failure [600];
    int code = herald_cli_handshake_failure (self->failed, self->endpoint, failure,
                                             sizeof failure);
    if (code)
        return s_fail (self, code, "%s", failure);
    //  (quiet: tail reconnecting to what was a broker, which may be
    //  stopping or starting right now)
    if (self->handshaken || self->why)
        return s_fail (self, HERALD_CLI_EXIT_NO_ANSWER, "broker at %s closed the connection "
                       "before it answered (did it stop?)", self->endpoint);
    return s_fail (self, HERALD_CLI_EXIT_NO_ANSWER, "%s closed the connection during the "
                   "ZeroMQ handshake: is it the broker's api endpoint (not its fanout)?",
                   self->endpoint);
}

bool
herald_cli_conn_check (herald_cli_conn_t *self)
{
    int event;
    bool lost = false;
    while ((event = herald_cli_watch_event (self->watch)) != 0) {
        if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED)
            self->handshaken = true;
        else {
            if (event != ZMQ_EVENT_DISCONNECTED)
                self->failed = event;
            lost = true;
        }
    }
    //  A reply that arrived before the connection closed is still read
    return !lost || (zsock_events (self->dealer) & ZMQ_POLLIN);
}

zsock_t *
herald_cli_conn_watch_sock (herald_cli_conn_t *self)
{
    return self->watch;
}

int
herald_cli_conn_recv (herald_cli_conn_t *self, herald_cli_reply_t *reply)
{
    memset (reply, 0, sizeof *reply);
    zpoller_t *poller = zpoller_new (self->dealer, self->watch, NULL);
    if (!poller)
        return s_fail (self, HERALD_CLI_EXIT_FAIL, "out of memory");
    int64_t deadline = zclock_mono () + self->timeout_ms;
    void *ready = NULL;
    bool lost = false;
    while (!ready && !lost) {
        int64_t wait = deadline - zclock_mono ();
        if (wait <= 0)
            break;
        ready = zpoller_wait (poller, (int) wait);
        if (ready == self->watch) {
            ready = NULL;
            lost = !herald_cli_conn_check (self);
        }
        if (!ready && zpoller_terminated (poller))
            break;
    }
    if (lost) {
        zpoller_destroy (&poller);
        return herald_cli_conn_lost (self);
    }
    bool interrupted = !ready && zpoller_terminated (poller);
    zpoller_destroy (&poller);
    if (!ready)
        return interrupted ? s_fail (self, HERALD_CLI_EXIT_FAIL, "interrupted")
                           : herald_cli_conn_no_answer (self);
    reply->msg = zmsg_recv (self->dealer);
    if (!reply->msg || zmsg_size (reply->msg) < 2)
        return s_fail (self, HERALD_CLI_EXIT_FAIL, "malformed reply from %s",
                                self->endpoint);
    zframe_t *command = zmsg_first (reply->msg);
    zframe_t *body = zmsg_next (reply->msg);
    reply->type = herald_msg_type_from_command (zframe_data (command),
                                                zframe_size (command), true);
    if (reply->type == HERALD_MSG_INVALID)
        return s_fail (self, HERALD_CLI_EXIT_FAIL, "unknown reply '%.*s' from %s",
                                (int) zframe_size (command),
                                (const char *) zframe_data (command), self->endpoint);
    msgpack_zone_init (&reply->zone, 1024);
    reply->zone_ready = true;
    herald_error_t err;
    if (herald_msg_decode (&reply->body, reply->type, zframe_data (body),
                           zframe_size (body), NULL, &reply->zone, &err) != HERALD_OK)
        return s_fail (self, HERALD_CLI_EXIT_FAIL, "bad %s reply from %s: %s: %s",
                                herald_msg_command (reply->type), self->endpoint,
                                err.field, err.message);
    return 0;
}

void
herald_cli_reply_fini (herald_cli_reply_t *reply)
{
    zmsg_destroy (&reply->msg);
    if (reply->zone_ready)
        msgpack_zone_destroy (&reply->zone);
    reply->zone_ready = false;
}

int
herald_cli_print_error (const herald_cli_reply_t *reply)
{
    const __typeof__ (reply->body.error) *error = &reply->body.error;
    const char *code = herald_err_code (error->code);
    fprintf (stderr, "herald: %s: %.*s", code ? code : "internal",
             (int) error->message.len, error->message.ptr ? error->message.ptr : "");
    if (error->code == HERALD_ERR_CONFLICT)
        fprintf (stderr, " (topic '%.*s': expected version %" PRIu64 ", actual %" PRIu64 ")",
                 (int) error->topic.len, error->topic.ptr ? error->topic.ptr : "",
                 error->expected, error->actual);
    //  leader nil: no leader known (an election under way)
    if (error->code == HERALD_ERR_NOT_LEADER && error->leader.ptr && error->leader.len)
        fprintf (stderr, " (leader: %.*s)", (int) error->leader.len, error->leader.ptr);
    else
    if (error->code == HERALD_ERR_NOT_LEADER)
        fputs (" (leader: unknown)", stderr);
    fputc ('\n', stderr);
    return HERALD_CLI_EXIT_FAIL;
}
