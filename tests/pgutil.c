/*  =========================================================================
    pgutil - a real PostgreSQL server for a C test (pgutil.h)
    =========================================================================
*/

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <libpq-fe.h>

#include "pgutil.h"

#define S_RUN_TIMEOUT_S     120     //  pgserver.sh start runs initdb: seconds

extern char **environ;

//  Where tests/pgserver.sh is: $HERALD_SRCDIR/tests (make check), else
//  beside this binary or in a directory above it (libtool's .libs/).
static int
s_script (char *path, size_t size)
{
    const char *srcdir = getenv ("HERALD_SRCDIR");
    if (srcdir && *srcdir) {
        snprintf (path, size, "%s/tests/pgserver.sh", srcdir);
        if (access (path, X_OK) == 0)
            return 0;
    }
    char self [PATH_MAX];
    ssize_t len = readlink ("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0)
        return -1;
    self [len] = 0;
    for (int up = 0; up < 4; up++) {
        char *slash = strrchr (self, '/');
        if (!slash)
            return -1;
        *slash = 0;
        snprintf (path, size, "%s/pgserver.sh", self);
        if (access (path, X_OK) == 0)
            return 0;
        snprintf (path, size, "%s/tests/pgserver.sh", self);
        if (access (path, X_OK) == 0)
            return 0;
    }
    return -1;
}

//  The server's NOTICEs ("... does not exist, skipping") are not news
static void
s_notice_quiet (void *arg, const char *message)
{
    (void) arg;
    (void) message;
}

static uint64_t
s_mono_ms (void)
{
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    return (uint64_t) now.tv_sec * 1000 + (uint64_t) now.tv_nsec / 1000000;
}

//  Run pgserver.sh COMMAND DIR; its stdout and stderr in out (trailing
//  newlines cut).  Returns its exit status, or -1 when it cannot run.
static int
s_run (pgu_server_t *self, const char *command, char *out, size_t size)
{
    char script [PATH_MAX + 32];
    if (s_script (script, sizeof script)) {
        snprintf (self->error, sizeof self->error,
                  "cannot find tests/pgserver.sh (set HERALD_SRCDIR)");
        return -1;
    }
    int fds [2];
    if (pipe2 (fds, O_CLOEXEC)) {
        snprintf (self->error, sizeof self->error, "pipe: %s", strerror (errno));
        return -1;
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init (&actions);
    posix_spawn_file_actions_addopen (&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2 (&actions, fds [1], 1);
    posix_spawn_file_actions_adddup2 (&actions, fds [1], 2);
    char *argv [] = { script, (char *) command, self->dir, NULL };
    //  In a process group of its own, so that a script that does not come
    //  back in time is killed with everything it started (an initdb that
    //  hangs would otherwise outlive the test)
    posix_spawnattr_t attr;
    posix_spawnattr_init (&attr);
    posix_spawnattr_setflags (&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup (&attr, 0);
    pid_t pid;
    int rc = posix_spawn (&pid, script, &actions, &attr, argv, environ);
    posix_spawnattr_destroy (&attr);
    posix_spawn_file_actions_destroy (&actions);
    close (fds [1]);
    if (rc) {
        close (fds [0]);
        snprintf (self->error, sizeof self->error, "cannot run %.300s: %s", script, strerror (rc));
        return -1;
    }
    size_t used = 0;
    time_t deadline = time (NULL) + S_RUN_TIMEOUT_S;
    bool timed_out = false;
    while (true) {
        struct pollfd pfd = { .fd = fds [0], .events = POLLIN };
        int ready = poll (&pfd, 1, 1000);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready == 0) {
            if (time (NULL) < deadline)
                continue;
            timed_out = true;
            kill (-pid, SIGKILL);
            break;
        }
        char chunk [512];
        ssize_t got = read (fds [0], chunk, sizeof chunk);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        for (ssize_t at = 0; at < got && used + 1 < size; at++)
            out [used++] = chunk [at];
    }
    close (fds [0]);
    out [used] = 0;
    while (used && out [used - 1] == '\n')
        out [--used] = 0;
    int status = 0;
    while (waitpid (pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (timed_out) {
        snprintf (self->error, sizeof self->error,
                  "pgserver.sh %s %s did not end within %d s: killed with its process group",
                  command, self->dir, S_RUN_TIMEOUT_S);
        return -1;
    }
    return WIFEXITED (status)? WEXITSTATUS (status): 128 + WTERMSIG (status);
}

static int
s_start (pgu_server_t *self)
{
    char out [2048];
    int rc = s_run (self, "start", out, sizeof out);
    if (rc != 0) {
        if (rc > 0)
            snprintf (self->error, sizeof self->error, "pgserver.sh start %s: %.300s",
                      self->dir, out);
        return -1;
    }
    //  The conninfo is the last line (the script prints only it)
    char *line = strrchr (out, '\n');
    line = line? line + 1: out;
    const char *port = strstr (line, "port=");
    if (strncmp (line, "host=", 5) || !port) {
        snprintf (self->error, sizeof self->error, "pgserver.sh start said: %.400s", out);
        return -1;
    }
    snprintf (self->conninfo, sizeof self->conninfo, "%.200s", line);
    self->port = atoi (port + 5);
    self->running = true;
    return 0;
}

int
pgu_server_start (pgu_server_t *self)
{
    memset (self, 0, sizeof *self);
    self->watch_fd = -1;
    snprintf (self->dir, sizeof self->dir, "/tmp/herald-pg-XXXXXX");
    if (!mkdtemp (self->dir)) {
        snprintf (self->error, sizeof self->error, "mkdtemp: %s", strerror (errno));
        self->dir [0] = 0;
        return -1;
    }
    //  The watcher first: if this process dies during the start, the
    //  server (or the half of it that started) still goes
    char script [PATH_MAX + 32];
    if (s_script (script, sizeof script)) {
        snprintf (self->error, sizeof self->error,
                  "cannot find tests/pgserver.sh (set HERALD_SRCDIR)");
        rmdir (self->dir);
        self->dir [0] = 0;
        return -1;
    }
    int fds [2];
    if (pipe2 (fds, O_CLOEXEC)) {
        snprintf (self->error, sizeof self->error, "pipe: %s", strerror (errno));
        rmdir (self->dir);
        self->dir [0] = 0;
        return -1;
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init (&actions);
    posix_spawn_file_actions_adddup2 (&actions, fds [0], 0);
    posix_spawn_file_actions_addopen (&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawnattr_t attr;
    posix_spawnattr_init (&attr);
    //  A session of its own: a ^C to the test's process group does not
    //  end the watcher before it has stopped the server
    posix_spawnattr_setflags (&attr, POSIX_SPAWN_SETSID);
    char *argv [] = { script, "watch", self->dir, NULL };
    int rc = posix_spawn (&self->watcher, script, &actions, &attr, argv, environ);
    posix_spawn_file_actions_destroy (&actions);
    posix_spawnattr_destroy (&attr);
    close (fds [0]);
    if (rc) {
        close (fds [1]);
        self->watcher = 0;
        rmdir (self->dir);
        self->dir [0] = 0;
        snprintf (self->error, sizeof self->error, "cannot run %.300s: %s", script, strerror (rc));
        return -1;
    }
    self->watch_fd = fds [1];
    return s_start (self);
}

int
pgu_server_stop (pgu_server_t *self)
{
    char out [2048];
    int rc = s_run (self, "stop", out, sizeof out);
    self->running = false;
    if (rc > 0)
        snprintf (self->error, sizeof self->error, "pgserver.sh stop: %.400s", out);
    return rc? -1: 0;
}

int
pgu_server_kill (pgu_server_t *self)
{
    char out [2048];
    int rc = s_run (self, "kill", out, sizeof out);
    self->running = false;
    if (rc > 0)
        snprintf (self->error, sizeof self->error, "pgserver.sh kill: %.400s", out);
    return rc? -1: 0;
}

int
pgu_server_restart (pgu_server_t *self)
{
    return s_start (self);
}

void
pgu_server_destroy (pgu_server_t *self)
{
    if (self->watch_fd >= 0) {
        close (self->watch_fd);
        self->watch_fd = -1;
    }
    if (self->watcher > 0) {
        //  The watcher stops the server (10 s, then kill) and removes the
        //  directory; 30 s at most, then it is killed and the stop runs here
        uint64_t deadline = s_mono_ms () + 30000;
        int status;
        while (waitpid (self->watcher, &status, WNOHANG) == 0) {
            if (s_mono_ms () > deadline) {
                kill (self->watcher, SIGKILL);
                waitpid (self->watcher, &status, 0);
                char out [2048];
                s_run (self, "stop", out, sizeof out);
                break;
            }
            usleep (20000);
        }
        self->watcher = 0;
    }
    self->running = false;
    self->dir [0] = 0;
}

int
pgu_exec (const char *conninfo, const char *sql, char *out, size_t out_size,
          char *error, size_t error_size)
{
    PGconn *conn = PQconnectdb (conninfo);
    if (PQstatus (conn) != CONNECTION_OK) {
        if (error)
            snprintf (error, error_size, "connect: %s", PQerrorMessage (conn));
        PQfinish (conn);
        return -1;
    }
    PQsetNoticeProcessor (conn, s_notice_quiet, NULL);
    int rc = 0;
    if (out && out_size)
        out [0] = 0;
    if (!PQsendQuery (conn, sql)) {
        if (error)
            snprintf (error, error_size, "%s", PQerrorMessage (conn));
        PQfinish (conn);
        return -1;
    }
    PGresult *result;
    while ((result = PQgetResult (conn))) {
        ExecStatusType status = PQresultStatus (result);
        if (status == PGRES_TUPLES_OK && out && out_size && PQntuples (result) > 0
        &&  PQnfields (result) > 0)
            snprintf (out, out_size, "%s", PQgetvalue (result, 0, 0));
        else
        if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK && rc == 0) {
            rc = -1;
            if (error)
                snprintf (error, error_size, "%s", PQresultErrorMessage (result));
        }
        PQclear (result);
    }
    PQfinish (conn);
    return rc;
}

int
pgu_database_new (pgu_server_t *self, const char *name, char *conninfo, size_t size)
{
    char sql [512];
    snprintf (sql, sizeof sql, "DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)", name);
    if (pgu_exec (self->conninfo, sql, NULL, 0, self->error, sizeof self->error))
        return -1;
    snprintf (sql, sizeof sql, "CREATE DATABASE \"%s\"", name);
    if (pgu_exec (self->conninfo, sql, NULL, 0, self->error, sizeof self->error))
        return -1;
    snprintf (conninfo, size, "host=127.0.0.1 port=%d dbname=%s user=herald",
              self->port, name);
    return 0;
}

char *
pgu_dump (const char *conninfo, const char *query, char *error, size_t error_size)
{
    PGconn *conn = PQconnectdb (conninfo);
    if (PQstatus (conn) != CONNECTION_OK) {
        snprintf (error, error_size, "connect: %s", PQerrorMessage (conn));
        PQfinish (conn);
        return NULL;
    }
    PGresult *result = PQexec (conn, query);
    if (PQresultStatus (result) != PGRES_TUPLES_OK) {
        snprintf (error, error_size, "%s", PQresultErrorMessage (result));
        PQclear (result);
        PQfinish (conn);
        return NULL;
    }
    size_t size = 1, used = 0;
    int rows = PQntuples (result), columns = PQnfields (result);
    for (int row = 0; row < rows; row++)
        for (int column = 0; column < columns; column++)
            size += (size_t) PQgetlength (result, row, column) + 3;
    char *text = malloc (size + (size_t) rows);
    if (text) {
        for (int row = 0; row < rows; row++) {
            for (int column = 0; column < columns; column++) {
                const char *value = PQgetisnull (result, row, column)
                                  ? "\\N": PQgetvalue (result, row, column);
                used += (size_t) sprintf (text + used, "%s%s", column? "|": "", value);
            }
            text [used++] = '\n';
        }
        text [used] = 0;
    }
    PQclear (result);
    PQfinish (conn);
    return text;
}
