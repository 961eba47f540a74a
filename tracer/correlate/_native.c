/* Compiled kernels of the correlator: the per-row passes that numpy can only do in many sweeps.
 *
 * Each function takes numpy arrays through the buffer protocol (the caller, tracer.correlate.
 * kernels, passes them contiguous and of the dtype named in the comment), writes its results
 * into arrays the caller allocated, and returns counts. Every kernel has a numpy twin in
 * kernels.py that gives exactly the same result; this file only makes it faster. No I/O, no
 * Python objects per row, the GIL released around every loop.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    Py_buffer view;
    int held;
} Buf;

/* A contiguous buffer of `n` items of `itemsize` bytes (n < 0: any length). */
static int get_buf(PyObject *obj, Buf *b, Py_ssize_t itemsize, Py_ssize_t n, int writable,
                   const char *name) {
    int flags = PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
    b->held = 0;
    if (PyObject_GetBuffer(obj, &b->view, flags) < 0) return -1;
    b->held = 1;
    if (b->view.itemsize != itemsize) {
        PyErr_Format(PyExc_TypeError, "%s: expected items of %zd bytes, got %zd", name, itemsize,
                     b->view.itemsize);
        return -1;
    }
    if (n >= 0 && b->view.len / itemsize != n) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd items, got %zd", name, n,
                     b->view.len / itemsize);
        return -1;
    }
    return 0;
}

static void release(Buf *bufs, int count) {
    for (int i = 0; i < count; i++)
        if (bufs[i].held) PyBuffer_Release(&bufs[i].view);
}

#define LEN(b, T) ((Py_ssize_t)((b).view.len / (Py_ssize_t)sizeof(T)))
#define PTR(b, T) ((T *)(b).view.buf)

/* ------------------------------------------------------------------ packet_key */

static const uint64_t M1 = 0xBF58476D1CE4E5B9ULL;
static const uint64_t M2 = 0x94D049BB133111EBULL;

static inline uint64_t mix_into(uint64_t h, uint64_t x) {
    h ^= x;
    h *= M1;
    h ^= h >> 31;
    h *= M2;
    h ^= h >> 29;
    return h;
}

#define OPT_TS 0x01
#define KEY_FLAGS 0x3F

/* packet_key(proto u1, seq u4, ack u4, tsval u4, tsecr u4, flags u1, opts u1, payload_len i4,
 *            ip_id i4, phash u4, icmp_type i2, icmp_code i2, icmp_seq i4, tcp_phash, out u8) */
