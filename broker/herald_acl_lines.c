/*  =========================================================================
    herald_acl_lines - the ACL file's first pass: its lines into sections

    Each line is checked on its own: a section header `[kind NAME]`, or a
    `key = value` that its kind of section takes, with a value of the
    right syntax (prefixes valid as the start of a topic, a key of 40
    characters of Z85, a date, a limit).  What a line refers to (a role or
    scope defined anywhere in the file) is left to the second pass,
    herald_acl_build.c.

    A value is split into words at spaces and tabs.  `#` starts a comment
    only at the start of a line or after whitespace, because Z85 keys hold
    `#`; a word that holds whitespace, starts with `#` or is a literal `*`
    is quoted ("..." with \" and \\ as the only escapes).
    =========================================================================
*/

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>
#include "herald_acl_priv.h"
#include "herald_text.h"

#define S_STREAMS_MAX   1000000
#define S_WHY_MAX       512

const char *herald_acl_kinds [] = { "scope", "role", "user", "peer" };

//  --------------------------------------------------------------------------
//  Parsing: the first pass

//  "PATH:LINE: key: why" (no "key: " when key is empty), HERALD_ERR_INVALID.
herald_err
herald_acl_fail (herald_acl_parser_t *p, unsigned line, const char *key, const char *format, ...)
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

herald_err
herald_acl_nomem (herald_acl_parser_t *p)
{
    return herald_error_set (p->err, HERALD_ERR_NOMEM, NULL, "%s: out of memory", p->name);
}

//  Make room for one more element in *array.
bool
herald_acl_grow (void **array, size_t *capacity, size_t count, size_t size)
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
s_list_add (herald_acl_list_t *list, const char *ptr, size_t len, unsigned line)
{
    char *copy = malloc (len + 1);
    if (!copy
    ||  !herald_acl_grow ((void **) &list->items, &list->capacity, list->count,
                          sizeof (herald_acl_item_t))) {
        free (copy);
        return false;
    }
    memcpy (copy, ptr, len);
    copy [len] = 0;
    list->items [list->count++] = (herald_acl_item_t) { copy, len, line };
    return true;
}

static void
s_list_free (herald_acl_list_t *list)
{
    for (size_t index = 0; index < list->count; index++)
        free (list->items [index].ptr);
    free (list->items);
    *list = (herald_acl_list_t) { NULL, 0, 0 };
}

void
herald_acl_parser_free (herald_acl_parser_t *p)
{
    for (size_t index = 0; index < p->count; index++) {
        herald_acl_section_t *section = &p->sections [index];
        s_list_free (&section->publish);
        s_list_free (&section->read);
        s_list_free (&section->roles);
        free (section->fanout);
        free (section->scope.ptr);
    }
    free (p->sections);
    free (p->words);
    free (p->index);
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
s_split (herald_acl_parser_t *p, char *cursor, const char *key)
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
        if (!herald_acl_grow ((void **) &p->words, &p->word_capacity, p->word_count,
                              sizeof (herald_acl_word_t)))
            return herald_acl_nomem (p);
        herald_acl_word_t *word = &p->words [p->word_count++];
        if (*cursor == '"') {
            char *start = ++cursor, *out = cursor;
            while (*cursor && *cursor != '"') {
                if (*cursor == '\\' && (cursor [1] == '"' || cursor [1] == '\\'))
                    cursor++;
                *out++ = *cursor++;
            }
            if (*cursor != '"')
                return herald_acl_fail (p, p->line, key, "a quote is not closed");
            cursor++;
            if (*cursor && *cursor != ' ' && *cursor != '\t')
                return herald_acl_fail (p, p->line, key,
                                        "a closing quote must be followed by a space");
            *word = (herald_acl_word_t) { start, (size_t) (out - start), true };
        }
        else {
            char *start = cursor;
            while (*cursor && *cursor != ' ' && *cursor != '\t')
                if (*cursor++ == '"')
                    return herald_acl_fail (p, p->line, key,
                                            "a quote inside a word: quote the whole "
                                            "word (\"...\")");
            *word = (herald_acl_word_t) { start, (size_t) (cursor - start), false };
        }
    }
}

