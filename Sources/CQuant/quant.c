#include "CQuant.h"
#include "blocks.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void cq_quantize_q8_portable(const float *x, long blocks, int8_t *q, float *d8, float *s8, int32_t *sums) {
    for (long b = 0; b < blocks; b++) {
        const float *xb = x + b * 32;
        float amax = 0;
        for (int j = 0; j < 32; j++) {
            float a = fabsf(xb[j]);
            amax = a > amax ? a : amax;
        }
        const float db = amax / 127.0f;
        const float id = db != 0 ? 1.0f / db : 0.0f;
        int32_t s = 0;
        for (int j = 0; j < 32; j++) {
            int8_t v = (int8_t)roundf(xb[j] * id);
            q[b * 32 + j] = v;
            s += v;
        }
        const float dh = (float)(_Float16)db;
        for (int l = 0; l < 8; l++) {
            d8[b * 8 + l] = dh;
            s8[b * 8 + l] = dh * (float)s;
        }
        if (sums) sums[b] = s;
    }
}

// Packed runs of 16 rows: per block column (Q4_K: per super-block), the scales (and minimums)
// of the 16 rows, then the codes in 32-bit lanes, one lane per row.
long cq_packed_bytes(int format, long blocks) {
    switch (format) {
    case CQ_Q4_0: return blocks * (32 + 256);
    case CQ_Q4_1: return blocks * (64 + 256);
    case CQ_Q8_0: return blocks * (32 + 512);
    case CQ_Q4_K: return blocks / 8 * Q4K_PACKED;
    default: return 0;
    }
}

