/*  =========================================================================
    test_herald_text - messages are never cut mid-word

    A message too long for its buffer keeps its head and its tail and loses
    its middle, at word boundaries, with "…" where the cut is; herald_error_t
    has room for a path of PATH_MAX; and a store error naming a long data
    directory reaches heraldd's log whole.  Before, a 192-byte message and
    snprintf gave "No space left on ; stopping".
    =========================================================================
*/

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "brokertest.h"
#include "herald_store.h"
#include "herald_text.h"

#define ELLIPSIS    HERALD_TEXT_ELLIPSIS

//  True when text[0..len) holds no broken UTF-8 sequence.
static bool
s_utf8_whole (const char *text)
{
    const unsigned char *at = (const unsigned char *) text;
    while (*at) {
        size_t more = *at < 0x80? 0: (*at & 0xE0) == 0xC0? 1: (*at & 0xF0) == 0xE0? 2:
                      (*at & 0xF8) == 0xF0? 3: 9;
        if (more == 9)
            return false;
        at++;
        for (; more > 0; more--, at++)
            if ((*at & 0xC0) != 0x80)
                return false;
    }
    return true;
}

//  ---------------------------------------------------------------------
//  herald_text_fit and herald_text_format

Test (herald_text, a_message_that_fits_is_copied_whole)
{
    char out [32];
    const char *text = "no space left on device";
    cr_assert (herald_text_fit (out, sizeof out, text, strlen (text)));
    cr_assert_str_eq (out, text);
    //  Exactly the room: 31 bytes and the NUL
    char exact [32];
    memset (exact, 'x', 31);
    exact [31] = 0;
    cr_assert (herald_text_fit (out, sizeof out, exact, 31));
    cr_assert_str_eq (out, exact);
}

Test (herald_text, a_long_message_keeps_its_tail_clause_and_shows_the_cut)
{
    const char *text = "store append failed: IO error: No space left on device: While "
                       "appending to file: some file in a directory; stopping";
    char out [64];
    cr_assert_not (herald_text_fit (out, sizeof out, text, strlen (text)));
    cr_assert_lt (strlen (out), sizeof out);
    cr_assert_not_null (strstr (out, ELLIPSIS), "no ellipsis in \"%s\"", out);
    cr_assert (strncmp (out, "store append failed:", 20) == 0, "head lost: \"%s\"", out);
    size_t len = strlen (out);
    cr_assert (len > 10 && strcmp (out + len - 10, "; stopping") == 0,
               "tail clause lost: \"%s\"", out);
}

Test (herald_text, cuts_fall_between_words)
{
    const char *text = "alpha bravo charlie delta echo foxtrot golf hotel india juliet "
                       "kilo lima mike november oscar papa quebec romeo sierra tango";
    char out [48];
    herald_text_fit (out, sizeof out, text, strlen (text));
    const char *cut = strstr (out, ELLIPSIS);
    cr_assert_not_null (cut);
    //  The head ends with a whole word of the text, the tail starts with one
    size_t head_len = (size_t) (cut - out);
    cr_assert_gt (head_len, 0);
    cr_assert (text [head_len] == ' ', "head \"%.*s\" ends mid-word", (int) head_len, out);
    const char *tail = cut + strlen (ELLIPSIS);
    const char *in_text = strstr (text, tail);
    cr_assert_not_null (in_text, "tail \"%s\" is not the end of the text", tail);
    cr_assert (in_text [-1] == ' ', "tail \"%s\" starts mid-word", tail);
    cr_assert_str_eq (in_text + strlen (in_text) - strlen ("tango"), "tango");
}

Test (herald_text, a_long_path_is_cut_before_a_slash)
{
    char path [400] = "/srv";
    while (strlen (path) < 300)
        strcat (path, "/directory");
    strcat (path, "/000012.log");
    char text [512];
    snprintf (text, sizeof text, "IO error: While appending to file: %s: No space left on "
              "device", path);
    char out [128];
    herald_text_fit (out, sizeof out, text, strlen (text));
    const char *cut = strstr (out, ELLIPSIS);
    cr_assert_not_null (cut);
    cr_assert_eq (cut [strlen (ELLIPSIS)], '/', "the tail does not start at a /: \"%s\"", out);
    size_t len = strlen (out);
    const char *end = ": No space left on device";
    cr_assert_str_eq (out + len - strlen (end), end);
}

