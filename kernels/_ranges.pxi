# Index ranges shared by the CPU kernels (included, not imported: inline and nogil).

cdef inline Py_ssize_t ceil_div(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    # ceil(a / b) for b > 0 and any sign of a
    if a >= 0:
        return (a + b - 1) // b
    return -((-a) // b)


cdef inline Py_ssize_t floor_div(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    # floor(a / b) for b > 0 and any sign of a
    return -ceil_div(-a, b)


# Outputs o in [out_lo(..), out_hi(..)) read input position o*stride + offset inside [0, size).
# (Plain return values, not pointers: an address-taken variable inside prange is not private.)
cdef inline Py_ssize_t out_lo(Py_ssize_t offset, Py_ssize_t stride) noexcept nogil:
    cdef Py_ssize_t a = ceil_div(-offset, stride)
    return a if a > 0 else 0


cdef inline Py_ssize_t out_hi(Py_ssize_t offset, Py_ssize_t size, Py_ssize_t stride,
                              Py_ssize_t n_out) noexcept nogil:
    cdef Py_ssize_t b = ceil_div(size - offset, stride)
    cdef Py_ssize_t a = out_lo(offset, stride)
    if b > n_out:
        b = n_out
    return b if b > a else a
