/*  =========================================================================
    herald_slab - outgoing ZeroMQ frames that share a few large blocks

    A block, while the loop fills it:

        +------+------+------+--------------------------------+-----------+
        | pool | refs | used | frame bytes, back to back  ... | free      |
        +------+------+------+--------------------------------+-----------+

    refs counts the frames pointing into the block plus one for the
    allocator while the block is current.  libzmq calls s_release from its
    I/O thread once a frame is sent (or dropped); the allocator drops its
    own reference when the block is full.  So a block lives exactly as long
    as the frames in it, and what the broker holds in flight stays bounded
    by the same high-water marks and credit as before.

    A block whose last frame is gone goes back to a pool (up to POOL_MAX
    blocks) rather than to free(): a 32 KiB malloc per block made glibc
    consolidate its fastbins, full of the small chunks libzmq frees for
    every frame, which cost a fifth of the broker's time on a replay.  The
    pool is shared with the I/O thread under a mutex, taken once per block
    (about 250 frames), and outlives the allocator until its last block
    comes back.

    What the frames hold is counted, so that the broker can bound it per
    client (herald_slab_held): each frame charges its block its length
    plus HERALD_SLAB_FRAME_OVERHEAD, and a block's charges join the pool's
    atomic `held` when the allocator lets go of it (it is full, or
    herald_slab_flush) and leave it when its last frame is released.  So
    the count is touched once per block, not per frame, on either thread;
    the current block's charges are the allocator's own and are added on
    reading.  A frame larger than a quarter of a block gets a block of its
    own, charged at once.
    =========================================================================
*/

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include "herald_slab.h"

#define POOL_MAX    64                  //  idle blocks kept for reuse

typedef struct _s_pool_t s_pool_t;

typedef struct _s_block_t {
    s_pool_t *pool;
    atomic_size_t refs;
    size_t size;                        //  bytes after the header
    size_t used;
    //  Frame bytes and overheads charged; written by the allocator while
    //  the block is current, read by whichever thread drops the last
    //  reference (the release of refs orders the two).
    size_t charged;
    struct _s_block_t *next;            //  in the pool's idle list
    max_align_t align [];               //  the bytes start here
} s_block_t;

struct _s_pool_t {
    pthread_mutex_t mutex;
    s_block_t *idle;                    //  blocks ready for reuse
    size_t idle_count;
    size_t block_size;
    size_t blocks;                      //  blocks alive: idle, current or in flight
    bool closed;                        //  the allocator is gone
    //  Charges of the blocks the allocator has let go of and libzmq has
    //  not released yet; the allocator adds, either thread subtracts.
    atomic_size_t held;
};

struct _herald_slab_t {
    size_t block_size;
    s_pool_t *pool;
    s_block_t *block;                   //  the one being filled, or NULL
};

//  Free the pool once it is closed and holds no block.  Under its mutex;
//  returns true when it was freed (the mutex is gone too).
static bool
s_pool_release_if_done (s_pool_t *pool)
{
    if (!pool->closed || pool->blocks > 0)
        return false;
    pthread_mutex_unlock (&pool->mutex);
    pthread_mutex_destroy (&pool->mutex);
    free (pool);
    return true;
}

//  A block's last reference is gone: its charges leave the count, and it
//  goes back to the pool, or is freed (always, when it was made for one
//  large frame).
static void
s_block_done (s_block_t *block)
{
    s_pool_t *pool = block->pool;
    atomic_fetch_sub_explicit (&pool->held, block->charged, memory_order_relaxed);
    pthread_mutex_lock (&pool->mutex);
    if (!pool->closed && pool->idle_count < POOL_MAX && block->size == pool->block_size) {
        block->next = pool->idle;
        pool->idle = block;
        pool->idle_count++;
        pthread_mutex_unlock (&pool->mutex);
        return;
    }
    pool->blocks--;
    free (block);
    if (!s_pool_release_if_done (pool))
        pthread_mutex_unlock (&pool->mutex);
}

static void
s_block_unref (s_block_t *block)
{
    if (atomic_fetch_sub_explicit (&block->refs, 1, memory_order_acq_rel) == 1)
        s_block_done (block);
}

//  libzmq's free callback, run by whichever thread closes the frame.
static void
s_release (void *data, void *hint)
{
    (void) data;
    s_block_unref ((s_block_t *) hint);
}

