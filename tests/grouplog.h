/*  =========================================================================
    grouplog - read the logs of tests/group_member and check a group's run

    Each member process appends "S|E mono_ns pid seq topic partition
    redelivered" at each handler START and END (tests/group_member.c).  The
    test loads every member's log, tells what it published (seq and topic)
    and when it killed which member (kill -9: the moment after waitpid, and
    the broker's head then), and gl_check verifies the delivery contract of
    docs/groups.md on the whole run:

      coverage    every published seq was handled (an END) by some member;
                  every handled seq was published, with that topic and
                  partition
      flagged     a seq handled more than once was flagged redelivered in
                  every delivery after the first one (by START time)
      attributed  every flagged delivery comes from a kill before it: the
                  killed member started that seq among its last batch_max
                  starts, or never started it and the seq is at most the
                  head when it was killed (a batch is not in seq order
                  after a grant: the new partition's older events come
                  behind what the member had read);
                  and at most batch_max distinct seqs are flagged per kill,
                  counted over all kills (kills close together share their
                  redeliveries); a kill with pid 0 stands for a broker
                  failover: any member's batch, at most members x batch_max
      order       per member process and topic, seqs strictly increase,
                  except a flagged redelivery restarting its batch
      exclusive   per partition, no two deliveries' [START, END] overlap
                  (a killed member's START without END lasts until its
                  kill); a member that was not killed left no START without
                  its END

    Nothing here uses criterion: gl_check returns how many violations it
    found and writes the first ones, one a line, into the caller's buffer.
    =========================================================================
*/

#ifndef HERALD_GROUPLOG_H_INCLUDED
#define HERALD_GROUPLOG_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct _gl_run_t gl_run_t;

//  A new, empty run of a group with `partitions` partitions and batch_max.
gl_run_t *
    gl_run_new (unsigned partitions, unsigned batch_max);

void
    gl_run_destroy (gl_run_t **self_p);

//  Append every whole line of the log at path.  Returns the lines read,
//  or -1 when the file cannot be read or a line is malformed.
long
    gl_load (gl_run_t *self, const char *path);

//  Append one line (for the checker's own tests).  0 or -1.
int
    gl_add_line (gl_run_t *self, const char *line);

//  The test published seq with topic.
void
    gl_published (gl_run_t *self, uint64_t seq, const char *topic);

//  The test killed pid (0: a broker failover) at mono_ns; head: the
//  broker's head just after.
void
    gl_killed (gl_run_t *self, pid_t pid, uint64_t mono_ns, uint64_t head);

//  Members of the group at most at once (bounds a failover's redeliveries).
void
    gl_set_members (gl_run_t *self, unsigned members);

//  What gl_check counted, for the test's report.
typedef struct {
    size_t deliveries;              //  STARTs
    size_t handled;                 //  distinct seqs with an END
    size_t flagged;                 //  deliveries flagged redelivered
    size_t flagged_seqs;            //  distinct seqs flagged
    size_t duplicates;              //  deliveries after a seq's first
    size_t restarts;                //  order exceptions: flagged, not above the last
    size_t pids;
    size_t violations;
} gl_summary_t;

//  Check the run (see above).  Returns the number of violations; the first
//  ones, one per line, into why (why_size bytes, NUL-terminated).
size_t
    gl_check (gl_run_t *self, gl_summary_t *summary, char *why, size_t why_size);

//  fnv1a32(topic) mod partitions (docs/protocol.md).
uint32_t
    gl_partition (const char *topic, size_t len, unsigned partitions);

//  Handled seqs (an END) among the published ones, for polling a run's end.
size_t
    gl_handled_published (gl_run_t *self);

#endif
