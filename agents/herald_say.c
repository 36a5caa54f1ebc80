/*  =========================================================================
    herald_say - the library's log lines, to herald_set_log's callback or
    to stderr

    One callback for the process, behind one mutex that is held while the
    callback runs: so calls never overlap (a callback need not be
    thread-safe), and once herald_set_log has taken the mutex no call of the
    previous callback is still running or can start.  A thread-local flag
    refuses herald_set_log from inside the callback, which would deadlock
    on that mutex.
    =========================================================================
*/

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <pthread.h>
#include "herald.h"
#include "herald_agent_priv.h"
#include "herald_text.h"
#include "herald_say.h"

//  Room for one line; the agent's own lines are far shorter, a longer one
//  (a long path) loses its middle, not its end.
#define HERALD_SAY_MAX 1024

static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static herald_log_fn *s_fn;
static void *s_arg;
static _Thread_local bool s_in_callback;

herald_err
herald_set_log (herald_log_fn *fn, void *arg)
{
    if (s_in_callback)
        return herald_agent_set_error (HERALD_ERR_INVALID,
                                       "herald_set_log called from the log callback");
    pthread_mutex_lock (&s_lock);
    s_fn = fn;
    s_arg = fn? arg: NULL;
    pthread_mutex_unlock (&s_lock);
    return HERALD_OK;
}

void
herald_say (herald_log_level_t level, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    herald_vsay (level, format, args);
    va_end (args);
}

void
herald_vsay (herald_log_level_t level, const char *format, va_list args)
{
    char line [HERALD_SAY_MAX];
    herald_text_vformat (line, sizeof line, format, args);

    pthread_mutex_lock (&s_lock);
    if (s_fn) {
        s_in_callback = true;
        s_fn (level, line, s_arg);
        s_in_callback = false;
    }
    else
        //  One fprintf: the line is not interleaved with another thread's
        fprintf (stderr, "herald agent: %s\n", line);
    pthread_mutex_unlock (&s_lock);
}
