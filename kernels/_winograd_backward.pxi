# Included by _winograd.pyx (one extension only): the backward of a convolution with few input
# channels, dx, dweight and dbias from one pass over dy.  Inputs are trusted (built and checked
# by ``cnncore_kernels.winograd.conv2d_backward_fused``).
#
# The forward F(m x m, r x r) computes y_k = A^T [sum_c U_kc * V_c] A per tile, with
# U_kc = G w_kc G^T and V_c = B^T x_c B.  Its adjoint, per output tile, with the same matrices:
#   Z_k = A dy_k A^T                      (alpha x alpha, from the tile's m x m outputs of dy)
#   dW_kc += G^T [Z_k * V_c] G            (summed over all tiles, in the transformed domain)
#   dx_c  += B [sum_k U_kc * Z_k] B^T     (added onto the tile's alpha x alpha inputs)
#   db_k  += Z_k[1, 1]                    (the point 1: A's row of ones, the tile's sum of dy)
# So dy is read and transformed once, by the cheap A (4 columns: pair sums of the symmetric
# points), and the three gradients share it; with few input channels (C) the products per
# point are C-long updates, run as vector loops over the tiles (``wg_bwd_products``), no GEMMs.
#
# Order of work, per block of whole tile rows of one image (the threads' unit) and sub-block of
# SB = 64 tiles: V of the sub-block's x tiles; then four filters at a time, their Z (transformed
# chunk by chunk of 16 tiles), and the products: the weight gradient's 4 x 3 per-lane sums kept
# in registers over the sub-block's tiles and added to the thread's (K', alpha^2, C, lanes)
# accumulator (reduced over lanes and threads once, at the end, and transformed by G^T in
# float64: ``weight_grad_from_points``), and E = sum_k U_k * Z_k for the sub-block, summed 64
# filters at a time into its total; then B E B^T added onto dx.  Overlapping tiles add onto
# the same inputs, so the blocks of each image run in two phases (even, then odd blocks), with
# enough rows per block (chosen by the caller) that blocks two apart never touch the same input
# row.  The results are repeatable for a given thread count (static schedules; thread shares
# summed in thread order).
#
# Memory bound, per thread: (3 C + 4) * (64 alpha^2 + 64) elements (V, E, E's total and Z of a
# sub-block) and K' * (alpha^2 * C + 1) * lanes accumulator elements (K' = K rounded up to a
# multiple of 4; lanes: one vector, 16 float32 in the x86-64-v4 build, else 8, and 4 float64);
# plus alpha^2 * K * C for the reduced sums: for K = 64, C = 3, alpha = 8 in float32,
# 0.22 + 0.79 MB per thread (0.4 with 8 lanes).  Nothing scales with the image or the batch.

