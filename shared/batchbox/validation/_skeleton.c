/* The skeleton of a request line: the line with its prompt texts and its id taken out.
 *
 * Most lines of a batch file differ only in their prompts and their ids: the same keys, in the
 * same order, around the same settings. A line's verdict depends on those prompts and that id
 * only through what this scanner checks itself (a prompt, and the object name in a Cloud
 * Storage URI, is a well-formed, non-empty JSON string; inline data is base64 as the validator's
 * rule says, under the size that warns; an id a non-empty plain string, unique in the file,
 * which the caller checks). So two
 * lines with the same skeleton get the same verdict, and a line whose skeleton is that of a
 * line the validator accepted needs no other check (see validator.py, "skeletons").
 *
 * skeleton(line, id_key, cap) -> (skeleton, id) | None
 *
 *   skeleton  the line's bytes with each opaque string's contents replaced by the marker "\0":
 *             the "text" of a part (of a turn or of the system instruction), the top-level id,
 *             the object name of a part's fileData "gs://BUCKET/OBJECT" URI (its bucket is
 *             kept), and the base64 "data" of a part's inlineData; every other byte,
 *             whitespace included, kept as it is.
 *   id        the top-level id_key's value as a str, or None when the line has no such key.
 *
 * None: the line is not one a skeleton can stand for, and the caller checks it in full. That is
 * any line that is not one JSON object; an opaque string that is empty or not well-formed (a raw
 * control character, a bad escape, a lone surrogate, bytes that are not UTF-8); an id that is not
 * a plain string; an object key with a backslash (it could spell a key in another way); a
 * top-level "request" or id key given twice; a skeleton longer than cap, or nesting deeper than
 * MAX_DEPTH.
 *
 * The scan also finds a line's splice, which accept() records for staging: where the label can
 * be written into the line, as offset * 4 + kind: kind 1, just inside the top-level request
 * object, which has no "labels" key; kind 2, just inside its labels object, which holds labels.
 * 0: the label cannot be written in (labels given twice, null or empty: the caller reads the
 * line).
 *
 * Why equal skeletons mean the same structure: the scanner is a deterministic tokenizer whose
 * state after each byte depends only on the bytes before it, and an opaque string is consumed
 * as one token whatever it holds. The marker cannot occur in a kept segment (a raw control
 * character anywhere is refused), so a skeleton splits into its kept segments and markers one
 * way only; two lines with one skeleton therefore have the same tokens in the same places and
 * differ only inside opaque strings, at the same key paths.
 */

#define Py_LIMITED_API 0x030B0000
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#include "../_json.h"

#define MAX_DEPTH 64
#define MAX_SPANS 256

enum where {
    OTHER,    /* no opaque string inside */
    TOP,      /* the line's object */
    REQUEST,  /* its "request" */
    CONTENTS, /* request.contents: an array of turns */
    TURN,     /* a turn, or the system instruction: {"role", "parts"} */
    PARTS,    /* a turn's "parts" */
    PART,     /* one part */
    FILEDATA, /* a part's "fileData" */
    TEXT,     /* a part's "text": opaque */
    URI,      /* a fileData's "fileUri": its object name opaque when it is gs://BUCKET/OBJECT */
    BLOB,     /* a part's "inlineData" */
    BASE64,   /* its "data": opaque when it is base64 under the size that warns */
    ID,       /* the top-level id: opaque, returned */
    LABELS,   /* the request's "labels" */
};

/* Where a label goes (see splice above). */
enum { NO_SPLICE, IN_REQUEST, IN_LABELS };

/* Inline data longer than this many characters gets a warning (request.LARGE_INLINE_CHARS:
 * 7 MiB of bytes as base64; a test holds the two equal). */
#define LARGE_INLINE_CHARS 9786709

/* Base64 as rules.base64_problem accepts it: one alphabet, standard or URL-safe, throughout,
 * then at most two '=' of padding, and a length that base64 can have. */
