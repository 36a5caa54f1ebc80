/*  =========================================================================
    herald_acl_build - the ACL file's second pass, and loading a file

    The sections of herald_acl_lines.c become the table: what lines refer
    to is resolved (a user's roles and scope, defined anywhere in the
    file), each user's roles are folded into it, and what needs the whole
    file is checked: one read view per user, one scope per endpoint, every
    key once.  An error names the line to edit: for a role or scope that
    is not defined, the line naming it; for a key listed twice, its second
    line.  herald_acl_parse runs both passes; herald_acl_load reads a file
    (refusing one writable by group or others) and parses it.
    =========================================================================
*/

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sodium.h>
#include "herald_acl_priv.h"

#define S_FILE_MAX      (16 * 1024 * 1024)  //  a bigger ACL file is a mistake

//  --------------------------------------------------------------------------
//  Parsing: the second pass

static int
s_section_order (const herald_acl_section_t *a, herald_acl_kind_t kind, const char *name)
{
    if (a->kind != kind)
        return a->kind < kind ? -1 : 1;
    return strcmp (a->name, name);
}

static int
s_section_qsort (const void *a, const void *b)
{
    const herald_acl_section_t *x = *(herald_acl_section_t * const *) a;
    const herald_acl_section_t *y = *(herald_acl_section_t * const *) b;
    int order = s_section_order (x, y->kind, y->name);
    return order ? order : (x->line > y->line) - (x->line < y->line);
}

//  The section of that kind and name, NULL when none (p->index built).
static herald_acl_section_t *
s_find (herald_acl_parser_t *p, herald_acl_kind_t kind, const char *name)
{
    size_t low = 0, high = p->count;
    while (low < high) {
        size_t middle = (low + high) / 2;
        int order = s_section_order (p->index [middle], kind, name);
        if (order == 0)
            return p->index [middle];
        if (order < 0)
            low = middle + 1;
        else
            high = middle;
    }
    return NULL;
}

//  p->index, and no name defined twice in one kind (the second named).
static herald_err
s_index (herald_acl_parser_t *p)
{
    if (!(p->index = calloc (p->count + 1, sizeof (herald_acl_section_t *))))
        return herald_acl_nomem (p);
    for (size_t index = 0; index < p->count; index++)
        p->index [index] = &p->sections [index];
    qsort (p->index, p->count, sizeof (herald_acl_section_t *), s_section_qsort);
    //  of the names defined again, the one whose second definition comes first
    const herald_acl_section_t *first = NULL, *again = NULL;
    size_t start = 0;               //  where the current name's run starts
    for (size_t index = 1; index < p->count; index++) {
        const herald_acl_section_t *section = p->index [index];
        if (s_section_order (p->index [index - 1], section->kind, section->name) != 0)
            start = index;
        else
        if (index == start + 1 && (!again || section->line < again->line)) {
            first = p->index [start];
            again = section;
        }
    }
    if (again)
        return herald_acl_fail (p, again->line, "", "%s '%s' is already defined at line %u",
                                herald_acl_kinds [again->kind], again->name, first->line);
    return HERALD_OK;
}

//  Two tcp endpoints bind the same port when their hosts are the same or
//  either is a wildcard.
static bool
s_same_endpoint (const char *a, const char *b)
{
    if (strcmp (a, b) == 0)
        return true;
    if (strncmp (a, "tcp://", 6) || strncmp (b, "tcp://", 6))
        return false;
    const char *port_a = strrchr (a, ':'), *port_b = strrchr (b, ':');
    if (strtoul (port_a + 1, NULL, 10) != strtoul (port_b + 1, NULL, 10))
        return false;
    const char *wild [] = { "*", "0.0.0.0", "[::]", "::" };
    for (int index = 0; index < 4; index++) {
        size_t len = strlen (wild [index]);
        if ((size_t) (port_a - a - 6) == len && strncmp (a + 6, wild [index], len) == 0)
            return true;
        if ((size_t) (port_b - b - 6) == len && strncmp (b + 6, wild [index], len) == 0)
            return true;
    }
    return port_a - a == port_b - b && strncmp (a, b, port_a - a) == 0;
}

