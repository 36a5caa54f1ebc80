//  TEMPORARY until s22-agentpos is merged: removed then.
#include "herald.h"
herald_err
herald_agent_subscribe_batch_with (herald_agent_t *self, const char *name,
                                   const herald_subscribe_options_t *options,
                                   herald_batch_handler_fn *handler, void *arg)
{
    (void) self; (void) name; (void) options; (void) handler; (void) arg;
    return herald_agent_set_last_error (HERALD_ERR_UNSUPPORTED, "caller_position is not built yet");
}
