/* The usual predictions row, read and written as its results.jsonl row in one pass.
 *
 * Pass 1 of complete (complete.py, _read_file) counts every row of a job's predictions and
 * writes a results.jsonl row for each line's first success. Nearly every row is the same case:
 * a success with text, the first row for its line. This module reads such rows straight from
 * the bytes, and refuses any other; complete reads a refused row itself, as it reads every row
 * without this module.
 *
 * take(chunk, start, stop, id_key, label_key, states, max_line, out, limit)
 *     -> (position, taken, prompt, candidates, thoughts, cached, total, reasons)
 *
 *   The rows of chunk[start:stop] (each ends at a newline, the last at stop: the rows
 *   chunk[start:stop].split(b"\n") gives, without making them), from the first, as long as
 *   each is one take() can read and out holds at most limit bytes before it.
 *   position  where the first row not taken starts, or stop + 1 when every row was taken.
 *   taken     how many rows were taken: each a first success for its line.
 *   prompt..  the sums of their token counts (as complete.usage_of reads them).
 *   reasons   {finish reason: rows} of the rows taken, for the non-empty ones.
 *   states    complete's line states (a bytearray, one byte a line): a row is taken only when
 *             its line's byte is 0 (unseen), and the byte is set to 1 (succeeded). It grows as
 *             Tally._set_state grows it, for a line up to max_line (a row whose label names a
 *             higher line is refused: complete takes it for a row without the label).
 *   out       a bytearray each taken row's results.jsonl line is appended to: exactly the bytes
 *             msgspec writes for complete._Result (a test holds the two equal).
 *
 * A row is taken when all of these hold, and refused otherwise:
 *   - it is one JSON object, strictly well-formed throughout (strings are checked as a decoder
 *     checks them: escapes, surrogate pairs, UTF-8; numbers and literals by JSON's grammar),
 *     nested at most MAX_DEPTH deep;
 *   - request.labels[label_key] is a string of at most 18 ASCII digits (the line);
 *   - status is absent or "";
 *   - response is an object with exactly one candidate whose content has a list of parts, at
 *     least one, each an object whose text (if any) is a string and whose thought (if any) is
 *     true, false or null; the text of the parts without thought is the row's text;
 *   - usageMetadata or usage_metadata (not both) is absent, null, or an object whose five token
 *     counts (if present) are integers of at most 18 digits; promptFeedback is absent, null or
 *     an object;
 *   - finishReason, modelVersion and processed_time are absent, null or strings without
 *     escapes; the id (id_key at the top) is absent, null, such a string or an integer of at
 *     most 18 digits written as msgspec writes it;
 *   - the row holds no carriage return before its trailing whitespace (its response is
 *     copied as written, and a results line must be one line to any reader in text mode);
 *   - no key of the objects read (the row, request, labels, response, candidate, content,
 *     parts, usage) is written with an escape, and none of the keys read is given twice.
 * These are exactly the rows complete's own reading takes as a success with text from typed
 * fields; whatever else a row holds, complete reads it as before.
 *
 * The row's text is written as msgspec writes a str: decoded, then '"', '\\' and the control
 * characters escaped (\b \t \n \f \r, else \u00xx), every other character as UTF-8. Each other
 * value is copied as it was written, which is how msgspec writes it under the rules above.
 */

#define Py_LIMITED_API 0x030B0000
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#include "_json.h"

#define MAX_DEPTH 64
#define MAX_PARTS 64
#define MAX_REASONS 16
#define MAX_DIGITS 18

/* A value as written: a string's bytes with its quotes, or a number or literal. */
typedef struct {
    const unsigned char *at;
    Py_ssize_t size;
} Value;

/* What take() keeps of a row while it reads it. */
typedef struct {
    const unsigned char *p, *end;
    const char *id_key, *label_key;
    Py_ssize_t id_len, label_len;
    /* From here to texts, cleared for each row. */
    int depth, ntexts, parts, candidates, requests, usages;
    Value response, processed_time, id, label, finish, model;
    long long usage[5];  /* prompt, candidates, thoughts, cached, total: 0 when absent */
    Value part_text;  /* the part being read (parts do not nest): set by part() */
    int part_escaped, part_thought;
    Value texts[MAX_PARTS];  /* the bodies of the parts' texts, without quotes */
    unsigned char escaped[MAX_PARTS];
} Row;

