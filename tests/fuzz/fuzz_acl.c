/*  =========================================================================
    fuzz_acl - libFuzzer target for the ACL file parser (herald_acl_parse)

    The input is an ACL file.  Parsing must return cleanly: a table, or
    NULL with an error "fuzz:LINE: ..." (or "fuzz: ...").  A table must
    print as text that parses again to a table that prints the same, and
    answer the checks (scopes_of, may_publish, may_read, narrow with the
    file's own words as prefixes) without crashing; a narrowed list must
    match only what both the request and the read set match.
    =========================================================================
*/

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "herald_acl.h"

static void
s_check (bool condition)
{
    if (!condition)
        abort ();
}

//  What herald_acl_print writes, without its first two (header) lines.
static char *
s_printed (const herald_acl_t *acl)
{
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream (&text, &size);
    s_check (out != NULL);
    herald_acl_print (acl, out);
    fclose (out);
    char *body = strchr (text, '\n');
    s_check (body != NULL);
    body = strchr (body + 1, '\n');
    s_check (body != NULL);
    char *copy = strdup (body + 1);
    free (text);
    return copy;
}

static bool
s_matches (const char *topic, size_t len, const herald_str_t *set, size_t count)
{
    for (size_t index = 0; index < count; index++)
        if (set [index].len <= len && memcmp (topic, set [index].ptr, set [index].len) == 0)
            return true;
    return false;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    herald_error_t err;
    herald_acl_t *acl = herald_acl_parse ((const char *) data, size, "fuzz", &err);
    if (!acl) {
        s_check (strncmp (err.message, "fuzz:", 5) == 0);
        return 0;
    }
    char *first = s_printed (acl);
    herald_acl_t *again = herald_acl_parse (first, strlen (first), "printed", &err);
    s_check (again != NULL);
    char *second = s_printed (again);
    s_check (strcmp (first, second) == 0);
    s_check (herald_acl_user_count (acl) == herald_acl_user_count (again));
    s_check (herald_acl_scope_count (acl) == herald_acl_scope_count (again));

    //  the input's words as topics and prefixes
    herald_str_t words [16];
    size_t word_count = 0;
    for (size_t at = 0; at < size && word_count < 16; ) {
        while (at < size && (data [at] == ' ' || data [at] == '\n'))
            at++;
        size_t start = at;
        while (at < size && data [at] != ' ' && data [at] != '\n')
            at++;
        if (at > start)
            words [word_count++] = (herald_str_t) { (const char *) data + start, at - start };
    }
    for (size_t index = 0; index < herald_acl_user_count (acl); index++) {
        const herald_acl_user_t *user = herald_acl_user_at (acl, index);
        herald_str_t *out = NULL;
        size_t count = 0;
        herald_err rc = herald_acl_narrow (user, words, word_count, &out, &count, &err);
        for (size_t word = 0; word < word_count; word++) {
            const char *topic = words [word].ptr;
            size_t len = words [word].len;
            (void) herald_acl_may_publish (user, topic, len);
            bool read = herald_acl_may_read (user, topic, len);
            if (rc == HERALD_OK)
                s_check (s_matches (topic, len, out, count)
                         == (read && s_matches (topic, len, words, word_count)));
        }
        free (out);
    }
    for (size_t word = 0; word < word_count; word++) {
        uint64_t bits = herald_acl_scopes_of (acl, words [word].ptr, words [word].len);
        s_check (herald_acl_scope_count (acl) == 64 || bits >> herald_acl_scope_count (acl) == 0);
    }
    free (first);
    free (second);
    herald_acl_destroy (&acl);
    herald_acl_destroy (&again);
    return 0;
}
