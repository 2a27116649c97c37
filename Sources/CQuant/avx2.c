// The integer kernels for x86-64 CPUs with AVX2, FMA and F16C but no AVX-512 VNNI (AMD Zen 2
// and 3, Intel before Ice Lake). Without them such a CPU ran the portable C loops, whose fp16
// conversions are library calls: SmolLM2 decoded at 5 tokens/s instead of about 100.
//
// AVX2 has no `vpdpbusd`; `vpmaddubsw` multiplies unsigned bytes by signed bytes and adds
// neighbouring pairs into saturating 16-bit sums, and `vpmaddwd` by ones widens them to 32 bits.
// Every integer sum here is exact, not saturated:
// - 4-bit codes (0..15) against activations (|q| ≤ 127: ggml's Q8_0 rounding of x·127/max|x|):
//   a pair is at most 2·15·127 = 3,810, so a block's eight pair sums per lane add in 16 bits
//   (30,480 < 32,767) before one widening;
// - 8-bit weights take ggml's sign trick (|w| times a with w's sign): a pair is at most
//   2·128·127 = 32,512, so each is widened at once.
// Per output row the float steps are those of the AVX-512 kernels lane for lane (the same
// integer sums, the same products and fused multiply-adds in the same order), so a packed
// product gives the same floats on either kind of CPU.
#include "CQuant.h"
#include "blocks.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))

int cq_avx2_available(void) {
    static int state = -1;  // benign race: every thread computes the same answer
    if (state < 0) {
        __builtin_cpu_init();
        state = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    }
    return state;
}

// Eight fp16 values (16 bytes) as floats.
AVX2 static inline __m256 halves8(const uint8_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }

// Four activation bytes repeated in every 32-bit lane.
AVX2 static inline __m256i broadcast4(const int8_t *p) {
    int32_t a;
    memcpy(&a, p, 4);
    return _mm256_set1_epi32(a);
}

// Eight unsigned bytes as floats.
AVX2 static inline __m256 bytes8(const uint8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}

// The 32-bit lane sums of signed bytes w times signed bytes a, exact (ggml's sign trick).
AVX2 static inline __m256i signed_dot(__m256i w, __m256i a) {
    const __m256i pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
    return _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
}

// ---------------------------------------------------------------------------------------------
// Activations: ggml's quantize_row_q8_0_ref, eight values at a time, byte for byte the portable
// loop's (the same max, 1/d and products; roundf's halves away from zero done exactly).

AVX2 void cq_avx2_quantize_q8(const float *x, long blocks, int8_t *q, float *d8, float *s8, int32_t *sums) {
    const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (long b = 0; b < blocks; b++) {
        const float *xb = x + b * 32;
        __m256 v[4], amax = _mm256_setzero_ps();
        for (int i = 0; i < 4; i++) {
            v[i] = _mm256_loadu_ps(xb + 8 * i);
            // max(|x|, amax) keeps amax where x is NaN, as the portable `a > amax ? a : amax`.
            amax = _mm256_max_ps(_mm256_andnot_ps(sign, v[i]), amax);
        }
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        const float db = _mm_cvtss_f32(m) / 127.0f;
        const float id = db != 0 ? 1.0f / db : 0.0f;
        const __m256 vid = _mm256_set1_ps(id);
        __m256i r[4];
        for (int i = 0; i < 4; i++) {
            const __m256 s = _mm256_mul_ps(v[i], vid);
            const __m256 t = _mm256_round_ps(s, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            const __m256 up = _mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_sub_ps(s, t)), half, _CMP_GE_OQ);
            const __m256 step = _mm256_and_ps(up, _mm256_or_ps(one, _mm256_and_ps(s, sign)));
            r[i] = _mm256_cvttps_epi32(_mm256_add_ps(t, step));
        }
        // 32 int32 → 32 int8 (values fit: |q| ≤ 127), back in order after the in-lane packs.
        const __m256i w16 = _mm256_packs_epi16(_mm256_packs_epi32(r[0], r[1]), _mm256_packs_epi32(r[2], r[3]));
        _mm256_storeu_si256((__m256i *)(q + b * 32), _mm256_permutevar8x32_epi32(w16, order));
        const __m256i s4 = _mm256_add_epi32(_mm256_add_epi32(r[0], r[1]), _mm256_add_epi32(r[2], r[3]));
        __m128i s = _mm_add_epi32(_mm256_castsi256_si128(s4), _mm256_extracti128_si256(s4, 1));
        s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
        s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
        const int32_t total = _mm_cvtsi128_si32(s);
        const float dh = (float)(_Float16)db;
        _mm256_storeu_ps(d8 + b * 8, _mm256_set1_ps(dh));
        _mm256_storeu_ps(s8 + b * 8, _mm256_set1_ps(dh * (float)total));
        if (sums) sums[b] = total;
    }
}