static PyObject *packet_key(PyObject *self, PyObject *args) {
    PyObject *o[14];
    int tcp_phash;
    if (!PyArg_ParseTuple(args, "OOOOOOOOOOOOOpO", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5],
                          &o[6], &o[7], &o[8], &o[9], &o[10], &o[11], &o[12], &tcp_phash,
                          &o[13]))
        return NULL;
    static const Py_ssize_t sizes[14] = {1, 4, 4, 4, 4, 1, 1, 4, 4, 4, 2, 2, 4, 8};
    static const char *names[14] = {"proto", "seq",   "ack",       "tsval",     "tsecr",
                                    "flags", "opts",  "plen",      "ip_id",     "phash",
                                    "icmp_type", "icmp_code", "icmp_seq", "out"};
    Buf b[14];
    memset(b, 0, sizeof b);
    Py_ssize_t n = -1;
    for (int i = 0; i < 14; i++) {
        if (get_buf(o[i], &b[i], sizes[i], n, i == 13, names[i]) < 0) {
            release(b, 14);
            return NULL;
        }
        if (i == 0) n = b[0].view.len;
    }
    const uint8_t *proto = PTR(b[0], uint8_t);
    const uint32_t *seq = PTR(b[1], uint32_t), *ack = PTR(b[2], uint32_t);
    const uint32_t *tsval = PTR(b[3], uint32_t), *tsecr = PTR(b[4], uint32_t);
    const uint8_t *flags = PTR(b[5], uint8_t), *opts = PTR(b[6], uint8_t);
    const int32_t *plen = PTR(b[7], int32_t), *ip_id = PTR(b[8], int32_t);
    const uint32_t *phash = PTR(b[9], uint32_t);
    const int16_t *itype = PTR(b[10], int16_t), *icode = PTR(b[11], int16_t);
    const int32_t *iseq = PTR(b[12], int32_t);
    uint64_t *out = PTR(b[13], uint64_t);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        uint8_t p = proto[i];
        int tcp = p == 6, icmp = p == 1 || p == 58;
        int has_ts = tcp && (opts[i] & OPT_TS);
        uint64_t h = 0x50A74CE1ULL;
        h = mix_into(h, tcp ? ((uint64_t)seq[i] << 32) | ack[i] : 0);
        h = mix_into(h, has_ts ? ((uint64_t)tsval[i] << 32) | tsecr[i] : 0);
        uint64_t w = tcp ? (uint64_t)(flags[i] & KEY_FLAGS) << 8 : 0;
        w |= p;
        w |= (uint64_t)has_ts << 14;
        w |= ((uint64_t)(int64_t)plen[i] & 0xFFFFFF) << 15;
        w |= ((uint64_t)((int64_t)ip_id[i] + 1) & 0x1FFFF) << 39;
        h = mix_into(h, w);
        w = (tcp && !tcp_phash) ? 0 : (uint64_t)phash[i] << 32;
        if (icmp)
            w |= (((uint64_t)(int64_t)itype[i] & 0xFF) << 24) |
                 (((uint64_t)(int64_t)icode[i] & 0xFF) << 16) |
                 ((uint64_t)(int64_t)iseq[i] & 0xFFFF);
        out[i] = mix_into(h, w);
    }
    Py_END_ALLOW_THREADS
    release(b, 14);
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ group reductions */

/* group_reduce(groups i8, values i8, out i8, op): out[g] = min/max/or(out[g], values[i]) for
 * every row i of group g (op 0 min, 1 max, 2 bitwise or); op 3: out[g] (-1 to begin with)
 * becomes the group's one value >= 0, or -2 when it has several. False when a group id is out
 * of range. */
static PyObject *group_reduce(PyObject *self, PyObject *args) {
    PyObject *og, *ov, *oo;
    int op;
    if (!PyArg_ParseTuple(args, "OOOi", &og, &ov, &oo, &op)) return NULL;
    Buf b[3];
    memset(b, 0, sizeof b);
    if (get_buf(og, &b[0], 8, -1, 0, "groups") < 0 ||
        get_buf(ov, &b[1], 8, LEN(b[0], int64_t), 0, "values") < 0 ||
        get_buf(oo, &b[2], 8, -1, 1, "out") < 0) {
        release(b, 3);
        return NULL;
    }
    const int64_t *g = PTR(b[0], int64_t), *v = PTR(b[1], int64_t);
    int64_t *out = PTR(b[2], int64_t);
    Py_ssize_t n = LEN(b[0], int64_t), k = LEN(b[2], int64_t);
    int ok = 1;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t gi = g[i];
        if (gi < 0 || gi >= k) {
            ok = 0;
            break;
        }
        if (op == 0) {
            if (v[i] < out[gi]) out[gi] = v[i];
        } else if (op == 1) {
            if (v[i] > out[gi]) out[gi] = v[i];
        } else if (op == 2) {
            out[gi] |= v[i];
        } else if (v[i] >= 0) { /* op 3: the one value >= 0 of the group; -2 for several */
            if (out[gi] == -1) out[gi] = v[i];
            else if (out[gi] != v[i]) out[gi] = -2;
        }
    }
    Py_END_ALLOW_THREADS
    release(b, 3);
    return PyBool_FromLong(ok);
}

/* mix_rows(seed, (columns i8, ...), out u8): out[i] = the running splitmix64 fold of row i of
 * every column in turn, as keys.mix does it column by column. */