static inline void ws(Row *r) {
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\r' || *r->p == '\n'))
        r->p++;
}

/* A string at r->p (its opening quote), checked; *escaped says whether it holds an escape. */
static int string(Row *r, int *escaped) {
    const unsigned char *p = r->p + 1, *end = r->end;
    *escaped = 0;
    for (;;) {
        while (p < end && json_plain[*p])
            p++;
        if (p >= end) return 0;
        unsigned char c = *p;
        if (c == '"') break;
        if (c < 0x20) return 0;
        if (c == '\\') {
            *escaped = 1;
            p = json_escape(p, end);
        } else {
            p = json_utf8(p, end);
        }
        if (p == NULL) return 0;
    }
    r->p = p + 1;
    return 1;
}

/* A number by JSON's grammar at r->p; *integer says whether it is a plain integer. */
static int number(Row *r, int *integer) {
    const unsigned char *p = r->p, *end = r->end;
    if (p < end && *p == '-') p++;
    if (p >= end) return 0;
    if (*p == '0') p++;
    else if (*p >= '1' && *p <= '9')
        while (p < end && *p >= '0' && *p <= '9') p++;
    else return 0;
    *integer = 1;
    if (p < end && *p == '.') {
        *integer = 0;
        const unsigned char *digits = ++p;
        while (p < end && *p >= '0' && *p <= '9') p++;
        if (p == digits) return 0;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        *integer = 0;
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        const unsigned char *digits = p;
        while (p < end && *p >= '0' && *p <= '9') p++;
        if (p == digits) return 0;
    }
    r->p = p;
    return 1;
}

static int literal(Row *r, const char *word) {
    size_t size = strlen(word);
    if ((size_t)(r->end - r->p) < size || memcmp(r->p, word, size) != 0) return 0;
    r->p += size;
    return 1;
}

static int skip(Row *r);

/* The members of an object at r->p (its opening brace), each handed to member(), which reads
 * the value; a key with an escape is refused when strict. */
typedef int (*Member)(Row *r, const unsigned char *key, Py_ssize_t size);

static int object(Row *r, Member member, int strict) {
    if (++r->depth > MAX_DEPTH) return 0;
    r->p++;
    ws(r);
    if (r->p < r->end && *r->p == '}') {
        r->p++;
        r->depth--;
        return 1;
    }
    for (;;) {
        int escaped;
        if (r->p >= r->end || *r->p != '"') return 0;
        const unsigned char *key = r->p + 1;
        if (!string(r, &escaped) || (escaped && strict)) return 0;
        Py_ssize_t size = r->p - 1 - key;
        ws(r);
        if (r->p >= r->end || *r->p != ':') return 0;
        r->p++;
        ws(r);
        if (r->p >= r->end || !member(r, key, size)) return 0;
        ws(r);
        if (r->p >= r->end) return 0;
        if (*r->p == '}') {
            r->p++;
            r->depth--;
            return 1;
        }
        if (*r->p != ',') return 0;
        r->p++;
        ws(r);
    }
}

/* The items of an array at r->p (its opening bracket), each handed to item(). */
static int array(Row *r, int (*item)(Row *r)) {
    if (++r->depth > MAX_DEPTH) return 0;
    r->p++;
    ws(r);
    if (r->p < r->end && *r->p == ']') {
        r->p++;
        r->depth--;
        return 1;
    }
    for (;;) {
        ws(r);
        if (r->p >= r->end || !item(r)) return 0;
        ws(r);
        if (r->p >= r->end) return 0;
        if (*r->p == ']') {
            r->p++;
            r->depth--;
            return 1;
        }
        if (*r->p != ',') return 0;
        r->p++;
    }
}