// ---------------------------------------------------------------------------------------------
// Packed runs of 16 rows (decoding's layout): each 64-byte vector of the layout is read as two
// halves, rows 0-7 and rows 8-15, one row per 32-bit lane.

// How far ahead of the block in use the first pass over a run asks for its weights. Decoding
// streams the weights from memory once per token, and the hardware prefetcher alone kept these
// kernels at about 10 GB/s on one Zen 3 core where a plain read gets 15-18 (software prefetch
// 2 KB ahead: 12-17 GB/s). Later passes (prefill's next activation rows) find the run in cache.
// 1.5 KB with each line asked for once (`prefetch_lines`) took 1-2% less time a token than 2 KB
// with a request every 64 bytes of each block, which asked for some lines twice (Q4_1, the
// published file: twelve token-alternating runs of twelve faster; Q4_0 about 1%, Q4_K under 1%).
#define PREFETCH_BYTES 1536

// Asks for the cache lines that start in [p, p + n): blocks that follow one another then ask for
// each line of their stream once, whatever their size (Q4_0's 288 bytes are 4.5 lines).
AVX2 static inline void prefetch_lines(const uint8_t *p, long n) {
    const uintptr_t end = (uintptr_t)p + (uintptr_t)n;
    for (uintptr_t line = ((uintptr_t)p + 63) & ~(uintptr_t)63; line < end; line += 64) _mm_prefetch((const char *)line, _MM_HINT_T0);
}

