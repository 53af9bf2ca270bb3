// The prime sieve's hottest arithmetic near 10^18: where each large sieving prime's first
// multiple falls in a block. A block far from 0 makes and places all its large primes again
// (50 million below 10^9 for a block near 10^18), so this runs for every one of them in every
// block. With AVX-512 eight primes go through it at once; elsewhere one at a time, the same way.

#include "swiftpar_linux.h"

#include <stdint.h>

/// The residues coprime to 30, one per class.
static const int64_t residues[8] = {1, 7, 11, 13, 17, 19, 23, 29};
/// The wheel position of the first multiplier at or after m (mod 30), the number of residues
/// below m, by m / 2: every residue is odd, so m and m + 1 (m even) have the same.
static const int64_t position_at_or_after_half[16] = {0, 1, 1, 1, 2, 2, 3, 4, 4, 5, 6, 6, 7, 7, 7, 0};

/// One prime, as the vector code does eight: see `swiftpar_place_large_primes`.
static inline void place_one(uint64_t packed, int64_t start, double start_double, int64_t base_byte, int clamped,
                             int64_t *place, uint64_t *entry) {
    int64_t a = (int64_t)(packed >> 3);
    int64_t class_index = (int64_t)(packed & 7);
    int64_t r = residues[class_index];
    int64_t p = 30 * a + r;
    // Within one of start / p (the double's quotient errs by far less than one for p > 2^22),
    // then exact: the remainder lies in (-p, 2p).
    int64_t q = (int64_t)(start_double / (double)p);
    int64_t rest = start - q * p;
    q += (rest > 0) + (rest > p);
    if (clamped && q < p) q = p;
    int64_t c = q / 30;
    int64_t m = q - 30 * c;
    int64_t j = position_at_or_after_half[m >> 1];
    int64_t w = residues[j];
    *place = (int64_t)((uint64_t)c * (uint64_t)p - (uint64_t)base_byte + (uint64_t)(a * w) + (uint64_t)(r * w / 30));
    *entry = (uint64_t)a << 6 | (uint64_t)(class_index << 3 | j);
}

long swiftpar_place_large_primes_one_at_a_time(const uint64_t *packed, int64_t *places, uint64_t *entries, long count,
                                               int64_t start, int64_t base_byte, int clamped, uint64_t limit) {
    double start_double = (double)start;
    long kept = 0;
    for (long i = 0; i < count; i++) {
        int64_t place;
        uint64_t entry;
        place_one(packed[i], start, start_double, base_byte, clamped, &place, &entry);
        // Written in any case, kept by moving on (no branch to mispredict).
        places[kept] = place;
        entries[kept] = entry;
        kept += (uint64_t)place < limit;
    }
    return kept;
}

long swiftpar_gather_primes_one_at_a_time(const uint64_t *words, long word_count, uint64_t base_a, uint64_t *found) {
    long count = 0;
    for (long w = 0; w < word_count; w++) {
        uint64_t bits = words[w];
        uint64_t first = (base_a + 8 * (uint64_t)w) << 3;
        while (bits) {
            found[count++] = first + (uint64_t)__builtin_ctzll(bits);
            bits &= bits - 1;
        }
    }
    return count;
}

#if defined(__x86_64__) && defined(__clang__)
#include <immintrin.h>

#define SWIFTPAR_AVX512 __attribute__((target("avx512f,avx512dq")))

