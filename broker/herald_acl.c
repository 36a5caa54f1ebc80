/*  =========================================================================
    herald_acl - who may connect, publish, read and administer (issue 14)

    The ACL file (docs/security.md, "The ACL file") read into an immutable
    table.  See herald_acl.h for what the table answers.  This file holds
    the table and what it answers; the parser is herald_acl_lines.c (lines
    into sections) and herald_acl_build.c (sections into the table).

    DESIGN
    Prefix sets are normalised (sorted, a prefix covered by a shorter one
    dropped, `*` absorbing everything) and matched through a byte trie: a
    user's publish set, each scope's read set, and one trie over every
    scope whose nodes carry the bitset of the scopes ending there, which
    herald_acl_scopes_of ORs along the topic.  Children are kept sorted,
    so a step is a binary search over at most 256 bytes: a check costs
    O(topic length) however many users, scopes or prefixes there are.

    Keys (users' and peers', all different) are one array sorted by the
    32 key bytes; users and peers are sorted by name.  A public
    herald_acl_user_t or herald_acl_scope_t is the first member of a
    private struct holding its trie, so the checks find the trie from the
    pointer the caller has.
    =========================================================================
*/

#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "herald_acl_priv.h"
#include "herald_text.h"

//  --------------------------------------------------------------------------
//  The trie

void
herald_acl_trie_destroy (herald_acl_node_t *node)
{
    if (!node)
        return;
    for (size_t index = 0; index < node->count; index++)
        herald_acl_trie_destroy (node->kids [index]);
    free (node->bytes);
    free (node->kids);
    free (node);
}

//  The child of node for byte, or the index where it would be inserted.
static herald_acl_node_t *
s_node_child (const herald_acl_node_t *node, uint8_t byte, size_t *where)
{
    size_t low = 0, high = node->count;
    while (low < high) {
        size_t middle = (low + high) / 2;
        if (node->bytes [middle] == byte)
            return node->kids [middle];
        if (node->bytes [middle] < byte)
            low = middle + 1;
        else
            high = middle;
    }
    if (where)
        *where = low;
    return NULL;
}

//  Add prefix with bits; false when out of memory (the trie stays valid).
bool
herald_acl_trie_add (herald_acl_node_t **root, const char *prefix, size_t len, uint64_t bits)
{
    if (!*root && !(*root = calloc (1, sizeof (herald_acl_node_t))))
        return false;
    herald_acl_node_t *node = *root;
    for (size_t index = 0; index < len; index++) {
        size_t where = 0;
        herald_acl_node_t *kid = s_node_child (node, (uint8_t) prefix [index], &where);
        if (!kid) {
            uint8_t *bytes = realloc (node->bytes, node->count + 1);
            if (bytes)
                node->bytes = bytes;
            herald_acl_node_t **kids = realloc (node->kids, (node->count + 1) * sizeof (*kids));
            if (kids)
                node->kids = kids;
            if (!bytes || !kids || !(kid = calloc (1, sizeof (herald_acl_node_t))))
                return false;
            memmove (node->bytes + where + 1, node->bytes + where, node->count - where);
            memmove (node->kids + where + 1, node->kids + where,
                     (node->count - where) * sizeof (*kids));
            node->bytes [where] = (uint8_t) prefix [index];
            node->kids [where] = kid;
            node->count++;
        }
        node = kid;
    }
    node->bits |= bits;
    return true;
}

//  The bits of every prefix of topic (the empty one included), ORed; with
//  first, stops at the first non-zero.
uint64_t
herald_acl_trie_match (const herald_acl_node_t *node, const char *topic, size_t len, bool first)
{
    uint64_t bits = 0;
    for (size_t index = 0; node; index++) {
        bits |= node->bits;
        if ((bits && first) || index == len)
            break;
        node = s_node_child (node, (uint8_t) topic [index], NULL);
    }
    return bits;
}


//  --------------------------------------------------------------------------
//  The table

static void
s_prefixes_free (herald_acl_prefixes_t *set)
{
    free (set->prefixes);
    set->prefixes = NULL;
    set->count = 0;
}

