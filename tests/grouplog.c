/*  =========================================================================
    grouplog - read the logs of tests/group_member and check a group's run

    See grouplog.h for what is checked.  Deliveries are paired START/END
    lines of one pid (a member's handler runs one event at a time, so a
    pid's START is followed by its own END or by nothing: killed).
    =========================================================================
*/

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "grouplog.h"

#define GL_PIDS_MAX     256
#define GL_KILLS_MAX    64

typedef struct {
    pid_t pid;
    uint64_t seq;
    uint32_t topic;
    uint32_t partition;
    bool flagged;
    bool ended;
    uint64_t t_start;
    uint64_t t_end;
} s_delivery_t;

typedef struct {
    pid_t pid;
    size_t open;                    //  index of a START without END, or SIZE_MAX
    uint64_t *starts;               //  seqs started, in order
    size_t start_count;
    size_t start_size;
    bool killed;
    uint64_t killed_at;
} s_pid_t;

typedef struct {
    pid_t pid;
    uint64_t t;
    uint64_t head;
    size_t seqs;                    //  distinct flagged seqs attributed
} s_kill_t;

typedef struct {
    uint64_t seq;
    uint32_t topic;
} s_published_t;

struct _gl_run_t {
    unsigned partitions;
    unsigned batch_max;
    unsigned members;
    s_delivery_t *deliveries;
    size_t delivery_count;
    size_t delivery_size;
    s_pid_t pids [GL_PIDS_MAX];
    size_t pid_count;
    s_kill_t kills [GL_KILLS_MAX];
    size_t kill_count;
    s_published_t *published;
    size_t published_count;
    size_t published_size;
    bool published_sorted;
    //  Topics interned: open addressing on their strings
    char **topics;
    size_t topic_count;
    uint32_t *table;                //  topic index + 1, 0 empty
    size_t table_size;
    size_t parse_errors;
    char parse_why [256];
};

uint32_t
gl_partition (const char *topic, size_t len, unsigned partitions)
{
    uint32_t hash = 2166136261u;
    for (size_t index = 0; index < len; index++) {
        hash ^= (uint8_t) topic [index];
        hash *= 16777619u;
    }
    return partitions? hash % partitions: hash;
}

gl_run_t *
gl_run_new (unsigned partitions, unsigned batch_max)
{
    gl_run_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->partitions = partitions? partitions: 32;
    self->batch_max = batch_max? batch_max: 100;
    self->members = 1;
    self->table_size = 1024;
    self->table = calloc (self->table_size, sizeof *self->table);
    self->topics = calloc (self->table_size, sizeof *self->topics);
    if (!self->table || !self->topics) {
        gl_run_destroy (&self);
        return NULL;
    }
    return self;
}

void
gl_run_destroy (gl_run_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    gl_run_t *self = *self_p;
    for (size_t index = 0; index < self->topic_count; index++)
        free (self->topics [index]);
    for (size_t index = 0; index < self->pid_count; index++)
        free (self->pids [index].starts);
    free (self->topics);
    free (self->table);
    free (self->deliveries);
    free (self->published);
    free (self);
    *self_p = NULL;
}

//  The index of topic, interned; UINT32_MAX when out of memory.
static uint32_t
s_topic (gl_run_t *self, const char *topic, size_t len)
{
    if ((self->topic_count + 1) * 2 > self->table_size) {
        size_t size = self->table_size * 2;
        uint32_t *table = calloc (size, sizeof *table);
        char **topics = realloc (self->topics, size * sizeof *topics);
        if (!table || !topics) {
            free (table);
            if (topics)
                self->topics = topics;
            return UINT32_MAX;
        }
        self->topics = topics;
        for (size_t index = 0; index < self->topic_count; index++) {
            size_t slot = gl_partition (topics [index], strlen (topics [index]), 0) % size;
            while (table [slot])
                slot = (slot + 1) % size;
            table [slot] = (uint32_t) index + 1;
        }
        free (self->table);
        self->table = table;
        self->table_size = size;
    }
    size_t slot = gl_partition (topic, len, 0) % self->table_size;
    while (self->table [slot]) {
        const char *known = self->topics [self->table [slot] - 1];
        if (strlen (known) == len && memcmp (known, topic, len) == 0)
            return self->table [slot] - 1;
        slot = (slot + 1) % self->table_size;
    }
    char *copy = strndup (topic, len);
    if (!copy)
        return UINT32_MAX;
    self->topics [self->topic_count] = copy;
    self->table [slot] = (uint32_t) self->topic_count + 1;
    return (uint32_t) self->topic_count++;
}

