/*  =========================================================================
    herald_cli_check - what the CLI refuses before it sends anything

    One rule for the exit status: whatever the tool can know is wrong from
    the command line alone is a usage error, exit 64, printed before any
    request leaves (a topic the broker would refuse, a range that is empty
    or contradicts itself, a meta entry without a key).  Exit 1 is kept for
    what only the broker can know (a conflict, data it cannot read, an
    ERROR from a broker with other limits).  The checks here are the
    broker's own decoding rules (protocol/herald_msg.c, herald_event.c),
    said with the reason and the rule, in the words the agent library and
    the Python binding use ("topic: must be 1-255 bytes of UTF-8, no NUL,
    not starting with $").
    =========================================================================
*/

#include "herald_cli.h"

#include <string.h>

#define S_TOPIC_RULE "a topic must be 1-255 bytes of UTF-8, no NUL, not starting with $"

//  Write text to stderr quoted, as JSON does when it is not plain UTF-8.
static void
s_quote (const char *text, size_t len)
{
    if (herald_utf8_valid (text, len) && !memchr (text, '\'', len))
        fprintf (stderr, "'%.*s'", (int) len, text);
    else
        herald_cli_json_string (stderr, text, len);
}

//  Why topic is not valid, or NULL when it is.
static const char *
s_topic_problem (const char *topic, size_t len, char *why, size_t why_size)
{
    if (len == 0)
        return "is empty";
    if (len > HERALD_TOPIC_MAX) {
        snprintf (why, why_size, "is %zu bytes long", len);
        return why;
    }
    if (topic [0] == '$')
        return "starts with $ (the broker's own channels, like $hb)";
    if (memchr (topic, 0, len))
        return "holds a NUL byte";
    if (!herald_utf8_valid (topic, len))
        return "is not valid UTF-8";
    return NULL;
}

bool
herald_cli_topic_ok (const char *command, const char *topic)
{
    char why [64];
    size_t len = strlen (topic);
    const char *problem = s_topic_problem (topic, len, why, sizeof why);
    if (!problem)
        return true;
    fprintf (stderr, "herald: %s: topic ", command);
    s_quote (topic, len);
    fprintf (stderr, " %s: " S_TOPIC_RULE "\n", problem);
    return false;
}

//  A prefix is any start of a topic: empty matches all.
static bool
s_prefix_ok (const char *command, herald_str_t prefix)
{
    const char *problem = NULL;
    char why [64];
    if (prefix.len > HERALD_TOPIC_MAX) {
        snprintf (why, sizeof why, "is %zu bytes long", prefix.len);
        problem = why;
    }
    else
    if (!herald_utf8_valid (prefix.ptr, prefix.len))
        problem = "is not valid UTF-8";
    if (!problem)
        return true;
    fprintf (stderr, "herald: %s: prefix ", command);
    s_quote (prefix.ptr, prefix.len);
    fprintf (stderr, " %s: a prefix is the start of a topic, at most 255 bytes of UTF-8\n",
             problem);
    return false;
}

int
herald_cli_check_request (const char *command, const herald_msg_t *request)
{
    if (request->type == HERALD_MSG_READ) {
        __typeof__ (request->read) const *read = &request->read;
        //  (the CLI's topic is an argv string: NUL-terminated)
        if (!herald_cli_topic_ok (command, read->topic.ptr))
            return HERALD_CLI_EXIT_USAGE;
        uint64_t from = read->from_ver ? read->from_ver : 1;
        if (read->has_to_ver && read->to_ver < from)
            return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "%s: --to-ver %" PRIu64 " is before "
                                    "--from-ver %" PRIu64 ": the range is empty", command,
                                    read->to_ver, from);
        return 0;
    }
    __typeof__ (request->replay) const *replay = &request->replay;
    if (replay->has_from && replay->has_from_ts)
        return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "%s: give --from or --from-ts, not both",
                                command);
    if (replay->has_to && replay->has_until_ts)
        return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "%s: give --to or --until-ts, not both",
                                command);
    uint64_t from = replay->has_from ? replay->from : 1;
    if (replay->has_to && !replay->has_from_ts && replay->to < from)
        return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "%s: --to %" PRIu64 " is before --from %"
                                PRIu64 ": the range is empty", command, replay->to, from);
    if (replay->has_until_ts && replay->has_from_ts && replay->until_ts < replay->from_ts) {
        char until [40], start [40];
        return herald_cli_fail (HERALD_CLI_EXIT_USAGE, "%s: --until-ts %s is before --from-ts "
                                "%s: the range is empty", command,
                                herald_cli_time_format (replay->until_ts, until, sizeof until),
                                herald_cli_time_format (replay->from_ts, start, sizeof start));
    }
    size_t index;
    for (index = 0; index < replay->prefix_count; index++)
        if (!s_prefix_ok (command, replay->prefixes [index]))
            return HERALD_CLI_EXIT_USAGE;
    return 0;
}

bool
herald_cli_meta_ok (const char *text, const char *equals)
{
    size_t key_len = equals ? (size_t) (equals - text) : 0;
    const char *problem = !equals ? "has no '='"
                        : key_len == 0 ? "has an empty key"
                        : key_len > HERALD_META_KEY_MAX ? "has a key longer than 64 bytes"
                        : strlen (equals + 1) > HERALD_META_VALUE_MAX
                                            ? "has a value longer than 4096 bytes"
                        : !herald_utf8_valid (text, strlen (text)) ? "is not valid UTF-8"
                        : NULL;
    if (!problem)
        return true;
    fputs ("herald: --meta ", stderr);
    s_quote (text, strlen (text));
    fprintf (stderr, " %s: give KEY=VALUE, a key of 1-%d bytes and a value of at most %d, "
             "UTF-8\n", problem, HERALD_META_KEY_MAX, HERALD_META_VALUE_MAX);
    return false;
}
