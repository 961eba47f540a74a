/* Compiled kernels of the capture reader: the pcap record walk, the pcapng packet-block walk,
 * the common-layout frame decoder and address interning.
 *
 * Each kernel does exactly what its numpy twin in tracer/pcap (pcapfile.py, pcapngfile.py,
 * chains.py, fast.py, reader.py) does, on arrays that Python allocates and passes in through the buffer protocol;
 * nothing here allocates a column or knows about numpy. Every read is checked against the
 * frame's caplen and the buffer's size: a frame this code cannot decode in full is left
 * unmarked for the reference decoder. The GIL is released around every loop so that several
 * files can be read at once in threads. Given a page-aligned mapping and drop=True, the walks
 * and the decoder hand pages they are done with back to the kernel (MADV_DONTNEED), so a large
 * capture never sits whole in RSS. It must not print, and must not raise for bad capture bytes
 * (only for arrays of the wrong size, which is a programming error).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Mirrors of the Python constants (tracer/pcap/columns.py, decode.py, records.py). */
#define MAX_CAPLEN (1u << 24)
#define SUPER_LEN 9000
#define OPT_TS 0x01
#define OPT_MSS 0x10
#define DIR_IN 1
#define DIR_OUT 2
#define PHASH_BYTES 64
/* Pages of the mapped file are handed back to the kernel once this many bytes are behind. */
#define DROP_STEP (32u << 20)

static const uint64_t PHASH_MULT[8] = {
    0x9E3779B97F4A7C15ull, 0xC2B2AE3D27D4EB4Full, 0x165667B19E3779F9ull, 0xD6E8FEB86659FD93ull,
    0xFF51AFD7ED558CCDull, 0xC4CEB9FE1A85EC53ull, 0x94D049BB133111EBull, 0xBF58476D1CE4E5B9ull,
};

static inline uint16_t be16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint32_t be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint32_t rd32(const uint8_t *p, int little) {
    return little ? ((uint32_t)p[3] << 24) | ((uint32_t)p[2] << 16) | ((uint32_t)p[1] << 8) | p[0]
                  : be32(p);
}

/* columns.payload_hash of p[0:len] (len > 0). */
static uint32_t phash(const uint8_t *p, int64_t len) {
    uint8_t block[PHASH_BYTES];
    size_t n = len < PHASH_BYTES ? (size_t)len : PHASH_BYTES;
    memset(block, 0, sizeof block);
    memcpy(block, p, n);
    uint64_t h = 0;
    for (int i = 0; i < 8; i++) {
        uint64_t w = 0;
        for (int k = 7; k >= 0; k--) w = (w << 8) | block[i * 8 + k];
        h += w * PHASH_MULT[i];
    }
    h ^= h >> 31;
    h *= 0x94D049BB133111EBull;
    h ^= h >> 29;
    uint32_t folded = (uint32_t)((h ^ (h >> 32)) & 0xFFFFFFFFu);
    return folded ? folded : 1;
}

/* --- dropping pages of the mapped file that are done with ---------------------------------- */

typedef struct {
    const uint8_t *base;
    Py_ssize_t size;
    Py_ssize_t dropped; /* page-aligned offset below which pages were dropped */
    long page;
    int on;
} Dropper;

static void drop_init(Dropper *d, const uint8_t *base, Py_ssize_t size, int on) {
    d->base = base;
    d->size = size;
    d->dropped = 0;
    d->page = sysconf(_SC_PAGESIZE);
    /* Only a buffer that starts on a page (an mmap of the whole file) can be advised. */
    d->on = on && d->page > 0 && ((uintptr_t)base % (uintptr_t)d->page) == 0;
}

/* The file's pages below `pos` are not needed any more: drop them from this process's RSS
 * (they stay in the page cache; touching them again faults them back in). */
static void drop_below(Dropper *d, Py_ssize_t pos, int force) {
    if (!d->on) return;
    if (pos > d->size) pos = d->size;
    Py_ssize_t upto = pos - pos % d->page;
    if (upto <= d->dropped || (!force && upto - d->dropped < (Py_ssize_t)DROP_STEP)) return;
#ifdef MADV_DONTNEED
    madvise((void *)(d->base + d->dropped), (size_t)(upto - d->dropped), MADV_DONTNEED);
#endif
    d->dropped = upto;
}

/* --- pcap record walk ------------------------------------------------------------------------ */

/* pcapfile.index_pcap's loop: hop from record header to record header while a whole header
 * is present and its caplen is not absurd, filling the record metadata. */
