/*  =========================================================================
    herald_store - the event log on RocksDB

    The store keeps Herald's immutable, totally ordered log of events: it
    appends batches atomically (one RocksDB WriteBatch per call), assigns
    seq (global, gapless), ver (per topic, gapless) and ts (nanoseconds,
    non-decreasing), deduplicates by event id, checks `expect`, and reads
    back by seq, by time, by topic prefix and by topic stream.  It knows
    nothing of ZeroMQ; the broker and the agent's local state sit on it.

    Threads: one thread at a time appends (the broker's writer).  Reads,
    scans and the counters may be used from any thread, concurrently with
    appends; they see every append that has returned.

    Errors: whatever reads RocksDB can fail and says so (herald_err, and
    a herald_error_t naming what was read with RocksDB's status); a read
    that fails is never answered as "none", "version 0" or "the end".
    The convention is spelled out in herald_store.c.
    =========================================================================
*/

#ifndef HERALD_STORE_H_INCLUDED
#define HERALD_STORE_H_INCLUDED

#include "herald_event.h"
#include "herald_msg.h"

typedef struct _herald_store_t herald_store_t;
typedef struct _herald_scan_t herald_scan_t;

typedef enum {
    HERALD_DURABILITY_SYNC = 0,     //  WAL fsynced before append returns
    HERALD_DURABILITY_ASYNC = 1     //  WAL written to the OS; survives kill -9, not power loss
} herald_durability_t;

typedef struct {
    herald_durability_t durability;
    size_t topic_cache;             //  topics whose head ver is cached; 0: default (65536)
    size_t write_buffer_mb;         //  RocksDB memtable size per column family; 0: default (64)
    //  Open without changing a byte of the directory (herald inspect): the
    //  WAL is read into memory, nothing is created, appends fail.  A
    //  directory a broker holds is refused (HERALD_ERR_LOCKED) all the same.
    bool read_only;
    //  herald repair only: recover the WAL to its last readable record
    //  (RocksDB's point-in-time recovery) and pass a latched damage by,
    //  so that herald_store_accept_loss can record what was lost.
    bool accept_loss;
} herald_store_options_t;

//  What append assigned to one event: a new event gets fresh seq and ver;
//  a duplicate (its id already stored, or earlier in the same call) gets
//  the seq and ver it was first stored with, and dup true.  A duplicate
//  whose topic or data differ from what its id was stored with (the id
//  reused for another event, not a retry) also has reused true; it is not
//  stored either.  (Entries from before content hashes were kept cannot
//  tell: their duplicates are plain ones.)
typedef struct {
    uint64_t seq;
    uint64_t ver;
    bool dup;
    bool reused;
} herald_append_result_t;

//  One atomic batch (one PUBLISH).  Several go into one append call, which
//  is one RocksDB write: the broker's group commit.  Batches are applied in
//  order as if one by one, so a later batch sees an earlier one's events.
typedef struct {
    //  In: the events (validated by herald_event_from_object), borrowed
    const herald_event_t *events;
    size_t count;
    //  Out: count results, in event order; the caller provides the array
    herald_append_result_t *results;
    //  Out: HERALD_OK, or HERALD_ERR_CONFLICT when an `expect` failed; then
    //  nothing of this batch is written and the fields below say why
    herald_err status;
    size_t conflict_index;          //  which event
    uint64_t expected;
    uint64_t actual;                //  the topic's ver before that event
    //  A consumer group's op instead of events (count 0, events NULL): its
    //  MessagePack map (herald_store_groups.h), borrowed like the events.
    //  Applied in the same WriteBatch as the call's other batches, in order.
    const uint8_t *op;
    size_t op_len;
    //  Out, for an op: its result map (herald_store_groups.h), malloc'd,
    //  the caller frees it (NULL when the apply failed as a whole)
    uint8_t *op_result;
    size_t op_result_len;
} herald_batch_t;