// The inverse of scale_min_k4: eight 6-bit scales and minimums into their 12 bytes.
static void pack_scale_min_k4(const uint8_t *sc, const uint8_t *m, uint8_t *s) {
    for (int j = 0; j < 4; j++) {
        s[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
        s[j + 4] = (uint8_t)((m[j] & 63) | ((m[j + 4] >> 4) << 6));
        s[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((m[j + 4] & 15) << 4));
    }
}

static long block_bytes(int format) {
    return format == CQ_Q4_0 ? 18 : format == CQ_Q4_1 ? 20 : format == CQ_Q8_0 ? 34 : 144;
}

void cq_pack_rows(int format, const uint8_t *const *rows, long nrows, long blocks, uint8_t *out) {
    memset(out, 0, (size_t)cq_packed_bytes(format, blocks));
    if (format == CQ_Q4_K) {
        for (long sb = 0; sb < blocks / 8; sb++) {
            uint8_t *blk = out + sb * Q4K_PACKED;
            for (long r = 0; r < nrows; r++) {
                const uint8_t *src = rows[r] + sb * 144;
                memcpy(blk + 2 * r, src, 2);
                memcpy(blk + 32 + 2 * r, src + 2, 2);
                for (int j = 0; j < 8; j++) scale_min_k4(j, src + 4, blk + 64 + 16 * j + r, blk + 192 + 16 * j + r);
                for (int j = 0; j < 4; j++)
                    for (int m = 0; m < 8; m++) memcpy(blk + 320 + (j * 8 + m) * 64 + 4 * r, src + 16 + 32 * j + 4 * m, 4);
            }
        }
        return;
    }
    const long pbb = cq_packed_bytes(format, 1), bb = block_bytes(format);
    for (long b = 0; b < blocks; b++) {
        uint8_t *blk = out + b * pbb;
        for (long r = 0; r < nrows; r++) {
            const uint8_t *src = rows[r] + b * bb;
            memcpy(blk + 2 * r, src, 2);
            switch (format) {
            case CQ_Q4_0:
                for (int m = 0; m < 4; m++) memcpy(blk + 32 + 64 * m + 4 * r, src + 2 + 4 * m, 4);
                break;
            case CQ_Q4_1:
                memcpy(blk + 32 + 2 * r, src + 2, 2);
                for (int m = 0; m < 4; m++) memcpy(blk + 64 + 64 * m + 4 * r, src + 4 + 4 * m, 4);
                break;
            default:  // CQ_Q8_0
                for (int k = 0; k < 8; k++)
                    for (int j = 0; j < 4; j++) blk[32 + 64 * k + 4 * r + j] = (uint8_t)(src[2 + 4 * k + j] ^ 0x80);
                break;
            }
        }
    }
}

void cq_unpack_row(int format, const uint8_t *packed, long r, long blocks, uint8_t *row) {
    if (format == CQ_Q4_K) {
        for (long sb = 0; sb < blocks / 8; sb++) {
            const uint8_t *blk = packed + sb * Q4K_PACKED;
            uint8_t *dst = row + sb * 144, sc[8], m[8];
            memcpy(dst, blk + 2 * r, 2);
            memcpy(dst + 2, blk + 32 + 2 * r, 2);
            for (int j = 0; j < 8; j++) { sc[j] = blk[64 + 16 * j + r]; m[j] = blk[192 + 16 * j + r]; }
            pack_scale_min_k4(sc, m, dst + 4);
            for (int j = 0; j < 4; j++)
                for (int v = 0; v < 8; v++) memcpy(dst + 16 + 32 * j + 4 * v, blk + 320 + (j * 8 + v) * 64 + 4 * r, 4);
        }
        return;
    }
    const long pbb = cq_packed_bytes(format, 1), bb = block_bytes(format);
    for (long b = 0; b < blocks; b++) {
        const uint8_t *blk = packed + b * pbb;
        uint8_t *dst = row + b * bb;
        memcpy(dst, blk + 2 * r, 2);
        switch (format) {
        case CQ_Q4_0:
            for (int m = 0; m < 4; m++) memcpy(dst + 2 + 4 * m, blk + 32 + 64 * m + 4 * r, 4);
            break;
        case CQ_Q4_1:
            memcpy(dst + 2, blk + 32 + 2 * r, 2);
            for (int m = 0; m < 4; m++) memcpy(dst + 4 + 4 * m, blk + 64 + 64 * m + 4 * r, 4);
            break;
        default:
            for (int k = 0; k < 8; k++)
                for (int j = 0; j < 4; j++) dst[2 + 4 * k + j] = (uint8_t)(blk[32 + 64 * k + 4 * r + j] ^ 0x80);
            break;
        }
    }
}

// One block of 32 (a Q4_K sub-block when format is CQ_Q4_K): the portable path and odd tails.
static float block_dot(int format, const uint8_t *w, long blk, const int8_t *qa, float da, float sa) {
    int32_t dot = 0;
    switch (format) {
    case CQ_Q4_0: {
        const uint8_t *b = w + blk * 18;
        for (int j = 0; j < 16; j++) dot += (b[2 + j] & 0x0F) * qa[j] + (b[2 + j] >> 4) * qa[j + 16];
        const float dw = half_to_float(b);
        return dw * da * (float)dot - 8.0f * dw * sa;
    }
    case CQ_Q4_1: {
        const uint8_t *b = w + blk * 20;
        for (int j = 0; j < 16; j++) dot += (b[4 + j] & 0x0F) * qa[j] + (b[4 + j] >> 4) * qa[j + 16];
        return half_to_float(b) * da * (float)dot + half_to_float(b + 2) * sa;
    }
    case CQ_Q8_0: {
        const uint8_t *b = w + blk * 34;
        for (int j = 0; j < 32; j++) dot += (int8_t)b[2 + j] * qa[j];
        return half_to_float(b) * da * (float)dot;
    }
    default: {  // CQ_Q4_K
        const uint8_t *sb = w + (blk / 8) * 144;
        const int sub = (int)(blk % 8);
        const uint8_t *qs = sb + 16 + (sub / 2) * 32;
        const int shift = (sub % 2) * 4;
        for (int j = 0; j < 32; j++) dot += ((qs[j] >> shift) & 0x0F) * qa[j];
        uint8_t sc, m;
        scale_min_k4(sub, sb + 4, &sc, &m);
        return half_to_float(sb) * (float)sc * da * (float)dot - half_to_float(sb + 2) * (float)m * sa;
    }
    }
}

void cq_dot_rows_portable(int format, const uint8_t *const *rows, long nrows, long blocks,
                              const int8_t *q, const float *d8, const float *s8, long nx,
                              float *y, long ystride) {
    for (long r = 0; r < nrows; r++) {
        for (long i = 0; i < nx; i++) {
            float acc = 0;
            for (long b = 0; b < blocks; b++) {
                const long k = i * blocks + b;
                acc += block_dot(format, rows[r], b, q + k * 32, d8[k * 8], s8[k * 8]);
            }
            y[i * ystride + r] = acc;
        }
    }
}

// The exact integer sum of a block against activation block `qa`, then ggml's float step:
// the portable twin of the packed kernel (same integer sums; float order per block the same).
void cq_dot_packed_portable(int format, const uint8_t *packed, long nrows, long blocks, const int8_t *q,
                                const float *d8, const float *s8, long nx, float *y, long ystride) {
    const long bb = block_bytes(format);
    uint8_t *row = (uint8_t *)malloc((size_t)(blocks * bb));
    if (!row) return;
    for (long r = 0; r < nrows; r++) {
        cq_unpack_row(format, packed, r, blocks, row);
        for (long i = 0; i < nx; i++) {
            float acc = 0, off = 0;
            for (long b = 0; b < blocks; b++) {
                const long k = i * blocks + b;
                const uint8_t *w = row + b * bb;
                const int8_t *qa = q + k * 32;
                if (format == CQ_Q4_K) {  // the super-block's own float step, as the row kernels take it
                    acc += block_dot(CQ_Q4_K, row, b, qa, d8[k * 8], s8[k * 8]);
                    continue;
                }
                int32_t dot = 0;
                float dw = half_to_float(w);
                switch (format) {
                case CQ_Q4_0:
                    for (int j = 0; j < 16; j++) dot += ((w[2 + j] & 0x0F) - 8) * qa[j] + ((w[2 + j] >> 4) - 8) * qa[j + 16];
                    break;
                case CQ_Q4_1:
                    for (int j = 0; j < 16; j++) dot += (w[4 + j] & 0x0F) * qa[j] + (w[4 + j] >> 4) * qa[j + 16];
                    off += half_to_float(w + 2) * s8[k * 8];
                    break;
                default:
                    for (int j = 0; j < 32; j++) dot += (int8_t)w[2 + j] * qa[j];
                    break;
                }
                acc += (float)dot * (dw * d8[k * 8]);
            }
            y[i * ystride + r] = acc + off;
        }
    }
    free(row);
}

#if defined(__x86_64__)
#include <immintrin.h>

#ifndef PREFETCH
#define PREFETCH 16384
#endif
#define VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c,fma")))

int cq_vnni_available(void) {
    static int state = -1;  // benign race: every thread computes the same answer
    if (state < 0) {
        __builtin_cpu_init();
        state = __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw") &&
                __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    }
    return state;
}

// Blocks b and b+1 of 16 nibble bytes each, as 64 unsigned bytes in value order:
// [b low nibbles | b high nibbles | b+1 low | b+1 high].
VNNI static inline __m512i nibble_pair(const uint8_t *b0, const uint8_t *b1) {
    const __m256i both = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)b1), _mm_loadu_si128((const __m128i *)b0));
    const __m256i mask = _mm256_set1_epi8(0x0F);
    const __m256i lo = _mm256_and_si256(both, mask);                         // [b0 lo | b1 lo]
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(both, 4), mask);   // [b0 hi | b1 hi]
    const __m512i r = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);  // lanes: b0lo b1lo b0hi b1hi
    return _mm512_shuffle_i64x2(r, r, _MM_SHUFFLE(3, 1, 2, 0));
}