// Q4_0, Q4_1 and Q8_0: out[k][h] lane r is row 8h + r's dot product with activation row k.
// Both halves of a block's vectors go through one pass, so each broadcast of activation bytes
// serves sixteen rows, not eight.
AVX2 static inline __attribute__((always_inline)) void
packed_lanes(int format, const int G, const uint8_t *p, long blocks, const int8_t *q, const float *d8,
             const float *s8, const int32_t *sums, int prefetch, __m256 out[][2]) {
    const long pbb = format == CQ_Q4_0 ? 288 : format == CQ_Q4_1 ? 320 : 544;
    const __m256i low = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1), flip = _mm256_set1_epi8((char)0x80);
    __m256 acc[4][2], off[4][2];
    for (int k = 0; k < G; k++)
        for (int h = 0; h < 2; h++) acc[k][h] = off[k][h] = _mm256_setzero_ps();
    for (long b = 0; b < blocks; b++) {
        const uint8_t *blk = p + b * pbb;
        if (prefetch) prefetch_lines(blk + PREFETCH_BYTES, pbb);
        __m256i isum[4][2];
        if (format == CQ_Q8_0) {
            for (int k = 0; k < G; k++) isum[k][0] = isum[k][1] = _mm256_setzero_si256();
            for (int v = 0; v < 8; v++) {
                // The layout stores q + 128; the sign trick wants q itself.
                const __m256i w0 = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(blk + 32 + 64 * v)), flip);
                const __m256i w1 = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(blk + 32 + 64 * v + 32)), flip);
                for (int k = 0; k < G; k++) {
                    const __m256i a = broadcast4(q + (k * blocks + b) * 32 + 4 * v);
                    isum[k][0] = _mm256_add_epi32(isum[k][0], signed_dot(w0, a));
                    isum[k][1] = _mm256_add_epi32(isum[k][1], signed_dot(w1, a));
                }
            }
        } else {
            const uint8_t *codes = blk + (format == CQ_Q4_1 ? 64 : 32);
            __m256i pairs[4][2];
            for (int k = 0; k < G; k++) pairs[k][0] = pairs[k][1] = _mm256_setzero_si256();
            for (int m = 0; m < 4; m++) {
                const __m256i w0 = _mm256_loadu_si256((const __m256i *)(codes + 64 * m));
                const __m256i w1 = _mm256_loadu_si256((const __m256i *)(codes + 64 * m + 32));
                const __m256i lo0 = _mm256_and_si256(w0, low), hi0 = _mm256_and_si256(_mm256_srli_epi16(w0, 4), low);
                const __m256i lo1 = _mm256_and_si256(w1, low), hi1 = _mm256_and_si256(_mm256_srli_epi16(w1, 4), low);
                for (int k = 0; k < G; k++) {
                    const int8_t *qa = q + (k * blocks + b) * 32;
                    const __m256i al = broadcast4(qa + 4 * m), ah = broadcast4(qa + 16 + 4 * m);
                    pairs[k][0] = _mm256_add_epi16(pairs[k][0], _mm256_maddubs_epi16(lo0, al));
                    pairs[k][0] = _mm256_add_epi16(pairs[k][0], _mm256_maddubs_epi16(hi0, ah));
                    pairs[k][1] = _mm256_add_epi16(pairs[k][1], _mm256_maddubs_epi16(lo1, al));
                    pairs[k][1] = _mm256_add_epi16(pairs[k][1], _mm256_maddubs_epi16(hi1, ah));
                }
            }
            for (int k = 0; k < G; k++)
                for (int h = 0; h < 2; h++) isum[k][h] = _mm256_madd_epi16(pairs[k][h], ones);
        }
        for (int h = 0; h < 2; h++) {
            const __m256 dw = halves8(blk + 16 * h);
            for (int k = 0; k < G; k++) {
                const long kb = k * blocks + b;
                if (format == CQ_Q4_0) isum[k][h] = _mm256_sub_epi32(isum[k][h], _mm256_set1_epi32(8 * sums[kb]));
                acc[k][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[k][h]), _mm256_mul_ps(dw, _mm256_set1_ps(d8[kb * 8])), acc[k][h]);
                if (format == CQ_Q4_1)
                    off[k][h] = _mm256_fmadd_ps(halves8(blk + 32 + 16 * h), _mm256_set1_ps(s8[kb * 8]), off[k][h]);
            }
        }
    }
    for (int k = 0; k < G; k++)
        for (int h = 0; h < 2; h++) out[k][h] = format == CQ_Q4_1 ? _mm256_add_ps(acc[k][h], off[k][h]) : acc[k][h];
}