//  Open the store in directory path, creating it if missing.  Refuses a
//  directory that another process has open (HERALD_ERR_LOCKED) or that
//  holds anything but a Herald store (HERALD_ERR_NOT_A_STORE).  Recovers
//  head, counts and the last ts from the data.  options may be NULL for
//  the defaults.  Returns NULL and fills err on failure.
herald_store_t *
    herald_store_open (const char *path, const herald_store_options_t *options,
                       herald_error_t *err);

//  Opening refuses a store whose acknowledged events may be incomplete,
//  with HERALD_ERR_CORRUPT and a message naming the file and the damage:
//  a write-ahead log record that fails its checksum, a closed WAL missing
//  or shorter than RocksDB recorded, the WAL gone after an unclean stop,
//  or a damage found before and not yet accepted (herald_store_damage.c
//  says what can and cannot be seen).  Table and MANIFEST damage comes out
//  as RocksDB reports it, with its file name.

//  The clean stop: flush every column family into table files, wait for
//  it, and mark the store cleanly stopped, so that the WAL holds nothing
//  (losing it then loses nothing).  Returns HERALD_OK, or HERALD_ERR_IO
//  with err filled (the store is then treated as stopped uncleanly on its
//  next open).  Nothing to do for a read-only store or a second call.
herald_err
    herald_store_stop (herald_store_t *self, herald_error_t *err);

//  Record that every event up to head has been acknowledged (the broker,
//  at most once a second): a later open that recovers less refuses, naming
//  the loss, instead of serving a shorter log.  Under durability async it
//  first syncs the WAL.  From the broker's loop thread; HERALD_ERR_IO.
herald_err
    herald_store_mark_acked (herald_store_t *self, uint64_t head, herald_error_t *err);

//  Close the store: herald_store_stop (its error unreported), then close.
//  NULL-safe, clears *self_p.
void
    herald_store_destroy (herald_store_t **self_p);

//  The losses an operator accepted (herald repair --accept-loss), oldest
//  first: lineage i + 1 at index i.  lineage is their number (0 for a
//  store that never lost anything).  Borrowed; valid until the store is
//  destroyed or another loss is accepted.
uint64_t
    herald_store_lineage (herald_store_t *self);
const herald_loss_t *
    herald_store_losses (herald_store_t *self, size_t *count);
const char *
    herald_store_loss_reason (herald_store_t *self, size_t index);

//  Record a loss: events after the current head may have been lost, and
//  their seqs will be given again.  Appends {lineage, lost_after: head,
//  ts: now, reason} to the history, clears a latched damage, syncs and
//  flushes.  For a store opened with accept_loss, by herald repair.
herald_err
    herald_store_accept_loss (herald_store_t *self, const char *reason,
                              herald_error_t *err);

//  The WAL files (*.log) in directory path: their count, their names,
//  comma-separated, into names[size] (cut at a name; names may be NULL),
//  and the greatest file number into *newest (0: none; newest may be
//  NULL).  Reads only.
size_t
    herald_store_wal_files (const char *path, char *names, size_t size, uint64_t *newest);

//  True when a process holds RocksDB's lock on the store in path (a
//  running broker).  Reads only.
bool
    herald_store_locked (const char *path);

//  Append batches[0..count) in one atomic RocksDB write, synced under
//  durability sync.  Each batch is all-or-nothing on its own: a conflict
//  rejects that batch (status HERALD_ERR_CONFLICT) and not the others.
//  Returns HERALD_OK once written, or an error (HERALD_ERR_IO) with err
//  filled when nothing was written.  From one thread at a time.
herald_err
    herald_store_append (herald_store_t *self, herald_batch_t *batches, size_t count,
                         herald_error_t *err);

