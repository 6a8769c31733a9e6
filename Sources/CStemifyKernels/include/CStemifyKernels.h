// The engine's elementwise vector kernels, compiled once per x86 instruction set (and once
// portable) in one binary; the engine picks a table when it starts (StemifyEngine/Ops/Kernels.swift).
#ifndef CSTEMIFY_KERNELS_H
#define CSTEMIFY_KERNELS_H

/// Instruction sets with kernels, each a superset of the one before.
enum {
    STEMIFY_ISA_PORTABLE = 0,
    STEMIFY_ISA_AVX2 = 1,    // AVX2 + FMA (x86-64-v3)
    STEMIFY_ISA_AVX512 = 2,  // AVX-512 F/BW/VL/DQ (x86-64-v4)
};

typedef struct stemify_kernels {
    /// `x = x · ½ · erfc(−x/√2)` (exact GELU) over `x[0..<n]`.
    void (*gelu)(float *x, long n);
    /// `out = (a + ba) · σ(b + bb)` over `n` values (GLU with optional biases).
    void (*glu)(const float *a, const float *b, float ba, float bb, float *out, long n);
    /// `p = exp(p − max)` in place; returns the sum, accumulated in Double per 1024 values.
    float (*exp_sum)(float *p, long n, float max);
    /// Largest of `p[0..<n]`, `n > 0`.
    float (*max)(const float *p, long n);
} stemify_kernels;

/// Whether this CPU (and OS) runs `isa`'s kernels.
int stemify_isa_supported(int isa);
/// The kernels for `isa`, or NULL when this CPU cannot run them.
const stemify_kernels *stemify_kernels_for(int isa);

#endif