// Q4_K: per sub-block pair the two sub-blocks' exact integer sums, d·sc·d_a times each, and
// dmin·m·(d_a Σq_a) apart, subtracted at the end. Both halves of the rows share each pass over
// the codes, as above.
AVX2 static inline __attribute__((always_inline)) void
packed_lanes_q4k(const int G, const uint8_t *p, long blocks, const int8_t *q, const float *d8, const float *s8,
                 int prefetch, __m256 out[][2]) {
    const __m256i low = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    __m256 acc[4][2], off[4][2];
    for (int k = 0; k < G; k++)
        for (int h = 0; h < 2; h++) acc[k][h] = off[k][h] = _mm256_setzero_ps();
    for (long sb = 0; sb < blocks / 8; sb++) {
        const uint8_t *blk = p + sb * Q4K_PACKED;
        for (int j = 0; j < 4; j++) {
            if (prefetch) prefetch_lines(blk + PREFETCH_BYTES + j * (Q4K_PACKED / 4), Q4K_PACKED / 4);
            __m256i pa[4][2], pb[4][2];
            for (int k = 0; k < G; k++) pa[k][0] = pa[k][1] = pb[k][0] = pb[k][1] = _mm256_setzero_si256();
            for (int m = 0; m < 8; m++) {
                const __m256i w0 = _mm256_loadu_si256((const __m256i *)(blk + 320 + (j * 8 + m) * 64));
                const __m256i w1 = _mm256_loadu_si256((const __m256i *)(blk + 320 + (j * 8 + m) * 64 + 32));
                const __m256i lo0 = _mm256_and_si256(w0, low), hi0 = _mm256_and_si256(_mm256_srli_epi16(w0, 4), low);
                const __m256i lo1 = _mm256_and_si256(w1, low), hi1 = _mm256_and_si256(_mm256_srli_epi16(w1, 4), low);
                for (int k = 0; k < G; k++) {
                    const int8_t *qa = q + (k * blocks + sb * 8 + 2 * j) * 32;
                    const __m256i al = broadcast4(qa + 4 * m), ah = broadcast4(qa + 32 + 4 * m);
                    pa[k][0] = _mm256_add_epi16(pa[k][0], _mm256_maddubs_epi16(lo0, al));
                    pb[k][0] = _mm256_add_epi16(pb[k][0], _mm256_maddubs_epi16(hi0, ah));
                    pa[k][1] = _mm256_add_epi16(pa[k][1], _mm256_maddubs_epi16(lo1, al));
                    pb[k][1] = _mm256_add_epi16(pb[k][1], _mm256_maddubs_epi16(hi1, ah));
                }
            }
            for (int h = 0; h < 2; h++) {
                const __m256 d = halves8(blk + 16 * h), dmin = halves8(blk + 32 + 16 * h);
                const __m256 factor0 = _mm256_mul_ps(d, bytes8(blk + 64 + 16 * (2 * j) + 8 * h));
                const __m256 factor1 = _mm256_mul_ps(d, bytes8(blk + 64 + 16 * (2 * j + 1) + 8 * h));
                const __m256 minimum0 = _mm256_mul_ps(dmin, bytes8(blk + 192 + 16 * (2 * j) + 8 * h));
                const __m256 minimum1 = _mm256_mul_ps(dmin, bytes8(blk + 192 + 16 * (2 * j + 1) + 8 * h));
                for (int k = 0; k < G; k++) {
                    const long kb = k * blocks + sb * 8 + 2 * j;
                    acc[k][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(pa[k][h], ones)),
                                                _mm256_mul_ps(factor0, _mm256_set1_ps(d8[kb * 8])), acc[k][h]);
                    acc[k][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(pb[k][h], ones)),
                                                _mm256_mul_ps(factor1, _mm256_set1_ps(d8[(kb + 1) * 8])), acc[k][h]);
                    off[k][h] = _mm256_fmadd_ps(minimum0, _mm256_set1_ps(s8[kb * 8]), off[k][h]);
                    off[k][h] = _mm256_fmadd_ps(minimum1, _mm256_set1_ps(s8[(kb + 1) * 8]), off[k][h]);
                }
            }
        }
    }
    for (int k = 0; k < G; k++)
        for (int h = 0; h < 2; h++) out[k][h] = _mm256_sub_ps(acc[k][h], off[k][h]);
}

