/*  =========================================================================
    heraldd - the Herald broker

    main() only: read the settings, bind the api and fanout sockets, open
    the store, start the broker actor with those sockets, wait for SIGTERM
    or SIGINT (or a fatal store failure), stop the actor (it commits and
    ACKs the batch in hand), flush the store so that its WAL holds nothing,
    close it.  The sockets are bound before the store is opened so that a
    port in use (a second ./run.sh) stops heraldd before it has created a
    data directory: a failed start leaves nothing behind.  So is the port
    of --metrics (herald_metrics), whose HTTP thread starts once the
    broker runs and stops after it.

    With --peer heraldd is a cluster node (herald_node): the same, with
    a Raft node beside the broker loop; SIGTERM hands leadership over
    before it stops.

    Under systemd (herald_daemon): READY=1 once the broker serves,
    STOPPING=1 on a stop signal; SIGHUP reloads the log level, the
    retention policies and the ACL.

    Exit 0 on a clean stop; 64 (EX_USAGE) for a bad command line and 78
    (EX_CONFIG) for a bad --config file, each followed by one hint line;
    1 when the broker could not start (a port in use, a damaged store
    among the reasons) or the store failed.
    =========================================================================
*/

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sysexits.h>
#include <sys/statvfs.h>
#include "herald_broker.h"
#include "herald_catchup.h"
#include "herald_daemon.h"
#include "herald_disk.h"
#include "herald_log.h"
#include "herald_retention.h"

#define OPEN_FREE_MIN   (4u << 20)      //  free bytes needed to open a store
#define SIGNAL_CHECK_MS 100             //  the longest a signal goes unseen

//  SIGHUP: reload the log level and (security on) the ACL.  Set by the
//  handler, acted on by the main thread's wait (herald_daemon_reload, and
//  a RELOAD message to the broker).
static volatile sig_atomic_t s_hangup = 0;

static void
s_on_hangup (int signum)
{
    (void) signum;
    s_hangup = 1;
}

//  A second SIGINT or SIGTERM while stopping: stop at once.  Only
//  async-signal-safe calls here.
static void
s_stop_now (int signum)
{
    (void) signum;
    static const char line [] = "heraldd: a second signal while stopping: stopping at once, "
                                "as kill -9 would (nothing acknowledged is lost)\n";
    ssize_t written = write (STDERR_FILENO, line, sizeof (line) - 1);
    (void) written;
    _exit (1);
}

//  True (after saying so) when the file system of the data directory, or
//  of the nearest directory above it that exists, has too little space to
//  open a store.  A path that cannot be measured is left to the store.
static bool
s_disk_too_full (const char *data_dir)
{
    char path [4096];
    snprintf (path, sizeof (path), "%s", data_dir);
    struct statvfs info;
    while (statvfs (path, &info) != 0) {
        char *slash = strrchr (path, '/');
        if (errno != ENOENT || !slash)
            return false;
        if (slash == path)
            slash [1] = 0;
        else
            *slash = 0;
    }
    uint64_t avail = (uint64_t) info.f_bavail * (info.f_frsize? info.f_frsize: info.f_bsize);
    if (avail >= OPEN_FREE_MIN)
        return false;
    char text [32];
    herald_log_fatal ("disk full: %s free on %s; opening the store needs at least "
                      "4 MiB. Free space on that file system and start again; no event is lost",
                      herald_disk_format (avail, text, sizeof (text)), path);
    return true;
}