static PyObject *mix_rows(PyObject *self, PyObject *args) {
    unsigned long long seed;
    PyObject *seq, *oo;
    if (!PyArg_ParseTuple(args, "KOO", &seed, &seq, &oo)) return NULL;
    PyObject *fast = PySequence_Fast(seq, "columns must be a sequence");
    if (!fast) return NULL;
    Py_ssize_t m = PySequence_Fast_GET_SIZE(fast);
    if (m > 8) {
        Py_DECREF(fast);
        PyErr_SetString(PyExc_ValueError, "at most 8 columns");
        return NULL;
    }
    Buf b[9];
    memset(b, 0, sizeof b);
    if (get_buf(oo, &b[8], 8, -1, 1, "out") < 0) {
        Py_DECREF(fast);
        release(b, 9);
        return NULL;
    }
    Py_ssize_t n = LEN(b[8], uint64_t);
    for (Py_ssize_t c = 0; c < m; c++) {
        if (get_buf(PySequence_Fast_GET_ITEM(fast, c), &b[c], 8, n, 0, "column") < 0) {
            Py_DECREF(fast);
            release(b, 9);
            return NULL;
        }
    }
    uint64_t *out = PTR(b[8], uint64_t);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t h = seed;
        for (Py_ssize_t c = 0; c < m; c++) h = mix_into(h, PTR(b[c], uint64_t)[i]);
        out[i] = h;
    }
    Py_END_ALLOW_THREADS
    Py_DECREF(fast);
    release(b, 9);
    Py_RETURN_NONE;
}

/* counting_order(groups i8, k, out i8) -> ok: the stable permutation that sorts rows by their
 * group 0..k-1 (a counting sort: two sequential passes and one scatter). */
static PyObject *counting_order(PyObject *self, PyObject *args) {
    PyObject *og, *oo;
    Py_ssize_t k;
    if (!PyArg_ParseTuple(args, "OnO", &og, &k, &oo)) return NULL;
    Buf b[2];
    memset(b, 0, sizeof b);
    if (get_buf(og, &b[0], 8, -1, 0, "groups") < 0 ||
        get_buf(oo, &b[1], 8, LEN(b[0], int64_t), 1, "out") < 0) {
        release(b, 2);
        return NULL;
    }
    const int64_t *g = PTR(b[0], int64_t);
    int64_t *out = PTR(b[1], int64_t);
    Py_ssize_t n = LEN(b[0], int64_t);
    int ok = 1;
    int64_t *start = calloc((size_t)k + 1, sizeof(int64_t));
    if (!start) {
        release(b, 2);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        if (g[i] < 0 || g[i] >= k) {
            ok = 0;
            break;
        }
        start[g[i] + 1]++;
    }
    if (ok) {
        for (Py_ssize_t j = 0; j < k; j++) start[j + 1] += start[j];
        for (Py_ssize_t i = 0; i < n; i++) out[start[g[i]]++] = i;
    }
    Py_END_ALLOW_THREADS
    free(start);
    release(b, 2);
    return PyBool_FromLong(ok);
}

/* dense_few(keys u8, limit, ordered, out i8) -> k, or -1 when there are more than `limit`
 * distinct keys: out[i] = the id of keys[i] among the distinct keys, numbered in unsigned key
 * order (`ordered`) or in the order rows first show them. An open-addressing table, grown as
 * keys come (so that it stays as small as the distinct keys allow, and in cache), finds them;
 * only the distinct keys are sorted. For many distinct keys a sort of all rows is faster: the
 * caller falls back to it. */
static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static inline uint64_t slot_hash(uint64_t x) {
    x ^= x >> 33;
    x *= 0xFF51AFD7ED558CCDULL;
    x ^= x >> 33;
    return x;
}

/* Place every distinct key again in a table of `cap` slots. */
static void rehash(int32_t *slots, size_t cap, const uint64_t *uniq, Py_ssize_t k) {
    size_t mask = cap - 1;
    memset(slots, 0xFF, cap * sizeof(int32_t));
    for (Py_ssize_t u = 0; u < k; u++) {
        size_t s = slot_hash(uniq[u]) & mask;
        while (slots[s] >= 0) s = (s + 1) & mask;
        slots[s] = (int32_t)u;
    }
}