// 32 nibble bytes of a Q4_K super-block pair: [low nibbles (sub-block 2j) | high (2j+1)].
VNNI static inline __m512i nibble_span(const uint8_t *qs) {
    const __m256i v = _mm256_loadu_si256((const __m256i *)qs);
    const __m256i mask = _mm256_set1_epi8(0x0F);
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(v, mask)),
                              _mm256_and_si256(_mm256_srli_epi16(v, 4), mask), 1);
}

// The weights of one pair of 32-blocks (p = pair index in the row): 64 bytes of codes, and
// per lane the factor on Σ q_w q_a (dw) and on d_a Σ q_a (mw, 8 times too large: each block's
// offset is spread over its 8 lanes, and the sum is scaled by 1/8 once, at the end — exact, as
// 1/8 is a power of two). Lanes 0-7 belong to the first block, 8-15 to the second.
typedef struct { __m512i wq; __m512 dw, mw; } pair_t;

// The fp16 pairs at b0 and b1 (4 bytes each) as floats [b0, b0+2, b1, b1+2], in one conversion.
VNNI static inline __m128 two_half_pairs(const uint8_t *b0, const uint8_t *b1) {
    int32_t x0, x1;
    memcpy(&x0, b0, 4);
    memcpy(&x1, b1, 4);
    return _mm_cvtph_ps(_mm_insert_epi32(_mm_cvtsi32_si128(x0), x1, 1));
}

// Lane groups of 8 from floats 0-3 of `v`: [v[i] × 8, v[j] × 8].
VNNI static inline __m512 spread(__m128 v, int i, int j) {
    const __m512i index = _mm512_inserti64x4(_mm512_set1_epi32(i), _mm256_set1_epi32(j), 1);
    return _mm512_permutexvar_ps(index, _mm512_castps128_ps512(v));
}

VNNI static inline __attribute__((always_inline)) pair_t load_pair(int format, const uint8_t *w, long p) {
    pair_t t;
    switch (format) {
    case CQ_Q4_0: {
        const uint8_t *b0 = w + 2 * p * 18, *b1 = b0 + 18;
        t.wq = nibble_pair(b0 + 2, b1 + 2);
        t.dw = spread(two_half_pairs(b0, b1), 0, 2);  // the pairs' second halves are code bytes
        t.mw = _mm512_mul_ps(t.dw, _mm512_set1_ps(-8.0f));
        break;
    }
    case CQ_Q4_1: {
        const uint8_t *b0 = w + 2 * p * 20, *b1 = b0 + 20;
        t.wq = nibble_pair(b0 + 4, b1 + 4);
        const __m128 dm = two_half_pairs(b0, b1);  // d0 m0 d1 m1
        t.dw = spread(dm, 0, 2);
        t.mw = spread(dm, 1, 3);
        break;
    }
    case CQ_Q8_0: {
        const uint8_t *b0 = w + 2 * p * 34, *b1 = b0 + 34;
        t.wq = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(b0 + 2))),
                                  _mm256_loadu_si256((const __m256i *)(b1 + 2)), 1);
        t.dw = spread(two_half_pairs(b0, b1), 0, 2);
        t.mw = _mm512_setzero_ps();
        break;
    }
    default:  // CQ_Q4_K pairs come from k_pair, with their super-block's factors decoded once
        t.wq = _mm512_setzero_si512();
        t.dw = t.mw = _mm512_setzero_ps();
        break;
    }
    return t;
}

// A Q4_K super-block's eight sub-block factors, decoded once for its four pairs: lanes 0-7 of
// `d` hold d·scale_j and of `m` −dmin·min_j. The 6-bit scales and minimums are unpacked four at
// a time from the 12 packed bytes as 32-bit words w0, w1, w2: scales 0-3 are the low 6 bits of
// w0's bytes, minimums 0-3 of w1's; scales 4-7 are w2's low nibbles with the top 2 bits of w0's
// bytes above them, minimums 4-7 w2's high nibbles with the top 2 bits of w1's.
typedef struct { __m512 d, m; } k_factors_t;

