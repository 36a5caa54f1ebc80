/*  =========================================================================
    herald_acl - who may connect, publish, read and administer (issue 14)

    The ACL file (docs/security.md, "The ACL file") read into an immutable
    table.  See herald_acl.h for what the table answers.

    DESIGN
    Parsing is two passes.  The first reads the file line by line into
    sections (scope, role, user, peer), checking every line on its own: a
    key known to its kind of section, its value's syntax, a prefix valid as
    the start of a topic.  The second resolves what lines refer to (a
    user's roles and scope, defined anywhere in the file), folds each
    user's roles into it, checks what needs the whole file (one read view
    per user, one scope per endpoint, every key once) and builds the table.
    Either pass stops at the first error, "PATH:LINE: key: why", the line
    being the one to edit: for a role or scope that is not defined, the
    line naming it; for a key listed twice, its second line.

    A line's value is split into words at spaces and tabs.  `#` starts a
    comment only at the start of a line or after whitespace, because Z85
    keys hold `#`; a word that holds whitespace, starts with `#` or is a
    literal `*` is quoted ("..." with \" and \\ as the only escapes).

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
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <sodium.h>
#include <zmq.h>
#include "herald_acl.h"
#include "herald_text.h"

#define S_FILE_MAX      (16 * 1024 * 1024)  //  a bigger ACL file is a mistake
#define S_STREAMS_MAX   1000000
#define S_WHY_MAX       512

//  --------------------------------------------------------------------------
//  The trie

typedef struct _s_node_t {
    uint64_t bits;                  //  the sets (scope bits, or 1) ending here
    size_t count;
    uint8_t *bytes;                 //  sorted
    struct _s_node_t **kids;
} s_node_t;

static void
s_node_destroy (s_node_t *node)
{
    if (!node)
        return;
    for (size_t index = 0; index < node->count; index++)
        s_node_destroy (node->kids [index]);
    free (node->bytes);
    free (node->kids);
    free (node);
}

//  The child of node for byte, or the index where it would be inserted.
static s_node_t *
s_node_child (const s_node_t *node, uint8_t byte, size_t *where)
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
static bool
s_trie_add (s_node_t **root, const char *prefix, size_t len, uint64_t bits)
{
    if (!*root && !(*root = calloc (1, sizeof (s_node_t))))
        return false;
    s_node_t *node = *root;
    for (size_t index = 0; index < len; index++) {
        size_t where = 0;
        s_node_t *kid = s_node_child (node, (uint8_t) prefix [index], &where);
        if (!kid) {
            uint8_t *bytes = realloc (node->bytes, node->count + 1);
            if (bytes)
                node->bytes = bytes;
            s_node_t **kids = realloc (node->kids, (node->count + 1) * sizeof (*kids));
            if (kids)
                node->kids = kids;
            if (!bytes || !kids || !(kid = calloc (1, sizeof (s_node_t))))
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
static uint64_t
s_trie_match (const s_node_t *node, const char *topic, size_t len, bool first)
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

typedef struct {
    herald_acl_scope_t pub;         //  first: the caller's pointer is ours
    s_node_t *trie;                 //  read prefixes, bits 1
} s_scope_t;

typedef struct {
    herald_acl_user_t pub;          //  first: the caller's pointer is ours
    s_node_t *publish;              //  NULL when publish.all or nothing
} s_user_t;

typedef struct {
    uint8_t key [HERALD_ACL_KEY_BYTES];
    bool peer;
    size_t owner;                   //  index in users or peers
    size_t which;                   //  0 or 1: which of the owner's keys
    unsigned line;                  //  while parsing: where it was written
} s_keyref_t;

struct _herald_acl_t {
    char version [HERALD_ACL_VERSION_LEN + 1];
    s_scope_t *scopes;              //  file order: index = bit
    size_t scope_count;
    s_user_t *users;                //  by name
    size_t user_count;
    herald_acl_peer_t *peers;       //  by name
    size_t peer_count;
    s_keyref_t *keys;               //  by key
    size_t key_count;
    s_node_t *scope_trie;           //  every scope's read prefixes, bit = index
    char **strings;                 //  every prefix the table points into
    size_t string_count;
};

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
        s_node_destroy (self->scopes [index].trie);
    }
    for (size_t index = 0; index < self->user_count; index++) {
        s_prefixes_free (&self->users [index].pub.publish);
        s_node_destroy (self->users [index].publish);
    }
    for (size_t index = 0; index < self->string_count; index++)
        free (self->strings [index]);
    s_node_destroy (self->scope_trie);
    free (self->strings);
    free (self->scopes);
    free (self->users);
    free (self->peers);
    free (self->keys);
    free (self);
    *self_p = NULL;
}

//  Byte order of two strings, a prefix before what it is a prefix of.
static int
s_str_compare (const herald_str_t *a, const herald_str_t *b)
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
    return s_str_compare (a, b);
}

static bool
s_starts_with (const char *text, size_t len, const herald_str_t *prefix)
{
    return prefix->len <= len && memcmp (text, prefix->ptr, prefix->len) == 0;
}

//  Sort and drop the prefixes that a shorter one covers (duplicates too).
//  In sorted order every prefix a kept one covers comes right after it,
//  so comparing with the last kept one is enough.
static size_t
s_normalise (herald_str_t *prefixes, size_t count)
{
    if (count == 0)
        return 0;
    qsort (prefixes, count, sizeof (herald_str_t), s_str_qsort);
    size_t kept = 1;
    for (size_t index = 1; index < count; index++)
        if (!s_starts_with (prefixes [index].ptr, prefixes [index].len, &prefixes [kept - 1]))
            prefixes [kept++] = prefixes [index];
    return kept;
}


//  --------------------------------------------------------------------------
//  Parsing: the first pass

typedef enum { S_SCOPE, S_ROLE, S_USER, S_PEER } s_kind_t;
static const char *s_kinds [] = { "scope", "role", "user", "peer" };

typedef struct {
    char *ptr;                      //  owned: moved into the table, or freed
    size_t len;
    unsigned line;
} s_item_t;

typedef struct {
    s_item_t *items;
    size_t count;
    size_t capacity;
} s_list_t;

typedef struct {
    unsigned line;                  //  0: not given
    uint64_t value;
    uint64_t burst;
} s_limit_t;

typedef struct {
    s_kind_t kind;
    char name [HERALD_ACL_NAME_MAX + 1];
    unsigned line;
    s_list_t publish;               //  role, user
    bool publish_all;
    s_list_t read;                  //  scope
    unsigned read_all;              //  role, user: the line of `read = *`
    char *fanout;                   //  scope
    unsigned fanout_line;
    herald_acl_key_t keys [HERALD_ACL_MAX_KEYS];    //  user, peer
    unsigned key_lines [HERALD_ACL_MAX_KEYS];
    size_t key_count;
    s_list_t roles;                 //  user: role names
    s_item_t scope;                 //  role, user: the scope's name
    unsigned admin;
    s_limit_t rate, bytes, streams, replay;
} s_section_t;

typedef struct {
    char *ptr;
    size_t len;
    bool quoted;
} s_word_t;

typedef struct {
    const char *name;               //  the path, in errors
    herald_error_t *err;
    unsigned line;
    s_section_t *sections;
    size_t count;
    size_t capacity;
    s_word_t *words;                //  the current line's value
    size_t word_count;
    size_t word_capacity;
} s_parser_t;

//  "PATH:LINE: key: why" (no "key: " when key is empty), HERALD_ERR_INVALID.
static herald_err
s_fail (s_parser_t *p, unsigned line, const char *key, const char *format, ...)
    __attribute__ ((format (printf, 4, 5)));

static herald_err
s_fail (s_parser_t *p, unsigned line, const char *key, const char *format, ...)
{
    char why [S_WHY_MAX];
    va_list args;
    va_start (args, format);
    herald_text_vformat (why, sizeof (why), format, args);
    va_end (args);
    herald_error_set (p->err, HERALD_ERR_INVALID, NULL, "%s:%u: %s%s%s", p->name, line,
                      key, *key ? ": " : "", why);
    if (p->err)
        snprintf (p->err->field, sizeof (p->err->field), "%s", key);
    return HERALD_ERR_INVALID;
}

static herald_err
s_nomem (s_parser_t *p)
{
    return herald_error_set (p->err, HERALD_ERR_NOMEM, NULL, "%s: out of memory", p->name);
}

//  Make room for one more element in *array.
static bool
s_grow (void **array, size_t *capacity, size_t count, size_t size)
{
    if (count < *capacity)
        return true;
    size_t wanted = *capacity ? *capacity * 2 : 8;
    void *grown = realloc (*array, wanted * size);
    if (!grown)
        return false;
    *array = grown;
    *capacity = wanted;
    return true;
}

static bool
s_list_add (s_list_t *list, const char *ptr, size_t len, unsigned line)
{
    char *copy = malloc (len + 1);
    if (!copy
    ||  !s_grow ((void **) &list->items, &list->capacity, list->count, sizeof (s_item_t))) {
        free (copy);
        return false;
    }
    memcpy (copy, ptr, len);
    copy [len] = 0;
    list->items [list->count++] = (s_item_t) { copy, len, line };
    return true;
}

static void
s_list_free (s_list_t *list)
{
    for (size_t index = 0; index < list->count; index++)
        free (list->items [index].ptr);
    free (list->items);
    *list = (s_list_t) { NULL, 0, 0 };
}

static void
s_parser_free (s_parser_t *p)
{
    for (size_t index = 0; index < p->count; index++) {
        s_section_t *section = &p->sections [index];
        s_list_free (&section->publish);
        s_list_free (&section->read);
        s_list_free (&section->roles);
        free (section->fanout);
        free (section->scope.ptr);
    }
    free (p->sections);
    free (p->words);
}

static bool
s_name_valid (const char *name, size_t len)
{
    if (len < 1 || len > HERALD_ACL_NAME_MAX)
        return false;
    for (size_t index = 0; index < len; index++)
        if (!strchr ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-",
                     name [index]) || !name [index])
            return false;
    return true;
}

#define S_NAME_RULE "1-64 characters of A-Z a-z 0-9 . _ -"

//  Split the value at cursor into p->words, in place (quotes removed).
static herald_err
s_split (s_parser_t *p, char *cursor, const char *key)
{
    p->word_count = 0;
    while (true) {
        bool space = false;
        while (*cursor == ' ' || *cursor == '\t') {
            cursor++;
            space = true;
        }
        if (*cursor == 0 || (*cursor == '#' && space))
            return HERALD_OK;
        if (!s_grow ((void **) &p->words, &p->word_capacity, p->word_count, sizeof (s_word_t)))
            return s_nomem (p);
        s_word_t *word = &p->words [p->word_count++];
        if (*cursor == '"') {
            char *start = ++cursor, *out = cursor;
            while (*cursor && *cursor != '"') {
                if (*cursor == '\\' && (cursor [1] == '"' || cursor [1] == '\\'))
                    cursor++;
                *out++ = *cursor++;
            }
            if (*cursor != '"')
                return s_fail (p, p->line, key, "a quote is not closed");
            cursor++;
            if (*cursor && *cursor != ' ' && *cursor != '\t')
                return s_fail (p, p->line, key, "a closing quote must be followed by a space");
            *word = (s_word_t) { start, (size_t) (out - start), true };
        }
        else {
            char *start = cursor;
            while (*cursor && *cursor != ' ' && *cursor != '\t')
                if (*cursor++ == '"')
                    return s_fail (p, p->line, key, "a quote inside a word: quote the whole "
                                                    "word (\"...\")");
            *word = (s_word_t) { start, (size_t) (cursor - start), false };
        }
    }
}

//  `[kind name]`; opens a new section.
static herald_err
s_section_open (s_parser_t *p, char *cursor)
{
    char *start = ++cursor;
    while (*cursor && *cursor != ']')
        cursor++;
    if (*cursor != ']')
        return s_fail (p, p->line, "", "a section header needs its ']': [user NAME], [role NAME], "
                                       "[scope NAME] or [peer NAME]");
    *cursor++ = 0;
    while (*cursor == ' ' || *cursor == '\t')
        cursor++;
    if (*cursor && !(*cursor == '#' && cursor [-1] != ']'))
        return s_fail (p, p->line, "", "unexpected text after ']': '%s'", cursor);
    char *kind = start;
    while (*kind == ' ' || *kind == '\t')
        kind++;
    char *name = kind;
    while (*name && *name != ' ' && *name != '\t')
        name++;
    size_t kind_len = name - kind;
    while (*name == ' ' || *name == '\t')
        name++;
    size_t name_len = strcspn (name, " \t");
    if (name [name_len + strspn (name + name_len, " \t")])
        return s_fail (p, p->line, "", "a section header is [KIND NAME], found [%s]", start);
    int found = -1;
    for (int index = 0; index < 4; index++)
        if (strlen (s_kinds [index]) == kind_len && memcmp (kind, s_kinds [index], kind_len) == 0)
            found = index;
    if (found < 0)
        return s_fail (p, p->line, "", "unknown section [%.*s]: [user NAME], [role NAME], "
                                       "[scope NAME] or [peer NAME]", (int) kind_len, kind);
    if (name_len == 0)
        return s_fail (p, p->line, "", "[%s] needs a name: [%s NAME]", s_kinds [found],
                       s_kinds [found]);
    if (!s_name_valid (name, name_len))
        return s_fail (p, p->line, "", "%s name '%.*s' is not valid: " S_NAME_RULE,
                       s_kinds [found], (int) name_len, name);
    for (size_t index = 0; index < p->count; index++)
        if (p->sections [index].kind == (s_kind_t) found
        &&  strlen (p->sections [index].name) == name_len
        &&  memcmp (p->sections [index].name, name, name_len) == 0)
            return s_fail (p, p->line, "", "%s '%.*s' is already defined at line %u",
                           s_kinds [found], (int) name_len, name, p->sections [index].line);
    if (found == S_SCOPE) {
        size_t scopes = 0;
        for (size_t index = 0; index < p->count; index++)
            scopes += p->sections [index].kind == S_SCOPE;
        if (scopes == HERALD_ACL_MAX_SCOPES)
            return s_fail (p, p->line, "", "more than %d scopes", HERALD_ACL_MAX_SCOPES);
    }
    if (!s_grow ((void **) &p->sections, &p->capacity, p->count, sizeof (s_section_t)))
        return s_nomem (p);
    s_section_t *section = &p->sections [p->count++];
    memset (section, 0, sizeof (*section));
    section->kind = (s_kind_t) found;
    section->line = p->line;
    memcpy (section->name, name, name_len);
    return HERALD_OK;
}

//  A list of prefixes; `*` (unquoted) when allowed.
static herald_err
s_prefixes (s_parser_t *p, const char *key, s_list_t *list, bool *all)
{
    if (p->word_count == 0)
        return s_fail (p, p->line, key, all ? "give prefixes, or * for every topic"
                                            : "give prefixes");
    for (size_t index = 0; index < p->word_count; index++) {
        const s_word_t *word = &p->words [index];
        if (!word->quoted && word->len == 1 && word->ptr [0] == '*') {
            if (!all)
                return s_fail (p, p->line, key, "a scope cannot read every topic (*): give "
                                                "its users read = * instead");
            *all = true;
            continue;
        }
        if (word->len == 0)
            return s_fail (p, p->line, key, "an empty prefix: write * for every topic");
        if (word->ptr [0] == '$')
            return s_fail (p, p->line, key, "prefix '%.*s' starts with $, which no topic does",
                           (int) word->len, word->ptr);
        if (!herald_topic_valid (word->ptr, word->len))
            return s_fail (p, p->line, key, "prefix '%.*s' is not the start of a topic: "
                                            "1-255 bytes of UTF-8", (int) word->len, word->ptr);
        if (!s_list_add (list, word->ptr, word->len, p->line))
            return s_nomem (p);
    }
    return HERALD_OK;
}

//  The one word of a value, NUL-terminated in place.
static herald_err
s_one_word (s_parser_t *p, const char *key, const char *what, char **word)
{
    if (p->word_count != 1)
        return s_fail (p, p->line, key, "give %s", what);
    p->words [0].ptr [p->words [0].len] = 0;
    *word = p->words [0].ptr;
    return HERALD_OK;
}

//  n digits at text, as a number.
static bool
s_digits (const char *text, int n, int *value)
{
    *value = 0;
    for (int index = 0; index < n; index++) {
        if (text [index] < '0' || text [index] > '9')
            return false;
        *value = *value * 10 + (text [index] - '0');
    }
    return true;
}

//  Days since 1970-01-01 of a civil date (proleptic Gregorian).
static int64_t
s_days (int year, int month, int day)
{
    year -= month <= 2;
    int64_t era = year / 400;
    int64_t of_era = year - era * 400;
    int64_t of_year = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
    int64_t of_cycle = of_era * 365 + of_era / 4 - of_era / 100 + of_year;
    return era * 146097 + of_cycle - 719468;
}

//  YYYY-MM-DD (00:00 UTC that day) or RFC 3339 (YYYY-MM-DDTHH:MM:SS[.F]
//  then Z or +HH:MM / -HH:MM) as Unix ns, after 1970 and before 2200.
static bool
s_until (const char *text, int64_t *ns)
{
    int year, month, day, hour = 0, minute = 0, second = 0, offset = 0;
    int64_t fraction = 0;
    if (!s_digits (text, 4, &year) || text [4] != '-' || !s_digits (text + 5, 2, &month)
    ||  text [7] != '-' || !s_digits (text + 8, 2, &day))
        return false;
    const char *cursor = text + 10;
    if (*cursor == 'T' || *cursor == 't') {
        if (!s_digits (cursor + 1, 2, &hour) || cursor [3] != ':'
        ||  !s_digits (cursor + 4, 2, &minute) || cursor [6] != ':'
        ||  !s_digits (cursor + 7, 2, &second))
            return false;
        cursor += 9;
        if (*cursor == '.') {
            int digits = 0;
            for (cursor++; *cursor >= '0' && *cursor <= '9'; cursor++, digits++)
                if (digits < 9)
                    fraction = fraction * 10 + (*cursor - '0');
            if (digits == 0)
                return false;
            for (; digits < 9; digits++)
                fraction *= 10;
        }
        if (*cursor == 'Z' || *cursor == 'z')
            cursor++;
        else
        if (*cursor == '+' || *cursor == '-') {
            int hours, minutes;
            if (!s_digits (cursor + 1, 2, &hours) || cursor [3] != ':'
            ||  !s_digits (cursor + 4, 2, &minutes) || hours > 23 || minutes > 59)
                return false;
            offset = (*cursor == '-' ? -1 : 1) * (hours * 60 + minutes);
            cursor += 6;
        }
        else
            return false;
    }
    static const int month_days [] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (*cursor || year < 1970 || year >= 2200 || month < 1 || month > 12 || day < 1
    ||  day > month_days [month - 1] || (month == 2 && day == 29 && !leap)
    ||  hour > 23 || minute > 59 || second > 59)
        return false;
    int64_t seconds = s_days (year, month, day) * 86400 + hour * 3600 + minute * 60 + second
                    - offset * 60;
    if (seconds <= 0)
        return false;
    *ns = seconds * 1000000000 + fraction;
    return true;
}

//  `key = Z85 [until DATE]`
static herald_err
s_key (s_parser_t *p, s_section_t *section)
{
    const char *rule = "give the public key (40 characters of Z85) and optionally "
                       "'until YYYY-MM-DD' or 'until' an RFC 3339 time";
    if (p->word_count != 1 && !(p->word_count == 3 && !p->words [1].quoted
                                && p->words [1].len == 5
                                && memcmp (p->words [1].ptr, "until", 5) == 0))
        return s_fail (p, p->line, "key", "%s", rule);
    if (section->key_count == HERALD_ACL_MAX_KEYS)
        return s_fail (p, p->line, "key", "a %s has at most two keys (one more during a rotation)",
                       s_kinds [section->kind]);
    herald_acl_key_t *key = &section->keys [section->key_count];
    const s_word_t *word = &p->words [0];
    char z85 [41] = "";
    if (word->len == 40)
        memcpy (z85, word->ptr, 40);
    char again [41];
    if (word->len != 40 || !zmq_z85_decode (key->key, z85)
    ||  !zmq_z85_encode (again, key->key, HERALD_ACL_KEY_BYTES) || strcmp (again, z85) != 0)
        return s_fail (p, p->line, "key", "'%.*s' is not a public key: 40 characters of Z85 "
                                          "(herald keygen makes one)",
                       (int) (word->len > 60 ? 60 : word->len), word->ptr);
    memcpy (key->z85, z85, sizeof (key->z85));
    key->until_ns = 0;
    if (p->word_count == 3) {
        char date [64] = "";
        if (p->words [2].len < sizeof (date))
            memcpy (date, p->words [2].ptr, p->words [2].len);
        if (p->words [2].len >= sizeof (date) || !s_until (date, &key->until_ns))
            return s_fail (p, p->line, "key", "until '%.*s' is not a date: YYYY-MM-DD (00:00 "
                                              "UTC) or RFC 3339 (2027-01-31T12:00:00Z)",
                           (int) (p->words [2].len > 60 ? 60 : p->words [2].len),
                           p->words [2].ptr);
    }
    section->key_lines [section->key_count++] = p->line;
    return HERALD_OK;
}

//  A decimal number of at least 1 at *cursor; advances it.
static bool
s_number (const char **cursor, uint64_t *value)
{
    const char *text = *cursor;
    if (*text < '0' || *text > '9')
        return false;
    *value = 0;
    for (; *text >= '0' && *text <= '9'; text++) {
        if (*value > (UINT64_MAX - (uint64_t) (*text - '0')) / 10)
            return false;
        *value = *value * 10 + (uint64_t) (*text - '0');
    }
    *cursor = text;
    return *value > 0;
}

static void
s_spaces (const char **cursor)
{
    while (**cursor == ' ')
        (*cursor)++;
}

static bool
s_literal (const char **cursor, const char *literal)
{
    s_spaces (cursor);
    size_t len = strlen (literal);
    if (strncmp (*cursor, literal, len) != 0)
        return false;
    *cursor += len;
    return true;
}

//  A byte unit, as a multiplier; 0 when cursor holds none.
static uint64_t
s_unit (const char **cursor)
{
    static const char *units [] = { "GiB", "MiB", "KiB", "B" };
    for (int index = 0; index < 4; index++)
        if (s_literal (cursor, units [index]))
            return 1ULL << (10 * (3 - index));
    return 0;
}

//  rate, bytes, replay, streams: the words joined by single spaces, then
//  read by a small scanner.
static herald_err
s_limit (s_parser_t *p, const char *key, s_limit_t *limit)
{
    if (limit->line)
        return s_fail (p, p->line, key, "given twice in this section (line %u)", limit->line);
    char text [256];
    size_t used = 0;
    for (size_t index = 0; index < p->word_count; index++) {
        if (p->words [index].quoted || used + p->words [index].len + 2 > sizeof (text))
            used = sizeof (text);
        else {
            memcpy (text + used, p->words [index].ptr, p->words [index].len);
            used += p->words [index].len;
            text [used++] = ' ';
        }
    }
    const char *rule = strcmp (key, "rate") == 0 ? "N/s [burst M] (events per second)"
                     : strcmp (key, "bytes") == 0 ? "N MiB/s [burst M MiB] (or B, KiB, GiB)"
                     : strcmp (key, "replay") == 0 ? "N/s (events per second)"
                     : "N (streams at once)";
    if (used == 0 || used == sizeof (text))
        return s_fail (p, p->line, key, "expected %s", rule);
    text [used - 1] = 0;
    const char *cursor = text;
    bool ok = s_number (&cursor, &limit->value);
    uint64_t unit = 1;
    if (ok && strcmp (key, "bytes") == 0)
        ok = (unit = s_unit (&cursor)) != 0 && limit->value <= UINT64_MAX / unit;
    if (ok && strcmp (key, "streams") != 0)
        ok = s_literal (&cursor, "/s");
    limit->value *= unit;
    limit->burst = limit->value;
    if (ok && (strcmp (key, "rate") == 0 || strcmp (key, "bytes") == 0)
    &&  s_literal (&cursor, "burst")) {
        s_spaces (&cursor);
        ok = s_number (&cursor, &limit->burst);
        uint64_t burst_unit = unit;
        if (ok && strcmp (key, "bytes") == 0) {
            const char *before = cursor;
            if (!(burst_unit = s_unit (&cursor))) {
                cursor = before;
                burst_unit = unit;
            }
        }
        ok = ok && limit->burst <= UINT64_MAX / burst_unit;
        limit->burst *= burst_unit;
    }
    s_spaces (&cursor);
    if (!ok || *cursor)
        return s_fail (p, p->line, key, "expected %s", rule);
    if (strcmp (key, "streams") == 0 && limit->value > S_STREAMS_MAX)
        return s_fail (p, p->line, key, "at most %d", S_STREAMS_MAX);
    limit->line = p->line;
    return HERALD_OK;
}

static const struct {
    const char *name;
    unsigned bit;
} s_grants [] = {
    { "status", HERALD_ACL_ADMIN_STATUS }, { "acl", HERALD_ACL_ADMIN_ACL },
    { "cluster", HERALD_ACL_ADMIN_CLUSTER }, { "trim", HERALD_ACL_ADMIN_TRIM },
    { "backup", HERALD_ACL_ADMIN_BACKUP }, { "*", HERALD_ACL_ADMIN_ALL }
};

static herald_err
s_admin (s_parser_t *p, s_section_t *section)
{
    if (p->word_count == 0)
        return s_fail (p, p->line, "admin", "give grants: status acl cluster trim backup, or *");
    for (size_t index = 0; index < p->word_count; index++) {
        const s_word_t *word = &p->words [index];
        unsigned bit = 0;
        for (size_t grant = 0; grant < sizeof (s_grants) / sizeof (s_grants [0]); grant++)
            if (!word->quoted && strlen (s_grants [grant].name) == word->len
            &&  memcmp (s_grants [grant].name, word->ptr, word->len) == 0)
                bit = s_grants [grant].bit;
        if (!bit)
            return s_fail (p, p->line, "admin", "unknown grant '%.*s': status acl cluster trim "
                                                "backup, or *",
                           (int) (word->len > 60 ? 60 : word->len), word->ptr);
        section->admin |= bit;
    }
    return HERALD_OK;
}

//  A name (of a role or scope) that the second pass looks up.
static herald_err
s_name_ref (s_parser_t *p, const char *key, const s_word_t *word, s_list_t *list)
{
    if (!s_name_valid (word->ptr, word->len))
        return s_fail (p, p->line, key, "'%.*s' is not a valid name: " S_NAME_RULE,
                       (int) (word->len > 70 ? 70 : word->len), word->ptr);
    if (!s_list_add (list, word->ptr, word->len, p->line))
        return s_nomem (p);
    return HERALD_OK;
}

//  Which keys each kind of section takes.
static const char *s_section_keys [] = {
    "read fanout",
    "publish read scope admin rate bytes streams replay",
    "key role publish read scope admin rate bytes streams replay",
    "key"
};

static bool
s_takes (s_kind_t kind, const char *key)
{
    const char *keys = s_section_keys [kind];
    size_t len = strlen (key);
    for (const char *at = strstr (keys, key); at; at = strstr (at + 1, key))
        if ((at == keys || at [-1] == ' ') && (at [len] == 0 || at [len] == ' '))
            return true;
    return false;
}

//  One `key = value` line of section.
static herald_err
s_entry (s_parser_t *p, s_section_t *section, const char *key)
{
    if (!s_takes (section->kind, key))
        return s_fail (p, p->line, key, "not a key of [%s] sections (%s)",
                       s_kinds [section->kind], s_section_keys [section->kind]);
    if (strcmp (key, "key") == 0)
        return s_key (p, section);
    if (strcmp (key, "publish") == 0)
        return s_prefixes (p, key, &section->publish, &section->publish_all);
    if (strcmp (key, "admin") == 0)
        return s_admin (p, section);
    if (strcmp (key, "rate") == 0)
        return s_limit (p, key, &section->rate);
    if (strcmp (key, "bytes") == 0)
        return s_limit (p, key, &section->bytes);
    if (strcmp (key, "streams") == 0)
        return s_limit (p, key, &section->streams);
    if (strcmp (key, "replay") == 0)
        return s_limit (p, key, &section->replay);
    if (strcmp (key, "read") == 0) {
        if (section->kind == S_SCOPE)
            return s_prefixes (p, key, &section->read, NULL);
        if (p->word_count != 1 || p->words [0].quoted || p->words [0].len != 1
        ||  p->words [0].ptr [0] != '*')
            return s_fail (p, p->line, key, "a %s reads every topic (read = *) or through a "
                                            "scope (scope = NAME); prefixes to read belong in "
                                            "a [scope] section", s_kinds [section->kind]);
        if (section->read_all)
            return s_fail (p, p->line, key, "given twice in this section (line %u)",
                           section->read_all);
        section->read_all = p->line;
        return HERALD_OK;
    }
    if (strcmp (key, "role") == 0) {
        if (p->word_count == 0)
            return s_fail (p, p->line, key, "give role names");
        for (size_t index = 0; index < p->word_count; index++) {
            herald_err rc = s_name_ref (p, key, &p->words [index], &section->roles);
            if (rc)
                return rc;
        }
        return HERALD_OK;
    }
    char *word = NULL;
    herald_err rc;
    if (strcmp (key, "scope") == 0) {
        if (section->scope.ptr)
            return s_fail (p, p->line, key, "given twice in this section (line %u): a %s reads "
                                            "through one scope", section->scope.line,
                           s_kinds [section->kind]);
        if ((rc = s_one_word (p, key, "one scope name", &word)))
            return rc;
        s_list_t one = { NULL, 0, 0 };
        if ((rc = s_name_ref (p, key, &p->words [0], &one)))
            return rc;
        section->scope = one.items [0];
        free (one.items);
        return HERALD_OK;
    }
    assert (strcmp (key, "fanout") == 0);
    if (section->fanout)
        return s_fail (p, p->line, key, "given twice in this section (line %u)",
                       section->fanout_line);
    if ((rc = s_one_word (p, key, "one endpoint: tcp://HOST:PORT", &word)))
        return rc;
    //  one unquoted word of printable ASCII, so that it prints back as it is
    bool ok = !p->words [0].quoted;
    for (const char *at = word; *at && ok; at++)
        ok = *at > ' ' && *at < 0x7f;
    const char *port = strrchr (word, ':');
    if (ok && strncmp (word, "tcp://", 6) == 0 && port && port > word + 6 && port [1]) {
        char *end;
        errno = 0;
        unsigned long number = strtoul (port + 1, &end, 10);
        ok = !*end && port [1] >= '0' && port [1] <= '9' && number >= 1 && number <= 65535
          && !errno;
    }
    else
        ok = ok && strncmp (word, "ipc://", 6) == 0 && word [6];
    if (!ok)
        return s_fail (p, p->line, key, "'%s' is not an endpoint: tcp://HOST:PORT (PORT 1-65535)",
                       word);
    if (!(section->fanout = strdup (word)))
        return s_nomem (p);
    section->fanout_line = p->line;
    return HERALD_OK;
}

//  One line (NUL-terminated, without its newline).
static herald_err
s_line (s_parser_t *p, char *text)
{
    size_t len = strlen (text);
    if (len && text [len - 1] == '\r')
        text [--len] = 0;
    char *cursor = text;
    while (*cursor == ' ' || *cursor == '\t')
        cursor++;
    if (*cursor == 0 || *cursor == '#')
        return HERALD_OK;
    if (*cursor == '[')
        return s_section_open (p, cursor);
    char key [16];
    size_t key_len = 0;
    char *start = cursor;
    while ((*cursor >= 'a' && *cursor <= 'z') || *cursor == '_' || *cursor == '-')
        cursor++;
    key_len = cursor - start;
    while (*cursor == ' ' || *cursor == '\t')
        cursor++;
    if (key_len == 0 || *cursor != '=')
        return s_fail (p, p->line, "", "expected 'key = value' or '[kind NAME]', found '%.60s'",
                       start);
    if (key_len >= sizeof (key))
        return s_fail (p, p->line, "", "unknown key '%.*s'", (int) key_len, start);
    memcpy (key, start, key_len);
    key [key_len] = 0;
    if (p->count == 0)
        return s_fail (p, p->line, key, "outside any section: start one with [user NAME], "
                                        "[role NAME], [scope NAME] or [peer NAME]");
    herald_err rc = s_split (p, cursor + 1, key);
    if (rc)
        return rc;
    return s_entry (p, &p->sections [p->count - 1], key);
}


//  --------------------------------------------------------------------------
//  Parsing: the second pass

static s_section_t *
s_find (s_parser_t *p, s_kind_t kind, const char *name)
{
    for (size_t index = 0; index < p->count; index++)
        if (p->sections [index].kind == kind && strcmp (p->sections [index].name, name) == 0)
            return &p->sections [index];
    return NULL;
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
    if (!copy || !s_grow ((void **) &self->strings, capacity, self->string_count,
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
s_prefix_set (herald_acl_t *self, size_t *capacity, s_list_t **lists, size_t list_count,
              herald_acl_prefixes_t *set, s_node_t **trie)
{
    size_t total = 0;
    for (size_t list = 0; list < list_count; list++)
        total += lists [list]->count;
    set->prefixes = calloc (total ? total : 1, sizeof (herald_str_t));
    if (!set->prefixes)
        return false;
    for (size_t list = 0; list < list_count; list++)
        for (size_t index = 0; index < lists [list]->count; index++) {
            const s_item_t *item = &lists [list]->items [index];
            const char *copy = s_keep (self, capacity, item->ptr, item->len);
            if (!copy)
                return false;
            set->prefixes [set->count++] = (herald_str_t) { copy, item->len };
        }
    set->count = s_normalise (set->prefixes, set->count);
    for (size_t index = 0; trie && index < set->count; index++)
        if (!s_trie_add (trie, set->prefixes [index].ptr, set->prefixes [index].len, 1))
            return false;
    return true;
}

static int
s_section_by_name (const void *a, const void *b)
{
    return strcmp ((*(s_section_t * const *) a)->name, (*(s_section_t * const *) b)->name);
}

static int
s_keyref_compare (const void *a, const void *b)
{
    const s_keyref_t *x = a, *y = b;
    int order = memcmp (x->key, y->key, HERALD_ACL_KEY_BYTES);
    return order ? order : (x->line > y->line) - (x->line < y->line);
}

//  The scopes, checked and built in file order (index = bit).
static herald_err
s_build_scopes (s_parser_t *p, herald_acl_t *self, size_t *capacity)
{
    for (size_t index = 0; index < p->count; index++) {
        s_section_t *section = &p->sections [index];
        if (section->kind != S_SCOPE)
            continue;
        if (section->read.count == 0)
            return s_fail (p, section->line, "", "scope '%s' reads nothing: give read = "
                                                 "PREFIX ...", section->name);
        if (!section->fanout)
            return s_fail (p, section->line, "", "scope '%s' has no endpoint: give fanout = "
                                                 "tcp://HOST:PORT", section->name);
        for (size_t other = 0; other < self->scope_count; other++)
            if (s_same_endpoint (self->scopes [other].pub.fanout, section->fanout))
                return s_fail (p, section->fanout_line, "fanout", "%s is already the endpoint "
                                                                  "of scope '%s' (line %u)",
                               section->fanout, self->scopes [other].pub.name,
                               s_find (p, S_SCOPE, self->scopes [other].pub.name)->fanout_line);
        s_scope_t *scope = &self->scopes [self->scope_count];
        memcpy (scope->pub.name, section->name, sizeof (scope->pub.name));
        scope->pub.index = self->scope_count++;
        s_list_t *lists [] = { &section->read };
        if (!(scope->pub.fanout = strdup (section->fanout))
        ||  !s_prefix_set (self, capacity, lists, 1, &scope->pub.read, &scope->trie))
            return s_nomem (p);
        for (size_t prefix = 0; prefix < scope->pub.read.count; prefix++)
            if (!s_trie_add (&self->scope_trie, scope->pub.read.prefixes [prefix].ptr,
                             scope->pub.read.prefixes [prefix].len, 1ULL << scope->pub.index))
                return s_nomem (p);
    }
    return HERALD_OK;
}

//  One limit of a user: its own, or its roles' (which must agree).
static herald_err
s_user_limit (s_parser_t *p, size_t offset, const char *key, s_section_t *user,
              s_section_t **roles, uint64_t *value, uint64_t *burst)
{
    const s_limit_t *own = (const s_limit_t *) ((const char *) user + offset);
    const s_limit_t *chosen = own->line ? own : NULL;
    const char *from = NULL;
    for (size_t index = 0; !own->line && index < user->roles.count; index++) {
        const s_limit_t *limit = (const s_limit_t *) ((const char *) roles [index] + offset);
        if (!limit->line)
            continue;
        if (chosen && (chosen->value != limit->value || chosen->burst != limit->burst))
            return s_fail (p, user->roles.items [index].line, "role", "roles '%s' and '%s' "
                           "give user '%s' different %s limits: set %s on the user", from,
                           roles [index]->name, user->name, key, key);
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

//  The read view of a user, from itself and its roles: one at most.
static herald_err
s_user_view (s_parser_t *p, herald_acl_t *self, s_section_t *user, s_section_t **roles,
             herald_acl_user_t *out)
{
    const char *view = NULL;        //  "*" or a scope name
    const char *from = NULL;        //  "" for the user, or a role name
    for (size_t source = 0; source <= user->roles.count; source++) {
        s_section_t *section = source ? roles [source - 1] : user;
        unsigned line = source ? user->roles.items [source - 1].line : 0;
        for (int kind = 0; kind < 2; kind++) {
            const char *name = kind ? section->scope.ptr : (section->read_all ? "*" : NULL);
            if (!name)
                continue;
            if (!source)
                line = kind ? section->scope.line : section->read_all;
            if (view && strcmp (view, name) != 0)
                return s_fail (p, line, source ? "role" : kind ? "scope" : "read",
                               "user '%s' would read through %s%s%s (%s%s) and %s%s%s%s%s: a "
                               "user reads through one view, read = * or one scope",
                               user->name, *view == '*' ? "" : "scope '",
                               *view == '*' ? "read = *" : view, *view == '*' ? "" : "'",
                               *from ? "role " : "its own", from,
                               *name == '*' ? "" : "scope '", *name == '*' ? "read = *" : name,
                               *name == '*' ? "" : "'", source ? " of role " : "",
                               source ? section->name : "");
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
s_build_user (s_parser_t *p, herald_acl_t *self, size_t *capacity, s_section_t *section,
              s_user_t *user)
{
    herald_acl_user_t *out = &user->pub;
    memcpy (out->name, section->name, sizeof (out->name));
    if (section->key_count == 0)
        return s_fail (p, section->line, "", "user '%s' has no key: give key = Z85 "
                                             "(herald keygen makes one)", section->name);
    memcpy (out->keys, section->keys, sizeof (out->keys));
    out->key_count = section->key_count;
    s_section_t **roles = calloc (section->roles.count + 1, sizeof (s_section_t *));
    s_list_t **lists = calloc (section->roles.count + 1, sizeof (s_list_t *));
    herald_err rc = roles && lists ? HERALD_OK : s_nomem (p);
    bool all = section->publish_all;
    lists [0] = &section->publish;
    out->admin = section->admin;
    for (size_t index = 0; rc == HERALD_OK && index < section->roles.count; index++) {
        const s_item_t *item = &section->roles.items [index];
        if (!(roles [index] = s_find (p, S_ROLE, item->ptr)))
            rc = s_fail (p, item->line, "role", "'%s' is not defined", item->ptr);
        else {
            lists [index + 1] = &roles [index]->publish;
            all |= roles [index]->publish_all;
            out->admin |= roles [index]->admin;
        }
    }
    if (rc == HERALD_OK && section->scope.ptr && !s_find (p, S_SCOPE, section->scope.ptr))
        rc = s_fail (p, section->scope.line, "scope", "'%s' is not defined", section->scope.ptr);
    if (rc == HERALD_OK)
        rc = s_user_view (p, self, section, roles, out);
    uint64_t streams = 0;
    if (rc == HERALD_OK)
        rc = s_user_limit (p, offsetof (s_section_t, rate), "rate", section, roles,
                           &out->rate, &out->rate_burst);
    if (rc == HERALD_OK)
        rc = s_user_limit (p, offsetof (s_section_t, bytes), "bytes", section, roles,
                           &out->bytes, &out->bytes_burst);
    if (rc == HERALD_OK)
        rc = s_user_limit (p, offsetof (s_section_t, streams), "streams", section, roles,
                           &streams, NULL);
    if (rc == HERALD_OK)
        rc = s_user_limit (p, offsetof (s_section_t, replay), "replay", section, roles,
                           &out->replay, NULL);
    out->streams = (size_t) streams;
    if (rc == HERALD_OK && all)
        out->publish.all = true;
    else
    if (rc == HERALD_OK
    &&  !s_prefix_set (self, capacity, lists, section->roles.count + 1, &out->publish,
                       &user->publish))
        rc = s_nomem (p);
    free (roles);
    free (lists);
    return rc;
}

//  Every key once, users' and peers' together.
static herald_err
s_build_keys (s_parser_t *p, herald_acl_t *self, s_section_t **users, s_section_t **peers)
{
    size_t total = 0;
    for (size_t index = 0; index < self->user_count; index++)
        total += users [index]->key_count;
    for (size_t index = 0; index < self->peer_count; index++)
        total += peers [index]->key_count;
    if (!(self->keys = calloc (total ? total : 1, sizeof (s_keyref_t))))
        return s_nomem (p);
    for (int peer = 0; peer < 2; peer++)
        for (size_t index = 0; index < (peer ? self->peer_count : self->user_count); index++) {
            s_section_t *section = peer ? peers [index] : users [index];
            for (size_t which = 0; which < section->key_count; which++) {
                s_keyref_t *ref = &self->keys [self->key_count++];
                memcpy (ref->key, section->keys [which].key, HERALD_ACL_KEY_BYTES);
                ref->peer = peer;
                ref->owner = index;
                ref->which = which;
                ref->line = section->key_lines [which];
            }
        }
    qsort (self->keys, self->key_count, sizeof (s_keyref_t), s_keyref_compare);
    for (size_t index = 1; index < self->key_count; index++) {
        const s_keyref_t *first = &self->keys [index - 1], *again = &self->keys [index];
        if (memcmp (first->key, again->key, HERALD_ACL_KEY_BYTES) == 0)
            return s_fail (p, again->line, "key", "already the key of %s '%s' (line %u)",
                           first->peer ? "peer" : "user",
                           first->peer ? self->peers [first->owner].name
                                       : self->users [first->owner].pub.name, first->line);
    }
    return HERALD_OK;
}

//  The second pass: the table, or NULL with p->err filled.
static herald_acl_t *
s_build (s_parser_t *p, const void *bytes, size_t len)
{
    herald_acl_t *self = calloc (1, sizeof (herald_acl_t));
    size_t capacity = 0, users = 0, peers = 0;
    for (size_t index = 0; index < p->count; index++) {
        users += p->sections [index].kind == S_USER;
        peers += p->sections [index].kind == S_PEER;
    }
    s_section_t **user_sections = calloc (users + 1, sizeof (s_section_t *));
    s_section_t **peer_sections = calloc (peers + 1, sizeof (s_section_t *));
    herald_err rc = HERALD_OK;
    if (!self || !user_sections || !peer_sections
    ||  !(self->scopes = calloc (HERALD_ACL_MAX_SCOPES, sizeof (s_scope_t)))
    ||  !(self->users = calloc (users + 1, sizeof (s_user_t)))
    ||  !(self->peers = calloc (peers + 1, sizeof (herald_acl_peer_t))))
        rc = s_nomem (p);
    if (rc == HERALD_OK) {
        uint8_t digest [crypto_hash_sha256_BYTES];
        crypto_hash_sha256 (digest, bytes, len);
        for (size_t index = 0; index < HERALD_ACL_VERSION_LEN / 2; index++)
            snprintf (self->version + 2 * index, 3, "%02x", digest [index]);
        rc = s_build_scopes (p, self, &capacity);
    }
    for (size_t index = 0; rc == HERALD_OK && index < p->count; index++) {
        s_section_t *section = &p->sections [index];
        if (section->kind == S_ROLE && section->scope.ptr
        &&  !s_find (p, S_SCOPE, section->scope.ptr))
            rc = s_fail (p, section->scope.line, "scope", "'%s' is not defined",
                         section->scope.ptr);
        if (section->kind == S_PEER && section->key_count == 0)
            rc = s_fail (p, section->line, "", "peer '%s' has no key: give key = Z85",
                         section->name);
        if (section->kind == S_USER)
            user_sections [self->user_count++] = section;
        if (section->kind == S_PEER)
            peer_sections [self->peer_count++] = section;
    }
    if (rc == HERALD_OK) {
        qsort (user_sections, self->user_count, sizeof (s_section_t *), s_section_by_name);
        qsort (peer_sections, self->peer_count, sizeof (s_section_t *), s_section_by_name);
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
    s_parser_t p = { .name = name, .err = err };
    char *copy = malloc (len + 1);
    if (!copy) {
        s_nomem (&p);
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
            rc = s_fail (&p, p.line, "", "NUL byte in line");
        else
            rc = s_line (&p, line);
        line = stop + 1;
    }
    herald_acl_t *self = rc == HERALD_OK ? s_build (&p, text, len) : NULL;
    s_parser_free (&p);
    free (copy);
    return self;
}

herald_acl_t *
herald_acl_load (const char *path, herald_error_t *err)
{
    assert (path);
    int fd = open (path, O_RDONLY | O_CLOEXEC);
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


//  --------------------------------------------------------------------------
//  Lookups

const char *
herald_acl_version (const herald_acl_t *self)
{
    assert (self);
    return self->version;
}

//  The key's entry of the given kind, NULL when none.
static const s_keyref_t *
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

static bool
s_expired (const herald_acl_key_t *key, int64_t now_ns)
{
    return key->until_ns != 0 && now_ns >= key->until_ns;
}

const herald_acl_user_t *
herald_acl_user_by_key (const herald_acl_t *self, const uint8_t *key, int64_t now_ns,
                        const char **why, size_t *which)
{
    assert (self);
    assert (key);
    const s_keyref_t *ref = s_key_find (self, key, false);
    const herald_acl_user_t *user = ref ? &self->users [ref->owner].pub : NULL;
    if (user && s_expired (&user->keys [ref->which], now_ns)) {
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
    const s_keyref_t *ref = s_key_find (self, key, true);
    if (!ref || s_expired (&self->peers [ref->owner].keys [ref->which], now_ns))
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
        const s_keyref_t *ref = &self->keys [index];
        const herald_acl_key_t *keys = ref->peer ? self->peers [ref->owner].keys
                                                 : self->users [ref->owner].pub.keys;
        expired += s_expired (&keys [ref->which], now_ns);
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
    return s_trie_match (((const s_user_t *) user)->publish, topic, len, true) != 0;
}

bool
herald_acl_may_read (const herald_acl_user_t *user, const char *topic, size_t len)
{
    assert (user);
    if (user->read_all)
        return true;
    if (!user->scope)
        return false;
    return s_trie_match (((const s_scope_t *) user->scope)->trie, topic, len, true) != 0;
}

uint64_t
herald_acl_scopes_of (const herald_acl_t *self, const char *topic, size_t len)
{
    assert (self);
    return s_trie_match (self->scope_trie, topic, len, false);
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
        const s_node_t *trie = ((const s_scope_t *) user->scope)->trie;
        for (size_t index = 0; index < count; index++) {
            const herald_str_t *wanted = &prefixes [index];
            //  the read prefixes wanted covers: a run of the sorted set
            size_t low = 0, high = read->count;
            while (low < high) {
                size_t middle = (low + high) / 2;
                if (s_str_compare (&read->prefixes [middle], wanted) < 0)
                    low = middle + 1;
                else
                    high = middle;
            }
            bool covers = false;
            for (; low < read->count
                && s_starts_with (read->prefixes [low].ptr, read->prefixes [low].len, wanted);
                low++)
                covers = taken [low] = true;
            if (covers)
                continue;
            if (s_trie_match (trie, wanted->ptr, wanted->len, true))
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
        used = s_normalise (result, used);
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
            if (s_expired (&keys [index], (int64_t) now.tv_sec * 1000000000 + now.tv_nsec))
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
            for (size_t grant = 0; grant < 5; grant++)
                if (user->admin & s_grants [grant].bit)
                    fprintf (out, " %s", s_grants [grant].name);
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