//  herald_store_append with ts given instead of read from the clock: the
//  call's new events get ts = max(ts, herald_store_last_ts), one for the
//  whole call.  Deterministic: what it decides and the bytes it writes
//  depend only on the store and its arguments (no clock, no random, no
//  configuration: the topic cache and the greatest-id shortcut are exact
//  views of the store), so two stores with the same log that apply the
//  same batches with the same ts write the same events, byte for byte.
//  That is what lets several nodes apply one replicated log (the cluster).
//  herald_store_append is this with ts = herald_store_now.
herald_err
    herald_store_apply (herald_store_t *self, herald_batch_t *batches, size_t count,
                        uint64_t ts, herald_error_t *err);

//  Cluster mode: herald_store_apply of one committed Raft entry, with its
//  raft index written in the SAME WriteBatch as its effects (meta key
//  "raft.applied", 8 bytes big-endian), also when the batches write no
//  new event (all duplicates or conflicts), so "applied" and "its
//  effects" can never disagree after a crash.  raft_index must be greater
//  than herald_store_applied_index (HERALD_ERR_INTERNAL otherwise,
//  nothing written; so 0 is always refused).  The batches' results and
//  herald_store_appended are as for herald_store_apply.
herald_err
    herald_store_apply_entry (herald_store_t *self, herald_batch_t *batches, size_t count,
                              uint64_t ts, uint64_t raft_index, herald_error_t *err);

//  An entry with no events (a barrier, a membership change): only its
//  raft index is written (synced as the store's durability says).  The
//  same check as herald_store_apply_entry.
herald_err
    herald_store_set_applied (herald_store_t *self, uint64_t raft_index,
                              herald_error_t *err);

//  The last raft index applied (0: none, standalone), recovered on open.
uint64_t
    herald_store_applied_index (herald_store_t *self);

//  The log digest at herald_store_head: d(0) = 0, d(seq) = XXH64 over
//  d(seq - 1), id, seq, topic, ver, ts, type, schema, data's hash and
//  meta (logical fields, not bytes; data's hash is herald_hash_content,
//  of topic and data; the exact layout is in herald_store_cluster.c).
//  Kept by every append, apply and install, with the head in the same
//  WriteBatch, and recovered on open, so two nodes at the same head with
//  the same digest hold the same log.  A store from before the digest
//  gets it computed from its log on open (one line on stderr) and stored.
//  From another thread than the appender's, head and digest read one
//  after the other may straddle an append.
uint64_t
    herald_store_digest (herald_store_t *self);

//  Catch-up from a peer: install envelopes exactly as the peer stored
//  them (from its REPLAY), seqs head + 1 on, in one WriteBatch with
//  raft_index (0: leave the applied index alone).  Checked before
//  anything is written: seq = head + 1, ver = the topic's ver + 1,
//  ts >= last ts, id not stored, envelope well formed; else
//  HERALD_ERR_INTERNAL naming the first that fails, nothing written.
//  Well formed: it decodes (herald_event_decode), and its bytes are those
//  herald_event_encode writes for its fields, so that the installed log
//  cannot be told from an applied one (an envelope with an extra key is
//  refused).  raft_index, when not 0, must be greater than the applied
//  index; count 0 with a raft_index writes only the index.  Afterwards
//  the ids, streams, topics, counters, caches and digest are exactly as
//  if the events had been applied here, and herald_store_appended holds
//  the installed envelopes.  At most 4 GiB of envelopes per call.
herald_err
    herald_store_install (herald_store_t *self, const uint8_t *const *envelopes,
                          const size_t *lens, size_t count, uint64_t raft_index,
                          herald_error_t *err);

//  The ts herald_store_append would propose now: the real clock (ns since
//  the epoch), or the clock herald_store_set_clock pinned.
uint64_t
    herald_store_now (herald_store_t *self);

//  After a successful append, the envelope the store wrote for seq, one
//  of that append's new events (borrowed: valid until the next append or
//  herald_store_take_appended, on the appending thread).  False for any
//  other seq.  The broker fans these bytes out, so subscribers get exactly
//  what was stored.
bool
    herald_store_appended (herald_store_t *self, uint64_t seq, const uint8_t **envelope,
                           size_t *len);

