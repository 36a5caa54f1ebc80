/*  =========================================================================
    herald_agent_endpoints - the agent's api (and fanout) option as a list

    The `api` option names one broker or a cluster's nodes, comma-separated;
    `fanout`, when given, one fanout per api endpoint in the same order.
    They are split here once, when the agent is made, and every endpoint is
    checked with libzmq: one it cannot parse is the caller's mistake, said
    now (HERALD_ERR_INVALID) rather than retried forever.  The I/O actor
    (herald_io_node.c) picks the node among them and names it back in
    node_api, which the calls that open a connection of their own read.
    =========================================================================
*/

#include "herald_agent_priv.h"

static void
s_list_free (char ***list_p)
{
    for (size_t index = 0; *list_p && (*list_p) [index]; index++)
        free ((*list_p) [index]);
    free (*list_p);
    *list_p = NULL;
}

//  Split a comma-separated list of endpoints (spaces around each are
//  dropped) into a NULL-terminated array of copies.  -1 with why when an
//  item is empty or too long, or there are too many.
static int
s_split (const char *option, const char *text, char ***list_p, size_t *count_p, char *why,
         size_t why_size)
{
    size_t count = 1;
    for (const char *at = text; *at; at++)
        count += *at == ',';
    if (count > HERALD_AGENT_NODES_MAX) {
        snprintf (why, why_size, "%s: %zu endpoints, at most %d", option, count,
                  HERALD_AGENT_NODES_MAX);
        return -1;
    }
    char **list = calloc (count + 1, sizeof *list);
    if (!list) {
        snprintf (why, why_size, "out of memory");
        return -1;
    }
    *list_p = list;
    const char *at = text;
    for (size_t index = 0; index < count; index++) {
        const char *end = strchr (at, ',');
        if (!end)
            end = at + strlen (at);
        const char *last = end;
        while (at < last && (*at == ' ' || *at == '\t'))
            at++;
        while (last > at && (last [-1] == ' ' || last [-1] == '\t'))
            last--;
        size_t len = (size_t) (last - at);
        if (len == 0 || len >= HERALD_AGENT_ENDPOINT_MAX) {
            snprintf (why, why_size, "%s: '%s': %s", option, text, len? "an endpoint is too "
                      "long": "an empty endpoint (give tcp://HOST:PORT, comma-separated)");
            return -1;
        }
        if (!(list [index] = strndup (at, len))) {
            snprintf (why, why_size, "out of memory");
            return -1;
        }
        at = *end? end + 1: end;
    }
    if (count_p)
        *count_p = count;
    return 0;
}

void
herald_agent_node_api (herald_agent_t *self, char *buf, size_t size)
{
    pthread_mutex_lock (&self->lock);
    snprintf (buf, size, "%s", self->node_api);
    pthread_mutex_unlock (&self->lock);
}

herald_err
herald_agent_endpoints_init (herald_agent_t *self)
{
    char why [HERALD_ERROR_MESSAGE_MAX];
    if (s_split ("api", self->api, &self->endpoints, &self->endpoint_count, why, sizeof why)
    ||  (self->fanout && s_split ("fanout", self->fanout, &self->fanouts, NULL, why,
                                  sizeof why)))
        return herald_agent_set_error (HERALD_ERR_INVALID, "%s", why);
    size_t fanout_count = 0;
    while (self->fanouts && self->fanouts [fanout_count])
        fanout_count++;
    if (self->fanouts && fanout_count != self->endpoint_count)
        return herald_agent_set_error (HERALD_ERR_INVALID, "fanout: %zu endpoints for %zu api "
                                       "endpoints: give one per api endpoint, in the same "
                                       "order, or none (each node names its own)",
                                       fanout_count, self->endpoint_count);
    for (size_t index = 0; index < 2 * self->endpoint_count; index++) {
        const char *endpoint = index < self->endpoint_count? self->endpoints [index]
                             : self->fanouts? self->fanouts [index - self->endpoint_count]
                             : NULL;
        zsock_t *probe = endpoint? zsock_new (ZMQ_DEALER): NULL;
        if (probe) {
            zsock_set_linger (probe, 0);
            int rc = zsock_connect (probe, "%s", endpoint);
            zsock_destroy (&probe);
            if (rc != 0)
                return herald_agent_set_error (HERALD_ERR_INVALID, "%s is not an endpoint "
                                               "ZeroMQ can connect to", endpoint);
        }
    }
    snprintf (self->node_api, sizeof self->node_api, "%s", self->endpoints [0]);
    atomic_store (&self->nodes_known, self->endpoint_count);
    return HERALD_OK;
}

void
herald_agent_endpoints_fini (herald_agent_t *self)
{
    s_list_free (&self->endpoints);
    s_list_free (&self->fanouts);
    self->endpoint_count = 0;
}
