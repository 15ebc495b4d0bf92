# Which x86-64 instruction-set level this CPU (and its operating system) supports, asked of the CPU
# itself (CPUID and XGETBV through GCC/Clang's __builtin_cpu_supports), not of /proc/cpuinfo: an
# emulator such as qemu-user shows the host's /proc/cpuinfo but answers CPUID for the CPU it
# emulates.  Always built for the baseline (never one of the per-level builds): it loads anywhere.
cdef extern from *:
    """
    static int cnncore_x86_64_level(void) {
    #if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__) && !defined(__clang__) \
        && __GNUC__ >= 12
        __builtin_cpu_init();
        if (__builtin_cpu_supports("x86-64-v4")) return 4;
        if (__builtin_cpu_supports("x86-64-v3")) return 3;
        if (__builtin_cpu_supports("x86-64-v2")) return 2;
        return 1;
    #elif (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__)
        /* older GCC, Clang: the levels' main features (LZCNT, MOVBE, F16C go with AVX2 in
           every CPU made) */
        __builtin_cpu_init();
        int v2 = __builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("popcnt");
        int v3 = v2 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
                 && __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
        int v4 = v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
                 && __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq")
                 && __builtin_cpu_supports("avx512vl");
        return v4 ? 4 : v3 ? 3 : v2 ? 2 : 1;
    #elif defined(__x86_64__) || defined(_M_X64)
        return 1;  /* this compiler cannot ask: the baseline is always safe */
    #else
        return 0;  /* not x86-64 */
    #endif
    }
    """
    int cnncore_x86_64_level() nogil


def x86_64_level():
    """The highest x86-64 micro-architecture level this CPU runs: 1 (baseline, SSE2), 2 (SSE4.2,
    POPCNT), 3 (AVX2, FMA, BMI2) or 4 (AVX-512 F/BW/CD/DQ/VL); 0 on other architectures."""
    return cnncore_x86_64_level()