//  A copy of len bytes at ptr, owned by self (freed with it); NULL when
//  out of memory.
static const char *
s_keep (herald_acl_t *self, size_t *capacity, const char *ptr, size_t len)
{
    char *copy = malloc (len + 1);
    if (!copy || !herald_acl_grow ((void **) &self->strings, capacity, self->string_count,
                                   sizeof (char *))) {
        free (copy);
        return NULL;
    }
    memcpy (copy, ptr, len);
    copy [len] = 0;
    self->strings [self->string_count++] = copy;
    return copy;
}

//  The normalised set of the prefixes in lists (copied into self), and its
//  trie (bits 1) when trie is given.
static bool
s_prefix_set (herald_acl_t *self, size_t *capacity, herald_acl_list_t **lists, size_t list_count,
              herald_acl_prefixes_t *set, herald_acl_node_t **trie)
{
    size_t total = 0;
    for (size_t list = 0; list < list_count; list++)
        total += lists [list]->count;
    set->prefixes = calloc (total ? total : 1, sizeof (herald_str_t));
    if (!set->prefixes)
        return false;
    for (size_t list = 0; list < list_count; list++)
        for (size_t index = 0; index < lists [list]->count; index++) {
            const herald_acl_item_t *item = &lists [list]->items [index];
            const char *copy = s_keep (self, capacity, item->ptr, item->len);
            if (!copy)
                return false;
            set->prefixes [set->count++] = (herald_str_t) { copy, item->len };
        }
    set->count = herald_acl_normalise (set->prefixes, set->count);
    for (size_t index = 0; trie && index < set->count; index++)
        if (!herald_acl_trie_add (trie, set->prefixes [index].ptr, set->prefixes [index].len, 1))
            return false;
    return true;
}

static int
s_section_by_name (const void *a, const void *b)
{
    return strcmp ((*(herald_acl_section_t * const *) a)->name,
                   (*(herald_acl_section_t * const *) b)->name);
}

static int
s_keyref_compare (const void *a, const void *b)
{
    const herald_acl_keyref_t *x = a, *y = b;
    int order = memcmp (x->key, y->key, HERALD_ACL_KEY_BYTES);
    return order ? order : (x->line > y->line) - (x->line < y->line);
}

//  The scopes, checked and built in file order (index = bit).
static herald_err
s_build_scopes (herald_acl_parser_t *p, herald_acl_t *self, size_t *capacity)
{
    for (size_t index = 0; index < p->count; index++) {
        herald_acl_section_t *section = &p->sections [index];
        if (section->kind != HERALD_ACL_IN_SCOPE)
            continue;
        if (section->read.count == 0)
            return herald_acl_fail (p, section->line, "",
                                    "scope '%s' reads nothing: give read = PREFIX ...",
                                    section->name);
        if (!section->fanout)
            return herald_acl_fail (p, section->line, "",
                                    "scope '%s' has no endpoint: give fanout = tcp://HOST:PORT",
                                    section->name);
        for (size_t other = 0; other < self->scope_count; other++) {
            const char *name = self->scopes [other].pub.name;
            if (s_same_endpoint (self->scopes [other].pub.fanout, section->fanout))
                return herald_acl_fail (p, section->fanout_line, "fanout",
                                        "%s is already the endpoint of scope '%s' (line %u)",
                                        section->fanout, name,
                                        s_find (p, HERALD_ACL_IN_SCOPE, name)->fanout_line);
        }
        herald_acl_scope_entry_t *scope = &self->scopes [self->scope_count];
        memcpy (scope->pub.name, section->name, sizeof (scope->pub.name));
        scope->pub.index = self->scope_count++;
        herald_acl_list_t *lists [] = { &section->read };
        if (!(scope->pub.fanout = strdup (section->fanout))
        ||  !s_prefix_set (self, capacity, lists, 1, &scope->pub.read, &scope->trie))
            return herald_acl_nomem (p);
        for (size_t prefix = 0; prefix < scope->pub.read.count; prefix++)
            if (!herald_acl_trie_add (&self->scope_trie, scope->pub.read.prefixes [prefix].ptr,
                                      scope->pub.read.prefixes [prefix].len,
                                      1ULL << scope->pub.index))
                return herald_acl_nomem (p);
    }
    return HERALD_OK;
}

