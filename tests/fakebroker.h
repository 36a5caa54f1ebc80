/*  =========================================================================
    fakebroker - a scripted broker for the agent's tests

    A real heraldd cannot be made to drop a chosen message, or to lose and
    renumber events on cue, so test_herald_agent_gaps and
    test_herald_agent_lineage play the broker themselves: a ROUTER and a PUB
    on free ports that speak HWP/1 (envelopes made with herald_event_encode,
    replies with herald_msg_encode) from a log held in memory.  It answers
    REPLAY (EVENTS then END, or ERROR bad_request when `refuse` is set) and
    HELLO (WELCOME with the lineage and losses), and fans out what a test
    chooses.  One agent, subscribed by the test, talks to it.  Criterion
    only; the fixture is freed by fb_teardown also when an assertion ended
    the test early.
    =========================================================================
*/

#ifndef HERALD_FAKEBROKER_H_INCLUDED
#define HERALD_FAKEBROKER_H_INCLUDED

#include <stdatomic.h>
#include "agentutil.h"

#define FB_WAIT_MS      10000
#define LOG_MAX         64

typedef struct {
    zsock_t *router;
    zsock_t *pub;
    char api [64];
    char fanout [64];
    msgpack_sbuffer envelopes [LOG_MAX + 1];    //  by seq
    uint8_t ids [LOG_MAX + 1][16];
    uint64_t head;
    size_t replays;                             //  REPLAY requests answered
    bool refuse;                                //  answer REPLAY with ERROR bad_request
    uint64_t lineage;                           //  in $hb, WELCOME and END
    herald_loss_t losses [4];                   //  in WELCOME
    size_t loss_count;
    size_t hellos;                              //  HELLO requests answered
    bool hold_hellos;                           //  keep HELLOs, answer none
    size_t hellos_held;                         //  ... how many came
    zframe_t *held_identity;                    //  ... and the last one
    zframe_t *held_body;
} fb_fake_t;

extern fb_fake_t fb_fake;
extern atomic_int fb_errors;                    //  on_error calls
extern int fb_error_code;                       //  ... the last one's code
extern char fb_error_message [256];             //  ... and message
extern char *fb_state;                          //  the agent's state directory
extern herald_agent_t *fb_agent;
extern au_recorder_t *fb_recorder;

//  The agent's on_error: counts the calls and keeps the last one's code and
//  message (fb_errors, fb_error_code, fb_error_message).
void
    fb_on_error (const char *subscription, int code, const char *message, void *arg);

//  Bind the fake broker, make fb_state (tagged tag) and fb_recorder, and
//  start fb_agent (service) on it; asserts that each worked.
void
    fb_setup (const char *tag, const char *service);

//  Destroy the agent, the recorder, the state directory and the broker.
void
    fb_teardown (void);

//  Append an event on topic to the fake log; same_as (a seq, or 0) reuses
//  that event's id.
void
    fb_append (const char *topic, uint64_t same_as);

//  Send event seq on the fake fanout (topic "g.1").
void
    fb_fanout (uint64_t seq);

//  Send a heartbeat with the head and the lineage.
void
    fb_heartbeat (void);

//  Answer what the agent asks on api for up to ms.
void
    fb_serve (int ms);

//  Stop holding HELLOs back (hold_hellos), and answer the last one held.
void
    fb_release_hellos (void);

//  Subscribe "g" from the beginning and serve until it is live.
void
    fb_go_live (void);

#endif