VNNI static inline k_factors_t k_factors(const uint8_t *sb) {
    uint32_t w[3];
    memcpy(w, sb + 4, 12);
    const uint32_t sc_lo = w[0] & 0x3F3F3F3Fu, m_lo = w[1] & 0x3F3F3F3Fu;
    const uint32_t sc_hi = (w[2] & 0x0F0F0F0Fu) | ((w[0] >> 2) & 0x30303030u);
    const uint32_t m_hi = ((w[2] >> 4) & 0x0F0F0F0Fu) | ((w[1] >> 2) & 0x30303030u);
    const __m256 scales = _mm256_cvtepi32_ps(_mm256_set_m128i(_mm_cvtepu8_epi32(_mm_cvtsi32_si128((int)sc_hi)),
                                                              _mm_cvtepu8_epi32(_mm_cvtsi32_si128((int)sc_lo))));
    const __m256 mins = _mm256_cvtepi32_ps(_mm256_set_m128i(_mm_cvtepu8_epi32(_mm_cvtsi32_si128((int)m_hi)),
                                                            _mm_cvtepu8_epi32(_mm_cvtsi32_si128((int)m_lo))));
    k_factors_t f;
    f.d = _mm512_castps256_ps512(_mm256_mul_ps(scales, _mm256_set1_ps(half_to_float(sb))));
    f.m = _mm512_castps256_ps512(_mm256_mul_ps(mins, _mm256_set1_ps(-half_to_float(sb + 2))));
    return f;
}

// Pair j (0-3) of a Q4_K super-block with its factors decoded by k_factors.
VNNI static inline pair_t k_pair(const uint8_t *sb, int j, k_factors_t f) {
    const __m512i index = _mm512_inserti64x4(_mm512_set1_epi32(2 * j), _mm256_set1_epi32(2 * j + 1), 1);
    pair_t t;
    t.wq = nibble_span(sb + 16 + 32 * j);
    t.dw = _mm512_permutexvar_ps(index, f.d);
    t.mw = _mm512_permutexvar_ps(index, f.m);
    return t;
}

// One weight row against G activation rows (G a compile-time constant after inlining, so the
// accumulators live in registers): out[k] for k in 0..<G holds 16 lanes whose sum is the dot
// product with activation row k, but for an odd last block (see `row_tail`). `d8` and `s8` hold
// each activation block's d and d·Σq repeated over 8 lanes.
VNNI static inline __attribute__((always_inline)) void
row_lanes(int format, const int G, const uint8_t *w, long blocks, const int8_t *q, const float *d8,
          const float *s8, __m512 *out) {
    const long pairs = blocks / 2;
    __m512 acc[4], off[4];
    for (int k = 0; k < G; k++) { acc[k] = _mm512_setzero_ps(); off[k] = _mm512_setzero_ps(); }
    const long pair_bytes = format == CQ_Q4_0 ? 36 : format == CQ_Q4_1 ? 40 : format == CQ_Q8_0 ? 68 : 72;
    k_factors_t k = { _mm512_setzero_ps(), _mm512_setzero_ps() };
    for (long p = 0; p < pairs; p++) {
        // The rows stream from memory: ask for the bytes a few rows ahead (harmless past the end).
        _mm_prefetch((const char *)w + p * pair_bytes + PREFETCH, _MM_HINT_T0);
        pair_t t;
        if (format == CQ_Q4_K) {  // factors once per super-block, not once per pair
            if ((p & 3) == 0) k = k_factors(w + (p / 4) * 144);
            t = k_pair(w + (p / 4) * 144, (int)(p & 3), k);
        } else {
            t = load_pair(format, w, p);
        }
        __m512i wq = t.wq;
        __mmask64 negative = 0;
        if (format == CQ_Q8_0) {  // signed weights: |w| times x with w's sign
            negative = _mm512_movepi8_mask(wq);
            wq = _mm512_abs_epi8(wq);
        }
        for (int k = 0; k < G; k++) {
            const long b = k * blocks + 2 * p;
            __m512i xa = _mm512_loadu_si512((const void *)(q + b * 32));
            if (format == CQ_Q8_0) xa = _mm512_mask_sub_epi8(xa, negative, _mm512_setzero_si512(), xa);
            const __m512i dp = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq, xa);
            const __m512 scale = _mm512_mul_ps(t.dw, _mm512_loadu_ps(d8 + b * 8));
            acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp), scale, acc[k]);
            if (format != CQ_Q8_0) off[k] = _mm512_fmadd_ps(t.mw, _mm512_loadu_ps(s8 + b * 8), off[k]);
        }
    }
    for (int k = 0; k < G; k++) out[k] = _mm512_fmadd_ps(off[k], _mm512_set1_ps(0.125f), acc[k]);
}

// The odd last block of a row against activation row k (0 when the row has whole pairs).
VNNI static inline float row_tail(int format, const uint8_t *w, long blocks, long k, const int8_t *q,
                                  const float *d8, const float *s8) {
    if (blocks % 2 == 0) return 0;
    const long b = k * blocks + blocks - 1;
    return block_dot(format, w, blocks - 1, q + b * 32, d8[b * 8], s8[b * 8]);
}