//  One limit of a user: its own, or its roles' (which must agree).
static herald_err
s_user_limit (herald_acl_parser_t *p, size_t offset, const char *key, herald_acl_section_t *user,
              herald_acl_section_t **roles, uint64_t *value, uint64_t *burst)
{
    const herald_acl_limit_t *own = (const herald_acl_limit_t *) ((const char *) user + offset);
    const herald_acl_limit_t *chosen = own->line ? own : NULL;
    const char *from = NULL;
    for (size_t index = 0; !own->line && index < user->roles.count; index++) {
        const herald_acl_limit_t *limit =
            (const herald_acl_limit_t *) ((const char *) roles [index] + offset);
        if (!limit->line)
            continue;
        if (chosen && (chosen->value != limit->value || chosen->burst != limit->burst))
            return herald_acl_fail (p, user->roles.items [index].line, "role",
                                    "roles '%s' and '%s' give user '%s' different %s limits: "
                                    "set %s on the user", from, roles [index]->name, user->name,
                                    key, key);
        chosen = limit;
        from = roles [index]->name;
    }
    if (chosen) {
        *value = chosen->value;
        if (burst)
            *burst = chosen->burst;
    }
    return HERALD_OK;
}

//  A read view as people read it: "read = *" or "scope 'NAME'".
static const char *
s_view (const char *view, char *out, size_t size)
{
    if (*view == '*')
        snprintf (out, size, "read = *");
    else
        snprintf (out, size, "scope '%s'", view);
    return out;
}

//  The read view of a user, from itself and its roles: one at most.
static herald_err
s_user_view (herald_acl_parser_t *p, herald_acl_t *self, herald_acl_section_t *user,
             herald_acl_section_t **roles, herald_acl_user_t *out)
{
    const char *view = NULL;        //  "*" or a scope name
    const char *from = NULL;        //  "" for the user, or a role name
    for (size_t source = 0; source <= user->roles.count; source++) {
        herald_acl_section_t *section = source ? roles [source - 1] : user;
        unsigned line = source ? user->roles.items [source - 1].line : 0;
        for (int kind = 0; kind < 2; kind++) {
            const char *name = kind ? section->scope.ptr : (section->read_all ? "*" : NULL);
            if (!name)
                continue;
            if (!source)
                line = kind ? section->scope.line : section->read_all;
            char first [80], second [80];
            if (view && strcmp (view, name) != 0)
                return herald_acl_fail (p, line, source ? "role" : kind ? "scope" : "read",
                                        "user '%s' would read through %s (%s%s) and %s%s%s: "
                                        "a user reads through one view, read = * or one scope",
                                        user->name, s_view (view, first, sizeof (first)),
                                        *from ? "role " : "its own", from,
                                        s_view (name, second, sizeof (second)),
                                        source ? " of role " : "", source ? section->name : "");
            view = name;
            from = source ? section->name : "";
        }
    }
    if (view && *view == '*')
        out->read_all = true;
    else
    if (view)
        out->scope = herald_acl_scope (self, view);
    return HERALD_OK;
}