static int skipped_member(Row *r, const unsigned char *key, Py_ssize_t size) {
    (void)key;
    (void)size;
    return skip(r);
}

/* Any value at r->p, checked and passed over. */
static int skip(Row *r) {
    int flag;
    switch (*r->p) {
    case '"': return string(r, &flag);
    case '{': return object(r, skipped_member, 0);
    case '[': return array(r, skip);
    case 't': return literal(r, "true");
    case 'f': return literal(r, "false");
    case 'n': return literal(r, "null");
    default: return number(r, &flag);
    }
}

/* A value that must be null or an object (then passed over). */
static int skip_object_or_null(Row *r) {
    if (*r->p == '{') return skip(r);
    return literal(r, "null");
}

/* A value copied as written: null, or a string without escapes; with integers allowed, also an
 * integer of at most MAX_DIGITS digits other than -0 (msgspec writes those back as they are). */
static int verbatim(Row *r, Value *into, int integers) {
    const unsigned char *at = r->p;
    int escaped, integer;
    if (*at == '"') {
        if (!string(r, &escaped) || escaped) return 0;
    } else if (*at == 'n') {
        if (!literal(r, "null")) return 0;
    } else if (integers && (*at == '-' || (*at >= '0' && *at <= '9'))) {
        if (!number(r, &integer) || !integer) return 0;
        Py_ssize_t digits = (r->p - at) - (*at == '-');
        if (digits > MAX_DIGITS || (*at == '-' && at[1] == '0')) return 0;
    } else {
        return 0;
    }
    into->at = at;
    into->size = r->p - at;
    return 1;
}

static int once(Value *value) {
    return value->at == NULL;  /* a key read twice refuses the row */
}

static inline int key_is(const unsigned char *key, Py_ssize_t size, const char *name) {
    return (Py_ssize_t)strlen(name) == size && memcmp(key, name, size) == 0;
}

/* An integer token count of at most MAX_DIGITS digits. */
static int count(Row *r, long long *into) {
    const unsigned char *at = r->p;
    int integer;
    if (!number(r, &integer) || !integer) return 0;
    int negative = *at == '-';
    if ((r->p - at) - negative > MAX_DIGITS) return 0;
    long long value = 0;
    for (const unsigned char *p = at + negative; p < r->p; p++)
        value = value * 10 + (*p - '0');
    *into = negative ? -value : value;
    return 1;
}

static int usage_member(Row *r, const unsigned char *key, Py_ssize_t size) {
    static const char *const names[5] = {
        "promptTokenCount", "candidatesTokenCount", "thoughtsTokenCount",
        "cachedContentTokenCount", "totalTokenCount",
    };
    for (int i = 0; i < 5; i++)
        if (key_is(key, size, names[i])) {
            if (r->usages & (1 << i)) return 0;
            r->usages |= 1 << i;
            return count(r, &r->usage[i]);
        }
    return skip(r);
}

static int part_member(Row *r, const unsigned char *key, Py_ssize_t size) {
    if (key_is(key, size, "text")) {
        if (*r->p != '"' || r->part_text.at != NULL) return 0;
        r->part_text.at = r->p + 1;
        if (!string(r, &r->part_escaped)) return 0;
        r->part_text.size = r->p - 1 - r->part_text.at;
        return 1;
    }
    if (key_is(key, size, "thought")) {
        if (r->part_thought != -1) return 0;
        if (literal(r, "true")) r->part_thought = 1;
        else if (literal(r, "false") || literal(r, "null")) r->part_thought = 0;
        else return 0;
        return 1;
    }
    return skip(r);
}

/* One part: its text kept unless its thought is true. */
static int part(Row *r) {
    if (*r->p != '{') return 0;
    r->part_text.at = NULL;
    r->part_text.size = 0;
    r->part_escaped = 0;
    r->part_thought = -1;
    r->parts++;
    if (!object(r, part_member, 1)) return 0;
    if (r->part_thought == 1 || r->part_text.at == NULL || r->part_text.size == 0) return 1;
    if (r->ntexts == MAX_PARTS) return 0;
    r->texts[r->ntexts] = r->part_text;
    r->escaped[r->ntexts] = (unsigned char)r->part_escaped;
    r->ntexts++;
    return 1;
}