SWIFTPAR_AVX512
static long place_avx512(const uint64_t *packed, int64_t *places, uint64_t *entries, long count,
                         int64_t start, int64_t base_byte, int clamped, uint64_t limit) {
    const __m512i residue_table = _mm512_setr_epi64(1, 7, 11, 13, 17, 19, 23, 29);
    const __m512i one = _mm512_set1_epi64(1), zero = _mm512_setzero_si512();
    const __m512i thirty = _mm512_set1_epi64(30);
    const __m512i positions_low = _mm512_loadu_si512(position_at_or_after_half);
    const __m512i positions_high = _mm512_loadu_si512(position_at_or_after_half + 8);
    const __m512i start_vector = _mm512_set1_epi64(start), base_vector = _mm512_set1_epi64(base_byte);
    const __m512d start_double = _mm512_set1_pd((double)start), thirtieth = _mm512_set1_pd(1.0 / 30.0);
    const __m512i limit_vector = _mm512_set1_epi64((int64_t)limit);
    long i = 0, kept = 0;
    for (; i + 8 <= count; i += 8) {
        __m512i word = _mm512_loadu_si512(packed + i);
        __m512i a = _mm512_srli_epi64(word, 3);
        __m512i class_index = _mm512_and_si512(word, _mm512_set1_epi64(7));
        __m512i r = _mm512_permutexvar_epi64(class_index, residue_table);
        __m512i p = _mm512_add_epi64(_mm512_mullo_epi64(a, thirty), r);
        __m512i q = _mm512_cvttpd_epi64(_mm512_div_pd(start_double, _mm512_cvtepi64_pd(p)));
        __m512i rest = _mm512_sub_epi64(start_vector, _mm512_mullo_epi64(q, p));
        q = _mm512_mask_add_epi64(q, _mm512_cmpgt_epi64_mask(rest, zero), q, one);
        q = _mm512_mask_add_epi64(q, _mm512_cmpgt_epi64_mask(rest, p), q, one);
        if (clamped) q = _mm512_max_epi64(q, p);
        // q / 30 through a double (q < 2^53), then exact.
        __m512i c = _mm512_cvttpd_epi64(_mm512_mul_pd(_mm512_cvtepi64_pd(q), thirtieth));
        __m512i m = _mm512_sub_epi64(q, _mm512_mullo_epi64(c, thirty));
        __mmask8 low = _mm512_cmplt_epi64_mask(m, zero), high = _mm512_cmpge_epi64_mask(m, thirty);
        c = _mm512_mask_sub_epi64(c, low, c, one);
        m = _mm512_mask_add_epi64(m, low, m, thirty);
        c = _mm512_mask_add_epi64(c, high, c, one);
        m = _mm512_mask_sub_epi64(m, high, m, thirty);
        __m512i j = _mm512_permutex2var_epi64(positions_low, _mm512_srli_epi64(m, 1), positions_high);
        __m512i w = _mm512_permutexvar_epi64(j, residue_table);
        // r·w / 30 for r·w ≤ 841: (r·w·2185) >> 16 is exact there.
        __m512i turn = _mm512_srli_epi64(_mm512_mullo_epi64(_mm512_mullo_epi64(r, w), _mm512_set1_epi64(2185)), 16);
        __m512i place = _mm512_sub_epi64(_mm512_mullo_epi64(c, p), base_vector);
        place = _mm512_add_epi64(place, _mm512_add_epi64(_mm512_mullo_epi64(a, w), turn));
        __m512i entry = _mm512_or_si512(_mm512_slli_epi64(a, 6), _mm512_or_si512(_mm512_slli_epi64(class_index, 3), j));
        // The kept lanes packed to the front in a register, then all eight lanes stored: a
        // compressing store straight to memory is slow on some processors (AMD's Zen 4). The
        // lanes past the kept ones land on slots below i + 8, already read or to be written.
        __mmask8 keep = _mm512_cmplt_epu64_mask(place, limit_vector);
        _mm512_storeu_si512(places + kept, _mm512_maskz_compress_epi64(keep, place));
        _mm512_storeu_si512(entries + kept, _mm512_maskz_compress_epi64(keep, entry));
        kept += __builtin_popcount(keep);
    }
    return kept + swiftpar_place_large_primes_one_at_a_time(packed + i, places + kept, entries + kept, count - i,
                                                            start, base_byte, clamped, limit);
}

#define SWIFTPAR_AVX512_VBMI2 __attribute__((target("avx512f,avx512bw,avx512vbmi2")))

/// The bit numbers of a word's set bits, in order, packed into bytes by one compress; then
/// widened eight at a time. Stores up to seven values past the last one found.
SWIFTPAR_AVX512_VBMI2
static long gather_avx512(const uint64_t *words, long word_count, uint64_t base_a, uint64_t *found) {
    const __m512i bit_numbers = _mm512_set_epi8(63, 62, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48,
                                                47, 46, 45, 44, 43, 42, 41, 40, 39, 38, 37, 36, 35, 34, 33, 32,
                                                31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16,
                                                15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    uint8_t set[64] __attribute__((aligned(64)));
    long count = 0;
    for (long w = 0; w < word_count; w++) {
        uint64_t bits = words[w];
        if (!bits) continue;
        _mm512_store_si512(set, _mm512_maskz_compress_epi8(bits, bit_numbers));
        int k = __builtin_popcountll(bits);
        __m512i first = _mm512_set1_epi64((long long)((base_a + 8 * (uint64_t)w) << 3));
        for (int j = 0; j < k; j += 8) {
            __m512i eight = _mm512_cvtepu8_epi64(_mm_loadl_epi64((const __m128i *)(set + j)));
            _mm512_storeu_si512(found + count + j, _mm512_add_epi64(first, eight));
        }
        count += k;
    }
    return count;
}


/// The vector extensions the code here uses that the processor has, found once: bit 0 for
/// AVX-512F and DQ (placing), bit 1 for AVX-512F, BW and VBMI2 (gathering).
static int vector_features(void) {
    static int known = -1;
    int answer = __atomic_load_n(&known, __ATOMIC_RELAXED);
    if (answer < 0) {
        __builtin_cpu_init();
        int f = __builtin_cpu_supports("avx512f");
        answer = (f && __builtin_cpu_supports("avx512dq"))
            | (f && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vbmi2")) << 1;
        __atomic_store_n(&known, answer, __ATOMIC_RELAXED);
    }
    return answer;
}
#endif

long swiftpar_place_large_primes(const uint64_t *packed, int64_t *places, uint64_t *entries, long count,
                                 int64_t start, int64_t base_byte, int clamped, uint64_t limit) {
#if defined(__x86_64__) && defined(__clang__)
    if (vector_features() & 1) return place_avx512(packed, places, entries, count, start, base_byte, clamped, limit);
#endif
    return swiftpar_place_large_primes_one_at_a_time(packed, places, entries, count, start, base_byte, clamped, limit);
}

long swiftpar_gather_primes(const uint64_t *words, long word_count, uint64_t base_a, uint64_t *found) {
#if defined(__x86_64__) && defined(__clang__)
    if (vector_features() & 2) return gather_avx512(words, word_count, base_a, found);
#endif
    return swiftpar_gather_primes_one_at_a_time(words, word_count, base_a, found);
}
