/*  =========================================================================
    herald_uuid - UUIDv7 event ids for publishers

    Layout (RFC 9562, section 5.7), big-endian:

        0                   1                   2                   3
        +-------------------------------+-------------------------------+
        |                    unix_ts_ms (48 bits)                       |
        +---------------+---------------+-------+-----------------------+
        |  ... ts_ms    | ver=7 | rand_a: 12-bit counter                |
        +---+-----------+-----------------------------------------------+
        |var| rand_b: 62 random bits                                    |
        +---+-----------------------------------------------------------+

    DESIGN
    Ids must be strictly increasing within a process, also when thousands
    are made in one millisecond.  The state (last millisecond, counter) sits
    behind one mutex.  Each new millisecond reseeds the counter with 11
    random bits, so at least 2048 more ids fit before it overflows; on
    overflow the timestamp moves one millisecond ahead of the clock (and
    stays there until the clock catches up), as RFC 9562 6.2 allows.  A
    clock that steps back is treated the same way: the last millisecond is
    kept.  Random bytes come from getrandom() through a small pool so one id
    costs no system call most of the time.

    FORK
    A forked child starts with a copy of the parent's memory: the same
    pool bytes, the same millisecond and counter.  Left alone, parent and
    child make the same ids in the same millisecond, and each of the
    child's ids until the pool is refilled shares its 62 random bits with
    one of the parent's; the broker would then take the child's different
    event for a retry.  So the
    state (mutex included) lives on a page of its own marked
    MADV_WIPEONFORK: the kernel hands any child a zeroed copy, whatever
    made it (fork, _Fork, a raw clone without CLONE_VM: none of those
    needs to run our code), and a zeroed state is "not seeded", so the
    child's first id reseeds from getrandom.  A zeroed mutex is an
    unlocked one (PTHREAD_MUTEX_INITIALIZER is all zeros, checked at
    start), so a child forked while another thread was making an id does
    not deadlock either.  Where the page cannot be had (a kernel before
    4.14, mmap refused), the state is static and the process id is
    compared on every call, with pthread_atfork handlers keeping the mutex
    consistent across fork().  vfork needs nothing: its child shares the
    parent's memory, so its ids advance the one state.
    =========================================================================
*/

#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include "herald_uuid.h"

#define S_POOL_SIZE 256

//  Everything a fork child must not inherit; all zeros means "not seeded".
typedef struct {
    pthread_mutex_t mutex;
    bool seeded;                    //  false: reseed before the next id
    pid_t pid;                      //  the process that seeded it
    uint64_t last_ms;               //  timestamp of the last id made
    uint16_t counter;               //  its 12-bit counter
    size_t pool_used;
    uint8_t pool [S_POOL_SIZE];
} s_state_t;

static pthread_once_t s_once = PTHREAD_ONCE_INIT;
static s_state_t *s_state;          //  the wiped page, or &s_static
static bool s_wiped;                //  true: s_state is zeroed in a fork child
static s_state_t s_static = { .mutex = PTHREAD_MUTEX_INITIALIZER };

//  Fallback mode only (s_wiped false): hold the mutex across fork() so the
//  child's copy is consistent, and have the child reseed.
static void
s_before_fork (void)
{
    if (!s_wiped)
        pthread_mutex_lock (&s_state->mutex);
}

static void
s_after_fork_parent (void)
{
    if (!s_wiped)
        pthread_mutex_unlock (&s_state->mutex);
}

static void
s_after_fork_child (void)
{
    if (!s_wiped) {
        s_state->seeded = false;
        pthread_mutex_unlock (&s_state->mutex);
    }
}

static void
s_init (void)
{
    s_state = &s_static;
#ifdef MADV_WIPEONFORK
    static const pthread_mutex_t initial = PTHREAD_MUTEX_INITIALIZER;
    static const pthread_mutex_t zeros;
    if (memcmp (&initial, &zeros, sizeof (initial)) == 0) {
        long page = sysconf (_SC_PAGESIZE);
        size_t size = page > 0 && (size_t) page >= sizeof (s_state_t)? (size_t) page
                                                                       : sizeof (s_state_t);
        void *map = mmap (NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                          -1, 0);
        if (map != MAP_FAILED) {
            if (madvise (map, size, MADV_WIPEONFORK) == 0) {
                s_state = (s_state_t *) map;        //  zeroed: unlocked, not seeded
                s_wiped = true;
            }
            else
                munmap (map, size);
        }
    }
#endif
    pthread_atfork (s_before_fork, s_after_fork_parent, s_after_fork_child);
}