static int content_member(Row *r, const unsigned char *key, Py_ssize_t size) {
    if (!key_is(key, size, "parts")) return skip(r);
    if (*r->p != '[' || r->parts) return 0;  /* given twice (an empty list: see read_row) */
    return array(r, part);
}

static int candidate_member(Row *r, const unsigned char *key, Py_ssize_t size) {
    if (key_is(key, size, "content")) {
        if (*r->p != '{' || r->parts) return 0;
        return object(r, content_member, 1);
    }
    if (key_is(key, size, "finishReason")) return once(&r->finish) && verbatim(r, &r->finish, 0);
    return skip(r);
}

static int candidate(Row *r) {
    if (*r->p != '{' || r->candidates++) return 0;  /* one candidate only */
    return object(r, candidate_member, 1);
}

static int response_member(Row *r, const unsigned char *key, Py_ssize_t size) {
    if (key_is(key, size, "candidates")) {
        if (*r->p != '[' || r->candidates) return 0;
        return array(r, candidate) && r->candidates == 1;
    }
    if (key_is(key, size, "usageMetadata") || key_is(key, size, "usage_metadata")) {
        if (r->usages & (1 << 5)) return 0;  /* both spellings, or one twice */
        r->usages |= 1 << 5;
        if (*r->p == '{') return object(r, usage_member, 1);
        return literal(r, "null");
    }
    if (key_is(key, size, "modelVersion")) return once(&r->model) && verbatim(r, &r->model, 0);
    if (key_is(key, size, "promptFeedback")) {
        if (r->usages & (1 << 6)) return 0;
        r->usages |= 1 << 6;
        return skip_object_or_null(r);
    }
    return skip(r);
}

static int labels_member(Row *r, const unsigned char *key, Py_ssize_t size) {
    if (size != r->label_len || memcmp(key, r->label_key, size) != 0) return skip(r);
    if (!once(&r->label) || *r->p != '"') return 0;
    const unsigned char *digits = r->p + 1, *p = digits;
    while (p < r->end && *p >= '0' && *p <= '9') p++;
    if (p == digits || p - digits > MAX_DIGITS || p >= r->end || *p != '"') return 0;
    r->label.at = digits;
    r->label.size = p - digits;
    r->p = p + 1;
    return 1;
}

static int request_member(Row *r, const unsigned char *key, Py_ssize_t size) {
    if (!key_is(key, size, "labels")) return skip(r);
    if (*r->p != '{' || r->label.at != NULL) return 0;
    return object(r, labels_member, 1) && r->label.at != NULL;
}

static int row_member(Row *r, const unsigned char *key, Py_ssize_t size) {
    if (size == r->id_len && memcmp(key, r->id_key, size) == 0)
        return once(&r->id) && verbatim(r, &r->id, 1);
    if (key_is(key, size, "status")) return literal(r, "\"\"");  /* a success has no status */
    if (key_is(key, size, "response")) {
        if (*r->p != '{' || !once(&r->response)) return 0;
        const unsigned char *at = r->p;
        if (!object(r, response_member, 1)) return 0;
        r->response.at = at;
        r->response.size = r->p - at;
        return 1;
    }
    if (key_is(key, size, "processed_time"))
        return once(&r->processed_time) && verbatim(r, &r->processed_time, 0);
    if (key_is(key, size, "request"))
        return *r->p == '{' && r->requests++ == 0 && object(r, request_member, 1);
    return skip(r);
}

/* Read one row; 0 when it is not one take() takes. */
static int read_row(Row *r, const unsigned char *line, Py_ssize_t size) {
    memset(&r->depth, 0, offsetof(Row, texts) - offsetof(Row, depth));
    r->p = line;
    r->end = line + size;
    ws(r);
    if (r->p >= r->end || *r->p != '{' || !object(r, row_member, 1)) return 0;
    if (memchr(line, '\r', r->p - line) != NULL) return 0;
    ws(r);
    /* A status given twice is harmless ("" either way); a request without labels, a response
     * without candidates or parts, is refused here. */
    return r->p == r->end && r->label.at != NULL && r->response.at != NULL && r->candidates == 1 &&
           r->parts > 0;
}

