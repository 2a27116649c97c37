// What the kernel files of CQuant share: ggml's block fields and the packed Q4_K layout.
#ifndef CQUANT_BLOCKS_H
#define CQUANT_BLOCKS_H

#include <stdint.h>
#include <string.h>

#include "CQuantHalf.h"

// A packed Q4_K super-block of 16 rows: fp16 d ×16, fp16 dmin ×16, the 6-bit scales as bytes
// (sub-block j: 16 bytes), the minimums likewise, then for nibble span j (sub-blocks 2j, 2j+1)
// and vector m the bytes 4m..4m+3 of each row's 32 bytes.
#define Q4K_PACKED (64 + 128 + 128 + 2048)

static inline float half_to_float(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return cq_half_bits_to_float(h);
}

// Q4_K's 6-bit scale and minimum of sub-block j (0..7) from the 12 packed bytes.
static inline void scale_min_k4(int j, const uint8_t *s, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

#endif