//  The envelopes one append wrote, moved out of the store so that they
//  stay valid while later appends run: seqs first .. first + count - 1,
//  back to back in buffer, envelope i ending at ends [i].  Whoever holds
//  the struct owns its memory.  All zero is a valid empty one.
typedef struct {
    uint64_t first;
    size_t count;                   //  0: the append wrote nothing (or failed)
    msgpack_sbuffer buffer;
    uint32_t *ends;
    size_t ends_capacity;
} herald_store_envelopes_t;

//  Move the last append's envelopes into envelopes, and its old buffers
//  (their contents dropped, their memory kept) into the store for the
//  next append: two holders taking turns allocate nothing in the long
//  run.  After it, herald_store_appended finds nothing.  On the appending
//  thread, between appends.
void
    herald_store_take_appended (herald_store_t *self, herald_store_envelopes_t *envelopes);

//  The envelope of seq in envelopes (borrowed from it); false when seq is
//  not one of them.
bool
    herald_store_envelope (const herald_store_envelopes_t *envelopes, uint64_t seq,
                           const uint8_t **envelope, size_t *len);

//  Free the memory envelopes holds and zero it.  Safe on a zeroed one.
void
    herald_store_envelopes_free (herald_store_envelopes_t *envelopes);

//  Small named values kept in the store beside the log (the broker's node
//  id and start count).  get: a malloc'd copy the caller frees, or NULL
//  with HERALD_ERR_NOT_FOUND.  put: written and synced before it returns.
herald_err
    herald_store_meta_get (herald_store_t *self, const char *key, char **value, size_t *len);
herald_err
    herald_store_meta_put (herald_store_t *self, const char *key, const void *value,
                           size_t len);

//  Append sets ts = max(clock, last ts); tests may pin the clock (it is
//  what herald_store_now returns).  now_ns 0 restores the real clock.
void
    herald_store_set_clock (herald_store_t *self, uint64_t now_ns);

//  The envelope of event seq, in a malloc'd buffer the caller owns (free).
//  HERALD_ERR_NOT_FOUND when there is no such seq (0, above the head);
//  HERALD_ERR_IO when RocksDB cannot read it, HERALD_ERR_CORRUPT when the
//  log does not hold a seq it should: then err (may be NULL) says why.
herald_err
    herald_store_get (herald_store_t *self, uint64_t seq, uint8_t **envelope, size_t *len,
                      herald_error_t *err);

//  The dedup index: the seq and ver event id was stored with (a duplicate
//  of it gets these).  HERALD_ERR_NOT_FOUND when id is not stored,
//  HERALD_ERR_CORRUPT when its entry has the wrong shape, HERALD_ERR_IO
//  when RocksDB fails.  Reads only; from any thread.
herald_err
    herald_store_lookup_id (herald_store_t *self, const uint8_t id [HERALD_ID_BYTES],
                            uint64_t *seq, uint64_t *ver);

//  herald_store_lookup_id, and the content hash the entry keeps
//  (herald_hash_content of the event): *has_hash false for an entry
//  written before hashes were kept.
herald_err
    herald_store_lookup_id_hash (herald_store_t *self, const uint8_t id [HERALD_ID_BYTES],
                                 uint64_t *seq, uint64_t *ver, uint64_t *hash,
                                 bool *has_hash);

//  The dedup index for the ids of count events at once: seqs [i] the seq
//  events [i].id was stored with, 0 when it is not stored.  One batched
//  MultiGet, far cheaper than a herald_store_lookup_id per event (the
//  broker's security check of a PUBLISH batch).  HERALD_ERR_CORRUPT when
//  an entry has the wrong shape, HERALD_ERR_IO when RocksDB fails,
//  HERALD_ERR_NOMEM; err (may be NULL) says which.  Reads only; from any
//  thread.
herald_err
    herald_store_lookup_ids (herald_store_t *self, const herald_event_t *events, size_t count,
                             uint64_t *seqs, herald_error_t *err);