/* --- Writing the result row ------------------------------------------------------------------ */

static inline char *put(char *to, const void *from, Py_ssize_t size) {
    memcpy(to, from, size);
    return to + size;
}

#define PUT(to, text) put(to, text, sizeof text - 1)

static char *integer(char *to, long long value) {
    char reversed[24];
    int n = 0;
    unsigned long long left = value < 0 ? 0ULL - (unsigned long long)value : (unsigned long long)value;
    do {
        reversed[n++] = (char)('0' + left % 10);
        left /= 10;
    } while (left);
    if (value < 0) *to++ = '-';
    while (n) *to++ = reversed[--n];
    return to;
}

static char *value_or_null(char *to, const Value *value) {
    return value->at ? put(to, value->at, value->size) : PUT(to, "null");
}

/* A character of a decoded string, written as msgspec writes it. */
static char *character(char *to, unsigned code) {
    static const char hexdigits[] = "0123456789abcdef";
    if (code < 0x20) {
        *to++ = '\\';
        switch (code) {
        case '\b': *to++ = 'b'; break;
        case '\t': *to++ = 't'; break;
        case '\n': *to++ = 'n'; break;
        case '\f': *to++ = 'f'; break;
        case '\r': *to++ = 'r'; break;
        default:
            to = PUT(to, "u00");
            *to++ = hexdigits[code >> 4];
            *to++ = hexdigits[code & 15];
        }
    } else if (code == '"' || code == '\\') {
        *to++ = '\\';
        *to++ = (char)code;
    } else if (code < 0x80) {
        *to++ = (char)code;
    } else if (code < 0x800) {
        *to++ = (char)(0xC0 | code >> 6);
        *to++ = (char)(0x80 | (code & 0x3F));
    } else if (code < 0x10000) {
        *to++ = (char)(0xE0 | code >> 12);
        *to++ = (char)(0x80 | (code >> 6 & 0x3F));
        *to++ = (char)(0x80 | (code & 0x3F));
    } else {
        *to++ = (char)(0xF0 | code >> 18);
        *to++ = (char)(0x80 | (code >> 12 & 0x3F));
        *to++ = (char)(0x80 | (code >> 6 & 0x3F));
        *to++ = (char)(0x80 | (code & 0x3F));
    }
    return to;
}

/* A string body string() checked, written as msgspec writes it once decoded. Never longer
 * than the body: each escape is written in at most as many bytes as it takes. */
static char *text(char *to, const unsigned char *p, Py_ssize_t size, int escaped) {
    if (!escaped) return put(to, p, size);
    const unsigned char *end = p + size;
    while (p < end) {
        const unsigned char *run = p;
        while (p < end && *p != '\\')
            p++;
        to = put(to, run, p - run);
        if (p >= end) break;
        unsigned char c = p[1];
        p += 2;
        switch (c) {
        case 'b': to = character(to, '\b'); break;
        case 'f': to = character(to, '\f'); break;
        case 'n': to = character(to, '\n'); break;
        case 'r': to = character(to, '\r'); break;
        case 't': to = character(to, '\t'); break;
        case 'u': {
            unsigned code = (unsigned)json_hex4(p);
            p += 4;
            if (code >= 0xD800 && code <= 0xDBFF) {  /* string() saw its low half follow */
                code = 0x10000 + ((code - 0xD800) << 10) + ((unsigned)json_hex4(p + 2) - 0xDC00);
                p += 6;
            }
            to = character(to, code);
            break;
        }
        default: to = character(to, c); break;  /* '"', '\\' and '/' stand for themselves */
        }
    }
    return to;
}