int
main (int argc, char **argv)
{
    herald_config_t *config = herald_config_new ();
    if (!config) {
        fprintf (stderr, "heraldd: out of memory\n");
        return 1;
    }
    bool exit_now = false;
    herald_error_t err = { 0 };
    if (herald_config_parse (config, argc, argv, stdout, &exit_now, &err) != HERALD_OK) {
        //  The one hint for every error in the command line or the file:
        //  the messages themselves carry none, so it is printed once.
        int status = err.code == HERALD_ERR_NOMEM? 1:
                     config->file_failed? EX_CONFIG: EX_USAGE;
        herald_log_fatal ("%s", err.message);
        if (status != 1)
            fprintf (stderr, "(see heraldd --help)\n");
        herald_config_destroy (&config);
        return status;
    }
    if (exit_now) {
        herald_config_destroy (&config);
        return 0;
    }
    //  The command line kept, to be parsed again on SIGHUP
    herald_daemon_t *daemon = herald_daemon_new (argc, argv);
    if (!daemon) {
        herald_log_fatal ("out of memory, or the --config file changed while starting");
        herald_config_destroy (&config);
        return 1;
    }
    herald_log_set_level (config->log_level);
    //  SIGHUP is for this thread only: blocked before any thread starts
    //  (libzmq's, RocksDB's, the broker's), which inherit the mask, and
    //  taken by the wait below, where it interrupts nothing else.
    sigset_t hangup_set;
    sigemptyset (&hangup_set);
    sigaddset (&hangup_set, SIGHUP);
    pthread_sigmask (SIG_BLOCK, &hangup_set, NULL);
    struct sigaction hangup = { .sa_handler = s_on_hangup };
    sigemptyset (&hangup.sa_mask);
    sigaction (SIGHUP, &hangup, NULL);
    //  Before the first socket: libzmq takes the I/O threads at its start
    zsys_set_io_threads (herald_config_io_threads (config));
    //  Security on: the ZAP handler first.  Without it libzmq 4.3.4 would
    //  admit every key on a CURVE socket, so no handler, no broker.
    herald_auth_t *auth = NULL;
    if (herald_config_secure (config)) {
        auth = herald_auth_new (config, &err);
        if (!auth) {
            herald_log_fatal ("%s", err.message);
            herald_daemon_destroy (&daemon);
            herald_config_destroy (&config);
            return 1;
        }
        //  A cluster node catches up from its peers with the broker's key
        zcert_t *cert = zcert_load (config->curve_secret);
        herald_catchup_set_cert (cert);
        zcert_destroy (&cert);
    }
    zsock_t *router = NULL, *pub = NULL;
    if (herald_broker_bind (config, &router, &pub, &err) != HERALD_OK) {
        herald_log_fatal ("%s", err.message);
        herald_auth_destroy (&auth);
        herald_daemon_destroy (&daemon);
        herald_config_destroy (&config);
        return 1;
    }
    //  --metrics: its port is bound now too, so that one in use stops
    //  heraldd before it opens the store (never a broker without metrics)
    herald_metrics_t *metrics = NULL;
    if (*config->metrics
    &&  !(metrics = herald_metrics_new (config->metrics, config->ready_lag, &err))) {
        fprintf (stderr, "heraldd: %s\n", err.message);
        zsock_destroy (&router);
        zsock_destroy (&pub);
        herald_auth_destroy (&auth);
        herald_config_destroy (&config);
        return 1;
    }
    //  RocksDB writes its LOG, OPTIONS and MANIFEST files as it opens a
    //  store, and on a full disk the Debian build aborts (an assertion in
    //  its file writer) rather than fail: refuse to start first, and say
    //  why.  Below --min-free the broker starts, serving reads only.
    if (s_disk_too_full (config->data_dir)) {
        herald_metrics_destroy (&metrics);
        zsock_destroy (&router);
        zsock_destroy (&pub);
        herald_auth_destroy (&auth);
        herald_daemon_destroy (&daemon);
        herald_config_destroy (&config);
        return 1;
    }
    herald_store_options_t options = { .durability = config->durability,
                                       .write_buffer_mb = config->write_buffer_mb };
    //  A cluster node's ACK is durable in a majority's Raft logs (libraft
    //  writes O_DSYNC); the store's WAL is written unsynced, and what a
    //  node loses of its tail is applied again from its own Raft log.
    if (herald_config_clustered (config)) {
        options.durability = HERALD_DURABILITY_ASYNC;
        //  libuv writes to the peers' Raft connections with write(2): a
        //  peer that died mid-write must cost an EPIPE, not this process
        signal (SIGPIPE, SIG_IGN);
    }
    herald_store_t *store = herald_store_open (config->data_dir, &options, &err);
    if (!store) {
        herald_log_fatal ("%s", err.message);
        if (err.code == HERALD_ERR_CORRUPT) {
            herald_log_fatal ("the store may be missing acknowledged events; not starting.");
            herald_log_fatal ("see what can be kept with: herald repair --data-dir %s",
                              config->data_dir);
        }
        herald_metrics_destroy (&metrics);
        zsock_destroy (&router);
        zsock_destroy (&pub);
        herald_auth_destroy (&auth);
        herald_daemon_destroy (&daemon);
        herald_config_destroy (&config);
        return 1;
    }
    //  czmq catches SIGINT and SIGTERM and sets zsys_interrupted.  The
    //  signal may be handled on any thread that does not block it (the
    //  broker's, the Raft node's, RocksDB's), and then nothing interrupts
    //  this thread's poll: so the wait looks at the flag every
    //  SIGNAL_CHECK_MS (seen: a cluster node that never stopped on SIGTERM).
    herald_broker_args_t args = { config, store, router, pub, auth, metrics };
    zactor_t *broker = zactor_new (herald_broker_actor, &args);     //  owns the sockets
    int status = 0;
    if (metrics) {
        if (herald_metrics_start (metrics, &err) != 0) {
            fprintf (stderr, "heraldd: %s\n", err.message);
            status = 1;
            zsys_interrupted = 1;       //  stop at once, as on SIGTERM
        }
        else
            herald_log ("info", "metrics on http://%s/metrics (and /healthz, /readyz)",
                        config->metrics);
    }
    zpoller_t *poller = zpoller_new (broker, NULL);
    pthread_sigmask (SIG_UNBLOCK, &hangup_set, NULL);
    bool secure = auth != NULL;             //  the actor owns auth now
    while (!zsys_interrupted) {
        void *which = zpoller_wait (poller, SIGNAL_CHECK_MS);
        if (s_hangup) {
            //  The poll was interrupted by SIGHUP, not asked to stop
            s_hangup = 0;
            herald_daemon_notify ("RELOADING=1\nSTATUS=reloading (SIGHUP)");
            if (herald_daemon_reload (daemon)) {
                if (secure)
                    zstr_send (broker, "RELOAD");
                //  The retention policies, as parsed now (herald_retention)
                herald_retention_send (zactor_sock (broker), herald_daemon_config (daemon));
            }
            herald_daemon_notify ("READY=1\nSTATUS=serving api %s, fanout %s; reloaded",
                                  config->api, config->fanout);
            continue;
        }
        if (which == broker) {
            char *message = zstr_recv (broker);
            bool fatal = message && streq (message, "FATAL");
            //  The broker serves: only now is the service ready
            if (message && strncmp (message, "SERVING", 7) == 0)
                herald_daemon_notify ("READY=1\nSTATUS=serving api %s, fanout %s; %s",
                                      config->api, config->fanout, message + 8);
            zstr_free (&message);
            if (fatal) {
                status = 1;
                break;
            }
        }
        else
        if (zpoller_terminated (poller))
            break;
    }
    zpoller_destroy (&poller);
    if (metrics)
        herald_metrics_set_stopping (metrics);
    herald_daemon_notify ("STOPPING=1\nSTATUS=stopping: committing what is queued, "
                          "flushing the store");
    //  Stopping.  A second signal now (Ctrl-C again, or a process manager's
    //  SIGTERM after the terminal's SIGINT) would interrupt czmq's waits
    //  half-way: zactor_destroy returns early on EINTR, and the store and
    //  the config would be freed under a broker thread still running
    //  (seen: a Raft node logging a freed name, sockets left dangling).
    //  So a second signal ends the process at once instead, which is as
    //  safe as kill -9 at any moment.
    struct sigaction now = { .sa_handler = s_stop_now };
    sigemptyset (&now.sa_mask);
    sigaction (SIGINT, &now, NULL);
    sigaction (SIGTERM, &now, NULL);
    zactor_destroy (&broker);
    //  The clean stop: nothing stays only in the WAL (herald_store_stop)
    if (herald_store_stop (store, &err) != HERALD_OK) {
        herald_log_fatal ("%s", err.message);
        status = 1;
    }
    herald_store_destroy (&store);
    //  Last: /readyz says "stopping" through the flush
    herald_metrics_destroy (&metrics);
    herald_catchup_set_cert (NULL);
    herald_daemon_destroy (&daemon);
    herald_config_destroy (&config);
    return status;
}