void
herald_acl_destroy (herald_acl_t **self_p)
{
    assert (self_p);
    herald_acl_t *self = *self_p;
    if (!self)
        return;
    for (size_t index = 0; index < self->scope_count; index++) {
        s_prefixes_free (&self->scopes [index].pub.read);
        free (self->scopes [index].pub.fanout);
        herald_acl_trie_destroy (self->scopes [index].trie);
    }
    for (size_t index = 0; index < self->user_count; index++) {
        s_prefixes_free (&self->users [index].pub.publish);
        herald_acl_trie_destroy (self->users [index].publish);
    }
    for (size_t index = 0; index < self->string_count; index++)
        free (self->strings [index]);
    herald_acl_trie_destroy (self->scope_trie);
    free (self->strings);
    free (self->scopes);
    free (self->users);
    free (self->peers);
    free (self->keys);
    free (self);
    *self_p = NULL;
}

//  Byte order of two strings, a prefix before what it is a prefix of.
int
herald_acl_str_compare (const herald_str_t *a, const herald_str_t *b)
{
    size_t len = a->len < b->len ? a->len : b->len;
    int order = len ? memcmp (a->ptr, b->ptr, len) : 0;
    if (order)
        return order;
    return (a->len > b->len) - (a->len < b->len);
}

static int
s_str_qsort (const void *a, const void *b)
{
    return herald_acl_str_compare (a, b);
}

bool
herald_acl_starts_with (const char *text, size_t len, const herald_str_t *prefix)
{
    return prefix->len <= len && memcmp (text, prefix->ptr, prefix->len) == 0;
}

//  Sort and drop the prefixes that a shorter one covers (duplicates too).
//  In sorted order every prefix a kept one covers comes right after it,
//  so comparing with the last kept one is enough.
size_t
herald_acl_normalise (herald_str_t *prefixes, size_t count)
{
    if (count == 0)
        return 0;
    qsort (prefixes, count, sizeof (herald_str_t), s_str_qsort);
    size_t kept = 1;
    for (size_t index = 1; index < count; index++)
        if (!herald_acl_starts_with (prefixes [index].ptr, prefixes [index].len,
                                     &prefixes [kept - 1]))
            prefixes [kept++] = prefixes [index];
    return kept;
}

const herald_acl_grant_t herald_acl_grants [HERALD_ACL_GRANTS] = {
    { "status", HERALD_ACL_ADMIN_STATUS }, { "acl", HERALD_ACL_ADMIN_ACL },
    { "cluster", HERALD_ACL_ADMIN_CLUSTER }, { "trim", HERALD_ACL_ADMIN_TRIM },
    { "backup", HERALD_ACL_ADMIN_BACKUP }, { "groups", HERALD_ACL_ADMIN_GROUPS },
    { "*", HERALD_ACL_ADMIN_ALL }
};


//  --------------------------------------------------------------------------
//  Lookups

const char *
herald_acl_version (const herald_acl_t *self)
{
    assert (self);
    return self->version;
}

//  The key's entry of the given kind, NULL when none.
static const herald_acl_keyref_t *
s_key_find (const herald_acl_t *self, const uint8_t *key, bool peer)
{
    size_t low = 0, high = self->key_count;
    while (low < high) {
        size_t middle = (low + high) / 2;
        int order = memcmp (self->keys [middle].key, key, HERALD_ACL_KEY_BYTES);
        if (order == 0)
            return self->keys [middle].peer == peer ? &self->keys [middle] : NULL;
        if (order < 0)
            low = middle + 1;
        else
            high = middle;
    }
    return NULL;
}

bool
herald_acl_key_expired (const herald_acl_key_t *key, int64_t now_ns)
{
    return key->until_ns != 0 && now_ns >= key->until_ns;
}

const herald_acl_user_t *
herald_acl_user_by_key (const herald_acl_t *self, const uint8_t *key, int64_t now_ns,
                        const char **why, size_t *which)
{
    assert (self);
    assert (key);
    const herald_acl_keyref_t *ref = s_key_find (self, key, false);
    const herald_acl_user_t *user = ref ? &self->users [ref->owner].pub : NULL;
    if (user && herald_acl_key_expired (&user->keys [ref->which], now_ns)) {
        if (why)
            *why = "key expired";
        return NULL;
    }
    if (!user && why)
        *why = "unknown key";
    if (user && which)
        *which = ref->which;
    return user;
}