AVX2 static inline __attribute__((always_inline)) void
dot_packed(int format, const uint8_t *p, long nrows, long blocks, const int8_t *q, const float *d8, const float *s8,
           const int32_t *sums, long nx, float *y, long ystride) {
    // Q4_K takes activation rows two at a time: its fused pass holds four integer sums per row.
    const long step = format == CQ_Q4_K ? 2 : 4;
    for (long i = 0; i < nx; i += step) {
        const long left = nx - i < step ? nx - i : step;
        const int8_t *qi = q + i * blocks * 32;
        const float *di = d8 + i * blocks * 8, *si = s8 + i * blocks * 8;
        const int32_t *ui = sums + i * blocks;
        const int first = i == 0;  // later groups find the run's weights in cache
        __m256 out[4][2];
        if (format == CQ_Q4_K) {
            switch (left) {
            case 1: packed_lanes_q4k(1, p, blocks, qi, di, si, first, out); break;
            default: packed_lanes_q4k(2, p, blocks, qi, di, si, first, out); break;
            }
        } else {
            switch (left) {
            case 1: packed_lanes(format, 1, p, blocks, qi, di, si, ui, first, out); break;
            case 2: packed_lanes(format, 2, p, blocks, qi, di, si, ui, first, out); break;
            case 3: packed_lanes(format, 3, p, blocks, qi, di, si, ui, first, out); break;
            default: packed_lanes(format, 4, p, blocks, qi, di, si, ui, first, out); break;
            }
        }
        for (long k = 0; k < left; k++) {
            float *row = y + (i + k) * ystride;
            if (nrows == 16) {
                // A whole run: two stores (the copy below compiles to a call to memmove).
                _mm256_storeu_ps(row, out[k][0]);
                _mm256_storeu_ps(row + 8, out[k][1]);
                continue;
            }
            float lanes[16];
            _mm256_storeu_ps(lanes, out[k][0]);
            _mm256_storeu_ps(lanes + 8, out[k][1]);
            for (long r = 0; r < nrows; r++) row[r] = lanes[r];
        }
    }
}

// One function per format, so that each inlines dot_packed with its format a constant.
#define PACKED_KERNEL(name, format)                                                                     \
    AVX2 static void name(const uint8_t *p, long nrows, long blocks, const int8_t *q, const float *d8, \
                          const float *s8, const int32_t *sums, long nx, float *y, long ystride) {      \
        dot_packed(format, p, nrows, blocks, q, d8, s8, sums, nx, y, ystride);                          \
    }
PACKED_KERNEL(dot_packed_q4_0, CQ_Q4_0)
PACKED_KERNEL(dot_packed_q4_1, CQ_Q4_1)
PACKED_KERNEL(dot_packed_q4_k, CQ_Q4_K)
PACKED_KERNEL(dot_packed_q8_0, CQ_Q8_0)

void cq_avx2_dot_packed(int format, const uint8_t *packed, long nrows, long blocks, const int8_t *q, const float *d8,
                        const float *s8, const int32_t *sums, long nx, float *y, long ystride) {
    switch (format) {
    case CQ_Q4_0: dot_packed_q4_0(packed, nrows, blocks, q, d8, s8, sums, nx, y, ystride); break;
    case CQ_Q4_1: dot_packed_q4_1(packed, nrows, blocks, q, d8, s8, sums, nx, y, ystride); break;
    case CQ_Q4_K: dot_packed_q4_k(packed, nrows, blocks, q, d8, s8, sums, nx, y, ystride); break;
    default: dot_packed_q8_0(packed, nrows, blocks, q, d8, s8, sums, nx, y, ystride); break;
    }
}

// ---------------------------------------------------------------------------------------------
// Rows in the mapped file's layout: one weight row against one activation row, eight 32-bit
// lanes per block of 32 values, reduced once at the end.

// 16 nibble bytes as 32 bytes in value order: [low nibbles (values 0-15) | high (16-31)].
AVX2 static inline __m256i nibbles16(const uint8_t *p) {
    const __m128i v = _mm_loadu_si128((const __m128i *)p), low = _mm_set1_epi8(0x0F);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), low), _mm_and_si128(v, low));
}

