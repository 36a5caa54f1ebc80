/*  =========================================================================
    herald_slab - outgoing ZeroMQ frames that share a few large blocks

    A block, while the loop fills it:

        +--------+------+--------------------------------+-----------+
        | refs   | cap  | frame bytes, back to back  ... | free      |
        +--------+------+--------------------------------+-----------+
                          ^ used

    refs counts the frames pointing into the block plus one for the
    allocator while the block is current.  libzmq calls s_release from its
    I/O thread once a frame is sent (or dropped); the allocator drops its
    own reference when the block is full.  So a block lives exactly as long
    as the frames in it, and what the broker holds in flight stays bounded
    by the same high-water marks and credit as before.
    =========================================================================
*/

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "herald_slab.h"

typedef struct {
    atomic_size_t refs;
    size_t used;
    size_t cap;
    max_align_t align [];               //  the bytes start here
} s_block_t;

struct _herald_slab_t {
    size_t block_size;
    s_block_t *block;                   //  the one being filled, or NULL
};

static void
s_block_unref (s_block_t *block)
{
    if (atomic_fetch_sub_explicit (&block->refs, 1, memory_order_acq_rel) == 1)
        free (block);
}

//  libzmq's free callback, run by whichever thread closes the frame.
static void
s_release (void *data, void *hint)
{
    (void) data;
    s_block_unref ((s_block_t *) hint);
}

herald_slab_t *
herald_slab_new (size_t block_size)
{
    herald_slab_t *self = (herald_slab_t *) calloc (1, sizeof (herald_slab_t));
    if (self)
        self->block_size = block_size;
    return self;
}

void
herald_slab_destroy (herald_slab_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    herald_slab_t *self = *self_p;
    if (self->block)
        s_block_unref (self->block);
    free (self);
    *self_p = NULL;
}

int
herald_slab_frame (herald_slab_t *self, zmq_msg_t *frame, const void *bytes, size_t len)
{
    if (len > self->block_size / 4) {
        if (zmq_msg_init_size (frame, len) != 0)
            return -1;
        memcpy (zmq_msg_data (frame), bytes, len);
        return 0;
    }
    if (self->block && self->block->cap - self->block->used < len) {
        s_block_unref (self->block);
        self->block = NULL;
    }
    if (!self->block) {
        s_block_t *block = (s_block_t *) malloc (sizeof (s_block_t) + self->block_size);
        if (!block)
            return -1;
        atomic_init (&block->refs, 1);
        block->used = 0;
        block->cap = self->block_size;
        self->block = block;
    }
    s_block_t *block = self->block;
    char *data = (char *) block->align + block->used;
    memcpy (data, bytes, len);
    atomic_fetch_add_explicit (&block->refs, 1, memory_order_relaxed);
    if (zmq_msg_init_data (frame, data, len, s_release, block) != 0) {
        atomic_fetch_sub_explicit (&block->refs, 1, memory_order_relaxed);
        return -1;
    }
    block->used += len;
    return 0;
}