VNNI static inline __attribute__((always_inline)) void
row_dot(int format, const int G, const uint8_t *w, long blocks, const int8_t *q, const float *d8,
        const float *s8, float *y, long ystride) {
    __m512 lanes[4];
    row_lanes(format, G, w, blocks, q, d8, s8, lanes);
    for (int k = 0; k < G; k++) y[k * ystride] = _mm512_reduce_add_ps(lanes[k]) + row_tail(format, w, blocks, k, q, d8, s8);
}

// The lane sums of sixteen vectors as one vector, lane r for v[r]. Each vector's lanes are added
// in the order of _mm512_reduce_add_ps (lane i + i+8, then i + i+4, i + i+2, i + i+1), so a row
// gets the same float whether it is reduced here or alone.
VNNI static inline __m512 sixteen_sums(const __m512 *v) {
    __m512 p[8], q[4], r[2];
    for (int k = 0; k < 8; k++)  // [v2k: i + i+8 | v2k+1: i + i+8], 8 lanes each
        p[k] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    for (int k = 0; k < 4; k++)  // 128-bit lane L: vector 4k+L, its 4 partials i + i+4
        q[k] = _mm512_add_ps(_mm512_shuffle_f32x4(p[2 * k], p[2 * k + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(p[2 * k], p[2 * k + 1], _MM_SHUFFLE(3, 1, 3, 1)));
    for (int k = 0; k < 2; k++)  // lane L: [vector 8k+L: 2 partials | vector 8k+4+L: 2 partials]
        r[k] = _mm512_add_ps(_mm512_shuffle_ps(q[2 * k], q[2 * k + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_ps(q[2 * k], q[2 * k + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    // lane L: the sums of vectors L, 4+L, 8+L, 12+L
    const __m512 f = _mm512_add_ps(_mm512_shuffle_ps(r[0], r[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm512_shuffle_ps(r[0], r[1], _MM_SHUFFLE(3, 1, 3, 1)));
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    return _mm512_permutexvar_ps(order, f);
}

VNNI static inline __attribute__((always_inline)) void
dot_rows_vnni(int format, const uint8_t *const *rows, long nrows, long blocks,
              const int8_t *q, const float *d8, const float *s8, long nx, float *y, long ystride) {
    long r = 0;
    if (nx == 1) {  // one activation row (decoding): sixteen weight rows' sums reduced together
        for (; r + 16 <= nrows; r += 16) {
            __m512 lanes[16];
            for (int k = 0; k < 16; k++) row_lanes(format, 1, rows[r + k], blocks, q, d8, s8, lanes + k);
            __m512 sums = sixteen_sums(lanes);
            if (blocks % 2) {
                float tails[16];
                for (int k = 0; k < 16; k++) tails[k] = row_tail(format, rows[r + k], blocks, 0, q, d8, s8);
                sums = _mm512_add_ps(sums, _mm512_loadu_ps(tails));
            }
            _mm512_storeu_ps(y + r, sums);
        }
    }
    for (; r < nrows; r++) {
        long i = 0;
        for (; i + 4 <= nx; i += 4)
            row_dot(format, 4, rows[r], blocks, q + i * blocks * 32, d8 + i * blocks * 8, s8 + i * blocks * 8,
                    y + i * ystride + r, ystride);
        const int left = (int)(nx - i);
        const int8_t *qi = q + i * blocks * 32;
        const float *di = d8 + i * blocks * 8, *si = s8 + i * blocks * 8;
        float *yi = y + i * ystride + r;
        if (left == 1) row_dot(format, 1, rows[r], blocks, qi, di, si, yi, ystride);
        else if (left == 2) row_dot(format, 2, rows[r], blocks, qi, di, si, yi, ystride);
        else if (left == 3) row_dot(format, 3, rows[r], blocks, qi, di, si, yi, ystride);
    }
}

VNNI static void dot_q4_0(const uint8_t *const *rows, long nrows, long blocks, const int8_t *q, const float *d,
                          const float *sum, long nx, float *y, long ystride) {
    dot_rows_vnni(CQ_Q4_0, rows, nrows, blocks, q, d, sum, nx, y, ystride);
}
VNNI static void dot_q4_1(const uint8_t *const *rows, long nrows, long blocks, const int8_t *q, const float *d,
                          const float *sum, long nx, float *y, long ystride) {
    dot_rows_vnni(CQ_Q4_1, rows, nrows, blocks, q, d, sum, nx, y, ystride);
}
VNNI static void dot_q8_0(const uint8_t *const *rows, long nrows, long blocks, const int8_t *q, const float *d,
                          const float *sum, long nx, float *y, long ystride) {
    dot_rows_vnni(CQ_Q8_0, rows, nrows, blocks, q, d, sum, nx, y, ystride);
}
VNNI static void dot_q4_k(const uint8_t *const *rows, long nrows, long blocks, const int8_t *q, const float *d,
                          const float *sum, long nx, float *y, long ystride) {
    dot_rows_vnni(CQ_Q4_K, rows, nrows, blocks, q, d, sum, nx, y, ystride);
}

// Sixteen packed rows (one per 32-bit lane) against G activation rows: out[k] lane r is row r's
// dot product with activation row k. Per block the integer sum is exact (offsets removed with the
// activation block's Σq), then d_w·d_a times it is added; Q4_1 adds m_w·(d_a Σq_a) apart.
VNNI static inline __attribute__((always_inline)) void
packed_lanes(int format, const int G, const uint8_t *p, long blocks, const int8_t *q, const float *d8,
             const float *s8, const int32_t *sums, __m512 *out) {
    const long pbb = format == CQ_Q4_0 ? 288 : format == CQ_Q4_1 ? 320 : 544;
    const __m512i low = _mm512_set1_epi8(0x0F);
    __m512 acc[4], off[4];
    for (int k = 0; k < G; k++) { acc[k] = _mm512_setzero_ps(); off[k] = _mm512_setzero_ps(); }
    for (long b = 0; b < blocks; b++) {
        const uint8_t *blk = p + b * pbb;
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)blk));
        __m512i isum[4];
        for (int k = 0; k < G; k++) isum[k] = _mm512_setzero_si512();
        if (format == CQ_Q8_0) {
            for (int v = 0; v < 8; v++) {
                const __m512i w = _mm512_loadu_si512((const void *)(blk + 32 + 64 * v));
                for (int k = 0; k < G; k++) {
                    int32_t a;
                    memcpy(&a, q + (k * blocks + b) * 32 + 4 * v, 4);
                    isum[k] = _mm512_dpbusd_epi32(isum[k], w, _mm512_set1_epi32(a));
                }
            }
        } else {
            const uint8_t *codes = blk + (format == CQ_Q4_1 ? 64 : 32);
            for (int m = 0; m < 4; m++) {
                const __m512i w = _mm512_loadu_si512((const void *)(codes + 64 * m));
                const __m512i lo = _mm512_and_si512(w, low), hi = _mm512_and_si512(_mm512_srli_epi16(w, 4), low);
                for (int k = 0; k < G; k++) {
                    const int8_t *qa = q + (k * blocks + b) * 32;
                    int32_t a0, a1;
                    memcpy(&a0, qa + 4 * m, 4);
                    memcpy(&a1, qa + 16 + 4 * m, 4);
                    isum[k] = _mm512_dpbusd_epi32(isum[k], lo, _mm512_set1_epi32(a0));
                    isum[k] = _mm512_dpbusd_epi32(isum[k], hi, _mm512_set1_epi32(a1));
                }
            }
        }
        for (int k = 0; k < G; k++) {
            const long kb = k * blocks + b;
            // The codes' offsets (Q4_0 stores q + 8, packed Q8_0 q + 128), exactly, in integers.
            if (format == CQ_Q4_0) isum[k] = _mm512_sub_epi32(isum[k], _mm512_set1_epi32(8 * sums[kb]));
            if (format == CQ_Q8_0) isum[k] = _mm512_sub_epi32(isum[k], _mm512_set1_epi32(128 * sums[kb]));
            acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[k]), _mm512_mul_ps(dw, _mm512_set1_ps(d8[kb * 8])), acc[k]);
            if (format == CQ_Q4_1) {
                const __m512 mw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(blk + 32)));
                off[k] = _mm512_fmadd_ps(mw, _mm512_set1_ps(s8[kb * 8]), off[k]);
            }
        }
    }
    for (int k = 0; k < G; k++) out[k] = format == CQ_Q4_1 ? _mm512_add_ps(acc[k], off[k]) : acc[k];
}

// The packed Q4_K kernel: per sub-block pair, the two sub-blocks' exact integer sums (low and
// high nibbles), then d·sc·d_a times each, and dmin·m·(d_a Σq_a) apart (subtracted at the end).
// d·sc is exact in floats (an fp16 times a 6-bit integer).
VNNI static inline __attribute__((always_inline)) void
packed_lanes_q4k(const int G, const uint8_t *p, long blocks, const int8_t *q, const float *d8, const float *s8,
                 __m512 *out) {
    const __m512i low = _mm512_set1_epi8(0x0F);
    __m512 acc[4], off[4];
    for (int k = 0; k < G; k++) { acc[k] = _mm512_setzero_ps(); off[k] = _mm512_setzero_ps(); }
    for (long sb = 0; sb < blocks / 8; sb++) {
        const uint8_t *blk = p + sb * Q4K_PACKED;
        const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)blk));
        const __m512 dmin = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(blk + 32)));
        for (int j = 0; j < 4; j++) {
            __m512i sa[4], sb2[4];
            for (int k = 0; k < G; k++) { sa[k] = _mm512_setzero_si512(); sb2[k] = _mm512_setzero_si512(); }
            for (int m = 0; m < 8; m++) {
                const __m512i w = _mm512_loadu_si512((const void *)(blk + 320 + (j * 8 + m) * 64));
                const __m512i lo = _mm512_and_si512(w, low), hi = _mm512_and_si512(_mm512_srli_epi16(w, 4), low);
                for (int k = 0; k < G; k++) {
                    const int8_t *qa = q + (k * blocks + sb * 8 + 2 * j) * 32;
                    int32_t a0, a1;
                    memcpy(&a0, qa + 4 * m, 4);
                    memcpy(&a1, qa + 32 + 4 * m, 4);
                    sa[k] = _mm512_dpbusd_epi32(sa[k], lo, _mm512_set1_epi32(a0));
                    sb2[k] = _mm512_dpbusd_epi32(sb2[k], hi, _mm512_set1_epi32(a1));
                }
            }
            __m512 factor[2], minimum[2];
            for (int h = 0; h < 2; h++) {
                const int sub = 2 * j + h;
                factor[h] = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(blk + 64 + 16 * sub)))));
                minimum[h] = _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(blk + 192 + 16 * sub)))));
            }
            for (int k = 0; k < G; k++) {
                const long kb = k * blocks + sb * 8 + 2 * j;
                acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sa[k]), _mm512_mul_ps(factor[0], _mm512_set1_ps(d8[kb * 8])), acc[k]);
                acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sb2[k]), _mm512_mul_ps(factor[1], _mm512_set1_ps(d8[(kb + 1) * 8])), acc[k]);
                off[k] = _mm512_fmadd_ps(minimum[0], _mm512_set1_ps(s8[kb * 8]), off[k]);
                off[k] = _mm512_fmadd_ps(minimum[1], _mm512_set1_ps(s8[(kb + 1) * 8]), off[k]);
            }
        }
    }
    for (int k = 0; k < G; k++) out[k] = _mm512_sub_ps(acc[k], off[k]);
}

