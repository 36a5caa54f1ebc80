/*  =========================================================================
    herald_text - messages for people that fit a buffer without losing sense

    Herald's messages often carry text it does not control: a RocksDB
    status naming a path, a broker's ERROR message, an errno string.  Where
    such a message must go into a fixed buffer (a public struct, an ERROR
    reply's herald_error_t), a plain snprintf cut it mid-word and dropped
    whatever came after the cut: "No space left on ; stopping".  Here a
    message that does not fit keeps its head and its tail and loses the
    middle, cut at word boundaries (a space, or before a `/` of a path),
    with "…" where the cut is, so that a reader sees that text is missing
    and still reads how the message ends.  A cut never splits a UTF-8
    character.
    =========================================================================
*/

#ifndef HERALD_TEXT_H_INCLUDED
#define HERALD_TEXT_H_INCLUDED

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

//  The mark of a cut: U+2026 HORIZONTAL ELLIPSIS, 3 bytes of UTF-8.
#define HERALD_TEXT_ELLIPSIS    "\xe2\x80\xa6"

//  Copy text[0..len) into out (size bytes, NUL included; size 0 writes
//  nothing).  When it does not fit, write its head, "…" and its tail (a
//  third of the room, at most), each ending or starting at a word
//  boundary when one is near.  Returns true when the whole text fit.
bool
    herald_text_fit (char *out, size_t size, const char *text, size_t len);

//  printf into out as herald_text_fit cuts: the whole formatted message is
//  made first (on the heap when it is long), then fitted.  Returns true
//  when it fit whole; on a formatting or memory failure, out holds what
//  vsnprintf could write, cut the same way.
bool
    herald_text_vformat (char *out, size_t size, const char *format, va_list args);

bool
    herald_text_format (char *out, size_t size, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));

#endif