static int base64(const unsigned char *text, Py_ssize_t size) {
    Py_ssize_t pad = size >= 2 && text[size - 1] == '=' && text[size - 2] == '=' ? 2
                     : size >= 1 && text[size - 1] == '='                        ? 1
                                                                                 : 0;
    if ((pad && size % 4) || size % 4 == 1) return 0;
    unsigned standard = 1, url_safe = 1;
    for (Py_ssize_t i = 0; i < size - pad; i++) {
        unsigned char c = text[i];
        unsigned common = (c >= 'A' && c <= 'Z') | (c >= 'a' && c <= 'z') | (c >= '0' && c <= '9');
        standard &= common | (c == '+') | (c == '/');
        url_safe &= common | (c == '-') | (c == '_');
    }
    return standard | url_safe;
}

typedef struct {
    const unsigned char *start, *p, *end;
    Py_ssize_t cap;      /* the longest skeleton wanted */
    Py_ssize_t removed;  /* bytes of the line the markers stand for, so far */
    const char *id_key;
    Py_ssize_t id_len;
    Py_ssize_t spans[MAX_SPANS][2];
    int nspans;
    const unsigned char *id_at;  /* the id's body, when found */
    Py_ssize_t id_size;
    Py_ssize_t request_at, labels_at;  /* just inside each object, once met */
    int labels, labels_empty, requests, ids, depth;
} Scan;