static PyObject *dense_few(PyObject *self, PyObject *args) {
    PyObject *ok, *oo;
    Py_ssize_t limit;
    int ordered;
    if (!PyArg_ParseTuple(args, "OnpO", &ok, &limit, &ordered, &oo)) return NULL;
    Buf b[2];
    memset(b, 0, sizeof b);
    if (get_buf(ok, &b[0], 8, -1, 0, "keys") < 0 ||
        get_buf(oo, &b[1], 8, LEN(b[0], uint64_t), 1, "out") < 0) {
        release(b, 2);
        return NULL;
    }
    if (limit > INT32_MAX / 2) limit = INT32_MAX / 2;
    const uint64_t *keys = PTR(b[0], uint64_t);
    int64_t *out = PTR(b[1], int64_t);
    Py_ssize_t n = LEN(b[0], uint64_t);
    size_t cap = 1 << 12;
    int32_t *slots = malloc(cap * sizeof(int32_t));
    uint64_t *uniq = malloc(((size_t)limit + 1) * sizeof(uint64_t));
    if (!slots || !uniq) {
        free(slots);
        free(uniq);
        release(b, 2);
        return PyErr_NoMemory();
    }
    Py_ssize_t k = 0;
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
    memset(slots, 0xFF, cap * sizeof(int32_t));
    size_t mask = cap - 1;
    for (Py_ssize_t i = 0; i < n && k >= 0 && !failed; i++) {
        uint64_t key = keys[i];
        size_t s = slot_hash(key) & mask;
        for (;;) {
            int32_t id = slots[s];
            if (id < 0) {
                if (k == limit) {
                    k = -1;
                    break;
                }
                slots[s] = (int32_t)k;
                uniq[k] = key;
                out[i] = k++;
                if ((size_t)k * 2 > cap) {
                    int32_t *grown = realloc(slots, cap * 2 * sizeof(int32_t));
                    if (!grown) {
                        failed = 1;
                        break;
                    }
                    slots = grown;
                    cap *= 2;
                    mask = cap - 1;
                    rehash(slots, cap, uniq, k);
                }
                break;
            }
            if (uniq[id] == key) {
                out[i] = id;
                break;
            }
            s = (s + 1) & mask;
        }
    }
    if (k > 0 && ordered && !failed) {
        /* first-seen ids -> ranks in key order: sort the distinct keys, find each one's place */
        uint64_t *sorted = malloc((size_t)k * sizeof(uint64_t));
        int64_t *rank = malloc((size_t)k * sizeof(int64_t));
        if (!sorted || !rank) failed = 1;
        else {
            memcpy(sorted, uniq, (size_t)k * sizeof(uint64_t));
            qsort(sorted, (size_t)k, sizeof(uint64_t), cmp_u64);
            for (Py_ssize_t r = 0; r < k; r++) {
                size_t s = slot_hash(sorted[r]) & mask;
                while (uniq[slots[s]] != sorted[r]) s = (s + 1) & mask;
                rank[slots[s]] = r;
            }
            for (Py_ssize_t i = 0; i < n; i++) out[i] = rank[out[i]];
        }
        free(sorted);
        free(rank);
    }
    Py_END_ALLOW_THREADS
    free(slots);
    free(uniq);
    release(b, 2);
    if (failed) return PyErr_NoMemory();
    return PyLong_FromSsize_t(k);
}

/* first_seen(ids i8, k, out i8, mapping i8) -> ok: renumber ids 0..k-1 in the order rows first
 * show them; mapping[old] = new (-1 for an id no row has). */