//  Walk the whole dedup index in id order, calling fn for each entry with
//  the seq and ver it names.  For offline checks (herald inspect): it
//  reads every entry.  Returns 0 when done, fn's return value when fn
//  returned non-zero (the walk stops there), or -1 with err filled
//  (HERALD_ERR_CORRUPT: an entry of the wrong shape; HERALD_ERR_IO).
typedef int (herald_store_id_fn) (const uint8_t id [HERALD_ID_BYTES], uint64_t seq,
                                  uint64_t ver, void *arg);
int
    herald_store_walk_ids (herald_store_t *self, herald_store_id_fn *fn, void *arg,
                           herald_error_t *err);

//  Counters, recovered on open and kept by append.  After a trim:
//  event_count is the seqs of the log from its first seq (head + 1 -
//  herald_store_log_first: events trimmed under a prefix trim point above
//  it still count, as their ids do), topic_count every topic ever made
//  (a topic whose every event is trimmed keeps its ver, so it still is
//  one).  Both are exact and cost nothing to keep.
uint64_t
    herald_store_head (herald_store_t *self);          //  highest seq, 0 when empty
uint64_t
    herald_store_event_count (herald_store_t *self);
uint64_t
    herald_store_topic_count (herald_store_t *self);
uint64_t
    herald_store_last_ts (herald_store_t *self);       //  ts of the head event, 0 when empty

//  The current ver of topic into *ver (0 when it has no events).  Fails
//  (HERALD_ERR_IO, HERALD_ERR_CORRUPT, err filled; may be NULL) when it
//  cannot be known: never "0" for a topic that could not be read.
herald_err
    herald_store_topic_ver (herald_store_t *self, const char *topic, size_t len,
                            uint64_t *ver, herald_error_t *err);

//  The first seq whose ts >= ts into *seq, or head + 1 when there is none.
//  Fails (HERALD_ERR_IO, HERALD_ERR_CORRUPT, err filled) when an event on
//  the way cannot be read.
herald_err
    herald_store_seq_at_ts (herald_store_t *self, uint64_t ts, uint64_t *seq,
                            herald_error_t *err);

//  Bytes the store's files take on disk into *bytes.  HERALD_ERR_IO (err
//  filled) when the directory cannot be listed or a file statted.
herald_err
    herald_store_disk_size (herald_store_t *self, uint64_t *bytes, herald_error_t *err);

//  Start writing every column family's memtable out to table files, and
//  return without waiting for it.  Once written, the WAL files that held
//  those writes are deleted: the disk then holds the log once, and opening
//  the store has no WAL to replay.  Nothing is lost if the process dies
//  before the flush ends (the WAL stays until then).  Any thread.
herald_err
    herald_store_flush (herald_store_t *self, herald_error_t *err);

//  Sync the WAL to disk now (RocksDB's FlushWAL with sync), so that every
//  append that returned survives a power loss, whatever the durability.
//  A cluster node's Raft snapshot calls it: libraft drops its log below
//  a snapshot, so the store must hold that much durably.  No marker is
//  written (compare herald_store_mark_acked).  From the appending thread;
//  HERALD_ERR_IO.  (In store/herald_store_sync.c, by the raft helper.)
herald_err
    herald_store_sync (herald_store_t *self, herald_error_t *err);

//  Where RocksDB's memory goes, in bytes: memtables (active, immutable
//  and pinned, all column families), the block cache, and the index and
//  filter blocks of open tables (these grow with the log; the rest is
//  capped by configuration).
typedef struct {
    uint64_t memtables;
    uint64_t block_cache;
    uint64_t table_readers;
} herald_store_memory_t;

void
    herald_store_memory (herald_store_t *self, herald_store_memory_t *memory);

//  The data directory.
const char *
    herald_store_path (herald_store_t *self);

