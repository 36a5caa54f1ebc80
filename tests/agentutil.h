/*  =========================================================================
    agentutil - helpers for the agent's tests (no criterion)

    Restart a heraldd on the ports it had (an agent keeps its endpoints),
    publish many events with a raw DEALER (so subscription tests do not
    depend on the agent's own publishing), record what a handler received,
    and run tests/agent_child (a separate process to kill -9).
    Every wait is bounded; failures are return values.
    =========================================================================
*/

#ifndef HERALD_AGENTUTIL_H_INCLUDED
#define HERALD_AGENTUTIL_H_INCLUDED

#include <pthread.h>
#include "herald.h"
#include "brokerutil.h"

//  Publish count events with a raw DEALER to api, in batches of up to
//  100, topic i being printf (topic_format, i % topics), data "e<i>".
//  Waits for every ACK (timeout_ms in all).  Returns 0 or -1.
int
    au_publish (const char *api, const char *topic_format, size_t topics, size_t count,
                int timeout_ms);

//  The broker's head seq (STATUS), or -1 on timeout.
int64_t
    au_head (const char *api, int timeout_ms);

//  What a handler saw.  herald_handler_fn au_record with the recorder as
//  arg appends every event; fail_seq / retry_seq make it return an error
//  or RETRY (retry_times times) for that seq.
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    size_t count;
    size_t size;
    uint64_t *seqs;
    uint8_t (*ids) [16];
    bool *redelivered;
    unsigned *attempts;
    uint64_t fail_seq;              //  return fail_code for it
    int fail_code;
    uint64_t retry_seq;             //  return HERALD_RETRY for it ...
    unsigned retry_times;           //  ... this many times
    int sleep_us;                   //  per event, to be a slow handler
} au_recorder_t;

au_recorder_t *
    au_recorder_new (void);
void
    au_recorder_destroy (au_recorder_t **self_p);
int
    au_record (const herald_delivery_t *event, void *arg);

//  Wait up to timeout_ms until the recorder holds at least count events.
//  Returns the count it holds.
size_t
    au_wait_count (au_recorder_t *self, size_t count, int timeout_ms);

//  0 when the recorded seqs are strictly increasing and no id repeats;
//  else -1 with a description in message.
int
    au_check_once_in_order (au_recorder_t *self, char *message, size_t size);

//  Options for an agent on broker with state_dir (fanout given).
void
    au_options (herald_agent_options_t *options, const bu_broker_t *broker,
                const char *state_dir);

//  Path of tests/agent_child (caller owns), or NULL.
char *
    au_child_path (void);

//  Run tests/agent_child with argv (NULL-terminated, argv[0] excluded),
//  stdout and stderr to log.  Returns its pid or -1.
pid_t
    au_child_spawn (const char *const *args, const char *log);

//  Run binary with args (NULL-terminated, argv[0] excluded), stdout and
//  stderr to log.  Returns its pid or -1.
pid_t
    au_spawn (const char *binary, const char *const *args, const char *log);

//  Wait up to timeout_ms for pid to exit; returns 0 with *status, or -1.
int
    au_child_wait (pid_t pid, int timeout_ms, int *status);

#endif