static PyObject *first_seen(PyObject *self, PyObject *args) {
    PyObject *og, *oo, *om;
    if (!PyArg_ParseTuple(args, "OOO", &og, &oo, &om)) return NULL;
    Buf b[3];
    memset(b, 0, sizeof b);
    if (get_buf(og, &b[0], 8, -1, 0, "ids") < 0 ||
        get_buf(oo, &b[1], 8, LEN(b[0], int64_t), 1, "out") < 0 ||
        get_buf(om, &b[2], 8, -1, 1, "mapping") < 0) {
        release(b, 3);
        return NULL;
    }
    const int64_t *g = PTR(b[0], int64_t);
    int64_t *out = PTR(b[1], int64_t), *map = PTR(b[2], int64_t);
    Py_ssize_t n = LEN(b[0], int64_t), k = LEN(b[2], int64_t);
    int ok = 1;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t j = 0; j < k; j++) map[j] = -1;
    int64_t next = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t gi = g[i];
        if (gi < 0 || gi >= k) {
            ok = 0;
            break;
        }
        if (map[gi] < 0) map[gi] = next++;
        out[i] = map[gi];
    }
    Py_END_ALLOW_THREADS
    release(b, 3);
    return PyBool_FromLong(ok);
}

/* flow_keys(point, proto u1, src i4, dst i4, sport i4, dport i4, icmp_id i4, lut i4,
 *           ep_s i8, fkey u8): per row of one point, its source endpoint (global address id
 * << 18 | port + 1, the port being the echo identifier for ICMP) and the key of its flow (the
 * point, the protocol and both endpoints in either order), as kernels.flow_keys computes them.
 * `lut` maps the point's address ids to global ones; its last entry stands for "none" (-1). */
static PyObject *flow_keys(PyObject *self, PyObject *args) {
    long long point;
    PyObject *o[9];
    if (!PyArg_ParseTuple(args, "LOOOOOOOOO", &point, &o[0], &o[1], &o[2], &o[3], &o[4], &o[5],
                          &o[6], &o[7], &o[8]))
        return NULL;
    static const Py_ssize_t sizes[9] = {1, 4, 4, 4, 4, 4, 4, 8, 8};
    static const char *names[9] = {"proto", "src",     "dst", "sport", "dport",
                                   "icmp_id", "lut", "ep_s", "fkey"};
    Buf b[9];
    memset(b, 0, sizeof b);
    Py_ssize_t n = -1;
    for (int i = 0; i < 9; i++) {
        if (get_buf(o[i], &b[i], sizes[i], i == 6 ? -1 : n, i >= 7, names[i]) < 0) {
            release(b, 9);
            return NULL;
        }
        if (i == 0) n = b[0].view.len;
    }
    const uint8_t *proto = PTR(b[0], uint8_t);
    const int32_t *src = PTR(b[1], int32_t), *dst = PTR(b[2], int32_t);
    const int32_t *sport = PTR(b[3], int32_t), *dport = PTR(b[4], int32_t);
    const int32_t *icmp_id = PTR(b[5], int32_t), *lut = PTR(b[6], int32_t);
    Py_ssize_t n_lut = LEN(b[6], int32_t);
    int64_t *ep_s = PTR(b[7], int64_t);
    uint64_t *fkey = PTR(b[8], uint64_t);
    int ok = n_lut > 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n && ok; i++) {
        int icmp = proto[i] <= 1 || proto[i] == 58;
        int64_t ps = icmp ? icmp_id[i] : sport[i], pd = icmp ? icmp_id[i] : dport[i];
        int64_t s = src[i], d = dst[i];
        if (s < -1 || s >= n_lut - 1 || d < -1 || d >= n_lut - 1) {
            ok = 0;
            break;
        }
        int64_t gs = lut[s < 0 ? n_lut - 1 : s], gd = lut[d < 0 ? n_lut - 1 : d];
        int64_t es = (int64_t)((uint64_t)gs << 18) | ((ps + 1) & 0x3FFFF);
        int64_t ed = (int64_t)((uint64_t)gd << 18) | ((pd + 1) & 0x3FFFF);
        ep_s[i] = es;
        uint64_t h = mix_into(0xF10, (uint64_t)(point * 256 + proto[i]));
        h = mix_into(h, (uint64_t)(es < ed ? es : ed));
        fkey[i] = mix_into(h, (uint64_t)(es < ed ? ed : es));
    }
    Py_END_ALLOW_THREADS
    release(b, 9);
    return PyBool_FromLong(ok);
}

