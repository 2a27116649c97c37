// Integer dot-product micro-kernels behind the Quantization module's `QuantizedMatrix`.
// Swift cannot emit AVX-512 VNNI (`vpdpbusd`), so the per-row block loops live here; the
// activation quantization layout, threading and the reference semantics are Swift's.
#ifndef CQUANT_H
#define CQUANT_H

#include <stdint.h>

/// Block formats of the weight rows (ggml's layouts, byte for byte).
enum cq_format {
    CQ_Q4_0 = 0,   // 18-byte blocks of 32: fp16 d, 16 bytes of nibbles (low: 0-15, high: 16-31)
    CQ_Q4_1 = 1,   // 20-byte blocks of 32: fp16 d, fp16 m, 16 bytes of nibbles
    CQ_Q8_0 = 2,   // 34-byte blocks of 32: fp16 d, 32 signed bytes
    CQ_Q4_K = 3,   // 144-byte super-blocks of 256: fp16 d, fp16 dmin, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles
};

/// 1 when the CPU runs the AVX-512 VNNI kernels; otherwise the portable C loops run.
int cq_vnni_available(void);

/// Quantizes `blocks` blocks of 32 floats as ggml's `quantize_row_q8_0_ref` does: per block
/// `d = max|x| / 127` (kept as its fp16 rounding, as ggml stores it), `q = roundf(x / d)`.
/// Writes the 32 signed bytes per block to `q`, and per block `d` and `d·Σq` (ggml's Q8_1 `s`),
/// each repeated 8 times (the kernels load them as vectors), to `d8` and `s8`.
void cq_quantize_q8(const float *x, long blocks, int8_t *q, float *d8, float *s8);

/// y[i * ystride + r] = Σ over the row's blocks of the block dot product of weight row `rows[r]`
/// (format `format`, `blocks` blocks of 32 values) with activation row i (`q`, `d8`, `s8` from
/// `cq_quantize_q8`, rows `blocks` blocks apart), for r in 0..<nrows and i in 0..<nx. Per block:
/// Q4_0 `d_w d_a Σ (q_w - 8) q_a`; Q4_1 `d_w d_a Σ q_w q_a + m_w d_a Σ q_a`; Q8_0 `d_w d_a Σ q_w q_a`;
/// Q4_K per sub-block of 32 `d sc d_a Σ q_w q_a - dmin m d_a Σ q_a`. Q4_K rows hold blocks/8
/// super-blocks. Each weight row is read once for all `nx` activation rows.
void cq_dot_rows(int format, const uint8_t *const *rows, long nrows, long blocks,
                 const int8_t *q, const float *d8, const float *s8, long nx,
                 float *y, long ystride);

/// out[r * width + i] = scales[r * row_scales + i / 32] * q[r * row_bytes + i] for r in
/// 0..<count, i in 0..<width (a multiple of 32): `count` rows of an 8-bit key/value cache, one
/// head's `width` bytes each, as floats. The bytes a few rows ahead are asked for while a row is
/// widened: the rows are `row_bytes` apart, a stride the hardware prefetchers follow late.
void cq_widen_rows(const int8_t *q, const float *scales, long row_bytes, long row_scales, long count, long width,
                   float *out);

/// Asks for `bytes` bytes at each of `count` rows `stride` bytes apart (into L2), ahead of a loop
/// that reads them: fp32 key/value rows of one head are strided as the 8-bit ones are.
void cq_prefetch_rows(const void *p, long stride, long count, long bytes);

#endif
