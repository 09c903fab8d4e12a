/* JSON string checks shared by batchbox's C extensions (validation/_skeleton.c, _rows.c).
 *
 * Each takes the bytes from p (inside a string) to end and returns where the checked piece
 * ends, or NULL when it is not one a JSON parser decoding strictly accepts.
 */

#ifndef BATCHBOX_JSON_H
#define BATCHBOX_JSON_H

#include <stddef.h>

/* The bytes a string's contents may run on without a closer look: printable ASCII other than
 * the quote and the backslash (json_init fills it). */
static unsigned char json_plain[256];

static void json_init(void) {
    for (int c = 0x20; c < 0x80; c++)
        json_plain[c] = c != '"' && c != '\\';
}

static inline int json_hex(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The code unit of four hex digits at p, or -1. */
static inline int json_hex4(const unsigned char *p) {
    int value = 0;
    for (int i = 0; i < 4; i++) {
        int digit = json_hex(p[i]);
        if (digit < 0) return -1;
        value = value * 16 + digit;
    }
    return value;
}

/* One escape at p (its backslash): one JSON allows, a surrogate only as half of a pair. */
static inline const unsigned char *json_escape(const unsigned char *p, const unsigned char *end) {
    p++;
    if (p >= end) return NULL;
    switch (*p) {
    case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
        return p + 1;
    case 'u': {
        if (end - p < 5) return NULL;
        int unit = json_hex4(p + 1);
        if (unit < 0 || (unit >= 0xDC00 && unit <= 0xDFFF)) return NULL;  /* a lone low half */
        p += 5;
        if (unit >= 0xD800 && unit <= 0xDBFF) {  /* a high half: its low half must follow */
            if (end - p < 6 || p[0] != '\\' || p[1] != 'u') return NULL;
            int low = json_hex4(p + 2);
            if (low < 0xDC00 || low > 0xDFFF) return NULL;
            p += 6;
        }
        return p;
    }
    default:
        return NULL;
    }
}

/* One UTF-8 sequence of two bytes or more at p (Unicode's table of well-formed sequences). */
static inline const unsigned char *json_utf8(const unsigned char *p, const unsigned char *end) {
    unsigned char c = p[0];
    int size;
    unsigned char low = 0x80, high = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) size = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        size = 3;
        if (c == 0xE0) low = 0xA0;
        else if (c == 0xED) high = 0x9F;  /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        size = 4;
        if (c == 0xF0) low = 0x90;
        else if (c == 0xF4) high = 0x8F;
    } else return NULL;
    if (end - p < size || p[1] < low || p[1] > high) return NULL;
    for (int i = 2; i < size; i++)
        if (p[i] < 0x80 || p[i] > 0xBF) return NULL;
    return p + size;
}

#endif