VNNI static inline __attribute__((always_inline)) void
dot_packed_vnni(int format, const uint8_t *p, long nrows, long blocks, const int8_t *q, const float *d8,
                const float *s8, const int32_t *sums, long nx, float *y, long ystride) {
    const __mmask16 mask = nrows >= 16 ? 0xFFFF : (__mmask16)((1u << nrows) - 1);
    for (long i = 0; i < nx; i += 4) {
        const long left = nx - i < 4 ? nx - i : 4;
        const int8_t *qi = q + i * blocks * 32;
        const float *di = d8 + i * blocks * 8, *si = s8 + i * blocks * 8;
        const int32_t *ui = sums + i * blocks;
        __m512 out[4];
        if (format == CQ_Q4_K) {
            switch (left) {
            case 1: packed_lanes_q4k(1, p, blocks, qi, di, si, out); break;
            case 2: packed_lanes_q4k(2, p, blocks, qi, di, si, out); break;
            case 3: packed_lanes_q4k(3, p, blocks, qi, di, si, out); break;
            default: packed_lanes_q4k(4, p, blocks, qi, di, si, out); break;
            }
        } else {
            switch (left) {
            case 1: packed_lanes(format, 1, p, blocks, qi, di, si, ui, out); break;
            case 2: packed_lanes(format, 2, p, blocks, qi, di, si, ui, out); break;
            case 3: packed_lanes(format, 3, p, blocks, qi, di, si, ui, out); break;
            default: packed_lanes(format, 4, p, blocks, qi, di, si, ui, out); break;
            }
        }
        for (long k = 0; k < left; k++) _mm512_mask_storeu_ps(y + (i + k) * ystride, mask, out[k]);
    }
}

