/*  =========================================================================
    herald_log - heraldd's log lines on stderr, filtered by --log-level
    =========================================================================
*/

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "herald_log.h"
#include "herald_text.h"

static const char *s_levels [] = { "error", "warn", "info", "debug" };
static int s_level = 2;

void
herald_log_set_level (const char *level)
{
    for (int rank = 0; rank < 4; rank++)
        if (level && strcmp (s_levels [rank], level) == 0)
            s_level = rank;
}

bool
herald_log_debug (void)
{
    return s_level >= 3;
}

void
herald_log (const char *level, const char *format, ...)
{
    int rank = 0;
    while (rank < 3 && strcmp (s_levels [rank], level) != 0)
        rank++;
    if (rank > s_level)
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
    fprintf (stderr, "heraldd: %s: %s\n", level, heap? heap: line);
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
