#include "CStemifySystem.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

// OpenBLAS picks its kernels when it loads, from its table of CPU models or from
// OPENBLAS_CORETYPE, which it reads only then, in its constructor. The engine's instruction set
// (STEMIFY_ISA, Ops/Kernels.swift) must decide the products' level too: one variable then forces
// a whole AVX2 machine for tests and benchmarks, and an OPENBLAS_CORETYPE inherited from a base
// image (one machine here had Haswell set, halving the products on its AVX-512 CPU) does not
// silently win. So the engine loads OpenBLAS itself, after setting the variable; a library linked
// at build time would have run its constructor before main.

typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *,
                         int, float, float *, int);
typedef void (*set_threads_fn)(int);
typedef char *(*corename_fn)(void);

static sgemm_fn blas_sgemm;
static corename_fn blas_corename;
static char blas_error[256];

int stemify_blas_open(const char *coretype) {
    if (blas_sgemm) return 0;
    if (coretype) setenv("OPENBLAS_CORETYPE", coretype, 1);
    // One thread per call: the engine splits products across its own threads (Ops/GEMM.swift);
    // OpenBLAS's pool would spin beside them.
    setenv("OPENBLAS_NUM_THREADS", "1", 0);
    // STEMIFY_OPENBLAS names another build (a newer OpenBLAS that knows a newer CPU, say).
    const char *chosen = getenv("STEMIFY_OPENBLAS");
    static const char *names[] = {"libopenblas.so.0", "libopenblas.so", "libopenblas.dylib"};
    void *library = NULL;
    if (chosen && *chosen) {
        library = dlopen(chosen, RTLD_NOW | RTLD_LOCAL);
    } else {
        for (size_t i = 0; i < sizeof names / sizeof *names && !library; i++)
            library = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    }
    if (!library) {
        snprintf(blas_error, sizeof blas_error, "%s", dlerror());
        return -1;
    }
    sgemm_fn sgemm = (sgemm_fn)dlsym(library, "cblas_sgemm");
    set_threads_fn set_threads = (set_threads_fn)dlsym(library, "openblas_set_num_threads");
    if (!sgemm || !set_threads) {
        snprintf(blas_error, sizeof blas_error, "libopenblas has no cblas_sgemm");
        return -1;
    }
    set_threads(1);
    blas_corename = (corename_fn)dlsym(library, "openblas_get_corename");
    blas_sgemm = sgemm;
    return 0;
}

const char *stemify_blas_error(void) { return blas_error; }

const char *stemify_blas_corename(void) { return blas_corename ? blas_corename() : "unknown"; }

void stemify_sgemm(int transA, int transB, int m, int n, int k, float alpha, const float *a,
                   int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    enum { row_major = 101, no_trans = 111, trans = 112 };
    blas_sgemm(row_major, transA ? trans : no_trans, transB ? trans : no_trans, m, n, k, alpha, a,
               lda, b, ldb, beta, c, ldc);
}