static s_pid_t *
s_pid (gl_run_t *self, pid_t pid)
{
    for (size_t index = 0; index < self->pid_count; index++)
        if (self->pids [index].pid == pid)
            return &self->pids [index];
    if (self->pid_count == GL_PIDS_MAX)
        return NULL;
    s_pid_t *entry = &self->pids [self->pid_count++];
    memset (entry, 0, sizeof *entry);
    entry->pid = pid;
    entry->open = SIZE_MAX;
    return entry;
}

static void
s_parse_error (gl_run_t *self, const char *line)
{
    if (self->parse_errors++ == 0)
        snprintf (self->parse_why, sizeof self->parse_why, "malformed log line: %.160s", line);
}

int
gl_add_line (gl_run_t *self, const char *line)
{
    char kind;
    uint64_t t, seq;
    int pid, flag;
    unsigned partition;
    char topic [256];
    if (sscanf (line, "%c %" SCNu64 " %d %" SCNu64 " %255s %u %d", &kind, &t, &pid, &seq,
                topic, &partition, &flag) != 7
    ||  (kind != 'S' && kind != 'E')) {
        s_parse_error (self, line);
        return -1;
    }
    s_pid_t *entry = s_pid (self, (pid_t) pid);
    uint32_t topic_id = s_topic (self, topic, strlen (topic));
    if (!entry || topic_id == UINT32_MAX)
        return -1;
    if (kind == 'S') {
        if (entry->open != SIZE_MAX) {
            s_parse_error (self, line);         //  two STARTs in a row
            return -1;
        }
        if (self->delivery_count == self->delivery_size) {
            size_t size = self->delivery_size? self->delivery_size * 2: 4096;
            s_delivery_t *grown = realloc (self->deliveries, size * sizeof *grown);
            if (!grown)
                return -1;
            self->deliveries = grown;
            self->delivery_size = size;
        }
        if (entry->start_count == entry->start_size) {
            size_t size = entry->start_size? entry->start_size * 2: 1024;
            uint64_t *grown = realloc (entry->starts, size * sizeof *grown);
            if (!grown)
                return -1;
            entry->starts = grown;
            entry->start_size = size;
        }
        entry->starts [entry->start_count++] = seq;
        s_delivery_t *delivery = &self->deliveries [self->delivery_count];
        memset (delivery, 0, sizeof *delivery);
        delivery->pid = (pid_t) pid;
        delivery->seq = seq;
        delivery->topic = topic_id;
        delivery->partition = partition;
        delivery->flagged = flag != 0;
        delivery->t_start = t;
        entry->open = self->delivery_count++;
    }
    else {
        if (entry->open == SIZE_MAX || self->deliveries [entry->open].seq != seq) {
            s_parse_error (self, line);         //  an END that is not the open START's
            return -1;
        }
        self->deliveries [entry->open].ended = true;
        self->deliveries [entry->open].t_end = t;
        entry->open = SIZE_MAX;
    }
    return 0;
}

long
gl_load (gl_run_t *self, const char *path)
{
    FILE *file = fopen (path, "r");
    if (!file)
        return -1;
    char line [512];
    long lines = 0;
    bool bad = false;
    while (fgets (line, sizeof line, file)) {
        size_t len = strlen (line);
        if (len == 0 || line [len - 1] != '\n')
            break;                              //  a partial last line: not whole
        if (gl_add_line (self, line))
            bad = true;
        lines++;
    }
    fclose (file);
    return bad? -1: lines;
}

void
gl_published (gl_run_t *self, uint64_t seq, const char *topic)
{
    if (self->published_count == self->published_size) {
        size_t size = self->published_size? self->published_size * 2: 4096;
        s_published_t *grown = realloc (self->published, size * sizeof *grown);
        if (!grown)
            return;
        self->published = grown;
        self->published_size = size;
    }
    self->published [self->published_count].seq = seq;
    self->published [self->published_count].topic = s_topic (self, topic, strlen (topic));
    self->published_count++;
    self->published_sorted = false;
}

