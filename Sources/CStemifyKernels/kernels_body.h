// One instruction set's kernels. kernels.c includes this file once per set, with W (lanes),
// the vector types V (float), VU (uint32) and NAME(f) defined, inside a target attribute.
// Every set runs the same operations in the same order, so elementwise results are
// identical across sets; only reductions (exp_sum) group their additions differently.

static inline __attribute__((always_inline)) V NAME(load)(const float *p) { V v; __builtin_memcpy(&v, p, sizeof v); return v; }
static inline __attribute__((always_inline)) void NAME(store)(float *p, V v) { __builtin_memcpy(p, &v, sizeof v); }
static inline __attribute__((always_inline)) V NAME(fma)(V a, V b, V c) { return __builtin_elementwise_fma(a, b, c); }

// exp to within 2 ulp: 2^n · p(r), x = n·ln2 + r, |r| ≤ ln2/2, degree-6 polynomial. Adding
// 1.5·2^23 rounds to an integer held in the low mantissa bits (n without a conversion);
// Cody–Waite ln2 in two parts.
static inline __attribute__((always_inline)) V NAME(exp)(V x) {
    x = __builtin_elementwise_max(x, (V)-87.3f);
    x = __builtin_elementwise_min(x, (V)88.3f);
    V t = NAME(fma)(x, (V)1.442695041f, (V)12582912.0f);
    V n = t - 12582912.0f;
    V r = NAME(fma)(n, (V)-1.428606765330187e-06f, NAME(fma)(n, (V)-0.693145751953125f, x));
    V p = (V)(1.0f / 720);
    p = NAME(fma)(p, r, (V)(1.0f / 120));
    p = NAME(fma)(p, r, (V)(1.0f / 24));
    p = NAME(fma)(p, r, (V)(1.0f / 6));
    p = NAME(fma)(p, r, (V)0.5f);
    p = NAME(fma)(p, r, (V)1.0f);
    p = NAME(fma)(p, r, (V)1.0f);
    VU bits = ((VU)t - 0x4B400000u + 127u) << 23;
    return p * (V)bits;
}

// erfc(z) for z ≥ 0, relative error below 1.2e-7 (Numerical Recipes' Chebyshev fit).
static inline __attribute__((always_inline)) V NAME(erfc)(V z) {
    V t = 1.0f / NAME(fma)(z, (V)0.5f, (V)1.0f);
    V p = (V)0.17087277f;
    p = NAME(fma)(p, t, (V)-0.82215223f);
    p = NAME(fma)(p, t, (V)1.48851587f);
    p = NAME(fma)(p, t, (V)-1.13520398f);
    p = NAME(fma)(p, t, (V)0.27886807f);
    p = NAME(fma)(p, t, (V)-0.18628806f);
    p = NAME(fma)(p, t, (V)0.09678418f);
    p = NAME(fma)(p, t, (V)0.37409196f);
    p = NAME(fma)(p, t, (V)1.00002368f);
    p = NAME(fma)(p, t, (V)-1.26551223f);
    return t * NAME(exp)(NAME(fma)(-z, z, p));
}

// ½x · erfc(−x/√2): the erfc of |x| keeps negative inputs' relative accuracy.
static inline __attribute__((always_inline)) V NAME(gelu1)(V v) {
    VU sign = (VU)v & 0x80000000u;
    V e = NAME(erfc)((V)((VU)v & 0x7FFFFFFFu) * 0.70710678118654752f);
    VU negative = (VU)(sign != 0);
    V factor = (V)(((VU)e & negative) | ((VU)(2.0f - e) & ~negative));
    return 0.5f * v * factor;
}

static void NAME(gelu)(float *x, long n) {
    long i = 0;
    // Two vectors a step: each is a long dependent chain (a division, two polynomials).
    for (; i + 2 * W <= n; i += 2 * W) {
        V a = NAME(load)(x + i), b = NAME(load)(x + i + W);
        NAME(store)(x + i, NAME(gelu1)(a));
        NAME(store)(x + i + W, NAME(gelu1)(b));
    }
    for (; i < n; i += W) {
        float tail[W] = {0};
        long k = n - i < W ? n - i : W;
        __builtin_memcpy(tail, x + i, k * sizeof(float));
        V y = NAME(gelu1)(NAME(load)(tail));
        NAME(store)(tail, y);
        __builtin_memcpy(x + i, tail, k * sizeof(float));
    }
}

static inline __attribute__((always_inline)) V NAME(glu1)(V a, V b, float ba, float bb) {
    return (a + ba) / (1.0f + NAME(exp)(-(b + bb)));
}

static void NAME(glu)(const float *a, const float *b, float ba, float bb, float *out, long n) {
    long i = 0;
    for (; i + W <= n; i += W) NAME(store)(out + i, NAME(glu1)(NAME(load)(a + i), NAME(load)(b + i), ba, bb));
    if (i < n) {
        float ta[W] = {0}, tb[W] = {0};
        long k = n - i;
        __builtin_memcpy(ta, a + i, k * sizeof(float));
        __builtin_memcpy(tb, b + i, k * sizeof(float));
        NAME(store)(ta, NAME(glu1)(NAME(load)(ta), NAME(load)(tb), ba, bb));
        __builtin_memcpy(out + i, ta, k * sizeof(float));
    }
}

static float NAME(exp_sum)(float *p, long n, float max) {
    double total = 0;
    for (long start = 0; start < n; start += 1024) {
        long end = start + 1024 < n ? start + 1024 : n;
        V lanes = (V)0.0f;
        long i = start;
        for (; i + W <= end; i += W) {
            V e = NAME(exp)(NAME(load)(p + i) - max);
            NAME(store)(p + i, e);
            lanes += e;
        }
        float block = 0;
        for (int k = 0; k < W; k++) block += lanes[k];
        double sum = block;
        if (i < end) {
            float tail[W] = {0};
            long k = end - i;
            __builtin_memcpy(tail, p + i, k * sizeof(float));
            V e = NAME(exp)(NAME(load)(tail) - max);
            NAME(store)(tail, e);
            __builtin_memcpy(p + i, tail, k * sizeof(float));
            for (long j = 0; j < k; j++) sum += tail[j];
        }
        total += sum;
    }
    return (float)total;
}

static float NAME(max)(const float *p, long n) {
    float result = p[0];
    long i = 0;
    if (n >= W) {
        V lanes = NAME(load)(p);
        for (i = W; i + W <= n; i += W) lanes = __builtin_elementwise_max(lanes, NAME(load)(p + i));
        result = lanes[0];
        for (int k = 1; k < W; k++) result = lanes[k] > result ? lanes[k] : result;
    }
    for (; i < n; i++) result = p[i] > result ? p[i] : result;
    return result;
}

static const stemify_kernels NAME(table) = {NAME(gelu), NAME(glu), NAME(exp_sum), NAME(max)};
