/*  =========================================================================
    herald_text - messages for people that fit a buffer without losing sense

    How a message too long for its buffer is cut:

        |<---------- head ---------->|…|<----- tail ----->|
        store append failed: IO error: …/000012.log; stopping

    The tail gets at most a third of the room, so the head, which usually
    says what failed, keeps most of it.  Each side looks for a word
    boundary within a quarter of its length before giving up and cutting
    at a character boundary: a long path has no spaces, so a `/` is a
    boundary too (the cut falls before it).
    =========================================================================
*/

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "herald_text.h"

#define S_ELLIPSIS_LEN  (sizeof (HERALD_TEXT_ELLIPSIS) - 1)
#define S_STACK_MAX     1024            //  formatted on the stack up to this

static bool
s_is_continuation (char byte)
{
    return ((unsigned char) byte & 0xC0) == 0x80;
}

//  Where to end a head of at most max bytes of text: before a space or a
//  `/` within the last quarter, else at a character boundary.  Trailing
//  spaces are dropped so that "…" follows a word.
static size_t
s_head_end (const char *text, size_t max)
{
    size_t floor = max - max / 4;
    size_t end = max;
    while (end > floor && text [end] != ' ' && text [end] != '/')
        end--;
    if (end == floor && text [end] != ' ' && text [end] != '/') {
        end = max;
        while (end > 0 && s_is_continuation (text [end]))
            end--;
    }
    while (end > 0 && text [end - 1] == ' ')
        end--;
    return end;
}

//  Where to start a tail of at most max bytes of text[0..len): after a
//  space or at a `/` within its first quarter, else at a character
//  boundary.
static size_t
s_tail_start (const char *text, size_t len, size_t max)
{
    size_t start = len - max;
    size_t ceiling = start + max / 4;
    size_t at = start;
    while (at < ceiling && text [at] != '/' && (at == 0 || text [at - 1] != ' '))
        at++;
    if (at == ceiling && text [at] != '/' && text [at - 1] != ' ') {
        at = start;
        while (at < len && s_is_continuation (text [at]))
            at++;
    }
    return at;
}

bool
herald_text_fit (char *out, size_t size, const char *text, size_t len)
{
    if (size == 0)
        return len == 0;
    if (len < size) {
        memmove (out, text, len);
        out [len] = 0;
        return true;
    }
    size_t room = size - 1;
    if (room < S_ELLIPSIS_LEN + 2) {
        //  No room for a cut worth the name: as much as fits, whole characters
        size_t end = room;
        while (end > 0 && s_is_continuation (text [end]))
            end--;
        memmove (out, text, end);
        out [end] = 0;
        return false;
    }
    room -= S_ELLIPSIS_LEN;
    size_t tail_max = room / 3;
    size_t tail = s_tail_start (text, len, tail_max);
    size_t tail_len = len - tail;
    size_t head = s_head_end (text, room - tail_len);
    //  text and out may be the same buffer: the tail moves first, to its
    //  place after the head, which is never right of where it was.
    memmove (out + head + S_ELLIPSIS_LEN, text + tail, tail_len);
    memcpy (out + head, HERALD_TEXT_ELLIPSIS, S_ELLIPSIS_LEN);
    if (out != text)
        memmove (out, text, head);
    out [head + S_ELLIPSIS_LEN + tail_len] = 0;
    return false;
}

bool
herald_text_vformat (char *out, size_t size, const char *format, va_list args)
{
    char stack [S_STACK_MAX];
    va_list again;
    va_copy (again, args);
    int needed = vsnprintf (stack, sizeof stack, format, args);
    bool fit;
    if (needed < 0)
        fit = herald_text_fit (out, size, "(message not formatted)",
                               strlen ("(message not formatted)"));
    else
    if ((size_t) needed < sizeof stack)
        fit = herald_text_fit (out, size, stack, (size_t) needed);
    else {
        char *heap = (char *) malloc ((size_t) needed + 1);
        if (heap) {
            vsnprintf (heap, (size_t) needed + 1, format, again);
            fit = herald_text_fit (out, size, heap, (size_t) needed);
            free (heap);
        }
        else {
            herald_text_fit (out, size, stack, sizeof stack - 1);
            fit = false;
        }
    }
    va_end (again);
    return fit;
}

bool
herald_text_format (char *out, size_t size, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    bool fit = herald_text_vformat (out, size, format, args);
    va_end (args);
    return fit;
}
