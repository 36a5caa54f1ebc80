/*  =========================================================================
    herald_say - the library's log lines, to herald_set_log's callback or
    to stderr

    Every line the agent has to say and no call returns goes through
    herald_say, so that a service that set a callback (herald_set_log in
    herald.h) gets all of them and stderr gets none.
    =========================================================================
*/

#ifndef HERALD_SAY_H_INCLUDED
#define HERALD_SAY_H_INCLUDED

#include <stdarg.h>
#include "herald.h"

//  Format one line and hand it to the callback in force, or write
//  "herald agent: <line>\n" to stderr when there is none.  A line longer
//  than the room is cut in the middle at words (herald_text_fit).
void
    herald_say (herald_log_level_t level, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

//  The same with a va_list (for the agent's printf-like helpers).
void
    herald_vsay (herald_log_level_t level, const char *format, va_list args);

#endif