//  ---------------------------------------------------------------------
//  Trimming (store/herald_store_trim.c; docs/operations.md, "Trimming and
//  retention").  A trim point says: the events of the topics that begin
//  with prefix, with seq <= until, are gone from the live log.  Their ids
//  stay in the dedup index for ever (a retry of one is still a duplicate,
//  with the seq and ver it was stored with), their topics keep their vers
//  (the next event of a topic gets the next ver), and the log's digest,
//  head and lineage are unchanged.  Trim points only rise.  The prefix ""
//  is the whole log: its until + 1 is the log's first seq.
//
//  A trim is an op (herald_batch_t.op), so it is applied in the same
//  WriteBatch as the call's events and, in a cluster, by every node at the
//  same raft index:
//      {op: "trim", prefix: str, until: uint,
//       ids_from: uint, ids: bin (32)     -- both or neither: the archive's proof
//       reason: str}                      -- optional, kept for people
//  Refused (batch->status HERALD_ERR_BAD_REQUEST, nothing written, the
//  result map {error: message}) when until is 0 or above the head, not
//  above the prefix's current until, the prefix is not a valid topic
//  prefix (0-255 bytes, no NUL, not starting with '$'), the store already
//  keeps HERALD_TRIMS_MAX other prefixes, or, with a proof, ids_from is not
//  the log's first seq (herald_store_log_first) or ids is not
//  herald_store_ids_digest (ids_from, until).  Applied: the result map is
//  {prefix, until, first}, first being herald_store_first for the prefix.
//  "The head" is the store's head when the call began (events earlier in
//  the same call cannot be trimmed by it); a trim op earlier in the same
//  call is seen.
//  The op only records the trim point (a few bytes, whatever its range);
//  reading stops at once, and herald_store_reclaim frees the disk after.

#define HERALD_TRIMS_MAX            1024    //  distinct trim prefixes a store keeps

typedef struct {
    char prefix [HERALD_TOPIC_MAX + 1];     //  NUL-terminated; "" is the whole log
    size_t prefix_len;
    uint64_t until;                         //  the last trimmed seq
    uint64_t ts;                            //  the ts of the apply that set it (ns)
    //  The ts of the event at until: no event this point trimmed has a
    //  greater one (ts never decreases with seq), so a REPLAY from_ts at or
    //  below it asks for trimmed events (refused), one above it for none
    uint64_t until_ts;
} herald_trim_t;

//  The trim points in force, in prefix order: copies of at most max of
//  them into trims (may be NULL with max 0); returns how many there are.
//  From any thread.
size_t
    herald_store_trims (herald_store_t *self, herald_trim_t *trims, size_t max);

//  The first seq from which every event whose topic begins with one of
//  prefixes [0..count) (count 0: every topic) is still in the live log:
//  1 + the greatest until among the trim points whose prefix overlaps one
//  of them (one of the two is a prefix of the other); 1 when none does.
//  From any thread.
uint64_t
    herald_store_first (herald_store_t *self, const herald_str_t *prefixes, size_t count);

//  The log's first seq: 1 + the until of the trim point "" (1 when there
//  is none; head + 1 when everything was trimmed).  What STATUS `first`
//  says, what a proof's ids_from must be, and where herald_store_ids_digest
//  may start.  Not herald_store_first (self, NULL, 0), which is where a
//  REPLAY of every topic may start, so also counts the prefix trim
//  points (every prefix overlaps "").  From any thread.
uint64_t
    herald_store_log_first (herald_store_t *self);

//  The greatest until among the trim points whose prefix begins topic
//  (0: none of the topic's events is trimmed).  From any thread.
uint64_t
    herald_store_topic_trimmed (herald_store_t *self, const char *topic, size_t len);

//  The topic's first ver still in the live log into *ver: 1 when none of
//  its events is trimmed, its current ver + 1 when all are (0 for an
//  unknown topic).  HERALD_ERR_IO / HERALD_ERR_CORRUPT with err filled.
herald_err
    herald_store_topic_first_ver (herald_store_t *self, const char *topic, size_t len,
                                  uint64_t *ver, herald_error_t *err);