static inline void skip_ws(Scan *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

/* How long the skeleton is with the line read up to here. */
static inline Py_ssize_t kept(const Scan *s, const unsigned char *at) {
    return (at - s->start) - s->removed + s->nspans;
}

/* One escape after a backslash at s->p; 0 when it is not one JSON allows. */
static inline int escape(Scan *s) {
    const unsigned char *after = json_escape(s->p, s->end);
    if (after == NULL) return 0;
    s->p = after;
    return 1;
}

/* One UTF-8 sequence of two bytes or more at s->p. */
static inline int utf8(Scan *s) {
    const unsigned char *after = json_utf8(s->p, s->end);
    if (after == NULL) return 0;
    s->p = after;
    return 1;
}

/* A string at s->p (its opening quote): kept, read up to what the cap leaves; opaque, read
 * whole and non-empty; or a URI, opaque after "gs://BUCKET/" when it starts so, else kept.
 * 0: not one this scanner takes. */
static int string(Scan *s, enum where where, int *escaped) {
    const unsigned char *body = s->p + 1, *from = body;
    int opaque = where == TEXT || where == ID;
    if (where == BASE64) {  /* no escape in base64: its first quote ends it */
        const unsigned char *close = memchr(body, '"', s->end - body);
        if (close == NULL || close == body || close - body > LARGE_INLINE_CHARS ||
            !base64(body, close - body) || s->nspans == MAX_SPANS)
            return 0;
        s->spans[s->nspans][0] = body - s->start;
        s->spans[s->nspans][1] = close - s->start;
        s->removed += close - body;
        s->nspans++;
        *escaped = 0;
        s->p = close + 1;
        return 1;
    }
    if (where == URI && s->end - body > 5 && memcmp(body, "gs://", 5) == 0) {
        const unsigned char *q = body + 5;
        while (q < s->end && json_plain[*q] && *q != '/')
            q++;
        if (q < s->end && *q == '/') {
            opaque = 1;
            from = q + 1;
        }
    }
    const unsigned char *limit = s->end;
    if (!opaque && kept(s, s->end) > s->cap)
        limit = s->start + s->cap + s->removed - s->nspans;
    *escaped = 0;
    s->p = from;
    for (;;) {
        while (s->p < limit && json_plain[*s->p])
            s->p++;
        if (s->p >= limit) return 0;
        unsigned char c = *s->p;
        if (c == '"') break;
        if (c < 0x20) return 0;
        if (c == '\\') {
            *escaped = 1;
            if (!escape(s)) return 0;
        } else if (!utf8(s)) {
            return 0;
        }
    }
    if (opaque) {
        if (s->p == from || s->nspans == MAX_SPANS) return 0;
        s->spans[s->nspans][0] = from - s->start;
        s->spans[s->nspans][1] = s->p - s->start;
        s->removed += s->p - from;
        s->nspans++;
    }
    s->p++;  /* the closing quote */
    return 1;
}

static int value(Scan *s, enum where where);

static int key_is(const unsigned char *key, Py_ssize_t size, const char *name) {
    return (Py_ssize_t)strlen(name) == size && memcmp(key, name, size) == 0;
}

/* What a member's value is, from where its object is and its key. */
static enum where member(Scan *s, enum where where, const unsigned char *key, Py_ssize_t size) {
    switch (where) {
    case TOP:
        if (key_is(key, size, "request")) {
            s->requests++;
            return REQUEST;
        }
        if (s->id_key && size == s->id_len && memcmp(key, s->id_key, size) == 0) {
            s->ids++;
            return ID;
        }
        return OTHER;
    case REQUEST:
        if (key_is(key, size, "contents")) return CONTENTS;
        if (key_is(key, size, "systemInstruction") || key_is(key, size, "system_instruction"))
            return TURN;
        if (key_is(key, size, "labels")) {
            s->labels++;
            return LABELS;
        }
        return OTHER;
    case TURN:
        return key_is(key, size, "parts") ? PARTS : OTHER;
    case PART:
        if (key_is(key, size, "text")) return TEXT;
        if (key_is(key, size, "fileData") || key_is(key, size, "file_data")) return FILEDATA;
        if (key_is(key, size, "inlineData") || key_is(key, size, "inline_data")) return BLOB;
        return OTHER;
    case BLOB:
        return key_is(key, size, "data") ? BASE64 : OTHER;
    case FILEDATA:
        return key_is(key, size, "fileUri") || key_is(key, size, "file_uri") ? URI : OTHER;
    default:
        return OTHER;
    }
}

static int object(Scan *s, enum where where) {
    s->p++;
    if (where == REQUEST) s->request_at = s->p - s->start;
    if (where == LABELS) s->labels_at = s->p - s->start;
    skip_ws(s);
    if (s->p < s->end && *s->p == '}') {
        if (where == REQUEST) s->request_at = 0;  /* a label cannot go in with a comma after it */
        if (where == LABELS) s->labels_empty = 1;
        s->p++;
        return 1;
    }
    for (;;) {
        int escaped;
        if (s->p >= s->end || *s->p != '"') return 0;
        const unsigned char *key = s->p + 1;
        if (!string(s, OTHER, &escaped) || escaped) return 0;
        enum where inner = member(s, where, key, s->p - 1 - key);
        skip_ws(s);
        if (s->p >= s->end || *s->p != ':') return 0;
        s->p++;
        if (!value(s, inner)) return 0;
        skip_ws(s);
        if (s->p >= s->end) return 0;
        if (*s->p == '}') {
            s->p++;
            return 1;
        }
        if (*s->p != ',') return 0;
        s->p++;
        skip_ws(s);
    }
}

static int array(Scan *s, enum where where) {
    enum where item = where == CONTENTS ? TURN : where == PARTS ? PART : OTHER;
    s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == ']') {
        s->p++;
        return 1;
    }
    for (;;) {
        if (!value(s, item)) return 0;
        skip_ws(s);
        if (s->p >= s->end) return 0;
        if (*s->p == ']') {
            s->p++;
            return 1;
        }
        if (*s->p != ',') return 0;
        s->p++;
    }
}

