#include "CStemifyKernels.h"

// The portable set: plain C vectors of four lanes, whatever the target (SSE2, NEON on arm64).
#define W 4
#define NAME(f) portable_##f
typedef float V4 __attribute__((ext_vector_type(W)));
typedef unsigned VU4 __attribute__((ext_vector_type(W)));
#define V V4
#define VU VU4
#include "kernels_body.h"
#undef W
#undef NAME
#undef V
#undef VU

#if defined(__x86_64__)
// The same source for each x86 set: the target attribute lets the compiler use its
// instructions inside these functions only, so the binary still starts on any x86-64 CPU.
#define W 8
#define NAME(f) avx2_##f
typedef float V8 __attribute__((ext_vector_type(W)));
typedef unsigned VU8 __attribute__((ext_vector_type(W)));
#define V V8
#define VU VU8
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#include "kernels_body.h"
#pragma clang attribute pop
#undef W
#undef NAME
#undef V
#undef VU

#define W 16
#define NAME(f) avx512_##f
typedef float V16 __attribute__((ext_vector_type(W)));
typedef unsigned VU16 __attribute__((ext_vector_type(W)));
#define V V16
#define VU VU16
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma"))), apply_to = function)
#include "kernels_body.h"
#pragma clang attribute pop
#undef W
#undef NAME
#undef V
#undef VU
#endif

int stemify_isa_supported(int isa) {
    switch (isa) {
    case STEMIFY_ISA_PORTABLE:
        return 1;
#if defined(__x86_64__)
    // __builtin_cpu_supports also checks that the OS saves the wider registers (XCR0).
    case STEMIFY_ISA_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case STEMIFY_ISA_AVX512:
        return stemify_isa_supported(STEMIFY_ISA_AVX2) && __builtin_cpu_supports("avx512f") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512dq");
#endif
    default:
        return 0;
    }
}

const stemify_kernels *stemify_kernels_for(int isa) {
    if (!stemify_isa_supported(isa)) return 0;
    switch (isa) {
#if defined(__x86_64__)
    case STEMIFY_ISA_AVX2: return &avx2_table;
    case STEMIFY_ISA_AVX512: return &avx512_table;
#endif
    default: return &portable_table;
    }
}
