/*  =========================================================================
    herald_schema - upcasters, downcasters and a subscription's schemas

    DESIGN

    The registry is a list of casters, (type, from, up or down) -> function,
    under a mutex: a lookup copies the function and its arg out and calls
    it outside the lock (a caster may register another).  Casters are never
    removed, so an arg stays valid for the agent's lifetime.

    A conversion walks one step at a time from the stored schema to the
    wanted one: up with upcasters when the stored one is older, down with
    downcasters when it is newer.  Each step gets a fresh buffer (twice the
    input, at least 256 bytes) or returns its own malloc'd bytes; the step
    before is freed as soon as the next has its result.  The first missing
    step or failing caster ends it with HERALD_ERR_UNSUPPORTED and a
    message naming type, stored schema, wanted schema, seq and the step.

    The parked file (state_dir/parked/NAME.parked) is a sequence of records

        len u32 | crc32c u32 (of the payload) | payload (len bytes)
        payload: id (16) | reason_len u16 | reason | the stored envelope

    little-endian, appended and fdatasynced before the checkpoint moves
    past the event.  A crash between the append and the checkpoint passes
    the event again (flagged redelivered): it is not appended twice when it
    is the file's last record.  A torn last record is cut off when the
    subscription is made, so that later appends stay readable.
    =========================================================================
*/

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "herald_schema.h"
#include "herald_agent_priv.h"
#include "herald_crc.h"
#include "herald_say.h"
#include "herald_text.h"

#define RECORD_HEAD     8
#define RECORD_MAX      (64u * 1024 * 1024)

typedef struct {
    char *type;
    uint64_t from;
    bool down;
    herald_caster_fn *fn;
    void *arg;
} s_caster_t;

struct _herald_schema_t {
    pthread_mutex_t lock;
    s_caster_t *casters;
    size_t count, capacity;
};

herald_schema_t *
herald_schema_new (void)
{
    herald_schema_t *self = calloc (1, sizeof *self);
    if (self)
        pthread_mutex_init (&self->lock, NULL);
    return self;
}

void
herald_schema_destroy (herald_schema_t **self_p)
{
    herald_schema_t *self = *self_p;
    if (!self)
        return;
    for (size_t index = 0; index < self->count; index++)
        free (self->casters [index].type);
    free (self->casters);
    pthread_mutex_destroy (&self->lock);
    free (self);
    *self_p = NULL;
}

//  The caster for (type, from, down), copied into *found.  Under the lock.
static bool
s_find (herald_schema_t *self, const char *type, size_t len, uint64_t from, bool down,
        s_caster_t *found)
{
    for (size_t index = 0; index < self->count; index++) {
        s_caster_t *caster = &self->casters [index];
        if (caster->from == from && caster->down == down && strlen (caster->type) == len
        &&  memcmp (caster->type, type, len) == 0) {
            *found = *caster;
            return true;
        }
    }
    return false;
}

herald_err
herald_schema_register (herald_schema_t *self, const char *type, uint64_t from, bool down,
                        herald_caster_fn *fn, void *arg)
{
    const char *kind = down? "downcaster": "upcaster";
    size_t len = type? strlen (type): 0;
    if (!self || !fn || len == 0 || len > 255)
        return herald_agent_set_error (HERALD_ERR_INVALID, "a %s needs a type of 1-255 bytes "
                                       "and a function", kind);
    if (from < (down? 2u: 1u) || from == UINT64_MAX)
        return herald_agent_set_error (HERALD_ERR_INVALID, "a %s's from_schema is %s, not %"
                                       PRIu64, kind, down? ">= 2": ">= 1", from);
    pthread_mutex_lock (&self->lock);
    s_caster_t found;
    herald_err rc = HERALD_OK;
    if (s_find (self, type, len, from, down, &found))
        rc = herald_agent_set_error (HERALD_ERR_INVALID, "%s %s %" PRIu64 " -> %" PRIu64
                                     " is registered already", kind, type, from,
                                     down? from - 1: from + 1);
    else
    if (self->count == self->capacity) {
        size_t capacity = self->capacity? self->capacity * 2: 8;
        s_caster_t *casters = realloc (self->casters, capacity * sizeof *casters);
        if (!casters)
            rc = herald_agent_set_error (HERALD_ERR_NOMEM, "out of memory");
        else {
            self->casters = casters;
            self->capacity = capacity;
        }
    }
    if (rc == HERALD_OK) {
        char *copy = strdup (type);
        if (!copy)
            rc = herald_agent_set_error (HERALD_ERR_NOMEM, "out of memory");
        else
            self->casters [self->count++] = (s_caster_t) { .type = copy, .from = from,
                                                           .down = down, .fn = fn,
                                                           .arg = arg };
    }
    pthread_mutex_unlock (&self->lock);
    return rc;
}