static int value(Scan *s, enum where where) {
    skip_ws(s);
    if (s->p >= s->end) return 0;
    unsigned char c = *s->p;
    int ok;
    if (c == '"') {
        int escaped;
        const unsigned char *body = s->p + 1;
        ok = string(s, where, &escaped);
        if (ok && where == ID) {
            if (escaped) return 0;  /* an id is returned as it is written */
            s->id_at = body;
            s->id_size = s->p - 1 - body;
        }
        return ok;
    }
    if (where == ID) return 0;  /* an id that is not a string: the caller reads the line */
    if (c == '{' || c == '[') {
        if (++s->depth > MAX_DEPTH) return 0;
        ok = c == '{' ? object(s, where) : array(s, where);
        s->depth--;
        return ok && kept(s, s->p) <= s->cap;
    }
    /* A number, true, false or null: kept as written, so only its characters are checked. */
    const unsigned char *first = s->p;
    while (s->p < s->end && ((*s->p >= '0' && *s->p <= '9') || (*s->p >= 'a' && *s->p <= 'z') ||
                             *s->p == '-' || *s->p == '+' || *s->p == '.' || *s->p == 'E'))
        s->p++;
    return s->p > first;
}

/* Scan one line; 0 when it is not one a skeleton can stand for. */
static int scan_line(Scan *s, const char *data, Py_ssize_t size, const char *id_key,
                     Py_ssize_t id_len, Py_ssize_t cap) {
    s->id_key = id_key;
    s->id_len = id_len;
    s->cap = cap;
    s->start = s->p = (const unsigned char *)data;
    s->end = s->start + size;
    s->removed = 0;
    s->nspans = 0;
    s->id_at = NULL;
    s->id_size = 0;
    s->request_at = s->labels_at = 0;
    s->labels = s->labels_empty = s->requests = s->ids = s->depth = 0;
    skip_ws(s);
    if (s->p >= s->end || *s->p != '{' || !value(s, TOP)) return 0;
    skip_ws(s);
    return s->p == s->end && s->requests <= 1 && s->ids <= 1 && kept(s, s->end) <= cap;
}

/* Where a label goes in a line scan_line took, as offset * 4 + kind (see splice above). */
static Py_ssize_t splice(const Scan *s) {
    if (s->requests != 1 || s->request_at == 0) return 0;
    if (s->labels == 0) return s->request_at * 4 + IN_REQUEST;
    if (s->labels == 1 && s->labels_at > 0 && !s->labels_empty) return s->labels_at * 4 + IN_LABELS;
    return 0;
}

/* The skeleton of a line scan_line took, as bytes (a new reference). */
static PyObject *build(const Scan *s) {
    const char *data = (const char *)s->start;
    PyObject *out = PyBytes_FromStringAndSize(NULL, kept(s, s->end));
    if (out == NULL) return NULL;
    char *to = PyBytes_AsString(out);
    Py_ssize_t from = 0;
    for (int i = 0; i < s->nspans; i++) {
        Py_ssize_t gap = s->spans[i][0] - from;
        memcpy(to, data + from, gap);
        to[gap] = '\0';
        to += gap + 1;
        from = s->spans[i][1];
    }
    memcpy(to, data + from, (s->end - s->start) - from);
    return out;
}

/* The line's id as a str, or None (a new reference). */
static PyObject *ident(const Scan *s) {
    if (s->id_at == NULL) Py_RETURN_NONE;
    return PyUnicode_DecodeUTF8((const char *)s->id_at, s->id_size, NULL);
}

static int id_key_of(PyObject *arg, char **key, Py_ssize_t *size) {
    *key = NULL;
    *size = 0;
    return arg == Py_None ? 0 : PyBytes_AsStringAndSize(arg, key, size);
}

static PyObject *skeleton(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "skeleton(line, id_key, cap) takes 3 arguments");
        return NULL;
    }
    char *data, *key;
    Py_ssize_t size, key_size;
    if (!PyBytes_Check(args[0])) Py_RETURN_NONE;
    if (PyBytes_AsStringAndSize(args[0], &data, &size) < 0) return NULL;
    if (id_key_of(args[1], &key, &key_size) < 0) return NULL;
    Py_ssize_t cap = PyLong_AsSsize_t(args[2]);
    if (cap == -1 && PyErr_Occurred()) return NULL;
    Scan s;
    if (!scan_line(&s, data, size, key, key_size, cap)) Py_RETURN_NONE;
    PyObject *out = build(&s);
    PyObject *id = out ? ident(&s) : NULL;
    PyObject *result = id ? PyTuple_New(2) : NULL;
    if (result == NULL) {
        Py_XDECREF(out);
        Py_XDECREF(id);
        return NULL;
    }
    PyTuple_SetItem(result, 0, out);
    PyTuple_SetItem(result, 1, id);
    return result;
}