//  A cluster node restored from a Raft snapshot (herald_manifest.c): raise
//  its trim points to those of the snapshot, in one synced write (a trim
//  point already higher stays; none is ever lowered).  HERALD_ERR_INVALID
//  for a bad prefix or more than HERALD_TRIMS_MAX; HERALD_ERR_IO.  From
//  the appending thread, between applies (a call in progress would
//  publish its own copy of the trim points over it).
herald_err
    herald_store_trims_import (herald_store_t *self, const herald_trim_t *trims, size_t count,
                               herald_error_t *err);

//  BLAKE2b-256 (libsodium crypto_generichash, no key) of the 16-byte ids
//  of seqs from..to, inclusive, in seq order — what an archive's index
//  keeps for a segment (`ids`), here for any range.  Events trimmed under a
//  prefix trim point count too (the log keeps their ids in place).  from
//  must be >= herald_store_log_first (HERALD_ERR_TRIMMED
//  otherwise) and to <= head, from <= to (HERALD_ERR_BAD_REQUEST).
//  cancel (may be NULL) is read between runs: true stops the walk with
//  HERALD_ERR_INTERNAL "cancelled".  Reads only; from any thread; its cost
//  is a scan of the range.
herald_err
    herald_store_ids_digest (herald_store_t *self, uint64_t from, uint64_t to,
                             uint8_t digest [32], volatile bool *cancel, herald_error_t *err);

//  What herald_store_reclaim did, added up over its calls.
typedef struct {
    uint64_t runs_deleted;          //  "events" runs removed whole
    uint64_t runs_rewritten;        //  runs rewritten with prefix-trimmed events cut out
    uint64_t events_removed;        //  envelopes no longer on disk
    uint64_t stream_runs_deleted;   //  "streams" entries removed
} herald_reclaim_stats_t;

//  Free the disk that trim points made unreadable: delete the runs whose
//  every event is trimmed, rewrite runs holding some prefix-trimmed events
//  (each such envelope replaced by its id, so herald_store_ids_digest and
//  herald inspect still see it), delete topic-index entries whose events
//  are all trimmed (never a topic's last one: it holds its ver), and ask
//  RocksDB to compact what was deleted.  Does at most about budget events'
//  worth of work per call and sets *more when there is more to do; the
//  caller calls again (the broker from a thread of its own, so appends and
//  streams go on meanwhile).  stats (may be NULL) is added to.  Idempotent
//  and crash-safe: what is left half done is redone by the next call (the
//  progress is kept in the store).  From one thread at a time;
//  HERALD_ERR_IO with err filled.
herald_err
    herald_store_reclaim (herald_store_t *self, size_t budget, bool *more,
                          herald_reclaim_stats_t *stats, herald_error_t *err);

//  For offline checks (herald inspect; store/herald_store_walk.c): every
//  seq the log stores, in seq order from its first stored run, trimmed
//  or not, as fn (seq, envelope, len, hole, arg): hole true for an
//  envelope reclaim cut out (then envelope is the 25-byte hole: 0xc1, the
//  id, the ts, big-endian; herald_store_hole_parse reads it).  Runs below
//  the log's first seq may be gone (reclaim deletes them), so the first
//  seq given may be above 1; a gap between runs is HERALD_ERR_CORRUPT.
//  Returns 0 when done, fn's value when it returned non-zero, or -1 with
//  err filled.  Reads only.
typedef int (herald_store_log_fn) (uint64_t seq, const uint8_t *envelope, size_t len,
                                   bool hole, void *arg);
int
    herald_store_walk_log (herald_store_t *self, herald_store_log_fn *fn, void *arg,
                           herald_error_t *err);

