# cython: language_level=3
"""A NumPy memory handler (NEP 49) that keeps freed large blocks for reuse (``buffers.py``).

Every block starts with a 64-byte header, so the data start on a 64-byte line.  Blocks under
POOL_MIN bytes come from ``posix_memalign`` and go back to ``free``.  Larger ones are mapped
(``mmap``, with MADV_HUGEPAGE from 4 MiB) in size classes (64 KiB steps below 4 MiB, 2 MiB steps
above) and, when freed, kept in a most-recently-freed-first list while the kept bytes stay within
the limit (the oldest are unmapped first); an allocation takes back the smallest kept block of
its class or up to twice its class, the pages already faulted in.  The handler is only in force
where ``enter`` put it (a context variable of NumPy's), and every array it allocated remembers
it, so frees come back here.
"""

cimport numpy as cnp

cnp.import_array()

cdef extern from *:
    """
    #include <errno.h>
    #include <pthread.h>
    #include <stdint.h>
    #include <stdlib.h>
    #include <string.h>
    #include <sys/mman.h>

    #define CB_HEADER 64                 /* bytes before the data: data on 64-byte lines */
    #define CB_POOL_MIN ((size_t)1 << 20) /* blocks from 1 MiB (header included) are pooled */
    #define CB_HUGE ((size_t)4 << 20)     /* from 4 MiB: 2 MiB classes and MADV_HUGEPAGE */
    #define CB_MAGIC_HEAP 0x6e6e63626865617dULL
    #define CB_MAGIC_MAPPED 0x6e6e63626d617021ULL

    typedef struct cb_block {
        uint64_t magic;
        size_t size;             /* bytes asked for */
        size_t mapped;           /* mapped bytes, header included (the size class); 0: heap */
        struct cb_block* prev;   /* in the list of kept blocks */
        struct cb_block* next;
    } cb_block;

    static pthread_mutex_t cb_lock = PTHREAD_MUTEX_INITIALIZER;
    static cb_block* cb_head = NULL;     /* kept blocks, most recently freed first */
    static cb_block* cb_tail = NULL;
    static size_t cb_limit = 0;          /* most bytes kept */
    static size_t cb_kept = 0, cb_kept_blocks = 0, cb_live = 0, cb_live_blocks = 0;
    static size_t cb_hits = 0, cb_misses = 0, cb_foreign = 0;

    static size_t cb_class(size_t size) {
        /* mapped bytes for size data bytes: 0 for the heap, SIZE_MAX when too large */
        size_t need, step;
        if (size > SIZE_MAX - ((size_t)4 << 20)) return SIZE_MAX;
        need = size + CB_HEADER;
        if (need < CB_POOL_MIN) return 0;
        step = need >= CB_HUGE ? ((size_t)2 << 20) : ((size_t)64 << 10);
        return (need + step - 1) / step * step;
    }

    static void cb_unlink(cb_block* b) {  /* under cb_lock */
        if (b->prev) b->prev->next = b->next; else cb_head = b->next;
        if (b->next) b->next->prev = b->prev; else cb_tail = b->prev;
        b->prev = b->next = NULL;
        cb_kept -= b->mapped;
        cb_kept_blocks -= 1;
    }

    static cb_block* cb_trim_locked(size_t keep) {
        /* unlink the oldest kept blocks until at most keep bytes are kept; returns them as a
           list (through next) to unmap outside the lock */
        cb_block* out = NULL;
        while (cb_tail && cb_kept > keep) {
            cb_block* b = cb_tail;
            cb_unlink(b);
            b->next = out;
            out = b;
        }
        return out;
    }

    static void cb_unmap(cb_block* b) {
        while (b) {
            cb_block* next = b->next;
            munmap((void*)b, b->mapped);
            b = next;
        }
    }

    static void* cb_alloc(size_t size, int* fresh) {
        /* data of size bytes; *fresh: 1 when the bytes are known to be zero */
        size_t cls = cb_class(size);
        cb_block* b;
        void* p;
        *fresh = 0;
        if (cls == SIZE_MAX) return NULL;
        if (cls == 0) {
            if (posix_memalign(&p, 64, size + CB_HEADER)) return NULL;
            b = (cb_block*)p;
            b->magic = CB_MAGIC_HEAP;
            b->size = size;
            b->mapped = 0;
            return (char*)p + CB_HEADER;
        }
        pthread_mutex_lock(&cb_lock);
        {   /* the smallest kept block of at least cls bytes, at most twice that (best fit) */
            cb_block* c;
            b = NULL;
            for (c = cb_head; c; c = c->next)
                if (c->mapped >= cls && c->mapped / 2 <= cls && (!b || c->mapped < b->mapped)) {
                    b = c;
                    if (c->mapped == cls) break;
                }
        }
        if (b) {
            cb_unlink(b);
            cb_hits += 1;
        } else {
            cb_misses += 1;
        }
        pthread_mutex_unlock(&cb_lock);
        if (!b) {
            p = mmap(NULL, cls, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED) {   /* give the kept blocks back and try once more */
                cb_block* old;
                pthread_mutex_lock(&cb_lock);
                old = cb_trim_locked(0);
                pthread_mutex_unlock(&cb_lock);
                cb_unmap(old);
                p = mmap(NULL, cls, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                if (p == MAP_FAILED) return NULL;
            }
    #ifdef MADV_HUGEPAGE
            if (cls >= CB_HUGE) madvise(p, cls, MADV_HUGEPAGE);
    #endif
            b = (cb_block*)p;
            b->magic = CB_MAGIC_MAPPED;
            b->mapped = cls;
            b->prev = b->next = NULL;
            *fresh = 1;
        }
        b->size = size;
        pthread_mutex_lock(&cb_lock);
        cb_live += b->mapped;
        cb_live_blocks += 1;
        pthread_mutex_unlock(&cb_lock);
        return (char*)b + CB_HEADER;
    }

    static void cb_release(void* data) {
        cb_block* b;
        cb_block* old = NULL;
        if (!data) return;
        b = (cb_block*)((char*)data - CB_HEADER);
        if (b->magic == CB_MAGIC_HEAP) {
            b->magic = 0;
            free((void*)b);
            return;
        }
        pthread_mutex_lock(&cb_lock);
        if (b->magic != CB_MAGIC_MAPPED) {   /* not ours: leave it alone (cannot happen) */
            cb_foreign += 1;
            pthread_mutex_unlock(&cb_lock);
            return;
        }
        cb_live -= b->mapped;
        cb_live_blocks -= 1;
        if (b->mapped <= cb_limit) {
            old = cb_trim_locked(cb_limit - b->mapped);
            b->prev = NULL;
            b->next = cb_head;
            if (cb_head) cb_head->prev = b; else cb_tail = b;
            cb_head = b;
            cb_kept += b->mapped;
            cb_kept_blocks += 1;
            b = NULL;
        }
        pthread_mutex_unlock(&cb_lock);
        cb_unmap(old);
        if (b) munmap((void*)b, b->mapped);
    }

    static void* cb_malloc(void* ctx, size_t size) {
        int fresh;
        (void)ctx;
        return cb_alloc(size, &fresh);
    }

    static void* cb_calloc(void* ctx, size_t nelem, size_t elsize) {
        int fresh;
        void* p;
        (void)ctx;
        if (elsize && nelem > SIZE_MAX / elsize) return NULL;
        p = cb_alloc(nelem * elsize, &fresh);
        if (p && !fresh) memset(p, 0, nelem * elsize);
        return p;
    }

    static void* cb_realloc(void* ctx, void* data, size_t size) {
        int fresh;
        void* p;
        size_t old;
        (void)ctx;
        if (!data) return cb_alloc(size, &fresh);
        old = ((cb_block*)((char*)data - CB_HEADER))->size;
        p = cb_alloc(size, &fresh);
        if (!p) return NULL;
        memcpy(p, data, old < size ? old : size);
        cb_release(data);
        return p;
    }

    static void cb_free(void* ctx, void* data, size_t size) {
        (void)ctx;
        (void)size;  /* the header knows (NumPy's size may differ, e.g. for empty arrays) */
        cb_release(data);
    }

    static PyDataMem_Handler cb_handler = {
        "cnncore_buffers",
        1,
        {NULL, cb_malloc, cb_calloc, cb_realloc, cb_free}
    };

    static PyObject* cb_capsule(void) {
        return PyCapsule_New((void*)&cb_handler, "mem_handler", NULL);
    }

    static void cb_set_limit(size_t limit) {
        cb_block* old;
        pthread_mutex_lock(&cb_lock);
        cb_limit = limit;
        old = cb_trim_locked(limit);
        pthread_mutex_unlock(&cb_lock);
        cb_unmap(old);
    }

    static void cb_stats(size_t* out) {
        pthread_mutex_lock(&cb_lock);
        out[0] = cb_limit; out[1] = cb_kept; out[2] = cb_kept_blocks; out[3] = cb_live;
        out[4] = cb_live_blocks; out[5] = cb_hits; out[6] = cb_misses; out[7] = cb_foreign;
        pthread_mutex_unlock(&cb_lock);
    }
    """
    object cb_capsule()
    void cb_set_limit(size_t limit) nogil
    void cb_stats(size_t* out) nogil
    size_t CB_POOL_MIN
    size_t CB_HEADER


