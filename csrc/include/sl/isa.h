// Run-time ISA dispatch for compute-bound CPU loops: the package is built without -march,
// so such loops are also compiled for AVX2+FMA and AVX-512 (GCC/Clang target attributes)
// and picked by the CPU's features. Use: a SL_ALWAYS_INLINE template body, one wrapper per
// level (SL_TARGET_AVX2 / SL_TARGET_AVX512), and isa_level() to choose.
#pragma once

#if defined(__GNUC__)
#define SL_ALWAYS_INLINE __attribute__((always_inline))
#else
#define SL_ALWAYS_INLINE
#endif

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define SL_X86_DISPATCH 1
#define SL_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define SL_TARGET_AVX512 __attribute__((target("avx512f,avx512vl,avx512dq,avx2,fma")))
#endif

namespace sl {

// 2: AVX-512 (F, VL, DQ), 1: AVX2 + FMA, 0: baseline
inline int isa_level() {
#ifdef SL_X86_DISPATCH
  static const int level = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
      return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
    return 0;
  }();
  return level;
#else
  return 0;
#endif
}

}  // namespace sl