const herald_acl_peer_t *
herald_acl_peer_by_key (const herald_acl_t *self, const uint8_t *key, int64_t now_ns)
{
    assert (self);
    assert (key);
    const herald_acl_keyref_t *ref = s_key_find (self, key, true);
    if (!ref || herald_acl_key_expired (&self->peers [ref->owner].keys [ref->which], now_ns))
        return NULL;
    return &self->peers [ref->owner];
}

const herald_acl_user_t *
herald_acl_user (const herald_acl_t *self, const char *name)
{
    assert (self);
    assert (name);
    size_t low = 0, high = self->user_count;
    while (low < high) {
        size_t middle = (low + high) / 2;
        int order = strcmp (self->users [middle].pub.name, name);
        if (order == 0)
            return &self->users [middle].pub;
        if (order < 0)
            low = middle + 1;
        else
            high = middle;
    }
    return NULL;
}

size_t
herald_acl_user_count (const herald_acl_t *self)
{
    assert (self);
    return self->user_count;
}

const herald_acl_user_t *
herald_acl_user_at (const herald_acl_t *self, size_t index)
{
    assert (self);
    return index < self->user_count ? &self->users [index].pub : NULL;
}

size_t
herald_acl_scope_count (const herald_acl_t *self)
{
    assert (self);
    return self->scope_count;
}

const herald_acl_scope_t *
herald_acl_scope_at (const herald_acl_t *self, size_t index)
{
    assert (self);
    return index < self->scope_count ? &self->scopes [index].pub : NULL;
}

const herald_acl_scope_t *
herald_acl_scope (const herald_acl_t *self, const char *name)
{
    assert (self);
    assert (name);
    for (size_t index = 0; index < self->scope_count; index++)
        if (strcmp (self->scopes [index].pub.name, name) == 0)
            return &self->scopes [index].pub;
    return NULL;
}

size_t
herald_acl_peer_count (const herald_acl_t *self)
{
    assert (self);
    return self->peer_count;
}

const herald_acl_peer_t *
herald_acl_peer_at (const herald_acl_t *self, size_t index)
{
    assert (self);
    return index < self->peer_count ? &self->peers [index] : NULL;
}

size_t
herald_acl_expired (const herald_acl_t *self, int64_t now_ns)
{
    assert (self);
    size_t expired = 0;
    for (size_t index = 0; index < self->key_count; index++) {
        const herald_acl_keyref_t *ref = &self->keys [index];
        const herald_acl_key_t *keys = ref->peer ? self->peers [ref->owner].keys
                                                 : self->users [ref->owner].pub.keys;
        expired += herald_acl_key_expired (&keys [ref->which], now_ns);
    }
    return expired;
}


//  --------------------------------------------------------------------------
//  Checks

bool
herald_acl_may_publish (const herald_acl_user_t *user, const char *topic, size_t len)
{
    assert (user);
    if (user->publish.all)
        return true;
    return herald_acl_trie_match (((const herald_acl_user_entry_t *) user)->publish, topic, len,
                                  true) != 0;
}

bool
herald_acl_may_read (const herald_acl_user_t *user, const char *topic, size_t len)
{
    assert (user);
    if (user->read_all)
        return true;
    if (!user->scope)
        return false;
    return herald_acl_trie_match (((const herald_acl_scope_entry_t *) user->scope)->trie, topic,
                                  len, true) != 0;
}

uint64_t
herald_acl_scopes_of (const herald_acl_t *self, const char *topic, size_t len)
{
    assert (self);
    return herald_acl_trie_match (self->scope_trie, topic, len, false);
}

//  text for people: printable bytes as they are, others as \xHH, cut at 80.
static const char *
s_shown (const char *text, size_t len, char *out, size_t size)
{
    size_t used = 0;
    for (size_t index = 0; index < len && used + 5 < size && index < 80; index++) {
        uint8_t byte = (uint8_t) text [index];
        if (byte < 0x20 || byte == 0x7f)
            used += snprintf (out + used, size - used, "\\x%02x", byte);
        else
            out [used++] = (char) byte;
    }
    out [used] = 0;
    if (len > 80 && used + 4 < size)
        strcpy (out + used, HERALD_TEXT_ELLIPSIS);
    return out;
}

