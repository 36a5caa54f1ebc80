/*  =========================================================================
    heraldd - the Herald broker

    main() only: read the settings, bind the api and fanout sockets, open
    the store, start the broker actor with those sockets, wait for SIGTERM
    or SIGINT (or a fatal store failure), stop the actor (it commits and
    ACKs the batch in hand), flush the store so that its WAL holds nothing,
    close it.  The sockets are bound before the store is opened so that a
    port in use (a second ./run.sh) stops heraldd before it has created a
    data directory: a failed start leaves nothing behind.

    With --peer heraldd is a cluster node (herald_node): the same, with
    a Raft node beside the broker loop; SIGTERM hands leadership over
    before it stops.

    Exit 0 on a clean stop; 64 (EX_USAGE) for a bad command line and 78
    (EX_CONFIG) for a bad --config file, each followed by one hint line;
    1 when the broker could not start (a port in use, a damaged store
    among the reasons) or the store failed.
    =========================================================================
*/

#include <errno.h>
#include <signal.h>
#include <sysexits.h>
#include <sys/statvfs.h>
#include "herald_broker.h"
#include "herald_disk.h"

#define OPEN_FREE_MIN   (4u << 20)      //  free bytes needed to open a store

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
    fprintf (stderr, "heraldd: disk full: %s free on %s; opening the store needs at least "
             "4 MiB. Free space on that file system and start again; no event is lost\n",
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
        fprintf (stderr, "heraldd: %s\n", err.message);
        if (status != 1)
            fprintf (stderr, "(see heraldd --help)\n");
        herald_config_destroy (&config);
        return status;
    }
    if (exit_now) {
        herald_config_destroy (&config);
        return 0;
    }
    zsock_t *router = NULL, *pub = NULL;
    if (herald_broker_bind (config, &router, &pub, &err) != HERALD_OK) {
        fprintf (stderr, "heraldd: %s\n", err.message);
        herald_config_destroy (&config);
        return 1;
    }
    //  RocksDB writes its LOG, OPTIONS and MANIFEST files as it opens a
    //  store, and on a full disk the Debian build aborts (an assertion in
    //  its file writer) rather than fail: refuse to start first, and say
    //  why.  Below --min-free the broker starts, serving reads only.
    if (s_disk_too_full (config->data_dir)) {
        zsock_destroy (&router);
        zsock_destroy (&pub);
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
        fprintf (stderr, "heraldd: %s\n", err.message);
        if (err.code == HERALD_ERR_CORRUPT)
            fprintf (stderr, "heraldd: the store may be missing acknowledged events; not "
                     "starting.\nheraldd: see what can be kept with: herald repair "
                     "--data-dir %s\n", config->data_dir);
        zsock_destroy (&router);
        zsock_destroy (&pub);
        herald_config_destroy (&config);
        return 1;
    }
    //  czmq catches SIGINT and SIGTERM and sets zsys_interrupted; the wait
    //  below returns then.
    herald_broker_args_t args = { config, store, router, pub };   //  the actor owns the sockets
    zactor_t *broker = zactor_new (herald_broker_actor, &args);
    int status = 0;
    zpoller_t *poller = zpoller_new (broker, NULL);
    while (!zsys_interrupted) {
        void *which = zpoller_wait (poller, -1);
        if (which == broker) {
            char *message = zstr_recv (broker);
            bool fatal = message && streq (message, "FATAL");
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
    zactor_destroy (&broker);
    //  The clean stop: nothing stays only in the WAL (herald_store_stop)
    if (herald_store_stop (store, &err) != HERALD_OK) {
        fprintf (stderr, "heraldd: %s\n", err.message);
        status = 1;
    }
    herald_store_destroy (&store);
    herald_config_destroy (&config);
    return status;
}