/* ------------------------------------------------------------------ sends */

/* sends(skey u8, order i8, bounds i8, t i8, vantage i4, window, jid i8, jamb u1, lone u1,
 *       rep u1) -> (n_journeys, any ambiguous key)
 *
 * Rows sorted by (key, point, time): `order` is that permutation of the rows, `skey` the key,
 * `t` the time and `vantage` the interface and direction ((iface + 1) * 4 + direction, -1 for
 * an unknown interface) in that order. Rows are numbered point by point: the point of row r is
 * the p with bounds[p] <= r < bounds[p + 1]. A new point or a gap of more than `window` ns
 * starts a send. The k-th send of a key at one point is journey jbase[key] + k; a send that
 * shows the same vantage twice holds two packets with identical bytes, split by occurrence
 * (the m-th with the m-th). Writes, per sorted position, the journey (jid), whether its key is
 * seen at one point only (lone) and whether it was sent more than once at some point (rep);
 * per journey, jamb. */
static inline int64_t point_of(int64_t r, const int64_t *bounds, Py_ssize_t n_points) {
    Py_ssize_t lo = 0, hi = n_points; /* bounds[lo] <= r < bounds[hi] */
    while (hi - lo > 1) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (bounds[mid] <= r) lo = mid;
        else hi = mid;
    }
    return lo;
}

