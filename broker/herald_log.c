/*  =========================================================================
    herald_log - heraldd's log lines on stderr, filtered by --log-level
    =========================================================================
*/

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "herald_log.h"
#include "herald_text.h"

static const char *s_levels [] = { "error", "warn", "info", "debug" };
//  syslog's priorities of the levels: LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG
static const int s_priorities [] = { 3, 4, 6, 7 };
//  Set by the main thread (at start, on SIGHUP), read by every thread
static atomic_int s_level = 2;
//  -1 not looked at yet; 0 no; 1 stderr is the journal's stream
static atomic_int s_journal = -1;

void
herald_log_set_level (const char *level)
{
    for (int rank = 0; rank < 4; rank++)
        if (level && strcmp (s_levels [rank], level) == 0)
            atomic_store (&s_level, rank);
}

const char *
herald_log_level (void)
{
    return s_levels [atomic_load (&s_level)];
}

bool
herald_log_debug (void)
{
    return atomic_load (&s_level) >= 3;
}

//  systemd sets JOURNAL_STREAM for a service whose stderr is the journal;
//  a process whose stderr was redirected since (a shell's 2>file) has
//  another device or inode, and gets plain lines.
bool
herald_log_journal (void)
{
    int journal = atomic_load (&s_journal);
    if (journal >= 0)
        return journal == 1;
    journal = 0;
    const char *stream = getenv ("JOURNAL_STREAM");
    unsigned long long device, inode;
    struct stat info;
    if (stream && sscanf (stream, "%llu:%llu", &device, &inode) == 2
    &&  fstat (STDERR_FILENO, &info) == 0
    &&  (unsigned long long) info.st_dev == device && (unsigned long long) info.st_ino == inode)
        journal = 1;
    atomic_store (&s_journal, journal);
    return journal == 1;
}

void
herald_log_fatal (const char *format, ...)
{
    char line [1024];
    va_list args;
    va_start (args, format);
    herald_text_vformat (line, sizeof (line), format, args);
    va_end (args);
    fprintf (stderr, "%sheraldd: %s\n", herald_log_journal ()? "<3>": "", line);
}

void
herald_log (const char *level, const char *format, ...)
{
    int rank = 0;
    while (rank < 3 && strcmp (s_levels [rank], level) != 0)
        rank++;
    if (rank > atomic_load (&s_level))
        return;
    //  One fprintf per line, so that lines of two threads never mix.  A
    //  line is never cut: one longer than the stack buffer (a message with
    //  a long path in it) is formatted again on the heap, and only when
    //  that fails is it cut, keeping its tail (herald_text).
    char line [1024];
    va_list args, again;
    va_start (args, format);
    va_copy (again, args);
    int needed = vsnprintf (line, sizeof (line), format, args);
    char *heap = NULL;
    if (needed >= (int) sizeof (line)) {
        heap = (char *) malloc ((size_t) needed + 1);
        if (heap)
            vsnprintf (heap, (size_t) needed + 1, format, again);
        else
            herald_text_vformat (line, sizeof (line), format, again);
    }
    va_end (again);
    va_end (args);
    char priority [8] = "";
    if (herald_log_journal ())
        snprintf (priority, sizeof (priority), "<%d>", s_priorities [rank]);
    fprintf (stderr, "%sheraldd: %s: %s\n", priority, level, heap? heap: line);
    free (heap);
}

const char *
herald_log_peer (zframe_t *identity, char out [24])
{
    size_t len = identity? zframe_size (identity): 0;
    const uint8_t *bytes = identity? zframe_data (identity): NULL;
    size_t used = 0;
    for (size_t i = 0; i < len && used + 3 <= 24; i++)
        used += (size_t) snprintf (out + used, 24 - used, "%02x", bytes [i]);
    out [used] = 0;
    return out;
}