HANDLER = cb_capsule()      # the capsule NumPy takes: PyDataMem_SetHandler(HANDLER)
NAME = "cnncore_buffers"    # np.lib.array_utils / get_handler_name reports this for our arrays
POOL_MIN = CB_POOL_MIN      # blocks of at least this many bytes (header included) are pooled
HEADER = CB_HEADER


def enter():
    """Make this handler NumPy's for the current context; returns the previous one (for
    ``leave``)."""
    return cnp.PyDataMem_SetHandler(HANDLER)


def leave(previous):
    """Give the context back the handler ``enter`` returned."""
    cnp.PyDataMem_SetHandler(previous)


def set_limit(size_t limit):
    """Keep at most ``limit`` bytes of freed blocks (unmapping the oldest beyond it now)."""
    cb_set_limit(limit)


def stats():
    """dict: limit, kept_bytes, kept_blocks, live_bytes, live_blocks (mapped blocks in use),
    hits, misses (mapped allocations served from the kept blocks / newly mapped), foreign
    (frees of blocks that were not ours; always 0)."""
    cdef size_t out[8]
    cb_stats(out)
    keys = ("limit", "kept_bytes", "kept_blocks", "live_bytes", "live_blocks", "hits", "misses",
            "foreign")
    return {k: int(out[i]) for i, k in enumerate(keys)}