cdef extern from *:
    """
    /* The element-wise stage of the fused backward for four filters k_q (q < 4) and a sub-block
       of nt tiles (a multiple of the vector width), for the P = alpha^2 points p and the C input
       channels c.  z: Z_{k_q} as (4, P, zs); v, e: (C, P, zs); u[q][p*us + c] = U[p, k_q, c];
       acc[q]: (P, C, lanes).
         dweight (dw): acc[q][p, c, l] += sum_t z[q, p, t] * v[c, p, t]  (t = l mod lanes)
         dx (dx):      e[c, p, t] += sum_q u[q][p*us + c] * z[q, p, t]  (pairwise over q: the
                       plain running sum over 512 filters raised F(2,5)'s float32 error of dx
                       above its bound)
       Per point and group of up to three channels, one run over the sub-block's tiles does both
       gradients: each vector of the four z is loaded once into a register and used by both
       products (WG_KEEP: otherwise GCC folds the loads into each product as a memory operand,
       reading z again per channel; with separate runs for dweight and dx, z was read 1 + C
       times for C <= 3: the one run is 1.02-1.03x on 3-channel layers, level on 8 channels,
       results bit-identical).  For the weight gradient, the 4 x 3 per-lane sums stay in
       registers over the sub-block's tiles and are added to acc once (per chunk of 16 tiles
       instead, the accumulators' loads and stores bound the loop, and at 0.4 MB per thread
       they did not stay in L1 or L2).  With fresh, dx writes e instead of adding to it: the
       first four filters of each KSUM, so that E needs no zeroing (with the zeroing of E and
       its total gone, the (64,3,32,32)->64 5x5 backward 1.017x, dx 1.03x, in-process A/B over
       2400-3400 pairs; bit-identical).  Instantiated for each channel count up to 8 (the loops
       over c unroll) and each combination of flags. */
    #if defined(__AVX__)
    #define WG_KEEP(x) __asm__("" : "+v"(x))
    #else
    #define WG_KEEP(x) ((void)0)
    #endif
    #define WG_BWD_PRODUCTS(NAME, T, V)                                                          \
    static inline __attribute__((always_inline)) void NAME##_c(                                 \
            const T* z, Py_ssize_t P, Py_ssize_t zs, Py_ssize_t vs, Py_ssize_t nt, const T* v,  \
            T* e, const T* const* u, Py_ssize_t us, Py_ssize_t C, T* const* acc, int dw,         \
            int dx, int fresh) {                                                                 \
        enum { L = (int)(sizeof(V) / sizeof(T)) };                                               \
        const Py_ssize_t qs = vs;                                                                \
        for (Py_ssize_t p = 0; p < P; p++) {                                                     \
            const T* zp = z + p * zs;                                                            \
            for (Py_ssize_t c0 = 0; c0 < C; c0 += 3) {                                           \
                V a[4][3];                                                                       \
                T uu[3][4];                                                                      \
                for (int j = 0; j < 3; j++)                                                      \
                    for (int q = 0; q < 4; q++) {                                                \
                        a[q][j] = (V){0};                                                        \
                        uu[j][q] = (dx && c0 + j < C) ? u[q][p * us + c0 + j] : (T)0;           \
                    }                                                                            \
                for (Py_ssize_t t = 0; t < nt; t += L) {                                         \
                    V z0 = WG_LD(V, zp + t), z1 = WG_LD(V, zp + qs + t);                         \
                    V z2 = WG_LD(V, zp + 2 * qs + t), z3 = WG_LD(V, zp + 3 * qs + t);            \
                    WG_KEEP(z0); WG_KEEP(z1); WG_KEEP(z2); WG_KEEP(z3);                          \
                    for (int j = 0; j < 3; j++)                                                  \
                        if (c0 + j < C) {                                                        \
                            if (dw) {                                                            \
                                V w = WG_LD(V, v + (c0 + j) * vs + p * zs + t);                  \
                                WG_KEEP(w);                                                      \
                                a[0][j] += z0 * w; a[1][j] += z1 * w;                            \
                                a[2][j] += z2 * w; a[3][j] += z3 * w;                            \
                            }                                                                    \
                            if (dx) {                                                            \
                                T* ep = e + (c0 + j) * vs + p * zs + t;                          \
                                WG_ST(V, ep, (fresh ? (V){0} : WG_LD(V, ep))                     \
                                             + ((uu[j][0] * z0 + uu[j][1] * z1)                  \
                                                + (uu[j][2] * z2 + uu[j][3] * z3)));             \
                            }                                                                    \
                        }                                                                        \
                }                                                                                \
                if (dw)                                                                          \
                    for (int q = 0; q < 4; q++)                                                  \
                        for (int j = 0; j < 3; j++)                                              \
                            if (c0 + j < C) {                                                    \
                                T* o = acc[q] + (p * C + c0 + j) * L;                            \
                                WG_ST(V, o, WG_LD(V, o) + a[q][j]);                              \
                            }                                                                    \
            }                                                                                    \
        }                                                                                        \
    }                                                                                            \
    static void NAME(const T* z, Py_ssize_t P, Py_ssize_t zs, Py_ssize_t vs, Py_ssize_t nt,     \
                     const T* v, T* e, const T* const* u, Py_ssize_t us, Py_ssize_t C,           \
                     T* const* acc, int dw, int dx, int fresh) {                                 \
        int mode = (dw ? 1 : 0) + (dx ? 2 : 0);                                                  \
        if (mode == 0) /* the bias gradient only: no products */                                 \
            return;                                                                              \
        switch ((C * 4 + mode) * 2 + (dx && fresh)) {                                           \
        WG_BWD_CASES(NAME, 1) WG_BWD_CASES(NAME, 2) WG_BWD_CASES(NAME, 3)                        \
        WG_BWD_CASES(NAME, 4) WG_BWD_CASES(NAME, 5) WG_BWD_CASES(NAME, 6)                        \
        WG_BWD_CASES(NAME, 7) WG_BWD_CASES(NAME, 8)                                              \
        default: NAME##_c(z, P, zs, vs, nt, v, e, u, us, C, acc, dw, dx, fresh);                 \
        }                                                                                        \
    }
    #define WG_BWD_CASE(NAME, CC, DW, DX, F)                                                     \
        case (CC * 4 + DW + 2 * DX) * 2 + F:                                                     \
            NAME##_c(z, P, zs, vs, nt, v, e, u, us, CC, acc, DW, DX, F); break;
    #define WG_BWD_CASES(NAME, CC)                                                               \
        WG_BWD_CASE(NAME, CC, 1, 0, 0) WG_BWD_CASE(NAME, CC, 0, 1, 0)                            \
        WG_BWD_CASE(NAME, CC, 0, 1, 1) WG_BWD_CASE(NAME, CC, 1, 1, 0)                            \
        WG_BWD_CASE(NAME, CC, 1, 1, 1)
    WG_BWD_PRODUCTS(wg_bwd_products_f, float, wg_vwf)
    WG_BWD_PRODUCTS(wg_bwd_products_d, double, wg_vd)
    /* dst[i] += src[i] for i < n (no overlap: a tile's row in dx, from a local buffer); the
       whole rows of 8 and 6 values by fixed-length code */
    #define WG_ADD_RUN(NAME, T)                                                                  \
    static inline void NAME##_n(T* restrict dst, const T* restrict src, int n) {                \
        for (int i = 0; i < n; i++)                                                              \
            dst[i] += src[i];                                                                    \
    }                                                                                            \
    static inline void NAME(T* restrict dst, const T* restrict src, Py_ssize_t n) {             \
        if (n == 8)                                                                              \
            NAME##_n(dst, src, 8);                                                               \
        else if (n == 6)                                                                         \
            NAME##_n(dst, src, 6);                                                               \
        else                                                                                     \
            NAME##_n(dst, src, (int)n);                                                          \
    }
    WG_ADD_RUN(wg_add_run_f, float)
    WG_ADD_RUN(wg_add_run_d, double)
    /* One row of g tiles of 8 values side by side 4 apart (F(4,5): alpha 8, m 4), row u at
       row + u*ps: their overlapping sums as one run of 4g + 4 values, comb[4v + j] =
       row_v[j] + row_{v-1}[4 + j], so that dx gets one add per value and row instead of one per
       tile (adding tile after tile, each 8-value add read the 4 values the previous tile's add
       had just stored: a store-to-load forward across two stores, which stalled) */
    #define WG_COMBINE_ROW8(NAME, T, V)                                                          \
    static inline void NAME(const T* row, Py_ssize_t ps, Py_ssize_t g, T* comb) {               \
        V prev = (V){0};                                                                         \
        for (Py_ssize_t v = 0; v < g; v++) {                                                     \
            WG_ST(V, comb + 4 * v, WG_LD(V, row + v * ps) + prev);                              \
            prev = WG_LD(V, row + v * ps + 4);                                                   \
        }                                                                                        \
        WG_ST(V, comb + 4 * g, prev);                                                            \
    }
    WG_COMBINE_ROW8(wg_combine_row8_f, float, wg_v4f)
    WG_COMBINE_ROW8(wg_combine_row8_d, double, wg_v4d)
    /* Z = A dy A^T of one chunk of m x m = 4 x 4 dy tiles, A (alpha x 4) the transpose of A^T of
       F(4,3) (alpha 6) or F(4,5) (alpha 8): d[(i*4 + j)*WG_CH + t] -> z[(a*alpha + b)*zs + t],
       both 1-D passes in registers, each by pair sums of the symmetric points: the rows
       [1, x, x^2, x^3] of x = +-1, +-2 (and +-1/2 for alpha 8) (through transform_chunk, twelve
       calls of 1-D passes and a round trip through memory per chunk: 1.02-1.04x on few-channel
       backwards, 8-16 interleaved rounds). */
    #define WG_ATT1(T, V, A, d0, d1, d2, d3, o) do {                                            \
            V e_, f_;                                                                            \
            (o)[0] = (d0);                                                                       \
            e_ = (d0) + (d2); f_ = (d1) + (d3); (o)[1] = e_ + f_; (o)[2] = e_ - f_;             \
            e_ = (d0) + (T)4 * (d2); f_ = (T)2 * (d1) + (T)8 * (d3);                             \
            (o)[3] = e_ + f_; (o)[4] = e_ - f_;                                                  \
            if ((A) == 8) {                                                                      \
                e_ = (d0) + (T)0.25 * (d2); f_ = (T)0.5 * (d1) + (T)0.125 * (d3);                \
                (o)[5] = e_ + f_; (o)[6] = e_ - f_;                                              \
            }                                                                                    \
            (o)[(A) - 1] = (d3);                                                                 \
        } while (0)
    /* both passes on one vector of tiles per dy value, d[i*4 + j] (V d[16]), into z */
    #define WG_ATT2D_PASSES(T, V, A, d, z, zs) do {                                             \
            V tmp_[8][4], o_[8];                                                                 \
            for (int j_ = 0; j_ < 4; j_++) {                                                     \
                V c_[8];                                                                         \
                WG_ATT1(T, V, A, (d)[j_], (d)[4 + j_], (d)[8 + j_], (d)[12 + j_], c_);           \
                for (int a_ = 0; a_ < (A); a_++)                                                 \
                    tmp_[a_][j_] = c_[a_];                                                       \
            }                                                                                    \
            for (int a_ = 0; a_ < (A); a_++) {                                                   \
                WG_ATT1(T, V, A, tmp_[a_][0], tmp_[a_][1], tmp_[a_][2], tmp_[a_][3], o_);        \
                for (int b_ = 0; b_ < (A); b_++)                                                 \
                    WG_ST(V, (z) + (a_ * (A) + b_) * (zs), o_[b_]);                              \
            }                                                                                    \
        } while (0)
    #define WG_ATT2D(NAME, T, V)                                                                 \
    static inline __attribute__((always_inline)) void NAME##_a(const T* d, T* z,                \
                                                               Py_ssize_t zs, int A) {          \
        enum { L = (int)(sizeof(V) / sizeof(T)) };                                               \
        for (int t = 0; t < WG_CH; t += L) {                                                     \
            V dv[16];                                                                            \
            for (int e = 0; e < 16; e++)                                                         \
                dv[e] = WG_LD(V, d + e * WG_CH + t);                                             \
            WG_ATT2D_PASSES(T, V, A, dv, z + t, zs);                                             \
        }                                                                                        \
    }                                                                                            \
    static void NAME(const T* d, T* z, Py_ssize_t zs, int A) {                                   \
        if (A == 8) NAME##_a(d, z, zs, 8); else NAME##_a(d, z, zs, 6);                           \
    }
    WG_ATT2D(wg_att2d_f, float, wg_vwf)
    WG_ATT2D(wg_att2d_d, double, wg_vd)
    #if defined(__AVX512F__)
    /* The same Z, float32, for a chunk of two runs of eight 4x4 dy tiles side by side (run e's
       rows at s[e] + i*rs, its tile u at column 4u), straight from dy's rows: per row and tile
       column j, the chunk's vector (16 tiles) is two two-register permutations (lane u <- column
       4u + j of each run) blended, kept in registers for the transform (with wg_gather8t4_f, the
       chunk went through memory in 32-byte halves that the transform's 64-byte loads waited
       for: 7% of the (64,3,32,32)->64 5x5 backward under perf, at that load). */
    #define WG_DY16_ATT2D 1
    static inline __attribute__((always_inline)) void wg_dy16_att2d_a(
            const float* const* s, Py_ssize_t rs, float* z, Py_ssize_t zs, int A) {
        const __m512i col = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20,
                                              24, 28);
        wg_vwf d[16];
        for (int i = 0; i < 4; i++) {
            __m512 a0 = _mm512_loadu_ps(s[0] + i * rs), a1 = _mm512_loadu_ps(s[0] + i * rs + 16);
            __m512 b0 = _mm512_loadu_ps(s[1] + i * rs), b1 = _mm512_loadu_ps(s[1] + i * rs + 16);
            for (int j = 0; j < 4; j++) {
                __m512i idx = _mm512_add_epi32(col, _mm512_set1_epi32(j));
                d[i * 4 + j] = (wg_vwf)_mm512_mask_blend_ps(
                    (__mmask16)0xFF00, _mm512_permutex2var_ps(a0, idx, a1),
                    _mm512_permutex2var_ps(b0, idx, b1));
            }
        }
        WG_ATT2D_PASSES(float, wg_vwf, A, d, z, zs);
    }
    #define WG_DY16_ALPHA6 1
    #elif defined(__AVX2__)
    /* The same in the x86-64-v3 build, where a run of eight tiles is one vector: per run, its
       16 vectors from dy's rows (wg_row8t4_f), transformed in registers, instead of stored to
       the chunk by wg_gather8t4_f and loaded again by wg_att2d_f (the (64,3,32,32)->64 5x5
       backward 1.037x on a 2-core Zen 3, in-process A/B, 2500 pairs) */
    #define WG_DY16_ATT2D 1
    static inline __attribute__((always_inline)) void wg_dy16_att2d_a(
            const float* const* s, Py_ssize_t rs, float* z, Py_ssize_t zs, int A) {
        for (int e = 0; e < 2; e++) {
            wg_vf d[16];
            for (int i = 0; i < 4; i++)
                wg_row8t4_f(s[e] + i * rs, d + 4 * i);
            WG_ATT2D_PASSES(float, wg_vf, A, d, z + 8 * e, zs);
        }
    }
    /* alpha 6 (F(4,3)) keeps the chunk in memory here: in registers, a (32,3,64,64)->32 3x3
       backward ran 0.98x */
    #define WG_DY16_ALPHA6 0
    #endif
    #ifdef WG_DY16_ATT2D
    static void wg_dy16_att2d_f(const float* const* s, Py_ssize_t rs, float* z, Py_ssize_t zs,
                                int A) {
        if (A == 8) wg_dy16_att2d_a(s, rs, z, zs, 8); else wg_dy16_att2d_a(s, rs, z, zs, 6);
    }
    #else
    #define WG_DY16_ATT2D 0
    #define WG_DY16_ALPHA6 0
    static void wg_dy16_att2d_f(const float* const* s, Py_ssize_t rs, float* z, Py_ssize_t zs,
                                int A) {
        (void)s; (void)rs; (void)z; (void)zs; (void)A;
        __builtin_trap();  /* never called: WG_DY16_ATT2D is 0 */
    }
    #endif
    """
    void wg_bwd_products_f(const float* z, Py_ssize_t P, Py_ssize_t zs, Py_ssize_t vs,
                           Py_ssize_t nt, const float* v, float* e, const float* const* u,
                           Py_ssize_t us, Py_ssize_t C, float* const* acc, int dw, int dx,
                           int fresh) nogil
    void wg_bwd_products_d(const double* z, Py_ssize_t P, Py_ssize_t zs, Py_ssize_t vs,
                           Py_ssize_t nt, const double* v, double* e, const double* const* u,
                           Py_ssize_t us, Py_ssize_t C, double* const* acc, int dw, int dx,
                           int fresh) nogil
    void wg_add_run_f(float* dst, const float* src, Py_ssize_t n) nogil
    void wg_add_run_d(double* dst, const double* src, Py_ssize_t n) nogil
    void wg_combine_row8_f(const float* row, Py_ssize_t ps, Py_ssize_t g, float* comb) nogil
    void wg_combine_row8_d(const double* row, Py_ssize_t ps, Py_ssize_t g, double* comb) nogil
    void wg_att2d_f(const float* d, float* z, Py_ssize_t zs, int A) nogil
    void wg_att2d_d(const double* d, double* z, Py_ssize_t zs, int A) nogil
    enum: WG_DY16_ATT2D
    enum: WG_DY16_ALPHA6
    void wg_dy16_att2d_f(const float* const* s, Py_ssize_t rs, float* z, Py_ssize_t zs,
                         int A) nogil


