/*  =========================================================================
    fuzz_exposition - libFuzzer target for the exposition text of a STATUS
    body (broker/herald_exposition.c: heraldd's /metrics and herald status
    --format prometheus read a broker's reply with it)

    The input is the body.  The text must come back whole (its length the
    one returned, NUL-terminated), every line non-empty and ending with a
    newline, the OpenMetrics one ending with `# EOF`; a body that is not a
    map gives NULL.  Also herald_histogram_wanted on the same bytes.
    =========================================================================
*/

#include <stdlib.h>
#include <string.h>
#include "herald_exposition.h"
#include "herald_histogram.h"

static void
s_check (bool condition)
{
    if (!condition)
        abort ();
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    for (int format = 0; format < 2; format++) {
        size_t len = 0;
        char *text = herald_exposition_text (data, size, (herald_exposition_format_t) format,
                                             &len);
        if (!text)
            continue;
        s_check (strlen (text) == len && len > 0 && text [len - 1] == '\n');
        for (size_t at = 0; at < len; at++)
            s_check (text [at] != '\n' || (at + 1 < len? text [at + 1] != '\n': true));
        s_check (text [0] != '\n');
        if (format == HERALD_EXPOSITION_OPENMETRICS)
            s_check (len >= 6 && strcmp (text + len - 6, "# EOF\n") == 0);
        free (text);
    }
    herald_histogram_wanted (data, size);
    return 0;
}
