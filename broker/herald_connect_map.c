/*  =========================================================================
    herald_connect_map - the test hook's map of raft id to the address a
    node's outbound raft connections to that id go to instead

    DESIGN

    Only with env HERALD_TEST_HOOKS=1, herald_raft.c reads
    HERALD_TEST_RAFT_CONNECT="ID=HOST:PORT,..." into this map and gives
    libraft a transport whose connect looks the peer's id up here.
    libraft sends every message over the sender's own outbound
    connection, so a proxy per directed link sees exactly that link: a
    test partitions A -> B by stopping one proxy.  A fixed table of
    CONNECT_MAP_MAX entries: a test cluster has a handful of links.
    =========================================================================
*/

#include <inttypes.h>
#include "herald_connect_map.h"
#include "herald_log.h"

#define CONNECT_MAP_MAX     16

typedef struct {
    uint64_t id;
    char address [64];
} s_redirect_t;

struct _herald_connect_map_t {
    s_redirect_t redirects [CONNECT_MAP_MAX];
    size_t count;
};

herald_connect_map_t *
herald_connect_map_new (const char *spec)
{
    herald_connect_map_t *self =
        (herald_connect_map_t *) zmalloc (sizeof (herald_connect_map_t));
    char *copy = strdup (spec);
    char *saveptr = NULL;
    char *item;
    for (item = strtok_r (copy, ",", &saveptr); item && self->count < CONNECT_MAP_MAX;
         item = strtok_r (NULL, ",", &saveptr)) {
        char *equals = strchr (item, '=');
        if (!equals)
            continue;
        *equals = 0;
        s_redirect_t *redirect = &self->redirects [self->count];
        redirect->id = strtoull (item, NULL, 10);
        snprintf (redirect->address, sizeof (redirect->address), "%s", equals + 1);
        self->count++;
        herald_log ("info", "raft: test hook: connections to %" PRIu64 " go to %s",
                    redirect->id, redirect->address);
    }
    free (copy);
    return self;
}

void
herald_connect_map_destroy (herald_connect_map_t **self_p)
{
    if (self_p && *self_p) {
        free (*self_p);
        *self_p = NULL;
    }
}

const char *
herald_connect_map_lookup (herald_connect_map_t *self, uint64_t id)
{
    const char *address = NULL;
    size_t index;
    for (index = 0; index < self->count; index++)
        if (self->redirects [index].id == id)
            address = self->redirects [index].address;
    return address;
}