//  One user: roles resolved, grants accumulated.
static herald_err
s_build_user (herald_acl_parser_t *p, herald_acl_t *self, size_t *capacity,
              herald_acl_section_t *section, herald_acl_user_entry_t *user)
{
    herald_acl_user_t *out = &user->pub;
    memcpy (out->name, section->name, sizeof (out->name));
    if (section->key_count == 0)
        return herald_acl_fail (p, section->line, "", "user '%s' has no key: give key = Z85 "
                                "(herald keygen makes one)", section->name);
    memcpy (out->keys, section->keys, sizeof (out->keys));
    out->key_count = section->key_count;
    herald_acl_section_t **roles = calloc (section->roles.count + 1,
                                           sizeof (herald_acl_section_t *));
    herald_acl_list_t **lists = calloc (section->roles.count + 1, sizeof (herald_acl_list_t *));
    if (!roles || !lists) {
        free (roles);
        free (lists);
        return herald_acl_nomem (p);
    }
    herald_err rc = HERALD_OK;
    bool all = section->publish_all;
    lists [0] = &section->publish;
    out->admin = section->admin;
    for (size_t index = 0; rc == HERALD_OK && index < section->roles.count; index++) {
        const herald_acl_item_t *item = &section->roles.items [index];
        if (!(roles [index] = s_find (p, HERALD_ACL_IN_ROLE, item->ptr)))
            rc = herald_acl_fail (p, item->line, "role", "'%s' is not defined", item->ptr);
        else {
            lists [index + 1] = &roles [index]->publish;
            all |= roles [index]->publish_all;
            out->admin |= roles [index]->admin;
        }
    }
    if (rc == HERALD_OK && section->scope.ptr
    &&  !s_find (p, HERALD_ACL_IN_SCOPE, section->scope.ptr))
        rc = herald_acl_fail (p, section->scope.line, "scope", "'%s' is not defined",
                              section->scope.ptr);
    if (rc == HERALD_OK)
        rc = s_user_view (p, self, section, roles, out);
    uint64_t streams = 0;
    if (rc == HERALD_OK)
        rc = s_user_limit (p, offsetof (herald_acl_section_t, rate), "rate", section, roles,
                           &out->rate, &out->rate_burst);
    if (rc == HERALD_OK)
        rc = s_user_limit (p, offsetof (herald_acl_section_t, bytes), "bytes", section, roles,
                           &out->bytes, &out->bytes_burst);
    if (rc == HERALD_OK)
        rc = s_user_limit (p, offsetof (herald_acl_section_t, streams), "streams", section, roles,
                           &streams, NULL);
    if (rc == HERALD_OK)
        rc = s_user_limit (p, offsetof (herald_acl_section_t, replay), "replay", section, roles,
                           &out->replay, NULL);
    out->streams = (size_t) streams;
    if (rc == HERALD_OK && all)
        out->publish.all = true;
    else
    if (rc == HERALD_OK
    &&  !s_prefix_set (self, capacity, lists, section->roles.count + 1, &out->publish,
                       &user->publish))
        rc = herald_acl_nomem (p);
    free (roles);
    free (lists);
    return rc;
}

//  Every key once, users' and peers' together.
static herald_err
s_build_keys (herald_acl_parser_t *p, herald_acl_t *self, herald_acl_section_t **users,
              herald_acl_section_t **peers)
{
    size_t total = 0;
    for (size_t index = 0; index < self->user_count; index++)
        total += users [index]->key_count;
    for (size_t index = 0; index < self->peer_count; index++)
        total += peers [index]->key_count;
    if (!(self->keys = calloc (total ? total : 1, sizeof (herald_acl_keyref_t))))
        return herald_acl_nomem (p);
    for (int peer = 0; peer < 2; peer++)
        for (size_t index = 0; index < (peer ? self->peer_count : self->user_count); index++) {
            herald_acl_section_t *section = peer ? peers [index] : users [index];
            for (size_t which = 0; which < section->key_count; which++) {
                herald_acl_keyref_t *ref = &self->keys [self->key_count++];
                memcpy (ref->key, section->keys [which].key, HERALD_ACL_KEY_BYTES);
                ref->peer = peer;
                ref->owner = index;
                ref->which = which;
                ref->line = section->key_lines [which];
            }
        }
    qsort (self->keys, self->key_count, sizeof (herald_acl_keyref_t), s_keyref_compare);
    for (size_t index = 1; index < self->key_count; index++) {
        const herald_acl_keyref_t *first = &self->keys [index - 1], *again = &self->keys [index];
        const char *owner = first->peer ? self->peers [first->owner].name
                                        : self->users [first->owner].pub.name;
        if (memcmp (first->key, again->key, HERALD_ACL_KEY_BYTES) == 0)
            return herald_acl_fail (p, again->line, "key", "already the key of %s '%s' (line %u)",
                                    first->peer ? "peer" : "user", owner, first->line);
    }
    return HERALD_OK;
}

