/*  =========================================================================
    test_herald_uuid_fork - UUIDv7 ids stay unique across fork

    A forked child inherits the generator's memory: its pool of random
    bytes, its millisecond and its counter.  Unless it reseeds, it draws
    the same pool bytes as the parent in the same order, so each of its
    first ids has the same 62 random bits (rand_b) as one of the parent's,
    and when both make an id in the same millisecond the whole id is the
    same.  Whether the millisecond matches is up to the scheduler; shared
    random bits are not, so these tests check both: no id and no rand_b
    twice across all the processes.  Two independent draws of 62 bits
    collide with probability 2^-62 per pair: a few hundred ids never do.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include "herald_uuid.h"

#define S_CHILDREN      8
#define S_PER_PROCESS   64          //  more than one pool refill (25 ids a pool)

static int
s_compare (const void *a, const void *b)
{
    return memcmp (a, b, 16);
}

static int
s_compare_rand_b (const void *a, const void *b)
{
    return memcmp ((const uint8_t *) a + 8, (const uint8_t *) b + 8, 8);
}

//  Wait up to 10 s for pid to exit (killing it then); its exit status,
//  or -1 when it did not exit by itself.
static int
s_reap (pid_t pid)
{
    int index;
    for (index = 0; index < 1000; index++) {
        int status;
        pid_t rc = waitpid (pid, &status, WNOHANG);
        if (rc == pid)
            return WIFEXITED (status)? WEXITSTATUS (status): -1;
        if (rc < 0 && errno != EINTR)
            return -1;
        struct timespec tick = { 0, 10 * 1000000 };
        nanosleep (&tick, NULL);
    }
    kill (pid, SIGKILL);
    waitpid (pid, NULL, 0);
    return -1;
}

//  In a child: make count ids straight away and write them to fd.
static void
s_child_ids (int fd, size_t count)
{
    uint8_t ids [S_PER_PROCESS * 16];
    for (size_t index = 0; index < count; index++)
        herald_uuid_v7 (ids + 16 * index);
    ssize_t rc = write (fd, ids, count * 16);
    _exit (rc == (ssize_t) (count * 16)? 0: 1);
}

//  Check ids[0..count) hold no id and no rand_b twice (sorts them).
static void
s_check_unique (uint8_t *ids, size_t count)
{
    qsort (ids, count, 16, s_compare);
    for (size_t index = 1; index < count; index++)
        cr_assert_neq (memcmp (ids + 16 * index, ids + 16 * (index - 1), 16), 0,
                       "the same id was made twice, in two processes");
    qsort (ids, count, 16, s_compare_rand_b);
    for (size_t index = 1; index < count; index++)
        cr_assert_neq (memcmp (ids + 16 * index + 8, ids + 16 * (index - 1) + 8, 8), 0,
                       "two processes drew the same random bits for an id");
}

//  Make ids in this process, start S_CHILDREN children with spawn (which
//  returns the child's pid, or -1) that each write S_PER_PROCESS ids to a
//  pipe, make as many here meanwhile, and check them all.
static void
s_run (pid_t (*spawn) (void))
{
    uint8_t *ids = calloc ((S_CHILDREN + 1) * S_PER_PROCESS, 16);
    cr_assert_not_null (ids);
    uint8_t warm [16];
    herald_uuid_v7 (warm);          //  the pool is filled and partly used
    int fds [S_CHILDREN][2];
    pid_t pids [S_CHILDREN];
    for (int child = 0; child < S_CHILDREN; child++) {
        cr_assert_eq (pipe (fds [child]), 0);
        pids [child] = spawn ();
        cr_assert_geq (pids [child], 0, "fork: %s", strerror (errno));
        if (pids [child] == 0) {
            close (fds [child][0]);
            s_child_ids (fds [child][1], S_PER_PROCESS);
        }
        close (fds [child][1]);
    }
    for (size_t index = 0; index < S_PER_PROCESS; index++)
        herald_uuid_v7 (ids + 16 * index);
    size_t count = S_PER_PROCESS;
    for (int child = 0; child < S_CHILDREN; child++) {
        cr_assert_eq (s_reap (pids [child]), 0, "child %d failed", child);
        ssize_t rc = read (fds [child][0], ids + 16 * count, S_PER_PROCESS * 16);
        close (fds [child][0]);
        cr_assert_eq (rc, S_PER_PROCESS * 16, "child %d wrote %zd bytes", child, rc);
        count += S_PER_PROCESS;
    }
    s_check_unique (ids, count);
    free (ids);
}

static pid_t
s_fork (void)
{
    return fork ();
}

//  A raw clone(2), as fork() without glibc's fork handlers: a library or
//  runtime that makes processes its own way.
static pid_t
s_raw_clone (void)
{
    return (pid_t) syscall (SYS_clone, SIGCHLD, 0, 0, 0, 0);
}

Test (herald_uuid_fork, forked_children_share_no_id_and_no_random_bits)
{
    s_run (s_fork);
}

Test (herald_uuid_fork, children_of_a_raw_clone_reseed_too)
{
    s_run (s_raw_clone);
}

Test (herald_uuid_fork, ids_still_increase_in_a_child)
{
    uint8_t id [16];
    herald_uuid_v7 (id);
    pid_t pid = fork ();
    cr_assert_geq (pid, 0);
    if (pid == 0) {
        uint8_t previous [16], next [16];
        herald_uuid_v7 (previous);
        for (int index = 0; index < 20000; index++) {
            herald_uuid_v7 (next);
            if (memcmp (next, previous, 16) <= 0)
                _exit (1);
            memcpy (previous, next, 16);
        }
        _exit (0);
    }
    cr_assert_eq (s_reap (pid), 0, "a child's ids did not strictly increase");
}

//  A thread making ids while the main thread forks: a child forked while
//  that thread held the generator's lock must not find it locked for ever.
static atomic_bool s_stop;

static void *
s_spinner (void *arg)
{
    (void) arg;
    uint8_t id [16];
    while (!atomic_load (&s_stop))
        herald_uuid_v7 (id);
    return NULL;
}

Test (herald_uuid_fork, fork_while_another_thread_makes_ids_does_not_deadlock)
{
    atomic_store (&s_stop, false);
    pthread_t thread;
    cr_assert_eq (pthread_create (&thread, NULL, s_spinner, NULL), 0);
    int failed = 0;
    for (int round = 0; round < 200 && !failed; round++) {
        pid_t pid = fork ();
        if (pid == 0) {
            alarm (5);              //  a deadlocked child dies instead of hanging
            uint8_t id [16];
            herald_uuid_v7 (id);
            _exit (0);
        }
        if (pid < 0 || s_reap (pid) != 0)
            failed = round + 1;
    }
    atomic_store (&s_stop, true);
    pthread_join (thread, NULL);
    cr_assert_eq (failed, 0, "fork round %d: the child could not make an id", failed - 1);
}