static PyObject *sends(PyObject *self, PyObject *args) {
    PyObject *o[9];
    long long window;
    if (!PyArg_ParseTuple(args, "OOOOOLOOOO", &o[0], &o[1], &o[2], &o[3], &o[4], &window, &o[5],
                          &o[6], &o[7], &o[8]))
        return NULL;
    Buf b[9];
    memset(b, 0, sizeof b);
    static const Py_ssize_t sizes[9] = {8, 8, 8, 8, 4, 8, 1, 1, 1};
    static const char *names[9] = {"skey", "order", "bounds", "t",   "vantage",
                                   "jid",  "jamb",  "lone",   "rep"};
    Py_ssize_t n = -1;
    for (int i = 0; i < 9; i++) {
        if (get_buf(o[i], &b[i], sizes[i], i == 2 ? -1 : n, i >= 5, names[i]) < 0) {
            release(b, 9);
            return NULL;
        }
        if (i == 0) n = LEN(b[0], uint64_t);
    }
    const uint64_t *skey = PTR(b[0], uint64_t);
    const int64_t *order = PTR(b[1], int64_t), *bounds = PTR(b[2], int64_t);
    Py_ssize_t n_points = LEN(b[2], int64_t) - 1;
    const int64_t *t = PTR(b[3], int64_t);
    const int32_t *vantage = PTR(b[4], int32_t);
    int64_t *kk = PTR(b[5], int64_t);
    uint8_t *jamb = PTR(b[6], uint8_t), *lone = PTR(b[7], uint8_t), *rep = PTR(b[8], uint8_t);
    if (n_points < 1 || bounds[0] != 0 || bounds[n_points] != n) {
        release(b, 9);
        PyErr_SetString(PyExc_ValueError, "sends: bounds must run from 0 to the row count");
        return NULL;
    }
    int64_t n_j = 0;
    int any_amb = 0, failed = 0;
    Py_BEGIN_ALLOW_THREADS
    /* kk: the send's ordinal at its point, then the journey; mm: the occurrence (first row of
     * an interface and direction in its send: 0). */
    int64_t *mm = NULL;
    int any_m = 0;
    for (Py_ssize_t i = 0; i < n;) {
        /* one key: positions [i, e) */
        Py_ssize_t e = i + 1;
        while (e < n && skey[e] == skey[i]) e++;
        int64_t kmax = 0, send = -1, pt_first = 0, prev_pt = -1;
        Py_ssize_t send_start = i;
        for (Py_ssize_t q = i; q < e; q++) {
            int64_t pt = point_of(order[q], bounds, n_points);
            int new_pt = q == i || pt != prev_pt;
            prev_pt = pt;
            int gap = q > i && t[q] - t[q - 1] > window;
            if (new_pt || gap) {
                send++;
                send_start = q;
            }
            if (new_pt) pt_first = send;
            int64_t k = send - pt_first;
            kk[q] = k;
            if (k > kmax) kmax = k;
            /* earlier rows of this send with the same interface and direction */
            int64_t m = 0;
            if (vantage[q] >= 0)
                for (Py_ssize_t p = send_start; p < q; p++) m += vantage[p] == vantage[q];
            if (m) {
                if (!mm) {
                    mm = calloc((size_t)n, sizeof(int64_t));
                    if (!mm) {
                        failed = 1;
                        break;
                    }
                }
                mm[q] = m;
                any_m = 1;
            }
        }
        if (failed) break;
        uint8_t lone_key = point_of(order[i], bounds, n_points) == prev_pt;
        for (Py_ssize_t q = i; q < e; q++) {
            kk[q] += n_j; /* journey id before the occurrence split */
            jamb[kk[q]] = kmax > 0;
            rep[q] = kmax > 0;
            lone[q] = lone_key;
        }
        if (kmax > 0) any_amb = 1;
        n_j += kmax + 1;
        i = e;
    }
    if (!failed && any_m) {
        /* Split journeys by occurrence: new ids ordered by (journey, m); every m from 0 up to a
         * journey's largest is present, so prefix sums number them densely. */
        int64_t *mmax = calloc((size_t)(n_j ? n_j : 1), sizeof(int64_t));
        int64_t *base = malloc((size_t)(n_j + 1) * sizeof(int64_t));
        uint8_t *amb = malloc((size_t)(n_j ? n_j : 1));
        if (!mmax || !base || !amb) failed = 1;
        else {
            for (Py_ssize_t q = 0; q < n; q++) {
                if (mm[q] > mmax[kk[q]]) mmax[kk[q]] = mm[q];
                if (mm[q] > 0) jamb[kk[q]] = 1;
            }
            memcpy(amb, jamb, (size_t)n_j);
            base[0] = 0;
            for (int64_t j = 0; j < n_j; j++) base[j + 1] = base[j] + mmax[j] + 1;
            for (int64_t j = 0; j < n_j; j++)
                for (int64_t m = 0; m <= mmax[j]; m++) jamb[base[j] + m] = amb[j];
            for (Py_ssize_t q = 0; q < n; q++) kk[q] = base[kk[q]] + mm[q];
            n_j = base[n_j];
        }
        free(mmax);
        free(base);
        free(amb);
    }
    free(mm);
    Py_END_ALLOW_THREADS
    release(b, 9);
    if (failed) return PyErr_NoMemory();
    return Py_BuildValue("(Li)", (long long)n_j, any_amb);
}

static PyMethodDef methods[] = {
    {"packet_key", packet_key, METH_VARARGS, "NAT-invariant key of every row (see keys.py)."},
    {"group_reduce", group_reduce, METH_VARARGS, "Per-group minimum (op 0) or maximum (op 1)."},
    {"mix_rows", mix_rows, METH_VARARGS, "splitmix64 fold of several int64 columns per row."},
    {"counting_order", counting_order, METH_VARARGS, "Stable order of rows by small group ids."},
    {"dense_few", dense_few, METH_VARARGS, "Dense ids of 64-bit keys with few distinct values."},
    {"first_seen", first_seen, METH_VARARGS, "Renumber ids in the order rows first show them."},
    {"flow_keys", flow_keys, METH_VARARGS, "Source endpoint and flow key of every row."},
    {"sends", sends, METH_VARARGS, "Split rows sorted by key into sends and journeys."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native",
                                    "Compiled kernels of the correlator.", -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&module); }
