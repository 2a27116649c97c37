// Half-precision to float, for the kernels' block scales and for decode attention over the
// `--kv-bits 16` cache (sixteen halves widened in registers), and bytes to floats for the
// `--kv-bits 8` cache. Swift's `SIMD16<Float>(SIMD16<Float16>)` compiles to a call per vector
// instead of `vcvtph2ps`, which made the half cache slower to read than fp32 at half the bytes.
#ifndef CQUANT_HALF_H
#define CQUANT_HALF_H

#include <stdint.h>
#include <string.h>
#if defined(__AVX512F__) || defined(__F16C__) || defined(__AVX2__)
#include <immintrin.h>
#endif

/// Sixteen floats; Swift sees `SIMD16<Float>`.
typedef float cq_float16x __attribute__((ext_vector_type(16)));

/// Asks for the cache line at `p` ahead of its use: a hint, which never faults.
static inline __attribute__((always_inline)) void cq_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }

/// The half whose bit pattern is `h`, as a float (exact: subnormals, infinities and NaNs too).
static inline float cq_half_bits_to_float(uint16_t h) {
    _Float16 x;
    memcpy(&x, &h, 2);
    return (float)x;
}

/// The 16 halves (bit patterns) at `p`, unaligned, as floats.
static inline __attribute__((always_inline)) cq_float16x cq_load_halves16(const uint16_t *p) {
    cq_float16x r;
#if defined(__AVX512F__)
    __m512 v = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
    memcpy(&r, &v, sizeof r);
#elif defined(__F16C__)
    __m256 lo = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
    __m256 hi = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 8)));
    memcpy(&r, &lo, 32);
    memcpy((char *)&r + 32, &hi, 32);
#else
    for (int i = 0; i < 16; i++) r[i] = cq_half_bits_to_float(p[i]);
#endif
    return r;
}

/// The 16 signed bytes at `p`, unaligned, as floats (exact): the 8-bit key/value cache widened in
/// registers as decode attention reads it.
static inline __attribute__((always_inline)) cq_float16x cq_load_bytes16(const int8_t *p) {
    cq_float16x r;
#if defined(__AVX512F__)
    __m512 v = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p)));
    memcpy(&r, &v, sizeof r);
#elif defined(__AVX2__)
    __m256 lo = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
    __m256 hi = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(p + 8))));
    memcpy(&r, &lo, 32);
    memcpy((char *)&r + 32, &hi, 32);
#else
    for (int i = 0; i < 16; i++) r[i] = (float)p[i];
#endif
    return r;
}

#endif