/* The most bytes the row's results.jsonl line can take. */
static Py_ssize_t bound(const Row *r) {
    Py_ssize_t size = 256 + r->id.size + r->label.size + r->finish.size + r->model.size +
                      r->processed_time.size + r->response.size + 5 * 24;
    for (int i = 0; i < r->ntexts; i++)
        size += r->texts[i].size;
    return size;
}

static char *result(char *to, const Row *r, long long line, const long long usage[5]) {
    to = PUT(to, "{\"line\":");
    to = integer(to, line);
    if (r->id.at) {
        to = PUT(to, ",\"id\":");
        to = put(to, r->id.at, r->id.size);
    }
    to = PUT(to, ",\"text\":\"");
    for (int i = 0; i < r->ntexts; i++)
        to = text(to, r->texts[i].at, r->texts[i].size, r->escaped[i]);
    to = PUT(to, "\",\"finish_reason\":");
    to = value_or_null(to, &r->finish);
    static const char *const names[5] = {
        "{\"prompt\":", ",\"candidates\":", ",\"thoughts\":", ",\"cached\":", ",\"total\":",
    };
    to = PUT(to, ",\"usage\":");
    for (int i = 0; i < 5; i++) {
        to = put(to, names[i], strlen(names[i]));
        to = integer(to, usage[i]);
    }
    to = PUT(to, "},\"model_version\":");
    to = value_or_null(to, &r->model);
    to = PUT(to, ",\"processed_time\":");
    to = value_or_null(to, &r->processed_time);
    to = PUT(to, ",\"response\":");
    to = put(to, r->response.at, r->response.size);
    return PUT(to, "}\n");
}

/* --- take() ------------------------------------------------------------------------------------ */

typedef struct {
    Value name;  /* the body of a finish reason, without quotes */
    Py_ssize_t rows;
} Reason;

/* The finish reason's slot in reasons (added when new); -1 when there is no room for it. */
static int reason_slot(Reason *reasons, int *count, const Value *finish) {
    Py_ssize_t size = finish->size - 2;
    for (int i = 0; i < *count; i++)
        if (reasons[i].name.size == size && memcmp(reasons[i].name.at, finish->at + 1, size) == 0)
            return i;
    if (*count == MAX_REASONS) return -1;
    reasons[*count].name.at = finish->at + 1;
    reasons[*count].name.size = size;
    reasons[*count].rows = 0;
    return (*count)++;
}

static PyObject *reasons_dict(const Reason *reasons, int count) {
    PyObject *dict = PyDict_New();
    for (int i = 0; dict != NULL && i < count; i++) {
        PyObject *name = PyUnicode_DecodeUTF8((const char *)reasons[i].name.at,
                                              reasons[i].name.size, NULL);
        PyObject *rows = name ? PyLong_FromSsize_t(reasons[i].rows) : NULL;
        if (rows == NULL || PyDict_SetItem(dict, name, rows) < 0) Py_CLEAR(dict);
        Py_XDECREF(name);
        Py_XDECREF(rows);
    }
    return dict;
}

static int sum_into(long long sums[5], const long long add[5]) {
    long long next[5];
    for (int i = 0; i < 5; i++)
        if (__builtin_add_overflow(sums[i], add[i], &next[i])) return 0;
    memcpy(sums, next, sizeof next);
    return 1;
}

