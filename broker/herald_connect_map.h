/*  =========================================================================
    herald_connect_map - the test hook's map of raft id to the address a
    node's outbound raft connections to that id go to instead

    Split out of herald_raft.c, which reads the environment and wraps the
    TCP transport's connect with it; nothing here calls libraft.
    =========================================================================
*/

#ifndef HERALD_CONNECT_MAP_H_INCLUDED
#define HERALD_CONNECT_MAP_H_INCLUDED

#include <czmq.h>

typedef struct _herald_connect_map_t herald_connect_map_t;

//  Parse spec "ID=HOST:PORT,..." (raft ids in decimal), logging each
//  redirect.  Items without "=" are skipped; past the 16th, items are
//  ignored.  Never NULL: a spec with no usable item gives an empty map.
herald_connect_map_t *
    herald_connect_map_new (const char *spec);

//  NULL-safe; clears the caller's pointer.
void
    herald_connect_map_destroy (herald_connect_map_t **self_p);

//  The address connections to id go to (the last item naming id wins),
//  or NULL: connect to the address libraft gave.  Borrowed.
const char *
    herald_connect_map_lookup (herald_connect_map_t *self, uint64_t id);

#endif