cdef enum:
    KB = 4   # filters per call of wg_bwd_products
    SB = 64  # tiles per sub-block (a multiple of CH): the products' run over the tiles
    # Gap between the channels' and filters' parts of V, E and Z: P * SB elements is a multiple
    # of 4 KB, so the products' 10 streams (C = 3) fell on the same L1 sets (8 ways)
    BS_PAD = 64
    # E sums KSUM filters at a time, then adds them to its total (a running sum over 2048
    # filters raised F(4,5)'s float32 error of dx to 9.3e-6, above its bound 7e-6)
    KSUM = 64


cdef inline Py_ssize_t bwd_lanes(Py_ssize_t itemsize) noexcept nogil:
    # vector lanes of the accumulators: one vector of the products (float32: WG_LANES_WF)
    return WG_LANES_WF if itemsize == 4 else 4


cdef inline Py_ssize_t padded_filters(Py_ssize_t K) noexcept nogil:
    # K rounded up to a multiple of KB: the accumulators of the last call's unused slots
    return (K + KB - 1) // KB * KB


cdef inline Py_ssize_t bwd_per_thread(Py_ssize_t C, Py_ssize_t K, Py_ssize_t P,
                                      Py_ssize_t itemsize) noexcept nogil:
    # a thread's scratch: V, E and its running total of a sub-block (C, P, SB each), Z of KB
    # filters (KB, P, SB), each channel's and filter's P * SB elements BS_PAD apart, then the
    # weight gradient's per-lane sums (K', P, C, lanes), then the bias gradient's (K', lanes)
    return ((3 * C + KB) * (P * SB + BS_PAD)
            + padded_filters(K) * (P * C + 1) * bwd_lanes(itemsize))