/* Whether a line scan_line took is accepted (1), not (0), or an error was raised (-1): its
 * skeleton is in the set known and, when ids is a dict, it has an id ids does not hold yet
 * (added, with the line's number) or no id while ids is still empty (its number appended to
 * no_ids while that holds fewer than max_no_ids; *without_id counts such lines). */
static int take(const Scan *s, PyObject *known, PyObject *ids, long long number, PyObject *no_ids,
                Py_ssize_t max_no_ids, Py_ssize_t *without_id) {
    if (ids != Py_None && s->id_at == NULL && PyDict_Size(ids) > 0) return 0;
    PyObject *shape = build(s);
    if (shape == NULL) return -1;
    int seen = PySet_Contains(known, shape);
    Py_DECREF(shape);
    if (seen <= 0) return seen;
    if (ids == Py_None) return 1;
    if (s->id_at == NULL) {
        ++*without_id;
        if (PyList_Size(no_ids) < max_no_ids) {
            PyObject *at = PyLong_FromLongLong(number);
            int failed = at == NULL || PyList_Append(no_ids, at) < 0;
            Py_XDECREF(at);
            if (failed) return -1;
        }
        return 1;
    }
    PyObject *id = ident(s);
    if (id == NULL) return -1;
    int used = PyDict_Contains(ids, id);
    if (used != 0) {
        Py_DECREF(id);
        return used < 0 ? -1 : 0;
    }
    PyObject *at = PyLong_FromLongLong(number);
    int failed = at == NULL || PyDict_SetItem(ids, id, at) < 0;
    Py_XDECREF(at);
    Py_DECREF(id);
    return failed ? -1 : 1;
}

/* Three numbers appended to a bytearray, as native 64-bit integers. */
static int append3(PyObject *array, long long a, long long b, long long c) {
    Py_ssize_t size = PyByteArray_Size(array);
    if (PyByteArray_Resize(array, size + 3 * (Py_ssize_t)sizeof(long long)) < 0) return -1;
    long long values[3] = {a, b, c};
    memcpy(PyByteArray_AsString(array) + size, values, sizeof values);
    return 0;
}

/* The i-th of the numbers append3 wrote. */
static long long number_at(const char *array, Py_ssize_t i) {
    long long value;
    memcpy(&value, array + i * (Py_ssize_t)sizeof(long long), sizeof value);
    return value;
}

/* accept(chunk, start, stop, max_line, id_key, cap, known, ids, number, most, no_ids, max_no_ids,
 *        found) -> (position, accepted, without_id)
 *
 * The lines of chunk[start:stop] (each ends at a newline, the last at stop: the lines
 * chunk[start:stop].split(b"\n") gives, without making them), from the first, as long as each
 * is at most max_line bytes, has a skeleton and is accepted as take() says, and at most most of
 * them. position is where the first line not taken starts, or stop + 1 when every line was; the
 * caller reads that line itself. The first line is number number. With a bytearray as found,
 * the start, end and splice of each accepted line are appended to it (append3). */
