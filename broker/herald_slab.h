/*  =========================================================================
    herald_slab - outgoing ZeroMQ frames that share a few large blocks

    HWP/1 sends one frame per event in EVENTS (and on fanout).  A frame made
    with zmq_msg_init_size is one malloc in the broker's thread and one free
    in libzmq's I/O thread, and glibc serialises the two on the arena lock:
    on a replay that lock, not the store or the socket, was the broker's
    bottleneck.  Here the bytes of many frames are copied side by side into
    one block; each frame points into it (zmq_msg_init_data) and holds a
    reference, and the block is freed by whichever thread drops the last.

    A block lives while any frame in it is queued, so a slab is for frames
    that leave together: each client connection with streams has its own
    (its frames leave through one pipe, in order), and herald_slab_held
    tells the broker how much that client's unread frames hold, which it
    bounds (--client-max-bytes).  Fanout frames are plain copies: a slow
    subscriber to a rare topic would otherwise keep a whole block alive for
    every event it has queued.

    One herald_slab_t belongs to one thread (the broker loop); the blocks it
    hands out are shared with the I/O thread through atomic counts.
    =========================================================================
*/

#ifndef HERALD_SLAB_H_INCLUDED
#define HERALD_SLAB_H_INCLUDED

#include <stddef.h>
#include <zmq.h>

//  What libzmq itself holds per queued frame beside its bytes, counted in
//  herald_slab_held: the frame's content header (malloc'd, 48 bytes) and
//  its msg_t in the pipe's queue (64 bytes), libzmq 4.3 on 64-bit.
#define HERALD_SLAB_FRAME_OVERHEAD  112

typedef struct _herald_slab_t herald_slab_t;

//  A slab allocator handing out frames from blocks of block_size bytes.
//  Caller owns; NULL when out of memory.
herald_slab_t *
    herald_slab_new (size_t block_size);

//  Drop the allocator's hold on its current block; frames still in flight
//  keep their blocks alive until libzmq is done with them.
void
    herald_slab_destroy (herald_slab_t **self_p);

//  Initialise frame with a copy of len bytes.  Bytes larger than a quarter
//  of a block get a frame of their own.  The caller sends or closes frame.
//  Returns 0, or -1 when memory ran out (frame is then not initialised).
int
    herald_slab_frame (herald_slab_t *self, zmq_msg_t *frame, const void *bytes, size_t len);

//  Bytes held by the frames this slab made that libzmq has not released
//  (sent to the kernel, or dropped with their connection): each frame's
//  length plus HERALD_SLAB_FRAME_OVERHEAD.  Read by the allocator's thread.
size_t
    herald_slab_held (herald_slab_t *self);

//  Let go of the block being filled, so that once its frames are
//  released herald_slab_held can fall to 0.  The next frame starts a new
//  block.
void
    herald_slab_flush (herald_slab_t *self);

#endif