def fused_backward_scratch_size(Py_ssize_t C, Py_ssize_t K, Py_ssize_t alpha,
                                Py_ssize_t itemsize):
    """Elements of scratch ``winograd_backward_fused`` needs: per thread (3 C + 4) (64 alpha^2 +
    64) (a sub-block's V, E, E's total and Z of four filters) + K' (alpha^2 C + 1) lanes (the
    weight and bias gradients' per-lane sums; K' = K rounded up to a multiple of 4, lanes 16 for
    float32 in the x86-64-v4 build, else 8, and 4 for float64), then alpha^2 K C (the weight
    gradient's total)."""
    cdef Py_ssize_t P = alpha * alpha
    return bwd_per_thread(C, K, P, itemsize) * max(_gemm_parts, 1) + P * K * C


cdef void scatter_add_tiles(const floating* d, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                            Py_ssize_t c, const Py_ssize_t* tn, const Py_ssize_t* tih,
                            const Py_ssize_t* tiw, Py_ssize_t nt, Py_ssize_t size, Py_ssize_t m,
                            Py_ssize_t dh, Py_ssize_t dw, floating* dx) noexcept nogil:
    # dx[tn[t], c, tih[t] + i*dh, tiw[t] + j*dw] += d[(i*size + j)*CH + t] where inside the
    # H x W map (outside is padding), t < nt; the inverse of ``gather_tiles``.  The chunk is
    # first transposed to tile-major rows (4x4 blocks in registers), so that each tile's row
    # inside the map is one contiguous run of adds (vectorised for column dilation 1) instead of
    # scalar moves strided by CH, which took a tenth of the (64,3,32,32)->64 5x5 backward: dx
    # 1.07x, the backward 1.045x; 3x3 and 8-channel layers 1.02-1.03x (in-process A/B).  F(4,5)
    # tiles in a row of the map (8 wide, 4 apart, column dilation 1) first sum their
    # overlapping rows (``wg_combine_row8``), so each dx value gets one add per tile row: the
    # (64,3,32,32)->64 5x5 backward 1.04x on a 2-core Zen 3 (in-process A/B, 2700 pairs).
    cdef floating[CHUNK] rows      # rows[t*size*size + i*size + j] = d[(i*size + j)*CH + t]
    cdef floating[CH * 4 + 8] comb  # one combined row of up to CH tiles
    cdef Py_ssize_t t, g, i, j, j0, j1, ih, iw, P = size * size
    cdef floating* row
    cdef const floating* src
    if floating is float:
        wg_transpose_f(d, CH, P, nt, rows, P)
    else:
        wg_transpose_d(d, CH, P, nt, rows, P)
    t = 0
    while t < nt:
        g = 1                      # tiles t .. t + g - 1: one row of tiles m apart
        if dw == 1 and m == 4 and size == 8:
            while (t + g < nt and tn[t + g] == tn[t] and tih[t + g] == tih[t]
                   and tiw[t + g] == tiw[t] + 4 * g):
                g += 1
        if g > 1:
            iw = tiw[t]
            inside_columns(iw, 4 * g + 4, 1, W, &j0, &j1)
            for i in range(8):
                ih = tih[t] + i * dh
                if 0 <= ih < H:
                    row = dx + ((tn[t] * C + c) * H + ih) * W + iw
                    if floating is float:
                        wg_combine_row8_f(rows + t * P + i * 8, P, g, comb)
                        wg_add_run_f(row + j0, comb + j0, j1 - j0)
                    else:
                        wg_combine_row8_d(rows + t * P + i * 8, P, g, comb)
                        wg_add_run_d(row + j0, comb + j0, j1 - j0)
            t += g
            continue
        iw = tiw[t]
        inside_columns(iw, size, dw, W, &j0, &j1)
        for i in range(size):
            ih = tih[t] + i * dh
            if 0 <= ih < H:
                row = dx + ((tn[t] * C + c) * H + ih) * W + iw
                src = rows + t * P + i * size
                if dw == 1:
                    if floating is float:
                        wg_add_run_f(row + j0, src + j0, j1 - j0)
                    else:
                        wg_add_run_d(row + j0, src + j0, j1 - j0)
                else:
                    for j in range(j0, j1):
                        row[j * dw] += src[j]
        t += 1