AVX2 static inline float sum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX2 static float row_dot(int format, const uint8_t *w, long blocks, const int8_t *q, const float *d8, const float *s8) {
    const __m256i ones = _mm256_set1_epi16(1), eight = _mm256_set1_epi8(8), low = _mm256_set1_epi8(0x0F);
    __m256 acc = _mm256_setzero_ps();
    float off = 0;
    if (format == CQ_Q4_K) {
        for (long sb = 0; sb < blocks / 8; sb++) {
            const uint8_t *s = w + sb * 144;
            const float d = half_to_float(s), dmin = half_to_float(s + 2);
            for (int j = 0; j < 4; j++) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(s + 16 + 32 * j));
                for (int h = 0; h < 2; h++) {
                    const int sub = 2 * j + h;
                    const long b = sb * 8 + sub;
                    uint8_t sc, m;
                    scale_min_k4(sub, s + 4, &sc, &m);
                    const __m256i codes = _mm256_and_si256(h ? _mm256_srli_epi16(v, 4) : v, low);
                    const __m256i a = _mm256_loadu_si256((const __m256i *)(q + b * 32));
                    const __m256i isum = _mm256_madd_epi16(_mm256_maddubs_epi16(codes, a), ones);
                    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(d * (float)sc * d8[b * 8]), acc);
                    off -= dmin * (float)m * s8[b * 8];
                }
            }
        }
        return sum8(acc) + off;
    }
    for (long b = 0; b < blocks; b++) {
        const __m256i a = _mm256_loadu_si256((const __m256i *)(q + b * 32));
        __m256i isum;
        float dw;
        switch (format) {
        case CQ_Q4_0: {
            const uint8_t *blk = w + b * 18;
            dw = half_to_float(blk);
            isum = signed_dot(_mm256_sub_epi8(nibbles16(blk + 2), eight), a);
            break;
        }
        case CQ_Q4_1: {
            const uint8_t *blk = w + b * 20;
            dw = half_to_float(blk);
            isum = _mm256_madd_epi16(_mm256_maddubs_epi16(nibbles16(blk + 4), a), ones);
            off += half_to_float(blk + 2) * s8[b * 8];
            break;
        }
        default: {  // CQ_Q8_0
            const uint8_t *blk = w + b * 34;
            dw = half_to_float(blk);
            isum = signed_dot(_mm256_loadu_si256((const __m256i *)(blk + 2)), a);
            break;
        }
        }
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(dw * d8[b * 8]), acc);
    }
    return sum8(acc) + off;
}

AVX2 void cq_avx2_dot_rows(int format, const uint8_t *const *rows, long nrows, long blocks, const int8_t *q,
                           const float *d8, const float *s8, long nx, float *y, long ystride) {
    for (long r = 0; r < nrows; r++)
        for (long i = 0; i < nx; i++)
            y[i * ystride + r] = row_dot(format, rows[r], blocks, q + i * blocks * 32, d8 + i * blocks * 8, s8 + i * blocks * 8);
}

// ---------------------------------------------------------------------------------------------
// A rank-16 adapter's terms for one token, eight rows at a time: each row's 16 products folded to
// 8 (lane l and l + 8), then `vhaddps` twice (adjacent lanes, two rows per step, within each
// 128-bit half) and the two halves added: row k's sum in lane k, in the portable loop's order.

AVX2 void cq_avx2_rank16_expand(const float *b, long rows, const float *u, float scale, float *y) {
    const __m256 ulow = _mm256_loadu_ps(u), uhigh = _mm256_loadu_ps(u + 8), s = _mm256_set1_ps(scale);
    long i = 0;
    for (; i + 8 <= rows; i += 8) {
        const float *r = b + 16 * i;
        __m256 f[8];
        for (int k = 0; k < 8; k++)
            f[k] = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(r + 16 * k), ulow),
                                 _mm256_mul_ps(_mm256_loadu_ps(r + 16 * k + 8), uhigh));
        const __m256 g0 = _mm256_hadd_ps(_mm256_hadd_ps(f[0], f[1]), _mm256_hadd_ps(f[2], f[3]));
        const __m256 g1 = _mm256_hadd_ps(_mm256_hadd_ps(f[4], f[5]), _mm256_hadd_ps(f[6], f[7]));
        const __m256 sums = _mm256_add_ps(_mm256_permute2f128_ps(g0, g1, 0x20), _mm256_permute2f128_ps(g0, g1, 0x31));
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_mul_ps(s, sums)));
    }
    if (i < rows) cq_rank16_expand_portable(b + 16 * i, rows - i, u, scale, y + i);
}

#endif
