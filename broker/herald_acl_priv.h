/*  =========================================================================
    herald_acl_priv - what the parts of the ACL table share

    broker/herald_acl.c         the table: tries, lookups, checks, narrow, print
    broker/herald_acl_lines.c   parsing, first pass: lines into sections
    broker/herald_acl_build.c   parsing, second pass: sections into a table;
                                herald_acl_parse and herald_acl_load

    Nothing here is for the broker: it uses herald_acl.h.
    =========================================================================
*/

#ifndef HERALD_ACL_PRIV_H_INCLUDED
#define HERALD_ACL_PRIV_H_INCLUDED

#include "herald_acl.h"

//  --------------------------------------------------------------------------
//  The table (herald_acl.c)

//  A node of a prefix trie.  Children are sorted by byte, so a step is a
//  binary search: a walk costs O(topic length).
typedef struct _herald_acl_node_t {
    uint64_t bits;                      //  the sets (scope bits, or 1) ending here
    size_t count;
    uint8_t *bytes;                     //  sorted
    struct _herald_acl_node_t **kids;
} herald_acl_node_t;

typedef struct {
    herald_acl_scope_t pub;             //  first: the caller's pointer is ours
    herald_acl_node_t *trie;            //  read prefixes, bits 1
} herald_acl_scope_entry_t;

typedef struct {
    herald_acl_user_t pub;              //  first: the caller's pointer is ours
    herald_acl_node_t *publish;         //  NULL when publish.all or nothing
} herald_acl_user_entry_t;

typedef struct {
    uint8_t key [HERALD_ACL_KEY_BYTES];
    bool peer;
    size_t owner;                       //  index in users or peers
    size_t which;                       //  0 or 1: which of the owner's keys
    unsigned line;                      //  while parsing: where it was written
} herald_acl_keyref_t;

struct _herald_acl_t {
    char version [HERALD_ACL_VERSION_LEN + 1];
    herald_acl_scope_entry_t *scopes;   //  file order: index = bit
    size_t scope_count;
    herald_acl_user_entry_t *users;     //  by name
    size_t user_count;
    herald_acl_peer_t *peers;           //  by name
    size_t peer_count;
    herald_acl_keyref_t *keys;          //  by key
    size_t key_count;
    herald_acl_node_t *scope_trie;      //  every scope's read prefixes, bit = index
    char **strings;                     //  every prefix the table points into
    size_t string_count;
};

//  Add prefix[0..len) with bits to *root (made when NULL); false when out
//  of memory (the trie stays valid, to be destroyed).
bool
    herald_acl_trie_add (herald_acl_node_t **root, const char *prefix, size_t len,
                         uint64_t bits);

//  The bits of every prefix of topic[0..len) in the trie, ORed; with
//  first, stops at the first non-zero (a yes/no check).  NULL: no prefix.
uint64_t
    herald_acl_trie_match (const herald_acl_node_t *node, const char *topic, size_t len,
                           bool first);

//  NULL-safe.
void
    herald_acl_trie_destroy (herald_acl_node_t *node);

//  Byte order, a prefix before what it is a prefix of.
int
    herald_acl_str_compare (const herald_str_t *a, const herald_str_t *b);

//  True when text[0..len) starts with prefix.
bool
    herald_acl_starts_with (const char *text, size_t len, const herald_str_t *prefix);

//  Sort prefixes and drop those a shorter one covers (duplicates too);
//  returns how many are kept.
size_t
    herald_acl_normalise (herald_str_t *prefixes, size_t count);

//  True when key has expired at now_ns.
bool
    herald_acl_key_expired (const herald_acl_key_t *key, int64_t now_ns);

//  The admin grants by name, `*` last.
#define HERALD_ACL_GRANTS   7
typedef struct {
    const char *name;
    unsigned bit;
} herald_acl_grant_t;
extern const herald_acl_grant_t herald_acl_grants [HERALD_ACL_GRANTS];

//  --------------------------------------------------------------------------
//  Parsing (herald_acl_lines.c, herald_acl_build.c)

typedef enum { HERALD_ACL_IN_SCOPE, HERALD_ACL_IN_ROLE, HERALD_ACL_IN_USER,
HERALD_ACL_IN_PEER } herald_acl_kind_t;
extern const char *herald_acl_kinds [];

typedef struct {
    char *ptr;                          //  owned (the table keeps copies)
    size_t len;
    unsigned line;
} herald_acl_item_t;

typedef struct {
    herald_acl_item_t *items;
    size_t count;
    size_t capacity;
} herald_acl_list_t;

typedef struct {
    unsigned line;                      //  0: not given
    uint64_t value;
    uint64_t burst;
} herald_acl_limit_t;

typedef struct {
    herald_acl_kind_t kind;
    char name [HERALD_ACL_NAME_MAX + 1];
    unsigned line;
    herald_acl_list_t publish;          //  role, user
    bool publish_all;
    herald_acl_list_t read;             //  scope
    unsigned read_all;                  //  role, user: the line of `read = *`
    char *fanout;                       //  scope
    unsigned fanout_line;
    herald_acl_key_t keys [HERALD_ACL_MAX_KEYS];    //  user, peer
    unsigned key_lines [HERALD_ACL_MAX_KEYS];
    size_t key_count;
    herald_acl_list_t roles;            //  user: role names
    herald_acl_item_t scope;            //  role, user: the scope's name
    unsigned admin;
    herald_acl_limit_t rate, bytes, streams, replay;
} herald_acl_section_t;

typedef struct {
    char *ptr;
    size_t len;
    bool quoted;
} herald_acl_word_t;

typedef struct {
    const char *name;                   //  the path, in errors
    herald_error_t *err;
    unsigned line;
    herald_acl_section_t *sections;
    size_t count;
    size_t capacity;
    herald_acl_word_t *words;           //  the current line's value
    size_t word_count;
    size_t word_capacity;
    size_t scope_count;
    herald_acl_section_t **index;           //  second pass: by kind, name, line
} herald_acl_parser_t;

//  Fill p->err with "PATH:LINE: key: why" (no "key: " when key is empty);
//  returns HERALD_ERR_INVALID.
herald_err
    herald_acl_fail (herald_acl_parser_t *p, unsigned line, const char *key,
                     const char *format, ...) __attribute__ ((format (printf, 4, 5)));

//  Fill p->err with "out of memory"; returns HERALD_ERR_NOMEM.
herald_err
    herald_acl_nomem (herald_acl_parser_t *p);

//  Make room for one more element of size bytes in *array (count used of
//  *capacity); false when out of memory (*array unchanged).
bool
    herald_acl_grow (void **array, size_t *capacity, size_t count, size_t size);

//  Read one line (NUL-terminated, without its newline, p->line set) into
//  p's sections: the first pass.
herald_err
    herald_acl_line (herald_acl_parser_t *p, char *text);

//  Free what the first pass made (not p itself).
void
    herald_acl_parser_free (herald_acl_parser_t *p);

//  The second pass: the table of p's sections, with the digest of the
//  file's bytes as its version; NULL with p->err filled.
herald_acl_t *
    herald_acl_build (herald_acl_parser_t *p, const void *bytes, size_t len);

#endif
