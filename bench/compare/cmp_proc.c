/*  =========================================================================
    cmp_proc - starting, watching and stopping the peers' servers

    nats-server and redis-server are run the way tests/brokerutil.c runs
    heraldd: fork/exec with output to a log file, PR_SET_PDEATHSIG so a
    server never outlives the bench, readiness by connecting to its port
    (bounded), SIGTERM then a bounded waitpid, SIGKILL as the last resort.
    =========================================================================
*/

#include "compare.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void
s_sleep_ms (int ms)
{
    struct timespec ts = { ms / 1000, (long) (ms % 1000) * 1000000L };
    nanosleep (&ts, NULL);
}

pid_t
cmp_proc_spawn (char *const argv [], const char *log)
{
    pid_t parent = getpid ();
    pid_t pid = fork ();
    if (pid < 0) {
        fprintf (stderr, "compare: fork: %s\n", strerror (errno));
        return -1;
    }
    if (pid == 0) {
        prctl (PR_SET_PDEATHSIG, SIGKILL);
        if (getppid () != parent)
            _exit (127);                //  the parent died before prctl
        int fd = open (log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2 (fd, STDOUT_FILENO);
            dup2 (fd, STDERR_FILENO);
            close (fd);
        }
        int null = open ("/dev/null", O_RDONLY);
        if (null >= 0) {
            dup2 (null, STDIN_FILENO);
            close (null);
        }
        execvp (argv [0], argv);
        fprintf (stderr, "compare: exec %s: %s\n", argv [0], strerror (errno));
        _exit (127);
    }
    return pid;
}

int
cmp_proc_wait_port (pid_t pid, int port, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 20) {
        int status;
        if (waitpid (pid, &status, WNOHANG) == pid)
            return -1;                  //  exited (and reaped)
        int fd = socket (AF_INET, SOCK_STREAM, 0);
        if (fd < 0)
            return -1;
        struct sockaddr_in addr;
        memset (&addr, 0, sizeof addr);
        addr.sin_family = AF_INET;
        addr.sin_port = htons ((uint16_t) port);
        addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
        int rc = connect (fd, (struct sockaddr *) &addr, sizeof addr);
        close (fd);
        if (rc == 0)
            return 0;
        s_sleep_ms (20);
    }
    return -1;
}

int
cmp_proc_stop (pid_t pid, int signum, const char *what, int timeout_ms)
{
    if (pid <= 0)
        return 0;
    kill (pid, signum);
    int status = 0;
    for (int waited = 0; waited < timeout_ms; waited += 10) {
        pid_t got = waitpid (pid, &status, WNOHANG);
        if (got == pid || (got < 0 && errno == ECHILD)) {
            if (got == pid && WIFEXITED (status) && WEXITSTATUS (status) == 0)
                return 0;
            //  A death by the signal we sent is a clean stop too
            if (got == pid && WIFSIGNALED (status) && WTERMSIG (status) == signum)
                return 0;
            bb_problem ("%s stopped with %s %d", what,
                        WIFEXITED (status)? "exit status": "signal",
                        WIFEXITED (status)? WEXITSTATUS (status): WTERMSIG (status));
            return -1;
        }
        s_sleep_ms (10);
    }
    kill (pid, SIGKILL);
    waitpid (pid, &status, 0);
    bb_problem ("%s ignored signal %d for %d ms and was SIGKILLed", what, signum, timeout_ms);
    return -1;
}

uint64_t
cmp_proc_peak_rss (pid_t pid)
{
    char path [64], value [64];
    snprintf (path, sizeof path, "/proc/%d/status", (int) pid);
    bench_proc_field (path, "VmHWM", value, sizeof value);
    //  "123456 kB"
    unsigned long long kb = strtoull (value, NULL, 10);
    return (uint64_t) kb * 1024;
}

double
cmp_proc_cpu_seconds (pid_t pid)
{
    char path [64], line [1024];
    snprintf (path, sizeof path, "/proc/%d/stat", (int) pid);
    FILE *file = fopen (path, "r");
    if (!file)
        return -1;
    size_t got = fread (line, 1, sizeof line - 1, file);
    fclose (file);
    line [got] = 0;
    //  "pid (comm) state ..." : utime and stime are fields 14 and 15, the
    //  11th and 12th after the ")" that ends comm (which may hold spaces)
    char *at = strrchr (line, ')');
    if (!at)
        return -1;
    unsigned long long utime = 0, stime = 0;
    if (sscanf (at + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
                &utime, &stime) != 2)
        return -1;
    return (double) (utime + stime) / (double) sysconf (_SC_CLK_TCK);
}

int
cmp_write_file (const char *path, const char *text)
{
    FILE *file = fopen (path, "w");
    if (!file) {
        fprintf (stderr, "compare: cannot write %s: %s\n", path, strerror (errno));
        return -1;
    }
    fputs (text, file);
    return fclose (file) == 0? 0: -1;
}

void
cmp_log_tail (const char *path)
{
    FILE *file = fopen (path, "r");
    if (!file)
        return;
    char text [2048];
    fseek (file, 0, SEEK_END);
    long size = ftell (file);
    fseek (file, size > (long) sizeof text - 1? size - (long) sizeof text + 1: 0, SEEK_SET);
    size_t got = fread (text, 1, sizeof text - 1, file);
    text [got] = 0;
    fclose (file);
    fprintf (stderr, "compare: --- end of %s ---\n%s\n", path, text);
}

void
cmp_percentiles (bb_samples_t *samples, double *p50, double *p99, double *p999)
{
    *p50 = bb_samples_percentile (samples, 50);
    *p99 = bb_samples_percentile (samples, 99);
    *p999 = bb_samples_percentile (samples, 99.9);
}
