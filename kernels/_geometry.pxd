# The output length of a sliding window (convolution, pooling) along one axis, for the Cython
# twins; kernels/geometry.py (out_size) is the same rule for Python, and a test holds them equal.
#
#   from cnncore_kernels._geometry cimport out_size
#
# out = floor((size + 2*padding - dilation*(kernel - 1) - 1) / stride) + 1 (PyTorch's rule with
# ceil_mode=False; 0 or less: the window does not fit).  Floor division, also for a negative
# numerator, although the module is compiled with cdivision (C's truncating division).
# Inline only: cimporting it adds no import at run time.


cdef inline Py_ssize_t out_size(Py_ssize_t size, Py_ssize_t kernel, Py_ssize_t stride,
                                Py_ssize_t padding, Py_ssize_t dilation) noexcept nogil:
    cdef Py_ssize_t span = size + 2 * padding - dilation * (kernel - 1) - 1
    cdef Py_ssize_t q = span // stride
    if q * stride > span:  # C rounded a negative quotient towards zero
        q -= 1
    return q + 1