static PyObject *accept(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 13) {
        PyErr_SetString(PyExc_TypeError, "accept() takes 13 arguments");
        return NULL;
    }
    PyObject *chunk = args[0], *known = args[6], *ids = args[7], *no_ids = args[10];
    PyObject *found = args[12];
    Py_ssize_t start = PyLong_AsSsize_t(args[1]);
    Py_ssize_t stop = PyLong_AsSsize_t(args[2]);
    Py_ssize_t max_line = PyLong_AsSsize_t(args[3]);
    Py_ssize_t cap = PyLong_AsSsize_t(args[5]);
    long long number = PyLong_AsLongLong(args[8]);
    Py_ssize_t most = PyLong_AsSsize_t(args[9]);
    Py_ssize_t max_no_ids = PyLong_AsSsize_t(args[11]);
    if (PyErr_Occurred()) return NULL;
    char *key, *data;
    Py_ssize_t key_size, size;
    if (id_key_of(args[4], &key, &key_size) < 0) return NULL;
    if (!PyBytes_Check(chunk) || !PyAnySet_Check(known) ||
        (ids != Py_None && !PyDict_Check(ids)) || !PyList_Check(no_ids) ||
        (found != Py_None && !PyByteArray_Check(found))) {
        PyErr_SetString(PyExc_TypeError, "accept() takes bytes, a set, a dict or None, a list, "
                                         "a bytearray or None");
        return NULL;
    }
    if (PyBytes_AsStringAndSize(chunk, &data, &size) < 0) return NULL;
    if (start < 0 || stop > size || start > stop + 1) {
        PyErr_SetString(PyExc_ValueError, "accept(): the span is not inside the chunk");
        return NULL;
    }
    Scan s;
    Py_ssize_t pos = start, taken = 0, without_id = 0;
    while (pos <= stop && taken < most) {
        const char *newline = memchr(data + pos, '\n', stop - pos);
        Py_ssize_t end = newline != NULL ? newline - data : stop;
        if (end - pos > max_line || !scan_line(&s, data + pos, end - pos, key, key_size, cap))
            break;
        int ok = take(&s, known, ids, number + taken, no_ids, max_no_ids, &without_id);
        if (ok < 0) return NULL;
        if (!ok) break;
        if (found != Py_None && append3(found, pos, end, splice(&s)) < 0) return NULL;
        taken++;
        pos = end + 1;
    }
    return Py_BuildValue("(nnn)", pos, taken, without_id);
}

/* A line number's decimal digits, written at the start of out (room for 20); how many. */
static int decimal(long long number, char *out) {
    char reversed[20];
    int count = 0;
    unsigned long long left = number < 0 ? 0 : (unsigned long long)number;
    do {
        reversed[count++] = (char)('0' + left % 10);
        left /= 10;
    } while (left);
    for (int i = 0; i < count; i++)
        out[i] = reversed[count - 1 - i];
    return count;
}

/* label(chunk, found, index, number, most, room, key, fresh, out) -> (taken, size)
 *
 * Staged JSONL, written at the start of the bytearray out (grown when it is too small, never
 * shrunk, so that one buffer serves every call: size says how many of its bytes are staged), for
 * the lines found holds (start, end and splice of each, as accept() appends
 * them to a bytearray), from its index-th line on: each line's bytes with the label
 * key: "number" (number for that first line, and so on) written in where its splice says, and a
 * newline after it. It takes at most most lines, and no more than room bytes in all except for a
 * first line when fresh is true (a line bigger than a shard goes into a shard of its own); it
 * stops before a line whose splice is 0 (the caller labels that one itself). */