//  ---------------------------------------------------------------------
//  A subscription's declarations

void
herald_schema_sub_destroy (herald_schema_sub_t **self_p)
{
    herald_schema_sub_t *self = *self_p;
    if (!self)
        return;
    for (size_t index = 0; index < self->want_count; index++)
        free ((char *) self->wants [index].type);
    free (self->wants);
    free (self->parked_path);
    pthread_mutex_destroy (&self->park_lock);
    free (self);
    *self_p = NULL;
}

static bool
s_count_record (const herald_parked_record_t *record, void *arg)
{
    (void) record;
    (void) arg;
    return true;
}

//  Cut a torn tail off the parked file, so that appends stay readable.
static herald_err
s_park_repair (const char *path)
{
    uint8_t *bytes = NULL;
    size_t len = 0, good = 0;
    herald_err rc = herald_schema_parked_scan (path, &bytes, &len, &good, s_count_record,
                                               NULL);
    free (bytes);
    if (rc)
        return rc;
    if (good < len) {
        herald_say (HERALD_LOG_WARNING, "%s: a torn last record (%zu bytes) cut off", path,
                    len - good);
        if (truncate (path, (off_t) good) != 0)
            return herald_agent_set_error (HERALD_ERR_IO, "%s: %s", path, strerror (errno));
    }
    return HERALD_OK;
}