static Py_ssize_t walk(const uint8_t *b, Py_ssize_t size, Py_ssize_t pos, int little, int nanos,
                       Py_ssize_t limit, int64_t *data_off, int64_t *caplen, int64_t *origlen,
                       int64_t *t_ns, Py_ssize_t *end, int64_t *bad, Dropper *drop) {
    Py_ssize_t n = 0;
    *bad = -1;
    while (pos + 16 <= size && n < limit) {
        const uint8_t *h = b + pos;
        uint32_t cap = rd32(h + 8, little);
        if (cap > MAX_CAPLEN) {
            *bad = cap;
            break;
        }
        int64_t sec = rd32(h, little), frac = rd32(h + 4, little);
        data_off[n] = pos + 16;
        caplen[n] = cap;
        origlen[n] = rd32(h + 12, little);
        t_ns[n] = sec * 1000000000 + (nanos ? frac : frac * 1000);
        n++;
        pos += 16 + (Py_ssize_t)cap;
        drop_below(drop, pos, 0);
    }
    *end = pos;
    return n;
}

static int get_array(PyObject *obj, Py_buffer *view, Py_ssize_t itemsize, Py_ssize_t n,
                     const char *what) {
    if (PyObject_GetBuffer(obj, view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return -1;
    if (view->itemsize != itemsize || view->len != n * itemsize) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd items of %zd bytes", what, n, itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* pcap_walk(buf, pos, little, nanos, drop, data_off, caplen, origlen, t_ns) ->
 *   (records, position after the walk, bad caplen or -1).
 * Walks from the record header at pos and fills the four int64 arrays (of equal length) for at
 * most that many records. */
static PyObject *pcap_walk(PyObject *self, PyObject *args) {
    PyObject *bufobj, *arrs[4];
    Py_ssize_t pos;
    int little, nanos, dropflag;
    if (!PyArg_ParseTuple(args, "OnpppOOOO", &bufobj, &pos, &little, &nanos, &dropflag, &arrs[0],
                          &arrs[1], &arrs[2], &arrs[3]))
        return NULL;
    Py_buffer buf, views[4];
    int got = 0;
    PyObject *result = NULL;
    if (PyObject_GetBuffer(bufobj, &buf, PyBUF_SIMPLE) < 0) return NULL;
    if (PyObject_GetBuffer(arrs[0], &views[0], PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        goto done;
    got = 1;
    Py_ssize_t limit = views[0].len / 8;
    if (views[0].itemsize != 8) {
        PyErr_SetString(PyExc_ValueError, "pcap_walk: arrays must be int64");
        goto done;
    }
    for (; got < 4; got++)
        if (get_array(arrs[got], &views[got], 8, limit, "pcap_walk") < 0) goto done;
    if (pos < 0) pos = 0;
    Py_ssize_t end = pos, n;
    int64_t bad;
    Dropper drop;
    drop_init(&drop, (const uint8_t *)buf.buf, buf.len, dropflag);
    Py_BEGIN_ALLOW_THREADS;
    n = walk((const uint8_t *)buf.buf, buf.len, pos, little, nanos, limit, views[0].buf,
             views[1].buf, views[2].buf, views[3].buf, &end, &bad, &drop);
    drop_below(&drop, end, 1);
    Py_END_ALLOW_THREADS;
    result = Py_BuildValue("nnL", n, end, (long long)bad);
done:
    for (int k = 0; k < got; k++) PyBuffer_Release(&views[k]);
    PyBuffer_Release(&buf);
    return result;
}

/* pcapng_walk(buf, pos, little, offsets) -> (blocks, position after them).
 * From pos, take consecutive well-formed packet blocks (EPB, SPB, PB: length a multiple of 4
 * and at least 12, inside the file, trailer equal to it) and write their offsets; stop at
 * anything else (a section header, another block type, damage, the end) and leave that to
 * pcapngfile.index_pcapng, which handles it as it handles every block. */
static PyObject *pcapng_walk(PyObject *self, PyObject *args) {
    PyObject *bufobj, *outobj;
    Py_ssize_t pos;
    int little;
    if (!PyArg_ParseTuple(args, "OnpO", &bufobj, &pos, &little, &outobj)) return NULL;
    Py_buffer buf, outv;
    if (PyObject_GetBuffer(bufobj, &buf, PyBUF_SIMPLE) < 0) return NULL;
    if (PyObject_GetBuffer(outobj, &outv, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    if (outv.itemsize != 8) {
        PyBuffer_Release(&outv);
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "pcapng_walk: offsets must be int64");
        return NULL;
    }
    const uint8_t *b = (const uint8_t *)buf.buf;
    const Py_ssize_t size = buf.len, limit = outv.len / 8;
    int64_t *out = (int64_t *)outv.buf;
    Py_ssize_t n = 0;
    if (pos < 0) pos = size;
    Py_BEGIN_ALLOW_THREADS;
    while (n < limit && pos + 12 <= size) {
        uint32_t btype = rd32(b + pos, little), blen = rd32(b + pos + 4, little);
        if (btype != 2 && btype != 3 && btype != 6) break; /* PB, SPB, EPB */
        if (blen < 12 || (blen & 3) || (Py_ssize_t)blen > size - pos) break;
        if (rd32(b + pos + blen - 4, little) != blen) break;
        out[n++] = pos;
        pos += blen;
    }
    Py_END_ALLOW_THREADS;
    PyBuffer_Release(&outv);
    PyBuffer_Release(&buf);
    return Py_BuildValue("nn", n, pos);
}

/* --- frame decoder --------------------------------------------------------------------------- */

/* Columns in the order reader.NATIVE_COLUMNS passes them, with their item sizes. */
enum {
    C_IFACE, C_DIRECTION, C_ENCAP, C_FAMILY, C_PROTO, C_SPORT, C_DPORT, C_IP_ID, C_TTL, C_SEQ,
    C_ACK, C_FLAGS, C_PAYLOAD_LEN, C_TSVAL, C_TSECR, C_MSS, C_OPTS, C_PHASH, C_PCAP_LEN,
    C_ICMP_TYPE, C_ICMP_CODE, C_ICMP_ID, C_ICMP_SEQ, C_PAYLOAD_OFF, C_QPROTO, C_QSPORT,
    C_QDPORT, C_QSEQ, C_SRC, C_DST, C_DONE, NCOLS
};
static const Py_ssize_t ITEMSIZE[NCOLS] = {4, 1, 1, 1, 1, 4, 4, 4, 2, 4, 4, 1, 4, 4, 4, 2,
                                           1, 4, 4, 2, 2, 4, 4, 8, 2, 4, 4, 8, 8, 8, 1};

/* Link layouts (fast.LAYOUTS): slot in the encap table, header length, EtherType offset. */
static int layout(int32_t linktype, int *slot, int *lhl, int *etype_at) {
    switch (linktype) {
    case 1: *slot = 0; *lhl = 14; *etype_at = 12; return 1;     /* Ethernet */
    case 276: *slot = 1; *lhl = 20; *etype_at = 0; return 1;    /* LINUX_SLL2 */
    case 113: *slot = 2; *lhl = 16; *etype_at = 14; return 1;   /* LINUX_SLL */
    case 101: case 228: case 12: case 14:                       /* raw IP (v4 or v6) */
        *slot = 3; *lhl = 0; *etype_at = -1; return 1;
    default: return 0;
    }
}

static inline int8_t sll_direction(unsigned pkttype, int8_t current) {
    if (pkttype == 4) return DIR_OUT; /* PACKET_OUTGOING */
    if (pkttype <= 3) return DIR_IN;  /* host, broadcast, multicast, otherhost */
    return current;
}

typedef struct {
    void *c[NCOLS];
} Cols;

#define COL(cols, idx, type) ((type *)(cols)->c[idx])

/* Decode frame i if its layout is a common one; 1 when done, 0 to leave it to the reference.
 * IPv6 frames without extension headers are decoded too; their addresses are not interned here:
 * src/dst hold -2 - (the buffer offset of the 16 address bytes) for the caller to intern. */
static int decode_one(const uint8_t *b, Py_ssize_t size, Py_ssize_t i, int64_t off, int64_t cap,
                      int32_t linktype, const uint8_t *encap_ids, int with_v6, Cols *cols) {
    int slot, lhl, etype_at;
    if (!layout(linktype, &slot, &lhl, &etype_at)) return 0;
    /* A frame whose record claims bytes past the buffer is the reference decoder's. */
    if (off < 0 || cap < 0 || off > size || cap > size - off) return 0;
    const int ip = lhl;
    if (cap < ip + 28) return 0;
    const uint8_t *f = b + off;
    int v6 = 0;
    if (etype_at >= 0) {
        unsigned et = be16(f + etype_at);
        if (et == 0x86DD) v6 = 1;
        else if (et != 0x0800) return 0;
    } else if ((f[ip] >> 4) == 6 && linktype != 228) { /* 228: LINKTYPE_IPV4, IPv4 only */
        v6 = 1;
    }
    if (v6 && !with_v6) return 0;
    const int hl = v6 ? 40 : 20, l4 = lhl + hl;
    if (cap < l4 + 8) return 0;
    int64_t total;
    unsigned proto;
    if (v6) {
        if ((f[ip] >> 4) != 6) return 0;
        total = 40 + (int64_t)be16(f + ip + 4);
        /* a jumbogram or super-segment (payload length 0 or past SUPER_LEN) is the reference's */
        if (total < 48 || total > SUPER_LEN) return 0;
        proto = f[ip + 6];
        if (proto == 1) return 0; /* ICMPv4 inside IPv6 is not what kind 2 means here */
    } else {
        if (f[ip] != 0x45) return 0; /* version 4 without IP options */
        total = be16(f + ip + 2);
        if ((be16(f + ip + 6) & 0x3FFF) != 0 || total < 28 || total > SUPER_LEN) return 0;
        proto = f[ip + 9];
        if (proto == 58) return 0;
    }
    int kind; /* 0 tcp, 1 udp, 2 icmp: the order of the fast path's stacks */
    int64_t l4hl;
    const uint8_t *t = f + l4;
    if (proto == 6) {
        if (cap < l4 + 20) return 0; /* the fixed TCP header, data offset included */
        l4hl = (int64_t)(t[12] >> 4) * 4;
        if (l4hl < 20 || cap < l4 + l4hl || total < hl + l4hl) return 0;
        kind = 0;
    } else if (proto == 17) {
        unsigned dport = be16(t + 2);
        if (dport == 4789 || dport == 8472 || dport == 6081) return 0; /* overlays */
        l4hl = 8;
        kind = 1;
    } else if (proto == 1) {
        unsigned type = t[0];
        if (type == 3 || type == 4 || type == 5 || type == 11 || type == 12) return 0; /* errors */
        l4hl = 8;
        kind = 2;
    } else if (proto == 58) {
        unsigned type = t[0];
        if (type >= 1 && type <= 4) return 0; /* ICMPv6 errors quote a packet: the reference's */
        l4hl = 8;
        kind = 2;
    } else {
        return 0;
    }
    uint8_t eid = encap_ids[(v6 ? 12 : 0) + slot * 3 + kind];
    if (eid == 0xFF) return 0;

    uint32_t tsval = 0, tsecr = 0;
    uint16_t mss = 0;
    uint8_t opts = 0;
    if (kind == 0) {
        /* fast._walk_one / decode._tcp_options: the last well-formed MSS and TS win. */
        const uint8_t *o = t + 20;
        int64_t stop = l4hl - 20, pos = 0;
        while (pos < stop) {
            unsigned k = o[pos];
            if (k == 0) break;
            if (k == 1) {
                pos++;
                continue;
            }
            if (pos + 2 > stop) break;
            int64_t len = o[pos + 1];
            if (len < 2 || pos + len > stop) break;
            if (k == 2 && len == 4) {
                mss = be16(o + pos + 2);
                opts |= OPT_MSS;
            } else if (k == 8 && len == 10) {
                tsval = be32(o + pos + 2);
                tsecr = be32(o + pos + 6);
                opts |= OPT_TS;
            }
            pos += len;
        }
    }
    int ports = kind != 2;
    int echo = kind == 2 && (v6 ? (t[0] == 128 || t[0] == 129) : (t[0] == 0 || t[0] == 8));
    int64_t payload_len = total - hl - l4hl;
    int64_t present = cap - (l4 + l4hl);
    if (present < 0) present = 0;
    if (present > payload_len) present = payload_len;

    COL(cols, C_ENCAP, uint8_t)[i] = eid;
    COL(cols, C_FAMILY, uint8_t)[i] = v6 ? 6 : 4;
    COL(cols, C_PROTO, uint8_t)[i] = (uint8_t)proto;
    COL(cols, C_SPORT, int32_t)[i] = ports ? be16(t) : -1;
    COL(cols, C_DPORT, int32_t)[i] = ports ? be16(t + 2) : -1;
    COL(cols, C_IP_ID, int32_t)[i] = v6 ? -1 : be16(f + ip + 4);
    COL(cols, C_TTL, int16_t)[i] = v6 ? f[ip + 7] : f[ip + 8];
    COL(cols, C_SEQ, uint32_t)[i] = kind == 0 ? be32(t + 4) : 0;
    COL(cols, C_ACK, uint32_t)[i] = kind == 0 ? be32(t + 8) : 0;
    COL(cols, C_FLAGS, uint8_t)[i] = kind == 0 ? t[13] : 0;
    COL(cols, C_PAYLOAD_LEN, int32_t)[i] = (int32_t)payload_len;
    COL(cols, C_TSVAL, uint32_t)[i] = tsval;
    COL(cols, C_TSECR, uint32_t)[i] = tsecr;
    COL(cols, C_MSS, uint16_t)[i] = mss;
    COL(cols, C_OPTS, uint8_t)[i] = opts;
    COL(cols, C_PHASH, uint32_t)[i] = present > 0 ? phash(t + l4hl, present) : 0;
    COL(cols, C_PCAP_LEN, int32_t)[i] = (int32_t)present;
    COL(cols, C_ICMP_TYPE, int16_t)[i] = kind == 2 ? t[0] : -1;
    COL(cols, C_ICMP_CODE, int16_t)[i] = kind == 2 ? t[1] : -1;
    COL(cols, C_ICMP_ID, int32_t)[i] = echo ? be16(t + 4) : -1;
    COL(cols, C_ICMP_SEQ, int32_t)[i] = echo ? be16(t + 6) : -1;
    COL(cols, C_PAYLOAD_OFF, int64_t)[i] = off + l4 + l4hl;
    COL(cols, C_QPROTO, int16_t)[i] = -1;
    COL(cols, C_QSPORT, int32_t)[i] = -1;
    COL(cols, C_QDPORT, int32_t)[i] = -1;
    COL(cols, C_QSEQ, int64_t)[i] = -1;
    if (v6) {
        COL(cols, C_SRC, int64_t)[i] = -2 - (off + ip + 8);
        COL(cols, C_DST, int64_t)[i] = -2 - (off + ip + 24);
    } else {
        COL(cols, C_SRC, int64_t)[i] = be32(f + ip + 12);
        COL(cols, C_DST, int64_t)[i] = be32(f + ip + 16);
    }
    if (linktype == 276) {
        uint32_t ifindex = be32(f + 4);
        COL(cols, C_IFACE, int32_t)[i] = ifindex <= 0x7FFFFFFFu ? (int32_t)ifindex : -1;
        int8_t *dir = COL(cols, C_DIRECTION, int8_t);
        dir[i] = sll_direction(f[10], dir[i]);
    } else if (linktype == 113) {
        int8_t *dir = COL(cols, C_DIRECTION, int8_t);
        dir[i] = sll_direction(be16(f), dir[i]);
    }
    COL(cols, C_DONE, uint8_t)[i] = 1;
    return 1;
}

/* decode(buf, data_off, caplen, linktype, encap_ids, columns, start, stop, drop) -> handled.
 * Rows [start, stop) are decoded where the layout is common; done[i] is set for each of them
 * and left alone for the others. `encap_ids` holds 12 encap ids (Ethernet, SLL2, SLL, raw IP
 * x tcp, udp, icmp) for IPv4, and optionally 12 more for IPv6 (then IPv6 frames are decoded,
 * their addresses left as buffer offsets, see decode_one), 255 for a stack not interned. */
static PyObject *decode(PyObject *self, PyObject *args) {
    PyObject *bufobj, *offobj, *capobj, *ltobj, *colsobj;
    Py_buffer encap;
    Py_ssize_t start, stop;
    int dropflag;
    if (!PyArg_ParseTuple(args, "OOOOy*O!nnp", &bufobj, &offobj, &capobj, &ltobj, &encap,
                          &PyTuple_Type, &colsobj, &start, &stop, &dropflag))
        return NULL;
    Py_buffer buf, offv, capv, ltv, views[NCOLS];
    int got = 0, have_buf = 0, have_off = 0, have_cap = 0, have_lt = 0;
    PyObject *result = NULL;
    if (encap.len != 12 && encap.len != 24) {
        PyErr_SetString(PyExc_ValueError, "decode: encap_ids must be 12 or 24 bytes");
        goto done;
    }
    if (PyTuple_GET_SIZE(colsobj) != NCOLS) {
        PyErr_Format(PyExc_ValueError, "decode: expected %d columns", NCOLS);
        goto done;
    }
    if (PyObject_GetBuffer(bufobj, &buf, PyBUF_SIMPLE) < 0) goto done;
    have_buf = 1;
    if (PyObject_GetBuffer(offobj, &offv, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) goto done;
    have_off = 1;
    Py_ssize_t n = offv.len / 8;
    if (offv.itemsize != 8) {
        PyErr_SetString(PyExc_ValueError, "decode: data_off must be int64");
        goto done;
    }
    if (PyObject_GetBuffer(capobj, &capv, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) goto done;
    have_cap = 1;
    if (PyObject_GetBuffer(ltobj, &ltv, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) goto done;
    have_lt = 1;
    if (capv.itemsize != 8 || capv.len != n * 8 || ltv.itemsize != 4 || ltv.len != n * 4) {
        PyErr_SetString(PyExc_ValueError, "decode: caplen (int64) / linktype (int32) length");
        goto done;
    }
    Cols cols;
    for (; got < NCOLS; got++) {
        if (get_array(PyTuple_GET_ITEM(colsobj, got), &views[got], ITEMSIZE[got], n, "decode") < 0)
            goto done;
        cols.c[got] = views[got].buf;
    }
    if (start < 0) start = 0;
    if (stop > n) stop = n;
    Py_ssize_t handled = 0;
    {
        const uint8_t *b = (const uint8_t *)buf.buf;
        const int64_t *offs = (const int64_t *)offv.buf, *caps = (const int64_t *)capv.buf;
        const int32_t *lts = (const int32_t *)ltv.buf;
        const uint8_t *ids = (const uint8_t *)encap.buf;
        const int with_v6 = encap.len == 24;
        Dropper drop;
        drop_init(&drop, b, buf.len, dropflag);
        Py_BEGIN_ALLOW_THREADS;
        for (Py_ssize_t i = start; i < stop; i++) {
            handled += decode_one(b, buf.len, i, offs[i], caps[i], lts[i], ids, with_v6, &cols);
            drop_below(&drop, offs[i], 0);
        }
        if (stop > start) drop_below(&drop, offs[stop - 1], 1);
        Py_END_ALLOW_THREADS;
    }
    result = PyLong_FromSsize_t(handled);
done:
    for (int k = 0; k < got; k++) PyBuffer_Release(&views[k]);
    if (have_lt) PyBuffer_Release(&ltv);
    if (have_cap) PyBuffer_Release(&capv);
    if (have_off) PyBuffer_Release(&offv);
    if (have_buf) PyBuffer_Release(&buf);
    PyBuffer_Release(&encap);
    return result;
}

/* --- address interning ----------------------------------------------------------------------- */

/* IPv4 keys (< 2^32) live in an open-addressing table of 8-byte entries; the other keys are
 * 2^32 + a dense IPv6 index (reader._V6_BASE) and are looked up directly by that index. */
#define V6_BASE (1ll << 32)

typedef struct {
    uint32_t key;
    int32_t id; /* -1 = empty slot */
} Entry;

typedef struct {
    Entry *e;
    size_t mask, count;
    int32_t *v6; /* IPv6 index -> id, -1 when unseen */
    size_t v6_size;
    int64_t *keys; /* id -> key, in first-seen order */
    size_t keys_size;
} Interner;

static inline size_t slot_of(uint32_t key, size_t mask) {
    return (size_t)(((uint64_t)key * 0x9E3779B97F4A7C15ull) >> 40) & mask;
}

static int table_alloc(Interner *t, size_t cap) {
    Entry *e = malloc(cap * sizeof *e);
    if (!e) return -1;
    memset(e, 0xFF, cap * sizeof *e);
    if (t->e) {
        for (size_t s = 0; s <= t->mask; s++) {
            if (t->e[s].id < 0) continue;
            size_t j = slot_of(t->e[s].key, cap - 1);
            while (e[j].id >= 0) j = (j + 1) & (cap - 1);
            e[j] = t->e[s];
        }
        free(t->e);
    }
    t->e = e;
    t->mask = cap - 1;
    return 0;
}

/* A new id for key: -1 when memory runs out. */
static int32_t new_id(Interner *t, int64_t key) {
    if (t->count == t->keys_size) {
        size_t size = t->keys_size ? t->keys_size * 2 : 1024;
        int64_t *keys = realloc(t->keys, size * sizeof *keys);
        if (!keys) return -1;
        t->keys = keys;
        t->keys_size = size;
    }
    t->keys[t->count] = key;
    return (int32_t)t->count++;
}

/* The first-seen id of a key >= 0; -1 when memory runs out, -2 for a key out of range. */
static int32_t intern_one(Interner *t, int64_t key) {
    if (key >= V6_BASE) {
        if (key - V6_BASE >= INT32_MAX) return -2; /* not an IPv6 index the reader gives */
        size_t idx = (size_t)(key - V6_BASE);
        if (idx >= t->v6_size) {
            size_t size = t->v6_size ? t->v6_size : 64;
            while (size <= idx) size *= 2;
            int32_t *v6 = realloc(t->v6, size * sizeof *v6);
            if (!v6) return -1;
            memset(v6 + t->v6_size, 0xFF, (size - t->v6_size) * sizeof *v6);
            t->v6 = v6;
            t->v6_size = size;
        }
        if (t->v6[idx] < 0) t->v6[idx] = new_id(t, key);
        return t->v6[idx];
    }
    uint32_t k = (uint32_t)key;
    size_t j = slot_of(k, t->mask);
    while (t->e[j].id >= 0) {
        if (t->e[j].key == k) return t->e[j].id;
        j = (j + 1) & t->mask;
    }
    int32_t id = new_id(t, key);
    if (id < 0) return -1;
    t->e[j].key = k;
    t->e[j].id = id;
    /* Keep the table at most half full. */
    if (t->count * 2 > t->mask + 1 && table_alloc(t, (t->mask + 1) * 2) < 0) return -1;
    return id;
}

static const int64_t *sort_keys; /* the keys qsort compares ids by (set under the GIL) */

static int cmp_ids(const void *a, const void *b) {
    int64_t x = sort_keys[*(const int32_t *)a], y = sort_keys[*(const int32_t *)b];
    return (x > y) - (x < y);
}

/* intern(src_keys, dst_keys, src_ids, dst_ids) -> (IPv4 texts, other keys, IPv4 numbers as
 * native-endian uint32 bytes), all sorted.
 * Keys (int64, -1 = none) become their rank among the distinct keys, as np.unique +
 * searchsorted give it; -1 stays -1. One hash lookup per key gives first-seen ids, which a
 * small table then turns into ranks. */
static PyObject *intern_keys(PyObject *self, PyObject *args) {
    PyObject *objs[4];
    if (!PyArg_ParseTuple(args, "OOOO", &objs[0], &objs[1], &objs[2], &objs[3])) return NULL;
    Py_buffer v[4];
    int got = 0;
    PyObject *result = NULL, *texts = NULL, *others = NULL, *numbers = NULL;
    Interner t;
    memset(&t, 0, sizeof t);
    int32_t *order = NULL, *rank = NULL;
    if (PyObject_GetBuffer(objs[0], &v[0], PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return NULL;
    got = 1;
    Py_ssize_t n = v[0].len / 8;
    if (v[0].itemsize != 8) {
        PyErr_SetString(PyExc_ValueError, "intern: keys must be int64");
        goto done;
    }
    if (get_array(objs[1], &v[1], 8, n, "intern") < 0) goto done;
    got = 2;
    if (get_array(objs[2], &v[2], 4, n, "intern") < 0) goto done;
    got = 3;
    if (get_array(objs[3], &v[3], 4, n, "intern") < 0) goto done;
    got = 4;
    if (table_alloc(&t, 1024) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    int failed = 0;
    size_t count = 0;
    Py_BEGIN_ALLOW_THREADS;
    for (int side = 0; side < 2 && !failed; side++) {
        const int64_t *k = (const int64_t *)v[side].buf;
        int32_t *out = (int32_t *)v[side + 2].buf;
        int64_t last = -1;
        int32_t last_id = -1;
        for (Py_ssize_t i = 0; i < n; i++) {
            /* Consecutive frames mostly repeat an address: skip the hash for a repeat. */
            if (k[i] != last) {
                last = k[i];
                last_id = k[i] < 0 ? -1 : intern_one(&t, k[i]);
                if (k[i] >= 0 && last_id < 0) {
                    failed = last_id == -2 ? 2 : 1;
                    break;
                }
            }
            out[i] = last_id;
        }
    }
    count = t.count;
    if (!failed) {
        order = malloc((count ? count : 1) * sizeof *order);
        rank = malloc((count ? count : 1) * sizeof *rank);
        failed = !order || !rank;
    }
    Py_END_ALLOW_THREADS;
    if (failed == 2) {
        PyErr_SetString(PyExc_ValueError, "intern: a key above 2^32 + 2^31");
        goto done;
    }
    if (failed) {
        PyErr_NoMemory();
        goto done;
    }
    for (size_t r = 0; r < count; r++) order[r] = (int32_t)r;
    sort_keys = t.keys; /* qsort has no context argument in C11; the GIL guards this global */
    qsort(order, count, sizeof *order, cmp_ids);
    sort_keys = NULL;
    for (size_t r = 0; r < count; r++) rank[order[r]] = (int32_t)r;
    Py_BEGIN_ALLOW_THREADS;
    for (int side = 0; side < 2; side++) {
        int32_t *out = (int32_t *)v[side + 2].buf;
        for (Py_ssize_t i = 0; i < n; i++)
            if (out[i] >= 0) out[i] = rank[out[i]];
    }
    Py_END_ALLOW_THREADS;
    /* Sorted, so the IPv4 keys (< 2^32) come first: their text is made here, where it is
     * cheap; the other keys (IPv6 ids) go back as numbers for Python to name. */
    size_t v4 = 0;
    while (v4 < count && t.keys[order[v4]] < V6_BASE) v4++;
    texts = PyList_New((Py_ssize_t)v4);
    others = PyList_New((Py_ssize_t)(count - v4));
    numbers = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(v4 * sizeof(uint32_t)));
    if (!texts || !others || !numbers) goto done;
    for (size_t r = 0; r < v4; r++) {
        uint32_t a = (uint32_t)t.keys[order[r]];
        memcpy(PyBytes_AS_STRING(numbers) + r * sizeof a, &a, sizeof a);
    }
    for (size_t r = 0; r < count; r++) {
        int64_t key = t.keys[order[r]];
        PyObject *item;
        if (r < v4) {
            char text[16];
            uint32_t a = (uint32_t)key;
            int len = snprintf(text, sizeof text, "%u.%u.%u.%u", a >> 24, (a >> 16) & 0xFF,
                               (a >> 8) & 0xFF, a & 0xFF);
            item = PyUnicode_FromStringAndSize(text, len);
        } else {
            item = PyLong_FromLongLong(key);
        }
        if (!item) goto done;
        PyList_SET_ITEM(r < v4 ? texts : others, (Py_ssize_t)(r < v4 ? r : r - v4), item);
    }
    result = PyTuple_Pack(3, texts, others, numbers);
done:
    Py_XDECREF(texts);
    Py_XDECREF(others);
    Py_XDECREF(numbers);
    free(order);
    free(rank);
    free(t.e);
    free(t.v6);
    free(t.keys);
    for (int k = 0; k < got; k++) PyBuffer_Release(&v[k]);
    return result;
}



/* --- IPv6 addresses of decoded frames ------------------------------------------------------- */

/* A 128-bit address's hash: every input bit reaches the low bits the table uses (addresses of
 * one network differ in their last bytes only). */
static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 31;
    x *= 0x7FB5D329728EA185ull;
    x ^= x >> 27;
    x *= 0x81DADEF4BC2DD44Dull;
    x ^= x >> 33;
    return x;
}
static inline uint64_t addr_hash(uint64_t hi, uint64_t lo) { return mix64(hi ^ mix64(lo)); }

/* intern6(buf, src, dst, done) -> bytes: the keys decode() left as -2 - offset (IPv6 addresses
 * in rows it decoded) become 2^32 + the address's index in first-seen order, and the distinct
 * addresses come back concatenated, 16 bytes each, in that order. A hash table of 128-bit keys:
 * one probe per row, no sort. */
static PyObject *intern6(PyObject *self, PyObject *args) {
    PyObject *bufobj, *srcobj, *dstobj, *doneobj;
    if (!PyArg_ParseTuple(args, "OOOO", &bufobj, &srcobj, &dstobj, &doneobj)) return NULL;
    Py_buffer buf, sv, dv, donev;
    int have = 0;
    PyObject *result = NULL;
    uint8_t *addrs = NULL;
    int32_t *table = NULL;
    if (PyObject_GetBuffer(bufobj, &buf, PyBUF_SIMPLE) < 0) return NULL;
    have = 1;
    if (PyObject_GetBuffer(doneobj, &donev, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) goto done;
    have = 2;
    Py_ssize_t n = donev.len;
    if (get_array(srcobj, &sv, 8, n, "intern6") < 0) goto done;
    have = 3;
    if (get_array(dstobj, &dv, 8, n, "intern6") < 0) goto done;
    have = 4;
    {
        int64_t *keys[2] = {(int64_t *)sv.buf, (int64_t *)dv.buf};
        const uint8_t *dn = (const uint8_t *)donev.buf, *b = (const uint8_t *)buf.buf;
        size_t cap = 1024, count = 0, acap = 256;
        table = (int32_t *)malloc(cap * sizeof(int32_t));
        addrs = (uint8_t *)malloc(acap * 16);
        if (!table || !addrs) {
            PyErr_NoMemory();
            goto done;
        }
        memset(table, 0xFF, cap * sizeof(int32_t));
        for (Py_ssize_t i = 0; i < n; i++) {
            if (!dn[i]) continue;
            for (int side = 0; side < 2; side++) {
                int64_t k = keys[side][i];
                if (k > -2) continue;
                int64_t at = -2 - k;
                if (at < 0 || at > buf.len - 16) {
                    PyErr_SetString(PyExc_ValueError, "intern6: address offset out of range");
                    goto done;
                }
                const uint8_t *a = b + at;
                uint64_t hi, lo;
                memcpy(&hi, a, 8);
                memcpy(&lo, a + 8, 8);
                size_t slot = (size_t)addr_hash(hi, lo) & (cap - 1);
                int32_t id;
                for (;;) {
                    id = table[slot];
                    if (id < 0 || memcmp(addrs + (size_t)id * 16, a, 16) == 0) break;
                    slot = (slot + 1) & (cap - 1);
                }
                if (id < 0) {
                    if (count >= INT32_MAX - 1) {
                        PyErr_SetString(PyExc_ValueError, "intern6: too many addresses");
                        goto done;
                    }
                    if (count == acap) {
                        uint8_t *grown = (uint8_t *)realloc(addrs, acap * 2 * 16);
                        if (!grown) {
                            PyErr_NoMemory();
                            goto done;
                        }
                        addrs = grown;
                        acap *= 2;
                    }
                    memcpy(addrs + count * 16, a, 16);
                    id = (int32_t)count++;
                    table[slot] = id;
                    if (count * 2 > cap) { /* keep the table at most half full */
                        size_t ncap = cap * 2;
                        int32_t *nt = (int32_t *)malloc(ncap * sizeof(int32_t));
                        if (!nt) {
                            PyErr_NoMemory();
                            goto done;
                        }
                        memset(nt, 0xFF, ncap * sizeof(int32_t));
                        for (size_t j = 0; j < count; j++) {
                            uint64_t xh, xl;
                            memcpy(&xh, addrs + j * 16, 8);
                            memcpy(&xl, addrs + j * 16 + 8, 8);
                            size_t t = (size_t)addr_hash(xh, xl) & (ncap - 1);
                            while (nt[t] >= 0) t = (t + 1) & (ncap - 1);
                            nt[t] = (int32_t)j;
                        }
                        free(table);
                        table = nt;
                        cap = ncap;
                    }
                }
                keys[side][i] = V6_BASE + id;
            }
        }
        result = PyBytes_FromStringAndSize((const char *)addrs, (Py_ssize_t)(count * 16));
    }
done:
    free(table);
    free(addrs);
    if (have >= 4) PyBuffer_Release(&dv);
    if (have >= 3) PyBuffer_Release(&sv);
    if (have >= 2) PyBuffer_Release(&donev);
    PyBuffer_Release(&buf);
    return result;
}

static PyMethodDef methods[] = {
    {"pcap_walk", pcap_walk, METH_VARARGS, "Walk pcap record headers (count, or fill arrays)."},
    {"pcapng_walk", pcapng_walk, METH_VARARGS, "Walk consecutive pcapng packet blocks."},
    {"decode", decode, METH_VARARGS, "Decode the frames of common layout into the columns."},
    {"intern", intern_keys, METH_VARARGS, "Address keys to ranks among the distinct keys."},
    {"intern6", intern6, METH_VARARGS, "IPv6 address offsets of decoded rows to dense keys."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tracer.pcap._native",
    .m_doc = "Compiled kernels of the capture reader (see _native.c).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&module); }