//  A block to fill: an idle one from the pool, or a new one.  NULL when
//  memory ran out.
static s_block_t *
s_block_get (herald_slab_t *self)
{
    s_pool_t *pool = self->pool;
    pthread_mutex_lock (&pool->mutex);
    s_block_t *block = pool->idle;
    if (block) {
        pool->idle = block->next;
        pool->idle_count--;
    }
    else {
        block = (s_block_t *) malloc (sizeof (s_block_t) + self->block_size);
        if (block) {
            block->pool = pool;
            block->size = self->block_size;
            pool->blocks++;
        }
    }
    pthread_mutex_unlock (&pool->mutex);
    if (block) {
        atomic_init (&block->refs, 1);
        block->used = 0;
        block->charged = 0;
        block->next = NULL;
    }
    return block;
}

//  The allocator lets go of its current block: the block's charges join
//  the pool's count first, so that the release of its last frame, on
//  either thread, finds them there.
static void
s_block_retire (herald_slab_t *self)
{
    s_block_t *block = self->block;
    self->block = NULL;
    atomic_fetch_add_explicit (&self->pool->held, block->charged, memory_order_relaxed);
    s_block_unref (block);
}

//  A frame of len bytes in a block of its own, charged at once.
static int
s_frame_alone (herald_slab_t *self, zmq_msg_t *frame, const void *bytes, size_t len)
{
    s_pool_t *pool = self->pool;
    s_block_t *block = (s_block_t *) malloc (sizeof (s_block_t) + len);
    if (!block)
        return -1;
    block->pool = pool;
    block->size = len;
    block->used = len;
    block->charged = len + HERALD_SLAB_FRAME_OVERHEAD;
    block->next = NULL;
    atomic_init (&block->refs, 1);
    memcpy (block->align, bytes, len);
    if (zmq_msg_init_data (frame, block->align, len, s_release, block) != 0) {
        free (block);
        return -1;
    }
    pthread_mutex_lock (&pool->mutex);
    pool->blocks++;
    pthread_mutex_unlock (&pool->mutex);
    atomic_fetch_add_explicit (&pool->held, block->charged, memory_order_relaxed);
    return 0;
}

herald_slab_t *
herald_slab_new (size_t block_size)
{
    herald_slab_t *self = (herald_slab_t *) calloc (1, sizeof (herald_slab_t));
    s_pool_t *pool = (s_pool_t *) calloc (1, sizeof (s_pool_t));
    if (!self || !pool) {
        free (self);
        free (pool);
        return NULL;
    }
    pthread_mutex_init (&pool->mutex, NULL);
    atomic_init (&pool->held, 0);
    pool->block_size = block_size;
    self->block_size = block_size;
    self->pool = pool;
    return self;
}

void
herald_slab_destroy (herald_slab_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    herald_slab_t *self = *self_p;
    s_pool_t *pool = self->pool;
    if (self->block)
        s_block_retire (self);
    //  Free the idle blocks; blocks still in flight free themselves, and
    //  the last one frees the pool.
    pthread_mutex_lock (&pool->mutex);
    pool->closed = true;
    while (pool->idle) {
        s_block_t *block = pool->idle;
        pool->idle = block->next;
        pool->blocks--;
        free (block);
    }
    pool->idle_count = 0;
    if (!s_pool_release_if_done (pool))
        pthread_mutex_unlock (&pool->mutex);
    free (self);
    *self_p = NULL;
}

int
herald_slab_frame (herald_slab_t *self, zmq_msg_t *frame, const void *bytes, size_t len)
{
    if (len > self->block_size / 4)
        return s_frame_alone (self, frame, bytes, len);
    if (self->block && self->block_size - self->block->used < len)
        s_block_retire (self);
    if (!self->block && !(self->block = s_block_get (self)))
        return -1;
    s_block_t *block = self->block;
    char *data = (char *) block->align + block->used;
    memcpy (data, bytes, len);
    atomic_fetch_add_explicit (&block->refs, 1, memory_order_relaxed);
    if (zmq_msg_init_data (frame, data, len, s_release, block) != 0) {
        atomic_fetch_sub_explicit (&block->refs, 1, memory_order_relaxed);
        return -1;
    }
    block->used += len;
    block->charged += len + HERALD_SLAB_FRAME_OVERHEAD;
    return 0;
}

void
herald_slab_flush (herald_slab_t *self)
{
    if (self->block)
        s_block_retire (self);
}

size_t
herald_slab_held (herald_slab_t *self)
{
    return atomic_load_explicit (&self->pool->held, memory_order_relaxed)
         + (self->block? self->block->charged: 0);
}
