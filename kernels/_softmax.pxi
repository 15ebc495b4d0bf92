# Shared by _activation.pyx (softmax, log-softmax) and _loss.pyx (cross-entropy), included
# textually (inline helpers only, no state): the float32 exponential, the (outer, K, inner) unit
# layout and the column maxima and shifted exponentials that all three start with.  The including
# module cimports ``floating`` and libc.math's ``exp``.
#
# float32 exponentials use ``cnn_expf`` below, a Cephes-style polynomial that the compiler
# vectorises (within 2 ulp of exp over the float range, checked by the tests); float64 uses libm's
# ``exp``.  A unit is (o, columns i0 .. i0+L) with L <= COLS of an (outer, K, inner) view; its
# pointers point at element (o, 0, i0), and row k of the unit starts at k * inner.

cdef extern from *:
    """
    #include <math.h>
    #include <string.h>
    /* exp(x) in float32: Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, Cephes' degree-6
       polynomial for e^r, and 2^n built in the exponent bits.  Branch-free (vectorisable).
       Results below FLT_MIN flush to 0; above FLT_MAX give inf; NaN gives NaN. */
    static inline float cnn_expf(float x) {
        float xc = x > -87.33654f ? x : -87.33654f;   /* also maps NaN to a finite value */
        xc = xc < 88.72283f ? xc : 88.72283f;
        float n = rintf(xc * 1.44269504088896341f);
        float r = xc - n * 0.693359375f;
        r = r - n * -2.12194440e-4f;
        float p = 1.9875691500e-4f;
        p = p * r + 1.3981999507e-3f;
        p = p * r + 8.3334519073e-3f;
        p = p * r + 4.1665795894e-2f;
        p = p * r + 1.6666665459e-1f;
        p = p * r + 5.0000001201e-1f;
        p = p * r * r + r + 1.0f;
        int ni = (int) n;                       /* in [-126, 128] */
        int big = ni > 127;                     /* 2^128 = 2 * 2^127 */
        ni -= big;
        p = big ? p * 2.0f : p;
        int bits = (ni + 127) << 23;
        float s;
        memcpy(&s, &bits, sizeof s);
        float res = p * s;
        res = x < -87.33654f ? 0.0f : res;
        res = x > 88.72283f ? INFINITY : res;
        return x != x ? x : res;
    }
    """
    float cnn_expf(float x) noexcept nogil


cdef inline floating fexp(floating x) noexcept nogil:
    if floating is float:
        return cnn_expf(x)
    else:
        return exp(x)


cdef enum:
    COLS = 256      # inner columns per softmax unit (its per-column buffers live on the stack)


cdef void column_max(const floating* x, floating* mx, Py_ssize_t K, Py_ssize_t inner,
                     Py_ssize_t L) noexcept nogil:
    # mx[i] = max over k of x[k*inner + i]; a NaN anywhere makes the result NaN downstream (a NaN
    # in row 0 stays, a later one loses every comparison but poisons the exponentials)
    cdef Py_ssize_t k, i
    cdef const floating* xr
    for i in range(L):
        mx[i] = x[i]
    for k in range(1, K):
        xr = x + k * inner
        for i in range(L):
            mx[i] = xr[i] if xr[i] > mx[i] else mx[i]


cdef inline void shifted_exp_sums(const floating* x, floating* y, floating* mx, double* sm,
                                  Py_ssize_t K, Py_ssize_t inner, Py_ssize_t L) noexcept nogil:
    # mx[i] = max over k of x[k*inner + i]; y[k*inner + i] = exp(x[k*inner + i] - mx[i]);
    # sm[i] = sum over k of those exponentials (accumulated in double).  The first half of
    # softmax, log-softmax and cross-entropy alike.
    cdef Py_ssize_t k, i
    cdef const floating* xr
    cdef floating* yr
    cdef floating e
    column_max(x, mx, K, inner, L)
    for i in range(L):
        sm[i] = 0
    for k in range(K):
        xr = x + k * inner
        yr = y + k * inner
        for i in range(L):
            e = fexp(xr[i] - mx[i])
            yr[i] = e
            sm[i] += e


cdef inline Py_ssize_t units_of(Py_ssize_t outer, Py_ssize_t inner) noexcept nogil:
    return outer * ((inner + COLS - 1) // COLS)


def _three_d(shape, axis):
    outer = int(np.prod(shape[:axis], dtype=np.int64))
    inner = int(np.prod(shape[axis + 1 :], dtype=np.int64))
    return outer, int(shape[axis]), inner
