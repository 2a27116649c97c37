// The AMX-BF16 micro-kernel behind Kernels' `gemmBF16`. Swift cannot emit AMX tile
// instructions, so this is the one place they live; packing, threading and the epilogue are
// Swift.
#ifndef CAMX_H
#define CAMX_H

#include <stdint.h>

/// 1 when this CPU has AMX-TILE and AMX-BF16, the OS saves tile state, and Linux granted the
/// process permission to use tile data (requested here, once per process); 0 otherwise.
int camx_available(void);

/// 1 when this CPU has AVX-512F: 32 vector registers of 16 floats, what the fp32 GEMM's widest
/// micro-kernel keeps its tile in; 0 otherwise (AVX2's 16 registers of 8, NEON, …).
int camx_wide_vectors(void);

/// C[32 x 32*panels] = init + A · B for one packed row panel of A and `panels` packed column
/// panels of B, stored as fp32 to `out` (row stride `ldo` floats).
///
/// `init` (row stride `ldi` floats; 0 repeats one row, e.g. a bias) gives the starting values of
/// the accumulators, or is NULL for zeros; it may be `out` itself.
///
/// Layouts, both over `blocks` blocks of 32 depth, bf16 as uint16:
/// - A panel: [block][row 0..31][32 depth values] (1024 values per block).
/// - B panel: [block][half 0..1][depth pair 0..15][column 0..15][2] (VNNI; 1024 values per
///   block), panel after panel.
/// Accumulation is fp32 inside the tiles.
void camx_panel(const uint16_t *a, const uint16_t *b, long panels, long blocks,
                float *out, long ldo, const float *init, long ldi);

#endif
