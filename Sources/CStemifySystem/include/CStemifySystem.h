// Allocator settings applied when the binary loads (CStemifySystem.c), and the engine's
// per-thread parallel width.
#ifdef __linux__
#include <malloc.h>
#endif

/// Hands the allocator's whole free pages back to the system (`malloc_trim`; nothing elsewhere).
void stemify_release_free_memory(void);

/// The parallel width of the engine's loops on this thread; 0 when none was set.
int stemify_thread_width(void);
/// Sets it for this thread (0 restores the process-wide width).
void stemify_set_thread_width(int width);

/// Loads OpenBLAS (libopenblas.so.0, or the file STEMIFY_OPENBLAS names) once, after setting
/// OPENBLAS_CORETYPE to `coretype` (NULL: the environment's or OpenBLAS's own choice); 0 on
/// success, else -1 and `stemify_blas_error()` says why. See blas.c.
int stemify_blas_open(const char *coretype);
const char *stemify_blas_error(void);
/// The kernels OpenBLAS runs ("SkylakeX", "Haswell", ...).
const char *stemify_blas_corename(void);
/// Row-major `cblas_sgemm` through the loaded library; `stemify_blas_open` must have succeeded.
void stemify_sgemm(int transA, int transB, int m, int n, int k, float alpha, const float *a,
                   int lda, const float *b, int ldb, float beta, float *c, int ldc);