// One function per format, so that each inlines dot_packed_vnni with its format a constant.
#define PACKED_KERNEL(name, format)                                                                        \
    VNNI static void name(const uint8_t *p, long nrows, long blocks, const int8_t *q, const float *d8,    \
                          const float *s8, const int32_t *sums, long nx, float *y, long ystride) {         \
        dot_packed_vnni(format, p, nrows, blocks, q, d8, s8, sums, nx, y, ystride);                        \
    }
PACKED_KERNEL(dot_packed_q4_0, CQ_Q4_0)
PACKED_KERNEL(dot_packed_q4_1, CQ_Q4_1)
PACKED_KERNEL(dot_packed_q4_k, CQ_Q4_K)
PACKED_KERNEL(dot_packed_q8_0, CQ_Q8_0)

// ggml's quantize_row_q8_0_ref, sixteen values at a time: the same max, the same 1/d, the same
// products, and roundf's halves away from zero done exactly (t = trunc(v); |v − t| ≥ 0.5 steps
// away from zero: v − trunc(v) is exact in floats).
VNNI static void quantize_q8_avx512(const float *x, long blocks, int8_t *q, float *d8, float *s8, int32_t *sums) {
    const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
    for (long b = 0; b < blocks; b++) {
        const float *xb = x + b * 32;
        const __m512 x0 = _mm512_loadu_ps(xb), x1 = _mm512_loadu_ps(xb + 16);
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
        const float db = amax / 127.0f;
        const float id = db != 0 ? 1.0f / db : 0.0f;
        const __m512 vid = _mm512_set1_ps(id);
        __m512i r[2];
        for (int h = 0; h < 2; h++) {
            const __m512 v = _mm512_mul_ps(h ? x1 : x0, vid);
            const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            const __mmask16 up = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_sub_ps(v, t)), half, _CMP_GE_OQ);
            // t ± 1 where the fraction is at least a half, the sign of v.
            const __m512 step = _mm512_or_ps(one, _mm512_and_ps(v, _mm512_set1_ps(-0.0f)));
            r[h] = _mm512_cvttps_epi32(_mm512_mask_add_ps(t, up, t, step));
        }
        _mm_storeu_si128((__m128i *)(q + b * 32), _mm512_cvtsepi32_epi8(r[0]));
        _mm_storeu_si128((__m128i *)(q + b * 32 + 16), _mm512_cvtsepi32_epi8(r[1]));
        const int32_t s = _mm512_reduce_add_epi32(_mm512_add_epi32(r[0], r[1]));
        const float dh = (float)(_Float16)db;
        _mm256_storeu_ps(d8 + b * 8, _mm256_set1_ps(dh));
        _mm256_storeu_ps(s8 + b * 8, _mm256_set1_ps(dh * (float)s));
        if (sums) sums[b] = s;
    }
}