void
gl_killed (gl_run_t *self, pid_t pid, uint64_t mono_ns, uint64_t head)
{
    if (self->kill_count == GL_KILLS_MAX)
        return;
    s_kill_t *kill = &self->kills [self->kill_count++];
    kill->pid = pid;
    kill->t = mono_ns;
    kill->head = head;
    kill->seqs = 0;
    if (pid) {
        s_pid_t *entry = s_pid (self, pid);
        if (entry) {
            entry->killed = true;
            entry->killed_at = mono_ns;
        }
    }
}

void
gl_set_members (gl_run_t *self, unsigned members)
{
    self->members = members? members: 1;
}

//  ---------------------------------------------------------------------
//  The checks

typedef struct {
    char *why;
    size_t size;
    size_t used;
    size_t count;
} s_report_t;

static void
s_violation (s_report_t *report, const char *format, ...)
{
    report->count++;
    if (report->count > 12 || report->used + 2 >= report->size)
        return;
    va_list args;
    va_start (args, format);
    int len = vsnprintf (report->why + report->used, report->size - report->used, format, args);
    va_end (args);
    if (len < 0)
        return;
    report->used += (size_t) len;
    if (report->used + 2 >= report->size)
        report->used = report->size - 2;
    report->why [report->used++] = '\n';
    report->why [report->used] = 0;
}

static int
s_by_seq (const void *a, const void *b)
{
    const s_published_t *x = a, *y = b;
    return x->seq < y->seq? -1: x->seq > y->seq;
}

static const s_published_t *
s_find_published (gl_run_t *self, uint64_t seq)
{
    s_published_t key = { seq, 0 };
    return bsearch (&key, self->published, self->published_count, sizeof key, s_by_seq);
}

//  qsort has no argument: the run being sorted
static gl_run_t *s_sorting;

static int
s_by_seq_start (const void *a, const void *b)
{
    const s_delivery_t *x = &s_sorting->deliveries [*(const size_t *) a];
    const s_delivery_t *y = &s_sorting->deliveries [*(const size_t *) b];
    if (x->seq != y->seq)
        return x->seq < y->seq? -1: 1;
    return x->t_start < y->t_start? -1: x->t_start > y->t_start;
}

static int
s_by_partition_start (const void *a, const void *b)
{
    const s_delivery_t *x = &s_sorting->deliveries [*(const size_t *) a];
    const s_delivery_t *y = &s_sorting->deliveries [*(const size_t *) b];
    if (x->partition != y->partition)
        return x->partition < y->partition? -1: 1;
    return x->t_start < y->t_start? -1: x->t_start > y->t_start;
}

static int
s_by_pid_start (const void *a, const void *b)
{
    const s_delivery_t *x = &s_sorting->deliveries [*(const size_t *) a];
    const s_delivery_t *y = &s_sorting->deliveries [*(const size_t *) b];
    if (x->pid != y->pid)
        return x->pid < y->pid? -1: 1;
    return x->t_start < y->t_start? -1: x->t_start > y->t_start;
}

//  The end of a delivery's interval: its END, its process's kill, or never.
static uint64_t
s_end (gl_run_t *self, const s_delivery_t *delivery)
{
    if (delivery->ended)
        return delivery->t_end;
    s_pid_t *entry = s_pid (self, delivery->pid);
    return entry && entry->killed? entry->killed_at: UINT64_MAX;
}

//  May kill explain a flagged delivery of seq starting at t?
static bool
s_explains (gl_run_t *self, const s_kill_t *kill, uint64_t seq, uint64_t t)
{
    if (kill->t >= t || seq > kill->head)
        return false;
    if (kill->pid == 0)
        return true;                            //  a failover: any member's batch
    s_pid_t *entry = s_pid (self, kill->pid);
    if (!entry || entry->start_count == 0)
        return true;                            //  it died before its first event
    size_t from = entry->start_count > self->batch_max?
                  entry->start_count - self->batch_max: 0;
    for (size_t index = from; index < entry->start_count; index++)
        if (entry->starts [index] == seq)
            return true;                        //  in its last batch, started
    //  Declared, not started: any seq it never started, up to the head.
    //  (Not "above its last start": after a grant a member's batch may
    //  hold the new partition's older events behind the ones it had
    //  read, so a batch is not in seq order.)  Bounded by the count below.
    for (size_t index = 0; index < from; index++)
        if (entry->starts [index] == seq)
            return false;                       //  started, in an earlier batch
    return true;
}