herald_err
herald_acl_narrow (const herald_acl_user_t *user, const herald_str_t *prefixes,
                   size_t count, herald_str_t **out, size_t *out_count,
                   herald_error_t *err)
{
    assert (user);
    assert (prefixes || count == 0);
    assert (out && out_count);
    *out = NULL;
    *out_count = 0;
    if (!user->read_all && !user->scope)
        return herald_error_set (err, HERALD_ERR_UNAUTHORIZED, NULL,
                                 "user %s may not read", user->name);
    const herald_acl_prefixes_t *read = user->read_all ? NULL : &user->scope->read;
    size_t room = user->read_all || count ? count : read->count;
    if (read && count)
        room += read->count;
    herald_str_t *result = calloc (room ? room : 1, sizeof (herald_str_t));
    bool *taken = read ? calloc (read->count + 1, sizeof (bool)) : NULL;
    if (!result || (read && !taken)) {
        free (result);
        free (taken);
        return herald_error_set (err, HERALD_ERR_NOMEM, NULL, "out of memory");
    }
    size_t used = 0;
    if (user->read_all) {
        if (count)
            memcpy (result, prefixes, count * sizeof (herald_str_t));
        used = count;
    }
    else
    if (count == 0) {
        memcpy (result, read->prefixes, read->count * sizeof (herald_str_t));
        used = read->count;
    }
    else {
        const herald_acl_node_t *trie = ((const herald_acl_scope_entry_t *) user->scope)->trie;
        for (size_t index = 0; index < count; index++) {
            const herald_str_t *wanted = &prefixes [index];
            //  the read prefixes wanted covers: a run of the sorted set
            size_t low = 0, high = read->count;
            while (low < high) {
                size_t middle = (low + high) / 2;
                if (herald_acl_str_compare (&read->prefixes [middle], wanted) < 0)
                    low = middle + 1;
                else
                    high = middle;
            }
            bool covers = false;
            for (; low < read->count
                && herald_acl_starts_with (read->prefixes [low].ptr, read->prefixes [low].len,
                                           wanted);
                low++)
                covers = taken [low] = true;
            if (covers)
                continue;
            if (herald_acl_trie_match (trie, wanted->ptr, wanted->len, true))
                result [used++] = *wanted;
            else {
                char shown [400];
                free (result);
                free (taken);
                return herald_error_set (err, HERALD_ERR_UNAUTHORIZED, NULL,
                                         "prefix %s is outside your scope %s",
                                         s_shown (wanted->ptr, wanted->len, shown,
                                                  sizeof (shown)), user->scope->name);
            }
        }
        for (size_t index = 0; index < read->count; index++)
            if (taken [index])
                result [used++] = read->prefixes [index];
        used = herald_acl_normalise (result, used);
    }
    free (taken);
    *out = result;
    *out_count = used;
    return HERALD_OK;
}


//  --------------------------------------------------------------------------
//  Printing

//  A word as the file takes it back: quoted when it must be.
static void
s_print_word (FILE *out, const char *word, size_t len)
{
    //  control bytes too: a \r at the end of a line would be read as CRLF
    bool quote = len == 0 || word [0] == '#' || (len == 1 && word [0] == '*');
    for (size_t index = 0; index < len; index++)
        quote |= (uint8_t) word [index] <= ' ' || word [index] == 0x7f || word [index] == '"';
    if (!quote) {
        fwrite (word, 1, len, out);
        return;
    }
    fputc ('"', out);
    for (size_t index = 0; index < len; index++) {
        if (word [index] == '"' || word [index] == '\\')
            fputc ('\\', out);
        fputc (word [index], out);
    }
    fputc ('"', out);
}

static void
s_print_prefixes (FILE *out, const char *key, const herald_acl_prefixes_t *set)
{
    fprintf (out, "%-8s=", key);
    if (set->all)
        fputs (" *", out);
    for (size_t index = 0; index < set->count; index++) {
        fputc (' ', out);
        s_print_word (out, set->prefixes [index].ptr, set->prefixes [index].len);
    }
    fputc ('\n', out);
}