//  The second pass: the table, or NULL with p->err filled.
herald_acl_t *
herald_acl_build (herald_acl_parser_t *p, const void *bytes, size_t len)
{
    herald_acl_t *self = calloc (1, sizeof (herald_acl_t));
    size_t capacity = 0, users = 0, peers = 0;
    for (size_t index = 0; index < p->count; index++) {
        users += p->sections [index].kind == HERALD_ACL_IN_USER;
        peers += p->sections [index].kind == HERALD_ACL_IN_PEER;
    }
    herald_acl_section_t **user_sections = calloc (users + 1, sizeof (herald_acl_section_t *));
    herald_acl_section_t **peer_sections = calloc (peers + 1, sizeof (herald_acl_section_t *));
    herald_err rc;
    if (!self || !user_sections || !peer_sections
    ||  !(self->scopes = calloc (HERALD_ACL_MAX_SCOPES, sizeof (herald_acl_scope_entry_t)))
    ||  !(self->users = calloc (users + 1, sizeof (herald_acl_user_entry_t)))
    ||  !(self->peers = calloc (peers + 1, sizeof (herald_acl_peer_t)))) {
        herald_acl_nomem (p);
        free (user_sections);
        free (peer_sections);
        herald_acl_destroy (&self);
        return NULL;
    }
    uint8_t digest [crypto_hash_sha256_BYTES];
    crypto_hash_sha256 (digest, bytes, len);
    for (size_t index = 0; index < HERALD_ACL_VERSION_LEN / 2; index++)
        snprintf (self->version + 2 * index, 3, "%02x", digest [index]);
    rc = s_index (p);
    if (rc == HERALD_OK)
        rc = s_build_scopes (p, self, &capacity);
    for (size_t index = 0; rc == HERALD_OK && index < p->count; index++) {
        herald_acl_section_t *section = &p->sections [index];
        if (section->kind == HERALD_ACL_IN_ROLE && section->scope.ptr
        &&  !s_find (p, HERALD_ACL_IN_SCOPE, section->scope.ptr))
            rc = herald_acl_fail (p, section->scope.line, "scope", "'%s' is not defined",
                                  section->scope.ptr);
        if (section->kind == HERALD_ACL_IN_PEER && section->key_count == 0)
            rc = herald_acl_fail (p, section->line, "", "peer '%s' has no key: give key = Z85",
                                  section->name);
        if (section->kind == HERALD_ACL_IN_USER)
            user_sections [self->user_count++] = section;
        if (section->kind == HERALD_ACL_IN_PEER)
            peer_sections [self->peer_count++] = section;
    }
    if (rc == HERALD_OK) {
        qsort (user_sections, self->user_count, sizeof (herald_acl_section_t *), s_section_by_name);
        qsort (peer_sections, self->peer_count, sizeof (herald_acl_section_t *), s_section_by_name);
    }
    for (size_t index = 0; rc == HERALD_OK && index < self->user_count; index++)
        rc = s_build_user (p, self, &capacity, user_sections [index], &self->users [index]);
    for (size_t index = 0; rc == HERALD_OK && index < self->peer_count; index++) {
        herald_acl_peer_t *peer = &self->peers [index];
        memcpy (peer->name, peer_sections [index]->name, sizeof (peer->name));
        memcpy (peer->keys, peer_sections [index]->keys, sizeof (peer->keys));
        peer->key_count = peer_sections [index]->key_count;
    }
    if (rc == HERALD_OK)
        rc = s_build_keys (p, self, user_sections, peer_sections);
    free (user_sections);
    free (peer_sections);
    if (rc != HERALD_OK)
        herald_acl_destroy (&self);
    return self;
}