//  A hole's id and ts; false when the bytes are not a hole.
bool
    herald_store_hole_parse (const uint8_t *envelope, size_t len,
                             uint8_t id [HERALD_ID_BYTES], uint64_t *ts);

//  Every topic the store knows (those whose every event is trimmed too),
//  in byte order, as fn (topic, len, ver, arg).  Returns as
//  herald_store_walk_log.  Reads only.
typedef int (herald_store_topic_fn) (const char *topic, size_t len, uint64_t ver, void *arg);
int
    herald_store_walk_topics (herald_store_t *self, herald_store_topic_fn *fn, void *arg,
                              herald_error_t *err);

//  Trimmed data and reads.  herald_store_get of a trimmed seq, and
//  herald_store_scan / herald_store_read asked to start at a trimmed
//  event (from below herald_store_first (prefixes), from_ts resolving
//  there; from_ver below herald_store_topic_first_ver), fail with
//  HERALD_ERR_TRIMMED and a message naming the first seq (ver) still
//  there (herald_error_t has no `first`: herald_store_first of the same
//  prefixes, or herald_store_topic_first_ver, gives it).  A scan that
//  meets an event trimmed after it began (a trim
//  applied while it ran) ends -1 with HERALD_ERR_TRIMMED: it never skips
//  an event it should have returned.  herald_store_seq_at_ts counts only
//  the live log (a ts before its first event gives its first seq).

//  ---------------------------------------------------------------------
//  Scans.  A scan is a forward iterator over envelopes; a REPLAY or READ
//  stream is one scan.  It ends at the store's head as it was when the scan
//  began (a stream never waits for the future), or earlier at `to`.

//  What a REPLAY asks for; mirrors the REPLAY body.  Prefixes are copied.
typedef struct {
    bool has_from_ts;
    uint64_t from;                  //  first seq (>= 1); ignored with from_ts
    uint64_t from_ts;
    bool has_to;
    uint64_t to;                    //  last seq, inclusive
    bool has_until_ts;
    uint64_t until_ts;              //  last ts, inclusive
    const herald_str_t *prefixes;   //  none: every topic
    size_t prefix_count;
} herald_scan_spec_t;

//  Start a scan in seq order of the events matching spec.  Uses the topic
//  index when the prefixes select few events, so a sparse scan costs what
//  it returns.  Returns NULL and fills err (bad_request) for a spec the
//  protocol refuses (from 0, to < from, to with until_ts).
herald_scan_t *
    herald_store_scan (herald_store_t *self, const herald_scan_spec_t *spec,
                       herald_error_t *err);

//  Start a read of one topic's stream in ver order, from_ver (>= 1) to
//  to_ver inclusive (0: to the topic's ver when the read began).
herald_scan_t *
    herald_store_read (herald_store_t *self, const char *topic, size_t topic_len,
                       uint64_t from_ver, uint64_t to_ver, herald_error_t *err);

//  The next envelope: returns 1 and sets envelope (borrowed, valid until
//  the next call or destroy), len and seq; 0 at the end; -1 on a store
//  error (see herald_scan_error).  0 means every event of the range was
//  returned: data that cannot be read (a RocksDB error, a table block
//  that fails its checksum, a hole in the log, an envelope that does not
//  decode) is always -1, never an early end.
int
    herald_scan_next (herald_scan_t *self, const uint8_t **envelope, size_t *len,
                      uint64_t *seq);

//  For a scan: the highest seq L such that every matching event with
//  from <= seq <= L has been returned (docs/protocol.md, END `last`).  For a
//  read: the last ver returned (from_ver - 1 if none).
uint64_t
    herald_scan_last (herald_scan_t *self);

//  For a scan: the store's head when the scan began.  For a read: the
//  topic's ver when the read began.
uint64_t
    herald_scan_head (herald_scan_t *self);

//  The error behind a -1 from herald_scan_next.
const herald_error_t *
    herald_scan_error (herald_scan_t *self);

void
    herald_scan_destroy (herald_scan_t **self_p);

#endif