static void
s_print_keys (FILE *out, const herald_acl_key_t *keys, size_t count)
{
    for (size_t index = 0; index < count; index++) {
        fprintf (out, "%-8s= ", "key");
        s_print_word (out, keys [index].z85, 40);
        int64_t until = keys [index].until_ns;
        if (until) {
            time_t seconds = (time_t) (until / 1000000000);
            struct tm tm;
            gmtime_r (&seconds, &tm);
            char text [64];
            if (until % (86400LL * 1000000000) == 0)
                strftime (text, sizeof (text), "%Y-%m-%d", &tm);
            else {
                size_t used = strftime (text, sizeof (text), "%Y-%m-%dT%H:%M:%S", &tm);
                if (until % 1000000000)
                    snprintf (text + used, sizeof (text) - used, ".%09" PRId64 "Z",
                              until % 1000000000);
                else
                    snprintf (text + used, sizeof (text) - used, "Z");
            }
            fprintf (out, " until %s", text);
            struct timespec now;
            clock_gettime (CLOCK_REALTIME, &now);
            if (herald_acl_key_expired (&keys [index],
                                        (int64_t) now.tv_sec * 1000000000 + now.tv_nsec))
                fputs ("   # expired: refused", out);
        }
        fputc ('\n', out);
    }
}

//  bytes in the largest unit it is a whole number of.
static void
s_print_bytes (FILE *out, uint64_t bytes)
{
    static const char *units [] = { "B", "KiB", "MiB", "GiB" };
    int unit = 0;
    while (unit < 3 && bytes % 1024 == 0) {
        bytes /= 1024;
        unit++;
    }
    fprintf (out, "%" PRIu64 " %s", bytes, units [unit]);
}

static void
s_print_user (FILE *out, const herald_acl_user_t *user)
{
    fprintf (out, "\n[user %s]\n", user->name);
    s_print_keys (out, user->keys, user->key_count);
    if (user->read_all)
        fprintf (out, "%-8s= *\n", "read");
    if (user->scope)
        fprintf (out, "%-8s= %s\n", "scope", user->scope->name);
    if (user->publish.all || user->publish.count)
        s_print_prefixes (out, "publish", &user->publish);
    if (user->admin) {
        fprintf (out, "%-8s=", "admin");
        if (user->admin == HERALD_ACL_ADMIN_ALL)
            fputs (" *", out);
        else
            //  Every named grant (the table ends with "*", all of them)
            for (size_t grant = 0; grant < HERALD_ACL_GRANTS; grant++)
                if (herald_acl_grants [grant].bit != HERALD_ACL_ADMIN_ALL
                &&  (user->admin & herald_acl_grants [grant].bit))
                    fprintf (out, " %s", herald_acl_grants [grant].name);
        fputc ('\n', out);
    }
    if (user->rate) {
        fprintf (out, "%-8s= %" PRIu64 "/s", "rate", user->rate);
        if (user->rate_burst != user->rate)
            fprintf (out, " burst %" PRIu64, user->rate_burst);
        fputc ('\n', out);
    }
    if (user->bytes) {
        fprintf (out, "%-8s= ", "bytes");
        s_print_bytes (out, user->bytes);
        fputs ("/s", out);
        if (user->bytes_burst != user->bytes) {
            fputs (" burst ", out);
            s_print_bytes (out, user->bytes_burst);
        }
        fputc ('\n', out);
    }
    if (user->streams)
        fprintf (out, "%-8s= %zu\n", "streams", user->streams);
    if (user->replay)
        fprintf (out, "%-8s= %" PRIu64 "/s\n", "replay", user->replay);
}

void
herald_acl_print (const herald_acl_t *self, FILE *out)
{
    assert (self);
    assert (out);
    fprintf (out, "# acl_version %s: %zu scope%s, %zu user%s, %zu peer%s\n"
                  "# roles folded into their users; prefixes sorted, covered ones dropped\n",
             self->version, self->scope_count, self->scope_count == 1 ? "" : "s",
             self->user_count, self->user_count == 1 ? "" : "s",
             self->peer_count, self->peer_count == 1 ? "" : "s");
    for (size_t index = 0; index < self->scope_count; index++) {
        const herald_acl_scope_t *scope = &self->scopes [index].pub;
        fprintf (out, "\n[scope %s]\n", scope->name);
        s_print_prefixes (out, "read", &scope->read);
        fprintf (out, "%-8s= %s\n", "fanout", scope->fanout);
    }
    for (size_t index = 0; index < self->user_count; index++)
        s_print_user (out, &self->users [index].pub);
    for (size_t index = 0; index < self->peer_count; index++) {
        fprintf (out, "\n[peer %s]\n", self->peers [index].name);
        s_print_keys (out, self->peers [index].keys, self->peers [index].key_count);
    }
}