//  --------------------------------------------------------------------------
//  Loading

herald_acl_t *
herald_acl_parse (const char *text, size_t len, const char *name, herald_error_t *err)
{
    assert (text || len == 0);
    assert (name);
    if (sodium_init () < 0) {
        herald_error_set (err, HERALD_ERR_INTERNAL, NULL, "%s: libsodium failed to start", name);
        return NULL;
    }
    herald_acl_parser_t p = { .name = name, .err = err };
    char *copy = malloc (len + 1);
    if (!copy) {
        herald_acl_nomem (&p);
        return NULL;
    }
    if (len)
        memcpy (copy, text, len);
    copy [len] = 0;
    herald_err rc = HERALD_OK;
    char *line = copy, *end = copy + len;
    while (rc == HERALD_OK && line < end) {
        char *newline = memchr (line, '\n', end - line);
        char *stop = newline ? newline : end;
        *stop = 0;
        p.line++;
        if (strlen (line) != (size_t) (stop - line))
            rc = herald_acl_fail (&p, p.line, "", "NUL byte in line");
        else
            rc = herald_acl_line (&p, line);
        line = stop + 1;
    }
    herald_acl_t *self = rc == HERALD_OK ? herald_acl_build (&p, text, len) : NULL;
    herald_acl_parser_free (&p);
    free (copy);
    return self;
}

herald_acl_t *
herald_acl_load (const char *path, herald_error_t *err)
{
    assert (path);
    //  O_NONBLOCK: a FIFO named by mistake must not hang the broker in open
    int fd = open (path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        herald_error_set (err, HERALD_ERR_IO, NULL, "%s: %s", path, strerror (errno));
        return NULL;
    }
    struct stat status;
    herald_err rc = HERALD_OK;
    if (fstat (fd, &status) != 0)
        rc = herald_error_set (err, HERALD_ERR_IO, NULL, "%s: %s", path, strerror (errno));
    else
    if (!S_ISREG (status.st_mode))
        rc = herald_error_set (err, HERALD_ERR_INVALID, NULL, "%s: not a regular file", path);
    else
    if (status.st_mode & (S_IWGRP | S_IWOTH))
        rc = herald_error_set (err, HERALD_ERR_INVALID, NULL, "%s: writable by group or "
                               "others, so anyone in them could grant themselves access "
                               "(chmod go-w %s)", path, path);
    else
    if (status.st_size > S_FILE_MAX)
        rc = herald_error_set (err, HERALD_ERR_INVALID, NULL, "%s: larger than %d MiB", path,
                               S_FILE_MAX >> 20);
    char *bytes = rc == HERALD_OK ? malloc ((size_t) status.st_size + 1) : NULL;
    if (rc == HERALD_OK && !bytes)
        rc = herald_error_set (err, HERALD_ERR_NOMEM, NULL, "%s: out of memory", path);
    size_t len = 0;
    while (rc == HERALD_OK) {
        //  read to the end, whatever fstat said: the file may be growing
        ssize_t got = read (fd, bytes + len, (size_t) status.st_size + 1 - len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            rc = herald_error_set (err, HERALD_ERR_IO, NULL, "%s: %s", path, strerror (errno));
        else
        if (got == 0)
            break;
        else
        if ((len += (size_t) got) > (size_t) status.st_size)
            rc = herald_error_set (err, HERALD_ERR_IO, NULL, "%s: changed while being read",
                                   path);
    }
    close (fd);
    herald_acl_t *self = rc == HERALD_OK ? herald_acl_parse (bytes, len, path, err) : NULL;
    free (bytes);
    return self;
}