//  `[kind name]`; opens a new section.
static herald_err
s_section_open (herald_acl_parser_t *p, char *cursor)
{
    char *start = ++cursor;
    while (*cursor && *cursor != ']')
        cursor++;
    if (*cursor != ']')
        return herald_acl_fail (p, p->line, "",
                                "a section header needs its ']': [user NAME], [role NAME], "
                                "[scope NAME] or [peer NAME]");
    *cursor++ = 0;
    bool space = false;
    while (*cursor == ' ' || *cursor == '\t') {
        cursor++;
        space = true;
    }
    if (*cursor && !(*cursor == '#' && space))
        return herald_acl_fail (p, p->line, "", "unexpected text after ']': '%s'", cursor);
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
        return herald_acl_fail (p, p->line, "", "a section header is [KIND NAME], found [%s]",
                                start);
    int found = -1;
    for (int index = 0; index < 4; index++)
        if (strlen (herald_acl_kinds [index]) == kind_len
        &&  memcmp (kind, herald_acl_kinds [index], kind_len) == 0)
            found = index;
    if (found < 0)
        return herald_acl_fail (p, p->line, "", "unknown section [%.*s]: [user NAME], [role NAME], "
                                "[scope NAME] or [peer NAME]", (int) kind_len, kind);
    if (name_len == 0)
        return herald_acl_fail (p, p->line, "", "[%s] needs a name: [%s NAME]",
                                herald_acl_kinds [found], herald_acl_kinds [found]);
    if (!s_name_valid (name, name_len))
        return herald_acl_fail (p, p->line, "", "%s name '%.*s' is not valid: " S_NAME_RULE,
                                herald_acl_kinds [found], (int) name_len, name);
    //  names defined twice are found by the second pass, from a sorted index
    if (found == HERALD_ACL_IN_SCOPE && p->scope_count++ == HERALD_ACL_MAX_SCOPES)
        return herald_acl_fail (p, p->line, "", "more than %d scopes", HERALD_ACL_MAX_SCOPES);
    if (!herald_acl_grow ((void **) &p->sections, &p->capacity, p->count,
                          sizeof (herald_acl_section_t)))
        return herald_acl_nomem (p);
    herald_acl_section_t *section = &p->sections [p->count++];
    memset (section, 0, sizeof (*section));
    section->kind = (herald_acl_kind_t) found;
    section->line = p->line;
    memcpy (section->name, name, name_len);
    return HERALD_OK;
}

//  A list of prefixes; `*` (unquoted) when allowed.
static herald_err
s_prefixes (herald_acl_parser_t *p, const char *key, herald_acl_list_t *list, bool *all)
{
    if (p->word_count == 0)
        return herald_acl_fail (p, p->line, key, all ? "give prefixes, or * for every topic"
                                            : "give prefixes");
    for (size_t index = 0; index < p->word_count; index++) {
        const herald_acl_word_t *word = &p->words [index];
        if (!word->quoted && word->len == 1 && word->ptr [0] == '*') {
            if (!all)
                return herald_acl_fail (p, p->line, key,
                                        "a scope cannot read every topic (*): give "
                                        "its users read = * instead");
            *all = true;
            continue;
        }
        if (word->len == 0)
            return herald_acl_fail (p, p->line, key, "an empty prefix: write * for every topic");
        if (word->ptr [0] == '$')
            return herald_acl_fail (p, p->line, key,
                                    "prefix '%.*s' starts with $, which no topic does",
                                    (int) word->len, word->ptr);
        if (!herald_topic_valid (word->ptr, word->len))
            return herald_acl_fail (p, p->line, key, "prefix '%.*s' is not the start of a topic: "
                                    "1-255 bytes of UTF-8", (int) word->len, word->ptr);
        if (!s_list_add (list, word->ptr, word->len, p->line))
            return herald_acl_nomem (p);
    }
    return HERALD_OK;
}