static PyObject *label(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "label() takes 9 arguments");
        return NULL;
    }
    PyObject *chunk = args[0], *found = args[1], *out = args[8];
    Py_ssize_t index = PyLong_AsSsize_t(args[2]);
    long long number = PyLong_AsLongLong(args[3]);
    Py_ssize_t most = PyLong_AsSsize_t(args[4]);
    Py_ssize_t room = PyLong_AsSsize_t(args[5]);
    int fresh = PyObject_IsTrue(args[7]);
    if (PyErr_Occurred()) return NULL;
    char *key, *data;
    Py_ssize_t key_size, size;
    const Py_ssize_t triple = 3 * (Py_ssize_t)sizeof(long long);
    if (!PyBytes_Check(chunk) || !PyByteArray_Check(found) || PyByteArray_Size(found) % triple ||
        !PyByteArray_Check(out) || out == found ||
        PyBytes_AsStringAndSize(chunk, &data, &size) < 0 ||
        PyBytes_AsStringAndSize(args[6], &key, &key_size) < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError,
                            "label() takes bytes, a bytearray of triples, bytes, a bytearray");
        return NULL;
    }
    const char *numbers = PyByteArray_AsString(found);
    /* What goes before the key and after the number, by kind (see splice above). */
    static const char *const before[] = {"", "\"labels\":{\"", "\""};
    static const char *const after[] = {"", "\"},", "\","};
    Py_ssize_t count = PyByteArray_Size(found) / triple, end = index, total = 0;
    char digits[24];
    for (; end < count && end - index < most; end++) {
        Py_ssize_t first = number_at(numbers, 3 * end), last = number_at(numbers, 3 * end + 1);
        Py_ssize_t at = number_at(numbers, 3 * end + 2);
        if (first < 0 || last > size || first > last || at / 4 > last - first) {
            PyErr_SetString(PyExc_ValueError, "label(): a line is not inside the chunk");
            return NULL;
        }
        if (at <= 0) break;
        int kind = (int)(at % 4);
        Py_ssize_t grown = (last - first) + (Py_ssize_t)strlen(before[kind]) + key_size + 3 +
                           decimal(number + (end - index), digits) +
                           (Py_ssize_t)strlen(after[kind]) + 1;
        if (total + grown > room && !(end == index && fresh)) break;
        total += grown;
    }
    if (PyByteArray_Size(out) < total && PyByteArray_Resize(out, total) < 0) return NULL;
    if (PyByteArray_Size(found) / triple != count) {  /* changed while out grew */
        PyErr_SetString(PyExc_RuntimeError, "label(): found changed while it was read");
        return NULL;
    }
    numbers = PyByteArray_AsString(found);
    char *to = PyByteArray_AsString(out);
    for (Py_ssize_t i = index; i < end; i++) {
        Py_ssize_t first = number_at(numbers, 3 * i), last = number_at(numbers, 3 * i + 1);
        Py_ssize_t at = number_at(numbers, 3 * i + 2);
        int kind = (int)(at % 4);
        at /= 4;
        memcpy(to, data + first, at);
        to += at;
        size_t part = strlen(before[kind]);
        memcpy(to, before[kind], part);
        to += part;
        memcpy(to, key, key_size);
        to += key_size;
        memcpy(to, "\":\"", 3);
        to += 3;
        to += decimal(number + (i - index), to);
        part = strlen(after[kind]);
        memcpy(to, after[kind], part);
        to += part;
        memcpy(to, data + first + at, (last - first) - at);
        to += (last - first) - at;
        *to++ = '\n';
    }
    return Py_BuildValue("(nn)", end - index, total);
}

static PyMethodDef methods[] = {
    {"skeleton", (PyCFunction)(void (*)(void))skeleton, METH_FASTCALL,
     "skeleton(line, id_key, cap) -> (skeleton, id) | None: see the module's source."},
    {"accept", (PyCFunction)(void (*)(void))accept, METH_FASTCALL,
     "accept(chunk, start, stop, max_line, id_key, cap, known, ids, number, most, no_ids, "
     "max_no_ids, found) -> (position, accepted, without_id): see the module's source."},
    {"label", (PyCFunction)(void (*)(void))label, METH_FASTCALL,
     "label(chunk, found, index, number, most, room, key, fresh, out) -> (taken, size): see the "
     "module's source."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_skeleton", "Request-line skeletons (see _skeleton.c).", 0, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__skeleton(void) {
    json_init();
    PyObject *created = PyModule_Create(&module);
    if (created != NULL && PyModule_AddIntConstant(created, "LARGE_INLINE_CHARS",
                                                   LARGE_INLINE_CHARS) < 0) {
        Py_DECREF(created);
        return NULL;
    }
    return created;
}