cdef bint eight_tile_runs(const Py_ssize_t* tn, const Py_ssize_t* tih, const Py_ssize_t* tiw,
                         Py_ssize_t nt, Py_ssize_t H, Py_ssize_t W, Py_ssize_t dh,
                         Py_ssize_t* img, Py_ssize_t* off) noexcept nogil:
    # True when a chunk's nt tiles (4 x 4, column step 1) are CH = 16 tiles in two runs of eight
    # side by side, all inside the H x W map, so that each run moves from dy's rows as a whole
    # (``wg_dy16_att2d_f`` in the x86-64-v4 and v3 builds, else ``wg_gather8t4_f``); then run h's
    # first tile lies in image img[h] at off[h] = row * W + column of its plane.  Decided
    # once per sub-block for all K filters' dy tiles, instead of ``gather_tiles``' tests per
    # filter and chunk: the (64,3,32,32)->64 5x5 backward 1.04x (in-process A/B, 3369 pairs).
    cdef Py_ssize_t h, t
    if nt != CH:
        return False
    for h in range(2):
        t = 8 * h
        if not (tn[t + 7] == tn[t] and tih[t + 7] == tih[t] and tiw[t + 7] == tiw[t] + 28
                and tile_inside(tih[t], tiw[t], 4, dh, 1, H, W) and tiw[t] + 31 < W):
            return False
        img[h] = tn[t]
        off[h] = tih[t] * W + tiw[t]
    return True