static PyObject *take(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "take() takes 9 arguments");
        return NULL;
    }
    PyObject *chunk = args[0], *states = args[5], *out = args[7];
    Py_ssize_t start, stop, limit;
    long long max_line;
    if ((start = PyLong_AsSsize_t(args[1])) == -1 && PyErr_Occurred()) return NULL;
    if ((stop = PyLong_AsSsize_t(args[2])) == -1 && PyErr_Occurred()) return NULL;
    if ((max_line = PyLong_AsLongLong(args[6])) == -1 && PyErr_Occurred()) return NULL;
    if ((limit = PyLong_AsSsize_t(args[8])) == -1 && PyErr_Occurred()) return NULL;
    char *data, *id_key, *label_key;
    Py_ssize_t size, id_len, label_len;
    if (!PyBytes_Check(chunk) || !PyByteArray_Check(states) || !PyByteArray_Check(out) ||
        states == out || PyBytes_AsStringAndSize(chunk, &data, &size) < 0 ||
        PyBytes_AsStringAndSize(args[3], &id_key, &id_len) < 0 ||
        PyBytes_AsStringAndSize(args[4], &label_key, &label_len) < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "take() takes bytes and two distinct bytearrays");
        return NULL;
    }
    if (start < 0 || stop > size || start > stop + 1) {
        PyErr_SetString(PyExc_ValueError, "take(): the span is not inside the chunk");
        return NULL;
    }
    Row r;
    r.id_key = id_key;
    r.id_len = id_len;
    r.label_key = label_key;
    r.label_len = label_len;
    Reason reasons[MAX_REASONS];
    int nreasons = 0;
    long long sums[5] = {0, 0, 0, 0, 0};
    Py_ssize_t pos = start, taken = 0, used = PyByteArray_Size(out), have = used;
    while (pos <= stop && used <= limit) {
        const char *newline = memchr(data + pos, '\n', stop - pos);
        Py_ssize_t end = newline != NULL ? newline - data : stop;
        if (!read_row(&r, (const unsigned char *)data + pos, end - pos)) break;
        long long line = 0;
        for (Py_ssize_t i = 0; i < r.label.size; i++)
            line = line * 10 + (r.label.at[i] - '0');
        if (line > max_line) break;
        Py_ssize_t known = PyByteArray_Size(states);
        if (line < known && PyByteArray_AsString(states)[line] != 0) break;  /* not its first */
        long long *usage = r.usage;  /* as written, the total made up when 0 (< 3 * 10^18) */
        if (usage[4] == 0) usage[4] = usage[0] + usage[1] + usage[2];
        int slot = -1;
        if (r.finish.at && r.finish.at[0] == '"' && r.finish.size > 2) {
            slot = reason_slot(reasons, &nreasons, &r.finish);
            if (slot < 0) break;
        }
        long long next[5];
        memcpy(next, sums, sizeof next);
        if (!sum_into(next, usage)) break;
        /* A bytearray that cannot grow (no memory, or a buffer of it held elsewhere) refuses
         * the row: the rows taken so far are reported, and complete reads this one itself,
         * where the same failure is raised with every count consistent. */
        if (line >= known) {  /* grown as Tally._set_state grows it */
            if (PyByteArray_Resize(states, (Py_ssize_t)line + 1 + 1024) < 0) {
                PyErr_Clear();
                break;
            }
            memset(PyByteArray_AsString(states) + known, 0, (line + 1 + 1024) - known);
        }
        Py_ssize_t room = bound(&r);
        if (used + room > have) {
            if (PyByteArray_Resize(out, used + room + (used + room) / 2) < 0) {
                PyErr_Clear();
                break;
            }
            have = PyByteArray_Size(out);
        }
        char *to = PyByteArray_AsString(out) + used;
        used += result(to, &r, line, usage) - to;
        PyByteArray_AsString(states)[line] = 1;
        memcpy(sums, next, sizeof next);
        if (slot >= 0) reasons[slot].rows++;
        taken++;
        pos = end + 1;
    }
    /* Back to the bytes written (a shrink of what this call grew: it does not fail while no
     * buffer of it is held, and none can be taken during the call). */
    PyObject *found = PyByteArray_Resize(out, used) < 0 ? NULL : reasons_dict(reasons, nreasons);
    if (found == NULL) return NULL;
    return Py_BuildValue("(nnLLLLLN)", pos, taken, sums[0], sums[1], sums[2], sums[3], sums[4],
                         found);
}

static PyMethodDef methods[] = {
    {"take", (PyCFunction)(void (*)(void))take, METH_FASTCALL,
     "take(chunk, start, stop, id_key, label_key, states, max_line, out, limit) -> (position, "
     "taken, prompt, candidates, thoughts, cached, total, reasons): see the module's source."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_rows", "The usual predictions row, read in one pass (see _rows.c).",
    0, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__rows(void) {
    json_init();
    return PyModule_Create(&module);
}
