// The one dtype enum of the native layer and the one dtype dispatch switch.
// Python reads the codes from the module attributes exported by the bindings
// (DTYPE_F32, ...): numbers are never written twice.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

#include "sl/status.h"

namespace sl {

enum class DType : int { F32 = 0, F64 = 1, F16 = 2, BF16 = 3 };

inline const char* dtype_name(DType d) {
  switch (d) {
    case DType::F32: return "f32";
    case DType::F64: return "f64";
    case DType::F16: return "f16";
    case DType::BF16: return "bf16";
  }
  return "unknown";
}

inline int dtype_size(DType d) {
  switch (d) {
    case DType::F32: return 4;
    case DType::F64: return 8;
    case DType::F16: return 2;
    case DType::BF16: return 2;
  }
  return 0;
}

inline bool dtype_valid(int code) { return code >= 0 && code <= 3; }

// Host-side storage types for the half formats (bit patterns; converted through float).
struct half_bits { std::uint16_t v; };
struct bf16_bits { std::uint16_t v; };

inline float to_float(half_bits h) {
  const std::uint32_t sign = (h.v & 0x8000u) << 16;
  std::uint32_t exp = (h.v >> 10) & 0x1f;
  std::uint32_t man = h.v & 0x3ffu;
  std::uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while ((man & 0x400u) == 0) { man <<= 1; --exp; }
      man &= 0x3ffu;
      bits = sign | (exp << 23) | (man << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13);
  } else {
    bits = sign | ((exp - 15 + 127) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline half_bits from_float_half(float f) {
  std::uint32_t x;
  std::memcpy(&x, &f, 4);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  const std::uint32_t absx = x & 0x7fffffffu;
  if (absx >= 0x7f800000u) {  // inf or nan
    return {static_cast<std::uint16_t>(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0u))};
  }
  if (absx >= 0x477ff000u) return {static_cast<std::uint16_t>(sign | 0x7c00u)};  // overflow -> inf
  if (absx < 0x38800000u) {  // subnormal half (or zero): round to nearest even
    if (absx < 0x33000000u) return {static_cast<std::uint16_t>(sign)};
    const std::uint32_t e = absx >> 23;
    const std::uint32_t m = (absx & 0x7fffffu) | 0x800000u;
    const int shift = 126 - static_cast<int>(e);  // 14 + (113 - e) ... bits to drop
    std::uint32_t h = m >> (shift);
    const std::uint32_t rem = m & ((1u << shift) - 1u);
    const std::uint32_t halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (h & 1u))) ++h;
    return {static_cast<std::uint16_t>(sign | h)};
  }
  // normal: rebias and round to nearest even on the 13 dropped bits
  std::uint32_t h = ((absx - 0x38000000u) >> 13);
  const std::uint32_t rem = absx & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
  return {static_cast<std::uint16_t>(sign | h)};
}

inline float to_float(bf16_bits b) {
  const std::uint32_t bits = static_cast<std::uint32_t>(b.v) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline bf16_bits from_float_bf16(float f) {
  std::uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return {static_cast<std::uint16_t>((x >> 16) | 0x40u)};  // quiet nan
  const std::uint32_t lsb = (x >> 16) & 1u;
  x += 0x7fffu + lsb;  // round to nearest even
  return {static_cast<std::uint16_t>(x >> 16)};
}

// Load/store through the accumulation type: float for the half formats.
template <typename T> struct acc_type { using type = T; };
template <> struct acc_type<half_bits> { using type = float; };
template <> struct acc_type<bf16_bits> { using type = float; };

inline float load_acc(const float* p) { return *p; }
inline double load_acc(const double* p) { return *p; }
inline float load_acc(const half_bits* p) { return to_float(*p); }
inline float load_acc(const bf16_bits* p) { return to_float(*p); }
inline void store_acc(float* p, float v) { *p = v; }
inline void store_acc(double* p, double v) { *p = v; }
inline void store_acc(half_bits* p, float v) { *p = from_float_half(v); }
inline void store_acc(bf16_bits* p, float v) { *p = from_float_bf16(v); }

// Storage types of the half formats, per backend: host code uses the bit structs above,
// CUDA code passes a traits struct naming __half / __nv_bfloat16.
struct HostTypes {
  using f16 = half_bits;
  using bf16 = bf16_bits;
};

// THE dtype switch: fn is a generic lambda called with a value of the storage type
// (only its type matters). Unknown codes come back as InvalidArgument.
template <typename Types = HostTypes, typename Fn>
Status dispatch_float(int code, const char* op, Fn&& fn) {
  switch (static_cast<DType>(code)) {
    case DType::F32: return fn(float{});
    case DType::F64: return fn(double{});
    case DType::F16: return fn(typename Types::f16{});
    case DType::BF16: return fn(typename Types::bf16{});
  }
  return invalid_argument(std::string(op) + ": unknown dtype code " + std::to_string(code));
}

// The switch restricted to float32/float64 (kernels whose Python layer computes the
// 16-bit formats in float32): the others come back as InvalidArgument naming the dtype.
template <typename Types = HostTypes, typename Fn>
Status dispatch_real(int code, const char* op, Fn&& fn) {
  return dispatch_float<Types>(code, op, [&](auto tag) -> Status {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
      return fn(tag);
    } else {
      return invalid_argument(std::string(op) + ": float32 or float64 only, got " +
                              dtype_name(static_cast<DType>(code)));
    }
  });
}

}  // namespace sl
