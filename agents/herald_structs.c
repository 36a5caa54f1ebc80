/*  =========================================================================
    herald_structs - the init/size pairs of the public structs a caller
    fills and that may grow (herald_outgoing_t, herald_range_t)

    docs/compatibility.md: a struct that may grow has an init that writes
    every field (a new one keeps the old behaviour at 0 or NULL) and a size
    function, so that a binding laying the struct out itself (the Python
    package) can refuse a library whose struct differs from its own.  The
    agent's, a group's and a subscription's options have theirs beside
    their code (herald_agent.c, herald_agent_group.c, herald_agent_schema.c).
    =========================================================================
*/

#include <string.h>
#include "herald.h"

void
herald_outgoing_init (herald_outgoing_t *event)
{
    memset (event, 0, sizeof *event);
}

size_t
herald_outgoing_size (void)
{
    return sizeof (herald_outgoing_t);
}

void
herald_range_init (herald_range_t *range)
{
    memset (range, 0, sizeof *range);
}

size_t
herald_range_size (void)
{
    return sizeof (herald_range_t);
}