herald_schema_sub_t *
herald_schema_sub_new (const herald_subscribe_options_t *options, const char *name,
                       const char *state_dir)
{
    if (options->on_incompatible != HERALD_SCHEMA_STOP
    &&  options->on_incompatible != HERALD_SCHEMA_SKIP
    &&  options->on_incompatible != HERALD_SCHEMA_PARK) {
        herald_agent_set_error (HERALD_ERR_INVALID, "on_incompatible: STOP, SKIP or PARK, "
                                "not %d", (int) options->on_incompatible);
        return NULL;
    }
    if (options->on_incompatible == HERALD_SCHEMA_PARK && !state_dir && !options->on_parked) {
        herald_agent_set_error (HERALD_ERR_INVALID, "PARK keeps parked events in state_dir "
                                "or gives them to on_parked: this agent has no state_dir "
                                "and no on_parked was given");
        return NULL;
    }
    if (options->want_count && !options->wants) {
        herald_agent_set_error (HERALD_ERR_INVALID, "want_count without wants");
        return NULL;
    }
    for (size_t index = 0; index < options->want_count; index++) {
        const herald_schema_want_t *want = &options->wants [index];
        size_t len = want->type? strlen (want->type): 0;
        if (len == 0 || len > 255 || want->schema == 0) {
            herald_agent_set_error (HERALD_ERR_INVALID, "schemas: each needs a type of 1-255 "
                                    "bytes and a schema >= 1 (entry %zu)", index);
            return NULL;
        }
        for (size_t other = 0; other < index; other++)
            if (strcmp (options->wants [other].type, want->type) == 0) {
                herald_agent_set_error (HERALD_ERR_INVALID, "schemas: type %s declared twice",
                                        want->type);
                return NULL;
            }
    }
    herald_schema_sub_t *self = calloc (1, sizeof *self);
    if (!self) {
        herald_agent_set_error (HERALD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    pthread_mutex_init (&self->park_lock, NULL);
    self->default_schema = options->default_schema;
    self->policy = options->on_incompatible;
    self->on_parked = options->on_parked;
    self->on_parked_arg = options->on_parked_arg;
    bool nomem = false;
    if (options->want_count) {
        self->wants = calloc (options->want_count, sizeof *self->wants);
        nomem = !self->wants;
        for (size_t index = 0; !nomem && index < options->want_count; index++) {
            self->wants [index].type = strdup (options->wants [index].type);
            self->wants [index].schema = options->wants [index].schema;
            nomem = !self->wants [index].type;
            self->want_count++;
        }
    }
    if (!nomem && state_dir) {
        size_t size = strlen (state_dir) + strlen (name) + 32;
        self->parked_path = malloc (size);
        nomem = !self->parked_path;
        if (!nomem)
            snprintf (self->parked_path, size, "%s/parked/%s.parked", state_dir, name);
    }
    if (nomem) {
        herald_schema_sub_destroy (&self);
        herald_agent_set_error (HERALD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (self->parked_path && s_park_repair (self->parked_path) != HERALD_OK)
        herald_schema_sub_destroy (&self);      //  the error is set
    return self;
}

uint64_t
herald_schema_sub_want (const herald_schema_sub_t *self, const char *type, size_t len)
{
    if (!self || !type)
        return 0;
    for (size_t index = 0; index < self->want_count; index++)
        if (strlen (self->wants [index].type) == len
        &&  memcmp (self->wants [index].type, type, len) == 0)
            return self->wants [index].schema;
    return self->default_schema;
}

//  ---------------------------------------------------------------------
//  Conversion

herald_err
herald_schema_convert (herald_schema_t *self, herald_delivery_t *view, uint64_t want,
                       void **owned_p, int *direction_p, char *message, size_t size)
{
    *owned_p = NULL;
    *direction_p = 0;
    if (!view->type || want == 0 || view->schema == want)
        return HERALD_OK;
    uint64_t stored = view->schema;
    bool down = stored > want;
    herald_delivery_t step = *view;
    void *owned = NULL;                 //  step.data's memory, once converted
    while (step.schema != want) {
        uint64_t next = down? step.schema - 1: step.schema + 1;
        s_caster_t caster;
        pthread_mutex_lock (&self->lock);
        bool found = s_find (self, step.type, step.type_len, step.schema, down, &caster);
        pthread_mutex_unlock (&self->lock);
        if (!found) {
            herald_text_format (message, size, "event seq %" PRIu64 " of type %.*s is stored "
                                "at schema %" PRIu64 ", the handler wants %" PRIu64 ": no %s "
                                "%" PRIu64 " -> %" PRIu64 " is registered", view->seq,
                                (int) view->type_len, view->type, stored, want,
                                down? "downcaster": "upcaster", step.schema, next);
            free (owned);
            return HERALD_ERR_UNSUPPORTED;
        }
        herald_cast_result_t result;
        memset (&result, 0, sizeof result);
        result.capacity = step.data_len * 2 < 256? 256: step.data_len * 2;
        result.buffer = malloc (result.capacity);
        if (!result.buffer) {
            herald_text_format (message, size, "out of memory converting seq %" PRIu64,
                                view->seq);
            free (owned);
            return HERALD_ERR_UNSUPPORTED;
        }
        int rc = caster.fn (&step, &result, caster.arg);
        if (rc == HERALD_OK && !result.data && result.data_len > result.capacity)
            rc = HERALD_ERR_INVALID;    //  it said it wrote past the buffer: not trusted
        if (rc != HERALD_OK) {
            result.message [sizeof result.message - 1] = 0;
            herald_text_format (message, size, "event seq %" PRIu64 " of type %.*s is stored "
                                "at schema %" PRIu64 ", the handler wants %" PRIu64 ": the %s "
                                "%" PRIu64 " -> %" PRIu64 " failed (%d)%s%s", view->seq,
                                (int) view->type_len, view->type, stored, want,
                                down? "downcaster": "upcaster", step.schema, next, rc,
                                result.message [0]? ": ": "", result.message);
            free (result.data);
            free (result.buffer);
            free (owned);
            return HERALD_ERR_UNSUPPORTED;
        }
        free (owned);
        if (result.data) {
            free (result.buffer);
            owned = result.data;
        }
        else
            owned = result.buffer;
        step.data = owned;
        step.data_len = result.data_len;
        step.schema = next;
    }
    view->data = step.data;
    view->data_len = step.data_len;
    view->schema = want;
    *owned_p = owned;
    *direction_p = down? -1: 1;
    return HERALD_OK;
}

//  ---------------------------------------------------------------------
//  The parked file

static void
s_put32 (uint8_t *at, uint32_t value)
{
    for (int index = 0; index < 4; index++)
        at [index] = (uint8_t) (value >> (8 * index));
}

static uint32_t
s_get32 (const uint8_t *at)
{
    return (uint32_t) at [0] | (uint32_t) at [1] << 8 | (uint32_t) at [2] << 16
         | (uint32_t) at [3] << 24;
}

herald_err
herald_schema_parked_scan (const char *path, uint8_t **bytes_p, size_t *len_p, size_t *good_p,
                           bool (*fn) (const herald_parked_record_t *, void *), void *arg)
{
    *bytes_p = NULL;
    *len_p = *good_p = 0;
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT? HERALD_OK
                              : herald_agent_set_error (HERALD_ERR_IO, "%s: %s", path,
                                                        strerror (errno));
    struct stat info;
    uint8_t *bytes = NULL;
    size_t len = 0;
    if (fstat (fd, &info) == 0 && info.st_size > 0) {
        bytes = malloc ((size_t) info.st_size);
        while (bytes && len < (size_t) info.st_size) {
            ssize_t got = read (fd, bytes + len, (size_t) info.st_size - len);
            if (got <= 0)
                break;
            len += (size_t) got;
        }
    }
    close (fd);
    if (info.st_size > 0 && !bytes)
        return herald_agent_set_error (HERALD_ERR_NOMEM, "out of memory");
    size_t offset = 0;
    bool going = true;
    while (going && len - offset >= RECORD_HEAD) {
        uint32_t size = s_get32 (bytes + offset);
        uint32_t crc = s_get32 (bytes + offset + 4);
        if (size < 18 || size > RECORD_MAX || size > len - offset - RECORD_HEAD)
            break;
        const uint8_t *payload = bytes + offset + RECORD_HEAD;
        if (herald_crc32c (0, payload, size) != crc)
            break;
        size_t reason_len = (size_t) payload [16] | (size_t) payload [17] << 8;
        if (18 + reason_len > size)
            break;
        herald_parked_record_t record = {
            .id = payload, .reason = (const char *) payload + 18, .reason_len = reason_len,
            .envelope = payload + 18 + reason_len, .envelope_len = size - 18 - reason_len,
            .offset = offset, .end = offset + RECORD_HEAD + size
        };
        offset = record.end;
        going = fn? fn (&record, arg): true;
    }
    *good_p = offset;
    *bytes_p = bytes;
    *len_p = len;
    return HERALD_OK;
}

typedef struct {
    uint8_t id [16];
    bool any;
} s_last_t;

static bool
s_last_record (const herald_parked_record_t *record, void *arg)
{
    s_last_t *last = (s_last_t *) arg;
    memcpy (last->id, record->id, 16);
    last->any = true;
    return true;
}

static int
s_mkdir_parent (const char *path)
{
    char copy [4096];
    snprintf (copy, sizeof copy, "%s", path);
    char *slash = strrchr (copy, '/');
    if (!slash)
        return 0;
    *slash = 0;
    return mkdir (copy, 0755) != 0 && errno != EEXIST? -1: 0;
}

herald_err
herald_schema_park (herald_schema_sub_t *self, const herald_delivery_t *view,
                    const char *reason, bool redelivered, char *message, size_t size)
{
    if (!self->parked_path)
        return HERALD_OK;
    size_t reason_len = strlen (reason);
    if (reason_len > 65535)
        reason_len = 65535;
    size_t payload = 18 + reason_len + view->envelope_len;
    if (payload > RECORD_MAX) {
        herald_text_format (message, size, "seq %" PRIu64 " is too large to park", view->seq);
        return HERALD_ERR_IO;
    }
    pthread_mutex_lock (&self->park_lock);
    herald_err rc = HERALD_OK;
    if (redelivered) {
        //  Parked before the crash that left it in doubt?
        uint8_t *bytes;
        size_t len, good;
        s_last_t last = { .any = false };
        if (herald_schema_parked_scan (self->parked_path, &bytes, &len, &good, s_last_record,
                                       &last) == HERALD_OK) {
            free (bytes);
            if (last.any && memcmp (last.id, view->id, 16) == 0) {
                pthread_mutex_unlock (&self->park_lock);
                return HERALD_OK;
            }
        }
    }
    uint8_t *record = malloc (RECORD_HEAD + payload);
    int fd = -1;
    if (!record)
        rc = HERALD_ERR_NOMEM;
    else {
        uint8_t *at = record + RECORD_HEAD;
        memcpy (at, view->id, 16);
        at [16] = (uint8_t) reason_len;
        at [17] = (uint8_t) (reason_len >> 8);
        memcpy (at + 18, reason, reason_len);
        memcpy (at + 18 + reason_len, view->envelope, view->envelope_len);
        s_put32 (record, (uint32_t) payload);
        s_put32 (record + 4, herald_crc32c (0, at, payload));
        if (s_mkdir_parent (self->parked_path) == 0)
            fd = open (self->parked_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        size_t written = 0;
        while (fd >= 0 && written < RECORD_HEAD + payload) {
            ssize_t put = write (fd, record + written, RECORD_HEAD + payload - written);
            if (put <= 0)
                break;
            written += (size_t) put;
        }
        if (fd < 0 || written < RECORD_HEAD + payload || fdatasync (fd) != 0) {
            herald_text_format (message, size, "cannot park seq %" PRIu64 " in %s: %s",
                                view->seq, self->parked_path, strerror (errno));
            rc = HERALD_ERR_IO;
            //  A partial record is cut off by the next subscribe (s_park_repair)
        }
        if (fd >= 0)
            close (fd);
    }
    if (rc == HERALD_ERR_NOMEM)
        herald_text_format (message, size, "out of memory parking seq %" PRIu64, view->seq);
    free (record);
    pthread_mutex_unlock (&self->park_lock);
    return rc;
}
