// Integer dot-product micro-kernels behind the Quantization module's `QuantizedMatrix`.
// Swift cannot emit AVX-512 VNNI (`vpdpbusd`), so the per-row block loops live here; the
// activation quantization layout, threading and the reference semantics are Swift's.
#ifndef CQUANT_H
#define CQUANT_H

#include <stdint.h>
#include "CQuantHalf.h"

/// Block formats of the weight rows (ggml's layouts, byte for byte).
enum cq_format {
    CQ_Q4_0 = 0,   // 18-byte blocks of 32: fp16 d, 16 bytes of nibbles (low: 0-15, high: 16-31)
    CQ_Q4_1 = 1,   // 20-byte blocks of 32: fp16 d, fp16 m, 16 bytes of nibbles
    CQ_Q8_0 = 2,   // 34-byte blocks of 32: fp16 d, 32 signed bytes
    CQ_Q4_K = 3,   // 144-byte super-blocks of 256: fp16 d, fp16 dmin, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles
};

/// 1 when the CPU runs the AVX-512 VNNI kernels; otherwise the AVX2 kernels (x86-64 with AVX2,
/// FMA and F16C) or the portable C loops run.
int cq_vnni_available(void);

/// Quantizes `blocks` blocks of 32 floats as ggml's `quantize_row_q8_0_ref` does: per block
/// `d = max|x| / 127` (kept as its fp16 rounding, as ggml stores it), `q = roundf(x / d)`.
/// Writes the 32 signed bytes per block to `q`, and per block `d` and `d·Σq` (ggml's Q8_1 `s`),
/// each repeated 8 times (the kernels load them as vectors), to `d8` and `s8`, and `Σq` to
/// `sums` (when not NULL).
void cq_quantize_q8(const float *x, long blocks, int8_t *q, float *d8, float *s8, int32_t *sums);

/// Bytes of a packed run of 16 rows of `blocks` blocks of 32 (`cq_pack_rows`), or 0 when
/// `format` is not packed.
long cq_packed_bytes(int format, long blocks);

/// Interleaves weight rows `rows[0..<nrows]` (nrows ≤ 16, `blocks` blocks each) into `out`
/// (`cq_packed_bytes(format, blocks)` bytes): per block, the 16 rows' fp16 scales (and Q4_1's
/// minimums), then the codes so that 32-bit lane r of each 64-byte vector holds row r's bytes —
/// Q4_0/Q4_1: vector m holds nibble bytes 4m..4m+3 (values 4m..4m+3 low, 16+4m.. high); Q8_0:
/// vector k holds values 4k..4k+3, stored as q + 128 (unsigned, as vpdpbusd reads it); Q4_K per
/// super-block: d and dmin, the 6-bit scales and minimums one byte each, then the nibble spans.
/// Rows past `nrows` are zero blocks. The rows' information, rearranged: nothing rounds, and
/// `cq_unpack_row` gives the original bytes back.
void cq_pack_rows(int format, const uint8_t *const *rows, long nrows, long blocks, uint8_t *out);

/// Row `r` (0..<16) of a packed run as its original ggml blocks (`blocks` of them) in `row`.
void cq_unpack_row(int format, const uint8_t *packed, long r, long blocks, uint8_t *row);

/// y[i * ystride + r] for r in 0..<nrows (≤ 16) and i in 0..<nx: the block dot products of a
/// packed run of rows with activation row i, sixteen rows at once, one per 32-bit lane. Per
/// block the integer sum is exact (Q4_0 `Σ (q_w − 8) q_a` and Q8_0 `Σ q_w q_a`, the offsets
/// taken out with the activation's `Σq_a` from `sums`), then `d_w d_a` times it is added (Q4_1:
/// plus `m_w d_a Σ q_a`; Q4_K per sub-block `d sc d_a Σ q_w q_a − dmin m d_a Σ q_a`) — ggml's
/// semantics.
void cq_dot_packed(int format, const uint8_t *packed, long nrows, long blocks, const int8_t *q, const float *d8,
                   const float *s8, const int32_t *sums, long nx, float *y, long ystride);