void cq_quantize_q8(const float *x, long blocks, int8_t *q, float *d8, float *s8, int32_t *sums) {
    if (cq_vnni_available()) quantize_q8_avx512(x, blocks, q, d8, s8, sums);
    else if (cq_avx2_available()) cq_avx2_quantize_q8(x, blocks, q, d8, s8, sums);
    else cq_quantize_q8_portable(x, blocks, q, d8, s8, sums);
}

void cq_dot_packed(int format, const uint8_t *packed, long nrows, long blocks, const int8_t *q, const float *d8,
                   const float *s8, const int32_t *sums, long nx, float *y, long ystride) {
    if (!cq_vnni_available()) {
        if (cq_avx2_available()) cq_avx2_dot_packed(format, packed, nrows, blocks, q, d8, s8, sums, nx, y, ystride);
        else cq_dot_packed_portable(format, packed, nrows, blocks, q, d8, s8, nx, y, ystride);
        return;
    }
    switch (format) {
    case CQ_Q4_0: dot_packed_q4_0(packed, nrows, blocks, q, d8, s8, sums, nx, y, ystride); break;
    case CQ_Q4_1: dot_packed_q4_1(packed, nrows, blocks, q, d8, s8, sums, nx, y, ystride); break;
    case CQ_Q4_K: dot_packed_q4_k(packed, nrows, blocks, q, d8, s8, sums, nx, y, ystride); break;
    default: dot_packed_q8_0(packed, nrows, blocks, q, d8, s8, sums, nx, y, ystride); break;
    }
}

void cq_dot_rows(int format, const uint8_t *const *rows, long nrows, long blocks,
                 const int8_t *q, const float *d8, const float *s8, long nx, float *y, long ystride) {
    if (!cq_vnni_available()) {
        if (cq_avx2_available()) cq_avx2_dot_rows(format, rows, nrows, blocks, q, d8, s8, nx, y, ystride);
        else cq_dot_rows_portable(format, rows, nrows, blocks, q, d8, s8, nx, y, ystride);
        return;
    }
    switch (format) {
    case CQ_Q4_0: dot_q4_0(rows, nrows, blocks, q, d8, s8, nx, y, ystride); break;
    case CQ_Q4_1: dot_q4_1(rows, nrows, blocks, q, d8, s8, nx, y, ystride); break;
    case CQ_Q8_0: dot_q8_0(rows, nrows, blocks, q, d8, s8, nx, y, ystride); break;
    default: dot_q4_k(rows, nrows, blocks, q, d8, s8, nx, y, ystride); break;
    }
}

#else

int cq_vnni_available(void) { return 0; }

void cq_quantize_q8(const float *x, long blocks, int8_t *q, float *d8, float *s8, int32_t *sums) {
    cq_quantize_q8_portable(x, blocks, q, d8, s8, sums);
}

void cq_dot_packed(int format, const uint8_t *packed, long nrows, long blocks, const int8_t *q, const float *d8,
                   const float *s8, const int32_t *sums, long nx, float *y, long ystride) {
    (void)sums;
    cq_dot_packed_portable(format, packed, nrows, blocks, q, d8, s8, nx, y, ystride);
}

void cq_dot_rows(int format, const uint8_t *const *rows, long nrows, long blocks,
                 const int8_t *q, const float *d8, const float *s8, long nx, float *y, long ystride) {
    cq_dot_rows_portable(format, rows, nrows, blocks, q, d8, s8, nx, y, ystride);
}

#endif

// ---------------------------------------------------------------------------------------------
// A rank-16 adapter's terms for one token (`cq_rank16_expand`).

static inline float rank16_dot(const float *b, const float *u) {
    float e[8];
    for (int l = 0; l < 8; l++) {
        const float low = b[l] * u[l], high = b[l + 8] * u[l + 8];
        e[l] = low + high;
    }
    return ((e[0] + e[1]) + (e[2] + e[3])) + ((e[4] + e[5]) + (e[6] + e[7]));
}

void cq_rank16_expand_portable(const float *b, long rows, const float *u, float scale, float *y) {
    for (long i = 0; i < rows; i++) {
        const float term = scale * rank16_dot(b + 16 * i, u);
        y[i] += term;
    }
}

void cq_rank16_expand(const float *b, long rows, const float *u, float scale, float *y) {
#if defined(__x86_64__)
    if (cq_avx2_available()) {
        cq_avx2_rank16_expand(b, rows, u, scale, y);
        return;
    }
#endif
    cq_rank16_expand_portable(b, rows, u, scale, y);
}