//  The one word of a value, NUL-terminated in place.
static herald_err
s_one_word (herald_acl_parser_t *p, const char *key, const char *what, char **word)
{
    if (p->word_count != 1)
        return herald_acl_fail (p, p->line, key, "give %s", what);
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
s_key (herald_acl_parser_t *p, herald_acl_section_t *section)
{
    const char *rule = "give the public key (40 characters of Z85) and optionally "
                       "'until YYYY-MM-DD' or 'until' an RFC 3339 time";
    if (p->word_count != 1 && !(p->word_count == 3 && !p->words [1].quoted
                                && p->words [1].len == 5
                                && memcmp (p->words [1].ptr, "until", 5) == 0))
        return herald_acl_fail (p, p->line, "key", "%s", rule);
    if (section->key_count == HERALD_ACL_MAX_KEYS)
        return herald_acl_fail (p, p->line, "key",
                                "a %s has at most two keys (one more during a rotation)",
                                herald_acl_kinds [section->kind]);
    herald_acl_key_t *key = &section->keys [section->key_count];
    const herald_acl_word_t *word = &p->words [0];
    char z85 [41] = "";
    if (word->len == 40)
        memcpy (z85, word->ptr, 40);
    char again [41];
    if (word->len != 40 || !zmq_z85_decode (key->key, z85)
    ||  !zmq_z85_encode (again, key->key, HERALD_ACL_KEY_BYTES) || strcmp (again, z85) != 0)
        return herald_acl_fail (p, p->line, "key",
                                "'%.*s' is not a public key: 40 characters of Z85 "
                                "(herald keygen makes one)",
                                (int) (word->len > 60 ? 60 : word->len), word->ptr);
    memcpy (key->z85, z85, sizeof (key->z85));
    key->until_ns = 0;
    if (p->word_count == 3) {
        char date [64] = "";
        if (p->words [2].len < sizeof (date))
            memcpy (date, p->words [2].ptr, p->words [2].len);
        if (p->words [2].len >= sizeof (date) || !s_until (date, &key->until_ns))
            return herald_acl_fail (p, p->line, "key",
                                    "until '%.*s' is not a date: YYYY-MM-DD (00:00 "
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
s_limit (herald_acl_parser_t *p, const char *key, herald_acl_limit_t *limit)
{
    if (limit->line)
        return herald_acl_fail (p, p->line, key, "given twice in this section (line %u)",
                                limit->line);
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
        return herald_acl_fail (p, p->line, key, "expected %s", rule);
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
        return herald_acl_fail (p, p->line, key, "expected %s", rule);
    if (strcmp (key, "streams") == 0 && limit->value > S_STREAMS_MAX)
        return herald_acl_fail (p, p->line, key, "at most %d", S_STREAMS_MAX);
    limit->line = p->line;
    return HERALD_OK;
}

static herald_err
s_admin (herald_acl_parser_t *p, herald_acl_section_t *section)
{
    if (p->word_count == 0)
        return herald_acl_fail (p, p->line, "admin",
                                "give grants: status acl cluster groups trim backup, or *");
    for (size_t index = 0; index < p->word_count; index++) {
        const herald_acl_word_t *word = &p->words [index];
        unsigned bit = 0;
        for (size_t grant = 0; grant < HERALD_ACL_GRANTS; grant++)
            if (!word->quoted && strlen (herald_acl_grants [grant].name) == word->len
            &&  memcmp (herald_acl_grants [grant].name, word->ptr, word->len) == 0)
                bit = herald_acl_grants [grant].bit;
        if (!bit)
            return herald_acl_fail (p, p->line, "admin",
                                    "unknown grant '%.*s': status acl cluster groups trim "
                                    "backup, or *",
                                    (int) (word->len > 60 ? 60 : word->len), word->ptr);
        section->admin |= bit;
    }
    return HERALD_OK;
}

//  A name (of a role or scope) that the second pass looks up.
static herald_err
s_name_ref (herald_acl_parser_t *p, const char *key, const herald_acl_word_t *word,
            herald_acl_list_t *list)
{
    if (!s_name_valid (word->ptr, word->len))
        return herald_acl_fail (p, p->line, key, "'%.*s' is not a valid name: " S_NAME_RULE,
                                (int) (word->len > 70 ? 70 : word->len), word->ptr);
    if (!s_list_add (list, word->ptr, word->len, p->line))
        return herald_acl_nomem (p);
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
s_takes (herald_acl_kind_t kind, const char *key)
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
s_entry (herald_acl_parser_t *p, herald_acl_section_t *section, const char *key)
{
    if (!s_takes (section->kind, key))
        return herald_acl_fail (p, p->line, key, "not a key of [%s] sections (%s)",
                                herald_acl_kinds [section->kind], s_section_keys [section->kind]);
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
        if (section->kind == HERALD_ACL_IN_SCOPE)
            return s_prefixes (p, key, &section->read, NULL);
        if (p->word_count != 1 || p->words [0].quoted || p->words [0].len != 1
        ||  p->words [0].ptr [0] != '*')
            return herald_acl_fail (p, p->line, key,
                                    "a %s reads every topic (read = *) or through a "
                                    "scope (scope = NAME); prefixes to read belong in "
                                    "a [scope] section", herald_acl_kinds [section->kind]);
        if (section->read_all)
            return herald_acl_fail (p, p->line, key, "given twice in this section (line %u)",
                                    section->read_all);
        section->read_all = p->line;
        return HERALD_OK;
    }
    if (strcmp (key, "role") == 0) {
        if (p->word_count == 0)
            return herald_acl_fail (p, p->line, key, "give role names");
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
            return herald_acl_fail (p, p->line, key,
                                    "given twice in this section (line %u): a %s reads "
                                    "through one scope", section->scope.line,
                                    herald_acl_kinds [section->kind]);
        if ((rc = s_one_word (p, key, "one scope name", &word)))
            return rc;
        herald_acl_list_t one = { NULL, 0, 0 };
        if ((rc = s_name_ref (p, key, &p->words [0], &one)))
            return rc;
        section->scope = one.items [0];
        free (one.items);
        return HERALD_OK;
    }
    assert (strcmp (key, "fanout") == 0);
    if (section->fanout)
        return herald_acl_fail (p, p->line, key, "given twice in this section (line %u)",
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
        return herald_acl_fail (p, p->line, key,
                                "'%s' is not an endpoint: tcp://HOST:PORT (PORT 1-65535)",
                                word);
    if (!(section->fanout = strdup (word)))
        return herald_acl_nomem (p);
    section->fanout_line = p->line;
    return HERALD_OK;
}

//  One line (NUL-terminated, without its newline).
herald_err
herald_acl_line (herald_acl_parser_t *p, char *text)
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
        return herald_acl_fail (p, p->line, "",
                                "expected 'key = value' or '[kind NAME]', found '%.60s'",
                                start);
    if (key_len >= sizeof (key))
        return herald_acl_fail (p, p->line, "", "unknown key '%.*s'", (int) key_len, start);
    memcpy (key, start, key_len);
    key [key_len] = 0;
    if (p->count == 0)
        return herald_acl_fail (p, p->line, key, "outside any section: start one with [user NAME], "
                                "[role NAME], [scope NAME] or [peer NAME]");
    herald_err rc = s_split (p, cursor + 1, key);
    if (rc)
        return rc;
    return s_entry (p, &p->sections [p->count - 1], key);
}