/// The portable C loops of `cq_quantize_q8` and `cq_dot_packed` (what runs without AVX-512
/// VNNI), callable anywhere so that tests compare them with the vector kernels.
void cq_quantize_q8_portable(const float *x, long blocks, int8_t *q, float *d8, float *s8, int32_t *sums);
void cq_dot_packed_portable(int format, const uint8_t *packed, long nrows, long blocks, const int8_t *q,
                            const float *d8, const float *s8, long nx, float *y, long ystride);

/// A rank-16 LoRA adapter's output terms for one token: `y[i] += scale · Σ_j b[16 i + j] u[j]`
/// for `i` in `0..<rows` (`b`: the adapter's `B`, 16 floats a row). Every sum is taken in one
/// order, `((e0 + e1) + (e2 + e3)) + ((e4 + e5) + (e6 + e7))` with `e_l = b_l u_l + b_(l+8) u_(l+8)`
/// (no fused multiply-adds), then scaled and added, so a row gets the same float from either
/// kernel and whatever rows it is called with.
void cq_rank16_expand(const float *b, long rows, const float *u, float scale, float *y);
/// The portable loop of `cq_rank16_expand`, for the tests.
void cq_rank16_expand_portable(const float *b, long rows, const float *u, float scale, float *y);

#if defined(__x86_64__)
/// The AVX2 kernel of `cq_rank16_expand`: eight rows at a time, their sums reduced across
/// registers with `vhaddps` (which Swift cannot emit: its SIMD types' shuffles for the same
/// tree compiled to over 700 instructions a call, through the stack).
void cq_avx2_rank16_expand(const float *b, long rows, const float *u, float scale, float *y);
/// 1 when the CPU has AVX2, FMA and F16C: without AVX-512 VNNI, the AVX2 kernels run then.
int cq_avx2_available(void);
/// The AVX2 kernels of `cq_quantize_q8` (byte for byte the portable loop's), `cq_dot_packed`
/// (lane for lane the AVX-512 kernel's floats) and `cq_dot_rows`; callable on any CPU that has
/// AVX2, so that tests compare them with the others on an AVX-512 machine too.
void cq_avx2_quantize_q8(const float *x, long blocks, int8_t *q, float *d8, float *s8, int32_t *sums);
void cq_avx2_dot_packed(int format, const uint8_t *packed, long nrows, long blocks, const int8_t *q, const float *d8,
                        const float *s8, const int32_t *sums, long nx, float *y, long ystride);
void cq_avx2_dot_rows(int format, const uint8_t *const *rows, long nrows, long blocks, const int8_t *q,
                      const float *d8, const float *s8, long nx, float *y, long ystride);
#endif

/// The portable loop of `cq_dot_rows`.
void cq_dot_rows_portable(int format, const uint8_t *const *rows, long nrows, long blocks, const int8_t *q,
                          const float *d8, const float *s8, long nx, float *y, long ystride);

/// y[i * ystride + r] = Σ over the row's blocks of the block dot product of weight row `rows[r]`
/// (format `format`, `blocks` blocks of 32 values) with activation row i (`q`, `d8`, `s8` from
/// `cq_quantize_q8`, rows `blocks` blocks apart), for r in 0..<nrows and i in 0..<nx. Per block:
/// Q4_0 `d_w d_a Σ (q_w - 8) q_a`; Q4_1 `d_w d_a Σ q_w q_a + m_w d_a Σ q_a`; Q8_0 `d_w d_a Σ q_w q_a`;
/// Q4_K per sub-block of 32 `d sc d_a Σ q_w q_a - dmin m d_a Σ q_a`. Q4_K rows hold blocks/8
/// super-blocks. Each weight row is read once for all `nx` activation rows.
void cq_dot_rows(int format, const uint8_t *const *rows, long nrows, long blocks,
                 const int8_t *q, const float *d8, const float *s8, long nx,
                 float *y, long ystride);

#endif