cdef inline void plan_dy_runs(const floating* dy, const Py_ssize_t* tn, const Py_ssize_t* tod,
                              const Py_ssize_t* tow, Py_ssize_t nt, Py_ssize_t Ho, Py_ssize_t Wo,
                              Py_ssize_t m, Py_ssize_t dh, Py_ssize_t dw, bint* runs,
                              Py_ssize_t* img, Py_ssize_t* off) noexcept nogil:
    # runs[c] for each chunk c of the nt dy tiles at tn, tod, tow: whether ``dy_chunk`` moves it
    # as two runs of eight (float32 4x4 tiles of column step 1, ``eight_tile_runs``), which start
    # at img[2c], off[2c] and img[2c + 1], off[2c + 1].  dy: only its dtype is used.
    cdef Py_ssize_t t
    for t in range(0, nt, 16):  # CH
        runs[t // 16] = (floating is float and m == 4 and dw == 1
                         and eight_tile_runs(tn + t, tod + t, tow + t, min(CH, nt - t), Ho, Wo, dh,
                                             img + t // 8, off + t // 8))


cdef inline void dy_chunk(const floating* dy, Py_ssize_t K, Py_ssize_t Ho, Py_ssize_t Wo,
                          Py_ssize_t k, const Py_ssize_t* tn, const Py_ssize_t* tod,
                          const Py_ssize_t* tow, Py_ssize_t nt, bint run, const Py_ssize_t* img,
                          const Py_ssize_t* off, int a_kind, const floating* A, Py_ssize_t m,
                          Py_ssize_t alpha, Py_ssize_t dh, Py_ssize_t dw, floating* d, floating* z,
                          Py_ssize_t zs) noexcept nogil:
    # z[(a*alpha + b)*zs + t] = (A dy_t A^T)[a, b] for filter k's m x m dy tiles t of one chunk
    # (nt <= CH of them at tn, tod, tow, as ``gather_chunk``; zeros past the output's edge); A
    # (alpha, m) row-major, of kind a_kind.  run: the chunk is two runs of eight tiles (float32,
    # ``plan_dy_runs``, which gave img and off), moved from dy's rows as a whole, and the
    # same rows of the filter after next are fetched ahead (the next filter's were fetched
    # too late: the loads of dy's rows were a third of the transform's samples under perf;
    # two filters ahead, 1.02-1.07x on four backwards of 3 or 8 channels, in-process A/B on
    # Zen 3, and 1.00-1.03x in a second A/B on a busier machine; four ahead, 0.99-1.05x).
    # d: CHUNK elements of scratch.
    cdef const floating* rsrc[2]
    cdef Py_ssize_t e, i
    if floating is float and run:
        for e in range(2):
            rsrc[e] = dy + (img[e] * K + k) * Ho * Wo + off[e]
            for i in range(4):  # the same rows of filter k + 2 (prefetches never fault)
                wg_prefetch(rsrc[e] + 2 * Ho * Wo + i * dh * Wo)
                wg_prefetch(rsrc[e] + 2 * Ho * Wo + i * dh * Wo + 31)
        if WG_DY16_ATT2D and (a_kind == AT48T or (a_kind == AT46T and WG_DY16_ALPHA6)):
            wg_dy16_att2d_f(<const float* const*> rsrc, dh * Wo, <float*> z, zs, <int> alpha)
            return
        for e in range(2):
            wg_gather8t4_f(<const float*> rsrc[e], dh * Wo, <float*> d + 8 * e)
    else:
        gather_chunk(dy, K, Ho, Wo, k, tn, tod, tow, nt, m, dh, dw, d)
    if a_kind == AT46T or a_kind == AT48T:
        if floating is float:
            wg_att2d_f(d, z, zs, <int> alpha)
        else:
            wg_att2d_d(d, z, zs, <int> alpha)
    else:
        transform_chunk(a_kind, A, alpha, m, d, CH, z, zs)


cdef void backward_block(const floating* x, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                         const floating* dy, Py_ssize_t K, Py_ssize_t Ho, Py_ssize_t Wo,
                         const floating* U, const floating* BT, int bt_kind, const floating* A,
                         int a_kind, const floating* BTt, int btt_kind, Py_ssize_t m,
                         Py_ssize_t alpha, const Py_ssize_t* oh0, Py_ssize_t n_rows,
                         const Py_ssize_t* ow0, Py_ssize_t n_cols, Py_ssize_t t0, Py_ssize_t nt,
                         Py_ssize_t ph, Py_ssize_t pw, Py_ssize_t dh, Py_ssize_t dw,
                         Py_ssize_t ones, floating* scratch, floating* acc, floating* db,
                         floating* dx) noexcept nogil:
    # The tiles t0 .. t0 + nt - 1, by sub-blocks of SB tiles: V = B^T x B (if acc: the weight
    # gradient); per KB filters Z_k = A dy_k A^T and the products; then (if dx) E (summed by
    # KSUM filters into its total) -> B E B^T added onto dx.  The transforms run chunk by chunk.
    # scratch: ``bwd_per_thread`` elements
    # (the per-lane sums, acc, are the last part); acc: (K', alpha^2, C, lanes) or NULL; db:
    # (K', lanes) or NULL, the per-lane sums of Z_k's point (ones, ones), the row of A that is
    # all ones (the point 1), where Z holds the tile's sum of dy: the bias gradient.
    cdef Py_ssize_t P = alpha * alpha, c, k, k0, q, s, t, e, i, ns, nsv
    cdef Py_ssize_t L = bwd_lanes(sizeof(floating))
    cdef Py_ssize_t bs = P * SB + BS_PAD           # stride of the channels and filters
    cdef floating* zp
    cdef floating* V = scratch                     # (C, P, SB), channels bs apart
    cdef floating* E = V + C * bs                  # (C, P, SB)
    cdef floating* Z = E + C * bs                  # (KB, P, SB)
    cdef floating* Et = Z + KB * bs                # (C, P, SB): E's total over the filters
    cdef floating[CHUNK] d              # one chunk of raw tiles; then of dx tiles
    cdef floating[16] dsum              # the bias gradient's lanes of one filter and sub-block
    cdef const floating* uq[KB]
    cdef floating* accq[KB]
    cdef Py_ssize_t[SB] tn, tih, tiw, tod, tow
    cdef Py_ssize_t[SB] run_img, run_off  # per chunk c, its runs of eight dy tiles at 2c, 2c + 1
    cdef bint[SB] runs                    # per chunk c: gathered by runs of eight
    for s in range(t0, t0 + nt, 64):  # SB
        ns = min(SB, t0 + nt - s)
        nsv = (ns + CH - 1) // CH * CH             # the chunks' tiles (zeros past ns)
        tile_positions(oh0, n_rows, ow0, n_cols, s, ns, ph, pw, tn, tih, tiw)
        tile_positions(oh0, n_rows, ow0, n_cols, s, ns, 0, 0, tn, tod, tow)
        plan_dy_runs(dy, tn, tod, tow, ns, Ho, Wo, m, dh, dw, runs, run_img, run_off)
        if acc != NULL:
            for c in range(C):
                for t in range(0, ns, 16):  # CH
                    gather_chunk(x, C, H, W, c, tn + t, tih + t, tiw + t, min(CH, ns - t), alpha,
                                 dh, dw, d)
                    transform_chunk(bt_kind, BT, alpha, alpha, d, CH, V + c * bs + t, SB)
        for k0 in range(0, K, 4):  # KB
            # E: the sum over filters k0 - k0 % KSUM .. k0 + 3, the first four written without
            # reading E (no zeroing); its earlier sums in Et
            if dx != NULL and k0 % KSUM == 0 and k0 > 0:
                for e in range(C * bs):
                    Et[e] = (Et[e] if k0 > KSUM else 0) + E[e]
            for q in range(KB):
                # filter k0 + q's m x m dy tiles: outputs oh0 + a*dh, ow0 + b*dw (zero past the
                # output's edge); past the last filter, zeros, the last filter's weights and an
                # unused accumulator slot
                k = min(k0 + q, K - 1)
                if k0 + q < K:
                    for t in range(0, ns, 16):  # CH
                        dy_chunk(dy, K, Ho, Wo, k, tn + t, tod + t, tow + t, min(CH, ns - t),
                                 runs[t // 16], run_img + t // 8, run_off + t // 8, a_kind, A, m,
                                 alpha, dh, dw, d, Z + q * bs + t, SB)
                    if db != NULL:  # summed in registers (db might alias zp for the compiler)
                        zp = Z + q * bs + (ones * alpha + ones) * SB
                        for e in range(L):
                            dsum[e] = zp[e]
                        for t in range(1, nsv // L):
                            for e in range(L):
                                dsum[e] += zp[t * L + e]
                        for e in range(L):
                            db[k * L + e] += dsum[e]
                else:
                    for e in range(P * SB):
                        Z[q * bs + e] = 0
                uq[q] = U + k * C if U != NULL else NULL
                accq[q] = acc + (k0 + q) * P * C * L if acc != NULL else NULL
            if floating is float:
                wg_bwd_products_f(Z, P, SB, bs, nsv, V, E, uq, K * C, C, accq, acc != NULL,
                                  dx != NULL, k0 % KSUM == 0)
            else:
                wg_bwd_products_d(Z, P, SB, bs, nsv, V, E, uq, K * C, C, accq, acc != NULL,
                                  dx != NULL, k0 % KSUM == 0)
        if dx != NULL:
            if K > KSUM:
                for e in range(C * bs):
                    Et[e] += E[e]
            for c in range(C):
                for t in range(0, ns, 16):  # CH
                    transform_chunk(btt_kind, BTt, alpha, alpha,
                                    (Et if K > KSUM else E) + c * bs + t, SB, d, CH)
                    scatter_add_tiles(d, C, H, W, c, tn + t, tih + t, tiw + t, min(CH, ns - t),
                                      alpha, m, dh, dw, dx)


@cython.boundscheck(False)
@cython.wraparound(False)
def winograd_backward_fused(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] dy,
                            const floating[:, :, ::1] U, const floating[:, ::1] BT,
                            const floating[:, ::1] A, const floating[:, ::1] BTt,
                            const double[:, ::1] GT, const Py_ssize_t[::1] oh0,
                            const Py_ssize_t[::1] ow0, offset, dilation,
                            Py_ssize_t rows_per_block, floating[::1] scratch,
                            floating[:, :, :, ::1] dx_out, floating[:, :, :, ::1] dw_out,
                            floating[::1] db_out=None, Py_ssize_t ones=1,
                            bint specialise=True):
    """dx and dweight of a stride-1 convolution by the adjoint of Winograd F(m x m, r x r), for
    few input channels (see the comment at the top of this file).

    x: (N, C, H, W); dy: (N, K, Ho, Wo); U: (alpha^2, K, C) = G w G^T (``transform_weight``; used
    only for dx); BT: (alpha, alpha) = B^T; A: (alpha, m) = the forward's A^T transposed;
    BTt: (alpha, alpha) = B; GT: (r, alpha) = G^T; oh0, ow0, offset, dilation as in
    ``winograd_conv``; rows_per_block: tile rows per block, such that blocks two apart in one
    image read no common input row; scratch: ``fused_backward_scratch_size(...)`` elements, any
    values; dx_out: (N, C, H, W), zeros (the tiles add onto it), or None; dw_out: (K, C, r, r),
    overwritten, or None; db_out: (K,), overwritten (the sums of dy per filter), or None; ones:
    the row of A that is all ones (the point 1), whose point (ones, ones) of A dy A^T is the
    tile's sum of dy.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t K = dy.shape[1], Ho = dy.shape[2], Wo = dy.shape[3]
    cdef Py_ssize_t alpha = BT.shape[0], m = A.shape[1], r = GT.shape[0], P = alpha * alpha
    cdef Py_ssize_t ph = offset[0], pw = offset[1], dh = dilation[0], dw = dilation[1]
    cdef Py_ssize_t n_rows = oh0.shape[0], n_cols = ow0.shape[0]
    cdef Py_ssize_t R = rows_per_block, per_image = (n_rows + R - 1) // R
    cdef Py_ssize_t parts = max(_gemm_parts, 1), L = bwd_lanes(sizeof(floating))
    cdef Py_ssize_t per_thread = bwd_per_thread(C, K, P, sizeof(floating))
    cdef Py_ssize_t acc_at = (3 * C + KB) * (P * SB + BS_PAD)  # the per-lane sums' offset
    cdef Py_ssize_t phase, i, nb, n, j, blk, e, t, l, k, c, KC = K * C
    cdef int bt_kind = transform_kind(BT, specialise), a_kind = transform_kind(A, specialise)
    cdef int btt_kind = transform_kind(BTt, specialise)
    cdef bint want_dx = dx_out is not None, want_dw = dw_out is not None
    cdef bint want_db = db_out is not None
    cdef Py_ssize_t db_at = acc_at + padded_filters(K) * P * C * L  # the bias's per-lane sums
    cdef floating* acc = NULL
    cdef floating* dbacc = NULL
    cdef double sd
    cdef floating* dxp = NULL
    cdef floating* S
    cdef const floating* Up = NULL
    cdef floating s
    check_tile(alpha, CH)
    if (A.shape[0] != alpha or BTt.shape[0] != alpha or BTt.shape[1] != alpha
            or BT.shape[1] != alpha or GT.shape[1] != alpha or dy.shape[0] != N or R < 1
            or (want_dx and (U is None or U.shape[0] != P or U.shape[1] != K or U.shape[2] != C
                             or tuple(dx_out.shape)[:4] != tuple(x.shape)[:4]))
            or (want_dw and tuple(dw_out.shape)[:4] != (K, C, r, r))
            or (want_db and (db_out.shape[0] != K or not 0 <= ones < alpha
                             or np.any(np.asarray(A)[ones] != 1)))):
        raise ValueError(f"winograd_backward_fused: x {tuple(x.shape)[:4]}, dy "
                         f"{tuple(dy.shape)[:4]}, BT {tuple(BT.shape)[:2]}, A "
                         f"{tuple(A.shape)[:2]}, GT {tuple(GT.shape)[:2]} or the outputs do not "
                         f"match")
    if scratch.shape[0] < fused_backward_scratch_size(C, K, alpha, sizeof(floating)):
        raise ValueError(f"scratch has {scratch.shape[0]} elements, needs "
                         f"{fused_backward_scratch_size(C, K, alpha, sizeof(floating))}")
    if not (want_dx or want_dw or want_db):
        return
    if want_dx:
        dxp = &dx_out[0, 0, 0, 0]
        Up = &U[0, 0, 0]
    S = &scratch[0] + parts * per_thread           # (P, K, C): the summed accumulators
    tmp_arr = np.empty((parts, (r * alpha + 1) * C), dtype=np.float64)
    cdef double[:, ::1] tmp = tmp_arr
    # One team of threads for the zeroing, both phases and the reductions (each parallel region
    # wakes the waiting threads again: in a profile of the (64,3,32,32)->64 5x5 weight gradient
    # with the products and transforms taken out, 18% of the rest was the kernel switching
    # threads).  The per-lane sums are reduced filter by filter, each filter's contiguous (an
    # index of (P, K, C) with two divisions per element, and 32 strided reads, took 0.35 ms).
    with nogil, parallel(num_threads=parts):
        if want_dw or want_db:
            for t in prange(parts, schedule="static"):   # thread t's scratch, by thread t
                for e in range(per_thread):
                    scratch[t * per_thread + e] = 0
        for phase in range(2):  # even blocks of each image, then odd ones
            nb = (per_image - phase + 1) // 2      # blocks of this phase per image
            for i in prange(N * nb, schedule="static"):
                n = i // nb
                j = 2 * (i % nb) + phase
                blk = min(R, n_rows - j * R)       # tile rows of the block
                acc = (&scratch[0] + threadid() * per_thread + acc_at) if want_dw else NULL
                dbacc = (&scratch[0] + threadid() * per_thread + db_at) if want_db else NULL
                backward_block(&x[0, 0, 0, 0], C, H, W, &dy[0, 0, 0, 0], K, Ho, Wo, Up,
                               &BT[0, 0], bt_kind, &A[0, 0], a_kind, &BTt[0, 0], btt_kind, m,
                               alpha, &oh0[0], n_rows, &ow0[0], n_cols,
                               (n * n_rows + j * R) * n_cols, blk * n_cols, ph, pw, dh, dw,
                               ones, &scratch[threadid() * per_thread], acc, dbacc, dxp)
        if want_dw:
            # S[p, k, c] = sum over threads and lanes of acc[k, p, c, lane], in that order (per
            # filter: its sums are contiguous)
            for k in prange(K, schedule="static"):
                for i in range(P):
                    for c in range(C):
                        s = 0
                        for t in range(parts):
                            for l in range(L):
                                s = s + scratch[t * per_thread + acc_at + ((k * P + i) * C + c) * L
                                                + l]
                        S[(i * K + k) * C + c] = s
        if want_db:
            # db[k] = sum over threads and lanes of the per-lane sums, in float64
            for i in prange(K, schedule="static"):
                sd = 0
                for t in range(parts):
                    for l in range(L):
                        sd = sd + scratch[t * per_thread + db_at + i * L + l]
                db_out[i] = <floating> sd
    if want_dw:
        with nogil:
            weight_grad_from_points(S, K, C, GT, tmp, parts, 1, dw_out)