//  Forget everything inherited: the next id draws fresh random bytes and
//  a fresh counter.  Called with the mutex held.
static void
s_reseed (s_state_t *self)
{
    self->seeded = true;
    self->pid = getpid ();
    self->last_ms = 0;
    self->counter = 0;
    self->pool_used = S_POOL_SIZE;
}

//  Copy n random bytes from the pool, refilling it from getrandom().  If
//  the kernel has no entropy to give (never, after early boot) fall back to
//  the clock and the process id so ids stay unique by their counter; their
//  randomness is only collision insurance across processes.  Called with
//  the mutex held.
static void
s_random (s_state_t *self, uint8_t *out, size_t n)
{
    if (S_POOL_SIZE - self->pool_used < n) {
        size_t filled = 0;
        while (filled < S_POOL_SIZE) {
            ssize_t rc = getrandom (self->pool + filled, S_POOL_SIZE - filled, 0);
            if (rc <= 0)
                break;
            filled += (size_t) rc;
        }
        if (filled < S_POOL_SIZE) {
            struct timespec now;
            clock_gettime (CLOCK_MONOTONIC, &now);
            uint64_t mix = (uint64_t) now.tv_nsec ^ ((uint64_t) getpid () << 32);
            size_t index;
            for (index = filled; index < S_POOL_SIZE; index++)
                self->pool [index] = (uint8_t) (mix >> (index % 8 * 8)) ^ (uint8_t) index;
        }
        self->pool_used = 0;
    }
    memcpy (out, self->pool + self->pool_used, n);
    self->pool_used += n;
}

static uint64_t
s_now_ms (void)
{
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    return (uint64_t) now.tv_sec * 1000 + (uint64_t) now.tv_nsec / 1000000;
}

void
herald_uuid_v7 (uint8_t id [16])
{
    pthread_once (&s_once, s_init);
    s_state_t *self = s_state;
    uint8_t random [10];
    pthread_mutex_lock (&self->mutex);
    if (!self->seeded || (!s_wiped && self->pid != getpid ()))
        s_reseed (self);
    s_random (self, random, sizeof (random));
    uint64_t ms = s_now_ms ();
    if (ms > self->last_ms) {
        self->last_ms = ms;
        self->counter = (uint16_t) (((random [0] << 8) | random [1]) & 0x07ff);
    }
    else
    if (self->counter < 0x0fff)
        self->counter++;
    else {
        self->last_ms++;
        self->counter = (uint16_t) (((random [0] << 8) | random [1]) & 0x07ff);
    }
    ms = self->last_ms;
    uint16_t counter = self->counter;
    pthread_mutex_unlock (&self->mutex);

    int index;
    for (index = 0; index < 6; index++)
        id [index] = (uint8_t) (ms >> (40 - 8 * index));
    id [6] = (uint8_t) (0x70 | (counter >> 8));
    id [7] = (uint8_t) counter;
    memcpy (id + 8, random + 2, 8);
    id [8] = (uint8_t) (0x80 | (id [8] & 0x3f));
}

void
herald_uuid_format (const uint8_t id [16], char out [HERALD_UUID_STR_LEN + 1])
{
    static const char hex [] = "0123456789abcdef";
    size_t index, pos = 0;
    for (index = 0; index < 16; index++) {
        if (index == 4 || index == 6 || index == 8 || index == 10)
            out [pos++] = '-';
        out [pos++] = hex [id [index] >> 4];
        out [pos++] = hex [id [index] & 0x0f];
    }
    out [pos] = '\0';
}

static int
s_hex (char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

//  Either case is accepted; dashes only at the canonical places, so "a-b"
//  typos are refused rather than silently read as another id.  id is left
//  untouched when text is refused.
bool
herald_uuid_parse (const char *text, size_t len, uint8_t id [16])
{
    bool dashed = len == HERALD_UUID_STR_LEN;
    if (!text || (!dashed && len != 32))
        return false;
    uint8_t out [16];
    size_t pos = 0, index;
    for (index = 0; index < 16; index++) {
        if (dashed && (index == 4 || index == 6 || index == 8 || index == 10)) {
            if (text [pos] != '-')
                return false;
            pos++;
        }
        int hi = s_hex (text [pos]);
        int lo = s_hex (text [pos + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out [index] = (uint8_t) (hi << 4 | lo);
        pos += 2;
    }
    memcpy (id, out, 16);
    return true;
}

uint64_t
herald_uuid_v7_ms (const uint8_t id [16])
{
    uint64_t ms = 0;
    int index;
    for (index = 0; index < 6; index++)
        ms = (ms << 8) | id [index];
    return ms;
}
