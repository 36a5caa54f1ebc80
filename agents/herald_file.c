/*  =========================================================================
    herald_file - replacing a state file atomically, durably (herald_file.h)

    The order matters: the data must be on disk before the name points at
    it (fsync, then rename), and the name must be on disk before the
    caller counts on it (fsync of the directory).  A crash between the
    steps leaves the old file, or the new one: never a mix, never none
    (an unused tmp file at most, overwritten by the next attempt).
    =========================================================================
*/

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "herald_file.h"

int
herald_file_sync_dir (const char *path)
{
    //  The directory is what precedes the last '/' ("." when none)
    const char *slash = strrchr (path, '/');
    char dir [4096];
    if (!slash)
        snprintf (dir, sizeof dir, ".");
    else
    if (slash == path)
        snprintf (dir, sizeof dir, "/");
    else
    if ((size_t) (slash - path) >= sizeof dir) {
        errno = ENAMETOOLONG;
        return -1;
    }
    else
        snprintf (dir, sizeof dir, "%.*s", (int) (slash - path), path);
    int fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync (fd);
    int saved = errno;
    close (fd);
    errno = saved;
    return rc == 0? 0: -1;
}

int
herald_file_replace (int fd, const char *tmp, const char *path, bool *renamed)
{
    if (renamed)
        *renamed = false;
    int rc = fsync (fd);
    int saved = errno;
    if (close (fd) != 0 && rc == 0) {
        rc = -1;
        saved = errno;
    }
    if (rc == 0 && rename (tmp, path) != 0) {
        rc = -1;
        saved = errno;
    }
    if (rc != 0) {
        unlink (tmp);
        errno = saved;
        return -1;
    }
    if (renamed)
        *renamed = true;
    return herald_file_sync_dir (path);
}
