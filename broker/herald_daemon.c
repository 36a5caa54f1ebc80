/*  =========================================================================
    herald_daemon - heraldd under a service manager: sd_notify and SIGHUP
    =========================================================================
*/

#include <assert.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include "herald_daemon.h"
#include "herald_log.h"

#define DIFF_NAMES_MAX  16          //  settings named in one reload's warn line

struct _herald_daemon_t {
    int argc;                       //  main's command line, borrowed
    char **argv;
    herald_config_t *last;          //  the last parse that succeeded, owned
};

//  Parse argv over the files into a fresh config; NULL (err filled) when
//  it does not parse.
static herald_config_t *
s_parse (int argc, char **argv, herald_error_t *err)
{
    herald_config_t *config = herald_config_new ();
    if (!config) {
        herald_error_set (err, HERALD_ERR_NOMEM, "", "out of memory");
        return NULL;
    }
    bool exit_now = false;
    FILE *sink = fopen ("/dev/null", "w");          //  --help cannot be here: parsed once
    herald_err rc = herald_config_parse (config, argc, argv, sink, &exit_now, err);
    if (sink)
        fclose (sink);
    if (rc != HERALD_OK || exit_now)
        herald_config_destroy (&config);
    return config;
}

herald_daemon_t *
herald_daemon_new (int argc, char **argv)
{
    herald_error_t err = { 0 };
    herald_config_t *config = s_parse (argc, argv, &err);
    if (!config)
        return NULL;
    herald_daemon_t *self = (herald_daemon_t *) calloc (1, sizeof (herald_daemon_t));
    if (!self) {
        herald_config_destroy (&config);
        return NULL;
    }
    self->argc = argc;
    self->argv = argv;
    self->last = config;
    return self;
}

void
herald_daemon_destroy (herald_daemon_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    herald_config_destroy (&(*self_p)->last);
    free (*self_p);
    *self_p = NULL;
}

void
herald_daemon_notify (const char *format, ...)
{
    static bool s_said = false;
    if (!getenv ("NOTIFY_SOCKET"))
        return;
    char state [1024];
    va_list args;
    va_start (args, format);
    vsnprintf (state, sizeof (state), format, args);
    va_end (args);
    int rc = sd_notify (0, state);
    if (rc < 0 && !s_said) {
        s_said = true;
        herald_log ("warn", "cannot tell the service manager (NOTIFY_SOCKET %s): %s",
                    getenv ("NOTIFY_SOCKET"), strerror (-rc));
    }
}

bool
herald_daemon_reload (herald_daemon_t *self)
{
    assert (self);
    herald_error_t err = { 0 };
    herald_config_t *config = s_parse (self->argc, self->argv, &err);
    if (!config) {
        herald_log ("error", "SIGHUP: the settings do not parse, nothing changed: %s",
                    err.message);
        return false;
    }
    const char *names [DIFF_NAMES_MAX];
    size_t count = herald_config_diff (self->last, config, names, DIFF_NAMES_MAX);
    bool level_changed = false;
    char later [512] = "";
    size_t used = 0;
    for (size_t index = 0; index < count && index < DIFF_NAMES_MAX; index++) {
        if (strcmp (names [index], "log-level") == 0)
            level_changed = true;
        else
        if (strcmp (names [index], "retention") == 0
        ||  strcmp (names [index], "retention-interval-ms") == 0)
            herald_log ("info", "SIGHUP: %s changed: the broker applies the new policies "
                        "(%zu) from now on", names [index], config->retention_count);
        else
        if (used < sizeof (later))
            used += (size_t) snprintf (later + used, sizeof (later) - used, "%s%s",
                                       used? ", ": "", names [index]);
    }
    if (level_changed) {
        herald_log ("info", "SIGHUP: log-level %s (was %s)", config->log_level,
                    self->last->log_level);
        herald_log_set_level (config->log_level);
    }
    if (*later)
        herald_log ("warn", "SIGHUP: changed, in force at the next start only: %s%s", later,
                    count > DIFF_NAMES_MAX? ", ...": "");
    herald_log ("info", "SIGHUP: settings reloaded%s%s (log-level %s%s)",
                config->config_file? " from ": "",
                config->config_file? config->config_file: "",
                herald_log_level (), herald_config_secure (config)? "; the ACL file is "
                "read again": "");
    herald_config_destroy (&self->last);
    self->last = config;
    return true;
}

const herald_config_t *
herald_daemon_config (herald_daemon_t *self)
{
    assert (self);
    return self->last;
}
