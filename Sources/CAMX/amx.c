#include "CAMX.h"

#if defined(__x86_64__) && defined(__linux__)
#include <cpuid.h>
#include <immintrin.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

static int probe(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    if (!((d >> 22) & 1) || !((d >> 24) & 1)) return 0;  // AMX-BF16, AMX-TILE
    if (!__get_cpuid(1, &a, &b, &c, &d) || !((c >> 27) & 1)) return 0;  // OSXSAVE
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if (((lo >> 17) & 3) != 3) return 0;  // XTILECFG and XTILEDATA enabled by the OS
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}

int camx_available(void) {
    static int state = -1;  // benign race: every thread computes the same answer
    if (state < 0) state = probe();
    return state;
}

// Tiles 0-3: the 2x2 fp32 accumulators; 4-5: two 16-row halves of A; 6-7: two 16-column
// halves of B. Every tile is 16 rows of 64 bytes.
typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

__attribute__((target("amx-tile,amx-bf16")))
void camx_panel(const uint16_t *a, const uint16_t *b, long panels, long blocks,
                float *out, long ldo, const float *init, long ldi) {
    tile_config config;
    memset(&config, 0, sizeof config);
    config.palette = 1;
    for (int t = 0; t < 8; t++) { config.colsb[t] = 64; config.rows[t] = 16; }
    _tile_loadconfig(&config);
    const long stride = ldo * (long)sizeof(float), istride = ldi * (long)sizeof(float);
    for (long p = 0; p < panels; p++) {
        const uint16_t *bp = b + p * blocks * 1024;
        if (init) {
            const float *i = init + p * 32;
            _tile_loadd(0, i, istride);
            _tile_loadd(1, i + 16, istride);
            _tile_loadd(2, (const char *)i + 16 * istride, istride);
            _tile_loadd(3, (const char *)i + 16 * istride + 64, istride);
        } else {
            _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
        }
        for (long k = 0; k < blocks; k++) {
            _tile_loadd(4, a + k * 1024, 64);
            _tile_loadd(6, bp + k * 1024, 64);
            _tile_loadd(5, a + k * 1024 + 512, 64);
            _tile_loadd(7, bp + k * 1024 + 512, 64);
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(1, 4, 7);
            _tile_dpbf16ps(2, 5, 6);
            _tile_dpbf16ps(3, 5, 7);
        }
        float *o = out + p * 32;
        _tile_stored(0, o, stride);
        _tile_stored(1, o + 16, stride);
        _tile_stored(2, (char *)o + 16 * stride, stride);
        _tile_stored(3, (char *)o + 16 * stride + 64, stride);
    }
}


int camx_wide_vectors(void) {
    static int state = -1;  // benign race: every thread computes the same answer
    if (state < 0) {
        __builtin_cpu_init();
        state = __builtin_cpu_supports("avx512f");
    }
    return state;
}

#else

int camx_available(void) { return 0; }

void camx_panel(const uint16_t *a, const uint16_t *b, long panels, long blocks,
                float *out, long ldo, const float *init, long ldi) {
    (void)a; (void)b; (void)panels; (void)blocks; (void)out;
}

int camx_wide_vectors(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

#endif