Test (herald_text, a_cut_never_splits_a_character)
{
    //  No spaces: the cut must fall between characters of 2, 3 and 4 bytes
    char text [600] = "";
    while (strlen (text) < 500)
        strcat (text, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");     //  é € 😀
    for (size_t size = 1; size < 80; size++) {
        char out [80];
        herald_text_fit (out, size, text, strlen (text));
        cr_assert_lt (strlen (out), size);
        cr_assert (s_utf8_whole (out), "size %zu: broken UTF-8", size);
    }
}

Test (herald_text, tiny_buffers_are_safe)
{
    char out [4] = "zzz";
    cr_assert_not (herald_text_fit (out, 0, "abc", 3));
    cr_assert_str_eq (out, "zzz");                      //  size 0: nothing written
    cr_assert_not (herald_text_fit (out, 1, "abc", 3));
    cr_assert_str_eq (out, "");
    cr_assert_not (herald_text_fit (out, 3, "abcdef", 6));
    cr_assert_str_eq (out, "ab");
    cr_assert (herald_text_fit (out, 1, "", 0));
}

Test (herald_text, format_fits_what_it_formats)
{
    char out [40];
    cr_assert (herald_text_format (out, sizeof out, "%s %d", "seq", 42));
    cr_assert_str_eq (out, "seq 42");
    //  Longer than the stack buffer it formats in first
    char *word = malloc (3000);
    cr_assert_not_null (word);
    memset (word, 'w', 2999);
    word [2999] = 0;
    cr_assert_not (herald_text_format (out, sizeof out, "cannot open %s; stopping", word));
    cr_assert_not_null (strstr (out, ELLIPSIS));
    cr_assert_str_eq (out + strlen (out) - strlen ("; stopping"), "; stopping");
    free (word);
}

Test (herald_text, an_error_has_room_for_a_path_of_path_max)
{
    char *path = malloc (4097);
    cr_assert_not_null (path);
    memset (path, 'p', 4096);
    path [0] = '/';
    path [4096] = 0;
    herald_error_t err;
    herald_error_set (&err, HERALD_ERR_IO, "data_dir", "cannot open the store in %s: %s",
                      path, "IO error: No space left on device");
    cr_assert_not_null (strstr (err.message, path), "the path was cut");
    cr_assert_str_eq (err.message + strlen (err.message)
                      - strlen ("No space left on device"), "No space left on device");
    free (path);
}

//  ---------------------------------------------------------------------
//  A store error naming a long data directory, whole

//  dir/<a 220-byte name>/data, its parent made: a data directory path of
//  250+ bytes.  Caller frees.
static char *
s_long_data_dir (const char *dir)
{
    char name [221];
    memset (name, 'n', 220);
    name [220] = 0;
    size_t len = strlen (dir) + 1 + 220 + strlen ("/data") + 1;
    char *path = malloc (len);
    cr_assert_not_null (path);
    snprintf (path, len, "%s/%s", dir, name);
    cr_assert_eq (mkdir (path, 0700), 0);
    snprintf (path, len, "%s/%s/data", dir, name);
    return path;
}

Test (herald_text, a_locked_store_names_a_long_data_dir_whole)
{
    char *dir = tu_tmpdir_new ("text");
    cr_assert_not_null (dir);
    char *path = s_long_data_dir (dir);
    herald_error_t err;
    herald_store_options_t options = { 0 };
    herald_store_t *first = herald_store_open (path, &options, &err);
    cr_assert_not_null (first, "%s", err.message);
    herald_store_t *second = herald_store_open (path, &options, &err);
    cr_assert_null (second);
    cr_assert_eq (err.code, HERALD_ERR_LOCKED);
    cr_assert_not_null (strstr (err.message, path), "the path was cut: \"%s\"", err.message);
    const char *tail = "(is a broker already running on it?)";
    cr_assert_str_eq (err.message + strlen (err.message) - strlen (tail), tail);
    herald_store_destroy (&first);
    free (path);
    tu_rmtree (dir);
    free (dir);
}

TestSuite (heraldd_text, .init = bt_setup, .fini = bt_teardown, .timeout = 60);

//  heraldd's log line for a store it cannot open carries the whole path
//  and the whole reason.
Test (heraldd_text, heraldd_logs_a_long_data_dir_whole)
{
    bt_broker = bu_broker_new ("heraldd", NULL);
    cr_assert_not_null (bt_broker);
    char *path = s_long_data_dir (bt_broker->dir);
    free (bt_broker->data_dir);
    bt_broker->data_dir = path;
    cr_assert_gt (strlen (path), 200);
    bt_start ();
    bt_second = bu_broker_new ("heraldd2", NULL);
    cr_assert_not_null (bt_second);
    free (bt_second->data_dir);
    bt_second->data_dir = strdup (path);
    cr_assert_not_null (bt_second->data_dir);
    cr_assert_eq (bu_broker_spawn (bt_second), 0);
    cr_assert_eq (bu_broker_wait (bt_second, 5000), 0, "the second heraldd still runs");
    char log [8192];
    bu_broker_log (bt_second, log, sizeof log);
    char want [1024];
    snprintf (want, sizeof want, "data directory %s is in use by another process (is a "
              "broker already running on it?)\n", path);
    cr_assert_not_null (strstr (log, want), "the log does not hold the whole message: %s", log);
}
