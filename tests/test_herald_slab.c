/*  =========================================================================
    test_herald_slab - the broker's frame allocator counts what libzmq holds

    herald_slab_held is what the broker bounds per client
    (--client-max-bytes): each frame counts its length plus
    HERALD_SLAB_FRAME_OVERHEAD from when it is made until libzmq releases
    it (here: zmq_msg_close, as libzmq's I/O thread does once it wrote it),
    and the count falls back to 0 once every frame is released and the
    allocator let go of its block.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <string.h>

#include "herald_slab.h"

#define BLOCK       (32 * 1024)
#define CHARGE(len) ((len) + HERALD_SLAB_FRAME_OVERHEAD)

Test (herald_slab, frames_count_until_released_and_flushed)
{
    herald_slab_t *slab = herald_slab_new (BLOCK);
    cr_assert_not_null (slab);
    cr_assert_eq (herald_slab_held (slab), 0);
    char bytes [100];
    memset (bytes, 'b', sizeof bytes);
    zmq_msg_t frames [10];
    for (size_t i = 0; i < 10; i++) {
        cr_assert_eq (herald_slab_frame (slab, &frames [i], bytes, sizeof bytes), 0);
        cr_assert_eq (memcmp (zmq_msg_data (&frames [i]), bytes, sizeof bytes), 0);
    }
    cr_assert_eq (herald_slab_held (slab), 10 * CHARGE (100));
    //  The block is still being filled: its frames count until it is let go
    for (size_t i = 0; i < 5; i++)
        zmq_msg_close (&frames [i]);
    herald_slab_flush (slab);
    cr_assert_eq (herald_slab_held (slab), 10 * CHARGE (100));
    for (size_t i = 5; i < 10; i++)
        zmq_msg_close (&frames [i]);
    cr_assert_eq (herald_slab_held (slab), 0);
    herald_slab_destroy (&slab);
    cr_assert_null (slab);
}

Test (herald_slab, full_blocks_leave_the_count_with_their_last_frame)
{
    herald_slab_t *slab = herald_slab_new (BLOCK);
    cr_assert_not_null (slab);
    static char bytes [4000];
    memset (bytes, 'f', sizeof bytes);
    //  8 frames of 4000 fill a block of 32 KiB; the 9th starts the next
    zmq_msg_t frames [9];
    for (size_t i = 0; i < 9; i++)
        cr_assert_eq (herald_slab_frame (slab, &frames [i], bytes, sizeof bytes), 0);
    cr_assert_eq (herald_slab_held (slab), 9 * CHARGE (4000));
    for (size_t i = 0; i < 7; i++)
        zmq_msg_close (&frames [i]);
    cr_assert_eq (herald_slab_held (slab), 9 * CHARGE (4000), "a block left with a frame in it");
    zmq_msg_close (&frames [7]);
    cr_assert_eq (herald_slab_held (slab), CHARGE (4000), "the full block did not leave");
    zmq_msg_close (&frames [8]);
    herald_slab_destroy (&slab);
}

Test (herald_slab, a_large_frame_counts_on_its_own)
{
    herald_slab_t *slab = herald_slab_new (BLOCK);
    cr_assert_not_null (slab);
    size_t len = 100000;
    char *bytes = malloc (len);
    cr_assert_not_null (bytes);
    memset (bytes, 'L', len);
    zmq_msg_t frame;
    cr_assert_eq (herald_slab_frame (slab, &frame, bytes, len), 0);
    cr_assert_eq (zmq_msg_size (&frame), len);
    cr_assert_eq (memcmp (zmq_msg_data (&frame), bytes, len), 0);
    cr_assert_eq (herald_slab_held (slab), CHARGE (len));
    zmq_msg_close (&frame);
    cr_assert_eq (herald_slab_held (slab), 0);
    free (bytes);
    herald_slab_destroy (&slab);
}

//  Frames may outlive the allocator (libzmq still holds them when the
//  client's last stream is freed): they free their blocks themselves.
Test (herald_slab, frames_outlive_their_allocator)
{
    herald_slab_t *slab = herald_slab_new (BLOCK);
    cr_assert_not_null (slab);
    static char bytes [20000];
    zmq_msg_t small, large;
    cr_assert_eq (herald_slab_frame (slab, &small, bytes, 100), 0);
    cr_assert_eq (herald_slab_frame (slab, &large, bytes, sizeof bytes), 0);
    herald_slab_destroy (&slab);
    zmq_msg_close (&small);
    zmq_msg_close (&large);
}