size_t
gl_check (gl_run_t *self, gl_summary_t *summary, char *why, size_t why_size)
{
    s_report_t report = { why, why_size, 0, 0 };
    if (why_size)
        why [0] = 0;
    gl_summary_t local;
    if (!summary)
        summary = &local;
    memset (summary, 0, sizeof *summary);
    summary->deliveries = self->delivery_count;
    summary->pids = self->pid_count;
    if (self->parse_errors)
        s_violation (&report, "%zu malformed lines; first: %s", self->parse_errors,
                     self->parse_why);
    qsort (self->published, self->published_count, sizeof *self->published, s_by_seq);
    self->published_sorted = true;
    size_t *order = malloc ((self->delivery_count + 1) * sizeof *order);
    bool *handled = calloc (self->published_count + 1, sizeof *handled);
    uint64_t *last = calloc (self->topic_count + 1, sizeof *last);
    uint8_t *attributed = calloc (self->delivery_count + 1, 1);
    if (!order || !handled || !last || !attributed) {
        s_violation (&report, "out of memory");
        goto done;
    }
    //  coverage: every delivery of a published seq, topic and partition
    for (size_t index = 0; index < self->delivery_count; index++) {
        s_delivery_t *delivery = &self->deliveries [index];
        const s_published_t *published = s_find_published (self, delivery->seq);
        const char *topic = self->topics [delivery->topic];
        if (!published)
            s_violation (&report, "coverage: pid %d handled seq %" PRIu64 " (%s), never published",
                         (int) delivery->pid, delivery->seq, topic);
        else
        if (published->topic != delivery->topic)
            s_violation (&report, "coverage: seq %" PRIu64 " was published as %s, pid %d "
                         "handled it as %s", delivery->seq, self->topics [published->topic],
                         (int) delivery->pid, topic);
        else {
            if (delivery->ended)
                handled [published - self->published] = true;
            uint32_t partition = gl_partition (topic, strlen (topic), self->partitions);
            if (delivery->partition != partition)
                s_violation (&report, "coverage: seq %" PRIu64 " logged in partition %u, not %u",
                             delivery->seq, delivery->partition, partition);
        }
    }
    for (size_t index = 0; index < self->published_count; index++)
        if (handled [index])
            summary->handled++;
        else
            s_violation (&report, "coverage: seq %" PRIu64 " (%s) published, never handled",
                         self->published [index].seq,
                         self->topics [self->published [index].topic]);

    //  flagged: after a seq's first delivery, every one is flagged
    //  attributed: every flagged one follows a kill that explains it
    s_sorting = self;
    for (size_t index = 0; index < self->delivery_count; index++)
        order [index] = index;
    qsort (order, self->delivery_count, sizeof *order, s_by_seq_start);
    for (size_t at = 0; at < self->delivery_count; at++) {
        s_delivery_t *delivery = &self->deliveries [order [at]];
        bool first = at == 0 || self->deliveries [order [at - 1]].seq != delivery->seq;
        if (!first) {
            summary->duplicates++;
            if (!delivery->flagged)
                s_violation (&report, "flagged: seq %" PRIu64 " handled again by pid %d "
                             "unflagged (first by pid %d)", delivery->seq, (int) delivery->pid,
                             (int) self->deliveries [order [at - 1]].pid);
        }
        if (!delivery->flagged)
            continue;
        summary->flagged++;
        bool seq_first_flag = true;
        for (size_t back = at; back > 0 && self->deliveries [order [back - 1]].seq == delivery->seq; back--)
            if (self->deliveries [order [back - 1]].flagged)
                seq_first_flag = false;
        if (seq_first_flag)
            summary->flagged_seqs++;
        //  Explained by a kill; counted against the kill whose member
        //  started the seq when there is one (unambiguous), else only in
        //  the total (kills close together share their redeliveries)
        size_t kill_index = SIZE_MAX;
        for (size_t k = self->kill_count; k > 0; k--)
            if (s_explains (self, &self->kills [k - 1], delivery->seq, delivery->t_start)) {
                if (kill_index == SIZE_MAX)
                    kill_index = k - 1;
                s_pid_t *entry = self->kills [k - 1].pid?
                                 s_pid (self, self->kills [k - 1].pid): NULL;
                bool started = false;
                for (size_t pos = 0; entry && pos < entry->start_count && !started; pos++)
                    started = entry->starts [pos] == delivery->seq;
                if (started) {
                    kill_index = k - 1;
                    break;
                }
            }
        if (kill_index == SIZE_MAX)
            s_violation (&report, "attributed: seq %" PRIu64 " flagged redelivered at pid %d, "
                         "in no killed member's last batch", delivery->seq, (int) delivery->pid);
        else
        if (seq_first_flag)
            self->kills [kill_index].seqs++;
    }
    size_t bound_all = 0, attributed_all = 0;
    for (size_t k = 0; k < self->kill_count; k++) {
        size_t bound = self->kills [k].pid? self->batch_max:
                       (size_t) self->batch_max * self->members;
        bound_all += bound;
        attributed_all += self->kills [k].seqs;
    }
    if (attributed_all > bound_all)
        s_violation (&report, "attributed: %zu seqs redelivered after %zu kills, more than "
                     "their batches (%zu)", attributed_all, self->kill_count, bound_all);

    //  order: per pid and topic, seqs increase (a flagged restart excepted)
    qsort (order, self->delivery_count, sizeof *order, s_by_pid_start);
    for (size_t at = 0; at < self->delivery_count; at++) {
        s_delivery_t *delivery = &self->deliveries [order [at]];
        if (at == 0 || self->deliveries [order [at - 1]].pid != delivery->pid)
            memset (last, 0, (self->topic_count + 1) * sizeof *last);
        if (delivery->seq <= last [delivery->topic]) {
            if (delivery->flagged)
                summary->restarts++;
            else
                s_violation (&report, "order: pid %d handled %s seq %" PRIu64 " after seq %"
                             PRIu64, (int) delivery->pid, self->topics [delivery->topic],
                             delivery->seq, last [delivery->topic]);
        }
        last [delivery->topic] = delivery->seq;
    }

    //  exclusive: per partition, intervals pairwise disjoint.  Sorted by
    //  start, disjoint intervals are sorted by end too, so each need only
    //  be compared with the one before it.
    for (size_t index = 0; index < self->delivery_count; index++) {
        s_delivery_t *delivery = &self->deliveries [index];
        s_pid_t *entry = s_pid (self, delivery->pid);
        if (!delivery->ended && !(entry && entry->killed))
            s_violation (&report, "exclusive: pid %d (not killed) started seq %" PRIu64
                         " and never ended it", (int) delivery->pid, delivery->seq);
    }
    qsort (order, self->delivery_count, sizeof *order, s_by_partition_start);
    for (size_t at = 1; at < self->delivery_count; at++) {
        s_delivery_t *before = &self->deliveries [order [at - 1]];
        s_delivery_t *delivery = &self->deliveries [order [at]];
        if (before->partition != delivery->partition)
            continue;
        uint64_t end = s_end (self, before);
        if (delivery->t_start < end)
            s_violation (&report, "exclusive: partition %u: pid %d started seq %" PRIu64
                         " at %" PRIu64 " while pid %d held seq %" PRIu64 " [%" PRIu64 ", %"
                         PRIu64 "]", delivery->partition, (int) delivery->pid, delivery->seq,
                         delivery->t_start, (int) before->pid, before->seq, before->t_start,
                         end);
    }
done:
    free (order);
    free (handled);
    free (last);
    free (attributed);
    summary->violations = report.count;
    if (report.count > 12 && report.used + 40 < report.size)
        snprintf (report.why + report.used, report.size - report.used, "... %zu in all\n",
                  report.count);
    return report.count;
}

size_t
gl_handled_published (gl_run_t *self)
{
    qsort (self->published, self->published_count, sizeof *self->published, s_by_seq);
    bool *handled = calloc (self->published_count + 1, sizeof *handled);
    if (!handled)
        return 0;
    size_t count = 0;
    for (size_t index = 0; index < self->delivery_count; index++) {
        s_delivery_t *delivery = &self->deliveries [index];
        if (!delivery->ended)
            continue;
        const s_published_t *published = s_find_published (self, delivery->seq);
        if (published && !handled [published - self->published]) {
            handled [published - self->published] = true;
            count++;
        }
    }
    free (handled);
    return count;
}
