/*  =========================================================================
    herald_file - replacing a state file atomically, durably

    The agent's three whole-file rewrites (a new checkpoint, a snapshot,
    the outbox's compaction) write a temporary file beside the target and
    finish here: fsync the temporary file, rename it over the target, and
    fsync the directory.  Without the last step the rename itself is only
    in the page cache: after a power loss the directory may still name
    the old file, or none (a new checkpoint gone: the subscription's
    resolved start forgotten).
    =========================================================================
*/

#ifndef HERALD_FILE_H_INCLUDED
#define HERALD_FILE_H_INCLUDED

#include <stdbool.h>

//  fd is open for writing on tmp, everything written.  fsync and close fd,
//  rename tmp to path, fsync path's directory.  0 on success; -1 with
//  errno otherwise, tmp removed.  *renamed (may be NULL) says whether path
//  now names the new file (true also when only the directory's fsync
//  failed: the caller must then use the new file, whose rename may not
//  survive a power loss).  fd is closed in every case.
int
    herald_file_replace (int fd, const char *tmp, const char *path, bool *renamed);

//  fsync the directory holding path.  0, or -1 with errno.
int
    herald_file_sync_dir (const char *path);

#endif
