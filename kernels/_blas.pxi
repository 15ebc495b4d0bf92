# Transitional: code written against the old textual include keeps building, and now shares the
# one BLAS state of the _blas extension.  New code writes the cimport itself:
#     from ._blas cimport gemm_rm, pgemm_rm
from ._blas cimport _gemm_parts, gemm_rm, pgemm_rm
