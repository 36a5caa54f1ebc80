/*  =========================================================================
    herald_cli_conn - the herald tool's DEALER on the broker's api

    One request id counter and one socket per run.  Every wait for a reply
    is bounded by --timeout: a broker that does not answer in time is
    reported once, as "broker at E did not answer", and the tool exits 2.
    The tool never retries on its own; a PUBLISH retry is safe (ids are
    the idempotency key) but is the operator's call.
    =========================================================================
*/

#include "herald_cli.h"

#include <string.h>

struct _herald_cli_conn_t {
    zsock_t *dealer;
    char *endpoint;
    int timeout_ms;
    uint64_t next_rid;
};

herald_cli_conn_t *
herald_cli_conn_new (const herald_cli_opts_t *opts)
{
    herald_cli_conn_t *self = calloc (1, sizeof *self);
    if (!self) {
        herald_cli_fail (HERALD_CLI_EXIT_FAIL, "out of memory");
        return NULL;
    }
    self->endpoint = strdup (opts->endpoint);
    self->timeout_ms = opts->timeout_ms;
    self->next_rid = 1;
    self->dealer = zsock_new (ZMQ_DEALER);
    if (!self->endpoint || !self->dealer) {
        herald_cli_fail (HERALD_CLI_EXIT_FAIL, "cannot create a socket");
        herald_cli_conn_destroy (&self);
        return NULL;
    }
    //  Unsent requests are dropped at exit rather than holding it up
    zsock_set_linger (self->dealer, 0);
    zsock_set_sndhwm (self->dealer, 0);
    zsock_set_rcvhwm (self->dealer, 0);
    if (zsock_connect (self->dealer, "%s", self->endpoint) != 0) {
        herald_cli_fail (HERALD_CLI_EXIT_FAIL, "cannot connect to %s: %s",
                         self->endpoint, zmq_strerror (zmq_errno ()));
        herald_cli_conn_destroy (&self);
        return NULL;
    }
    return self;
}

void
herald_cli_conn_destroy (herald_cli_conn_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    herald_cli_conn_t *self = *self_p;
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
    if (rc == 0) {
        const char *command = herald_msg_command (msg->type);
        zmsg_t *out = zmsg_new ();
        if (!out
        ||  zmsg_addmem (out, command, strlen (command)) != 0
        ||  zmsg_addmem (out, body.data, body.size) != 0
        ||  zmsg_send (&out, self->dealer) != 0) {
            zmsg_destroy (&out);
            rc = -1;
        }
    }
    msgpack_sbuffer_destroy (&body);
    if (rc != 0)
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "cannot send %s to %s",
                                herald_msg_command (msg->type), self->endpoint);
    return 0;
}

int
herald_cli_conn_no_answer (herald_cli_conn_t *self)
{
    return herald_cli_fail (HERALD_CLI_EXIT_NO_ANSWER, "broker at %s did not answer",
                            self->endpoint);
}

int
herald_cli_conn_recv (herald_cli_conn_t *self, herald_cli_reply_t *reply)
{
    memset (reply, 0, sizeof *reply);
    zpoller_t *poller = zpoller_new (self->dealer, NULL);
    if (!poller)
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "out of memory");
    void *ready = zpoller_wait (poller, self->timeout_ms);
    bool interrupted = zpoller_terminated (poller);
    zpoller_destroy (&poller);
    if (!ready)
        return interrupted ? herald_cli_fail (HERALD_CLI_EXIT_FAIL, "interrupted")
                           : herald_cli_conn_no_answer (self);
    reply->msg = zmsg_recv (self->dealer);
    if (!reply->msg || zmsg_size (reply->msg) < 2)
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "malformed reply from %s",
                                self->endpoint);
    zframe_t *command = zmsg_first (reply->msg);
    zframe_t *body = zmsg_next (reply->msg);
    reply->type = herald_msg_type_from_command (zframe_data (command),
                                                zframe_size (command), true);
    if (reply->type == HERALD_MSG_INVALID)
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "unknown reply '%.*s' from %s",
                                (int) zframe_size (command),
                                (const char *) zframe_data (command), self->endpoint);
    msgpack_zone_init (&reply->zone, 1024);
    reply->zone_ready = true;
    herald_error_t err;
    if (herald_msg_decode (&reply->body, reply->type, zframe_data (body),
                           zframe_size (body), NULL, &reply->zone, &err) != HERALD_OK)
        return herald_cli_fail (HERALD_CLI_EXIT_FAIL, "bad %s reply from %s: %s: %s",
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
    if (error->code == HERALD_ERR_NOT_LEADER)
        fprintf (stderr, " (leader: %.*s)", (int) error->leader.len,
                 error->leader.ptr ? error->leader.ptr : "unknown");
    fputc ('\n', stderr);
    return HERALD_CLI_EXIT_FAIL;
}
