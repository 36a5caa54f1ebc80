/*  =========================================================================
    herald_daemon - heraldd under a service manager: sd_notify and SIGHUP

    Under systemd (contrib/systemd/heraldd.service, Type=notify) heraldd
    tells its manager READY=1 once the broker serves: after the sockets
    are bound, the store is open and the broker's loop runs (the actor's
    SERVING message), never before, so that `systemctl start` returns when
    clients can be answered and a start that fails is a failed start.
    STOPPING=1 when a stop signal arrives, RELOADING=1 then READY=1 around
    a SIGHUP, and STATUS= lines that `systemctl status` shows.  Without
    NOTIFY_SOCKET every call is a no-op (libsystemd's sd_notify).

    SIGHUP reloads what can change while the broker runs: the command line
    is parsed again over the --config file as it is now (the same rules as
    at start: the command line wins), log-level is applied at once and the
    ACL is reloaded (security on, by the broker), and so are the retention
    policies (retention, retention-interval-ms: the broker takes them with
    herald_retention's message).  Any other setting whose
    value changed is named in one warn line: it takes effect at the next
    start.  A file that no longer parses changes nothing and says why.
    Only the main thread calls these.
    =========================================================================
*/

#ifndef HERALD_DAEMON_H_INCLUDED
#define HERALD_DAEMON_H_INCLUDED

#include "herald_config.h"

typedef struct _herald_daemon_t herald_daemon_t;

//  Keep argc/argv (borrowed: main's) and a parse of them of its own, to
//  compare a reload with.  NULL when out of memory or when argv no longer
//  parses (it did a moment ago: only a file changed between the two).
herald_daemon_t *
    herald_daemon_new (int argc, char **argv);

//  NULL-safe; clears *self_p.
void
    herald_daemon_destroy (herald_daemon_t **self_p);

//  Send one sd_notify state string ("READY=1\nSTATUS=...") formatted;
//  nothing without NOTIFY_SOCKET.  A failure to send is logged once.
void
    herald_daemon_notify (const char *format, ...)
    __attribute__ ((format (printf, 1, 2)));

//  SIGHUP: parse again, apply the log level, log what changed.  Returns
//  true when the reload parsed (the caller then has the ACL reloaded).
bool
    herald_daemon_reload (herald_daemon_t *self);

//  The settings of the last parse that succeeded (borrowed, valid until
//  the next reload).
const herald_config_t *
    herald_daemon_config (herald_daemon_t *self);

#endif
